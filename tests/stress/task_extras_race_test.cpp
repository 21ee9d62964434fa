// Stress: a task's extras record (name, task-locals, panic record) is made
// lazily by the task's own thread the first time it binds a task_local or
// panics, while other threads read the task's name through its join handle
// (task_header.hpp, "Who touches which field when": `extras`). Under TSan a
// missing release/acquire pair, and under ASan a record freed or replaced
// early, shows up here.
#include "support/test_support.hpp"

#include <warden/task_local.hpp>

#include <atomic>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using warden::task;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

constinit warden::task_local<int> slot;

struct planned_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Binds a task_local (which makes the extras record) after `yields` yields,
/// and then panics if asked to (which records the panic there too).
task<int> bind_then_maybe_panic(int value, int yields, bool panic) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  auto body = [](int expected, bool p) -> task<int> {
    co_await warden::yield_now{};
    const int* seen = slot.try_get();
    if (p) throw planned_failure("planned");
    co_return seen != nullptr&&* seen == expected ? expected : -1;
  };
  // In its own statement: GCC 12 may destroy a temporary task inside a
  // co_await expression twice.
  auto scoped = slot.scope(value, body(value, panic));
  const int got = co_await scoped;
  co_return got;
}

class task_extras_race : public ::testing::TestWithParam<std::size_t> {};

TEST_P(task_extras_race, name_reads_race_the_first_task_local_binding_and_the_panic_record) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  const int rounds = stress_iterations(20000);
  int wrong = 0;
  for (int r = 0; r < rounds; r += 8) {
    std::vector<warden::join_handle<int>> batch;
    std::vector<bool> panics;
    std::vector<bool> named;
    for (int i = 0; i < 8; ++i) {
      const bool panic = rng() % 4 == 0;
      const bool name = rng() % 2 == 0;
      const int value = r + i;
      warden::spawn_options options;
      if (name) options.name = "extras-race";
      batch.push_back(rt.spawn(bind_then_maybe_panic(value, static_cast<int>(rng() % 3), panic), options));
      panics.push_back(panic);
      named.push_back(name);
    }
    // This (non-worker) thread reads the names while the tasks make their
    // records on the workers.
    for (int spin = 0; spin < 4; ++spin)
      for (std::size_t i = 0; i < batch.size(); ++i)
        if (batch[i].name() != (named[i] ? std::string_view("extras-race") : std::string_view())) ++wrong;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        const int got = batch[i].join();
        if (panics[i] || got != r + static_cast<int>(i)) ++wrong;
      } catch (const warden::join_error& e) {
        if (!panics[i] || !e.is_panic() || e.name() != (named[i] ? "extras-race" : "")) ++wrong;
      }
    }
  }
  EXPECT_EQ(wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(workers, task_extras_race, ::testing::Values<std::size_t>(1, 4), warden::testkit::worker_name);

}  // namespace
