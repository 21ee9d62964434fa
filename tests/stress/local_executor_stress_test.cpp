// local_executor under wakes from other threads, random contexts, trap
// recoveries, aborts, and destruction racing remote wakes (SEMANTICS E2, E4,
// E5; the cross-thread wake decision). Every task must end exactly one way,
// every frame must be destroyed, and TSan must stay quiet.
#include <warden/embed/local_executor.hpp>

#include "support/test_support.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <semaphore>
#include <thread>
#include <vector>

namespace {

using warden::local_executor;
using warden::task;
using warden::testkit::live_counter;
using warden::testkit::test_event;

enum class fate { running, finished, destroyed_in_recovery, destroyed };

struct notes_fate {
  fate* where;
  bool* done;
  ~notes_fate() {
    if (*done) return;
    *where = warden::is_recovering_from_trap() ? fate::destroyed_in_recovery : fate::destroyed;
  }
};

/// Waits for each of its round events in turn.
task<void> rounds(std::vector<std::unique_ptr<test_event>>& events, int& progress, fate& end, bool& done,
                  std::atomic<int>& live) {
  live_counter alive(live);
  notes_fate note{&end, &done};
  for (auto& ev : events) {
    co_await ev->wait();
    ++progress;
  }
  done = true;
  end = fate::finished;
}

struct tracked {
  std::vector<std::unique_ptr<test_event>> events;
  int progress = 0;
  fate end = fate::running;
  bool done = false;
  bool trapped = false;  // the host woke it in a cancellation context
  bool aborted = false;
  std::optional<warden::join_handle<void>> handle;
};

TEST(local_executor_stress, remote_wakes_random_contexts_traps_and_aborts_leave_every_task_accounted_for) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  std::mt19937_64 rng(seed);
  constexpr int kTasks = 8;
  constexpr int kRounds = 4;
  constexpr int kThreads = 2;
  const int iterations = warden::testkit::stress_iterations(3000);
  for (int it = 0; it < iterations; ++it) {
    std::vector<tracked> tasks(kTasks);
    for (auto& t : tasks)
      for (int r = 0; r < kRounds; ++r) t.events.push_back(std::make_unique<test_event>());
    std::atomic<int> live{0};
    std::counting_semaphore<> remote_wakes(0);
    {
      local_executor exec({.on_remote_wake = [&] { remote_wakes.release(); }});
      exec.run_update([&] {
        for (auto& t : tasks) t.handle = exec.spawn(rounds(t.events, t.progress, t.end, t.done, live));
      });
      std::vector<std::thread> wakers;
      for (int w = 0; w < kThreads; ++w) {
        wakers.emplace_back([&tasks, w, s = rng()] {
          std::mt19937_64 local(s);
          for (int r = 0; r < kRounds; ++r)
            for (int i = w; i < kTasks; i += kThreads) {
              tasks[static_cast<std::size_t>(i)].events[static_cast<std::size_t>(r)]->set();
              if (local() % 4 == 0) std::this_thread::yield();  // vary the interleaving, not a sync
            }
        });
      }
      while (exec.alive_tasks() != 0) {
        remote_wakes.acquire();  // a wake was queued for us
        const auto dice = rng() % 16;
        if (dice == 0) {
          // E4: a failed callback wakes one task: destroyed with the flag set.
          tracked& victim = tasks[rng() % kTasks];
          exec.run_cancellation([&] {
            if (victim.progress < kRounds && !victim.done) {
              victim.trapped = true;
              victim.events[static_cast<std::size_t>(victim.progress)]->set();
            }
          });
        } else if (dice == 1) {
          tracked& victim = tasks[rng() % kTasks];
          victim.aborted = true;
          victim.handle->abort();  // from the host, between calls: a remote wake
        } else if (dice < 6) {
          int before = 0;
          for (auto& t : tasks) before += t.progress;
          exec.run_query([] {});  // E2: these are update tasks: none may run here
          int after = 0;
          for (auto& t : tasks) after += t.progress;
          ASSERT_EQ(before, after);
        }
        exec.run_update([] {});
      }
      for (auto& th : wakers) th.join();
    }
    ASSERT_EQ(live.load(), 0);
    for (auto& t : tasks) {
      switch (t.end) {
        case fate::finished:
          ASSERT_EQ(t.progress, kRounds);
          t.handle->join();
          break;
        case fate::destroyed_in_recovery:
          ASSERT_TRUE(t.trapped);  // E4: only what a failed callback woke
          EXPECT_THROW(t.handle->join(), warden::join_error);
          break;
        case fate::destroyed:
          ASSERT_TRUE(t.aborted);
          EXPECT_THROW(t.handle->join(), warden::join_error);
          break;
        case fate::running:
          FAIL() << "a task neither finished nor was destroyed";
      }
    }
  }
}

TEST(local_executor_stress, destroying_the_executor_while_other_threads_wake_its_tasks_destroys_every_frame) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  std::mt19937_64 rng(seed);
  constexpr int kTasks = 16;
  const int iterations = warden::testkit::stress_iterations(3000);
  for (int it = 0; it < iterations; ++it) {
    std::vector<std::unique_ptr<test_event>> events;
    for (int i = 0; i < kTasks; ++i) events.push_back(std::make_unique<test_event>());
    std::atomic<int> live{0};
    std::atomic<int> ran{0};
    std::thread waker;
    {
      local_executor exec;
      exec.run_update([&] {
        for (auto& ev : events)
          (void)exec.spawn([&live, &ran, e = ev.get()]() -> task<void> {
            live_counter alive(live);
            co_await e->wait();
            ran.fetch_add(1, std::memory_order_relaxed);
          });
      });
      waker = std::thread([&events, start = rng() % kTasks] {
        for (std::size_t i = 0; i < events.size(); ++i) events[(start + i) % events.size()]->set();
      });
      if (rng() % 2 == 0) std::this_thread::yield();
    }  // E5: wakes racing destruction are harmless; no task runs after it
    const int ran_at_destruction = ran.load();
    waker.join();
    ASSERT_EQ(live.load(), 0);
    ASSERT_EQ(ran.load(), ran_at_destruction);
    ASSERT_EQ(ran_at_destruction, 0);  // nobody entered a context after spawning
  }
}

}  // namespace
