// semaphore: construction, argument checks and the queued paths. State,
// queue and totals: include/warden/sync/semaphore.hpp.
#include <warden/errors.hpp>
#include <warden/sync/semaphore.hpp>

#include "waker_batch.hpp"

#include <string>

namespace warden {

namespace {

std::size_t checked_initial(std::size_t permits, std::size_t max_permits) {
  if (max_permits > semaphore::max_supported_permits)
    throw usage_error("warden::semaphore: max_permits " + std::to_string(max_permits) +
                      " exceeds semaphore::max_supported_permits (" + std::to_string(semaphore::max_supported_permits) +
                      ")");
  if (permits > max_permits)
    throw usage_error("warden::semaphore: " + std::to_string(permits) + " initial permits exceed max_permits " +
                      std::to_string(max_permits) + "; raise max_permits or start with fewer permits");
  return permits;
}

}  // namespace

semaphore::semaphore(std::size_t permits) : semaphore(permits, permits) {}

semaphore::semaphore(std::size_t permits, std::size_t max_permits)
    : state_(checked_initial(permits, max_permits) << kShift), max_permits_(max_permits), total_(permits) {}

void semaphore::check_request(std::size_t count, const char* what) const {
  if (count == 0) throw usage_error(std::string("warden::semaphore::") + what + "(0): ask for at least one permit");
  const std::size_t max = max_permits();
  if (count > max)
    throw usage_error(std::string("warden::semaphore::") + what + "(" + std::to_string(count) +
                      "): more permits than the semaphore can ever hold (max_permits() is " + std::to_string(max) +
                      "); add permits first with add_permits, or construct it with a larger max_permits");
}

semaphore::acquire_awaiter semaphore::acquire(std::size_t count) {
  check_request(count, "acquire");
  return acquire_awaiter(*this, count);
}

std::optional<semaphore_permit> semaphore::try_acquire(std::size_t count) {
  check_request(count, "try_acquire");
  if (!try_take_fast(count)) return std::nullopt;
  return semaphore_permit(*this, count);
}

void semaphore::add_permits(std::size_t count) {
  if (count == 0) return;
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    if (count > max_supported_permits - total_)
      throw usage_error("warden::semaphore::add_permits(" + std::to_string(count) + "): the total of " +
                        std::to_string(total_) + " permits would exceed semaphore::max_supported_permits");
    total_ += count;
    if (total_ > max_permits_.load(std::memory_order_relaxed))
      max_permits_.store(total_, std::memory_order_relaxed);  // relaxed: see "Totals"
    const std::size_t s = state_.load(std::memory_order_relaxed);
    if ((s & kWaiters) != 0)
      serve_locked((s >> kShift) + count, batch);
    else
      // kWaiters is only set under lock_, which we hold; lock-free takers
      // and givers may race, hence an RMW. release: as in give_back.
      state_.fetch_add(count << kShift, std::memory_order_release);
  }
  batch.wake_all();
}

void semaphore::give_back_slow(std::size_t count) noexcept {
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    const std::size_t s = state_.load(std::memory_order_relaxed);
    if ((s & kWaiters) != 0)
      serve_locked((s >> kShift) + count, batch);
    else
      state_.fetch_add(count << kShift, std::memory_order_release);  // the queue emptied meanwhile; see add_permits
  }
  batch.wake_all();
}

// Under lock_, with kWaiters set (so nothing lock-free writes state_):
// hands `free` permits to the queued requests in order while the head's
// request fits, then publishes what is left.
void semaphore::serve_locked(std::size_t free, detail::waker_batch& batch) noexcept {
  while (detail::wait_node* head = waiters_.front()) {
    if (head->amount > free) break;  // FIFO: the head blocks everyone behind it
    free -= head->amount;
    waiters_.pop_front();  // `notified`: the node owns head->amount permits
    --waiter_count_;
    batch.add_locked(std::move(head->wake));
  }
  // release: when this clears kWaiters, the next lock-free taker acquires
  // the permits (and their holders' writes) from this store.
  state_.store((free << kShift) | (waiters_.empty() ? 0 : kWaiters), std::memory_order_release);
}

void semaphore::forget_permits(std::size_t count) noexcept {
  std::lock_guard lock(lock_);
  total_ -= count;
}

std::size_t semaphore::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool semaphore::park(detail::wait_node& node, std::coroutine_handle<> awaiting) {
  detail::waker w = detail::suspend_current(awaiting);
  std::lock_guard lock(lock_);
  std::size_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & kWaiters) != 0) break;  // queue behind the others
    if ((s >> kShift) >= node.amount) {
      // Freed since await_ready and nobody queued: take them. acquire: as
      // in try_take_fast.
      if (state_.compare_exchange_weak(s, s - (node.amount << kShift), std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return false;
    } else if (state_.compare_exchange_weak(s, s | kWaiters, std::memory_order_relaxed, std::memory_order_relaxed)) {
      // relaxed: with kWaiters set, givers take lock_, which orders them
      // after this push. We are the head and the free count is below our
      // request: the queue invariant holds.
      break;
    }
  }
  node.wake = std::move(w);
  waiters_.push_back(&node);
  ++waiter_count_;
  return true;
}

void semaphore::leave(detail::wait_node& node) noexcept {
  detail::waker_batch batch;
  {
    std::lock_guard lock(lock_);
    const std::size_t s = state_.load(std::memory_order_relaxed);
    if (node.status == detail::wait_node::state::queued) {
      // Aborted while queued: consumes nothing. If it was the head, the
      // requests behind it may fit now (kWaiters is set: we were queued).
      waiters_.remove(&node);
      --waiter_count_;
      serve_locked(s >> kShift, batch);
    } else if (node.status == detail::wait_node::state::notified) {
      // Aborted after being handed its permits, before running: return them.
      if ((s & kWaiters) != 0)
        serve_locked((s >> kShift) + node.amount, batch);
      else
        state_.fetch_add(node.amount << kShift, std::memory_order_release);
    }
    node.status = detail::wait_node::state::idle;
  }
  batch.wake_all();
}

}  // namespace warden
