// warden::mutex: async, FIFO-fair mutual exclusion (SEMANTICS P5: fair, no
// barging by the releasing task; a waiter aborted while queued is removed;
// one aborted after being handed the lock passes it on).
#include "support/test_support.hpp"

#include <warden/sync/event.hpp>
#include <warden/sync/mutex.hpp>

#include <atomic>
#include <coroutine>
#include <mutex>
#include <optional>
#include <vector>

namespace {

using warden::task;

template <class Pred>
task<void> until(Pred done) {
  while (!done()) co_await warden::yield_now{};
}

struct order_log {
  std::mutex m;
  std::vector<int> ids;
  void add(int id) {
    std::lock_guard lock(m);
    ids.push_back(id);
  }
};

task<void> lock_and_record(warden::mutex* m, int id, order_log* log) {
  auto guard = co_await m->lock();
  log->add(id);
}

/// Increments `counter` `rounds` times under the lock, yielding inside the
/// critical section, and records overlaps.
task<void> increment(warden::mutex* m, int rounds, int* counter, std::atomic<int>* inside, std::atomic<int>* overlaps) {
  for (int i = 0; i < rounds; ++i) {
    warden::mutex_guard guard = co_await m->lock();
    if (inside->fetch_add(1) != 0) overlaps->fetch_add(1);
    const int seen = *counter;
    co_await warden::yield_now{};
    *counter = seen + 1;
    inside->fetch_sub(1);
  }
}

class sync_mutex_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P5: mutex — an uncontended lock completes at once; the guard unlocks on
// destruction; try_lock fails while held and succeeds when free.
TEST_P(sync_mutex_test, lock_yields_a_guard_that_unlocks_on_destruction) {
  warden::mutex m;
  run([&]() -> task<void> {
    {
      auto guard = co_await m.lock();
      EXPECT_TRUE(guard.owns_lock());
      EXPECT_EQ(guard.mutex(), &m);
      EXPECT_TRUE(m.is_locked());
      EXPECT_FALSE(m.try_lock().has_value());
    }
    EXPECT_FALSE(m.is_locked());
    auto again = m.try_lock();
    EXPECT_TRUE(again.has_value());
    EXPECT_TRUE(m.is_locked());
  });
  EXPECT_FALSE(m.is_locked());
}

// P5: mutex — mutual exclusion holds across workers, with awaits inside the
// critical section.
TEST_P(sync_mutex_test, only_one_task_is_inside_the_critical_section) {
  warden::mutex m;
  int counter = 0;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  constexpr int kTasks = 16;
  constexpr int kRounds = 200;
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < kTasks; ++i)
      handles.push_back(warden::spawn(increment(&m, kRounds, &counter, &inside, &overlaps)));
    for (auto& h : handles) co_await h;
  });
  EXPECT_EQ(counter, kTasks * kRounds);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.waiter_count(), 0u);
}

// P5: mutex — a waiter aborted while queued is just removed; the holder
// keeps the lock and the next waiter gets it.
TEST_P(sync_mutex_test, a_waiter_aborted_while_queued_is_removed) {
  warden::mutex m;
  order_log log;
  run([&]() -> task<void> {
    auto guard = co_await m.lock();
    auto a = warden::spawn(lock_and_record(&m, 1, &log));
    co_await until([&] { return m.waiter_count() == 1; });
    auto b = warden::spawn(lock_and_record(&m, 2, &log));
    co_await until([&] { return m.waiter_count() == 2; });
    a.abort();
    auto r = co_await a.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    EXPECT_EQ(m.waiter_count(), 1u);
    EXPECT_TRUE(m.is_locked());
    guard.unlock();
    co_await b;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{2}));
  EXPECT_FALSE(m.is_locked());
}

// P5: mutex — a task aborted while holding the guard unlocks (its frame's
// destruction destroys the guard).
TEST_P(sync_mutex_test, a_task_aborted_while_holding_the_lock_unlocks_it) {
  warden::mutex m;
  run([&]() -> task<void> {
    auto holder = warden::spawn([](warden::mutex* mu) -> task<void> {
      auto guard = co_await mu->lock();
      warden::event never;
      co_await never.wait();  // parked for good, holding the lock
    }(&m));
    co_await until([&] { return m.is_locked(); });
    holder.abort();
    (void)co_await holder.result();
    EXPECT_FALSE(m.is_locked());
    auto g = co_await m.lock();
    EXPECT_TRUE(g.owns_lock());
  });
}

// The guard is movable: the lock follows it; unlock() releases early; a
// moved-from or default guard owns nothing.
TEST_P(sync_mutex_test, a_guard_is_movable_and_can_unlock_early) {
  warden::mutex m;
  run([&]() -> task<void> {
    warden::mutex_guard outer;
    EXPECT_FALSE(outer.owns_lock());
    {
      auto inner = co_await m.lock();
      outer = std::move(inner);
      EXPECT_FALSE(inner.owns_lock());  // NOLINT(bugprone-use-after-move)
    }
    EXPECT_TRUE(m.is_locked());
    warden::mutex_guard moved(std::move(outer));
    EXPECT_TRUE(moved.owns_lock());
    moved.unlock();
    EXPECT_FALSE(moved.owns_lock());
    EXPECT_FALSE(m.is_locked());
    moved.unlock();  // a no-op
  });
}

INSTANTIATE_TEST_SUITE_P(workers, sync_mutex_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// Orders and hand-offs are deterministic with 0 or 1 worker: the test body
// runs on the only thread that runs tasks, so a task the body wakes cannot
// run before the body yields.
class sync_mutex_order_test : public sync_mutex_test {};

// P5: mutex is fair — waiters get the lock in the order they queued.
TEST_P(sync_mutex_order_test, waiters_get_the_lock_in_fifo_order) {
  warden::mutex m;
  order_log log;
  run([&]() -> task<void> {
    auto guard = co_await m.lock();
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 6; ++i) {
      handles.push_back(warden::spawn(lock_and_record(&m, i, &log)));
      co_await until([&] { return m.waiter_count() == static_cast<std::size_t>(i) + 1; });
    }
    guard.unlock();
    for (auto& h : handles) co_await h;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

// P5: no barging by the releasing task — unlocking with a waiter queued
// hands the lock over; the releaser's try_lock fails and its next lock()
// queues behind the waiter.
TEST_P(sync_mutex_order_test, the_releasing_task_cannot_barge_ahead_of_a_waiter) {
  warden::mutex m;
  order_log log;
  run([&]() -> task<void> {
    auto guard = co_await m.lock();
    auto waiter = warden::spawn(lock_and_record(&m, 1, &log));
    co_await until([&] { return m.waiter_count() == 1; });
    guard.unlock();
    EXPECT_TRUE(m.is_locked());              // handed to the waiter, not free
    EXPECT_FALSE(m.try_lock().has_value());  // no barging by try_lock either
    {
      auto again = co_await m.lock();  // queues behind the waiter
      log.add(0);
    }
    co_await waiter;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{1, 0}));
  EXPECT_FALSE(m.is_locked());
}

// P5: a waiter aborted after being handed the lock (before it ran) passes
// the lock on to the next waiter.
TEST_P(sync_mutex_order_test, a_waiter_aborted_after_the_hand_off_passes_the_lock_on) {
  warden::mutex m;
  order_log log;
  run([&]() -> task<void> {
    auto guard = co_await m.lock();
    auto first = warden::spawn(lock_and_record(&m, 1, &log));
    co_await until([&] { return m.waiter_count() == 1; });
    auto second = warden::spawn(lock_and_record(&m, 2, &log));
    co_await until([&] { return m.waiter_count() == 2; });
    guard.unlock();  // handed to `first`, which cannot run before we yield
    first.abort();
    auto r = co_await first.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    co_await second;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{2}));
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.waiter_count(), 0u);
}

// P5: with no other waiter, a handed-over lock whose new owner is aborted
// before running is unlocked.
TEST_P(sync_mutex_order_test, a_waiter_aborted_after_the_hand_off_unlocks_when_nobody_waits) {
  warden::mutex m;
  order_log log;
  run([&]() -> task<void> {
    auto guard = co_await m.lock();
    auto only = warden::spawn(lock_and_record(&m, 1, &log));
    co_await until([&] { return m.waiter_count() == 1; });
    guard.unlock();
    EXPECT_TRUE(m.is_locked());
    only.abort();
    (void)co_await only.result();
    EXPECT_FALSE(m.is_locked());
  });
  EXPECT_TRUE(log.ids.empty());
  EXPECT_TRUE(m.try_lock().has_value());
}

INSTANTIATE_TEST_SUITE_P(workers, sync_mutex_order_test, ::testing::Values<std::size_t>(0, 1),
                         warden::testkit::worker_name);

// try_lock and the uncontended lock work outside tasks; parking does not.
TEST(sync_mutex_misuse, parking_outside_a_task_throws_usage_error) {
  warden::mutex m;
  auto held = m.try_lock();
  ASSERT_TRUE(held.has_value());
  auto awaiter = m.lock();
  EXPECT_FALSE(awaiter.await_ready());
  EXPECT_THROW((void)awaiter.await_suspend(std::noop_coroutine()), warden::usage_error);
  EXPECT_EQ(m.waiter_count(), 0u);
  held.reset();
  EXPECT_FALSE(m.is_locked());
}

}  // namespace
