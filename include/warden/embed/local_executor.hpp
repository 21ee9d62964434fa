// warden/embed/local_executor.hpp — local_executor: a single-threaded
// executor driven by a host that calls in, and is_recovering_from_trap().
//
// Some programs cannot give their thread to a runtime: a GUI frame callback,
// a game tick, a plugin called by its host, a WebAssembly or smart-contract
// host that calls a method and expects control back. A `local_executor` has
// no thread of its own. The host enters a *context* (`run_update`,
// `run_query`), the callback spawns or wakes tasks, and before the call
// returns every task that can run has run until it parked or finished:
//
//   warden::local_executor exec;
//   std::optional<warden::join_handle<level>> loading;
//   void on_frame() {                                 // called by the host
//     exec.run_update([&] {
//       if (!loading) loading = exec.spawn(load_level("intro"));  // queued
//     });                  // here load_level ran until it parked or finished
//     if (loading && loading->is_finished()) {
//       show(loading->join());                        // finished: join() does not block
//       loading.reset();
//     }
//   }
//
// Tasks are the same `task<T>` the runtime runs: a coroutine written once
// runs on either. Inside them `co_await` works on other tasks, join handles,
// `yield_now`, and every primitive that needs no runtime thread (events,
// channels, mutexes of warden/sync). Timers need a runtime and are not
// available here.
//
// # Contexts
// * update context (`run_update`): may run every task.
// * query context (`run_query`): tasks spawned in it are *query tasks*; it
//   runs only query tasks. An update task woken during a query context keeps
//   its place in the queue and runs in the next update context.
// * cancellation context (`run_cancellation`): the host reports that a
//   callback it delivered failed (a trap). The tasks the callback wakes are
//   destroyed instead of run, and their destructors see
//   `is_recovering_from_trap()` true. No task runs in this context. A
//   destructor may spawn tasks; they are update tasks and run in the next
//   update context. Wakes made *by those destructors* are ordinary wakes
//   (the woken tasks run in the next context that may run them): only what
//   the failed callback itself woke is destroyed.
// Spawned tasks never run eagerly: `spawn` queues the task; it runs, FIFO
// with the other ready tasks, once the context's callback has returned,
// together with the tasks it spawns or wakes, until no eligible task is
// ready. A task that never parks (e.g. yields in an endless loop) keeps the
// context from returning.
//
// # Threads
// The executor is single-threaded: contexts are entered by one thread at a
// time (any thread, one after another; entering from two threads at once
// throws usage_error), and `spawn` is valid only on the thread inside a
// context. Waking is allowed from any thread: a wake from outside the
// context (another thread, or the host between calls) goes to a locked
// remote queue that the next context drains, and `on_remote_wake` tells the
// host that a call is wanted. So a local task may await a oneshot filled by
// another thread, or the join handle of a runtime task.
//
// # Results and failures
// `spawn` returns an ordinary `join_handle<T>`: awaitable from another task
// of this executor, and `join()` / `is_finished()` from the host once the
// task has finished (`join()` of an unfinished local task throws
// usage_error: nothing would drive it while the host blocks). A panic nobody
// observes goes to `local_executor_options::on_unhandled_failure`, as on a
// runtime.
//
// # Cancellation
// `abort()` on a handle destroys the task's frame the next time the executor
// runs it (at once inside a context, else in the next context that may run
// the task; destructors see is_recovering_from_trap() false — except an abort
// made by run_cancellation's callback, which counts as one of its wakes). Destroying the executor destroys every task
// still alive — queued, parked on a primitive, or deferred — with every local's destructor run, and none of them runs
// again; their handles resolve cancelled, and wakers still held elsewhere become harmless no-ops.
#pragma once

#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/task.hpp>

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

namespace warden {

/// The kind of a host context.
enum class context_kind : unsigned char {
  update,        ///< run_update: every task may run
  query,         ///< run_query: only query tasks run
  cancellation,  ///< run_cancellation: woken tasks are destroyed, none runs
};

struct local_executor_options {
  /// What happens to a panic nobody can observe (see runtime_options).
  unhandled_failure_policy on_unhandled_failure = unhandled_failure_policy::report;
  /// Receives unhandled failures under the `report` policy, on the thread
  /// inside the context. Default: one line on stderr.
  std::function<void(const unhandled_failure&)> failure_reporter{};
  /// Called on the waking thread when a task of this executor is woken from
  /// outside its context (another thread, or the host between calls): the
  /// host should enter a context soon to run it. Called under the
  /// executor's remote-queue lock: it must be short, must not throw, and must
  /// not wake tasks of this executor or enter it (post a message instead).
  std::function<void()> on_remote_wake{};
};

namespace detail {
class local_core;
}

/// A single-threaded executor that the host drives. See the top of this
/// header. Neither copyable nor movable (tasks refer to it).
class local_executor {
 public:
  explicit local_executor(local_executor_options options = {});
  /// Destroys every task still alive (see "Cancellation" at the top) and
  /// returns when every frame is gone. Must not be called from inside one of
  /// this executor's contexts or tasks (the process is terminated with a
  /// message).
  ~local_executor();
  local_executor(const local_executor&) = delete;
  local_executor& operator=(const local_executor&) = delete;

  /// Runs `f()` in an update context, then runs every ready task (update and
  /// query tasks, and whatever they spawn or wake) until none is ready, then
  /// returns `f`'s result.
  ///
  /// Throws usage_error — without calling `f` — when entered inside a
  /// context (of any local_executor on this thread), from inside a task, or
  /// while another thread is inside this executor.
  ///
  /// If `f` throws, the ready tasks still run (work `f` spawned or woke
  /// before throwing is not stranded), then the exception propagates. Task
  /// failures never propagate from here: they go to the tasks' join handles.
  template <class F>
  requires std::invocable<F&&> std::invoke_result_t<F&&> run_update(F&& f) {
    return run_in(context_kind::update, std::forward<F>(f));
  }

  /// As run_update, in a query context: tasks spawned in it are query tasks,
  /// and only query tasks run; update tasks that are ready (woken here or
  /// earlier) wait, in order, for the next update context.
  template <class F>
  requires std::invocable<F&&> std::invoke_result_t<F&&> run_query(F&& f) {
    return run_in(context_kind::query, std::forward<F>(f));
  }

  /// The host reports that a callback it delivered failed: runs `f()` (the
  /// failed callback's cleanup, which typically wakes the task that awaited
  /// the callback), then destroys every task `f` woke instead of running it;
  /// their destructors see is_recovering_from_trap() true. Nothing else
  /// runs. Tasks spawned meanwhile (by `f` or by those destructors) are
  /// update tasks and run in the next update context. A callback that wakes
  /// nothing changes nothing. Same usage errors as run_update; if `f`
  /// throws, the tasks it woke are still destroyed, then the exception
  /// propagates.
  template <class F>
  requires std::invocable<F&&> std::invoke_result_t<F&&> run_cancellation(F&& f) {
    return run_in(context_kind::cancellation, std::forward<F>(f));
  }

  /// Queues `t` as a task of this executor; it runs after the current
  /// context's callback returns (never inside this call). Its kind is the
  /// context's: a query task in a query context, else an update task.
  /// Valid only on the thread inside one of this executor's contexts (the
  /// host callback, a task running on it, or a destructor during trap
  /// recovery); elsewhere throws usage_error and destroys `t` unrun. Also
  /// throws usage_error for an empty task. During the executor's
  /// destruction (a destructor spawning) the task is accepted and cancelled
  /// without running.
  template <class T>
  join_handle<T> spawn(task<T> t, spawn_options options = {}) {
    if (!t.valid()) throw usage_error("local_executor::spawn: the task is empty (moved-from or default-constructed)");
    auto frame = detail::task_access::release(t);
    return detail::handle_access::make<T>(spawn_root(frame, detail::result_ops_for<T>, options));
  }

  /// Spawns `fn(args...)`, which must return a task; the callable and the
  /// arguments are copied into the frame, so a lambda's captures live as
  /// long as the task (the safe way to spawn a capturing lambda).
  template <class F, class... Args>
  requires task_factory<F, Args...>
  auto spawn(spawn_options options, F&& fn, Args&&... args) {
    return spawn(detail::invoke_in_frame<F, Args...>(std::forward<F>(fn), std::forward<Args>(args)...), options);
  }
  template <class F>
  requires task_factory<F>
  auto spawn(F&& fn, std::source_location where = std::source_location::current()) {
    return spawn(spawn_options{.location = where}, std::forward<F>(fn));
  }

  /// Spawned tasks not finished yet (parked, ready or deferred). Call it
  /// from the host thread, outside or inside a context.
  [[nodiscard]] std::size_t alive_tasks() const noexcept;

  /// The executor whose context the calling thread is in (inside the host
  /// callback, its tasks, and trap-recovery destructors), or nullptr: lets
  /// deep code spawn without being handed the executor.
  [[nodiscard]] static local_executor* current() noexcept;

 private:
  /// Enters a context in the constructor, leaves it in the destructor;
  /// `finish()` is the context's end: run the ready tasks, or destroy the
  /// tasks a failed callback woke.
  class context_guard {
   public:
    context_guard(local_executor& exec, context_kind kind);
    ~context_guard();
    context_guard(const context_guard&) = delete;
    context_guard& operator=(const context_guard&) = delete;
    void finish() noexcept;

   private:
    detail::local_core* core_;
  };

  template <class F>
  std::invoke_result_t<F&&> run_in(context_kind kind, F&& f) {
    using result = std::invoke_result_t<F&&>;
    context_guard guard(*this, kind);
    if constexpr (std::is_void_v<result>) {
      try {
        std::invoke(std::forward<F>(f));
      } catch (...) {
        guard.finish();
        throw;
      }
      guard.finish();
    } else {
      result value = [&]() -> result {
        try {
          return std::invoke(std::forward<F>(f));
        } catch (...) {
          guard.finish();
          throw;
        }
      }();
      guard.finish();
      return std::forward<result>(value);
    }
  }

  detail::task_header* spawn_root(std::coroutine_handle<> root, const detail::result_ops& results,
                                  const spawn_options& options);

  std::unique_ptr<detail::local_core> core_;
};

/// True only while trap recovery destroys the tasks a failed host callback
/// woke (inside local_executor::run_cancellation), i.e. in the destructors
/// of those tasks' locals; false everywhere else, including ordinary aborts
/// and the executor's destruction. Lets a destructor tell "my work was
/// rolled back" from a normal exit (e.g. leave a lock held for
/// investigation, or spawn a retry).
[[nodiscard]] bool is_recovering_from_trap() noexcept;

}  // namespace warden
