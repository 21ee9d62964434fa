// Stress: many plain threads spawning into one runtime at once, with worker
// threads and in current-thread mode (SEMANTICS R3, R5, R19). Every task runs
// exactly once and every handle yields its task's value.
#include "support/test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

constexpr int kSpawners = 8;

using warden::testkit::hang_guard;

/// Run counts, one slot per task (and one per task's children).
struct run_counts {
  explicit run_counts(std::size_t n) : tasks(n), children(n) {}
  std::vector<std::atomic<int>> tasks;
  std::vector<std::atomic<int>> children;
};

/// What a storm task does besides counting its run.
enum class shape : int { plain, yields, one_child, two_children, count };

bool has_children(shape s) { return s == shape::one_child || s == shape::two_children; }
int children_of(shape s) { return s == shape::one_child ? 1 : s == shape::two_children ? 2 : 0; }

task<int> storm_child(std::atomic<int>* runs, int yields, int value) {
  runs->fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  co_return value;
}

/// Counts its run, then (by shape) yields or spawns children on the current
/// runtime and awaits them; yields `value` when everything checked out.
task<int> storm_task(std::atomic<int>* runs, std::atomic<int>* child_runs, shape s, int value) {
  runs->fetch_add(1, std::memory_order_relaxed);
  if (s == shape::yields) co_await warden::yield_now{};
  int bad = 0;
  if (has_children(s)) {
    auto first = warden::spawn(storm_child(child_runs, value % 3, 2 * value));
    if (s == shape::two_children) {
      auto second = warden::spawn(storm_child(child_runs, 0, 3 * value));
      if (co_await std::move(second) != 3 * value) ++bad;
    }
    if (co_await std::move(first) != 2 * value) ++bad;
  }
  co_return bad == 0 ? value : -1;
}

/// The plan of one spawner: a shape per task, and after how many spawns it
/// joins what it spawned so far (1 = right away).
struct spawner_plan {
  std::vector<shape> shapes;
  int join_every = 1;
};

std::vector<spawner_plan> make_plans(std::mt19937_64& rng, int per_thread) {
  std::vector<spawner_plan> plans(kSpawners);
  for (auto& plan : plans) {
    plan.shapes.resize(static_cast<std::size_t>(per_thread));
    for (auto& s : plan.shapes) s = static_cast<shape>(rng() % static_cast<int>(shape::count));
    const int choices[] = {1, 7, 64, per_thread};
    plan.join_every = choices[rng() % 4];
  }
  return plans;
}

/// Checks that every task ran exactly once and every child as often as its
/// parent's shape says; returns how many slots were wrong (and reports the first few).
int check_counts(const run_counts& counts, const std::vector<spawner_plan>& plans, int per_thread) {
  int wrong = 0;
  for (int t = 0; t < kSpawners; ++t)
    for (int j = 0; j < per_thread; ++j) {
      const std::size_t slot = static_cast<std::size_t>(t * per_thread + j);
      const int runs = counts.tasks[slot].load();
      const int child_runs = counts.children[slot].load();
      const int expected_children = children_of(plans[static_cast<std::size_t>(t)].shapes[static_cast<std::size_t>(j)]);
      if (runs != 1 || child_runs != expected_children) {
        if (++wrong <= 5)
          ADD_FAILURE() << "task " << slot << " (thread " << t << ") ran " << runs << " times, its children "
                        << child_runs << " times (expected 1 and " << expected_children << ")";
      }
    }
  return wrong;
}

// R3/R5: eight plain threads spawning into a 2-worker runtime at once, each
// joining what it spawned with join(): every task runs exactly once, every
// child too, every handle yields its value.
TEST(spawn_storm, eight_threads_spawning_into_two_workers_run_every_task_once) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  hang_guard guard("eight_threads_spawning_into_two_workers " + seed_trace(seed));
  const int per_thread = stress_iterations(20000);
  const auto plans = make_plans(rng, per_thread);
  run_counts counts(static_cast<std::size_t>(kSpawners * per_thread));
  std::atomic<int> wrong_values{0};

  warden::runtime rt(warden::testkit::quiet_options(2));
  std::latch start(kSpawners);
  std::vector<std::thread> spawners;
  for (int t = 0; t < kSpawners; ++t)
    spawners.emplace_back([&, t] {
      const spawner_plan& plan = plans[static_cast<std::size_t>(t)];
      std::vector<std::pair<int, warden::join_handle<int>>> pending;
      const auto join_pending = [&] {
        for (auto& [value, h] : pending)
          if (h.join() != value) wrong_values.fetch_add(1);
        pending.clear();
      };
      start.arrive_and_wait();
      for (int j = 0; j < per_thread; ++j) {
        const int slot = t * per_thread + j;
        const auto at = static_cast<std::size_t>(slot);
        pending.emplace_back(slot, rt.spawn(storm_task(&counts.tasks[at], &counts.children[at],
                                                       plan.shapes[static_cast<std::size_t>(j)], slot)));
        if (static_cast<int>(pending.size()) >= plan.join_every) join_pending();
      }
      join_pending();
    });
  for (auto& t : spawners) t.join();

  EXPECT_EQ(wrong_values.load(), 0);
  EXPECT_EQ(check_counts(counts, plans, per_thread), 0);
  rt.shutdown(std::chrono::nanoseconds::zero());
  EXPECT_EQ(rt.alive_tasks(), 0u);
}

/// The driver in current-thread mode: waits until every spawner is done,
/// then awaits every handle they handed over. Returns the number of wrong
/// values.
task<int> drive_handed_over(test_event* all_spawned,
                            std::vector<std::vector<std::pair<int, warden::join_handle<int>>>>* handed_over) {
  co_await all_spawned->wait();
  int wrong = 0;
  for (auto& per_thread : *handed_over)
    for (auto& [value, h] : per_thread)
      if (co_await std::move(h) != value) ++wrong;
  co_return wrong;
}

/// The current-thread storm: kSpawners plain threads spawn into a runtime
/// with no workers while the main thread drives it with block_on. With
/// `spawners_join`, each spawner also joins some of its handles itself
/// (join() then drives the runtime, or waits while another thread does);
/// the rest go to the driver.
void current_thread_storm(bool spawners_join) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  hang_guard guard(std::string("current_thread_storm ") + seed_trace(seed));
  const int per_thread = stress_iterations(10000);
  const auto plans = make_plans(rng, per_thread);
  std::vector<std::uint64_t> thread_seeds;
  for (int t = 0; t < kSpawners; ++t) thread_seeds.push_back(rng());
  run_counts counts(static_cast<std::size_t>(kSpawners * per_thread));
  std::atomic<int> wrong_values{0};

  warden::runtime rt(warden::testkit::quiet_options(0));
  test_event all_spawned;
  std::atomic<int> spawners_left{kSpawners};
  std::vector<std::vector<std::pair<int, warden::join_handle<int>>>> handed_over(kSpawners);
  std::latch start(kSpawners + 1);
  std::vector<std::thread> spawners;
  for (int t = 0; t < kSpawners; ++t)
    spawners.emplace_back([&, t] {
      const spawner_plan& plan = plans[static_cast<std::size_t>(t)];
      std::mt19937_64 local_rng(thread_seeds[static_cast<std::size_t>(t)]);
      auto& mine = handed_over[static_cast<std::size_t>(t)];
      std::vector<std::pair<int, warden::join_handle<int>>> pending;
      const auto join_pending = [&] {
        for (auto& [value, h] : pending)
          if (h.join() != value) wrong_values.fetch_add(1);
        pending.clear();
      };
      start.arrive_and_wait();
      for (int j = 0; j < per_thread; ++j) {
        const int slot = t * per_thread + j;
        const auto at = static_cast<std::size_t>(slot);
        auto h = rt.spawn(
            storm_task(&counts.tasks[at], &counts.children[at], plan.shapes[static_cast<std::size_t>(j)], slot));
        if (spawners_join && local_rng() % 2 == 0) {
          pending.emplace_back(slot, std::move(h));
          if (static_cast<int>(pending.size()) >= plan.join_every) join_pending();
        } else {
          mine.emplace_back(slot, std::move(h));
        }
      }
      join_pending();
      // The last spawner done lets the driver await the handed-over handles.
      if (spawners_left.fetch_sub(1) == 1) all_spawned.set();
    });

  start.arrive_and_wait();
  const int wrong_in_driver = rt.block_on(drive_handed_over(&all_spawned, &handed_over));
  for (auto& t : spawners) t.join();

  EXPECT_EQ(wrong_in_driver, 0);
  EXPECT_EQ(wrong_values.load(), 0);
  EXPECT_EQ(check_counts(counts, plans, per_thread), 0);
  EXPECT_EQ(all_spawned.waiters(), 0u);
  rt.shutdown(std::chrono::nanoseconds::zero());
  EXPECT_EQ(rt.alive_tasks(), 0u);
}

// R19: plain threads spawning into a current-thread runtime only enqueue;
// the thread inside block_on runs everything, each task exactly once.
TEST(spawn_storm, eight_threads_spawning_into_a_current_thread_runtime_run_every_task_once) {
  current_thread_storm(false);
}

// R19: the same with the spawners joining part of their handles themselves,
// so that several threads take turns driving the runtime.
TEST(spawn_storm, spawners_joining_in_current_thread_mode_take_turns_driving) { current_thread_storm(true); }

}  // namespace
