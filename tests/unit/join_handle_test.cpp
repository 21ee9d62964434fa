// join_handle<T> and abort_handle: panics, cancellation, detaching, misuse,
// identity (SEMANTICS R6, R7, R8, R9, R11, R12, R13, R18).
#include "support/test_support.hpp"

#include <warden/task_local.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <expected>
#include <future>
#include <latch>
#include <semaphore>
#include <set>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::test_event;

constinit warden::task_local<int> request_number;

/// An exception type of our own, to check that the original object (not a
/// copy sliced to std::exception) comes back out of a join_error.
struct disk_error : std::runtime_error {
  disk_error(const char* message, int c) : std::runtime_error(message), code(c) {}
  int code;
};

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

/// Waits (by yielding) until `h` says the task is finished, without taking
/// its result.
template <class Handle>
task<void> until_finished(const Handle& h) {
  while (!h.is_finished()) co_await warden::yield_now{};
}

/// `h.join()` as an expected, for plain threads.
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

/// Records the thread that destroys it.
struct notes_destroying_thread {
  std::thread::id* where;
  ~notes_destroying_thread() { *where = std::this_thread::get_id(); }
};

/// Keeps every worker busy in a task blocked on a latch, so that a task
/// spawned meanwhile cannot start. Current-thread mode needs nothing: there,
/// tasks run only while somebody drives the runtime. The blockers are spawned
/// one at a time, each once the previous one runs, so each lands on an idle
/// worker (see idle_workers_pick_up_tasks_queued_behind_a_blocked_one).
class blockade {
 public:
  blockade(warden::runtime& rt, std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) {
      held_.push_back(rt.spawn([this]() -> task<void> {
        arrived_.release();
        release_.wait();
        co_return;
      }));
      arrived_.acquire();
    }
  }
  blockade(const blockade&) = delete;
  blockade& operator=(const blockade&) = delete;
  ~blockade() { lift(); }

  void lift() {
    if (lifted_) return;
    lifted_ = true;
    release_.count_down();
    for (auto& h : held_) h.join();
  }

 private:
  std::binary_semaphore arrived_{0};
  std::latch release_{1};
  std::vector<warden::join_handle<void>> held_;
  bool lifted_ = false;
};

class join_handle_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  std::size_t workers() const { return GetParam(); }
  bool current_thread_mode() const { return GetParam() == 0; }

  /// Runs `body()` to completion on the runtime (the lambda lives meanwhile).
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }

  // Declared before the runtime, so that they outlive every task.
  std::atomic<int> alive{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// ---- R6: panics ---------------------------------------------------------------

// R6: an escaping exception completes the handle with join_error::panic,
// carrying the original exception, its what(), and the task's id and name.
TEST_P(join_handle_test, panic_completes_the_handle_with_the_original_exception) {
  auto failing = []() -> task<int> {
    throw disk_error("disk on fire", 28);
    co_return 0;
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(failing(), {.name = "flusher"});
    const warden::task_id id = h.id();
    auto r = co_await h.result();
    EXPECT_FALSE(r.has_value());
    if (r.has_value()) co_return;
    const warden::join_error& e = r.error();
    EXPECT_TRUE(e.is_panic());
    EXPECT_FALSE(e.is_cancelled());
    EXPECT_EQ(e.reason(), warden::join_error::kind::panic);
    EXPECT_EQ(e.panic_message(), "disk on fire");
    EXPECT_EQ(e.id(), id);
    EXPECT_EQ(e.name(), "flusher");
    EXPECT_TRUE(mentions(e.what(), "flusher"));
    EXPECT_TRUE(mentions(e.what(), "disk on fire"));
    EXPECT_TRUE(e.exception() != nullptr);
    int retrieved = 0;
    try {
      std::rethrow_exception(e.exception());
    } catch (const disk_error& original) {
      retrieved = original.code;
    }
    EXPECT_EQ(retrieved, 28);
    int rethrown = 0;
    try {
      e.rethrow();
    } catch (const disk_error& original) {
      rethrown = original.code;
    }
    EXPECT_EQ(rethrown, 28);
  });
}

// R6: co_await on the handle throws the join_error (not the original exception).
TEST_P(join_handle_test, awaiting_a_panicked_task_throws_join_error) {
  auto failing = []() -> task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  std::string message = run([&]() -> task<std::string> {
    auto h = warden::spawn(failing());
    try {
      (void)co_await std::move(h);
    } catch (const warden::join_error& e) {
      co_return e.is_panic() ? std::string(e.panic_message()) : std::string("cancelled");
    }
    co_return "no exception";
  });
  EXPECT_EQ(message, "boom");
}

// R6: join() from a plain thread throws the same join_error.
TEST_P(join_handle_test, joining_a_panicked_task_from_a_plain_thread_throws_join_error) {
  auto failing = []() -> task<void> {
    throw disk_error("checksum mismatch", 5);
    co_return;
  };
  auto h = rt.spawn(failing(), {.name = "verifier"});
  const warden::task_id id = h.id();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_panic());
  EXPECT_EQ(r.error().panic_message(), "checksum mismatch");
  EXPECT_EQ(r.error().id(), id);
  EXPECT_EQ(r.error().name(), "verifier");
  EXPECT_THROW(r.error().rethrow(), disk_error);
}

// R6: panic_message is "" for an exception not derived from std::exception
// (join_handle.hpp: "\"\" when cancelled or not a std::exception"); the
// exception itself is still retrievable.
TEST_P(join_handle_test, panic_with_a_non_std_exception_keeps_the_exception_and_has_an_empty_message) {
  auto failing = []() -> task<int> {
    throw 42;
    co_return 0;
  };
  auto h = rt.spawn(failing());
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_panic());
  EXPECT_EQ(r.error().panic_message(), "");
  int thrown = 0;
  try {
    r.error().rethrow();
  } catch (int value) {
    thrown = value;
  }
  EXPECT_EQ(thrown, 42);
}

// R6: other tasks (one parked across the panic, many spawned after it) and
// the worker threads are unaffected.
TEST_P(join_handle_test, a_panic_leaves_other_tasks_and_the_workers_running) {
  test_event started, go;
  auto bystander = [&]() -> task<int> {
    started.set();
    co_await go.wait();
    co_return 1000;
  };
  auto failing = []() -> task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  auto one = []() -> task<int> { co_return 1; };
  int total = run([&]() -> task<int> {
    auto parked = warden::spawn(bystander());
    co_await started.wait();
    auto broken = warden::spawn(failing());
    auto r = co_await broken.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_panic());
    go.set();
    int sum = co_await std::move(parked);
    std::vector<warden::join_handle<int>> later;
    for (int i = 0; i < 100; ++i) later.push_back(warden::spawn(one()));
    for (auto& h : later) sum += co_await h;
    co_return sum;
  });
  EXPECT_EQ(total, 1100);
  auto from_outside = rt.spawn(one());
  EXPECT_EQ(from_outside.join(), 1);
}

// ---- R7: abort before start ----------------------------------------------------

// R7: a task aborted before it started never runs, resolves cancelled, and
// its frame (the parameters copied into it) is destroyed.
TEST_P(join_handle_test, abort_before_start_means_the_task_never_runs) {
  std::atomic<bool> ran{false};
  auto body = [&](live_counter) -> task<int> {
    ran = true;
    co_return 1;
  };
  blockade busy(rt, workers());
  auto h = rt.spawn(body(live_counter(alive)), {.name = "never-started"});
  EXPECT_EQ(alive.load(), 1);
  h.abort();
  busy.lift();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_FALSE(r.error().is_panic());
  EXPECT_EQ(r.error().name(), "never-started");
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(alive.load(), 0);
}

// R7: with the callable spawn form, the lambda's captured state lives in the
// frame and is destroyed by the abort.
TEST_P(join_handle_test, abort_before_start_destroys_the_captured_state) {
  std::atomic<bool> ran{false};
  blockade busy(rt, workers());
  auto h = rt.spawn([counted = live_counter(alive), &ran]() -> task<void> {
    ran = true;
    co_return;
  });
  EXPECT_EQ(alive.load(), 1);
  h.abort();
  busy.lift();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(alive.load(), 0);
}

// R7: awaiting (co_await, inside the runtime) a task aborted before it
// started gives cancelled.
TEST_P(join_handle_test, awaiting_a_task_aborted_before_start_gives_cancelled) {
  std::atomic<bool> ran{false};
  auto body = [&]() -> task<int> {
    ran = true;
    co_return 1;
  };
  bool cancelled = run([&]() -> task<bool> {
    auto h = warden::spawn(body());
    h.abort();  // the spawner is still running: with one worker or none the task has not started
    auto r = co_await h.result();
    co_return !r.has_value() && r.error().is_cancelled();
  });
  if (workers() <= 1) {
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(ran.load());
  } else {
    EXPECT_EQ(cancelled, !ran.load());  // another worker may have run it first
  }
}

// ---- R8: abort of a parked task ---------------------------------------------------

// R8: aborting a task parked on an event destroys its frame promptly on a
// runtime thread, runs every local's destructor (nested frames included),
// unregisters it from the event, and the handle resolves cancelled.
TEST_P(join_handle_test, abort_of_a_parked_task_destroys_every_local_and_unregisters_it_from_the_event) {
  test_event started, never;
  std::atomic<bool> resumed{false};
  std::thread::id destroyed_on;
  auto inner = [&]() -> task<void> {
    live_counter local(alive);
    started.set();
    co_await never.wait();
    resumed = true;
  };
  auto outer = [&]() -> task<int> {
    live_counter local(alive);
    notes_destroying_thread note{&destroyed_on};
    co_await inner();
    resumed = true;
    co_return 1;
  };
  auto h = rt.spawn(outer());
  run([&]() -> task<void> {
    co_await started.wait();
    while (never.waiters() == 0) co_await warden::yield_now{};
  });
  EXPECT_EQ(alive.load(), 2);
  EXPECT_EQ(never.waiters(), 1u);
  EXPECT_FALSE(h.is_finished());

  h.abort();
  auto r = join_result(h);  // resolves without anyone setting the event
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  EXPECT_TRUE(h.is_finished());
  if (current_thread_mode())
    EXPECT_EQ(destroyed_on, std::this_thread::get_id());  // the driver (inside join)
  else
    EXPECT_NE(destroyed_on, std::this_thread::get_id());  // a worker, not the aborting thread

  never.set();  // touches nothing of the destroyed task (ASan would notice)
  EXPECT_FALSE(resumed.load());
}

// R8: the abort is carried out without a join: the frame goes away on its
// own (observed through an abort_handle, from inside the runtime).
TEST_P(join_handle_test, abort_of_a_parked_task_destroys_the_frame_without_anyone_joining) {
  test_event started, never;
  auto parked = [&]() -> task<void> {
    live_counter local(alive);
    started.set();
    co_await never.wait();
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(parked());
    co_await started.wait();
    warden::abort_handle ah = h.get_abort_handle();
    h.abort();
    co_await until_finished(ah);
    EXPECT_EQ(alive.load(), 0);
    EXPECT_EQ(never.waiters(), 0u);
  });
  never.set();
}

// R8: a task parked on another task's join handle forgets it when aborted:
// the handle can then be awaited by someone else.
TEST_P(join_handle_test, abort_of_a_task_awaiting_a_join_handle_withdraws_it_from_that_handle) {
  test_event started, go;
  auto target = [&]() -> task<int> {
    co_await go.wait();
    co_return 5;
  };
  auto target_handle = rt.spawn(target());
  auto awaiting = [&]() -> task<int> {
    live_counter local(alive);
    started.set();
    co_return co_await target_handle;
  };
  auto h = rt.spawn(awaiting());
  run([&]() -> task<void> {
    co_await started.wait();
    co_await warden::yield_now{};
  });
  h.abort();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_EQ(alive.load(), 0);

  go.set();
  EXPECT_EQ(target_handle.join(), 5);  // not "awaited twice at the same time"
}

// ---- R9: abort of a running task, a finished task, twice ------------------------------

// R9: an abort requested while the task runs lets it run on until its next
// suspension, where its frame is destroyed; it never resumes.
TEST_P(join_handle_test, abort_of_a_running_task_takes_effect_at_its_next_suspension) {
  std::promise<void> running, aborted;
  std::shared_future<void> abort_done = aborted.get_future().share();
  std::atomic<bool> ran_on_after_abort{false}, resumed{false};
  auto body = [&]() -> task<int> {
    live_counter local(alive);
    running.set_value();
    abort_done.wait();  // blocks this thread until the abort was requested
    ran_on_after_abort = true;
    co_await warden::yield_now{};
    resumed = true;
    co_return 1;
  };
  auto h = rt.spawn(body());
  std::thread aborter([&, ah = h.get_abort_handle(), is_running = running.get_future()] {
    is_running.wait();
    ah.abort();
    aborted.set_value();
  });
  auto r = join_result(h);  // in current-thread mode this drives the task
  aborter.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_TRUE(ran_on_after_abort.load());
  EXPECT_FALSE(resumed.load());
  EXPECT_EQ(alive.load(), 0);
}

// R9: a task that aborts itself runs on to its next suspension too.
TEST_P(join_handle_test, a_task_aborting_itself_stops_at_its_next_suspension) {
  test_event go;
  warden::abort_handle self;
  std::atomic<bool> ran_on_after_abort{false}, resumed{false};
  auto body = [&]() -> task<void> {
    live_counter local(alive);
    co_await go.wait();
    self.abort();
    ran_on_after_abort = true;
    co_await warden::yield_now{};
    resumed = true;
  };
  auto h = rt.spawn(body());
  self = h.get_abort_handle();
  go.set();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_TRUE(ran_on_after_abort.load());
  EXPECT_FALSE(resumed.load());
  EXPECT_EQ(alive.load(), 0);
}

// R9: an abort that arrives while the task runs its last stretch (no
// suspension left) changes nothing: exactly one outcome, the value.
TEST_P(join_handle_test, abort_of_a_running_task_that_finishes_without_suspending_keeps_its_value) {
  std::promise<void> running, aborted;
  std::shared_future<void> abort_done = aborted.get_future().share();
  auto body = [&]() -> task<int> {
    running.set_value();
    abort_done.wait();
    co_return 7;
  };
  auto h = rt.spawn(body());
  std::thread aborter([&, ah = h.get_abort_handle(), is_running = running.get_future()] {
    is_running.wait();
    ah.abort();
    aborted.set_value();
  });
  auto r = join_result(h);
  aborter.join();
  ASSERT_TRUE(r.has_value()) << r.error().what();
  EXPECT_EQ(*r, 7);
}

// R9: abort of a completed task does nothing; the result stays available.
TEST_P(join_handle_test, abort_of_a_finished_task_keeps_its_result) {
  auto answer = [](live_counter) -> task<int> { co_return 42; };
  int value = run([&]() -> task<int> {
    auto h = warden::spawn(answer(live_counter(alive)));
    co_await until_finished(h);
    h.abort();
    h.get_abort_handle().abort();
    EXPECT_TRUE(h.is_finished());
    co_return co_await std::move(h);
  });
  EXPECT_EQ(value, 42);
  EXPECT_EQ(alive.load(), 0);  // the result taken, the frame is gone
}

// R9: abort of a panicked task keeps the panic.
TEST_P(join_handle_test, abort_of_a_panicked_task_keeps_the_panic) {
  auto failing = []() -> task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  bool panic = run([&]() -> task<bool> {
    auto h = warden::spawn(failing());
    co_await until_finished(h);
    h.abort();
    auto r = co_await h.result();
    co_return !r.has_value() && r.error().is_panic() && r.error().panic_message() == "boom";
  });
  EXPECT_TRUE(panic);
}

// R9: abort is idempotent, through the join handle and through any number
// of abort handles, before and after the cancellation finished.
TEST_P(join_handle_test, abort_is_idempotent) {
  test_event started, never;
  auto parked = [&]() -> task<int> {
    live_counter local(alive);
    started.set();
    co_await never.wait();
    co_return 1;
  };
  auto h = rt.spawn(parked());
  run([&]() -> task<void> { co_await started.wait(); });
  warden::abort_handle a = h.get_abort_handle();
  warden::abort_handle b = a;
  h.abort();
  h.abort();
  a.abort();
  b.abort();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  h.abort();
  a.abort();
  EXPECT_TRUE(a.is_finished());
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  never.set();
}

// R9: abort of an empty handle is a no-op.
TEST_P(join_handle_test, abort_of_an_empty_handle_does_nothing) {
  warden::join_handle<int> empty;
  empty.abort();
  EXPECT_FALSE(empty.is_finished());
  EXPECT_FALSE(empty.valid());
  warden::abort_handle none;
  none.abort();
  EXPECT_FALSE(none.is_finished());
  EXPECT_EQ(none.id(), warden::task_id{});
}

// ---- R11: is_finished ------------------------------------------------------------

// R11: false while the task is queued or parked, true once it completed.
TEST_P(join_handle_test, is_finished_is_false_while_the_task_can_run_and_true_after_it_completed) {
  test_event started, go;
  auto body = [&]() -> task<int> {
    started.set();
    co_await go.wait();
    co_return 3;
  };
  {
    blockade busy(rt, workers());
    auto queued = rt.spawn(body());
    EXPECT_FALSE(queued.is_finished());  // not started
    busy.lift();
    run([&]() -> task<void> { co_await started.wait(); });
    EXPECT_FALSE(queued.is_finished());  // parked
    EXPECT_FALSE(queued.get_abort_handle().is_finished());
    go.set();
    warden::abort_handle watcher = queued.get_abort_handle();
    EXPECT_EQ(queued.join(), 3);
    EXPECT_TRUE(queued.is_finished());
    EXPECT_TRUE(watcher.is_finished());
  }
}

// R11: true once the task panicked.
TEST_P(join_handle_test, is_finished_is_true_after_a_panic) {
  auto failing = []() -> task<void> {
    throw std::runtime_error("boom");
    co_return;
  };
  auto h = rt.spawn(failing());
  warden::abort_handle watcher = h.get_abort_handle();
  EXPECT_THROW(h.join(), warden::join_error);
  EXPECT_TRUE(h.is_finished());
  EXPECT_TRUE(watcher.is_finished());
}

// R11: after an abort, false until the cancellation finished (the frame is
// destroyed), then true.
TEST_P(join_handle_test, is_finished_turns_true_only_once_the_cancelled_frame_is_destroyed) {
  auto body = [](live_counter) -> task<void> { co_return; };
  blockade busy(rt, workers());
  auto h = rt.spawn(body(live_counter(alive)));
  h.abort();
  EXPECT_FALSE(h.is_finished());  // requested, but the frame still exists
  EXPECT_EQ(alive.load(), 1);
  busy.lift();
  run([&]() -> task<void> { co_await until_finished(h); });
  EXPECT_EQ(alive.load(), 0);  // finished implies destroyed
  EXPECT_TRUE(h.is_finished());
  auto r = join_result(h);
  EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
}

// ---- R12: dropping and detaching ---------------------------------------------------

// R12: dropping the handle detaches: the task keeps running to completion.
TEST_P(join_handle_test, dropping_a_handle_lets_the_task_run_to_completion) {
  test_event started, go, done;
  std::atomic<int> result{0};
  auto body = [&]() -> task<void> {
    started.set();
    co_await go.wait();
    result = 9;
    done.set();
  };
  { auto h = rt.spawn(body()); }
  run([&]() -> task<void> {
    co_await started.wait();
    go.set();
    co_await done.wait();
  });
  EXPECT_EQ(result.load(), 9);
  rt.shutdown(std::chrono::seconds(60));  // lets the task's last step finish
}

// R12: overwriting a handle by move-assignment drops (detaches) the old task.
TEST_P(join_handle_test, move_assigning_over_a_handle_detaches_its_task) {
  test_event go, done;
  auto first = [&]() -> task<int> {
    co_await go.wait();
    done.set();
    co_return 1;
  };
  auto second = []() -> task<int> { co_return 2; };
  auto h = rt.spawn(first());
  h = rt.spawn(second());
  go.set();
  run([&]() -> task<void> { co_await done.wait(); });
  EXPECT_EQ(h.join(), 2);
  rt.shutdown(std::chrono::seconds(60));
}

// R12: abort_on_drop makes dropping the handle abort the task.
TEST_P(join_handle_test, abort_on_drop_aborts_the_task_when_the_handle_is_dropped) {
  test_event started, go;
  std::atomic<bool> resumed{false};
  auto body = [&]() -> task<void> {
    live_counter local(alive);
    started.set();
    co_await go.wait();
    resumed = true;
  };
  run([&]() -> task<void> {
    warden::abort_handle watcher;
    {
      auto h = warden::spawn(body());
      h.abort_on_drop();
      watcher = h.get_abort_handle();
      co_await started.wait();
    }
    co_await until_finished(watcher);
    EXPECT_EQ(alive.load(), 0);
    EXPECT_EQ(go.waiters(), 0u);
  });
  go.set();
  EXPECT_FALSE(resumed.load());
}

// R12: the abort_on_drop flag moves with the handle; the moved-from handle
// aborts nothing.
TEST_P(join_handle_test, abort_on_drop_follows_the_handle_when_it_is_moved) {
  test_event started, go;
  auto body = [&]() -> task<int> {
    started.set();
    co_await go.wait();
    co_return 4;
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(body());
    h.abort_on_drop();
    warden::abort_handle watcher = h.get_abort_handle();
    co_await started.wait();
    {
      warden::join_handle<int> moved = std::move(h);
      EXPECT_FALSE(h.valid());
      EXPECT_TRUE(moved.valid());
    }
    co_await until_finished(watcher);
    EXPECT_EQ(go.waiters(), 0u);
  });
  go.set();
}

// R12: detach() empties the handle and lets the task run on (even after
// abort_on_drop).
TEST_P(join_handle_test, detach_empties_the_handle_and_the_task_runs_on) {
  test_event started, go, done;
  auto body = [&]() -> task<void> {
    started.set();
    co_await go.wait();
    done.set();
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(body());
    h.abort_on_drop();
    h.detach();
    EXPECT_FALSE(h.valid());
    EXPECT_EQ(h.id(), warden::task_id{});
    co_await started.wait();
    go.set();
    co_await done.wait();
  });
  EXPECT_TRUE(done.is_set());
  rt.shutdown(std::chrono::seconds(60));
}

// ---- R13: misuse ------------------------------------------------------------------

// R13: awaiting a handle twice throws usage_error naming the mistake.
TEST_P(join_handle_test, awaiting_a_handle_twice_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  std::string message = run([&]() -> task<std::string> {
    auto h = warden::spawn(answer());
    const int first = co_await h;
    EXPECT_EQ(first, 1);
    EXPECT_FALSE(h.valid());
    try {
      (void)co_await h;
    } catch (const warden::usage_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  });
  EXPECT_TRUE(mentions(message, "awaited twice")) << message;
}

// R13: awaiting after result() consumed the handle throws usage_error.
TEST_P(join_handle_test, awaiting_after_result_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  std::string message = run([&]() -> task<std::string> {
    auto h = warden::spawn(answer());
    auto r = co_await h.result();
    EXPECT_TRUE(r.has_value());
    try {
      (void)co_await h;
    } catch (const warden::usage_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  });
  EXPECT_TRUE(mentions(message, "awaited twice")) << message;
}

// R13: result() after result() throws too (a cancelled result is consumed
// like any other).
TEST_P(join_handle_test, result_twice_throws_usage_error_even_for_a_cancelled_task) {
  auto body = []() -> task<int> { co_return 1; };
  bool threw = run([&]() -> task<bool> {
    auto h = warden::spawn(body());
    h.abort();
    (void)co_await h.result();
    try {
      (void)co_await h.result();
    } catch (const warden::usage_error&) {
      co_return true;
    }
    co_return false;
  });
  EXPECT_TRUE(threw);
}

// R13: join() after the handle was awaited throws usage_error.
TEST_P(join_handle_test, join_after_await_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  auto h = rt.spawn(answer());
  run([&]() -> task<void> {
    const int value = co_await h;
    EXPECT_EQ(value, 1);
  });
  try {
    (void)h.join();
    ADD_FAILURE() << "join() after co_await did not throw";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "awaited twice")) << e.what();
  }
}

// R13: join() twice throws usage_error.
TEST_P(join_handle_test, join_twice_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  auto h = rt.spawn(answer());
  EXPECT_EQ(h.join(), 1);
  EXPECT_THROW((void)h.join(), warden::usage_error);
}

// R13: awaiting an empty (default-constructed, moved-from, detached) handle
// throws usage_error that says it is empty.
TEST_P(join_handle_test, awaiting_an_empty_handle_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  std::vector<std::string> messages = run([&]() -> task<std::vector<std::string>> {
    std::vector<std::string> out;
    warden::join_handle<int> never_assigned;
    try {
      (void)co_await never_assigned;
    } catch (const warden::usage_error& e) {
      out.emplace_back(e.what());
    }
    auto h = warden::spawn(answer());
    auto keeper = std::move(h);
    try {
      (void)co_await h;
    } catch (const warden::usage_error& e) {
      out.emplace_back(e.what());
    }
    keeper.detach();
    try {
      (void)co_await keeper.result();
    } catch (const warden::usage_error& e) {
      out.emplace_back(e.what());
    }
    co_return out;
  });
  ASSERT_EQ(messages.size(), 3u);
  for (const auto& m : messages) EXPECT_TRUE(mentions(m, "empty")) << m;

  warden::join_handle<int> empty;
  EXPECT_THROW((void)empty.join(), warden::usage_error);
}

// R13: two tasks awaiting the same handle at the same time: whichever comes
// second gets usage_error, the other still gets the value.
TEST_P(join_handle_test, awaiting_a_handle_from_two_tasks_at_once_throws_usage_error) {
  test_event go, one_refused;
  auto target = [&]() -> task<int> {
    co_await go.wait();
    co_return 8;
  };
  auto shared = rt.spawn(target());
  std::atomic<int> values{0}, refusals{0};
  std::string message;  // written by the refused contender only
  auto contender = [&]() -> task<void> {
    try {
      const int v = co_await shared;
      if (v == 8) ++values;
    } catch (const warden::usage_error& e) {
      message = e.what();
      ++refusals;
      one_refused.set();
    }
  };
  run([&]() -> task<void> {
    auto a = warden::spawn(contender());
    auto b = warden::spawn(contender());
    co_await one_refused.wait();  // the target cannot finish before this: `go` is not set
    go.set();
    co_await a;
    co_await b;
  });
  EXPECT_EQ(values.load(), 1);
  EXPECT_EQ(refusals.load(), 1);
  EXPECT_TRUE(mentions(message, "awaited twice")) << message;
}

// Header contract: join() on a worker thread would deadlock and throws
// usage_error instead.
TEST_P(join_handle_test, join_inside_a_task_throws_usage_error) {
  auto answer = []() -> task<int> { co_return 1; };
  std::string message = run([&]() -> task<std::string> {
    auto h = warden::spawn(answer());
    std::string what;
    try {
      (void)h.join();
    } catch (const warden::usage_error& e) {
      what = e.what();
    }
    const int value = co_await h;  // the failed join consumed nothing
    EXPECT_EQ(value, 1);
    co_return what;
  });
  EXPECT_TRUE(mentions(message, "join")) << message;
}

// ---- abort_handle ---------------------------------------------------------------

// get_abort_handle(): copyable, each copy aborts the task, dropping copies
// neither aborts nor detaches.
TEST_P(join_handle_test, abort_handles_are_copyable_and_any_copy_aborts) {
  test_event started, never;
  auto parked = [&]() -> task<int> {
    live_counter local(alive);
    started.set();
    co_await never.wait();
    co_return 1;
  };
  auto h = rt.spawn(parked());
  warden::abort_handle original = h.get_abort_handle();
  warden::abort_handle copy = original;
  warden::abort_handle assigned;
  assigned = copy;
  EXPECT_EQ(original.id(), h.id());
  EXPECT_EQ(copy.id(), h.id());
  EXPECT_EQ(assigned.id(), h.id());
  { warden::abort_handle dropped = h.get_abort_handle(); }
  run([&]() -> task<void> { co_await started.wait(); });
  EXPECT_FALSE(assigned.is_finished());
  assigned.abort();
  auto r = join_result(h);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is_cancelled());
  EXPECT_TRUE(original.is_finished());
  EXPECT_EQ(alive.load(), 0);
  never.set();
}

// An abort handle does not keep the result: dropping abort handles leaves the
// task to its join handle, which still gets the value.
TEST_P(join_handle_test, dropping_abort_handles_does_not_affect_the_task) {
  test_event go;
  auto body = [&]() -> task<int> {
    co_await go.wait();
    co_return 6;
  };
  auto h = rt.spawn(body());
  {
    warden::abort_handle a = h.get_abort_handle();
    warden::abort_handle b = std::move(a);
  }
  go.set();
  EXPECT_EQ(h.join(), 6);
}

// An abort handle outlives the join handle and the task.
TEST_P(join_handle_test, an_abort_handle_outlives_its_task) {
  auto answer = []() -> task<int> { co_return 1; };
  warden::abort_handle survivor;
  {
    auto h = rt.spawn(answer());
    survivor = h.get_abort_handle();
    EXPECT_EQ(h.join(), 1);
  }
  EXPECT_TRUE(survivor.is_finished());
  survivor.abort();
  EXPECT_NE(survivor.id(), warden::task_id{});
}

// The header outlives the frame: a waker the task made and its handles stay
// usable after an abort destroyed the frame parked in an event, with the
// extras record its task_local binding created (ASan sees any early free).
TEST_P(join_handle_test, a_waker_and_handles_outlive_a_frame_cancelled_while_parked) {
  warden::event started;
  warden::event never;
  warden::detail::waker kept;
  run([&]() -> task<void> {
    auto child = [&]() -> task<int> {
      auto parked = [&]() -> task<int> {
        kept = warden::detail::waker::for_current();  // a reference on the child's header
        started.set();
        co_await never.wait();
        co_return 1;
      };
      auto scoped = request_number.scope(7, parked());  // makes the extras record
      co_return co_await scoped;
    };
    auto h = warden::spawn(child(), {.name = "parked-child"});
    warden::abort_handle survivor = h.get_abort_handle();
    co_await started.wait();
    h.abort();
    auto outcome = co_await h.result();
    EXPECT_TRUE(!outcome.has_value() && outcome.error().is_cancelled());
    EXPECT_EQ(never.waiter_count(), 0u);  // the cancelled awaiter left the event
    EXPECT_EQ(h.name(), "parked-child");
    EXPECT_TRUE(survivor.is_finished());
    kept.wake_by_ref();  // a wake of a cancelled task: nothing happens
  });
  kept.wake();
}

// ---- R18: identity ------------------------------------------------------------------

// R18: a handle consumed by co_await keeps its identity: awaiting siblings in
// spawn order takes the worker's common path (the first await claims the
// younger siblings, each later await runs its child inside the await and
// takes the value there), and the consumed handles still report their id,
// name and spawn location, are finished, and refuse a second await.
TEST_P(join_handle_test, handles_consumed_by_awaits_in_spawn_order_keep_their_identity) {
  auto leaf = [](std::uint64_t i) -> task<std::uint64_t> { co_return i * 3; };
  run([&]() -> task<void> {
    constexpr std::size_t kChildren = 8;
    std::array<warden::join_handle<std::uint64_t>, kChildren> handles;
    std::array<warden::task_id, kChildren> ids_before{};
    for (std::size_t i = 0; i < kChildren; ++i) {
      if (i % 2 == 0)
        handles[i] = warden::spawn(leaf(i), {.name = "leaf-" + std::to_string(i)});
      else
        handles[i] = warden::spawn(leaf(i));
    }
    // Half the ids asked for before the awaits (the task then has extras),
    // half only after.
    for (std::size_t i = 0; i < kChildren; i += 3) ids_before[i] = handles[i].id();
    for (std::size_t i = 0; i < kChildren; ++i) EXPECT_EQ(co_await handles[i], i * 3) << "child " << i;
    std::set<std::uint64_t> distinct;
    for (std::size_t i = 0; i < kChildren; ++i) {
      auto& h = handles[i];
      EXPECT_FALSE(h.valid()) << "child " << i;
      EXPECT_TRUE(h.is_finished()) << "child " << i;
      const warden::task_id id = h.id();
      EXPECT_TRUE(static_cast<bool>(id)) << "child " << i;
      if (ids_before[i]) {
        EXPECT_EQ(id, ids_before[i]) << "child " << i;
      }
      distinct.insert(id.value());
      EXPECT_EQ(h.name(), i % 2 == 0 ? "leaf-" + std::to_string(i) : std::string()) << "child " << i;
      EXPECT_NE(h.spawn_location().line(), 0u) << "child " << i;
      bool refused = false;
      try {
        (void)co_await h;
      } catch (const warden::usage_error&) {
        refused = true;
      }
      EXPECT_TRUE(refused) << "child " << i;
    }
    EXPECT_EQ(distinct.size(), kChildren);
  });
}

// A handle consumed by its await (with workers, the one-call await path may
// free the task's header at once and keep only what its identity needs) keeps
// one id across calls and moves, gives abort handles that agree with it, and
// becomes empty when detached.
TEST_P(join_handle_test, a_consumed_handle_keeps_one_id_and_gives_abort_handles_for_the_finished_task) {
  auto leaf = [](std::uint64_t i) -> task<std::uint64_t> { co_return i + 1; };
  run([&]() -> task<void> {
    constexpr std::size_t kChildren = 6;
    std::array<warden::join_handle<std::uint64_t>, kChildren> handles;
    for (std::size_t i = 0; i < kChildren; ++i) handles[i] = warden::spawn(leaf(i));
    for (std::size_t i = 0; i < kChildren; ++i) EXPECT_EQ(co_await handles[i], i + 1) << "child " << i;
    std::set<std::uint64_t> distinct;
    for (std::size_t i = 0; i < kChildren; ++i) {
      auto& h = handles[i];
      const unsigned line = h.spawn_location().line();
      EXPECT_NE(line, 0u) << "child " << i;
      EXPECT_TRUE(h.is_finished()) << "child " << i;
      // Even children: an abort handle first, then the id; odd: the reverse.
      warden::abort_handle a;
      warden::task_id id;
      if (i % 2 == 0) {
        a = h.get_abort_handle();
        id = h.id();
      } else {
        id = h.id();
        a = h.get_abort_handle();
      }
      EXPECT_TRUE(static_cast<bool>(id)) << "child " << i;
      EXPECT_EQ(h.id(), id) << "child " << i;
      EXPECT_EQ(a.id(), id) << "child " << i;
      EXPECT_TRUE(a.is_finished()) << "child " << i;
      a.abort();  // a finished task: nothing happens
      EXPECT_EQ(h.name(), "") << "child " << i;
      distinct.insert(id.value());
      // Moved: the same identity, the source empty.
      warden::join_handle<std::uint64_t> moved = std::move(h);
      EXPECT_EQ(moved.id(), id) << "child " << i;
      EXPECT_EQ(moved.spawn_location().line(), line) << "child " << i;
      EXPECT_TRUE(moved.is_finished()) << "child " << i;
      EXPECT_FALSE(moved.valid()) << "child " << i;
      EXPECT_FALSE(h.is_finished()) << "child " << i;
      EXPECT_EQ(h.id(), warden::task_id{}) << "child " << i;
      // Detached: empty.
      moved.detach();
      EXPECT_FALSE(moved.is_finished()) << "child " << i;
      EXPECT_EQ(moved.id(), warden::task_id{}) << "child " << i;
      EXPECT_EQ(moved.spawn_location().line(), 0u) << "child " << i;
      bool refused = false;
      try {
        (void)co_await moved;
      } catch (const warden::usage_error& e) {
        refused = mentions(e.what(), "empty");
      }
      EXPECT_TRUE(refused) << "child " << i;
    }
    EXPECT_EQ(distinct.size(), kChildren);
    // A consumed handle that never gave its id: its abort handle outlives it.
    auto last = warden::spawn(leaf(7));
    EXPECT_EQ(co_await last, 8u);
    warden::abort_handle kept = last.get_abort_handle();
    const warden::task_id last_id = last.id();
    { auto gone = std::move(last); }
    EXPECT_TRUE(kept.is_finished());
    EXPECT_EQ(kept.id(), last_id);
    EXPECT_TRUE(distinct.count(last_id.value()) == 0);
  });
}

// R18: the name given at spawn (copied, so a temporary string will do); "" without one.
TEST_P(join_handle_test, name_is_the_one_given_at_spawn) {
  auto answer = []() -> task<int> { co_return 1; };
  std::string name = "job-" + std::to_string(17);
  auto named = rt.spawn(answer(), {.name = name});
  name.assign("overwritten afterwards, longer than the original");
  auto anonymous = rt.spawn(answer());
  EXPECT_EQ(named.name(), "job-17");
  EXPECT_EQ(anonymous.name(), "");
  EXPECT_EQ(named.join(), 1);
  EXPECT_EQ(named.name(), "job-17");  // still there after the result was taken
  EXPECT_EQ(anonymous.join(), 1);
}

/// Checks that `h` was spawned from this file at `line`.
void expect_spawned_here(const warden::join_handle_base& h, unsigned line) {
  const std::source_location where = h.spawn_location();
  EXPECT_TRUE(mentions(where.file_name(), "join_handle_test.cpp")) << where.file_name() << ":" << where.line();
  EXPECT_EQ(where.line(), line);
}

// R18: spawn_location is the spawn call's file and line (spawn of a task,
// with and without options, from outside and from inside the runtime).
TEST_P(join_handle_test, spawn_location_is_where_spawn_was_called) {
  auto answer = []() -> task<int> { co_return 1; };
  const unsigned with_options = __LINE__ + 1;
  auto a = rt.spawn(answer(), {.name = "a"});
  const unsigned without_options = __LINE__ + 1;
  auto b = rt.spawn(answer());
  expect_spawned_here(a, with_options);
  expect_spawned_here(b, without_options);
  run([&]() -> task<void> {
    const unsigned inside = __LINE__ + 1;
    auto d = warden::spawn(answer());
    expect_spawned_here(d, inside);
    (void)co_await d;
  });
  EXPECT_EQ(a.join() + b.join(), 2);
}

// R18: the callable form `spawn(fn, args...)` without options records the
// caller's location too.
TEST_P(join_handle_test, spawn_location_of_the_callable_form_is_where_spawn_was_called) {
  const unsigned member = __LINE__ + 1;
  auto c = rt.spawn([]() -> task<int> { co_return 1; });
  expect_spawned_here(c, member);
  run([&]() -> task<void> {
    const unsigned free = __LINE__ + 1;
    auto d = warden::spawn([]() -> task<int> { co_return 1; });
    expect_spawned_here(d, free);
    (void)co_await d;
  });
  EXPECT_EQ(c.join(), 1);
}

// R18: with options, the callable form records the caller's location.
TEST_P(join_handle_test, spawn_location_of_the_callable_form_with_options_is_where_spawn_was_called) {
  const unsigned line = __LINE__ + 1;
  auto c = rt.spawn({.name = "callable"}, []() -> task<int> { co_return 1; });
  expect_spawned_here(c, line);
  EXPECT_EQ(c.name(), "callable");
  EXPECT_EQ(c.join(), 1);
}

// R18: ids are non-zero, distinct (never reused, even after a task ended),
// equal to current_task_id() inside the task and to the join_error's id.
TEST_P(join_handle_test, ids_are_unique_and_match_the_running_task) {
  auto own_id = []() -> task<warden::task_id> { co_return warden::current_task_id(); };
  std::vector<warden::task_id> seen;
  for (int i = 0; i < 50; ++i) {
    auto h = rt.spawn(own_id());
    const warden::task_id id = h.id();
    EXPECT_NE(id, warden::task_id{});
    EXPECT_TRUE(static_cast<bool>(id));
    EXPECT_EQ(h.join(), id);
    EXPECT_EQ(h.id(), id);
    seen.push_back(id);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());

  auto body = []() -> task<int> { co_return 1; };
  auto cancelled = rt.spawn(body());
  cancelled.abort();
  auto r = join_result(cancelled);
  if (!r.has_value()) {
    EXPECT_EQ(r.error().id(), cancelled.id());
  }
}

// Precondition of `blockade` (R7 and R11 with workers): two tasks spawned
// together on a fresh 2-worker runtime both get a worker, so they can meet.
// Each waits for the other with a 10 s guard; a task left queued behind a
// blocked one while the other worker sleeps shows up as a stall.
TEST(scheduling, idle_workers_pick_up_tasks_queued_behind_a_blocked_one) {
  const int iterations = warden::testkit::stress_iterations(1000);
  int stalls = 0;
  for (int i = 0; i < iterations && stalls == 0; ++i) {
    warden::runtime rt(warden::testkit::quiet_options(2));
    std::promise<void> a_running, b_running;
    std::shared_future<void> a_ran = a_running.get_future().share();
    std::shared_future<void> b_ran = b_running.get_future().share();
    auto meet = [](std::promise<void>* mine, std::shared_future<void> other) -> task<bool> {
      mine->set_value();
      co_return other.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    };
    auto a = rt.spawn(meet(&a_running, b_ran));
    auto b = rt.spawn(meet(&b_running, a_ran));
    const bool a_met = a.join();
    const bool b_met = b.join();
    if (!a_met || !b_met) ++stalls;
  }
  EXPECT_EQ(stalls, 0) << "a runnable task waited behind a blocked one while a worker slept";
}

INSTANTIATE_TEST_SUITE_P(workers, join_handle_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
