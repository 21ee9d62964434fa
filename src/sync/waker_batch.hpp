// Internal: a fixed-size batch of wakers taken out of a wait list under a
// primitive's lock and woken after the lock is released.
//
// Why a batch: a primitive that wakes many waiters at once (event::set,
// notify::notify_all, a latch reaching zero, a large semaphore release) pops
// them all in ONE pass under its lock, so the set of waiters woken is exactly
// the set parked at that moment. Their wakers must leave the nodes before the
// lock is released (an aborted waiter's frame may vanish right after), and
// nothing may allocate on this path. The first kCapacity wakers wait in the
// batch and are woken after the unlock; if more are popped in the same pass,
// the full batch is woken while the lock is still held (`add_locked`).
//
// Waking under a primitive's lock is safe: `waker::wake` only schedules the
// task (a queue push and maybe a futex wake); it never runs the task inline
// and never takes a primitive's lock, and the reference it drops is never a
// task's last one while the task is parked (the runtime holds one until the
// task completes). It only makes the critical section longer, so it is kept
// for the rare case of more than kCapacity waiters woken at once.
#pragma once

#include <warden/detail/task_header.hpp>

#include <array>
#include <cstddef>
#include <utility>

namespace warden::detail {

class waker_batch {
 public:
  static constexpr std::size_t kCapacity = 32;

  waker_batch() noexcept = default;
  waker_batch(const waker_batch&) = delete;
  waker_batch& operator=(const waker_batch&) = delete;
  ~waker_batch() { wake_all(); }

  /// Adds `w`; if the batch is full, first wakes its contents (the caller
  /// holds its primitive's lock; see the top of this file).
  void add_locked(waker&& w) noexcept {
    if (!w) return;
    if (size_ == kCapacity) wake_all();
    wakers_[size_++] = std::move(w);
  }

  /// Wakes and releases every waker in the batch.
  void wake_all() noexcept {
    for (std::size_t i = 0; i < size_; ++i) wakers_[i].wake();
    size_ = 0;
  }

 private:
  std::array<waker, kCapacity> wakers_{};
  std::size_t size_ = 0;
};

}  // namespace warden::detail
