#include <warden/supervise/monitor.hpp>

#include <exception>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace warden {
namespace detail {

std::string describe_exception(const std::exception_ptr& error);  // src/runtime/failure_sink.cpp

/// What a task_monitor shares with the tasks it spawned.
///
/// Invariants (under `mutex`): `entries` holds exactly the tasks whose frame
/// exists (a ticket lives in every frame and erases its entry when the frame
/// is destroyed; spawn_* inserts the entry before the frame exists, so an
/// entry is never added after its erase). An entry's abort handle is empty
/// until spawn_* fills it in after spawning; a task that ended before that
/// has no entry to fill. `closed` is set by the monitor's destructor; spawn_*
/// cannot run after it (the monitor is gone).
///
/// Ownership: the monitor and every frame hold the state by shared_ptr; the
/// state holds abort handles (task headers), never frames, so there is no
/// cycle once each frame is gone.
struct monitor_state {
  explicit monitor_state(std::size_t capacity) {
    if (capacity == 0)
      throw usage_error(
          "task_monitor_options::capacity is 0: it is how many recent failures a slow subscriber "
          "can still catch up on; use at least 1 (the default is 8)");
    sender = broadcast<task_failure>(capacity).first;  // our receiver is dropped: no subscriber yet
  }

  struct entry {
    std::shared_ptr<monitored_task> task;
    abort_handle abort;
  };

  mutable std::mutex mutex;
  std::unordered_map<const monitored_task*, entry> entries;
  broadcast_sender<task_failure> sender;  // thread-safe on its own
};

/// Moves `task` from running to `to`; true if this call did it.
bool settle(monitored_task& task, std::uint8_t to) noexcept {
  std::uint8_t expected = monitored_task::running;
  // seq_cst: the abort/failure decision is the one linearization point M2
  // rests on; acq_rel would do, seq_cst costs nothing extra here.
  return task.state.compare_exchange_strong(expected, to);
}

monitor_ticket::~monitor_ticket() {
  if (monitor_ == nullptr) return;           // moved from
  std::optional<monitor_state::entry> gone;  // destroyed outside the lock
  std::lock_guard lock(monitor_->mutex);
  auto it = monitor_->entries.find(task_.get());
  if (it != monitor_->entries.end()) {
    gone.emplace(std::move(it->second));
    monitor_->entries.erase(it);
  }
}

namespace {

void report(monitor_state& monitor, monitored_task& task, failure_reason reason) {
  if (!settle(task, monitored_task::failed)) return;  // aborted first: never reported (M2)
  try {
    (void)monitor.sender.send(task_failure{failed_task{current_task_id(), task.name}, std::move(reason)});
  } catch (...) {
    // Out of memory building the record: nothing better to do than drop it.
  }
}

}  // namespace

task<void> run_monitored(monitored_run run, monitored_kind kind) {
  monitor_ticket& ticket = run.ticket;
  std::optional<failure_reason> reason;
  try {
    std::optional<std::string> error = co_await std::move(run.body);
    if (error.has_value())
      reason.emplace(error_reason{std::move(*error)});
    else if (kind == monitored_kind::infinite)
      reason.emplace(early_termination{});
  } catch (...) {
    reason.emplace(panic_reason{describe_exception(std::current_exception())});
  }
  if (reason.has_value())
    report(ticket.monitor(), ticket.task(), std::move(*reason));
  else
    (void)settle(ticket.task(), monitored_task::finished);
}

task<std::optional<std::string>> no_error_text(task<void> body) {
  co_await std::move(body);
  co_return std::nullopt;
}

}  // namespace detail

// ---- background_task_handle ----------------------------------------------------

background_task_handle::background_task_handle(background_task_handle&& other) noexcept
    : task_(std::move(other.task_)),
      abort_(std::move(other.abort_)),
      abort_on_drop_(std::exchange(other.abort_on_drop_, false)) {}

background_task_handle& background_task_handle::operator=(background_task_handle&& other) noexcept {
  if (this != &other) {
    if (abort_on_drop_) (void)abort();
    task_ = std::move(other.task_);
    abort_ = std::move(other.abort_);
    abort_on_drop_ = std::exchange(other.abort_on_drop_, false);
  }
  return *this;
}

background_task_handle::~background_task_handle() {
  if (abort_on_drop_) (void)abort();
}

bool background_task_handle::abort() noexcept {
  if (task_ == nullptr) return false;
  // The flag first, then the cancel (M2): once the state says aborted the
  // task can no longer report, whatever it is doing.
  const bool decided = detail::settle(*task_, detail::monitored_task::aborted);
  abort_.abort();
  return decided;
}

bool background_task_handle::is_finished() const noexcept { return task_ != nullptr && abort_.is_finished(); }

std::string_view background_task_handle::name() const noexcept {
  return task_ == nullptr ? std::string_view{} : std::string_view(task_->name);
}

// ---- task_monitor ------------------------------------------------------------------

task_monitor::task_monitor(task_monitor_options options)
    : runtime_(nullptr), state_(std::make_shared<detail::monitor_state>(options.capacity)) {}

task_monitor::task_monitor(runtime& rt, task_monitor_options options)
    : runtime_(&rt), state_(std::make_shared<detail::monitor_state>(options.capacity)) {}

task_monitor::~task_monitor() {
  std::vector<detail::monitor_state::entry> running;
  {
    std::lock_guard lock(state_->mutex);
    running.reserve(state_->entries.size());
    for (auto& [key, entry] : state_->entries) running.push_back(entry);
  }
  // M6: abort, flag first (the entries go away as the frames are destroyed).
  for (auto& entry : running) {
    (void)detail::settle(*entry.task, detail::monitored_task::aborted);
    entry.abort.abort();
  }
}

broadcast_receiver<task_failure> task_monitor::subscribe() { return state_->sender.subscribe(); }

std::size_t task_monitor::running_tasks() const {
  std::lock_guard lock(state_->mutex);
  return state_->entries.size();
}

background_task_handle task_monitor::spawn_wrapped(std::string_view name, task<std::optional<std::string>> body,
                                                   detail::monitored_kind kind) {
  auto task = std::make_shared<detail::monitored_task>();
  task->name = std::string(name);
  {
    std::lock_guard lock(state_->mutex);
    state_->entries.emplace(task.get(), detail::monitor_state::entry{task, {}});
  }
  // From here the ticket in the wrapper's frame owns the entry: if the frame
  // is destroyed unrun (spawn throws), the ticket erases it.
  detail::monitor_ticket ticket(state_, task);
  auto wrapper = detail::run_monitored(detail::monitored_run{std::move(ticket), std::move(body)}, kind);
  const spawn_options options{.name = name};
  join_handle<void> spawned =
      runtime_ != nullptr ? runtime_->spawn(std::move(wrapper), options) : warden::spawn(std::move(wrapper), options);
  abort_handle abort = spawned.get_abort_handle();
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->entries.find(task.get());
    if (it != state_->entries.end()) it->second.abort = abort;  // else it already ended (M5)
  }
  spawned.detach();  // the wrapper never throws: nothing for the unhandled-failure policy
  return background_task_handle(std::move(task), std::move(abort));
}

}  // namespace warden
