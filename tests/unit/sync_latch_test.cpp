// warden::latch: a single-use countdown (SEMANTICS P5: a latch wakes the
// right waiters exactly once; counting below zero throws; waiters aborted
// while parked are removed).
#include "support/test_support.hpp"

#include <warden/sync/latch.hpp>

#include <atomic>
#include <coroutine>
#include <string>
#include <vector>

namespace {

using warden::task;

template <class Pred>
task<void> until(Pred done) {
  while (!done()) co_await warden::yield_now{};
}

task<void> wait_and_count(warden::latch* l, std::atomic<int>* woken) {
  co_await l->wait();
  woken->fetch_add(1);
}

task<void> count_down_after_yield(warden::latch* l) {
  co_await warden::yield_now{};
  l->count_down();
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

class sync_latch_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P5: latch — waiters are woken once the count reaches zero, not before,
// each exactly once.
TEST_P(sync_latch_test, waiters_are_woken_when_the_count_reaches_zero) {
  warden::latch l(3);
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 40; ++i) handles.push_back(warden::spawn(wait_and_count(&l, &woken)));
    co_await until([&] { return l.waiter_count() == 40; });
    l.count_down();
    l.count_down();
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_EQ(woken.load(), 0);
    EXPECT_FALSE(l.is_ready());
    EXPECT_EQ(l.remaining(), 1);
    l.count_down();
    EXPECT_TRUE(l.is_ready());
    for (auto& h : handles) co_await h;
    EXPECT_EQ(woken.load(), 40);
    EXPECT_EQ(l.waiter_count(), 0u);
    co_await l.wait();  // ready for good: completes at once
  });
}

// P5: latch — count_down(k) counts k at once; count_down(0) does nothing.
TEST_P(sync_latch_test, count_down_by_k_counts_k_at_once) {
  warden::latch l(5);
  l.count_down(0);
  EXPECT_EQ(l.remaining(), 5);
  l.count_down(4);
  EXPECT_EQ(l.remaining(), 1);
  EXPECT_FALSE(l.is_ready());
  l.count_down(1);
  EXPECT_TRUE(l.is_ready());
}

// P5: latch — counting down from many tasks on many workers reaches zero
// exactly once and releases the waiter.
TEST_P(sync_latch_test, count_down_from_many_tasks_releases_the_waiter) {
  constexpr int kCounters = 64;
  warden::latch l(kCounters);
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto waiter = warden::spawn(wait_and_count(&l, &woken));
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < kCounters; ++i) handles.push_back(warden::spawn(count_down_after_yield(&l)));
    for (auto& h : handles) co_await h;
    co_await waiter;
  });
  EXPECT_EQ(woken.load(), 1);
  EXPECT_TRUE(l.is_ready());
}

// P5: latch — a waiter aborted while parked is removed; the count is not
// affected and the other waiters are still woken.
TEST_P(sync_latch_test, a_waiter_aborted_while_parked_is_removed) {
  warden::latch l(1);
  std::atomic<int> woken{0};
  run([&]() -> task<void> {
    auto a = warden::spawn(wait_and_count(&l, &woken));
    auto b = warden::spawn(wait_and_count(&l, &woken));
    co_await until([&] { return l.waiter_count() == 2; });
    a.abort();
    auto r = co_await a.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    EXPECT_EQ(l.waiter_count(), 1u);
    EXPECT_EQ(l.remaining(), 1);
    l.count_down();
    co_await b;
  });
  EXPECT_EQ(woken.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(workers, sync_latch_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// P5: latch — a count of 0 is ready from the start.
TEST(sync_latch_arguments, a_latch_of_zero_is_ready_at_once) {
  warden::latch l(0);
  EXPECT_TRUE(l.is_ready());
  EXPECT_TRUE(l.wait().await_ready());
  warden::runtime rt(warden::testkit::quiet_options(0));
  rt.block_on([](warden::latch* latch) -> task<void> { co_await latch->wait(); }(&l));
}

// Invalid argument: a negative initial count throws usage_error naming it.
TEST(sync_latch_arguments, a_negative_initial_count_throws_usage_error) {
  EXPECT_THROW(warden::latch(-1), warden::usage_error);
  const std::string what = what_of([] { warden::latch l(-3); });
  EXPECT_TRUE(mentions(what, "negative")) << what;
  EXPECT_TRUE(mentions(what, "-3")) << what;
}

// P5: counting a latch below zero throws, and leaves the count unchanged.
TEST(sync_latch_arguments, counting_below_zero_throws_and_leaves_the_count) {
  warden::latch l(2);
  const std::string what = what_of([&] { l.count_down(3); });
  EXPECT_TRUE(mentions(what, "below zero")) << what;
  EXPECT_TRUE(mentions(what, "2")) << what;
  EXPECT_EQ(l.remaining(), 2);
  l.count_down(2);
  EXPECT_TRUE(l.is_ready());
  EXPECT_THROW(l.count_down(), warden::usage_error);  // already ready
  const std::string again = what_of([&] { l.count_down(); });
  EXPECT_TRUE(mentions(again, "already ready")) << again;
  EXPECT_TRUE(l.is_ready());
}

// Invalid argument: a negative decrement throws usage_error.
TEST(sync_latch_arguments, a_negative_count_down_throws_usage_error) {
  warden::latch l(2);
  const std::string what = what_of([&] { l.count_down(-1); });
  EXPECT_TRUE(mentions(what, "negative")) << what;
  EXPECT_EQ(l.remaining(), 2);
}

TEST(sync_latch_misuse, parking_outside_a_task_throws_usage_error) {
  warden::latch l(1);
  auto awaiter = l.wait();
  EXPECT_FALSE(awaiter.await_ready());
  EXPECT_THROW((void)awaiter.await_suspend(std::noop_coroutine()), warden::usage_error);
  EXPECT_EQ(l.waiter_count(), 0u);
}

}  // namespace
