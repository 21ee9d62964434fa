// oneTBB 2021.8's side of the peer benchmarks: tbb::task_group inside a
// task_arena of concurrency 2 (the main thread enters the arena with
// execute() and is one of the two workers, as is usual with TBB). See
// common.hpp for the command line and output.
//
// TBB tasks run to completion: they cannot suspend, so yielding, waiting on
// a channel, sleeping without holding a thread, or parking on an event are
// not expressible with task_group (those workloads print SKIP, exit 3).
#include "common.hpp"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <cstdint>

namespace {

constexpr std::string_view peer = "tbb";

std::uint64_t skynet(std::uint64_t num, std::uint64_t size) {
  if (size == 1) return num;
  const std::uint64_t child = size / 10;
  std::uint64_t sums[10];
  tbb::task_group tg;
  for (std::uint64_t i = 0; i < 10; ++i) tg.run([&sums, i, num, child] { sums[i] = skynet(num + i * child, child); });
  tg.wait();
  std::uint64_t sum = 0;
  for (std::uint64_t s : sums) sum += s;
  return sum;
}

struct chain {
  tbb::task_group& tg;
  std::atomic<std::uint64_t>& ran;
  std::uint64_t n;
  void link(std::uint64_t i) const {
    ran.fetch_add(1, std::memory_order_relaxed);
    if (i + 1 < n) tg.run([this, i] { link(i + 1); });
  }
};

}  // namespace

int main(int argc, char** argv) {
  const bench::args a = bench::parse(argc, argv);
  const std::uint64_t n = a.n;
  if (a.workload == "yield_many")
    return bench::skip(peer, a, "TBB tasks run to completion and cannot yield (no suspension point in task_group)");
  if (a.workload == "ping_pong")
    return bench::skip(peer, a,
                       "TBB has no suspendable channel: a blocking receive holds one of the 2 threads, so 2000 tasks "
                       "deadlock");
  if (a.workload == "timers")
    return bench::skip(peer, a, "TBB has no timers: a sleeping task holds its thread (100000 x 10 ms on 2 threads)");
  if (a.workload == "parked_memory")
    return bench::skip(peer, a,
                       "TBB tasks cannot park on an event without holding a thread (resumable tasks, "
                       "tbb::task::suspend, give each suspended task its own thread stack: not a parked task)");

  // The process-wide limit and the arena both allow 2 threads: main + 1 worker.
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, bench::worker_threads);
  tbb::task_arena arena(bench::worker_threads);
  arena.initialize();
  arena.execute([] {});  // start the worker outside the timed region
  double wall = 0;
  bool ok = false;

  if (a.workload == "spawn_many") {
    std::atomic<std::uint64_t> counter{0};
    bench::stopwatch sw;
    arena.execute([&] {
      tbb::task_group tg;
      tg.run([&] {
        for (std::uint64_t i = 0; i < n; ++i) tg.run([&counter] { counter.fetch_add(1, std::memory_order_relaxed); });
      });
      tg.wait();
    });
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "skynet") {
    std::uint64_t sum = 0;
    bench::stopwatch sw;
    arena.execute([&] { sum = skynet(0, n); });
    wall = sw.ms();
    ok = sum == bench::skynet_expected(n);
  } else if (a.workload == "chained_spawn") {
    std::atomic<std::uint64_t> ran{0};
    bench::stopwatch sw;
    arena.execute([&] {
      tbb::task_group tg;
      const chain c{tg, ran, n};
      tg.run([&c] { c.link(0); });
      tg.wait();
    });
    wall = sw.ms();
    ok = ran.load() == n;
  }
  return bench::report(peer, a, wall, ok);
}
