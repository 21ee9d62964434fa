// Stress: tasks parked on each sync primitive are aborted at random moments,
// racing the operation that wakes them (SEMANTICS P5: waiters aborted while
// parked are removed and consume nothing; one handed the lock, a permit or
// a notification passes it on). Afterwards every primitive must be exact:
// the lock free, every permit back, the one notification either consumed
// or stored, no waiter left in any list.
#include "support/test_support.hpp"

#include <warden/sync/event.hpp>
#include <warden/sync/latch.hpp>
#include <warden/sync/mutex.hpp>
#include <warden/sync/notify.hpp>
#include <warden/sync/semaphore.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::random_spin;
using warden::testkit::seed_trace;
using warden::testkit::spin;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

using warden::testkit::hang_guard;

/// Joins `h` from this (plain) thread; true if the task ran to its end,
/// false if it was cancelled.
bool joined_normally(warden::join_handle<void>& h) {
  try {
    h.join();
    return true;
  } catch (const warden::join_error& e) {
    EXPECT_TRUE(e.is_cancelled()) << e.what();
    return false;
  }
}

/// One action of an iteration: the main thread performs them in a random
/// order, each after a random spin.
using action = std::function<void()>;
void run_shuffled(std::vector<action>& actions, std::mt19937_64& rng) {
  std::shuffle(actions.begin(), actions.end(), rng);
  for (auto& a : actions) {
    spin(random_spin(rng, 16));
    a();
  }
}

/// Sometimes (half the iterations) aborts every task still running, in a
/// random order with random gaps: many of them are then queued or were just
/// handed the lock / permits by a task aborted before them.
void maybe_abort_the_rest(std::vector<warden::join_handle<void>>& handles, std::mt19937_64& rng) {
  if (rng() % 2 == 0) return;
  std::vector<warden::join_handle<void>*> order;
  for (auto& h : handles) order.push_back(&h);
  std::shuffle(order.begin(), order.end(), rng);
  for (auto* h : order) {
    spin(random_spin(rng, 16) / 16);
    h->abort();
  }
}

/// The stress fixture: one runtime per test (1, 2 or 4 workers, from the
/// seed), many iterations on it.
class sync_abort_stress : public ::testing::Test {
 protected:
  sync_abort_stress()
      : seed_(stress_seed()),
        rng_(seed_),
        rt_(warden::testkit::quiet_options(std::size_t{1} << (seed_ % 3))),
        iterations_(stress_iterations(3000)) {}

  std::uint64_t seed_;
  std::mt19937_64 rng_;
  warden::runtime rt_;
  int iterations_;
  std::atomic<int> progress_{0};
};

/// Adds `n` to a counter for its lifetime: an abort (which destroys the
/// frame) undoes it too. Declared after a guard or permit, it is undone
/// before the lock or the permits are given back.
class scoped_add {
 public:
  scoped_add(std::atomic<std::size_t>& counter, std::size_t n, std::size_t limit, std::atomic<int>& excess)
      : counter_(counter), n_(n) {
    if (counter.fetch_add(n) + n > limit) excess.fetch_add(1);
  }
  scoped_add(const scoped_add&) = delete;
  scoped_add& operator=(const scoped_add&) = delete;
  ~scoped_add() { counter_.fetch_sub(n_); }

 private:
  std::atomic<std::size_t>& counter_;
  std::size_t n_;
};

// ---- mutex --------------------------------------------------------------------

/// What the tasks of one iteration share: a start gate (so that every
/// abort handle is in place before anyone looks), the handles of all of
/// them, and a per-task seed.
struct crowd {
  warden::event start;
  std::vector<warden::abort_handle> members;
};

/// Right after giving the lock or permits back (so that the next waiter has
/// just been handed them and has not run yet), sometimes aborts a random
/// member of the crowd, maybe itself.
void maybe_abort_a_peer(crowd& c, std::mt19937_64& rng) {
  if (rng() % 3 == 0) c.members[rng() % c.members.size()].abort();
}

task<void> lock_a_few_times(warden::mutex* m, int rounds, crowd* c, std::uint64_t seed,
                            std::atomic<std::size_t>* inside, std::atomic<int>* overlaps) {
  std::mt19937_64 rng(seed);
  co_await c->start.wait();
  for (int i = 0; i < rounds; ++i) {
    auto guard = co_await m->lock();
    {
      scoped_add in_section(*inside, std::size_t{1}, std::size_t{1}, *overlaps);
      co_await warden::yield_now{};
    }
    guard.unlock();
    maybe_abort_a_peer(*c, rng);
  }
}

// P5: mutex — aborting queued waiters, handed-over owners and holders at
// random moments never breaks exclusion and leaves the mutex free, with no
// waiter queued.
TEST_F(sync_abort_stress, mutex_stays_exact_under_random_aborts) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("mutex_stays_exact_under_random_aborts", progress_);
  std::atomic<int> overlaps{0};
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    warden::mutex m;
    std::atomic<std::size_t> inside{0};
    const int tasks = 2 + static_cast<int>(rng_() % 5);
    crowd c;
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i)
      handles.push_back(
          rt_.spawn(lock_a_few_times(&m, 1 + static_cast<int>(rng_() % 6), &c, rng_(), &inside, &overlaps)));
    for (auto& h : handles) c.members.push_back(h.get_abort_handle());
    std::vector<action> actions;
    actions.emplace_back([&c] { c.start.set(); });
    for (auto& h : handles)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    maybe_abort_the_rest(handles, rng_);
    for (auto& h : handles) (void)joined_normally(h);
    ASSERT_EQ(overlaps.load(), 0) << "iteration " << it;
    ASSERT_FALSE(m.is_locked()) << "iteration " << it;
    ASSERT_EQ(m.waiter_count(), 0u) << "iteration " << it;
    ASSERT_TRUE(m.try_lock().has_value()) << "iteration " << it;
  }
}

// ---- semaphore ----------------------------------------------------------------

task<void> take_permits(warden::semaphore* s, std::size_t k, int rounds, crowd* c, std::uint64_t seed,
                        std::size_t limit, std::atomic<std::size_t>* in_use, std::atomic<int>* excess) {
  std::mt19937_64 rng(seed);
  co_await c->start.wait();
  for (int i = 0; i < rounds; ++i) {
    auto permit = co_await s->acquire(k);
    {
      scoped_add using_them(*in_use, k, limit, *excess);
      co_await warden::yield_now{};
    }
    permit.release();
    maybe_abort_a_peer(*c, rng);
  }
}

// P5: semaphore — aborting parked requests and requests already handed
// their permits at random moments never over-commits and returns every
// permit, with no waiter queued.
TEST_F(sync_abort_stress, semaphore_stays_exact_under_random_aborts) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("semaphore_stays_exact_under_random_aborts", progress_);
  std::atomic<int> excess{0};
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    const std::size_t permits = 1 + rng_() % 4;
    warden::semaphore s(permits);
    std::atomic<std::size_t> in_use{0};
    const int tasks = 2 + static_cast<int>(rng_() % 6);
    crowd c;
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i)
      handles.push_back(rt_.spawn(take_permits(&s, 1 + rng_() % permits, 1 + static_cast<int>(rng_() % 4), &c, rng_(),
                                               permits, &in_use, &excess)));
    for (auto& h : handles) c.members.push_back(h.get_abort_handle());
    std::vector<action> actions;
    actions.emplace_back([&c] { c.start.set(); });
    for (auto& h : handles)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    maybe_abort_the_rest(handles, rng_);
    for (auto& h : handles) (void)joined_normally(h);
    ASSERT_EQ(excess.load(), 0) << "iteration " << it;
    ASSERT_EQ(s.available_permits(), permits) << "iteration " << it;
    ASSERT_EQ(s.waiter_count(), 0u) << "iteration " << it;
    ASSERT_TRUE(s.try_acquire(permits).has_value()) << "iteration " << it;
  }
}

// ---- notify -------------------------------------------------------------------

task<void> wait_notified(warden::notify* n, std::atomic<int>* woken) {
  co_await n->notified();
  woken->fetch_add(1);
}

// P5: notify — one notify_one racing aborts of its waiters (parked, or
// already handed the notification) is never lost and never duplicated: in
// the end exactly one waiter consumed it, or it is the stored permit.
TEST_F(sync_abort_stress, one_notification_is_consumed_or_stored_exactly_once) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("one_notification_is_consumed_or_stored_exactly_once", progress_);
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    warden::notify n;
    std::atomic<int> woken{0};
    const int tasks = 1 + static_cast<int>(rng_() % 5);
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i) handles.push_back(rt_.spawn(wait_notified(&n, &woken)));
    std::vector<action> actions;
    actions.emplace_back([&n] { n.notify_one(); });
    for (auto& h : handles)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    // Let the notification settle, then cancel whoever is still parked (in
    // a random order, with more hand-offs racing).
    std::shuffle(handles.begin(), handles.end(), rng_);
    for (auto& h : handles) {
      spin(random_spin(rng_, 16));
      h.abort();
    }
    for (auto& h : handles) (void)joined_normally(h);
    const bool permit = n.notified().await_ready();  // consumes it, if stored
    ASSERT_EQ(woken.load() + (permit ? 1 : 0), 1) << "iteration " << it;
    ASSERT_EQ(n.waiter_count(), 0u) << "iteration " << it;
  }
}

// P5: notify_all — every task parked when notify_all is called finishes
// (none is left parked), even with aborts racing it; no permit is stored.
TEST_F(sync_abort_stress, notify_all_releases_every_parked_task_despite_aborts) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("notify_all_releases_every_parked_task_despite_aborts", progress_);
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    warden::notify n;
    std::atomic<int> woken{0};
    const int tasks = 1 + static_cast<int>(rng_() % 6);
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i) handles.push_back(rt_.spawn(wait_notified(&n, &woken)));
    while (n.waiter_count() != static_cast<std::size_t>(tasks)) std::this_thread::yield();
    std::vector<action> actions;
    actions.emplace_back([&n] { n.notify_all(); });
    for (auto& h : handles)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    int completed = 0;
    for (auto& h : handles) completed += joined_normally(h) ? 1 : 0;  // hangs if one stayed parked
    ASSERT_EQ(woken.load(), completed) << "iteration " << it;
    ASSERT_EQ(n.waiter_count(), 0u) << "iteration " << it;
    ASSERT_FALSE(n.notified().await_ready()) << "iteration " << it;
  }
}

// ---- event --------------------------------------------------------------------

task<void> wait_event(warden::event* ev, std::atomic<int>* woken) {
  co_await ev->wait();
  woken->fetch_add(1);
}

// P5: event — set racing aborts wakes every waiter that was not aborted,
// exactly once, and leaves no waiter in the list.
TEST_F(sync_abort_stress, event_set_wakes_every_surviving_waiter_once) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("event_set_wakes_every_surviving_waiter_once", progress_);
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    warden::event ev;
    std::atomic<int> woken{0};
    const int tasks = 1 + static_cast<int>(rng_() % 6);
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i) handles.push_back(rt_.spawn(wait_event(&ev, &woken)));
    std::vector<action> actions;
    actions.emplace_back([&ev] { ev.set(); });
    for (auto& h : handles)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    int completed = 0;
    for (auto& h : handles) completed += joined_normally(h) ? 1 : 0;
    ASSERT_EQ(woken.load(), completed) << "iteration " << it;
    ASSERT_EQ(ev.waiter_count(), 0u) << "iteration " << it;
    ASSERT_TRUE(ev.is_set()) << "iteration " << it;
  }
}

// P5: event — enough waiters that aborted ones outnumber the parked ones
// and the event compacts its list (it drops aborted waiters' entries in
// batches of 64 or more), while set() runs on this thread and the waiters
// are aborted from another: every waiter that was not aborted is woken
// once, none is lost in a compaction, and the count ends at zero. One event
// serves every round (reset first), so a round starts after the last one's
// set() or compaction left the list.
TEST_F(sync_abort_stress, event_compaction_racing_set_loses_no_waiter) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("event_compaction_racing_set_loses_no_waiter", progress_);
  warden::event ev;
  for (int it = 0; it < std::max(1, iterations_ / 30); ++it) {
    progress_.store(it);
    ev.reset();
    std::atomic<int> woken{0};
    const int tasks = 100 + static_cast<int>(rng_() % 200);
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < tasks; ++i) handles.push_back(rt_.spawn(wait_event(&ev, &woken)));
    while (ev.waiter_count() < static_cast<std::size_t>(tasks) / 2) spin(64);
    std::vector<warden::join_handle<void>*> doomed;
    for (auto& h : handles)
      if (rng_() % 4 != 0) doomed.push_back(&h);
    const std::uint32_t spins = random_spin(rng_, 12);
    std::thread aborter([&] {
      for (auto* h : doomed) h->abort();
    });
    spin(spins);
    ev.set();
    aborter.join();
    int completed = 0;
    for (auto& h : handles) completed += joined_normally(h) ? 1 : 0;
    ASSERT_EQ(woken.load(), completed) << "iteration " << it;
    ASSERT_EQ(ev.waiter_count(), 0u) << "iteration " << it;
  }
}

// ---- latch --------------------------------------------------------------------

task<void> wait_latch(warden::latch* l, std::atomic<int>* woken) {
  co_await l->wait();
  woken->fetch_add(1);
}

task<void> count_down_later(warden::latch* l) {
  co_await warden::yield_now{};
  l->count_down();
}

// P5: latch — count-downs from tasks racing aborts of the waiters release
// every waiter that was not aborted, once; the count ends at exactly zero.
TEST_F(sync_abort_stress, latch_releases_every_surviving_waiter_once) {
  SCOPED_TRACE(seed_trace(seed_));
  hang_guard guard("latch_releases_every_surviving_waiter_once", progress_);
  for (int it = 0; it < iterations_; ++it) {
    progress_.store(it);
    const int count = 1 + static_cast<int>(rng_() % 3);
    warden::latch l(count);
    std::atomic<int> woken{0};
    const int tasks = 1 + static_cast<int>(rng_() % 5);
    std::vector<warden::join_handle<void>> waiters;
    for (int i = 0; i < tasks; ++i) waiters.push_back(rt_.spawn(wait_latch(&l, &woken)));
    std::vector<warden::join_handle<void>> counters;
    std::vector<action> actions;
    for (int i = 0; i < count; ++i) actions.emplace_back([&] { counters.push_back(rt_.spawn(count_down_later(&l))); });
    for (auto& h : waiters)
      if (rng_() % 2 == 0) actions.emplace_back([&h] { h.abort(); });
    run_shuffled(actions, rng_);
    for (auto& h : counters) ASSERT_TRUE(joined_normally(h));
    int completed = 0;
    for (auto& h : waiters) completed += joined_normally(h) ? 1 : 0;
    ASSERT_EQ(woken.load(), completed) << "iteration " << it;
    ASSERT_EQ(l.waiter_count(), 0u) << "iteration " << it;
    ASSERT_EQ(l.remaining(), 0) << "iteration " << it;
  }
}

}  // namespace
