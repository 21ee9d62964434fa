// Stress: a task's extras record (name, task-locals, panic record) is made
// lazily by the task's own thread the first time it binds a task_local or
// panics, while other threads read the task's name through its join handle
// (task_header.hpp, "Who touches which field when": `extras`). Under TSan a
// missing release/acquire pair, and under ASan a record freed or replaced
// early, shows up here. The task's id lives in the record too, given the
// first time anyone asks (task_id_of): several threads asking at once, and
// the task binding a task_local meanwhile, must all see one id per task.
#include "support/test_support.hpp"

#include <warden/task_local.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
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

/// Asks for its own id after `yields` yields, after binding a task_local
/// (which makes the extras record on this thread) when `bind`.
task<std::uint64_t> ask_own_id(int yields, bool bind) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  if (!bind) co_return warden::current_task_id().value();
  auto body = []() -> task<std::uint64_t> {
    co_await warden::yield_now{};
    co_return warden::current_task_id().value();
  };
  auto scoped = slot.scope(1, body());  // its own statement: see bind_then_maybe_panic
  const std::uint64_t id = co_await scoped;
  co_return id;
}

TEST_P(task_extras_race, ids_asked_for_from_several_threads_at_once_are_one_per_task_and_unique) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  const int rounds = stress_iterations(8000);
  constexpr std::size_t kBatch = 8;
  int wrong = 0;
  std::set<std::uint64_t> seen;
  for (int r = 0; r < rounds; r += static_cast<int>(kBatch)) {
    std::vector<warden::join_handle<std::uint64_t>> batch;
    std::vector<warden::abort_handle> aborts;
    for (std::size_t i = 0; i < kBatch; ++i) {
      batch.push_back(rt.spawn(ask_own_id(static_cast<int>(rng() % 3), rng() % 2 == 0)));
      aborts.push_back(batch.back().get_abort_handle());
    }
    // Two threads and this one ask at once, while the tasks run (and ask
    // too) on the workers.
    std::atomic<bool> go{false};
    std::array<std::uint64_t, kBatch> from_a{};
    std::array<std::uint64_t, kBatch> from_b{};
    auto reader = [&](std::array<std::uint64_t, kBatch>& out, bool backwards) {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::size_t k = 0; k < kBatch; ++k) {
        const std::size_t i = backwards ? kBatch - 1 - k : k;
        out[i] = aborts[i].id().value();
      }
    };
    std::thread a(reader, std::ref(from_a), false);
    std::thread b(reader, std::ref(from_b), true);
    go.store(true, std::memory_order_release);
    std::array<std::uint64_t, kBatch> from_here{};
    for (std::size_t i = 0; i < kBatch; ++i) from_here[i] = batch[i].id().value();
    a.join();
    b.join();
    for (std::size_t i = 0; i < kBatch; ++i) {
      const std::uint64_t own = batch[i].join();
      if (own == 0 || own != from_here[i] || own != from_a[i] || own != from_b[i]) ++wrong;
      if (batch[i].id().value() != own) ++wrong;  // stable after completion
      if (!seen.insert(own).second) ++wrong;      // unique
    }
  }
  EXPECT_EQ(wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(workers, task_extras_race, ::testing::Values<std::size_t>(1, 4), warden::testkit::worker_name);

}  // namespace
