// warden/join_handle.hpp — the handle to a spawned task: join_handle<T>,
// abort_handle, join_error and task_id.
//
// `spawn` returns a `join_handle<T>`. Awaiting it yields the task's value, or
// throws `join_error` if the task panicked (an exception escaped it) or was
// cancelled (aborted, or destroyed by the runtime's shutdown):
//
//   warden::join_handle<int> h = warden::spawn(compute());
//   try {
//     int v = co_await std::move(h);
//   } catch (const warden::join_error& e) {
//     if (e.is_panic()) std::rethrow_exception(e.exception());
//   }
//
//   auto r = co_await h.result();        // std::expected<int, join_error>
//
// # Awaiting a task that has not started yet
// With worker threads, a task that awaits the handle of a task it recently
// spawned which has not started yet (still among the last few tasks queued
// on its worker) runs that task itself, right there, instead of suspending:
// depth first, like fork-join schedulers, so "spawn N children, then await
// each" stays cache-warm and uses little memory. Tasks queued after it (its
// younger siblings) may run the same way first, or wait for their own
// awaits, so siblings may start out of spawn order. In current-thread mode
// (`worker_threads = 0`) tasks always start in spawn order.
//
// # Dropping a handle
// Destroying a handle detaches the task: it keeps running to completion (like
// tokio, unlike std::jthread). `abort_on_drop()` makes destruction abort the
// task instead. A detached task's panic that nobody observed is an
// *unhandled failure* and goes to the runtime's unhandled-failure policy
// (see runtime_options::on_unhandled_failure). An abort is never a failure.
//
// # Cancellation
// `abort()` requests cancellation. A task that has not started never runs; a
// task suspended at an await has its frame destroyed promptly on a worker
// (every local's destructor runs, every awaiter deregisters); a running task
// is cancelled at its next suspension; a finished task is unaffected and its
// result stays available. Abort is idempotent and racing it against
// completion gives exactly one outcome.
//
// # Errors
// Awaiting a handle twice, after `result()` consumed it, or awaiting an empty
// (moved-from / default) handle throws `usage_error`. `join()` (the blocking
// form, for threads outside the runtime) throws `usage_error` on a worker
// thread, where it would deadlock.
//
// # Threads
// A handle is an ordinary object: one task (or thread) uses it at a time,
// like any other non-atomic value. Hand it over by moving it; to let several
// tasks wait for one task, give them an `event` or a `broadcast` channel the
// task signals instead. (Two tasks that do await one handle at the same time
// are caught when both would park: the second gets `usage_error`; other
// overlaps are a data race on the handle.) To cancel from elsewhere, give
// each canceller its own copy of an `abort_handle` (copyable; any thread).
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/errors.hpp>
#include <warden/task.hpp>

#include <compare>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <exception>
#include <expected>
#include <iosfwd>
#include <memory>
#include <new>
#include <source_location>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace warden {

namespace detail {
struct handle_access;

/// What an await's first step found (join_handle_base::await_now): `kind`
/// is one of join_handle_base's kPending, kComplete, kTaken; `bits` the
/// taken value's bits (kTaken). Two words: returned in registers.
struct await_outcome {
  std::uintptr_t bits;
  std::uintptr_t kind;
};
/// join_handle_base::kPending and kComplete, for the runtime's code.
inline constexpr std::uintptr_t kAwaitPending = 0;
inline constexpr std::uintptr_t kAwaitComplete = 1;
}  // namespace detail

namespace detail {

// result_fits_inline_v: see task.hpp.

/// A finished task's value, moved out of its frame (see result_ops): copied
/// into the header's slot when it fits, else moved into a small box.
template <class T>
struct result_box {
  T value;

  // One indirect call per completion: the promise is found here, and the
  // failure checked here too (see result_ops).
  static bool extract(std::coroutine_handle<> root, void*& slot) {
    auto& promise = std::coroutine_handle<task_promise<T>>::from_address(root.address()).promise();
    if (promise.failed()) return false;
    if constexpr (result_fits_inline_v<T>) {
      const T value = promise.take();
      std::memcpy(&slot, static_cast<const void*>(std::addressof(value)), sizeof(T));
    } else {
      void* memory = allocate_frame(sizeof(result_box));
      try {
        slot = ::new (memory) result_box{promise.take()};
      } catch (...) {
        deallocate_frame(memory, sizeof(result_box));
        throw;
      }
    }
    return true;
  }
  /// Boxed values only (an inline value needs no destruction).
  static void destroy(void*& slot) noexcept {
    auto* typed = static_cast<result_box*>(std::exchange(slot, nullptr));
    if (typed == nullptr) return;
    typed->~result_box();
    deallocate_frame(typed, sizeof(result_box));
  }
};

/// The promise of a root frame whose task yields `T`.
template <class T>
promise_base& root_promise_of(std::coroutine_handle<> root) noexcept {
  return std::coroutine_handle<task_promise<T>>::from_address(root.address()).promise();
}

template <class T>
inline constexpr result_ops result_ops_for{
    &result_box<T>::extract, result_fits_inline_v<T> ? nullptr : &result_box<T>::destroy, &root_promise_of<T>};
/// result_ops::extract for void: nothing to move, only the failure to see.
inline bool extract_void(std::coroutine_handle<> root, void*&) {
  return !std::coroutine_handle<task_promise<void>>::from_address(root.address()).promise().failed();
}
template <>
inline constexpr result_ops result_ops_for<void>{&extract_void, nullptr, &root_promise_of<void>};

}  // namespace detail

/// Identifies a spawned task. Unique among live tasks (ids are never reused
/// within a process); `task_id{}` (value 0) means "no task".
class task_id {
 public:
  constexpr task_id() noexcept = default;
  constexpr explicit task_id(std::uint64_t value) noexcept : value_(value) {}
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr auto operator<=>(task_id, task_id) noexcept = default;

 private:
  std::uint64_t value_ = 0;
};
std::ostream& operator<<(std::ostream& out, task_id id);

/// Why a task did not produce a value: it was cancelled, or it panicked (an
/// exception escaped it). `what()` names the task and the cause.
class join_error : public std::exception {
 public:
  enum class kind : std::uint8_t { cancelled, panic };

  static join_error cancelled(task_id id, std::string_view name);
  static join_error panic(task_id id, std::string_view name, std::exception_ptr error);

  [[nodiscard]] kind reason() const noexcept { return kind_; }
  [[nodiscard]] bool is_cancelled() const noexcept { return kind_ == kind::cancelled; }
  [[nodiscard]] bool is_panic() const noexcept { return kind_ == kind::panic; }
  /// The exception that escaped the task (null when cancelled).
  [[nodiscard]] std::exception_ptr exception() const noexcept;
  /// Rethrows the original exception. Throws usage_error if not a panic.
  [[noreturn]] void rethrow() const;
  /// The original exception's `what()` ("" when cancelled or not a
  /// std::exception).
  [[nodiscard]] std::string_view panic_message() const noexcept;
  [[nodiscard]] task_id id() const noexcept;
  [[nodiscard]] std::string_view name() const noexcept;
  [[nodiscard]] const char* what() const noexcept override;

 private:
  struct details;
  join_error(kind k, std::shared_ptr<const details> d) noexcept : kind_(k), details_(std::move(d)) {}
  kind kind_;
  std::shared_ptr<const details> details_;
};

/// A handle that can only abort a task; copyable, does not detach on drop.
class abort_handle {
 public:
  abort_handle() noexcept = default;
  abort_handle(const abort_handle& other) noexcept;
  abort_handle& operator=(const abort_handle& other) noexcept;
  abort_handle(abort_handle&& other) noexcept : task_(std::exchange(other.task_, nullptr)) {}
  abort_handle& operator=(abort_handle&& other) noexcept;
  ~abort_handle();

  /// Same contract as join_handle::abort. No-op on an empty handle.
  void abort() const noexcept;
  [[nodiscard]] bool is_finished() const noexcept;
  [[nodiscard]] task_id id() const noexcept;

 private:
  friend class join_handle_base;
  explicit abort_handle(detail::task_header* task) noexcept;
  detail::task_header* task_ = nullptr;
};

/// The untyped part of join_handle<T>.
class join_handle_base {
 public:
  /// Requests cancellation (see the top of this header). No-op when empty.
  void abort() const noexcept;
  /// False while the task can still run; true once it completed, panicked,
  /// or its cancellation finished (frame destroyed).
  [[nodiscard]] bool is_finished() const noexcept;
  /// Dropping this handle will abort the task instead of detaching it.
  void abort_on_drop() noexcept { flags_ |= kAbortOnDrop; }
  /// Lets the task run on unobserved; the handle becomes empty. A later
  /// panic is an unhandled failure (runtime_options::on_unhandled_failure).
  void detach() noexcept;
  [[nodiscard]] task_id id() const noexcept;
  /// The name given in spawn_options ("" when none).
  [[nodiscard]] std::string_view name() const noexcept;
  [[nodiscard]] std::source_location spawn_location() const noexcept;
  [[nodiscard]] warden::abort_handle get_abort_handle() const noexcept;
  /// False for a default-constructed, moved-from, detached or consumed handle.
  [[nodiscard]] bool valid() const noexcept { return (flags_ & kConsumed) == 0 && task_ != nullptr; }

 protected:
  friend struct detail::handle_access;
  join_handle_base() noexcept = default;
  explicit join_handle_base(detail::task_header* task) noexcept : task_(task) {}
  join_handle_base(join_handle_base&& other) noexcept
      : task_(std::exchange(other.task_, nullptr)), flags_(std::exchange(other.flags_, 0)) {}
  join_handle_base& operator=(join_handle_base&& other) noexcept {
    if (this != &other) {
      drop();
      task_ = std::exchange(other.task_, nullptr);
      flags_ = std::exchange(other.flags_, 0);
    }
    return *this;
  }
  ~join_handle_base() { drop(); }

  // Awaiting: throws usage_error when empty or already consumed.
  void check_can_take() const {
    if (task_ == nullptr || (flags_ & kConsumed) != 0) [[unlikely]]
      throw_cannot_take();
  }
  /// await_now's outcomes: the task is not complete (suspend: wait); it is
  /// (take its outcome with take_value / take_expected); it was, and its
  /// value is taken already, the handle consumed.
  static constexpr std::uintptr_t kPending = 0;
  static constexpr std::uintptr_t kComplete = 1;
  static constexpr std::uintptr_t kTaken = 2;
  /// An await's first step, one call (in the awaiter's await_ready): if the
  /// task is complete, kComplete; if it never started and is the newest
  /// task this worker stashed for the task awaiting it, runs it right here
  /// (see "Awaiting a task that has not started" at the top), and if it
  /// ended with a value that fits the header's slot (or void) while this
  /// handle was its only other owner, kTaken: the value's bits, the handle
  /// consumed (see "A consumed handle's identity" below for its header);
  /// else runs it, or others before it, as help_awaited
  /// decides (kComplete if it completed meanwhile, else kPending). Throws
  /// usage_error when the handle is empty or consumed (check_can_take), or
  /// outside a warden task unless the task is complete.
  [[nodiscard]] detail::await_outcome await_now();
  /// await_now's less common cases (out of line): complete already, or
  /// help_awaited's other paths.
  [[nodiscard]] detail::await_outcome await_now_slow();
  /// The second step, when await_now gave kPending (in await_suspend):
  /// registers `slot` (made here) as the join waker; the awaiter keeps it
  /// until leave() (see set_join_waker). False when the task completed
  /// meanwhile.
  bool wait(std::coroutine_handle<> awaiting, detail::waker& slot);
  void leave() const noexcept;
  void block();
  /// After completion: the cancel/panic error, or nullopt-like false when the
  /// value is there. Marks the handle consumed.
  [[nodiscard]] bool failed() const noexcept {
    return (task_->state.load(std::memory_order_acquire) &
            (detail::task_header::PANICKED | detail::task_header::CANCELLED)) != 0;
  }
  [[nodiscard]] join_error take_error() noexcept;
  /// After success: the value's slot (an inline value or a box; null for
  /// void). Marks the handle consumed.
  [[nodiscard]] void* take_box() noexcept {
    flags_ |= kConsumed;
    return std::exchange(task_->result, nullptr);
  }

 private:
  void drop() noexcept {
    if (task_ != nullptr) release_handle();
  }
  /// drop()'s work when the handle holds a task.
  void release_handle() noexcept;
  [[noreturn]] void throw_cannot_take() const;
  /// Of a handle without a header that was consumed by await_now (see
  /// below): a header standing for its finished task, made on first need
  /// (id(), get_abort_handle()), or null if out of memory.
  detail::task_header* identity_header() const noexcept;
  /// await_now's consume when the header cannot go back to the pool the
  /// inline way: frees it keeping the site, or else keeps it.
  void consume_slow() noexcept;
  /// The state of a header its consumed handle keeps: complete, the
  /// outcome taken, the frame gone, the handle's reference (published).
  static void publish_consumed(detail::task_header* task) noexcept;

  // A consumed handle's identity: once the outcome is taken, id(), name(),
  // spawn_location() and is_finished() still answer for the task (and a
  // second await throws usage_error). Usually the handle keeps the header
  // for that until it is dropped. But when await_now consumes it while the
  // handle is the header's only owner and the task has no extras (no name,
  // no task-locals, no id asked for yet), all that is left of the identity
  // is the spawn site (interned, never freed) and an id nobody was given
  // yet. So await_now frees the header right there and the handle keeps the
  // site in `flags_` (task_ null, kConsumed set): its drop then does
  // nothing. A later id() or get_abort_handle() makes a header for the
  // finished task (complete, the same site, the id given then, as it would
  // have been given then anyway) and keeps it like any consumed handle. A
  // const accessor may do that: a handle is used by one thread at a time
  // (see "Threads" at the top).
  static constexpr std::uintptr_t kAbortOnDrop = 1;
  static constexpr std::uintptr_t kConsumed = 2;
  static constexpr std::uintptr_t kFlagBits = kAbortOnDrop | kConsumed;
  /// The site kept by a consumed handle without a header, else null.
  [[nodiscard]] const detail::spawn_site* kept_site() const noexcept {
    return reinterpret_cast<const detail::spawn_site*>(flags_ & ~kFlagBits);
  }

  mutable detail::task_header* task_ = nullptr;  // mutable: see identity_header
  // kAbortOnDrop, kConsumed, and the kept site's address (see above; a
  // spawn_site is at least 8-byte aligned).
  std::uintptr_t flags_ = 0;
};

/// The handle to a spawned task yielding `T`. Move-only. See the top of this
/// header for awaiting, dropping and cancellation.
template <class T>
class [[nodiscard]] join_handle : public join_handle_base {
  static_assert(!std::is_reference_v<T>,
                "spawn a task<T> with a non-reference T: a reference result would outlive "
                "the task that produced it");

 public:
  using value_type = T;

  join_handle() noexcept = default;
  join_handle(join_handle&&) noexcept = default;
  join_handle& operator=(join_handle&&) noexcept = default;
  ~join_handle() = default;

  template <bool AsExpected>
  class awaiter {
   public:
    using result_type = std::conditional_t<AsExpected, std::expected<T, join_error>, T>;

    explicit awaiter(join_handle& handle) : handle_(&handle) { handle.check_can_take(); }
    /// For `co_await handle`, awaited at once: the checks are await_now's
    /// (an empty or consumed handle never matches its common case, and its
    /// other cases check first), so they cost nothing inline.
    awaiter(join_handle& handle, std::nullptr_t /*checked when awaited*/) noexcept : handle_(&handle) {}
    awaiter(awaiter&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)), phase_(other.phase_) {
      if (phase_ == kHoldsValue)
        bits_ = other.bits_;
      else if (phase_ != kNone)
        ::new (static_cast<void*>(&waker_)) detail::waker(std::move(other.waker_));
    }
    awaiter(const awaiter&) = delete;
    awaiter& operator=(const awaiter&) = delete;
    awaiter& operator=(awaiter&&) = delete;
    ~awaiter() {
      if (phase_ >= kHoldsWaker) {
        if (phase_ == kRegistered && handle_ != nullptr) handle_->leave();
        waker_.~waker();
      }
    }
    // The child usually runs right here, before the awaiting coroutine
    // suspends (see join_handle_base::await_now).
    bool await_ready() {
      const detail::await_outcome r = handle_->await_now();
      if (r.kind == kTaken) {
        bits_ = r.bits;
        phase_ = kHoldsValue;
        return true;
      }
      return r.kind != kPending;
    }
    bool await_suspend(std::coroutine_handle<> awaiting) {
      ::new (static_cast<void*>(&waker_)) detail::waker();
      phase_ = kHoldsWaker;
      if (!handle_->wait(awaiting, waker_)) return false;
      phase_ = kRegistered;
      return true;
    }
    result_type await_resume() {
      // A value taken by await_now (only a value that fits the header's
      // slot, or void, can be: see "Roots that end without suspending" in
      // task.hpp).
      if constexpr (std::is_void_v<T> || detail::result_fits_inline_v<T>) {
        if (phase_ == kHoldsValue) [[likely]] {
          if constexpr (std::is_void_v<T>) {
            return result_type();
          } else {
            T value;
            std::memcpy(static_cast<void*>(std::addressof(value)), &bits_, sizeof(T));
            return value;
          }
        }
      }
      if constexpr (AsExpected)
        return handle_->take_expected();
      else
        return handle_->take_value();
    }

   private:
    // What the awaiter holds: nothing yet; the value await_now took
    // (`bits_`); the join waker (`waker_`), made in await_suspend, and
    // registered in the task's header while suspended (only then; an
    // awaiter is never moved once suspended): leave() runs before it is
    // destroyed.
    static constexpr std::uint8_t kNone = 0;
    static constexpr std::uint8_t kHoldsValue = 1;
    static constexpr std::uint8_t kHoldsWaker = 2;
    static constexpr std::uint8_t kRegistered = 3;
    join_handle* handle_;
    union {
      std::uintptr_t bits_;
      detail::waker waker_;
    };
    std::uint8_t phase_ = kNone;
  };

  /// Yields the value or throws join_error (cancelled / panic).
  awaiter<false> operator co_await() & { return awaiter<false>{*this, nullptr}; }
  awaiter<false> operator co_await() && { return awaiter<false>{*this, nullptr}; }

  /// Awaitable yielding `std::expected<T, join_error>` instead of throwing.
  awaiter<true> result() { return awaiter<true>{*this}; }

  /// Blocks the calling thread (not a worker) until the task finishes; yields
  /// the value or throws join_error.
  T join() {
    check_can_take();
    block();
    return take_value();
  }

 private:
  friend struct detail::handle_access;
  explicit join_handle(detail::task_header* task) noexcept : join_handle_base(task) {}

  T take_value() {
    if (failed()) throw take_error();
    void* box = take_box();
    if constexpr (detail::result_fits_inline_v<T>) {
      T value;
      std::memcpy(static_cast<void*>(std::addressof(value)), &box, sizeof(T));
      return value;
    } else if constexpr (!std::is_void_v<T>) {
      struct dropper {
        void* box;
        ~dropper() { detail::result_box<T>::destroy(box); }
      } drop{box};
      return std::move(static_cast<detail::result_box<T>*>(box)->value);
    }
  }

  std::expected<T, join_error> take_expected() {
    if (failed()) return std::unexpected(take_error());
    if constexpr (std::is_void_v<T>) {
      (void)take_box();
      return {};
    } else {
      return take_value();
    }
  }
};

}  // namespace warden
