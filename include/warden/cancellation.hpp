// warden/cancellation.hpp — cooperative cancellation: cancellation_token,
// cancellation_registration, cancellation_drop_guard, run_until_cancelled.
//
// A `cancellation_token` is a cheap, copyable handle to a shared
// "cancelled?" flag. Tokens form a tree: `child_token()` makes a token that
// is cancelled whenever its parent is, while cancelling the child never
// reaches the parent or its siblings. Code that should stop when asked
// takes a token and polls `is_cancelled()`, awaits `cancelled()`, registers
// a callback with `on_cancel`, or wraps its work in `run_until_cancelled`:
//
//   warden::cancellation_token shutdown;                    // a new root
//   warden::cancellation_token job = shutdown.child_token();
//
//   warden::task<void> serve(warden::cancellation_token token) {
//     while (!token.is_cancelled()) {
//       std::optional<request> r = co_await warden::run_until_cancelled(token, next_request());
//       if (!r) break;                                      // cancelled first
//       handle(*r);
//     }
//   }
//   ...
//   shutdown.cancel();   // job, serve's token and every descendant are cancelled
//
// # The tree and its lifetime
// A child keeps its parent's shared state alive (not the other way round),
// so a child stays usable after every handle to its parent is gone, and is
// still cancelled when an ancestor (or the stop source a parent was made
// from) is cancelled. A child whose handles, registrations and awaiters are
// all gone is unlinked from its parent at once: a long-lived root with many
// short-lived children does not grow.
//
// # Exactness
// Cancellation is exact under concurrency: a child created concurrently
// with its parent's `cancel()` is either cancelled by that cancel or created
// already cancelled; a callback registered concurrently with `cancel()`
// either runs during that cancel or at once inside `on_cancel`; every
// callback runs exactly once, or never if its registration was destroyed
// first. **Cancelling a tree is complete when `cancel()` returns**: every
// callback of the token and of every descendant has returned, every awaiter
// has been woken, and every descendant reports `is_cancelled()`. A second
// `cancel()` racing the first waits until the first is complete (except
// inside a callback, see `cancel()`).
//
// # Callbacks
// Callbacks run on the thread that calls `cancel()` (or, registered after
// cancellation, on the thread that calls `on_cancel`). They should be short
// and must not throw: an exception escaping a callback prints a message and
// calls std::terminate, as with std::stop_callback, because a half-cancelled
// tree cannot be reported to anyone. A callback may use tokens freely
// (cancel others, create children, register or destroy registrations, even
// its own).
//
// # Cancellation (of the tasks that use tokens)
// A task aborted while parked in `co_await token.cancelled()` is removed
// from the token's waiter list (its awaiter's destructor unlinks it); the
// token is unaffected. A task aborted inside `run_until_cancelled` aborts the
// inner task too (it is never orphaned) and deregisters its callback.
// Destroying a `cancellation_registration` (for instance because the task
// that owned it was aborted) deregisters the callback.
//
// # Errors
// A moved-from token is empty: every member except assignment, `valid()`
// and the destructor throws `usage_error`. `co_await token.cancelled()` on a
// token not yet cancelled, outside a warden task, throws `usage_error`.
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/detail/wait_list.hpp>
#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/task.hpp>

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

namespace warden {

class cancellation_token;
class cancellation_registration;
class cancellation_drop_guard;

namespace detail {

/// The shared state behind tokens (src/cancellation/cancellation_state.hpp).
class cancellation_state;

/// A registered callback: an intrusive node in its token's callback list.
/// Allocated by `on_cancel`, owned by the `cancellation_registration` (or,
/// when the registration is destroyed from inside the running callback, by
/// the canceller, which frees it when the callback returns).
///
/// Every field below the vtable is guarded by the owning state's mutex.
class cancellation_callback {
 public:
  enum class status : std::uint8_t { idle, queued, running, done };

  cancellation_callback(const cancellation_callback&) = delete;
  cancellation_callback& operator=(const cancellation_callback&) = delete;
  virtual ~cancellation_callback() = default;

  /// Runs the user's callable; an exception escaping it terminates.
  virtual void invoke() noexcept = 0;

 protected:
  cancellation_callback() noexcept = default;

 private:
  friend class cancellation_state;
  cancellation_callback* prev_ = nullptr;
  cancellation_callback* next_ = nullptr;
  status status_ = status::idle;
  bool orphaned_ = false;            // registration destroyed from inside invoke()
  std::thread::id invoking_thread_;  // who runs invoke() while `running`
};

/// What on_cancel accepts: a callable invocable with no arguments as the
/// lvalue it is stored as.
template <class F>
using stored_callable_ref = std::decay_t<F>&;
template <class F>
concept cancellation_callable = std::invocable<stored_callable_ref<F>>;

/// Prints what escaped a callback and calls std::terminate.
[[noreturn]] void cancellation_callback_threw() noexcept;

template <class F>
class cancellation_callback_for final : public cancellation_callback {
 public:
  template <class G>
  explicit cancellation_callback_for(G&& fn) : fn_(std::forward<G>(fn)) {}
  void invoke() noexcept override {
    try {
      std::invoke(fn_);
    } catch (...) {
      cancellation_callback_threw();
    }
  }

 private:
  F fn_;
};

// The operations tokens, registrations and awaiters use (src/cancellation/).
void retain(cancellation_state* state) noexcept;
void release(cancellation_state* state) noexcept;
[[nodiscard]] bool is_cancelled(const cancellation_state* state) noexcept;
/// Links `callback` (and takes a state reference for its registration);
/// false, untouched, when the token is already cancelled.
[[nodiscard]] bool add_callback(cancellation_state* state, cancellation_callback* callback);
/// Unlinks and frees `callback`; see cancellation_registration::reset.
void remove_callback(cancellation_state* state, cancellation_callback* callback) noexcept;
/// Parks `node` with `w` unless the token is already cancelled (false).
[[nodiscard]] bool park(cancellation_state* state, wait_node& node, waker&& w);
void unpark(cancellation_state* state, wait_node& node) noexcept;

/// Read-only views of a token's lists, for tests.
struct cancellation_probe {
  static std::size_t children(const cancellation_token& token);
  static std::size_t callbacks(const cancellation_token& token);
  static std::size_t waiters(const cancellation_token& token);
};

}  // namespace detail

/// Keeps a callback registered with `cancellation_token::on_cancel`.
/// Move-only; destroying it deregisters the callback. Empty when the
/// callback already ran inside `on_cancel` (the token was cancelled).
class [[nodiscard]] cancellation_registration {
 public:
  cancellation_registration() noexcept = default;
  cancellation_registration(cancellation_registration&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), callback_(std::exchange(other.callback_, nullptr)) {}
  cancellation_registration& operator=(cancellation_registration&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
      callback_ = std::exchange(other.callback_, nullptr);
    }
    return *this;
  }
  cancellation_registration(const cancellation_registration&) = delete;
  cancellation_registration& operator=(const cancellation_registration&) = delete;

  /// Deregisters the callback (see reset()).
  ~cancellation_registration() { reset(); }

  /// Deregisters the callback now; the registration becomes empty.
  /// * Not run yet: it never will be.
  /// * Running on another thread (a `cancel()` in progress): **blocks until
  ///   the callback returns**, so that whatever it uses may be destroyed
  ///   right after. Do not call it while holding something the callback
  ///   waits for (as with std::stop_callback).
  /// * Called from inside the callback itself: returns at once; the
  ///   callable is destroyed when it returns.
  /// * Already run: just frees it.
  void reset() noexcept {
    if (callback_ != nullptr)
      detail::remove_callback(std::exchange(state_, nullptr), std::exchange(callback_, nullptr));
  }

  /// True while a callback is registered (false when empty).
  [[nodiscard]] bool active() const noexcept { return callback_ != nullptr; }

 private:
  friend class cancellation_token;
  cancellation_registration(detail::cancellation_state* state, detail::cancellation_callback* callback) noexcept
      : state_(state), callback_(callback) {}
  detail::cancellation_state* state_ = nullptr;  // holds a reference while callback_ is set
  detail::cancellation_callback* callback_ = nullptr;
};

/// A handle to a node of a cancellation tree; see the top of this header.
/// Copies share the node. Thread-safe: any member may be called from any
/// thread concurrently (on distinct handle objects, as with shared_ptr).
class cancellation_token {
 public:
  /// A new root token, not cancelled. Allocates.
  cancellation_token();
  cancellation_token(const cancellation_token& other) noexcept;
  cancellation_token& operator=(const cancellation_token& other) noexcept;
  /// Leaves `other` empty (see Errors at the top of this header).
  cancellation_token(cancellation_token&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  cancellation_token& operator=(cancellation_token&& other) noexcept;
  ~cancellation_token();

  /// A new token cancelled whenever this one is (at once if this one
  /// already is). Cancelling the child does not affect this token or its
  /// other children. Allocates.
  [[nodiscard]] cancellation_token child_token() const;

  /// Cancels this token and every descendant, waking every awaiter and
  /// running every registered callback (on this thread). Idempotent. Returns
  /// when the whole subtree is cancelled — also when another thread started
  /// the cancellation: it waits for it. Exception: called from inside a
  /// cancellation callback (or a std::stop_callback run by a cancellation),
  /// it does not wait for a cancellation in progress elsewhere (that could
  /// deadlock), it only runs what nobody has started yet.
  /// Throws usage_error only on an empty token.
  void cancel();

  /// True once `cancel()` was called on this token or an ancestor (also
  /// while that cancel is still running its callbacks).
  [[nodiscard]] bool is_cancelled() const;

  /// Awaitable completing when this token is cancelled; see below.
  class cancelled_awaiter;

  /// `co_await token.cancelled()` resumes the task once the token is
  /// cancelled (see cancelled_awaiter). Throws usage_error on an empty token.
  [[nodiscard]] cancelled_awaiter cancelled() const;

  /// Registers `fn` (any callable with no arguments; its result is ignored)
  /// to run once when this token is cancelled. If the token is already
  /// cancelled, `fn` runs at once, inside on_cancel, and the registration
  /// returned is empty. Destroying the registration before cancellation
  /// deregisters `fn`; see cancellation_registration::reset for destruction
  /// while `fn` runs. `fn` must not throw (see Callbacks at the top).
  /// Allocates one node (unless already cancelled). Throws usage_error on an
  /// empty token, and whatever copying/moving `fn` throws.
  template <detail::cancellation_callable F>
  cancellation_registration on_cancel(F&& fn) const {
    check_valid("on_cancel");
    if (!detail::is_cancelled(state_)) {
      auto callback = std::make_unique<detail::cancellation_callback_for<std::decay_t<F>>>(std::forward<F>(fn));
      if (detail::add_callback(state_, callback.get())) return cancellation_registration{state_, callback.release()};
      callback->invoke();  // cancelled meanwhile
      return {};
    }
    detail::cancellation_callback_for<std::decay_t<F>> callback(std::forward<F>(fn));
    callback.invoke();
    return {};
  }

  /// A guard that cancels this token when destroyed, unless disarmed.
  /// Throws usage_error on an empty token.
  [[nodiscard]] cancellation_drop_guard drop_guard() const;

  /// A std::stop_token that reports stop_requested() once this token is
  /// cancelled (std::stop_callbacks on it run during `cancel()`). Allocates
  /// a stop source on first use. Throws usage_error on an empty token.
  [[nodiscard]] std::stop_token get_stop_token() const;

  /// A new root token cancelled when `stop`'s source requests stop (through
  /// a std::stop_callback; at once if it already has). A token from a
  /// stop_token with no source (`stop_possible()` false) is a plain root.
  /// The token's children keep the link alive.
  [[nodiscard]] static cancellation_token from_stop_token(std::stop_token stop);

  /// False for a moved-from token.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  /// True when both handles refer to the same token.
  friend bool operator==(const cancellation_token& a, const cancellation_token& b) noexcept {
    return a.state_ == b.state_;
  }

 private:
  friend struct detail::cancellation_probe;
  explicit cancellation_token(detail::cancellation_state* adopted) noexcept : state_(adopted) {}
  void check_valid(const char* what) const;

  detail::cancellation_state* state_;  // one reference; null when moved from
};

/// Awaitable completing when this token is cancelled; at once if it
/// already is. Holds a reference to the token, so a temporary token
/// (`co_await parent.child_token().cancelled()`) is fine.
/// Cancellation: an aborted waiter is unlinked from the token.
class cancellation_token::cancelled_awaiter {
 public:
  explicit cancelled_awaiter(const cancellation_token& token) : token_(token) {}
  cancelled_awaiter(const cancelled_awaiter&) = delete;
  cancelled_awaiter& operator=(const cancelled_awaiter&) = delete;
  ~cancelled_awaiter() {
    if (parked_) detail::unpark(token_.state_, node_);
  }
  [[nodiscard]] bool await_ready() const noexcept { return detail::is_cancelled(token_.state_); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = detail::park(token_.state_, node_, detail::suspend_current(awaiting));
    return parked_;
  }
  void await_resume() const noexcept {}

 private:
  cancellation_token token_;
  detail::wait_node node_;
  bool parked_ = false;
};

inline cancellation_token::cancelled_awaiter cancellation_token::cancelled() const {
  check_valid("cancelled");
  return cancelled_awaiter{*this};
}

/// Cancels its token when destroyed, unless `disarm()` was called first.
/// Move-only.
///
///   {
///     auto guard = token.drop_guard();
///     co_await work();        // an exception or an abort of this task ...
///     guard.disarm();         // ... cancels `token`; success does not
///   }
class [[nodiscard]] cancellation_drop_guard {
 public:
  explicit cancellation_drop_guard(cancellation_token token) noexcept : token_(std::move(token)) {}
  cancellation_drop_guard(cancellation_drop_guard&&) noexcept = default;
  cancellation_drop_guard& operator=(cancellation_drop_guard&& other) noexcept {
    if (this != &other) {
      fire();
      token_ = std::move(other.token_);
    }
    return *this;
  }
  cancellation_drop_guard(const cancellation_drop_guard&) = delete;
  cancellation_drop_guard& operator=(const cancellation_drop_guard&) = delete;
  ~cancellation_drop_guard() { fire(); }

  /// The guard will not cancel; returns its token (empty if already
  /// disarmed).
  cancellation_token disarm() noexcept { return std::move(token_); }
  [[nodiscard]] bool armed() const noexcept { return token_.valid(); }

 private:
  void fire() noexcept {
    if (!token_.valid()) return;
    cancellation_token token = std::move(token_);
    token.cancel();  // valid, so it cannot throw
  }
  cancellation_token token_;
};

inline cancellation_drop_guard cancellation_token::drop_guard() const {
  check_valid("drop_guard");
  return cancellation_drop_guard{*this};
}

/// Runs `work` until it finishes or `token` is cancelled, whichever comes
/// first, and yields its value, or nullopt if the token won.
///
/// `work` is spawned on the current runtime as its own task (so it runs
/// concurrently with the caller, and the spawn location recorded is the
/// caller's). When the token is cancelled first, the inner task is aborted
/// and run_until_cancelled returns only after its frame was destroyed: the
/// work is cancelled, never orphaned. A token already cancelled at the start
/// yields nullopt without running `work`. If the task finishes and the token
/// is cancelled at about the same time, exactly one wins: a finished value is
/// returned even if the token is cancelled by then.
///
/// Throws: what escaped `work` (the original exception); usage_error outside
/// a runtime; runtime_closed on a runtime shutting down; join_error
/// (cancelled) if the inner task was aborted by something other than the
/// token (the runtime's shutdown).
///
/// Cancellation: aborting the task that awaits run_until_cancelled aborts the
/// inner task as well and deregisters from the token.
template <class T>
requires(!std::is_void_v<T> && !std::is_reference_v<T>) task<std::optional<T>> run_until_cancelled(
    cancellation_token token, task<T> work, std::source_location where = std::source_location::current()) {
  if (token.is_cancelled()) co_return std::nullopt;
  join_handle<T> inner = spawn(std::move(work), spawn_options{.location = where});
  inner.abort_on_drop();  // the caller aborted: never orphan the work
  cancellation_registration on_cancel = token.on_cancel([abort = inner.get_abort_handle()] { abort.abort(); });
  std::expected<T, join_error> outcome = co_await inner.result();
  if (outcome) co_return std::optional<T>(std::move(*outcome));
  if (outcome.error().is_panic()) outcome.error().rethrow();
  if (token.is_cancelled()) co_return std::nullopt;
  throw outcome.error();
}

/// The void form: true when `work` finished, false when the token was
/// cancelled first. Otherwise as above.
task<bool> run_until_cancelled(cancellation_token token, task<void> work,
                               std::source_location where = std::source_location::current());

}  // namespace warden
