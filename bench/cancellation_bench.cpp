// Benchmarks of cancellation tokens (Google Benchmark): the cost of the
// operations a token tree sees most — a child made and dropped, a callback
// registered and deregistered — and of cancelling a whole tree.
//
//   ./build/release/bench/warden_cancellation_bench
#include <warden/cancellation.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using warden::cancellation_registration;
using warden::cancellation_token;

// child_token() of a live root, then drop it (unlinked from the root).
void child_token_create_and_drop(benchmark::State& state) {
  cancellation_token root;
  for (auto _ : state) {
    cancellation_token child = root.child_token();
    benchmark::DoNotOptimize(child);
  }
}
BENCHMARK(child_token_create_and_drop);

// on_cancel on a live token, then destroy the registration (deregisters).
void on_cancel_register_and_deregister(benchmark::State& state) {
  cancellation_token token;
  int runs = 0;
  for (auto _ : state) {
    cancellation_registration registration = token.on_cancel([&runs] { ++runs; });
    benchmark::DoNotOptimize(registration);
  }
  benchmark::DoNotOptimize(runs);
}
BENCHMARK(on_cancel_register_and_deregister);

// is_cancelled() on a live token: the polling cost.
void is_cancelled_poll(benchmark::State& state) {
  cancellation_token token;
  for (auto _ : state) benchmark::DoNotOptimize(token.is_cancelled());
}
BENCHMARK(is_cancelled_poll);

// cancel() of a 1000-node tree (fan-out 10), with `range(0)` callbacks per
// node. Building the tree is not timed.
void cancel_tree_of_1000(benchmark::State& state) {
  constexpr std::size_t kNodes = 1000;
  const auto callbacks_per_node = static_cast<int>(state.range(0));
  int runs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<cancellation_token> nodes;
    nodes.reserve(kNodes);
    nodes.emplace_back();
    for (std::size_t i = 1; i < kNodes; ++i) nodes.push_back(nodes[(i - 1) / 10].child_token());
    std::vector<cancellation_registration> registrations;
    for (auto& node : nodes)
      for (int k = 0; k < callbacks_per_node; ++k) registrations.push_back(node.on_cancel([&runs] { ++runs; }));
    state.ResumeTiming();

    nodes.front().cancel();

    state.PauseTiming();
    registrations.clear();
    nodes.clear();
    state.ResumeTiming();
  }
  benchmark::DoNotOptimize(runs);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kNodes));
}
BENCHMARK(cancel_tree_of_1000)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
