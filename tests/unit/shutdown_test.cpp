// Runtime shutdown: closing to new work, the grace period, leak reports,
// aborting what is left (SEMANTICS R16, and the shutdown half of R4).
#include "support/test_support.hpp"

#include <warden/cancellation.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <expected>
#include <latch>
#include <memory>
#include <mutex>
#include <semaphore>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::test_event;

constexpr auto kGenerousGrace = std::chrono::seconds(60);  // a guard against hanging, never reached
constexpr auto kNoGrace = std::chrono::nanoseconds(0);

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

template <class T>
std::expected<T, warden::join_error> join_result(warden::join_handle<T>& h) {
  try {
    if constexpr (std::is_void_v<T>) {
      h.join();
      return {};
    } else {
      return h.join();
    }
  } catch (const warden::join_error& e) {
    return std::unexpected(e);
  }
}

template <class T>
bool joins_cancelled(warden::join_handle<T>& h) {
  auto r = join_result(h);
  return !r.has_value() && r.error().is_cancelled();
}

/// What the leak reporter received (one entry per call).
class leak_log {
 public:
  void add(std::span<const warden::leaked_task> tasks) {
    std::lock_guard lock(mutex_);
    calls_.emplace_back(tasks.begin(), tasks.end());
  }
  std::vector<std::vector<warden::leaked_task>> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::vector<warden::leaked_task>> calls_;
};

/// Records the thread that destroys it.
struct notes_destroying_thread {
  std::thread::id* where;
  ~notes_destroying_thread() { *where = std::this_thread::get_id(); }
};

class shutdown_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime_options options() {
    warden::runtime_options o = warden::testkit::quiet_options(GetParam());
    o.leak_reporter = [log = &leaks](std::span<const warden::leaked_task> tasks) { log->add(tasks); };
    return o;
  }
  bool current_thread_mode() const { return GetParam() == 0; }

  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }

  /// Parks until `never` is set (it is not).
  task<void> stuck(test_event& started) {
    live_counter local(alive);
    started.set();
    co_await never.wait();
    ADD_FAILURE() << "a stuck task was resumed";
  }

  // Declared before the runtime, so that they outlive every task.
  leak_log leaks;
  std::atomic<int> alive{0};
  test_event never;
  warden::runtime rt{options()};
};

// ---- closing ---------------------------------------------------------------------

// R4, R16: after shutdown, spawn throws runtime_closed and the task is
// destroyed unrun (its frame, parameters included, is gone).
TEST_P(shutdown_test, spawn_after_shutdown_throws_runtime_closed_and_destroys_the_task_unrun) {
  std::atomic<bool> ran{false};
  auto body = [&](live_counter) -> task<int> {
    ran = true;
    co_return 1;
  };
  rt.shutdown(kNoGrace);
  EXPECT_TRUE(rt.is_shutting_down());
  std::string message;
  try {
    auto h = rt.spawn(body(live_counter(alive)));
    ADD_FAILURE() << "spawn after shutdown returned a handle";
  } catch (const warden::runtime_closed& e) {
    message = e.what();
  }
  EXPECT_TRUE(mentions(message, "shutting down")) << message;
  EXPECT_EQ(alive.load(), 0);
  EXPECT_FALSE(ran.load());
}

// R4, R16: the callable spawn form, spawn_blocking and block_on refuse too,
// and destroy what they were given.
TEST_P(shutdown_test, every_way_to_hand_work_to_a_closed_runtime_throws_runtime_closed) {
  std::atomic<bool> ran{false};
  rt.shutdown(kNoGrace);
  EXPECT_THROW(
      {
        auto h = rt.spawn([counted = live_counter(alive), &ran]() -> task<void> {
          ran = true;
          co_return;
        });
      },
      warden::runtime_closed);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_THROW({ auto h = rt.spawn_blocking([counted = live_counter(alive), &ran] { ran = true; }); },
               warden::runtime_closed);
  EXPECT_EQ(alive.load(), 0);
  auto body = [&](live_counter) -> task<int> {
    ran = true;
    co_return 1;
  };
  EXPECT_THROW((void)rt.block_on(body(live_counter(alive))), warden::runtime_closed);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_FALSE(ran.load());
}

// R4, R16: once shutdown began, a spawn from a task still running in the
// grace period throws runtime_closed; the refused task never runs.
TEST_P(shutdown_test, spawn_during_the_grace_period_throws_runtime_closed) {
  std::atomic<bool> child_ran{false};
  auto child = [&](live_counter) -> task<void> {
    child_ran = true;
    co_return;
  };
  auto spawner = [&]() -> task<bool> {
    while (!rt.is_shutting_down()) co_await warden::yield_now{};
    try {
      auto h = warden::spawn(child(live_counter(alive)));
    } catch (const warden::runtime_closed&) {
      co_return true;
    }
    co_return false;
  };
  auto h = rt.spawn(spawner());
  rt.shutdown(kGenerousGrace);
  EXPECT_TRUE(h.join());
  EXPECT_FALSE(child_ran.load());
  EXPECT_EQ(alive.load(), 0);
  EXPECT_TRUE(leaks.calls().empty());
}

// ---- the grace period --------------------------------------------------------------

// R16: tasks that finish within the grace period complete normally: one
// woken during the grace by another task, one that only notices the
// shutdown. Nothing is reported as leaked.
TEST_P(shutdown_test, tasks_finishing_within_the_grace_period_complete_normally) {
  test_event started, go;
  auto waiter = [&]() -> task<int> {
    live_counter local(alive);
    started.set();
    co_await go.wait();
    co_await warden::yield_now{};
    co_return 2;
  };
  auto notifier = [&]() -> task<int> {
    while (!rt.is_shutting_down()) co_await warden::yield_now{};
    go.set();
    co_return 1;
  };
  auto parked = rt.spawn(waiter());
  run([&]() -> task<void> { co_await started.wait(); });
  auto waking = rt.spawn(notifier());
  rt.shutdown(kGenerousGrace);
  EXPECT_EQ(waking.join(), 1);
  EXPECT_EQ(parked.join(), 2);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_TRUE(leaks.calls().empty());
  EXPECT_EQ(rt.alive_tasks(), 0u);
}

// R16: a task woken by a plain thread during the grace period completes
// normally.
TEST_P(shutdown_test, a_task_woken_by_a_plain_thread_during_the_grace_period_completes_normally) {
  test_event started, go;
  auto waiter = [&]() -> task<int> {
    live_counter local(alive);
    started.set();
    co_await go.wait();
    co_return 3;
  };
  auto h = rt.spawn(waiter());
  run([&]() -> task<void> { co_await started.wait(); });
  std::thread setter([&] {
    while (!rt.is_shutting_down()) std::this_thread::yield();
    go.set();
  });
  rt.shutdown(kGenerousGrace);
  setter.join();
  EXPECT_EQ(h.join(), 3);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_TRUE(leaks.calls().empty());
}

// ---- what is left after the grace ---------------------------------------------------

// R16: a task still alive when the grace ends is reported (id, name, spawn
// location) and aborted: every local destroyed on a runtime thread, the
// event it waited on forgets it, its handle resolves cancelled.
TEST_P(shutdown_test, a_task_alive_after_the_grace_is_reported_and_aborted) {
  test_event started;
  std::thread::id destroyed_on;
  auto outer = [&]() -> task<void> {
    live_counter local(alive);
    notes_destroying_thread note{&destroyed_on};
    co_await stuck(started);
  };
  const unsigned line = __LINE__ + 1;
  auto h = rt.spawn(outer(), {.name = "stuck-forever"});
  const warden::task_id id = h.id();
  run([&]() -> task<void> {
    co_await started.wait();
    while (never.waiters() == 0) co_await warden::yield_now{};
  });
  EXPECT_EQ(alive.load(), 2);

  rt.shutdown(std::chrono::milliseconds(10));

  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  EXPECT_EQ(rt.alive_tasks(), 0u);
  EXPECT_TRUE(h.is_finished());
  EXPECT_TRUE(joins_cancelled(h));
  const auto calls = leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 1u);
  const warden::leaked_task& leaked = calls[0][0];
  EXPECT_EQ(leaked.id, id);
  EXPECT_EQ(leaked.name, "stuck-forever");
  EXPECT_TRUE(mentions(leaked.location.file_name(), "shutdown_test.cpp")) << leaked.location.file_name();
  EXPECT_EQ(leaked.location.line(), line);
  if (current_thread_mode())
    EXPECT_EQ(destroyed_on, std::this_thread::get_id());  // the thread driving the shutdown
  else
    EXPECT_NE(destroyed_on, std::this_thread::get_id());  // a worker
  never.set();                                            // harmless: nobody is registered any more
}

// R16: many leaked tasks, queued, parked and detached: all reported in one
// call, all frames destroyed, every handle cancelled.
TEST_P(shutdown_test, every_task_left_after_the_grace_is_reported_and_aborted) {
  constexpr int kStuck = 40;
  std::vector<test_event> started(kStuck);
  std::vector<warden::join_handle<void>> handles;
  std::vector<warden::task_id> ids;
  for (int i = 0; i < kStuck; ++i) {
    handles.push_back(rt.spawn(stuck(started[static_cast<std::size_t>(i)])));
    ids.push_back(handles.back().id());
  }
  test_event detached_started;
  auto detached = rt.spawn(stuck(detached_started));
  ids.push_back(detached.id());
  detached.detach();

  rt.shutdown(kNoGrace);

  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  for (auto& h : handles) EXPECT_TRUE(joins_cancelled(h));
  const auto calls = leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  std::vector<warden::task_id> reported;
  for (const auto& t : calls[0]) reported.push_back(t.id);
  std::sort(reported.begin(), reported.end());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(reported, ids);
}

// R16, R18: a task's id is given the first time anyone asks; a leaked task
// nobody asked about gets it from the shutdown's report, and its handles
// see the same one afterwards. Names and locations are reported too.
TEST_P(shutdown_test, a_leaked_task_whose_id_nobody_asked_for_is_reported_with_the_id_its_handle_shows) {
  constexpr int kStuck = 8;
  std::vector<test_event> started(kStuck);
  std::vector<warden::join_handle<void>> handles;
  const unsigned line = __LINE__ + 2;
  for (int i = 0; i < kStuck; ++i)
    handles.push_back(rt.spawn(stuck(started[static_cast<std::size_t>(i)]), {.name = i % 2 == 0 ? "even" : ""}));

  rt.shutdown(kNoGrace);

  EXPECT_EQ(alive.load(), 0);
  const auto calls = leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), static_cast<std::size_t>(kStuck));
  std::vector<warden::task_id> reported;
  for (const auto& t : calls[0]) {
    EXPECT_NE(t.id, warden::task_id{});
    EXPECT_TRUE(mentions(t.location.file_name(), "shutdown_test.cpp")) << t.location.file_name();
    EXPECT_EQ(t.location.line(), line);
    reported.push_back(t.id);
  }
  std::vector<warden::task_id> ids;
  for (auto& h : handles) {
    ids.push_back(h.id());
    const auto it = std::find(reported.begin(), reported.end(), h.id());
    ASSERT_NE(it, reported.end());
    EXPECT_EQ(calls[0][static_cast<std::size_t>(it - reported.begin())].name, h.name());
    EXPECT_TRUE(joins_cancelled(h));
  }
  std::sort(reported.begin(), reported.end());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(reported, ids);
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());  // unique
}

// R16: tasks awaiting each other's handles when the grace ends are all
// aborted: none is resumed after the grace by the cancellation of the task
// it awaits (which would let it run on, or fail with that join_error).
TEST_P(shutdown_test, tasks_awaiting_each_other_are_all_aborted_without_running_again) {
  test_event started;
  std::atomic<int> resumed_links{0};
  auto link = [&](warden::join_handle<void> previous) -> task<void> {
    live_counter local(alive);
    try {
      co_await previous;
    } catch (...) {
      ++resumed_links;
      throw;
    }
    ++resumed_links;
  };
  auto head = rt.spawn(stuck(started));
  std::vector<warden::task_id> ids{head.id()};
  for (int i = 0; i < 5; ++i) {
    head = rt.spawn(link(std::move(head)));
    ids.push_back(head.id());
  }
  run([&]() -> task<void> { co_await started.wait(); });

  rt.shutdown(kNoGrace);

  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(resumed_links.load(), 0);
  auto r = join_result(head);
  EXPECT_TRUE(!r.has_value() && r.error().is_cancelled()) << (r.has_value() ? "a value" : r.error().what());
  const auto calls = leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  std::vector<warden::task_id> reported;
  for (const auto& t : calls[0]) reported.push_back(t.id);
  std::sort(reported.begin(), reported.end());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(reported, ids);
}

// R16, R19: in current-thread mode a task nobody drove before the shutdown
// is aborted without ever running.
TEST(shutdown_current_thread, a_task_never_driven_is_aborted_unrun) {
  std::atomic<int> alive{0};
  std::atomic<bool> ran{false};
  leak_log leaks;
  warden::runtime_options o = warden::testkit::quiet_options(0);
  o.leak_reporter = [&leaks](std::span<const warden::leaked_task> tasks) { leaks.add(tasks); };
  warden::runtime rt(o);
  auto body = [&](live_counter) -> task<int> {
    ran = true;
    co_return 1;
  };
  auto h = rt.spawn(body(live_counter(alive)), {.name = "undriven"});
  rt.shutdown(kNoGrace);
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(alive.load(), 0);
  EXPECT_TRUE(joins_cancelled(h));
  const auto calls = leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 1u);
  EXPECT_EQ(calls[0][0].name, "undriven");
}

// R16: a plain thread blocked in join() on a task that shutdown aborts gets
// cancelled, never hangs.
TEST_P(shutdown_test, a_plain_thread_joining_an_aborted_task_gets_cancelled) {
  test_event started;
  auto h = rt.spawn(stuck(started));
  run([&]() -> task<void> { co_await started.wait(); });
  std::atomic<bool> cancelled{false};
  std::thread joiner([&] { cancelled = joins_cancelled(h); });
  rt.shutdown(kNoGrace);
  joiner.join();
  EXPECT_TRUE(cancelled.load());
  EXPECT_EQ(alive.load(), 0);
}

// ---- destructor, repetition, misuse --------------------------------------------------

// R16: destroying the runtime is shutdown(0): live tasks are reported and
// aborted, their handles (which outlive the runtime) resolve cancelled.
TEST_P(shutdown_test, destroying_the_runtime_is_shutdown_without_grace) {
  leak_log local_leaks;
  test_event started, done_started, done_go;
  warden::join_handle<void> left;
  warden::join_handle<int> finished;
  {
    warden::runtime_options o = warden::testkit::quiet_options(GetParam());
    o.leak_reporter = [&local_leaks](std::span<const warden::leaked_task> tasks) { local_leaks.add(tasks); };
    warden::runtime local(o);
    auto parked = [&]() -> task<void> {
      live_counter counted(alive);
      started.set();
      co_await never.wait();
    };
    auto quick = []() -> task<int> { co_return 5; };
    left = local.spawn(parked(), {.name = "outlived-runtime"});
    finished = local.spawn(quick());
    auto settle = [&]() -> task<void> {
      co_await started.wait();
      while (!finished.is_finished()) co_await warden::yield_now{};
    };
    local.block_on(settle());
    EXPECT_EQ(alive.load(), 1);
  }
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  EXPECT_TRUE(joins_cancelled(left));
  EXPECT_EQ(finished.join(), 5);  // a result taken after the runtime is gone
  const auto calls = local_leaks.calls();
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 1u);
  EXPECT_EQ(calls[0][0].name, "outlived-runtime");
}

// R16: shutdown twice (and the destructor after it) is harmless: one leak
// report, nothing aborted twice.
TEST_P(shutdown_test, shutdown_twice_is_harmless) {
  test_event started;
  auto h = rt.spawn(stuck(started));
  run([&]() -> task<void> { co_await started.wait(); });
  rt.shutdown(kNoGrace);
  rt.shutdown(kNoGrace);
  rt.shutdown(kGenerousGrace);
  EXPECT_EQ(leaks.calls().size(), 1u);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_TRUE(joins_cancelled(h));
}

// R16: concurrent shutdowns from two threads both return once everything is
// gone ("a second call waits for the first").
TEST_P(shutdown_test, concurrent_shutdowns_both_return_after_everything_is_gone) {
  test_event started;
  auto h = rt.spawn(stuck(started));
  run([&]() -> task<void> { co_await started.wait(); });
  std::atomic<int> alive_seen_by_other{-1};
  std::thread other([&] {
    rt.shutdown(kNoGrace);
    alive_seen_by_other = alive.load();
  });
  rt.shutdown(kNoGrace);
  const int alive_seen_here = alive.load();
  other.join();
  EXPECT_EQ(alive_seen_here, 0);
  EXPECT_EQ(alive_seen_by_other.load(), 0);
  EXPECT_EQ(leaks.calls().size(), 1u);
  EXPECT_TRUE(joins_cancelled(h));
}

// Header contract (runtime.hpp, "Errors"): shutdown from inside one of the
// runtime's own tasks throws usage_error instead of deadlocking, and leaves
// the runtime running.
TEST_P(shutdown_test, shutdown_from_inside_a_task_throws_usage_error) {
  auto try_shutdown = [&]() -> task<std::string> {
    try {
      rt.shutdown(kNoGrace);
    } catch (const warden::usage_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  const std::string from_block_on = run(try_shutdown);
  EXPECT_TRUE(mentions(from_block_on, "shutdown")) << from_block_on;
  auto spawned = rt.spawn(try_shutdown());
  const std::string from_spawned = spawned.join();
  EXPECT_TRUE(mentions(from_spawned, "shutdown")) << from_spawned;
  EXPECT_FALSE(rt.is_shutting_down());
  auto answer = []() -> task<int> { co_return 4; };
  EXPECT_EQ(rt.block_on(answer()), 4);  // still running
}

/// Counts the threads that touched `t_exit_marker` and have since exited
/// (thread_local destructors run before a joined thread's join returns).
std::atomic<int> g_exited_threads{0};
struct exit_marker {
  bool armed = false;
  ~exit_marker() {
    if (armed) ++g_exited_threads;
  }
};
thread_local exit_marker t_exit_marker;

// Runs only with worker threads (current-thread mode has none to join).
class shutdown_threaded_test : public shutdown_test {};

// R16: shutdown returns only after every worker thread has been joined.
TEST_P(shutdown_threaded_test, shutdown_joins_every_worker_thread) {
  const int workers = static_cast<int>(GetParam());
  g_exited_threads = 0;
  std::binary_semaphore arrived{0};
  std::latch release(1);
  auto mark_worker = [&]() -> task<void> {
    t_exit_marker.armed = true;
    arrived.release();
    release.wait();  // keeps this worker busy, so the next task gets another one
    co_return;
  };
  auto local = std::make_unique<warden::runtime>(warden::testkit::quiet_options(GetParam()));
  std::vector<warden::join_handle<void>> handles;
  for (int i = 0; i < workers; ++i) {
    handles.push_back(local->spawn(mark_worker()));
    arrived.acquire();  // one at a time: each lands on an idle worker
  }
  release.count_down();
  for (auto& h : handles) h.join();
  EXPECT_EQ(g_exited_threads.load(), 0);
  local->shutdown(kNoGrace);
  EXPECT_EQ(g_exited_threads.load(), workers);
  local.reset();
}

// R16: the default leak reporter prints each leaked task to stderr.
TEST_P(shutdown_test, the_default_leak_reporter_names_the_task_on_stderr) {
  test_event started;
  warden::runtime_options o;
  o.worker_threads = GetParam();  // leak_reporter left unset
  auto local = std::make_unique<warden::runtime>(o);
  auto h = local->spawn(stuck(started), {.name = "reported-on-stderr"});
  auto wait_started = [&]() -> task<void> { co_await started.wait(); };
  local->block_on(wait_started());
  ::testing::internal::CaptureStderr();
  local->shutdown(kNoGrace);
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(mentions(printed, "reported-on-stderr")) << printed;
  EXPECT_TRUE(mentions(printed, "shutdown_test.cpp")) << printed;
  EXPECT_TRUE(joins_cancelled(h));
}

INSTANTIATE_TEST_SUITE_P(workers, shutdown_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);
INSTANTIATE_TEST_SUITE_P(workers, shutdown_threaded_test, ::testing::Values<std::size_t>(1, 2, 4, 8),
                         warden::testkit::worker_name);

}  // namespace

namespace root_token_tests {

using warden::task;

// R16 / P4: tasks observe the runtime's root token during the grace period
// and can finish cleanly.
TEST(shutdown_root_token, tasks_observe_the_root_token_and_finish_within_the_grace) {
  for (std::size_t workers : {0, 1, 2}) {
    std::atomic<int> clean{0};
    std::vector<warden::leaked_task> leaked;
    warden::runtime_options o = warden::testkit::quiet_options(workers);
    o.leak_reporter = [&](std::span<const warden::leaked_task> t) { leaked.assign(t.begin(), t.end()); };
    warden::runtime rt(o);
    warden::testkit::test_event parked;
    auto service = [&]() -> task<void> {
      warden::cancellation_token token = warden::current_root_token();
      parked.set();
      co_await token.cancelled();
      ++clean;
    };
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < 3; ++i) handles.push_back(rt.spawn(service));
    auto wait_parked = [&]() -> task<void> { co_await parked.wait(); };
    rt.block_on(wait_parked());
    EXPECT_FALSE(rt.root_token().is_cancelled());
    rt.shutdown(std::chrono::seconds(30));  // guard only: the tasks end as soon as the token fires
    EXPECT_TRUE(rt.root_token().is_cancelled());
    EXPECT_EQ(clean.load(), 3) << workers << " workers";
    EXPECT_TRUE(leaked.empty());
    for (auto& h : handles) EXPECT_TRUE(h.is_finished());
  }
}

TEST(shutdown_root_token, current_root_token_outside_a_runtime_is_a_usage_error) {
  EXPECT_THROW((void)warden::current_root_token(), warden::usage_error);
}

}  // namespace root_token_tests
