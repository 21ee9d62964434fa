// Internal: the runtime's scheduler — workers, queues, idling, shutdown.
//
// # Structure
// * `worker`: a local run queue (local_queue), a LIFO slot for the task most
//   recently woken by the task running on it, and a parker. In current-thread
//   mode there is exactly one worker and no thread: whichever thread is in
//   `block_on` (or `shutdown`) drives it ("the driver"), one at a time.
// * `inject_`: the global queue for work arriving from outside the workers
//   and for the overflow of full local queues.
// * `idle_`: which workers sleep, and how many search for work.
//
// # Where a runnable task goes (schedule)
// On a worker of this runtime: a woken task to the LIFO slot (the previous
// occupant moves to the back of the local queue), a new or yielded task to
// the back of the local queue (a yielded one still RUNNING: see
// task_header.hpp; a worker queues the tasks that yield in its own polls
// itself, poll_task_yielded, without the call to schedule). Anywhere else:
// the injection queue. Then, if
// nobody is searching and somebody sleeps, one sleeper is woken to search.
//
// A push onto a local queue that already held work skips that check (and
// its store-load fence): a worker sleeps only after a re-check that found
// every queue empty, so the push that made this queue non-empty came later,
// checked, and woke a sleeper (or saw a searcher), and a searcher that finds
// work wakes the next sleeper while work remains (see "Spinning"). The
// owner's view of its queue may be stale only because a consumer emptied it
// just now; that consumer is awake and looks for work again after its poll.
//
// # Choosing the next task (next_task)
// Every 61st pick looks at the injection queue first (fairness for outside
// work); the LIFO slot is taken at most 16 times in a row (so a ping-pong
// pair cannot starve the queue); then the local queue, then a batch from the
// injection queue, then stealing half of a random victim's queue. A poll
// that parked its task solo takes the LIFO pick itself (take_lifo_next) and
// goes on with that task without returning to the loop; at the streak's end
// such a chain also takes the queue's turn itself when the task it gets is
// claimed in advance (take_queue_turn), and on a worker thread does the
// periodic check itself when it would only fire timers (the loop's stop
// condition looked at there too); else it returns to the loop.
//
// The owner takes from the front of its local queue a few tasks at a time
// (`claimed`, up to kClaimMax, at most a quarter of the queue: one CAS on
// the queue head for all of them) and runs them in order before looking at
// the queue again, so the queue's order is kept. Thieves cannot take
// claimed tasks; at most kClaimMax - 1 wait behind the running one, and only
// when the queue holds at least four times as many.
//
// # Awaiting a task that has not started (help_awaited)
// A task that awaits the join handle of a child that is still queued and has
// never run would otherwise suspend (a waker, a join-waiter registration), let
// the worker run the child later from the front of the queue, and be woken
// when it ends. Instead, if the child is among the last `kHelpWindow` (32)
// tasks queued on the awaiting task's own worker, the awaiting task runs the
// work itself, depth first: it takes tasks from the *end* of the queue
// (pop_back: the newest, which for a parent that just spawned its children
// are those children) and polls each one right there, nested inside its own
// poll, until the awaited child has completed, has been started elsewhere
// (stolen: then it suspends as usual), it ran `kHelpWindow` tasks, or the end
// of the queue holds a task that has run before (a woken or yielded task:
// helping stops, so a task that yields in a loop can never keep its awaiter
// from reaching the child). A child queued elsewhere (another worker, the
// injection queue) is waited for as usual: helping never runs unrelated
// older work. Only never-started tasks
// are run this way, each exactly as a worker would poll it (poll_task), so a
// child that suspends is simply parked and resumed later by a worker.
// Nesting is bounded (`kMaxHelpDepth`), which bounds the stack, and every
// 61st task run this way does the periodic check (timers; if the injection
// queue or the LIFO slot holds work, every help loop on this worker stops
// and the awaiting tasks suspend, so outside work is not starved behind a
// large tree). Thieves keep stealing from the front meanwhile, so the oldest
// (largest) subtrees go to other workers, as in fork-join schedulers.
// The price is order: with worker threads, tasks spawned by one task may
// start out of spawn order. Current-thread mode never helps, so there tasks
// start exactly in spawn order (tests on the paused clock rely on that).
//
// # The stash
// While every worker is busy (a relaxed read of the idle state), the await
// claims the whole stretch of the queue down to the child at once
// (pop_back_batch, one CAS) and runs only the child. Its younger siblings go to the worker's
// stash, `worker::stash`: claimed, never started, hidden from thieves. When
// the task then awaits one of them, the await finds it there and runs it
// at once (no queue operation; the common case, a child that ends without
// suspending, is one call from the awaiter: join_handle_base::await_now in
// task_header.cpp, which also completes it and hands its value straight to
// the awaiter). The first await of a task polled in help (level 1 and
// deeper) makes its claim from that same call (take_stashed, then
// claim_awaited out of line), so its child runs through the one-call path
// too; level 0's first await claims in help_awaited_slow (see below). So
// for "spawn N children, await each" every
// child runs inside the await of its own handle, and completes with a plain
// store ("complete, alone" in task_header.cpp: its only other owner is the
// handle being awaited on this thread); run by the await of a sibling, it
// would complete with a CAS, because its own handle could be anywhere.
// Ownership: a stashed task is owned by the worker exactly as a task in
// `claimed` is (the queue gave it up with the claim; only abort can touch
// its state word, adding ABORT, which its poll handles). The stash is a
// stack of levels, one per poll nested in help (`stash_base[level]`): the
// part above the base of the current level holds what the task being polled
// there claimed. What a task stashed and did not await is given back (pushed
// onto the queue, oldest first) as soon as its poll ends, however it ends
// (completes, parks, yields), so a stashed task waits at most for one poll
// of the task that stashed it, the same bound as a task in `claimed`; a
// task that parks on something a stashed sibling would set cannot deadlock.
// Level 0 (the task poll() runs) keeps nothing across its awaits: its
// siblings go back on the queue right after the child ran (plain pushes;
// the next await claims again), which spares poll() a check per task.
// The whole stash, every level, is given back as soon as a worker searches
// or sleeps (checked at each await that helps), or the periodic check stops
// helping (help_periodic), outer levels first (older, larger work nearer
// the front, where thieves take from). A sleeper that was woken counts as
// searching from when its thread runs again, not from its wake (idle_state):
// in a VM an idle vCPU may take milliseconds to run the woken thread, and
// stopping the stash meanwhile left the busy worker running its children
// one at a time (help_awaited_slow) for nobody.
//
// # Idling without lost wakeups
// A worker that found nothing registers as a sleeper (a seq_cst RMW on the
// idle state), then checks every queue again (seq_cst loads), and only then
// parks. A scheduler pushes work first and then reads the idle state after
// a seq_cst fence. Either the sleeper's re-check sees the work or the
// scheduler sees the sleeper and unparks it (Dekker). Parked workers use no
// CPU.
//
// The exception is a worker pushing onto its own queue (a spawn or a wake
// from one of its tasks): it reads the idle state with no barrier, so in a
// narrow race it misses a worker that is just going to sleep. That costs
// parallelism, never progress: the pushing worker runs the task itself once
// its current poll ends (it never parks with its own queue non-empty), and
// its next push into an empty queue sees the sleeper, or, where its queue
// does not empty (a worker running the end of its queue while the front
// grows, as help_awaited_slow does), its next periodic check, which wakes a
// sleeper whenever its own queue holds tasks (wake_for_queued). Before that
// check, skynet lost its second worker for a whole run now and then (a third
// of the speed). The barrier (a full
// fence, as costly as a locked instruction) was a fifth of a chain of
// spawns, where every spawn finds the queue empty. Pushes onto the
// injection queue, from outside the workers or on overflow, keep it: nobody
// else is bound to run those.
//
// # Spinning before parking
// Parking and unparking cost a futex call and a context switch each, far
// more than a short task. So the searching worker (there is at most one per
// two workers), having found nothing, keeps looking for a bounded time
// (`kSpinFor`, a few tens of microseconds, pausing the CPU between rounds)
// before it parks; schedulers see it searching and wake nobody. While it
// spins it leaves a queue holding a single task alone: that task was most
// likely just spawned by the running task and its owner runs it next (a
// chain of spawns stays on one worker); the last round before parking takes
// it. A worker that is not the searcher parks at once, as before. So no
// worker spins unboundedly: it parks after one window with nothing found.
//
// When the last searcher finds work, it wakes a sleeper only if there is
// still work queued somewhere (its stop is a seq_cst RMW before its seq_cst
// re-check, so a scheduler pushing meanwhile sees no searcher and wakes one
// itself).
//
// # Live tasks and shutdown
// The number of spawned, unfinished tasks is sharded so that spawn and
// completion never bounce a shared cache line between workers: each worker
// has a signed counter (`worker::live`) that only changes on its own thread
// (in current-thread mode: on the driver, one at a time, handed over under
// the driver mutex), and `outside_live_` takes spawns and completions from
// every other thread. A task spawned on one worker and finished on another
// adds +1 to one shard and -1 to the other; only the sum means anything.
//
// Closing is a Dekker handshake between the counters and `closed_`: spawn
// adds one to its shard, then reads `closed_` (on a worker with the light
// count: the worker's copy, `worker::closed`, which shutdown sets with it)
// and backs out (and refuses the task) if it is set; shutdown sets `closed_`
// and the copies, then sums the shards. A
// worker's shard has a single writer, so where the kernel offers it
// (asymmetric_fence.hpp) the worker side is a plain add (add_single_writer:
// not locked, one instruction on x86-64) and a compiler barrier and shutdown
// pays with one heavy fence (no locked instruction per spawn or
// completion); otherwise, and for the shared shard, both sides are seq_cst
// RMW / load / store. A completion on a worker (on_complete_here) reads the
// worker's copy too; where the count is not light that copy is set from
// the start, so such a completion always goes on to
// complete_here_slow, whose seq_cst fence between its plain decrement and
// its seq_cst load of `closed_` stands for the RMW (see there). So every
// task counted before the close is visible to the sum, and after the close
// the shards only go down (a refused spawn's +1/-1 pair lands on one
// shard). Hence a sum read after the
// close never undercounts, and once it reads 0 every task has finished.
// Each completion (and refusal) after the close re-sums and wakes the
// shutdown waiter at 0. Before the close a sum is only an estimate (it may
// even be negative for a moment); `alive()` clamps it.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/detail/sanitizers.hpp>
#include <warden/runtime.hpp>

#include "../detail/asymmetric_fence.hpp"
#include "../detail/context.hpp"
#include "../detail/parker.hpp"
#include "../detail/single_writer.hpp"
#include "../time/time_driver.hpp"
#include "failure_sink.hpp"
#include "idle_state.hpp"
#include "inject_queue.hpp"
#include "local_queue.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace warden::detail {

class runtime_core;

/// What worker::last_site holds until the worker's first spawn there:
/// matches no spawn (no result_ops), so that needs no null test.
inline constexpr spawn_site kNoSpawnSite{nullptr, nullptr, std::source_location{}};

struct worker {
  runtime_core* core = nullptr;
  /// The spawn site of the last spawn that took spawn_current_unnamed's
  /// slow path on this worker (kNoSpawnSite before), kept only when its
  /// common case may be taken here: the runtime counts its live tasks the
  /// light way, and the record's scheduler is `core`. So that case compares
  /// two words (results, location) and tests nothing else for either.
  /// Owner-only (the thread running the worker's loop), like `claimed`.
  const spawn_site* last_site = &kNoSpawnSite;
  std::size_t index = 0;
  local_queue queue;
  task_header* lifo = nullptr;  // owner-only
  parker park;
  std::thread thread;
  std::uint32_t picks_to_check = 61;  // picks until the next periodic check (every 61st)
  std::uint32_t lifo_streak = 0;
  // The front of `queue`, claimed by the owner (see "Choosing the next
  // task"): claimed[claimed_next, claimed_end) run next, in order.
  static constexpr std::size_t kClaimMax = 8;
  std::uint32_t claimed_next = 0;
  std::uint32_t claimed_end = 0;
  std::array<task_header*, kClaimMax> claimed{};
  bool searching = false;
  /// Set when a periodic check during help_awaited found other runnable
  /// work: every help loop on this worker stops; cleared by the next
  /// regular pick (see "Awaiting a task that has not started"). The stash
  /// is empty while it is set (help_periodic gives it back, and nothing is
  /// claimed).
  bool stop_helping = false;
  std::uint32_t help_depth = 0;  // nested help_awaited calls on this worker
  /// help_awaited's stash (see "The stash" above): never-started tasks this
  /// worker claimed from the end of its queue, not run yet. Each help level
  /// owns stash[stash_base[level], the next level's base or stash_size):
  /// the claims of the task polled at that level (level 0: the task poll()
  /// runs), newest first. Owner-only, like `claimed`.
  static constexpr std::size_t kStashMax = 128;
  std::uint32_t stash_size = 0;
  std::array<std::uint32_t, 33> stash_base{};  // kMaxHelpDepth + 1 levels
  std::array<task_header*, kStashMax> stash{};
  std::uint64_t rng = 0x9E3779B97F4A7C15ull;
  /// This worker's shard of the live-task count (see "Live tasks" above).
  alignas(64) std::atomic<std::int64_t> live{0};
  /// Inside a solo section ("Solo" in task_header.cpp): set and cleared by
  /// the worker's thread, read by shutdown's sweeps. Next to `live`: both
  /// are this worker's own line.
  std::atomic<std::uint8_t> solo_inside{0};
  /// runtime_core::closed_, copied here by shutdown (before its heavy
  /// fence, as closed_): the light spawn path and on_complete_here read it
  /// after counting on `live` (see "Live tasks" above) without loading the
  /// runtime. Set from the start where the count is not light
  /// (!light_live): on_complete_here then takes its slow path, the seq_cst
  /// side of the handshake, every time; the light spawn path never runs
  /// there (worker::last_site stays kNoSpawnSite).
  std::atomic<bool> closed{false};
  /// runtime_core::light_live_, copied at construction (constant after).
  bool light_live = false;
  /// A sweep is coming: no solo section may start (this worker's copy of
  /// the runtime's flag, so that a section finds both of its flags through
  /// the thread's worker, with no pointers of its own to load). Set and
  /// cleared by shutdown (block_solo, unblock_solo), read by the worker's
  /// thread.
  std::atomic<bool> solo_blocked{false};
};

/// The blocking pool: an elastic set of threads running spawn_blocking work.
class blocking_pool final : public task_scheduler {
 public:
  blocking_pool(runtime_core& core, std::size_t max_threads, std::chrono::milliseconds keep_alive);
  void schedule(task_header* task, schedule_hint hint) noexcept override;
  void on_complete() noexcept override;
  failure_sink* failures() noexcept override;
  void wait_for(task_header* task) override;
  /// Runs what is queued (aborted tasks are only destroyed), then joins every thread.
  void shutdown();
  /// Blocking calls queued or running (the paused clock waits for them).
  [[nodiscard]] bool busy() const noexcept { return in_flight_.load(std::memory_order_acquire) != 0; }

 private:
  void run(std::list<std::thread>::iterator self);
  void reap(std::unique_lock<std::mutex>& lock);

  runtime_core& core_;
  std::size_t max_threads_;
  std::chrono::milliseconds keep_alive_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable exit_cv_;
  task_header* head_ = nullptr;  // FIFO through queue_next
  task_header* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t idle_ = 0;
  std::atomic<std::size_t> in_flight_{0};
  bool stopping_ = false;
  std::list<std::thread> threads_;
  std::vector<std::thread> finished_;
};

class runtime_core final : public task_scheduler, public timer_host {
 public:
  explicit runtime_core(runtime_options options);
  ~runtime_core();
  runtime_core(const runtime_core&) = delete;
  runtime_core& operator=(const runtime_core&) = delete;

  // task_scheduler
  void schedule(task_header* task, schedule_hint hint) noexcept override;
  /// schedule(task, wake) from a solo wake ("Solo" in task_header.cpp),
  /// which runs on `w`, a worker of this runtime: the LIFO slot, inline.
  /// (Static: the runtime is read only when the slot held a task.)
  static void schedule_woken_here(worker& w, task_header* task) noexcept {
    task_header* previous = std::exchange(w.lifo, task);
    if (previous != nullptr) [[unlikely]]
      w.core->push_displaced(w, previous);
  }
  /// How many times in a row the LIFO slot is taken before the queue gets a
  /// turn (a bound, so a pair waking each other cannot starve the queue). 16,
  /// not tokio's 3: each time the bound is hit the woken task goes to the
  /// back of the queue and the next comes from its front (a push and a
  /// claim, ~60 instructions), a quarter of ping_pong's messages at 3; and a
  /// pair that keeps running stays in this core's L1 instead of cycling its
  /// frames, headers and channel through it with every other pair's. A
  /// queued task waits at most 16 short polls more.
  static constexpr std::uint32_t kMaxLifoStreak = 16;
  /// The task `w`'s loop would pick next if it is the one in the LIFO slot,
  /// taken with next_task's bookkeeping and poll()'s (nullptr otherwise:
  /// the loop picks). For a poll that parked its task (a solo park, on a
  /// worker of this runtime) to go on with the task it woke without
  /// returning to the loop ("Going on with the woken task" in
  /// task_header.cpp). The loop's stop condition is not looked at: it can
  /// turn true only when a task completes (which ends the chain) or from
  /// another thread (shutdown), and the periodic check bounds the polls that
  /// miss it (see take_queue_turn). `w.searching` is not either: poll()
  /// cleared it, and only the loop sets it.
  /// A chain of such picks counts them in a register: lifo_chain_start
  /// books all the picks it may take at once (`left`: the streak's rest,
  /// and no pick that is due for the periodic check), each pick takes one,
  /// and end_lifo_chain gives back the ones not taken. (A helped poll inside
  /// a chain's poll counts its picks toward the periodic check too: with
  /// the chain's booked in advance, its check may come up to 16 picks
  /// early, and the loop's then as many late.)
  [[gnu::always_inline]] static task_header* take_lifo_next(worker& w, std::uint32_t& left) noexcept {
    if (w.lifo == nullptr || left == 0) return nullptr;
    --left;
    w.stop_helping = false;  // as poll() does before each regular poll
    return std::exchange(w.lifo, nullptr);
  }
  /// The LIFO picks a chain may take, booked (see take_lifo_next).
  [[nodiscard, gnu::always_inline]] static std::uint32_t lifo_chain_start(worker& w) noexcept {
    const std::uint32_t streak_left = w.lifo_streak < kMaxLifoStreak ? kMaxLifoStreak - w.lifo_streak : 0;
    const std::uint32_t picks_left = w.picks_to_check > 1 ? w.picks_to_check - 1 : 0;
    const std::uint32_t left = std::min(streak_left, picks_left);
    w.lifo_streak += left;
    // Kept apart (the empty asm may read and write picks_to_check): GCC
    // otherwise built the two adjacent counters' update in a vector
    // register, ~10 instructions more per chain.
    asm("" : "+m"(w.picks_to_check));
    w.picks_to_check -= left;
    return left;
  }
  /// After a chain with `left` of its booked picks not taken.
  [[gnu::always_inline]] static void end_lifo_chain(worker& w, std::uint32_t left) noexcept {
    w.lifo_streak -= left;
    w.picks_to_check += left;
  }
  /// A chain's pick once its booked picks are used up (after
  /// end_lifo_chain) and the loop's would not be the LIFO slot's plain
  /// turn: next_task_slow's steps in its order, taken with the loop's
  /// bookkeeping. The periodic check, if due, only on a worker thread
  /// (whose loop's stop condition, `stopping_`, is looked at there as the
  /// loop would) and with nothing in the injection queue (the check would
  /// take it, to be polled first): the timers fire, and the pick is the
  /// LIFO task if the streak allows. Else (the streak used up) the LIFO
  /// task to the back of the queue and the next claimed task, claimed from
  /// the front if none is, if it is claimed in advance (woken, yielded or
  /// spawned: RUNNING), so that a chain poll may run it. Null otherwise
  /// (no task in the LIFO slot, the streak not used up and no check due,
  /// the check left to the loop, nothing to claim, or a task that its poll
  /// must claim): the loop picks (the steps already taken are the ones its
  /// next_task would take first). So a chain looks at the loop's stop
  /// condition, or returns to the loop, at least every
  /// kGlobalQueueInterval picks, which bounds the polls that miss it.
  [[gnu::noinline]] task_header* take_queue_turn(worker& w) noexcept;
  /// take_queue_turn's every case (it takes the usual one itself).
  [[gnu::noinline]] task_header* take_queue_turn_slow(worker& w) noexcept;
  void on_complete() noexcept override;
  /// on_complete() called on `w`, a worker of this runtime (the calling
  /// thread's), without the virtual call and the worker lookup.
  void on_complete_here(worker& w) noexcept {
    // The worker's copy of closed_ (as the light spawn path reads it), which
    // is set from the start where the count is not light: one test, and no
    // load of the runtime, in the common case. Only this thread writes its
    // shard (see "Live tasks"): a plain decrement. relaxed: the compiler
    // barrier pairs with shutdown's heavy fence, which comes after its store
    // of the worker's copy of closed_; where the count is not light,
    // complete_here_slow's seq_cst fence is this side's barrier.
    add_single_writer(w.live, -1);
    light_fence();
    if (!w.closed.load(std::memory_order_relaxed)) [[likely]]
      return;
    complete_here_slow(w);
  }
  /// on_complete_here's other cases, out of line: closed (the light count),
  /// or the count is not light. The shard is counted down already.
  [[gnu::noinline]] static void complete_here_slow(worker& w) noexcept;
  failure_sink* failures() noexcept override { return sink_; }
  void wait_for(task_header* task) override;

  // timer_host
  void wake_worker(std::size_t index) noexcept override { workers_[index]->park.unpark(); }
  void wake_sleeper() noexcept override { notify_parked(); }

  [[nodiscard]] time_driver& time() noexcept { return time_; }
  [[nodiscard]] const cancellation_token& root_token() const noexcept { return root_; }

  /// How deeply help_awaited may nest on one worker (each level is a poll on
  /// the stack).
  static constexpr std::uint32_t kMaxHelpDepth = 32;
  /// Picks between two periodic checks (timers, outside work).
  static constexpr std::uint32_t kGlobalQueueInterval = 61;
  /// Of a task in a run queue: never polled, so help_awaited may run it
  /// (spawn queues a task RUNNING in generation 0, and every poll that
  /// re-queues it moves the generation on; see "Claimed in advance" in
  /// task_header.cpp). Also true of a task in its first poll.
  static constexpr bool never_started(std::uint64_t s) noexcept {
    using h = task_header;
    return (s & (h::RUNNING | h::COMPLETE)) == h::RUNNING && h::generation_of(s) == 0;
  }
  /// help_awaited's common case (see "The stash" above): `child` is the
  /// newest entry of the current level's part of `w`'s stash, helping may
  /// go on, every worker is busy, and `child` never started and has none of
  /// the state bits in `not_set`. Then it is taken off the stash (true).
  /// With `Enter` (await_now), the child's state must be `exact` instead
  /// (one compare; `exact` is a never-started state without `not_set`, so
  /// that case is one of the above; the others are left to the caller's
  /// slower path), the taken child's helped poll is entered too
  /// (enter_helped, with the level and size still in registers), and when
  /// the level's part is empty (the first await of the task polled at this
  /// level) claim_awaited's try comes instead: the child and its younger
  /// siblings claimed from the queue, the child taken, its poll entered.
  template <bool Enter>
  [[gnu::always_inline]] bool take_stashed(worker& w, task_header* child, std::uint64_t not_set,
                                           std::uint64_t exact = 0) noexcept {
    // (No test of help_depth against kMaxHelpDepth: at that depth the
    // level's part is empty, as nothing is claimed there.)
    const std::uint32_t level = w.help_depth;
    const std::uint32_t size = w.stash_size;
    if (size > w.stash_base[level]) [[likely]] {
      // (No test of stop_helping: the stash is empty while it is set; see
      // help_periodic.)
      if (w.stash[size - 1] == child && idle_.all_busy()) [[likely]] {
        // relaxed: a stashed task is ours (only an abort may add ABORT,
        // which the poll handles, or which `not_set` turns away).
        const std::uint64_t s = child->state.load(std::memory_order_relaxed);
        // never_started(s) and none of `not_set`, in one masked compare
        // (with `Enter`: s is `exact`, one of those states).
        constexpr std::uint64_t generation = ~(task_header::GENERATION_ONE - 1);
        const bool takes =
            Enter ? s == exact
                  : (s & (task_header::RUNNING | task_header::COMPLETE | generation | not_set)) == task_header::RUNNING;
        if (takes) [[likely]] {
          w.stash_size = size - 1;
          if constexpr (Enter) enter_helped_at(w, level, size - 1);
          return true;
        }
      }
      return false;
    }
    if constexpr (Enter) return claim_awaited(w, child, not_set);
    return false;
  }
  /// take_stashed's other case, out of line: the current level's part of
  /// the stash is empty and the level is not 0 (which keeps nothing across
  /// its awaits: help_awaited_slow's claim gives the siblings back). If
  /// helping may go on, every worker is busy, `child` (of any runtime, or
  /// null) never started, has none of `not_set` and is among the last
  /// kHelpWindow entries of `w`'s queue: claims the stretch of the queue
  /// down to it with one CAS, stashes the younger siblings, takes the child
  /// and enters its helped poll (enter_helped; true). Else nothing changed
  /// (false).
  [[gnu::noinline]] bool claim_awaited(worker& w, task_header* child, std::uint64_t not_set) noexcept;
  /// Before a helped poll (run_helped): the periodic check's count, one help
  /// level deeper, the new level's stash part starts empty.
  [[gnu::always_inline]] void enter_helped(worker& w) noexcept { enter_helped_at(w, w.help_depth, w.stash_size); }
  /// enter_helped with `w`'s help_depth and stash_size as the caller has
  /// them. The level first (help_periodic, which may give the whole stash
  /// back, then resets every level's base, this one's too).
  [[gnu::always_inline]] void enter_helped_at(worker& w, std::uint32_t level, std::uint32_t size) noexcept {
    w.help_depth = level + 1;
    w.stash_base[level + 1] = size;
    if (--w.picks_to_check == 0) [[unlikely]]
      help_periodic(w);
  }
  /// After a helped poll, on `v` (the same worker, read again: nothing of it
  /// need live across the poll): queues `yielded` (a task the poll left to
  /// re-queue, or null) as poll() does, gives back what the polled task
  /// stashed and did not await (its poll is over), one level up.
  [[gnu::always_inline]] void leave_helped(worker& v, task_header* yielded) noexcept {
    if (yielded != nullptr) [[unlikely]]
      push_displaced(v, yielded);
    // (help_depth is back at our level: every nested help restores it.)
    const std::uint32_t here = v.help_depth;
    if (v.stash_size > v.stash_base[here]) [[unlikely]]
      give_back_stash(v, v.stash_base[here]);
    v.help_depth = here - 1;
  }
  /// enter_helped's every-61st duty: fire due timers; if the injection
  /// queue or the LIFO slot holds work, stop helping (see "Awaiting a task
  /// that has not started").
  [[gnu::noinline]] void help_periodic(worker& w) noexcept;

  /// Runs tasks from the calling worker's own queue while `child` (a task
  /// of this runtime the current task awaits) has not started; true if
  /// `child` is complete afterwards. See "Awaiting a task that has not
  /// started" above. Throws usage_error outside a task (checked after the
  /// stash: a task stashed at the current level means a task is polled).
  bool help_awaited(worker& w, task_header* child);
  /// help_awaited's less common cases (out of line).
  bool help_awaited_slow(worker& w, task_header* child) noexcept;
  /// Pushes tasks help_awaited took from the end of the queue but did not
  /// run back onto it (newest first in `tasks`).
  void give_back(worker& w, task_header* const* tasks, std::size_t n) noexcept;
  /// Polls `t` (claimed by this worker, never started) nested in the
  /// current poll, one help level deeper; `awaited`: the current task awaits
  /// it (see tl_context.awaited_here). Gives back what `t` stashed.
  void run_helped(worker& w, task_header* t, bool awaited) noexcept;
  /// Gives back the stash above `base` (the current level's part).
  void give_back_stash(worker& w, std::uint32_t base) noexcept;
  /// Gives back the whole stash, every level's part, oldest level first.
  void give_back_all_stashed(worker& w) noexcept;

  task_header* spawn(std::coroutine_handle<> root, const result_ops& results, spawn_options&& options, bool blocking);
  /// warden::spawn's common case takes this runtime's private paths
  /// (runtime_core.cpp).
  friend task_header* spawn_current_unnamed(std::coroutine_handle<> root, const result_ops& results,
                                            std::source_location location);
  /// For spawn_current's rare ends: one task fewer on `w`'s shard (a spawn
  /// refused after its count); push_own's full-queue case; a sleeper woken
  /// if nobody searches.
  void task_gone_here(worker& w) noexcept;
  void push_own_overflowed(worker& w, task_header* task) noexcept;
  void notify_sleeper() noexcept { notify_parked(); }
  /// Whether worker shards are counted the light way (see "Live tasks").
  [[nodiscard]] bool light_live() const noexcept { return light_live_; }
  void shutdown(std::chrono::nanoseconds grace);

  [[nodiscard]] std::size_t worker_count() const noexcept { return threaded_ ? workers_.size() : 0; }
  /// Exact once closed; an estimate before (see "Live tasks" above).
  [[nodiscard]] std::size_t alive() const noexcept;
  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] bool owns(const task_header* task) const noexcept {
    return scheduler_of(task) == this || scheduler_of(task) == &blocking_;
  }

 private:
  /// The live-count shard of the calling thread.
  /// The calling thread's worker if it is one of this runtime's, else nullptr.
  [[nodiscard]] worker* own_worker() const noexcept;
  /// The live-count shard of the calling thread.
  std::atomic<std::int64_t>& live_shard() noexcept;
  /// schedule() once the caller's worker (`w`, or nullptr) is known.
  void enqueue(worker* w, task_header* task, schedule_hint hint) noexcept;
  /// One task more on the shard of `here` (the caller's worker of this
  /// runtime, or nullptr: the outside shard); false (and nothing counted)
  /// if closed.
  bool count_spawn(worker* here) noexcept;
  /// One task fewer on `shard`; wakes the shutdown waiter when the last
  /// task of a closed runtime ends.
  void task_gone(std::atomic<std::int64_t>& shard) noexcept;
  /// task_gone's part once closed: wakes the shutdown waiter at zero.
  [[gnu::noinline]] void gone_while_closed() noexcept;
  void run_worker(worker& w);
  /// The thread context of a thread running `w`'s loop (a worker, or the
  /// current-thread driver): with solo sections when enabled.
  thread_context worker_context(worker& w) noexcept;
  /// Shutdown, before its sweeps: waits until no worker is inside a solo
  /// section and none enters one until unblock_solo().
  void block_solo() noexcept;
  /// Shutdown, after its sweeps: solo sections may start again.
  void unblock_solo() noexcept;
  template <class Done>
  void run_loop(worker& w, Done&& done, const std::chrono::steady_clock::time_point* deadline);
  template <class Done>
  bool drive(Done&& done, const std::chrono::steady_clock::time_point* deadline);
  /// The common case inline (a claimed task, no periodic check due, an
  /// empty LIFO slot), else next_task_slow.
  task_header* next_task(worker& w) noexcept;
  [[gnu::noinline]] task_header* next_task_slow(worker& w) noexcept;
  /// The next task claimed from the front of w's queue, claiming a new
  /// batch when the last one is used up; not taken (claimed_next is left
  /// for the caller to advance). Null if the queue is empty.
  task_header* next_claimed(worker& w) noexcept;
  /// Steals or takes injected work as the searching worker; nullptr if
  /// there is none or another worker searches. `min_victim_tasks`: see
  /// "Spinning" above.
  task_header* search(worker& w, std::uint32_t min_victim_tasks) noexcept;
  /// The bounded spin of the searching worker (see "Spinning" above).
  template <class Done>
  task_header* spin_for_work(worker& w, Done& done) noexcept;
  [[gnu::noinline]] task_header* take_injected(worker& w, std::size_t max) noexcept;
  void poll(worker& w, task_header* task) noexcept;
  void park_worker(worker& w, const std::chrono::steady_clock::time_point* deadline) noexcept;
  /// Queues `task` on `w` (the calling worker). True if sleepers should be
  /// considered: the queue was empty before, or its overflow went to the
  /// injection queue (see "Where a runnable task goes").
  bool push_local(worker& w, task_header* task) noexcept;
  /// Queues `task` on `w`, the calling worker's own queue, and wakes a
  /// sleeper if the queue was empty (read without a barrier) or overflowed.
  void push_own(worker& w, task_header* task) noexcept;
  /// A task the LIFO slot let go for a newer one (schedule_woken_here).
  [[gnu::noinline]] void push_displaced(worker& w, task_header* task) noexcept;
  /// push_local's slow path, out of line so the fast path stays small.
  [[gnu::noinline]] bool overflow(worker& w, task_header* task) noexcept;
  [[gnu::noinline]] void notify_parked() noexcept;
  /// Part of every periodic check (next_task's, the LIFO chain's and
  /// help_periodic): with tasks in `w`'s queue while a worker sleeps and
  /// none searches, wakes one. Mends the unfenced check's lost wake (see
  /// "Idling" above) within one check interval, where a queue that never
  /// empties (a worker running the end of its queue while the front grows)
  /// would never give a push the empty queue that sees the sleeper.
  void wake_for_queued(worker& w) noexcept {
    if (!w.queue.looks_empty() && idle_.should_notify_unfenced()) notify_parked();
  }
  /// next_task's every-61st-pick duty: fire due timers, wake a sleeper for
  /// the queue if needed (wake_for_queued), then try the injection queue
  /// first.
  [[gnu::noinline]] task_header* periodic_check(worker& w) noexcept;
  [[nodiscard]] bool has_work_anywhere() const noexcept;
  void wait_quiescent(const std::chrono::steady_clock::time_point* deadline);

  runtime_options options_;
  bool threaded_;
  failure_sink* sink_;
  std::vector<std::unique_ptr<worker>> workers_;
  inject_queue inject_;
  idle_state idle_;
  blocking_pool blocking_;
  time_driver time_;
  cancellation_token root_;  // cancelled when shutdown starts
  std::atomic<bool> closed_{false};
  // Solo sections ("Solo" in task_header.cpp): on where the workers' side
  // of the handshake can be a compiler barrier (and under TSan, which
  // checks the protocol with seq_cst on both sides). Shutdown's sweeps
  // block them with each worker's `solo_blocked`.
  const bool solo_enabled_ = WARDEN_TSAN || heavy_fence_available();
  /// Worker shards use plain stores and the asymmetric fence (see "Live tasks").
  const bool light_live_ = heavy_fence_available();
  alignas(64) std::atomic<std::int64_t> outside_live_{0};  // shard of non-worker threads
  std::atomic<bool> stopping_{false};

  std::mutex quiescent_mutex_;  // shutdown waits here for the live count to reach 0
  std::condition_variable quiescent_cv_;

  std::mutex driver_mutex_;  // current-thread mode: who drives
  bool driving_ = false;
  std::vector<thread_parker*> driver_waiters_;

  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
};

}  // namespace warden::detail
