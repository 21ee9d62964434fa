// cancellation_token, cancellation_registration, cancellation_drop_guard and
// run_until_cancelled (SEMANTICS P4).
#include "support/test_support.hpp"

#include <warden/cancellation.hpp>

#include <atomic>
#include <future>
#include <latch>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using warden::cancellation_registration;
using warden::cancellation_token;
using warden::task;
using warden::testkit::live_counter;
using probe = warden::detail::cancellation_probe;

bool mentions(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

struct test_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- P4: the tree ----------------------------------------------------------------

// P4: a default-constructed token is a new root, not cancelled, unrelated to
// any other root.
TEST(cancellation_token_test, a_default_constructed_token_is_a_new_uncancelled_root) {
  cancellation_token a;
  cancellation_token b;
  EXPECT_TRUE(a.valid());
  EXPECT_FALSE(a.is_cancelled());
  EXPECT_FALSE(a == b);
  a.cancel();
  EXPECT_TRUE(a.is_cancelled());
  EXPECT_FALSE(b.is_cancelled());
}

// P4: copies share the node.
TEST(cancellation_token_test, copies_share_one_token) {
  cancellation_token a;
  cancellation_token copy = a;
  EXPECT_TRUE(copy == a);
  copy.cancel();
  EXPECT_TRUE(a.is_cancelled());
}

// P4: cancel() reaches the token, its children and grandchildren.
TEST(cancellation_token_test, cancel_reaches_the_token_its_children_and_grandchildren) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  cancellation_token other_child = root.child_token();
  cancellation_token grandchild = child.child_token();
  cancellation_token great_grandchild = grandchild.child_token();
  root.cancel();
  EXPECT_TRUE(root.is_cancelled());
  EXPECT_TRUE(child.is_cancelled());
  EXPECT_TRUE(other_child.is_cancelled());
  EXPECT_TRUE(grandchild.is_cancelled());
  EXPECT_TRUE(great_grandchild.is_cancelled());
}

// P4: cancelling a child never reaches its parent or its siblings (but does
// reach its own children).
TEST(cancellation_token_test, cancelling_a_child_never_reaches_its_parent_or_siblings) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  cancellation_token sibling = root.child_token();
  cancellation_token nephew = sibling.child_token();
  cancellation_token grandchild = child.child_token();
  std::atomic<int> root_callbacks{0};
  auto registration = root.on_cancel([&] { root_callbacks.fetch_add(1); });
  child.cancel();
  EXPECT_TRUE(child.is_cancelled());
  EXPECT_TRUE(grandchild.is_cancelled());
  EXPECT_FALSE(root.is_cancelled());
  EXPECT_FALSE(sibling.is_cancelled());
  EXPECT_FALSE(nephew.is_cancelled());
  EXPECT_EQ(root_callbacks.load(), 0);
}

// P4 (exactness): a child made from a cancelled token is born cancelled.
TEST(cancellation_token_test, a_child_of_a_cancelled_token_is_born_cancelled) {
  cancellation_token root;
  root.cancel();
  cancellation_token child = root.child_token();
  EXPECT_TRUE(child.is_cancelled());
  EXPECT_TRUE(child.child_token().is_cancelled());
  EXPECT_EQ(probe::children(root), 0u);
}

// P4: cancel() is idempotent: callbacks run once however often it is called.
TEST(cancellation_token_test, cancel_is_idempotent) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  int runs = 0;
  auto registration = child.on_cancel([&] { ++runs; });
  root.cancel();
  root.cancel();
  child.cancel();
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(child.is_cancelled());
}

// P4: "cancelling a tree is complete when cancel() returns": every callback
// of every descendant has run and every descendant is cancelled.
TEST(cancellation_token_test, cancelling_a_tree_is_complete_when_cancel_returns) {
  cancellation_token root;
  std::vector<cancellation_token> nodes{root};
  for (int i = 1; i < 200; ++i) nodes.push_back(nodes[static_cast<std::size_t>((i - 1) / 3)].child_token());
  std::atomic<int> ran{0};
  std::vector<cancellation_registration> registrations;
  for (auto& node : nodes)
    for (int k = 0; k < 2; ++k) registrations.push_back(node.on_cancel([&] { ran.fetch_add(1); }));
  root.cancel();
  EXPECT_EQ(ran.load(), 400);
  for (auto& node : nodes) EXPECT_TRUE(node.is_cancelled());
}

// P4: a cancel() that finds the cancellation already running on another
// thread returns only once that cancellation is complete.
TEST(cancellation_token_test, a_second_cancel_waits_for_the_cancellation_in_progress) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  std::latch entered(1);
  std::latch release(1);
  std::atomic<bool> finished{false};
  auto slow = child.on_cancel([&] {
    entered.count_down();
    release.wait();
    finished.store(true);
  });
  std::thread first([&] { root.cancel(); });
  entered.wait();
  std::atomic<bool> second_saw_finished{false};
  std::latch second_started(1);
  std::thread second([&] {
    second_started.count_down();
    child.cancel();  // the child is being cancelled by `first`
    second_saw_finished.store(finished.load());
  });
  second_started.wait();
  release.count_down();
  first.join();
  second.join();
  EXPECT_TRUE(second_saw_finished.load());
}

// P4: cancel() from inside one of the token's own callbacks (or one of an
// ancestor's) returns at once instead of deadlocking.
TEST(cancellation_token_test, cancel_from_inside_a_callback_does_not_deadlock) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  int runs = 0;
  auto a = child.on_cancel([&] {
    ++runs;
    child.cancel();
    root.cancel();
  });
  root.cancel();
  EXPECT_EQ(runs, 1);
}

// P4: a callback may cancel a token that is not yet reached by the running
// cancellation: that cancellation completes before the callback continues.
TEST(cancellation_token_test, a_callback_may_cancel_an_unrelated_token) {
  cancellation_token a;
  cancellation_token b;
  cancellation_token b_child = b.child_token();
  bool b_child_cancelled_inside = false;
  auto registration = a.on_cancel([&] {
    b.cancel();
    b_child_cancelled_inside = b_child.is_cancelled();
  });
  a.cancel();
  EXPECT_TRUE(b_child_cancelled_inside);
}

// ---- P4: memory of the tree ------------------------------------------------------

// A child whose handles are all gone is unlinked from its parent at once.
TEST(cancellation_token_test, a_dropped_child_is_unlinked_from_its_parent) {
  cancellation_token root;
  {
    cancellation_token a = root.child_token();
    cancellation_token b = root.child_token();
    cancellation_token c = root.child_token();
    EXPECT_EQ(probe::children(root), 3u);
    b = cancellation_token{};
    EXPECT_EQ(probe::children(root), 2u);
  }
  EXPECT_EQ(probe::children(root), 0u);
  for (int i = 0; i < 10000; ++i) (void)root.child_token();
  EXPECT_EQ(probe::children(root), 0u);
}

// P4: a child outlives every handle to its parent and stays usable; an
// ancestor's cancel still reaches it through the parent nobody holds.
TEST(cancellation_token_test, a_child_outlives_its_parent_handles_and_is_still_reached_by_its_grandparent) {
  cancellation_token grandparent;
  cancellation_token child = grandparent.child_token().child_token();  // the parent is a temporary
  cancellation_token lone_child = cancellation_token{}.child_token();  // a parent nobody can reach
  EXPECT_FALSE(child.is_cancelled());
  cancellation_token grandchild = lone_child.child_token();
  lone_child.cancel();
  EXPECT_TRUE(grandchild.is_cancelled());
  grandparent.cancel();
  EXPECT_TRUE(child.is_cancelled());
}

// A registration keeps a child linked (its callback must still run when an
// ancestor is cancelled), even with no token handle left.
TEST(cancellation_token_test, a_registration_on_an_unheld_child_still_runs_when_the_parent_is_cancelled) {
  cancellation_token root;
  int runs = 0;
  auto registration = root.child_token().on_cancel([&] { ++runs; });
  EXPECT_EQ(probe::children(root), 1u);
  root.cancel();
  EXPECT_EQ(runs, 1);
}

// ---- P4: callbacks ----------------------------------------------------------------

// P4: callbacks registered before cancel() run exactly once, during cancel(),
// on the thread that calls it, in registration order.
TEST(cancellation_token_test, callbacks_registered_before_cancel_run_once_during_cancel) {
  cancellation_token token;
  std::vector<int> order;
  std::thread::id where;
  auto first = token.on_cancel([&] {
    order.push_back(1);
    where = std::this_thread::get_id();
  });
  auto second = token.on_cancel([&] { order.push_back(2); });
  EXPECT_TRUE(first.active());
  EXPECT_TRUE(order.empty());
  std::thread canceller([&] { token.cancel(); });
  const std::thread::id canceller_id = canceller.get_id();
  canceller.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(where, canceller_id);
  token.cancel();
  EXPECT_EQ(order.size(), 2u);
}

// P4: a callback registered after cancellation runs at once, inside
// on_cancel, and the registration returned is empty.
TEST(cancellation_token_test, callbacks_registered_after_cancellation_run_at_once) {
  cancellation_token token;
  cancellation_token child = token.child_token();
  token.cancel();
  int runs = 0;
  auto registration = child.on_cancel([&] { ++runs; });
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(registration.active());
}

// P4: on_cancel from inside a callback of the same token runs the new
// callback at once (the token is already cancelling).
TEST(cancellation_token_test, on_cancel_from_inside_a_callback_runs_at_once) {
  cancellation_token token;
  int inner_runs = 0;
  cancellation_registration inner;
  auto outer = token.on_cancel([&] {
    inner = token.on_cancel([&] { ++inner_runs; });
    EXPECT_EQ(inner_runs, 1);
  });
  token.cancel();
  EXPECT_EQ(inner_runs, 1);
}

// Destroying a registration before cancel() deregisters the callback.
TEST(cancellation_token_test, destroying_a_registration_before_cancel_deregisters_it) {
  cancellation_token token;
  int runs = 0;
  {
    auto registration = token.on_cancel([&] { ++runs; });
    EXPECT_EQ(probe::callbacks(token), 1u);
  }
  auto reset_early = token.on_cancel([&] { ++runs; });
  reset_early.reset();
  EXPECT_FALSE(reset_early.active());
  EXPECT_EQ(probe::callbacks(token), 0u);
  token.cancel();
  EXPECT_EQ(runs, 0);
}

// Move-assigning a registration deregisters the callback it held.
TEST(cancellation_token_test, move_assigning_a_registration_deregisters_the_old_callback) {
  cancellation_token token;
  int old_runs = 0;
  int new_runs = 0;
  auto registration = token.on_cancel([&] { ++old_runs; });
  registration = token.on_cancel([&] { ++new_runs; });
  cancellation_registration moved = std::move(registration);
  EXPECT_FALSE(registration.active());  // NOLINT(bugprone-use-after-move): documented empty state
  token.cancel();
  EXPECT_EQ(old_runs, 0);
  EXPECT_EQ(new_runs, 1);
}

// Destroying a registration from inside its own callback returns at once; the
// callable (and what it captured) is destroyed after it returns.
TEST(cancellation_token_test, destroying_a_registration_inside_its_own_callback_does_not_deadlock) {
  cancellation_token token;
  std::atomic<int> alive{0};
  std::optional<cancellation_registration> registration;
  std::string seen;
  registration.emplace(token.on_cancel([&, c = live_counter(alive), text = std::string(64, 'x')] {
    registration.reset();  // destroys the registration we are running from
    seen = text;           // our captures are still alive
    (void)c;
  }));
  EXPECT_EQ(alive.load(), 1);
  token.cancel();
  EXPECT_EQ(seen, std::string(64, 'x'));
  EXPECT_EQ(alive.load(), 0);
}

// Destroying a registration while its callback runs on another thread waits
// for the callback to return (documented on cancellation_registration::reset).
TEST(cancellation_token_test, destroying_a_registration_while_its_callback_runs_elsewhere_waits_for_it) {
  cancellation_token token;
  std::latch entered(1);
  std::latch release(1);
  std::atomic<bool> finished{false};
  auto registration = std::make_unique<cancellation_registration>(token.on_cancel([&, text = std::string(64, 'y')] {
    entered.count_down();
    release.wait();
    EXPECT_EQ(text.size(), 64u);  // would be a use-after-free if the destructor did not wait
    finished.store(true);
  }));
  std::thread canceller([&] { token.cancel(); });
  entered.wait();
  std::atomic<bool> finished_when_destroyed{false};
  std::latch destroying(1);
  std::thread destroyer([&] {
    destroying.count_down();
    registration.reset();
    finished_when_destroyed.store(finished.load());
  });
  destroying.wait();
  release.count_down();
  destroyer.join();
  canceller.join();
  EXPECT_TRUE(finished_when_destroyed.load());
}

// A callback that throws terminates with a message saying callbacks must not
// throw (documented under "Callbacks").
TEST(cancellation_token_death_test, a_callback_that_throws_terminates_naming_the_rule) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        cancellation_token token;
        auto registration = token.on_cancel([] { throw test_failure("kaput"); });
        token.cancel();
      },
      "callbacks must not throw");
}

// ---- P4: drop guard ---------------------------------------------------------------

// P4: a drop guard cancels its token when destroyed.
TEST(cancellation_token_test, a_drop_guard_cancels_on_destruction) {
  cancellation_token token;
  cancellation_token child = token.child_token();
  {
    auto guard = token.drop_guard();
    EXPECT_TRUE(guard.armed());
    EXPECT_FALSE(token.is_cancelled());
  }
  EXPECT_TRUE(token.is_cancelled());
  EXPECT_TRUE(child.is_cancelled());
}

// P4: a disarmed guard does not cancel, and hands back its token.
TEST(cancellation_token_test, a_disarmed_drop_guard_does_not_cancel_and_returns_the_token) {
  cancellation_token token;
  {
    auto guard = token.drop_guard();
    cancellation_token back = guard.disarm();
    EXPECT_TRUE(back == token);
    EXPECT_FALSE(guard.armed());
    EXPECT_FALSE(guard.disarm().valid());
  }
  EXPECT_FALSE(token.is_cancelled());
}

// P4: moving a guard moves the duty: exactly the last owner cancels;
// move-assigning onto an armed guard fires it.
TEST(cancellation_token_test, a_moved_drop_guard_cancels_once_from_its_new_owner) {
  cancellation_token a;
  cancellation_token b;
  std::optional<warden::cancellation_drop_guard> outer;
  {
    auto guard = a.drop_guard();
    outer.emplace(std::move(guard));
  }  // the moved-from guard does nothing
  EXPECT_FALSE(a.is_cancelled());
  {
    auto other = b.drop_guard();
    other = std::move(*outer);  // fires b's guard, takes over a's
    EXPECT_TRUE(b.is_cancelled());
    EXPECT_FALSE(a.is_cancelled());
    outer.reset();
    EXPECT_FALSE(a.is_cancelled());
  }
  EXPECT_TRUE(a.is_cancelled());
}

// ---- P4: std::stop_token bridge ---------------------------------------------------

// P4: get_stop_token() is stop_requested once the token is cancelled, and
// std::stop_callbacks on it run during cancel().
TEST(cancellation_token_test, get_stop_token_is_requested_when_the_token_is_cancelled) {
  cancellation_token root;
  cancellation_token child = root.child_token();
  std::stop_token stop = child.get_stop_token();
  EXPECT_TRUE(stop.stop_possible());
  EXPECT_FALSE(stop.stop_requested());
  int runs = 0;
  std::stop_callback on_stop(stop, [&] { ++runs; });
  root.cancel();
  EXPECT_TRUE(stop.stop_requested());
  EXPECT_EQ(runs, 1);
}

// P4: a stop token obtained after cancellation is already requested.
TEST(cancellation_token_test, get_stop_token_after_cancellation_is_already_requested) {
  cancellation_token token;
  token.cancel();
  EXPECT_TRUE(token.get_stop_token().stop_requested());
}

// P4: from_stop_token makes a token cancelled when the source requests stop,
// with its callbacks and children done before request_stop returns.
TEST(cancellation_token_test, from_stop_token_is_cancelled_when_the_source_requests_stop) {
  std::stop_source source;
  cancellation_token token = cancellation_token::from_stop_token(source.get_token());
  cancellation_token child = cancellation_token::from_stop_token(source.get_token()).child_token();
  int runs = 0;
  auto registration = token.on_cancel([&] { ++runs; });
  EXPECT_FALSE(token.is_cancelled());
  source.request_stop();
  EXPECT_TRUE(token.is_cancelled());
  EXPECT_TRUE(child.is_cancelled());  // its parent's handle was a temporary
  EXPECT_EQ(runs, 1);
}

// P4: from a source that already requested stop, the token is born
// cancelled; from a stop_token with no source it is a plain root.
TEST(cancellation_token_test, from_stop_token_of_a_stopped_or_sourceless_token) {
  std::stop_source source;
  source.request_stop();
  EXPECT_TRUE(cancellation_token::from_stop_token(source.get_token()).is_cancelled());

  cancellation_token plain = cancellation_token::from_stop_token(std::stop_token{});
  EXPECT_FALSE(plain.is_cancelled());
  plain.cancel();
  EXPECT_TRUE(plain.is_cancelled());
}

// A token from a stop token may die before the source requests stop.
TEST(cancellation_token_test, from_stop_token_dropped_before_the_request_is_harmless) {
  std::stop_source source;
  { cancellation_token token = cancellation_token::from_stop_token(source.get_token()); }
  EXPECT_TRUE(source.request_stop());
}

// ---- errors -------------------------------------------------------------------------

// A moved-from token throws usage_error naming the member and the cause.
TEST(cancellation_token_test, a_moved_from_token_throws_usage_error) {
  cancellation_token token;
  cancellation_token taken = std::move(token);
  EXPECT_FALSE(token.valid());  // NOLINT(bugprone-use-after-move): documented empty state
  try {
    token.cancel();
    ADD_FAILURE() << "cancel() on an empty token did not throw";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "cancel"));
    EXPECT_TRUE(mentions(e.what(), "moved from"));
  }
  EXPECT_THROW((void)token.is_cancelled(), warden::usage_error);
  EXPECT_THROW((void)token.child_token(), warden::usage_error);
  EXPECT_THROW((void)token.on_cancel([] {}), warden::usage_error);
  EXPECT_THROW((void)token.drop_guard(), warden::usage_error);
  EXPECT_THROW((void)token.get_stop_token(), warden::usage_error);
  EXPECT_THROW((void)token.cancelled(), warden::usage_error);
  token = taken;  // assignment revives it
  EXPECT_TRUE(token.valid());
  EXPECT_FALSE(token.is_cancelled());
}

// co_await on an uncancelled token outside a warden task is a usage_error;
// on a cancelled one it is simply ready.
TEST(cancellation_token_test, awaiting_outside_a_task) {
  cancellation_token token;
  auto waiting = token.cancelled();
  EXPECT_FALSE(waiting.await_ready());
  EXPECT_THROW((void)waiting.await_suspend(std::noop_coroutine()), warden::usage_error);
  token.cancel();
  EXPECT_TRUE(token.cancelled().await_ready());
}

// ---- P4: awaiting, on a runtime --------------------------------------------------------

class cancellation_await_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }

  std::atomic<int> alive{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

task<void> wait_then_count(cancellation_token token, std::atomic<int>& resumed) {
  co_await token.cancelled();
  resumed.fetch_add(1);
}

/// Parks forever (on a token nobody cancels), counting itself in `alive`.
task<int> park_forever(live_counter counted, std::atomic<bool>& started) {
  started.store(true);
  cancellation_token never;
  co_await never.cancelled();
  (void)counted;
  co_return 0;
}

task<void> park_forever_void(live_counter counted, std::atomic<bool>& started) {
  (void)co_await park_forever(counted, started);
}

task<int> answer_after_yield(int v) {
  co_await warden::yield_now{};
  co_return v;
}

// P4: cancelled() awaiters resume when the token (or an ancestor) is cancelled.
TEST_P(cancellation_await_test, awaiters_resume_when_the_token_is_cancelled) {
  constexpr int kWaiters = 20;
  cancellation_token root;
  cancellation_token child = root.child_token();
  std::atomic<int> resumed{0};
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> handles;
    for (int i = 0; i < kWaiters; ++i) handles.push_back(warden::spawn(wait_then_count(i % 2 ? root : child, resumed)));
    while (probe::waiters(root) + probe::waiters(child) < kWaiters) co_await warden::yield_now{};
    EXPECT_EQ(resumed.load(), 0);
    root.cancel();
    for (auto& h : handles) co_await std::move(h);
    EXPECT_EQ(resumed.load(), kWaiters);
  });
  EXPECT_EQ(probe::waiters(root), 0u);
}

// P4: awaiters parked in tasks resume when a plain thread cancels the token.
TEST_P(cancellation_await_test, a_cancel_from_a_plain_thread_resumes_awaiting_tasks) {
  cancellation_token token;
  std::atomic<int> resumed{0};
  std::vector<warden::join_handle<void>> handles;
  for (int i = 0; i < 8; ++i) handles.push_back(rt.spawn(wait_then_count(token, resumed)));
  std::thread canceller([&] { token.cancel(); });
  canceller.join();
  for (auto& h : handles) h.join();
  EXPECT_EQ(resumed.load(), 8);
}

// P4: a wait started after cancellation completes immediately (the Asio bug
// was the opposite).
TEST_P(cancellation_await_test, a_wait_started_after_cancellation_completes_immediately) {
  cancellation_token token;
  cancellation_token child = token.child_token();
  token.cancel();
  int done = run([&]() -> task<int> {
    co_await token.cancelled();
    co_await child.cancelled();
    co_await token.child_token().cancelled();
    co_return 3;
  });
  EXPECT_EQ(done, 3);
}

// P4: awaiting a temporary token (the natural call) keeps it alive while parked.
TEST_P(cancellation_await_test, awaiting_a_temporary_child_token_works) {
  cancellation_token root;
  std::atomic<bool> resumed{false};
  auto waiter = [&]() -> task<void> {
    co_await root.child_token().cancelled();
    resumed.store(true);
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(waiter());
    while (probe::children(root) == 0) co_await warden::yield_now{};
    root.cancel();
    co_await std::move(h);
  });
  EXPECT_TRUE(resumed.load());
}

// P4 (cancellation of awaiters): a task aborted while parked on cancelled()
// is removed from the waiter list; the others still resume.
TEST_P(cancellation_await_test, a_task_aborted_while_parked_is_removed_from_the_waiter_list) {
  cancellation_token token;
  std::atomic<int> resumed{0};
  run([&]() -> task<void> {
    auto doomed = warden::spawn(wait_then_count(token, resumed));
    auto survivor = warden::spawn(wait_then_count(token, resumed));
    while (probe::waiters(token) < 2) co_await warden::yield_now{};
    doomed.abort();
    auto r = co_await doomed.result();
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_TRUE(r.error().is_cancelled());
    }
    EXPECT_EQ(probe::waiters(token), 1u);
    token.cancel();
    co_await std::move(survivor);
  });
  EXPECT_EQ(resumed.load(), 1);
  EXPECT_EQ(probe::waiters(token), 0u);
}

// P4: a drop guard in a task that is aborted cancels its token.
TEST_P(cancellation_await_test, a_drop_guard_in_an_aborted_task_cancels) {
  cancellation_token token;
  std::atomic<bool> started{false};
  auto guarded = [&]() -> task<void> {
    auto guard = token.drop_guard();
    started.store(true);
    cancellation_token never;
    co_await never.cancelled();
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(guarded());
    while (!started.load()) co_await warden::yield_now{};
    EXPECT_FALSE(token.is_cancelled());
    h.abort();
    (void)co_await h.result();
    EXPECT_TRUE(token.is_cancelled());
  });
}

// ---- P4 (DESIGN): run_until_cancelled ----------------------------------------------------

// The task finishing first yields its value.
TEST_P(cancellation_await_test, run_until_cancelled_yields_the_value_when_the_task_finishes_first) {
  cancellation_token token;
  std::optional<int> r = run([&]() -> task<std::optional<int>> {
    co_return co_await warden::run_until_cancelled(token, answer_after_yield(42));
  });
  EXPECT_EQ(r, 42);
  EXPECT_EQ(probe::callbacks(token), 0u);  // the registration is gone
}

// The token cancelled first yields nullopt, and the inner task's frame is
// destroyed (not orphaned) before run_until_cancelled returns.
TEST_P(cancellation_await_test, run_until_cancelled_destroys_the_inner_frame_when_cancelled_first) {
  cancellation_token token;
  std::atomic<bool> started{false};
  auto outer = [&]() -> task<std::optional<int>> {
    task<int> work = park_forever(live_counter(alive), started);  // its frame holds one live_counter
    std::optional<int> r = co_await warden::run_until_cancelled(token, std::move(work));
    EXPECT_EQ(alive.load(), 0);  // destroyed before we got here
    co_return r;
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(outer());
    while (!started.load()) co_await warden::yield_now{};
    EXPECT_EQ(alive.load(), 1);
    token.cancel();
    std::optional<int> r = co_await std::move(h);
    EXPECT_FALSE(r.has_value());
  });
  EXPECT_EQ(alive.load(), 0);
}

// A token cancelled before the start yields nullopt without running the task.
TEST_P(cancellation_await_test, run_until_cancelled_with_a_cancelled_token_never_runs_the_task) {
  cancellation_token token;
  token.cancel();
  std::atomic<bool> started{false};
  run([&]() -> task<void> {
    std::optional<int> r = co_await warden::run_until_cancelled(token, park_forever(live_counter(alive), started));
    EXPECT_FALSE(r.has_value());
    EXPECT_EQ(alive.load(), 0);
    bool finished = co_await warden::run_until_cancelled(token, park_forever_void(live_counter(alive), started));
    EXPECT_FALSE(finished);
  });
  EXPECT_FALSE(started.load());
}

// The inner task's exception propagates (the original type).
TEST_P(cancellation_await_test, run_until_cancelled_propagates_the_inner_exception) {
  cancellation_token token;
  auto failing = []() -> task<int> {
    co_await warden::yield_now{};
    throw test_failure("inner failed");
  };
  auto failing_void = []() -> task<void> {
    throw test_failure("inner void failed");
    co_return;
  };
  std::string caught = run([&]() -> task<std::string> {
    std::string out;
    try {
      (void)co_await warden::run_until_cancelled(token, failing());
    } catch (const test_failure& e) {
      out += e.what();
    }
    try {
      (void)co_await warden::run_until_cancelled(token, failing_void());
    } catch (const test_failure& e) {
      out += std::string("|") + e.what();
    }
    co_return out;
  });
  EXPECT_EQ(caught, "inner failed|inner void failed");
}

// The void form yields true when the work finished, false when cancelled first.
TEST_P(cancellation_await_test, run_until_cancelled_void_form_yields_whether_the_work_finished) {
  cancellation_token token;
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  auto work = [&]() -> task<void> {
    co_await warden::yield_now{};
    ran.fetch_add(1);
  };
  auto outer = [&]() -> task<bool> {
    co_return co_await warden::run_until_cancelled(token, park_forever_void(live_counter(alive), started));
  };
  run([&]() -> task<void> {
    EXPECT_TRUE(co_await warden::run_until_cancelled(token, work()));
    auto h = warden::spawn(outer());
    while (!started.load()) co_await warden::yield_now{};
    token.cancel();
    EXPECT_FALSE(co_await std::move(h));
    EXPECT_EQ(alive.load(), 0);
  });
  EXPECT_EQ(ran.load(), 1);
}

// Aborting the task inside run_until_cancelled aborts the inner task too
// (never orphaned) and deregisters from the token.
TEST_P(cancellation_await_test, aborting_the_caller_of_run_until_cancelled_aborts_the_inner_task) {
  cancellation_token token;
  std::atomic<bool> started{false};
  auto outer = [&]() -> task<std::optional<int>> {
    co_return co_await warden::run_until_cancelled(token, park_forever(live_counter(alive), started));
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(outer());
    while (!started.load()) co_await warden::yield_now{};
    h.abort();
    auto r = co_await h.result();
    EXPECT_FALSE(r.has_value());
    while (alive.load() != 0) co_await warden::yield_now{};  // the inner abort is asynchronous
  });
  EXPECT_EQ(probe::callbacks(token), 0u);
  EXPECT_FALSE(token.is_cancelled());
}

task<std::string> echo(std::string text) {
  co_await warden::yield_now{};
  co_return text + "!";
}

// The natural call with temporaries (a temporary child token, a task taking
// a std::string temporary) is safe (GCC 12 co_await temporaries).
TEST_P(cancellation_await_test, run_until_cancelled_with_temporaries_in_the_co_await_expression) {
  cancellation_token root;
  std::optional<std::string> r = run([&]() -> task<std::optional<std::string>> {
    co_return co_await warden::run_until_cancelled(root.child_token(), echo(std::string(100, 'z')));
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, std::string(100, 'z') + "!");
  EXPECT_EQ(probe::children(root), 0u);
}

INSTANTIATE_TEST_SUITE_P(workers, cancellation_await_test, warden::testkit::kWorkerCounts,
                         warden::testkit::worker_name);

}  // namespace
