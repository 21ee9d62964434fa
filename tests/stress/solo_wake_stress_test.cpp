// Stress: the solo path of capacity-1 channels ("Solo" in task_header.cpp),
// where a detached receiver parks and is woken with plain stores on its
// state word. Races: shutdown's sweeps against solo parks and wakes, the
// deferred park's commit against a send that lands just before it, wakes
// from threads that may not take the solo path (a plain thread, a worker of
// another runtime). Every value arrives once and in order, every frame is
// destroyed, nothing hangs (SEMANTICS P6, R4).
#include "support/test_support.hpp"

#include <warden/sync/mpsc.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::hang_guard;
using warden::testkit::live_counter;
using warden::testkit::random_spin;
using warden::testkit::seed_trace;
using warden::testkit::spin;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

using sender = warden::mpsc_sender<std::uint64_t>;
using receiver = warden::mpsc_receiver<std::uint64_t>;

/// Counts round trips and checks their values, across all pairs of a round.
struct tally {
  std::atomic<std::uint64_t> trips{0};
  std::atomic<int> errors{0};
};

/// Sends 0, 1, 2, ... and expects each back plus one, `trips` times (0:
/// until the channels close). Spins a random moment between steps so that
/// sends land before, during and after the peer's park.
task<void> pinger(sender out, receiver in, std::uint64_t trips, std::uint64_t seed, tally* t, live_counter live) {
  (void)live;
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0; trips == 0 || i < trips; ++i) {
    spin(random_spin(rng, 8));
    auto sent = co_await out.send(std::uint64_t{i});
    if (!sent) co_return;  // closed: shutdown is under way
    auto reply = co_await in.recv();
    if (!reply) co_return;
    if (*reply != i + 1) t->errors.fetch_add(1, std::memory_order_relaxed);
    t->trips.fetch_add(1, std::memory_order_relaxed);
  }
}

task<void> ponger(receiver in, sender out, std::uint64_t seed, tally* t, live_counter live) {
  (void)live;
  std::mt19937_64 rng(seed);
  std::uint64_t expected = 0;
  for (;;) {
    auto v = co_await in.recv();
    if (!v) co_return;  // the pinger is done (or gone)
    if (*v != expected++) t->errors.fetch_add(1, std::memory_order_relaxed);
    spin(random_spin(rng, 8));
    auto sent = co_await out.send(*v + 1);
    if (!sent) co_return;
  }
}

/// Spawns one detached pinger/ponger pair on `a` and `b` (the same runtime
/// or two).
void spawn_pair(warden::runtime& a, warden::runtime& b, std::uint64_t trips, std::mt19937_64& rng, tally& t,
                std::atomic<int>& live) {
  auto [to_pong, from_ping] = warden::mpsc<std::uint64_t>(1);
  auto [to_ping, from_pong] = warden::mpsc<std::uint64_t>(1);
  b.spawn(ponger(std::move(from_ping), std::move(to_ping), rng(), &t, live_counter(live))).detach();
  a.spawn(pinger(std::move(to_pong), std::move(from_pong), trips, rng(), &t, live_counter(live))).detach();
}

/// Runs `pairs` pairs of `trips` round trips each to the end: pingers on
/// `a` and pongers on `b`, every other pair the other way round.
void run_pairs_to_the_end(warden::runtime& a, warden::runtime& b, int pairs, std::uint64_t trips, std::mt19937_64& rng,
                          tally& t) {
  std::atomic<int> live{0};
  for (int p = 0; p < pairs; ++p) spawn_pair(p % 2 == 0 ? a : b, p % 2 == 0 ? b : a, trips, rng, t, live);
  while (t.trips.load(std::memory_order_relaxed) < pairs * trips || live.load() != 0) std::this_thread::yield();
}

// Shutdown's sweeps abort tasks that park and wake each other with plain
// stores: the sweep blocks the solo path first, so no abort is undone and no
// task is queued twice. Every frame is destroyed and shutdown returns.
TEST(solo_wake_stress, shutdown_racing_solo_ping_pong_destroys_every_frame) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> step{0};
  hang_guard guard("shutdown_racing_solo_ping_pong", step);
  const int iterations = stress_iterations(200);
  for (int it = 0; it < iterations; ++it, step.store(it)) {
    std::atomic<int> live{0};
    tally t;
    {
      warden::runtime rt(warden::testkit::quiet_options(it % 2 == 0 ? 2 : 4));
      for (int p = 0; p < 32; ++p) spawn_pair(rt, rt, 0, rng, t, live);
      // Let the pairs run a while (a random number of round trips), then
      // shut down in the middle of their traffic.
      const std::uint64_t until = rng() % 2000;
      while (t.trips.load(std::memory_order_relaxed) < until) std::this_thread::yield();
      spin(random_spin(rng, 12));
      rt.shutdown(std::chrono::nanoseconds::zero());
    }
    ASSERT_EQ(live.load(std::memory_order_acquire), 0) << "iteration " << it;
    ASSERT_EQ(t.errors.load(), 0) << "iteration " << it;
  }
}

// Pairs on one runtime, run to the end: the deferred park's commit races
// the peer's send (random spins move the send around the park); a lost wake
// hangs, a duplicated or reordered value shows as an error.
TEST(solo_wake_stress, ping_pong_pairs_lose_no_wake_and_keep_order) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> step{0};
  hang_guard guard("ping_pong_pairs_lose_no_wake", step);
  const int iterations = stress_iterations(100);
  constexpr int kPairs = 16;
  constexpr std::uint64_t kTrips = 200;
  for (int it = 0; it < iterations; ++it, step.store(it)) {
    tally t;
    {
      warden::runtime rt(warden::testkit::quiet_options(it % 3 == 0 ? 1 : it % 3 == 1 ? 2 : 4));
      run_pairs_to_the_end(rt, rt, kPairs, kTrips, rng, t);
    }
    ASSERT_EQ(t.errors.load(), 0) << "iteration " << it;
    ASSERT_EQ(t.trips.load(), kPairs * kTrips) << "iteration " << it;
  }
}

// A pinger on one runtime and its ponger on another: each wakes the other
// from a worker that is not the woken task's, which must not take the
// solo path (it takes the RMW one, which clears SOLO).
TEST(solo_wake_stress, pairs_across_two_runtimes_lose_no_wake) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> step{0};
  hang_guard guard("pairs_across_two_runtimes", step);
  const int iterations = stress_iterations(50);
  constexpr int kPairs = 8;
  constexpr std::uint64_t kTrips = 300;
  for (int it = 0; it < iterations; ++it, step.store(it)) {
    tally t;
    {
      warden::runtime a(warden::testkit::quiet_options(2));
      warden::runtime b(warden::testkit::quiet_options(it % 2 == 0 ? 1 : 2));
      run_pairs_to_the_end(a, b, kPairs, kTrips, rng, t);
    }
    ASSERT_EQ(t.errors.load(), 0) << "iteration " << it;
    ASSERT_EQ(t.trips.load(), kPairs * kTrips) << "iteration " << it;
  }
}

task<void> count_in_order(receiver in, tally* t, live_counter live) {
  (void)live;
  std::uint64_t expected = 0;
  while (auto v = co_await in.recv()) {
    if (*v != expected) t->errors.fetch_add(1, std::memory_order_relaxed);
    ++expected;
    t->trips.fetch_add(1, std::memory_order_relaxed);
  }
}

// A plain thread feeds a detached receiver (solo when it parks) with
// try_send: its wakes must take the RMW path. Every value arrives once, in
// order.
TEST(solo_wake_stress, plain_thread_sender_wakes_parked_receiver) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> step{0};
  hang_guard guard("plain_thread_sender", step);
  const int iterations = stress_iterations(40);
  constexpr std::uint64_t kValues = 500;
  for (int it = 0; it < iterations; ++it, step.store(it)) {
    std::atomic<int> live{0};
    tally t;
    {
      warden::runtime rt(warden::testkit::quiet_options(it % 2 == 0 ? 1 : 2));
      auto [tx, rx] = warden::mpsc<std::uint64_t>(1);
      rt.spawn(count_in_order(std::move(rx), &t, live_counter(live))).detach();
      for (std::uint64_t i = 0; i < kValues; ++i) {
        spin(random_spin(rng, 6));
        while (!tx.try_send(std::uint64_t{i})) std::this_thread::yield();  // full: the receiver is behind
      }
      tx = sender{};  // closes the channel: the receiver sees the end
      while (live.load() != 0) std::this_thread::yield();
    }
    ASSERT_EQ(t.trips.load(), kValues) << "iteration " << it;
    ASSERT_EQ(t.errors.load(), 0) << "iteration " << it;
  }
}

}  // namespace
