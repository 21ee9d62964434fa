// Channel benchmarks (Google Benchmark): mpsc ping-pong latency, unbounded
// mpsc throughput, broadcast fan-out. The argument is the number of worker
// threads (0: current-thread mode); times are real (wall-clock) time.
//
//   ./build/release/bench/warden_channel_bench
#include <warden/sync/broadcast.hpp>
#include <warden/sync/mpsc.hpp>
#include <warden/warden.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

using warden::task;

warden::runtime_options with_workers(const benchmark::State& state) {
  warden::runtime_options o;
  o.worker_threads = static_cast<std::size_t>(state.range(0));
  return o;
}

constexpr int batch = 1000;

/// Answers every ping with a pong until the pings stop.
task<void> ponger(warden::mpsc_receiver<int> pings, warden::mpsc_sender<int> pongs) {
  while (std::optional<int> v = co_await pings.recv()) (void)co_await pongs.send(*v + 1);
}

// One round trip: send on a capacity-1 channel, the other task receives and
// answers on another capacity-1 channel, receive the answer.
void mpsc_ping_pong(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> task<void> {
    auto [ping_tx, ping_rx] = warden::mpsc<int>(1);
    auto [pong_tx, pong_rx] = warden::mpsc<int>(1);
    auto other = warden::spawn(ponger(std::move(ping_rx), std::move(pong_tx)));
    int v = 0;
    for (auto _ : s) {
      (void)co_await ping_tx.send(v);
      v = *co_await pong_rx.recv();
    }
    ping_tx = {};
    co_await other;
    benchmark::DoNotOptimize(v);
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(mpsc_ping_pong)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

task<void> produce(warden::mpsc_sender<int> tx, int count) {
  for (int i = 0; i < count; ++i) (void)tx.try_send(i);
  co_return;
}

// Unbounded throughput: a producer task sends a batch while this task
// receives it. Items: messages.
void mpsc_unbounded_throughput(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> task<void> {
    auto [tx, rx] = warden::mpsc_unbounded<int>();
    long sum = 0;
    for (auto _ : s) {
      auto producer = warden::spawn(produce(tx, batch));
      for (int i = 0; i < batch; ++i) sum += *co_await rx.recv();
      co_await producer;
    }
    benchmark::DoNotOptimize(sum);
  }(state));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(mpsc_unbounded_throughput)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

task<long> read_batch(warden::broadcast_receiver<int>* rx) {
  long sum = 0;
  for (int i = 0; i < batch; ++i) {
    auto r = co_await rx->recv();
    if (r) sum += *r;
  }
  co_return sum;
}

// Broadcast to 4 receivers (each its own task); capacity covers a batch, so
// nobody lags. Items: messages sent (each delivered 4 times).
void broadcast_to_four(benchmark::State& state) {
  warden::runtime rt(with_workers(state));
  rt.block_on([](benchmark::State& s) -> task<void> {
    auto [tx, first] = warden::broadcast<int>(batch);
    std::vector<warden::broadcast_receiver<int>> receivers;
    receivers.push_back(std::move(first));
    for (int i = 0; i < 3; ++i) receivers.push_back(tx.subscribe());
    long sum = 0;
    for (auto _ : s) {
      std::vector<warden::join_handle<long>> readers;
      for (auto& rx : receivers) readers.push_back(warden::spawn(read_batch(&rx)));
      for (int i = 0; i < batch; ++i) (void)tx.send(i);
      for (auto& r : readers) sum += co_await r;
    }
    benchmark::DoNotOptimize(sum);
  }(state));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(broadcast_to_four)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
