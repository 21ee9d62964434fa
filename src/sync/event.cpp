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
    // One pass under the lock: exactly the tasks parked now, each once. Each
    // node's reference goes to its waker; the generation is read now, while
    // the task is still in the suspension the node is for (waker::for_parked).
    while (detail::event_wait_node* node = pop_front()) {
      --waiter_count_;
      batch.add_locked(detail::waker::for_parked(node->task()));
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

bool event::park(detail::event_wait_node& node, std::coroutine_handle<> awaiting) {
  detail::task_header* task = detail::suspend_current_task(awaiting);  // a reference, ours
  {
    std::lock_guard lock(lock_);
    // acquire (via the lock and the load): if set, the caller continues at
    // once and must see what the setter wrote.
    if (!set_.load(std::memory_order_acquire)) {
      node.set_task(task);  // the node keeps the reference
      push_back(&node);
      ++waiter_count_;
      return true;
    }
  }
  detail::release(task);  // not parked: nobody will wake this suspension
  return false;
}

void event::leave(detail::event_wait_node& node) noexcept {
  detail::task_header* task = nullptr;
  {
    std::lock_guard lock(lock_);
    if (node.status == detail::event_wait_node::state::queued) {
      remove(&node);
      --waiter_count_;
      task = node.task();  // the node's reference, now ours to drop
    }
    // notified: set() already took the reference to wake us; an event hands
    // nothing on.
    node.status = detail::event_wait_node::state::idle;
  }
  // Never the last reference: the task is being destroyed by its poller,
  // which still holds the lifecycle one.
  if (task != nullptr) detail::release(task);
}

void event::push_back(detail::event_wait_node* node) noexcept {
  node->set_prev(tail_);
  node->set_next(nullptr);
  if (tail_ != nullptr)
    tail_->set_next(node);
  else
    head_ = node;
  tail_ = node;
  node->status = detail::event_wait_node::state::queued;
}

void event::remove(detail::event_wait_node* node) noexcept {
  detail::event_wait_node* prev = node->prev();
  detail::event_wait_node* next = node->next();
  if (prev != nullptr)
    prev->set_next(next);
  else
    head_ = next;
  if (next != nullptr)
    next->set_prev(prev);
  else
    tail_ = prev;
  node->status = detail::event_wait_node::state::idle;
}

detail::event_wait_node* event::pop_front() noexcept {
  detail::event_wait_node* node = head_;
  if (node != nullptr) {
    remove(node);
    node->status = detail::event_wait_node::state::notified;
  }
  return node;
}

}  // namespace warden
