// The runtime: spawn (task and callable forms, free and member), block_on,
// yield_now, task ids, names and spawn locations, worker thread names, and
// current-thread mode (SEMANTICS R3, R4, R5, R10, R14, R18, R19).
#include "support/test_support.hpp"

#include <warden/sync/latch.hpp>
#include <warden/sync/mpsc.hpp>
#include <warden/time.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using warden::join_handle;
using warden::task;
using warden::testkit::live_counter;
using warden::testkit::quiet_options;
using warden::testkit::test_event;

/// Only a guard against hanging: a broken runtime fails the test after this
/// long instead of blocking the suite. Never used to wait for progress.
constexpr auto kHangGuard = std::chrono::seconds(60);

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

task<int> answer() { co_return 42; }
task<std::string> greeting() { co_return std::string("hello, warden"); }
task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

/// An exception type of the test's own, to check it arrives unchanged.
struct test_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Awaitable that wakes its own task while the task is still running, then
/// suspends: the runtime must run the task again (R10, moduvex lost this).
struct wake_self_then_suspend {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) const {
    warden::detail::waker waker = warden::detail::suspend_current(self);
    waker.wake();
  }
  void await_resume() const noexcept {}
};

/// Joins `handle` on a helper thread; if it does not finish within the hang
/// guard, shuts `rt` down (which aborts the stuck task and so releases the
/// helper) and reports false.
template <class T>
bool joins_in_time(warden::runtime& rt, join_handle<T>& handle, std::optional<T>& out) {
  auto joined = std::async(std::launch::async, [&handle] { return handle.join(); });
  if (joined.wait_for(kHangGuard) != std::future_status::ready) {
    rt.shutdown(std::chrono::nanoseconds::zero());
    try {
      (void)joined.get();
    } catch (...) {
    }
    return false;
  }
  out.emplace(joined.get());
  return true;
}

/// A runtime with GetParam() workers (0 = current-thread mode, R19).
class runtime_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime rt{quiet_options(GetParam())};
};

// ---- R3: spawn runs the task, from inside the runtime and from a plain thread ----

// R3: spawn from inside the runtime runs the task; awaiting the handle yields
// its value (42, a string, a move-only type).
TEST_P(runtime_test, spawn_from_inside_a_task_runs_it_and_awaiting_the_handle_yields_its_value) {
  struct results {
    int number = 0;
    std::string text;
    std::unique_ptr<int> box;
  };
  auto body = []() -> task<results> {
    auto number = warden::spawn(answer());
    auto text = warden::spawn(greeting());
    auto box = warden::spawn(boxed(7));
    results r;
    r.number = co_await std::move(number);
    r.text = co_await std::move(text);
    r.box = co_await std::move(box);
    co_return r;
  };
  results r = rt.block_on(body());
  EXPECT_EQ(r.number, 42);
  EXPECT_EQ(r.text, "hello, warden");
  ASSERT_NE(r.box, nullptr);
  EXPECT_EQ(*r.box, 7);
}

// R3: spawn from a plain thread (not a worker, not inside block_on) runs the
// task; join() on that thread yields the value.
TEST_P(runtime_test, spawn_from_a_plain_thread_runs_it_and_join_yields_its_value) {
  int number = 0;
  std::string text;
  std::unique_ptr<int> box;
  std::thread outsider([&] {
    auto a = rt.spawn(answer());
    auto b = rt.spawn(greeting());
    auto c = rt.spawn(boxed(7));
    number = a.join();
    text = b.join();
    box = c.join();
  });
  outsider.join();
  EXPECT_EQ(number, 42);
  EXPECT_EQ(text, "hello, warden");
  ASSERT_NE(box, nullptr);
  EXPECT_EQ(*box, 7);
}

// R3: a handle from a spawn on a plain thread can be awaited inside a task.
TEST_P(runtime_test, a_handle_spawned_on_a_plain_thread_can_be_awaited_from_a_task) {
  join_handle<std::string> handle;
  std::thread outsider([&] { handle = rt.spawn(greeting()); });
  outsider.join();
  auto body = [&handle]() -> task<std::string> { co_return co_await std::move(handle); };
  EXPECT_EQ(rt.block_on(body()), "hello, warden");
}

// Options a runtime cannot honour are refused up front, naming the option.
TEST(runtime_errors, more_worker_threads_than_the_idle_state_can_count_throw_usage_error_naming_the_option) {
  warden::runtime_options o;
  o.worker_threads = warden::runtime_options::max_worker_threads + 1;
  try {
    warden::runtime rt(std::move(o));
    ADD_FAILURE() << "a runtime with " << warden::runtime_options::max_worker_threads + 1 << " workers started";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(contains(e.what(), "worker_threads")) << e.what();
    EXPECT_TRUE(contains(e.what(), std::to_string(warden::runtime_options::max_worker_threads))) << e.what();
  }
}

// ---- R4: spawning where it cannot work ----

// R4: free spawn with no runtime on this thread (and none at all) throws a
// usage_error that says how to fix it; the task is destroyed unrun.
TEST(runtime_errors, spawn_outside_any_runtime_throws_usage_error_that_says_how_to_fix_it) {
  std::atomic<int> alive{0};
  int runs = 0;
  auto body = [&runs](live_counter) -> task<int> {
    ++runs;
    co_return 1;
  };
  try {
    auto handle = warden::spawn(body(live_counter(alive)));
    ADD_FAILURE() << "spawn outside a runtime returned a handle";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(contains(e.what(), "warden::spawn")) << e.what();  // names the misuse
    EXPECT_TRUE(contains(e.what(), "runtime")) << e.what();        // and the way out
    EXPECT_TRUE(contains(e.what(), "rt.spawn")) << e.what();
  }
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(alive.load(), 0);  // the frame (and its parameter copy) is gone
}

// R4: a runtime existing somewhere does not make a plain thread "inside" it:
// free spawn there still throws usage_error (the member spawn is the fix).
TEST_P(runtime_test, free_spawn_on_a_plain_thread_throws_usage_error_even_while_a_runtime_exists) {
  bool threw_usage_error = false;
  std::thread outsider([&] {
    try {
      auto handle = warden::spawn(answer());
    } catch (const warden::usage_error&) {
      threw_usage_error = true;
    }
  });
  outsider.join();
  EXPECT_TRUE(threw_usage_error);
}

// R4: the callable form outside any runtime throws too, and destroys its copy
// of the callable.
TEST(runtime_errors, callable_spawn_outside_any_runtime_throws_usage_error) {
  std::atomic<int> alive{0};
  {
    live_counter witness(alive);
    auto fn = [witness]() -> task<int> { co_return 1; };
    EXPECT_THROW((void)warden::spawn(fn), warden::usage_error);
  }
  EXPECT_EQ(alive.load(), 0);
}

// R4: once shutdown began, spawn throws runtime_closed and destroys the task
// without running it; so does block_on.
TEST_P(runtime_test, spawn_after_shutdown_throws_runtime_closed_and_destroys_the_task_unrun) {
  rt.shutdown(std::chrono::nanoseconds::zero());
  ASSERT_TRUE(rt.is_shutting_down());
  std::atomic<int> alive{0};
  std::atomic<int> runs{0};
  auto body = [&runs](live_counter) -> task<int> {
    runs.fetch_add(1);
    co_return 1;
  };
  EXPECT_THROW((void)rt.spawn(body(live_counter(alive))), warden::runtime_closed);
  EXPECT_THROW((void)rt.block_on(body(live_counter(alive))), warden::runtime_closed);
  {
    live_counter witness(alive);
    auto fn = [witness, &runs]() -> task<int> {
      runs.fetch_add(1);
      co_return 1;
    };
    EXPECT_THROW((void)rt.spawn(fn), warden::runtime_closed);
    EXPECT_EQ(alive.load(), 2);  // `witness` and `fn`'s capture: every copy made by spawn was destroyed
  }
  EXPECT_EQ(runs.load(), 0);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(rt.alive_tasks(), 0u);
}

// R4: a task still running during shutdown's grace period cannot spawn: the
// free spawn throws runtime_closed there and destroys the child unrun.
TEST_P(runtime_test, spawn_from_a_task_during_shutdown_grace_throws_runtime_closed) {
  std::atomic<int> alive{0};
  std::atomic<int> child_runs{0};
  auto child = [&child_runs](live_counter) -> task<int> {
    child_runs.fetch_add(1);
    co_return 1;
  };
  auto parent = [&]() -> task<bool> {
    // Bounded by the shutdown below; yields so it never holds a worker.
    while (!rt.is_shutting_down()) co_await warden::yield_now{};
    try {
      auto handle = warden::spawn(child(live_counter(alive)));
    } catch (const warden::runtime_closed&) {
      co_return true;
    }
    co_return false;
  };
  auto handle = rt.spawn(parent());
  rt.shutdown(kHangGuard);  // the parent finishes within the grace period
  EXPECT_TRUE(handle.join());
  EXPECT_EQ(child_runs.load(), 0);
  EXPECT_EQ(alive.load(), 0);
}

// ---- R5: nested spawns, and N spawned tasks ----

task<int> seven() { co_return 7; }
task<int> twice_seven() {
  auto handle = warden::spawn(seven());
  co_return 2 * co_await std::move(handle);
}
task<int> twice_seven_plus_one() {
  auto handle = warden::spawn(twice_seven());
  co_return co_await std::move(handle) + 1;
}

// R5: spawn inside a spawned task, three deep: 7*2+1 = 15.
TEST_P(runtime_test, spawn_inside_spawned_tasks_three_deep_returns_the_right_value) {
  EXPECT_EQ(rt.block_on(twice_seven_plus_one()), 15);
  auto handle = rt.spawn(twice_seven_plus_one());
  EXPECT_EQ(handle.join(), 15);
}

class spawn_count_test : public ::testing::TestWithParam<std::tuple<int, std::size_t>> {};

// R5: N tasks each incrementing a counter, all joined: exactly N, for every N
// and every worker count (0 = current thread).
TEST_P(spawn_count_test, n_spawned_tasks_each_incrementing_a_counter_count_exactly_n) {
  const int n = std::get<0>(GetParam());
  warden::runtime rt(quiet_options(std::get<1>(GetParam())));
  std::atomic<int> counter{0};
  auto increment = [&counter]() -> task<> {
    counter.fetch_add(1, std::memory_order_relaxed);
    co_return;
  };
  auto spawner = [&]() -> task<int> {
    std::vector<join_handle<void>> handles;
    handles.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) handles.push_back(warden::spawn(increment()));
    for (auto& handle : handles) co_await handle;
    co_return counter.load();
  };
  EXPECT_EQ(rt.block_on(spawner()), n);  // every increment happened before its join
  EXPECT_EQ(counter.load(), n);          // and none twice
}

std::string spawn_count_name(const ::testing::TestParamInfo<std::tuple<int, std::size_t>>& info) {
  return std::to_string(std::get<0>(info.param)) + "_tasks_on_" +
         warden::testkit::worker_name(::testing::TestParamInfo<std::size_t>(std::get<1>(info.param), info.index));
}

INSTANTIATE_TEST_SUITE_P(counts, spawn_count_test,
                         ::testing::Combine(::testing::Values(1, 10, 1000, 100000), warden::testkit::kWorkerCounts),
                         spawn_count_name);

// ---- the callable form of spawn; free spawn vs runtime::spawn ----

// The callable form copies the lambda into the frame: its captures stay valid
// after the scope that spawned it (and the lambda object) ended.
TEST_P(runtime_test, member_callable_spawn_keeps_lambda_captures_alive_after_the_spawning_scope_ended) {
  std::atomic<int> alive{0};
  test_event go;
  join_handle<std::string> handle;
  {
    std::string text = "captured by value";
    live_counter witness(alive);
    auto fn = [text, witness, &go]() -> task<std::string> {
      co_await go.wait();  // suspends: the captures are used after the spawning scope ended
      co_return text + "!";
    };
    handle = rt.spawn(fn);
  }
  EXPECT_GT(alive.load(), 0);  // the frame's copy of the lambda lives on
  go.set();
  EXPECT_EQ(handle.join(), "captured by value!");
  EXPECT_EQ(alive.load(), 0);  // and is destroyed with the frame
}

// The free callable form (from inside a task) does the same; the spawning
// task has even finished before the child runs on.
TEST_P(runtime_test, free_callable_spawn_keeps_lambda_captures_alive_after_the_spawning_task_ended) {
  std::atomic<int> alive{0};
  test_event go;
  auto parent = [&]() -> task<join_handle<std::string>> {
    std::string text = "captured by value";
    live_counter witness(alive);
    auto fn = [text, witness, &go]() -> task<std::string> {
      co_await go.wait();
      co_return text + "!";
    };
    co_return warden::spawn(fn);
  };
  join_handle<std::string> handle = rt.block_on(parent());
  EXPECT_GT(alive.load(), 0);
  go.set();
  EXPECT_EQ(handle.join(), "captured by value!");
  EXPECT_EQ(alive.load(), 0);
}

// The arguments of spawn(fn, args...) are copied into the frame too: a
// callable taking them by reference sees the copies, alive while it runs.
TEST_P(runtime_test, callable_spawn_copies_its_arguments_into_the_frame) {
  std::atomic<int> alive{0};
  test_event go;
  auto measure = [&go](const std::string& text, const live_counter&) -> task<std::size_t> {
    co_await go.wait();
    co_return text.size();
  };
  join_handle<std::size_t> handle;
  {
    std::string text = "twelve chars";
    handle = rt.spawn(measure, text, live_counter(alive));
    text = "overwritten after the spawn";
  }
  EXPECT_GT(alive.load(), 0);  // the frame's copy of the argument
  go.set();
  EXPECT_EQ(handle.join(), 12u);
  EXPECT_EQ(alive.load(), 0);
}

// Free spawn targets the runtime running the caller; runtime::spawn targets
// its own runtime, even when called from a task of another runtime.
TEST_P(runtime_test, free_spawn_targets_the_callers_runtime_and_member_spawn_its_own) {
  warden::runtime other(quiet_options(GetParam()));
  test_event go;
  auto child = [&go]() -> task<int> {
    co_await go.wait();
    co_return 1;
  };
  struct observed {
    std::size_t here_before, here_after_free, other_after_free;
    std::size_t here_after_member, other_after_member;
    join_handle<int> on_here, on_other;
  };
  auto parent = [&]() -> task<observed> {
    observed o{};
    o.here_before = rt.alive_tasks();  // this task
    o.on_here = warden::spawn(child());
    o.here_after_free = rt.alive_tasks();
    o.other_after_free = other.alive_tasks();
    o.on_other = other.spawn(child());
    o.here_after_member = rt.alive_tasks();
    o.other_after_member = other.alive_tasks();
    co_return o;
  };
  observed o = rt.block_on(parent());
  EXPECT_EQ(o.here_before, 1u);
  EXPECT_EQ(o.here_after_free, 2u);
  EXPECT_EQ(o.other_after_free, 0u);
  EXPECT_EQ(o.here_after_member, 2u);
  EXPECT_EQ(o.other_after_member, 1u);
  go.set();
  EXPECT_EQ(o.on_here.join(), 1);
  EXPECT_EQ(o.on_other.join(), 1);
}

// ---- R10: a task that wakes itself while running runs again; yield_now ----

// R10: a self-notify while running is not lost (moduvex lost it).
TEST_P(runtime_test, a_task_that_wakes_itself_while_running_is_run_again) {
  auto body = []() -> task<int> {
    int resumed = 0;
    for (int i = 0; i < 1000; ++i) {
      co_await wake_self_then_suspend{};
      ++resumed;
    }
    co_return resumed;
  };
  auto handle = rt.spawn(body());
  std::optional<int> resumed;
  ASSERT_TRUE(joins_in_time(rt, handle, resumed)) << "a self-wake was lost: the task never ran again";
  EXPECT_EQ(*resumed, 1000);
}

// R10: yield_now suspends and wakes the task itself: it is run again.
TEST_P(runtime_test, a_task_that_yields_is_run_again) {
  auto body = []() -> task<int> {
    int resumed = 0;
    for (int i = 0; i < 1000; ++i) {
      co_await warden::yield_now{};
      ++resumed;
    }
    co_return resumed;
  };
  auto handle = rt.spawn(body());
  std::optional<int> resumed;
  ASSERT_TRUE(joins_in_time(rt, handle, resumed)) << "a yield was lost: the task never ran again";
  EXPECT_EQ(*resumed, 1000);
}

// yield_now lets other ready tasks run: a task spinning on yield_now until
// its children ran finishes, also with a single thread to share.
TEST_P(runtime_test, a_task_spinning_on_yield_now_lets_the_tasks_it_waits_for_run) {
  std::atomic<int> ran{0};
  auto child = [&ran]() -> task<> {
    ran.fetch_add(1);
    co_return;
  };
  auto parent = [&]() -> task<bool> {
    std::vector<join_handle<void>> children;
    for (int i = 0; i < 3; ++i) children.push_back(warden::spawn(child()));
    // Bounded so that a yield that never lets others run fails, not hangs.
    for (long spins = 0; ran.load() < 3; ++spins) {
      if (spins == 10'000'000) co_return false;
      co_await warden::yield_now{};
    }
    for (auto& c : children) co_await c;
    co_return true;
  };
  EXPECT_TRUE(rt.block_on(parent()));
  EXPECT_EQ(ran.load(), 3);
}

class single_driver_test : public runtime_test {};

// yield_now puts the task at the back of the run queue: on a single thread,
// every task that was ready runs before the yielder resumes.
TEST_P(single_driver_test, yield_now_runs_every_ready_task_before_the_yielder_resumes) {
  std::atomic<int> ran{0};
  auto child = [&ran]() -> task<> {
    ran.fetch_add(1);
    co_return;
  };
  auto parent = [&]() -> task<int> {
    std::vector<join_handle<void>> children;
    for (int i = 0; i < 3; ++i) children.push_back(warden::spawn(child()));
    const int before = ran.load();
    co_await warden::yield_now{};
    const int after = ran.load();
    for (auto& c : children) co_await c;
    co_return before * 10 + after;
  };
  EXPECT_EQ(rt.block_on(parent()), 3);  // none before the yield, all three after it
}

// A yield goes behind every task already queued, also when a thousand are
// (more than a worker's queue held before it grew to 1024, when the excess
// went to the injection queue and the yielders there waited behind those
// cycling through the local queue): tasks yielding in a loop run in rounds,
// each task once per round, in spawn order every round.
TEST_P(single_driver_test, a_thousand_yielding_tasks_run_in_rounds_each_once_per_round_in_spawn_order) {
  constexpr int kTasks = 1000;
  constexpr int kRounds = 3;
  std::vector<int> order;  // appended to only by the one thread that runs tasks
  order.reserve(kTasks * kRounds);
  auto yielder = [&order](int id) -> task<> {
    for (int round = 0; round < kRounds; ++round) {
      order.push_back(id);
      co_await warden::yield_now{};
    }
  };
  auto spawner = [&]() -> task<std::vector<join_handle<void>>> {
    std::vector<join_handle<void>> handles;
    for (int id = 0; id < kTasks; ++id) handles.push_back(warden::spawn(yielder(id)));
    co_return handles;
  };
  std::vector<join_handle<void>> handles = rt.block_on(spawner());
  for (auto& h : handles) h.join();
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kTasks * kRounds));
  for (int round = 0; round < kRounds; ++round)
    for (int id = 0; id < kTasks; ++id)
      ASSERT_EQ(order[static_cast<std::size_t>(round * kTasks + id)], id) << "round " << round;
}

// The LIFO slot runs a task woken by the running one next, but only so many
// times in a row: a pair of tasks waking each other through channels (each
// wake puts the other in the slot) cannot keep a task queued behind them
// from running for more than a few round trips. Without the bound the
// queued task would run only after all of them.
task<> pinger(warden::mpsc_sender<int> out, warden::mpsc_receiver<int> in, int round_trips, std::atomic<int>& done) {
  for (int i = 0; i < round_trips; ++i) {
    EXPECT_TRUE(co_await out.send(i));
    EXPECT_EQ(co_await in.recv(), std::optional<int>(i));
    done.fetch_add(1);
  }
}

task<> ponger(warden::mpsc_receiver<int> in, warden::mpsc_sender<int> out) {
  while (std::optional<int> v = co_await in.recv()) EXPECT_TRUE(co_await out.send(*v));
}

task<int> observe(const std::atomic<int>& round_trips) { co_return round_trips.load(); }

TEST_P(single_driver_test, a_ping_pong_pair_lets_a_task_queued_behind_it_run_within_a_few_round_trips) {
  constexpr int kRoundTrips = 1000;
  std::atomic<int> done{0};
  // The spawner does not await (an await could run the queued task early,
  // help_awaited): the handles are joined from this thread.
  auto spawner = [&]() -> task<std::tuple<join_handle<void>, join_handle<void>, join_handle<int>>> {
    auto [to_pong, from_ping] = warden::mpsc<int>(1);
    auto [to_ping, from_pong] = warden::mpsc<int>(1);
    join_handle<void> pong = warden::spawn(ponger(std::move(from_ping), std::move(to_ping)));
    join_handle<void> ping = warden::spawn(pinger(std::move(to_pong), std::move(from_pong), kRoundTrips, done));
    join_handle<int> queued = warden::spawn(observe(done));
    co_return std::tuple{std::move(pong), std::move(ping), std::move(queued)};
  };
  auto [pong, ping, queued] = rt.block_on(spawner());
  const int seen = queued.join();
  ping.join();
  pong.join();
  EXPECT_EQ(done.load(), kRoundTrips);
  EXPECT_LT(seen, 32) << "round trips before the queued task ran";
}

// A poll whose task parks after waking the other of a pair goes on with the
// woken task without returning to the loop (take_lifo_next in
// runtime_core.hpp); a task reached that way that yields must be the one
// re-queued (not the parked one): every round trip completes.
task<> yielding_ponger(warden::mpsc_receiver<int> in, warden::mpsc_sender<int> out) {
  while (std::optional<int> v = co_await in.recv()) {
    co_await warden::yield_now{};
    EXPECT_TRUE(co_await out.send(*v));
    co_await warden::yield_now{};
  }
}

TEST_P(single_driver_test, a_ping_pong_pair_whose_receiver_yields_completes_every_round_trip) {
  constexpr int kRoundTrips = 500;
  std::atomic<int> done{0};
  auto spawner = [&]() -> task<std::tuple<join_handle<void>, join_handle<void>>> {
    auto [to_pong, from_ping] = warden::mpsc<int>(1);
    auto [to_ping, from_pong] = warden::mpsc<int>(1);
    join_handle<void> pong = warden::spawn(yielding_ponger(std::move(from_ping), std::move(to_ping)));
    join_handle<void> ping = warden::spawn(pinger(std::move(to_pong), std::move(from_pong), kRoundTrips, done));
    co_return std::tuple{std::move(pong), std::move(ping)};
  };
  auto [pong, ping] = rt.block_on(spawner());
  ping.join();
  pong.join();
  EXPECT_EQ(done.load(), kRoundTrips);
}

// A pair that keeps waking each other runs as one chain of polls (see
// take_lifo_next; detached tasks, so that their parks are solo) that looks
// at the loop's periodic duties itself, or lets the loop do them, every 61
// picks: a task spawned from outside the runtime (the injection queue) and
// a timer still get their turn, here each stopping the pair (which would
// otherwise run forever).
task<> pinger_until(warden::mpsc_sender<int> out, warden::mpsc_receiver<int> in, const std::atomic<bool>& stop,
                    warden::latch& ended) {
  for (int i = 0; !stop.load(); ++i) {
    EXPECT_TRUE(co_await out.send(i));
    EXPECT_EQ(co_await in.recv(), std::optional<int>(i));
  }
  ended.count_down();
}  // dropping `out` closes the ponger's channel: it ends too

task<> ponger_until_closed(warden::mpsc_receiver<int> in, warden::mpsc_sender<int> out, warden::latch& ended) {
  while (std::optional<int> v = co_await in.recv()) EXPECT_TRUE(co_await out.send(*v));
  ended.count_down();
}

task<> spawn_pair_until(const std::atomic<bool>& stop, warden::latch& ended) {
  auto [to_pong, from_ping] = warden::mpsc<int>(1);
  auto [to_ping, from_pong] = warden::mpsc<int>(1);
  warden::spawn(ponger_until_closed(std::move(from_ping), std::move(to_ping), ended)).detach();
  warden::spawn(pinger_until(std::move(to_pong), std::move(from_pong), stop, ended)).detach();
  co_return;
}

task<> wait_for(warden::latch& ended) { co_await ended.wait(); }

TEST_P(single_driver_test, a_ping_pong_pair_that_runs_until_stopped_lets_a_task_spawned_from_outside_run) {
  std::atomic<bool> stop{false};
  warden::latch ended(2);
  rt.block_on(spawn_pair_until(stop, ended));
  std::thread outside([&] {
    rt.spawn([](std::atomic<bool>& flag) -> task<> {
        flag.store(true);
        co_return;
      }(stop))
        .detach();
  });
  rt.block_on(wait_for(ended));  // drives the runtime in current-thread mode
  outside.join();
  EXPECT_TRUE(stop.load());
}

TEST_P(single_driver_test, a_ping_pong_pair_that_runs_until_stopped_lets_a_timer_fire) {
  std::atomic<bool> stop{false};
  warden::latch ended(2);
  // The sleeper is queued behind the pair on the runtime's thread.
  rt.block_on([](std::atomic<bool>& flag, warden::latch& pair_ended) -> task<> {
    co_await spawn_pair_until(flag, pair_ended);
    warden::spawn([](std::atomic<bool>& f) -> task<> {
      co_await warden::sleep_for(std::chrono::milliseconds(1));
      f.store(true);
    }(flag))
        .detach();
  }(stop, ended));
  rt.block_on(wait_for(ended));
  EXPECT_TRUE(stop.load());
}

// The same bound for a detached pair, whose parks are solo: its round trips
// run as one chain of polls (take_lifo_next) that ends its streak every few
// picks by taking the queue's turn (take_queue_turn), so the task queued
// behind the pair still runs within a few round trips. (The test above holds
// the pair's handles: its parks are not solo and the chain never runs.)
task<> pinger_counted(warden::mpsc_sender<int> out, warden::mpsc_receiver<int> in, int round_trips,
                      std::atomic<int>& done, warden::latch& ended) {
  for (int i = 0; i < round_trips; ++i) {
    EXPECT_TRUE(co_await out.send(i));
    EXPECT_EQ(co_await in.recv(), std::optional<int>(i));
    done.fetch_add(1);
  }
  ended.count_down();
}  // dropping `out` closes the ponger's channel: it ends too

TEST_P(single_driver_test, a_detached_ping_pong_pair_lets_a_task_queued_behind_it_run_within_a_few_round_trips) {
  constexpr int kRoundTrips = 1000;
  std::atomic<int> done{0};
  std::atomic<int> seen{-1};
  warden::latch ended(3);  // the pair and the queued task
  auto spawner = [&]() -> task<> {
    auto [to_pong, from_ping] = warden::mpsc<int>(1);
    auto [to_ping, from_pong] = warden::mpsc<int>(1);
    warden::spawn(ponger_until_closed(std::move(from_ping), std::move(to_ping), ended)).detach();
    warden::spawn(pinger_counted(std::move(to_pong), std::move(from_pong), kRoundTrips, done, ended)).detach();
    warden::spawn([](const std::atomic<int>& round_trips, std::atomic<int>& out, warden::latch& l) -> task<> {
      out.store(round_trips.load());
      l.count_down();
      co_return;
    }(done, seen, ended))
        .detach();
    co_return;
  };
  rt.block_on(spawner());
  rt.block_on(wait_for(ended));  // drives the runtime in current-thread mode
  EXPECT_EQ(done.load(), kRoundTrips);
  EXPECT_GE(seen.load(), 0);
  EXPECT_LT(seen.load(), 32) << "round trips before the queued task ran";
}

INSTANTIATE_TEST_SUITE_P(one_thread, single_driver_test, ::testing::Values<std::size_t>(0, 1),
                         warden::testkit::worker_name);

// ---- R14: block_on ----

// R14: block_on returns the task's value (int, string, move-only, void).
TEST_P(runtime_test, block_on_returns_the_value_of_the_task) {
  EXPECT_EQ(rt.block_on(answer()), 42);
  EXPECT_EQ(rt.block_on(greeting()), "hello, warden");
  std::unique_ptr<int> box = rt.block_on(boxed(3));
  ASSERT_NE(box, nullptr);
  EXPECT_EQ(*box, 3);
  int side = 0;
  auto body = [&side]() -> task<> {
    side = 5;
    co_return;
  };
  rt.block_on(body());
  EXPECT_EQ(side, 5);
}

// R14: block_on rethrows the task's own exception (not a join_error).
TEST_P(runtime_test, block_on_rethrows_the_exception_of_the_task_itself) {
  auto body = []() -> task<int> {
    co_await warden::yield_now{};
    throw test_failure("boom");
    co_return 0;
  };
  try {
    (void)rt.block_on(body());
    ADD_FAILURE() << "block_on returned although the task threw";
  } catch (const test_failure& e) {
    EXPECT_STREQ(e.what(), "boom");
  } catch (const warden::join_error& e) {
    ADD_FAILURE() << "block_on wrapped the exception in a join_error: " << e.what();
  }
}

// R14: block_on from inside a task (on a worker, or on the driving thread in
// current-thread mode) throws a usage_error that says to co_await instead.
TEST_P(runtime_test, block_on_from_inside_a_task_throws_usage_error_instead_of_deadlocking) {
  std::atomic<int> alive{0};
  auto inner = [](live_counter) -> task<int> { co_return 1; };
  auto outer = [&]() -> task<std::string> {
    try {
      (void)rt.block_on(inner(live_counter(alive)));
    } catch (const warden::usage_error& e) {
      co_return std::string(e.what());
    }
    co_return std::string("no usage_error");
  };
  const std::string message = rt.block_on(outer());
  EXPECT_TRUE(contains(message, "block_on")) << message;
  EXPECT_TRUE(contains(message, "co_await")) << message;  // the way out
  EXPECT_EQ(alive.load(), 0);                             // the refused task was destroyed
}

// R14 / R19: several plain threads may block_on at once; each gets its own
// value (in current-thread mode one of them drives, the others wait).
TEST_P(runtime_test, block_on_from_several_threads_at_once_returns_each_its_own_value) {
  auto body = [](int v) -> task<int> {
    for (int i = 0; i < 10; ++i) co_await warden::yield_now{};
    co_return v;
  };
  constexpr int kThreads = 4;
  std::vector<int> results(kThreads, -1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { results[static_cast<std::size_t>(t)] = rt.block_on(body(t * 10)); });
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(results[static_cast<std::size_t>(t)], t * 10);
}

// ---- R18: ids, names, spawn locations, current_task_id ----

// R18: every live task has a distinct non-zero id; current_task_id() inside
// the task equals its handle's id.
TEST_P(runtime_test, every_live_task_has_a_distinct_id_that_current_task_id_reports_inside_it) {
  test_event go;
  auto child = [&go]() -> task<std::pair<warden::task_id, std::optional<warden::task_id>>> {
    co_await go.wait();  // all children stay alive until every id was checked
    co_return std::pair{warden::current_task_id(), warden::try_current_task_id()};
  };
  constexpr int kChildren = 64;
  auto parent = [&]() -> task<bool> {
    const warden::task_id self = warden::current_task_id();
    std::vector<join_handle<std::pair<warden::task_id, std::optional<warden::task_id>>>> children;
    std::set<warden::task_id> ids{self};
    for (int i = 0; i < kChildren; ++i) {
      children.push_back(warden::spawn(child()));
      EXPECT_TRUE(static_cast<bool>(children.back().id()));
      ids.insert(children.back().id());
    }
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kChildren + 1));  // all distinct, the parent's too
    go.set();
    for (auto& c : children) {
      const warden::task_id expected = c.id();
      auto [inside, try_inside] = co_await c;
      EXPECT_EQ(inside, expected);
      EXPECT_EQ(try_inside, std::optional(expected));
    }
    co_return warden::current_task_id() == self;  // still the parent after all those awaits
  };
  EXPECT_TRUE(rt.block_on(parent()));
}

// R18: ids are never reused, not even after a task finished and its header
// went back to the pool.
TEST_P(runtime_test, task_ids_are_not_reused_after_tasks_finish) {
  auto own_id = []() -> task<warden::task_id> { co_return warden::current_task_id(); };
  auto body = [&]() -> task<std::size_t> {
    std::set<warden::task_id> ids;
    for (int i = 0; i < 2000; ++i) {
      auto handle = warden::spawn(own_id());
      ids.insert(co_await std::move(handle));
    }
    co_return ids.size();
  };
  EXPECT_EQ(rt.block_on(body()), 2000u);
}

// R18: current_task_id() inside a task awaited inline (not spawned) is the
// id of the spawned task running it.
TEST_P(runtime_test, current_task_id_in_an_inline_awaited_task_is_that_of_the_spawned_task) {
  auto inner = []() -> task<warden::task_id> { co_return warden::current_task_id(); };
  auto outer = [&]() -> task<bool> {
    const warden::task_id self = warden::current_task_id();
    const warden::task_id seen = co_await inner();
    co_return self == seen&& static_cast<bool>(self);
  };
  EXPECT_TRUE(rt.block_on(outer()));
}

// R18: outside a task, current_task_id() throws a usage_error pointing at
// try_current_task_id(), which gives nullopt.
TEST(runtime_ids, outside_a_task_current_task_id_throws_and_try_current_task_id_is_empty) {
  EXPECT_FALSE(warden::try_current_task_id().has_value());
  try {
    (void)warden::current_task_id();
    ADD_FAILURE() << "current_task_id outside a task returned";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(contains(e.what(), "try_current_task_id")) << e.what();
  }
  // Also on the thread that drives a current-thread runtime, between block_ons.
  warden::runtime rt(quiet_options(0));
  EXPECT_EQ(rt.block_on(answer()), 42);
  EXPECT_FALSE(warden::try_current_task_id().has_value());
}

// R18: a task's optional name is copied at spawn; unnamed tasks have "".
TEST_P(runtime_test, a_task_name_is_copied_at_spawn_and_defaults_to_empty) {
  std::string name = "fetch-" + std::to_string(3);
  auto named = rt.spawn(answer(), {.name = name});
  name.assign("overwritten with something much longer than before");
  auto unnamed = rt.spawn(answer());
  EXPECT_EQ(named.name(), "fetch-3");
  EXPECT_EQ(unnamed.name(), "");
  EXPECT_EQ(named.join(), 42);
  EXPECT_EQ(unnamed.join(), 42);
}

bool is_this_file(const std::source_location& where) { return contains(where.file_name(), "runtime_test.cpp"); }

// R18: the handle reports where the spawn happened (member and free spawn).
TEST_P(runtime_test, the_handle_reports_the_source_location_of_the_spawn) {
  const std::uint_least32_t member_line = __LINE__ + 1;
  auto member = rt.spawn(answer());
  EXPECT_TRUE(is_this_file(member.spawn_location())) << member.spawn_location().file_name();
  EXPECT_EQ(member.spawn_location().line(), member_line);
  EXPECT_EQ(member.join(), 42);

  const std::uint_least32_t free_line = __LINE__ + 2;
  auto body = []() -> task<std::source_location> {
    auto spawned = warden::spawn(answer());
    const std::source_location where = spawned.spawn_location();
    (void)co_await std::move(spawned);
    co_return where;
  };
  const std::source_location where = rt.block_on(body());
  EXPECT_TRUE(is_this_file(where)) << where.file_name();
  EXPECT_EQ(where.line(), free_line);
}

// R18: the callable form reports the caller's location too, not a line
// inside warden's headers.
TEST_P(runtime_test, the_handle_of_a_callable_spawn_reports_the_callers_source_location) {
  auto fn = []() -> task<int> { co_return 42; };
  const std::uint_least32_t line = __LINE__ + 1;
  auto handle = rt.spawn(fn);
  EXPECT_TRUE(is_this_file(handle.spawn_location()))
      << handle.spawn_location().file_name() << ":" << handle.spawn_location().line();
  EXPECT_EQ(handle.spawn_location().line(), line);
  EXPECT_EQ(handle.join(), 42);

  const std::uint_least32_t free_line = __LINE__ + 2;
  auto body = [&fn]() -> task<std::source_location> {
    auto spawned = warden::spawn(fn);
    const std::source_location where = spawned.spawn_location();
    (void)co_await std::move(spawned);
    co_return where;
  };
  const std::source_location where = rt.block_on(body());
  EXPECT_TRUE(is_this_file(where)) << where.file_name() << ":" << where.line();
  EXPECT_EQ(where.line(), free_line);
}

std::source_location here(std::source_location where = std::source_location::current()) { return where; }
task<std::string> spelled(int n) { co_return std::to_string(n); }
bool same_location(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() && std::string_view(a.file_name()) == b.file_name() &&
         std::string_view(a.function_name()) == b.function_name();
}

// R18: spawn sites are interned per (location, result type) with a small
// per-thread cache: more sites than the cache has slots, two result types
// per location, spawned from tasks (on the workers) and from this thread,
// each report their own location and return their own value.
TEST_P(runtime_test, many_spawn_sites_each_report_their_location_and_value) {
  const std::vector<std::source_location> sites = {
      here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
      here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
      here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
      here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
      here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
  };
  auto same = [](const std::source_location& a, const std::source_location& b) {
    return a.line() == b.line() && a.column() == b.column() && std::string_view(a.file_name()) == b.file_name() &&
           std::string_view(a.function_name()) == b.function_name();
  };
  auto check_all = [&]() -> task<int> {
    int wrong = 0;
    for (int round = 0; round < 3; ++round) {
      for (std::size_t i = 0; i < sites.size(); ++i) {
        auto number = warden::spawn(spelled(static_cast<int>(i)), {.location = sites[i]});
        auto plain = warden::spawn(answer(), {.location = sites[i]});
        if (!same(number.spawn_location(), sites[i]) || !same(plain.spawn_location(), sites[i])) ++wrong;
        if (co_await std::move(number) != std::to_string(i)) ++wrong;
        if (co_await std::move(plain) != 42) ++wrong;
      }
    }
    co_return wrong;
  };
  std::vector<join_handle<int>> checkers;
  for (int i = 0; i < 4; ++i) checkers.push_back(rt.spawn(check_all()));
  for (std::size_t i = 0; i < sites.size(); ++i) {
    auto handle = rt.spawn(spelled(static_cast<int>(i)), {.location = sites[i]});
    EXPECT_TRUE(same(handle.spawn_location(), sites[i])) << i;
    EXPECT_EQ(handle.join(), std::to_string(i));
  }
  for (auto& c : checkers) EXPECT_EQ(c.join(), 0);
  EXPECT_NE(sites[0].column(), sites[1].column());  // the sites really differ
}

// R18: the spawn site also names the task's scheduler (the header keeps
// one pointer for the site's result type, location and scheduler), so one
// location used by two runtimes and by a blocking pool gives each task its
// own runtime: each is counted by its runtime, and one runtime's shutdown
// cancels only its own tasks.
TEST_P(runtime_test, one_spawn_site_used_by_two_runtimes_and_a_blocking_pool_keeps_each_task_on_its_own) {
  const std::source_location site = here();
  for (int round = 0; round < 3; ++round) {
    warden::runtime other(quiet_options(GetParam()));
    test_event go;
    auto child = [&go]() -> task<int> {
      co_await go.wait();
      co_return 7;
    };
    std::vector<join_handle<int>> mine, theirs;
    for (int i = 0; i < 4; ++i) {
      mine.push_back(rt.spawn(child(), {.location = site}));
      theirs.push_back(other.spawn(child(), {.location = site}));
    }
    // (rt's count may still include the last round's blocking task: its
    // runtime hears of its end after the join handle does.)
    EXPECT_EQ(other.alive_tasks(), 4u);
    auto blocking = rt.spawn_blocking([] { return 5; }, {.location = site});
    EXPECT_TRUE(same_location(blocking.spawn_location(), site));
    EXPECT_EQ(blocking.join(), 5);
    other.shutdown(std::chrono::nanoseconds::zero());
    for (auto& h : theirs) {
      try {
        (void)h.join();
        ADD_FAILURE() << "a task of the runtime shut down finished";
      } catch (const warden::join_error& e) {
        EXPECT_TRUE(e.is_cancelled());
      }
    }
    EXPECT_EQ(other.alive_tasks(), 0u);
    for (auto& h : mine) EXPECT_FALSE(h.is_finished());
    go.set();
    for (auto& h : mine) {
      EXPECT_TRUE(same_location(h.spawn_location(), site));
      EXPECT_EQ(h.join(), 7);
    }
  }
}

// ---- R19: current-thread mode ----

// R19: with 0 workers, every task runs on the thread inside block_on.
TEST(current_thread_mode, every_task_runs_on_the_thread_inside_block_on) {
  warden::runtime rt(quiet_options(0));
  EXPECT_EQ(rt.worker_count(), 0u);
  auto where = []() -> task<std::thread::id> {
    co_await warden::yield_now{};
    co_return std::this_thread::get_id();
  };
  auto parent = [&]() -> task<bool> {
    std::vector<join_handle<std::thread::id>> children;
    for (int i = 0; i < 100; ++i) children.push_back(warden::spawn(where()));
    int elsewhere = 0;
    for (auto& c : children) {
      const std::thread::id ran_on = co_await c;
      if (ran_on != std::this_thread::get_id()) ++elsewhere;
    }
    co_return elsewhere == 0;
  };
  EXPECT_TRUE(rt.block_on(parent()));
  // The same holds for whichever plain thread calls block_on.
  std::thread other([&] { EXPECT_TRUE(rt.block_on(parent())); });
  other.join();
}

// R19: tasks spawned while nobody drives do not run until someone does;
// join() from the owning thread drives the runtime.
TEST(current_thread_mode, a_task_spawned_while_nobody_drives_runs_when_join_drives) {
  warden::runtime rt(quiet_options(0));
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  auto body = [&]() -> task<int> {
    runs.fetch_add(1);
    ran_on = std::this_thread::get_id();
    co_return 42;
  };
  auto handle = rt.spawn(body());
  EXPECT_EQ(runs.load(), 0);  // no worker thread could have run it
  EXPECT_FALSE(handle.is_finished());
  EXPECT_EQ(handle.join(), 42);
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

// ---- worker threads ----

std::string this_thread_name() {
  char buffer[64] = {};
  pthread_getname_np(pthread_self(), buffer, sizeof buffer);
  return buffer;
}

// A runtime has the worker count it was given.
TEST_P(runtime_test, the_runtime_has_the_requested_number_of_workers) { EXPECT_EQ(rt.worker_count(), GetParam()); }

// Worker threads are named "<thread_name>-<index>".
TEST(runtime_threads, worker_threads_are_named_after_the_thread_name_option) {
  auto options = quiet_options(2);
  options.thread_name = "naming";
  warden::runtime rt(options);
  auto body = []() -> task<std::string> { co_return this_thread_name(); };
  const std::string name = rt.block_on(body());
  EXPECT_TRUE(name == "naming-0" || name == "naming-1") << name;
}

// The name is truncated to the 15 bytes Linux allows.
TEST(runtime_threads, a_long_thread_name_is_truncated_to_fifteen_bytes) {
  auto options = quiet_options(1);
  options.thread_name = "abcdefghijklmnopqrstuvwxyz";
  warden::runtime rt(options);
  auto body = []() -> task<std::string> { co_return this_thread_name(); };
  EXPECT_EQ(rt.block_on(body()), "abcdefghijklmno");
}

INSTANTIATE_TEST_SUITE_P(workers, runtime_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace

namespace completion_cleanup {

using warden::task;
using warden::testkit::live_counter;

task<int> holds_parameter(live_counter) { co_return 7; }

// A finished task's frame (its parameters, a spawned callable's captures) is
// destroyed when the task completes, not when its handle is consumed: a
// channel sender passed to a producer closes when the producer ends.
TEST(completion, a_finished_tasks_parameters_die_before_its_handle_is_awaited) {
  warden::runtime rt(warden::testkit::quiet_options(0));
  std::atomic<int> alive{0};
  auto body = [&]() -> task<bool> {
    auto by_parameter = warden::spawn(holds_parameter(live_counter(alive)));
    live_counter captured(alive);
    auto by_capture = warden::spawn([captured]() -> task<int> { co_return 8; });
    EXPECT_EQ(alive.load(), 3);    // two parameters/captures + our own
    co_await warden::yield_now{};  // current-thread FIFO: both children run to completion first
    const bool gone = alive.load() == 1;
    EXPECT_TRUE(by_parameter.is_finished() && by_capture.is_finished());
    co_return gone&& co_await by_parameter == 7 && co_await by_capture == 8;
  };
  EXPECT_TRUE(rt.block_on(body()));
}

}  // namespace completion_cleanup
