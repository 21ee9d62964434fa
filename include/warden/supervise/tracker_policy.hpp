// warden/supervise/tracker_policy.hpp — what a task_tracker does when one of
// its tasks fails: error_policy (the interface), failure_context,
// error_response, error_action, failed_with_continuation, the log sink, and
// the built-in policies log_only_policy, cancel_on_error_policy,
// threshold_policy, rate_policy, retry_policy and trigger_token_policy.
//
//   auto retry = std::make_shared<warden::retry_policy>(warden::retry_options{
//       .max_attempts = 5, .initial_backoff = 100ms, .max_backoff = 5s});
//   auto tracker = warden::task_tracker::builder()
//                      .scheduler(std::make_shared<warden::unlimited_scheduler>())
//                      .error_policy(retry)
//                      .build();
//   tracker.spawn_cancellable([](warden::cancellation_token t) { return fetch(t); });  // retried up to 5 times
//
// # What is a failure
// A task fails when it throws (a *panic*: failure_context::panicked), when
// it returns an error (a `std::expected` holding its error, or a
// `cancellable_result` error), or when it throws failed_with_continuation
// (a failure that also hands back the work to try next).
//
// # How a failure is handled, in order
// 1. The failure carries a continuation and `allow_continuation(ctx)` says
//    yes: the continuation runs next, as the same task (same handle, same
//    metrics entry). If `should_reschedule(ctx)` says yes the task's slot is
//    released first and a new one acquired (the old slot is never held
//    while waiting for the new one); otherwise it keeps its slot.
// 2. Otherwise `on_error(ctx)` answers with an error_response:
//    * fail() — the task ends failed;
//    * shutdown() — the tracker is cancelled (with its subtree: see
//      task_tracker::cancel) and the task ends failed;
//    * retry_after(d) — the task runs again after `d` (cancellable), if it
//      can: a task spawned from a callable (spawn_cancellable, or spawn of a
//      factory) is called again; a one-shot task<T> cannot run twice and
//      ends failed. `should_reschedule(ctx)` decides about the slot as in 1;
//    * custom(action) — `action->run(ctx)` is awaited and its answer used
//      (it may answer custom again).
// `ctx.attempt` counts the task's failures so far, this one included (1 on
// the first). Policies are called from the failing task, on a worker, and
// may be called from many tasks at once.
//
// # Children
// A child tracker uses `policy->create_child()` unless it is given its own.
// The built-in policies give children their own counters and, for
// cancel_on_error_policy, a child of its token (so a child's error never
// reaches the parent: cancellation flows down only).
//
// # Errors
// threshold_policy(0), rate_policy with max_failures 0 or a window <= 0, and
// retry_options with max_attempts 0, a negative backoff, a multiplier < 1 or
// a jitter outside [0, 1] throw std::invalid_argument.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/join_handle.hpp>
#include <warden/task.hpp>
#include <warden/time.hpp>

#include <any>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warden {

class error_action;

/// How serious a log line is.
enum class log_level : std::uint8_t { info, warning, error };

/// Where the log-only policy (and anyone else) writes. Implement it to route
/// lines to spdlog, syslog, a test buffer. Called from worker threads,
/// possibly concurrently.
class log_sink {
 public:
  virtual ~log_sink() = default;
  virtual void write(log_level level, std::string_view line) noexcept = 0;
};

/// The default sink: one line per call on stderr ("warden [error] ...").
std::shared_ptr<log_sink> stderr_log_sink();

/// One failure of one task, as a policy sees it.
struct failure_context {
  task_id id;                    ///< the runtime task running it
  std::string tracker;           ///< the tracker's name
  std::uint32_t attempt = 1;     ///< failures of this task so far, this one included
  std::string message;           ///< what failed: the exception's what() or the error's text
  std::exception_ptr exception;  ///< the exception (panics and continuations), else null
  bool panicked = false;         ///< it threw (rather than returning an error)
  bool has_continuation = false;
  cancellation_token task_token;  ///< the task's own token (a child of the tracker's)
  /// Scratch space for the policy, kept for the task across its failures.
  std::shared_ptr<std::any> state;
};

/// A policy's answer to a failure (see the top of this header).
class error_response {
 public:
  enum class kind : std::uint8_t { fail, shutdown, retry, custom };

  static error_response fail() noexcept { return error_response(kind::fail); }
  static error_response shutdown() noexcept { return error_response(kind::shutdown); }
  static error_response retry_after(clock::duration delay) noexcept {
    error_response r(kind::retry);
    r.delay_ = delay;
    return r;
  }
  static error_response custom(std::shared_ptr<error_action> action) noexcept {
    error_response r(kind::custom);
    r.action_ = std::move(action);
    return r;
  }

  [[nodiscard]] kind what() const noexcept { return kind_; }
  [[nodiscard]] clock::duration delay() const noexcept { return delay_; }
  [[nodiscard]] const std::shared_ptr<error_action>& action() const noexcept { return action_; }

 private:
  explicit error_response(kind k) noexcept : kind_(k) {}
  kind kind_;
  clock::duration delay_{};
  std::shared_ptr<error_action> action_;
};

/// A user-defined reaction to a failure, awaited by the failing task before
/// it decides (it may sleep, call a service, spawn, cancel). An exception
/// escaping run() makes the task fail with that exception's message.
class error_action {
 public:
  virtual ~error_action() = default;
  virtual task<error_response> run(failure_context context) = 0;
};

/// Decides what a failure does. See the top of this header.
/// Policies are held by shared_ptr (std::make_shared).
class error_policy : public std::enable_shared_from_this<error_policy> {
 public:
  virtual ~error_policy() = default;
  /// The policy a child tracker gets when it is not given its own. The
  /// default shares this policy (its counters, if any, with the child).
  virtual std::shared_ptr<error_policy> create_child() { return shared_from_this(); }
  virtual error_response on_error(const failure_context& context) = 0;
  /// May a failure's continuation run? Default: yes.
  virtual bool allow_continuation(const failure_context& context) {
    (void)context;
    return true;
  }
  /// Should a continuation or retry give back its slot and wait for a new
  /// one? Default: no (it keeps the slot).
  virtual bool should_reschedule(const failure_context& context) {
    (void)context;
    return false;
  }
};

/// Thrown by a task to fail *and* hand back the work to try next: a
/// callable taking the task's cancellation token and returning a task<T>
/// (T: the failing task's value type). The continuation may itself throw
/// failed_with_continuation (chains are allowed).
template <class T>
class failed_with_continuation : public std::runtime_error {
 public:
  using continuation = std::function<task<T>(cancellation_token)>;

  failed_with_continuation(std::string_view message, continuation next)
      : std::runtime_error(std::string(message)), next_(std::make_shared<continuation>(std::move(next))) {
    if (!*next_) throw std::invalid_argument("failed_with_continuation: the continuation is empty");
  }
  /// The work to run next (shared by copies of the exception).
  [[nodiscard]] const continuation& next() const noexcept { return *next_; }

 private:
  std::shared_ptr<continuation> next_;
};

// ---- Built-in policies --------------------------------------------------------

/// Logs every failure (level error) and fails the task.
class log_only_policy final : public error_policy {
 public:
  explicit log_only_policy(std::shared_ptr<log_sink> sink = stderr_log_sink());
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;

 private:
  std::shared_ptr<log_sink> sink_;
};

/// Cancels the tracker (and its subtree) on a failure — any failure, or only
/// one whose message contains one of `patterns`; other failures just fail.
/// `token()` is cancelled at the same moment (it is the token this policy
/// hands out: watch it to learn the tracker was shut down by an error).
class cancel_on_error_policy final : public error_policy {
 public:
  explicit cancel_on_error_policy(std::vector<std::string> patterns = {});
  cancel_on_error_policy(std::vector<std::string> patterns, cancellation_token token);
  /// Same patterns; the child's token is a child of this one's.
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;
  [[nodiscard]] cancellation_token token() const { return token_; }

 private:
  std::vector<std::string> patterns_;
  cancellation_token token_;
};

/// Fails each task; the n-th failure (counted over this policy's tracker)
/// shuts the tracker down. A child gets its own count.
class threshold_policy final : public error_policy {
 public:
  explicit threshold_policy(std::size_t max_failures);
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;
  [[nodiscard]] std::size_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }

 private:
  std::size_t max_failures_;
  std::atomic<std::size_t> failures_{0};
};

/// Fails each task; when more than `max_failures` failures happen within
/// any `window` (a sliding window on warden::clock), shuts the tracker down.
/// A child gets its own window.
class rate_policy final : public error_policy {
 public:
  rate_policy(std::size_t max_failures, clock::duration window);
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;

 private:
  std::size_t max_failures_;
  clock::duration window_;
  std::mutex lock_;
  std::deque<clock::time_point> recent_;  // failures within the window, oldest first
};

struct retry_options {
  /// Runs in all, the first included (1 = never retry).
  std::uint32_t max_attempts = 3;
  clock::duration initial_backoff = std::chrono::milliseconds(100);
  clock::duration max_backoff = std::chrono::seconds(30);
  double multiplier = 2.0;
  /// Each delay is scaled by a random factor in [1 - jitter, 1]. 0 = none.
  double jitter = 0.2;
  /// Give the slot back while backing off (and take a new one after).
  bool release_slot_while_waiting = true;
};

/// Retries a failed task with exponential backoff and jitter:
/// delay(k) = min(max_backoff, initial_backoff * multiplier^(k-1)) * (1 - jitter * u),
/// u uniform in [0, 1), after the k-th failure; after max_attempts runs the
/// task fails. Continuations are allowed.
class retry_policy final : public error_policy {
 public:
  explicit retry_policy(retry_options options = {});
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;
  bool should_reschedule(const failure_context& context) override;
  /// The delay after the `attempt`-th failure with the jitter draw `u` in
  /// [0, 1) (for tests and docs).
  [[nodiscard]] clock::duration backoff(std::uint32_t attempt, double u) const noexcept;
  [[nodiscard]] const retry_options& options() const noexcept { return options_; }

 private:
  retry_options options_;
};

/// Fails the task and cancels `token` (any token: another subsystem's, a
/// parent's) on every failure. A child shares the token.
class trigger_token_policy final : public error_policy {
 public:
  explicit trigger_token_policy(cancellation_token token);
  std::shared_ptr<error_policy> create_child() override;
  error_response on_error(const failure_context& context) override;

 private:
  cancellation_token token_;
};

}  // namespace warden
