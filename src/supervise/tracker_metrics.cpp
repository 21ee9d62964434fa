#include <warden/supervise/tracker_metrics.hpp>

#include <cstdint>
#include <string>

namespace warden {

tracker_metrics_snapshot tracker_metrics::snapshot() const noexcept {
  // Latest events first: every task counted in an end was counted started
  // (if it started) and issued before, and the acquire loads make those
  // earlier adds visible to the loads below. So the differences are >= 0.
  tracker_metrics_snapshot s;
  s.success = load(success_);
  s.failed = load(failed_);
  const std::uint64_t cancelled_active = load(cancelled_active_);
  const std::uint64_t cancelled_queued = load(cancelled_queued_);
  s.rejected = load(rejected_);
  s.started = load(started_);
  s.issued = load(issued_);
  s.cancelled = cancelled_active + cancelled_queued;
  const std::uint64_t ended_running = s.success + s.failed + cancelled_active;
  const std::uint64_t ended_waiting = s.rejected + cancelled_queued;
  s.active = s.started >= ended_running ? s.started - ended_running : 0;
  s.queued = s.issued >= s.started + ended_waiting ? s.issued - s.started - ended_waiting : 0;
  return s;
}

namespace {

struct metric {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t (*value)(const tracker_metrics_snapshot&);
};

constexpr metric kMetrics[] = {
    {"warden_tracker_tasks_issued_total", "counter", "Tasks handed to the tracker (spawn, spawn_cancellable).",
     [](const tracker_metrics_snapshot& s) { return s.issued; }},
    {"warden_tracker_tasks_started_total", "counter", "Tasks that got a slot from the scheduler and started.",
     [](const tracker_metrics_snapshot& s) { return s.started; }},
    {"warden_tracker_tasks_success_total", "counter", "Tasks that ended with a value.",
     [](const tracker_metrics_snapshot& s) { return s.success; }},
    {"warden_tracker_tasks_failed_total", "counter", "Tasks that ended failed (error or exception, after the policy).",
     [](const tracker_metrics_snapshot& s) { return s.failed; }},
    {"warden_tracker_tasks_cancelled_total", "counter", "Tasks that ended cancelled or aborted.",
     [](const tracker_metrics_snapshot& s) { return s.cancelled; }},
    {"warden_tracker_tasks_rejected_total", "counter", "Tasks the scheduler refused.",
     [](const tracker_metrics_snapshot& s) { return s.rejected; }},
    {"warden_tracker_tasks_active", "gauge", "Tasks running now (started, not ended).",
     [](const tracker_metrics_snapshot& s) { return s.active; }},
    {"warden_tracker_tasks_queued", "gauge", "Tasks waiting for a slot.",
     [](const tracker_metrics_snapshot& s) { return s.queued; }},
    {"warden_tracker_tasks_pending", "gauge", "Tasks issued and not ended (active + queued).",
     [](const tracker_metrics_snapshot& s) { return s.pending(); }},
};

void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

}  // namespace

std::string render_prometheus(std::span<const tracker_metrics_sample> samples) {
  std::string out;
  for (const metric& m : kMetrics) {
    out += "# HELP ";
    out += m.name;
    out += ' ';
    out += m.help;
    out += "\n# TYPE ";
    out += m.name;
    out += ' ';
    out += m.type;
    out += '\n';
    for (const tracker_metrics_sample& sample : samples) {
      out += m.name;
      out += "{tracker=\"";
      append_label_value(out, sample.tracker);
      out += "\"} ";
      out += std::to_string(m.value(sample.values));
      out += '\n';
    }
  }
  return out;
}

}  // namespace warden
