// warden/sync/event.hpp — event: a manual-reset flag that tasks can wait for.
//
// An event is either set or not. `co_await ev.wait()` completes at once when
// the event is set and otherwise parks the task until `set()`. `set()` wakes
// every task parked at that moment, exactly once, and the event stays set
// (later waits complete at once) until `reset()`.
//
//   warden::event ready;
//   warden::spawn([&]() -> warden::task<void> {
//     co_await ready.wait();               // parks until ready.set()
//     serve();
//   });
//   load_configuration();
//   ready.set();                           // wakes every waiter; stays set
//
// `set()`, `reset()` and `is_set()` may be called from any thread, inside or
// outside tasks; `wait()` must be awaited inside a warden task.
//
// # Cancellation
// A task aborted while parked in `wait()` leaves the event; nothing else
// changes (there is nothing to hand on: a set wakes everyone). Its entry (a
// reference to its finished task) stays in the event until the next set(),
// until aborted tasks outnumber the parked ones, or until the event is
// destroyed, whichever comes first; it never counts in waiter_count().
//
// # Memory
// A parked task costs its header (56 bytes) and its frame; the awaiter adds
// 9 bytes to the frame and the event nothing per waiter.
//
// # Lifetime
// The event must outlive every task parked on it (destroying an event with
// parked waiters is undefined behaviour).
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace warden {

class event {
 public:
  class wait_awaiter;

  /// An event that starts cleared, or set when `initially_set`.
  explicit event(bool initially_set = false) noexcept : set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  /// Drops what tasks aborted while parked left behind. (Destroying an
  /// event while tasks are parked on it is undefined behaviour.)
  ~event();

  /// Sets the event and wakes every task parked in `wait()` at this moment,
  /// each exactly once. A no-op when the event is already set.
  void set() noexcept;

  /// Clears the event: later `wait()`s park until the next `set()`. Tasks
  /// already woken by an earlier `set()` still complete. A no-op when clear.
  void reset() noexcept;

  /// Whether the event is set. Seeing `true` also makes visible everything
  /// the setter did before `set()`.
  [[nodiscard]] bool is_set() const noexcept {
    // acquire: pairs with the release store in set(), so a waiter that reads
    // `true` sees what the setter wrote before setting.
    return set_.load(std::memory_order_acquire);
  }

  /// Awaitable: completes at once if the event is set, else parks the task
  /// until the next `set()`. Awaiting it outside a warden task throws
  /// usage_error. Cancellation: see the top of this header.
  [[nodiscard]] wait_awaiter wait() noexcept;

  /// Tasks parked in `wait()` right now (a diagnostic; it may be stale by the
  /// time it is read).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  bool park(std::coroutine_handle<> awaiting);
  void leave() noexcept;
  /// Unlinks the entries of tasks that left (see below) and returns them,
  /// chained through park_link, for the caller to release after the lock.
  detail::task_header* unlink_left() noexcept;
  static void release_chain(detail::task_header* chain) noexcept;

  // The FIFO of parked tasks is threaded through their headers
  // (task_header::park_link): head_ .. tail_. Each entry holds a reference
  // to its task (the one waker of that suspension; see waker::for_parked).
  // A task aborted while parked does not unlink itself (the list is singly
  // linked, and its header outlives its frame): it marks its entry "left"
  // (kLeft), and the entry is dropped by the next set(), by a compaction
  // (unlink_left, once left entries outnumber the parked ones) or by the
  // destructor. Invariants (under lock_): an entry is `queued` (kQueued)
  // exactly while it is in the FIFO; waiter_count_ counts the entries that
  // are not left, left_count_ the others; the FIFO has no entry that is not
  // left whenever set_ has been true since the last lock release (set()
  // takes everyone in the same critical section, and park() re-checks set_
  // under the lock). set_ is written only under lock_; read lock-free by
  // is_set() and the awaiter's fast path.
  mutable std::mutex lock_;
  std::atomic<bool> set_;
  detail::task_header* head_ = nullptr;
  detail::task_header* tail_ = nullptr;
  std::size_t waiter_count_ = 0;
  std::size_t left_count_ = 0;
};

/// The awaiter of `event::wait()`: the event's address and whether the task
/// is parked, nothing else (the FIFO lives in the task headers).
///
/// Byte-aligned on purpose, and 9 bytes: GCC 12 lays a coroutine frame out
/// as resume and destroy pointers, promise, self handle, parameters, resume
/// index and flags, initial awaiter, then the body's awaiters, then the
/// final awaiter (one byte) last. An awaiter aligned to 8 would start at the
/// next multiple of 8 and push the final awaiter's byte into another 8.
/// Byte-aligned, a task like `co_await ev.wait(); use(a, b);` with two
/// reference parameters has a 64-byte frame, which the frame allocator
/// keeps in a 64-byte block (frame_allocator.hpp). The event pointer is
/// copied in and out with memcpy (unaligned loads and stores, as cheap as
/// aligned ones on x86-64).
class event::wait_awaiter {
 public:
  explicit wait_awaiter(event& e) noexcept {
    event* p = &e;
    std::memcpy(event_, &p, sizeof(p));
  }
  wait_awaiter(const wait_awaiter&) = delete;
  wait_awaiter& operator=(const wait_awaiter&) = delete;
  /// Runs on normal resumption and when the parked task is aborted: in the
  /// latter case it marks the task's entry in the event as left.
  ~wait_awaiter() {
    if (parked_) target()->leave();
  }

  [[nodiscard]] bool await_ready() const noexcept { return target()->is_set(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = target()->park(awaiting);
    return parked_;
  }
  // Resumed by set(): the entry was taken out of the FIFO under the event's
  // lock, and the wake orders that before this resumption, so there is
  // nothing to leave.
  void await_resume() noexcept { parked_ = false; }

 private:
  [[nodiscard]] event* target() const noexcept {
    event* p;
    std::memcpy(&p, event_, sizeof(p));
    return p;
  }

  unsigned char event_[sizeof(event*)];
  bool parked_ = false;  // only the awaiting task's thread touches it
};
static_assert(sizeof(void*) != 8 || (sizeof(event::wait_awaiter) == 9 && alignof(event::wait_awaiter) == 1),
              "the event's awaiter is meant to be byte-aligned and 9 bytes (see its comment)");

inline event::wait_awaiter event::wait() noexcept { return wait_awaiter{*this}; }

}  // namespace warden
