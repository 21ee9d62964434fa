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
// A task aborted while parked in `wait()` is removed from the event; nothing
// else changes (there is nothing to hand on: a set wakes everyone).
//
// # Lifetime
// The event must outlive every task parked on it (destroying an event with
// parked waiters is undefined behaviour).
#pragma once

#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <mutex>

namespace warden {

class event {
 public:
  class wait_awaiter;

  /// An event that starts cleared, or set when `initially_set`.
  explicit event(bool initially_set = false) noexcept : set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  ~event() = default;

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
  bool park(detail::bare_wait_node& node, std::coroutine_handle<> awaiting);
  void leave(detail::bare_wait_node& node) noexcept;

  // Invariants (under lock_): every node in waiters_ is `queued` and belongs
  // to a parked wait_awaiter; waiters_ is empty whenever set_ has been true
  // since the last lock release (set() pops everyone in the same critical
  // section, and park() re-checks set_ under the lock). waiter_count_ is the
  // length of waiters_. set_ is written only under lock_; read lock-free by
  // is_set() and the awaiter's fast path.
  mutable std::mutex lock_;
  std::atomic<bool> set_;
  detail::basic_wait_list<detail::bare_wait_node> waiters_;
  std::size_t waiter_count_ = 0;
};

/// The awaitable returned by `event::wait()`. Not copyable or movable: it
/// lives in the awaiting frame while parked.
class event::wait_awaiter {
 public:
  explicit wait_awaiter(event& e) noexcept : event_(&e) {}
  wait_awaiter(const wait_awaiter&) = delete;
  wait_awaiter& operator=(const wait_awaiter&) = delete;
  /// Runs on normal resumption and when the parked task is aborted: in the
  /// latter case it removes the task from the event.
  ~wait_awaiter() {
    if (node_.parked) event_->leave(node_);
  }

  [[nodiscard]] bool await_ready() const noexcept { return event_->is_set(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    node_.parked = event_->park(node_, awaiting);
    return node_.parked;
  }
  // Resumed by set(): the node was popped and its waker taken under the
  // event's lock, and the wake orders that before this resumption, so the
  // awaiter owns the node again and need not leave.
  void await_resume() noexcept { node_.parked = false; }

 private:
  event* event_;
  detail::bare_wait_node node_;  // node_.parked: only the awaiting task's thread touches it
};

inline event::wait_awaiter event::wait() noexcept { return wait_awaiter{*this}; }

}  // namespace warden
