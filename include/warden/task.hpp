// warden/task.hpp — task<T>, the unit of asynchronous work.
//
// A `task<T>` is a lazy coroutine: calling a coroutine function that returns
// `task<T>` allocates its frame and runs nothing. The body runs when the task
// is awaited (inline, in the awaiting coroutine's thread) or when it is
// handed to `spawn`, which makes it an independently scheduled task.
//
//   warden::task<int> answer() { co_return 42; }
//   warden::task<int> twice() {
//     int a = co_await answer();          // runs answer() inline
//     co_return 2 * a;
//   }
//
// Results: `co_await t` yields the value the body `co_return`ed, or rethrows
// the exception that escaped the body. `T` may be void, any movable type
// (move-only types included) or a reference (`task<T&>` yields the referent;
// the referent must outlive the await).
//
// Execution: awaiting transfers control symmetrically (the awaiting frame is
// suspended and the awaited one resumed by a tail call, and back), so a loop
// of a million awaits of tasks that finish synchronously uses constant stack,
// also at -O0.
//
// Ownership: a task owns its frame. Destroying a task that has not finished
// destroys the frame, which runs the destructors of every local and of every
// task it was awaiting (this is how cancellation works in warden). A task can
// be awaited once; awaiting it again, or awaiting an empty (moved-from) task,
// throws `usage_error`.
//
// Frames come from warden's per-thread frame allocator, not from malloc on
// every call.
#pragma once

#include <warden/detail/frame_allocator.hpp>
#include <warden/errors.hpp>

#include <coroutine>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

// Whether the compiler turns the handle returned by await_suspend into a
// tail call (clang always; GCC when optimising, except under TSan).
#if defined(__clang__)
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL 0
#endif
#endif
#ifndef WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL
#define WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL 1
#endif
#elif defined(__OPTIMIZE__) && !defined(__SANITIZE_THREAD__)
#define WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL 1
#else
#define WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL 0
#endif

namespace warden {

template <class T = void>
class task;

namespace detail {

struct task_access;

/// Where a failing body's continuation word waits between its promise's
/// unhandled_exception() and its final awaiter, which run back to back on
/// the same thread (the exception takes the promise's only word meanwhile).
/// Zero otherwise.
inline constinit thread_local std::uintptr_t tl_failing_continuation = 0;

/// Whether a finished task's `T` is kept inside the header's result slot
/// (small trivially copyable values: integers, pointers, small PODs) rather
/// than in a box from the frame allocator (see result_ops in
/// detail/task_header.hpp).
template <class T>
consteval bool result_fits_inline() {
  if constexpr (std::is_void_v<T> || std::is_reference_v<T>)
    return false;
  else
    return sizeof(T) <= sizeof(void*) && alignof(T) <= alignof(void*) && std::is_trivially_copyable_v<T> &&
           std::is_trivially_default_constructible_v<T>;
}
template <class T>
inline constexpr bool result_fits_inline_v = result_fits_inline<T>();

/// A root frame that finished without suspending (see "Roots that end
/// without suspending" at promise_base). Written by the root's
/// final_suspend, on the thread polling the task, right before the frame
/// destroys itself; read and cleared by that poller as soon as the frame's
/// resume returns (nothing runs on the thread in between but the frame's
/// own destruction, which resumes no task). `frame` is null otherwise.
struct root_exit {
  void* frame = nullptr;
  std::uintptr_t value = 0;  // the value's bits (zero-extended); 0 for void
};
inline constinit thread_local root_exit tl_root_exit{};

/// What every task promise has: the awaiting coroutine to resume when the
/// body finishes, or else the exception that escaped it, in one word (a
/// parked task's frame pays for every byte of its promise).
///
/// The word holds, until the body ends, the awaiting frame's address tagged
/// with kHasContinuation (0 for a root task, which nobody awaits) and maybe
/// kResumedInline; after an exception escaped, a std::exception_ptr, whose
/// bits never have kHasContinuation (it points to an exception object, which
/// is at least 8-byte aligned like a frame) and are never zero. So, once the
/// body has ended, the word is an exception exactly when it is non-zero and
/// kHasContinuation is clear. unhandled_exception() moves the continuation
/// word to tl_failing_continuation for the final awaiter, which runs right
/// after it on the same thread.
///
/// Roots that end without suspending: a spawned task's root frame (word 0
/// at the end: nobody awaits it and its body did not throw) whose value fits
/// the header's result slot (result_fits_inline_v, or void) does not
/// suspend at final_suspend: it leaves the value's bits in tl_root_exit and
/// destroys itself, so its poller (poll_task_yielded, the only code that
/// resumes a root) neither moves the value out through result_ops nor
/// re-enters the frame to destroy it. A root whose body threw, or with any
/// other result type, suspends at final_suspend and its poller moves the
/// outcome out and destroys the frame.
///
/// Threading: a promise is touched only by the thread currently running (or
/// destroying) its coroutine; hand-offs between threads go through the
/// runtime's task state, which orders them.
class promise_base {
 public:
  static void* operator new(std::size_t size) { return allocate_frame(size); }
  static void operator delete(void* block, std::size_t size) noexcept { deallocate_frame(block, size); }

  promise_base() noexcept { set_word(0); }
  promise_base(const promise_base&) = delete;
  promise_base& operator=(const promise_base&) = delete;
  ~promise_base() {
    if (failed()) error().~exception_ptr();
  }

  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    // True for a root that ends here without suspending (see above).
    bool finished_root = false;
    bool await_ready() const noexcept { return finished_root; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) const noexcept {
      promise_base& p = self.promise();
      std::uintptr_t w = p.word();
      const bool failed = is_error(w);
      if (failed) [[unlikely]]
        w = std::exchange(tl_failing_continuation, 0);
      // Finished while the awaiter is still inside its await_suspend (the
      // inline-resume path, see task::awaiter): return to it, which sees the
      // flag gone (an exception's word never has it).
      if ((w & kResumedInline) != 0) {
        if (!failed) p.set_word(w & ~kResumedInline);
        return std::noop_coroutine();
      }
      // Symmetric transfer back to whoever awaited us. A root task (spawned,
      // no awaiting coroutine) returns to the worker that resumed it, which
      // completes it.
      if ((w & kHasContinuation) == 0) return std::noop_coroutine();
      return std::coroutine_handle<>::from_address(reinterpret_cast<void*>(w & ~kTagBits));
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept {
    // The final awaiter, next on this thread, still needs the continuation.
    tl_failing_continuation = word();
    ::new (static_cast<void*>(word_)) std::exception_ptr(std::current_exception());
    // An ABI whose exception_ptr bits could pass for a continuation would
    // lose exceptions: stop loudly instead.
    if (!is_error(word())) [[unlikely]]
      std::terminate();
  }

  /// Whether the body threw; meaningful once it has ended.
  [[nodiscard]] bool failed() const noexcept { return is_error(word()); }
  /// The exception that escaped the body (null if none); once it has ended.
  [[nodiscard]] std::exception_ptr exception() const noexcept { return failed() ? error() : std::exception_ptr(); }

  void set_continuation(std::coroutine_handle<> c) noexcept {
    set_word(reinterpret_cast<std::uintptr_t>(c.address()) | kHasContinuation);
  }

  /// Inline-resume protocol for compilers that do not turn symmetric
  /// transfer into a tail call (GCC at -O0): the awaiter resumes the child
  /// directly; if the child finishes before that call returns, its final
  /// awaiter returns to the awaiter instead of resuming the parent, so a loop
  /// of synchronous awaits uses constant stack. Touched only by the thread
  /// running the task (the task is RUNNING throughout). The flag is the low
  /// bit of the word (frames are at least 8-byte aligned), so the promise
  /// has the same layout whichever way a translation unit was compiled.
  void mark_resumed_inline() noexcept { set_word(word() | kResumedInline); }
  /// Clears the flag; whether it was set.
  bool take_resumed_inline() noexcept {
    const std::uintptr_t w = word();
    if ((w & kResumedInline) == 0) return false;  // also when the word is an exception
    set_word(w & ~kResumedInline);
    return true;
  }

 protected:
  /// For a final_suspend: whether the body ended without an exception and
  /// nobody awaits the frame (a root; see "Roots that end without
  /// suspending").
  [[nodiscard]] bool finished_as_root() const noexcept { return word() == 0; }

  void rethrow_if_failed() const {
    if (failed()) std::rethrow_exception(error());
  }

 private:
  static constexpr std::uintptr_t kResumedInline = 1;
  static constexpr std::uintptr_t kHasContinuation = 2;
  static constexpr std::uintptr_t kTagBits = kResumedInline | kHasContinuation;
  static_assert(sizeof(std::exception_ptr) == sizeof(std::uintptr_t) &&
                    alignof(std::exception_ptr) <= alignof(std::uintptr_t),
                "the promise keeps an exception_ptr in its one word");

  static bool is_error(std::uintptr_t w) noexcept { return w != 0 && (w & kHasContinuation) == 0; }
  [[nodiscard]] std::uintptr_t word() const noexcept {
    std::uintptr_t w;
    std::memcpy(&w, word_, sizeof(w));
    return w;
  }
  void set_word(std::uintptr_t w) noexcept { std::memcpy(word_, &w, sizeof(w)); }
  [[nodiscard]] const std::exception_ptr& error() const noexcept {
    return *std::launder(reinterpret_cast<const std::exception_ptr*>(word_));
  }
  [[nodiscard]] std::exception_ptr& error() noexcept {
    return *std::launder(reinterpret_cast<std::exception_ptr*>(word_));
  }

  // The continuation word or, once the body threw, the exception_ptr.
  alignas(std::uintptr_t) unsigned char word_[sizeof(std::uintptr_t)];
};

template <class T>
class task_promise final : public promise_base {
 public:
  task_promise() noexcept {}
  task_promise(const task_promise&) = delete;
  task_promise& operator=(const task_promise&) = delete;
  ~task_promise() {
    if (has_value_) value_.~T();
  }

  task<T> get_return_object() noexcept;

  void return_value(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) {
    std::construct_at(std::addressof(value_), std::move(v));
    has_value_ = true;
  }
  void return_value(const T& v) noexcept(
      std::is_nothrow_copy_constructible_v<T>) requires std::is_copy_constructible_v<T> {
    std::construct_at(std::addressof(value_), v);
    has_value_ = true;
  }
  template <class U>
  requires(!std::is_same_v<std::remove_cvref_t<U>, T> &&
           std::is_constructible_v<T, U&&>) void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    std::construct_at(std::addressof(value_), std::forward<U>(v));
    has_value_ = true;
  }

  /// Moves the value out (or rethrows). Called once, by the single consumer.
  T take() {
    rethrow_if_failed();
    return std::move(value_);
  }

  final_awaiter final_suspend() noexcept {
    if constexpr (result_fits_inline_v<T>) {
      if (finished_as_root()) {
        // See "Roots that end without suspending" at promise_base.
        std::uintptr_t bits = 0;
        std::memcpy(&bits, static_cast<const void*>(std::addressof(value_)), sizeof(T));
        tl_root_exit.value = bits;
        tl_root_exit.frame = std::coroutine_handle<task_promise>::from_promise(*this).address();
        return {true};
      }
    }
    return {};
  }

 private:
  union {
    T value_;
  };
  // Whether value_ holds a value, for the destructor; kept only where the
  // destructor needs it (a root's frame is made and ended once per task: two
  // stores saved per task for the common small values).
  struct no_flag {
    no_flag& operator=(bool) noexcept { return *this; }
    explicit operator bool() const noexcept { return false; }
  };
  [[no_unique_address]] std::conditional_t<std::is_trivially_destructible_v<T>, no_flag, bool> has_value_{};
};

template <class T>
class task_promise<T&> final : public promise_base {
 public:
  task<T&> get_return_object() noexcept;
  void return_value(T& v) noexcept { value_ = std::addressof(v); }
  T& take() {
    rethrow_if_failed();
    return *value_;
  }

 private:
  T* value_ = nullptr;
};

template <>
class task_promise<void> final : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() { rethrow_if_failed(); }

  final_awaiter final_suspend() noexcept {
    if (finished_as_root()) {
      // See "Roots that end without suspending" at promise_base.
      tl_root_exit.value = 0;
      tl_root_exit.frame = std::coroutine_handle<task_promise>::from_promise(*this).address();
      return {true};
    }
    return {};
  }
};

[[noreturn]] void throw_empty_task();
[[noreturn]] void throw_task_awaited_twice();

}  // namespace detail

/// A lazy coroutine yielding `T`. See the top of this header.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  /// An empty task; awaiting or spawning it throws `usage_error`.
  task() noexcept = default;
  task(task&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      frame_ = std::exchange(other.frame_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  /// True when the task holds a coroutine (not default-constructed or moved from).
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(frame_); }
  explicit operator bool() const noexcept { return valid(); }

  class awaiter {
   public:
    explicit awaiter(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}
    bool await_ready() const {
      if (!frame_) detail::throw_empty_task();
      if (frame_.done()) detail::throw_task_awaited_twice();
      return false;
    }
#if WARDEN_SYMMETRIC_TRANSFER_IS_A_TAIL_CALL
    // Symmetric transfer: a guaranteed tail call here.
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) const noexcept {
      frame_.promise().set_continuation(awaiting);
      return frame_;
    }
#else
    // GCC at -O0 (and with ThreadSanitizer, whose function-exit hooks block
    // the tail call) emits symmetric transfer as a plain call, so a long loop
    // of synchronous awaits would overflow the stack: resume the child inline.
    bool await_suspend(std::coroutine_handle<> awaiting) const noexcept {
      promise_type& p = frame_.promise();
      p.set_continuation(awaiting);
      p.mark_resumed_inline();
      frame_.resume();
      // Still set: the child suspended and will resume us when it finishes.
      return p.take_resumed_inline();
    }
#endif
    T await_resume() const { return frame_.promise().take(); }

   private:
    std::coroutine_handle<promise_type> frame_;
  };

  /// Runs the task inline and yields its result (or rethrows its exception).
  /// Throws `usage_error` if the task is empty or was already awaited.
  awaiter operator co_await() const& noexcept { return awaiter{frame_}; }
  awaiter operator co_await() const&& noexcept { return awaiter{frame_}; }

 private:
  friend struct detail::task_access;
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}

  void reset() noexcept {
    if (frame_) std::exchange(frame_, {}).destroy();
  }

  std::coroutine_handle<promise_type> frame_;
};

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
  return task<T&>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise>::from_promise(*this)};
}

/// Lets the runtime take a task's frame out of it (to spawn it).
struct task_access {
  template <class T>
  static std::coroutine_handle<task_promise<T>> release(task<T>& t) noexcept {
    return std::exchange(t.frame_, {});
  }
};

template <class>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;

}  // namespace detail

/// Satisfied by `task<T>` for any T.
template <class T>
concept task_type = detail::is_task_v<std::remove_cvref_t<T>>;

}  // namespace warden
