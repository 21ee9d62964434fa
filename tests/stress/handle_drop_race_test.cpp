// Stress: a join handle dropped while its task completes, with wakers and
// abort handles released on other threads at the same time. The reference
// count shares the task's state word: completion drops the lifecycle
// reference in the CAS that publishes COMPLETE, and a dropped handle clears
// its interest and its reference in one CAS. Every interleaving must destroy
// an untaken result exactly once, report an untaken panic exactly once, and
// free each header exactly once (ASan and TSan builds check the last part).
#include "support/test_support.hpp"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using warden::task;
using warden::testkit::hang_guard;
using warden::testkit::quiet_options;
using warden::testkit::random_spin;
using warden::testkit::seed_trace;
using warden::testkit::spin;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;
using warden::testkit::test_event;

/// Counts its own destructions (moved-from ones excluded).
struct counted {
  std::atomic<int>* destroyed;
  explicit counted(std::atomic<int>* d) : destroyed(d) {}
  counted(counted&& other) noexcept : destroyed(std::exchange(other.destroyed, nullptr)) {}
  counted& operator=(counted&&) = delete;
  ~counted() {
    // release: the main thread's acquire read of the count orders the frame's
    // teardown (which ran before) ahead of its next iteration.
    if (destroyed != nullptr) destroyed->fetch_add(1, std::memory_order_release);
  }
};

task<counted> make_counted(std::atomic<int>* destroyed, test_event* go, bool wait) {
  if (wait) co_await go->wait();
  co_return counted(destroyed);
}

task<int> panic_after(test_event* go, bool wait) {
  if (wait) co_await go->wait();
  throw std::runtime_error("untaken");
}

class handle_drop_race : public ::testing::TestWithParam<std::size_t> {};

TEST_P(handle_drop_race, an_untaken_result_is_destroyed_once_whoever_drops_last) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(quiet_options(GetParam()));
  const int iterations = stress_iterations(2000);
  std::atomic<int> destroyed{0};
  hang_guard guard("handle_drop_race", destroyed);
  for (int i = 0; i < iterations; ++i) {
    test_event go;
    const bool wait = (rng() & 1) != 0;
    auto handle = rt.spawn(make_counted(&destroyed, &go, wait));
    auto abort_handle = handle.get_abort_handle();
    const std::uint32_t drop_spin = random_spin(rng, 13);
    const std::uint32_t abort_spin = random_spin(rng, 13);
    std::thread dropper([&, h = std::move(handle)]() mutable {
      spin(drop_spin);
      h = {};  // drops interest and reference while the task may be completing
    });
    std::thread releaser([&, a = std::move(abort_handle)]() mutable {
      spin(abort_spin);
      a = {};
    });
    go.set();
    dropper.join();
    releaser.join();
    // The task may still be finishing on a worker: wait for its one result.
    while (destroyed.load(std::memory_order_acquire) < i + 1) std::this_thread::yield();
    ASSERT_EQ(destroyed.load(), i + 1) << "iteration " << i;
  }
  rt.shutdown(std::chrono::seconds(10));
  EXPECT_EQ(destroyed.load(), iterations);
}

TEST_P(handle_drop_race, an_untaken_panic_is_reported_once_whoever_drops_last) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::atomic<int> reported{0};
  auto options = quiet_options(GetParam());
  options.failure_reporter = [&](const warden::unhandled_failure&) { reported.fetch_add(1); };
  warden::runtime rt(options);
  const int iterations = stress_iterations(1000);
  hang_guard guard("handle_drop_race panic", reported);
  for (int i = 0; i < iterations; ++i) {
    test_event go;
    const bool wait = (rng() & 1) != 0;
    auto handle = rt.spawn(panic_after(&go, wait));
    const std::uint32_t drop_spin = random_spin(rng, 13);
    std::thread dropper([&, h = std::move(handle)]() mutable {
      spin(drop_spin);
      h.detach();
    });
    go.set();
    dropper.join();
    while (reported.load() < i + 1) std::this_thread::yield();
    ASSERT_EQ(reported.load(), i + 1) << "iteration " << i;
  }
  rt.shutdown(std::chrono::seconds(10));
  EXPECT_EQ(reported.load(), iterations);
}

TEST_P(handle_drop_race, a_taken_result_is_not_destroyed_again_by_the_last_owner) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  warden::runtime rt(quiet_options(GetParam()));
  const int iterations = stress_iterations(2000);
  std::atomic<int> destroyed{0};
  hang_guard guard("handle_drop_race", destroyed);
  for (int i = 0; i < iterations; ++i) {
    test_event go;
    auto handle = rt.spawn(make_counted(&destroyed, &go, (rng() & 1) != 0));
    auto abort_handle = handle.get_abort_handle();
    const std::uint32_t abort_spin = random_spin(rng, 13);
    std::thread releaser([&, a = std::move(abort_handle)]() mutable {
      spin(abort_spin);
      a = {};
    });
    go.set();
    {
      counted value = handle.join();
      ASSERT_EQ(destroyed.load(), i) << "iteration " << i;
    }
    handle = {};
    releaser.join();
    ASSERT_EQ(destroyed.load(), i + 1) << "iteration " << i;
  }
  rt.shutdown(std::chrono::seconds(10));
  EXPECT_EQ(destroyed.load(), iterations);
}

INSTANTIATE_TEST_SUITE_P(workers, handle_drop_race, ::testing::Values<std::size_t>(1, 2, 4),
                         warden::testkit::worker_name);

}  // namespace
