// task<T>: laziness, results, exceptions, symmetric transfer (SEMANTICS R1, R2).
#include "support/test_support.hpp"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

using warden::task;

warden::runtime_options one_thread() { return warden::testkit::quiet_options(0); }

// R1: creating a task runs nothing.
TEST(task, creating_a_task_runs_nothing) {
  int runs = 0;
  auto body = [&]() -> task<int> {
    ++runs;
    co_return 1;
  };
  {
    task<int> t = body();
    EXPECT_EQ(runs, 0);
  }
  EXPECT_EQ(runs, 0);  // destroyed unstarted: the body never ran
}

// R1: awaiting runs it and yields its value.
TEST(task, awaiting_runs_the_task_and_yields_its_value) {
  warden::runtime rt(one_thread());
  int runs = 0;
  auto inner = [&]() -> task<int> {
    ++runs;
    co_return 41;
  };
  auto outer = [&]() -> task<int> {
    task<int> t = inner();
    EXPECT_EQ(runs, 0);
    int v = co_await std::move(t);
    EXPECT_EQ(runs, 1);
    co_return v + 1;
  };
  EXPECT_EQ(rt.block_on(outer()), 42);
}

// R1: T = void.
TEST(task, void_task_runs_its_body) {
  warden::runtime rt(one_thread());
  int side = 0;
  auto inner = [&]() -> task<void> {
    side = 7;
    co_return;
  };
  auto outer = [&]() -> task<void> { co_await inner(); };
  rt.block_on(outer());
  EXPECT_EQ(side, 7);
}

// R1: a move-only type.
TEST(task, move_only_result_is_moved_out) {
  warden::runtime rt(one_thread());
  auto inner = []() -> task<std::unique_ptr<int>> { co_return std::make_unique<int>(5); };
  auto outer = [&]() -> task<int> {
    std::unique_ptr<int> p = co_await inner();
    co_return *p;
  };
  EXPECT_EQ(rt.block_on(outer()), 5);
}

// R1: a reference.
TEST(task, reference_result_refers_to_the_original) {
  warden::runtime rt(one_thread());
  int target = 1;
  auto inner = [&]() -> task<int&> { co_return target; };
  auto outer = [&]() -> task<void> {
    int& r = co_await inner();
    r = 99;
  };
  rt.block_on(outer());
  EXPECT_EQ(target, 99);
}

// R1: exceptions propagate through co_await.
TEST(task, exception_propagates_through_await) {
  warden::runtime rt(one_thread());
  auto inner = []() -> task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  auto middle = [&]() -> task<int> { co_return co_await inner(); };
  auto outer = [&]() -> task<std::string> {
    try {
      co_await middle();
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  EXPECT_EQ(rt.block_on(outer()), "boom");
}

// R1: an exception thrown after the child suspended (it finishes later,
// maybe on another worker) reaches the awaiter too: the promise's one word
// holds the exception, the continuation waits for the final awaiter.
TEST(task, exception_thrown_after_a_suspension_propagates_through_await) {
  warden::runtime rt(warden::testkit::quiet_options(2));
  auto inner = []() -> task<int> {
    co_await warden::yield_now{};
    throw std::runtime_error("late boom");
    co_return 0;
  };
  auto middle = [&]() -> task<int> {
    co_await warden::yield_now{};
    co_return co_await inner();
  };
  auto outer = [&]() -> task<std::string> {
    std::string seen;
    for (int i = 0; i < 100; ++i) {
      try {
        co_await middle();
        seen += "-";
      } catch (const std::runtime_error& e) {
        if (seen.empty()) seen = e.what();
      }
    }
    co_return seen;
  };
  EXPECT_EQ(rt.block_on(outer()), "late boom");
}

// The exception kept in a finished child's promise (its one word) is
// destroyed with its frame; a frame that never ran holds none.
TEST(task, an_escaped_exception_is_destroyed_with_the_frame) {
  static std::atomic<int> live{0};
  struct counted_error {
    counted_error() { ++live; }
    counted_error(const counted_error&) { ++live; }
    ~counted_error() { --live; }
  };
  warden::runtime rt(one_thread());
  auto inner = []() -> task<int> {
    throw counted_error{};
    co_return 0;
  };
  auto outer = [&]() -> task<bool> {
    bool caught = false;
    try {
      co_await inner();
    } catch (const counted_error&) {
      caught = true;
    }
    co_return caught&& live.load() == 0;
  };
  EXPECT_TRUE(rt.block_on(outer()));
  EXPECT_EQ(live.load(), 0);
  {
    task<int> unawaited = inner();  // never started: nothing thrown
  }
  EXPECT_EQ(live.load(), 0);
}

TEST(task, awaiting_a_task_twice_throws_usage_error) {
  warden::runtime rt(one_thread());
  auto inner = []() -> task<int> { co_return 1; };
  auto outer = [&]() -> task<bool> {
    task<int> t = inner();
    co_await t;
    try {
      co_await t;
    } catch (const warden::usage_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(rt.block_on(outer()));
}

TEST(task, awaiting_an_empty_task_throws_usage_error) {
  warden::runtime rt(one_thread());
  auto outer = []() -> task<bool> {
    task<int> empty;
    try {
      co_await empty;
    } catch (const warden::usage_error& e) {
      co_return std::string(e.what()).find("empty") != std::string::npos;
    }
    co_return false;
  };
  EXPECT_TRUE(rt.block_on(outer()));
}

TEST(task, destroying_an_unawaited_task_destroys_its_frame) {
  std::atomic<int> alive{0};
  auto body = [](warden::testkit::live_counter c) -> task<int> {
    (void)c;
    co_return 1;
  };
  {
    task<int> t = body(warden::testkit::live_counter(alive));
    EXPECT_EQ(alive.load(), 1);  // the parameter copy lives in the frame
  }
  EXPECT_EQ(alive.load(), 0);
}

task<int> synchronous_one() { co_return 1; }

// R2: 100,000 sequential awaits of synchronously completing tasks use
// constant stack (symmetric transfer); this test also runs in the -O0 build.
TEST(task, hundred_thousand_synchronous_awaits_do_not_overflow_the_stack) {
  warden::runtime rt(one_thread());
  auto loop = []() -> task<long> {
    long sum = 0;
    for (int i = 0; i < 100'000; ++i) sum += co_await synchronous_one();
    co_return sum;
  };
  EXPECT_EQ(rt.block_on(loop()), 100'000);
}

task<long> chain(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await chain(depth - 1);
}

// R2, nested form: a deep chain of awaits (each frame awaits the next).
TEST(task, deep_await_chain_completes) {
  warden::runtime rt(one_thread());
  EXPECT_EQ(rt.block_on(chain(10'000)), 10'000);
}

}  // namespace
