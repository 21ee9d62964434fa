// warden/sync/mutex.hpp — mutex: an async, FIFO-fair mutual exclusion lock.
//
// `co_await m.lock()` parks the task (never the thread) until it owns the
// lock, and yields a `mutex_guard` that unlocks when destroyed: the guard is
// the scoped lock. Use it to protect state that is touched across awaits.
//
//   warden::mutex m;
//   std::vector<int> shared;
//   warden::task<void> append(int v) {
//     warden::mutex_guard guard = co_await m.lock();
//     co_await flush_if_full(shared);       // still held across the await
//     shared.push_back(v);
//   }                                       // unlocked here
//
// # Fairness
// Waiters get the lock in the order they parked. On unlock with a waiter
// parked, the lock is handed directly to the first waiter: it stays locked
// in between, so neither the releasing task (locking again at once) nor a
// newcomer (`lock()` or `try_lock()`) can take it first.
//
// # Cost
// Uncontended lock and unlock are one compare-exchange each, with no lock,
// no allocation and no suspension. Only a contended lock parks.
//
// # Cancellation
// A task aborted while parked in `lock()` is removed from the queue and
// never owns the lock. A task that was handed the lock but aborted before it
// ran passes the lock on to the next waiter (or unlocks). A task aborted
// while holding a guard unlocks when the guard is destroyed with its frame.
//
// # Lifetime
// The mutex must outlive every guard and every parked task; destroying it
// while locked is undefined behaviour.
#pragma once

#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

namespace warden {

class mutex;

/// Ownership of a locked `warden::mutex`: unlocks on destruction (or on
/// `unlock()`). Movable, not copyable; a moved-from guard owns nothing.
class [[nodiscard]] mutex_guard {
 public:
  mutex_guard() noexcept = default;  ///< owns nothing
  mutex_guard(mutex_guard&& other) noexcept : mutex_(std::exchange(other.mutex_, nullptr)) {}
  mutex_guard& operator=(mutex_guard&& other) noexcept {
    if (this != &other) {
      unlock();
      mutex_ = std::exchange(other.mutex_, nullptr);
    }
    return *this;
  }
  mutex_guard(const mutex_guard&) = delete;
  mutex_guard& operator=(const mutex_guard&) = delete;
  ~mutex_guard() { unlock(); }

  /// Unlocks now (handing the lock to the first waiter, if any). A no-op if
  /// this guard owns nothing.
  void unlock() noexcept;

  [[nodiscard]] bool owns_lock() const noexcept { return mutex_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }
  /// The mutex this guard holds (nullptr if none).
  [[nodiscard]] warden::mutex* mutex() const noexcept { return mutex_; }

 private:
  friend class warden::mutex;
  explicit mutex_guard(warden::mutex& m) noexcept : mutex_(&m) {}
  warden::mutex* mutex_ = nullptr;
};

class mutex {
 public:
  class lock_awaiter;

  mutex() noexcept = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  ~mutex() = default;

  /// Awaitable yielding a `mutex_guard` once this task owns the lock: at once
  /// if the mutex is free and nobody waits, else after every earlier waiter
  /// (FIFO). Parking outside a warden task throws usage_error.
  /// Cancellation: see the top of this header.
  [[nodiscard]] lock_awaiter lock() noexcept;

  /// Takes the lock if it is free right now, without waiting. Fails (nullopt)
  /// while the lock is held or has been handed to a waiter that has not run
  /// yet. Usable from any thread.
  [[nodiscard]] std::optional<mutex_guard> try_lock() noexcept {
    if (!try_lock_fast()) return std::nullopt;
    return mutex_guard(*this);
  }

  /// Whether the lock is held (or handed to a waiter). A diagnostic.
  [[nodiscard]] bool is_locked() const noexcept { return state_.load(std::memory_order_relaxed) != 0; }

  /// Tasks parked in `lock()` right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  friend class mutex_guard;

  static constexpr std::uint32_t kLocked = 1;   // somebody owns the lock (or was handed it)
  static constexpr std::uint32_t kWaiters = 2;  // waiters_ is non-empty: unlock must take lock_

  bool try_lock_fast() noexcept {
    std::uint32_t expected = 0;
    // acquire: pairs with the release in unlock, so the critical section
    // sees the previous owner's writes.
    return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void unlock() noexcept {
    std::uint32_t expected = kLocked;
    // release: publishes the critical section to the next acquirer.
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) return;
    unlock_slow();
  }
  void unlock_slow() noexcept;
  detail::waker hand_off_locked() noexcept;
  bool park(detail::wait_node& node, std::coroutine_handle<> awaiting);
  void leave(detail::wait_node& node) noexcept;

  // # State (state_)
  //   0                  free
  //   kLocked            owned, nobody waits
  //   kLocked|kWaiters   owned (or being handed over), waiters_ non-empty
  // Lock-free transitions are 0 -> kLocked (try_lock_fast) and kLocked -> 0
  // (unlock); everything involving kWaiters happens under lock_, and nothing
  // lock-free ever changes a word with kWaiters set, so under lock_ such a
  // word may be overwritten with a plain store.
  //
  // # Hand-off
  // Unlock with kWaiters set pops the first node under lock_ (it becomes
  // `notified`: it owns the lock) and leaves kLocked set, so nobody barges.
  // The new owner's critical section is ordered after the old one by lock_
  // and by the wake. A handed node whose task is aborted before running
  // hands the lock on in its awaiter's destructor.
  //
  // # Lists
  // Every node in waiters_ is `queued` and belongs to a parked lock_awaiter;
  // waiter_count_ is its length. Both under lock_.
  std::atomic<std::uint32_t> state_{0};
  mutable std::mutex lock_;
  detail::wait_list waiters_;
  std::size_t waiter_count_ = 0;
};

/// The awaitable returned by `mutex::lock()`. Not copyable or movable.
class mutex::lock_awaiter {
 public:
  explicit lock_awaiter(mutex& m) noexcept : mutex_(&m) {}
  lock_awaiter(const lock_awaiter&) = delete;
  lock_awaiter& operator=(const lock_awaiter&) = delete;
  /// On abort while parked: leaves the queue, or passes on a lock it was
  /// handed but never used.
  ~lock_awaiter() {
    if (parked_) mutex_->leave(node_);
  }

  [[nodiscard]] bool await_ready() noexcept { return mutex_->try_lock_fast(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = mutex_->park(node_, awaiting);
    return parked_;
  }
  // Either the fast path took the lock, park() took it without parking, or
  // an unlock handed it to us (node popped under the lock, ordered before
  // this resumption by the wake): in every case we own it now.
  [[nodiscard]] mutex_guard await_resume() noexcept {
    parked_ = false;
    return mutex_guard(*mutex_);
  }

 private:
  mutex* mutex_;
  detail::wait_node node_;
  bool parked_ = false;  // only the awaiting task's thread touches it
};

inline mutex::lock_awaiter mutex::lock() noexcept { return lock_awaiter{*this}; }

inline void mutex_guard::unlock() noexcept {
  if (mutex_ != nullptr) std::exchange(mutex_, nullptr)->unlock();
}

}  // namespace warden
