// Stress: cancellation racing child creation, callback registration and
// deregistration, awaiters being aborted, and stop-token bridges (SEMANTICS
// P4 exactness). Seeded: a failure prints the seed to rerun with.
#include "support/test_support.hpp"

#include <warden/cancellation.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

using warden::cancellation_registration;
using warden::cancellation_token;
using warden::task;
using warden::testkit::live_counter;
using probe = warden::detail::cancellation_probe;

/// Spins for a random short while, so that racing threads meet at varied points.
void jitter(std::mt19937_64& rng) {
  const auto spins = std::uniform_int_distribution<int>(0, 200)(rng);
  for (int i = 0; i < spins; ++i) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (i % 64 == 63) std::this_thread::yield();
  }
}

/// One callback's record: how often it ran, and what it was seen at when its
/// registration was destroyed (-1: still registered).
struct callback_record {
  std::atomic<int> runs{0};
  int frozen = -1;
  bool ran_inline = false;
};

/// What one mutating thread did in an iteration.
struct mutator_log {
  std::vector<cancellation_token> tokens;
  std::deque<callback_record> records;  // stable addresses
  std::vector<std::pair<callback_record*, cancellation_registration>> live;
};

void mutate(const std::vector<cancellation_token>& seeds, mutator_log& log, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  log.tokens = seeds;
  for (int step = 0; step < 40; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 9)(rng);
    auto pick = [&]() -> cancellation_token& {
      return log.tokens[std::uniform_int_distribution<std::size_t>(0, log.tokens.size() - 1)(rng)];
    };
    if (op < 3) {
      log.tokens.push_back(pick().child_token());
    } else if (op < 7) {
      callback_record& record = log.records.emplace_back();
      // The callback touches heap memory it captured: if a registration's
      // destruction did not wait for a running callback, ASan would see it.
      auto registration = pick().on_cancel([&record, text = std::string(40, 'c')] {
        if (text.size() == 40) record.runs.fetch_add(1, std::memory_order_relaxed);
      });
      if (registration.active())
        log.live.emplace_back(&record, std::move(registration));
      else
        record.ran_inline = true;
    } else if (op < 9) {
      if (log.live.empty()) continue;
      const auto i = std::uniform_int_distribution<std::size_t>(0, log.live.size() - 1)(rng);
      log.live[i].second.reset();  // waits for the callback if it is running
      log.live[i].first->frozen = log.live[i].first->runs.load();
      log.live.erase(log.live.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (log.tokens.size() > 1) {
      // Cancel a non-root token now and then (never the root: the canceller does).
      log.tokens[std::uniform_int_distribution<std::size_t>(1, log.tokens.size() - 1)(rng)].cancel();
    }
    if (step % 8 == 0) jitter(rng);
  }
}

// P4 exactness: cancel() of the root racing child_token, on_cancel, registration
// destruction and cancels of subtrees on three other threads. Afterwards every
// token is cancelled, every callback still registered ran exactly once, every
// callback registered after the cancel ran inline once, and every destroyed
// registration's callback ran at most once and never after its destruction.
TEST(cancellation_stress_test, cancel_races_children_registrations_and_deregistrations) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(3000);
  constexpr int kMutators = 3;
  for (int it = 0; it < iterations; ++it) {
    cancellation_token root;
    std::vector<cancellation_token> seeds{root, root.child_token(), root.child_token()};
    seeds.push_back(seeds[1].child_token());
    std::vector<mutator_log> logs(kMutators);
    std::latch start(kMutators + 1);
    std::vector<std::thread> threads;
    for (int m = 0; m < kMutators; ++m)
      threads.emplace_back([&, m] {
        start.arrive_and_wait();
        mutate(seeds, logs[static_cast<std::size_t>(m)], seed * 7919 + static_cast<std::uint64_t>(it * 31 + m));
      });
    threads.emplace_back([&] {
      std::mt19937_64 rng(seed ^ static_cast<std::uint64_t>(it));
      start.arrive_and_wait();
      for (int k = std::uniform_int_distribution<int>(0, 6)(rng); k > 0; --k) jitter(rng);
      root.cancel();
    });
    for (auto& t : threads) t.join();

    for (auto& log : logs) {
      for (auto& token : log.tokens) ASSERT_TRUE(token.is_cancelled()) << "iteration " << it;
      for (auto& record : log.records) {
        const int runs = record.runs.load();
        ASSERT_LE(runs, 1) << "iteration " << it;
        if (record.ran_inline) {
          ASSERT_EQ(runs, 1) << "iteration " << it;
        } else if (record.frozen >= 0) {
          ASSERT_EQ(runs, record.frozen) << "a callback ran after its registration was destroyed, iteration " << it;
        } else {
          ASSERT_EQ(runs, 1) << "a registered callback did not run, iteration " << it;
        }
      }
    }
    for (auto& token : seeds) ASSERT_EQ(probe::callbacks(token), 0u);
  }
}

// Children created and dropped on several threads while the root is
// cancelled: nothing leaks (LeakSanitizer), the root's list ends empty.
TEST(cancellation_stress_test, children_dropped_while_the_parent_is_cancelled_are_unlinked) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(3000);
  for (int it = 0; it < iterations; ++it) {
    cancellation_token root;
    std::latch start(3);
    std::vector<cancellation_token> kept_a;
    std::vector<cancellation_token> kept_b;
    auto churn = [&](std::uint64_t s, std::vector<cancellation_token>& kept) {
      std::mt19937_64 rng(s);
      start.arrive_and_wait();
      for (int i = 0; i < 20; ++i) {
        cancellation_token child = root.child_token();
        if (i % 3 == 0) kept.push_back(child.child_token());  // outlives its parent's handles
        if (i % 5 == 0) jitter(rng);
      }
    };
    std::thread a(churn, seed + static_cast<std::uint64_t>(it) * 2, std::ref(kept_a));
    std::thread b(churn, seed + static_cast<std::uint64_t>(it) * 2 + 1, std::ref(kept_b));
    std::mt19937_64 rng(seed ^ static_cast<std::uint64_t>(it));
    start.arrive_and_wait();
    jitter(rng);
    root.cancel();
    a.join();
    b.join();
    for (auto& k : kept_a) ASSERT_TRUE(k.is_cancelled()) << "iteration " << it;
    for (auto& k : kept_b) ASSERT_TRUE(k.is_cancelled()) << "iteration " << it;
    kept_a.clear();
    kept_b.clear();
    ASSERT_EQ(probe::children(root), 0u) << "iteration " << it;
  }
}

// The std::stop_token bridge: request_stop racing the token's last handle
// being dropped, a child being made, and cancel().
TEST(cancellation_stress_test, stop_requests_race_token_drops_and_cancels) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(3000);
  for (int it = 0; it < iterations; ++it) {
    std::mt19937_64 rng(seed + static_cast<std::uint64_t>(it));
    std::stop_source source;
    std::optional<cancellation_token> token(cancellation_token::from_stop_token(source.get_token()));
    cancellation_token child = token->child_token();
    std::atomic<int> runs{0};
    auto registration = child.on_cancel([&] { runs.fetch_add(1); });
    const int what = std::uniform_int_distribution<int>(0, 2)(rng);
    std::latch start(2);
    std::thread requester([&] {
      start.arrive_and_wait();
      source.request_stop();
    });
    start.arrive_and_wait();
    if (what == 0) token.reset();
    if (what == 1) token->cancel();
    if (what == 2) (void)token->child_token();
    requester.join();
    ASSERT_TRUE(child.is_cancelled()) << "iteration " << it;  // the child keeps the bridge alive
    ASSERT_EQ(runs.load(), 1) << "iteration " << it;
  }
}

/// Parks on `token` and counts the resumption; counted in `alive` while alive.
task<void> park_on(cancellation_token token, live_counter counted, std::atomic<int>& resumed) {
  co_await token.cancelled();
  resumed.fetch_add(1);
  (void)counted;
}

task<int> slow_value(live_counter counted, int yields) {
  for (int i = 0; i < yields; ++i) co_await warden::yield_now{};
  (void)counted;
  co_return 7;
}

task<std::optional<int>> bounded(cancellation_token token, live_counter counted, int yields) {
  std::optional<int> r = co_await warden::run_until_cancelled(token, slow_value(counted, yields));
  co_return r;
}

class cancellation_runtime_stress_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  std::atomic<int> alive{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P4 (awaiters): tasks parked on cancelled() of nodes of a tree, and tasks in
// run_until_cancelled, are aborted at random moments while a plain thread
// cancels the root. Every awaiting task either resumed or was cancelled,
// every frame (inner ones included) is destroyed, no waiter is left on any
// node, and an awaiter started afterwards completes at once.
TEST_P(cancellation_runtime_stress_test, cancel_races_awaiters_being_aborted) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(2000);
  constexpr int kWaiters = 8;
  constexpr int kBounded = 4;
  for (int it = 0; it < iterations; ++it) {
    std::mt19937_64 rng(seed * 31 + static_cast<std::uint64_t>(it));
    cancellation_token root;
    std::vector<cancellation_token> nodes{root, root.child_token(), root.child_token()};
    nodes.push_back(nodes[1].child_token());
    auto pick = [&]() { return nodes[std::uniform_int_distribution<std::size_t>(0, nodes.size() - 1)(rng)]; };

    std::atomic<int> resumed{0};
    std::vector<warden::join_handle<void>> waiters;
    std::vector<warden::join_handle<std::optional<int>>> bounded_runs;
    for (int i = 0; i < kWaiters; ++i) waiters.push_back(rt.spawn(park_on(pick(), live_counter(alive), resumed)));
    for (int i = 0; i < kBounded; ++i)
      bounded_runs.push_back(
          rt.spawn(bounded(pick(), live_counter(alive), std::uniform_int_distribution<int>(0, 20)(rng))));

    std::latch start(2);
    std::thread canceller([&, s = rng()] {
      std::mt19937_64 local(s);
      start.arrive_and_wait();
      jitter(local);
      root.cancel();
    });
    start.arrive_and_wait();
    for (auto& h : waiters)
      if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
        jitter(rng);
        h.abort();
      }
    for (auto& h : bounded_runs)
      if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) h.abort();
    canceller.join();

    int finished = 0;
    int cancelled = 0;
    for (auto& h : waiters) {
      try {
        h.join();
        ++finished;
      } catch (const warden::join_error& e) {
        ASSERT_TRUE(e.is_cancelled()) << "iteration " << it;
        ++cancelled;
      }
    }
    ASSERT_EQ(finished + cancelled, kWaiters);
    ASSERT_EQ(resumed.load(), finished) << "iteration " << it;
    for (auto& h : bounded_runs) {
      try {
        std::optional<int> r = h.join();
        if (r) {
          ASSERT_EQ(*r, 7);
        }
      } catch (const warden::join_error& e) {
        ASSERT_TRUE(e.is_cancelled()) << "iteration " << it;
      }
    }
    // Inner tasks of aborted run_until_cancelled calls are aborted
    // asynchronously; wait for the runtime to destroy them.
    auto drain = [this]() -> task<void> {
      while (alive.load() != 0) co_await warden::yield_now{};
    };
    rt.block_on(drain());
    ASSERT_EQ(alive.load(), 0) << "iteration " << it;
    for (auto& node : nodes) {
      ASSERT_TRUE(node.is_cancelled());
      ASSERT_EQ(probe::waiters(node), 0u) << "iteration " << it;
      ASSERT_EQ(probe::callbacks(node), 0u) << "iteration " << it;
    }
    ASSERT_TRUE(nodes.back().cancelled().await_ready());
  }
}

INSTANTIATE_TEST_SUITE_P(workers, cancellation_runtime_stress_test, warden::testkit::kWorkerCounts,
                         warden::testkit::worker_name);

}  // namespace
