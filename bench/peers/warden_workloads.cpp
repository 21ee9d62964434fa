// warden's side of the peer benchmarks: the seven workloads of issue 7 on a
// runtime with 2 workers. See common.hpp for the command line and output.
//
// Timing: from submitting the root task (rt.spawn from the main thread) to
// the main thread seeing completion (a std::latch counted down by the last
// task to finish, or block_on's return for skynet). Runtime start-up and
// shutdown are outside the timed region. Handles of fire-and-forget tasks
// are dropped (detached), as a user would.
#include "common.hpp"

#include <warden/runtime.hpp>
#include <warden/sync/event.hpp>
#include <warden/sync/mpsc.hpp>
#include <warden/task.hpp>
#include <warden/time.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <latch>

namespace {

constexpr std::string_view peer = "warden";

/// Counts finishing tasks; the last one releases the main thread.
struct finish_line {
  explicit finish_line(std::uint64_t total) : remaining(total) {}
  void arrive() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) done.count_down();
  }
  std::atomic<std::uint64_t> remaining;
  std::latch done{1};
};

// ---- spawn_many
// The counter the workload increments is also how completion is seen: the
// task that brings it to n releases the main thread (one RMW per task, as
// in oneTBB's version, where task_group::wait does the counting).
warden::task<void> increment(std::atomic<std::uint64_t>& counter, std::uint64_t n, finish_line& finish) {
  // acq_rel: the last increment sees every earlier one before it releases.
  if (counter.fetch_add(1, std::memory_order_acq_rel) + 1 == n) finish.done.count_down();
  co_return;
}

warden::task<void> spawn_many_root(std::uint64_t n, std::atomic<std::uint64_t>& counter, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) warden::spawn(increment(counter, n, finish)).detach();
  co_return;
}

// ---- skynet
warden::task<std::uint64_t> skynet(std::uint64_t num, std::uint64_t size) {
  if (size == 1) co_return num;
  const std::uint64_t child = size / 10;
  std::array<warden::join_handle<std::uint64_t>, 10> handles;
  for (std::uint64_t i = 0; i < 10; ++i) handles[i] = warden::spawn(skynet(num + i * child, child));
  std::uint64_t sum = 0;
  for (auto& h : handles) sum += co_await h;
  co_return sum;
}

// ---- yield_many
warden::task<void> yielder(std::atomic<std::uint64_t>& yields, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::yields_per_task; ++i) co_await warden::yield_now{};
  yields.fetch_add(bench::yields_per_task, std::memory_order_relaxed);
  finish.arrive();
}

warden::task<void> yield_many_root(std::uint64_t n, std::atomic<std::uint64_t>& yields, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) warden::spawn(yielder(yields, finish)).detach();
  co_return;
}

// ---- chained_spawn
warden::task<void> chain_link(std::uint64_t i, std::uint64_t n, std::atomic<std::uint64_t>& ran, finish_line& finish) {
  ran.fetch_add(1, std::memory_order_relaxed);
  if (i + 1 < n)
    warden::spawn(chain_link(i + 1, n, ran, finish)).detach();
  else
    finish.arrive();
  co_return;
}

// ---- ping_pong
warden::task<void> pinger(warden::mpsc_sender<std::uint64_t> out, warden::mpsc_receiver<std::uint64_t> in,
                          std::atomic<std::uint64_t>& errors, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
    auto sent = co_await out.send(std::uint64_t{i});
    auto reply = co_await in.recv();
    if (!sent || !reply || *reply != i + 1) errors.fetch_add(1, std::memory_order_relaxed);
  }
  finish.arrive();
}

warden::task<void> ponger(warden::mpsc_receiver<std::uint64_t> in, warden::mpsc_sender<std::uint64_t> out,
                          std::atomic<std::uint64_t>& errors, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
    auto v = co_await in.recv();
    if (!v) {
      errors.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    auto sent = co_await out.send(*v + 1);
    if (!sent) errors.fetch_add(1, std::memory_order_relaxed);
  }
  finish.arrive();
}

warden::task<void> ping_pong_root(std::uint64_t pairs, std::atomic<std::uint64_t>& errors, finish_line& finish) {
  for (std::uint64_t i = 0; i < pairs; ++i) {
    auto [to_pong, from_ping] = warden::mpsc<std::uint64_t>(1);
    auto [to_ping, from_pong] = warden::mpsc<std::uint64_t>(1);
    warden::spawn(ponger(std::move(from_ping), std::move(to_ping), errors, finish)).detach();
    warden::spawn(pinger(std::move(to_pong), std::move(from_pong), errors, finish)).detach();
  }
  co_return;
}

// ---- timers
warden::task<void> sleeper(std::atomic<std::uint64_t>& early, finish_line& finish) {
  const auto start = bench::clock::now();
  co_await warden::sleep_for(bench::timer_sleep);
  if (bench::clock::now() - start < bench::timer_sleep) early.fetch_add(1, std::memory_order_relaxed);
  finish.arrive();
}

warden::task<void> timers_root(std::uint64_t n, std::atomic<std::uint64_t>& early, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) warden::spawn(sleeper(early, finish)).detach();
  co_return;
}

// ---- parked_memory
warden::task<void> parked_task(warden::event& ev, finish_line& finish) {
  co_await ev.wait();
  finish.arrive();
}

warden::task<void> parked_root(std::uint64_t n, warden::event& ev, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) warden::spawn(parked_task(ev, finish)).detach();
  co_return;
}

warden::runtime_options options() {
  warden::runtime_options o;
  o.worker_threads = bench::worker_threads;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const bench::args a = bench::parse(argc, argv);
  const std::uint64_t n = a.n;
  // State the tasks touch is declared before the runtime, so it outlives
  // every task (the last one to arrive may still be returning from the
  // latch when the main thread wakes).
  std::atomic<std::uint64_t> counter{0};
  finish_line finish(a.workload == "chained_spawn" ? 1 : a.workload == "ping_pong" ? 2 * n : n);
  warden::event ev;
  warden::runtime rt(options());
  double wall = 0;
  bool ok = false;
  std::optional<bench::parked> parked;

  if (a.workload == "spawn_many") {
    bench::stopwatch sw;
    rt.spawn(spawn_many_root(n, counter, finish)).detach();
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "skynet") {
    bench::stopwatch sw;
    const std::uint64_t sum = rt.block_on(skynet(0, n));
    wall = sw.ms();
    ok = sum == bench::skynet_expected(n);
  } else if (a.workload == "yield_many") {
    bench::stopwatch sw;
    rt.spawn(yield_many_root(n, counter, finish)).detach();
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n * bench::yields_per_task;
  } else if (a.workload == "chained_spawn") {
    bench::stopwatch sw;
    rt.spawn(chain_link(0, n, counter, finish)).detach();
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "ping_pong") {
    bench::stopwatch sw;
    rt.spawn(ping_pong_root(n, counter, finish)).detach();  // counter: errors
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "timers") {
    bench::stopwatch sw;
    rt.spawn(timers_root(n, counter, finish)).detach();  // counter: sleeps that ended early
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "parked_memory") {
    bench::parked p;
    p.baseline_kb = bench::rss_kb();
    bench::stopwatch sw;
    rt.spawn(parked_root(n, ev, finish)).detach();
    bench::wait_until([&] { return ev.waiter_count() == n; });
    p.parked_kb = bench::rss_kb();
    ev.set();
    finish.done.wait();
    wall = sw.ms();
    ok = finish.remaining.load() == 0;
    parked = p;
  }
  // Shutdown is not timed; give tasks that are finishing (after their last
  // arrive) time to end instead of reporting them as leaks.
  rt.shutdown(std::chrono::seconds(30));
  return bench::report(peer, a, wall, ok, parked);
}
