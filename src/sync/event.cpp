// event: slow paths. The invariants are listed in include/warden/sync/event.hpp.
#include <warden/sync/event.hpp>

#include "waker_batch.hpp"

namespace warden {

void event::set() noexcept {
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    if (set_.load(std::memory_order_relaxed)) return;  // under lock_: the last writer is visible
    // release: pairs with the acquire load in is_set().
    set_.store(true, std::memory_order_release);
    // One pass under the lock: exactly the tasks parked now, each once.
    while (detail::bare_wait_node* node = waiters_.pop_front()) {
      --waiter_count_;
      batch.add_locked(std::move(node->wake));
    }
  }
  batch.wake_all();
}

void event::reset() noexcept {
  std::lock_guard lock(lock_);
  // relaxed: clearing publishes nothing; park() reads set_ under lock_.
  set_.store(false, std::memory_order_relaxed);
}

std::size_t event::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool event::park(detail::bare_wait_node& node, std::coroutine_handle<> awaiting) {
  detail::waker w = detail::suspend_current(awaiting);
  std::lock_guard lock(lock_);
  // acquire (via the lock and the load): if set, the caller continues at
  // once and must see what the setter wrote.
  if (set_.load(std::memory_order_acquire)) return false;
  node.wake = std::move(w);
  waiters_.push_back(&node);
  ++waiter_count_;
  return true;
}

void event::leave(detail::bare_wait_node& node) noexcept {
  std::lock_guard lock(lock_);
  if (node.status == detail::bare_wait_node::state::queued) {
    waiters_.remove(&node);
    --waiter_count_;
  }
  // notified: set() already woke us; an event hands nothing on.
  node.status = detail::bare_wait_node::state::idle;
}

}  // namespace warden
