// warden/runtime.hpp — the runtime that runs tasks: runtime, runtime_options,
// spawn, spawn_blocking, block_on, yield_now, current_task_id.
//
// A runtime owns N worker threads (work-stealing, see docs/design.md) and an
// elastic pool for blocking calls. Hand it work with `spawn`, wait for a
// result from an ordinary thread with `block_on`:
//
//   warden::runtime rt;                             // one worker per core
//   int v = rt.block_on([]() -> warden::task<int> {
//     auto h = warden::spawn(compute());             // runs concurrently
//     co_return co_await std::move(h) + 1;
//   }());
//
// With `worker_threads = 0` the runtime is in current-thread mode: it has no
// workers, and all tasks run on the thread that is inside `block_on` (or
// `shutdown`). Tasks spawned while nobody is driving wait for the next
// `block_on`.
//
// # Shutdown
// `shutdown(grace)` (the destructor is `shutdown(0)`) stops accepting work
// (`spawn` then throws `runtime_closed`), cancels `root_token()` so tasks
// can notice, gives live tasks `grace` to finish,
// then reports the ones still alive (id, name, spawn location) to
// `runtime_options::leak_reporter` and aborts them: their frames are
// destroyed on the runtime's threads and their join handles resolve
// cancelled. It returns once every task is gone and every thread is joined.
// A task that never suspends cannot be cancelled and keeps shutdown waiting;
// so does a running blocking call.
//
// # Errors
// * `spawn` with no runtime (a plain thread, no runtime object): usage_error.
// * `spawn` / `spawn_blocking` / `block_on` after shutdown began:
//   runtime_closed; the task is destroyed unrun.
// * `block_on` or `shutdown` from a worker thread (it would deadlock):
//   usage_error.
#pragma once

#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/sync/broadcast.hpp>
#include <warden/task.hpp>
#include <warden/task_failure.hpp>

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace warden {

class cancellation_token;  // warden/cancellation.hpp

/// What happens to a failure nobody can observe any more (R17): a panicked
/// task whose handle was dropped or detached without its result being taken.
enum class unhandled_failure_policy {
  ignore,     ///< drop it silently
  report,     ///< pass it to runtime_options::failure_reporter (default) and to runtime::subscribe_failures()
  terminate,  ///< print a message naming the task and call std::terminate
};

/// An unhandled failure, as given to the failure reporter.
struct unhandled_failure {
  task_id id;
  std::string name{};
  std::source_location location;  ///< where the task was spawned
  std::exception_ptr error;
  std::string message;  ///< the exception's what(), or a placeholder
};

/// A task still alive when a shutdown's grace period ended.
struct leaked_task {
  task_id id;
  std::string name{};
  std::source_location location;
};

struct runtime_options {
  /// Worker threads; 0 selects current-thread mode (see the top of this
  /// header). At most max_worker_threads: the runtime's constructor throws
  /// usage_error beyond that.
  std::size_t worker_threads = default_worker_threads();
  static constexpr std::size_t max_worker_threads = 65535;
  /// Upper bound of the blocking pool (threads start on demand).
  std::size_t blocking_threads = 64;
  /// An idle blocking thread exits after this long.
  std::chrono::milliseconds blocking_keep_alive = std::chrono::seconds(10);
  unhandled_failure_policy on_unhandled_failure = unhandled_failure_policy::report;
  /// Receives unhandled failures under the `report` policy, on the thread
  /// that found the failure unobservable. Default: one line on stderr. If it
  /// throws, the exception is printed and dropped; the failure still goes to
  /// runtime::subscribe_failures().
  std::function<void(const unhandled_failure&)> failure_reporter{};
  /// How many recent failures runtime::subscribe_failures() keeps for a
  /// subscriber that falls behind (it then gets `lagged(n)`). Must be > 0.
  std::size_t failure_feed_capacity = 64;
  /// Receives the tasks still alive when shutdown's grace ended. Default:
  /// a line per task on stderr.
  std::function<void(std::span<const leaked_task>)> leak_reporter{};
  /// Worker threads are named "<thread_name>-<index>" (truncated to 15 bytes).
  std::string thread_name = "warden";
  /// Test clock: time stands still until advance() or until the runtime is
  /// idle (see warden/time.hpp). Requires worker_threads == 0 (usage_error
  /// otherwise), so that "idle" is exact.
  bool start_paused = false;

  static std::size_t default_worker_threads() noexcept;
};

/// How to spawn: an optional name (copied at spawn, so any string will do),
/// and where the spawn happened (filled in with the caller's location).
///
/// The struct is trivially copyable on purpose: GCC 12 miscompiles
/// non-trivially-copyable temporaries passed by value inside a `co_await`
/// expression (`co_await spawn(t, {.name = ...})`), copying them bitwise.
struct spawn_options {
  std::string_view name{};
  std::source_location location = std::source_location::current();
};
static_assert(std::is_trivially_copyable_v<spawn_options>);

/// A callable that, called with copies of `Args`, returns a task<T>: what
/// the callable form of spawn accepts.
template <class F, class... Args>
concept task_factory = std::invocable < std::decay_t<F>
&, std::decay_t<Args>&... > &&task_type<std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>>;

namespace detail {

class runtime_core;

/// Creates the header for `root`, schedules it, returns it with a reference
/// for the join handle. On a closed runtime destroys `root` and throws.
task_header* spawn_root(runtime_core& core, std::coroutine_handle<> root, const result_ops& results,
                        spawn_options&& options, bool blocking);
runtime_core& current_core_or_throw(const char* what);
/// warden::spawn's untyped part: spawns `root` on the runtime the caller
/// runs on (throws usage_error outside any runtime or if `root` is null,
/// runtime_closed on one shutting down; the frame is destroyed unrun then).
task_header* spawn_current(std::coroutine_handle<> root, const result_ops& results, spawn_options&& options);
/// spawn_current for options without a name: the location travels in a
/// register and the caller builds no options (warden::spawn picks it).
task_header* spawn_current_unnamed(std::coroutine_handle<> root, const result_ops& results,
                                   std::source_location location);
runtime_core* current_core() noexcept;
void check_not_on_worker(const char* what);
void block_on_root(runtime_core& core, task_header* task);

template <class... Args>
concept more_than_three = sizeof...(Args) > 3;

template <class F, class... Args>
using invoke_task_t = std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>;

/// Keeps a callable and its arguments alive in the spawned frame for as
/// long as the task they produce runs.
template <class F, class... Args>
auto invoke_in_frame(std::decay_t<F> fn, std::decay_t<Args>... args)
    -> task<typename invoke_task_t<F, Args...>::value_type> {
  co_return co_await std::invoke(fn, args...);
}

template <class F>
auto run_blocking(F fn) -> task<std::invoke_result_t<F&>> {
  co_return std::invoke(fn);
}

template <class T>
join_handle<T> spawn_on(runtime_core& core, task<T>&& t, spawn_options&& options, bool blocking);

struct handle_access {
  template <class T>
  static join_handle<T> make(task_header* task) noexcept {
    return join_handle<T>(task);
  }
  static task_header* header(const join_handle_base& handle) noexcept { return handle.task_; }
};

}  // namespace detail

class runtime {
 public:
  /// Starts the workers. Throws usage_error for options it cannot honour
  /// (more than runtime_options::max_worker_threads workers, start_paused
  /// with workers, a failure_feed_capacity of 0), each with a message that
  /// names the option.
  explicit runtime(runtime_options options = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Spawns `t` on this runtime; callable from any thread. Throws
  /// runtime_closed after shutdown began (the task is destroyed unrun) and
  /// usage_error for an empty task.
  template <class T>
  join_handle<T> spawn(task<T> t, spawn_options options = {}) {
    return detail::spawn_on(*core_, std::move(t), std::move(options), false);
  }

  /// Spawns `fn(args...)`, which must return a task. The callable and the
  /// arguments are copied into the spawned frame, so a lambda's captures
  /// live as long as the task does. With up to three arguments the caller's
  /// location is recorded; with more, pass spawn_options first for that.
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
  template <class F, class A1>
  requires task_factory<F, A1>
  auto spawn(F&& fn, A1&& a1, std::source_location where = std::source_location::current()) {
    return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  requires task_factory<F, A1, A2>
  auto spawn(F&& fn, A1&& a1, A2&& a2, std::source_location where = std::source_location::current()) {
    return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  requires task_factory<F, A1, A2, A3>
  auto spawn(F&& fn, A1&& a1, A2&& a2, A3&& a3, std::source_location where = std::source_location::current()) {
    return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1), std::forward<A2>(a2),
                 std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires task_factory<F, Args...> && detail::more_than_three<Args...>
  auto spawn(F&& fn, Args&&... args) {
    return spawn(spawn_options{.location = {}}, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// Runs `fn()` on the blocking pool, so that blocking calls never stall the
  /// workers. The handle behaves like any other (an exception is a panic);
  /// aborting before `fn` started prevents it from running; a running `fn`
  /// cannot be interrupted. Inside `fn`, `current_task_id()` is the blocking
  /// task's id, `spawn` targets this runtime, and `block_on` / `join()` are
  /// allowed (a blocking thread is not a worker; in current-thread mode the
  /// blocking thread then drives the runtime while it waits).
  template <class F>
  requires std::invocable<F&>
  auto spawn_blocking(F fn, spawn_options options = {}) {
    return detail::spawn_on(*core_, detail::run_blocking(std::move(fn)), std::move(options), true);
  }

  /// Runs `t` to completion and returns its value (or rethrows). Callable
  /// from any thread that is not a worker (usage_error there). In
  /// current-thread mode the calling thread runs every task meanwhile.
  template <class T>
  T block_on(task<T> t, spawn_options options = {}) {
    detail::check_not_on_worker("runtime::block_on");
    auto handle = spawn(std::move(t), std::move(options));
    detail::block_on_root(*core_, detail::handle_access::header(handle));
    try {
      return handle.join();
    } catch (const join_error& e) {
      if (e.is_panic()) e.rethrow();
      throw;
    }
  }

  /// See "Shutdown" at the top of this header. Idempotent; a second call
  /// waits for the first. usage_error from a worker thread of this runtime.
  void shutdown(std::chrono::nanoseconds grace);

  /// Cancelled when shutdown starts, so tasks can wind down during the
  /// grace period (`co_await token.cancelled()`, `run_until_cancelled`,
  /// `on_cancel`). Derive child tokens from it for your own subtrees.
  /// Include warden/cancellation.hpp to use the token.
  [[nodiscard]] cancellation_token root_token() const;

  /// The unhandled-failure feed (R17): under the `report` policy every
  /// unhandled failure (besides going to runtime_options::failure_reporter)
  /// is published as a task_failure with a panic_reason, the same record a
  /// task_monitor sends. The receiver sees the failures published after
  /// this call; with no subscriber a failure is dropped. The last
  /// `failure_feed_capacity` are kept for a slow subscriber (then
  /// `lagged(n)`). The feed closes once the runtime and every task that
  /// could still fail are gone.
  [[nodiscard]] broadcast_receiver<task_failure> subscribe_failures();

  [[nodiscard]] std::size_t worker_count() const noexcept;
  /// Spawned tasks not yet finished (exact once the runtime is quiescent).
  [[nodiscard]] std::size_t alive_tasks() const noexcept;
  [[nodiscard]] bool is_shutting_down() const noexcept;

 private:
  std::unique_ptr<detail::runtime_core> core_;
};

template <class T>
join_handle<T> detail::spawn_on(runtime_core& core, task<T>&& t, spawn_options&& options, bool blocking) {
  if (!t.valid()) throw usage_error("spawn: the task is empty (moved-from or default-constructed)");
  auto frame = task_access::release(t);
  return handle_access::make<T>(spawn_root(core, frame, result_ops_for<T>, std::move(options), blocking));
}

/// Spawns `t` on the runtime the caller runs on (a task, a worker, a blocking
/// call of a runtime, or a thread inside block_on). Throws usage_error
/// outside any runtime, runtime_closed on one shutting down.
template <class T>
join_handle<T> spawn(task<T> t, spawn_options options = {}) {
  // One call: the runtime is found and the task queued out of line. (The
  // test folds away for the default options.)
  if (options.name.empty())
    return detail::handle_access::make<T>(
        detail::spawn_current_unnamed(detail::task_access::release(t), detail::result_ops_for<T>, options.location));
  return detail::handle_access::make<T>(
      detail::spawn_current(detail::task_access::release(t), detail::result_ops_for<T>, std::move(options)));
}

/// Spawns `fn(args...)` on the current runtime; see runtime::spawn.
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
template <class F, class A1>
requires task_factory<F, A1>
auto spawn(F&& fn, A1&& a1, std::source_location where = std::source_location::current()) {
  return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1));
}
template <class F, class A1, class A2>
requires task_factory<F, A1, A2>
auto spawn(F&& fn, A1&& a1, A2&& a2, std::source_location where = std::source_location::current()) {
  return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1), std::forward<A2>(a2));
}
template <class F, class A1, class A2, class A3>
requires task_factory<F, A1, A2, A3>
auto spawn(F&& fn, A1&& a1, A2&& a2, A3&& a3, std::source_location where = std::source_location::current()) {
  return spawn(spawn_options{.location = where}, std::forward<F>(fn), std::forward<A1>(a1), std::forward<A2>(a2),
               std::forward<A3>(a3));
}
template <class F, class... Args>
requires task_factory<F, Args...> && detail::more_than_three<Args...>
auto spawn(F&& fn, Args&&... args) {
  return spawn(spawn_options{.location = {}}, std::forward<F>(fn), std::forward<Args>(args)...);
}

/// Runs `fn()` on the current runtime's blocking pool; see runtime::spawn_blocking.
template <class F>
requires std::invocable<F&>
auto spawn_blocking(F fn, spawn_options options = {}) {
  return detail::spawn_on(detail::current_core_or_throw("warden::spawn_blocking"), detail::run_blocking(std::move(fn)),
                          std::move(options), true);
}

/// Awaitable that suspends the current task and puts it at the back of the
/// run queue, so that other ready tasks run first. Outside a task:
/// usage_error.
struct yield_now {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) const;
  void await_resume() const noexcept {}
};

/// The root token (see runtime::root_token) of the runtime the caller runs
/// on; usage_error outside any runtime.
cancellation_token current_root_token();

/// The id of the task running on this thread; usage_error outside a task.
task_id current_task_id();
/// The id of the task running on this thread, or nullopt outside a task.
std::optional<task_id> try_current_task_id() noexcept;

}  // namespace warden
