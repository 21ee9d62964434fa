// The task state machine: polling, completion, cancellation, wakers, and the
// untyped half of join handles. The states and who owns which field are
// described at the top of include/warden/detail/task_header.hpp.
//
// Transitions (all by compare-exchange on `state`):
//   spawn:            -> RUNNING | JOIN_INTEREST, generation 0, two
//                     references (lifecycle, join handle): queued claimed
//                     in advance for its first poll (no waker exists yet)
//   poll start:       SCHEDULED -> RUNNING, new generation         (acquire)
//                     (no change for a task queued RUNNING, i.e. claimed
//                     for its next poll: see "Claimed in advance" below)
//   poll end, yield:  queued by the poller, still RUNNING (abort and wake
//                     treat the task as running). No change if the poll made
//                     no waker; else RUNNING -> RUNNING minus NOTIFIED, new
//                     generation. Either way no waker of the generation the
//                     next poll runs in exists yet, so a wake cannot set
//                     NOTIFIED on the queued task (only an abort can, with
//                     ABORT), and the next poll start needs no RMW.
//   poll end, parked: RUNNING -> idle                              (release)
//   poll end, woken:  RUNNING|NOTIFIED -> RUNNING, new generation,
//                     re-queued (claimed in advance)
//   wake, idle:       idle -> RUNNING, new generation, queued by the
//                     waker (claimed in advance)                   (acq_rel)
//   wake, running:    RUNNING -> RUNNING|NOTIFIED
//   abort, idle:      idle -> SCHEDULED|ABORT, queued by the aborter, so the
//                     frame is destroyed by a worker
//   abort, queued:    SCHEDULED -> SCHEDULED|ABORT (the poller destroys it)
//   abort, running:   RUNNING -> RUNNING|ABORT|NOTIFIED (destroyed after the
//                     poll, i.e. at the task's next suspension)
//   complete:         RUNNING -> COMPLETE|outcome                  (acq_rel)
//                     and, in the same CAS, minus the lifecycle reference
//                     unless the completer still has work on the header
//                     (a join waiter to wake, an outcome nobody will take)
//   complete, alone:  the same by a plain store (release) when no other
//                     owner is left, or the only other one is the join
//                     handle this thread awaits the task through
//                     (help_awaited, await_now). Nobody else can change
//                     the word then but a shutdown sweep's abort, which
//                     completion makes moot, so the store loses nothing
//                     that matters (an unowned_waker is used only while
//                     its task cannot complete: see its contract).
//   handle dropped:   minus JOIN_INTEREST and one reference, one RMW (a
//                     CAS), unless the task completed with an outcome left
//                     to drop or report (then two RMWs)
//   complete and consumed at once (await_now): when the awaiting handle is
//                     the only other owner and the task has no extras, the
//                     handle takes the value and keeps just the site, so
//                     the word goes straight to COMPLETE with no
//                     references (release) and the header back to the pool
//                     ("A consumed handle's identity" in join_handle.hpp)
// A task that finishes its poll with ABORT set is destroyed by that poller.
// An abort that finds the task COMPLETE does nothing: exactly one outcome.
//
// Claimed in advance: a woken, re-queued or yielded task sits in its run
// queue RUNNING, its next generation already in place (yielded: see "poll
// end, yield"), and owned by the queue and then by the thread that pops it.
// Wakers are made only while a task runs, so no waker of that generation
// exists until the next poll makes one: a wake of the queued task is stale
// and does nothing, an abort sets ABORT (and NOTIFIED) and leaves the queuing
// to the queue it is in, join-side RMWs only touch the JOIN_ bits. So the
// poll start changes nothing: one RMW fewer per wake-and-poll. The frame's
// contents, and whatever the waker wrote before its wake, reach the poller
// through the queue hand-off: the waker's CAS acquired the previous poll
// end's release and then the waker queued the task itself (after a wake
// during a poll, the poller's re-queuing CAS acquires the waker's CAS).
// A new task is claimed in advance by its spawner: generation 0 and no
// waker yet. A yield during the first poll that made no waker would leave
// the task queued in generation 0 as well, so that yield moves the
// generation on: "generation 0 and RUNNING, in a run queue" then means
// never polled (help_awaited relies on it).
//
// Solo: a task that no one but the runtime owns (one reference, the
// lifecycle one) and that parks through defer_park has exactly one waker for
// that suspension, an unowned_waker, published by the park's commit after
// the task went idle. Its state word then has one possible writer at a
// time: the poller until the commit, the waker after it. The only other
// writers of an idle or running task's word need a reference (join and
// abort handles, wakers: retain/release, JOIN_ bits, abort), except a
// shutdown sweep's aborts. So on a worker of the task's runtime, inside a
// *solo section* that keeps that runtime's sweeps out, the poll end and the
// wake are plain stores:
//   poll end, solo:   RUNNING -> idle|SOLO, then the park's commit; if the
//                     commit finds the awaited thing already there (nothing
//                     published), -> RUNNING, new generation, re-queued
//   wake, solo:       idle|SOLO -> RUNNING, new generation, queued
// Everywhere else (another thread, a sweep coming, more than one
// reference, another waker made in the poll) the poller commits the park
// while the task is still RUNNING and both transitions are the usual RMWs;
// a wake by RMW clears SOLO. SOLO means nothing unless the task is idle.
// The section is a Dekker handshake between the worker's `solo_inside`
// flag and its `solo_blocked` flag (its copy of "a sweep is coming"): the
// worker sets its inside flag, then (barrier) reads its blocked flag and
// backs out if a sweep is coming; a sweep sets every worker's blocked flag,
// then (barrier) waits until no worker's inside flag is set. Both flags
// are found through the thread's worker (tl_context.on_worker). Where the kernel offers it (asymmetric_fence.hpp) the
// worker's barrier is a compiler barrier and the sweep pays with a heavy fence; under TSan both sides are seq_cst. The
// frame reaches the next poller through the park's commit (release) and the waker's taking of it (acquire), then the
// queue.
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>

#include <warden/detail/atomic_test.hpp>
#include <warden/detail/sanitizers.hpp>
#include <warden/detail/spin_pause.hpp>
#include <warden/detail/task_locals.hpp>
#include <warden/sync/detail/mpsc_state.hpp>

#include "../detail/asymmetric_fence.hpp"
#include "../detail/context.hpp"
#include "../detail/parker.hpp"
#include "../runtime/failure_sink.hpp"
#include "../runtime/runtime_core.hpp"
#include "header_pool.hpp"

#include <cstdio>
#include <cstdlib>
#include <new>
#include <ostream>
#include <thread>

namespace warden {
namespace detail {

static_assert(sizeof(void*) != 8 || sizeof(task_header) == 56,
              "the task header is meant to take 56 bytes (see \"Size\" in task_header.hpp)");

/// A panicked task's outcome (see task_header::panic).
struct task_panic {
  std::exception_ptr error;  // cleared when taken or dropped
  failure_sink* sink;        // one reference
};

void throw_empty_task() {
  throw usage_error("co_await on an empty task<T> (default-constructed or moved-from); await the task you created");
}
void throw_task_awaited_twice() {
  throw usage_error("task<T> awaited twice: a task runs once; keep its result instead of awaiting it again");
}

task_header* current_task() noexcept { return tl_context.task; }

waker suspend_current(std::coroutine_handle<> awaiting) {
  task_header* self = tl_context.task;
  if (self == nullptr) throw usage_error("a warden awaitable was awaited outside a warden task");
  self->resume_point = awaiting;
  return waker::for_task(self);
}

task_header* suspend_current_task(std::coroutine_handle<> awaiting) {
  task_header* self = tl_context.task;
  if (self == nullptr) throw usage_error("a warden awaitable was awaited outside a warden task");
  self->resume_point = awaiting;
  retain(self);
  ++tl_context.wakers_made;  // see "poll end, yield" at the top
  return self;
}

unowned_waker suspend_current_unowned(std::coroutine_handle<> awaiting) {
  task_header* self = tl_context.task;
  if (self == nullptr) throw usage_error("a warden awaitable was awaited outside a warden task");
  self->resume_point = awaiting;
  ++tl_context.wakers_made;  // see "poll end, yield" at the top
  // The task runs on this thread, so its generation cannot change under us.
  return {self, unowned_waker::word_of(task_header::generation_of(self->state.load(std::memory_order_relaxed)))};
}

void throw_deferred_park_outside_task() { throw usage_error("a warden awaitable was awaited outside a warden task"); }

std::string_view task_name(const task_header* task) noexcept {
  // acquire: pairs with the release store in extras_for (the record may be
  // created by the task's thread while another thread asks for the name).
  const task_extras* e = extras_of(task);
  return e != nullptr ? std::string_view(e->name) : std::string_view();
}

namespace {
/// Installs `fresh` as the task's record unless another thread installed
/// one first; returns the record that is installed either way.
task_extras* install_extras(task_header* task, task_extras* fresh) noexcept {
  // The site is never changed, so a header without extras holds exactly it.
  std::uintptr_t seen = task->site_or_extras.load(std::memory_order_acquire);
  if ((seen & task_header::kExtrasTag) == 0) {
    fresh->site = reinterpret_cast<const spawn_site*>(seen);
    // acq_rel: release publishes `fresh` (and its site) to every reader
    // (they load with acquire); acquire, on failure, makes the winner's
    // record visible to us.
    if (task->site_or_extras.compare_exchange_strong(seen,
                                                     reinterpret_cast<std::uintptr_t>(fresh) | task_header::kExtrasTag,
                                                     std::memory_order_acq_rel, std::memory_order_acquire))
      return fresh;
  }
  delete fresh;
  return reinterpret_cast<task_extras*>(seen - task_header::kExtrasTag);
}
}  // namespace

task_extras& extras_for(task_header* task) {
  // acquire: another thread may have installed the record (task_id_of).
  if (task_extras* e = extras_of(task)) return *e;
  return *install_extras(task, new task_extras{});
}

std::uint64_t task_id_of(const task_header* task) noexcept {
  task_extras* e = extras_of(task);
  if (e == nullptr) [[unlikely]] {
    auto* fresh = new (std::nothrow) task_extras{};
    if (fresh == nullptr) return 0;  // out of memory: "no task" rather than a duplicate
    // The header is never a const object: callers that only read it may
    // still give it its id.
    e = install_extras(const_cast<task_header*>(task), fresh);
  }
  // relaxed: the id is only a value; the CAS makes every reader agree on it.
  std::uint64_t id = e->id.load(std::memory_order_relaxed);
  if (id != 0) return id;
  const std::uint64_t fresh = next_task_id();
  if (e->id.compare_exchange_strong(id, fresh, std::memory_order_relaxed)) return fresh;
  return id;  // another thread gave it one first (ours is never used: ids stay unique)
}

namespace {
[[noreturn, gnu::noinline, gnu::cold]] void too_many_references(task_header* task) noexcept {
  std::fprintf(stderr,
               "warden: task#%llu has 2^26 - 1 wakers, join handles and abort handles at once; the reference count "
               "would overflow (a leak of wakers or abort handles?)\n",
               static_cast<unsigned long long>(task_id_of(task)));
  std::abort();
}

}  // namespace

/// A name, task-local bindings or a panic record to free (out of line:
/// rarely needed). Called by free_header when no sweep can be reading them.
[[gnu::noinline]] void free_extras(task_header* task) noexcept {
  // acquire: the record may have been installed by another thread. The
  // header goes back to holding the site alone.
  task_extras* e = extras_of(task);
  task->site_or_extras.store(reinterpret_cast<std::uintptr_t>(e->site), std::memory_order_relaxed);
  delete e->locals;
  if (task_panic* panic = e->panic) {
    panic->sink->release();
    delete panic;
  }
  delete e;
}

namespace {

/// Enters the solo section of `w`, the calling thread's worker (see
/// "Solo" at the top), for a caller that knows that this thread is a
/// worker of the task's runtime with solo sections enabled: true if the
/// thread may now change the task's state word with plain stores where
/// only a sweep could race, until solo_leave(w); false (not entered) when a
/// sweep comes.
[[gnu::always_inline]] inline bool solo_enter(worker& w) noexcept {
  if constexpr (WARDEN_TSAN) {
    // TSan models neither fence: seq_cst on both sides orders them.
    w.solo_inside.store(1, std::memory_order_seq_cst);
    if (!w.solo_blocked.load(std::memory_order_seq_cst)) return true;
  } else {
    w.solo_inside.store(1, std::memory_order_relaxed);
    light_fence();  // the runtime enables solo only where heavy_fence works
    // relaxed: the fence pair (light_fence here, heavy_fence in block_solo)
    // orders it after our store. (One compare with memory.)
    if (relaxed_byte_is_zero(w.solo_blocked)) return true;
  }
  w.solo_inside.store(0, std::memory_order_relaxed);
  return false;
}

[[gnu::always_inline]] inline void solo_leave(worker& w) noexcept {
  // release: a sweep that saw us inside waits for this store, then reads
  // the state words we wrote.
  w.solo_inside.store(0, std::memory_order_release);
}

/// After the last reference went: destroys what is left and returns the
/// header to the pool.
inline void free_task(task_header* task) noexcept {
  if (task->root) std::exchange(task->root, {}).destroy();
  // A value nobody took, or a panic record (in the extras) to clear.
  if (task->result != nullptr || has_extras_relaxed(task)) [[unlikely]]
    drop_result(task);
  // Dead (no references) for pool sweeps, whichever path got here: see
  // "Sweeps" in header_pool.cpp. relaxed: free_header's barrier orders it.
  // The extras go with the header (free_header): a sweep that saw the task
  // alive may still read its name.
  task->state.store(task_header::COMPLETE, std::memory_order_relaxed);
  free_header(task);
}
}  // namespace

void retain(task_header* task) noexcept {
  using h = task_header;
  // relaxed: the caller already holds a reference, which keeps the header.
  const std::uint64_t s = task->state.fetch_add(h::REF_ONE, std::memory_order_relaxed);
  if (h::refs_of(s) == h::refs_of(h::REF_MASK) - 1) [[unlikely]]
    too_many_references(task);
}

namespace {
/// release(), inlined where a handle is dropped.
[[gnu::always_inline]] inline void release_inline(task_header* task) noexcept {
  using h = task_header;
  // The last owner of a complete task frees it without an RMW: only an owner
  // can make another reference (a clone), and pool sweeps skip complete
  // tasks, so nobody can come back. acquire: the other owners' releases
  // (RMWs on this word) happen before our free.
  const std::uint64_t s = task->state.load(std::memory_order_acquire);
  if ((s & h::COMPLETE) != 0 && h::refs_of(s) == 1) {
    free_task(task);
    return;
  }
  // acq_rel: the thread that frees must see every other owner's last use.
  if (h::refs_of(task->state.fetch_sub(h::REF_ONE, std::memory_order_acq_rel)) == 1) free_task(task);
}
}  // namespace

void release(task_header* task) noexcept { release_inline(task); }

namespace {
/// wake()'s usual path: the state word `s` (loaded with acquire) changed by
/// RMW. Also for a task parked solo that the caller may not wake with a
/// plain store (the RMW clears SOLO).
[[gnu::always_inline]] inline void wake_rmw(task_header* task, std::uint32_t generation, std::uint64_t s) noexcept {
  using h = task_header;
  for (;;) {
    if (h::generation_of(s) != generation) return;  // stale: polled since this waker was made
    if ((s & (h::COMPLETE | h::SCHEDULED | h::NOTIFIED)) != 0) return;
    if ((s & h::RUNNING) != 0) {
      // The poller re-queues the task when its poll ends.
      if (task->state.compare_exchange_weak(s, s | h::NOTIFIED, std::memory_order_acq_rel, std::memory_order_acquire))
        return;
      continue;
    }
    // Claimed in advance for the next poll (see the top of this file).
    // acquire: the frame as the last poll left it (its release), passed on
    // to the poller by the queue.
    if (task->state.compare_exchange_weak(s, ((s & ~h::SOLO) + h::GENERATION_ONE) | h::RUNNING,
                                          std::memory_order_acq_rel, std::memory_order_acquire)) {
      scheduler_of(task)->schedule(task, schedule_hint::wake);
      return;
    }
  }
}
}  // namespace

// (A waker that holds a reference is never the one waker of a solo park,
// which needs the task to have no reference but the lifecycle one: only
// unowned wakers can wake solo.)
void wake(task_header* task, std::uint32_t generation) noexcept {
  wake_rmw(task, generation, task->state.load(std::memory_order_acquire));
}

void wake_unowned(task_header* task, std::uint64_t word, const task_scheduler* solo) noexcept {
  using h = task_header;
  // A solo park's waker on a worker of the task's runtime: `solo`, the
  // runtime whose worker parked it, is this thread's solo scheduler (null
  // off such threads; the other wakers' `solo` is unowned_waker::not_solo(),
  // which equals no thread's): the worker, whose flags are the section's
  // and whose LIFO slot takes the task.
  thread_context& c = tl_context;
  if (c.solo_scheduler == solo) {
    worker& w = *c.on_worker;
    if (solo_enter(w)) {
      // Wake, solo (see the top of this file): we hold the one waker of
      // this suspension and no sweep runs, so nobody else writes the word
      // now. Parked solo in the waker's suspension and untouched since:
      // the task's word is still the park's (one compare for idle, SOLO,
      // the generation and the references).
      // (relaxed: one compare with memory.)
      if (relaxed_equals(task->state, word)) {
        // SOLO off, RUNNING on, the next generation: one add (the compare
        // fixed those bits). relaxed: the frame reached us through the
        // park's commit; the queue passes it on.
        task->state.store(word + (h::GENERATION_ONE + h::RUNNING - h::SOLO), std::memory_order_relaxed);
        solo_leave(w);
        // This thread is on a worker of the task's runtime (solo_scheduler).
        runtime_core::schedule_woken_here(w, task);
        return;
      }
      solo_leave(w);
    }
  }
  // A tail call: inlined here, the RMW path made the solo one copy its
  // arguments first.
  wake(task, h::generation_of(word));
}

void request_abort(task_header* task) noexcept {
  using h = task_header;
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  // ABORT alone: whoever polls the task next destroys it instead of resuming.
  while ((s & (h::COMPLETE | h::ABORT)) == 0 &&
         !task->state.compare_exchange_weak(s, s | h::ABORT, std::memory_order_acq_rel, std::memory_order_acquire)) {
  }
}

void abort(task_header* task) noexcept {
  using h = task_header;
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  for (;;) {
    if ((s & h::COMPLETE) != 0) return;
    std::uint64_t next = s | h::ABORT;
    if ((s & h::RUNNING) != 0)
      next |= h::NOTIFIED;
    else if ((s & h::SCHEDULED) == 0)
      next = (next & ~h::SOLO) | h::SCHEDULED;  // idle: queue it so a worker destroys the frame
    if (next == s) return;                      // already aborted and queued (or being polled)
    if (task->state.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      if ((s & (h::RUNNING | h::SCHEDULED)) == 0) scheduler_of(task)->schedule(task, schedule_hint::spawn);
      return;
    }
  }
}

void destroy_root(task_header* task) noexcept {
  if (task->root) std::exchange(task->root, {}).destroy();
}

void drop_result(task_header* task) noexcept {
  // Complete (every caller has seen COMPLETE), so `result` holds the value.
  if (task->result != nullptr) {  // an inline value of all-zero bits needs nothing either
    if (const result_ops& ops = root_results(task); ops.destroy != nullptr) ops.destroy(task->result);
    task->result = nullptr;
  }
  if (task_panic* panic = panic_of(task)) panic->error = nullptr;
}

namespace {

/// Keeps a panic for the join handle. Before COMPLETE is published: a join
/// handle dropped right after it reports to this sink if nobody took the
/// failure.
[[gnu::noinline]] void record_panic(task_header* task, std::exception_ptr error) noexcept {
  failure_sink* sink = scheduler_of(task)->failures();
  task_panic* panic = nullptr;
  try {
    task_extras& extras = extras_for(task);
    panic = new task_panic{error, sink};
    extras.panic = panic;
  } catch (...) {  // std::bad_alloc
  }
  if (panic != nullptr)
    sink->retain();
  else
    sink->report(task, error);  // no memory to keep it for the handle: report it now
}

/// Whether the completer of `task` (state `s`) is the only one who can
/// still change its state word in a way that matters: it holds the only
/// reference (no join handle, waker or abort handle is left), or the only
/// other one is the join handle that this very thread is awaiting the task
/// through (help_awaited polls the task from inside that await, so the
/// handle is idle until we return).
bool completes_alone(const task_header* task, std::uint64_t s) noexcept {
  using h = task_header;
  if (h::refs_of(s) == 1) return true;
  return h::refs_of(s) == 2 && (s & (h::JOIN_INTEREST | h::JOIN_WAITER)) == h::JOIN_INTEREST &&
         task == tl_context.awaited_here;
}

/// complete()'s part after the outcome is in place: publishes COMPLETE,
/// wakes a join waiter, drops what nobody will take, releases the lifecycle
/// reference. `leftovers`: a value or a panic that someone must take or drop.
void publish_outcome(task_header* task, std::uint64_t outcome, bool leftovers) noexcept;

/// The usual end of a task, kept short: it finished with a value (or
/// none), and its completer is alone ("complete, alone" at the top), so
/// there is no panic to report, nor a join waiter to wake. publish_outcome
/// does the rest.
[[gnu::always_inline]] inline void publish_finished(task_header* task, bool leftovers) noexcept {
  using h = task_header;
  task_scheduler* const scheduler = scheduler_of(task);
  // acquire: the other owners' releases (we may free), and the join waker.
  const std::uint64_t s = task->state.load(std::memory_order_acquire);
  if (completes_alone(task, s)) [[likely]] {
    // No RMW: nobody else can change the word now except a shutdown
    // sweep's abort, moot once we complete (see "complete, alone" at the
    // top). release: the outcome, for a join handle on this thread and for
    // sweeps.
    task->state.store(((s & ~(h::RUNNING | h::NOTIFIED | h::SCHEDULED)) | h::COMPLETE) - h::REF_ONE,
                      std::memory_order_release);
    if ((s & h::JOIN_INTEREST) == 0) free_task(task);  // the lifecycle reference was the only one
    // Usually a task of the runtime whose worker this is: no virtual call.
    if (worker* const w = tl_context.on_worker; w != nullptr && static_cast<task_scheduler*>(w->core) == scheduler)
        [[likely]]
      w->core->on_complete_here(*w);
    else
      scheduler->on_complete();
    return;
  }
  publish_outcome(task, 0, leftovers);
}

[[gnu::noinline]] void publish_outcome(task_header* task, std::uint64_t outcome, bool leftovers) noexcept {
  using h = task_header;
  task_scheduler* const scheduler = scheduler_of(task);  // read now: see "fast" below
  // acquire: the other owners' releases (we may free), and the join waker.
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  if (completes_alone(task, s)) {
    // As in publish_finished (see "complete, alone" at the top).
    task->state.store(((s & ~(h::RUNNING | h::NOTIFIED | h::SCHEDULED)) | h::COMPLETE | outcome) - h::REF_ONE,
                      std::memory_order_release);
    if ((s & h::JOIN_INTEREST) == 0) {
      if ((outcome & h::PANICKED) != 0)
        if (task_panic* panic = panic_of(task)) panic->sink->report(task, panic->error);
      free_task(task);  // the lifecycle reference was the only one
    }
    scheduler->on_complete();
    return;
  }
  bool fast = false;
  // acq_rel: release publishes the result to the join side and, when the
  // lifecycle reference goes too, our last use of the header to whoever
  // frees it; acquire pairs with the JOIN_WAITER publication of
  // `join_waiter` and, if we free, with the other owners' releases.
  for (;;) {
    // Fast: nothing left to do on the header after the CAS, so the
    // lifecycle reference goes with it, and we touch the header again only
    // if that was the last reference.
    fast = (s & h::JOIN_WAITER) == 0 && ((s & h::JOIN_INTEREST) != 0 || !leftovers);
    const std::uint64_t next =
        ((s & ~(h::RUNNING | h::NOTIFIED | h::SCHEDULED)) | h::COMPLETE | outcome) - (fast ? h::REF_ONE : 0);
    if (task->state.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
  }
  if (fast) {
    if (h::refs_of(s) == 1) free_task(task);
    scheduler->on_complete();
    return;
  }
  if ((s & h::JOIN_WAITER) != 0) {
    // relaxed: the CAS above (acquire) saw JOIN_WAITER, set after the
    // pointer was stored (release). The waker belongs to the awaiting side,
    // which may destroy it once it sees null: move it out first; release:
    // our use of it happens before that (see clear_join_waker).
    waker* const slot = task->join_waiter.load(std::memory_order_relaxed);
    waker w = std::move(*slot);
    task->join_waiter.store(nullptr, std::memory_order_release);
    w.wake();
  }
  if ((s & h::JOIN_INTEREST) == 0) {
    // Nobody can observe the outcome any more.
    if ((outcome & h::PANICKED) != 0)
      if (task_panic* panic = panic_of(task)) panic->sink->report(task, panic->error);
    drop_result(task);
  }
  scheduler->on_complete();
  release(task);  // the lifecycle reference
}

/// The resume point's slot, unused from now on, takes the value (if any);
/// the ops stay reachable through the spawn site (drop_result needs them).
inline const result_ops& retire_results(task_header* task) noexcept {
  task->result = nullptr;
  return root_results(task);
}

/// A task that panicked, or whose value's move threw: destroys its frame,
/// keeps the panic, publishes.
[[gnu::noinline, gnu::cold]] void complete_failed(task_header* task, std::exception_ptr error) noexcept {
  destroy_root(task);
  record_panic(task, std::move(error));
  publish_outcome(task, task_header::PANICKED, true);
}

/// A task whose root frame finished (done()): moves the outcome out of the
/// frame, then destroys the frame (the task's parameters and captures die
/// as soon as it finishes, not when its handle is dropped), and publishes.
[[gnu::noinline]] void complete_finished(task_header* task) noexcept {
  const result_ops& ops = retire_results(task);
  bool finished = false;
  try {
    finished = ops.extract(task->root, task->result);
  } catch (...) {
    complete_failed(task, std::current_exception());  // the value's move threw: a panic
    return;
  }
  if (!finished) [[unlikely]] {
    complete_failed(task, ops.promise(task->root).exception());  // the body threw
    return;
  }
  destroy_root(task);
  publish_finished(task, task->result != nullptr);
}

/// A task whose root frame ended without suspending and destroyed itself,
/// leaving the value's bits (see "Roots that end without suspending" in
/// task.hpp): the value takes the resume point's slot, and publishes.
/// Returns false (the poll's result), so that the poll ends with a tail
/// call: its own prologue stays as small as a yield loop needs, and the
/// completion runs inlined here without a frame of its own.
[[gnu::always_inline]] inline void complete_exited_inline(task_header* task, std::uintptr_t bits) noexcept {
  task->root = {};  // destroyed already
  task->result = reinterpret_cast<void*>(bits);
  publish_finished(task, bits != 0);
}
/// complete_exited_inline for a helped poll's task (poll_helped_task): it
/// is of the runtime whose worker this thread is (help_awaited runs tasks
/// from the worker's own queue and stash), so the scheduler is not read; and
/// the awaited child, with its handle idle, is tested first, in one masked
/// compare ("complete, alone" at the top).
[[gnu::always_inline]] inline void complete_helped(task_header* task, std::uintptr_t bits) noexcept {
  using h = task_header;
  task->root = {};  // destroyed already
  task->result = reinterpret_cast<void*>(bits);
  // acquire: as in publish_finished.
  const std::uint64_t s = task->state.load(std::memory_order_acquire);
  const bool awaited = (s & (h::REF_MASK | h::JOIN_INTEREST | h::JOIN_WAITER)) == 2 * h::REF_ONE + h::JOIN_INTEREST &&
                       task == tl_context.awaited_here;
  if (awaited || h::refs_of(s) == 1) [[likely]] {
    // release: as in publish_finished.
    task->state.store(((s & ~(h::RUNNING | h::NOTIFIED | h::SCHEDULED)) | h::COMPLETE) - h::REF_ONE,
                      std::memory_order_release);
    if ((s & h::JOIN_INTEREST) == 0) free_task(task);  // the lifecycle reference was the only one
    worker& w = *tl_context.on_worker;
    w.core->on_complete_here(w);
    return;
  }
  publish_outcome(task, 0, bits != 0);
}
[[gnu::noinline]] task_header* complete_exited(task_header* task, std::uintptr_t bits) noexcept {
  complete_exited_inline(task, bits);
  return nullptr;
}

[[gnu::always_inline]] inline void cancel_now(task_header* task) noexcept {
  destroy_root(task);  // runs every destructor in the task's frames
  retire_results(task);
  publish_outcome(task, task_header::CANCELLED, false);
}

/// Runs `park`'s commit: a capacity-1 recv's (commit_one_park, the usual
/// one: every message of a ping-pong) inline, no indirect call and no
/// return value to test.
[[gnu::always_inline]] inline bool commit_park(deferred_park park, task_header* task, std::uint64_t word,
                                               const task_scheduler* solo) noexcept {
  if (park.commit == &commit_one_park) [[likely]]
    return static_cast<mpsc_state_head*>(park.awaiter)->park_one(unowned_waker{task, word, solo});
  return park.commit(park.awaiter, task, word, solo);
}

/// What solo_park must check to know that this thread is a worker of the
/// task's runtime with solo sections: the task's scheduler against the
/// thread's solo scheduler; only that the thread has one (`loop`: a poll
/// with no outer task on such a thread is one of that runtime's loop,
/// poll() or the LIFO chain, so its task is that runtime's; other polls
/// there run inside a task's poll: nested help, a local executor driven by
/// a task's body); or nothing (a LIFO chain poll: a solo park on this
/// thread started the chain).
enum class solo_check : std::uint8_t { scheduler, loop, none };

/// solo_leave for solo_park (the chain's worker when it has it, else the
/// thread's, read again).
[[gnu::always_inline]] inline void solo_park_leave(solo_check check, worker* chain) noexcept {
  solo_leave(check == solo_check::none ? *chain : *tl_context.on_worker);
}

/// Poll end, solo (see the top of this file): parks the task with plain
/// stores and commits `park`. False (nothing done) unless this thread may
/// and the task is alone: no reference but the lifecycle one, nothing
/// woke or aborted it during the poll. `chain`: the thread's worker as a
/// LIFO chain has it (check none), else read here. `One`: the caller knows
/// that `park` is a capacity-1 recv's (commit_one_park).
template <bool One = false>
[[gnu::always_inline]] inline bool solo_park(task_header* task, deferred_park park, solo_check check,
                                             worker* chain) noexcept {
  using h = task_header;
  thread_context& c = tl_context;
  if (check == solo_check::scheduler ? c.solo_scheduler != scheduler_of(task)
                                     : check == solo_check::loop && c.solo_scheduler == nullptr)
    return false;
  // (solo_scheduler set: so is on_worker.) Off the chain the worker is read
  // again for the leave, not kept across the commit.
  if (!solo_enter(check == solo_check::none ? *chain : *c.on_worker)) return false;
  const std::uint64_t s = task->state.load(std::memory_order_relaxed);
  // One reference, neither NOTIFIED nor ABORT, RUNNING and not SOLO (one
  // masked compare; the last two always hold in a poll).
  if ((s & (h::REF_MASK | h::NOTIFIED | h::ABORT | h::RUNNING | h::SOLO)) != h::REF_ONE + h::RUNNING) {
    solo_park_leave(check, chain);
    return false;
  }
  // RUNNING off, SOLO on: one add (the compare fixed both bits). release:
  // the frame, for whoever polls the task next (the commit's release passes
  // it on to the waker).
  const std::uint64_t parked = s + (h::SOLO - h::RUNNING);
  task->state.store(parked, std::memory_order_release);
  // The waker's word is the parked word, its runtime this thread's solo
  // scheduler (the task's: see solo_check) (see unowned_waker).
  if (One ? static_cast<mpsc_state_head*>(park.awaiter)->park_one(unowned_waker{task, parked, c.solo_scheduler})
          : commit_park(park, task, parked, c.solo_scheduler)) {
    solo_park_leave(check, chain);  // the task may already run elsewhere: not touched again
    return true;
  }
  // Nothing published: still ours alone. Claimed in advance for the poll
  // that finds what it awaited (a new generation, as after any poll).
  task->state.store(s + h::GENERATION_ONE, std::memory_order_relaxed);
  solo_park_leave(check, chain);
  scheduler_of(task)->schedule(task, schedule_hint::yield);
  return true;
}

}  // namespace

namespace {
/// The end of a worker's poll that parked its task solo: polls the task in
/// `w`'s LIFO slot while the loop would pick it next (see poll_impl).
[[gnu::noinline]] task_header* poll_woken_next(worker& w) noexcept;

/// Which poll: a worker loop's own (poll_task_yielded, also poll_task's), a
/// helped one (poll_helped_task: a task that help_awaited runs inside an
/// await), or one of the LIFO chain that a loop's poll goes on with after
/// a solo park (poll_woken_next: no outer task, a worker of the task's
/// runtime with solo sections, the task claimed in advance).
enum class poll_kind : std::uint8_t { loop, helped, chain };

/// What a chain poll returns when its task parked solo: go on with the
/// LIFO slot's task.
task_header* const kParkedSolo = reinterpret_cast<task_header*>(alignof(task_header));

/// The end of a poll that neither yielded nor completed nor parked solo:
/// commits a deferred `park` (if any) while the task is RUNNING, then
/// re-queues the task, cancels it or lets it go idle by RMW.
[[gnu::always_inline]] inline task_header* poll_end_settle(task_header* task, task_header* const outer,
                                                           deferred_park park) noexcept {
  using h = task_header;
  std::uint64_t s = task->state.load(std::memory_order_relaxed);
  bool again = false;  // the deferred park found its value: poll the task again
  if (park.commit != nullptr && (s & h::ABORT) == 0) {
    // relaxed: the generation cannot change while the task runs.
    again = !park.commit(park.awaiter, task, unowned_waker::word_of(h::generation_of(s)), unowned_waker::not_solo());
    s = task->state.load(std::memory_order_relaxed);
  }
  for (;;) {
    if ((s & h::ABORT) != 0) {
      cancel_now(task);  // cancelled at its suspension point
      break;
    }
    if ((s & h::NOTIFIED) != 0 || again) {
      // Re-queued claimed in advance: the new generation makes this poll's
      // wakers stale. acquire: what the waker wrote before its wake (e.g. a
      // node it handed us under its lock) happens-before our queue push,
      // hence before the next poll (the queue hand-off carries it on).
      if (task->state.compare_exchange_weak(s, (s & ~h::NOTIFIED) + h::GENERATION_ONE, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
        scheduler_of(task)->schedule(task, schedule_hint::yield);
        break;
      }
      continue;
    }
    // release: the next poller (after a wake) sees our writes, resume_point included.
    if (task->state.compare_exchange_weak(s, s & ~h::RUNNING, std::memory_order_release, std::memory_order_relaxed))
      break;
  }
  tl_context.task = outer;
  return nullptr;
}

/// The part of poll_impl after the resume: whatever `task`'s poll ended
/// in (a yield, a completion, a park, a wake or an abort during the poll).
/// `outer`: the task polled on this thread around this poll (restored
/// here); `wakers_before`: tl_context.wakers_made when the poll began;
/// `chain`: as for poll_impl.
template <poll_kind Kind>
[[gnu::always_inline]] inline task_header* poll_end(task_header* task, task_header* const outer,
                                                    std::uint32_t wakers_before, worker* chain) noexcept {
  using h = task_header;
  constexpr bool Helped = Kind == poll_kind::helped;
  constexpr bool Chain = Kind == poll_kind::chain;
  std::uint64_t s;
  // A chain poll looks for a deferred park first: its tasks were woken,
  // mostly by a message, and park again for the next (a poll that deferred
  // a park suspended right after: it neither yielded nor ended). It asks
  // first for a capacity-1 recv's park (commit_one_park, see commit_park),
  // its usual end: that one compare then stands for the null test too.
  deferred_park park;
  if constexpr (Chain) {
    park = tl_context.pending_park;
    if (park.commit == &commit_one_park) [[likely]] {
      // The deferred park below, the commit known (solo_park<true>: inline).
      tl_context.pending_park.commit = nullptr;
      if (tl_context.wakers_made == wakers_before && solo_park<true>(task, park, solo_check::none, chain))
        return kParkedSolo;
      return poll_end_settle(task, outer, park);
    }
  }
  if (!Chain || park.commit == nullptr) {
    // Cleared only if set (it was clear when the poll began).
    const bool yielded = tl_context.yield_requested;
    if (yielded) tl_context.yield_requested = false;
    if (yielded) {
      // yield_now, checked first (after a chain poll's deferred park): a
      // poll that ends in a yield has not completed and deferred no park
      // (the task suspended at the yield and nowhere else), so the checks
      // below are for the other polls only.
      //
      // Back to the queue *still RUNNING*. To wakers and aborters the task
      // looks like it is running: an abort sets ABORT (and NOTIFIED) and
      // leaves the queuing to us; the next poller, on any worker, sees ABORT
      // and destroys the frame. A wake of this generation would set NOTIFIED,
      // so if this poll made a waker (tl_context.wakers_made moved; nested
      // polls on this thread only make us do it needlessly), the generation
      // moves on now and NOTIFIED is dropped (it was for a suspension that is
      // over). Then the next poll starts with no waker of its generation in
      // existence and needs no RMW. A pure yield loop makes no waker: no RMW
      // on either side (but the first poll's yield moves off generation 0,
      // which marks a never-polled task: see "Claimed in advance"). relaxed:
      // the queue hand-off orders the frame; the state carries no data here.
      s = task->state.load(std::memory_order_relaxed);
      if (tl_context.wakers_made != wakers_before || h::generation_of(s) == 0) {
        while (!task->state.compare_exchange_weak(s, (s & ~h::NOTIFIED) + h::GENERATION_ONE, std::memory_order_relaxed,
                                                  std::memory_order_relaxed)) {
        }
      }
      // An abort that came before this check:
      const bool aborted = (s & h::ABORT) != 0;
      if (aborted) cancel_now(task);
      tl_context.task = outer;
      return aborted ? nullptr : task;  // else the caller queues it
    }
    if (tl_root_exit.frame != nullptr) [[likely]] {
      // The root ended without suspending (only a root of this poll can have
      // set it: nested polls clear theirs before they return).
      // The poller's task is restored first: the completion does not use it.
      tl_root_exit.frame = nullptr;
      tl_context.task = outer;
      if constexpr (Helped) {
        complete_helped(task, tl_root_exit.value);
        return nullptr;
      } else {
        return complete_exited(task, tl_root_exit.value);
      }
    }
  }
  // A park deferred to now (defer_park): solo if this poll made no other
  // waker, else committed while the task is still RUNNING
  // (poll_end_settle). Looked at
  // before done(): a task that deferred a park suspended right after, so
  // its root is not done. Only `commit` is cleared (`awaiter` means nothing
  // without it).
  if constexpr (!Chain) park = tl_context.pending_park;
  if (park.commit == nullptr) {
    if (task->root.done()) {
      complete_finished(task);
      tl_context.task = outer;
      return nullptr;
    }
  } else {
    tl_context.pending_park.commit = nullptr;
    const solo_check check = Chain                         ? solo_check::none
                             : !Helped && outer == nullptr ? solo_check::loop
                                                           : solo_check::scheduler;
    if (tl_context.wakers_made == wakers_before && solo_park(task, park, check, chain)) {
      // A chain poll leaves tl_context.task to the next one (or to
      // poll_woken_next's exit).
      if constexpr (Chain) return kParkedSolo;
      tl_context.task = outer;
      if constexpr (!Helped) {
        // Going on with the woken task: a worker's own poll (no outer task:
        // not nested in help_awaited) whose task parked solo (so this is a
        // worker of the task's runtime) polls the task in the LIFO slot next
        // if its loop would pick it now (take_lifo_next), without returning
        // to the loop: in a ping-pong the receiver the parked sender just
        // woke. Same order, same bookkeeping, one call and return fewer.
        // The parked task is not touched again (it may run elsewhere now).
        // A tail call into a function of its own, which loops over the
        // chain with a copy of the poll of its own: a loop back to the top
        // here cost every poll two more saved registers (chained_spawn
        // +1.4%).
        if (outer == nullptr) return poll_woken_next(*tl_context.on_worker);
      }
      return nullptr;
    }
  }
  return poll_end_settle(task, outer, park);
}

/// The poll, one copy per kind. The helped one has the usual end of a
/// helped child, a root that ended without suspending, inlined (its
/// registers are saved anyway), while a worker's poll keeps the smaller
/// prologue a yield loop needs (see complete_exited). The chain's skips
/// what its kind fixes (the claim, the outer task, the solo checks) and
/// runs in poll_woken_next's loop. With several copies GCC stopped
/// inlining solo_park, solo_leave and cancel_now into them (+5%
/// instructions on yield_many), hence their always_inline.
template <poll_kind Kind>
[[gnu::always_inline]] inline task_header* poll_impl(task_header* task, worker* chain = nullptr) noexcept {
  using h = task_header;
  constexpr bool Chain = Kind == poll_kind::chain;
  // (A chain poll only tests ABORT in it: one test with memory, below.)
  std::uint64_t s = Chain ? 0 : task->state.load(std::memory_order_relaxed);
  // A task in the LIFO slot was woken: claimed in advance, RUNNING.
  if (!Chain && (s & h::RUNNING) == 0) {
    // SCHEDULED -> RUNNING and a new generation in one add: a task queued
    // this way has SCHEDULED set and RUNNING clear, and nobody else changes
    // those two bits while it is queued (wakes and aborts of a queued task
    // only add ABORT), so the add cannot carry into other bits. acquire:
    // see the frame as the previous poller (or the spawner) left it. The
    // new generation makes the wakers of earlier suspensions stale.
    s = task->state.fetch_add(h::GENERATION_ONE + h::RUNNING - h::SCHEDULED, std::memory_order_acquire);
  }
  // Else claimed in advance (woken, re-queued or yielded; see the top of
  // this file): no waker of the current generation exists, nothing to
  // change. NOTIFIED, if set, came with ABORT, checked below (an abort after
  // our load is seen at the end of the poll).
  const std::uint32_t wakers_before = tl_context.wakers_made;
  task_header* const outer = Chain ? nullptr : tl_context.task;
  // tl_context.yield_requested is set only between yield_now's
  // await_suspend and the end of the resume that it suspends, where no poll
  // can start (nor a helped one inside an await, nor one of a local
  // executor driven from a task's body): every poll finds it clear, and
  // leaves it so. No save and restore (one register less to keep across
  // the resume).
  tl_context.task = task;
  if (Chain ? !relaxed_bits_clear(task->state, h::ABORT) : (s & h::ABORT) != 0) {
    cancel_now(task);
    tl_context.task = outer;
    return nullptr;
  }
  task->resume_point.resume();
  return poll_end<Kind>(task, outer, wakers_before, chain);
}

/// The rest of a helped poll of an awaited child that await_now could not
/// finish itself (see there): poll_end with awaited_here set, as
/// run_helped sets it for the whole poll (during the resume, only
/// completions of other tasks look at it, in nested polls that set their
/// own). The wakers the poll
/// made are not counted (await_now keeps one register less across the
/// resume): poll_end asks only whether a yield must move the generation on
/// (it must anyway, from generation 0: the child never ran before), and
/// whether a deferred park may go solo (never: the awaiting handle holds a
/// reference, so solo_park backs out). Then leave_helped (queueing the
/// task if it yielded); await_now's outcome: whether the child is complete
/// (returned as await_now returns it, so await_now's call is a tail call and
/// keeps no register for the outcome).
[[gnu::noinline]] await_outcome poll_end_awaited(task_header* task, task_header* outer) noexcept {
  task_header* const outer_awaited = std::exchange(tl_context.awaited_here, task);
  task_header* const yielded = poll_end<poll_kind::helped>(task, outer, tl_context.wakers_made, {});
  tl_context.awaited_here = outer_awaited;
  worker& v = *tl_context.on_worker;
  v.core->leave_helped(v, yielded);
  return {0, task->is_complete() ? kAwaitComplete : kAwaitPending};
}

task_header* poll_woken_next(worker& w) noexcept {
  // `w` is the thread's worker, whose flags the chain's solo sections use
  // (a solo park on this thread started the chain, so it has them).
  // The picks are counted here (see take_lifo_next).
  std::uint32_t left = runtime_core::lifo_chain_start(w);
  for (;;) {
    task_header* next = runtime_core::take_lifo_next(w, left);
    if (next == nullptr) [[unlikely]] {
      runtime_core::end_lifo_chain(w, left);
      // The streak's end: the queue's turn, here if a chain poll can take it.
      next = w.core->take_queue_turn(w);
      if (next == nullptr) {
        tl_context.task = nullptr;  // the chain's last poll left its task
        return nullptr;
      }
      left = runtime_core::lifo_chain_start(w);
    }
    task_header* const yielded = poll_impl<poll_kind::chain>(next, &w);
    if (yielded != kParkedSolo) {
      runtime_core::end_lifo_chain(w, left);
      return yielded;
    }
  }
}

}  // namespace

[[gnu::noinline]] task_header* poll_task_yielded(task_header* task) noexcept {
  return poll_impl<poll_kind::loop>(task);
}
[[gnu::noinline]] bool poll_helped_task(task_header* task) noexcept {
  return poll_impl<poll_kind::helped>(task) != nullptr;
}

void poll_task(task_header* task) noexcept {
  if (task_header* yielded = poll_task_yielded(task)) scheduler_of(yielded)->schedule(yielded, schedule_hint::yield);
}

bool set_join_waker(task_header* task, waker& w) {
  using h = task_header;
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  if ((s & h::COMPLETE) != 0) return false;
  // The pointer is claimed first, null -> ours: of two awaits of one handle
  // racing here, one claims it and the other throws (a check of JOIN_WAITER
  // alone let both through, the second overwriting the first's waker, which
  // then was never woken). The pointer is null whenever no waiter is
  // registered: every path that ends a registration (the completer's
  // hand-off, clear_join_waker, the COMPLETE exit below) stores null.
  // relaxed: published by the CAS on the state below (release); the
  // completer reads it only if its COMPLETE transition saw JOIN_WAITER.
  waker* none = nullptr;
  if (!task->join_waiter.compare_exchange_strong(none, &w, std::memory_order_relaxed, std::memory_order_relaxed))
    throw usage_error("join_handle awaited twice at the same time");
  while (
      !task->state.compare_exchange_weak(s, s | h::JOIN_WAITER, std::memory_order_acq_rel, std::memory_order_acquire)) {
    if ((s & h::COMPLETE) != 0) {
      task->join_waiter.store(nullptr, std::memory_order_relaxed);  // the completer never saw it
      return false;
    }
  }
  return true;
}

void clear_join_waker(task_header* task) noexcept {
  using h = task_header;
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  while ((s & (h::COMPLETE | h::JOIN_WAITER)) == h::JOIN_WAITER) {
    if (task->state.compare_exchange_weak(s, s & ~h::JOIN_WAITER, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      // We cleared the bit, so the completer will not look: the waker stays
      // ours. relaxed: nobody reads the pointer while the bit is clear.
      task->join_waiter.store(nullptr, std::memory_order_relaxed);
      return;
    }
  }
  if ((s & h::JOIN_WAITER) == 0) return;  // not registered (any more)
  // Complete with our waker registered: the completer that saw JOIN_WAITER
  // moves it out and then stores null. acquire: pairs with that store, so
  // its use of the waker happens before the caller destroys it. The wait is
  // for a few instructions that the completer has already started (its
  // COMPLETE transition is done); normally (woken through the waker) the
  // pointer is null already.
  for (unsigned round = 0; task->join_waiter.load(std::memory_order_acquire) != nullptr;) spin_pause(round);
}

void release_join_interest(task_header* task) noexcept {
  using h = task_header;
  // acquire: if COMPLETE, the outcome the completer published (`result`).
  std::uint64_t s = task->state.load(std::memory_order_acquire);
  // One CAS for interest and reference, unless the task completed with an
  // outcome left to drop or report (not complete: the completer will see no
  // interest and drop it). acq_rel: as for the fetch_and below, and as in
  // release() for the reference.
  while ((s & h::COMPLETE) == 0 || (task->result == nullptr && (s & h::PANICKED) == 0)) {
    if (task->state.compare_exchange_weak(s, (s & ~h::JOIN_INTEREST) - h::REF_ONE, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      if (h::refs_of(s) == 1) free_task(task);
      return;
    }
  }
  // acq_rel: pairs with the completer's transition (it sees no interest and
  // cleans up, or we see COMPLETE and the outcome it published).
  s = task->state.fetch_and(~h::JOIN_INTEREST, std::memory_order_acq_rel);
  // Complete and the outcome never taken: it is ours to drop.
  if ((s & h::PANICKED) != 0)
    if (task_panic* panic = panic_of(task); panic != nullptr && panic->error) panic->sink->report(task, panic->error);
  drop_result(task);
  release(task);
}

void waker::wake_by_ref() const noexcept {
  if (bits_ == 0) return;
  if ((bits_ & kThreadTag) != 0)
    reinterpret_cast<thread_parker*>(bits_ & ~kThreadTag)->unpark();
  else
    detail::wake(reinterpret_cast<task_header*>(bits_), generation_);
}

waker waker::clone() const noexcept {
  waker w;
  if (bits_ == 0) return w;
  if ((bits_ & kThreadTag) != 0)
    reinterpret_cast<thread_parker*>(bits_ & ~kThreadTag)->retain();
  else
    retain(reinterpret_cast<task_header*>(bits_));
  w.bits_ = bits_;
  w.generation_ = generation_;
  return w;
}

void waker::release_target() noexcept {
  const std::uintptr_t bits = std::exchange(bits_, 0);
  if ((bits & kThreadTag) != 0)
    reinterpret_cast<thread_parker*>(bits & ~kThreadTag)->release();
  else
    detail::release(reinterpret_cast<task_header*>(bits));
}

waker waker::for_task(task_header* task) noexcept {
  retain(task);
  ++tl_context.wakers_made;  // see "poll end, yield" at the top
  waker w;
  w.bits_ = reinterpret_cast<std::uintptr_t>(task);
  // The task runs on this thread, so its generation cannot change under us.
  w.generation_ = task_header::generation_of(task->state.load(std::memory_order_relaxed));
  return w;
}

waker waker::for_parked(task_header* task) noexcept {
  waker w;
  w.bits_ = reinterpret_cast<std::uintptr_t>(task);
  // relaxed: a value to compare, not a publication. The caller holds the
  // suspension's one waker, so the task is still in that suspension's
  // generation, or was aborted (then the generation or COMPLETE makes the
  // wake a no-op, as it would for the waker made at the park).
  w.generation_ = task_header::generation_of(task->state.load(std::memory_order_relaxed));
  return w;
}

waker waker::for_thread(thread_parker* parker) noexcept {
  parker->retain();
  waker w;
  w.bits_ = reinterpret_cast<std::uintptr_t>(parker) | kThreadTag;
  return w;
}

waker waker::for_current() noexcept {
  if (tl_context.task != nullptr) return for_task(tl_context.task);
  return for_thread(&current_thread_parker());
}

void block_until_complete(task_header* task) {
  if (task->is_complete()) return;
  scheduler_of(task)->wait_for(task);
}

void wait_with_parker(task_header* task) {
  thread_parker& parker = current_thread_parker();
  waker w = waker::for_thread(&parker);
  if (!set_join_waker(task, w)) return;
  while (!task->is_complete()) parker.park();
  clear_join_waker(task);  // before `w` dies (see set_join_waker)
}

}  // namespace detail

// ---- task_id, join_error ----------------------------------------------------

std::ostream& operator<<(std::ostream& out, task_id id) { return out << "task#" << id.value(); }

struct join_error::details {
  task_id id;
  std::string name;
  std::exception_ptr error;
  std::string panic_message;
  std::string what;
};

join_error join_error::cancelled(task_id id, std::string_view name) {
  auto d = std::make_shared<details>();
  d->id = id;
  d->name = std::string(name);
  d->what = detail::describe_task(id, name, {}) + " was cancelled";
  return join_error(kind::cancelled, std::move(d));
}

join_error join_error::panic(task_id id, std::string_view name, std::exception_ptr error) {
  auto d = std::make_shared<details>();
  d->id = id;
  d->name = std::string(name);
  const std::string described = error ? detail::describe_exception(error) : std::string("no exception");
  d->panic_message = detail::is_std_exception(error) ? described : std::string();
  d->error = std::move(error);
  d->what = detail::describe_task(id, name, {}) + " panicked: " + described;
  return join_error(kind::panic, std::move(d));
}

std::exception_ptr join_error::exception() const noexcept { return details_->error; }
void join_error::rethrow() const {
  if (!details_->error) throw usage_error("join_error::rethrow: the task was cancelled, there is no exception");
  std::rethrow_exception(details_->error);
}
std::string_view join_error::panic_message() const noexcept { return details_->panic_message; }
task_id join_error::id() const noexcept { return details_->id; }
std::string_view join_error::name() const noexcept { return details_->name; }
const char* join_error::what() const noexcept { return details_->what.c_str(); }

// ---- abort_handle -----------------------------------------------------------

abort_handle::abort_handle(detail::task_header* task) noexcept : task_(task) {
  if (task_ != nullptr) detail::retain(task_);
}
abort_handle::abort_handle(const abort_handle& other) noexcept : abort_handle(other.task_) {}
abort_handle& abort_handle::operator=(const abort_handle& other) noexcept {
  if (this != &other) {
    abort_handle copy(other);
    std::swap(task_, copy.task_);
  }
  return *this;
}
abort_handle& abort_handle::operator=(abort_handle&& other) noexcept {
  if (this != &other) {
    if (task_ != nullptr) detail::release(task_);
    task_ = std::exchange(other.task_, nullptr);
  }
  return *this;
}
abort_handle::~abort_handle() {
  if (task_ != nullptr) detail::release(task_);
}
void abort_handle::abort() const noexcept {
  if (task_ != nullptr) detail::abort(task_);
}
bool abort_handle::is_finished() const noexcept { return task_ != nullptr && task_->is_complete(); }
task_id abort_handle::id() const noexcept { return task_ != nullptr ? task_id{detail::task_id_of(task_)} : task_id{}; }

// ---- join_handle_base -------------------------------------------------------

namespace {
/// release_handle's work for a handle whose outcome was not taken.
[[gnu::noinline]] void drop_unconsumed(detail::task_header* task, bool abort_on_drop) noexcept {
  if (abort_on_drop) detail::abort(task);
  detail::release_join_interest(task);
}
}  // namespace

void join_handle_base::release_handle() noexcept {
  using h = detail::task_header;
  detail::task_header* const task = task_;
  if ((flags_ & kConsumed) != 0) {
    // Consumed: complete, its frame destroyed and its outcome taken (the
    // result slot is null, a panic's exception moved out of its record).
    // The common case, the last reference, in one masked compare:
    // release_inline's and free_task's work minus what consumption settled
    // (extras, if any, go with free_header). acquire: as in release_inline.
    const std::uint64_t s = task->state.load(std::memory_order_acquire);
    if ((s & (h::COMPLETE | h::REF_MASK)) == h::COMPLETE + h::REF_ONE) [[likely]] {
      // Dead for pool sweeps (as free_task; free_header's barrier orders it).
      task->state.store(h::COMPLETE, std::memory_order_relaxed);
      detail::free_header(task);
      // task_ is left as is: every caller of drop() ends the handle or
      // overwrites it (nothing above runs code that could look at it).
      return;
    }
    task_ = nullptr;
    detail::release(task);  // a tail call, as below: the common case above needs no frame
    return;
  }
  task_ = nullptr;  // before anything that may run user code (a failure report)
  drop_unconsumed(task, (flags_ & kAbortOnDrop) != 0);
}

[[gnu::noinline]] void join_handle_base::consume_slow() noexcept {
  detail::task_header* const task = task_;
  if (const std::uintptr_t site = detail::free_header_keeping_site_slow(task)) {
    task_ = nullptr;
    flags_ = site | kConsumed;
    return;
  }
  // The handle keeps the header after all (the generation is not kept:
  // nothing reads it once complete, and no waker of the task is left:
  // await_now saw the handle as its only other owner).
  publish_consumed(task);
  flags_ = kConsumed;
}

void join_handle_base::publish_consumed(detail::task_header* task) noexcept {
  using h = detail::task_header;
  task->root = {};         // destroyed already (or never there)
  task->result = nullptr;  // taken: nothing for the handle's drop to free
  // release: as in publish_finished (an abort handle made from the header
  // may go to another thread).
  task->state.store(h::COMPLETE | h::JOIN_INTEREST | h::REF_ONE, std::memory_order_release);
}

static_assert(alignof(detail::spawn_site) > 3, "a consumed handle keeps the site's address with two flag bits");

detail::task_header* join_handle_base::identity_header() const noexcept {
  const detail::spawn_site* const site = kept_site();
  if (site == nullptr) return nullptr;
  detail::task_header* fresh;
  try {
    fresh = detail::allocate_header();
  } catch (...) {
    return nullptr;  // out of memory: as task_id_of, "no task" rather than a wrong one
  }
  // What the task's own header held once consumed (see release_handle):
  // no extras, then complete, the outcome taken, the handle's reference.
  fresh->queue_next = nullptr;
  fresh->join_waiter.store(nullptr, std::memory_order_relaxed);
  // relaxed: published by publish_consumed's release store.
  fresh->site_or_extras.store(reinterpret_cast<std::uintptr_t>(site), std::memory_order_relaxed);
  fresh->park_link = 0;
  publish_consumed(fresh);
  task_ = fresh;
  return fresh;
}

detail::await_outcome join_handle_base::await_now() {
  using detail::task_header;
  using h = task_header;
  task_header* const child = task_;
  // The common case of help_awaited (runtime_core.cpp), the helped poll and
  // its completion in one: the child waits on top of this worker's stash
  // (see "The stash" in runtime_core.hpp), not aborted, and ends without
  // suspending ("Roots that end without suspending" in task.hpp) while we
  // are its only other owner. A stashed child is of this worker's runtime.
  // An empty or consumed handle never matches (the stash holds tasks that
  // never ran): await_now_slow checks it.
  //
  // The child's state, both before and after its resume, is compared whole
  // with the one state of that case: its references are the lifecycle one
  // and this handle's (which keeps JOIN_INTEREST with it), RUNNING (claimed
  // in advance), generation 0 (never started), and nothing else: no ABORT,
  // no join waiter, nobody woke it. Any other state (another reference, an
  // abort) takes the general path (await_now_slow, poll_end_awaited), which
  // ends the same way, only slower.
  constexpr std::uint64_t alone = 2 * h::REF_ONE + h::JOIN_INTEREST + h::RUNNING;
  static_assert(detail::runtime_core::never_started(alone) && (alone & h::ABORT) == 0);
  detail::worker* const w = detail::tl_context.on_worker;
  if (w != nullptr && w->core->take_stashed<true>(*w, child, h::ABORT, alone)) [[likely]] {
    // poll_impl<true>'s start: claimed in advance, never started, so no
    // state change; not aborted (checked above; an abort from now on is
    // seen after the resume, like any abort of a running task).
    task_header* const outer = detail::tl_context.task;
    detail::tl_context.task = child;
    child->resume_point.resume();
    if (detail::tl_root_exit.frame != nullptr) [[likely]] {
      // The child's root ended without suspending (so it did not yield).
      // acquire: as in publish_finished.
      const std::uint64_t s = child->state.load(std::memory_order_acquire);
      // Still `alone` (see above): nobody registered as a join waiter,
      // took a reference, woke it (NOTIFIED) or asked for an abort
      // meanwhile (an abort that came during the resume is too late to
      // cancel a body that ended: poll_end_awaited's completion keeps the
      // value too). So "complete, alone" (top of this file), and the value
      // goes straight to the awaiter, the handle consumed.
      if (s == alone) [[likely]] {
        detail::tl_root_exit.frame = nullptr;
        detail::tl_context.task = outer;
        // The handle is consumed and the header's only owner left: it
        // keeps the site instead of the header, which goes back to the pool
        // now, unless the task has extras or a sweep may run ("A consumed
        // handle's identity" in join_handle.hpp). So first the state of a
        // header freed by its last owner: complete, no references (the
        // frame and the value are gone: root and result are not looked
        // at). release: as in publish_finished (a sweep may read the
        // header).
        child->state.store(h::COMPLETE, std::memory_order_release);
        if (std::uintptr_t site; detail::free_header_keeping_site(child, site)) [[likely]] {
          task_ = nullptr;
          flags_ = site | kConsumed;
        } else {
          consume_slow();
        }
        detail::worker& v = *detail::tl_context.on_worker;  // read again: nothing of it lives across the poll
        v.core->on_complete_here(v);
        v.core->leave_helped(v, nullptr);
        // The value's bits, read last (nothing above runs a task): one
        // register less to keep.
        return {detail::tl_root_exit.value, kTaken};
      }
    }
    // Out of line, with leave_helped: the common case above then keeps
    // three registers across the resume (no fourth push, no stack
    // alignment adjustment).
    static_assert(kComplete == detail::kAwaitComplete && kPending == detail::kAwaitPending);
    return detail::poll_end_awaited(child, outer);
  }
  return await_now_slow();
}

void join_handle_base::abort() const noexcept {
  // (A handle that kept only the site: its task is complete, nothing to do.)
  if (task_ != nullptr) detail::abort(task_);
}
bool join_handle_base::is_finished() const noexcept {
  if (task_ == nullptr) return kept_site() != nullptr;  // consumed: complete
  return task_->is_complete();
}
void join_handle_base::detach() noexcept {
  // release_handle's work, spelled out (the common detach, of a handle not
  // consumed, is then a tail call: release_handle's consumed case made it
  // too large to inline here, +0.7% instructions on chained_spawn).
  const std::uintptr_t flags = std::exchange(flags_, 0);  // empty from now on (no kept site either)
  if (task_ == nullptr) return;
  detail::task_header* task = std::exchange(task_, nullptr);
  if ((flags & kConsumed) != 0) [[unlikely]] {
    detail::release(task);  // a tail call too: no frame for the common case
    return;
  }
  detail::release_join_interest(task);
}
task_id join_handle_base::id() const noexcept {
  detail::task_header* const task = task_ != nullptr ? task_ : identity_header();
  return task != nullptr ? task_id{detail::task_id_of(task)} : task_id{};
}
std::string_view join_handle_base::name() const noexcept {
  // (A handle that kept only the site: the task had no name.)
  return task_ != nullptr ? detail::task_name(task_) : std::string_view();
}
std::source_location join_handle_base::spawn_location() const noexcept {
  if (task_ != nullptr) return detail::spawn_location(task_);
  const detail::spawn_site* const site = kept_site();
  return site != nullptr ? site->location : std::source_location{};
}
abort_handle join_handle_base::get_abort_handle() const noexcept {
  return abort_handle(task_ != nullptr ? task_ : identity_header());
}

void join_handle_base::throw_cannot_take() const {
  if ((flags_ & kConsumed) == 0)
    throw usage_error("join_handle is empty (default-constructed, moved-from or detached): there is nothing to await");
  throw usage_error(
      "join_handle awaited twice: its result was already taken (by co_await, result() or join()); keep the "
      "value from the first await");
}

// join_handle_base::await_now_slow and wait are in runtime_core.cpp, next
// to help_awaited.

void join_handle_base::leave() const noexcept {
  if (task_ != nullptr) detail::clear_join_waker(task_);
}

void join_handle_base::block() {
  if (detail::tl_context.on_worker != nullptr)
    throw usage_error(
        "join_handle::join called on a worker thread, where it would deadlock; co_await the handle instead");
  detail::block_until_complete(task_);
}

join_error join_handle_base::take_error() noexcept {
  const std::uint64_t s = task_->state.load(std::memory_order_acquire);
  flags_ |= kConsumed;
  if ((s & detail::task_header::CANCELLED) != 0)
    return join_error::cancelled(task_id{detail::task_id_of(task_)}, name());
  std::exception_ptr error;
  if (detail::task_panic* panic = detail::panic_of(task_)) error = std::exchange(panic->error, nullptr);
  return join_error::panic(task_id{detail::task_id_of(task_)}, name(), std::move(error));
}

// ---- free functions ---------------------------------------------------------

void yield_now::await_suspend(std::coroutine_handle<> self) const {
  detail::task_header* task = detail::tl_context.task;
  if (task == nullptr) throw usage_error("yield_now awaited outside a warden task");
  task->resume_point = self;
  // Re-queued at the back when this poll ends, as if woken while running
  // (only this thread reads the flag: poll_task, right after the resume).
  detail::tl_context.yield_requested = true;
}

task_id current_task_id() {
  if (detail::tl_context.task == nullptr)
    throw usage_error("current_task_id called outside a warden task; use try_current_task_id()");
  return task_id{detail::task_id_of(detail::tl_context.task)};
}

std::optional<task_id> try_current_task_id() noexcept {
  if (detail::tl_context.task == nullptr) return std::nullopt;
  return task_id{detail::task_id_of(detail::tl_context.task)};
}

}  // namespace warden
