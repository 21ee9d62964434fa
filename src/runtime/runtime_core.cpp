#include "runtime_core.hpp"

#include <warden/detail/sanitizers.hpp>
#include <warden/detail/spin_pause.hpp>
#include <warden/detail/task_locals.hpp>

#include "../detail/asymmetric_fence.hpp"
#include "../detail/context.hpp"
#include "../task/header_pool.hpp"
#include "../task/spawn_site.hpp"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

namespace warden::detail {

void wait_with_parker(task_header* task);

namespace {

using clock = std::chrono::steady_clock;

constexpr std::uint32_t kGlobalQueueInterval = runtime_core::kGlobalQueueInterval;  // see there
constexpr std::uint32_t kMaxHelpDepth = runtime_core::kMaxHelpDepth;                // see there
/// help_awaited runs the awaited task only if it is among this many most
/// recently queued tasks of the worker, and runs at most this many tasks.
constexpr std::uint32_t kHelpWindow = 32;
/// How long the searching worker looks for work before it parks.
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr int kPausesPerSpinRound = 256;

std::uint64_t next_random(std::uint64_t& state) noexcept {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

void default_leak_reporter(std::span<const leaked_task> tasks) {
  for (const leaked_task& t : tasks)
    std::fprintf(stderr, "warden: %s was still alive when shutdown's grace period ended; aborting it\n",
                 describe_task(t.id, t.name, t.location).c_str());
}

struct context_scope {
  thread_context saved;
  explicit context_scope(thread_context next) : saved(tl_context) { tl_context = next; }
  ~context_scope() { tl_context = saved; }
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;
};

}  // namespace

// ---- runtime_core ---------------------------------------------------------------

runtime_core::runtime_core(runtime_options options)
    : options_(std::move(options)),
      threaded_(options_.worker_threads > 0),
      sink_(new failure_sink(options_.on_unhandled_failure, options_.failure_reporter, options_.failure_feed_capacity)),
      idle_(threaded_ ? options_.worker_threads : 1),
      blocking_(*this, std::max<std::size_t>(1, options_.blocking_threads), options_.blocking_keep_alive),
      time_(options_.start_paused, *this) {
  if (!options_.leak_reporter) options_.leak_reporter = default_leak_reporter;
  const std::size_t n = threaded_ ? options_.worker_threads : 1;
  workers_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto w = std::make_unique<worker>();
    w->core = this;
    w->index = i;
    w->light_live = light_live_;
    // (relaxed: before the workers start.)
    if (!light_live_) w->closed.store(true, std::memory_order_relaxed);
    w->rng ^= (i + 1) * 0x2545F4914F6CDD1Dull;
    workers_.push_back(std::move(w));
  }
  if (threaded_) {
    for (auto& w : workers_) {
      worker* raw = w.get();
      raw->thread = std::thread([this, raw] {
        std::string name = options_.thread_name + "-" + std::to_string(raw->index);
        if (name.size() > 15) name.resize(15);
        pthread_setname_np(pthread_self(), name.c_str());
        run_worker(*raw);
      });
    }
  }
}

runtime_core::~runtime_core() {
  shutdown(std::chrono::nanoseconds::zero());
  sink_->release();
}

inline worker* runtime_core::own_worker() const noexcept {
  worker* w = tl_context.on_worker;
  return w != nullptr && w->core == this ? w : nullptr;
}

inline std::atomic<std::int64_t>& runtime_core::live_shard() noexcept {
  worker* w = own_worker();
  return w != nullptr ? w->live : outside_live_;
}

// Inlined into its two callers below (spawn_root, spawn_current).
[[gnu::always_inline]] inline task_header* runtime_core::spawn(std::coroutine_handle<> root, const result_ops& results,
                                                               spawn_options&& options, bool blocking) {
  const spawn_site* const site = intern_spawn_site_inline(root, options.location, results,
                                                          blocking ? static_cast<task_scheduler*>(&blocking_) : this);
  worker* const here = own_worker();
  if (!count_spawn(here)) {
    root.destroy();
    throw runtime_closed("spawn: the runtime is shutting down and accepts no new tasks; the task was destroyed unrun");
  }
  task_header* t = allocate_header();
  t->root = root;
  t->resume_point = root;
  set_spawn_site(t, site, options.name);
  // extras_of(parent) != nullptr, the tag alone (the record is never null).
  // acquire: a thread asking for the parent's id may have installed the record.
  if (task_header* parent = tl_context.task;
      parent != nullptr && (parent->site_or_extras.load(std::memory_order_acquire) & task_header::kExtrasTag) != 0)
    inherit_into(t);
  // Claimed in advance for its first poll (see task_header.cpp), with the
  // lifecycle and join handle references. release: a pool sweep that takes
  // a reference sees the fields above.
  t->state.store(task_header::RUNNING | task_header::JOIN_INTEREST | 2 * task_header::REF_ONE,
                 std::memory_order_release);
  if (blocking)
    blocking_.schedule(t, schedule_hint::spawn);
  else
    enqueue(here, t, schedule_hint::spawn);
  return t;
}

std::size_t runtime_core::alive() const noexcept {
  std::int64_t sum = outside_live_.load(std::memory_order_seq_cst);
  for (const auto& w : workers_) sum += w->live.load(std::memory_order_seq_cst);
  return sum > 0 ? static_cast<std::size_t>(sum) : 0;
}

inline bool runtime_core::count_spawn(worker* here) noexcept {
  // Spawn's half of the close handshake ("Live tasks" in the header).
  std::atomic<std::int64_t>& shard = here != nullptr ? here->live : outside_live_;
  if (light_live_ && here != nullptr) {
    // Only this thread writes its worker's shard: a plain increment, and a
    // compiler barrier against shutdown's heavy fence.
    shard.store(shard.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    light_fence();
    if (!closed_.load(std::memory_order_relaxed)) return true;
  } else {
    shard.fetch_add(1, std::memory_order_seq_cst);
    if (!closed_.load(std::memory_order_seq_cst)) return true;
  }
  task_gone(shard);
  return false;
}

inline void runtime_core::task_gone(std::atomic<std::int64_t>& shard) noexcept {
  if (light_live_ && &shard != &outside_live_) [[likely]] {
    shard.store(shard.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    light_fence();
    if (!closed_.load(std::memory_order_relaxed)) [[likely]]
      return;  // shutdown's read after its heavy fence sees us
    // Closed: a full barrier, so that of two completions racing to zero at
    // least one sees the other's decrement (the other side being a fence or
    // a seq_cst RMW too).
    std::atomic_thread_fence(std::memory_order_seq_cst);
  } else {
    shard.fetch_sub(1, std::memory_order_seq_cst);
    if (!closed_.load(std::memory_order_seq_cst)) return;
  }
  gone_while_closed();
}

void runtime_core::gone_while_closed() noexcept {
  if (alive() != 0) return;
  std::lock_guard lock(quiescent_mutex_);
  quiescent_cv_.notify_all();
}

void runtime_core::complete_here_slow(worker& w) noexcept {
  runtime_core& core = *w.core;
  // Closed (light count): a full barrier, as in task_gone. Not light: the
  // same barrier makes the plain decrement before it and this seq_cst load
  // of closed_ one side of the handshake, as task_gone's seq_cst RMW and
  // load would (shutdown stores closed_ and loads the shards seq_cst: if
  // the load below misses the close, the decrement precedes this fence in
  // the single total order, and the fence precedes shutdown's store and
  // loads of the shards, so they see it).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!w.light_live && !core.closed_.load(std::memory_order_seq_cst)) return;
  core.gone_while_closed();
}

void runtime_core::on_complete() noexcept {
  // A task of ours finished on one of our workers (see on_complete_here).
  // On a worker, light count or not, on_complete_here is the one way
  // (complete_here_slow holds the not-light mode's side of the handshake).
  worker* const w = own_worker();
  if (w != nullptr) [[likely]] {
    on_complete_here(*w);
    return;
  }
  task_gone(outside_live_);
}

inline bool runtime_core::push_local(worker& w, task_header* task) noexcept {
  bool was_empty = false;
  if (w.queue.push(task, was_empty)) [[likely]]
    return was_empty;
  return overflow(w, task);
}

inline void runtime_core::push_own(worker& w, task_header* task) noexcept {
  bool was_empty = false;
  if (w.queue.push(task, was_empty)) [[likely]] {
    // Our own queue: no barrier (see "Idling without lost wakeups").
    if (was_empty && idle_.should_notify_unfenced()) notify_parked();
    return;
  }
  overflow(w, task);
  notify_parked();
}

void runtime_core::schedule(task_header* task, schedule_hint hint) noexcept { enqueue(own_worker(), task, hint); }

void runtime_core::task_gone_here(worker& w) noexcept { task_gone(w.live); }

void runtime_core::push_own_overflowed(worker& w, task_header* task) noexcept {
  overflow(w, task);  // as push_own
  notify_parked();
}

void runtime_core::push_displaced(worker& w, task_header* task) noexcept { push_own(w, task); }

inline void runtime_core::enqueue(worker* w, task_header* task, schedule_hint hint) noexcept {
  if (w != nullptr) {
    if (hint == schedule_hint::wake) {
      task_header* previous = std::exchange(w->lifo, task);
      if (previous == nullptr) return;  // the worker runs it next; nobody else needs waking
      task = previous;
    }
    push_own(*w, task);
    return;
  }
  inject_.push(task);
  notify_parked();
}

bool runtime_core::overflow(worker& w, task_header* task) noexcept {
  // Full: move half of it to the injection queue, straight from our slots
  // (claimed first, so no thief takes them meanwhile), then push the task
  // into the room that made (once they are copied: it reuses a slot of
  // theirs).
  std::uint32_t from = 0;
  local_queue& q = w.queue;
  const std::uint32_t n = q.claim_batch(local_queue::kCapacity / 2, from);
  if (n != 0)
    inject_.push_each(n, [&q, from](std::size_t i) { return q.claimed(from + static_cast<std::uint32_t>(i)); });
  if (!q.push(task)) [[unlikely]]
    inject_.push(task);  // (cannot be: we claimed some, or it was empty)
  return true;
}

void runtime_core::notify_parked() noexcept {
  if (!idle_.should_notify()) return;
  const std::ptrdiff_t index = idle_.pick_sleeper();
  if (index >= 0) workers_[static_cast<std::size_t>(index)]->park.unpark();
}

bool runtime_core::has_work_anywhere() const noexcept {
  if (inject_.size() != 0) return true;
  for (const auto& w : workers_)
    if (!w->queue.looks_empty()) return true;
  return false;
}

inline task_header* runtime_core::next_task(worker& w) noexcept {
  // The common cases inline: a woken task in the LIFO slot (its streak not
  // used up), else a claimed one; next_task_slow does the rest in order.
  if (w.picks_to_check > 1) [[likely]] {
    if (w.lifo != nullptr) {
      if (w.lifo_streak < kMaxLifoStreak) {
        --w.picks_to_check;
        ++w.lifo_streak;
        return std::exchange(w.lifo, nullptr);
      }
    } else if (w.claimed_next != w.claimed_end) {
      --w.picks_to_check;
      w.lifo_streak = 0;
      return w.claimed[w.claimed_next++];
    }
  }
  return next_task_slow(w);
}

[[gnu::always_inline]] inline task_header* runtime_core::next_claimed(worker& w) noexcept {
  if (w.claimed_next == w.claimed_end) {
    w.claimed_next = 0;
    w.claimed_end = static_cast<std::uint32_t>(w.queue.claim_front(w.claimed.data(), worker::kClaimMax));
    if (w.claimed_end == 0) return nullptr;
  }
  return w.claimed[w.claimed_next];
}

task_header* runtime_core::take_queue_turn(worker& w) noexcept {
  // The usual turn first, with no call and so no saved registers: the
  // streak used up, no check due, a claimed task waiting and room in the
  // queue for the LIFO task. It changes nothing before it knows that it
  // can take the turn; anything else is take_queue_turn_slow's, from the
  // start.
  task_header* const lifo = w.lifo;
  if (lifo == nullptr) return nullptr;
  if (w.picks_to_check > 1 && w.lifo_streak >= kMaxLifoStreak && w.claimed_next != w.claimed_end) [[likely]] {
    bool was_empty = false;
    if (w.queue.push(lifo, was_empty)) [[likely]] {
      w.lifo = nullptr;
      w.lifo_streak = 0;
      task_header* const task = w.claimed[w.claimed_next];
      // relaxed: as below.
      if ((task->state.load(std::memory_order_relaxed) & task_header::RUNNING) == 0) return nullptr;
      --w.picks_to_check;
      ++w.claimed_next;
      w.stop_helping = false;  // as poll() does before each regular poll
      return task;
    }
  }
  return take_queue_turn_slow(w);
}

task_header* runtime_core::take_queue_turn_slow(worker& w) noexcept {
  if (w.lifo == nullptr) return nullptr;
  // next_task_slow's steps, in its order: its first pick is left to the
  // loop's next_task if a chain poll cannot take it.
  const bool check = w.picks_to_check <= 1;
  if (check) {
    // The periodic check first. Here only on a worker thread (its loop's
    // stop condition is `stopping_`, looked at here as the loop would
    // before this pick) when the injection queue holds nothing for the
    // check to take (it would be polled first: the loop's turn); else the
    // loop picks. The timers fire as in periodic_check. (The chain's last
    // poll left its task as the thread's: a timer's wake is no poll's.)
    if (!threaded_ || inject_.size() != 0 || stopping_.load(std::memory_order_acquire)) return nullptr;
    w.picks_to_check = kGlobalQueueInterval;  // this pick counted (as next_task_slow's 1 -> 0)
    tl_context.task = nullptr;
    time_.fire_due();
    wake_for_queued(w);
    // (A task a timer woke took the LIFO slot, the one there went to the
    // queue: the slot is not empty.)
    if (w.lifo_streak < kMaxLifoStreak) {
      ++w.lifo_streak;
      w.stop_helping = false;  // as poll() does before each regular poll
      return std::exchange(w.lifo, nullptr);
    }
  } else if (w.lifo_streak < kMaxLifoStreak) {
    return nullptr;
  }
  push_local(w, std::exchange(w.lifo, nullptr));
  w.lifo_streak = 0;
  task_header* const task = next_claimed(w);
  if (task == nullptr) return nullptr;
  // relaxed: a claimed task is ours; while queued only ABORT may be added
  // (the frame reached us through the queue, as for the loop's poll).
  if ((task->state.load(std::memory_order_relaxed) & task_header::RUNNING) == 0) return nullptr;
  if (!check) --w.picks_to_check;
  ++w.claimed_next;
  w.stop_helping = false;  // as poll() does before each regular poll
  return task;
}

task_header* runtime_core::next_task_slow(worker& w) noexcept {
  if (--w.picks_to_check == 0) [[unlikely]] {
    w.picks_to_check = kGlobalQueueInterval;
    if (task_header* t = periodic_check(w)) return t;
  }
  if (w.lifo != nullptr) {
    if (w.lifo_streak < kMaxLifoStreak) {
      ++w.lifo_streak;
      return std::exchange(w.lifo, nullptr);
    }
    push_local(w, std::exchange(w.lifo, nullptr));
  }
  w.lifo_streak = 0;
  if (task_header* t = next_claimed(w)) {
    ++w.claimed_next;
    return t;
  }
  return take_injected(w, inject_.size() / workers_.size() + 1);
}

task_header* runtime_core::periodic_check(worker& w) noexcept {
  time_.fire_due();  // busy workers keep timers on time
  wake_for_queued(w);
  return inject_.pop();
}

task_header* runtime_core::take_injected(worker& w, std::size_t max) noexcept {
  // The first task is ours to run; the rest go straight from the injection
  // queue into our queue's free slots, published with one store.
  local_queue& q = w.queue;
  const std::size_t room = q.room_owner();
  // The i-th task popped goes to slot end - 1 + i, the first (i == 0) to
  // `first`: end - 1 is never written.
  const std::uint32_t end = q.end_owner();
  task_header* first = nullptr;
  const std::size_t n = inject_.pop_each(std::min<std::size_t>({max, room + 1, local_queue::kCapacity / 2}),
                                         [&first, &q, end](std::size_t i, task_header* task) {
                                           if (i == 0) [[unlikely]]
                                             first = task;
                                           else
                                             q.stage(end - 1 + static_cast<std::uint32_t>(i), task);
                                         });
  if (n == 0) return nullptr;
  if (n > 1) {
    q.publish(end + static_cast<std::uint32_t>(n - 1));
    // While the batch was in transit (off the injection queue, not yet in
    // our queue) a searching worker may have looked, found nothing and gone
    // to sleep; the tasks now in our queue must not wait behind the one we
    // run.
    notify_parked();
  }
  return first;
}

task_header* runtime_core::search(worker& w, std::uint32_t min_victim_tasks) noexcept {
  if (!w.searching) {
    if (!idle_.try_start_searching()) return nullptr;
    w.searching = true;
  }
  const std::size_t n = workers_.size();
  const std::size_t start = static_cast<std::size_t>(next_random(w.rng) % n);
  for (std::size_t i = 0; i < n; ++i) {
    worker& victim = *workers_[(start + i) % n];
    if (&victim == &w) continue;
    if (task_header* t = victim.queue.steal_into(w.queue, min_victim_tasks)) {
      if (!w.queue.looks_empty()) notify_parked();  // the stolen half was in transit: see take_injected
      return t;
    }
  }
  return take_injected(w, local_queue::kCapacity / 2);
}

static_assert(std::tuple_size_v<decltype(worker::stash_base)> == kMaxHelpDepth + 1);

namespace {
[[noreturn, gnu::noinline, gnu::cold]] void throw_join_outside_task() {
  throw usage_error("co_await on a join_handle outside a warden task; use join() from a plain thread");
}
}  // namespace

[[gnu::always_inline]] inline bool runtime_core::help_awaited(worker& w, task_header* child) {
  // The common case first: the child was stashed by an earlier await of
  // this task (see "The stash" in the header), and every worker is still
  // busy. Ours: run it, no queue operation. (Only a threaded runtime
  // stashes.)
  // (No claim here: await_now's take_stashed tried it.)
  if (take_stashed<false>(w, child, 0)) [[likely]] {
    run_helped(w, child, true);
    return child->is_complete();
  }
  // (A stash entry above the current level's base exists only inside a
  // helped poll, so the fast path above needs no such check.)
  if (tl_context.task == nullptr) [[unlikely]]
    throw_join_outside_task();
  return help_awaited_slow(w, child);
}

bool runtime_core::help_awaited_slow(worker& w, task_header* child) noexcept {
  if (scheduler_of(child) != static_cast<task_scheduler*>(this)) return false;  // another runtime's task
  // Current-thread mode keeps spawn order exactly (tests on the paused clock
  // rely on it); see "Awaiting a task that has not started".
  if (!threaded_ || w.help_depth >= kMaxHelpDepth) return false;
  if (w.stash_size != 0) {
    // A worker wants work: everything stashed goes back where it can steal
    // it (see "The stash" in the header).
    if (!idle_.all_busy()) {
      give_back_all_stashed(w);
    } else {
      // The child stashed by an earlier await of this task, deeper than the
      // top (awaits out of spawn order)?
      const std::uint32_t base = w.stash_base[w.help_depth];
      for (std::uint32_t i = w.stash_size; i-- > base;) {
        if (w.stash[i] != child) continue;
        if (w.stop_helping || !never_started(child->state.load(std::memory_order_relaxed)))
          return false;  // given back when this task's poll ends
        for (std::uint32_t j = i + 1; j < w.stash_size; ++j) w.stash[j - 1] = w.stash[j];
        --w.stash_size;
        run_helped(w, child, true);
        return child->is_complete();
      }
    }
  }
  // With room for a whole window in the stash, the look for the child also
  // copies what it passes into the stash's free end, where the claim below
  // wants it (one pass over the slots instead of two).
  task_header** const out = w.stash.data() + w.stash_size;
  const bool copy = w.stash_size + kHelpWindow <= worker::kStashMax;
  const std::uint32_t depth = w.queue.depth_from_back(child, kHelpWindow, copy ? out : nullptr);
  if (depth == 0) return false;
  if (depth > 1 && !w.stop_helping && w.stash_size + depth <= worker::kStashMax && idle_.all_busy()) {
    // Every worker is busy (nobody would steal them): claim the stretch
    // down to the child with one CAS, run the child alone and stash its
    // younger siblings for the awaits that follow (see "The stash").
    const std::size_t n = w.queue.pop_back_batch(out, depth, copy);
    if (n != 0 && out[n - 1] == child && never_started(child->state.load(std::memory_order_relaxed))) {
      w.stash_size += static_cast<std::uint32_t>(n - 1);
      run_helped(w, child, true);
      // Level 0 (a task poll() runs) keeps no stash across its awaits, so
      // poll() has nothing to give back (no check per poll): the siblings
      // go back on the queue now, and the next await claims them again.
      if (w.help_depth == 0 && w.stash_size != 0) give_back_stash(w, 0);
      return child->is_complete();
    }
    // A thief got there first (or the child ran before): undo, and wait
    // for the child as usual.
    give_back(w, out, n);
    return false;
  }
  // One at a time, newest first, down to the child, while somebody looks
  // for work (so the rest stays stealable) or the stash is full.
  for (std::uint32_t ran = 0; ran < kHelpWindow; ++ran) {
    const std::uint64_t s = child->state.load(std::memory_order_acquire);
    if (w.stop_helping || (s & task_header::COMPLETE) != 0 || !never_started(s)) break;
    task_header* t = w.queue.pop_back();
    if (t == nullptr) break;
    // Ours now: only a poll changes its generation or its RUNNING bit.
    if (!never_started(t->state.load(std::memory_order_relaxed))) {
      give_back(w, &t, 1);
      break;
    }
    run_helped(w, t, t == child);
  }
  return child->is_complete();
}

bool runtime_core::claim_awaited(worker& w, task_header* child, std::uint64_t not_set) noexcept {
  // (A help level above 0 exists only inside a poll, so no outside-a-task
  // check is needed here; and only in a threaded runtime: current-thread
  // mode never helps, so its level stays 0.)
  const std::uint32_t level = w.help_depth;
  if (level == 0 || level >= kMaxHelpDepth || w.stop_helping || child == nullptr) return false;
  // relaxed: a hint, settled by the claim. A task in this worker's queue
  // keeps its RUNNING, COMPLETE and generation bits while queued (only a
  // poll changes them), and whatever set them last happened before its
  // push here (on this thread); one that is not in the window fails the
  // look below whatever this read.
  const std::uint64_t s = child->state.load(std::memory_order_relaxed);
  constexpr std::uint64_t generation = ~(task_header::GENERATION_ONE - 1);
  if ((s & (task_header::RUNNING | task_header::COMPLETE | generation | not_set)) != task_header::RUNNING) return false;
  if (w.stash_size + kHelpWindow > worker::kStashMax || !idle_.all_busy()) return false;
  // The look copies what it passes into the stash's free end, where the
  // claim wants it, newest first (the child last). Nothing is claimed if a
  // thief got there first (the caller then waits for the child as usual).
  const std::uint32_t n = w.queue.claim_back_to(child, kHelpWindow, w.stash.data() + w.stash_size);
  if (n == 0) return false;
  // The child was in this worker's queue from the look to the claim, so it
  // still never started. The younger siblings stay stashed for the awaits
  // that follow; the child is taken.
  w.stash_size += n - 1;
  enter_helped(w);
  return true;
}

[[gnu::always_inline]] inline void runtime_core::run_helped(worker& w, task_header* t, bool awaited) noexcept {
  enter_helped(w);
  task_header* const outer = std::exchange(tl_context.awaited_here, awaited ? t : nullptr);
  const bool yielded = poll_helped_task(t);
  tl_context.awaited_here = outer;
  // The same worker, read again: nothing of it need live across the poll.
  worker& v = *tl_context.on_worker;
  v.core->leave_helped(v, yielded ? t : nullptr);
}

void runtime_core::help_periodic(worker& w) noexcept {
  w.picks_to_check = kGlobalQueueInterval;
  time_.fire_due();
  wake_for_queued(w);
  if (w.lifo != nullptr || inject_.size() != 0) {
    w.stop_helping = true;
    // Nothing stays stashed while helping is stopped (and nothing is
    // claimed: every claim tests stop_helping), so take_stashed needs no
    // test of it: the stashed tasks go back to the queue now, where the
    // loop (or a thief) takes them, instead of when their levels' polls
    // end.
    if (w.stash_size != 0) give_back_all_stashed(w);
  }
}

void runtime_core::give_back_stash(worker& w, std::uint32_t base) noexcept {
  // Newest first in the stash: push the oldest first, so the end of the
  // queue looks as it did (bar what ran meanwhile).
  while (w.stash_size > base) push_own(w, w.stash[--w.stash_size]);
}

void runtime_core::give_back_all_stashed(worker& w) noexcept {
  // Outer levels hold older (larger) work: their parts go first, nearer the
  // front, where thieves take from.
  for (std::uint32_t level = 0; level <= w.help_depth; ++level) {
    const std::uint32_t end = level < w.help_depth ? w.stash_base[level + 1] : w.stash_size;
    for (std::uint32_t i = end; i-- > w.stash_base[level];) push_own(w, w.stash[i]);
  }
  w.stash_size = 0;
  for (std::uint32_t level = 0; level <= w.help_depth; ++level) w.stash_base[level] = 0;
}

void runtime_core::give_back(worker& w, task_header* const* tasks, std::size_t n) noexcept {
  // `tasks` is newest first: push the oldest first, so the end of the queue
  // looks as it did (bar what ran meanwhile).
  for (std::size_t i = n; i-- > 0;) push_local(w, tasks[i]);
}

[[gnu::always_inline]] inline bool help_awaited(task_header* child) {
  worker* w = tl_context.on_worker;
  if (w == nullptr) {
    if (tl_context.task == nullptr) [[unlikely]]
      throw_join_outside_task();
    return false;
  }
  // Whether the child is of w's runtime is asked on the slow path only: a
  // task in the worker's stash is.
  return w->core->help_awaited(*w, child);
}

inline void runtime_core::poll(worker& w, task_header* task) noexcept {
  w.stop_helping = false;
  if (w.searching) {
    w.searching = false;
    // The last searcher found work: wake another if there is more (see
    // "Spinning" in the header for why the check after the stop is enough).
    if (idle_.stop_searching() && has_work_anywhere()) notify_parked();
  }
  // A yielded task goes to the back of this worker's queue, where
  // schedule() would put it (the task is this runtime's: see enqueue).
  // (Or the task that this poll went on with: see take_lifo_next.)
  if (task_header* yielded = poll_task_yielded(task)) push_own(w, yielded);
  // Nothing stashed at this level is left: see help_awaited_slow.
}

template <class Done>
task_header* runtime_core::spin_for_work(worker& w, Done& done) noexcept {
  if (!threaded_ || !w.searching) return nullptr;
  const auto until = clock::now() + kSpinFor;
  for (;;) {
    for (int i = 0; i < kPausesPerSpinRound; ++i) detail::cpu_relax();
    const bool last = clock::now() >= until;
    if (task_header* t = next_task(w)) return t;
    if (task_header* t = search(w, last ? 1 : 2)) return t;
    if (last || done()) return nullptr;
  }
}

void runtime_core::park_worker(worker& w, const clock::time_point* deadline) noexcept {
  const bool was_searching = std::exchange(w.searching, false);
  idle_.register_sleeper(w.index, was_searching);
  // Re-check after registering (seq_cst loads; see "Idling" in the header).
  if (!has_work_anywhere() && !stopping_.load(std::memory_order_acquire)) {
    if (time_.paused() && !blocking_.busy() && time_.auto_advance()) {
      // Paused clock and nothing to run: time jumps to the next timer.
    } else {
      // Drive the timers if nobody does: sleep only until the next one.
      const auto timer_deadline = time_.begin_driving(w.index);
      const clock::time_point* until = deadline;
      if (timer_deadline && (until == nullptr || *timer_deadline < *until)) until = &*timer_deadline;
      if (until != nullptr)
        w.park.park_until(*until);
      else
        w.park.park();
      if (timer_deadline) time_.end_driving();
    }
  }
  // Still registered: we leave on our own. Otherwise a notifier picked us and
  // counted us as woken; now we search (its unpark token may still be
  // pending; harmless).
  if (!idle_.cancel_sleep(w.index)) w.searching = true;
}

template <class Done>
void runtime_core::run_loop(worker& w, Done&& done, const clock::time_point* deadline) {
  while (!done()) {
    if (task_header* t = next_task(w)) {
      poll(w, t);
      continue;
    }
    if (task_header* t = search(w, 2)) {
      poll(w, t);
      continue;
    }
    if (task_header* t = spin_for_work(w, done)) {
      poll(w, t);
      continue;
    }
    if (done()) break;
    if (deadline != nullptr && clock::now() >= *deadline) break;
    park_worker(w, deadline);
  }
  if (std::exchange(w.searching, false)) idle_.stop_searching();
}

thread_context runtime_core::worker_context(worker& w) noexcept {
  // The only place that sets on_worker: with it, core is always the
  // worker's (spawn_current relies on it).
  thread_context c;
  c.core = this;
  c.on_worker = &w;
  // The solo section's flags are w's (solo_inside, solo_blocked).
  if (solo_enabled_) c.solo_scheduler = this;
  return c;
}

void runtime_core::block_solo() noexcept {
  // The sweep's side of the solo section (see "Solo" in task_header.cpp):
  // after this, no worker changes a task's state word without an RMW. Each
  // worker reads only its own copy of the flag.
  for (auto& w : workers_) {
    if constexpr (WARDEN_TSAN) {
      w->solo_blocked.store(true, std::memory_order_seq_cst);
    } else {
      // relaxed: heavy_fence below orders it before our loads of the
      // workers' solo_inside, and the workers' loads of it after their
      // stores to solo_inside.
      w->solo_blocked.store(true, std::memory_order_relaxed);
    }
  }
  if constexpr (!WARDEN_TSAN) heavy_fence();
  for (auto& w : workers_) {
    // acquire: the plain stores of a section we waited for.
    // A section is a few instructions long, unless its thread was
    // preempted inside it.
    while (w->solo_inside.load(WARDEN_TSAN ? std::memory_order_seq_cst : std::memory_order_acquire) != 0)
      std::this_thread::yield();
  }
}

void runtime_core::unblock_solo() noexcept {
  // release: the sweep's aborts come before a worker's next solo section.
  for (auto& w : workers_) w->solo_blocked.store(false, std::memory_order_release);
}

void runtime_core::run_worker(worker& w) {
  context_scope scope(worker_context(w));
  run_loop(
      w, [this] { return stopping_.load(std::memory_order_acquire); }, nullptr);
}

template <class Done>
bool runtime_core::drive(Done&& done, const clock::time_point* deadline) {
  std::unique_lock lock(driver_mutex_);
  while (!done()) {
    if (deadline != nullptr && clock::now() >= *deadline) return false;
    if (!driving_) {
      driving_ = true;
      lock.unlock();
      {
        context_scope scope(worker_context(*workers_[0]));
        run_loop(*workers_[0], done, deadline);
      }
      lock.lock();
      driving_ = false;
      for (thread_parker* p : driver_waiters_) p->unpark();
      continue;
    }
    // Someone else drives: wait until it stops or our goal is reached (the
    // caller registered this thread's parker as a waker where needed).
    thread_parker& me = current_thread_parker();
    driver_waiters_.push_back(&me);
    lock.unlock();
    if (deadline != nullptr)
      me.park_until(*deadline);
    else
      me.park();
    lock.lock();
    driver_waiters_.erase(std::find(driver_waiters_.begin(), driver_waiters_.end(), &me));
  }
  return true;
}

void runtime_core::wait_for(task_header* task) {
  if (threaded_) {
    wait_with_parker(task);
    return;
  }
  thread_parker& me = current_thread_parker();
  waker w = waker::for_thread(&me);
  const bool registered = set_join_waker(task, w);
  if (!registered) return;
  // `w` must outlive its registration, also if drive throws.
  struct withdraw {
    task_header* task;
    ~withdraw() { clear_join_waker(task); }
  } const guard{task};
  drive([task] { return task->is_complete(); }, nullptr);
}

void runtime_core::wait_quiescent(const clock::time_point* deadline) {
  if (!threaded_) {
    drive([this] { return alive() == 0; }, deadline);
    return;
  }
  std::unique_lock lock(quiescent_mutex_);
  const auto quiet = [this] { return alive() == 0; };
  if (deadline != nullptr)
    quiescent_cv_.wait_until(lock, *deadline, quiet);
  else
    quiescent_cv_.wait(lock, quiet);
}

void runtime_core::shutdown(std::chrono::nanoseconds grace) {
  if (tl_context.core == this && (tl_context.on_worker != nullptr || tl_context.task != nullptr))
    throw usage_error(
        "runtime::shutdown called from one of its own tasks or workers, where it would deadlock; "
        "call it from the thread that owns the runtime");
  std::lock_guard guard(shutdown_mutex_);
  if (shut_down_) return;
  closed_.store(true, std::memory_order_seq_cst);
  // The copies spawn_current_unnamed reads (worker::closed), before the
  // fence as closed_.
  for (auto& w : workers_) w->closed.store(true, std::memory_order_seq_cst);
  // The close handshake's heavy side: every worker's later shard update
  // sees the close, or its earlier one is visible to the reads below.
  if (light_live_) heavy_fence();
  // Tell the tasks (callbacks run here, before the grace period starts).
  root_.cancel();

  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(grace);
  wait_quiescent(&deadline);

  bool reported = false;
  while (alive() != 0) {
    // Abort whatever is left. The sweep repeats (rarely) because a spawn
    // that raced the close may publish its header after a sweep passed.
    struct sweep {
      runtime_core* self;
      std::vector<leaked_task> leaked;
    } s{this, {}};
    // Mark every task first, then queue the idle ones: a task woken by
    // another's cancellation is then destroyed, never resumed. The marks
    // are RMWs, which a worker's plain store could undo: block those first.
    if (solo_enabled_) block_solo();
    for_each_live_header(
        [](void* ctx, task_header* h) {
          auto& sw = *static_cast<sweep*>(ctx);
          if (!sw.self->owns(h) || h->is_complete()) return;
          sw.leaked.push_back(leaked_task{task_id{task_id_of(h)}, std::string(task_name(h)), spawn_location(h)});
          request_abort(h);
        },
        &s);
    for_each_live_header(
        [](void* ctx, task_header* h) {
          if (static_cast<sweep*>(ctx)->self->owns(h)) abort(h);
        },
        &s);
    if (solo_enabled_) unblock_solo();
    if (!s.leaked.empty() && !reported) {
      reported = true;
      try {
        options_.leak_reporter(s.leaked);
      } catch (...) {
        std::fprintf(stderr, "warden: the leak reporter threw\n");
      }
    }
    const auto recheck = clock::now() + std::chrono::milliseconds(100);
    wait_quiescent(&recheck);
  }

  stopping_.store(true, std::memory_order_release);
  for (auto& w : workers_) w->park.unpark();
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
  blocking_.shutdown();
  shut_down_ = true;
}

// ---- blocking_pool --------------------------------------------------------------

blocking_pool::blocking_pool(runtime_core& core, std::size_t max_threads, std::chrono::milliseconds keep_alive)
    : core_(core), max_threads_(max_threads), keep_alive_(keep_alive) {}

void blocking_pool::schedule(task_header* task, schedule_hint) noexcept {
  std::unique_lock lock(mutex_);
  task->queue_next = nullptr;
  if (tail_ != nullptr)
    tail_->queue_next = task;
  else
    head_ = task;
  tail_ = task;
  ++queued_;
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  if (idle_ >= queued_ || threads_.size() >= max_threads_) {
    work_cv_.notify_one();
    return;
  }
  reap(lock);
  threads_.emplace_back();
  auto self = std::prev(threads_.end());
  try {
    *self = std::thread([this, self] { run(self); });
  } catch (...) {
    threads_.erase(self);  // cannot start a thread: the queued task waits for a running one
    work_cv_.notify_one();
  }
}

void blocking_pool::reap(std::unique_lock<std::mutex>& lock) {
  if (finished_.empty()) return;
  std::vector<std::thread> done;
  done.swap(finished_);
  lock.unlock();
  for (auto& t : done) t.join();
  lock.lock();
}

void blocking_pool::run(std::list<std::thread>::iterator self) {
  thread_context blocking;
  blocking.core = &core_;
  context_scope scope(blocking);
  std::unique_lock lock(mutex_);  // also waits until `*self` is assigned
  for (;;) {
    if (head_ != nullptr) {
      task_header* t = head_;
      head_ = t->queue_next;
      if (head_ == nullptr) tail_ = nullptr;
      t->queue_next = nullptr;
      --queued_;
      lock.unlock();
      poll_task(t);
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
      lock.lock();
      continue;
    }
    if (stopping_) break;
    ++idle_;
    const bool woke = work_cv_.wait_for(lock, keep_alive_, [this] { return head_ != nullptr || stopping_; });
    --idle_;
    if (!woke) break;  // idle for keep_alive: this thread retires
  }
  finished_.push_back(std::move(*self));
  threads_.erase(self);
  exit_cv_.notify_all();
}

void blocking_pool::shutdown() {
  std::unique_lock lock(mutex_);
  stopping_ = true;
  work_cv_.notify_all();
  exit_cv_.wait(lock, [this] { return threads_.empty(); });
  std::vector<std::thread> done;
  done.swap(finished_);
  lock.unlock();
  for (auto& t : done) t.join();
}

void blocking_pool::on_complete() noexcept { core_.on_complete(); }
failure_sink* blocking_pool::failures() noexcept { return core_.failures(); }
void blocking_pool::wait_for(task_header* task) { wait_with_parker(task); }

// ---- the public runtime and the free functions ----------------------------------------

runtime_core* current_core() noexcept { return tl_context.core; }

runtime_core& current_core_or_throw(const char* what) {
  if (tl_context.core == nullptr)
    throw usage_error(std::string(what) +
                      " called outside a runtime: call it from a task running on a warden::runtime, or call "
                      "the member function on a runtime object (rt.spawn(...))");
  return *tl_context.core;
}

void check_not_on_worker(const char* what) {
  // A blocking-pool thread may block (it is not a worker); a worker may not.
  if (tl_context.on_worker != nullptr)
    throw usage_error(std::string(what) +
                      " called from inside a task or on a worker thread, where blocking would deadlock; "
                      "co_await the task instead");
}

task_header* spawn_root(runtime_core& core, std::coroutine_handle<> root, const result_ops& results,
                        spawn_options&& options, bool blocking) {
  return core.spawn(root, results, std::move(options), blocking);
}

namespace {
/// spawn_current's general case.
[[gnu::noinline]] task_header* spawn_current_slow(std::coroutine_handle<> root, const result_ops& results,
                                                  spawn_options&& options) {
  runtime_core* const core = tl_context.core;
  if (core == nullptr) [[unlikely]] {
    if (root) root.destroy();  // never started
    current_core_or_throw("warden::spawn");
  }
  if (!root) [[unlikely]]
    throw usage_error("spawn: the task is empty (moved-from or default-constructed)");
  return core->spawn(root, results, std::move(options), false);
}

/// The rare ends of spawn_current's common case (tail calls there, so that
/// the common case needs no frame of its own): the runtime closed after the
/// count went up (as count_spawn's refusal, then as spawn's), the queue
/// full (as push_own), a sleeper to wake (as push_own).
[[gnu::noinline]] task_header* spawn_refused(runtime_core& core, worker& w, std::coroutine_handle<> root,
                                             task_header* t) {
  core.task_gone_here(w);
  // Never published (no references in its state): straight back to the
  // pool, as spawn never took it.
  free_header(t);
  root.destroy();
  throw runtime_closed("spawn: the runtime is shutting down and accepts no new tasks; the task was destroyed unrun");
}
[[gnu::noinline]] task_header* spawn_overflowed(worker& w, task_header* t) noexcept {
  w.core->push_own_overflowed(w, t);
  return t;
}
[[gnu::noinline]] task_header* spawn_notify(runtime_core& core, task_header* t) noexcept {
  core.notify_sleeper();
  return t;
}
}  // namespace

namespace {
/// spawn_current_unnamed's general case: spawn_current_slow with the
/// options its caller left out.
[[gnu::noinline]] task_header* spawn_current_slow_at(std::coroutine_handle<> root, const result_ops& results,
                                                     std::source_location location) {
  task_header* const t = spawn_current_slow(root, results, spawn_options{.location = location});
  // The record spawn interned (the thread's last; not read from `t`, which
  // may be gone already) becomes the worker's, if the common case may use
  // it there (see worker::last_site).
  if (worker* const w = tl_context.on_worker; w != nullptr && w->core->light_live()) {
    const spawn_site* const site = tl_last_spawn_site;
    if (site->scheduler == static_cast<task_scheduler*>(w->core) && site->results == &results) w->last_site = site;
  }
  return t;
}
}  // namespace

task_header* spawn_current(std::coroutine_handle<> root, const result_ops& results, spawn_options&& options) {
  if (options.name.empty()) return spawn_current_unnamed(root, results, options.location);
  return spawn_current_slow(root, results, std::move(options));
}

task_header* spawn_current_unnamed(std::coroutine_handle<> root, const result_ops& results,
                                   std::source_location location) {
  // The common case, spawn's work in a straight line: a spawn on a worker of
  // the caller's runtime (with the light live count), at the place of the
  // worker's last slow-path spawn (worker::last_site, which stands for the
  // light count too), without a name (this entry's caller tested it), from
  // a task without extras (task-locals to inherit), a header in the
  // thread's cache. Every check
  // comes before any effect, and the other cases are tail calls, so this
  // needs no frame of its own (callgrind: ~25 instructions fewer per spawn).
  worker* const w = tl_context.on_worker;
  if (w == nullptr) [[unlikely]]
    return spawn_current_slow_at(root, results, location);
  task_header* const parent = tl_context.task;
  // The worker's last site: its scheduler is the worker's runtime, which
  // counts live tasks the light way (see worker::last_site), so only the
  // result type and the location are compared.
  const spawn_site* const site = w->last_site;
  std::uintptr_t site_bits = 0;
  std::uintptr_t location_bits = 1;
  if constexpr (sizeof(std::source_location) == sizeof(std::uintptr_t) &&
                std::is_trivially_copyable_v<std::source_location>) {
    // Compared by their bits, as the site cache does (spawn_site.hpp);
    // elsewhere never equal (0 and 1): every spawn takes the slow path.
    std::memcpy(&site_bits, &site->location, sizeof(site_bits));
    std::memcpy(&location_bits, &location, sizeof(location_bits));
  }
  // extras_of(parent) != nullptr, the tag alone (as spawn). acquire: a
  // thread asking for the parent's id may have installed the record.
  if (site->results != &results || site_bits != location_bits || !root ||
      (parent != nullptr && (parent->site_or_extras.load(std::memory_order_acquire) & task_header::kExtrasTag) != 0))
      [[unlikely]]
    return spawn_current_slow_at(root, results, location);
  // After the acquire load above (which the compiler does not move loads
  // across): one load of the count. (A cache holding headers is open: see
  // header_cache.)
  headers::header_cache& cache = headers::tl_header_cache;
  if (cache.count == 0) [[unlikely]]
    return spawn_current_slow_at(root, results, location);
  // allocate_header's inline case, and spawn's fields (before the count:
  // its barrier would make the cache be read again).
  task_header* const t = cache.items[--cache.count];
  t->root = root;
  t->resume_point = root;
  // relaxed: published by the state's release store below (set_spawn_site).
  t->site_or_extras.store(reinterpret_cast<std::uintptr_t>(site), std::memory_order_relaxed);
  // count_spawn's light case. relaxed: only this thread writes its shard,
  // and the compiler barrier pairs with shutdown's heavy fence ("Live
  // tasks" in the header), which orders the increment and the read of
  // the worker's copy of closed_ against shutdown's store and sum (relaxed
  // as closed_'s read in count_spawn; the copy is on the shard's line, and
  // shutdown sets it before its fence).
  add_single_writer(w->live, 1);
  light_fence();
  if (w->closed.load(std::memory_order_relaxed)) [[unlikely]]
    return spawn_refused(*w->core, *w, root, t);
  // As in spawn: claimed in advance, two references. release: see there.
  t->state.store(task_header::RUNNING | task_header::JOIN_INTEREST | 2 * task_header::REF_ONE,
                 std::memory_order_release);
  // push_own.
  bool was_empty = false;
  if (!w->queue.push(t, was_empty)) [[unlikely]]
    return spawn_overflowed(*w, t);
  // (The caller's runtime, tl_context.core: a thread's worker is always one
  // of it; worker_context sets both.)
  if (was_empty) [[unlikely]] {
    runtime_core* const core = w->core;
    if (core->idle_.should_notify_unfenced()) [[unlikely]]
      return spawn_notify(*core, t);
  }
  return t;
}

void block_on_root(runtime_core& core, task_header* task) {
  if (task->is_complete()) return;
  core.wait_for(task);
}

}  // namespace warden::detail

namespace warden {

std::size_t runtime_options::default_worker_threads() noexcept {
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
void validate(const runtime_options& options) {
  // The idle state packs the counts of searching, unparked and woken workers
  // into 16 bits each (see idle_state in runtime_core.hpp).
  if (options.worker_threads > runtime_options::max_worker_threads)
    throw usage_error("runtime_options::worker_threads is " + std::to_string(options.worker_threads) +
                      "; a runtime has at most " + std::to_string(runtime_options::max_worker_threads) +
                      " worker threads");
  if (options.start_paused && options.worker_threads != 0)
    throw usage_error(
        "runtime_options::start_paused needs current-thread mode (worker_threads = 0), where "
        "\"every task is idle\" is exact; set worker_threads = 0 for tests on the paused clock");
}
}  // namespace

runtime::runtime(runtime_options options)
    : core_((validate(options), std::make_unique<detail::runtime_core>(std::move(options)))) {}

runtime::~runtime() {
  try {
    core_->shutdown(std::chrono::nanoseconds::zero());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warden: runtime destroyed from its own task or worker: %s\n", e.what());
    std::terminate();
  }
}

void runtime::shutdown(std::chrono::nanoseconds grace) { core_->shutdown(grace); }
cancellation_token runtime::root_token() const { return core_->root_token(); }

broadcast_receiver<task_failure> runtime::subscribe_failures() { return core_->failures()->subscribe(); }

cancellation_token current_root_token() {
  return detail::current_core_or_throw("warden::current_root_token").root_token();
}
std::size_t runtime::worker_count() const noexcept { return core_->worker_count(); }
std::size_t runtime::alive_tasks() const noexcept { return core_->alive(); }
bool runtime::is_shutting_down() const noexcept { return core_->closed(); }

// ---- join_handle_base::await_now_slow, wait ------------------------------------
// Here rather than in task_header.cpp: help_awaited inlines into
// await_now_slow.

detail::await_outcome join_handle_base::await_now_slow() {
  check_can_take();  // `co_await handle` leaves it to here (see the awaiter)
  if (task_->is_complete()) return {0, kComplete};
  // (Throws outside a task.) A child still queued and never run: run it here instead of suspending
  // (its younger siblings may run first, or wait in the worker's stash for
  // their own awaits); see runtime_core.hpp.
  return {0, detail::help_awaited(task_) ? kComplete : kPending};
}

/// The waker lives in the awaiter's `slot` while the header points at it
/// (see set_join_waker).
bool join_handle_base::wait(std::coroutine_handle<> awaiting, detail::waker& slot) {
  slot = detail::suspend_current(awaiting);
  if (detail::set_join_waker(task_, slot)) return true;
  slot.reset();
  return false;
}

}  // namespace warden
