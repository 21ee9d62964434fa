// task_tracker: schedulers, error policies, cancellation flowing down,
// metrics with roll-up, ordered join (SEMANTICS T1-T10). Each test names the
// line it pins.
#include "support/test_support.hpp"

#include <warden/supervise/tracker.hpp>
#include <warden/sync/event.hpp>
#include <warden/sync/latch.hpp>

// Note: handles are made in a statement of their own and then awaited
// (`auto h = t.spawn(...); co_await std::move(h);`), never spawned inside
// the co_await expression: GCC 12 double-destroys non-trivial temporaries
// (a lambda's captures, a std::string argument) that live across a
// co_await (see docs/design.md, "GCC 12 and temporaries in co_await").
#include <any>
#include <atomic>
#include <chrono>
#include <cmath>
#include <expected>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using warden::cancellable_result;
using warden::cancellation_token;
using warden::error_response;
using warden::failure_context;
using warden::task;
using warden::task_error;
using warden::task_tracker;

// ---- Helpers -----------------------------------------------------------------------

std::shared_ptr<warden::unlimited_scheduler> unlimited() { return std::make_shared<warden::unlimited_scheduler>(); }
std::shared_ptr<warden::semaphore_scheduler> at_most(std::size_t n) {
  return std::make_shared<warden::semaphore_scheduler>(n);
}

/// A sink that keeps the lines (the log-only policy's output).
class captured_log final : public warden::log_sink {
 public:
  void write(warden::log_level, std::string_view line) noexcept override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(line);
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

std::shared_ptr<warden::log_only_policy> quiet_log() {
  return std::make_shared<warden::log_only_policy>(std::make_shared<captured_log>());
}

/// A policy that records every failure and answers what the test says.
class recording_policy : public warden::error_policy {
 public:
  std::function<error_response(const failure_context&)> answer = [](const failure_context&) {
    return error_response::fail();
  };
  bool allow_continuations = true;
  bool reschedule = false;
  std::atomic<int> children_made{0};

  std::shared_ptr<warden::error_policy> create_child() override {
    children_made.fetch_add(1);
    return shared_from_this();
  }
  error_response on_error(const failure_context& context) override {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(context);
    }
    return answer(context);
  }
  bool allow_continuation(const failure_context&) override { return allow_continuations; }
  bool should_reschedule(const failure_context&) override { return reschedule; }

  std::vector<failure_context> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<failure_context> seen_;
};

task_tracker make_tracker(std::shared_ptr<warden::task_scheduler> scheduler,
                          std::shared_ptr<warden::error_policy> policy, std::string name = "t") {
  return task_tracker::builder().name(std::move(name)).scheduler(std::move(scheduler)).error_policy(policy).build();
}

task<int> returns(int v) { co_return v; }

task<int> returns_when(warden::event& gate, int v) {
  co_await gate.wait();
  co_return v;
}

task<void> waits_for(warden::event& gate) { co_await gate.wait(); }

task<int> throws(std::string message) {
  throw std::runtime_error(message);
  co_return 0;
}

task<std::expected<int, std::string>> returns_error(std::string message) { co_return std::unexpected(message); }

/// Counts how many run at once and how many started; waits for `gate`.
task<void> counted_run(std::atomic<int>& running, std::atomic<int>& most, std::atomic<int>& started,
                       warden::event& gate) {
  const int now = running.fetch_add(1) + 1;
  int seen = most.load();
  while (now > seen && !most.compare_exchange_weak(seen, now)) {
  }
  started.fetch_add(1);
  co_await gate.wait();
  running.fetch_sub(1);
}

task<cancellable_result<int>> until_cancelled(cancellation_token token, warden::latch* started) {
  if (started != nullptr) started->count_down();
  co_await token.cancelled();
  co_return cancellable_result<int>::cancelled();
}

/// Yields until `done()` (a lambda capturing by reference: trivially copyable).
template <class F>
task<void> until(F done) {
  while (!done()) co_await warden::yield_now{};
}

class tracker : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

warden::runtime_options paused() {
  warden::runtime_options o = warden::testkit::quiet_options(0);
  o.start_paused = true;
  return o;
}

// ---- T1: the builder -------------------------------------------------------------------

TEST(tracker_builder, T1_building_without_a_scheduler_or_a_policy_is_a_clear_error) {
  try {
    (void)task_tracker::builder().error_policy(quiet_log()).build();
    FAIL() << "no scheduler accepted";
  } catch (const warden::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("no scheduler"), std::string::npos) << e.what();
  }
  try {
    (void)task_tracker::builder().scheduler(unlimited()).build();
    FAIL() << "no policy accepted";
  } catch (const warden::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("no error policy"), std::string::npos) << e.what();
  }
}

TEST_P(tracker, T1_an_optional_metrics_sink_and_parent_token_are_used) {
  rt.block_on([]() -> task<void> {
    auto sink = std::make_shared<warden::tracker_metrics>();
    cancellation_token outside;
    auto t = task_tracker::builder()
                 .scheduler(unlimited())
                 .error_policy(quiet_log())
                 .metrics(sink)
                 .cancel_token(outside)
                 .build();
    EXPECT_EQ(t.metrics(), sink);
    auto h = t.spawn(returns(1));
    EXPECT_EQ((co_await std::move(h)).value(), 1);
    EXPECT_EQ(sink->success(), 1u);

    outside.cancel();  // the tracker's token is a child of the given one
    EXPECT_TRUE(t.cancellation_token().is_cancelled());
    EXPECT_TRUE(t.is_closed());
  }());
}

// ---- T2: spawn -------------------------------------------------------------------------------

TEST_P(tracker, T2_spawn_counts_issued_at_once_and_success_when_the_task_ends) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    warden::event gate;
    auto h = t.spawn(returns_when(gate, 7));
    EXPECT_EQ(t.metrics()->issued(), 1u);
    EXPECT_EQ(t.metrics()->success(), 0u);
    EXPECT_EQ(t.metrics()->pending(), 1u);
    gate.set();
    auto got = co_await std::move(h);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 7);
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .started = 1, .success = 1}));
  }());
}

TEST_P(tracker, T2_an_exception_goes_to_the_policy_and_the_task_ends_panicked) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    auto t = make_tracker(unlimited(), policy, "jobs");
    auto h1 = t.spawn(throws("disk on fire"));
    auto got = co_await std::move(h1);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_TRUE(got.error().is_panicked());
    EXPECT_EQ(got.error().message(), "disk on fire");
    EXPECT_NE(std::string(got.error().what()).find("in tracker 'jobs' panicked: disk on fire"), std::string::npos)
        << got.error().what();
    EXPECT_THROW(std::rethrow_exception(got.error().cause()), std::runtime_error);
    auto seen = policy->seen();
    CO_ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].message, "disk on fire");
    EXPECT_EQ(seen[0].attempt, 1u);
    EXPECT_TRUE(seen[0].panicked);
    EXPECT_EQ(seen[0].tracker, "jobs");
    EXPECT_EQ(t.metrics()->failed(), 1u);
    EXPECT_EQ(t.metrics()->success(), 0u);
  }());
}

TEST_P(tracker, T2_a_returned_error_goes_to_the_policy_and_the_task_ends_failed_with_its_text) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    auto t = make_tracker(unlimited(), policy);
    auto h2 = t.spawn(returns_error("no route to host"));
    auto got = co_await std::move(h2);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_TRUE(got.error().is_failed());
    EXPECT_EQ(got.error().message(), "no route to host");
    CO_ASSERT_EQ(policy->seen().size(), 1u);
    EXPECT_FALSE(policy->seen()[0].panicked);
    EXPECT_EQ(t.metrics()->failed(), 1u);

    auto h3 = t.spawn([]() -> task<std::expected<int, std::string>> { co_return 5; }());
    auto fine = co_await std::move(h3);
    CO_ASSERT_TRUE(fine.has_value());
    EXPECT_EQ(fine->value(), 5);
  }());
}

TEST_P(tracker, T2_spawn_cancellable_calls_f_only_after_the_slot_is_granted) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(at_most(1), quiet_log());
    warden::event gate;
    auto holder = t.spawn(waits_for(gate));
    co_await until([&] { return gate.waiter_count() == 1; });  // the holder has the only slot
    auto called = std::make_shared<std::atomic<bool>>(false);
    auto h = t.spawn_cancellable([called](cancellation_token) -> task<cancellable_result<int>> {
      called->store(true);
      co_return cancellable_result<int>::ok(3);
    });
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    EXPECT_FALSE(called->load());  // the only slot is taken
    gate.set();
    auto got = co_await std::move(h);
    EXPECT_TRUE(called->load());
    EXPECT_EQ(got.value(), 3);
    (void)co_await std::move(holder);
  }());
}

TEST_P(tracker, T2_spawn_cancellable_maps_ok_cancelled_and_error) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    auto t = make_tracker(unlimited(), policy);
    auto h4 = t.spawn_cancellable(
        [](cancellation_token) -> task<cancellable_result<int>> { co_return cancellable_result<int>::ok(1); });
    auto ok = co_await std::move(h4);
    auto h5 = t.spawn_cancellable(
        [](cancellation_token) -> task<cancellable_result<int>> { co_return cancellable_result<int>::cancelled(); });
    auto cancelled = co_await std::move(h5);
    auto h6 = t.spawn_cancellable([](cancellation_token) -> task<cancellable_result<int>> {
      co_return cancellable_result<int>::error("quota exceeded");
    });
    auto error = co_await std::move(h6);
    auto h7 = t.spawn_cancellable(
        [](cancellation_token) -> task<cancellable_result<void>> { co_return cancellable_result<void>::ok(); });
    auto nothing = co_await std::move(h7);
    EXPECT_EQ(ok.value(), 1);
    EXPECT_TRUE(cancelled.error().is_cancelled());
    EXPECT_TRUE(error.error().is_failed());
    EXPECT_EQ(error.error().message(), "quota exceeded");
    EXPECT_TRUE(nothing.has_value());
    EXPECT_EQ(policy->seen().size(), 1u);  // a cancellation is not a failure
    EXPECT_EQ(t.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 4, .started = 4, .success = 2, .failed = 1, .cancelled = 1}));
  }());
}

// ---- T3: closed trackers ---------------------------------------------------------------------

TEST_P(tracker, T3_spawning_into_a_closed_tracker_throws_and_the_task_never_runs) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log(), "closed-one");
    t.close();
    EXPECT_TRUE(t.is_closed());
    std::atomic<int> alive{0};
    auto body = [](warden::testkit::live_counter) -> task<int> { co_return 1; };
    try {
      (void)t.spawn(body(warden::testkit::live_counter(alive)));
      ADD_FAILURE() << "spawn into a closed tracker accepted";
    } catch (const warden::tracker_closed& e) {
      EXPECT_NE(std::string(e.what()).find("'closed-one' is closed"), std::string::npos) << e.what();
    }
    EXPECT_EQ(alive.load(), 0);  // the frame was destroyed unrun
    EXPECT_THROW((void)t.spawn_cancellable([](cancellation_token) -> task<cancellable_result<int>> {
      co_return cancellable_result<int>::ok(1);
    }),
                 warden::tracker_closed);
    EXPECT_EQ(t.metrics()->issued(), 0u);
    co_return;
  }());
}

// ---- T4: schedulers --------------------------------------------------------------------------------

TEST_P(tracker, T4_semaphore_2_runs_at_most_2_of_5_and_metrics_are_exact_in_the_middle) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(at_most(2), quiet_log());
    std::atomic<int> running{0}, most{0};
    std::atomic<int> started{0};
    warden::event gate;
    std::vector<warden::task_handle<void>> handles;
    for (int i = 0; i < 5; ++i) handles.push_back(t.spawn(counted_run(running, most, started, gate)));
    co_await until([&] { return started.load() == 2; });
    for (int i = 0; i < 20; ++i) co_await warden::yield_now{};  // give a third a chance to (wrongly) start
    EXPECT_EQ(t.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 5, .started = 2, .active = 2, .queued = 3}));
    EXPECT_EQ(t.metrics()->pending(), 5u);
    gate.set();
    for (auto& h : handles) EXPECT_TRUE((co_await std::move(h)).has_value());
    EXPECT_EQ(most.load(), 2);
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 5, .started = 5, .success = 5}));
  }());
}

TEST_P(tracker, T4_the_slot_is_held_until_the_task_and_its_continuations_finish) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(at_most(1), quiet_log());
    warden::event gate;
    auto first = t.spawn([](warden::event* g) -> task<int> {
      throw warden::failed_with_continuation<int>("first try failed",
                                                  [g](cancellation_token) { return returns_when(*g, 10); });
      co_return 0;
    }(&gate));
    co_await until([&] { return gate.waiter_count() == 1; });  // the continuation runs, holding the slot
    auto second = t.spawn(returns(20));
    for (int i = 0; i < 20; ++i) co_await warden::yield_now{};
    EXPECT_EQ(t.metrics()->started(), 1u);
    EXPECT_FALSE(second.is_finished());
    gate.set();
    EXPECT_EQ((co_await std::move(first)).value(), 10);
    EXPECT_EQ((co_await std::move(second)).value(), 20);
  }());
}

TEST_P(tracker, T4_a_scheduler_shared_by_two_trackers_shares_its_limit) {
  rt.block_on([]() -> task<void> {
    auto shared = at_most(1);
    auto a = make_tracker(shared, quiet_log(), "a");
    auto b = make_tracker(shared, quiet_log(), "b");
    warden::event gate;
    auto holder = a.spawn(waits_for(gate));
    co_await until([&] { return a.metrics()->started() == 1; });
    auto waiting = b.spawn(returns(2));
    for (int i = 0; i < 20; ++i) co_await warden::yield_now{};
    EXPECT_EQ(b.metrics()->started(), 0u);
    EXPECT_EQ(b.metrics()->queued(), 1u);
    gate.set();
    EXPECT_EQ((co_await std::move(waiting)).value(), 2);
    (void)co_await std::move(holder);
  }());
}

TEST_P(tracker, T4_waiting_for_a_permit_is_cancellable) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(at_most(1), quiet_log());
    warden::event gate;
    auto holder = t.spawn(waits_for(gate));
    co_await until([&] { return t.metrics()->started() == 1; });
    auto waiting = t.spawn(returns(2));
    waiting.cancellation_token().cancel();
    auto got = co_await std::move(waiting);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_TRUE(got.error().is_cancelled());
    EXPECT_EQ(t.metrics()->cancelled(), 1u);
    EXPECT_EQ(t.metrics()->started(), 1u);
    EXPECT_FALSE(t.cancellation_token().is_cancelled());  // only that task
    gate.set();
    EXPECT_TRUE((co_await std::move(holder)).has_value());
    EXPECT_EQ(t.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 2, .started = 1, .success = 1, .cancelled = 1}));
  }());
}

TEST_P(tracker, T4_the_unlimited_scheduler_runs_every_task_at_once) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    std::atomic<int> running{0}, most{0};
    std::atomic<int> started{0};
    warden::event gate;
    std::vector<warden::task_handle<void>> handles;
    for (int i = 0; i < 10; ++i) handles.push_back(t.spawn(counted_run(running, most, started, gate)));
    co_await until([&] { return started.load() == 10; });
    EXPECT_EQ(most.load(), 10);
    EXPECT_EQ(t.metrics()->active(), 10u);
    gate.set();
    for (auto& h : handles) (void)co_await std::move(h);
  }());
}

TEST(tracker_paused, T4_token_bucket_starts_burst_at_once_then_rate_per_second) {
  warden::runtime rt(paused());
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(std::make_shared<warden::token_bucket_scheduler>(10.0, 2), quiet_log());
    const auto t0 = warden::clock::now();
    std::vector<warden::task_handle<warden::clock::time_point>> handles;
    for (int i = 0; i < 5; ++i)
      handles.push_back(t.spawn([]() -> task<warden::clock::time_point> { co_return warden::clock::now(); }()));
    std::vector<warden::clock::duration> at;
    for (auto& h : handles) at.push_back((co_await std::move(h)).value() - t0);
    EXPECT_EQ(at[0], 0ms);
    EXPECT_EQ(at[1], 0ms);  // the burst
    EXPECT_GE(at[2], 100ms);
    EXPECT_GE(at[3], 200ms);
    EXPECT_GE(at[4], 300ms);
    EXPECT_LT(at[2], at[3]);
    EXPECT_LT(at[3], at[4]);
  }());
}

TEST(tracker_paused, T4_waiting_for_a_token_is_cancellable_and_gives_the_turn_back) {
  warden::runtime rt(paused());
  rt.block_on([]() -> task<void> {
    auto bucket = std::make_shared<warden::token_bucket_scheduler>(1.0, 1);
    auto t = make_tracker(bucket, quiet_log());
    auto first = t.spawn(returns(1));
    auto waiting = t.spawn(returns(2));
    co_await until([&] { return t.metrics()->started() == 1; });
    waiting.cancellation_token().cancel();
    EXPECT_TRUE((co_await std::move(waiting)).error().is_cancelled());
    EXPECT_EQ((co_await std::move(first)).value(), 1);
    // The cancelled waiter's turn came back: the next start is one interval after the first.
    const auto before = warden::clock::now();
    auto third = t.spawn([]() -> task<warden::clock::time_point> { co_return warden::clock::now(); }());
    const auto started = (co_await std::move(third)).value();
    EXPECT_LE(started - before, 1s);
  }());
}

TEST(tracker_builder, T4_bad_scheduler_arguments_are_rejected_with_a_clear_error) {
  EXPECT_THROW(warden::semaphore_scheduler(0), std::invalid_argument);
  for (double rate : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e-300}) {
    EXPECT_THROW(warden::token_bucket_scheduler(rate, 1), std::invalid_argument) << rate;
  }
  try {
    warden::token_bucket_scheduler(5.0, 0);
    FAIL() << "burst 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("burst is 0"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(warden::token_bucket_scheduler(0.5, 1));
}

// ---- T5: error policies --------------------------------------------------------------------------

TEST_P(tracker, T5_log_only_logs_the_failure_and_fails_the_task) {
  rt.block_on([]() -> task<void> {
    auto log = std::make_shared<captured_log>();
    auto t = make_tracker(unlimited(), std::make_shared<warden::log_only_policy>(log), "logger");
    auto h8 = t.spawn(throws("boom"));
    auto got = co_await std::move(h8);
    EXPECT_TRUE(got.error().is_panicked());
    auto lines = log->lines();
    CO_ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("tracker 'logger' panicked: boom"), std::string::npos) << lines[0];
    EXPECT_FALSE(t.cancellation_token().is_cancelled());
  }());
}

TEST_P(tracker, T5_cancel_on_error_cancels_the_tracker_and_subtree_and_its_own_token) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<warden::cancel_on_error_policy>();
    auto t = make_tracker(unlimited(), policy);
    auto child = t.child_tracker();
    auto h9 = t.spawn(throws("fatal"));
    auto got = co_await std::move(h9);
    EXPECT_TRUE(got.error().is_panicked());
    EXPECT_TRUE(policy->token().is_cancelled());  // the token it hands out is the one cancelled
    EXPECT_TRUE(t.cancellation_token().is_cancelled());
    EXPECT_TRUE(t.is_closed());
    EXPECT_TRUE(child.cancellation_token().is_cancelled());
    EXPECT_TRUE(child.is_closed());
  }());
}

TEST_P(tracker, T5_cancel_on_error_with_patterns_cancels_only_on_a_matching_message) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<warden::cancel_on_error_policy>(std::vector<std::string>{"FATAL", "corrupt"});
    auto t = make_tracker(unlimited(), policy);
    auto h10 = t.spawn(throws("timeout talking to db"));
    (void)co_await std::move(h10);
    EXPECT_FALSE(t.cancellation_token().is_cancelled());
    EXPECT_FALSE(policy->token().is_cancelled());
    auto h11 = t.spawn(throws("page 7 is corrupt"));
    (void)co_await std::move(h11);
    EXPECT_TRUE(t.cancellation_token().is_cancelled());
    EXPECT_TRUE(policy->token().is_cancelled());
  }());
}

TEST_P(tracker, T5_a_childs_cancel_on_error_reaches_only_the_child) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<warden::cancel_on_error_policy>();
    auto parent = make_tracker(unlimited(), policy);
    auto child = parent.child_tracker();
    auto h12 = child.spawn(throws("child broke"));
    (void)co_await std::move(h12);
    EXPECT_TRUE(child.cancellation_token().is_cancelled());
    EXPECT_FALSE(parent.cancellation_token().is_cancelled());
    EXPECT_FALSE(policy->token().is_cancelled());
  }());
}

TEST_P(tracker, T5_threshold_n_shuts_down_on_the_nth_failure) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), std::make_shared<warden::threshold_policy>(3));
    auto h13 = t.spawn(throws("1"));
    (void)co_await std::move(h13);
    auto h14 = t.spawn(throws("2"));
    (void)co_await std::move(h14);
    EXPECT_FALSE(t.cancellation_token().is_cancelled());
    auto h15 = t.spawn(returns(1));
    EXPECT_EQ((co_await std::move(h15)).value(), 1);
    auto h16 = t.spawn(throws("3"));
    (void)co_await std::move(h16);
    EXPECT_TRUE(t.cancellation_token().is_cancelled());
    EXPECT_TRUE(t.is_closed());
  }());
}

TEST(tracker_paused, T5_rate_policy_shuts_down_when_more_than_max_failures_fall_in_one_window) {
  warden::runtime rt(paused());
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), std::make_shared<warden::rate_policy>(2, 1s));
    auto h17 = t.spawn(throws("a"));
    (void)co_await std::move(h17);
    auto h18 = t.spawn(throws("b"));
    (void)co_await std::move(h18);
    co_await warden::sleep_for(1500ms);  // both fall out of the window
    auto h19 = t.spawn(throws("c"));
    (void)co_await std::move(h19);
    auto h20 = t.spawn(throws("d"));
    (void)co_await std::move(h20);
    EXPECT_FALSE(t.cancellation_token().is_cancelled());  // 2 in the window: tolerated
    co_await warden::sleep_for(200ms);
    auto h21 = t.spawn(throws("e"));
    (void)co_await std::move(h21);  // 3 within 1 s
    EXPECT_TRUE(t.cancellation_token().is_cancelled());
  }());
}

TEST(tracker_paused, T5_retry_runs_again_with_exponential_backoff_until_it_succeeds) {
  warden::runtime rt(paused());
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<warden::retry_policy>(
        warden::retry_options{.max_attempts = 5, .initial_backoff = 100ms, .max_backoff = 10s, .jitter = 0.0});
    auto t = make_tracker(at_most(1), policy);
    auto calls = std::make_shared<int>(0);
    const auto t0 = warden::clock::now();
    auto h22 = t.spawn([calls]() -> task<int> {
      if (++*calls < 3) throw std::runtime_error("flaky");
      co_return *calls;
    });
    auto got = co_await std::move(h22);
    EXPECT_EQ(got.value(), 3);
    EXPECT_EQ(warden::clock::now() - t0, 300ms);  // 100 ms, then 200 ms (paused clock: exact)
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .started = 1, .success = 1}));
  }());
}

TEST(tracker_paused, T5_retry_gives_up_after_max_attempts_and_the_task_fails) {
  warden::runtime rt(paused());
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), std::make_shared<warden::retry_policy>(
                                           warden::retry_options{.max_attempts = 3, .initial_backoff = 10ms}));
    auto calls = std::make_shared<int>(0);
    auto h23 = t.spawn_cancellable([calls](cancellation_token) -> task<cancellable_result<int>> {
      ++*calls;
      co_return cancellable_result<int>::error("still down");
    });
    auto got = co_await std::move(h23);
    EXPECT_EQ(*calls, 3);
    EXPECT_TRUE(got.error().is_failed());
    EXPECT_EQ(got.error().message(), "still down");
    EXPECT_EQ(t.metrics()->failed(), 1u);
  }());
}

TEST_P(tracker, T5_a_one_shot_task_cannot_be_retried_and_fails_saying_so) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(),
                          std::make_shared<warden::retry_policy>(warden::retry_options{.initial_backoff = 0ms}));
    auto h24 = t.spawn(throws("once"));
    auto got = co_await std::move(h24);
    EXPECT_TRUE(got.error().is_panicked());
    EXPECT_NE(got.error().message().find("not retried"), std::string::npos) << got.error().message();
  }());
}

TEST(tracker_policies, T5_retry_backoff_grows_exponentially_is_capped_and_jittered) {
  warden::retry_policy p(warden::retry_options{
      .max_attempts = 10, .initial_backoff = 100ms, .max_backoff = 1s, .multiplier = 2.0, .jitter = 0.5});
  EXPECT_EQ(p.backoff(1, 0.0), 100ms);
  EXPECT_EQ(p.backoff(2, 0.0), 200ms);
  EXPECT_EQ(p.backoff(3, 0.0), 400ms);
  EXPECT_EQ(p.backoff(5, 0.0), 1s);     // capped
  EXPECT_EQ(p.backoff(2, 1.0), 100ms);  // jitter scales by (1 - 0.5)
  EXPECT_THROW(warden::retry_policy(warden::retry_options{.max_attempts = 0}), std::invalid_argument);
  EXPECT_THROW(warden::retry_policy(warden::retry_options{.multiplier = 0.5}), std::invalid_argument);
  EXPECT_THROW(warden::retry_policy(warden::retry_options{.jitter = 1.5}), std::invalid_argument);
  EXPECT_THROW(warden::retry_policy(warden::retry_options{.initial_backoff = -1ms}), std::invalid_argument);
  EXPECT_THROW(warden::threshold_policy(0), std::invalid_argument);
  EXPECT_THROW(warden::rate_policy(0, 1s), std::invalid_argument);
  EXPECT_THROW(warden::rate_policy(1, 0s), std::invalid_argument);
}

TEST_P(tracker, T5_trigger_token_cancels_the_given_token_and_fails_the_task) {
  rt.block_on([]() -> task<void> {
    cancellation_token alarm;
    auto t = make_tracker(unlimited(), std::make_shared<warden::trigger_token_policy>(alarm));
    auto h25 = t.spawn(throws("x"));
    auto got = co_await std::move(h25);
    EXPECT_TRUE(got.error().is_panicked());
    EXPECT_TRUE(alarm.is_cancelled());
    EXPECT_FALSE(t.cancellation_token().is_cancelled());
  }());
}

class retry_twice_action final : public warden::error_action {
 public:
  std::atomic<int> runs{0};
  task<error_response> run(failure_context context) override {
    runs.fetch_add(1);
    co_await warden::yield_now{};  // an action may await
    auto& tries = *context.state;
    int n = tries.has_value() ? std::any_cast<int>(tries) : 0;
    tries = n + 1;
    co_return n < 2 ? error_response::retry_after(0ms) : error_response::fail();
  }
};

TEST_P(tracker, T5_a_user_policy_with_a_custom_action_decides_and_keeps_per_task_state) {
  rt.block_on([]() -> task<void> {
    auto action = std::make_shared<retry_twice_action>();
    auto policy = std::make_shared<recording_policy>();
    policy->answer = [action](const failure_context&) { return error_response::custom(action); };
    auto t = make_tracker(unlimited(), policy);
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto h26 = t.spawn([calls]() -> task<int> {
      calls->fetch_add(1);
      throw std::runtime_error("nope");
      co_return 0;
    });
    auto got = co_await std::move(h26);
    EXPECT_TRUE(got.error().is_panicked());
    EXPECT_EQ(calls->load(), 3);  // first run + 2 retries
    EXPECT_EQ(action->runs.load(), 3);
    auto seen = policy->seen();
    CO_ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[2].attempt, 3u);
  }());
}

task<int> continues_twice(int depth) {
  if (depth < 2)
    throw warden::failed_with_continuation<int>("step " + std::to_string(depth),
                                                [depth](cancellation_token) { return continues_twice(depth + 1); });
  co_return 100 + depth;
}

TEST_P(tracker, T5_continuations_run_in_place_of_the_failed_task_and_may_chain) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    auto t = make_tracker(unlimited(), policy);
    auto h27 = t.spawn(continues_twice(0));
    auto got = co_await std::move(h27);
    EXPECT_EQ(got.value(), 102);
    auto seen = policy->seen();
    EXPECT_TRUE(seen.empty());  // on_error is not asked when a continuation runs
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .started = 1, .success = 1}));
  }());
}

TEST_P(tracker, T5_a_policy_can_refuse_continuations) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    policy->allow_continuations = false;
    auto t = make_tracker(unlimited(), policy);
    auto h28 = t.spawn(continues_twice(0));
    auto got = co_await std::move(h28);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_TRUE(got.error().is_failed());
    EXPECT_EQ(got.error().message(), "step 0");
    CO_ASSERT_EQ(policy->seen().size(), 1u);
    EXPECT_TRUE(policy->seen()[0].has_continuation);
  }());
}

TEST_P(tracker, T5_rescheduling_a_continuation_releases_the_old_slot_before_waiting_for_a_new_one) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    policy->reschedule = true;
    auto slots = at_most(1);
    auto t = make_tracker(slots, policy);
    auto order = std::make_shared<std::vector<std::string>>();
    auto order_lock = std::make_shared<std::mutex>();
    auto note = [order, order_lock](std::string what) {
      std::lock_guard lock(*order_lock);
      order->push_back(std::move(what));
    };
    warden::event second_queued;
    auto first = t.spawn([](std::function<void(std::string)> note, warden::event* queued) -> task<int> {
      note("first");
      co_await queued->wait();  // the second task waits for our slot now
      throw warden::failed_with_continuation<int>("again", [note](cancellation_token) -> task<int> {
        return [](std::function<void(std::string)> n) -> task<int> {
          n("continuation");
          co_return 1;
        }(note);
      });
      co_return 0;
    }(note, &second_queued));
    co_await until([&] { return t.metrics()->started() == 1; });
    auto second = t.spawn([](std::function<void(std::string)> note) -> task<int> {
      note("second");
      co_return 2;
    }(note));
    co_await until([&] { return slots->waiting() == 1; });
    second_queued.set();
    EXPECT_EQ((co_await std::move(first)).value(), 1);
    EXPECT_EQ((co_await std::move(second)).value(), 2);
    // Without the release, the continuation would keep the slot and run before "second".
    EXPECT_EQ(*order, (std::vector<std::string>{"first", "second", "continuation"}));
    EXPECT_EQ(t.metrics()->started(), 2u);  // a continuation is the same task
  }());
}

// ---- T6: cancellation flows down -------------------------------------------------------------------------

TEST_P(tracker, T6_cancel_closes_and_cancels_the_subtree_but_never_parent_or_siblings) {
  rt.block_on([]() -> task<void> {
    auto root = make_tracker(unlimited(), quiet_log(), "root");
    auto a = root.child_tracker();
    auto b = root.child_tracker();
    auto a1 = a.child_tracker();
    a.cancel();
    EXPECT_TRUE(a.is_closed());
    EXPECT_TRUE(a.cancellation_token().is_cancelled());
    EXPECT_TRUE(a1.is_closed());
    EXPECT_TRUE(a1.cancellation_token().is_cancelled());
    EXPECT_FALSE(root.is_closed());
    EXPECT_FALSE(root.cancellation_token().is_cancelled());
    EXPECT_FALSE(b.is_closed());
    EXPECT_FALSE(b.cancellation_token().is_cancelled());
    auto h29 = b.spawn(returns(1));
    EXPECT_EQ((co_await std::move(h29)).value(), 1);
  }());
}

TEST_P(tracker, T6_tasks_waiting_for_a_slot_end_cancelled_and_plain_running_tasks_complete) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(at_most(1), quiet_log());
    warden::event gate;
    auto running = t.spawn(returns_when(gate, 5));
    co_await until([&] { return t.metrics()->started() == 1; });
    std::vector<warden::task_handle<int>> waiting;
    for (int i = 0; i < 3; ++i) waiting.push_back(t.spawn(returns(i)));
    t.cancel();
    for (auto& h : waiting) EXPECT_TRUE((co_await std::move(h)).error().is_cancelled());
    gate.set();
    EXPECT_EQ((co_await std::move(running)).value(), 5);  // plain tasks run to completion
    EXPECT_EQ(t.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 4, .started = 1, .success = 1, .cancelled = 3}));
  }());
}

TEST_P(tracker, T6_tasks_cancelled_before_they_started_never_run_and_count_cancelled) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    auto ran = std::make_shared<std::atomic<int>>(0);
    std::vector<warden::task_handle<void>> handles;
    warden::event never;
    for (int i = 0; i < 4; ++i)
      handles.push_back(t.spawn([](std::shared_ptr<std::atomic<int>> r) -> task<void> {
        r->fetch_add(1);
        co_return;
      }(ran)));
    t.cancel();  // in current-thread mode none has run yet; with workers some may have
    int cancelled = 0;
    for (auto& h : handles) cancelled += (co_await std::move(h)).has_value() ? 0 : 1;
    EXPECT_EQ(cancelled + ran->load(), 4);
    EXPECT_EQ(t.metrics()->cancelled(), static_cast<std::uint64_t>(cancelled));
    EXPECT_EQ(t.metrics()->started(), static_cast<std::uint64_t>(ran->load()));
    EXPECT_EQ(t.metrics()->pending(), 0u);
  }());
}

TEST(tracker_current_thread, T6_a_task_not_yet_started_when_its_tracker_is_cancelled_never_runs) {
  warden::runtime rt(warden::testkit::quiet_options(0));
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    auto ran = std::make_shared<std::atomic<int>>(0);
    auto h = t.spawn([](std::shared_ptr<std::atomic<int>> r) -> task<void> {
      r->fetch_add(1);
      co_return;
    }(ran));
    t.cancel();  // nothing ran yet: this thread has not yielded
    EXPECT_TRUE((co_await std::move(h)).error().is_cancelled());
    EXPECT_EQ(ran->load(), 0);
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .cancelled = 1}));
  }());
}

TEST_P(tracker, T6_running_cancellable_tasks_see_their_token_cancelled) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    warden::latch started(2);
    auto h1 = t.spawn_cancellable([&started](cancellation_token token) { return until_cancelled(token, &started); });
    auto h2 = t.spawn_cancellable([&started](cancellation_token token) { return until_cancelled(token, &started); });
    co_await started.wait();
    t.cancel();
    EXPECT_TRUE((co_await std::move(h1)).error().is_cancelled());
    EXPECT_TRUE((co_await std::move(h2)).error().is_cancelled());
    EXPECT_EQ(t.metrics()->cancelled(), 2u);
  }());
}

TEST_P(tracker, T6_cancelling_one_handles_token_reaches_that_running_task_only) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    warden::latch started(2);
    auto h1 = t.spawn_cancellable([&started](cancellation_token token) { return until_cancelled(token, &started); });
    auto h2 = t.spawn_cancellable([&started](cancellation_token token) { return until_cancelled(token, &started); });
    co_await started.wait();
    h1.cancellation_token().cancel();
    EXPECT_TRUE((co_await std::move(h1)).error().is_cancelled());
    EXPECT_FALSE(h2.is_finished());
    EXPECT_FALSE(h2.cancellation_token().is_cancelled());
    EXPECT_FALSE(t.cancellation_token().is_cancelled());
    h2.cancellation_token().cancel();
    EXPECT_TRUE((co_await std::move(h2)).error().is_cancelled());
  }());
}

// ---- T7: children ----------------------------------------------------------------------------------------

TEST_P(tracker, T7_a_child_inherits_the_scheduler_and_a_child_of_the_policy) {
  rt.block_on([]() -> task<void> {
    auto policy = std::make_shared<recording_policy>();
    auto parent = make_tracker(at_most(1), policy, "parent");
    auto child = parent.child_tracker();
    EXPECT_EQ(policy->children_made.load(), 1);
    EXPECT_EQ(child.name(), "parent/0");
    warden::event gate;
    auto holder = parent.spawn(waits_for(gate));
    co_await until([&] { return parent.metrics()->started() == 1; });
    auto waiting = child.spawn(returns(3));
    for (int i = 0; i < 20; ++i) co_await warden::yield_now{};
    EXPECT_EQ(child.metrics()->started(), 0u);  // the shared limit of 1 is taken
    gate.set();
    EXPECT_EQ((co_await std::move(waiting)).value(), 3);
    (void)co_await std::move(holder);

    auto other = std::make_shared<recording_policy>();
    auto custom = parent.child_tracker_builder().name("custom").scheduler(unlimited()).error_policy(other).build();
    EXPECT_EQ(policy->children_made.load(), 2);  // the builder is preset with a child policy
    auto h30 = custom.spawn(throws("x"));
    (void)co_await std::move(h30);
    EXPECT_EQ(other->seen().size(), 1u);
    EXPECT_EQ(policy->seen().size(), 0u);
  }());
}

TEST_P(tracker, T7_child_count_counts_the_live_children) {
  rt.block_on([]() -> task<void> {
    auto parent = make_tracker(unlimited(), quiet_log());
    auto a = parent.child_tracker();
    EXPECT_EQ(parent.child_count(), 1u);
    {
      auto b = parent.child_tracker();
      EXPECT_EQ(parent.child_count(), 2u);
    }
    EXPECT_EQ(parent.child_count(), 1u);  // b had no handle and no task left
    co_return;
  }());
}

TEST_P(tracker, T7_a_child_of_a_closed_tracker_is_refused_with_closed_parent) {
  rt.block_on([]() -> task<void> {
    auto parent = make_tracker(unlimited(), quiet_log(), "p");
    parent.close();
    try {
      (void)parent.child_tracker();
      ADD_FAILURE() << "child of a closed tracker accepted";
    } catch (const warden::tracker_closed& e) {
      EXPECT_NE(std::string(e.what()).find("closed parent"), std::string::npos) << e.what();
    }
    EXPECT_EQ(parent.child_count(), 0u);
    co_return;
  }());
}

// ---- T8: metrics -----------------------------------------------------------------------------------------

class rejecting_scheduler final : public warden::task_scheduler {
 public:
  std::optional<warden::acquire_result> try_acquire() override {
    return warden::acquire_result::rejected("queue full");
  }
  task<warden::acquire_result> acquire(cancellation_token) override {
    co_return warden::acquire_result::rejected("queue full");
  }
};

TEST_P(tracker, T8_rejected_tasks_are_counted_and_their_handle_says_why) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(std::make_shared<rejecting_scheduler>(), quiet_log());
    auto h31 = t.spawn(returns(1));
    auto got = co_await std::move(h31);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_TRUE(got.error().is_rejected());
    EXPECT_EQ(got.error().message(), "queue full");
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .rejected = 1}));
  }());
}

TEST_P(tracker, T8_an_aborted_task_counts_cancelled_and_leaves_the_gauges) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    warden::event never;
    std::atomic<int> frames{0};
    auto h = t.spawn([](warden::event* e, warden::testkit::live_counter) -> task<void> {
      co_await e->wait();
    }(&never, warden::testkit::live_counter(frames)));
    co_await until([&] { return t.metrics()->active() == 1 && never.waiter_count() == 1; });
    h.abort();
    auto got = co_await std::move(h);
    EXPECT_TRUE(got.error().is_cancelled());
    EXPECT_EQ(frames.load(), 0);  // the handle resolves once the task's frame is gone
    EXPECT_EQ(t.metrics()->snapshot(), (warden::tracker_metrics_snapshot{.issued = 1, .started = 1, .cancelled = 1}));
  }());
}

TEST_P(tracker, T8_a_childs_counts_roll_up_into_every_ancestor_and_a_given_sink_agrees) {
  rt.block_on([]() -> task<void> {
    auto sink = std::make_shared<warden::tracker_metrics>();
    auto root =
        task_tracker::builder().name("root").scheduler(unlimited()).error_policy(quiet_log()).metrics(sink).build();
    auto mid = root.child_tracker();
    auto leaf = mid.child_tracker();
    auto h32 = leaf.spawn(returns(1));
    EXPECT_TRUE((co_await std::move(h32)).has_value());
    auto h33 = leaf.spawn(throws("x"));
    (void)co_await std::move(h33);
    auto h34 = mid.spawn(returns(2));
    EXPECT_TRUE((co_await std::move(h34)).has_value());
    EXPECT_EQ(leaf.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 2, .started = 2, .success = 1, .failed = 1}));
    EXPECT_EQ(mid.metrics()->snapshot(),
              (warden::tracker_metrics_snapshot{.issued = 3, .started = 3, .success = 2, .failed = 1}));
    EXPECT_EQ(root.metrics()->snapshot(), mid.metrics()->snapshot());
    EXPECT_EQ(sink->snapshot(), root.metrics()->snapshot());
  }());
}

TEST_P(tracker, T8_two_roots_sharing_a_scheduler_keep_separate_counts) {
  rt.block_on([]() -> task<void> {
    auto shared = at_most(2);
    auto a = make_tracker(shared, quiet_log(), "a");
    auto b = make_tracker(shared, quiet_log(), "b");
    auto h35 = a.spawn(returns(1));
    (void)co_await std::move(h35);
    auto h36 = a.spawn(returns(1));
    (void)co_await std::move(h36);
    auto h37 = b.spawn(returns(1));
    (void)co_await std::move(h37);
    EXPECT_EQ(a.metrics()->issued(), 2u);
    EXPECT_EQ(b.metrics()->issued(), 1u);
  }());
}

TEST_P(tracker, T8_prometheus_text_has_help_type_and_a_sample_per_tracker) {
  rt.block_on([]() -> task<void> {
    auto root = make_tracker(unlimited(), quiet_log(), "crawler");
    auto child = root.child_tracker_builder().name("per-host \"a\"").build();
    auto h38 = child.spawn(returns(1));
    (void)co_await std::move(h38);
    const std::string text = root.prometheus_text();
    EXPECT_NE(text.find("# HELP warden_tracker_tasks_issued_total "), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE warden_tracker_tasks_issued_total counter\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE warden_tracker_tasks_active gauge\n"), std::string::npos) << text;
    EXPECT_NE(text.find("warden_tracker_tasks_issued_total{tracker=\"crawler\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("warden_tracker_tasks_success_total{tracker=\"per-host \\\"a\\\"\"} 1\n"), std::string::npos)
        << text;
    EXPECT_NE(text.find("warden_tracker_tasks_pending{tracker=\"crawler\"} 0\n"), std::string::npos) << text;
  }());
}

// ---- T9: join --------------------------------------------------------------------------------------------

TEST_P(tracker, T9_join_closes_children_before_parents_and_waits_for_every_task) {
  rt.block_on([]() -> task<void> {
    auto root = make_tracker(unlimited(), quiet_log(), "root");
    auto child = root.child_tracker();
    warden::event gate;
    auto done = std::make_shared<std::atomic<int>>(0);
    std::atomic<int> frames{0};
    for (int i = 0; i < 3; ++i)
      (void)child.spawn(
          [](warden::event* g, std::shared_ptr<std::atomic<int>> d, warden::testkit::live_counter) -> task<void> {
            co_await g->wait();
            d->fetch_add(1);
          }(&gate, done, warden::testkit::live_counter(frames)));  // handles dropped: join still waits for them
    auto joining = warden::spawn(root.join());
    co_await until([&] { return child.is_closed(); });
    EXPECT_FALSE(root.is_closed());  // the parent closes once its children are joined
    EXPECT_FALSE(joining.is_finished());
    gate.set();
    co_await std::move(joining);
    EXPECT_EQ(done->load(), 3);
    EXPECT_EQ(frames.load(), 0);  // join returns once the tasks' frames are gone
    EXPECT_TRUE(root.is_closed());
    EXPECT_EQ(root.metrics()->pending(), 0u);
    EXPECT_EQ(root.metrics()->success(), 3u);
    EXPECT_FALSE(root.cancellation_token().is_cancelled());  // join never cancels
    EXPECT_FALSE(child.cancellation_token().is_cancelled());
    EXPECT_THROW((void)root.spawn(returns(1)), warden::tracker_closed);
    EXPECT_THROW((void)child.spawn(returns(1)), warden::tracker_closed);
    EXPECT_THROW((void)root.child_tracker(), warden::tracker_closed);
  }());
}

TEST_P(tracker, T9_join_of_an_empty_tree_completes_and_join_never_cancels_running_work) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    co_await t.join();
    EXPECT_TRUE(t.is_closed());

    auto u = make_tracker(unlimited(), quiet_log());
    warden::latch started(1);
    auto token_seen = std::make_shared<std::atomic<bool>>(false);
    auto h = u.spawn_cancellable([&started, token_seen](cancellation_token token) -> task<cancellable_result<int>> {
      started.count_down();
      for (int i = 0; i < 50; ++i) co_await warden::yield_now{};
      token_seen->store(token.is_cancelled());
      co_return cancellable_result<int>::ok(1);
    });
    co_await started.wait();
    co_await u.join();
    EXPECT_FALSE(token_seen->load());
    EXPECT_EQ((co_await std::move(h)).value(), 1);
  }());
}

// ---- T10: the handle -------------------------------------------------------------------------------------

TEST_P(tracker, T10_the_handle_awaits_once_aborts_reports_finished_and_exposes_the_token) {
  rt.block_on([]() -> task<void> {
    auto t = make_tracker(unlimited(), quiet_log());
    auto h = t.spawn(returns(4));
    EXPECT_TRUE(h.valid());
    auto token = h.cancellation_token();
    EXPECT_FALSE(token.is_cancelled());
    EXPECT_EQ((co_await h).value(), 4);
    EXPECT_TRUE(h.is_finished());
    EXPECT_THROW((void)co_await h, warden::usage_error);
    h.abort();  // no-op once finished

    warden::task_handle<int> empty;
    EXPECT_FALSE(empty.valid());
    EXPECT_THROW((void)empty.cancellation_token(), warden::usage_error);
  }());
}

TEST(tracker_blocking, T10_a_handle_can_be_joined_from_a_plain_thread_on_a_given_runtime) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  auto t = task_tracker::builder().scheduler(unlimited()).error_policy(quiet_log()).runtime(rt).build();
  auto ok = t.spawn(returns(9));
  auto bad = t.spawn(throws("no"));
  EXPECT_EQ(ok.join().value(), 9);
  EXPECT_TRUE(bad.join().error().is_panicked());
  rt.block_on(t.join());
  EXPECT_EQ(t.metrics()->pending(), 0u);
}

TEST(tracker_blocking, spawning_with_no_runtime_is_a_usage_error) {
  auto t = task_tracker::builder().scheduler(unlimited()).error_policy(quiet_log()).build();
  EXPECT_THROW((void)t.spawn(returns(1)), warden::usage_error);
  // The refused task counts as issued and cancelled: the identity holds.
  EXPECT_EQ(t.metrics()->issued(), t.metrics()->cancelled());
  EXPECT_EQ(t.metrics()->pending(), 0u);
}

INSTANTIATE_TEST_SUITE_P(workers, tracker, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
