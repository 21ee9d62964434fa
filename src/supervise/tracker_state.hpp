// Internal: what a task_tracker handle, its children and its tasks share.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/supervise/tracker.hpp>
#include <warden/sync/event.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace warden {

/// The only writer of tracker_metrics: the tracker's tasks, one add per
/// event (see tracker_metrics).
///
/// release: a snapshot reading this counter with acquire then sees the
/// task's earlier events (its issue, its start) too.
struct tracker_metrics_access {
  using counter = std::atomic<std::uint64_t> tracker_metrics::*;
  static void add(tracker_metrics& m, counter c) noexcept { (m.*c).fetch_add(1, std::memory_order_release); }
  static constexpr counter issued = &tracker_metrics::issued_;
  static constexpr counter started = &tracker_metrics::started_;
  static constexpr counter success = &tracker_metrics::success_;
  static constexpr counter failed = &tracker_metrics::failed_;
  static constexpr counter cancelled_queued = &tracker_metrics::cancelled_queued_;
  static constexpr counter cancelled_active = &tracker_metrics::cancelled_active_;
  static constexpr counter rejected = &tracker_metrics::rejected_;
};

namespace detail {

/// One tracker.
///
/// Lifetime: held by shared_ptr by every task_tracker handle, every child
/// (its `parent`) and every live task (through tracked_task). The parent
/// knows its children by weak_ptr only (a child with no handle and no task
/// is gone, and has nothing to join).
///
/// `live_`: (tasks admitted and not yet ended) << 1 | closed. Admission is a
/// CAS that fails once closed, so after close() the count only falls; the
/// transition to "closed and empty" sets `drained` exactly when it happens
/// (by close() if nothing is live, else by the last task's end).
struct tracker_state {
  tracker_state() = default;
  tracker_state(const tracker_state&) = delete;
  tracker_state& operator=(const tracker_state&) = delete;

  std::string name;
  std::shared_ptr<tracker_state> parent;
  runtime* rt = nullptr;
  std::shared_ptr<warden::task_scheduler> scheduler;
  std::shared_ptr<warden::error_policy> policy;
  std::shared_ptr<tracker_metrics> metrics;
  std::vector<tracker_metrics*> chain;  // metrics of this tracker and every ancestor, nearest first
  warden::cancellation_token token;

  std::atomic<std::uint64_t> live{0};
  event drained;

  mutable std::mutex children_lock;
  std::vector<std::weak_ptr<tracker_state>> children;  // under children_lock
  std::size_t children_made = 0;                       // under children_lock

  // A child given its own cancel_token as well: that token cancels this
  // tracker's (which stays a child of the parent's).
  cancellation_registration cancel_from_extra_token;
  // Closes the tracker when its token is cancelled (by cancel() or an
  // ancestor). Declared last: destroyed first, so the callback never sees a
  // half-destroyed state (reset() waits for a running callback).
  cancellation_registration close_on_cancel;

  static constexpr std::uint64_t kClosed = 1;
  static constexpr std::uint64_t kOneTask = 2;

  bool try_admit() noexcept {
    std::uint64_t s = live.load(std::memory_order_relaxed);
    do {
      if ((s & kClosed) != 0) return false;
      // relaxed: admission orders nothing; drained's event does the publishing.
    } while (!live.compare_exchange_weak(s, s + kOneTask, std::memory_order_relaxed));
    return true;
  }
  void task_ended() noexcept {
    // acq_rel: the last task's release pairs with close()'s acquire (and
    // vice versa), so whoever sets `drained` has seen every task's effects.
    if (live.fetch_sub(kOneTask, std::memory_order_acq_rel) == (kOneTask | kClosed)) drained.set();
  }
  void close() noexcept {
    if (live.fetch_or(kClosed, std::memory_order_acq_rel) == 0) drained.set();
  }
  [[nodiscard]] bool closed() const noexcept { return (live.load(std::memory_order_acquire) & kClosed) != 0; }

  void count(tracker_metrics_access::counter c) const noexcept {
    for (tracker_metrics* m : chain) tracker_metrics_access::add(*m, c);
  }

  /// The children still alive (prunes the dead ones).
  std::vector<std::shared_ptr<tracker_state>> live_children();
};

}  // namespace detail
}  // namespace warden
