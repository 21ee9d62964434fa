// Micro-benchmarks of the sync primitives (Google Benchmark).
//
//   ./build/release/bench/warden_sync_bench
//
// Each loop runs inside a task on a runtime with the given number of workers
// (the argument; 0 = current-thread mode), timed in real time.
#include <warden/sync/mutex.hpp>
#include <warden/sync/notify.hpp>
#include <warden/sync/semaphore.hpp>
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

#include <atomic>

namespace {

warden::runtime_options with_workers(const benchmark::State& state) {
  warden::runtime_options o;
  o.worker_threads = static_cast<std::size_t>(state.range(0));
  return o;
}

// Uncontended `co_await m.lock()` + guard destruction: the fast path (one
// CAS each way, no suspension).
void mutex_lock_unlock_uncontended(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  warden::mutex m;
  rt.block_on([](benchmark::State& s, warden::mutex& mu) -> warden::task<void> {
    for (auto _ : s) {
      auto guard = co_await mu.lock();
      benchmark::DoNotOptimize(guard);
    }
  }(state, m));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(mutex_lock_unlock_uncontended)->Arg(0)->Arg(1)->UseRealTime();

// Uncontended try_lock + guard destruction (no task machinery at all).
void mutex_try_lock_unlock(benchmark::State& state) {
  warden::mutex m;
  for (auto _ : state) {
    auto guard = m.try_lock();
    benchmark::DoNotOptimize(guard);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(mutex_try_lock_unlock);

// Uncontended `co_await s.acquire()` + permit destruction.
void semaphore_acquire_release_uncontended(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  warden::semaphore sem(4);
  rt.block_on([](benchmark::State& s, warden::semaphore& se) -> warden::task<void> {
    for (auto _ : s) {
      auto permit = co_await se.acquire();
      benchmark::DoNotOptimize(permit);
    }
  }(state, sem));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(semaphore_acquire_release_uncontended)->Arg(0)->Arg(1)->UseRealTime();

// Ping-pong between two tasks through two notifies: one iteration is a full
// round trip (two notify_one calls, two parks, two wakes).
warden::task<void> ponger(warden::notify* ping, warden::notify* pong, const std::atomic<bool>* stop) {
  for (;;) {
    co_await ping->notified();
    if (stop->load(std::memory_order_relaxed)) co_return;
    pong->notify_one();
  }
}

void notify_round_trip(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  warden::notify ping;
  warden::notify pong;
  std::atomic<bool> stop{false};
  rt.block_on(
      [](benchmark::State& s, warden::notify& pi, warden::notify& po, std::atomic<bool>& st) -> warden::task<void> {
        auto partner = warden::spawn(ponger(&pi, &po, &st));
        for (auto _ : s) {
          pi.notify_one();
          co_await po.notified();
        }
        st.store(true, std::memory_order_relaxed);
        pi.notify_one();
        co_await partner;
      }(state, ping, pong, stop));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(notify_round_trip)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// Two tasks taking turns on one mutex with a yield inside: the contended
// path (park, hand-off, wake).
warden::task<void> contend(warden::mutex* m, std::int64_t rounds) {
  for (std::int64_t i = 0; i < rounds; ++i) {
    auto guard = co_await m->lock();
    co_await warden::yield_now{};
  }
}

void mutex_contended_hand_off(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  warden::mutex m;
  for (auto _ : state) {
    rt.block_on([](warden::mutex* mu) -> warden::task<void> {
      auto a = warden::spawn(contend(mu, 1000));
      auto b = warden::spawn(contend(mu, 1000));
      co_await a;
      co_await b;
    }(&m));
  }
  state.SetItemsProcessed(state.iterations() * 2000);
}
BENCHMARK(mutex_contended_hand_off)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
