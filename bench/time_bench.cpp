// Timer benchmarks: arming and firing timers through the wheel.
//
//   ./build/release/bench/warden_time_bench
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

using namespace std::chrono_literals;

warden::task<void> sleeper(std::chrono::milliseconds d) { co_await warden::sleep_for(d); }

// 10,000 tasks each arm a timer (1..100 ms) and are woken when it fires, on
// the paused clock (so the figure is the wheel and scheduling cost, not the
// wall-clock wait).
void timers_10k_armed_and_fired(benchmark::State& state) {
  warden::runtime_options o;
  o.worker_threads = 0;
  o.start_paused = true;
  warden::runtime rt(o);
  for (auto _ : state) {
    rt.block_on([]() -> warden::task<void> {
      std::vector<warden::join_handle<void>> handles;
      handles.reserve(10'000);
      for (int i = 0; i < 10'000; ++i)
        handles.push_back(warden::spawn(sleeper(std::chrono::milliseconds(1 + i % 100))));
      for (auto& h : handles) co_await h;
    }());
  }
  state.SetItemsProcessed(state.iterations() * 10'000);
}
BENCHMARK(timers_10k_armed_and_fired)->Unit(benchmark::kMillisecond);

// Arm and disarm without firing: a sleep that is cancelled by a timeout
// finishing first (timer arm + cancel in the wheel).
void timeout_not_reached(benchmark::State& state) {
  warden::runtime rt({.worker_threads = 1});
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    auto quick = []() -> warden::task<int> { co_return 1; };
    for (auto _ : s) benchmark::DoNotOptimize(co_await warden::timeout(1s, quick()));
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(timeout_not_reached)->UseRealTime();

// One real 1 ms sleep on a worker (latency of the driver's wake-up).
void sleep_1ms_real(benchmark::State& state) {
  warden::runtime rt({.worker_threads = 1});
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    for (auto _ : s) co_await warden::sleep_for(1ms);
  }(state));
}
BENCHMARK(sleep_1ms_real)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
