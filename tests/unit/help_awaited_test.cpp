// Awaiting a task that has not started yet (join_handle.hpp, "Awaiting a
// task that has not started yet"; runtime_core.hpp, help_awaited): with
// worker threads the awaiting task runs it itself (stashing or running its
// younger siblings); current-thread mode keeps spawn order; nesting is
// bounded; stashed tasks are never lost.
#include "support/test_support.hpp"

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace {

using warden::task;

class help_awaited_workers : public ::testing::TestWithParam<std::size_t> {};

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

// One worker: nothing can steal (and no worker looks for work), so the
// awaiting task runs each child it just spawned inside the await of that
// child: the first await runs child 0 alone (its siblings wait in the
// worker's stash), the next awaits run the others. Without help all three
// would have run when the first await returns (they start after the awaiting
// task suspends).
TEST(help_awaited, one_worker_runs_each_never_started_child_inside_its_await) {
  warden::runtime rt{warden::testkit::quiet_options(1)};
  start_log log;
  std::vector<int> seen;
  rt.block_on(spawn_three_then_await_the_first(log, seen));
  EXPECT_EQ(seen, (std::vector<int>{0}));
  EXPECT_EQ(log.order, (std::vector<int>{0, 1, 2}));
}

task<int> spawn_three_await_in(start_log& log, std::vector<int>& seen_at_first_await, std::vector<int> awaits) {
  std::vector<warden::join_handle<int>> handles;
  for (int i = 0; i < 3; ++i) handles.push_back(warden::spawn(record(log, i)));
  int sum = 0;
  for (const int i : awaits) {
    sum += co_await handles[static_cast<std::size_t>(i)];
    if (seen_at_first_await.empty()) {
      std::lock_guard lock(log.mutex);
      seen_at_first_await = log.order;
    }
  }
  co_return sum;
}

task<int> await_a_spawned(start_log& log, std::vector<int>& seen_at_first_await, std::vector<int> awaits) {
  co_return co_await warden::spawn(spawn_three_await_in(log, seen_at_first_await, std::move(awaits)));
}

// The same one level down: a task that itself runs inside its awaiter's
// await (a help level above 0, whose first await claims from the one-call
// await path), in spawn order and out of it: each child still runs inside
// its own await (the one awaited first alone), and every value arrives.
TEST(help_awaited, one_worker_runs_each_child_inside_its_await_one_level_down) {
  for (const auto& awaits : {std::vector<int>{0, 1, 2}, std::vector<int>{2, 0, 1}, std::vector<int>{1, 2, 0}}) {
    warden::runtime rt{warden::testkit::quiet_options(1)};
    start_log log;
    std::vector<int> seen;
    EXPECT_EQ(rt.block_on(await_a_spawned(log, seen, awaits)), 3);
    EXPECT_EQ(seen, (std::vector<int>{awaits[0]}));
    EXPECT_EQ(log.order, awaits);
  }
}

task<int> abort_own_task_then_return(warden::join_handle<int>* self, int value) {
  self->abort();  // while running: too late to cancel a body that ends now
  co_return value;
}

task<int> await_children_with_odd_states(start_log& log, std::vector<int>& seen_at_first_await) {
  // Child 1 has one more reference (an abort handle) when its await takes
  // it; child 2 is aborted through its own handle during the run that ends
  // it. Neither is the one-call path's common case (await_now compares the
  // state whole): both take the general one, and each still runs inside
  // its own await and yields its value.
  warden::join_handle<int> h2;
  auto h0 = warden::spawn(record(log, 0));
  auto h1 = warden::spawn(record(log, 1));
  h2 = warden::spawn(abort_own_task_then_return(&h2, 2));
  const warden::abort_handle extra = h1.get_abort_handle();
  int sum = co_await h0;
  {
    std::lock_guard lock(log.mutex);
    seen_at_first_await = log.order;
  }
  sum += co_await h1;
  EXPECT_TRUE(extra.is_finished());
  sum += co_await h2;
  EXPECT_TRUE(h2.is_finished());
  co_return sum;
}

task<int> await_a_spawned_with_odd_states(start_log& log, std::vector<int>& seen_at_first_await) {
  co_return co_await warden::spawn(await_children_with_odd_states(log, seen_at_first_await));
}

// One level down (so the awaits take the one-call path's stash first).
TEST(help_awaited, children_with_an_extra_reference_or_aborted_during_their_run_yield_their_values) {
  warden::runtime rt{warden::testkit::quiet_options(1)};
  start_log log;
  std::vector<int> seen;
  EXPECT_EQ(rt.block_on(await_a_spawned_with_odd_states(log, seen)), 3);
  EXPECT_EQ(seen, (std::vector<int>{0}));
  EXPECT_EQ(log.order, (std::vector<int>{0, 1}));
}

task<void> set_it(warden::event& ev) {
  ev.set();
  co_return;
}

// The siblings stashed by the first await are given back to the queue when
// the awaiting task suspends on something else, so one of them can wake it.
task<int> stash_then_wait_for_a_sibling(start_log& log) {
  warden::event ev;
  auto h0 = warden::spawn(record(log, 0));
  auto h1 = warden::spawn(set_it(ev));
  auto h2 = warden::spawn(record(log, 2));
  const int first = co_await h0;
  co_await ev.wait();  // only h1 sets it: it must run while we are parked
  co_await h1;
  co_return first + co_await h2;
}

TEST_P(help_awaited_workers, stashed_siblings_run_while_the_awaiting_task_is_parked) {
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
  start_log log;
  EXPECT_EQ(rt.block_on(stash_then_wait_for_a_sibling(log)), 2);
}

// Stashed siblings that are never awaited still run: their handles are
// dropped (detached) after the parent's poll gave them back.
task<void> stash_then_drop(start_log& log, warden::event& first, warden::event& second) {
  auto h0 = warden::spawn(record(log, 0));
  auto h1 = warden::spawn(set_it(first));
  auto h2 = warden::spawn(set_it(second));
  co_await h0;
}

task<void> drop_then_wait(start_log& log, warden::event& first, warden::event& second) {
  co_await warden::spawn(stash_then_drop(log, first, second));
  co_await first.wait();
  co_await second.wait();
}

task<void> nested_stashes(start_log& log, int level) {
  if (level == 0) {
    log.add(0);
    co_return;
  }
  warden::event ev;
  auto a = warden::spawn(nested_stashes(log, level - 1));
  auto b = warden::spawn(set_it(ev));
  auto c = warden::spawn(nested_stashes(log, level - 1));
  co_await a;
  co_await ev.wait();  // set by a sibling stashed at this level
  co_await c;
  co_await b;
}

TEST_P(help_awaited_workers, stashed_siblings_that_are_never_awaited_still_run) {
  // Declared before the runtime: detached tasks may still run until its
  // destructor has shut it down.
  start_log log;
  warden::event first;
  warden::event second;
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
  rt.block_on(drop_then_wait(log, first, second));  // returns once both ran
  EXPECT_EQ(log.order, (std::vector<int>{0}));
}

// Every level stashes a sibling that the level then waits for: each level's
// stash goes back when that level's task parks, outer levels' stashes stay.
TEST_P(help_awaited_workers, nested_stashes_are_given_back_level_by_level) {
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
  start_log log;
  rt.block_on(nested_stashes(log, 6));
  EXPECT_EQ(log.order.size(), 64u);
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

// Each level awaits a child it just spawned: far deeper than the nesting
// bound, so the bound (not the stack) decides where helping stops.
TEST_P(help_awaited_workers, a_deep_chain_of_awaited_spawns_completes) {
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
  EXPECT_EQ(rt.block_on(chain(5000)), 5000u);
}

INSTANTIATE_TEST_SUITE_P(workers, help_awaited_workers, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
