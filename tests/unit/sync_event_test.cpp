// warden::event: a manual-reset event (SEMANTICS P5: event wakes the right
// waiters exactly once; waiters aborted while parked are removed).
#include "support/test_support.hpp"

#include <warden/sync/event.hpp>

#include <atomic>
#include <coroutine>
#include <thread>
#include <vector>

namespace {

using warden::task;

/// Yields until `done()` holds: lets other tasks run, with no sleeps.
template <class Pred>
task<void> until(Pred done) {
  while (!done()) co_await warden::yield_now{};
}

task<void> wait_and_count(warden::event* ev, std::atomic<int>* woken) {
  co_await ev->wait();
  woken->fetch_add(1);
}

class sync_event_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P5: event — waiting on a set event completes at once (no parking).
TEST_P(sync_event_test, waiting_on_a_set_event_completes_at_once) {
  warden::event ev;
  ev.set();
  warden::event born_set(true);
  EXPECT_TRUE(born_set.is_set());
  run([&]() -> task<void> {
    co_await ev.wait();
    co_await born_set.wait();
    EXPECT_EQ(ev.waiter_count(), 0u);
  });
  // The fast path does not even need a task.
  EXPECT_TRUE(ev.wait().await_ready());
}

// P5: event — set wakes every parked waiter, each exactly once.
TEST_P(sync_event_test, set_wakes_every_parked_waiter_exactly_once) {
  warden::event ev;
  std::atomic<int> woken{0};
  constexpr int kWaiters = 50;
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < kWaiters; ++i) handles.push_back(warden::spawn(wait_and_count(&ev, &woken)));
    co_await until([&] { return ev.waiter_count() == kWaiters; });
    EXPECT_EQ(woken.load(), 0);
    ev.set();
    for (auto& h : handles) co_await h;
    EXPECT_EQ(woken.load(), kWaiters);
    ev.set();  // already set: a no-op
    EXPECT_EQ(ev.waiter_count(), 0u);
  });
  EXPECT_EQ(woken.load(), kWaiters);
}

// P5: event — more waiters than one wake batch (32) are all woken, once.
TEST_P(sync_event_test, set_wakes_more_waiters_than_one_batch) {
  warden::event ev;
  std::atomic<int> woken{0};
  constexpr int kWaiters = 300;
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < kWaiters; ++i) handles.push_back(warden::spawn(wait_and_count(&ev, &woken)));
    co_await until([&] { return ev.waiter_count() == kWaiters; });
    ev.set();
    for (auto& h : handles) co_await h;
  });
  EXPECT_EQ(woken.load(), kWaiters);
}

// P5: event — reset makes later waits park until the next set; is_set
// follows set and reset.
TEST_P(sync_event_test, reset_makes_later_waits_park_until_the_next_set) {
  warden::event ev;
  std::atomic<int> woken{0};
  EXPECT_FALSE(ev.is_set());
  ev.set();
  EXPECT_TRUE(ev.is_set());
  ev.reset();
  EXPECT_FALSE(ev.is_set());
  ev.reset();  // already clear: a no-op
  run([&]() -> task<void> {
    auto h = warden::spawn(wait_and_count(&ev, &woken));
    co_await until([&] { return ev.waiter_count() == 1; });
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_FALSE(h.is_finished());
    EXPECT_EQ(woken.load(), 0);
    ev.set();
    co_await h;
    EXPECT_EQ(woken.load(), 1);
  });
}

// P5: event — a waiter aborted while parked is removed; the others are woken.
TEST_P(sync_event_test, a_waiter_aborted_while_parked_is_removed) {
  warden::event ev;
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto a = warden::spawn(wait_and_count(&ev, &woken));
    auto b = warden::spawn(wait_and_count(&ev, &woken));
    auto c = warden::spawn(wait_and_count(&ev, &woken));
    co_await until([&] { return ev.waiter_count() == 3; });
    b.abort();
    auto r = co_await b.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    EXPECT_EQ(ev.waiter_count(), 2u);
    ev.set();
    co_await a;
    co_await c;
  });
  EXPECT_EQ(woken.load(), 2);
  EXPECT_EQ(ev.waiter_count(), 0u);
}

// P5: event — one task parking again and again (in a nested coroutine too),
// on events set from another task while it may still be finishing its
// poll: each park is woken exactly once, at that park (the node keeps the
// task without a generation; the wake reads it: waker::for_parked).
TEST_P(sync_event_test, a_task_parking_again_and_again_is_woken_once_per_park) {
  constexpr int kRounds = 200;
  std::vector<warden::event> events(kRounds);
  std::atomic<int> woken{0};
  auto nested = [](warden::event* ev, std::atomic<int>* count) -> task<void> {
    co_await ev->wait();
    count->fetch_add(1);
  };
  run([&]() -> task<void> {
    auto waiter = warden::spawn([&]() -> task<void> {
      for (int i = 0; i < kRounds; ++i) {
        if (i % 2 == 0)
          co_await wait_and_count(&events[static_cast<std::size_t>(i)], &woken);
        else
          co_await nested(&events[static_cast<std::size_t>(i)], &woken);
        if (woken.load() != i + 1) co_return;  // woken twice or too early: checked below
      }
    });
    for (int i = 0; i < kRounds; ++i) {
      auto& ev = events[static_cast<std::size_t>(i)];
      co_await until([&] { return ev.waiter_count() == 1 || waiter.is_finished(); });
      ev.set();
    }
    co_await waiter;
  });
  EXPECT_EQ(woken.load(), kRounds);
  for (auto& ev : events) EXPECT_EQ(ev.waiter_count(), 0u);
}

// P5: event — the awaiter stays byte-aligned and small (the event's address
// and a flag), so that a task parked on an event with two reference
// parameters has a 64-byte frame under GCC (see event::wait_awaiter).
static_assert(sizeof(void*) != 8 || sizeof(warden::event::wait_awaiter) == 9);

// P5: event — many waiters aborted while parked, interleaved with waiters
// that stay: the aborted ones leave the count at once (their entries are
// dropped lazily, in batches once they outnumber the parked ones), and set()
// wakes exactly the ones that stayed. Round after round on one event, with
// reset() between, so entries dropped by set(), by a compaction and by the
// destructor all occur, and parking after a compaction appends correctly.
TEST_P(sync_event_test, many_waiters_aborted_while_parked_leave_and_the_rest_are_woken) {
  constexpr int kWaiters = 300;
  warden::event ev;
  run([&]() -> task<void> {
    for (int round = 0; round < 4; ++round) {
      std::atomic<int> woken{0};
      std::vector<warden::join_handle<void>> handles;
      for (int i = 0; i < kWaiters; ++i) handles.push_back(warden::spawn(wait_and_count(&ev, &woken)));
      co_await until([&] { return ev.waiter_count() == kWaiters; });
      // Keep every (round + 3)-th waiter; abort the rest, in FIFO order.
      std::size_t staying = 0;
      for (int i = 0; i < kWaiters; ++i) {
        if (i % (round + 3) == 0) {
          ++staying;
          continue;
        }
        handles[static_cast<std::size_t>(i)].abort();
        auto r = co_await handles[static_cast<std::size_t>(i)].result();
        CO_ASSERT_TRUE(!r.has_value() && r.error().is_cancelled());
        CO_ASSERT_EQ(ev.waiter_count(), kWaiters - static_cast<std::size_t>(i) + staying - 1);
      }
      CO_ASSERT_EQ(ev.waiter_count(), staying);
      // Late arrivals park behind the compacted list.
      for (int i = 0; i < 5; ++i) handles.push_back(warden::spawn(wait_and_count(&ev, &woken)));
      co_await until([&] { return ev.waiter_count() == staying + 5; });
      // The last round leaves its aborted entries for the destructor.
      const auto stayed = [&](std::size_t i) { return i >= kWaiters || i % static_cast<std::size_t>(round + 3) == 0; };
      if (round == 3) {
        for (std::size_t i = 0; i < handles.size(); ++i)
          if (stayed(i)) handles[i].abort();
        for (std::size_t i = 0; i < handles.size(); ++i)
          if (stayed(i)) (void)co_await handles[i].result();
        CO_ASSERT_EQ(ev.waiter_count(), 0u);
        CO_ASSERT_EQ(woken.load(), 0);
        break;
      }
      ev.set();
      for (std::size_t i = 0; i < handles.size(); ++i)
        if (stayed(i)) co_await handles[i];
      CO_ASSERT_EQ(woken.load(), static_cast<int>(staying) + 5);
      CO_ASSERT_EQ(ev.waiter_count(), 0u);
      ev.reset();
    }
  });
}

// P5: event — set from a plain thread (outside the runtime) wakes waiters.
TEST_P(sync_event_test, set_from_a_plain_thread_wakes_the_waiters) {
  warden::event ev;
  std::atomic<int> woken{0};
  auto h = rt.spawn(wait_and_count(&ev, &woken));
  std::thread setter([&] {
    while (ev.waiter_count() == 0 && GetParam() != 0) std::this_thread::yield();
    ev.set();
  });
  setter.join();
  h.join();
  EXPECT_EQ(woken.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(workers, sync_event_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// Parking outside a warden task is a usage error (the fast path is fine).
TEST(sync_event_misuse, parking_outside_a_task_throws_usage_error) {
  warden::event ev;
  auto awaiter = ev.wait();
  EXPECT_FALSE(awaiter.await_ready());
  EXPECT_THROW((void)awaiter.await_suspend(std::noop_coroutine()), warden::usage_error);
  EXPECT_EQ(ev.waiter_count(), 0u);
}

}  // namespace
