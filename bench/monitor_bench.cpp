// Monitored spawn (task_monitor::spawn_finite_task) against a plain spawn:
// time per task, spawn to completion, in batches of 256 awaited together.
//
//   ./build/release/bench/warden_monitor_bench
//
// The argument is the worker count (0 = current-thread mode).
#include <warden/supervise/monitor.hpp>
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

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
      for (int i = 0; i < kBatch; ++i) handles.push_back(warden::spawn(empty_task(), {.name = "plain"}));
      for (auto& h : handles) co_await h;
      handles.clear();
    }
  }(state));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(plain_spawn)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

void monitored_spawn(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  warden::task_monitor monitor(rt);
  rt.block_on([](benchmark::State& s, warden::task_monitor& m) -> warden::task<void> {
    std::vector<warden::background_task_handle> handles;
    handles.reserve(kBatch);
    for (auto _ : s) {
      for (int i = 0; i < kBatch; ++i) handles.push_back(m.spawn_finite_task("monitored", empty_task()));
      for (auto& h : handles)
        while (!h.is_finished()) co_await warden::yield_now{};
      handles.clear();
    }
  }(state, monitor));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(monitored_spawn)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
