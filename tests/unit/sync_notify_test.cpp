// warden::notify: tokio Notify semantics (SEMANTICS P5: notify_one stores one
// permit; notify_all wakes only the tasks parked at that moment; aborted
// waiters consume nothing, or pass on what they were handed).
#include "support/test_support.hpp"

#include <warden/sync/notify.hpp>

#include <atomic>
#include <coroutine>
#include <mutex>
#include <vector>

namespace {

using warden::task;

template <class Pred>
task<void> until(Pred done) {
  while (!done()) co_await warden::yield_now{};
}

task<void> wait_and_count(warden::notify* n, std::atomic<int>* woken) {
  co_await n->notified();
  woken->fetch_add(1);
}

task<void> wait_and_record(warden::notify* n, int id, std::mutex* m, std::vector<int>* order) {
  co_await n->notified();
  std::lock_guard lock(*m);
  order->push_back(id);
}

/// Whether a stored permit exists; consumes it if so (a `notified()` whose
/// await_ready succeeds completes at once, without parking).
bool take_permit(warden::notify& n) { return n.notified().await_ready(); }

class sync_notify_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P5: notify_one with no waiter stores one permit; the next notified()
// completes at once and consumes it.
TEST_P(sync_notify_test, notify_one_with_no_waiter_stores_one_permit) {
  warden::notify n;
  n.notify_one();
  run([&]() -> task<void> {
    co_await n.notified();  // completes at once: the permit
    EXPECT_EQ(n.waiter_count(), 0u);
  });
  EXPECT_FALSE(take_permit(n));  // consumed
}

// P5: the permit is at most one: several notify_one calls with no waiter
// leave a single permit.
TEST_P(sync_notify_test, repeated_notify_one_with_no_waiter_stores_at_most_one_permit) {
  warden::notify n;
  n.notify_one();
  n.notify_one();
  n.notify_one();
  EXPECT_TRUE(take_permit(n));
  EXPECT_FALSE(take_permit(n));
}

// P5: notify_one wakes one parked waiter (not more) and stores no permit.
TEST_P(sync_notify_test, notify_one_wakes_exactly_one_parked_waiter) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 3; ++i) handles.push_back(warden::spawn(wait_and_count(&n, &woken)));
    co_await until([&] { return n.waiter_count() == 3; });
    n.notify_one();
    co_await until([&] { return woken.load() == 1; });
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_EQ(woken.load(), 1);
    EXPECT_EQ(n.waiter_count(), 2u);
    EXPECT_FALSE(take_permit(n));
    n.notify_one();
    n.notify_one();
    for (auto& h : handles) co_await h;
  });
  EXPECT_EQ(woken.load(), 3);
}

// P5: notify_all wakes only the tasks parked at that moment, stores no
// permit: a task parking afterwards waits for the next notification.
TEST_P(sync_notify_test, notify_all_wakes_only_the_tasks_parked_at_that_moment) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 40; ++i) handles.push_back(warden::spawn(wait_and_count(&n, &woken)));
    co_await until([&] { return n.waiter_count() == 40; });
    n.notify_all();
    for (auto& h : handles) co_await h;
    EXPECT_EQ(woken.load(), 40);
    EXPECT_EQ(n.waiter_count(), 0u);
    auto late = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_FALSE(late.is_finished());
    n.notify_one();
    co_await late;
  });
  EXPECT_EQ(woken.load(), 41);
}

// P5: notify_all with nobody parked stores nothing, and leaves an already
// stored permit in place.
TEST_P(sync_notify_test, notify_all_stores_no_permit_and_keeps_a_stored_one) {
  warden::notify n;
  n.notify_all();
  EXPECT_FALSE(take_permit(n));
  n.notify_one();
  n.notify_all();
  EXPECT_TRUE(take_permit(n));
}

// P5: a waiter aborted while parked is removed and consumes nothing: a
// later notify_one becomes the stored permit.
TEST_P(sync_notify_test, a_waiter_aborted_while_parked_consumes_no_notification) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto h = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    h.abort();
    auto r = co_await h.result();
    EXPECT_FALSE(r.has_value());
    EXPECT_EQ(n.waiter_count(), 0u);
    n.notify_one();
  });
  EXPECT_EQ(woken.load(), 0);
  EXPECT_TRUE(take_permit(n));
}

INSTANTIATE_TEST_SUITE_P(workers, sync_notify_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// Orders and hand-offs are deterministic with 0 or 1 worker: the test body
// runs on the only thread that runs tasks, so a woken task cannot run before
// the body yields.
class sync_notify_order_test : public sync_notify_test {};

// P5: notify_one wakes the waiters in FIFO order.
TEST_P(sync_notify_order_test, notify_one_wakes_waiters_in_the_order_they_parked) {
  warden::notify n;
  std::mutex m;
  std::vector<int> order;
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 5; ++i) {
      handles.push_back(warden::spawn(wait_and_record(&n, i, &m, &order)));
      co_await until([&] { return n.waiter_count() == static_cast<std::size_t>(i) + 1; });
    }
    for (int i = 0; i < 5; ++i) {
      n.notify_one();
      co_await handles[static_cast<std::size_t>(i)];
    }
  });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

// P5: a waiter handed a notification by notify_one but aborted before it ran
// passes the notification on to the next waiter.
TEST_P(sync_notify_order_test, a_waiter_aborted_after_notify_one_chose_it_passes_it_to_the_next) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto first = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    auto second = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 2; });
    n.notify_one();  // hands it to `first`, which cannot run before we yield
    first.abort();
    auto r = co_await first.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    co_await second;  // got the notification from `first`
  });
  EXPECT_EQ(woken.load(), 1);
  EXPECT_FALSE(take_permit(n));
}

// P5: with no other waiter, the aborted waiter's notification goes back as
// the stored permit.
TEST_P(sync_notify_order_test, a_waiter_aborted_after_notify_one_chose_it_restores_the_permit) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto only = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    n.notify_one();
    only.abort();
    auto r = co_await only.result();
    EXPECT_FALSE(r.has_value());
  });
  EXPECT_EQ(woken.load(), 0);
  EXPECT_TRUE(take_permit(n));
}

// P5: a waiter woken by notify_all and aborted before running passes nothing
// on: notify_all is for the tasks of the moment only.
TEST_P(sync_notify_order_test, a_waiter_aborted_after_notify_all_passes_nothing_on) {
  warden::notify n;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto first = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    n.notify_all();
    first.abort();
    (void)co_await first.result();
    auto later = warden::spawn(wait_and_count(&n, &woken));
    co_await until([&] { return n.waiter_count() == 1; });
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_FALSE(later.is_finished());
    later.abort();
    (void)co_await later.result();
  });
  EXPECT_EQ(woken.load(), 0);
  EXPECT_FALSE(take_permit(n));
}

INSTANTIATE_TEST_SUITE_P(workers, sync_notify_order_test, ::testing::Values<std::size_t>(0, 1),
                         warden::testkit::worker_name);

TEST(sync_notify_misuse, parking_outside_a_task_throws_usage_error) {
  warden::notify n;
  auto awaiter = n.notified();
  EXPECT_FALSE(awaiter.await_ready());
  EXPECT_THROW((void)awaiter.await_suspend(std::noop_coroutine()), warden::usage_error);
  EXPECT_EQ(n.waiter_count(), 0u);
  n.notify_one();
  EXPECT_TRUE(take_permit(n));  // the failed park changed nothing
}

}  // namespace
