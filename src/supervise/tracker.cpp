#include <warden/supervise/tracker.hpp>

#include "tracker_state.hpp"

#include <algorithm>
#include <utility>

namespace warden {
namespace detail {

std::string describe_exception(const std::exception_ptr& error);  // src/runtime/failure_sink.cpp

namespace {

const char* verb(task_error::kind kind) noexcept {
  switch (kind) {
    case task_error::kind::cancelled:
      return "was cancelled";
    case task_error::kind::failed:
      return "failed";
    case task_error::kind::panicked:
      return "panicked";
    case task_error::kind::rejected:
      return "was rejected";
  }
  return "ended";
}

/// A task that waits for an instant (the shape run_until_cancelled takes).
task<void> sleep_task(clock::duration d) { co_await sleep_for(d); }

}  // namespace

// ---- tracked_task --------------------------------------------------------------

const warden::cancellation_token& tracked_task::token() {
  std::call_once(once_, [this] {
    token_.emplace(tracker_->token.child_token());
    made_.store(true, std::memory_order_release);
  });
  return *token_;
}

bool tracked_task::is_cancelled() const {
  // Before the own token exists nobody can have cancelled it: the
  // tracker's token is the whole answer.
  if (made_.load(std::memory_order_acquire)) return token_->is_cancelled();
  return tracker_->token.is_cancelled();
}

// ---- tracker_ticket ------------------------------------------------------------------

tracker_ticket::~tracker_ticket() {
  if (task_ == nullptr) return;  // moved from
  tracker_state& tracker = task_->tracker();
  if (phase_ != phase::settled) {
    // Aborted through the handle, destroyed unrun, or by runtime shutdown.
    tracker.count(phase_ == phase::active ? tracker_metrics_access::cancelled_active
                                          : tracker_metrics_access::cancelled_queued);
  }
  tracker.task_ended();
}

slot_status tracker_ticket::try_acquire(schedule_slot& slot, std::string& reason) {
  if (task_->is_cancelled()) return slot_status::cancelled;
  std::optional<acquire_result> got;
  try {
    got = task_->tracker().scheduler->try_acquire();
  } catch (...) {
    reason = "the scheduler failed: " + describe_exception(std::current_exception());
    return slot_status::rejected;
  }
  if (!got.has_value()) return slot_status::wait;
  switch (got->outcome()) {
    case acquire_result::status::granted:
      slot = got->take_slot();
      return slot_status::granted;
    case acquire_result::status::cancelled:
      return slot_status::cancelled;
    case acquire_result::status::rejected:
      reason = got->reason();
      return slot_status::rejected;
  }
  return slot_status::rejected;
}

task<slot_status> tracker_ticket::acquire(schedule_slot& slot, std::string& reason) {
  std::optional<acquire_result> got;
  try {
    // Made outside the co_await expression (GCC 12 mishandles non-trivial
    // temporaries there).
    task<acquire_result> waiting = task_->tracker().scheduler->acquire(task_->token());
    got.emplace(co_await std::move(waiting));
  } catch (...) {
    reason = "the scheduler failed: " + describe_exception(std::current_exception());
    co_return slot_status::rejected;
  }
  switch (got->outcome()) {
    case acquire_result::status::granted:
      slot = got->take_slot();
      // A slot granted just as the task was cancelled still runs the task:
      // the grant came first.
      co_return slot_status::granted;
    case acquire_result::status::cancelled:
      co_return slot_status::cancelled;
    case acquire_result::status::rejected:
      reason = got->reason();
      co_return slot_status::rejected;
  }
  co_return slot_status::rejected;
}

void tracker_ticket::mark_started() noexcept {
  if (phase_ != phase::queued) return;
  phase_ = phase::active;
  task_->tracker().count(tracker_metrics_access::started);
}

void tracker_ticket::settle_success() noexcept {
  task_->tracker().count(tracker_metrics_access::success);  // only a started task succeeds
  phase_ = phase::settled;
}

task_error tracker_ticket::settle_error(task_error::kind kind, std::string message, std::exception_ptr cause) noexcept {
  tracker_state& tracker = task_->tracker();
  switch (kind) {
    case task_error::kind::cancelled:
      tracker.count(phase_ == phase::active ? tracker_metrics_access::cancelled_active
                                            : tracker_metrics_access::cancelled_queued);
      break;
    case task_error::kind::failed:
    case task_error::kind::panicked:
      tracker.count(tracker_metrics_access::failed);
      break;
    case task_error::kind::rejected:
      tracker.count(tracker_metrics_access::rejected);
      break;
  }
  phase_ = phase::settled;
  if (kind == task_error::kind::panicked && message.empty() && cause) message = describe_exception(cause);
  try {
    return task_error(kind, try_current_task_id().value_or(task_id{}), tracker.name, std::move(message),
                      std::move(cause));
  } catch (...) {
    // Out of memory for the text: an error without it still says what happened.
    return task_error(kind, task_id{}, std::string(), std::string(), std::exception_ptr{});
  }
}

task<failure_verdict> tracker_ticket::on_failure(failure_report& report, bool can_run_again, schedule_slot& slot) {
  tracker_state& tracker = task_->tracker();
  ++attempt_;
  if (report.message.empty() && report.exception) report.message = describe_exception(report.exception);

  failure_context context;
  context.id = try_current_task_id().value_or(task_id{});
  context.tracker = tracker.name;
  context.attempt = attempt_;
  context.message = report.message;
  context.exception = report.exception;
  context.panicked = report.panicked;
  context.has_continuation = report.has_continuation;
  context.task_token = task_->token();
  if (!policy_state_) policy_state_ = std::make_shared<std::any>();
  context.state = policy_state_;

  error_policy& policy = *tracker.policy;
  std::optional<error_response> response;
  try {
    if (report.has_continuation && policy.allow_continuation(context)) {
      if (policy.should_reschedule(context)) {
        slot.release();  // the old slot first, then wait for a new one (T5)
        report.reschedule = true;
      }
      co_return failure_verdict::run_continuation;
    }
    response.emplace(policy.on_error(context));
  } catch (...) {
    report.message += " (and the error policy threw: " + describe_exception(std::current_exception()) + ")";
    co_return failure_verdict::fail;
  }

  while (response->what() == error_response::kind::custom) {
    std::shared_ptr<error_action> action = response->action();
    if (action == nullptr) {
      response.emplace(error_response::fail());
      break;
    }
    try {
      task<error_response> deciding = action->run(context);
      response.emplace(co_await std::move(deciding));
    } catch (...) {
      report.message += " (and the error action threw: " + describe_exception(std::current_exception()) + ")";
      co_return failure_verdict::fail;
    }
  }

  switch (response->what()) {
    case error_response::kind::fail:
    case error_response::kind::custom:
      co_return failure_verdict::fail;
    case error_response::kind::shutdown:
      tracker.close();
      tracker.token.cancel();
      co_return failure_verdict::fail;
    case error_response::kind::retry:
      break;
  }

  if (!can_run_again) {
    report.message +=
        " (not retried: a task<T> runs once; spawn a callable returning the task, or use spawn_cancellable, "
        "to allow retries)";
    co_return failure_verdict::fail;
  }
  if (task_->is_cancelled()) co_return failure_verdict::cancelled;
  bool reschedule = false;
  try {
    reschedule = policy.should_reschedule(context);
  } catch (...) {
    reschedule = false;
  }
  if (reschedule) {
    slot.release();
    report.reschedule = true;
  }
  if (response->delay() > clock::duration::zero()) {
    task<void> pause = sleep_task(response->delay());
    task<bool> backing_off = run_until_cancelled(task_->token(), std::move(pause));
    const bool slept = co_await std::move(backing_off);
    if (!slept) co_return failure_verdict::cancelled;
  }
  co_return failure_verdict::run_again;
}

runtime* tracker_runtime(const tracker_state& tracker) noexcept { return tracker.rt; }

std::vector<std::shared_ptr<tracker_state>> tracker_state::live_children() {
  std::vector<std::shared_ptr<tracker_state>> alive;
  std::lock_guard lock(children_lock);
  std::erase_if(children, [&](const std::weak_ptr<tracker_state>& weak) {
    std::shared_ptr<tracker_state> child = weak.lock();
    if (child == nullptr) return true;
    alive.push_back(std::move(child));
    return false;
  });
  return alive;
}

namespace {

void collect_samples(tracker_state& tracker, std::vector<tracker_metrics_sample>& out) {
  out.push_back(tracker_metrics_sample{tracker.name, tracker.metrics->snapshot()});
  for (auto& child : tracker.live_children()) collect_samples(*child, out);
}

task<void> join_state(std::shared_ptr<tracker_state> tracker) {
  // Children first (T9); then close this one; then any child made before
  // the close that the first pass missed; then this tracker's own tasks.
  std::vector<std::shared_ptr<tracker_state>> first = tracker->live_children();
  for (auto& child : first) {
    task<void> joining = join_state(child);
    co_await std::move(joining);
  }
  tracker->close();
  for (auto& child : tracker->live_children()) {
    if (std::find(first.begin(), first.end(), child) != first.end()) continue;
    task<void> joining = join_state(child);
    co_await std::move(joining);
  }
  co_await tracker->drained.wait();
}

}  // namespace
}  // namespace detail

// ---- task_error --------------------------------------------------------------------

task_error::task_error(kind k, task_id id, std::string tracker, std::string message, std::exception_ptr cause)
    : kind_(k), id_(id), tracker_(std::move(tracker)), message_(std::move(message)), cause_(std::move(cause)) {
  what_ = "task " + std::to_string(id_.value());
  if (!tracker_.empty()) what_ += " in tracker '" + tracker_ + "'";
  what_ += ' ';
  what_ += detail::verb(kind_);
  if (!message_.empty()) what_ += ": " + message_;
}

// ---- task_tracker ----------------------------------------------------------------

void task_tracker::admit(const char* what) const {
  if (!state_->try_admit())
    throw tracker_closed(std::string("task_tracker::") + what + ": tracker '" + state_->name +
                         "' is closed (close(), cancel() or join() was called): the task was not run");
  state_->count(tracker_metrics_access::issued);
}

void task_tracker::abandon() const noexcept {
  // Issued, never queued for real: it ends cancelled before it started.
  state_->count(tracker_metrics_access::cancelled_queued);
  state_->task_ended();
}

task_tracker task_tracker::child_tracker() const { return child_tracker_builder().build(); }

task_tracker::builder task_tracker::child_tracker_builder() const {
  builder b;
  b.parent_ = state_;
  b.scheduler_ = state_->scheduler;
  b.policy_ = state_->policy->create_child();
  b.runtime_ = state_->rt;
  return b;
}

void task_tracker::cancel() const {
  state_->close();
  state_->token.cancel();
}

void task_tracker::close() const noexcept { state_->close(); }

bool task_tracker::is_closed() const noexcept { return state_->closed(); }

cancellation_token task_tracker::cancellation_token() const { return state_->token; }

std::size_t task_tracker::child_count() const { return state_->live_children().size(); }

task<void> task_tracker::join() const { return detail::join_state(state_); }

std::shared_ptr<tracker_metrics> task_tracker::metrics() const { return state_->metrics; }

const std::string& task_tracker::name() const noexcept { return state_->name; }

std::string task_tracker::prometheus_text() const {
  std::vector<tracker_metrics_sample> samples;
  detail::collect_samples(*state_, samples);
  return render_prometheus(samples);
}

task_tracker task_tracker::builder::build() {
  if (scheduler_ == nullptr)
    throw usage_error(
        "task_tracker::builder::build: no scheduler; call .scheduler(...) first, e.g. "
        "std::make_shared<warden::unlimited_scheduler>() or std::make_shared<warden::semaphore_scheduler>(n)");
  if (policy_ == nullptr)
    throw usage_error(
        "task_tracker::builder::build: no error policy; call .error_policy(...) first, e.g. "
        "std::make_shared<warden::log_only_policy>()");

  auto state = std::make_shared<detail::tracker_state>();
  state->scheduler = scheduler_;
  state->policy = policy_;
  state->metrics = metrics_ != nullptr ? metrics_ : std::make_shared<tracker_metrics>();
  state->rt = runtime_;
  state->parent = parent_;
  state->chain.push_back(state->metrics.get());
  for (detail::tracker_state* up = parent_.get(); up != nullptr; up = up->parent.get())
    state->chain.push_back(up->metrics.get());

  if (parent_ != nullptr) {
    std::lock_guard lock(parent_->children_lock);
    // Checked under the lock join() snapshots children with: a child is
    // either refused here or seen by the join of its parent (T7, T9).
    if (parent_->closed())
      throw tracker_closed("task_tracker::child_tracker: closed parent: tracker '" + parent_->name +
                           "' is closed (close(), cancel() or join() was called), so it takes no new children");
    const std::size_t index = parent_->children_made++;
    state->name = name_.value_or(parent_->name + "/" + std::to_string(index));
    state->token = parent_->token.child_token();
    parent_->children.push_back(state);
  } else {
    state->name = name_.value_or("tracker");
    state->token = parent_token_ ? parent_token_->child_token() : warden::cancellation_token();
  }
  // Cancelled from above (an ancestor's cancel(), the builder's token):
  // the tracker closes too. Raw pointer: the registration is a member, reset
  // before the state is destroyed.
  if (parent_ != nullptr && parent_token_)
    state->cancel_from_extra_token = parent_token_->on_cancel([raw = state.get()] { raw->token.cancel(); });
  state->close_on_cancel = state->token.on_cancel([raw = state.get()] { raw->close(); });
  return task_tracker(std::move(state));
}

}  // namespace warden
