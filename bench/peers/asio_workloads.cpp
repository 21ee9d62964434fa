// Boost.Asio 1.81's side of the peer benchmarks: C++20 coroutines
// (awaitable / co_spawn) on a thread_pool(2). Every co_spawn uses the pool's
// executor with `execution::blocking.never`, so a spawn from inside the pool
// really enqueues instead of running the child inline. See common.hpp for
// the command line and output.
//
// Idioms used where Asio has no direct primitive:
// * skynet: a parent awaits its 10 children with a ranged
//   experimental::parallel_group (wait_for_all).
// * yield: `co_await post(executor)` (the continuation is queued behind
//   everything already queued).
// * ping_pong: experimental::concurrent_channel with capacity 1.
// * parked_memory: the "event" is one experimental::concurrent_channel
//   nobody sends on; tasks park in async_receive and are released by
//   close(), which is thread-safe (a shared steady_timer is not: cancel()
//   racing an async_wait on another thread can miss the wait).
#include "common.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <vector>

namespace asio = boost::asio;

namespace {

constexpr std::string_view peer = "asio";

using executor =
    decltype(asio::require(std::declval<asio::thread_pool::executor_type>(), asio::execution::blocking.never));
template <class T = void>
using awaitable = asio::awaitable<T, executor>;
constexpr asio::use_awaitable_t<executor> use_aw;
using timer =
    asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, executor>;
using channel = asio::experimental::concurrent_channel<executor, void(boost::system::error_code, std::uint64_t)>;

struct finish_line {
  explicit finish_line(std::uint64_t total) : remaining(total) {}
  void arrive() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) done.count_down();
  }
  std::atomic<std::uint64_t> remaining;
  std::latch done{1};
};

// ---- spawn_many
awaitable<> increment(std::atomic<std::uint64_t>& counter, finish_line& finish) {
  counter.fetch_add(1, std::memory_order_relaxed);
  finish.arrive();
  co_return;
}

awaitable<> spawn_many_root(executor ex, std::uint64_t n, std::atomic<std::uint64_t>& counter, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) asio::co_spawn(ex, increment(counter, finish), asio::detached);
  co_return;
}

// ---- skynet
awaitable<std::uint64_t> skynet(executor ex, std::uint64_t num, std::uint64_t size) {
  if (size == 1) co_return num;
  const std::uint64_t child = size / 10;
  using op = decltype(asio::co_spawn(ex, skynet(ex, 0, 1), asio::deferred));
  std::vector<op> ops;
  ops.reserve(10);
  for (std::uint64_t i = 0; i < 10; ++i)
    ops.push_back(asio::co_spawn(ex, skynet(ex, num + i * child, child), asio::deferred));
  auto [order, errors, values] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                     .async_wait(asio::experimental::wait_for_all(), use_aw);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (errors[i]) std::rethrow_exception(errors[i]);
    sum += values[i];
  }
  co_return sum;
}

// ---- yield_many
awaitable<> yielder(executor ex, std::atomic<std::uint64_t>& yields, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::yields_per_task; ++i) co_await asio::post(ex, use_aw);
  yields.fetch_add(bench::yields_per_task, std::memory_order_relaxed);
  finish.arrive();
}

awaitable<> yield_many_root(executor ex, std::uint64_t n, std::atomic<std::uint64_t>& yields, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) asio::co_spawn(ex, yielder(ex, yields, finish), asio::detached);
  co_return;
}

// ---- chained_spawn
awaitable<> chain_link(executor ex, std::uint64_t i, std::uint64_t n, std::atomic<std::uint64_t>& ran,
                       finish_line& finish) {
  ran.fetch_add(1, std::memory_order_relaxed);
  if (i + 1 < n)
    asio::co_spawn(ex, chain_link(ex, i + 1, n, ran, finish), asio::detached);
  else
    finish.arrive();
  co_return;
}

// ---- ping_pong
struct pair_channels {
  explicit pair_channels(executor ex) : to_pong(ex, 1), to_ping(ex, 1) {}
  channel to_pong;
  channel to_ping;
};

awaitable<> pinger(std::shared_ptr<pair_channels> ch, std::atomic<std::uint64_t>& errors, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
    co_await ch->to_pong.async_send(boost::system::error_code{}, i, use_aw);
    const std::uint64_t reply = co_await ch->to_ping.async_receive(use_aw);
    if (reply != i + 1) errors.fetch_add(1, std::memory_order_relaxed);
  }
  finish.arrive();
}

awaitable<> ponger(std::shared_ptr<pair_channels> ch, finish_line& finish) {
  for (std::uint64_t i = 0; i < bench::round_trips_per_pair; ++i) {
    const std::uint64_t v = co_await ch->to_pong.async_receive(use_aw);
    co_await ch->to_ping.async_send(boost::system::error_code{}, v + 1, use_aw);
  }
  finish.arrive();
}

awaitable<> ping_pong_root(executor ex, std::uint64_t pairs, std::atomic<std::uint64_t>& errors, finish_line& finish) {
  for (std::uint64_t i = 0; i < pairs; ++i) {
    auto ch = std::make_shared<pair_channels>(ex);
    asio::co_spawn(ex, ponger(ch, finish), asio::detached);
    asio::co_spawn(ex, pinger(ch, errors, finish), asio::detached);
  }
  co_return;
}

// ---- timers
awaitable<> sleeper(executor ex, std::atomic<std::uint64_t>& early, finish_line& finish) {
  const auto start = bench::clock::now();
  timer t(ex, bench::timer_sleep);
  co_await t.async_wait(use_aw);
  if (bench::clock::now() - start < bench::timer_sleep) early.fetch_add(1, std::memory_order_relaxed);
  finish.arrive();
}

awaitable<> timers_root(executor ex, std::uint64_t n, std::atomic<std::uint64_t>& early, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) asio::co_spawn(ex, sleeper(ex, early, finish), asio::detached);
  co_return;
}

// ---- parked_memory
using event_channel = asio::experimental::concurrent_channel<executor, void(boost::system::error_code)>;

struct shared_event {
  explicit shared_event(executor ex) : ch(ex, 0) {}
  event_channel ch;
  std::atomic<std::uint64_t> parked{0};
};

awaitable<> parked_task(shared_event& ev, finish_line& finish) {
  ev.parked.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  co_await ev.ch.async_receive(asio::redirect_error(use_aw, ec));  // ends with channel_closed
  finish.arrive();
}

awaitable<> parked_root(executor ex, std::uint64_t n, shared_event& ev, finish_line& finish) {
  for (std::uint64_t i = 0; i < n; ++i) asio::co_spawn(ex, parked_task(ev, finish), asio::detached);
  co_return;
}

}  // namespace

int main(int argc, char** argv) {
  const bench::args a = bench::parse(argc, argv);
  const std::uint64_t n = a.n;
  // State the tasks touch is declared before the pool, so it outlives every
  // task (the last one to arrive may still be returning from the latch when
  // the main thread wakes).
  std::atomic<std::uint64_t> counter{0};
  finish_line finish(a.workload == "chained_spawn" ? 1 : a.workload == "ping_pong" ? 2 * n : n);
  asio::thread_pool pool(bench::worker_threads);
  const executor ex = asio::require(pool.get_executor(), asio::execution::blocking.never);
  double wall = 0;
  bool ok = false;
  std::optional<bench::parked> parked;

  if (a.workload == "spawn_many") {
    bench::stopwatch sw;
    asio::co_spawn(ex, spawn_many_root(ex, n, counter, finish), asio::detached);
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "skynet") {
    bench::stopwatch sw;
    auto result = asio::co_spawn(ex, skynet(ex, 0, n), asio::use_future);
    const std::uint64_t sum = result.get();
    wall = sw.ms();
    ok = sum == bench::skynet_expected(n);
  } else if (a.workload == "yield_many") {
    bench::stopwatch sw;
    asio::co_spawn(ex, yield_many_root(ex, n, counter, finish), asio::detached);
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n * bench::yields_per_task;
  } else if (a.workload == "chained_spawn") {
    bench::stopwatch sw;
    asio::co_spawn(ex, chain_link(ex, 0, n, counter, finish), asio::detached);
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == n;
  } else if (a.workload == "ping_pong") {
    bench::stopwatch sw;
    asio::co_spawn(ex, ping_pong_root(ex, n, counter, finish), asio::detached);
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "timers") {
    bench::stopwatch sw;
    asio::co_spawn(ex, timers_root(ex, n, counter, finish), asio::detached);
    finish.done.wait();
    wall = sw.ms();
    ok = counter.load() == 0;
  } else if (a.workload == "parked_memory") {
    shared_event ev(ex);  // lives in the pool's context: destroyed before the pool
    bench::parked p;
    p.baseline_kb = bench::rss_kb();
    bench::stopwatch sw;
    asio::co_spawn(ex, parked_root(ex, n, ev, finish), asio::detached);
    bench::wait_until([&] { return ev.parked.load() == n; });
    p.parked_kb = bench::rss_kb();
    ev.ch.close();  // a task that receives after this completes at once
    finish.done.wait();
    wall = sw.ms();
    ok = finish.remaining.load() == 0;
    parked = p;
    pool.join();  // before `ev` (a channel of the pool) is destroyed
  }
  if (a.workload != "parked_memory") pool.join();
  return bench::report(peer, a, wall, ok, parked);
}
