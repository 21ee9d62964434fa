// Stress: abort racing completion, a panic, a wake and other aborts
// (SEMANTICS R8, R9). Every race must end in exactly one outcome, with every
// frame destroyed and every awaiter deregistered.
#include "support/test_support.hpp"

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::random_spin;
using warden::testkit::seed_trace;
using warden::testkit::spin;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

using warden::testkit::hang_guard;

/// Polls `done` (yielding the thread) until it holds; the hang guard catches
/// a condition that never comes.
template <class Pred>
void wait_until(Pred done) {
  while (!done()) std::this_thread::yield();
}

/// What the racing bodies record.
struct probe {
  std::atomic<int> live{0};      // locals of running bodies
  std::atomic<int> finished{0};  // bodies that reached their end (return or throw)
};

enum class finish_point { immediately, after_yield, after_event };

task<int> completing_body(probe* p, finish_point at, test_event* event, int value) {
  live_counter local(p->live);
  if (at == finish_point::after_yield) co_await warden::yield_now{};
  if (at == finish_point::after_event) co_await event->wait();
  p->finished.fetch_add(1, std::memory_order_relaxed);
  co_return value;
}

task<int> throwing_body(probe* p, finish_point at, test_event* event) {
  live_counter local(p->live);
  if (at == finish_point::after_yield) co_await warden::yield_now{};
  if (at == finish_point::after_event) co_await event->wait();
  p->finished.fetch_add(1, std::memory_order_relaxed);
  throw std::runtime_error("boom");
}

task<void> abort_later(warden::abort_handle target, int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  target.abort();
}

task<void> set_later(test_event* event, int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  event->set();
}

/// One race of abort against a body: the body finishes immediately, after a
/// yield, or after an event that the main thread or a task sets; the main
/// thread or a task aborts it at a random moment.
struct race_plan {
  finish_point at;
  bool abort_from_task;
  bool set_from_task;
  bool set_before_abort;  // when both happen on the main thread
  int abort_yields;
  int set_yields;
  std::uint32_t abort_spin;
  std::uint32_t set_spin;

  static race_plan random(std::mt19937_64& rng) {
    race_plan p{};
    p.at = static_cast<finish_point>(rng() % 3);
    p.abort_from_task = rng() % 4 == 0;
    p.set_from_task = rng() % 2 == 0;
    p.set_before_abort = rng() % 2 == 0;
    p.abort_yields = static_cast<int>(rng() % 3);
    p.set_yields = static_cast<int>(rng() % 3);
    p.abort_spin = random_spin(rng, 17);
    p.set_spin = random_spin(rng, 17);
    return p;
  }
};

/// Starts the aborter and the setter of `plan` against `target`; returns the
/// handles of the helper tasks (empty when the main thread acts).
std::vector<warden::join_handle<void>> run_plan(warden::runtime& rt, const race_plan& plan,
                                                const warden::join_handle_base& target, test_event& event) {
  std::vector<warden::join_handle<void>> helpers;
  const bool needs_set = plan.at == finish_point::after_event;
  if (needs_set && plan.set_from_task) helpers.push_back(rt.spawn(set_later(&event, plan.set_yields)));
  if (plan.abort_from_task) helpers.push_back(rt.spawn(abort_later(target.get_abort_handle(), plan.abort_yields)));
  const bool set_here = needs_set && !plan.set_from_task;
  if (set_here && plan.set_before_abort) {
    spin(plan.set_spin);
    event.set();
  }
  if (!plan.abort_from_task) {
    spin(plan.abort_spin);
    target.abort();
  }
  if (set_here && !plan.set_before_abort) {
    spin(plan.set_spin);
    event.set();
  }
  return helpers;
}

/// Races run side by side in one iteration, so that the workers stay busy
/// (a lone race per iteration mostly measures thread wake-up latency).
constexpr int kBatch = 4;

/// How one race ended.
struct outcome {
  bool value = false;
  bool panic = false;
  bool cancelled = false;
  bool other = false;  // anything else (a wrong value, a wrong message)
};

/// Runs `races` races (in batches of kBatch) of abort against a body made by
/// `make(probe*, finish_point, test_event*, race index)`; `classify(handle,
/// race index)` joins a handle and says how it ended. Checks that each race
/// ended in exactly one allowed outcome, consistent with whether the body
/// reached its end, and that every local and waiter is gone.
template <class Make, class Classify>
void race_abort_against(const char* what, int races, bool expect_panic, Make make, Classify classify) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard(std::string(what) + " " + seed_trace(seed), progress);

  probe p;
  int finishes = 0;
  int cancels = 0;
  {
    warden::runtime rt(warden::testkit::quiet_options(2));
    for (int first = 0; first < races; first += kBatch) {
      progress.store(first, std::memory_order_relaxed);
      const int finished_before = p.finished.load();
      std::array<test_event, kBatch> events;
      std::array<race_plan, kBatch> plans;
      std::vector<warden::join_handle<int>> handles;
      std::vector<warden::join_handle<void>> helpers;
      for (int k = 0; k < kBatch; ++k) {
        plans[k] = race_plan::random(rng);
        handles.push_back(rt.spawn(make(&p, plans[k].at, &events[k], first + k)));
        for (auto& h : run_plan(rt, plans[k], handles.back(), events[k])) helpers.push_back(std::move(h));
      }
      int expected_finished = 0;
      bool ok = true;
      std::string report;
      for (int k = 0; k < kBatch; ++k) {
        const outcome o = classify(handles[k], first + k);
        const bool finished = expect_panic ? o.panic : o.value;
        if (o.other || static_cast<int>(o.value) + static_cast<int>(o.panic) + static_cast<int>(o.cancelled) != 1 ||
            (expect_panic ? o.value : o.panic)) {
          ok = false;
          report += " race " + std::to_string(first + k) + " (finish point " +
                    std::to_string(static_cast<int>(plans[k].at)) + "): value " + std::to_string(o.value) + ", panic " +
                    std::to_string(o.panic) + ", cancelled " + std::to_string(o.cancelled) + ", wrong result " +
                    std::to_string(o.other) + ";";
        }
        expected_finished += finished ? 1 : 0;
        (finished ? finishes : cancels) += 1;
      }
      for (auto& h : helpers) h.join();
      const int finished = p.finished.load() - finished_before;
      std::size_t waiters = 0;
      for (auto& e : events) waiters += e.waiters();
      // A cancelled body never reached its end; a finished one did, once.
      if (!ok || finished != expected_finished || p.live.load() != 0 || waiters != 0) {
        ADD_FAILURE() << "races " << first << ".." << first + kBatch - 1 << ":" << report << " bodies finished "
                      << finished << " (outcomes say " << expected_finished << "), live locals " << p.live.load()
                      << ", event waiters " << waiters;
        break;
      }
    }
    rt.shutdown(std::chrono::nanoseconds::zero());
    EXPECT_EQ(rt.alive_tasks(), 0u);
  }
  EXPECT_EQ(p.live.load(), 0);
  std::printf("[ info ] %d races: %d %s, %d cancelled\n", races, finishes, expect_panic ? "panics" : "values", cancels);
}

// R9: abort racing completion yields exactly one outcome: the value (and the
// body ran to its end) or cancelled (and the body did not finish, its locals
// destroyed). Never both, never neither, never a hang.
TEST(abort_race, abort_racing_completion_gives_exactly_one_outcome) {
  race_abort_against(
      "abort_racing_completion", stress_iterations(100000), false,
      [](probe* p, finish_point at, test_event* e, int race) { return completing_body(p, at, e, race); },
      [](warden::join_handle<int>& h, int race) {
        outcome o;
        try {
          const int v = h.join();
          o.value = true;
          o.other = v != race;
        } catch (const warden::join_error& e) {
          o.cancelled = e.is_cancelled();
          o.other = !e.is_cancelled();
        }
        o.other = o.other || !h.is_finished();
        return o;
      });
}

// R9 with R6: abort racing a thrown exception yields exactly one outcome,
// panic (the body reached its throw) or cancelled (it did not).
TEST(abort_race, abort_racing_a_panic_gives_exactly_one_outcome) {
  race_abort_against(
      "abort_racing_a_panic", stress_iterations(40000), true,
      [](probe* p, finish_point at, test_event* e, int) { return throwing_body(p, at, e); },
      [](warden::join_handle<int>& h, int) {
        outcome o;
        try {
          h.join();
          o.value = true;
        } catch (const warden::join_error& e) {
          o.panic = e.is_panic();
          o.cancelled = e.is_cancelled();
          o.other = e.is_panic() && e.panic_message() != "boom";
        }
        return o;
      });
}

/// Runs `rounds` rounds of a race between `actors` threads, the calling
/// thread being actor 0. Each round: `prepare(round)` on the calling thread,
/// then `act(actor, round)` on all actors at once, then `finish(round)` on
/// the calling thread once every actor is done; false from `finish` stops.
template <class Prepare, class Act, class Finish>
void race_rounds(int rounds, int actors, std::atomic<int>& progress, Prepare prepare, Act act, Finish finish) {
  std::barrier start(actors);
  std::barrier done(actors);
  std::atomic<bool> stop{false};
  std::vector<std::thread> helpers;
  for (int k = 1; k < actors; ++k)
    helpers.emplace_back([&, k] {
      for (int r = 0;; ++r) {
        start.arrive_and_wait();
        if (stop.load()) return;
        act(k, r);
        done.arrive_and_wait();
      }
    });
  for (int r = 0; r < rounds; ++r) {
    progress.store(r, std::memory_order_relaxed);
    prepare(r);
    start.arrive_and_wait();
    act(0, r);
    done.arrive_and_wait();
    if (!finish(r)) break;
  }
  stop.store(true);
  start.arrive_and_wait();
  for (auto& t : helpers) t.join();
}

// R8/R9: a parked task woken by one thread while another aborts it ends in
// exactly one outcome; the event's waiter list ends empty (the aborted
// awaiter deregistered itself) and every frame is destroyed.
TEST(abort_race, wake_racing_abort_gives_exactly_one_outcome) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const int rounds = stress_iterations(10000);
  std::atomic<int> progress{0};
  hang_guard guard("wake_racing_abort " + seed_trace(seed), progress);

  probe p;
  int values = 0;
  int cancels = 0;
  warden::runtime rt(warden::testkit::quiet_options(2));

  struct round_state {
    std::unique_ptr<test_event> event;
    warden::join_handle<int> handle;
    std::uint32_t spin[2]{};
    int finished_before = 0;
  } round;

  race_rounds(
      rounds, 2, progress,
      [&](int r) {
        round.event = std::make_unique<test_event>();
        round.finished_before = p.finished.load();
        round.handle = rt.spawn(completing_body(&p, finish_point::after_event, round.event.get(), r));
        round.spin[0] = random_spin(rng, 17);
        round.spin[1] = random_spin(rng, 17);
        wait_until([&] { return round.event->waiters() == 1; });  // parked
      },
      [&](int actor, int) {
        spin(round.spin[actor]);
        if (actor == 0)
          round.handle.abort();
        else
          round.event->set();
      },
      [&](int r) {
        bool got_value = false;
        bool got_cancelled = false;
        try {
          got_value = round.handle.join() == r;
        } catch (const warden::join_error& e) {
          got_cancelled = e.is_cancelled();
        }
        const int finished = p.finished.load() - round.finished_before;
        const std::size_t waiters = round.event->waiters();
        round.event.reset();
        if (got_value == got_cancelled || finished != (got_value ? 1 : 0) || p.live.load() != 0 || waiters != 0) {
          ADD_FAILURE() << "round " << r << ": value " << got_value << ", cancelled " << got_cancelled
                        << ", bodies finished " << finished << ", live locals " << p.live.load() << ", event waiters "
                        << waiters;
          return false;
        }
        (got_value ? values : cancels) += 1;
        return true;
      });
  rt.shutdown(std::chrono::nanoseconds::zero());
  EXPECT_EQ(rt.alive_tasks(), 0u);
  EXPECT_EQ(p.live.load(), 0);
  std::printf("[ info ] %d rounds: %d woken, %d cancelled\n", rounds, values, cancels);
}

task<int> yield_then_return(probe* p, int yields, test_event* never, int value) {
  live_counter local(p->live);
  if (yields < 0) co_await never->wait();  // parked for good: only an abort ends it
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  p->finished.fetch_add(1, std::memory_order_relaxed);
  co_return value;
}

// R9: abort is idempotent: several threads aborting the same task at once
// (through the join handle and abort_handle copies) give one outcome and
// destroy the frame once; a later abort changes nothing.
TEST(abort_race, concurrent_aborts_of_one_task_are_idempotent) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const int rounds = stress_iterations(10000);
  constexpr int kActors = 4;
  std::atomic<int> progress{0};
  hang_guard guard("concurrent_aborts " + seed_trace(seed), progress);

  probe p;
  int values = 0;
  int cancels = 0;
  test_event never;
  warden::runtime rt(warden::testkit::quiet_options(2));

  struct round_state {
    warden::join_handle<int> handle;
    warden::abort_handle aborters[kActors];
    std::uint32_t spin[kActors]{};
    bool parked_for_good = false;
    int finished_before = 0;
  } round;

  race_rounds(
      rounds, kActors, progress,
      [&](int r) {
        const int yields = static_cast<int>(rng() % 5) - 1;  // -1: parked until aborted
        round.parked_for_good = yields < 0;
        round.finished_before = p.finished.load();
        round.handle = rt.spawn(yield_then_return(&p, yields, &never, r));
        for (int k = 0; k < kActors; ++k) {
          round.aborters[k] = round.handle.get_abort_handle();
          round.spin[k] = random_spin(rng, 17);
        }
      },
      [&](int actor, int) {
        spin(round.spin[actor]);
        if (actor == 0) {
          round.handle.abort();
          round.handle.abort();
        } else {
          round.aborters[actor].abort();
        }
      },
      [&](int r) {
        bool got_value = false;
        bool got_cancelled = false;
        try {
          got_value = round.handle.join() == r;
        } catch (const warden::join_error& e) {
          got_cancelled = e.is_cancelled();
        }
        for (auto& a : round.aborters) a.abort();  // after the outcome: no effect
        bool all_finished = round.handle.is_finished();
        for (auto& a : round.aborters) all_finished = all_finished && a.is_finished();
        for (auto& a : round.aborters) a = warden::abort_handle{};
        const int finished = p.finished.load() - round.finished_before;
        if (got_value == got_cancelled || finished != (got_value ? 1 : 0) || p.live.load() != 0 || !all_finished ||
            (round.parked_for_good && !got_cancelled)) {
          ADD_FAILURE() << "round " << r << ": value " << got_value << ", cancelled " << got_cancelled
                        << ", bodies finished " << finished << ", live locals " << p.live.load()
                        << ", all handles finished " << all_finished << ", parked for good " << round.parked_for_good;
          return false;
        }
        (got_value ? values : cancels) += 1;
        return true;
      });
  rt.shutdown(std::chrono::nanoseconds::zero());
  EXPECT_EQ(rt.alive_tasks(), 0u);
  EXPECT_EQ(p.live.load(), 0);
  EXPECT_EQ(never.waiters(), 0u);
  std::printf("[ info ] %d rounds: %d values, %d cancelled\n", rounds, values, cancels);
}

}  // namespace
