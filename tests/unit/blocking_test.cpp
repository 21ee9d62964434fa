// spawn_blocking: the blocking pool beside the async workers (SEMANTICS R15).
#include "support/test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using warden::join_handle;
using warden::task;
using warden::testkit::live_counter;
using warden::testkit::quiet_options;

/// Only a guard against hanging: a broken runtime fails the test after this
/// long instead of blocking the suite. Never used to wait for progress.
constexpr auto kHangGuard = std::chrono::seconds(60);

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

/// A one-shot gate that blocking calls park on. `open()` is idempotent;
/// `wait()` is false if the gate stayed shut for the whole hang guard.
class gate {
 public:
  void open() {
    if (!opened_.exchange(true)) promise_.set_value();
  }
  [[nodiscard]] bool wait() const { return future_.wait_for(kHangGuard) == std::future_status::ready; }

 private:
  std::atomic<bool> opened_{false};
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
};

/// Opens a gate when the test leaves its scope, so that an early failed
/// assertion never leaves blocking calls parked until the hang guard.
struct open_on_exit {
  gate& g;
  ~open_on_exit() { g.open(); }
};

/// Counts arrivals; `wait()` is false if fewer than `expected` arrived within
/// the hang guard.
class arrivals {
 public:
  explicit arrivals(int expected) : left_(expected) {}
  void arrive() {
    std::lock_guard lock(mutex_);
    if (--left_ == 0) all_.notify_all();
  }
  [[nodiscard]] bool wait() {
    std::unique_lock lock(mutex_);
    return all_.wait_for(lock, kHangGuard, [this] { return left_ <= 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable all_;
  int left_;
};

task<int> answer() { co_return 42; }

/// A runtime with GetParam() workers (0 = current-thread mode, R19).
class blocking_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime rt{quiet_options(GetParam())};
};

// R15: blocking calls run on their own pool: with more calls blocked at once
// than there are workers, an async task still runs to completion (and only
// then releases them).
TEST_P(blocking_test, blocked_blocking_calls_never_stall_the_async_workers) {
  constexpr int kBlockers = 8;  // more than any worker count tested
  gate release;
  open_on_exit release_on_failure{release};
  arrivals started(kBlockers);
  std::vector<join_handle<bool>> blockers;
  for (int i = 0; i < kBlockers; ++i)
    blockers.push_back(rt.spawn_blocking([&] {
      started.arrive();
      return release.wait();  // true only if the async task below released it
    }));
  ASSERT_TRUE(started.wait()) << "the blocking calls did not all run at once";

  auto async_work = [&release]() -> task<int> {
    int sum = 0;
    for (int i = 0; i < 10; ++i) {
      auto handle = warden::spawn(answer());
      sum += co_await std::move(handle);
      co_await warden::yield_now{};
    }
    release.open();
    co_return sum;
  };
  EXPECT_EQ(rt.block_on(async_work()), 420);
  for (auto& blocker : blockers) EXPECT_TRUE(blocker.join()) << "a blocking call was never released";
}

// R15: the handle of a blocking call yields the function's value: an int, a
// string, a move-only type, void.
TEST_P(blocking_test, spawn_blocking_yields_the_value_of_the_function) {
  auto number = rt.spawn_blocking([] { return 42; });
  auto text = rt.spawn_blocking([] { return std::string("from the blocking pool"); });
  auto box = rt.spawn_blocking([] { return std::make_unique<int>(7); });
  std::atomic<int> side{0};
  auto nothing = rt.spawn_blocking([&side] { side = 1; });
  EXPECT_EQ(number.join(), 42);
  EXPECT_EQ(text.join(), "from the blocking pool");
  std::unique_ptr<int> p = box.join();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
  nothing.join();
  EXPECT_EQ(side.load(), 1);
}

// R15: from inside a task, the free spawn_blocking uses the task's runtime,
// and the task awaits the handle like any other.
TEST_P(blocking_test, a_task_can_spawn_blocking_work_with_the_free_function_and_await_it) {
  auto body = []() -> task<int> {
    auto handle = warden::spawn_blocking([] { return 41; });
    co_return co_await std::move(handle) + 1;
  };
  EXPECT_EQ(rt.block_on(body()), 42);
}

// R15: an exception escaping the function is a panic carrying the original
// exception, its message and the task's name.
TEST_P(blocking_test, an_exception_escaping_a_blocking_call_is_a_panic_with_the_original_exception) {
  auto handle = rt.spawn_blocking([]() -> int { throw std::runtime_error("disk on fire"); }, {.name = "reader"});
  try {
    (void)handle.join();
    ADD_FAILURE() << "join returned although the blocking call threw";
  } catch (const warden::join_error& e) {
    EXPECT_TRUE(e.is_panic());
    EXPECT_EQ(e.panic_message(), "disk on fire");
    EXPECT_EQ(e.name(), "reader");
    EXPECT_THROW(e.rethrow(), std::runtime_error);
  }
}

// R15: the same panic, seen by a task awaiting the blocking call.
TEST_P(blocking_test, a_task_awaiting_a_failed_blocking_call_gets_a_panic) {
  auto body = []() -> task<std::string> {
    auto handle = warden::spawn_blocking([]() -> int { throw std::runtime_error("disk on fire"); });
    auto outcome = co_await handle.result();
    if (outcome.has_value()) co_return std::string("no error");
    if (!outcome.error().is_panic()) co_return std::string("not a panic");
    co_return std::string(outcome.error().panic_message());
  };
  EXPECT_EQ(rt.block_on(body()), "disk on fire");
}

// R15: a blocking call runs in the runtime's context: it can spawn async
// tasks with the free spawn and join them.
TEST_P(blocking_test, a_blocking_call_can_spawn_async_tasks_on_its_runtime) {
  auto handle = rt.spawn_blocking([] {
    auto inner = warden::spawn(answer());
    return inner.join() + 1;
  });
  EXPECT_EQ(handle.join(), 43);
}

// R15 with R4: the free spawn_blocking outside any runtime throws a
// usage_error that says how to fix it; the function never runs.
TEST(blocking_errors, free_spawn_blocking_outside_any_runtime_throws_usage_error) {
  std::atomic<int> alive{0};
  std::atomic<bool> ran{false};
  try {
    auto handle = warden::spawn_blocking([&ran, witness = live_counter(alive)] { ran = true; });
    ADD_FAILURE() << "spawn_blocking outside a runtime returned a handle";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(contains(e.what(), "spawn_blocking")) << e.what();
    EXPECT_TRUE(contains(e.what(), "runtime")) << e.what();
  }
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(alive.load(), 0);
}

// R15 with R4: after shutdown began, spawn_blocking throws runtime_closed and
// the function is destroyed without running.
TEST_P(blocking_test, spawn_blocking_after_shutdown_throws_runtime_closed_and_never_runs) {
  rt.shutdown(std::chrono::nanoseconds::zero());
  std::atomic<int> alive{0};
  std::atomic<bool> ran{false};
  EXPECT_THROW((void)rt.spawn_blocking([&ran, witness = live_counter(alive)] { ran = true; }), warden::runtime_closed);
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(alive.load(), 0);
}

class blocking_pool_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  /// A runtime whose blocking pool has a single thread.
  static warden::runtime_options one_blocking_thread() {
    auto options = quiet_options(GetParam());
    options.blocking_threads = 1;
    return options;
  }
};

// R15: abort before the call started prevents it from running: with one
// blocking thread busy, a queued call that is aborted never runs, its
// function is destroyed, and its handle resolves cancelled.
TEST_P(blocking_pool_test, aborting_a_queued_blocking_call_prevents_it_from_running) {
  warden::runtime rt(one_blocking_thread());
  gate release_first;
  open_on_exit release_on_failure{release_first};
  arrivals first_started(1);
  auto first = rt.spawn_blocking([&] {
    first_started.arrive();
    return release_first.wait();
  });
  ASSERT_TRUE(first_started.wait());  // the only blocking thread is now busy

  std::atomic<bool> second_ran{false};
  std::atomic<int> alive{0};
  auto second = rt.spawn_blocking([&second_ran, witness = live_counter(alive)] {
    second_ran = true;
    return 2;
  });
  EXPECT_EQ(alive.load(), 1);  // queued, not started
  second.abort();
  release_first.open();

  EXPECT_TRUE(first.join());
  try {
    (void)second.join();
    ADD_FAILURE() << "an aborted blocking call produced a value";
  } catch (const warden::join_error& e) {
    EXPECT_TRUE(e.is_cancelled());
  }
  EXPECT_FALSE(second_ran.load());
  EXPECT_EQ(alive.load(), 0);  // the function (and its captures) was destroyed
  EXPECT_TRUE(second.is_finished() || !second.valid());
}

// R15: with a single blocking thread the queued calls still all run, one
// after the other.
TEST_P(blocking_pool_test, queued_blocking_calls_run_in_turn_on_a_single_blocking_thread) {
  warden::runtime rt(one_blocking_thread());
  std::mutex order_mutex;
  std::vector<int> order;
  std::vector<join_handle<void>> calls;
  for (int i = 0; i < 20; ++i)
    calls.push_back(rt.spawn_blocking([&, i] {
      std::lock_guard lock(order_mutex);
      order.push_back(i);
    }));
  for (auto& call : calls) call.join();
  std::sort(order.begin(), order.end());
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);  // each exactly once
}

INSTANTIATE_TEST_SUITE_P(workers, blocking_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);
INSTANTIATE_TEST_SUITE_P(workers, blocking_pool_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
