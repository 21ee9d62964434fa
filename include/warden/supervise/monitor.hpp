// warden/supervise/monitor.hpp — background tasks that never fail silently:
// task_monitor, background_task_handle, task_monitor_options.
//
// A task_monitor spawns named background tasks and publishes a task_failure
// (warden/task_failure.hpp) to its subscribers whenever one of them fails:
//
//   warden::task_monitor monitor;                       // spawns on the current runtime
//   auto failures = monitor.subscribe();
//   auto beat = monitor.spawn_infinite_task("heartbeat", heartbeat_loop());
//   auto sync = monitor.spawn_fallible_task("sync", sync_once());  // task<std::expected<void, E>>
//   auto got = co_await failures.recv();                // std::expected<task_failure, broadcast_error>
//   if (got) log(warden::describe(*got));               // "task 7 'sync' returned an error: timeout"
//
// # What is a failure (M1, M2)
// | kind      | body returns                  | body throws | aborted through its handle |
// |-----------|-------------------------------|-------------|----------------------------|
// | infinite  | early_termination             | panic       | nothing                    |
// | finite    | nothing                       | panic       | nothing                    |
// | fallible  | error (if an E), else nothing | panic       | nothing                    |
// A panic carries the exception's what() (a placeholder for other
// exceptions); `panic_reason::backtrace` is empty: warden has no async
// backtrace yet. An error carries the E as text, made by the first that
// fits: `e.message()`, `e.what()`, `to_string(e)` (found by ADL or
// std::to_string), `out << e`; another E is a compile error.
//
// An intentional abort is never reported, even when it races the task's end:
// each task has one atomic state, and the abort (handle's abort(), an
// abort_on_drop() handle dropped, the monitor destroyed) moves it running →
// aborted *before* cancelling the task, while the task reports only if it
// moves it running → failed first. Exactly one of the two wins. A task the
// runtime destroys at shutdown is not reported either (it did not fail).
//
// # Subscribers (M4)
// Every subscriber sees every failure sent after it subscribed. With no
// subscriber a failure is dropped. A subscriber more than `capacity`
// failures behind gets `lagged(n)` and continues with the oldest one kept.
//
// # Destroying the monitor (M6)
// Destroying the monitor ABORTS every task it spawned that is still running
// (none of them is reported: they did not fail, they were stopped). Handles
// stay valid: is_finished() becomes true once each cancellation is done.
// Subscribers then see the failures reported before, and `closed` once
// every task is gone. To let a task outlive the monitor, spawn it with
// warden::spawn instead.
//
// # Bookkeeping (M5)
// The monitor remembers the running tasks (so that its destruction can abort
// them) and forgets each one as its frame is destroyed: when it ends, is
// aborted, is destroyed unrun, or ends before spawn_* returns.
// `running_tasks()` reports the count (for tests and metrics).
//
// # Cancellation
// A task spawned by the monitor is a normal runtime task: abort() destroys
// its frame (every local's destructor runs). Runtime shutdown destroys it
// too, unreported.
//
// # Errors
// spawn_* throw usage_error without a runtime (the default constructor
// spawns on the runtime the caller runs on) or for an empty task,
// runtime_closed when the runtime is shutting down (the task is destroyed
// unrun, nothing is reported). A capacity of 0 throws usage_error.
#pragma once

#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/supervise/error_text.hpp>
#include <warden/sync/broadcast.hpp>
#include <warden/task.hpp>
#include <warden/task_failure.hpp>

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace warden {

struct task_monitor_options {
  /// Failures kept for a subscriber that falls behind (M4). Must be > 0.
  std::size_t capacity = 8;
};

namespace detail {

// ---- The monitor's internals (src/supervise/monitor.cpp) ---------------------

struct monitor_state;

/// One monitored task's decision point (M2): `state` moves exactly once,
/// from running to one of finished (ended without a failure), failed (the
/// task reports) or aborted (an intentional abort; never reported).
/// Shared by the task's frame and its handle.
struct monitored_task {
  enum : std::uint8_t { running, finished, failed, aborted };
  std::atomic<std::uint8_t> state{running};
  std::string name;
};

enum class monitored_kind : std::uint8_t { infinite, finite, fallible };

/// Lives in the spawned frame as a coroutine parameter, so that it is
/// destroyed with the frame even if the task never started: removes the
/// task's entry from the monitor's bookkeeping (M5).
class monitor_ticket {
 public:
  monitor_ticket(std::shared_ptr<monitor_state> monitor, std::shared_ptr<monitored_task> task) noexcept
      : monitor_(std::move(monitor)), task_(std::move(task)) {}
  monitor_ticket(monitor_ticket&& other) noexcept = default;
  monitor_ticket(const monitor_ticket&) = delete;
  monitor_ticket& operator=(const monitor_ticket&) = delete;
  monitor_ticket& operator=(monitor_ticket&&) = delete;
  ~monitor_ticket();

  [[nodiscard]] monitor_state& monitor() const noexcept { return *monitor_; }
  [[nodiscard]] monitored_task& task() const noexcept { return *task_; }

 private:
  std::shared_ptr<monitor_state> monitor_;
  std::shared_ptr<monitored_task> task_;
};

/// A monitored frame's parameters in one object, so that the body (and its
/// frame) is destroyed before the ticket whatever the compiler's order for
/// coroutine parameters (GCC: first to last; Clang: last to first).
struct monitored_run {
  monitor_ticket ticket;
  task<std::optional<std::string>> body;  ///< yields a fallible task's error text, or nullopt
};

/// The spawned wrapper around a body.
task<void> run_monitored(monitored_run run, monitored_kind kind);

/// Adapts a plain body to run_monitored's form.
task<std::optional<std::string>> no_error_text(task<void> body);

template <class E>
task<std::optional<std::string>> fallible_error_text(task<std::expected<void, E>> body) {
  std::expected<void, E> outcome = co_await std::move(body);
  if (outcome.has_value()) co_return std::nullopt;
  co_return error_text(outcome.error());
}

}  // namespace detail

/// The handle to a task spawned by a task_monitor. Move-only. Dropping it
/// leaves the task running (it stays monitored), unless abort_on_drop()
/// was called.
class [[nodiscard]] background_task_handle {
 public:
  background_task_handle() noexcept = default;
  background_task_handle(background_task_handle&& other) noexcept;
  background_task_handle& operator=(background_task_handle&& other) noexcept;
  background_task_handle(const background_task_handle&) = delete;
  background_task_handle& operator=(const background_task_handle&) = delete;
  ~background_task_handle();

  /// Stops the task: a task that has not failed yet is never reported (M2),
  /// even if it is ending or throwing at this very moment; its frame is then
  /// destroyed like join_handle::abort's. No-op on a finished task or an
  /// empty handle. Returns true if this call decided the task's outcome
  /// (it had neither ended nor failed, and it will not be reported); false
  /// if it had already ended, failed (and was reported), or been aborted.
  bool abort() noexcept;
  /// Dropping this handle will abort() the task instead of leaving it running.
  void abort_on_drop() noexcept { abort_on_drop_ = true; }
  /// True once the task ended, failed, or its cancellation finished (M3).
  /// False for an empty handle.
  [[nodiscard]] bool is_finished() const noexcept;
  /// The runtime task's id (the one failures report); task_id{} when empty.
  [[nodiscard]] task_id id() const noexcept { return abort_.id(); }
  /// The name given at spawn ("" when empty).
  [[nodiscard]] std::string_view name() const noexcept;
  /// False for a default-constructed or moved-from handle.
  [[nodiscard]] bool valid() const noexcept { return task_ != nullptr; }

 private:
  friend class task_monitor;
  background_task_handle(std::shared_ptr<detail::monitored_task> task, abort_handle abort) noexcept
      : task_(std::move(task)), abort_(std::move(abort)) {}

  std::shared_ptr<detail::monitored_task> task_;
  abort_handle abort_;
  bool abort_on_drop_ = false;
};

/// Spawns background tasks and reports their failures. See the top of this
/// header. Not copyable or movable; its members may be called from any
/// thread concurrently.
class task_monitor {
 public:
  /// Spawns on the runtime the caller runs on at each spawn_* call.
  explicit task_monitor(task_monitor_options options = {});
  /// Spawns on `rt` (from any thread, also outside the runtime). `rt` must
  /// outlive the monitor's spawn_* calls.
  explicit task_monitor(runtime& rt, task_monitor_options options = {});
  /// Aborts every task still running, unreported (M6).
  ~task_monitor();
  task_monitor(const task_monitor&) = delete;
  task_monitor& operator=(const task_monitor&) = delete;

  /// Spawns a task meant to run until aborted: its end is reported as
  /// early_termination, an exception as a panic.
  background_task_handle spawn_infinite_task(std::string_view name, task<void> body) {
    return spawn_wrapped(name, detail::no_error_text(std::move(body)), detail::monitored_kind::infinite);
  }

  /// Spawns a task that may end: only an exception is reported (a panic).
  background_task_handle spawn_finite_task(std::string_view name, task<void> body) {
    return spawn_wrapped(name, detail::no_error_text(std::move(body)), detail::monitored_kind::finite);
  }

  /// Spawns a task that may end with an error: an E is reported as an
  /// error_reason with the E as text (see the top of this header), an
  /// exception as a panic, success not at all.
  template <class E>
  background_task_handle spawn_fallible_task(std::string_view name, task<std::expected<void, E>> body) {
    static_assert(detail::describable_error<E>,
                  "spawn_fallible_task: the error type E must be describable as text: give it a member "
                  "message() or what() returning a string, a to_string(E) found by ADL, or an operator<<");
    return spawn_wrapped(name, detail::fallible_error_text<E>(std::move(body)), detail::monitored_kind::fallible);
  }

  /// A receiver of every failure reported from now on (M4).
  [[nodiscard]] broadcast_receiver<task_failure> subscribe();

  /// Tasks spawned and not yet gone (M5; a snapshot, for tests and metrics).
  [[nodiscard]] std::size_t running_tasks() const;

 private:
  background_task_handle spawn_wrapped(std::string_view name, task<std::optional<std::string>> body,
                                       detail::monitored_kind kind);

  runtime* runtime_;
  std::shared_ptr<detail::monitor_state> state_;
};

}  // namespace warden
