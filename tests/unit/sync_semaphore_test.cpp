// warden::semaphore: async, FIFO-fair counting semaphore with RAII permits
// (SEMANTICS P5: fair, no barging; a waiter aborted while parked consumes no
// permit; one aborted after being handed permits passes them on).
#include "support/test_support.hpp"

#include <warden/sync/event.hpp>
#include <warden/sync/semaphore.hpp>

#include <atomic>
#include <coroutine>
#include <mutex>
#include <optional>
#include <string>
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

task<void> acquire_and_record(warden::semaphore* s, std::size_t k, int id, order_log* log) {
  auto permit = co_await s->acquire(k);
  log->add(id);
}

/// Holds `k` permits while yielding a few times; records the peak in use.
task<void> hold(warden::semaphore* s, std::size_t k, std::atomic<std::size_t>* in_use, std::atomic<std::size_t>* peak) {
  auto permit = co_await s->acquire(k);
  const std::size_t now = in_use->fetch_add(k) + k;
  std::size_t p = peak->load();
  while (now > p && !peak->compare_exchange_weak(p, now)) {
  }
  for (int i = 0; i < 3; ++i) co_await warden::yield_now{};
  in_use->fetch_sub(k);
}

std::string what_of(auto&& action) {
  try {
    action();
  } catch (const warden::usage_error& e) {
    return e.what();
  }
  return "no usage_error";
}

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class sync_semaphore_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P5: semaphore — acquire takes permits at once when free; the permit gives
// them back on destruction; available_permits follows.
TEST_P(sync_semaphore_test, acquire_takes_permits_and_the_permit_returns_them) {
  warden::semaphore s(5);
  run([&]() -> task<void> {
    {
      auto two = co_await s.acquire(2);
      EXPECT_EQ(two.count(), 2u);
      EXPECT_EQ(two.semaphore(), &s);
      EXPECT_EQ(s.available_permits(), 3u);
      auto one = co_await s.acquire();
      EXPECT_EQ(s.available_permits(), 2u);
      one.release();
      EXPECT_FALSE(one);
      EXPECT_EQ(s.available_permits(), 3u);
    }
    EXPECT_EQ(s.available_permits(), 5u);
  });
}

// P5: semaphore — at most n permits are held at once across workers.
TEST_P(sync_semaphore_test, no_more_permits_are_held_than_the_semaphore_has) {
  warden::semaphore s(3);
  std::atomic<std::size_t> in_use{0};
  std::atomic<std::size_t> peak{0};
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 60; ++i)
      handles.push_back(warden::spawn(hold(&s, static_cast<std::size_t>(i % 3) + 1, &in_use, &peak)));
    for (auto& h : handles) co_await h;
  });
  EXPECT_LE(peak.load(), 3u);
  EXPECT_EQ(s.available_permits(), 3u);
  EXPECT_EQ(s.waiter_count(), 0u);
}

// P5: semaphore — try_acquire takes free permits without waiting and fails
// when they are not there.
TEST_P(sync_semaphore_test, try_acquire_takes_free_permits_or_fails) {
  warden::semaphore s(2);
  auto a = s.try_acquire(2);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->count(), 2u);
  EXPECT_FALSE(s.try_acquire().has_value());
  a.reset();
  EXPECT_TRUE(s.try_acquire().has_value());
  EXPECT_EQ(s.available_permits(), 2u);
}

// P5: semaphore — forget keeps the permits consumed; add_permits gives them
// back (without raising max_permits); a permit is movable.
TEST_P(sync_semaphore_test, forget_keeps_permits_consumed_until_added_back) {
  warden::semaphore s(3);
  {
    auto p = s.try_acquire(2);
    ASSERT_TRUE(p.has_value());
    warden::semaphore_permit moved = std::move(*p);
    EXPECT_EQ(p->count(), 0u);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(moved.count(), 2u);
    moved.forget();
    EXPECT_EQ(moved.count(), 0u);
  }
  EXPECT_EQ(s.available_permits(), 1u);
  EXPECT_EQ(s.max_permits(), 3u);
  s.add_permits(2);
  EXPECT_EQ(s.available_permits(), 3u);
  EXPECT_EQ(s.max_permits(), 3u);  // the total is back to 3, not above
  s.add_permits(1);
  EXPECT_EQ(s.max_permits(), 4u);  // now it can hold 4
  EXPECT_TRUE(s.try_acquire(4).has_value());
}

// P5: semaphore — a waiter aborted while parked consumes nothing; if it was
// the head, the requests behind it are served.
TEST_P(sync_semaphore_test, a_waiter_aborted_while_parked_consumes_nothing) {
  warden::semaphore s(3);
  order_log log;
  run([&]() -> task<void> {
    auto held = co_await s.acquire(2);  // 1 left
    auto big = warden::spawn(acquire_and_record(&s, 3, 1, &log));
    co_await until([&] { return s.waiter_count() == 1; });
    auto small = warden::spawn(acquire_and_record(&s, 1, 2, &log));
    co_await until([&] { return s.waiter_count() == 2; });
    EXPECT_EQ(s.available_permits(), 1u);  // reserved for the head (needs 3)
    big.abort();                           // the head leaves: `small` fits now
    (void)co_await big.result();
    co_await small;
    EXPECT_EQ(s.available_permits(), 1u);
  });
  EXPECT_EQ(log.ids, (std::vector<int>{2}));
  EXPECT_EQ(s.available_permits(), 3u);
  EXPECT_EQ(s.waiter_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(workers, sync_semaphore_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// Orders and hand-offs are deterministic with 0 or 1 worker: a task the
// test body wakes cannot run before the body yields.
class sync_semaphore_order_test : public sync_semaphore_test {};

// P5: semaphore is fair — requests are served in FIFO order.
TEST_P(sync_semaphore_order_test, requests_are_served_in_fifo_order) {
  warden::semaphore s(1);
  order_log log;
  run([&]() -> task<void> {
    auto held = co_await s.acquire();
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 5; ++i) {
      handles.push_back(warden::spawn(acquire_and_record(&s, 1, i, &log)));
      co_await until([&] { return s.waiter_count() == static_cast<std::size_t>(i) + 1; });
    }
    held.release();
    for (auto& h : handles) co_await h;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{0, 1, 2, 3, 4}));
}

// P5: no barging — a large request at the head blocks smaller later ones
// (and try_acquire) even when permits for them are free.
TEST_P(sync_semaphore_order_test, a_large_request_at_the_head_blocks_smaller_later_ones) {
  warden::semaphore s(3);
  order_log log;
  run([&]() -> task<void> {
    auto held = co_await s.acquire(3);
    auto big = warden::spawn(acquire_and_record(&s, 3, 1, &log));
    co_await until([&] { return s.waiter_count() == 1; });
    auto small = warden::spawn(acquire_and_record(&s, 1, 2, &log));
    co_await until([&] { return s.waiter_count() == 2; });
    held.release();  // all 3 go to the head; the small request still waits
    EXPECT_EQ(s.available_permits(), 0u);
    EXPECT_EQ(s.waiter_count(), 1u);
    co_await big;
    co_await small;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{1, 2}));
}

// P5: no barging, step by step: with the head needing 3 and 1 free, a
// newcomer asking for 1 neither takes it by try_acquire nor by acquire.
TEST_P(sync_semaphore_order_test, free_permits_are_reserved_for_the_head_request) {
  warden::semaphore s(3);
  order_log log;
  run([&]() -> task<void> {
    auto two = co_await s.acquire(2);
    auto one = co_await s.acquire(1);
    auto big = warden::spawn(acquire_and_record(&s, 3, 1, &log));
    co_await until([&] { return s.waiter_count() == 1; });
    one.release();
    EXPECT_EQ(s.available_permits(), 1u);
    EXPECT_FALSE(s.try_acquire(1).has_value());
    auto small = warden::spawn(acquire_and_record(&s, 1, 2, &log));
    co_await until([&] { return s.waiter_count() == 2; });
    for (int i = 0; i < 5; ++i) co_await warden::yield_now{};
    EXPECT_TRUE(log.ids.empty());
    two.release();  // 3 free: the head gets all three, then gives them back
    co_await big;
    co_await small;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{1, 2}));
  EXPECT_EQ(s.available_permits(), 3u);
}

// P5: a waiter handed permits but aborted before it ran returns them, and
// they go on to the next waiter.
TEST_P(sync_semaphore_order_test, a_waiter_aborted_after_the_hand_off_passes_its_permits_on) {
  warden::semaphore s(2);
  order_log log;
  run([&]() -> task<void> {
    auto held = co_await s.acquire(2);
    auto first = warden::spawn(acquire_and_record(&s, 2, 1, &log));
    co_await until([&] { return s.waiter_count() == 1; });
    auto second = warden::spawn(acquire_and_record(&s, 2, 2, &log));
    co_await until([&] { return s.waiter_count() == 2; });
    held.release();  // handed to `first`, which cannot run before we yield
    EXPECT_EQ(s.available_permits(), 0u);
    first.abort();
    auto r = co_await first.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    co_await second;
  });
  EXPECT_EQ(log.ids, (std::vector<int>{2}));
  EXPECT_EQ(s.available_permits(), 2u);
  EXPECT_EQ(s.waiter_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(workers, sync_semaphore_order_test, ::testing::Values<std::size_t>(0, 1),
                         warden::testkit::worker_name);

// Invalid argument: asking for 0 permits throws usage_error.
TEST(sync_semaphore_arguments, asking_for_zero_permits_throws_usage_error) {
  warden::semaphore s(2);
  const std::string what = what_of([&] { (void)s.acquire(0); });
  EXPECT_TRUE(mentions(what, "acquire(0)")) << what;
  EXPECT_THROW((void)s.try_acquire(0), warden::usage_error);
  EXPECT_EQ(s.available_permits(), 2u);
}

// P5: asking for more permits than the semaphore can ever hold throws; the
// limit is max_permits(), which add_permits raises and forget does not lower.
TEST(sync_semaphore_arguments, asking_for_more_than_max_permits_throws_usage_error) {
  warden::semaphore s(2);
  EXPECT_EQ(s.max_permits(), 2u);
  const std::string what = what_of([&] { (void)s.acquire(3); });
  EXPECT_TRUE(mentions(what, "can ever hold")) << what;
  EXPECT_TRUE(mentions(what, "max_permits() is 2")) << what;
  EXPECT_THROW((void)s.try_acquire(3), warden::usage_error);
  s.add_permits(1);
  EXPECT_EQ(s.max_permits(), 3u);
  EXPECT_TRUE(s.try_acquire(3).has_value());

  warden::semaphore roomy(1, 4);  // 1 free now, requests up to 4 accepted
  EXPECT_EQ(roomy.max_permits(), 4u);
  EXPECT_FALSE(roomy.try_acquire(4).has_value());  // valid, just not free
  EXPECT_THROW((void)roomy.try_acquire(5), warden::usage_error);
}

// Invalid arguments at construction and in add_permits throw usage_error.
TEST(sync_semaphore_arguments, invalid_counts_throw_usage_error) {
  const std::string what = what_of([] { warden::semaphore s(5, 4); });
  EXPECT_TRUE(mentions(what, "exceed max_permits")) << what;
  EXPECT_THROW(warden::semaphore(warden::semaphore::max_supported_permits + 1), warden::usage_error);
  warden::semaphore s(warden::semaphore::max_supported_permits);
  EXPECT_THROW(s.add_permits(1), warden::usage_error);
  EXPECT_EQ(s.available_permits(), warden::semaphore::max_supported_permits);
  s.add_permits(0);  // a no-op
}

TEST(sync_semaphore_misuse, parking_outside_a_task_throws_usage_error) {
  warden::semaphore s(1);
  auto held = s.try_acquire();
  ASSERT_TRUE(held.has_value());
  auto awaiter = s.acquire();
  EXPECT_FALSE(awaiter.await_ready());
  EXPECT_THROW((void)awaiter.await_suspend(std::noop_coroutine()), warden::usage_error);
  EXPECT_EQ(s.waiter_count(), 0u);
  held.reset();
  EXPECT_EQ(s.available_permits(), 1u);
}

}  // namespace
