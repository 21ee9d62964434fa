// Time: sleeps, timeouts, intervals, the paused clock (SEMANTICS P1, P2, P3).
// Tests use the paused clock (current-thread mode): time moves only by
// advance() or when every task is idle, so nothing here waits on the wall
// clock. A few tests use real time on worker threads, asserting only lower
// bounds ("no earlier than").
#include <warden/time.hpp>

#include "support/test_support.hpp"

#include <stdexcept>
#include <vector>

namespace {

using namespace std::chrono_literals;
using warden::clock;
using warden::task;
using warden::testkit::live_counter;
using warden::testkit::test_event;

warden::runtime_options paused() {
  warden::runtime_options o = warden::testkit::quiet_options(0);
  o.start_paused = true;
  return o;
}

// P1: a sleep resumes no earlier than its duration (paused clock: exactly).
TEST(time, sleep_for_resumes_after_its_duration_on_the_paused_clock) {
  warden::runtime rt(paused());
  auto body = []() -> task<clock::duration> {
    const auto before = clock::now();
    co_await warden::sleep_for(250ms);
    co_return clock::now() - before;
  };
  const auto slept = rt.block_on(body());
  EXPECT_GE(slept, 250ms);
  EXPECT_LT(slept, 251ms);  // the paused clock jumps exactly to the (rounded-up) deadline
}

// P1, real clock: no earlier than the duration, on worker threads.
TEST(time, sleep_for_resumes_no_earlier_than_its_duration_on_the_real_clock) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  auto body = []() -> task<clock::duration> {
    const auto before = std::chrono::steady_clock::now();
    co_await warden::sleep_for(15ms);
    co_return std::chrono::steady_clock::now() - before;
  };
  EXPECT_GE(rt.block_on(body()), 15ms);
}

TEST(time, sleep_until_a_past_instant_completes_at_once) {
  warden::runtime rt(paused());
  auto body = []() -> task<bool> {
    const auto before = clock::now();
    co_await warden::sleep_until(before - 1s);
    co_await warden::sleep_for(-5ms);  // a negative duration: at once
    co_await warden::sleep_for(0ms);
    co_return clock::now() == before;
  };
  EXPECT_TRUE(rt.block_on(body()));
}

// P1: 100,000 concurrent sleeps all complete, each no earlier than its deadline.
TEST(time, a_hundred_thousand_concurrent_sleeps_complete) {
  warden::runtime rt(paused());
  std::atomic<int> done{0};
  std::atomic<int> early{0};
  auto sleeper = [&](int i) -> task<void> {
    const auto d = std::chrono::milliseconds(1 + (i * 7919) % 5000);
    const auto start = clock::now();
    co_await warden::sleep_for(d);
    if (clock::now() - start < d) ++early;
    ++done;
  };
  auto body = [&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    handles.reserve(100'000);
    for (int i = 0; i < 100'000; ++i) handles.push_back(warden::spawn(sleeper, i));
    for (auto& h : handles) co_await h;
  };
  rt.block_on(body());
  EXPECT_EQ(done.load(), 100'000);
  EXPECT_EQ(early.load(), 0);
}

// P1, real clock and several workers.
TEST(time, many_concurrent_sleeps_complete_on_worker_threads) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  std::atomic<int> done{0};
  auto sleeper = [&](int i) -> task<void> {
    co_await warden::sleep_for(std::chrono::milliseconds(i % 20));
    ++done;
  };
  auto body = [&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 5000; ++i) handles.push_back(warden::spawn(sleeper, i));
    for (auto& h : handles) co_await h;
  };
  rt.block_on(body());
  EXPECT_EQ(done.load(), 5000);
}

// P1: a sleep in an aborted task is deregistered: its frame is destroyed and
// advancing past its deadline touches nothing (ASan would see a stale node).
TEST(time, a_sleep_in_an_aborted_task_is_deregistered) {
  warden::runtime rt(paused());
  std::atomic<int> alive{0};
  std::atomic<bool> woke{false};
  test_event parked;
  auto sleeper = [&](live_counter) -> task<void> {
    parked.set();
    co_await warden::sleep_for(1h);
    woke = true;
  };
  auto body = [&]() -> task<bool> {
    auto h = warden::spawn(sleeper(live_counter(alive)));
    co_await parked.wait();
    h.abort();
    auto r = co_await h.result();
    co_await warden::advance(2h);
    co_return !r && r.error().is_cancelled();
  };
  EXPECT_TRUE(rt.block_on(body()));
  EXPECT_EQ(alive.load(), 0);
  EXPECT_FALSE(woke.load());
}

TEST(time, aborting_sleepers_at_random_moments_leaves_the_timers_exact) {
  const auto seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(2));
  std::atomic<int> alive{0};
  std::atomic<int> finished{0};
  auto sleeper = [&](live_counter, int ms) -> task<void> {
    co_await warden::sleep_for(std::chrono::milliseconds(ms));
    co_await warden::sleep_for(std::chrono::milliseconds(ms / 2));
    ++finished;
  };
  const int n = warden::testkit::stress_iterations(20000);
  auto body = [&]() -> task<int> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < n; ++i) {
      handles.push_back(warden::spawn(sleeper(live_counter(alive), static_cast<int>(rng() % 8))));
      if (rng() % 3 == 0) handles[rng() % handles.size()].abort();
      if (i % 97 == 0) co_await warden::yield_now{};
    }
    int cancelled = 0;
    for (auto& h : handles) {
      auto r = co_await h.result();
      if (!r) {
        EXPECT_TRUE(r.error().is_cancelled());
        ++cancelled;
      }
    }
    co_return cancelled;
  };
  const int cancelled = rt.block_on(body());
  EXPECT_EQ(cancelled + finished.load(), n);
  EXPECT_EQ(alive.load(), 0);
}

task<int> slow_value(std::chrono::milliseconds d, int v) {
  co_await warden::sleep_for(d);
  co_return v;
}

// P2: the task finishing first yields its value.
TEST(time, timeout_yields_the_value_when_the_task_finishes_first) {
  warden::runtime rt(paused());
  auto body = []() -> task<int> {
    auto r = co_await warden::timeout(1s, slow_value(10ms, 42));
    co_return r ? *r : -1;
  };
  EXPECT_EQ(rt.block_on(body()), 42);
}

// P2: the deadline first cancels the task (its frame destroyed before
// timeout returns) and yields timed_out.
TEST(time, timeout_cancels_the_task_at_the_deadline_and_destroys_its_frame) {
  warden::runtime rt(paused());
  std::atomic<int> alive{0};
  std::atomic<bool> finished{false};
  auto slow = [&](live_counter) -> task<int> {
    co_await warden::sleep_for(1h);
    finished = true;
    co_return 1;
  };
  auto body = [&]() -> task<bool> {
    const auto start = clock::now();
    auto r = co_await warden::timeout(100ms, slow(live_counter(alive)));
    EXPECT_EQ(alive.load(), 0) << "the inner task's frame must be gone when timeout returns";
    EXPECT_GE(clock::now() - start, 100ms);
    co_return !r.has_value() && r.error().after == 100ms;
  };
  EXPECT_TRUE(rt.block_on(body()));
  EXPECT_FALSE(finished.load());
}

TEST(time, timeout_rethrows_the_exception_of_the_task) {
  warden::runtime rt(paused());
  auto failing = []() -> task<int> {
    co_await warden::sleep_for(1ms);
    throw std::runtime_error("inner failure");
  };
  auto body = [&]() -> task<std::string> {
    try {
      co_await warden::timeout(1s, failing());
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  EXPECT_EQ(rt.block_on(body()), "inner failure");
}

// Invalid input, documented meaning: a deadline of zero or less has passed.
TEST(time, timeout_of_zero_or_less_times_out_without_running_the_task) {
  warden::runtime rt(paused());
  std::atomic<bool> ran{false};
  auto quick = [&]() -> task<void> {
    ran = true;
    co_return;
  };
  auto body = [&]() -> task<bool> {
    auto a = co_await warden::timeout(0ms, quick());
    auto b = co_await warden::timeout(-1s, quick());
    co_return !a && !b;
  };
  EXPECT_TRUE(rt.block_on(body()));
  EXPECT_FALSE(ran.load());
}

TEST(time, aborting_the_task_awaiting_a_timeout_aborts_the_inner_task) {
  warden::runtime rt(paused());
  std::atomic<int> alive{0};
  test_event inner_started;
  auto inner = [&](live_counter) -> task<void> {
    inner_started.set();
    co_await warden::sleep_for(1h);
  };
  auto outer = [&]() -> task<void> { (void)co_await warden::timeout(2h, inner(live_counter(alive))); };
  auto body = [&]() -> task<bool> {
    auto h = warden::spawn(outer);
    co_await inner_started.wait();
    h.abort();
    auto r = co_await h.result();
    // The inner task was aborted with the outer one; let it be destroyed.
    for (int i = 0; i < 10 && alive.load() != 0; ++i) co_await warden::yield_now{};
    co_return !r && r.error().is_cancelled();
  };
  EXPECT_TRUE(rt.block_on(body()));
  EXPECT_EQ(alive.load(), 0);
}

TEST(time, timeout_works_with_void_tasks_on_worker_threads) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  auto quick = []() -> task<void> { co_await warden::sleep_for(1ms); };
  auto body = [&]() -> task<bool> {
    auto r = co_await warden::timeout(10s, quick());
    co_return r.has_value();
  };
  EXPECT_TRUE(rt.block_on(body()));
}

// P3: the first tick completes at once, then one per period; tick() yields
// the scheduled instant.
TEST(time, interval_ticks_at_once_then_once_per_period) {
  warden::runtime rt(paused());
  auto body = []() -> task<std::vector<clock::duration>> {
    const auto start = clock::now();
    warden::interval every(100ms);
    std::vector<clock::duration> at;
    for (int i = 0; i < 4; ++i) {
      const auto scheduled = co_await every.tick();
      EXPECT_GE(clock::now(), scheduled);
      at.push_back(scheduled - start);
    }
    co_return at;
  };
  EXPECT_EQ(rt.block_on(body()), (std::vector<clock::duration>{0ms, 100ms, 200ms, 300ms}));
}

// P3: ticks missed while the task was late: burst fires them at once.
TEST(time, interval_burst_fires_missed_ticks_at_once_until_caught_up) {
  warden::runtime rt(paused());
  auto body = []() -> task<std::vector<clock::duration>> {
    const auto start = clock::now();
    warden::interval every(100ms, warden::missed_tick_behavior::burst);
    co_await every.tick();              // 0
    co_await warden::sleep_for(350ms);  // late: now = 350
    std::vector<clock::duration> at;
    for (int i = 0; i < 4; ++i) at.push_back((co_await every.tick()) - start);
    at.push_back(clock::now() - start);
    co_return at;
  };
  // 100, 200, 300 fire at once (now = 350), then 400 waits until 400.
  EXPECT_EQ(rt.block_on(body()), (std::vector<clock::duration>{100ms, 200ms, 300ms, 400ms, 400ms}));
}

// P3: delay schedules the next tick a full period after the late one.
TEST(time, interval_delay_schedules_the_next_tick_a_period_after_the_late_one) {
  warden::runtime rt(paused());
  auto body = []() -> task<std::vector<clock::duration>> {
    const auto start = clock::now();
    warden::interval every(100ms, warden::missed_tick_behavior::delay);
    co_await every.tick();              // 0
    co_await warden::sleep_for(350ms);  // now = 350
    std::vector<clock::duration> at;
    at.push_back((co_await every.tick()) - start);  // the late tick: scheduled 100, taken at 350
    at.push_back((co_await every.tick()) - start);  // 350 + 100
    at.push_back((co_await every.tick()) - start);  // 550
    co_return at;
  };
  EXPECT_EQ(rt.block_on(body()), (std::vector<clock::duration>{100ms, 450ms, 550ms}));
}

// P3: skip jumps to the next multiple of the period.
TEST(time, interval_skip_jumps_to_the_next_multiple_of_the_period) {
  warden::runtime rt(paused());
  auto body = []() -> task<std::vector<clock::duration>> {
    const auto start = clock::now();
    warden::interval every(100ms, warden::missed_tick_behavior::skip);
    co_await every.tick();              // 0
    co_await warden::sleep_for(350ms);  // now = 350
    std::vector<clock::duration> at;
    at.push_back((co_await every.tick()) - start);  // the late tick (100)
    at.push_back((co_await every.tick()) - start);  // 400: 200 and 300 skipped
    at.push_back((co_await every.tick()) - start);  // 500
    co_return at;
  };
  EXPECT_EQ(rt.block_on(body()), (std::vector<clock::duration>{100ms, 400ms, 500ms}));
}

TEST(time, interval_with_a_period_of_zero_or_less_is_rejected) {
  EXPECT_THROW(warden::interval(0ms), std::invalid_argument);
  EXPECT_THROW(warden::interval(-1s), std::invalid_argument);
  try {
    warden::interval bad(0ms);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("period"), std::string::npos);
  }
}

TEST(time, advance_moves_the_paused_clock_and_runs_the_woken_tasks_first) {
  warden::runtime rt(paused());
  auto body = []() -> task<bool> {
    std::atomic<bool> woke{false};
    auto sleeper = [&]() -> task<void> {
      co_await warden::sleep_for(30s);
      woke = true;
    };
    auto h = warden::spawn(sleeper);
    co_await warden::yield_now{};  // let it arm its timer
    const auto before = clock::now();
    co_await warden::advance(29s);
    const bool early = woke.load();
    co_await warden::advance(1s);
    const bool on_time = woke.load();
    co_await h;
    co_return !early && on_time && clock::now() - before == 30s;
  };
  EXPECT_TRUE(rt.block_on(body()));
}

TEST(time, advance_on_a_clock_that_is_not_paused_is_a_usage_error) {
  warden::runtime rt(warden::testkit::quiet_options(1));
  auto body = []() -> task<bool> {
    try {
      co_await warden::advance(1s);
    } catch (const warden::usage_error& e) {
      co_return std::string(e.what()).find("start_paused") != std::string::npos;
    }
    co_return false;
  };
  EXPECT_TRUE(rt.block_on(body()));
}

TEST(time, a_paused_clock_needs_current_thread_mode) {
  warden::runtime_options o = warden::testkit::quiet_options(2);
  o.start_paused = true;
  EXPECT_THROW(warden::runtime rt(o), warden::usage_error);
}

TEST(time, sleeping_outside_a_task_is_a_usage_error) {
  auto s = warden::sleep_for(1s);
  EXPECT_THROW(s.await_suspend(std::noop_coroutine()), warden::usage_error);
}

TEST(time, the_paused_clock_stands_still_until_something_waits) {
  warden::runtime rt(paused());
  auto body = []() -> task<bool> {
    const auto a = clock::now();
    for (int i = 0; i < 100; ++i) co_await warden::yield_now{};
    co_return clock::now() == a;
  };
  EXPECT_TRUE(rt.block_on(body()));
}

}  // namespace
