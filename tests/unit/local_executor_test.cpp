// local_executor: host contexts, query/update kinds, trap recovery, stale
// wakes, wakes from other threads, destruction (SEMANTICS E1-E5).
#include <warden/embed/local_executor.hpp>

#include "support/test_support.hpp"

#include <warden/sync/event.hpp>
#include <warden/sync/oneshot.hpp>

#include <atomic>
#include <future>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using warden::context_kind;
using warden::local_executor;
using warden::task;
using warden::usage_error;
using warden::testkit::live_counter;
using warden::testkit::test_event;

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

template <class F>
std::string usage_error_of(F&& f) {
  try {
    f();
  } catch (const usage_error& e) {
    return e.what();
  }
  return "(no usage_error)";
}

task<void> append(std::vector<std::string>& log, std::string what) {
  log.push_back(std::move(what));
  co_return;
}

task<void> count_after(test_event& ev, int& counter, std::atomic<int>& live) {
  live_counter alive(live);
  co_await ev.wait();
  ++counter;
}

/// Records whether is_recovering_from_trap() was true when destroyed.
struct notes_recovery {
  std::optional<bool>* seen;
  ~notes_recovery() { *seen = warden::is_recovering_from_trap(); }
};

task<void> park_noting_recovery(test_event& ev, std::optional<bool>& seen, bool& resumed) {
  notes_recovery note{&seen};
  co_await ev.wait();
  resumed = true;
}

/// Parks the task and hands out two wakers for the same suspension.
struct park_with_two_wakers {
  warden::detail::waker* first;
  warden::detail::waker* second;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) {
    *first = warden::detail::suspend_current(self);
    *second = first->clone();
  }
  void await_resume() const noexcept {}
};

// ---- E1: spawning and when spawned tasks run ---------------------------------

TEST(local_executor, spawn_outside_a_context_throws_usage_error_and_destroys_the_task) {
  // E1: spawn is valid only inside a host context.
  local_executor exec;
  std::atomic<int> live{0};
  test_event never;
  int counter = 0;
  const std::string message = usage_error_of([&] { (void)exec.spawn(count_after(never, counter, live)); });
  EXPECT_TRUE(mentions(message, "outside a context")) << message;
  EXPECT_TRUE(mentions(message, "run_update")) << message;
  EXPECT_EQ(live.load(), 0);
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, spawn_from_another_executors_context_throws_usage_error) {
  // E1: the context must be this executor's.
  local_executor a;
  local_executor b;
  const std::string message =
      usage_error_of([&] { a.run_update([&] { (void)b.spawn([]() -> task<void> { co_return; }); }); });
  EXPECT_TRUE(mentions(message, "outside a context of this executor")) << message;
}

TEST(local_executor, spawn_of_an_empty_task_throws_usage_error) {
  local_executor exec;
  const std::string message = usage_error_of([&] { exec.run_update([&] { (void)exec.spawn(task<void>{}); }); });
  EXPECT_TRUE(mentions(message, "empty")) << message;
}

TEST(local_executor, spawned_tasks_run_after_the_callback_returns_and_before_the_context_returns) {
  // E1: spawned tasks do not run eagerly, but when the callback returns.
  local_executor exec;
  std::vector<std::string> log;
  exec.run_update([&] {
    auto h = exec.spawn(append(log, "task"));
    log.push_back("callback after spawn");
  });
  log.push_back("context returned");
  EXPECT_EQ(log, (std::vector<std::string>{"callback after spawn", "task", "context returned"}));
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, tasks_run_fifo_together_with_the_tasks_they_spawn_and_wake) {
  // E1: FIFO, including tasks spawned or woken by the running tasks.
  local_executor exec;
  std::vector<std::string> log;
  test_event go;
  auto waiter = [&]() -> task<void> {
    co_await go.wait();
    log.push_back("woken");
  };
  auto first = [&]() -> task<void> {
    log.push_back("first");
    (void)exec.spawn(append(log, "spawned by first"));
    co_return;
  };
  auto second = [&]() -> task<void> {
    log.push_back("second");
    go.set();
    co_return;
  };
  exec.run_update([&] {
    (void)exec.spawn(waiter);
    (void)exec.spawn(first);
    (void)exec.spawn(second);
  });
  EXPECT_EQ(log, (std::vector<std::string>{"first", "second", "spawned by first", "woken"}));
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, run_update_returns_the_callbacks_result_after_running_the_tasks) {
  local_executor exec;
  int ran = 0;
  const int result = exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      ++ran;
      co_return;
    });
    return 42;
  });
  EXPECT_EQ(result, 42);
  EXPECT_EQ(ran, 1);
  std::string text = "by reference";
  std::string& same = exec.run_query([&]() -> std::string& { return text; });
  EXPECT_EQ(&same, &text);
}

TEST(local_executor, an_exception_from_the_callback_propagates_after_the_ready_tasks_ran) {
  // Decision: work the callback spawned or woke before throwing is not
  // stranded; the exception reaches the host afterwards.
  local_executor exec;
  int ran = 0;
  EXPECT_THROW(exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      ++ran;
      co_return;
    });
    throw std::runtime_error("host callback failed");
  }),
               std::runtime_error);
  EXPECT_EQ(ran, 1);
  exec.run_update([] {});  // the executor is usable afterwards
}

TEST(local_executor, join_handles_give_results_and_panics_once_the_task_finished) {
  local_executor exec;
  std::optional<warden::join_handle<int>> value;
  std::optional<warden::join_handle<void>> panic;
  exec.run_update([&] {
    value = exec.spawn([]() -> task<int> { co_return 7; });
    panic = exec.spawn([]() -> task<void> {
      throw std::runtime_error("boom");
      co_return;
    });
  });
  ASSERT_TRUE(value->is_finished());
  EXPECT_EQ(value->join(), 7);
  try {
    panic->join();
    ADD_FAILURE() << "join() should have thrown";
  } catch (const warden::join_error& e) {
    EXPECT_TRUE(e.is_panic());
    EXPECT_EQ(e.panic_message(), "boom");
  }
}

TEST(local_executor, joining_an_unfinished_task_throws_usage_error_instead_of_blocking_the_host) {
  test_event never;  // outlives the executor, which destroys the task parked on it
  local_executor exec;
  std::optional<warden::join_handle<void>> h;
  exec.run_update([&] { h = exec.spawn([&]() -> task<void> { co_await never.wait(); }); });
  const std::string message = usage_error_of([&] { h->join(); });
  EXPECT_TRUE(mentions(message, "is_finished()")) << message;
}

TEST(local_executor, a_task_awaits_another_tasks_join_handle_and_yields) {
  local_executor exec;
  std::optional<int> got;
  int rounds = 0;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      auto child = exec.spawn([&]() -> task<int> {
        for (int i = 0; i < 3; ++i) {
          ++rounds;
          co_await warden::yield_now{};
        }
        co_return 5;
      });
      got = co_await std::move(child);
    });
  });
  EXPECT_EQ(got, 5);
  EXPECT_EQ(rounds, 3);
}

TEST(local_executor, current_names_the_executor_only_inside_its_contexts) {
  local_executor exec;
  EXPECT_EQ(local_executor::current(), nullptr);
  local_executor* in_callback = nullptr;
  local_executor* in_task = nullptr;
  exec.run_query([&] {
    in_callback = local_executor::current();
    (void)exec.spawn([&]() -> task<void> {
      in_task = local_executor::current();
      co_return;
    });
  });
  EXPECT_EQ(in_callback, &exec);
  EXPECT_EQ(in_task, &exec);
  EXPECT_EQ(local_executor::current(), nullptr);
}

// ---- E2: query and update contexts ---------------------------------------------

TEST(local_executor, tasks_spawned_in_a_query_context_run_there) {
  // E2: tasks spawned in a query context are query tasks, which a query
  // context runs.
  local_executor exec;
  int ran = 0;
  exec.run_query([&] {
    (void)exec.spawn([&]() -> task<void> {
      ++ran;
      co_return;
    });
  });
  EXPECT_EQ(ran, 1);
}

TEST(local_executor, update_tasks_woken_in_a_query_context_wait_for_the_next_update_context) {
  // E2: a query context runs only query tasks; update tasks woken there wait
  // for the next update context, in the order they were woken.
  local_executor exec;
  test_event wake_update;
  test_event wake_query;
  std::vector<std::string> log;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      co_await wake_update.wait();
      log.push_back("update A");
    });
    (void)exec.spawn([&]() -> task<void> {
      co_await wake_update.wait();
      log.push_back("update B");
    });
  });
  exec.run_query([&] {
    (void)exec.spawn([&]() -> task<void> {
      co_await wake_query.wait();
      log.push_back("query");
    });
  });
  exec.run_query([&] {
    wake_update.set();  // update tasks: deferred
    wake_query.set();   // query task: runs now
  });
  EXPECT_EQ(log, (std::vector<std::string>{"query"}));
  exec.run_query([] {});  // another query context: still deferred
  EXPECT_EQ(log, (std::vector<std::string>{"query"}));
  exec.run_update([] {});
  EXPECT_EQ(log, (std::vector<std::string>{"query", "update A", "update B"}));
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, one_spawn_site_used_in_update_and_query_contexts_keeps_each_tasks_kind) {
  // E2 with one call site for both kinds: the task's kind is its scheduler,
  // which the header finds through its interned spawn site (one record per
  // location, result type and scheduler), so the kind must not leak from
  // the first spawn at a site to the next.
  local_executor exec;
  std::vector<std::string> log;
  for (int round = 0; round < 3; ++round) {
    log.clear();
    test_event wake;
    auto spawn_at_one_site = [&](const char* what) {
      (void)exec.spawn([&log, &wake, what]() -> task<void> {
        co_await wake.wait();
        log.emplace_back(what);
      });
    };
    exec.run_update([&] { spawn_at_one_site("update"); });
    exec.run_query([&] { spawn_at_one_site("query"); });
    exec.run_update([&] { spawn_at_one_site("update 2"); });
    exec.run_query([&] { wake.set(); });
    EXPECT_EQ(log, (std::vector<std::string>{"query"})) << round;
    exec.run_update([] {});
    EXPECT_EQ(log, (std::vector<std::string>{"query", "update", "update 2"})) << round;
    EXPECT_EQ(exec.alive_tasks(), 0u);
  }
}

TEST(local_executor, an_update_context_runs_query_tasks_too) {
  // E2: only the query context restricts.
  local_executor exec;
  test_event ev;
  bool ran = false;
  exec.run_query([&] {
    (void)exec.spawn([&]() -> task<void> {
      co_await ev.wait();
      ran = true;
    });
  });
  exec.run_update([&] { ev.set(); });
  EXPECT_TRUE(ran);
}

TEST(local_executor, a_query_task_spawns_query_tasks_in_a_query_context) {
  // E2: the kind follows the context the spawn happens in.
  local_executor exec;
  int ran = 0;
  exec.run_query([&] {
    (void)exec.spawn([&]() -> task<void> {
      (void)exec.spawn([&]() -> task<void> {
        ++ran;
        co_return;
      });
      co_return;
    });
  });
  EXPECT_EQ(ran, 1);
}

// ---- E3: misuse of contexts ------------------------------------------------------

TEST(local_executor, entering_a_context_inside_a_context_throws_usage_error) {
  // E3
  local_executor exec;
  local_executor other;
  std::vector<std::string> messages;
  exec.run_update([&] {
    messages.push_back(usage_error_of([&] { exec.run_update([] {}); }));
    messages.push_back(usage_error_of([&] { exec.run_query([] {}); }));
    messages.push_back(usage_error_of([&] { exec.run_cancellation([] {}); }));
    messages.push_back(usage_error_of([&] { other.run_update([] {}); }));
  });
  for (const std::string& m : messages) EXPECT_TRUE(mentions(m, "inside another context")) << m;
  exec.run_update([] {});  // leaving the outer context restored the executor
  other.run_update([] {});
}

TEST(local_executor, entering_a_context_from_inside_a_task_throws_usage_error) {
  // E3: polling from inside a task.
  local_executor exec;
  local_executor other;
  std::string own;
  std::string foreign;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      own = usage_error_of([&] { exec.run_update([] {}); });
      foreign = usage_error_of([&] { other.run_query([] {}); });
      co_return;
    });
  });
  EXPECT_TRUE(mentions(own, "from inside a task")) << own;
  EXPECT_TRUE(mentions(foreign, "from inside a task")) << foreign;

  warden::runtime rt(warden::testkit::quiet_options(1));
  const std::string from_runtime =
      rt.block_on([&]() -> task<std::string> { co_return usage_error_of([&] { exec.run_update([] {}); }); }());
  EXPECT_TRUE(mentions(from_runtime, "from inside a task")) << from_runtime;
}

TEST(local_executor, entering_from_a_second_thread_while_one_is_inside_throws_usage_error) {
  // E3: single-threaded: concurrent entry is refused, not raced.
  local_executor exec;
  std::latch inside(1);
  std::latch checked(1);
  std::thread host([&] {
    exec.run_update([&] {
      inside.count_down();
      checked.wait();
    });
  });
  inside.wait();
  const std::string message = usage_error_of([&] { exec.run_update([] {}); });
  checked.count_down();
  host.join();
  EXPECT_TRUE(mentions(message, "two threads")) << message;
  exec.run_update([] {});  // and a later call from this thread is fine
}

// ---- E4: trap recovery -------------------------------------------------------------

/// The E4 reference case. A method notifies once, then awaits a reply. Its
/// guard, destroyed during trap recovery, spawns three notifications (deep
/// code: it finds the executor through local_executor::current()).
struct spawn_notifications_on_trap {
  int* notifications;
  ~spawn_notifications_on_trap() {
    if (!warden::is_recovering_from_trap()) return;
    local_executor* exec = local_executor::current();
    for (int i = 0; i < 3; ++i)
      (void)exec->spawn([n = notifications]() -> task<void> {
        ++*n;
        co_return;
      });
  }
};

task<void> method_awaiting_a_reply(test_event& reply, int& notifications) {
  spawn_notifications_on_trap guard{&notifications};
  ++notifications;
  co_await reply.wait();
  ++notifications;  // never: the reply's callback traps
}

TEST(local_executor, trap_recovery_reference_case_counts_one_then_five) {
  // E4 reference case: counts 1 -> 5 after three spawned notifications plus one.
  local_executor exec;
  test_event reply;
  int notifications = 0;
  exec.run_update([&] { (void)exec.spawn(method_awaiting_a_reply(reply, notifications)); });
  EXPECT_EQ(notifications, 1);
  exec.run_cancellation([&] { reply.set(); });  // the reply's callback trapped
  EXPECT_EQ(notifications, 1);                  // spawned, not run: no task runs here
  exec.run_query([] {});
  EXPECT_EQ(notifications, 1);  // update tasks: not in a query context
  exec.run_update([&] { ++notifications; });
  EXPECT_EQ(notifications, 5);
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, only_the_tasks_the_failed_callback_wakes_are_destroyed_seeing_recovery) {
  // E4: destroyed instead of run; their destructors see the flag; others
  // are untouched and run later as usual.
  local_executor exec;
  test_event failed_reply;
  test_event other_reply;
  std::optional<bool> woken_saw;
  std::optional<bool> other_saw;
  bool woken_resumed = false;
  bool other_resumed = false;
  std::optional<warden::join_handle<void>> woken;
  exec.run_update([&] {
    woken = exec.spawn(park_noting_recovery(failed_reply, woken_saw, woken_resumed));
    (void)exec.spawn(park_noting_recovery(other_reply, other_saw, other_resumed));
  });
  EXPECT_FALSE(warden::is_recovering_from_trap());
  exec.run_cancellation([&] {
    EXPECT_FALSE(warden::is_recovering_from_trap());  // the callback itself is not recovery
    failed_reply.set();
  });
  EXPECT_EQ(woken_saw, true);
  EXPECT_FALSE(woken_resumed);
  ASSERT_TRUE(woken->is_finished());
  try {
    woken->join();
    ADD_FAILURE() << "a destroyed task's handle resolves cancelled";
  } catch (const warden::join_error& e) {
    EXPECT_TRUE(e.is_cancelled());
  }
  EXPECT_FALSE(warden::is_recovering_from_trap());
  EXPECT_FALSE(other_saw.has_value());
  exec.run_update([&] { other_reply.set(); });
  EXPECT_TRUE(other_resumed);
  EXPECT_EQ(other_saw, false);  // an ordinary exit
}

TEST(local_executor, aborts_and_the_executors_destruction_are_not_trap_recovery) {
  // E4: false everywhere else.
  std::optional<bool> aborted_saw;
  std::optional<bool> destroyed_saw;
  bool resumed = false;
  test_event never;
  {
    local_executor exec;
    std::optional<warden::join_handle<void>> h;
    exec.run_update([&] {
      h = exec.spawn(park_noting_recovery(never, aborted_saw, resumed));
      (void)exec.spawn(park_noting_recovery(never, destroyed_saw, resumed));
    });
    h->abort();  // from the host, between calls
    exec.run_update([] {});
    EXPECT_EQ(aborted_saw, false);
  }
  EXPECT_EQ(destroyed_saw, false);
  EXPECT_FALSE(resumed);
}

TEST(local_executor, wakes_made_by_recovery_destructors_are_ordinary_wakes) {
  // E4 (decision): only what the failed callback woke is destroyed; a task
  // woken by a destructor during recovery runs in the next context.
  local_executor exec;
  test_event reply;
  test_event released;
  bool waiter_ran = false;
  struct release_on_destroy {
    test_event* ev;
    ~release_on_destroy() { ev->set(); }
  };
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      co_await released.wait();
      waiter_ran = true;
    });
    (void)exec.spawn([&]() -> task<void> {
      release_on_destroy r{&released};
      co_await reply.wait();
    });
  });
  exec.run_cancellation([&] { reply.set(); });
  EXPECT_FALSE(waiter_ran);  // nothing runs in a cancellation context
  exec.run_update([] {});
  EXPECT_TRUE(waiter_ran);
}

TEST(local_executor, a_throwing_cancellation_callback_still_destroys_what_it_woke) {
  // E4 with a failing cleanup callback.
  local_executor exec;
  test_event reply;
  std::optional<bool> saw;
  bool resumed = false;
  exec.run_update([&] { (void)exec.spawn(park_noting_recovery(reply, saw, resumed)); });
  EXPECT_THROW(exec.run_cancellation([&] {
    reply.set();
    throw std::runtime_error("cleanup failed");
  }),
               std::runtime_error);
  EXPECT_EQ(saw, true);
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

// ---- E5: stale, double and empty wakes ------------------------------------------------

TEST(local_executor, a_double_wake_resumes_once_and_a_stale_wake_is_ignored) {
  // E5: double wake and stale wake (of a task polled since) are harmless.
  local_executor exec;
  warden::detail::waker first;
  warden::detail::waker second;
  warden::detail::waker stale;
  test_event then;
  int resumes = 0;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      co_await park_with_two_wakers{&first, &second};
      ++resumes;
      co_await then.wait();
      ++resumes;
    });
  });
  stale = first.clone();
  exec.run_update([&] {
    first.wake();
    second.wake();
  });
  EXPECT_EQ(resumes, 1);
  exec.run_update([&] { stale.wake_by_ref(); });  // a wake of an earlier suspension
  EXPECT_EQ(resumes, 1);
  EXPECT_EQ(then.waiters(), 1u);
  exec.run_update([&] { then.set(); });
  EXPECT_EQ(resumes, 2);
  exec.run_update([&] { stale.wake_by_ref(); });  // of a finished task
  EXPECT_EQ(resumes, 2);
  exec.run_cancellation([&] { stale.wake_by_ref(); });  // ... even in trap recovery
  EXPECT_EQ(exec.alive_tasks(), 0u);
}

TEST(local_executor, a_stale_wake_after_the_executor_is_gone_is_harmless) {
  // E5: a waker kept past its task and its executor.
  warden::detail::waker kept;
  warden::detail::waker spare;
  {
    local_executor exec;
    exec.run_update([&] { (void)exec.spawn([&]() -> task<void> { co_await park_with_two_wakers{&kept, &spare}; }); });
  }  // destroyed while parked
  kept.wake();
  spare.wake();
}

TEST(local_executor, a_host_callback_that_wakes_nothing_is_harmless) {
  // E5: empty contexts of every kind.
  local_executor exec;
  test_event ev;
  int counter = 0;
  std::atomic<int> live{0};
  exec.run_update([&] { (void)exec.spawn(count_after(ev, counter, live)); });
  exec.run_update([] {});
  exec.run_query([] {});
  exec.run_cancellation([] {});
  EXPECT_EQ(live.load(), 1);
  EXPECT_EQ(exec.alive_tasks(), 1u);
  exec.run_update([&] { ev.set(); });
  EXPECT_EQ(counter, 1);
  EXPECT_EQ(live.load(), 0);
}

// ---- wakes from other threads ------------------------------------------------------

TEST(local_executor, a_wake_from_another_thread_is_queued_for_the_next_context) {
  // Decision: supported; the remote queue is drained by the next context and
  // on_remote_wake tells the host a call is wanted.
  std::atomic<int> remote_wakes{0};
  local_executor exec({.on_remote_wake = [&] { remote_wakes.fetch_add(1); }});
  test_event ev;
  int counter = 0;
  std::atomic<int> live{0};
  exec.run_update([&] { (void)exec.spawn(count_after(ev, counter, live)); });
  std::thread([&] { ev.set(); }).join();
  EXPECT_EQ(remote_wakes.load(), 1);
  EXPECT_EQ(counter, 0);  // nothing runs until the host calls
  exec.run_query([] {});  // an update task: not here
  EXPECT_EQ(counter, 0);
  exec.run_update([] {});
  EXPECT_EQ(counter, 1);
}

TEST(local_executor, a_local_task_awaits_a_runtime_task_and_a_oneshot_from_another_thread) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  std::promise<void> wanted;
  std::atomic<bool> told{false};
  local_executor exec({.on_remote_wake = [&] {
    if (!told.exchange(true)) wanted.set_value();
  }});
  auto [tx, rx] = warden::oneshot<int>();
  test_event go;  // holds the runtime task until ours is parked on its handle
  std::optional<int> got;
  exec.run_update([&] {
    (void)exec.spawn([&]() -> task<void> {
      auto on_runtime = rt.spawn([&]() -> task<int> {
        co_await go.wait();
        co_return 40;
      });
      const int a = co_await std::move(on_runtime);  // woken from a worker thread
      auto b = co_await rx.recv();                   // filled by a plain thread
      got = a + b.value();
    });
  });
  go.set();
  wanted.get_future().wait();  // the runtime task finished; ours is in the remote queue
  std::thread([tx = std::move(tx)]() mutable { (void)tx.send(2); }).join();
  EXPECT_FALSE(got.has_value());
  exec.run_update([] {});
  EXPECT_EQ(got, 42);
}

TEST(local_executor, warden_event_wakes_local_tasks) {
  local_executor exec;
  warden::event ready;
  int woken = 0;
  exec.run_update([&] {
    for (int i = 0; i < 3; ++i)
      (void)exec.spawn([&]() -> task<void> {
        co_await ready.wait();
        ++woken;
      });
  });
  EXPECT_EQ(woken, 0);
  exec.run_update([&] { ready.set(); });
  EXPECT_EQ(woken, 3);
}

// ---- destruction -----------------------------------------------------------------------

TEST(local_executor, destroying_the_executor_destroys_every_frame_and_runs_nothing_more) {
  std::atomic<int> live{0};
  test_event parked_on;
  int ran_after = 0;
  std::optional<warden::join_handle<void>> parked;
  std::optional<warden::join_handle<void>> deferred;
  {
    local_executor exec;
    exec.run_update([&] {
      parked = exec.spawn(count_after(parked_on, ran_after, live));  // parked
      deferred = exec.spawn(count_after(parked_on, ran_after, live));
      (void)exec.spawn(count_after(parked_on, ran_after, live));  // detached
    });
    exec.run_query([&] { parked_on.set(); });  // update tasks woken in a query context: deferred
    EXPECT_EQ(live.load(), 3);
  }
  EXPECT_EQ(live.load(), 0);
  EXPECT_EQ(ran_after, 0);
  ASSERT_TRUE(parked->is_finished());
  EXPECT_THROW(parked->join(), warden::join_error);
  EXPECT_THROW(deferred->join(), warden::join_error);
}

TEST(local_executor, a_destructor_that_spawns_during_the_executors_destruction_gets_a_cancelled_task) {
  std::atomic<int> live{0};
  bool spawned_ran = false;
  test_event never;
  struct spawn_on_destroy {
    bool* ran;
    std::atomic<int>* live;
    ~spawn_on_destroy() {
      (void)local_executor::current()->spawn([r = ran, l = live]() -> task<void> {
        live_counter alive(*l);
        *r = true;
        co_return;
      });
    }
  };
  {
    local_executor exec;
    exec.run_update([&] {
      (void)exec.spawn([&]() -> task<void> {
        spawn_on_destroy s{&spawned_ran, &live};
        co_await never.wait();
      });
    });
  }
  EXPECT_FALSE(spawned_ran);
  EXPECT_EQ(live.load(), 0);
}

TEST(local_executor, an_executor_destroyed_inside_another_executors_context_keeps_that_context_intact) {
  local_executor outer;
  auto inner = std::make_unique<local_executor>();
  std::optional<bool> saw;
  bool resumed = false;
  test_event never;
  inner->run_update([&] { (void)inner->spawn(park_noting_recovery(never, saw, resumed)); });
  bool outer_task_ran = false;
  local_executor* current_after = nullptr;
  outer.run_update([&] {
    inner.reset();  // e.g. a plugin unloaded from a host callback
    current_after = local_executor::current();
    (void)outer.spawn([&]() -> task<void> {
      outer_task_ran = true;
      co_return;
    });
  });
  EXPECT_EQ(saw, false);
  EXPECT_FALSE(resumed);
  EXPECT_EQ(current_after, &outer);
  EXPECT_TRUE(outer_task_ran);
}

// ---- one coroutine, two executors --------------------------------------------------------

task<int> doubled_after(test_event& ev, int x) {
  co_await ev.wait();
  co_await warden::yield_now{};
  co_return 2 * x;
}

TEST(local_executor, the_same_coroutine_runs_on_the_runtime_and_on_the_local_executor) {
  test_event on_runtime_ev;
  on_runtime_ev.set();
  warden::runtime rt(warden::testkit::quiet_options(2));
  EXPECT_EQ(rt.block_on(doubled_after(on_runtime_ev, 21)), 42);

  local_executor exec;
  test_event local_ev;
  std::optional<warden::join_handle<int>> h;
  exec.run_update([&] { h = exec.spawn(doubled_after(local_ev, 21)); });
  EXPECT_FALSE(h->is_finished());
  exec.run_update([&] { local_ev.set(); });
  ASSERT_TRUE(h->is_finished());
  EXPECT_EQ(h->join(), 42);
}

TEST(local_executor, unobserved_panics_go_to_the_failure_reporter) {
  std::vector<std::string> reported;
  local_executor exec({.failure_reporter = [&](const warden::unhandled_failure& f) { reported.push_back(f.message); }});
  exec.run_update([&] {
    (void)exec.spawn([]() -> task<void> {
      throw std::runtime_error("nobody is watching");
      co_return;
    });
  });
  EXPECT_EQ(reported, (std::vector<std::string>{"nobody is watching"}));
}

}  // namespace
