// Tracked spawn (task_tracker::spawn with an unlimited and a semaphore
// scheduler) against a plain spawn: time per task, spawn to completion, in
// batches of 256 awaited together. The goal: <= 1.3x plain spawn.
//
//   ./build/release/bench/warden_tracker_bench
//
// The argument is the worker count (0 = current-thread mode).
#include <warden/supervise/tracker.hpp>
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

namespace {

constexpr int kBatch = 256;

warden::task<void> empty_task() { co_return; }

warden::runtime_options with_workers(const benchmark::State& state) {
  warden::runtime_options o;
  o.worker_threads = static_cast<std::size_t>(state.range(0));
  return o;
}

void plain_spawn(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    std::vector<warden::join_handle<void>> handles;
    handles.reserve(kBatch);
    for (auto _ : s) {
      for (int i = 0; i < kBatch; ++i) handles.push_back(warden::spawn(empty_task()));
      for (auto& h : handles) co_await h;
      handles.clear();
    }
  }(state));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(plain_spawn)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

void run_tracked(benchmark::State& state, std::shared_ptr<warden::task_scheduler> scheduler) {
  warden::runtime rt(with_workers(state));
  auto tracker = warden::task_tracker::builder()
                     .scheduler(std::move(scheduler))
                     .error_policy(std::make_shared<warden::log_only_policy>())
                     .build();
  rt.block_on([](benchmark::State& s, warden::task_tracker t) -> warden::task<void> {
    std::vector<warden::task_handle<void>> handles;
    handles.reserve(kBatch);
    for (auto _ : s) {
      for (int i = 0; i < kBatch; ++i) handles.push_back(t.spawn(empty_task()));
      for (auto& h : handles) (void)co_await h;
      handles.clear();
    }
  }(state, tracker));
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void tracked_spawn_unlimited(benchmark::State& state) {
  run_tracked(state, std::make_shared<warden::unlimited_scheduler>());
}
BENCHMARK(tracked_spawn_unlimited)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

void tracked_spawn_semaphore(benchmark::State& state) {
  // A limit above the batch: every task gets its permit at once (the fast path).
  run_tracked(state, std::make_shared<warden::semaphore_scheduler>(1024));
}
BENCHMARK(tracked_spawn_semaphore)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

void tracked_spawn_semaphore_contended(benchmark::State& state) {
  // A limit of 8 for batches of 256: most tasks wait for a permit (the slow path).
  run_tracked(state, std::make_shared<warden::semaphore_scheduler>(8));
}
BENCHMARK(tracked_spawn_semaphore_contended)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
