// mutex: the contended paths. State, hand-off and invariants:
// include/warden/sync/mutex.hpp.
#include <warden/sync/mutex.hpp>

namespace warden {

void mutex::unlock_slow() noexcept {
  detail::waker w;
  {
    std::lock_guard lock(lock_);
    w = hand_off_locked();
  }
  w.wake();
}

// Called by the owner (or on its behalf) under lock_.
detail::waker mutex::hand_off_locked() noexcept {
  detail::wait_node* next = waiters_.pop_front();
  if (next == nullptr) {
    // The waiters left since the owner saw kWaiters: the word is kLocked
    // and only the owner may change it. release: as in unlock().
    state_.store(0, std::memory_order_release);
    return {};
  }
  --waiter_count_;
  // The lock passes to `next` and stays locked. relaxed: the new owner is
  // ordered by lock_ and the wake, not by this word.
  if (waiters_.empty()) state_.store(kLocked, std::memory_order_relaxed);
  return std::move(next->wake);
}

std::size_t mutex::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool mutex::park(detail::wait_node& node, std::coroutine_handle<> awaiting) {
  detail::waker w = detail::suspend_current(awaiting);
  std::lock_guard lock(lock_);
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s == 0) {
      // Freed since await_ready and nobody queued: take it. acquire: as in
      // try_lock_fast.
      if (state_.compare_exchange_weak(s, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) return false;
    } else if ((s & kWaiters) != 0) {
      break;
    } else if (state_.compare_exchange_weak(s, kLocked | kWaiters, std::memory_order_relaxed,
                                            std::memory_order_relaxed)) {
      // relaxed: once kWaiters is in the word the owner's lock-free unlock
      // fails and it takes lock_, which orders it after this push.
      break;
    }
  }
  node.wake = std::move(w);
  waiters_.push_back(&node);
  ++waiter_count_;
  return true;
}

void mutex::leave(detail::wait_node& node) noexcept {
  detail::waker w;
  {
    std::lock_guard lock(lock_);
    if (node.status == detail::wait_node::state::queued) {
      // Aborted while queued: just leave; the owner keeps the lock.
      waiters_.remove(&node);
      --waiter_count_;
      if (waiters_.empty()) state_.store(kLocked, std::memory_order_relaxed);  // was kLocked|kWaiters
    } else if (node.status == detail::wait_node::state::notified) {
      // Aborted after being handed the lock, before running: we own it, so
      // hand it on (or unlock).
      w = hand_off_locked();
    }
    node.status = detail::wait_node::state::idle;
  }
  w.wake();
}

}  // namespace warden
