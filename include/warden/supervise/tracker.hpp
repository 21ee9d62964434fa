// warden/supervise/tracker.hpp — a tree of task trackers with schedulers,
// error policies, cancellation and metrics: task_tracker, task_handle,
// task_error, cancellable_result, tracker_closed.
//
// A task_tracker runs many jobs under one roof: its scheduler decides when
// each may start (a concurrency limit, a rate), its error policy what a
// failure does (log, retry with backoff, shut down), its metrics count
// everything, and `join()` waits for all of it at shutdown.
//
//   auto tracker = warden::task_tracker::builder()
//                      .name("crawler")
//                      .scheduler(std::make_shared<warden::semaphore_scheduler>(8))
//                      .error_policy(std::make_shared<warden::retry_policy>())
//                      .build();
//   auto page = tracker.spawn(fetch(url));                    // task_handle<page>
//   auto polite = tracker.spawn_cancellable([=](warden::cancellation_token t) { return crawl(url, t); });
//   auto per_host = tracker.child_tracker();                   // shares the limit of 8
//   std::expected<page, warden::task_error> got = co_await std::move(page);
//   ...
//   co_await tracker.join();                                   // closes the tree, waits for every task
//   std::cout << tracker.prometheus_text();
//
// # A task's life
// `spawn` counts the task `issued` at once and spawns it on the runtime; it
// then waits for a slot from the scheduler (`queued`), runs (`active`), and
// ends `success`, `failed` (after the error policy had its say: see
// warden/supervise/tracker_policy.hpp), `cancelled` or `rejected`. The
// handle's await yields the value or a task_error saying which. Metrics:
// warden/supervise/tracker_metrics.hpp.
//
// A task<T> whose T is a std::expected fails when it returns an error (the
// error as text is the failure's message); `spawn_cancellable(f)` calls
// `f(token)` once the slot is granted, and `f` returns a task yielding a
// cancellable_result<T>: ok, cancelled (counted cancelled) or error.
//
// # Cancellation (flows down only)
// `cancel()` closes the tracker and cancels its token, and so every
// descendant tracker (each tracker's token is a child of its parent's, or
// of the builder's `cancel_token`). Cancelling a child never reaches its
// parent or siblings. Then: tasks not yet started end `cancelled` without
// running; tasks waiting for a slot stop waiting and end `cancelled`;
// running tasks from `spawn_cancellable` see their token cancelled (it is
// the task's own token, a child of the tracker's, also returned by the
// handle's `cancellation_token()`: cancelling it reaches that one task);
// running plain tasks run to completion. A task aborted through its handle
// (or destroyed by runtime shutdown) ends `cancelled`.
//
// # Children
// `child_tracker()` makes a tracker whose token is a child of this one's,
// with the same scheduler (a shared limit) and `policy->create_child()` as
// error policy; `child_tracker_builder()` lets you override either, the
// name or the metrics. A child's metrics roll up into every ancestor.
//
// # join
// `join()` closes every tracker of the subtree, children before parents,
// and completes once every task of the subtree has ended (tasks whose
// handles were dropped included). It never cancels. Afterwards `spawn` and
// `child_tracker` throw tracker_closed.
//
// # Awaiting a handle (GCC 12)
// Spawn in a statement of its own, then await the handle:
//   auto h = tracker.spawn([url] { return fetch(url); });
//   auto page = co_await std::move(h);
// not `co_await tracker.spawn([url] { ... })`: GCC 12 destroys non-trivial
// temporaries of a co_await expression (the lambda and its captures) twice
// (docs/design.md, "GCC 12 and temporaries in co_await").
//
// # Errors
// * build() without a scheduler or an error policy: usage_error.
// * spawn / spawn_cancellable on a closed tracker: tracker_closed (the task
//   is destroyed unrun and not counted); an empty task: usage_error.
// * child_tracker() of a closed tracker: tracker_closed ("closed parent").
// * spawning with no runtime (not inside one, and none given to the
//   builder): usage_error; on a runtime shutting down: runtime_closed (the
//   task counts as issued and cancelled).
// * awaiting a task_handle twice or an empty one: usage_error.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/supervise/error_text.hpp>
#include <warden/supervise/tracker_metrics.hpp>
#include <warden/supervise/tracker_policy.hpp>
#include <warden/supervise/tracker_scheduler.hpp>
#include <warden/task.hpp>

#include <any>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace warden {

/// Spawning into, or making a child of, a closed tracker.
class tracker_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Why a tracked task did not yield a value.
class task_error : public std::exception {
 public:
  enum class kind : std::uint8_t {
    cancelled,  ///< the tracker or the task was cancelled, or the task aborted
    failed,     ///< it returned an error (the message is its text)
    panicked,   ///< it threw (cause() is the exception)
    rejected,   ///< the scheduler refused it (the message is the reason)
  };

  task_error(kind k, task_id id, std::string tracker, std::string message, std::exception_ptr cause = {});

  [[nodiscard]] kind reason() const noexcept { return kind_; }
  [[nodiscard]] bool is_cancelled() const noexcept { return kind_ == kind::cancelled; }
  [[nodiscard]] bool is_failed() const noexcept { return kind_ == kind::failed; }
  [[nodiscard]] bool is_panicked() const noexcept { return kind_ == kind::panicked; }
  [[nodiscard]] bool is_rejected() const noexcept { return kind_ == kind::rejected; }
  /// The error's text, the exception's what(), or the rejection reason.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// The exception of a panic (or of a failed continuation); null otherwise.
  [[nodiscard]] std::exception_ptr cause() const noexcept { return cause_; }
  [[nodiscard]] task_id id() const noexcept { return id_; }
  [[nodiscard]] const std::string& tracker() const noexcept { return tracker_; }
  /// "task 12 in tracker 'crawler' failed: timeout"
  [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }

 private:
  kind kind_;
  task_id id_;
  std::string tracker_;
  std::string message_;
  std::exception_ptr cause_;
  std::string what_;
};

/// What a spawn_cancellable task yields: ok (with a value unless T is
/// void), cancelled (it noticed its token and stopped), or an error.
template <class T>
class [[nodiscard]] cancellable_result {
 public:
  using value_type = T;
  using stored_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  static cancellable_result ok(stored_type value) { return cancellable_result(std::move(value)); }
  static cancellable_result ok() requires std::is_void_v<T> { return cancellable_result(std::monostate{}); }
  static cancellable_result cancelled() { return cancellable_result(cancelled_tag{}); }
  static cancellable_result error(std::string message) { return cancellable_result(error_tag{std::move(message)}); }

  [[nodiscard]] bool is_ok() const noexcept { return state_.index() == 0; }
  [[nodiscard]] bool is_cancelled() const noexcept { return state_.index() == 1; }
  [[nodiscard]] bool is_error() const noexcept { return state_.index() == 2; }
  /// The value (ok only; std::bad_variant_access otherwise).
  [[nodiscard]] stored_type& value() { return std::get<0>(state_); }
  /// The error's message ("" unless an error).
  [[nodiscard]] std::string_view error_message() const noexcept {
    return is_error() ? std::string_view(std::get<2>(state_).message) : std::string_view{};
  }

 private:
  struct cancelled_tag {};
  struct error_tag {
    std::string message;
  };
  template <class V>
  explicit cancellable_result(V&& v) : state_(std::forward<V>(v)) {}
  std::variant<stored_type, cancelled_tag, error_tag> state_;
};

class task_tracker;

namespace detail {

struct tracker_state;  // src/supervise/tracker_state.hpp

template <class T>
struct is_cancellable_result : std::false_type {};
template <class T>
struct is_cancellable_result<cancellable_result<T>> : std::true_type {};

template <class T>
struct is_std_expected : std::false_type {};
template <class V, class E>
struct is_std_expected<std::expected<V, E>> : std::true_type {};

/// What a task and its handle share: the tracker, and the task's own
/// cancellation token, made on first use (most tasks never need one).
class tracked_task {
 public:
  explicit tracked_task(std::shared_ptr<tracker_state> tracker) noexcept : tracker_(std::move(tracker)) {}
  tracked_task(const tracked_task&) = delete;
  tracked_task& operator=(const tracked_task&) = delete;

  [[nodiscard]] tracker_state& tracker() const noexcept { return *tracker_; }
  /// The task's own token: a child of the tracker's.
  const warden::cancellation_token& token();
  /// Is the task (or its tracker) cancelled? Does not make the token.
  [[nodiscard]] bool is_cancelled() const;

 private:
  std::shared_ptr<tracker_state> tracker_;
  std::once_flag once_;
  // release/acquire: made_ publishes token_ to readers that skip call_once.
  std::atomic<bool> made_{false};
  std::optional<warden::cancellation_token> token_;
};

/// A tracked task's outcome, written by its frame before the frame ends and
/// read by the handle after the (void) runtime task completed, which orders
/// the two. Neither set: the frame was destroyed first (aborted, shut down).
template <class T>
class tracked_result final : public tracked_task {
 public:
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  using tracked_task::tracked_task;
  std::optional<stored> value;
  std::optional<task_error> error;
};

/// std::allocator-shaped access to the per-thread frame allocator: the
/// per-task shared object is recycled like frames are.
template <class U>
struct frame_allocator {
  using value_type = U;
  frame_allocator() noexcept = default;
  template <class V>
  frame_allocator(const frame_allocator<V>&) noexcept {}
  U* allocate(std::size_t n) { return static_cast<U*>(allocate_frame(n * sizeof(U))); }
  void deallocate(U* p, std::size_t n) noexcept { deallocate_frame(p, n * sizeof(U)); }
  template <class V>
  friend bool operator==(const frame_allocator&, const frame_allocator<V>&) noexcept {
    return true;
  }
};

enum class slot_status : std::uint8_t { granted, wait, cancelled, rejected };

/// What the tracker decided after a failure (see on_failure).
enum class failure_verdict : std::uint8_t {
  fail,              ///< end failed
  run_continuation,  ///< run the failure's continuation next
  run_again,         ///< run the task's callable again
  cancelled,         ///< cancelled while backing off: end cancelled
};

/// One failed run, as the running frame saw it.
struct failure_report {
  std::string message;
  std::exception_ptr exception;
  bool panicked = false;
  bool has_continuation = false;
  bool reschedule = false;  ///< set by on_failure: the slot was given back, take a new one
};

/// Lives in the spawned frame, as a parameter (so it is destroyed with the
/// frame even if the task never runs): walks the task through its metrics
/// phases and, when destroyed, ends the task in its tracker — counted
/// cancelled if it never settled (aborted, destroyed unrun or at shutdown).
/// Only the frame touches it.
class tracker_ticket {
 public:
  explicit tracker_ticket(std::shared_ptr<tracked_task> task) noexcept : task_(std::move(task)) {}
  tracker_ticket(tracker_ticket&& other) noexcept
      : task_(std::move(other.task_)),
        policy_state_(std::move(other.policy_state_)),
        phase_(other.phase_),
        attempt_(other.attempt_) {}
  tracker_ticket(const tracker_ticket&) = delete;
  tracker_ticket& operator=(const tracker_ticket&) = delete;
  tracker_ticket& operator=(tracker_ticket&&) = delete;
  ~tracker_ticket();

  [[nodiscard]] tracked_task& tracked() const noexcept { return *task_; }

  /// The fast path: a slot at once (granted), or wait / cancelled / rejected.
  slot_status try_acquire(schedule_slot& slot, std::string& reason);
  /// The slow path: waits for the scheduler (cancellable by the task's token).
  task<slot_status> acquire(schedule_slot& slot, std::string& reason);
  /// Counts `started` the first time.
  void mark_started() noexcept;
  /// Decides about a failure (policy, custom actions, retry backoff). May
  /// release `slot` (when the policy asks to reschedule).
  task<failure_verdict> on_failure(failure_report& report, bool can_run_again, schedule_slot& slot);

  void settle_success() noexcept;
  /// Settles as cancelled / failed / panicked / rejected; returns the error.
  task_error settle_error(task_error::kind kind, std::string message = {}, std::exception_ptr cause = {}) noexcept;

 private:
  enum class phase : std::uint8_t { queued, active, settled };
  std::shared_ptr<tracked_task> task_;
  std::shared_ptr<std::any> policy_state_;  // failure_context::state, made at the first failure
  phase phase_ = phase::queued;
  std::uint32_t attempt_ = 0;
};

/// Spawns `wrapper` (a tracked frame) on the tracker's runtime.
template <class R>
join_handle<R> spawn_tracked(tracker_state& tracker, task<R> wrapper, spawn_options options);
runtime* tracker_runtime(const tracker_state& tracker) noexcept;

enum class work_kind : std::uint8_t { one_shot, factory, cancellable };

/// The work of a tracked task. `can_run_again` says whether a retry can
/// call it again.
template <class T>
struct one_shot_work {
  static constexpr work_kind kind = work_kind::one_shot;
  static constexpr bool can_run_again = false;
  task<T> body;
};
template <class T, class F>
struct factory_work {
  static constexpr work_kind kind = work_kind::factory;
  static constexpr bool can_run_again = true;
  F make;  // () -> task<T>
};
template <class T, class F>
struct cancellable_work {
  static constexpr work_kind kind = work_kind::cancellable;
  static constexpr bool can_run_again = true;
  F make;  // (cancellation_token) -> task<cancellable_result<T>>
};

/// The parameters of a tracked frame, in one object so that their order of
/// destruction is fixed: the work (and any frame it owns) first, the ticket
/// last. (Separate coroutine parameters are destroyed first-to-last by GCC
/// and last-to-first by Clang; the ticket must outlive the user's frame, or
/// join() could return while that frame's locals still exist.)
template <class Work>
struct tracked_run {
  tracker_ticket ticket;
  Work work;
};

/// The frame spawned for every tracked task: slot, runs, failures, metrics.
/// Its outcome goes into the tracked_result (so the runtime task is void:
/// no result box). Never throws: the tracker has already handled a failure,
/// so the runtime must not report it again.
template <class T, class Work>
task<void> run_tracked(tracked_run<Work> run) {
  using stored = typename tracked_result<T>::stored;
  tracker_ticket& ticket = run.ticket;
  Work& work = run.work;
  auto& outcome = static_cast<tracked_result<T>&>(ticket.tracked());
  schedule_slot slot;
  bool need_slot = true;
  std::function<task<T>(warden::cancellation_token)> continuation;
  for (;;) {
    if (need_slot) {
      std::string reason;
      slot_status status = ticket.try_acquire(slot, reason);
      if (status == slot_status::wait) status = co_await ticket.acquire(slot, reason);
      if (status == slot_status::cancelled) {
        outcome.error.emplace(ticket.settle_error(task_error::kind::cancelled));
        co_return;
      }
      if (status == slot_status::rejected) {
        outcome.error.emplace(ticket.settle_error(task_error::kind::rejected, std::move(reason)));
        co_return;
      }
      ticket.mark_started();
      need_slot = false;
    }

    std::optional<stored> value;
    failure_report failure;
    bool failed = false;
    bool cancelled = false;
    try {
      if (continuation) {
        // Tasks are made before the co_await, never inside it: GCC 12
        // mishandles non-trivial temporaries in a co_await expression.
        auto next = std::exchange(continuation, nullptr);
        task<T> running = next(ticket.tracked().token());
        if constexpr (std::is_void_v<T>) {
          co_await std::move(running);
          value.emplace();
        } else {
          value.emplace(co_await std::move(running));
        }
      } else if constexpr (Work::kind == work_kind::cancellable) {
        task<cancellable_result<T>> running = work.make(ticket.tracked().token());
        cancellable_result<T> r = co_await std::move(running);
        if (r.is_ok()) {
          value.emplace(std::move(r.value()));
        } else if (r.is_cancelled()) {
          cancelled = true;
        } else {
          failed = true;
          failure.message = std::string(r.error_message());
        }
      } else if constexpr (Work::kind == work_kind::factory) {
        if constexpr (std::is_void_v<T>) {
          co_await work.make();
          value.emplace();
        } else {
          value.emplace(co_await work.make());
        }
      } else {
        if constexpr (std::is_void_v<T>) {
          co_await std::move(work.body);
          value.emplace();
        } else {
          value.emplace(co_await std::move(work.body));
        }
      }
    } catch (const failed_with_continuation<T>& e) {
      failed = true;
      failure.message = e.what();
      failure.exception = std::current_exception();
      failure.has_continuation = true;
      continuation = e.next();
    } catch (...) {
      failed = true;
      failure.exception = std::current_exception();
      failure.panicked = true;
    }

    if constexpr (is_std_expected<stored>::value) {
      if (value.has_value() && !value->has_value()) {
        failed = true;
        failure.message = error_text(value->error());
        value.reset();
      }
    }
    if (cancelled) {
      outcome.error.emplace(ticket.settle_error(task_error::kind::cancelled));
      co_return;
    }
    if (!failed) {
      outcome.value.emplace(std::move(*value));
      ticket.settle_success();
      co_return;
    }

    const failure_verdict verdict = co_await ticket.on_failure(failure, Work::can_run_again, slot);
    switch (verdict) {
      case failure_verdict::run_continuation:
        break;
      case failure_verdict::run_again:
        continuation = nullptr;
        break;
      case failure_verdict::cancelled:
        outcome.error.emplace(ticket.settle_error(task_error::kind::cancelled));
        co_return;
      case failure_verdict::fail:
        outcome.error.emplace(
            ticket.settle_error(failure.panicked ? task_error::kind::panicked : task_error::kind::failed,
                                std::move(failure.message), std::move(failure.exception)));
        co_return;
    }
    need_slot = failure.reschedule;  // on_failure gave the slot back
  }
}

}  // namespace detail

/// The handle to a tracked task. Move-only. Dropping it leaves the task
/// running (the tracker still tracks it, join() waits for it).
template <class T>
class [[nodiscard]] task_handle {
 public:
  using outcome = std::expected<T, task_error>;

  task_handle() noexcept = default;
  task_handle(task_handle&&) noexcept = default;
  task_handle& operator=(task_handle&&) noexcept = default;

  class awaiter {
   public:
    explicit awaiter(task_handle& handle) : inner_(handle.join_), handle_(&handle) {}
    bool await_ready() { return inner_.await_ready(); }
    bool await_suspend(std::coroutine_handle<> awaiting) { return inner_.await_suspend(awaiting); }
    outcome await_resume() { return handle_->take(inner_.await_resume(), *handle_->task_); }

   private:
    join_handle<void>::awaiter<true> inner_;
    task_handle* handle_;
  };

  /// Yields the value, or the task_error saying why there is none. Once.
  /// Throws usage_error on an empty or already awaited handle.
  awaiter operator co_await() & { return awaiter(*this); }
  awaiter operator co_await() && { return awaiter(*this); }

  /// Blocks the calling thread (not a worker) until the task ends.
  outcome join() {
    std::expected<void, join_error> done;
    try {
      join_.join();
    } catch (const join_error& e) {
      done = std::unexpected(e);
    }
    return take(std::move(done), *task_);
  }

  /// Aborts the task: not started yet, it never runs; waiting for a slot or
  /// suspended, its frame is destroyed (locals and slot released); running,
  /// at its next suspension. It ends `cancelled`. No-op once it ended.
  void abort() const noexcept { join_.abort(); }
  [[nodiscard]] bool is_finished() const noexcept { return join_.is_finished(); }
  /// The task's own token (a child of its tracker's): cancelling it cancels
  /// this task only — a waiting task stops waiting, a spawn_cancellable task
  /// sees it. Throws usage_error on an empty handle.
  [[nodiscard]] warden::cancellation_token cancellation_token() const {
    if (task_ == nullptr) throw usage_error("task_handle::cancellation_token: the handle is empty");
    return task_->token();
  }
  [[nodiscard]] task_id id() const noexcept { return join_.id(); }
  [[nodiscard]] bool valid() const noexcept { return task_ != nullptr; }

 private:
  friend class task_tracker;
  task_handle(join_handle<void> join, std::shared_ptr<detail::tracked_result<T>> task) noexcept
      : join_(std::move(join)), task_(std::move(task)) {}

  outcome take(std::expected<void, join_error> done, detail::tracked_result<T>& result) const;

  join_handle<void> join_;
  std::shared_ptr<detail::tracked_result<T>> task_;
};

/// A node of a tracker tree. A cheap, copyable handle: copies refer to the
/// same tracker; the tracker lives as long as a handle, a child or a task
/// of it. Every member may be called from any thread.
class task_tracker {
 public:
  class builder;

  /// Spawns `t` into the tracker (see "A task's life" above).
  template <class T>
  task_handle<T> spawn(task<T> t, spawn_options options = {}) {
    if (!t.valid()) throw usage_error("task_tracker::spawn: the task is empty (moved-from or default-constructed)");
    return launch<T>(detail::one_shot_work<T>{std::move(t)}, options);
  }

  /// Spawns the task `make()` returns; `make` is called again for a retry.
  template <class F>
  requires std::invocable < std::decay_t<F>
  & > &&task_type<std::invoke_result_t<std::decay_t<F>&>> auto spawn(F&& make, spawn_options options = {}) {
    using T = typename std::invoke_result_t<std::decay_t<F>&>::value_type;
    return launch<T>(detail::factory_work<T, std::decay_t<F>>{std::forward<F>(make)}, options);
  }

  /// Spawns `make(token)` once the slot is granted; `make` returns a
  /// task<cancellable_result<T>>; `token` is the task's own token. Called
  /// again for a retry.
  template <class F>
  requires std::invocable < std::decay_t<F>
  &, warden::cancellation_token > auto spawn_cancellable(F&& make, spawn_options options = {}) {
    using R = std::invoke_result_t<std::decay_t<F>&, warden::cancellation_token>;
    static_assert(task_type<R> && detail::is_cancellable_result<typename R::value_type>::value,
                  "spawn_cancellable: the callable must return a task<cancellable_result<T>>");
    using T = typename R::value_type::value_type;
    return launch<T>(detail::cancellable_work<T, std::decay_t<F>>{std::forward<F>(make)}, options);
  }

  /// A child tracker: same scheduler, policy->create_child(), token a child
  /// of this one's. Throws tracker_closed if this tracker is closed.
  [[nodiscard]] task_tracker child_tracker() const;
  /// A builder for a child, preset as child_tracker() would make it.
  [[nodiscard]] builder child_tracker_builder() const;

  /// Closes the tracker and cancels its token and its whole subtree.
  void cancel() const;
  /// Stops accepting tasks and children (running ones go on). Idempotent.
  void close() const noexcept;
  [[nodiscard]] bool is_closed() const noexcept;
  /// This tracker's token (cancelled by cancel(), by an ancestor's, or by
  /// the builder's cancel_token).
  [[nodiscard]] warden::cancellation_token cancellation_token() const;
  /// Child trackers alive right now.
  [[nodiscard]] std::size_t child_count() const;
  /// Closes the subtree (children first) and waits for all its tasks.
  [[nodiscard]] task<void> join() const;
  /// This tracker's counters (its subtree's, rolled up).
  [[nodiscard]] std::shared_ptr<tracker_metrics> metrics() const;
  [[nodiscard]] const std::string& name() const noexcept;
  /// The Prometheus text for this tracker and every tracker below it.
  [[nodiscard]] std::string prometheus_text() const;

  friend bool operator==(const task_tracker& a, const task_tracker& b) noexcept { return a.state_ == b.state_; }

 private:
  explicit task_tracker(std::shared_ptr<detail::tracker_state> state) noexcept : state_(std::move(state)) {}

  /// Admits one task (tracker_closed if closed) and counts it issued; a
  /// task admitted must be ended with `detail::end_task` (the ticket does).
  void admit(const char* what) const;
  void abandon() const noexcept;  // admitted, but its shared object could not be made

  template <class T>
  std::shared_ptr<detail::tracked_result<T>> make_tracked() const {
    admit("spawn");
    try {
      return std::allocate_shared<detail::tracked_result<T>>(detail::frame_allocator<detail::tracked_result<T>>{},
                                                             state_);
    } catch (...) {
      abandon();
      throw;
    }
  }

  template <class T, class Work>
  task_handle<T> launch(Work work, spawn_options options) {
    std::shared_ptr<detail::tracked_result<T>> tracked = make_tracked<T>();
    // From here the ticket owns the task's accounting: if the frame is
    // destroyed unrun (the runtime refuses it), it ends counted cancelled.
    auto wrapper =
        detail::run_tracked<T, Work>(detail::tracked_run<Work>{detail::tracker_ticket(tracked), std::move(work)});
    auto join = detail::spawn_tracked(*state_, std::move(wrapper), options);
    return task_handle<T>(std::move(join), std::move(tracked));
  }

  std::shared_ptr<detail::tracker_state> state_;
};

/// Configures and builds a task_tracker.
class task_tracker::builder {
 public:
  builder() = default;
  /// Required: when tasks may start.
  builder& scheduler(std::shared_ptr<task_scheduler> s) {
    scheduler_ = std::move(s);
    return *this;
  }
  /// Required: what failures do.
  builder& error_policy(std::shared_ptr<warden::error_policy> p) {
    policy_ = std::move(p);
    return *this;
  }
  /// Optional: where the counts go (default: a new tracker_metrics).
  builder& metrics(std::shared_ptr<tracker_metrics> m) {
    metrics_ = std::move(m);
    return *this;
  }
  /// Optional: the tracker's token becomes a child of `t`.
  builder& cancel_token(warden::cancellation_token t) {
    parent_token_ = std::move(t);
    return *this;
  }
  /// Optional: the `tracker` label and the name in errors (default "tracker",
  /// or "<parent>/<n>" for a child).
  builder& name(std::string n) {
    name_ = std::move(n);
    return *this;
  }
  /// Optional: the runtime tasks run on (default: the caller's at each spawn).
  builder& runtime(warden::runtime& rt) {
    runtime_ = &rt;
    return *this;
  }
  /// Throws usage_error without a scheduler or an error policy, and
  /// tracker_closed for a child whose parent closed meanwhile.
  [[nodiscard]] task_tracker build();

 private:
  friend class task_tracker;
  std::shared_ptr<task_scheduler> scheduler_;
  std::shared_ptr<warden::error_policy> policy_;
  std::shared_ptr<tracker_metrics> metrics_;
  std::optional<warden::cancellation_token> parent_token_;
  std::optional<std::string> name_;
  warden::runtime* runtime_ = nullptr;
  std::shared_ptr<detail::tracker_state> parent_;
};

// ---- Templates -------------------------------------------------------------------

template <class R>
join_handle<R> detail::spawn_tracked(tracker_state& tracker, task<R> wrapper, spawn_options options) {
  runtime* rt = tracker_runtime(tracker);
  return rt != nullptr ? rt->spawn(std::move(wrapper), options) : warden::spawn(std::move(wrapper), options);
}

template <class T>
auto task_handle<T>::take(std::expected<void, join_error> done, detail::tracked_result<T>& result) const -> outcome {
  if (result.value) {
    if constexpr (std::is_void_v<T>)
      return {};
    else
      return std::move(*result.value);
  }
  if (result.error) return std::unexpected(std::move(*result.error));
  // No outcome: the frame was destroyed first (aborted, or runtime
  // shutdown), or it failed to allocate (its only possible exception).
  if (done) return std::unexpected(task_error(task_error::kind::cancelled, join_.id(), {}, "aborted"));
  const join_error& e = done.error();
  return std::unexpected(task_error(e.is_panic() ? task_error::kind::panicked : task_error::kind::cancelled, e.id(),
                                    std::string(), e.is_panic() ? std::string(e.panic_message()) : "aborted",
                                    e.is_panic() ? e.exception() : std::exception_ptr{}));
}

}  // namespace warden
