// Internal: the header of a spawned task, its state word and its wakers.
//
// # What a spawned task is made of
// * the root coroutine frame: the `task<T>` handed to `spawn`, which holds the
//   result (value or exception) in its promise once it finishes;
// * one `task_header`, from a process-wide type-stable pool (see
//   header_pool.cpp). The header is separate from the frame so that wakers,
//   join handles and abort handles can outlive the frame: cancellation
//   destroys the frame, never the header.
//
// # References
// The REFS field of the state word counts owners of the header: the runtime
// holds one from spawn until the task completes (the "lifecycle" reference;
// whichever queue or worker holds the task uses it), and every join handle,
// abort handle and waker holds one. The last release destroys a frame still
// attached and returns the header to the pool. Living in the state word, the
// lifecycle reference goes in the same CAS that publishes COMPLETE, and a
// dropped join handle clears JOIN_INTEREST and its reference in one RMW:
// after such an RMW the thread must not touch the header again unless it
// dropped the last reference (then it frees it). Only an owner may make a
// new reference (clone a waker, make an abort handle), except the pool
// sweeps of shutdown, which never take one on a complete task; so the last
// owner of a complete task, seeing itself alone, frees it with no RMW.
//
// # The state word (`state`)
//   RUNNING        a worker is resuming the task right now (exclusive
//                  owner), or the task sits in a run queue claimed for its
//                  next poll (woken, re-queued or yielded; see below)
//   SCHEDULED      the task sits in a run queue (or is about to), not yet
//                  claimed: new, or queued by abort
//   NOTIFIED       woken while RUNNING: the worker re-queues it after the poll
//   COMPLETE       the outcome is final and the frame is finished/destroyed
//   ABORT          abort() was requested (sticky)
//   JOIN_INTEREST  a join handle still wants the result
//   JOIN_WAITER    `join_waiter` points to the waker of whoever awaits the
//                  handle
//   PANICKED / CANCELLED: the outcome, set together with COMPLETE
//   SOLO           idle, and the one waker of this suspension is an
//                  unowned_waker published after the task went idle; no
//                  reference but the lifecycle one: a worker of the task's
//                  runtime may wake it with a plain store ("Solo" in
//                  task_header.cpp)
//   REFS           bits 10-35: the reference count (see above)
//   generation     bits 36-63: counts polls (see GENERATION_SHIFT)
// At most one of RUNNING / SCHEDULED / COMPLETE is set, and only the thread
// that moved the task into RUNNING (a worker), or the one it handed the task
// to through a run queue, resumes or destroys the frame. A woken task goes
// to its run queue already RUNNING with a new generation, and so does a task
// re-queued after a wake during its poll, or one that awaited yield_now (no
// state change on that path, unless the poll made a waker: then only a new
// generation). Ownership passes through the queue to the worker that pops
// it, everybody else treats it as running, and no waker of its generation
// exists until its next poll makes one; so that poll starts with no RMW
// ("Claimed in advance" in task_header.cpp). A new task is claimed in advance
// too: spawn queues it RUNNING in generation 0, before any waker exists.
//
// # Who touches which field when
// * `resume_point` is written by the task's own thread while RUNNING (the
//   awaiter that suspends records the handle to resume) and read by the next
//   poller; the RUNNING -> idle transition (release) and the SCHEDULED ->
//   RUNNING transition (acquire) order them.
// * `join_waiter` points to a waker that the awaiting side keeps (in its
//   awaiter or on its stack); it writes the pointer before it sets
//   JOIN_WAITER (release) and the completer reads it after its COMPLETE
//   transition (acquire) saw JOIN_WAITER. Whoever clears JOIN_WAITER (an
//   awaiter leaving early) keeps its waker; a completer that saw JOIN_WAITER
//   moves the waker out and then stores null (release), and only then may
//   the awaiting side destroy the waker: clear_join_waker waits for that
//   store when it finds the task complete with JOIN_WAITER set (a few
//   instructions of the completer; see set_join_waker).
// * `root`: the poller owns it (the promise is found through the result_ops
//   of the task's spawn site). At completion the poller moves the outcome
//   out (`result` box or `error`) and destroys the frame at once, so the
//   task's parameters and captures die when it finishes. A root whose value
//   fits the `result` slot (or void) and whose body did not throw does that
//   itself: it leaves the value's bits to its poller and destroys itself
//   without suspending at final_suspend ("Roots that end without
//   suspending" in task.hpp); the poller then clears `root`.
// * the site (result_ops, scheduler and spawn location, interned per call
//   site, result type and scheduler; `site_of`): written at spawn, never
//   changed; anyone holding a reference may read it. It shares the word
//   `site_or_extras` with the extras (below): the site pointer until the
//   task has extras, then the extras' pointer tagged with kExtrasTag, and
//   the extras hold the site.
// * `result` shares the resume point's slot, unused once the task has
//   finished: the completer stores the value there before COMPLETE is
//   published.
// * the value in `result` / the panic record (in the extras): written before
//   COMPLETE is published; afterwards owned by the holder of JOIN_INTEREST (the join
//   handle), or dropped by whoever ends that interest without taking them.
// * the extras (`extras_of`): set before the header is published when the
//   task has a name or inherits task-locals; otherwise installed (CAS of
//   `site_or_extras` from the bare site, release) the first time the task
//   binds a task_local or panics (its own thread), or anyone asks for its
//   id (any thread holding a reference, or a sweep: task_id_of). Readers
//   load the word with acquire. The record is never replaced or freed
//   before the header is (freeing it puts the bare site back); the id in it
//   is set once (CAS from 0).
// * `queue_next` belongs to the queue that holds the task.
// * `park_link` belongs to the event the task is parked in (see
//   event.hpp), under that event's lock.
//
// # Size
// 56 bytes, seven words; the pool packs them with no padding (a parked
// task's memory is this plus its frame), so headers do not sit one per cache
// line. Everything a plain task does not need lives in the extras, the id
// included (given when first asked for); the result_ops, the scheduler and
// the spawn location are one pointer to an interned record per call site,
// result type and scheduler, which shares its word with the extras'
// pointer; an event's FIFO link has the seventh word; the value takes the resume point's
// slot once the task has finished; the root promise is derived from `root`
// (result_ops::promise); the join waker stays with the joiner (the header
// keeps a pointer); the reference count shares the state word.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>

namespace warden::detail {

class promise_base;
struct task_header;
class thread_parker;
class failure_sink;
struct task_locals;
struct task_panic;

enum class schedule_hint : std::uint8_t {
  spawn,  // a new task: back of the current worker's queue
  wake,   // woken by another task: the LIFO slot of the current worker
  yield,  // re-queued after being notified while running: back of the queue
};

/// Where a task goes when it becomes runnable, and who is told when it ends.
/// Implemented by the runtime's scheduler and by the blocking pool.
class task_scheduler {
 public:
  virtual void schedule(task_header* task, schedule_hint hint) noexcept = 0;
  /// Called once per task, by the thread that completed it, after its
  /// outcome was published. The task is not named: by then its header may
  /// be freed already (its lifecycle reference went with COMPLETE).
  virtual void on_complete() noexcept = 0;
  /// Where this scheduler's unhandled failures (R17) go.
  virtual failure_sink* failures() noexcept = 0;
  /// Blocks the calling thread (not a task) until `task` completes, running
  /// tasks meanwhile if this scheduler has no threads of its own.
  virtual void wait_for(task_header* task) = 0;

 protected:
  ~task_scheduler() = default;
};

/// Owning, move-only reference to something that can be woken: a task (its
/// header) or a blocked thread (its parker). Waking a finished task is a
/// no-op.
class waker {
 public:
  waker() noexcept = default;
  waker(waker&& other) noexcept
      : bits_(std::exchange(other.bits_, 0)), generation_(std::exchange(other.generation_, 0)) {}
  waker& operator=(waker&& other) noexcept {
    if (this != &other) {
      reset();
      bits_ = std::exchange(other.bits_, 0);
      generation_ = std::exchange(other.generation_, 0);
    }
    return *this;
  }
  waker(const waker&) = delete;
  waker& operator=(const waker&) = delete;
  ~waker() { reset(); }

  /// A waker for `task`'s current suspension (takes a reference). Only the
  /// task itself may call this, while it runs (awaiters use
  /// suspend_current, which also records the resume point).
  static waker for_task(task_header* task) noexcept;
  /// Another waker for the same target and suspension.
  [[nodiscard]] waker clone() const noexcept;
  /// A waker for a blocked thread (takes a reference on its parker).
  static waker for_thread(thread_parker* parker) noexcept;
  /// A waker for whatever is running on this thread now: the current task,
  /// or else this thread.
  static waker for_current() noexcept;
  /// A waker for the suspension `task` is parked in now, adopting a
  /// reference the caller owns (from suspend_current_task). Only for the
  /// holder of the one waker of that suspension: the task cannot leave it
  /// but through this wake, or by being aborted (which makes the wake moot),
  /// so its current generation is that suspension's.
  static waker for_parked(task_header* task) noexcept;

  /// Wakes the target and releases this waker.
  void wake() noexcept {
    wake_by_ref();
    reset();
  }
  void wake_by_ref() const noexcept;
  void reset() noexcept {
    if (bits_ != 0) release_target();  // an empty waker (the common join awaiter's) costs no call
  }
  explicit operator bool() const noexcept { return bits_ != 0; }

 private:
  /// reset() of a non-empty waker.
  void release_target() noexcept;

  static constexpr std::uintptr_t kThreadTag = 1;
  std::uintptr_t bits_ = 0;
  std::uint32_t generation_ = 0;  // tasks only: see task_header::GENERATION_SHIFT
  // sizeof(waker) is 16 but only 12 bytes hold data; a [[no_unique_address]]
  // waker lets the next member use the other 4 (wait_node::status).
};

/// How to move a finished root frame's value out of its promise, so the
/// frame (with the task's parameters and lambda captures) can be destroyed
/// the moment the task completes. One constant instance per result type
/// (see result_ops_for in join_handle.hpp). `extract`, given the finished
/// root frame, returns false if its body threw (nothing moved), else stores
/// the value in the header's `result` slot (nothing for void) and returns
/// true; it throws if the value's move throws. The value goes inline when
/// it is a small trivially copyable type (then `destroy` is null: nothing
/// to free), else as a pointer to a box. `destroy` frees a box left in the
/// slot (a null slot is fine) and clears the slot; null for void.
/// `promise` finds the promise of a root frame of this result type (the
/// header keeps only the frame).
struct result_ops {
  bool (*extract)(std::coroutine_handle<> root, void*& slot);
  void (*destroy)(void*& slot) noexcept;
  promise_base& (*promise)(std::coroutine_handle<> root) noexcept;
};

/// What every task spawned at one place with one result type on one
/// scheduler shares: how to handle its root's value, where it goes when it
/// becomes runnable and where the spawn is. Interned (see
/// intern_spawn_site): one immutable record per (location, result type,
/// scheduler), never freed, so a header keeps one pointer for the three.
struct spawn_site {
  const result_ops* results;
  task_scheduler* scheduler;
  std::source_location location;
};

/// The record for `location`, `results` and `scheduler`: found in a per-thread cache
/// (a few loads and compares), or else made once for the process under a
/// lock. For the spawn of `root`: if it throws (std::bad_alloc), it first
/// destroys `root`, which then never runs.
const spawn_site* intern_spawn_site(std::coroutine_handle<> root, const std::source_location& location,
                                    const result_ops& results, task_scheduler* scheduler);

/// Per-task data most tasks do not need, allocated only when used (see
/// `task_header::extras` for who may create it) and freed with the header.
struct task_extras {
  // The task's spawn site: once a task has extras, its header points to
  // them instead of to the site (see task_header::site_or_extras).
  const spawn_site* site = nullptr;
  std::string name;  // set at spawn, never changed
  // task_local<T> bindings; only the task's own thread touches them.
  task_locals* locals = nullptr;
  // Set when the task panicked (before COMPLETE is published): the
  // exception, and a reference to the failure sink that reports it if no
  // join handle takes it.
  task_panic* panic = nullptr;
  // The task's id, given the first time anyone asks (task_id_of); 0 until
  // then. Any thread may set it (CAS from 0); never changed once set.
  std::atomic<std::uint64_t> id{0};
};

/// 56 bytes (see "Size" at the top of this file).
struct task_header {
  // State bits; see the top of this file.
  static constexpr std::uint64_t RUNNING = 1ull << 0;
  static constexpr std::uint64_t SCHEDULED = 1ull << 1;
  static constexpr std::uint64_t NOTIFIED = 1ull << 2;
  static constexpr std::uint64_t COMPLETE = 1ull << 3;
  static constexpr std::uint64_t ABORT = 1ull << 4;
  static constexpr std::uint64_t JOIN_INTEREST = 1ull << 5;
  static constexpr std::uint64_t JOIN_WAITER = 1ull << 6;
  static constexpr std::uint64_t PANICKED = 1ull << 7;
  static constexpr std::uint64_t CANCELLED = 1ull << 8;
  static constexpr std::uint64_t SOLO = 1ull << 9;
  // Bits 10-35 count references (see "References" at the top): up to 2^26 - 1
  // owners at once; retain() aborts the process with a message beyond that.
  static constexpr int REF_SHIFT = 10;
  static constexpr std::uint64_t REF_ONE = 1ull << REF_SHIFT;
  static constexpr std::uint64_t REF_MASK = ((1ull << 26) - 1) << REF_SHIFT;
  static constexpr std::uint32_t refs_of(std::uint64_t state) noexcept {
    return static_cast<std::uint32_t>((state & REF_MASK) >> REF_SHIFT);
  }
  // The upper 28 bits count polls (modulo 2^28): the *generation* of the
  // current suspension. A waker remembers the generation it was made in and
  // wakes only if the task has not been polled since, so a wake left over
  // from an earlier suspension (the losing side of a race between two
  // events) can never resume the task at a later, unrelated await.
  static constexpr int GENERATION_SHIFT = 36;
  static constexpr std::uint64_t GENERATION_ONE = 1ull << GENERATION_SHIFT;
  static constexpr std::uint32_t generation_of(std::uint64_t state) noexcept {
    return static_cast<std::uint32_t>(state >> GENERATION_SHIFT);
  }

  // What every poll touches first, then what spawn, completion and the
  // join side need.
  std::atomic<std::uint64_t> state{0};
  task_header* queue_next = nullptr;
  union {
    // Until the task completes: where its next poll resumes it.
    std::coroutine_handle<> resume_point{};
    // Once complete: the value (inline or boxed; see result_ops) until
    // taken, null for void or once taken.
    void* result;
  };
  std::coroutine_handle<> root;
  std::atomic<waker*> join_waiter{nullptr};
  // The task's spawn site (its root's result_ops, its scheduler and the
  // spawn location; see site_of), or, once the task has extras (name,
  // task-locals, panic record, id; see extras_of), the extras tagged with
  // kExtrasTag, which hold the site. One word for the two: most tasks never
  // get extras, and the site costs one predictable branch more to reach.
  // Written at spawn; then changed only by installing extras (a CAS, see
  // "Who touches which field when" above) and by the pool freeing them.
  std::atomic<std::uintptr_t> site_or_extras{0};
  static constexpr std::uintptr_t kExtrasTag = 1;
  // While the task is parked in an event: its entry in the event's FIFO,
  // the next entry's header with the kQueued / kLeft bits (see event.hpp).
  // Only the event touches it, under its lock (set() also reads an entry it
  // has just taken out, before it wakes the task).
  std::uintptr_t park_link = 0;
  static constexpr std::uintptr_t kQueued = 1;  // in an event's FIFO
  static constexpr std::uintptr_t kLeft = 2;    // the task left (aborted): a stale entry

  [[nodiscard]] bool is_complete() const noexcept { return (state.load(std::memory_order_acquire) & COMPLETE) != 0; }
};

// ---- operations on a task (task_header.cpp) --------------------------------

/// How to handle the value of the task's root frame (and of its result,
/// once complete).
/// The task's spawn site (see task_header::site_or_extras).
inline const spawn_site* site_of(const task_header* task) noexcept {
  // acquire: pairs with the release CAS that installs extras (the extras'
  // `site` is written before it).
  const std::uintptr_t bits = task->site_or_extras.load(std::memory_order_acquire);
  if ((bits & task_header::kExtrasTag) != 0) [[unlikely]]
    return reinterpret_cast<const task_extras*>(bits - task_header::kExtrasTag)->site;
  return reinterpret_cast<const spawn_site*>(bits);
}
/// The task's extras, null if it has none yet.
inline task_extras* extras_of(const task_header* task) noexcept {
  // acquire: the record may have been installed by another thread.
  const std::uintptr_t bits = task->site_or_extras.load(std::memory_order_acquire);
  return (bits & task_header::kExtrasTag) != 0 ? reinterpret_cast<task_extras*>(bits - task_header::kExtrasTag)
                                               : nullptr;
}
/// Whether the task has extras (relaxed: for the owner of the header).
inline bool has_extras_relaxed(const task_header* task) noexcept {
  return (task->site_or_extras.load(std::memory_order_relaxed) & task_header::kExtrasTag) != 0;
}
/// For spawn, before the header is published: the task's site, and its
/// name when it has one (then extras are made for it; throws
/// std::bad_alloc).
inline void set_spawn_site(task_header* task, const spawn_site* site, std::string_view name) {
  std::uintptr_t bits = reinterpret_cast<std::uintptr_t>(site);
  if (!name.empty()) [[unlikely]]
    bits = reinterpret_cast<std::uintptr_t>(new task_extras{site, std::string(name)}) | task_header::kExtrasTag;
  // relaxed: the header is published by the release store of its state.
  task->site_or_extras.store(bits, std::memory_order_relaxed);
}
inline const result_ops& root_results(const task_header* task) noexcept { return *site_of(task)->results; }
/// Where the task goes when it becomes runnable, and who is told when it
/// ends (the runtime's scheduler, its blocking pool, a local executor's).
inline task_scheduler* scheduler_of(const task_header* task) noexcept { return site_of(task)->scheduler; }
/// Where the task was spawned.
inline const std::source_location& spawn_location(const task_header* task) noexcept { return site_of(task)->location; }
/// The promise of the task's root frame, while it is attached.
inline promise_base& root_promise(const task_header* task) noexcept { return root_results(task).promise(task->root); }
/// The task's extras, allocated if it has none yet. Only the task's own
/// thread (or the spawner, before the header is published) may call this
/// (the fields other than the id are its own). Throws std::bad_alloc.
task_extras& extras_for(task_header* task);
/// The task's id (unique in the process, never changed), given the first
/// time it is asked for: it lives in the extras, which this installs if the
/// task has none yet. Anyone holding a reference may call it, from any
/// thread. 0 only if there is no memory for the extras.
std::uint64_t task_id_of(const task_header* task) noexcept;
/// The panic record, if the task panicked and it was recorded.
inline task_panic* panic_of(const task_header* task) noexcept {
  // relaxed: the record is written before COMPLETE is published, and every
  // reader has seen COMPLETE (acquire) or is the task's own thread.
  task_extras* e = extras_of(task);
  return e != nullptr ? e->panic : nullptr;
}

void retain(task_header* task) noexcept;
void release(task_header* task) noexcept;
/// Makes the task runnable for the suspension of `generation` (no-op if
/// the task was polled or woken since, or is complete, queued or already
/// notified).
void wake(task_header* task, std::uint32_t generation) noexcept;
/// wake() through an unowned_waker (see there): `word` and `solo` are its
/// fields.
void wake_unowned(task_header* task, std::uint64_t word, const task_scheduler* solo) noexcept;
/// Requests cancellation; see join_handle::abort. Also queues an idle task
/// already marked by request_abort.
void abort(task_header* task) noexcept;
/// Marks the task aborted without queuing it: its next poll destroys it
/// instead of resuming it (shutdown marks every task before queuing any, so
/// no task resumes because another one's cancellation woke it).
void request_abort(task_header* task) noexcept;
/// Drops the join interest and the join handle's reference, in one RMW when
/// it can. Reports the failure as unhandled if the task already panicked and
/// its result was never taken, and drops a result nobody took.
void release_join_interest(task_header* task) noexcept;
/// Registers `w` to be woken at completion; `w` stays where it is (the
/// header keeps a pointer to it). False (and `w` untouched) if the task is
/// already complete. Throws usage_error if a waiter is registered. After
/// true, the caller must call clear_join_waker before `w` dies, even once
/// woken through it.
bool set_join_waker(task_header* task, waker& w);
/// Withdraws a registered join waker if the task has not completed yet; if
/// it has, waits until the completer is done with the waker (it moves it out
/// right after its COMPLETE transition), so the caller may destroy it.
void clear_join_waker(task_header* task) noexcept;
/// Destroys the root frame if still attached.
void destroy_root(task_header* task) noexcept;
/// Destroys the boxed result if one is left.
void drop_result(task_header* task) noexcept;
/// Runs one poll of a SCHEDULED task on the calling thread: resumes it (or
/// destroys it if aborted), then completes, parks or re-queues it.
void poll_task(task_header* task) noexcept;
/// poll_task, except that a task that awaited yield_now is not re-queued:
/// returned instead (else nullptr), and the caller queues it (at the back,
/// as schedule_hint::yield would), still RUNNING. For a worker polling a
/// task of its own runtime, which knows where the task goes without asking
/// the scheduler. On a worker's loop the poll may go on with the task it
/// woke (runtime_core::take_lifo_next), so the task returned may be that
/// one rather than `task`.
[[nodiscard]] task_header* poll_task_yielded(task_header* task) noexcept;

/// The task the calling thread is running now (nullptr outside tasks).
task_header* current_task() noexcept;

/// For awaiters: records `awaiting` as the point where the current task
/// resumes and returns a waker for it. Every warden awaiter that suspends
/// calls this in await_suspend before publishing the waker. Throws
/// usage_error outside a warden task.
waker suspend_current(std::coroutine_handle<> awaiting);

/// suspend_current for a primitive that keeps the one waker of this
/// suspension as a bare task pointer, to save the generation's bytes in the
/// parked frame (the event's awaiter, event.hpp): records `awaiting` as the
/// resume point and returns the current task with a new reference, which
/// the caller owns (it gives it back with release(), or hands it to
/// waker::for_parked to wake the task). Throws usage_error outside a warden
/// task.
task_header* suspend_current_task(std::coroutine_handle<> awaiting);

/// A waker that holds no reference: a task and the generation of one of its
/// suspensions. It saves the two reference-count RMWs of a `waker` (retain
/// when made, release when dropped), so only a structure that can guarantee
/// the task's header outlives every wake() may keep one, and it must say
/// how where it does (see the receiver's waker in mpsc_state.hpp). Stronger
/// still, a wake() through one must end before the task can complete (its
/// completion may then change the state word with a plain store: see
/// "complete, alone" in task_header.cpp).
/// The suspension is told by `word`: the task's state word as a solo park
/// left it (idle, SOLO: "Solo" in task_header.cpp), or else the suspension's
/// generation in its place with RUNNING and SCHEDULED set, a word no task
/// ever has (at most one of the two is set). A wake
/// that finds the task's word equal to `word` (one compare) knows the task
/// is still parked solo in that suspension, untouched since; otherwise
/// only the generation counts. `solo`, with a solo park's word, is the task's runtime (its
/// scheduler), whose worker parked it: a wake on a thread with that solo
/// scheduler is on a worker of the task's runtime without reading the
/// task's site. Otherwise not_solo(), which no thread's solo scheduler
/// (a runtime, or null) ever equals: so the wake tells the two kinds
/// apart by that one compare, which it makes anyway.
struct unowned_waker {
  /// `solo` of a waker that is not a solo park's: no object's address.
  [[gnu::always_inline]] static const task_scheduler* not_solo() noexcept {
    return reinterpret_cast<const task_scheduler*>(std::uintptr_t{1});
  }
  task_header* task = nullptr;
  std::uint64_t word = task_header::RUNNING | task_header::SCHEDULED;  // word_of(0)
  const task_scheduler* solo = not_solo();
  /// The word of a waker for the suspension of `generation` that is not a
  /// solo park.
  static constexpr std::uint64_t word_of(std::uint32_t generation) noexcept {
    return (std::uint64_t{generation} << task_header::GENERATION_SHIFT) | task_header::RUNNING | task_header::SCHEDULED;
  }
  void wake() const noexcept { detail::wake_unowned(task, word, solo); }
};

/// suspend_current for an unowned_waker (same contract otherwise).
unowned_waker suspend_current_unowned(std::coroutine_handle<> awaiting);

/// A park whose publication waits for the end of the poll: `commit` makes
/// the waker `unowned_waker{task, word, solo}` visible to the waking side
/// (one atomic operation on the awaiter's own structure) and returns true,
/// or returns false, publishing nothing, if what the awaiter waits for is
/// already there (the task is then polled again, resuming at the same
/// point). `commit` runs on the
/// polling thread after the awaiting coroutine suspended, at most once, and
/// not at all if the task is aborted at that suspension (the awaiter's
/// destructor then finds nothing published). The waker comes as its
/// fields: `word` is the solo park's state word when the park is solo (the
/// poller has it in a register) and `solo` the task's runtime, else
/// unowned_waker::word_of the suspension's generation and
/// unowned_waker::not_solo().
struct deferred_park {
  bool (*commit)(void* awaiter, task_header* task, std::uint64_t word, const task_scheduler* solo) noexcept = nullptr;
  void* awaiter = nullptr;
};

class runtime_core;
struct worker;

/// What the calling thread is doing for warden right now. Each thread has
/// one `thread_context`. Only the thread itself reads or writes it, so it
/// needs no synchronisation. (Here rather than in the library's sources so
/// that defer_park can be inline.)
struct thread_context {
  runtime_core* core = nullptr;  // the runtime this thread belongs to (worker, driver, blocking thread)
  worker* on_worker = nullptr;   // set on a worker thread, and on a current-thread driver while driving
  task_header* task = nullptr;   // the task being polled on this thread
  bool yield_requested = false;  // the polled task awaited yield_now: re-queue it when the poll ends
  // Task wakers made on this thread (waker::for_task), ever; wraps. poll_task
  // compares it before and after a resume: see "poll end, yield" in
  // task_header.cpp.
  std::uint32_t wakers_made = 0;
  // While a helped poll may complete it: the task a join handle awaits on
  // this thread, that handle idle ("complete", await_now: task_header.cpp).
  task_header* awaited_here = nullptr;
  // A park the polled task deferred to the end of its poll (defer_park);
  // empty outside that window.
  deferred_park pending_park;
  // Set on the threads of a runtime that lets its workers change the state
  // word of its tasks with plain stores where only a shutdown sweep could
  // race ("Solo" in task_header.cpp): that runtime. The section's two flags
  // (this thread inside such a change, a sweep coming) are `on_worker`'s,
  // which is set whenever this is.
  const task_scheduler* solo_scheduler = nullptr;
};

// Defined here (inline): a translation unit that sees the definition
// addresses it from the thread pointer with one constant offset, where an
// extern one loads its offset first (see tl_frame_cache in
// frame_allocator.hpp). Trivially destructible and constant initialised:
// no TLS guard.
inline constinit thread_local thread_context tl_context{};

[[noreturn, gnu::cold]] void throw_deferred_park_outside_task();

/// For an awaiter whose only waker is an unowned_waker that one atomic
/// operation publishes (the receiver of a capacity-1 channel): records
/// `awaiting` as the resume point and hands `park` to the poller, which
/// commits it when the poll ends, after the task is idle; then the task's
/// state word needs no RMW at the poll end, nor at the wake (see "Solo" in
/// task_header.cpp). Call it last in await_suspend and then suspend: the
/// poll ends right after (so no nested poll, e.g. help_awaited, can start
/// while a park is pending, and the pending park is the polled task's own). False
/// (nothing recorded) if a park is already deferred in this poll: park now
/// with suspend_current_unowned instead. Throws usage_error outside a
/// warden task. Inline: a call cost the recv a second prologue and
/// epilogue (~10 instructions per parked recv).
[[gnu::always_inline]] inline bool defer_park(std::coroutine_handle<> awaiting, deferred_park park) {
  thread_context& c = tl_context;
  task_header* const self = c.task;
  if (self == nullptr) [[unlikely]]
    throw_deferred_park_outside_task();
  if (c.pending_park.commit != nullptr) return false;
  self->resume_point = awaiting;
  c.pending_park = park;
  return true;
}

/// Blocks the calling (non-worker) thread until `task` completes.
void block_until_complete(task_header* task);

/// The name given at spawn ("" when none).
std::string_view task_name(const task_header* task) noexcept;

}  // namespace warden::detail
