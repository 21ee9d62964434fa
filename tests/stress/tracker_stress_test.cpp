// task_tracker under races: several plain threads spawn into one tree,
// abort handles, cancel task tokens and child trackers, while the main
// thread joins the root in the middle of it (SEMANTICS T6, T8, T9).
//   - join returns, and at that moment every admitted task has ended;
//   - the identity issued = success + failed + cancelled + rejected holds,
//     active = queued = 0, at the root (children roll up into it);
//   - no task is lost: every handle resolves, and the outcomes the handles
//     report add up to the root's counters kind by kind.
#include "support/test_support.hpp"

#include <warden/supervise/tracker.hpp>

#include <algorithm>
#include <atomic>
#include <expected>
#include <latch>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::cancellable_result;
using warden::cancellation_token;
using warden::task;
using warden::task_tracker;

task<int> succeeds_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  co_return 1;
}

task<int> throws_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  throw std::runtime_error("boom");
}

task<std::expected<int, std::string>> errs_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  co_return std::unexpected(std::string("bad"));
}

task<cancellable_result<int>> watches_token(cancellation_token token, int yields) {
  for (int i = 0; i < yields; ++i) {
    if (token.is_cancelled()) co_return cancellable_result<int>::cancelled();
    co_await warden::yield_now{};
  }
  co_return cancellable_result<int>::ok(1);
}

struct tally {
  std::uint64_t success = 0, failed = 0, cancelled = 0, rejected = 0;
};

/// One spawner thread's handles (int and expected results side by side).
struct held {
  std::vector<warden::task_handle<int>> ints;
  std::vector<warden::task_handle<std::expected<int, std::string>>> fallible;

  template <class H>
  static void count(H& h, tally& t) {
    auto got = h.join();
    if (got.has_value()) {
      ++t.success;
      return;
    }
    if (got.error().is_cancelled()) ++t.cancelled;
    if (got.error().is_failed() || got.error().is_panicked()) ++t.failed;
    if (got.error().is_rejected()) ++t.rejected;
  }
};

class tracker_stress : public ::testing::TestWithParam<std::size_t> {};

/// One tree, `rounds` operations over kThreads threads, the root joined
/// once every thread is three quarters through.
void race_one_tree(std::uint64_t seed, std::size_t workers, int rounds) {
  constexpr int kThreads = 3;
  const int per_thread = rounds / kThreads;

  warden::runtime rt(warden::testkit::quiet_options(workers));
  auto root = task_tracker::builder()
                  .name("root")
                  .scheduler(std::make_shared<warden::semaphore_scheduler>(3))
                  .error_policy(std::make_shared<warden::retry_policy>(
                      warden::retry_options{.max_attempts = 2, .initial_backoff = std::chrono::nanoseconds(0)}))
                  .runtime(rt)
                  .build();
  std::mutex trackers_lock;
  std::vector<task_tracker> trackers{root, root.child_tracker(), root.child_tracker(), root.child_tracker()};

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<int> progress{0};
  std::latch most_done(kThreads);
  std::vector<held> per(kThreads);
  warden::testkit::hang_guard guard("tracker stress", progress);

  auto spawner = [&](int index) {
    std::mt19937_64 rng(seed + static_cast<std::uint64_t>(index));
    held& mine = per[static_cast<std::size_t>(index)];
    for (int op = 0; op < per_thread; ++op) {
      if (op == per_thread * 3 / 4) most_done.count_down();
      progress.fetch_add(1, std::memory_order_relaxed);
      task_tracker target = root;
      {
        std::lock_guard lock(trackers_lock);
        target = trackers[rng() % trackers.size()];
      }
      const int yields = static_cast<int>(rng() % 3);
      const unsigned choice = static_cast<unsigned>(rng() % 100);
      try {
        if (choice < 20) {
          mine.ints.push_back(target.spawn(succeeds_after(yields)));
        } else if (choice < 35) {
          mine.ints.push_back(target.spawn([yields] { return throws_after(yields); }));  // retried once
        } else if (choice < 45) {
          mine.fallible.push_back(target.spawn(errs_after(yields)));
        } else if (choice < 60) {
          mine.ints.push_back(
              target.spawn_cancellable([yields](cancellation_token t) { return watches_token(t, yields); }));
        } else {
          if (choice < 70 && !mine.ints.empty()) {
            mine.ints[rng() % mine.ints.size()].abort();
          } else if (choice < 85 && !mine.ints.empty()) {
            mine.ints[rng() % mine.ints.size()].cancellation_token().cancel();
          } else if (choice < 88) {
            std::lock_guard lock(trackers_lock);
            const std::size_t victim = 1 + rng() % (trackers.size() - 1);
            trackers[victim].cancel();
            trackers[victim] = root.child_tracker();  // throws once root is closed
          }
          continue;
        }
        accepted.fetch_add(1, std::memory_order_relaxed);
      } catch (const warden::tracker_closed&) {
        // The tracker was cancelled or joined meanwhile: refused, never counted.
      }
    }
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(spawner, i);
  most_done.wait();
  rt.block_on(root.join());  // races the last quarter of the spawns
  const warden::tracker_metrics_snapshot at_join = root.metrics()->snapshot();
  for (auto& t : threads) t.join();

  EXPECT_EQ(at_join.pending(), 0u);
  EXPECT_EQ(at_join.issued, at_join.ended());
  const warden::tracker_metrics_snapshot end = root.metrics()->snapshot();
  EXPECT_EQ(end, at_join);  // nothing admitted after the join
  EXPECT_EQ(end.issued, accepted.load());
  EXPECT_EQ(end.active, 0u);
  EXPECT_EQ(end.queued, 0u);

  tally seen;
  for (held& h : per) {
    for (auto& x : h.ints) held::count(x, seen);
    for (auto& x : h.fallible) held::count(x, seen);
  }
  EXPECT_EQ(seen.success, end.success);
  EXPECT_EQ(seen.failed, end.failed);
  EXPECT_EQ(seen.cancelled, end.cancelled);
  EXPECT_EQ(seen.rejected, end.rejected);
}

TEST_P(tracker_stress, spawn_cancel_abort_and_join_racing_in_one_tree_lose_nothing) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  // 5 trees of 12,000 operations each in release builds (fewer under sanitizers).
  const int rounds = std::max(warden::testkit::stress_iterations(12000), 3000);
  for (std::uint64_t tree = 0; tree < 5; ++tree) {
    SCOPED_TRACE("tree " + std::to_string(tree));
    race_one_tree(seed + tree * 16, GetParam(), rounds);
    if (::testing::Test::HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(workers, tracker_stress, ::testing::Values<std::size_t>(1, 2, 4),
                         warden::testkit::worker_name);

}  // namespace
