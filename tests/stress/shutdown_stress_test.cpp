// Stress: shutdown with a hundred thousand live tasks, and shutdown racing
// spawns from other threads (SEMANTICS R4, R16). Every frame is destroyed,
// every handle resolves, no task is lost.
#include "support/test_support.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::seed_trace;
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

constexpr int kLiveTasks = 100000;
constexpr std::size_t kEvents = 64;
using event_set = std::array<test_event, kEvents>;

std::size_t total_waiters(const event_set& events) {
  std::size_t n = 0;
  for (const auto& e : events) n += e.waiters();
  return n;
}

task<int> parked_inner(live_counter c, test_event* never) {
  (void)c;
  co_await never->wait();
  co_return 0;
}

/// Parks for good on `never`, directly or inside an awaited inner task (so
/// that shutdown destroys a chain of frames).
task<int> park_forever(live_counter c, test_event* never, bool nested) {
  if (nested) {
    // Made outside the co_await expression (GCC 12 copies by-value
    // arguments of calls inside one bitwise).
    task<int> inner = parked_inner(c, never);
    co_return co_await std::move(inner);
  }
  co_await never->wait();
  co_return 0;
}

/// Runnable for good: yields in a loop until shutdown aborts it.
task<int> yield_forever(live_counter c) {
  (void)c;
  for (;;) co_await warden::yield_now{};
}

/// Yields until `parked` tasks wait on `events` (used to let every parking
/// task reach its event before shutdown, in either mode).
task<void> yield_until_parked(const event_set* events, std::size_t parked) {
  while (total_waiters(*events) < parked) co_await warden::yield_now{};
}

/// Rounds of: spawn kLiveTasks tasks that never finish (most parked on
/// events that never fire, some nested, some yielding forever), maybe let
/// them all start, shut down, and check that every frame is gone, every
/// task was reported as leaked, and every handle resolves cancelled.
void shutdown_with_live_tasks(std::size_t workers, int rounds) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard("shutdown_with_live_tasks(" + std::to_string(workers) + " workers) " + seed_trace(seed), progress);

  for (int round = 0; round < rounds; ++round) {
    progress.store(round);
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<int> live{0};
    std::atomic<std::size_t> reported{0};
    event_set never;
    auto options = warden::testkit::quiet_options(workers);
    options.leak_reporter = [&](std::span<const warden::leaked_task> leaked) { reported += leaked.size(); };
    warden::runtime rt(std::move(options));

    std::vector<warden::join_handle<int>> handles;
    handles.reserve(kLiveTasks);
    std::size_t parking = 0;
    for (int i = 0; i < kLiveTasks; ++i) {
      const auto kind = rng() % 100;
      if (kind < 2) {
        handles.push_back(rt.spawn(yield_forever(live_counter(live))));
      } else {
        handles.push_back(rt.spawn(park_forever(live_counter(live), &never[rng() % kEvents], kind < 20)));
        ++parking;
      }
    }
    // Half the rounds shut down with every parking task parked, the other
    // half at once (most tasks not started yet).
    const bool all_parked_first = rng() % 2 == 0;
    if (all_parked_first) {
      rt.block_on(yield_until_parked(&never, parking));
      EXPECT_EQ(total_waiters(never), parking);
    }
    rt.shutdown(std::chrono::nanoseconds::zero());

    // Every frame (the parked, the nested, the yielding, the unstarted) is
    // destroyed by the time shutdown returns.
    EXPECT_EQ(live.load(), 0) << "all parked first: " << all_parked_first;
    EXPECT_EQ(rt.alive_tasks(), 0u);
    EXPECT_EQ(total_waiters(never), 0u);
    // None of them could finish: each was alive when the grace ended.
    EXPECT_EQ(reported.load(), static_cast<std::size_t>(kLiveTasks));
    const auto unfinished =
        std::count_if(handles.begin(), handles.end(), [](const auto& h) { return !h.is_finished(); });
    EXPECT_EQ(unfinished, 0);
    int not_cancelled = 0;
    for (int k = 0; k < 1000; ++k) {
      auto& h = handles[rng() % handles.size()];
      if (!h.valid()) continue;  // sampled twice
      try {
        (void)h.join();
        ++not_cancelled;
      } catch (const warden::join_error& e) {
        if (!e.is_cancelled()) ++not_cancelled;
      }
    }
    EXPECT_EQ(not_cancelled, 0);
    if (::testing::Test::HasFailure()) break;
  }
}

// R16: shutdown with 100,000 live tasks destroys every frame, reports every
// task, resolves every handle cancelled; repeated.
TEST(shutdown_stress, shutdown_with_a_hundred_thousand_live_tasks_destroys_every_frame) {
  shutdown_with_live_tasks(2, std::max(1, stress_iterations(20)));
}

// R16 with R19: the same in current-thread mode, where shutdown's caller
// destroys the frames.
TEST(shutdown_stress, current_thread_shutdown_with_a_hundred_thousand_live_tasks_destroys_every_frame) {
  shutdown_with_live_tasks(0, std::max(1, stress_iterations(5)));
}

/// What one spawn attempt's task does.
enum class attempt_shape : int { returns, yields, parks, spawns_child, callable, count };

/// The task of one attempt: marks that it ran, then does what its shape
/// says. `live` counts every frame of the test, `mine` this attempt's.
task<int> attempt_body(live_counter live, live_counter mine, std::atomic<int>* ran, attempt_shape shape,
                       test_event* never, int yields) {
  (void)mine;
  ran->fetch_add(1, std::memory_order_relaxed);
  switch (shape) {
    case attempt_shape::yields:
      for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
      break;
    case attempt_shape::parks:
      co_await never->wait();
      break;
    case attempt_shape::spawns_child: {
      // Spawning inside a task races the shutdown too: the child either runs
      // (and may be cancelled) or is refused and destroyed unrun.
      warden::join_handle<int> child;
      try {
        child = warden::spawn(park_forever(live, never, yields % 2 == 0));
      } catch (const warden::runtime_closed&) {
        co_return 2;
      }
      auto result = co_await child.result();
      co_return result.has_value() ? -1 : 3;  // the child parks for good: only cancelled is right
    }
    default:
      break;
  }
  co_return 1;
}

// R4/R16: shutdown racing spawns from other threads (and from tasks): each
// spawn either succeeds, and its task then completes or is cancelled, or
// throws runtime_closed with the task destroyed unrun. No task is lost, no
// frame leaks, no handle hangs.
TEST(shutdown_stress, shutdown_racing_spawns_loses_no_task) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const int rounds = stress_iterations(100);
  constexpr int kSpawners = 4;
  constexpr int kAttempts = 2000;  // per spawner and round, at most
  std::atomic<int> progress{0};
  hang_guard guard("shutdown_racing_spawns " + seed_trace(seed), progress);

  long long completed = 0;
  long long cancelled = 0;
  long long refused = 0;
  for (int round = 0; round < rounds; ++round) {
    progress.store(round);
    std::atomic<int> live{0};
    test_event never;
    struct spawner_state {
      std::vector<std::atomic<int>> mine = std::vector<std::atomic<int>>(kAttempts);
      std::vector<std::atomic<int>> ran = std::vector<std::atomic<int>>(kAttempts);
      std::uint64_t seed = 0;
      int attempts = 0;
      long long completed = 0, cancelled = 0, refused = 0;
      std::string failure;  // the first thing that went wrong
    };
    std::vector<spawner_state> spawners(kSpawners);
    for (auto& s : spawners) s.seed = rng();
    const int shutdown_after = static_cast<int>(rng() % (kSpawners * kAttempts / 2));
    std::atomic<int> spawned{0};
    std::atomic<int> done_spawning{0};

    {
      warden::runtime rt(warden::testkit::quiet_options(2));
      std::latch start(kSpawners + 1);
      std::vector<std::thread> threads;
      for (int t = 0; t < kSpawners; ++t)
        threads.emplace_back([&, t] {
          spawner_state& s = spawners[static_cast<std::size_t>(t)];
          std::mt19937_64 local_rng(s.seed);
          std::vector<std::pair<int, warden::join_handle<int>>> handles;
          start.arrive_and_wait();
          bool closed = false;
          for (int j = 0; j < kAttempts; ++j) {
            const auto shape = static_cast<attempt_shape>(local_rng() % static_cast<int>(attempt_shape::count));
            const int yields = static_cast<int>(local_rng() % 4);
            const auto at = static_cast<std::size_t>(j);
            s.attempts = j + 1;
            try {
              if (shape == attempt_shape::callable) {
                // The callable form: the lambda (and the counter it holds) is
                // copied into the frame, and destroyed with it.
                handles.emplace_back(j, rt.spawn([c = live_counter(s.mine[at]), ran = &s.ran[at]]() -> task<int> {
                  (void)c;
                  ran->fetch_add(1, std::memory_order_relaxed);
                  co_await warden::yield_now{};
                  co_return 1;
                }));
              } else {
                handles.emplace_back(j, rt.spawn(attempt_body(live_counter(live), live_counter(s.mine[at]), &s.ran[at],
                                                              shape, &never, yields)));
              }
              spawned.fetch_add(1);
              if (closed && s.failure.empty())
                s.failure = "attempt " + std::to_string(j) + " succeeded after an earlier spawn was refused";
            } catch (const warden::runtime_closed&) {
              closed = true;
              ++s.refused;
              if ((s.mine[at].load() != 0 || s.ran[at].load() != 0) && s.failure.empty())
                s.failure = "refused attempt " + std::to_string(j) + " left its frame (" +
                            std::to_string(s.mine[at].load()) + ") or ran (" + std::to_string(s.ran[at].load()) + ")";
              if (local_rng() % 4 != 0) break;  // sometimes keep trying: later spawns are refused too
            }
          }
          done_spawning.fetch_add(1);
          for (auto& [j, h] : handles) {
            const auto at = static_cast<std::size_t>(j);
            try {
              const int v = h.join();
              ++s.completed;
              if ((v != 1 && v != 2 && v != 3) || s.ran[at].load() != 1)
                if (s.failure.empty())
                  s.failure = "attempt " + std::to_string(j) + " yielded " + std::to_string(v) + " and ran " +
                              std::to_string(s.ran[at].load()) + " times";
            } catch (const warden::join_error& e) {
              ++s.cancelled;
              if ((!e.is_cancelled() || s.ran[at].load() > 1) && s.failure.empty())
                s.failure = "attempt " + std::to_string(j) + ": " + e.what();
            }
          }
        });
      start.arrive_and_wait();
      wait_until([&] { return spawned.load() >= shutdown_after || done_spawning.load() == kSpawners; });
      rt.shutdown(std::chrono::nanoseconds::zero());
      for (auto& t : threads) t.join();
      EXPECT_EQ(rt.alive_tasks(), 0u);
    }

    EXPECT_EQ(live.load(), 0) << "round " << round;
    EXPECT_EQ(never.waiters(), 0u) << "round " << round;
    for (int t = 0; t < kSpawners; ++t) {
      const spawner_state& s = spawners[static_cast<std::size_t>(t)];
      EXPECT_EQ(s.failure, "") << "round " << round << ", spawner " << t;
      for (int j = 0; j < s.attempts; ++j)
        if (s.mine[static_cast<std::size_t>(j)].load() != 0) {
          ADD_FAILURE() << "round " << round << ", spawner " << t << ": the frame of attempt " << j
                        << " was never destroyed";
          break;
        }
      completed += s.completed;
      cancelled += s.cancelled;
      refused += s.refused;
    }
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("[ info ] %d rounds: %lld completed, %lld cancelled, %lld refused\n", rounds, completed, cancelled,
              refused);
}

}  // namespace
