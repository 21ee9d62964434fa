// The worker run queue (src/runtime/local_queue.hpp) on its own: the owner
// pushes, pops from the front and takes back from the end (pop_back, and
// pop_back_batch, whose entries it sometimes pushes back) while thieves
// steal halves; every pushed entry must come out exactly once.
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
        // After the owner is done, a bounded number of rounds: an entry the
        // queue lost (or a queue stuck non-empty) fails the count below
        // instead of hanging the test.
        for (int after_done = 0; after_done < 100000;) {
          const bool finished = owner_done.load(std::memory_order_acquire);
          if (task_header* t = queue->steal_into(*mine, 1 + rng() % 2)) take(t);
          while (task_header* t = mine->pop()) take(t);
          if (finished && (queue->looks_empty() || consumed.load() >= kEntries)) break;
          if (finished) ++after_done;
        }
      });
    }
    std::mt19937_64 rng(seed + round);
    int next = 0;
    while (next < kEntries) {
      const auto op = rng() % 10;
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
      } else if (op < 8) {
        // A burst, then take back from the end: the shape of a parent
        // spawning children and awaiting one.
        for (int i = 0; i < 3 && next < kEntries; ++i)
          if (queue->push(&entries[next])) ++next;
        if (task_header* t = queue->pop_back()) take(t);
      } else if (op < 9) {
        // A burst taken back from the end in one claim (help_awaited's
        // batch); part of it is pushed back, as when helping stops early.
        for (int i = 0; i < 6 && next < kEntries; ++i)
          if (queue->push(&entries[next])) ++next;
        task_header* batch[8];
        const std::size_t n = queue->pop_back_batch(batch, 1 + static_cast<std::uint32_t>(rng() % 8));
        const std::size_t keep = n != 0 ? rng() % (n + 1) : 0;
        for (std::size_t i = 0; i < keep; ++i) take(batch[i]);
        for (std::size_t i = n; i-- > keep;)
          if (!queue->push(batch[i])) take(batch[i]);
      } else {
        task_header* batch[8];
        const std::size_t n = queue->pop_back_batch(batch, 8);
        for (std::size_t i = 0; i < n; ++i) take(batch[i]);
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
