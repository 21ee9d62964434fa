// warden/sync/notify.hpp — notify: wakes parked tasks, with one stored permit
// (tokio's Notify).
//
// A task parks in `co_await n.notified()`; another side calls
// `notify_one()` (wake one task) or `notify_all()` (wake every task parked
// right now). Unlike an event, a notification is consumed: it says
// "something changed, look again", and is typically paired with a state the
// woken task re-checks.
//
//   warden::notify changed;
//   std::atomic<bool> stop{false};
//   // consumer
//   while (!stop.load()) {
//     drain_queue();
//     co_await changed.notified();          // park until the next notify
//   }
//   // producer
//   push_to_queue(item);
//   changed.notify_one();
//
// # Permits
// `notify_one()` with no task parked stores ONE permit (at most one: further
// calls while a permit is stored change nothing), and the next `notified()`
// completes at once, consuming it. So a notification sent between the
// consumer's check and its `co_await` is never lost. `notify_all()` wakes only
// the tasks parked when it is called; it stores no permit and leaves a stored
// permit in place.
//
// Waiters are woken in FIFO order (the task parked longest goes first).
// `notify_one` / `notify_all` may be called from any thread, inside or
// outside tasks; `notified()` must be awaited inside a warden task.
//
// # Cancellation
// A task aborted while parked is removed and consumes nothing. A task that
// was handed a notification by `notify_one()` but aborted before it ran
// passes the notification on: to the next parked task, or, if none, back as
// the stored permit. A task woken by `notify_all()` and aborted passes
// nothing on (notify_all wakes the tasks of the moment, nobody later).
//
// # Lifetime
// The notify must outlive every task parked on it.
#pragma once

#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace warden {

class notify {
 public:
  class notified_awaiter;

  notify() noexcept = default;
  notify(const notify&) = delete;
  notify& operator=(const notify&) = delete;
  ~notify() = default;

  /// Wakes the task parked longest in `notified()`, or, when none is parked,
  /// stores the permit (at most one). Never blocks on a parked task.
  void notify_one() noexcept;

  /// Wakes every task parked in `notified()` at this moment, each once.
  /// Stores no permit; a task that parks afterwards waits for the next
  /// notification.
  void notify_all() noexcept;

  /// Awaitable: completes at once, consuming the stored permit, if there is
  /// one; else parks the task until a notify_one / notify_all wakes it.
  /// Awaiting it outside a warden task throws usage_error. Cancellation: see
  /// the top of this header.
  [[nodiscard]] notified_awaiter notified() noexcept;

  /// Tasks parked in `notified()` right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  // How a node left the list: what an aborted waiter must hand on.
  enum class handed : std::uint8_t { nothing, notify_one, notify_all };
  struct waiter_node : detail::wait_node {
    handed how = handed::nothing;
  };

  // state_ values.
  static constexpr std::uint8_t kEmpty = 0;     // no permit, no waiter
  static constexpr std::uint8_t kNotified = 1;  // the permit is stored (so no waiter)
  static constexpr std::uint8_t kWaiting = 2;   // waiters_ is not empty (so no permit)

  /// Consumes the stored permit if there is one (lock-free).
  bool try_take_permit() noexcept {
    std::uint8_t expected = kNotified;
    // acquire: pairs with the release RMW of the notify_one that stored the
    // permit, so the woken task sees what the notifier wrote before it.
    return state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire, std::memory_order_relaxed);
  }
  bool park(waiter_node& node, std::coroutine_handle<> awaiting);
  void leave(waiter_node& node) noexcept;
  detail::waker hand_one_locked() noexcept;

  // Invariants:
  // * state_ is kWaiting exactly when waiters_ is non-empty. Transitions to
  //   and from kWaiting happen only under lock_; kEmpty <-> kNotified also
  //   happen lock-free (notify_one storing the permit, a waiter taking it),
  //   so every write under the lock that may race them is a CAS.
  // * Every node in waiters_ is `queued` and belongs to a parked awaiter; a
  //   popped node is `notified`, its `how` says by whom, its waker was moved
  //   out under the lock, and the popper never touches it again.
  // * waiter_count_ is the length of waiters_ (under lock_).
  mutable std::mutex lock_;
  std::atomic<std::uint8_t> state_{kEmpty};
  detail::wait_list waiters_;
  std::size_t waiter_count_ = 0;
};

/// The awaitable returned by `notify::notified()`. Not copyable or movable.
class notify::notified_awaiter {
 public:
  explicit notified_awaiter(notify& n) noexcept : notify_(&n) {}
  notified_awaiter(const notified_awaiter&) = delete;
  notified_awaiter& operator=(const notified_awaiter&) = delete;
  /// On abort while parked: leaves the list, or hands on a notify_one
  /// notification it was given but never consumed.
  ~notified_awaiter() {
    if (parked_) notify_->leave(node_);
  }

  [[nodiscard]] bool await_ready() noexcept { return notify_->try_take_permit(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = notify_->park(node_, awaiting);
    return parked_;
  }
  // Resumed by a notify: the node was popped and its waker taken under the
  // lock, ordered before this resumption by the wake; the notification is
  // consumed here.
  void await_resume() noexcept { parked_ = false; }

 private:
  notify* notify_;
  waiter_node node_;
  bool parked_ = false;  // only the awaiting task's thread touches it
};

inline notify::notified_awaiter notify::notified() noexcept { return notified_awaiter{*this}; }

}  // namespace warden
