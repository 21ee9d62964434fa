// Timers that come due together are woken in batches (time_driver::fire_until
// takes the wakers of 64 at a time from its list of due timers, then drops
// the lock to wake them). A sleeper aborted meanwhile, its timer still in
// that list, must be unlinked from the list, not from the wheel it already
// left; and a sleeper whose timer fired disarms without the driver's lock.
#include <warden/time.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "support/test_support.hpp"

namespace {

using warden::join_handle;
using warden::task;
using warden::testkit::quiet_options;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

struct round_state {
  test_event gate;
  warden::clock::time_point deadline;  // written before the gate opens
  std::vector<warden::abort_handle> handles;
  std::vector<std::size_t> partner;
  std::atomic<int> woke{0};
};

// Waits for the gate, sleeps until the shared deadline, then aborts its
// partner, which is likely still asleep with its timer among the due ones.
task<void> sleeper(round_state& s, std::size_t index) {
  co_await s.gate.wait();
  co_await warden::sleep_until(s.deadline);
  s.woke.fetch_add(1, std::memory_order_relaxed);
  s.handles[s.partner[index]].abort();
}

task<bool> sleeps_once_more() {
  co_await warden::sleep_for(std::chrono::milliseconds(1));
  co_return true;
}

TEST(timer_abort_stress, aborting_sleepers_whose_timers_are_being_fired_leaves_the_timers_consistent) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const int rounds = stress_iterations(40);
  constexpr std::size_t kSleepers = 1024;  // 16 batches of due timers
  for (int round = 0; round < rounds; ++round) {
    warden::runtime rt(quiet_options(2));
    round_state s;
    s.handles.resize(kSleepers);
    s.partner.resize(kSleepers);
    for (std::size_t i = 0; i < kSleepers; ++i) s.partner[i] = rng() % kSleepers;
    std::vector<join_handle<void>> joins;
    joins.reserve(kSleepers);
    for (std::size_t i = 0; i < kSleepers; ++i) {
      joins.push_back(rt.spawn(sleeper(s, i)));
      s.handles[i] = joins.back().get_abort_handle();
    }
    // A deadline a little ahead, so that most timers are armed and come due
    // together; its exact value only changes how often the race is hit.
    s.deadline = warden::clock::now() + std::chrono::milliseconds(2);
    s.gate.set();
    int finished = 0;
    int cancelled = 0;
    for (auto& j : joins) {
      try {
        j.join();
        ++finished;
      } catch (const warden::join_error& e) {
        ASSERT_TRUE(e.is_cancelled()) << e.what();
        ++cancelled;
      }
    }
    EXPECT_EQ(finished + cancelled, static_cast<int>(kSleepers)) << "round " << round;
    EXPECT_EQ(finished, s.woke.load()) << "round " << round;
    // The driver still works: a new timer fires.
    EXPECT_TRUE(rt.block_on(sleeps_once_more())) << "round " << round;
  }
}

}  // namespace
