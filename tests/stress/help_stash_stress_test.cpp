// Stress: help_awaited's stash (runtime_core.hpp, "The stash"). Random trees
// of tasks that spawn children and then await them in random order, drop
// (abort on drop) or abort some of them, and park on an event that only a
// (possibly stashed)
// sibling sets, while thieves steal and other workers go idle and come back.
// Every task runs at most once, every awaited child that was not aborted
// yields its value, nothing hangs (a stashed task is never lost), and every
// task has finished once its runtime shut down (SEMANTICS R3, R7).
#include "support/test_support.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

namespace {

using warden::task;
using warden::testkit::hang_guard;
using warden::testkit::seed_trace;
using warden::testkit::stress_iterations;
using warden::testkit::stress_seed;

struct counters {
  std::atomic<int> started{0};
  std::atomic<int> finished{0};  // completed or cancelled (frame destroyed)
  std::atomic<int> bad{0};       // an awaited child gave a wrong outcome
  std::atomic<int> progress{0};
  // Set once block_on returned: aborts of the tasks still alive then (the
  // root dropped their handles) reach them level by level, and until then
  // they run on; their spawns fail once shutdown has closed the runtime.
  std::atomic<bool> closing{false};
};

/// A failure that only the shutdown after the tree caused (see `closing`).
bool closed_under_it(const counters& c, const warden::join_error& e) {
  if (!c.closing.load(std::memory_order_acquire) || !e.is_panic()) return false;
  try {
    e.rethrow();
  } catch (const warden::runtime_closed&) {
    return true;
  } catch (...) {
  }
  return false;
}

/// Counts the frame's end, whichever way it ends.
struct finish_mark {
  counters* c;
  ~finish_mark() { c->finished.fetch_add(1, std::memory_order_relaxed); }
};

/// The event is shared: an aborted parent's frame may go while the setter
/// still runs (abort_on_drop does not wait for it).
task<std::uint64_t> set_it(counters& c, std::shared_ptr<warden::event> ev) {
  finish_mark mark{&c};
  c.started.fetch_add(1, std::memory_order_relaxed);
  ev->set();
  co_return 0;
}

task<std::uint64_t> node(counters& c, std::uint64_t seed, int depth) {
  finish_mark mark{&c};
  c.started.fetch_add(1, std::memory_order_relaxed);
  c.progress.fetch_add(1, std::memory_order_relaxed);
  std::mt19937_64 rng(seed);
  if (depth == 0) {
    if (rng() % 4 == 0) co_await warden::yield_now{};
    co_return 1;
  }
  const std::size_t k = 1 + rng() % 6;
  std::vector<warden::join_handle<std::uint64_t>> handles;
  handles.reserve(k);
  // Every handle aborts its task when dropped, so nothing outlives the tree
  // (a detached task could still spawn while the runtime shuts down).
  for (std::size_t i = 0; i < k; ++i) {
    handles.push_back(warden::spawn(node(c, rng(), depth - 1)));
    handles.back().abort_on_drop();
  }
  // Sometimes a sibling that the task waits for after its first await: it
  // may sit in the stash of this very task by then.
  auto ev = std::make_shared<warden::event>();
  const bool with_setter = rng() % 3 == 0;
  std::vector<warden::join_handle<std::uint64_t>> setter;
  if (with_setter) {
    setter.push_back(warden::spawn(set_it(c, ev)));
    setter.back().abort_on_drop();
  }
  std::vector<std::size_t> order(k);
  for (std::size_t i = 0; i < k; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::uint64_t sum = 0;
  bool waited = false;
  for (std::size_t i : order) {
    auto& h = handles[i];
    switch (rng() % 8) {
      case 0: {  // abort, then await: cancelled, or the value if it finished first
        h.abort();
        auto r = co_await h.result();
        if (r)
          sum += *r;
        else if (!r.error().is_cancelled() && !closed_under_it(c, r.error()))
          c.bad.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case 1:  // dropped: aborted, maybe while stashed
      case 2:
        h = {};
        break;
      default: {
        auto r = co_await h.result();
        if (r)
          sum += *r;
        else if (!closed_under_it(c, r.error()))
          c.bad.fetch_add(1, std::memory_order_relaxed);
        break;
      }
    }
    if (with_setter && !waited) {
      waited = true;
      co_await ev->wait();
    }
  }
  if (with_setter && !waited) co_await ev->wait();
  co_return sum;
}

class help_stash_stress : public ::testing::TestWithParam<std::size_t> {};

TEST_P(help_stash_stress, random_trees_lose_no_stashed_task) {
  const std::uint64_t seed = stress_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  counters c;
  hang_guard guard("help_stash_stress", c.progress);
  const int iterations = stress_iterations(200);
  for (int it = 0; it < iterations; ++it) {
    {
      warden::runtime_options options = warden::testkit::quiet_options(GetParam());
      // A task spawning after the close panics (see `closing`); nobody awaits it.
      options.failure_reporter = [](const warden::unhandled_failure&) {};
      warden::runtime rt{std::move(options)};
      const int depth = 2 + static_cast<int>(rng() % 4);
      (void)rt.block_on(node(c, rng(), depth));
      c.closing.store(true, std::memory_order_release);
      rt.shutdown(std::chrono::seconds(60));  // aborted tasks still running finish first
    }
    ASSERT_EQ(c.started.load(), c.finished.load()) << "iteration " << it;
    ASSERT_EQ(c.bad.load(), 0) << "iteration " << it;
    c.closing.store(false, std::memory_order_relaxed);
  }
}

INSTANTIATE_TEST_SUITE_P(workers, help_stash_stress, ::testing::Values<std::size_t>(1, 2, 4),
                         warden::testkit::worker_name);

}  // namespace
