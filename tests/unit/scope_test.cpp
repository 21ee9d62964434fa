// Ambient scopes: enter_scope / ensure_scope and the jobs registered beneath
// them (SEMANTICS S1-S6).
#include "support/test_support.hpp"

#include <warden/supervise/scope.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>

namespace {

using namespace std::chrono_literals;
using warden::task;
using warden::testkit::live_counter;

// ---- S1's reference case --------------------------------------------------------

task<void> add_times(std::atomic<int>* counter, int times, int amount, std::chrono::milliseconds pause) {
  for (int i = 0; i < times; ++i) {
    co_await warden::sleep_for(pause);
    counter->fetch_add(amount);
  }
}

/// A daemon that starts another daemon (jobs inherit the scope).
task<void> daemon_ones(std::atomic<int>* counter) {
  warden::spawn_daemon(add_times(counter, 6, 100, 3ms));
  co_await add_times(counter, 17, 1, 1ms);
}

/// Adds 1000 when it goes, and registers async cleanup from its destructor.
struct guard {
  std::atomic<int>* counter;
  ~guard() {
    counter->fetch_add(1000);
    warden::spawn_cleanup_job(add_times(counter, 4, 10000, 2ms));
  }
};

void deep_callee(std::atomic<int>* counter) { warden::spawn_daemon(daemon_ones(counter)); }

task<void> reference_body(std::atomic<int>* counter) {
  guard g{counter};
  co_await warden::sleep_for(1ms);
  deep_callee(counter);
  co_await warden::sleep_for(2ms);
}

task<int> reference_case() {
  std::atomic<int> counter{0};
  task<void> body = reference_body(&counter);
  co_await warden::enter_scope(std::move(body));
  co_return counter.load();
}

// S1: reference case, paused clock, current-thread mode: exactly 41617.
TEST(scope_reference, counter_is_exactly_41617_when_enter_scope_returns_on_the_paused_clock) {
  auto options = warden::testkit::quiet_options(0);
  options.start_paused = true;
  warden::runtime rt(options);
  EXPECT_EQ(rt.block_on(reference_case()), 41617);
}

class scope : public ::testing::TestWithParam<std::size_t> {
 protected:
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// S1: reference case on the real clock, on every worker count.
TEST_P(scope, counter_is_exactly_41617_when_enter_scope_returns_on_the_real_clock) {
  EXPECT_EQ(rt.block_on(reference_case()), 41617);
}

task<int> yields_value() { co_return 7; }

// S1: enter_scope yields the body's value.
TEST_P(scope, enter_scope_yields_the_bodys_value) { EXPECT_EQ(rt.block_on(warden::enter_scope(yields_value())), 7); }

// ---- S2 ---------------------------------------------------------------------------

task<void> parks_forever(warden::event* never, live_counter alive) {
  (void)alive;
  co_await never->wait();
}

task<void> throws_soon(std::string message) {
  co_await warden::yield_now{};
  throw std::runtime_error(message);
}

/// Starts a parked daemon and a failing one, then waits for the scope's
/// token (S2: the body notices; it is not cancelled by force).
task<void> body_noticing_the_token(warden::event* never, std::atomic<int>* alive, std::atomic<bool>* noticed,
                                   bool then_throw) {
  warden::spawn_daemon(parks_forever(never, live_counter(*alive)), {.name = "parked"});
  warden::spawn_daemon(throws_soon("job boom"), {.name = "failing"});
  co_await warden::current_scope_token().cancelled();
  co_await warden::yield_now{};  // still running after the cancel: not destroyed by force
  noticed->store(true);
  if (then_throw) throw std::runtime_error("body boom");
}

// S2: a failing job cancels the others and the token; enter_scope throws a
// scope_error naming the failed job; the body ran to its end.
TEST_P(scope, a_failing_job_cancels_the_rest_and_enter_scope_throws_naming_it) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    std::atomic<bool> noticed{false};
    try {
      task<void> body = body_noticing_the_token(&never, &alive, &noticed, false);
      co_await warden::enter_scope(std::move(body));
      ADD_FAILURE() << "no scope_error";
    } catch (const warden::scope_error& e) {
      EXPECT_NE(e.job_failure().job.find("'failing'"), std::string::npos) << e.what();
      EXPECT_EQ(e.job_failure().message, "job boom");
      EXPECT_EQ(e.body_error(), nullptr);
      EXPECT_NE(std::string(e.what()).find("job boom"), std::string::npos);
    }
    EXPECT_TRUE(noticed.load());
    EXPECT_EQ(alive.load(), 0);  // the parked daemon was aborted, and is gone
  }());
}

struct disk_error {
  std::string message() const { return "disk full"; }
};

task<std::expected<void, disk_error>> returns_an_error() {
  co_await warden::yield_now{};
  co_return std::unexpected(disk_error{});
}

task<void> body_with_a_fallible_job(warden::event* never, std::atomic<int>* alive) {
  warden::spawn_daemon(parks_forever(never, live_counter(*alive)), {.name = "parked"});
  warden::spawn_daemon(returns_an_error(), {.name = "fallible"});
  co_await warden::current_scope_token().cancelled();
}

// S2: a job that returns an error (instead of throwing) fails the scope the
// same way, with the error's text.
TEST_P(scope, a_job_returning_an_error_fails_the_scope_with_its_text) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    try {
      task<void> body = body_with_a_fallible_job(&never, &alive);
      co_await warden::enter_scope(std::move(body));
      ADD_FAILURE() << "no scope_error";
    } catch (const warden::scope_error& e) {
      EXPECT_NE(e.job_failure().job.find("'fallible'"), std::string::npos) << e.what();
      EXPECT_EQ(e.job_failure().message, "disk full");
    }
    EXPECT_EQ(alive.load(), 0);
  }());
}

// S2: if the body also failed, both errors are reported.
TEST_P(scope, a_failing_job_and_a_failing_body_are_both_reported) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    std::atomic<bool> noticed{false};
    try {
      task<void> body = body_noticing_the_token(&never, &alive, &noticed, true);
      co_await warden::enter_scope(std::move(body));
      ADD_FAILURE() << "no scope_error";
    } catch (const warden::scope_error& e) {
      EXPECT_EQ(e.job_failure().message, "job boom");
      EXPECT_NE(e.body_error(), nullptr);
      if (e.body_error() == nullptr) co_return;
      EXPECT_NE(std::string(e.what()).find("body boom"), std::string::npos) << e.what();
    }
    EXPECT_EQ(alive.load(), 0);
  }());
}

task<void> body_spawns_then_returns(warden::event* never, std::atomic<int>* alive) {
  warden::spawn_daemon(parks_forever(never, live_counter(*alive)));
  warden::spawn_daemon(throws_soon("late boom"));
  co_return;
}

// S2: the failure ends the scope's wait at once (a daemon parked forever does not hold it).
TEST_P(scope, a_job_failure_ends_the_wait_for_a_daemon_that_would_never_end) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    task<void> body = body_spawns_then_returns(&never, &alive);
    EXPECT_THROW(co_await warden::enter_scope(std::move(body)), warden::scope_error);
    EXPECT_EQ(alive.load(), 0);
  }());
}

task<void> body_throws() {
  throw std::invalid_argument("only the body");
  co_return;
}

// S2: a body failure alone is rethrown as is.
TEST_P(scope, a_body_failure_alone_is_rethrown_as_is) {
  rt.block_on(
      []() -> task<void> { EXPECT_THROW(co_await warden::enter_scope(body_throws()), std::invalid_argument); }());
}

// ---- S3 ---------------------------------------------------------------------------

// S3: try_enter_scope returns both outcomes instead of throwing.
TEST_P(scope, try_enter_scope_returns_the_jobs_and_the_bodys_outcomes) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    std::atomic<bool> noticed{false};
    task<void> body = body_noticing_the_token(&never, &alive, &noticed, true);
    warden::scope_result<void> r = co_await warden::try_enter_scope(std::move(body));
    EXPECT_FALSE(r.jobs.has_value());
    if (r.jobs.has_value()) co_return;
    EXPECT_EQ(r.jobs.error().message, "job boom");
    EXPECT_FALSE(r.body.has_value());
    warden::scope_result<int> ok = co_await warden::try_enter_scope(yields_value());
    EXPECT_TRUE(ok.jobs.has_value());
    EXPECT_TRUE(ok.body.has_value());
    if (!(ok.body.has_value())) co_return;
    EXPECT_EQ(*ok.body, 7);
  }());
}

task<void> spawns_parked_daemon(warden::event* go, std::atomic<int>* alive) {
  warden::spawn_daemon(parks_forever(go, live_counter(*alive)));
  co_return;
}

task<void> outer_with_ensure(warden::event* go, std::atomic<int>* alive, std::atomic<bool>* returned_early) {
  task<void> inner = spawns_parked_daemon(go, alive);
  co_await warden::ensure_scope(std::move(inner));  // reuses this scope: does not wait for the daemon
  returned_early->store(alive->load() == 1);
  go->set();
}

// S3: ensure_scope reuses an enclosing scope and then does not wait for its jobs.
TEST_P(scope, ensure_scope_inside_a_scope_reuses_it_and_does_not_wait) {
  rt.block_on([]() -> task<void> {
    warden::event go;
    std::atomic<int> alive{0};
    std::atomic<bool> returned_early{false};
    task<void> body = outer_with_ensure(&go, &alive, &returned_early);
    co_await warden::enter_scope(std::move(body));
    EXPECT_TRUE(returned_early.load());
    EXPECT_EQ(alive.load(), 0);  // the outer scope waited for it
  }());
}

// S3: ensure_scope with no enclosing scope creates one (and waits for its jobs).
TEST_P(scope, ensure_scope_outside_any_scope_creates_one) {
  rt.block_on([]() -> task<void> {
    std::atomic<int> counter{0};
    task<void> body = [](std::atomic<int>* c) -> task<void> {
      warden::spawn_daemon(add_times(c, 3, 1, 1ms));
      co_return;
    }(&counter);
    co_await warden::ensure_scope(std::move(body));
    EXPECT_EQ(counter.load(), 3);
  }());
}

task<void> spawns_failing_daemon() {
  warden::spawn_daemon(throws_soon("reported by the outer scope"));
  co_return;
}

task<void> outer_with_try_ensure(bool* inner_jobs_ok) {
  warden::scope_result<void> r = co_await warden::try_ensure_scope(spawns_failing_daemon());
  *inner_jobs_ok = r.jobs.has_value() && r.body.has_value();
}

// S3: try_ensure_scope reusing a scope neither waits for nor reports its jobs.
TEST_P(scope, try_ensure_scope_reusing_a_scope_leaves_job_failures_to_it) {
  rt.block_on([]() -> task<void> {
    bool inner_jobs_ok = false;
    warden::scope_result<void> r = co_await warden::try_enter_scope(outer_with_try_ensure(&inner_jobs_ok));
    EXPECT_TRUE(inner_jobs_ok);
    EXPECT_FALSE(r.jobs.has_value());
    if (r.jobs.has_value()) co_return;
    EXPECT_EQ(r.jobs.error().message, "reported by the outer scope");
  }());
}

// ---- S4, S5 ------------------------------------------------------------------------

task<void> marks(std::atomic<bool>* ran, live_counter alive) {
  (void)alive;
  ran->store(true);
  co_return;
}

// S4: outside any scope -> no_active_scope, the job destroyed unrun; the
// throwing form says how to fix it. S5: no scope, so false.
TEST_P(scope, spawning_outside_any_scope_is_refused_and_the_job_never_runs) {
  rt.block_on([]() -> task<void> {
    std::atomic<bool> ran{false};
    std::atomic<int> alive{0};
    EXPECT_FALSE(warden::has_active_scope());
    auto r = warden::try_spawn_daemon(marks(&ran, live_counter(alive)));
    EXPECT_FALSE(r.has_value());
    if (r.has_value()) co_return;
    EXPECT_EQ(r.error(), warden::scope_spawn_error::no_active_scope);
    EXPECT_EQ(warden::try_spawn_cleanup_job(marks(&ran, live_counter(alive))).error(),
              warden::scope_spawn_error::no_active_scope);
    try {
      warden::spawn_daemon(marks(&ran, live_counter(alive)));
      ADD_FAILURE() << "no exception";
    } catch (const warden::usage_error& e) {
      EXPECT_NE(std::string(e.what()).find("No active scope: call spawn_daemon"), std::string::npos);
    }
    EXPECT_THROW((void)warden::current_scope_token(), warden::usage_error);
    co_await warden::yield_now{};
    EXPECT_FALSE(ran.load());
    EXPECT_EQ(alive.load(), 0);
  }());
  EXPECT_FALSE(warden::has_active_scope());  // not even in a task
}

/// A plain task spawned beneath the body (it inherits the scope) that tries
/// to register a job after the scope ended.
task<void> leftover(warden::event* go, std::atomic<bool>* ran, std::atomic<int>* alive,
                    std::atomic<bool>* active_after) {
  co_await go->wait();
  active_after->store(warden::has_active_scope());
  auto r = warden::try_spawn_daemon(marks(ran, live_counter(*alive)));
  EXPECT_FALSE(r.has_value());
  if (!r.has_value()) {
    EXPECT_EQ(r.error(), warden::scope_spawn_error::scope_terminating);
  }
  EXPECT_THROW(warden::spawn_cleanup_job(marks(ran, live_counter(*alive))), warden::scope_terminating_error);
}

/// S5 probes: in the body, in a job, in a destructor at the body's end.
struct probe_on_exit {
  std::atomic<int>* active;
  ~probe_on_exit() { active->fetch_add(warden::has_active_scope() ? 1 : 0); }
};

task<void> job_probe(std::atomic<int>* active) {
  active->fetch_add(warden::has_active_scope() ? 1 : 0);
  co_return;
}

task<void> body_with_leftover(warden::join_handle<void>* out, warden::event* go, std::atomic<bool>* ran,
                              std::atomic<int>* alive, std::atomic<bool>* active_after, std::atomic<int>* active) {
  probe_on_exit on_exit{active};
  active->fetch_add(warden::has_active_scope() ? 1 : 0);
  warden::spawn_daemon(job_probe(active));
  *out = warden::spawn(leftover(go, ran, alive, active_after));
  co_return;
}

// S4: into a scope that has finished -> scope_terminating, the job does not
// run. S5: true in the body, a job and an exit destructor; false after.
TEST_P(scope, spawning_into_a_finished_scope_is_refused_and_has_active_scope_follows_it) {
  rt.block_on([]() -> task<void> {
    warden::join_handle<void> left;
    warden::event go;
    std::atomic<bool> ran{false};
    std::atomic<bool> active_after{true};
    std::atomic<int> alive{0};
    std::atomic<int> active{0};
    task<void> body = body_with_leftover(&left, &go, &ran, &alive, &active_after, &active);
    co_await warden::enter_scope(std::move(body));
    EXPECT_EQ(active.load(), 3);
    go.set();
    co_await std::move(left);
    EXPECT_FALSE(active_after.load());
    EXPECT_FALSE(ran.load());
    EXPECT_EQ(alive.load(), 0);
  }());
}

task<void> fails_then_sibling_tries(std::atomic<bool>* ran, std::atomic<int>* alive, std::atomic<bool>* refused) {
  warden::spawn_daemon(throws_soon("first"));
  co_await warden::current_scope_token().cancelled();
  EXPECT_FALSE(warden::has_active_scope());  // S5
  auto r = warden::try_spawn_daemon(marks(ran, live_counter(*alive)));
  refused->store(!r.has_value() && r.error() == warden::scope_spawn_error::scope_terminating);
}

// S4: into a scope terminating after a job failure -> scope_terminating.
TEST_P(scope, spawning_into_a_scope_terminating_after_a_failure_is_refused) {
  rt.block_on([]() -> task<void> {
    std::atomic<bool> ran{false};
    std::atomic<bool> refused{false};
    std::atomic<int> alive{0};
    task<void> body = fails_then_sibling_tries(&ran, &alive, &refused);
    EXPECT_THROW(co_await warden::enter_scope(std::move(body)), warden::scope_error);
    EXPECT_TRUE(refused.load());
    EXPECT_FALSE(ran.load());
    EXPECT_EQ(alive.load(), 0);
  }());
}

// ---- S6 ------------------------------------------------------------------------------

task<void> fan_out(std::atomic<int>* runs, int depth) {
  runs->fetch_add(1);
  if (depth == 0) co_return;
  warden::spawn_daemon(fan_out(runs, depth - 1));
  co_await warden::yield_now{};
  warden::spawn_cleanup_job(fan_out(runs, depth - 1));
}

// S6: jobs registered before the scope closed are never lost (daemons start daemons).
TEST_P(scope, every_job_registered_is_run_and_waited_for) {
  rt.block_on([]() -> task<void> {
    std::atomic<int> runs{0};
    co_await warden::enter_scope(fan_out(&runs, 8));
    EXPECT_EQ(runs.load(), 511);
  }());
}

// Cancellation: aborting the task inside enter_scope aborts the scope's jobs.
TEST_P(scope, aborting_the_task_in_enter_scope_aborts_its_jobs) {
  rt.block_on([]() -> task<void> {
    warden::event never;
    std::atomic<int> alive{0};
    auto body = [](warden::event* n, std::atomic<int>* a) -> task<void> {
      warden::spawn_daemon(parks_forever(n, live_counter(*a)));
      co_await n->wait();
    };
    auto h = warden::spawn(warden::enter_scope(body(&never, &alive)));
    while (alive.load() != 1) co_await warden::yield_now{};
    h.abort();
    while (!h.is_finished() || alive.load() != 0) co_await warden::yield_now{};
    EXPECT_EQ(alive.load(), 0);
  }());
}

INSTANTIATE_TEST_SUITE_P(x, scope, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

TEST(scope_errors, describe_says_how_to_fix_each_refusal) {
  EXPECT_NE(warden::describe(warden::scope_spawn_error::no_active_scope).find("inside enter_scope"), std::string::npos);
  EXPECT_NE(warden::describe(warden::scope_spawn_error::scope_terminating).find("has_active_scope"), std::string::npos);
}

}  // namespace
