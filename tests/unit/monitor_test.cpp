// task_monitor: failures of background tasks are reported, intentional aborts
// are not, the bookkeeping never leaks (SEMANTICS M1-M6); and the runtime's
// unhandled-failure feed uses the same record (R17).
#include "support/test_support.hpp"

#include <warden/supervise/monitor.hpp>

#include <atomic>
#include <expected>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

namespace {

using warden::task;
using warden::task_failure;
using warden::testkit::live_counter;

template <class Handle>
task<void> until_finished(const Handle& h) {
  while (!h.is_finished()) co_await warden::yield_now{};
}

task<void> returns_at_once() { co_return; }

task<void> throws(std::string message) {
  throw std::runtime_error(message);
  co_return;
}

/// Parks until `go` is set, counting itself live meanwhile.
task<void> parks(warden::event& go, live_counter alive) {
  (void)alive;
  co_await go.wait();
}

template <class E>
task<std::expected<void, E>> fails_with(E error) {
  co_return std::unexpected(std::move(error));
}

task<std::expected<void, std::string>> succeeds() { co_return std::expected<void, std::string>{}; }

task<std::expected<void, std::string>> fallible_throws() {
  throw std::runtime_error("fallible boom");
  co_return std::expected<void, std::string>{};
}

/// The next failure on `rx` (fails the test on lag or close).
task<task_failure> next_failure(warden::broadcast_receiver<task_failure>& rx) {
  auto got = co_await rx.recv();
  if (!got) throw std::runtime_error(got.error().is_lagged() ? "lagged" : "closed");
  co_return std::move(*got);
}

// Error types for every way an E becomes text.
struct with_message {
  std::string message() const { return "by message()"; }
};
struct with_what {
  const char* what() const { return "by what()"; }
};
namespace adl {
struct with_to_string {};
std::string to_string(const with_to_string&) { return "by to_string()"; }
struct with_stream {};
std::ostream& operator<<(std::ostream& out, const with_stream&) { return out << "by operator<<"; }
}  // namespace adl
struct not_describable {};

// A clear compile error otherwise: the trait the static_assert checks.
static_assert(!warden::detail::describable_error<not_describable>);
static_assert(warden::detail::describable_error<std::error_code>);  // message()
static_assert(warden::detail::describable_error<int>);              // std::to_string

class monitor : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// M1: an infinite task that completes (even at once) -> early termination, with its id and name.
TEST_P(monitor, infinite_task_that_returns_is_reported_as_early_termination) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m;
    auto rx = m.subscribe();
    auto h = m.spawn_infinite_task("heartbeat", returns_at_once());
    task_failure f = co_await next_failure(rx);
    EXPECT_TRUE(std::holds_alternative<warden::early_termination>(f.reason));
    EXPECT_EQ(f.task.id, h.id());
    EXPECT_EQ(f.task.name, "heartbeat");
    EXPECT_EQ(h.name(), "heartbeat");
    EXPECT_NE(warden::describe(f).find("'heartbeat' ended, but it should run forever"), std::string::npos);
  }());
}

// M1: any task whose body throws -> panic with the exception's message (all three kinds).
TEST_P(monitor, a_throwing_task_of_every_kind_is_reported_as_a_panic_with_its_message) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m;
    auto rx = m.subscribe();
    auto a = m.spawn_infinite_task("inf", throws("inf boom"));
    auto b = m.spawn_finite_task("fin", throws("fin boom"));
    auto c = m.spawn_fallible_task("fal", fallible_throws());
    std::map<std::string, std::string> seen;
    for (int i = 0; i < 3; ++i) {
      task_failure f = co_await next_failure(rx);
      auto* panic = std::get_if<warden::panic_reason>(&f.reason);
      EXPECT_NE(panic, nullptr);
      if (panic != nullptr) {
        seen[f.task.name] = panic->message;
        EXPECT_TRUE(panic->backtrace.empty());  // no async backtrace yet
      }
    }
    EXPECT_EQ(seen["inf"], "inf boom");
    EXPECT_EQ(seen["fin"], "fin boom");
    EXPECT_EQ(seen["fal"], "fallible boom");
  }());
}

// M1: a fallible task returning an error -> error with the error's text, by
// .message(), .what(), to_string(e), operator<< in that order.
TEST_P(monitor, a_fallible_task_returning_an_error_is_reported_with_the_error_as_text) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m({.capacity = 16});
    auto rx = m.subscribe();
    auto h1 = m.spawn_fallible_task("message", fails_with(with_message{}));
    auto h2 = m.spawn_fallible_task("what", fails_with(with_what{}));
    auto h3 = m.spawn_fallible_task("to_string", fails_with(adl::with_to_string{}));
    auto h4 = m.spawn_fallible_task("stream", fails_with(adl::with_stream{}));
    auto h5 = m.spawn_fallible_task("int", fails_with(42));
    std::map<std::string, std::string> seen;
    for (int i = 0; i < 5; ++i) {
      task_failure f = co_await next_failure(rx);
      auto* error = std::get_if<warden::error_reason>(&f.reason);
      EXPECT_NE(error, nullptr);
      if (error != nullptr) seen[f.task.name] = error->message;
    }
    EXPECT_EQ(seen["message"], "by message()");
    EXPECT_EQ(seen["what"], "by what()");
    EXPECT_EQ(seen["to_string"], "by to_string()");
    EXPECT_EQ(seen["stream"], "by operator<<");
    EXPECT_EQ(seen["int"], "42");
  }());
}

// M2: no report for a finite task completing normally nor a fallible task
// returning success (the next failure seen is a later sentinel's).
TEST_P(monitor, finite_and_successful_fallible_tasks_are_not_reported) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m;
    auto rx = m.subscribe();
    auto fin = m.spawn_finite_task("fin", returns_at_once());
    auto fal = m.spawn_fallible_task("fal", succeeds());
    co_await until_finished(fin);
    co_await until_finished(fal);
    auto sentinel = m.spawn_infinite_task("sentinel", returns_at_once());
    task_failure f = co_await next_failure(rx);
    EXPECT_EQ(f.task.name, "sentinel");
  }());
}

// M2: no report for a task aborted through its handle; M3: is_finished()
// becomes true once the cancellation is done (its frame is gone).
TEST_P(monitor, an_aborted_task_is_not_reported_and_finishes_once_cancelled) {
  rt.block_on([]() -> task<void> {
    std::atomic<int> alive{0};
    warden::event never;
    warden::task_monitor m;
    auto rx = m.subscribe();
    auto h = m.spawn_infinite_task("parked", parks(never, live_counter(alive)));
    EXPECT_FALSE(h.is_finished());
    h.abort();
    co_await until_finished(h);
    EXPECT_EQ(alive.load(), 0);  // M3: finished means the frame is destroyed
    h.abort();                   // idempotent
    auto sentinel = m.spawn_infinite_task("sentinel", returns_at_once());
    task_failure f = co_await next_failure(rx);
    EXPECT_EQ(f.task.name, "sentinel");
  }());
}

// M2: a handle made abort_on_drop() and then dropped aborts the task, unreported;
// a plain dropped handle leaves the task running and monitored.
TEST_P(monitor, abort_on_drop_handle_dropped_aborts_unreported_and_plain_drop_keeps_running) {
  rt.block_on([]() -> task<void> {
    std::atomic<int> alive{0};
    warden::event never;
    warden::event go;
    warden::task_monitor m;
    auto rx = m.subscribe();
    {
      auto h = m.spawn_infinite_task("dropped", parks(never, live_counter(alive)));
      h.abort_on_drop();
    }
    { auto kept = m.spawn_infinite_task("kept", parks(go, live_counter(alive))); }
    while (m.running_tasks() != 1) co_await warden::yield_now{};
    go.set();  // the kept task ends: an infinite task ending is reported
    task_failure f = co_await next_failure(rx);
    EXPECT_EQ(f.task.name, "kept");
    while (m.running_tasks() != 0) co_await warden::yield_now{};
    EXPECT_EQ(alive.load(), 0);
  }());
}

// M4: every subscriber sees every failure sent after it subscribed; with no
// subscriber a failure is dropped.
TEST_P(monitor, every_subscriber_sees_each_failure_sent_after_it_subscribed) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m;
    auto unseen = m.spawn_infinite_task("nobody listens", returns_at_once());
    co_await until_finished(unseen);  // reported to nobody: dropped
    auto first = m.subscribe();
    auto a = m.spawn_infinite_task("a", returns_at_once());
    co_await until_finished(a);
    auto second = m.subscribe();
    auto b = m.spawn_infinite_task("b", returns_at_once());
    EXPECT_EQ((co_await next_failure(first)).task.name, "a");
    EXPECT_EQ((co_await next_failure(first)).task.name, "b");
    EXPECT_EQ((co_await next_failure(second)).task.name, "b");
  }());
}

// M4: a subscriber more than capacity behind gets lagged(n) and continues.
TEST_P(monitor, a_subscriber_more_than_capacity_behind_gets_lagged_and_continues) {
  rt.block_on([]() -> task<void> {
    warden::task_monitor m({.capacity = 2});
    auto rx = m.subscribe();
    for (int i = 0; i < 5; ++i) {
      auto h = m.spawn_infinite_task(std::to_string(i), returns_at_once());
      co_await until_finished(h);
    }
    auto got = co_await rx.recv();
    EXPECT_FALSE(got.has_value());
    if (!got) {
      EXPECT_TRUE(got.error().is_lagged());
      EXPECT_EQ(got.error().missed(), 3u);
    }
    EXPECT_EQ((co_await next_failure(rx)).task.name, "3");
    EXPECT_EQ((co_await next_failure(rx)).task.name, "4");
  }());
}

// M5: the bookkeeping never leaks: not for ended, failed, aborted tasks, nor
// for tasks that end before spawn_* returns, nor for a spawn refused by a
// closing runtime.
TEST_P(monitor, bookkeeping_is_empty_once_every_task_is_gone) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    warden::task_monitor m;
    std::vector<warden::background_task_handle> handles;
    for (int i = 0; i < 50; ++i) {
      handles.push_back(m.spawn_finite_task("quick", returns_at_once()));  // may end before spawn returns
      handles.push_back(m.spawn_infinite_task("fails", throws("x")));
      handles.push_back(m.spawn_infinite_task("aborted", parks(never, live_counter(alive))));
    }
    EXPECT_GE(m.running_tasks(), 50u);  // at least the parked ones
    for (auto& h : handles)
      if (h.name() == "aborted") h.abort();
    for (auto& h : handles) co_await until_finished(h);
    EXPECT_EQ(m.running_tasks(), 0u);
    EXPECT_EQ(alive.load(), 0);
  }());
}

TEST_P(monitor, a_spawn_refused_by_a_closing_runtime_leaves_no_entry) {
  warden::task_monitor m(rt);
  rt.shutdown(std::chrono::seconds(0));
  EXPECT_THROW((void)m.spawn_finite_task("late", returns_at_once()), warden::runtime_closed);
  EXPECT_EQ(m.running_tasks(), 0u);  // M5
}

// M6: destroying the monitor aborts its running tasks, unreported; their
// handles then finish; subscribers get `closed` once every task is gone.
TEST_P(monitor, destroying_the_monitor_aborts_its_tasks_without_reports) {
  rt.block_on([]() -> task<void> {
    std::atomic<int> alive{0};
    warden::event never;
    std::optional<warden::task_monitor> m(std::in_place);
    auto rx = m->subscribe();
    auto a = m->spawn_infinite_task("a", parks(never, live_counter(alive)));
    auto b = m->spawn_finite_task("b", parks(never, live_counter(alive)));
    m.reset();
    co_await until_finished(a);
    co_await until_finished(b);
    EXPECT_EQ(alive.load(), 0);
    auto got = co_await rx.recv();
    EXPECT_FALSE(got.has_value());
    if (!got) {
      EXPECT_TRUE(got.error().is_closed());
    }
  }());
}

// A task_monitor constructed with a runtime spawns on it from outside.
TEST_P(monitor, a_monitor_bound_to_a_runtime_spawns_from_outside) {
  warden::task_monitor m(rt);
  auto rx = m.subscribe();
  auto h = m.spawn_infinite_task("outside", returns_at_once());
  task_failure f = rt.block_on(next_failure(rx));
  EXPECT_EQ(f.task.name, "outside");
  EXPECT_EQ(f.task.id, h.id());
}

// R17: a detached task's unhandled failure reaches subscribe_failures() as
// the same record (a panic with the message), besides the reporter.
TEST_P(monitor, runtime_failure_feed_publishes_detached_panics_as_task_failures) {
  auto options = warden::testkit::quiet_options(GetParam());
  std::atomic<int> reported{0};
  options.failure_reporter = [&reported](const warden::unhandled_failure&) { reported.fetch_add(1); };
  warden::runtime rt(options);
  auto rx = rt.subscribe_failures();
  rt.spawn(throws("detached boom"), {.name = "orphan"}).detach();
  task_failure f = rt.block_on(next_failure(rx));
  EXPECT_EQ(f.task.name, "orphan");
  auto* panic = std::get_if<warden::panic_reason>(&f.reason);
  ASSERT_NE(panic, nullptr);
  EXPECT_EQ(panic->message, "detached boom");
  EXPECT_EQ(reported.load(), 1);  // the reporter still gets it too
}

// R17: a failure reporter that throws does not keep the failure off the feed.
TEST_P(monitor, runtime_failure_feed_gets_the_failure_even_when_the_reporter_throws) {
  auto options = warden::testkit::quiet_options(GetParam());
  options.failure_reporter = [](const warden::unhandled_failure&) { throw std::runtime_error("reporter broke"); };
  warden::runtime rt(options);
  auto rx = rt.subscribe_failures();
  rt.spawn(throws("still published"), {.name = "orphan"}).detach();
  task_failure f = rt.block_on(next_failure(rx));
  EXPECT_EQ(f.task.name, "orphan");
  auto* panic = std::get_if<warden::panic_reason>(&f.reason);
  ASSERT_NE(panic, nullptr);
  EXPECT_EQ(panic->message, "still published");
}

INSTANTIATE_TEST_SUITE_P(x, monitor, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

TEST(monitor_errors, zero_capacity_is_a_usage_error_saying_what_it_means) {
  try {
    warden::task_monitor m({.capacity = 0});
    FAIL() << "no exception";
  } catch (const warden::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("capacity is 0"), std::string::npos);
  }
}

TEST(monitor_errors, spawning_with_no_runtime_is_a_usage_error) {
  warden::task_monitor m;
  EXPECT_THROW((void)m.spawn_finite_task("nowhere", returns_at_once()), warden::usage_error);
  EXPECT_EQ(m.running_tasks(), 0u);
}

TEST(monitor_errors, zero_failure_feed_capacity_is_a_usage_error) {
  auto options = warden::testkit::quiet_options(0);
  options.failure_feed_capacity = 0;
  EXPECT_THROW(warden::runtime rt(options), warden::usage_error);
}

TEST(monitor_errors, an_empty_handle_is_harmless) {
  warden::background_task_handle h;
  h.abort();
  EXPECT_FALSE(h.valid());
  EXPECT_FALSE(h.is_finished());
  EXPECT_EQ(h.id(), warden::task_id{});
  EXPECT_EQ(h.name(), "");
}

}  // namespace
