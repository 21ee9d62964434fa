// warden/supervise/tracker_metrics.hpp — a task_tracker's counters and
// gauges (tracker_metrics, tracker_metrics_snapshot) and their Prometheus
// text rendering (render_prometheus).
//
//   auto m = tracker.metrics();                 // std::shared_ptr<tracker_metrics>
//   std::printf("%llu ok, %llu failed, %llu running\n", m->success(), m->failed(), m->active());
//   std::string text = tracker.prometheus_text();   // the tracker and its subtree
//
// # What is counted
// Every task handed to `spawn`/`spawn_cancellable` is `issued` once and ends
// exactly once as `success`, `failed`, `cancelled` (cancelled before or
// while running, aborted through its handle, or destroyed by the runtime's
// shutdown) or `rejected` (by the scheduler). It is `started` once, when it
// first gets its slot. Gauges: `queued` (issued, waiting to start), `active`
// (started, not ended), `pending` = queued + active. So at every quiet
// moment: issued = success + failed + cancelled + rejected + pending.
// Retries and continuations are the same task: they do not count again.
//
// # Roll-up
// A tracker's counts include its children's, recursively: each event is
// added to the tracker's metrics and to every ancestor's. A metrics object
// handed to the builder (`.metrics(m)`) is the one the tracker counts into,
// so it sees its subtree's events too and agrees with `tracker.metrics()`.
//
// # Exactness
// Every update is one atomic add per tracker, done by the task that caused
// it, before the task's handle resolves (and before `join()` returns), so
// counts read after awaiting a handle or a join are exact. A snapshot taken
// while tasks change state reads the ends first, then the starts, then the
// issues, so a gauge is never negative; a task in flight between two reads
// may show in a later counter only.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace warden {

/// A copy of the values at one moment.
struct tracker_metrics_snapshot {
  std::uint64_t issued = 0, started = 0, success = 0, failed = 0, cancelled = 0, rejected = 0;
  std::uint64_t active = 0, queued = 0;
  [[nodiscard]] std::uint64_t pending() const noexcept { return active + queued; }
  [[nodiscard]] std::uint64_t ended() const noexcept { return success + failed + cancelled + rejected; }
  friend bool operator==(const tracker_metrics_snapshot&, const tracker_metrics_snapshot&) = default;
};

/// The counters of one tracker (and, through roll-up, its subtree).
/// Thread-safe; updated only by trackers.
class tracker_metrics {
 public:
  [[nodiscard]] std::uint64_t issued() const noexcept { return load(issued_); }
  [[nodiscard]] std::uint64_t started() const noexcept { return load(started_); }
  [[nodiscard]] std::uint64_t success() const noexcept { return load(success_); }
  [[nodiscard]] std::uint64_t failed() const noexcept { return load(failed_); }
  [[nodiscard]] std::uint64_t cancelled() const noexcept { return load(cancelled_queued_) + load(cancelled_active_); }
  [[nodiscard]] std::uint64_t rejected() const noexcept { return load(rejected_); }
  [[nodiscard]] std::uint64_t active() const noexcept { return snapshot().active; }
  [[nodiscard]] std::uint64_t queued() const noexcept { return snapshot().queued; }
  [[nodiscard]] std::uint64_t pending() const noexcept { return snapshot().pending(); }
  [[nodiscard]] tracker_metrics_snapshot snapshot() const noexcept;

 private:
  friend struct tracker_metrics_access;
  static std::uint64_t load(const std::atomic<std::uint64_t>& v) noexcept {
    // acquire: pairs with the release adds, so that a reader who sees a
    // task's later event also sees its earlier ones (see snapshot()).
    return v.load(std::memory_order_acquire);
  }

  // One add per event and tracker (the hot path): a task is issued, then
  // started (or not), then ends once. The gauges are derived:
  //   active = started - (success + failed + cancelled_active)
  //   queued = issued - started - (rejected + cancelled_queued)
  std::atomic<std::uint64_t> issued_{0}, started_{0}, success_{0}, failed_{0};
  std::atomic<std::uint64_t> cancelled_queued_{0}, cancelled_active_{0}, rejected_{0};
};

/// One tracker's values, labelled, for rendering.
struct tracker_metrics_sample {
  std::string tracker;  ///< the `tracker` label
  tracker_metrics_snapshot values;
};

/// Prometheus text exposition format (version 0.0.4): for each metric a
/// `# HELP` and a `# TYPE` line, then one sample per tracker, e.g.
/// `warden_tracker_tasks_issued_total{tracker="crawler"} 42`. Counters end
/// in `_total`; gauges are warden_tracker_tasks_{active,queued,pending}.
/// Label values are escaped (backslash, double quote, newline).
std::string render_prometheus(std::span<const tracker_metrics_sample> samples);

}  // namespace warden
