// Awaiting a task that has not started yet (join_handle.hpp, "Awaiting a
// task that has not started yet"; runtime_core.hpp, help_awaited): with
// worker threads the awaiting task runs it, and its younger siblings, itself;
// current-thread mode keeps spawn order; nesting is bounded.
#include "support/test_support.hpp"

#include <cstdint>
#include <mutex>
#include <vector>

namespace {

using warden::task;

struct start_log {
  std::mutex mutex;
  std::vector<int> order;
  void add(int i) {
    std::lock_guard lock(mutex);
    order.push_back(i);
  }
};

task<int> record(start_log& log, int i) {
  log.add(i);
  co_return i;
}

task<void> spawn_three_then_await_the_first(start_log& log, std::vector<int>& seen_at_first_await) {
  auto h0 = warden::spawn(record(log, 0));
  auto h1 = warden::spawn(record(log, 1));
  auto h2 = warden::spawn(record(log, 2));
  const int first = co_await h0;
  {
    std::lock_guard lock(log.mutex);
    seen_at_first_await = log.order;
  }
  const int rest = co_await h1 + co_await h2;
  EXPECT_EQ(first + rest, 3);
}

// One worker: nothing can steal, so the awaiting task runs the children it
// just spawned, newest first, and all three have run when its first await
// returns (without help they would start oldest first, after it suspends).
TEST(help_awaited, one_worker_runs_never_started_children_newest_first_inside_the_await) {
  warden::runtime rt{warden::testkit::quiet_options(1)};
  start_log log;
  std::vector<int> seen;
  rt.block_on(spawn_three_then_await_the_first(log, seen));
  EXPECT_EQ(seen, (std::vector<int>{2, 1, 0}));
}

TEST(help_awaited, current_thread_mode_starts_children_in_spawn_order) {
  warden::runtime rt{warden::testkit::quiet_options(0)};
  start_log log;
  std::vector<int> seen;
  rt.block_on(spawn_three_then_await_the_first(log, seen));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), 0);  // the awaited child started first
  EXPECT_EQ(log.order, (std::vector<int>{0, 1, 2}));
}

task<std::uint64_t> chain(std::uint64_t depth) {
  if (depth == 0) co_return 0;
  auto child = warden::spawn(chain(depth - 1));
  co_return 1 + co_await child;
}

class help_awaited_workers : public ::testing::TestWithParam<std::size_t> {};

// Each level awaits a child it just spawned: far deeper than the nesting
// bound, so the bound (not the stack) decides where helping stops.
TEST_P(help_awaited_workers, a_deep_chain_of_awaited_spawns_completes) {
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
  EXPECT_EQ(rt.block_on(chain(5000)), 5000u);
}

INSTANTIATE_TEST_SUITE_P(workers, help_awaited_workers, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
