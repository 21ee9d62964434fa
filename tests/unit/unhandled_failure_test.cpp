// Unhandled failures: a panic whose exception would be destroyed unobserved
// goes to the runtime's policy, exactly once (SEMANTICS R17).
#include "support/test_support.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::test_event;

constexpr auto kGenerousGrace = std::chrono::seconds(60);  // a guard against hanging, never reached

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

/// What the failure reporter received (it may be called on any thread).
class failure_log {
 public:
  void add(const warden::unhandled_failure& failure) {
    std::lock_guard lock(mutex_);
    reports_.push_back(failure);
  }
  std::vector<warden::unhandled_failure> reports() const {
    std::lock_guard lock(mutex_);
    return reports_;
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return reports_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<warden::unhandled_failure> reports_;
};

template <class Handle>
task<void> until_finished(const Handle& h) {
  while (!h.is_finished()) co_await warden::yield_now{};
}

task<int> fails_with(std::string message) {
  throw std::runtime_error(message);
  co_return 0;
}

/// Parks on `go`, then throws "boom".
task<int> fails_after(test_event& started, test_event& go) {
  started.set();
  co_await go.wait();
  throw std::runtime_error("boom");
}

class unhandled_failure_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime_options options(warden::unhandled_failure_policy policy) {
    warden::runtime_options o = warden::testkit::quiet_options(GetParam());
    o.on_unhandled_failure = policy;
    o.failure_reporter = [log = &log](const warden::unhandled_failure& f) { log->add(f); };
    return o;
  }

  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }

  /// Waits until every task finished: afterwards the reports are final.
  void settle() { rt.shutdown(kGenerousGrace); }

  // Declared before the runtime, so that they outlive every task.
  failure_log log;
  std::atomic<int> alive{0};
  test_event started, go;
  warden::runtime rt{options(warden::unhandled_failure_policy::report)};
};

// R17: the default policy is report.
TEST(unhandled_failure_defaults, report_is_the_default_policy) {
  EXPECT_EQ(warden::runtime_options{}.on_unhandled_failure, warden::unhandled_failure_policy::report);
}

// R17: handle dropped before the failure → reported once, with the task's
// id, name, spawn location and message.
TEST_P(unhandled_failure_test, a_panic_after_the_handle_was_dropped_is_reported_once) {
  warden::task_id id;
  const unsigned line = __LINE__ + 2;
  {
    auto h = rt.spawn(fails_after(started, go), {.name = "dropped-early"});
    id = h.id();
  }
  go.set();
  settle();
  const auto reports = log.reports();
  ASSERT_EQ(reports.size(), 1u);
  const warden::unhandled_failure& f = reports[0];
  EXPECT_EQ(f.id, id);
  EXPECT_EQ(f.name, "dropped-early");
  EXPECT_TRUE(mentions(f.location.file_name(), "unhandled_failure_test.cpp")) << f.location.file_name();
  EXPECT_EQ(f.location.line(), line);
  EXPECT_EQ(f.message, "boom");
  EXPECT_THROW(std::rethrow_exception(f.error), std::runtime_error);
}

// R17: detach() before the failure → reported once.
TEST_P(unhandled_failure_test, a_panic_after_detach_is_reported_once) {
  auto h = rt.spawn(fails_after(started, go), {.name = "detached"});
  const warden::task_id id = h.id();
  run([&]() -> task<void> { co_await started.wait(); });
  h.detach();
  EXPECT_EQ(log.count(), 0u);
  go.set();
  settle();
  const auto reports = log.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].id, id);
  EXPECT_EQ(reports[0].name, "detached");
  EXPECT_EQ(reports[0].message, "boom");
}

// R17: a panicked task is observable until its handle goes; dropping the
// handle without awaiting reports it then, once.
TEST_P(unhandled_failure_test, dropping_the_handle_of_a_panicked_task_without_awaiting_reports_it_once) {
  warden::abort_handle survivor;
  warden::task_id id;
  run([&]() -> task<void> {
    auto h = warden::spawn(fails_with("late drop"), {.name = "dropped-late"});
    id = h.id();
    survivor = h.get_abort_handle();
    co_await until_finished(h);
    EXPECT_EQ(log.count(), 0u);  // still observable through `h`
  });
  // `h` was dropped when the body ended.
  const auto reports = log.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].id, id);
  EXPECT_EQ(reports[0].name, "dropped-late");
  EXPECT_EQ(reports[0].message, "late drop");
  survivor = {};
  settle();
  EXPECT_EQ(log.count(), 1u);
}

// R17: detach() after the failure reports it, once.
TEST_P(unhandled_failure_test, detaching_a_panicked_task_reports_it_once) {
  auto h = rt.spawn(fails_with("detached late"));
  run([&]() -> task<void> { co_await until_finished(h); });
  EXPECT_EQ(log.count(), 0u);
  h.detach();
  EXPECT_EQ(log.count(), 1u);
  settle();
  EXPECT_EQ(log.count(), 1u);
}

// R17: moving the handle around moves the obligation with it: one report,
// when the last owner drops it.
TEST_P(unhandled_failure_test, a_moved_handle_reports_once_when_its_last_owner_drops_it) {
  auto h = rt.spawn(fails_with("moved"));
  run([&]() -> task<void> { co_await until_finished(h); });
  {
    warden::join_handle<int> moved = std::move(h);
    EXPECT_EQ(log.count(), 0u);
  }
  EXPECT_EQ(log.count(), 1u);
  h = {};
  settle();
  EXPECT_EQ(log.count(), 1u);
}

// R17: awaiting with co_await observes the failure: no report.
TEST_P(unhandled_failure_test, a_panic_observed_by_co_await_is_not_reported) {
  bool caught = run([&]() -> task<bool> {
    auto before = warden::spawn(fails_after(started, go));
    auto after = warden::spawn(fails_with("after"));
    co_await started.wait();
    bool both = true;
    go.set();
    try {
      (void)co_await before;  // parked before the failure
      both = false;
    } catch (const warden::join_error& e) {
      both = both && e.is_panic();
    }
    co_await until_finished(after);
    try {
      (void)co_await std::move(after);  // awaited after the failure
      both = false;
    } catch (const warden::join_error& e) {
      both = both && e.is_panic();
    }
    co_return both;
  });
  EXPECT_TRUE(caught);
  settle();
  EXPECT_EQ(log.count(), 0u);
}

// R17: result() observes the failure: no report.
TEST_P(unhandled_failure_test, a_panic_observed_by_result_is_not_reported) {
  bool panicked = run([&]() -> task<bool> {
    auto h = warden::spawn(fails_with("result"));
    auto r = co_await h.result();
    co_return !r.has_value() && r.error().is_panic();
  });
  EXPECT_TRUE(panicked);
  settle();
  EXPECT_EQ(log.count(), 0u);
}

// R17: join() (and block_on) observe the failure: no report.
TEST_P(unhandled_failure_test, a_panic_observed_by_join_or_block_on_is_not_reported) {
  auto h = rt.spawn(fails_with("join"));
  EXPECT_THROW((void)h.join(), warden::join_error);
  EXPECT_THROW((void)rt.block_on(fails_with("block_on")), std::runtime_error);
  h = {};
  settle();
  EXPECT_EQ(log.count(), 0u);
}

// R17: an abort is never a failure: aborted while parked, before start, by
// abort_on_drop, through an abort handle after detaching, by shutdown — and
// then dropped unobserved: nothing is reported.
TEST_P(unhandled_failure_test, an_aborted_task_is_never_reported) {
  auto parked = [&](live_counter) -> task<int> {
    co_await go.wait();
    throw std::runtime_error("never thrown");
  };
  auto aborted = rt.spawn(parked(live_counter(alive)));
  auto early = rt.spawn(parked(live_counter(alive)));
  early.abort();
  auto on_drop = rt.spawn(parked(live_counter(alive)));
  on_drop.abort_on_drop();
  auto detached = rt.spawn(parked(live_counter(alive)));
  warden::abort_handle later = detached.get_abort_handle();
  detached.detach();
  rt.spawn(parked(live_counter(alive))).detach();  // left for shutdown to abort
  aborted.abort();
  later.abort();
  on_drop = {};
  aborted = {};
  early = {};
  rt.shutdown(std::chrono::nanoseconds(0));
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(log.count(), 0u);
  go.set();
}

// R17: policy ignore: an unobserved failure is dropped silently.
TEST_P(unhandled_failure_test, policy_ignore_reports_nothing) {
  failure_log quiet;
  warden::runtime_options o = warden::testkit::quiet_options(GetParam());
  o.on_unhandled_failure = warden::unhandled_failure_policy::ignore;
  o.failure_reporter = [&quiet](const warden::unhandled_failure& f) { quiet.add(f); };
  {
    warden::runtime ignoring(o);
    ignoring.spawn(fails_with("ignored before")).detach();
    auto late = ignoring.spawn(fails_with("ignored after"));
    ignoring.shutdown(kGenerousGrace);
  }
  EXPECT_EQ(quiet.count(), 0u);
}

// R17: a handle that outlives its runtime still reports to that runtime's
// reporter when dropped unobserved.
TEST_P(unhandled_failure_test, a_failure_found_after_the_runtime_was_destroyed_still_reaches_the_reporter) {
  failure_log late_log;
  warden::runtime_options o = warden::testkit::quiet_options(GetParam());
  o.failure_reporter = [&late_log](const warden::unhandled_failure& f) { late_log.add(f); };
  warden::join_handle<int> orphan;
  warden::task_id id;
  {
    warden::runtime shortlived(o);
    orphan = shortlived.spawn(fails_with("outlived"), {.name = "orphan"});
    id = orphan.id();
    shortlived.shutdown(kGenerousGrace);  // waits for the task to fail
  }
  EXPECT_TRUE(orphan.is_finished());
  EXPECT_EQ(late_log.count(), 0u);
  orphan = {};
  const auto reports = late_log.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].id, id);
  EXPECT_EQ(reports[0].name, "orphan");
  EXPECT_EQ(reports[0].message, "outlived");
}

INSTANTIATE_TEST_SUITE_P(workers, unhandled_failure_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

// ---- policy terminate ------------------------------------------------------------

class unhandled_failure_death_test : public ::testing::TestWithParam<std::size_t> {};

// R17: policy terminate: the process dies with a message naming the task.
TEST_P(unhandled_failure_death_test, policy_terminate_kills_the_process_naming_the_task) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::size_t workers = GetParam();
  EXPECT_DEATH(
      {
        warden::runtime_options o = warden::testkit::quiet_options(workers);
        o.on_unhandled_failure = warden::unhandled_failure_policy::terminate;
        warden::runtime rt(o);
        rt.spawn(fails_with("fatal boom"), {.name = "doomed"}).detach();
        rt.shutdown(kGenerousGrace);
      },
      "doomed.*fatal boom");
}

// R17: policy terminate also applies when the failure is found by dropping
// the handle after the task failed.
TEST_P(unhandled_failure_death_test, policy_terminate_applies_when_a_panicked_handle_is_dropped) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::size_t workers = GetParam();
  EXPECT_DEATH(
      {
        warden::runtime_options o = warden::testkit::quiet_options(workers);
        o.on_unhandled_failure = warden::unhandled_failure_policy::terminate;
        warden::runtime rt(o);
        auto h = rt.spawn(fails_with("dropped boom"), {.name = "doomed-late"});
        rt.shutdown(kGenerousGrace);
        h = {};
      },
      "doomed-late.*dropped boom");
}

// R17: policy terminate does not fire for an observed failure or an abort.
TEST_P(unhandled_failure_death_test, policy_terminate_spares_observed_failures_and_aborts) {
  warden::runtime_options o = warden::testkit::quiet_options(GetParam());
  o.on_unhandled_failure = warden::unhandled_failure_policy::terminate;
  warden::runtime rt(o);
  auto observed = rt.spawn(fails_with("observed"));
  EXPECT_THROW((void)observed.join(), warden::join_error);
  test_event never;
  auto parked = [&]() -> task<int> {
    co_await never.wait();
    throw std::runtime_error("never thrown");
  };
  auto aborted = rt.spawn(parked());
  aborted.abort();
  aborted = {};
  rt.shutdown(kGenerousGrace);
  SUCCEED();  // still alive
}

INSTANTIATE_TEST_SUITE_P(workers, unhandled_failure_death_test, ::testing::Values<std::size_t>(0, 2),
                         warden::testkit::worker_name);

}  // namespace
