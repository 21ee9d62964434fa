// task_monitor under races: abort racing a monitored task's end, its
// exception and its error (SEMANTICS M2, M1, M5).
//   M2: never a report for a task whose abort() decided its outcome.
//   M1: never a missing report for a failing task the abort did not stop.
//   M5: the monitor's bookkeeping is empty once every task is gone.
#include "support/test_support.hpp"

#include <warden/supervise/monitor.hpp>

#include <expected>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using warden::task;

task<void> ends_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
}

task<void> throws_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  throw std::runtime_error("boom");
}

task<std::expected<void, std::string>> errs_after(int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  co_return std::unexpected(std::string("bad"));
}

constexpr int kBatch = 256;

class monitor_stress : public ::testing::TestWithParam<std::size_t> {};

TEST_P(monitor_stress, abort_racing_end_exception_and_error_reports_exactly_the_unaborted_failures) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(100000);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  warden::task_monitor m({.capacity = kBatch + 1});
  auto rx = m.subscribe();

  auto run = [&]() -> task<void> {
    std::mt19937_64 rng(seed);
    for (int done = 0; done < iterations; done += kBatch) {
      std::vector<warden::background_task_handle> handles;
      std::set<std::string> expected;  // names that must be reported
      for (int i = 0; i < kBatch; ++i) {
        const std::string name = std::to_string(done + i);
        const int yields = static_cast<int>(rng() % 3);
        switch (rng() % 3) {
          case 0:
            handles.push_back(m.spawn_infinite_task(name, ends_after(yields)));
            break;
          case 1:
            handles.push_back(m.spawn_finite_task(name, throws_after(yields)));
            break;
          default:
            handles.push_back(m.spawn_fallible_task(name, errs_after(yields)));
            break;
        }
        // Let it (and earlier ones) run a little, then abort or not.
        const int wait = static_cast<int>(rng() % 3);
        for (int y = 0; y < wait; ++y) co_await warden::yield_now{};
        const bool abort = rng() % 4 != 0;
        if (!abort || !handles.back().abort()) expected.insert(name);
      }
      for (auto& h : handles)
        while (!h.is_finished()) co_await warden::yield_now{};
      // Exactly the expected reports, then the sentinel: nothing extra.
      std::set<std::string> reported;
      for (std::size_t i = 0; i < expected.size(); ++i) {
        auto got = co_await rx.recv();
        EXPECT_TRUE(got.has_value());
        if (!got) co_return;
        EXPECT_TRUE(reported.insert(got->task.name).second) << "reported twice: " << got->task.name;
      }
      EXPECT_EQ(reported, expected);
      auto sentinel = m.spawn_infinite_task("sentinel", ends_after(0));
      auto got = co_await rx.recv();
      EXPECT_TRUE(got.has_value() && got->task.name == "sentinel")
          << "a report for an aborted task: " << (got ? got->task.name : "lagged/closed");
      while (!sentinel.is_finished()) co_await warden::yield_now{};
      EXPECT_EQ(m.running_tasks(), 0u);  // M5
      if (::testing::Test::HasFailure()) co_return;
    }
  };
  rt.block_on(run());
  EXPECT_EQ(m.running_tasks(), 0u);
}

INSTANTIATE_TEST_SUITE_P(x, monitor_stress, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
