// Stress: when_any and when_all with children finishing, failing and parking
// in random interleavings, and the awaiting task aborted at random moments
// (SEMANTICS P7). After each round every child frame must be gone, and the
// outcome must come from a child that really finished that way.
#include "support/test_support.hpp"

#include <warden/combinators.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

using warden::testkit::hang_guard;

/// A child's failure, carrying which child threw.
struct child_failure : std::runtime_error {
  explicit child_failure(std::size_t i) : std::runtime_error("child failed"), index(i) {}
  std::size_t index;
};

enum class fate : std::uint8_t { value, failure, park };

/// What one round's children share with the checking code.
struct round_state {
  std::atomic<int> alive{0};
  test_event never;
  std::vector<std::atomic<bool>> finished;  // set just before a child returns or throws
  explicit round_state(std::size_t n) : finished(n) {}
};

// The frame is counted from its creation (the parameter), not from when its
// body starts: an aborted child may be mid-start on another worker when its
// parent's handle resolves, and must still be waited for.
task<int> child(round_state& round, live_counter frame, std::size_t index, fate f, int yields) {
  (void)frame;
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  if (f == fate::park) co_await round.never.wait();
  round.finished[index].store(true);
  if (f == fate::failure) throw child_failure(index);
  co_return static_cast<int>(index);
}

/// Random fates for `n` children, at least one of which is not `park` (or,
/// for when_all, at least one failure if any child parks).
std::vector<fate> draw_fates(std::mt19937_64& rng, std::size_t n, bool for_when_all) {
  std::vector<fate> fates(n);
  for (auto& f : fates) f = static_cast<fate>(rng() % 3);
  bool parks = false, fails = false, ends = false;
  for (fate f : fates) {
    parks = parks || f == fate::park;
    fails = fails || f == fate::failure;
    ends = ends || f != fate::park;
  }
  if (!ends || (for_when_all && parks && !fails)) fates[rng() % n] = fate::failure;
  return fates;
}

task<void> until_no_frame_left(const std::atomic<int>& alive) {
  while (alive.load(std::memory_order_acquire) != 0) co_await warden::yield_now{};
}

class combinators_race : public ::testing::TestWithParam<std::size_t> {};

// P7: when_any returns a child that really finished (with what it finished
// with), and no child frame is left when it returns.
TEST_P(combinators_race, when_any_winner_really_finished_and_no_frame_survives) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  hang_guard guard("when_any race, " + seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  const int rounds = stress_iterations(20000);
  int failures = 0;
  rt.block_on([&]() -> task<void> {
    for (int r = 0; r < rounds && failures < 5; ++r) {
      const std::size_t n = 2 + rng() % 4;
      round_state round(n);
      const std::vector<fate> fates = draw_fates(rng, n, false);
      std::vector<task<int>> tasks;
      for (std::size_t i = 0; i < n; ++i)
        tasks.push_back(child(round, live_counter(round.alive), i, fates[i], static_cast<int>(rng() % 4)));
      auto result = co_await warden::when_any(std::move(tasks));
      const std::size_t w = result.index();
      const bool ok = round.alive.load(std::memory_order_acquire) == 0 && w < n && fates[w] != fate::park &&
                      round.finished[w].load() && result.has_value() == (fates[w] == fate::value) &&
                      (result.has_value() ? result.get() == static_cast<int>(w) : [&] {
                        try {
                          std::rethrow_exception(result.exception());
                        } catch (const child_failure& e) {
                          return e.index == w;
                        } catch (...) {
                          return false;
                        }
                      }());
      if (!ok) {
        ++failures;
        ADD_FAILURE() << "round " << r << ": winner " << w << " of " << n << ", alive " << round.alive.load();
      }
      EXPECT_EQ(round.never.waiters(), 0u);
    }
  }());
}

// P7: when_all yields every value in order, or the exception of a child that
// really threw, with every other frame already destroyed at the catch.
TEST_P(combinators_race, when_all_first_failure_is_real_and_no_frame_survives) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  hang_guard guard("when_all race, " + seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  const int rounds = stress_iterations(20000);
  int failures = 0;
  rt.block_on([&]() -> task<void> {
    for (int r = 0; r < rounds && failures < 5; ++r) {
      const std::size_t n = 1 + rng() % 5;
      round_state round(n);
      const std::vector<fate> fates = draw_fates(rng, n, true);
      bool any_failure = false;
      for (fate f : fates) any_failure = any_failure || f == fate::failure;
      std::vector<task<int>> tasks;
      for (std::size_t i = 0; i < n; ++i)
        tasks.push_back(child(round, live_counter(round.alive), i, fates[i], static_cast<int>(rng() % 4)));
      bool ok = true;
      int alive_at_end = -1;
      try {
        std::vector<int> values = co_await warden::when_all(std::move(tasks));
        alive_at_end = round.alive.load(std::memory_order_acquire);
        ok = !any_failure && values.size() == n;
        for (std::size_t i = 0; ok && i < n; ++i) ok = values[i] == static_cast<int>(i);
      } catch (const child_failure& e) {
        alive_at_end = round.alive.load(std::memory_order_acquire);
        ok = e.index < n && fates[e.index] == fate::failure && round.finished[e.index].load();
      }
      ok = ok && alive_at_end == 0;
      if (!ok) {
        ++failures;
        ADD_FAILURE() << "round " << r << " of " << n << " children: alive at end " << alive_at_end;
      }
    }
  }());
}

// Cancellation: the task awaiting a combinator is aborted at a random moment
// (before, during or after the children run); every child frame is then
// destroyed and nothing stays parked.
TEST_P(combinators_race, aborting_the_awaiting_task_at_random_leaves_no_child_behind) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  hang_guard guard("combinator abort race, " + seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  const int rounds = stress_iterations(20000);
  auto awaits_any = [](round_state& round, std::vector<fate> fates, std::vector<int> yields) -> task<void> {
    std::vector<task<int>> tasks;
    for (std::size_t i = 0; i < fates.size(); ++i)
      tasks.push_back(child(round, live_counter(round.alive), i, fates[i], yields[i]));
    (void)co_await warden::when_any(std::move(tasks));
  };
  auto awaits_all = [](round_state& round, std::vector<fate> fates, std::vector<int> yields) -> task<void> {
    std::vector<task<int>> tasks;
    for (std::size_t i = 0; i < fates.size(); ++i)
      tasks.push_back(child(round, live_counter(round.alive), i, fates[i], yields[i]));
    try {
      (void)co_await warden::when_all(std::move(tasks));
    } catch (const child_failure&) {
    }
  };
  rt.block_on([&]() -> task<void> {
    for (int r = 0; r < rounds; ++r) {
      const std::size_t n = 1 + rng() % 4;
      round_state round(n);
      const bool any = rng() % 2 == 0;
      std::vector<fate> fates = draw_fates(rng, n, !any);
      std::vector<int> yields(n);
      for (int& y : yields) y = static_cast<int>(rng() % 4);
      auto parent = any ? warden::spawn(awaits_any(round, std::move(fates), std::move(yields)))
                        : warden::spawn(awaits_all(round, std::move(fates), std::move(yields)));
      const int wait = static_cast<int>(rng() % 6);
      for (int i = 0; i < wait; ++i) co_await warden::yield_now{};
      parent.abort();
      auto outcome = co_await parent.result();
      if (!outcome.has_value()) {
        EXPECT_TRUE(outcome.error().is_cancelled());
      }
      co_await until_no_frame_left(round.alive);
      EXPECT_EQ(round.never.waiters(), 0u) << "round " << r;
    }
  }());
}

INSTANTIATE_TEST_SUITE_P(workers, combinators_race, ::testing::Values<std::size_t>(0, 1, 4),
                         warden::testkit::worker_name);

}  // namespace
