// Boost.Fiber 1.81's side of the peer benchmarks: the work_stealing
// scheduler on 2 threads (the main thread and one helper, both running the
// algorithm; default `suspend = false`, so idle threads spin, as Boost ships
// it). See common.hpp for the command line and output.
//
// Every fiber gets a 16 KiB fixedsize_stack (the Boost.Fiber skynet example
// uses 8 KiB pooled stacks): the default 128 KiB stack would be mmap'ed per
// fiber by malloc and 100,000 fibers exceed vm.max_map_count.
// * Completion: the last fiber to finish notifies a fiber condition variable
//   the main fiber waits on (a std::latch would block the main thread, one
//   of the two workers).
// * skynet: a parent starts 10 fibers and join()s them.
// * yield: boost::this_fiber::yield() (back of the ready queue).
// * ping_pong: buffered_channel<uint64_t>(2), which holds 1 value (the ring
//   keeps one slot free; capacity must be a power of two).
// * parked_memory: fibers wait on one fiber condition_variable.
#include "common.hpp"

#include <boost/fiber/algo/work_stealing.hpp>
#include <boost/fiber/all.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fibers = boost::fibers;

namespace {

constexpr std::string_view peer = "fiber";
constexpr std::size_t stack_size = 16 * 1024;

template <class F>
void launch(F&& f) {
  fibers::fiber(std::allocator_arg, fibers::fixedsize_stack(stack_size), std::forward<F>(f)).detach();
}

/// A fiber-aware one-shot signal (mutex + condition variable + flag).
struct signal {
  void set() {
    {
      std::unique_lock lock(mutex);
      done = true;
    }
    cv.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex);
    cv.wait(lock, [this] { return done; });
  }
  fibers::mutex mutex;
  fibers::condition_variable cv;
  bool done = false;
};

struct finish_line {
  explicit finish_line(std::uint64_t total) : remaining(total) {}
  void arrive() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) done.set();
  }
  std::atomic<std::uint64_t> remaining;
  signal done;
};

std::uint64_t skynet(std::uint64_t num, std::uint64_t size) {
  if (size == 1) return num;
  const std::uint64_t child = size / 10;
  std::uint64_t sums[10];
  fibers::fiber children[10];
  for (std::uint64_t i = 0; i < 10; ++i)
    children[i] = fibers::fiber(std::allocator_arg, fibers::fixedsize_stack(stack_size),
                                [&sums, i, num, child] { sums[i] = skynet(num + i * child, child); });
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < 10; ++i) {
    children[i].join();
    sum += sums[i];
  }
  return sum;
}

void chain_link(std::uint64_t i, std::uint64_t n, std::atomic<std::uint64_t>& ran, finish_line& finish) {
  ran.fetch_add(1, std::memory_order_relaxed);
  if (i + 1 < n)
    launch([i, n, &ran, &finish] { chain_link(i + 1, n, ran, finish); });
  else
    finish.arrive();
}

struct pair_channels {
  fibers::buffered_channel<std::uint64_t> to_pong{2};
  fibers::buffered_channel<std::uint64_t> to_ping{2};
};

struct parked_event {
  fibers::mutex mutex;
  fibers::condition_variable cv;
  bool set = false;
  std::uint64_t parked = 0;  // under mutex
};

}  // namespace

int main(int argc, char** argv) {
  const bench::args a = bench::parse(argc, argv);
  const std::uint64_t n = a.n;

  // Both threads must install work_stealing(2) (it waits for all of them).
  signal stop;
  std::thread helper([&stop] {
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(bench::worker_threads);
    stop.wait();
  });
  fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(bench::worker_threads);

  std::atomic<std::uint64_t> counter{0};
  finish_line finish(a.workload == "chained_spawn" ? 1 : a.workload == "ping_pong" ? 2 * n : n);
  std::vector<std::unique_ptr<pair_channels>> channels;
  parked_event ev;
  double wall = 0;
  bool ok = false;
  std::optional<bench::parked> parked;

  if (a.workload == "spawn_many") {
    bench::stopwatch sw;
    launch([n, &counter, &finish] {
      for (std::uint64_t i = 0; i < n; ++i)
        launch([&counter, &finish] {
          counter.fetch_add(1, std::memory_order_relaxed);
          finish.arrive();
        });
    });
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "skynet") {
    std::uint64_t sum = 0;
    bench::stopwatch sw;
    fibers::fiber root(std::allocator_arg, fibers::fixedsize_stack(stack_size), [&sum, n] { sum = skynet(0, n); });
    root.join();
    wall = sw.ms();
    ok = sum == bench::skynet_expected(n);
  } else if (a.workload == "yield_many") {
    bench::stopwatch sw;
    launch([n, &counter, &finish] {
      for (std::uint64_t i = 0; i < n; ++i)
        launch([&counter, &finish] {
          for (std::uint64_t y = 0; y < bench::yields_per_task; ++y) boost::this_fiber::yield();
          counter.fetch_add(bench::yields_per_task, std::memory_order_relaxed);
          finish.arrive();
        });
    });
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n * bench::yields_per_task;
  } else if (a.workload == "chained_spawn") {
    bench::stopwatch sw;
    launch([n, &counter, &finish] { chain_link(0, n, counter, finish); });
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "ping_pong") {
    bench::stopwatch sw;
    launch([n, &channels, &counter, &finish] {
      channels.reserve(n);
      for (std::uint64_t p = 0; p < n; ++p) {
        channels.push_back(std::make_unique<pair_channels>());
        pair_channels* ch = channels.back().get();
        launch([ch, &finish] {
          for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
            std::uint64_t v = 0;
            ch->to_pong.pop(v);
            ch->to_ping.push(v + 1);
          }
          finish.arrive();
        });
        launch([ch, &counter, &finish] {
          for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
            ch->to_pong.push(i);
            std::uint64_t reply = 0;
            if (ch->to_ping.pop(reply) != fibers::channel_op_status::success || reply != i + 1)
              counter.fetch_add(1, std::memory_order_relaxed);
          }
          finish.arrive();
        });
      }
    });
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "timers") {
    bench::stopwatch sw;
    launch([n, &counter, &finish] {
      for (std::uint64_t i = 0; i < n; ++i)
        launch([&counter, &finish] {
          const auto start = bench::clock::now();
          boost::this_fiber::sleep_for(bench::timer_sleep);
          if (bench::clock::now() - start < bench::timer_sleep) counter.fetch_add(1, std::memory_order_relaxed);
          finish.arrive();
        });
    });
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "parked_memory") {
    bench::parked p;
    p.baseline_kb = bench::rss_kb();
    bench::stopwatch sw;
    launch([n, &ev, &finish] {
      for (std::uint64_t i = 0; i < n; ++i)
        launch([&ev, &finish] {
          {
            std::unique_lock lock(ev.mutex);
            ++ev.parked;
            ev.cv.wait(lock, [&ev] { return ev.set; });
          }
          finish.arrive();
        });
    });
    // The main fiber polls with fiber sleeps, so this thread keeps running fibers.
    for (;;) {
      {
        std::unique_lock lock(ev.mutex);
        if (ev.parked == n) break;
      }
      boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
    }
    p.parked_kb = bench::rss_kb();
    {
      std::unique_lock lock(ev.mutex);
      ev.set = true;
    }
    ev.cv.notify_all();
    finish.done.wait();
    wall = sw.ms();
    ok = finish.remaining.load() == 0;
    parked = p;
  }
  stop.set();
  helper.join();
  return bench::report(peer, a, wall, ok, parked);
}
