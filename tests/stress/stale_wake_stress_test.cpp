// Stress: a wake of an earlier suspension never resumes a later await
// (task_header.hpp, "The state word"). Every suspension's waker is cloned
// into a pool that a helper thread keeps waking long after the suspension
// ended, while the tasks are woken for real (by other tasks on the same or
// another worker, and by a plain thread), yield, and are aborted at random.
// So stale wakes reach tasks in every state: parked, queued after a wake
// (claimed in advance), re-queued after a wake during their poll, queued by
// yield_now after a poll that made a waker, and being cancelled. A resume
// that nobody asked for shows as a gate awaited but not opened.
#include "support/test_support.hpp"

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace {

using warden::join_handle;
using warden::task;
namespace detail = warden::detail;

/// Opened once; the task awaiting it must not resume before.
struct gate {
  std::mutex mutex;
  bool opened = false;
  detail::waker waker;  // the parked awaiter's, until the opener takes it

  void open() {
    detail::waker w;
    {
      std::lock_guard lock(mutex);
      opened = true;
      w = std::move(waker);
    }
    w.wake();
  }
};

/// Wakers of suspensions that are over (or soon will be), woken again and
/// again by a helper thread.
class stale_pool {
 public:
  void add(detail::waker w) {
    std::lock_guard lock(mutex_);
    if (wakers_.size() < 4096)
      wakers_.push_back(std::move(w));
    else
      wakers_[next_++ % wakers_.size()] = std::move(w);
  }
  void wake_some(std::mt19937_64& rng) {
    std::lock_guard lock(mutex_);
    if (wakers_.empty()) return;
    for (int i = 0; i < 16; ++i) wakers_[rng() % wakers_.size()].wake_by_ref();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    wakers_.clear();
  }

 private:
  std::mutex mutex_;
  std::vector<detail::waker> wakers_;
  std::size_t next_ = 0;
};

/// Gates waiting for an opener (a task or the opener thread).
struct inbox {
  std::mutex mutex;
  std::deque<std::shared_ptr<gate>> gates;
  void push(std::shared_ptr<gate> g) {
    std::lock_guard lock(mutex);
    gates.push_back(std::move(g));
  }
  std::shared_ptr<gate> pop() {
    std::lock_guard lock(mutex);
    if (gates.empty()) return nullptr;
    std::shared_ptr<gate> g = std::move(gates.front());
    gates.pop_front();
    return g;
  }
};

struct shared_state {
  stale_pool pool;
  std::vector<std::unique_ptr<inbox>> task_inboxes;
  inbox thread_inbox;
  std::atomic<int> waiters_left{0};
  std::atomic<int> spurious{0};
  std::atomic<int> finished{0};
};

/// Parks until the gate is opened; counts a resume of a closed gate. Once
/// the suspension is over (resumed, or its frame destroyed), a clone of its
/// waker goes to the stale pool.
class gate_awaiter {
 public:
  /// `abandon`: publish the waker, then go on without waiting (the gate's
  /// opener wakes a suspension that is over by then; the task yields before
  /// it parks again, so the wake belongs to an earlier poll).
  gate_awaiter(std::shared_ptr<gate> g, shared_state* s, bool abandon)
      : gate_(std::move(g)), shared_(s), abandon_(abandon) {}
  gate_awaiter(const gate_awaiter&) = delete;
  gate_awaiter& operator=(const gate_awaiter&) = delete;
  ~gate_awaiter() {
    if (stale_) shared_->pool.add(std::move(stale_));  // aborted while parked
  }
  bool await_ready() {
    std::lock_guard lock(gate_->mutex);
    return gate_->opened;
  }
  bool await_suspend(std::coroutine_handle<> self) {
    detail::waker w = detail::suspend_current(self);
    std::lock_guard lock(gate_->mutex);
    if (gate_->opened) return false;
    stale_ = w.clone();
    gate_->waker = std::move(w);
    return !abandon_;
  }
  void await_resume() {
    if (abandon_) return;
    {
      std::lock_guard lock(gate_->mutex);
      if (!gate_->opened) shared_->spurious.fetch_add(1, std::memory_order_relaxed);
    }
    if (stale_) shared_->pool.add(std::move(stale_));
  }

 private:
  std::shared_ptr<gate> gate_;
  shared_state* shared_;
  detail::waker stale_;  // a clone of the parked suspension's waker
  bool abandon_;
};

task<void> waiter(shared_state* s, std::uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < rounds; ++i) {
    auto g = std::make_shared<gate>();
    const std::uint64_t route = rng() % 16;
    if (route == 0)
      s->thread_inbox.push(g);
    else
      s->task_inboxes[route % s->task_inboxes.size()]->push(g);
    const bool abandon = rng() % 4 == 0;
    gate_awaiter wait(std::move(g), s, abandon);
    co_await wait;
    for (int y = static_cast<int>(rng() % 3) + (abandon ? 1 : 0); y > 0; --y) co_await warden::yield_now{};
  }
  s->finished.fetch_add(1, std::memory_order_relaxed);
}

task<void> opener(shared_state* s, inbox* mine) {
  for (;;) {
    if (std::shared_ptr<gate> g = mine->pop()) {
      g->open();
      continue;
    }
    if (s->waiters_left.load(std::memory_order_acquire) == 0) co_return;
    co_await warden::yield_now{};
  }
}

task<void> round_root(shared_state* s, std::uint64_t seed, int waiters, int rounds) {
  std::mt19937_64 rng(seed);
  std::vector<join_handle<void>> openers;
  for (auto& box : s->task_inboxes) openers.push_back(warden::spawn(opener(s, box.get())));
  std::vector<join_handle<void>> handles;
  for (int w = 0; w < waiters; ++w) handles.push_back(warden::spawn(waiter(s, rng(), rounds)));
  // Abort a few waiters at random points.
  for (int aborts = static_cast<int>(rng() % 4); aborts > 0; --aborts) {
    for (int y = static_cast<int>(rng() % 200); y > 0; --y) co_await warden::yield_now{};
    handles[rng() % handles.size()].abort();
  }
  for (auto& h : handles) {
    (void)co_await h.result();
    s->waiters_left.fetch_sub(1, std::memory_order_release);
  }
  for (auto& h : openers) (void)co_await h.result();
}

class stale_wake_stress : public ::testing::TestWithParam<std::size_t> {};

TEST_P(stale_wake_stress, a_stale_wake_never_resumes_a_later_await) {
  const std::uint64_t seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  const int iterations = warden::testkit::stress_iterations(20);
  std::atomic<int> progress{0};
  warden::testkit::hang_guard guard("stale_wake_stress " + warden::testkit::seed_trace(seed), progress);
  constexpr int kWaiters = 16;
  constexpr int kRounds = 100;

  warden::runtime rt(warden::testkit::quiet_options(GetParam()));
  int finished = 0;
  for (int i = 0; i < iterations && !HasFailure(); ++i) {
    SCOPED_TRACE("iteration " + std::to_string(i));
    shared_state s;
    s.task_inboxes.push_back(std::make_unique<inbox>());
    s.task_inboxes.push_back(std::make_unique<inbox>());
    s.waiters_left.store(kWaiters);
    std::atomic<bool> stop{false};
    std::thread stale_waker([&] {
      std::mt19937_64 rng(seed ^ static_cast<std::uint64_t>(i));
      while (!stop.load(std::memory_order_acquire)) {
        s.pool.wake_some(rng);
        std::this_thread::yield();  // leave the cores to the workers now and then
      }
    });
    std::thread thread_opener([&] {
      while (!stop.load(std::memory_order_acquire)) {
        if (std::shared_ptr<gate> g = s.thread_inbox.pop())
          g->open();
        else
          std::this_thread::yield();
      }
    });
    rt.block_on(round_root(&s, seed + static_cast<std::uint64_t>(i), kWaiters, kRounds));
    stop.store(true, std::memory_order_release);
    stale_waker.join();
    thread_opener.join();
    s.pool.clear();
    EXPECT_EQ(s.spurious.load(), 0) << "a stale wake resumed an await whose gate was closed";
    finished += s.finished.load();
    progress.fetch_add(1, std::memory_order_relaxed);
  }
  std::printf("[ info ] %d iterations, %d waiters finished (the rest aborted)\n", iterations, finished);
}

INSTANTIATE_TEST_SUITE_P(workers, stale_wake_stress, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
