// warden/sync/semaphore.hpp — semaphore: an async, FIFO-fair counting
// semaphore with RAII permits.
//
// A semaphore holds permits. `co_await s.acquire(k)` parks the task until k
// permits are free and yields a `semaphore_permit` that gives them back when
// destroyed. Use it to bound concurrency (connections, memory, jobs).
//
//   warden::semaphore connections(8);
//   warden::task<void> fetch(url u) {
//     warden::semaphore_permit permit = co_await connections.acquire();
//     co_await download(u);               // at most 8 downloads at once
//   }                                     // the permit is returned here
//
// # Fairness
// Requests are served in the order they were made. A large request at the
// head of the queue blocks smaller later ones, even when enough permits for
// them are free (no barging, so a large request cannot starve); `acquire`
// and `try_acquire` from newcomers also wait/fail while anybody is queued.
// Returned permits go directly to the queued requests in order.
//
// # How many permits a semaphore "can ever hold"
// `max_permits()` starts at the constructor's `max_permits` (default: the
// initial count) and only grows: `add_permits` raises it whenever the total
// (free permits plus permits held by live `semaphore_permit`s) exceeds it.
// Forgetting permits lowers the total but never `max_permits()`. Asking for
// more than `max_permits()` (checked when `acquire`/`try_acquire` is called)
// could never succeed and throws usage_error; asking for up to
// `max_permits()` after permits were forgotten waits until they are added
// back with `add_permits`.
//
// # Errors
// `acquire(k)` / `try_acquire(k)` with k == 0 or k > max_permits(), a
// constructor with permits > max_permits, and counts above
// `semaphore::max_supported_permits` throw usage_error.
//
// # Cancellation
// A task aborted while parked in `acquire` is removed from the queue and
// consumes nothing (if it was at the head, the requests behind it are
// reconsidered at once). A task that was handed its permits but aborted
// before it ran returns them, and they go on to the next requests. A task
// aborted while holding a permit returns it when the permit is destroyed
// with its frame.
//
// # Lifetime
// The semaphore must outlive every permit and every parked task.
#pragma once

#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>

namespace warden {

namespace detail {
class waker_batch;
}

class semaphore;

/// Permits taken from a `warden::semaphore`; returns them on destruction.
/// Movable, not copyable; a moved-from permit holds nothing.
class [[nodiscard]] semaphore_permit {
 public:
  semaphore_permit() noexcept = default;  ///< holds nothing
  semaphore_permit(semaphore_permit&& other) noexcept
      : semaphore_(std::exchange(other.semaphore_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  semaphore_permit& operator=(semaphore_permit&& other) noexcept {
    if (this != &other) {
      release();
      semaphore_ = std::exchange(other.semaphore_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  semaphore_permit(const semaphore_permit&) = delete;
  semaphore_permit& operator=(const semaphore_permit&) = delete;
  ~semaphore_permit() { release(); }

  /// Returns the permits now (to the queued requests first). No-op if empty.
  void release() noexcept;

  /// Keeps the permits consumed: they are not returned, and the semaphore's
  /// total shrinks by `count()` (give them back with `add_permits`). The
  /// permit becomes empty.
  void forget() noexcept;

  /// How many permits this holds (0 when empty).
  [[nodiscard]] std::size_t count() const noexcept { return count_; }
  explicit operator bool() const noexcept { return count_ != 0; }
  /// The semaphore the permits came from (nullptr if empty).
  [[nodiscard]] warden::semaphore* semaphore() const noexcept { return semaphore_; }

 private:
  friend class warden::semaphore;
  semaphore_permit(warden::semaphore& s, std::size_t count) noexcept : semaphore_(&s), count_(count) {}
  warden::semaphore* semaphore_ = nullptr;
  std::size_t count_ = 0;
};

class semaphore {
 public:
  class acquire_awaiter;

  /// The largest count a semaphore accepts anywhere (initial, max, added).
  static constexpr std::size_t max_supported_permits = std::numeric_limits<std::size_t>::max() >> 3;

  /// `permits` free permits; max_permits() == permits. Throws usage_error
  /// above max_supported_permits.
  explicit semaphore(std::size_t permits);
  /// `permits` free permits, and requests of up to `max_permits` accepted
  /// (more may be added later with add_permits). Throws usage_error if
  /// permits > max_permits or max_permits > max_supported_permits.
  semaphore(std::size_t permits, std::size_t max_permits);
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  ~semaphore() = default;

  /// Awaitable yielding a `semaphore_permit` for `count` permits, once they
  /// are free and every earlier request has been served (FIFO). Throws
  /// usage_error here, at the call, if count == 0 or count > max_permits();
  /// parking outside a warden task throws usage_error.
  /// Cancellation: see the top of this header.
  [[nodiscard]] acquire_awaiter acquire(std::size_t count = 1);

  /// Takes `count` permits if they are free and nobody is queued; nullopt
  /// otherwise. Usable from any thread. Throws usage_error if count == 0 or
  /// count > max_permits().
  [[nodiscard]] std::optional<semaphore_permit> try_acquire(std::size_t count = 1);

  /// Adds `count` new permits (they go to the queued requests first), and
  /// raises max_permits() if the total now exceeds it. Also the way to give
  /// back permits that were `forget()`-ed. Throws usage_error if the total
  /// would exceed max_supported_permits.
  void add_permits(std::size_t count);

  /// Free permits right now. While requests are queued, these are reserved
  /// for the request at the head (which needs more than this).
  [[nodiscard]] std::size_t available_permits() const noexcept {
    return state_.load(std::memory_order_relaxed) >> kShift;
  }

  /// The largest request that can ever succeed (see the top of this header).
  [[nodiscard]] std::size_t max_permits() const noexcept { return max_permits_.load(std::memory_order_relaxed); }

  /// Tasks parked in `acquire` right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  friend class semaphore_permit;

  // state_ = free permits << kShift | kWaiters.
  static constexpr std::size_t kWaiters = 1;
  static constexpr unsigned kShift = 1;

  bool try_take_fast(std::size_t count) noexcept {
    std::size_t s = state_.load(std::memory_order_relaxed);
    while ((s & kWaiters) == 0 && (s >> kShift) >= count) {
      // acquire: pairs with the release of whoever returned these permits.
      if (state_.compare_exchange_weak(s, s - (count << kShift), std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    }
    return false;
  }
  void give_back(std::size_t count) noexcept {
    std::size_t s = state_.load(std::memory_order_relaxed);
    while ((s & kWaiters) == 0) {
      // release: publishes the holder's work to the next taker.
      if (state_.compare_exchange_weak(s, s + (count << kShift), std::memory_order_release, std::memory_order_relaxed))
        return;
    }
    give_back_slow(count);
  }
  void give_back_slow(std::size_t count) noexcept;
  void forget_permits(std::size_t count) noexcept;
  void check_request(std::size_t count, const char* what) const;
  void serve_locked(std::size_t free, detail::waker_batch& batch) noexcept;
  bool park(detail::wait_node& node, std::coroutine_handle<> awaiting);
  void leave(detail::wait_node& node) noexcept;

  // # State (state_)
  // free permits << 1 | kWaiters, where kWaiters means waiters_ is non-empty.
  // Lock-free transitions only happen while kWaiters is clear: taking
  // permits (try_take_fast) and returning them (give_back). Setting kWaiters
  // is a CAS under lock_ (it races those); while it is set nothing lock-free
  // writes the word, so under lock_ it is updated with plain stores.
  //
  // # Queue (under lock_)
  // waiters_ holds `queued` nodes, node.amount = permits requested; its
  // length is waiter_count_. Invariant after every critical section: if
  // waiters_ is non-empty, the free permits are fewer than the head's
  // request (serve_locked pops heads while they fit, deducting their
  // permits; a popped node is `notified` and owns node.amount permits).
  //
  // # Totals (under lock_)
  // total_ = free permits + permits held by live semaphore_permits + permits
  // owned by notified nodes; add_permits raises it, forget lowers it.
  // max_permits_ = max(constructor's max, every value total_ reached); it is
  // written under lock_ and read relaxed for the argument check, which
  // needs no ordering (a concurrent add_permits is unordered with the check
  // anyway).
  std::atomic<std::size_t> state_;
  std::atomic<std::size_t> max_permits_;
  mutable std::mutex lock_;
  detail::wait_list waiters_;
  std::size_t waiter_count_ = 0;
  std::size_t total_;
};

/// The awaitable returned by `semaphore::acquire`. Not copyable or movable.
class semaphore::acquire_awaiter {
 public:
  acquire_awaiter(semaphore& s, std::size_t count) noexcept : semaphore_(&s) { node_.amount = count; }
  acquire_awaiter(const acquire_awaiter&) = delete;
  acquire_awaiter& operator=(const acquire_awaiter&) = delete;
  /// On abort while parked: leaves the queue, or returns permits it was
  /// handed but never used.
  ~acquire_awaiter() {
    if (parked_) semaphore_->leave(node_);
  }

  [[nodiscard]] bool await_ready() noexcept { return semaphore_->try_take_fast(node_.amount); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    parked_ = semaphore_->park(node_, awaiting);
    return parked_;
  }
  // The permits were taken by the fast path or park(), or handed to us by
  // serve_locked (node popped under the lock, ordered before this resumption
  // by the wake): we own node_.amount permits now.
  [[nodiscard]] semaphore_permit await_resume() noexcept {
    parked_ = false;
    return semaphore_permit(*semaphore_, node_.amount);
  }

 private:
  semaphore* semaphore_;
  detail::wait_node node_;
  bool parked_ = false;  // only the awaiting task's thread touches it
};

inline void semaphore_permit::release() noexcept {
  if (count_ != 0) semaphore_->give_back(std::exchange(count_, 0));
  semaphore_ = nullptr;
}

inline void semaphore_permit::forget() noexcept {
  if (count_ != 0) semaphore_->forget_permits(std::exchange(count_, 0));
  semaphore_ = nullptr;
}

}  // namespace warden
