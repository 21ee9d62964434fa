// local_executor: the host-driven, single-threaded task_scheduler.
//
// # Structure
// `local_core` holds the executor's state. It implements task_scheduler
// twice (`update_` and `query_`): a task's `scheduler` pointer says which
// kind of task it is, so the header needs no extra field.
//
// # Who owns what
// * `mode_`, `ready_`, `woken_`, `live_`: the *driving thread* only — the
//   thread inside a context (or in the destructor). `tl_active == this`
//   identifies it; `busy_` makes it exclusive (exchange on entry, acq_rel:
//   a later driver on another thread sees everything the previous one did).
// * `remote_`, `closing_`: guarded by `remote_mutex_`. Any thread that
//   schedules a task while not driving (a wake from another thread, or from
//   the host between calls) appends here; the driver moves the queue into
//   `ready_` when it runs tasks. `remote_pending_` mirrors "remote_ is
//   not empty" so the driver skips the lock when nothing arrived.
//
// # Task states as seen here
// A task of this executor is in exactly one of: `ready_` (queued),
// `woken_` (queued, woken inside a cancellation context's callback),
// `remote_` (queued, or about to be appended by the thread that queued
// it), running (RUNNING, on the driver), or idle (parked: only wakers
// refer to it). Queued means SCHEDULED, or RUNNING claimed in advance by a
// wake (see task_header.hpp). `live_` counts tasks not yet complete;
// on_complete runs on the driver (only poll_task completes tasks, and only
// the driver polls), so it needs no atomics.
//
// # Contexts
//   update / query: run the callback, then drain: pop `ready_` FIFO, take
//     `remote_` when `ready_` empties, poll each task; in a query context an
//     update task moves to a deferred list that becomes `ready_` again at the
//     end (order kept).
//   cancellation: during the callback, schedule() puts woken tasks in
//     `woken_`; after it, `tl_recovering` is set and each is marked ABORT and
//     polled, which destroys its frame (poll_task's cancel path). Wakes and
//     spawns made by those destructors go to `ready_` as usual.
//
// # Destruction
// Mark every live task ABORT (a sweep of the header pool, as the runtime's
// shutdown does), then abort each (an idle one is queued on `ready_`), then
// poll until `live_` is zero: every frame is destroyed, none resumed. A task
// queued by a wake on another thread may still be on its way into
// `remote_`: the destructor waits on `remote_cv_`, which the remote pusher
// notifies under the lock while `closing_`; the lock is taken once more at the
// end so that no pusher is still inside it when the core is freed.
#include <warden/embed/local_executor.hpp>

#include <warden/detail/task_locals.hpp>

#include "../detail/context.hpp"
#include "../runtime/failure_sink.hpp"
#include "../task/header_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <utility>

namespace warden {
namespace detail {

namespace {

constinit thread_local local_core* tl_active = nullptr;  // the core whose context this thread drives
constinit thread_local bool tl_recovering = false;       // destroying the tasks a failed callback woke

/// An intrusive FIFO of task headers through `queue_next`.
struct task_fifo {
  task_header* head = nullptr;
  task_header* tail = nullptr;

  [[nodiscard]] bool empty() const noexcept { return head == nullptr; }
  void push(task_header* t) noexcept {
    t->queue_next = nullptr;
    if (tail == nullptr)
      head = t;
    else
      tail->queue_next = t;
    tail = t;
  }
  task_header* pop() noexcept {
    task_header* t = head;
    if (t == nullptr) return nullptr;
    head = t->queue_next;
    if (head == nullptr) tail = nullptr;
    t->queue_next = nullptr;
    return t;
  }
  /// Moves every task of `other` to the back of this queue.
  void append(task_fifo& other) noexcept {
    if (other.empty()) return;
    if (tail == nullptr)
      head = other.head;
    else
      tail->queue_next = other.head;
    tail = other.tail;
    other.head = other.tail = nullptr;
  }
};

[[noreturn]] void fatal(const char* message) noexcept {
  std::fprintf(stderr, "warden: %s\n", message);
  std::fflush(stderr);
  std::terminate();
}

}  // namespace

class local_core {
 public:
  enum class mode : unsigned char { idle, update, query, cancel_callback, recovering, closing };

  local_core(local_executor& owner, local_executor_options&& options)
      : owner_(owner),
        sink_(new failure_sink(options.on_unhandled_failure, std::move(options.failure_reporter))),
        on_remote_wake_(std::move(options.on_remote_wake)) {}

  /// Destroys every live task; called by ~local_executor, while the
  /// executor object is still whole (a destructor may spawn through it).
  void close() noexcept {
    if (tl_active == this || (tl_context.task != nullptr && owns(tl_context.task)))
      fatal(
          "local_executor destroyed from inside its own context or task; destroy it from the host, outside its calls");
    if (busy_.exchange(true, std::memory_order_acq_rel))
      fatal("local_executor destroyed while another thread is inside one of its contexts");
    // Another executor's context (or trap recovery) may be active on this
    // thread: our tasks' destructors must not see it.
    local_core* const outer_active = std::exchange(tl_active, this);
    const bool outer_recovering = std::exchange(tl_recovering, false);
    mode_ = mode::closing;
    {
      std::lock_guard lock(remote_mutex_);
      closing_ = true;
    }
    abort_everything();
    while (live_ != 0) {
      poll_all_ready();
      if (live_ == 0) break;
      // Every live task is ABORT and queued; the ones not in ready_ are
      // being appended to remote_ by a waker on another thread.
      std::unique_lock lock(remote_mutex_);
      remote_cv_.wait(lock, [this] { return !remote_.empty(); });
    }
    tl_active = outer_active;
    tl_recovering = outer_recovering;
    { std::lock_guard lock(remote_mutex_); }  // no remote pusher is still inside the lock
  }

  ~local_core() { sink_->release(); }

  local_core(const local_core&) = delete;
  local_core& operator=(const local_core&) = delete;

  // ---- entering and leaving contexts (the host thread) ----

  void enter(context_kind kind) {
    if (tl_context.task != nullptr)
      throw usage_error(
          "local_executor: a context was entered from inside a task; only the host enters contexts (run_update / "
          "run_query / run_cancellation) — from a task, spawn work or wake tasks instead");
    if (tl_active != nullptr)
      throw usage_error(
          "local_executor: a context was entered inside another context (run_update / run_query / run_cancellation "
          "called from a host callback or a destructor); return from the callback first");
    if (busy_.exchange(true, std::memory_order_acq_rel))
      throw usage_error(
          "local_executor: entered from two threads at once; it is single-threaded — serialise the host's calls");
    tl_active = this;
    mode_ = kind == context_kind::update  ? mode::update
            : kind == context_kind::query ? mode::query
                                          : mode::cancel_callback;
  }

  void finish() noexcept {
    if (mode_ == mode::cancel_callback)
      destroy_woken();
    else
      run_ready();
  }

  void leave() noexcept {
    mode_ = mode::idle;
    tl_active = nullptr;
    busy_.store(false, std::memory_order_release);
  }

  // ---- spawn (the driver) ----

  task_header* spawn(std::coroutine_handle<> root, const result_ops& results, const spawn_options& options) {
    if (tl_active != this) {
      root.destroy();
      throw usage_error(
          "local_executor::spawn called outside a context of this executor; call it inside run_update / run_query "
          "(the host callback or a task running on the executor)");
    }
    const bool query = mode_ == mode::query;
    const spawn_site* const site =
        intern_spawn_site(root, options.location, results, query ? static_cast<task_scheduler*>(&query_) : &update_);
    task_header* t = allocate_header();
    t->root = root;
    t->resume_point = root;
    set_spawn_site(t, site, options.name);
    if (task_header* parent = tl_context.task; parent != nullptr && extras_of(parent) != nullptr)
      inherit_into(t);  // acquire: a thread asking for the parent's id may have installed the record
    // With the lifecycle and join handle references.
    std::uint64_t state = task_header::SCHEDULED | task_header::JOIN_INTEREST | 2 * task_header::REF_ONE;
    // Spawned by a destructor while the executor is destroyed: cancelled unrun.
    if (mode_ == mode::closing) state |= task_header::ABORT;
    // release: a pool sweep that takes a reference sees the fields above.
    t->state.store(state, std::memory_order_release);
    ++live_;
    ready_.push(t);
    return t;
  }

  // ---- task_scheduler, for both kinds ----

  void schedule(task_header* t) noexcept {
    if (tl_active == this) {
      if (mode_ == mode::cancel_callback)
        woken_.push(t);
      else
        ready_.push(t);
      return;
    }
    std::lock_guard lock(remote_mutex_);
    remote_.push(t);
    // release: pairs with the acquire in take_remote (the queue itself is
    // read under the lock; the flag only lets the driver skip an empty lock).
    remote_pending_.store(true, std::memory_order_release);
    if (closing_) {
      remote_cv_.notify_one();
      return;
    }
    if (on_remote_wake_) on_remote_wake_();
  }

  void on_complete() noexcept { --live_; }
  failure_sink* failures() noexcept { return sink_; }

  [[nodiscard]] std::size_t alive() const noexcept { return live_; }
  [[nodiscard]] local_executor& owner() const noexcept { return owner_; }

 private:
  class kind_scheduler final : public task_scheduler {
   public:
    explicit kind_scheduler(local_core& core) : core_(core) {}
    void schedule(task_header* task, schedule_hint) noexcept override { core_.schedule(task); }
    void on_complete() noexcept override { core_.on_complete(); }
    failure_sink* failures() noexcept override { return core_.failures(); }
    void wait_for(task_header*) override {
      throw usage_error(
          "join() on an unfinished task of a local_executor: nothing would run it while the host blocks; check "
          "is_finished() after a context returns, or co_await the handle from another task");
    }

   private:
    local_core& core_;
  };

  /// Moves the remote queue into `ready_`. False if it was empty.
  bool take_remote() noexcept {
    if (!remote_pending_.load(std::memory_order_acquire)) return false;
    std::lock_guard lock(remote_mutex_);
    remote_pending_.store(false, std::memory_order_relaxed);  // under the lock, with the queue
    if (remote_.empty()) return false;
    ready_.append(remote_);
    return true;
  }

  /// The end of an update or query context: run every eligible ready task,
  /// including the ones they spawn or wake, until none is left.
  void run_ready() noexcept {
    task_fifo deferred;  // update tasks met in a query context, in order
    for (;;) {
      task_header* t = ready_.pop();
      if (t == nullptr) {
        if (!take_remote()) break;
        continue;
      }
      if (mode_ == mode::query && scheduler_of(t) == &update_) {
        deferred.push(t);
        continue;
      }
      poll_task(t);
    }
    ready_.append(deferred);
  }

  /// The end of a cancellation context: destroy what the failed callback
  /// woke, with is_recovering_from_trap() true.
  void destroy_woken() noexcept {
    mode_ = mode::recovering;  // from here on, wakes and spawns are ordinary
    tl_recovering = true;
    while (task_header* t = woken_.pop()) {
      request_abort(t);  // already queued: mark only; the poll destroys the frame
      poll_task(t);
    }
    tl_recovering = false;
  }

  void poll_all_ready() noexcept {
    for (;;) {
      task_header* t = ready_.pop();
      if (t == nullptr) {
        if (!take_remote()) return;
        continue;
      }
      poll_task(t);
    }
  }

  /// Marks every live task of this executor ABORT, then queues the idle ones
  /// (marking all first: a task woken by another's destruction is destroyed,
  /// never resumed).
  void abort_everything() noexcept {
    for_each_live_header(
        [](void* self, task_header* h) {
          if (static_cast<local_core*>(self)->owns(h)) request_abort(h);
        },
        this);
    for_each_live_header(
        [](void* self, task_header* h) {
          if (static_cast<local_core*>(self)->owns(h)) abort(h);  // idle: queued on ready_ (we drive)
        },
        this);
  }

  [[nodiscard]] bool owns(const task_header* h) const noexcept {
    return scheduler_of(h) == &update_ || scheduler_of(h) == &query_;
  }

  local_executor& owner_;
  failure_sink* sink_;
  std::function<void()> on_remote_wake_;
  kind_scheduler update_{*this};
  kind_scheduler query_{*this};

  // The driver's (see the top of this file).
  mode mode_ = mode::idle;
  task_fifo ready_;
  task_fifo woken_;
  std::size_t live_ = 0;
  std::atomic<bool> busy_{false};

  // Any thread's, under remote_mutex_.
  std::mutex remote_mutex_;
  std::condition_variable remote_cv_;
  task_fifo remote_;
  bool closing_ = false;
  std::atomic<bool> remote_pending_{false};
};

}  // namespace detail

local_executor::local_executor(local_executor_options options)
    : core_(std::make_unique<detail::local_core>(*this, std::move(options))) {}

local_executor::~local_executor() { core_->close(); }

local_executor::context_guard::context_guard(local_executor& exec, context_kind kind) : core_(exec.core_.get()) {
  core_->enter(kind);
}
local_executor::context_guard::~context_guard() { core_->leave(); }
void local_executor::context_guard::finish() noexcept { core_->finish(); }

detail::task_header* local_executor::spawn_root(std::coroutine_handle<> root, const detail::result_ops& results,
                                                const spawn_options& options) {
  return core_->spawn(root, results, options);
}

std::size_t local_executor::alive_tasks() const noexcept { return core_->alive(); }

local_executor* local_executor::current() noexcept {
  return detail::tl_active != nullptr ? &detail::tl_active->owner() : nullptr;
}

bool is_recovering_from_trap() noexcept { return detail::tl_recovering; }

}  // namespace warden
