// Stress: the join waker lives with the joiner (its awaiter, its stack), the
// task header only points to it (task_header.hpp, `join_waiter`). Races of a
// task's completion, which moves that waker out, against the joiner leaving
// the await early and destroying it: the joiner aborted while it awaits the
// handle, a timeout's deadline, and a blocking join() that sees the task
// complete before the completer is done with its waker (SEMANTICS R8, R9).
// ASan and TSan catch a use of a destroyed waker; the checks here catch a
// lost or doubled outcome.
#include "support/test_support.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::hang_guard;
using warden::testkit::random_spin;
using warden::testkit::seed_trace;
using warden::testkit::spin;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

constexpr int kValue = 7;
constexpr int kBatch = 4;

task<int> child(test_event* go, std::atomic<int>* past_event = nullptr) {
  co_await go->wait();
  // Done with `go` (the awaiter is gone): the caller may destroy it.
  if (past_event != nullptr) past_event->fetch_add(1, std::memory_order_release);
  co_return kValue;
}

/// Awaits `h` (registering its join waker) after saying it is about to.
task<int> joiner(warden::join_handle<int> h, std::atomic<bool>* started) {
  started->store(true, std::memory_order_release);
  co_return co_await h;
}

template <class Pred>
void wait_until(Pred done) {
  while (!done()) std::this_thread::yield();
}

// R9: a joiner aborted while the task it awaits completes ends exactly one
// way (the value, or cancelled), and the completer's hand-off of the join
// waker never touches the joiner's destroyed frame.
TEST(join_waker_race, joiner_aborted_while_the_task_completes) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard("joiner_aborted_while_the_task_completes " + seed_trace(seed), progress);
  const int races = stress_iterations(40000);
  int values = 0;
  int cancels = 0;
  {
    warden::runtime rt(warden::testkit::quiet_options(2));
    for (int first = 0; first < races; first += kBatch) {
      progress.store(first, std::memory_order_relaxed);
      std::array<test_event, kBatch> go;
      std::array<std::atomic<bool>, kBatch> started{};
      // A cancelled joiner drops its child's handle: count the children
      // past their event instead, which must outlive them.
      std::atomic<int> past_event{0};
      std::vector<warden::join_handle<int>> joiners;
      for (int k = 0; k < kBatch; ++k)
        joiners.push_back(rt.spawn(joiner(rt.spawn(child(&go[k], &past_event)), &started[k])));
      for (int k = 0; k < kBatch; ++k) {
        wait_until([&] { return started[k].load(std::memory_order_acquire); });
        const std::uint32_t set_spin = random_spin(rng, 14);
        const std::uint32_t abort_spin = random_spin(rng, 14);
        if (rng() % 2 == 0) {
          spin(set_spin);
          go[k].set();
          spin(abort_spin);
          joiners[k].abort();
        } else {
          spin(abort_spin);
          joiners[k].abort();
          spin(set_spin);
          go[k].set();
        }
      }
      for (int k = 0; k < kBatch; ++k) {
        try {
          const int v = joiners[k].join();
          ASSERT_EQ(v, kValue) << "race " << first + k;
          ++values;
        } catch (const warden::join_error& e) {
          ASSERT_TRUE(e.is_cancelled()) << "race " << first + k;
          ++cancels;
        }
      }
      wait_until([&] { return past_event.load(std::memory_order_acquire) == kBatch; });
    }
    rt.shutdown(std::chrono::seconds(10));
    EXPECT_EQ(rt.alive_tasks(), 0u);
  }
  std::printf("[ info ] %d races: %d values, %d cancelled\n", races, values, cancels);
}

task<int> timed_joiner(test_event* go, std::chrono::microseconds limit) {
  // Named, not a temporary in the co_await (GCC 12; see STYLE).
  task<std::expected<int, warden::timed_out>> raced = warden::timeout(limit, child(go));
  const std::expected<int, warden::timed_out> r = co_await raced;
  co_return r ? *r : -1;
}

// R8: a timeout whose deadline passes while its task completes yields the
// value or timed_out, and its deadline_race leaves the join cleanly.
TEST(join_waker_race, timeout_deadline_while_the_task_completes) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard("timeout_deadline_while_the_task_completes " + seed_trace(seed), progress);
  const int races = stress_iterations(20000);
  int values = 0;
  int timeouts = 0;
  {
    warden::runtime rt(warden::testkit::quiet_options(2));
    for (int first = 0; first < races; first += kBatch) {
      progress.store(first, std::memory_order_relaxed);
      std::array<test_event, kBatch> go;
      std::vector<warden::join_handle<int>> joiners;
      for (int k = 0; k < kBatch; ++k)
        joiners.push_back(rt.spawn(timed_joiner(&go[k], std::chrono::microseconds(rng() % 100))));
      for (int k = 0; k < kBatch; ++k) {
        spin(random_spin(rng, 16));
        go[k].set();
      }
      for (int k = 0; k < kBatch; ++k) {
        const int v = joiners[k].join();
        ASSERT_TRUE(v == kValue || v == -1) << "race " << first + k << ": " << v;
        (v == kValue ? values : timeouts) += 1;
      }
    }
    rt.shutdown(std::chrono::seconds(10));
    EXPECT_EQ(rt.alive_tasks(), 0u);
  }
  std::printf("[ info ] %d races: %d values, %d timed out\n", races, values, timeouts);
}

// A thread blocked in join() may see the task complete (and return, ending
// its waker) while the completer is still handing that waker off.
TEST(join_waker_race, blocking_join_while_the_task_completes) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard("blocking_join_while_the_task_completes " + seed_trace(seed), progress);
  const int races = stress_iterations(20000);
  {
    warden::runtime rt(warden::testkit::quiet_options(2));
    for (int race = 0; race < races; ++race) {
      progress.store(race, std::memory_order_relaxed);
      test_event go;
      warden::join_handle<int> h = rt.spawn(child(&go));
      const std::uint32_t set_spin = random_spin(rng, 14);
      std::thread setter([&] {
        spin(set_spin);
        go.set();
      });
      ASSERT_EQ(h.join(), kValue) << "race " << race;
      setter.join();
    }
    rt.shutdown(std::chrono::seconds(10));
    EXPECT_EQ(rt.alive_tasks(), 0u);
  }
}

/// Awaits `*h`, which another task awaits at the same moment (misuse): the
/// two meet at `ready` and then race into the join. 1: got the value,
/// 2: usage_error ("awaited twice").
task<int> double_joiner(warden::join_handle<int>* h, std::atomic<int>* ready, std::uint32_t lag,
                        std::atomic<int>* thrown) {
  ready->fetch_add(1, std::memory_order_acq_rel);
  while (ready->load(std::memory_order_acquire) < 2) {
  }
  spin(lag);
  try {
    const int v = co_await *h;
    co_return v == kValue ? 1 : 0;
  } catch (const warden::usage_error& e) {
    if (std::string_view(e.what()).find("awaited twice") == std::string_view::npos) co_return 0;
  }
  thrown->fetch_add(1, std::memory_order_release);
  co_return 2;
}

// R13: two tasks awaiting one handle at the same instant (on two workers,
// the task they await parked): exactly one registers and gets the value, the
// other gets usage_error. Before the join waiter's pointer was claimed by
// CAS, both could register; the first one's waker was then overwritten and
// it waited forever (the hang guard's report).
TEST(join_waker_race, two_tasks_awaiting_one_handle_at_once_one_gets_usage_error) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> progress{0};
  hang_guard guard("two_tasks_awaiting_one_handle_at_once_one_gets_usage_error " + seed_trace(seed), progress);
  const int races = stress_iterations(2000);
  {
    warden::runtime rt(warden::testkit::quiet_options(2));
    for (int race = 0; race < races; ++race) {
      progress.store(race, std::memory_order_relaxed);
      test_event go;
      std::atomic<bool> started{false};
      warden::join_handle<int> target = rt.spawn([](test_event* go, std::atomic<bool>* started) -> task<int> {
        started->store(true, std::memory_order_release);
        co_await go->wait();
        co_return kValue;
      }(&go, &started));
      // Started: no await can run it inline (only a never-run child is
      // helped), so both awaits meet a task that is running or parked.
      wait_until([&] { return started.load(std::memory_order_acquire); });
      std::atomic<int> ready{0};
      std::atomic<int> thrown{0};
      auto a = rt.spawn(double_joiner(&target, &ready, random_spin(rng, 10), &thrown));
      auto b = rt.spawn(double_joiner(&target, &ready, random_spin(rng, 10), &thrown));
      // The loser has thrown before the target may complete (else it could
      // see it complete and take the value as well: a data race on the
      // handle, which is the user's).
      wait_until([&] { return thrown.load(std::memory_order_acquire) == 1; });
      go.set();
      const int ra = a.join();
      const int rb = b.join();
      ASSERT_TRUE((ra == 1 && rb == 2) || (ra == 2 && rb == 1)) << "race " << race << ": " << ra << ", " << rb;
      ASSERT_EQ(thrown.load(), 1) << "race " << race;
    }
    rt.shutdown(std::chrono::seconds(10));
    EXPECT_EQ(rt.alive_tasks(), 0u);
  }
}

}  // namespace
