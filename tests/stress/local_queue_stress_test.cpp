// The worker run queue (src/runtime/local_queue.hpp) on its own: the owner
// pushes, pops from the front and takes back from the end (pop_back) while
// thieves steal halves; every pushed entry must come out exactly once.
#include "../../src/runtime/local_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace {

using warden::detail::local_queue;
using warden::detail::task_header;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

class local_queue_stress : public ::testing::TestWithParam<int> {};

// Each round: one owner, GetParam() thieves (each with its own queue it
// drains), a fresh set of entries; the owner mixes push / pop / pop_back at
// random, so the queue often holds 0, 1 or 2 entries (where pop_back races
// the thieves for the last one) and sometimes many.
TEST_P(local_queue_stress, every_entry_is_taken_exactly_once) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  const int thieves = GetParam();
  const int rounds = stress_iterations(100);
  constexpr int kEntries = 20000;
  std::vector<task_header> entries(kEntries);
  std::vector<std::atomic<int>> taken(kEntries);
  auto index_of = [&](task_header* t) { return static_cast<std::size_t>(t - entries.data()); };

  for (int round = 0; round < rounds; ++round) {
    for (auto& t : taken) t.store(0, std::memory_order_relaxed);
    auto queue = std::make_unique<local_queue>();
    std::atomic<bool> owner_done{false};
    std::atomic<int> consumed{0};
    auto take = [&](task_header* t) {
      taken[index_of(t)].fetch_add(1, std::memory_order_relaxed);
      consumed.fetch_add(1, std::memory_order_relaxed);
    };
    std::vector<std::thread> threads;
    for (int k = 0; k < thieves; ++k) {
      threads.emplace_back([&, k] {
        auto mine = std::make_unique<local_queue>();
        std::minstd_rand rng(static_cast<std::uint32_t>(seed + round * 31 + k));
        for (;;) {
          const bool finished = owner_done.load(std::memory_order_acquire);
          if (task_header* t = queue->steal_into(*mine, 1 + rng() % 2)) take(t);
          while (task_header* t = mine->pop()) take(t);
          if (finished && (queue->looks_empty() || consumed.load() >= kEntries)) break;
        }
      });
    }
    std::mt19937_64 rng(seed + round);
    int next = 0;
    while (next < kEntries) {
      const auto op = rng() % 8;
      if (op < 2) {
        // One entry pushed and taken back at once: pop_back races the
        // thieves for the last entry.
        if (queue->push(&entries[next])) ++next;
        if (task_header* t = queue->pop_back()) take(t);
      } else if (op < 4) {
        if (queue->push(&entries[next])) ++next;
      } else if (op < 6) {
        if (task_header* t = queue->pop_back()) take(t);
      } else if (op < 7) {
        if (task_header* t = queue->pop()) take(t);
      } else {
        // A burst, then take back from the end: the shape of a parent
        // spawning children and awaiting one.
        for (int i = 0; i < 3 && next < kEntries; ++i)
          if (queue->push(&entries[next])) ++next;
        if (task_header* t = queue->pop_back()) take(t);
      }
    }
    for (std::uint64_t i = 0; i < local_queue::kCapacity; ++i)
      if (task_header* t = queue->pop_back()) take(t);
    owner_done.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    ASSERT_EQ(consumed.load(), kEntries) << "round " << round;
    for (int i = 0; i < kEntries; ++i) ASSERT_EQ(taken[i].load(), 1) << "entry " << i << ", round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(thieves, local_queue_stress, ::testing::Values(1, 2, 4),
                         [](const auto& info) { return std::to_string(info.param) + "_thieves"; });

}  // namespace
