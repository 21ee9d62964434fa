// local_executor: what a host pays to spawn and run an empty task
// (Google Benchmark).
//
//   ./build/release/bench/warden_local_executor_bench
//
// * spawn_run_in_own_context: one host call per task — enter an update
//   context, spawn, run the task, leave (the per-frame overhead included).
// * spawn_run_batched: many spawns in one context, run when it returns: the
//   cost per task alone (items/s).
// * wake_run: a parked task woken by the host and run to its next park.
#include <warden/embed/local_executor.hpp>

#include <benchmark/benchmark.h>

namespace {

warden::task<void> empty() { co_return; }

void spawn_run_in_own_context(benchmark::State& state) {
  warden::local_executor exec;
  for (auto _ : state) exec.run_update([&] { (void)exec.spawn(empty()); });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_run_in_own_context);

void spawn_run_batched(benchmark::State& state) {
  warden::local_executor exec;
  const auto batch = state.range(0);
  for (auto _ : state)
    exec.run_update([&] {
      for (std::int64_t i = 0; i < batch; ++i) (void)exec.spawn(empty());
    });
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(spawn_run_batched)->Arg(1000);

/// Parks forever, resuming once per wake: the host wakes it through the
/// waker it left.
struct park_here {
  warden::detail::waker* slot;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) { *slot = warden::detail::suspend_current(self); }
  void await_resume() const noexcept {}
};

void wake_run(benchmark::State& state) {
  warden::local_executor exec;
  warden::detail::waker w;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> warden::task<void> {
      for (;;) co_await park_here{&w};
    });
  });
  for (auto _ : state) exec.run_update([&] { w.wake(); });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(wake_run);

}  // namespace

BENCHMARK_MAIN();
