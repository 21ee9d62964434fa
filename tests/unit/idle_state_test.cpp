// The runtime's idle state (src/runtime/idle_state.hpp): the counts of
// unparked, searching and woken workers that decide whom a push wakes and
// whether a busy worker may keep awaited children to itself (the stash,
// runtime_core.hpp). A worker picked from the sleepers is *woken*: it counts
// as looking for work for every wake decision (no second wake is sent while
// it is on its way) but not for all_busy until its thread runs again.
#include "support/test_support.hpp"

#include "runtime/idle_state.hpp"

namespace {

using warden::detail::idle_state;

TEST(idle_state, starts_with_every_worker_busy_and_nobody_to_wake) {
  idle_state idle(2);
  EXPECT_TRUE(idle.all_busy());
  EXPECT_FALSE(idle.should_notify());
  EXPECT_FALSE(idle.should_notify_unfenced());
  EXPECT_EQ(idle.pick_sleeper(), -1);
}

TEST(idle_state, a_sleeper_is_woken_once_and_counts_as_busy_until_its_thread_runs) {
  idle_state idle(2);
  idle.register_sleeper(1, false);
  EXPECT_FALSE(idle.all_busy());
  EXPECT_TRUE(idle.should_notify());
  ASSERT_EQ(idle.pick_sleeper(), 1);
  // On its way: no second wake, no other searcher (one per two workers),
  // but the busy worker may keep stashing.
  EXPECT_TRUE(idle.all_busy());
  EXPECT_FALSE(idle.should_notify());
  EXPECT_FALSE(idle.should_notify_unfenced());
  EXPECT_FALSE(idle.try_start_searching());
  // Its thread runs: it searches now, which stops the stashing.
  EXPECT_FALSE(idle.cancel_sleep(1));
  EXPECT_FALSE(idle.all_busy());
  EXPECT_FALSE(idle.should_notify());
  EXPECT_TRUE(idle.stop_searching());  // the last searcher found work
  EXPECT_TRUE(idle.all_busy());
}

TEST(idle_state, a_sleeper_leaving_on_its_own_is_busy_again) {
  idle_state idle(2);
  idle.register_sleeper(0, false);
  EXPECT_TRUE(idle.cancel_sleep(0));
  EXPECT_TRUE(idle.all_busy());
  EXPECT_EQ(idle.pick_sleeper(), -1);
}

TEST(idle_state, a_searcher_going_to_sleep_was_the_last_searcher) {
  idle_state idle(2);
  ASSERT_TRUE(idle.try_start_searching());
  EXPECT_FALSE(idle.all_busy());
  EXPECT_FALSE(idle.try_start_searching());  // at most one per two workers
  EXPECT_TRUE(idle.register_sleeper(0, true));
  EXPECT_TRUE(idle.should_notify());
}

TEST(idle_state, a_woken_worker_on_its_way_keeps_the_last_searcher_from_being_last) {
  idle_state idle(4);
  idle.register_sleeper(3, false);
  idle.register_sleeper(2, false);
  ASSERT_EQ(idle.pick_sleeper(), 2);
  EXPECT_EQ(idle.pick_sleeper(), -1);       // one wake at a time
  EXPECT_FALSE(idle.all_busy());            // worker 3 still sleeps
  ASSERT_TRUE(idle.try_start_searching());  // 2 of 4 look: the limit
  EXPECT_FALSE(idle.try_start_searching());
  EXPECT_FALSE(idle.stop_searching());  // the woken one will look
  EXPECT_FALSE(idle.cancel_sleep(2));   // ... and now does
  EXPECT_TRUE(idle.stop_searching());
  EXPECT_TRUE(idle.should_notify());  // worker 3 still sleeps
  ASSERT_EQ(idle.pick_sleeper(), 3);
  EXPECT_TRUE(idle.all_busy());
}

}  // namespace
