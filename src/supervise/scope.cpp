#include <warden/supervise/scope.hpp>
#include <warden/sync/event.hpp>

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace warden {
namespace detail {

std::string describe_exception(const std::exception_ptr& error);  // src/runtime/failure_sink.cpp

/// One scope's shared state.
///
/// Invariants (under `mutex`):
/// * `live_jobs` counts the job frames that exist: incremented before a job's
///   frame is created, decremented by the ticket in that frame when the frame
///   is destroyed (ended, aborted, or destroyed unrun). So a job accepted is
///   always counted until it is gone (S6).
/// * `accepting` (S5) goes true → false once, never back: when the body is
///   done and no job is live (nobody inside the scope is left to add one),
///   when a job fails, or when the scope is abandoned.
/// * `jobs` maps each live job to its abort handle (empty until try_spawn_job
///   fills it in after spawning; a job gone before that has no entry).
/// * `all_gone` is set exactly once, when `body_done && live_jobs == 0`.
///
/// Ownership: the enter_scope frame, every job frame (its ticket and its
/// inherited binding) and every task spawned beneath the body hold the
/// state by shared_ptr. The state holds abort handles, never frames, and
/// each job's entry is erased when its frame goes, so there is no cycle.
struct scope_state {
  std::mutex mutex;
  bool accepting = true;
  bool body_done = false;
  bool cancelling = false;  // a job failed or the scope was abandoned: abort every job
  std::size_t live_jobs = 0;
  std::uint64_t next_job = 1;
  std::unordered_map<std::uint64_t, abort_handle> jobs;
  std::optional<scope_job_failure> failure;
  cancellation_token token;
  event all_gone;

  /// Under the lock: stops accepting, takes every job's abort handle.
  std::vector<abort_handle> start_cancelling() {
    accepting = false;
    cancelling = true;
    std::vector<abort_handle> out;
    out.reserve(jobs.size());
    for (auto& [number, handle] : jobs) out.push_back(handle);
    return out;
  }
};

namespace {

/// Lives in a job's frame as a coroutine parameter, so it goes with the frame
/// even if the job never started: uncounts the job.
class job_ticket {
 public:
  job_ticket(scope_ref scope, std::uint64_t number) noexcept : scope_(std::move(scope)), number_(number) {}
  job_ticket(job_ticket&& other) noexcept = default;
  job_ticket(const job_ticket&) = delete;
  job_ticket& operator=(const job_ticket&) = delete;
  job_ticket& operator=(job_ticket&&) = delete;
  ~job_ticket() {
    if (scope_ == nullptr) return;     // moved from
    std::optional<abort_handle> gone;  // released outside the lock
    bool last = false;
    {
      std::lock_guard lock(scope_->mutex);
      auto it = scope_->jobs.find(number_);
      if (it != scope_->jobs.end()) {
        gone.emplace(std::move(it->second));
        scope_->jobs.erase(it);
      }
      --scope_->live_jobs;
      if (scope_->body_done && scope_->live_jobs == 0) {
        scope_->accepting = false;
        last = true;
      }
    }
    if (last) scope_->all_gone.set();
  }

  /// Records the job's failure (the first one wins) and cancels the rest (S2).
  void fail(std::string label, std::exception_ptr error) {
    std::vector<abort_handle> others;
    {
      std::lock_guard lock(scope_->mutex);
      if (scope_->failure.has_value()) return;
      std::string message = describe_exception(error);
      scope_->failure.emplace(scope_job_failure{std::move(label), std::move(message), std::move(error)});
      scope_->jobs.erase(number_);  // we are ending: do not abort ourselves
      others = scope_->start_cancelling();
    }
    scope_->token.cancel();
    for (auto& handle : others) handle.abort();
  }

 private:
  scope_ref scope_;
  std::uint64_t number_;
};

/// A job frame's parameters in one object, so that the job (and its frame)
/// is destroyed before the ticket whatever the compiler's order for
/// coroutine parameters (GCC: first to last; Clang: last to first).
struct job_run {
  job_ticket ticket;
  task<void> job;
};

task<void> run_job(job_run run, std::string label) {
  try {
    co_await std::move(run.job);
  } catch (...) {
    run.ticket.fail(std::move(label), std::current_exception());
  }
}

scope_state* ambient() noexcept {
  scope_ref* bound = ambient_scope.try_get();
  return bound == nullptr ? nullptr : bound->get();
}

std::string job_label(job_kind kind, std::uint64_t number, const spawn_options& options) {
  std::string out = (kind == job_kind::daemon ? "daemon #" : "cleanup job #") + std::to_string(number);
  if (!options.name.empty()) {
    out += " '";
    out += options.name;
    out += "'";
  }
  return out;
}

}  // namespace

scope_ref open_scope() {
  auto scope = std::make_shared<scope_state>();
  if (scope_state* outer = ambient()) {
    std::lock_guard lock(outer->mutex);
    scope->token = outer->token.child_token();
  } else {
    try {
      scope->token = current_root_token().child_token();
    } catch (const usage_error&) {
      // Not on a runtime (an embedded executor): a token of its own.
    }
  }
  return scope;
}

task<void> finish_scope(scope_ref scope) {
  bool last = false;
  {
    std::lock_guard lock(scope->mutex);
    scope->body_done = true;
    if (scope->live_jobs == 0) {
      scope->accepting = false;
      last = true;
    }
  }
  if (last) scope->all_gone.set();
  co_await scope->all_gone.wait();
}

std::expected<void, scope_job_failure> job_outcome(const scope_state& scope) {
  // After all_gone: no job is left to write `failure`, and the event's
  // set/wait ordered its last write before this read.
  if (scope.failure.has_value()) return std::unexpected(*scope.failure);
  return {};
}

scope_closer::~scope_closer() {
  if (scope_ == nullptr) return;
  std::vector<abort_handle> jobs;
  {
    std::lock_guard lock(scope_->mutex);
    scope_->body_done = true;
    jobs = scope_->start_cancelling();
  }
  scope_->token.cancel();
  for (auto& handle : jobs) handle.abort();
}

std::expected<void, scope_spawn_error> try_spawn_job(task<void> job, spawn_options options, job_kind kind) {
  if (!job.valid()) throw usage_error("spawn_daemon / spawn_cleanup_job: the task is empty (moved-from or default)");
  scope_ref* bound = ambient_scope.try_get();
  if (bound == nullptr || *bound == nullptr) return std::unexpected(scope_spawn_error::no_active_scope);
  scope_ref scope = *bound;
  std::uint64_t number = 0;
  {
    std::lock_guard lock(scope->mutex);
    if (!scope->accepting) return std::unexpected(scope_spawn_error::scope_terminating);
    number = scope->next_job++;
    ++scope->live_jobs;
    scope->jobs.emplace(number, abort_handle{});
  }
  // From here the ticket in the job's frame owns the count.
  std::string label = job_label(kind, number, options);
  const std::string name(options.name.empty() ? std::string_view(label) : options.name);
  auto wrapper = run_job(job_run{job_ticket(scope, number), std::move(job)}, std::move(label));
  join_handle<void> spawned = spawn(std::move(wrapper), spawn_options{.name = name, .location = options.location});
  abort_handle handle = spawned.get_abort_handle();
  bool abort_now = false;
  {
    std::lock_guard lock(scope->mutex);
    auto it = scope->jobs.find(number);
    if (it != scope->jobs.end()) {
      it->second = handle;
      abort_now = scope->cancelling;  // the scope was cancelled before we could hand it our handle
    }
  }
  if (abort_now) handle.abort();
  spawned.detach();  // run_job never throws: nothing for the unhandled-failure policy
  return {};
}

void spawn_job(task<void> job, spawn_options options, job_kind kind) {
  auto spawned = try_spawn_job(std::move(job), options, kind);
  if (spawned.has_value()) return;
  if (spawned.error() == scope_spawn_error::no_active_scope) throw usage_error(std::string(describe(spawned.error())));
  throw scope_terminating_error(std::string(describe(spawned.error())));
}

void throw_scope_error(scope_job_failure job, std::exception_ptr body_error) {
  throw scope_error(std::move(job), std::move(body_error));
}

}  // namespace detail

std::string_view describe(scope_spawn_error error) noexcept {
  switch (error) {
    case scope_spawn_error::no_active_scope:
      return "No active scope: call spawn_daemon / spawn_cleanup_job inside enter_scope(...) or ensure_scope(...), "
             "or in a task spawned beneath one";
    case scope_spawn_error::scope_terminating:
      return "The scope is terminating (it has finished, or one of its jobs failed): the job was not started; "
             "register jobs while the scope's body or its jobs still run, or check has_active_scope() first";
  }
  return "unknown scope_spawn_error";
}

scope_error::scope_error(scope_job_failure job, std::exception_ptr body_error)
    : std::runtime_error([&] {
        std::string text = "scope failed: " + job.job + " threw: " + job.message;
        if (body_error) text += "; the body failed too: " + detail::describe_exception(body_error);
        return text;
      }()),
      job_(std::move(job)),
      body_(std::move(body_error)) {}

bool has_active_scope() {
  detail::scope_state* scope = detail::ambient();
  if (scope == nullptr) return false;
  std::lock_guard lock(scope->mutex);
  return scope->accepting;
}

cancellation_token current_scope_token() {
  detail::scope_state* scope = detail::ambient();
  if (scope == nullptr)
    throw usage_error("No active scope: call current_scope_token inside enter_scope(...) or ensure_scope(...)");
  std::lock_guard lock(scope->mutex);
  return scope->token;
}

}  // namespace warden
