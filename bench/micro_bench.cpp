// Micro-benchmarks of warden's hot paths (Google Benchmark).
//
//   ./dev bench --micro               # all
//   ./dev bench --micro --benchmark_filter=spawn
//
// Each benchmark runs its loop inside a task on a runtime with the given
// number of workers (the argument), timed in real time. Comparisons with the
// peer runtimes live in the workload drivers (a separate issue).
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

warden::task<void> empty() { co_return; }

warden::runtime_options with_workers(const benchmark::State& state) {
  warden::runtime_options o;
  o.worker_threads = static_cast<std::size_t>(state.range(0));
  return o;
}

// One spawn, then await its handle: the latency of a spawn+join round trip.
void spawn_join(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    for (auto _ : s) co_await warden::spawn(empty());
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_join)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// Spawn a batch of 1000, then join them all: spawn throughput.
void spawn_batch(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    std::vector<warden::join_handle<void>> handles;
    handles.reserve(1000);
    for (auto _ : s) {
      for (int i = 0; i < 1000; ++i) handles.push_back(warden::spawn(empty()));
      for (auto& h : handles) co_await h;
      handles.clear();
    }
  }(state));
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(spawn_batch)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// yield_now: suspend, go to the back of the run queue, be polled again.
void yield_round_trip(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    for (auto _ : s) co_await warden::yield_now{};
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(yield_round_trip)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// block_on from a plain thread: spawn, wake the thread, return the value.
void block_on_round_trip(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  for (auto _ : state) rt.block_on(empty());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(block_on_round_trip)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// A synchronous await of a nested task (frame allocation + symmetric transfer).
void await_nested(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> warden::task<void> {
    for (auto _ : s) co_await empty();
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(await_nested)->Arg(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
