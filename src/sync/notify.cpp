// notify: the locked paths. State and invariants: include/warden/sync/notify.hpp.
#include <warden/sync/notify.hpp>

#include "waker_batch.hpp"

namespace warden {

void notify::notify_one() noexcept {
  // Fast path: no waiter, store (or re-store) the permit without the lock.
  std::uint8_t s = state_.load(std::memory_order_relaxed);
  while (s != kWaiting) {
    // release: pairs with the waiter's acquire in try_take_permit. Also when
    // the permit is already stored: the RMW continues the release sequence,
    // so whoever takes the permit sees this notifier's writes too.
    if (state_.compare_exchange_weak(s, kNotified, std::memory_order_release, std::memory_order_relaxed)) return;
  }
  detail::waker w;
  {
    std::lock_guard lock(lock_);
    w = hand_one_locked();
  }
  w.wake();
}

detail::waker notify::hand_one_locked() noexcept {
  if (auto* node = static_cast<waiter_node*>(waiters_.pop_front())) {
    --waiter_count_;
    node->how = handed::notify_one;
    // relaxed: kWaiting -> kEmpty publishes nothing (the woken task is
    // ordered by the lock and its wake); no lock-free writer touches kWaiting.
    if (waiters_.empty()) state_.store(kEmpty, std::memory_order_relaxed);
    return std::move(node->wake);
  }
  // Nobody parked (the last waiter left since the caller looked): store the
  // permit. Lock-free notify_one / permit takers may race: CAS.
  std::uint8_t s = state_.load(std::memory_order_relaxed);
  while (!state_.compare_exchange_weak(s, kNotified, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return {};
}

void notify::notify_all() noexcept {
  // Nobody parked now: nothing to do, and no permit is stored. A task
  // parking concurrently parks after this call (it is not "parked now").
  // acquire: a task that parked before something that happened-before this
  // call is seen as kWaiting.
  if (state_.load(std::memory_order_acquire) != kWaiting) return;
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    // The waiters may have left meanwhile, and a permit may have been stored
    // since: then there is nothing to wake and the permit must stay.
    if (waiters_.empty()) return;
    // One pass under the lock: exactly the tasks parked now, each once.
    while (auto* node = static_cast<waiter_node*>(waiters_.pop_front())) {
      --waiter_count_;
      node->how = handed::notify_all;
      batch.add_locked(std::move(node->wake));
    }
    // Was kWaiting (the list was non-empty), which no lock-free writer touches.
    state_.store(kEmpty, std::memory_order_relaxed);
  }
  batch.wake_all();
}

std::size_t notify::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool notify::park(waiter_node& node, std::coroutine_handle<> awaiting) {
  detail::waker w = detail::suspend_current(awaiting);
  std::lock_guard lock(lock_);
  std::uint8_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s == kNotified) {
      // A permit arrived since await_ready: take it and do not park.
      // acquire: as in try_take_permit.
      if (state_.compare_exchange_weak(s, kEmpty, std::memory_order_acquire, std::memory_order_relaxed)) return false;
    } else if (s == kEmpty) {
      // relaxed: kWaiting only redirects notifiers to the lock, which orders
      // them after this push.
      if (state_.compare_exchange_weak(s, kWaiting, std::memory_order_relaxed, std::memory_order_relaxed)) break;
    } else {
      break;  // kWaiting: only changed under the lock we hold
    }
  }
  node.wake = std::move(w);
  node.how = handed::nothing;
  waiters_.push_back(&node);
  ++waiter_count_;
  return true;
}

void notify::leave(waiter_node& node) noexcept {
  detail::waker w;
  {
    std::lock_guard lock(lock_);
    if (node.status == detail::wait_node::state::queued) {
      // Aborted while parked: consumes nothing.
      waiters_.remove(&node);
      --waiter_count_;
      if (waiters_.empty()) state_.store(kEmpty, std::memory_order_relaxed);  // was kWaiting; see hand_one_locked
    } else if (node.status == detail::wait_node::state::notified && node.how == handed::notify_one) {
      // Aborted after notify_one chose us, before we ran: pass it on.
      w = hand_one_locked();
    }
    node.status = detail::wait_node::state::idle;
  }
  w.wake();
}

}  // namespace warden
