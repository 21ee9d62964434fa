// warden/sync/latch.hpp — latch: a single-use countdown that tasks wait on.
//
// A latch starts at a count; `count_down(k)` lowers it; when it reaches zero
// the latch is ready for good: every task parked in `wait()` is woken, once,
// and every later `wait()` completes at once.
//
//   warden::latch loaded(3);
//   for (auto& shard : shards)
//     warden::spawn([&]() -> warden::task<void> {
//       co_await shard.load();
//       loaded.count_down();
//     });
//   co_await loaded.wait();                // all three shards are loaded
//
// `count_down` and `is_ready` may be called from any thread, inside or
// outside tasks; `wait()` must be awaited inside a warden task.
//
// # Errors
// * A negative initial count throws usage_error. A count of 0 gives a latch
//   that is ready from the start.
// * `count_down(k)` with k < 0, or with k larger than what remains (counting
//   below zero, including any count_down(k > 0) on a ready latch), throws
//   usage_error and leaves the count unchanged. `count_down(0)` does nothing.
//
// # Cancellation
// A task aborted while parked in `wait()` is removed from the latch; the
// count is not affected.
//
// # Lifetime
// The latch must outlive every task parked on it.
#pragma once

#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <mutex>

namespace warden {

class latch {
 public:
  class wait_awaiter;

  /// A latch that becomes ready after `count` count-downs (at once if 0).
  /// Throws usage_error if `count` is negative.
  explicit latch(std::ptrdiff_t count);
  latch(const latch&) = delete;
  latch& operator=(const latch&) = delete;
  ~latch() = default;

  /// Lowers the count by `k`; at zero, wakes every parked task. Throws
  /// usage_error (count unchanged) if `k` is negative or larger than the
  /// remaining count.
  void count_down(std::ptrdiff_t k = 1);

  /// Whether the count reached zero. Seeing `true` also makes visible
  /// everything every counter did before its count_down.
  [[nodiscard]] bool is_ready() const noexcept {
    // acquire: pairs with the acq_rel RMWs in count_down.
    return count_.load(std::memory_order_acquire) == 0;
  }

  /// The count still to go (0 once ready; a diagnostic, may be stale).
  [[nodiscard]] std::ptrdiff_t remaining() const noexcept { return count_.load(std::memory_order_relaxed); }

  /// Awaitable: completes at once if the latch is ready, else parks the task
  /// until the count reaches zero. Awaiting it outside a warden task throws
  /// usage_error.
  [[nodiscard]] wait_awaiter wait() noexcept;

  /// Tasks parked in `wait()` right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  bool park(detail::wait_node& node, std::coroutine_handle<> awaiting);
  void leave(detail::wait_node& node) noexcept;
  void open() noexcept;

  // Invariants: count_ only decreases, never below zero (count_down checks
  // before its CAS). Every node in waiters_ is `queued`; once count_ is 0
  // and the counter that brought it there has taken lock_ (open()), the list
  // is empty for good (park() re-checks count_ under lock_). waiter_count_
  // is the length of waiters_ (under lock_).
  std::atomic<std::ptrdiff_t> count_;
  mutable std::mutex lock_;
  detail::wait_list waiters_;
  std::size_t waiter_count_ = 0;
};

/// The awaitable returned by `latch::wait()`. Not copyable or movable.
class latch::wait_awaiter {
 public:
  explicit wait_awaiter(latch& l) noexcept : latch_(&l) {}
  wait_awaiter(const wait_awaiter&) = delete;
  wait_awaiter& operator=(const wait_awaiter&) = delete;
  /// On abort while parked: removes the task from the latch.
  ~wait_awaiter() {
    if (parked_) latch_->leave(node_);
  }

  [[nodiscard]] bool await_ready() const noexcept { return latch_->is_ready(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = latch_->park(node_, awaiting);
    return parked_;
  }
  // Resumed by the opening count_down: the node was popped under the lock
  // and the wake orders that before this resumption.
  void await_resume() noexcept { parked_ = false; }

 private:
  latch* latch_;
  detail::wait_node node_;
  bool parked_ = false;  // only the awaiting task's thread touches it
};

inline latch::wait_awaiter latch::wait() noexcept { return wait_awaiter{*this}; }

}  // namespace warden
