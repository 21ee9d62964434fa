// latch: counting and the locked paths. Invariants: include/warden/sync/latch.hpp.
#include <warden/errors.hpp>
#include <warden/sync/latch.hpp>

#include "waker_batch.hpp"

#include <string>

namespace warden {

namespace {

std::ptrdiff_t checked_initial_count(std::ptrdiff_t count) {
  if (count < 0)
    throw usage_error("warden::latch: the initial count is negative (" + std::to_string(count) +
                      "); use 0 for a latch that is ready at once");
  return count;
}

}  // namespace

latch::latch(std::ptrdiff_t count) : count_(checked_initial_count(count)) {}

void latch::count_down(std::ptrdiff_t k) {
  if (k < 0)
    throw usage_error("warden::latch::count_down: the decrement is negative (" + std::to_string(k) +
                      "); a latch only counts down");
  if (k == 0) return;
  std::ptrdiff_t current = count_.load(std::memory_order_relaxed);
  do {
    if (k > current)
      throw usage_error("warden::latch::count_down(" + std::to_string(k) +
                        ") would count below zero: the remaining count is " + std::to_string(current) +
                        (current == 0 ? " (the latch is already ready)" : ""));
    // acq_rel: release so that waiters (acquire in is_ready / park) see this
    // counter's writes; acquire so that the counter reaching zero carries
    // every earlier counter's writes on to the waiters it wakes.
  } while (!count_.compare_exchange_weak(current, current - k, std::memory_order_acq_rel, std::memory_order_relaxed));
  if (current == k) open();
}

void latch::open() noexcept {
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    while (detail::wait_node* node = waiters_.pop_front()) {
      --waiter_count_;
      batch.add_locked(std::move(node->wake));
    }
  }
  batch.wake_all();
}

std::size_t latch::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool latch::park(detail::wait_node& node, std::coroutine_handle<> awaiting) {
  detail::waker w = detail::suspend_current(awaiting);
  std::lock_guard lock(lock_);
  // Either this load sees 0 (and the task continues), or the counter that
  // brings the count to zero takes lock_ after us and sees the node.
  if (is_ready()) return false;
  node.wake = std::move(w);
  waiters_.push_back(&node);
  ++waiter_count_;
  return true;
}

void latch::leave(detail::wait_node& node) noexcept {
  std::lock_guard lock(lock_);
  if (node.status == detail::wait_node::state::queued) {
    waiters_.remove(&node);
    --waiter_count_;
  }
  node.status = detail::wait_node::state::idle;  // notified: the latch hands nothing on
}

}  // namespace warden
