// Internal: a one-token parking primitive for threads (futex-based).
//
// States: EMPTY, PARKED (the owner sleeps), NOTIFIED (a token is waiting).
// Only the owning thread parks; any thread unparks. An unpark before a park
// is not lost: it leaves the token, and the next park consumes it and
// returns at once. Spurious returns do not happen, but callers still loop on
// their own condition because a stale token may be left from an earlier use.
//
// Memory order: unpark's exchange is a release and park's consuming
// exchange an acquire, so whatever the unparker wrote before unparking is
// visible to the parked thread when it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace warden::detail {

class parker {
 public:
  /// Sleeps until unparked (or returns at once if a token is waiting).
  void park() noexcept;
  /// As park(), but gives up at `deadline`. True if a token was consumed.
  bool park_until(std::chrono::steady_clock::time_point deadline) noexcept;
  void unpark() noexcept;

 private:
  static constexpr std::uint32_t EMPTY = 0;
  static constexpr std::uint32_t PARKED = 1;
  static constexpr std::uint32_t NOTIFIED = 2;
  bool park_impl(const std::chrono::steady_clock::time_point* deadline) noexcept;
  std::atomic<std::uint32_t> state_{EMPTY};
};

/// A parker shared by reference count, for threads outside the runtime that
/// block on a task (join, block_on): a waker may outlive the wait.
class thread_parker : public parker {
 public:
  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel: the last owner must see every other owner's use before deleting.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  std::atomic<std::uint32_t> refs_{1};
};

/// The calling thread's own parker (created on first use, released at thread exit).
thread_parker& current_thread_parker();

}  // namespace warden::detail
