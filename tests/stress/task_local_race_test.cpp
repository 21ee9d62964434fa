// Stress: task-local scopes nested, inherited and aborted at random moments
// on several workers (SEMANTICS P8). Every read must see the innermost value
// of its own task, and every bound value (copies included) must be destroyed
// once the tasks are gone.
#include "support/test_support.hpp"

#include <warden/task_local.hpp>

#include <atomic>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using warden::task;
using warden::testkit::live_counter;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

/// A bound value that counts its live copies.
struct tagged {
  live_counter life;
  int value;
};

constinit warden::task_local<tagged> inherited{{.inherit = true}};
constinit warden::task_local<tagged> private_key;

struct shared_counts {
  std::atomic<int> alive{0};     // live tagged values
  std::atomic<int> mismatch{0};  // reads that saw the wrong value
};

int read(const warden::task_local<tagged>& key) {
  const tagged* t = key.try_get();
  return t != nullptr ? t->value : -1;
}

/// Nests `depth` scopes of both keys, checking both at every step and after
/// a few yields; spawns an inheriting child at the innermost level.
task<void> nest(shared_counts& counts, int base, int depth, int yields) {
  if (depth == 0) {
    auto child = [](shared_counts& c, int expected, int y) -> task<void> {
      for (int i = 0; i < y; ++i) {
        co_await warden::yield_now{};
        if (read(inherited) != expected || read(private_key) != -1) c.mismatch.fetch_add(1);
      }
    };
    auto h = warden::spawn(child(counts, read(inherited), yields));
    for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
    co_await h;
    co_return;
  }
  const int mine = base * 10 + depth;
  auto inner = [](shared_counts& c, int expected, int b, int d, int y) -> task<void> {
    if (read(inherited) != expected || read(private_key) != -expected) c.mismatch.fetch_add(1);
    co_await warden::yield_now{};
    co_await nest(c, b, d - 1, y);
    if (read(inherited) != expected || read(private_key) != -expected) c.mismatch.fetch_add(1);
  };
  // Locals, not `tagged{...}` temporaries in the co_await expression: GCC 12
  // destroys a brace-initialised aggregate temporary there twice.
  tagged outer_value{live_counter(counts.alive), mine};
  tagged inner_value{live_counter(counts.alive), -mine};
  co_await inherited.scope(std::move(outer_value),
                           private_key.scope(std::move(inner_value), inner(counts, mine, base, depth, yields)));
}

class task_local_race : public ::testing::TestWithParam<std::size_t> {};

TEST_P(task_local_race, nested_inherited_scopes_stay_exact_under_random_aborts) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  shared_counts counts;
  {
    warden::runtime rt(warden::testkit::quiet_options(GetParam()));
    const int rounds = stress_iterations(40000);
    rt.block_on([&]() -> task<void> {
      for (int r = 0; r < rounds; r += 8) {
        std::vector<warden::join_handle<void>> batch;
        for (int i = 0; i < 8; ++i)
          batch.push_back(warden::spawn(nest(counts, 1 + static_cast<int>(rng() % 1000),
                                             1 + static_cast<int>(rng() % 3), static_cast<int>(rng() % 4))));
        const int wait = static_cast<int>(rng() % 5);
        for (int i = 0; i < wait; ++i) co_await warden::yield_now{};
        for (auto& h : batch)
          if (rng() % 3 == 0) h.abort();
        for (auto& h : batch) {
          auto outcome = co_await h.result();
          if (!outcome.has_value()) {
            EXPECT_TRUE(outcome.error().is_cancelled());
          }
        }
      }
    }());
  }  // shutdown: detached inheriting children are gone too
  EXPECT_EQ(counts.mismatch.load(), 0);
  EXPECT_EQ(counts.alive.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(workers, task_local_race, ::testing::Values<std::size_t>(0, 1, 4),
                         warden::testkit::worker_name);

}  // namespace
