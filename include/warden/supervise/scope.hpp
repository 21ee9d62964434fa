// warden/supervise/scope.hpp — ambient scopes: work that deep code hands to
// the enclosing scope, which waits for it. enter_scope, try_enter_scope,
// ensure_scope, try_ensure_scope, spawn_daemon, spawn_cleanup_job (and their
// try_ forms), has_active_scope, current_scope_token, scope_error,
// scope_result, scope_spawn_error.
//
//   warden::task<void> serve() {
//     co_await warden::enter_scope(run_service());   // returns when everything below has finished
//   }
//   warden::task<void> run_service() {
//     warden::spawn_daemon(heartbeat());              // anywhere beneath, no handle passed around
//     connection c = co_await connect();              // c's destructor may call
//     ...                                             //   spawn_cleanup_job(c.close_async())
//   }
//
// # The ambient scope (S1, S5)
// `enter_scope(body)` runs `body` with a scope bound to it (a task_local
// with inheritance): code running in the body, in anything it awaits, in a
// destructor running as the body ends, in a job of the scope, and in tasks
// spawned from any of these finds the scope. `spawn_daemon(job)` /
// `spawn_cleanup_job(job)` start `job` as a runtime task registered with
// that scope (the two names say why the job exists; the scope treats them
// alike). The scope returns only when the body and every registered job have
// finished. A scope accepts jobs (`has_active_scope()` is true) from when its
// body starts until its wait ends: while any job runs, jobs may still start
// jobs. Nested `enter_scope` calls shadow the outer scope.
//
// # Failure (S2)
// A job that throws ends the scope's wait at once: the scope stops accepting
// jobs, cancels its token (`current_scope_token()`, so the body and the jobs
// can notice) and aborts every other job; once the body has ended (it is
// never cancelled by force) and the aborted jobs' frames are gone,
// `enter_scope` throws `scope_error` naming the failed job; if the body
// failed too, the scope_error carries both. A body failure alone is
// rethrown as is. `try_enter_scope` returns both outcomes instead (S3).
//
// # Reusing a scope (S3)
// `ensure_scope(body)` runs `body` inside the enclosing scope when there is
// one that accepts jobs (it then neither waits for nor reports the jobs the
// body starts: the enclosing scope does), and otherwise is `enter_scope`.
//
// # Spawning into no scope or a closing one (S4)
// `try_spawn_daemon` returns `scope_spawn_error::no_active_scope` outside
// any scope, `scope_terminating` once the scope stopped accepting jobs; in
// both cases the job is destroyed unrun. `spawn_daemon` throws instead:
// usage_error for no scope (a bug), scope_terminating_error for a closing
// one, with messages that say how to fix it. A job accepted is never lost
// (S6): it runs and the scope waits for it (or aborts it on failure).
//
// # Cancellation
// Jobs are runtime tasks; aborting one is a normal abort (not a failure).
// If the task awaiting `enter_scope` is itself aborted, the body is
// destroyed with it, the scope stops accepting jobs, cancels its token and
// aborts its jobs (it cannot wait for them any more).
//
// # Errors
// Jobs are spawned on the runtime the caller runs on: runtime_closed from a
// runtime shutting down (the job is destroyed unrun). An empty task is a
// usage_error.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/errors.hpp>
#include <warden/runtime.hpp>
#include <warden/supervise/error_text.hpp>
#include <warden/task.hpp>
#include <warden/task_local.hpp>

#include <cstdint>
#include <exception>
#include <expected>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace warden {

/// Why a try_spawn_* call refused a job (the job was destroyed unrun).
enum class scope_spawn_error : std::uint8_t {
  no_active_scope,    ///< called outside any enter_scope / ensure_scope
  scope_terminating,  ///< the scope stopped accepting jobs (it ended, or a job failed)
};

/// A sentence saying what went wrong and how to fix it.
std::string_view describe(scope_spawn_error error) noexcept;

/// Thrown by spawn_daemon / spawn_cleanup_job into a scope that stopped
/// accepting jobs (no_active_scope throws usage_error instead).
class scope_terminating_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The first job of a scope that failed: its label ("daemon #3 'name'
/// (spawned at file:line)"), the exception's message and the exception.
struct scope_job_failure {
  std::string job;
  std::string message;
  std::exception_ptr error;
};

/// Thrown by enter_scope / ensure_scope when a job failed (S2). Carries the
/// job's failure and, if the body failed too, the body's exception.
class scope_error : public std::runtime_error {
 public:
  scope_error(scope_job_failure job, std::exception_ptr body_error);
  [[nodiscard]] const scope_job_failure& job_failure() const noexcept { return job_; }
  /// The body's exception, or null if the body succeeded.
  [[nodiscard]] const std::exception_ptr& body_error() const noexcept { return body_; }

 private:
  scope_job_failure job_;
  std::exception_ptr body_;
};

/// Both outcomes of a scope (S3): the jobs' (the first failure) and the body's.
template <class T>
struct scope_result {
  std::expected<void, scope_job_failure> jobs;
  std::expected<T, std::exception_ptr> body;
};

namespace detail {

/// A scope's shared state (src/supervise/scope.cpp).
struct scope_state;
using scope_ref = std::shared_ptr<scope_state>;

/// The ambient scope: bound in a scope's body, inherited by every task
/// spawned beneath it (jobs and plain spawns alike).
inline const task_local<scope_ref> ambient_scope{task_local_options{.inherit = true}};

enum class job_kind : std::uint8_t { daemon, cleanup };

/// A new scope whose token is a child of the enclosing scope's token (or of
/// the runtime's root token).
scope_ref open_scope();

/// Marks the body finished and waits until every job's frame is gone.
task<void> finish_scope(scope_ref scope);

/// The first job failure, if any (after finish_scope).
std::expected<void, scope_job_failure> job_outcome(const scope_state& scope);

/// Closes the scope if its awaiting frame is destroyed before finish_scope
/// completed (see "Cancellation" above).
class scope_closer {
 public:
  explicit scope_closer(scope_ref scope) noexcept : scope_(std::move(scope)) {}
  scope_closer(const scope_closer&) = delete;
  scope_closer& operator=(const scope_closer&) = delete;
  ~scope_closer();
  void finished() noexcept { scope_.reset(); }

 private:
  scope_ref scope_;
};

std::expected<void, scope_spawn_error> try_spawn_job(task<void> job, spawn_options options, job_kind kind);
void spawn_job(task<void> job, spawn_options options, job_kind kind);
[[noreturn]] void throw_scope_error(scope_job_failure job, std::exception_ptr body_error);

template <class T>
task<std::expected<T, std::exception_ptr>> run_body(scope_ref scope, task<T> body) {
  task<T> bound = ambient_scope.scope(std::move(scope), std::move(body));
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(bound);
      co_return std::expected<void, std::exception_ptr>{};
    } else {
      co_return co_await std::move(bound);
    }
  } catch (...) {
    co_return std::unexpected(std::current_exception());
  }
}

template <class T>
task<std::expected<T, std::exception_ptr>> run_unscoped(task<T> body) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(body);
      co_return std::expected<void, std::exception_ptr>{};
    } else {
      co_return co_await std::move(body);
    }
  } catch (...) {
    co_return std::unexpected(std::current_exception());
  }
}

}  // namespace detail

/// Runs `body` with a new ambient scope and waits for it and every job it
/// registered (S1); returns both outcomes instead of throwing (S3).
/// Throws usage_error outside a warden task or for an empty body.
template <class T>
task<scope_result<T>> try_enter_scope(task<T> body) {
  detail::scope_ref scope = detail::open_scope();
  detail::scope_closer closer(scope);
  task<std::expected<T, std::exception_ptr>> running = detail::run_body(scope, std::move(body));
  std::expected<T, std::exception_ptr> outcome = co_await std::move(running);
  task<void> finishing = detail::finish_scope(scope);
  co_await std::move(finishing);
  closer.finished();
  co_return scope_result<T>{detail::job_outcome(*scope), std::move(outcome)};
}

/// Runs `body` with a new ambient scope and waits for it and every job it
/// registered (S1). Yields the body's value; throws scope_error if a job
/// failed (S2, with the body's exception too if it failed), else rethrows
/// the body's exception.
template <class T>
task<T> enter_scope(task<T> body) {
  task<scope_result<T>> inner = try_enter_scope(std::move(body));
  scope_result<T> result = co_await std::move(inner);
  if (!result.jobs.has_value())
    detail::throw_scope_error(std::move(result.jobs.error()), result.body.has_value() ? nullptr : result.body.error());
  if (!result.body.has_value()) std::rethrow_exception(result.body.error());
  if constexpr (!std::is_void_v<T>) co_return std::move(*result.body);
}

/// Whether code running here could register a job: an ambient scope exists
/// and accepts jobs (S5). False outside a warden task.
[[nodiscard]] bool has_active_scope();

/// `body` inside the enclosing scope if one accepts jobs (the enclosing
/// scope then waits for and reports the body's jobs), else enter_scope(body).
template <class T>
task<T> ensure_scope(task<T> body) {
  task<T> inner = has_active_scope() ? std::move(body) : enter_scope(std::move(body));
  co_return co_await std::move(inner);
}

/// try_ensure_scope: like ensure_scope; reusing a scope, `jobs` is always a
/// success (the enclosing scope reports them).
template <class T>
task<scope_result<T>> try_ensure_scope(task<T> body) {
  if (!has_active_scope()) {
    task<scope_result<T>> inner = try_enter_scope(std::move(body));
    co_return co_await std::move(inner);
  }
  task<std::expected<T, std::exception_ptr>> inner = detail::run_unscoped(std::move(body));
  std::expected<T, std::exception_ptr> outcome = co_await std::move(inner);
  co_return scope_result<T>{std::expected<void, scope_job_failure>{}, std::move(outcome)};
}

/// Starts `job` as a task of the ambient scope (S1). Throws usage_error with
/// no active scope, scope_terminating_error into a closing scope (S4; the
/// job is destroyed unrun either way), runtime_closed on a closing runtime.
/// `options.name` names the job in failures.
inline void spawn_daemon(task<void> job, spawn_options options = {}) {
  detail::spawn_job(std::move(job), options, detail::job_kind::daemon);
}
/// Same as spawn_daemon, for async cleanup (typically from a destructor).
inline void spawn_cleanup_job(task<void> job, spawn_options options = {}) {
  detail::spawn_job(std::move(job), options, detail::job_kind::cleanup);
}
/// spawn_daemon returning the refusal instead of throwing (S4).
[[nodiscard]] inline std::expected<void, scope_spawn_error> try_spawn_daemon(task<void> job,
                                                                             spawn_options options = {}) {
  return detail::try_spawn_job(std::move(job), options, detail::job_kind::daemon);
}
/// spawn_cleanup_job returning the refusal instead of throwing (S4).
[[nodiscard]] inline std::expected<void, scope_spawn_error> try_spawn_cleanup_job(task<void> job,
                                                                                  spawn_options options = {}) {
  return detail::try_spawn_job(std::move(job), options, detail::job_kind::cleanup);
}

/// What a job that returned an error (rather than throwing) fails with; its
/// what() is the error as text (see spawn_daemon for fallible jobs).
class job_returned_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class E>
task<void> fail_on_error(task<std::expected<void, E>> job) {
  std::expected<void, E> outcome = co_await std::move(job);
  if (!outcome) throw job_returned_error(error_text(outcome.error()));
}
}  // namespace detail

/// Fallible jobs (S2): a job returning `std::expected<void, E>` fails the
/// scope when it returns an error, exactly as if it had thrown
/// job_returned_error with the error's text (.message(), .what(),
/// to_string(e) or operator<<).
template <class E>
void spawn_daemon(task<std::expected<void, E>> job, spawn_options options = {}) {
  spawn_daemon(detail::fail_on_error(std::move(job)), options);
}
template <class E>
void spawn_cleanup_job(task<std::expected<void, E>> job, spawn_options options = {}) {
  spawn_cleanup_job(detail::fail_on_error(std::move(job)), options);
}
template <class E>
[[nodiscard]] std::expected<void, scope_spawn_error> try_spawn_daemon(task<std::expected<void, E>> job,
                                                                      spawn_options options = {}) {
  return try_spawn_daemon(detail::fail_on_error(std::move(job)), options);
}
template <class E>
[[nodiscard]] std::expected<void, scope_spawn_error> try_spawn_cleanup_job(task<std::expected<void, E>> job,
                                                                           spawn_options options = {}) {
  return try_spawn_cleanup_job(detail::fail_on_error(std::move(job)), options);
}

/// The ambient scope's token: cancelled when a job fails, when the scope is
/// abandoned, or when an enclosing scope's token (or the runtime's root
/// token) is. Throws usage_error outside any scope.
[[nodiscard]] cancellation_token current_scope_token();

}  // namespace warden
