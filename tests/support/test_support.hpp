// Helpers shared by warden's tests.
#pragma once

#include <warden/warden.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

namespace warden::testkit {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#else
inline constexpr bool kTsan = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
#else
inline constexpr bool kAsan = false;
#endif

/// Iterations for stress tests: `release` in optimised builds, fewer under
/// the sanitizers (which are 5-20x slower).
/// Busy-waits `n` steps: puts an action of a stress test at a random moment.
inline void spin(std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) asm volatile("" ::: "memory");
}

/// A random spin length for spin(), log-uniform below 2^`max_bits` steps, so
/// that racing actions land before, during and after a worker's poll.
inline std::uint32_t random_spin(std::mt19937_64& rng, unsigned max_bits) {
  if (max_bits > 32) throw std::invalid_argument("random_spin: max_bits counts bits (at most 32), not spin steps");
  const auto bits = static_cast<unsigned>(rng() % (max_bits + 1));
  return static_cast<std::uint32_t>(rng() & ((std::uint64_t{1} << bits) - 1));
}

inline int stress_iterations(int release) {
  if (const char* env = std::getenv("WARDEN_STRESS_ITERATIONS")) return std::atoi(env);
  if (kTsan) return release / 20;
  if (kAsan) return release / 10;
#ifndef NDEBUG
  return release / 10;
#else
  return release;
#endif
}

/// A seed for a stress test, printed by the test on failure (use
/// SCOPED_TRACE(seed_trace(seed))). WARDEN_SEED overrides it.
inline std::uint64_t stress_seed() {
  if (const char* env = std::getenv("WARDEN_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}
inline std::string seed_trace(std::uint64_t seed) {
  return "seed " + std::to_string(seed) + " (rerun with WARDEN_SEED=" + std::to_string(seed) + ")";
}

/// Counts live instances, to check that frames (and the locals in them) are
/// destroyed.
struct live_counter {
  std::atomic<int>* count;
  explicit live_counter(std::atomic<int>& c) : count(&c) { count->fetch_add(1, std::memory_order_relaxed); }
  live_counter(const live_counter& other) : count(other.count) { count->fetch_add(1, std::memory_order_relaxed); }
  live_counter& operator=(const live_counter&) = delete;
  ~live_counter() { count->fetch_sub(1, std::memory_order_release); }
};

/// A minimal async event for tests of the runtime core (the library's own
/// event arrives with the sync primitives). `wait()` parks the task until
/// `set()`; a parked waiter whose task is destroyed unregisters itself.
class test_event {
 public:
  class awaiter;

 private:
  struct entry {
    detail::waker waker;
    awaiter* owner;
  };

 public:
  class awaiter {
   public:
    explicit awaiter(test_event& e) : event_(&e) {}
    awaiter(const awaiter&) = delete;
    awaiter& operator=(const awaiter&) = delete;
    ~awaiter() {
      // Always under the lock: set() may be unlinking us on another thread.
      std::lock_guard lock(event_->mutex_);
      if (linked_) event_->waiters_.erase(node_);
    }
    bool await_ready() const noexcept { return event_->is_set(); }
    bool await_suspend(std::coroutine_handle<> h) {
      detail::waker w = detail::suspend_current(h);
      std::lock_guard lock(event_->mutex_);
      if (event_->set_) return false;
      node_ = event_->waiters_.insert(event_->waiters_.end(), entry{std::move(w), this});
      linked_ = true;
      return true;
    }
    void await_resume() const noexcept {}

   private:
    friend class test_event;
    test_event* event_;
    std::list<entry>::iterator node_;
    bool linked_ = false;
  };

  awaiter wait() { return awaiter{*this}; }

  void set() {
    std::list<entry> woken;
    {
      std::lock_guard lock(mutex_);
      set_ = true;
      for (auto& e : waiters_) e.owner->linked_ = false;
      woken.splice(woken.end(), waiters_);
    }
    for (auto& e : woken) e.waker.wake();
  }
  bool is_set() const {
    std::lock_guard lock(mutex_);
    return set_;
  }
  std::size_t waiters() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
  }

 private:
  mutable std::mutex mutex_;
  bool set_ = false;
  std::list<entry> waiters_;
};

/// Aborts the process, naming the test (and its progress, when given) if it
/// is still running after a generous limit: a guard against hangs in stress
/// tests, not a timing check.
class hang_guard {
 public:
  explicit hang_guard(std::string what, const std::atomic<int>* progress = nullptr)
      : what_(std::move(what)), progress_(progress), thread_([this] { watch(); }) {}
  hang_guard(std::string what, const std::atomic<int>& progress) : hang_guard(std::move(what), &progress) {}
  hang_guard(const hang_guard&) = delete;
  hang_guard& operator=(const hang_guard&) = delete;
  ~hang_guard() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void watch() {
    std::unique_lock lock(mutex_);
    if (cv_.wait_for(lock, std::chrono::seconds(300), [this] { return done_; })) return;
    if (progress_ != nullptr)
      std::fprintf(stderr, "HANG: %s still running at step %d after 300 s\n", what_.c_str(), progress_->load());
    else
      std::fprintf(stderr, "HANG: %s still running after 300 s\n", what_.c_str());
    std::fflush(stderr);
    std::abort();
  }

  std::string what_;
  const std::atomic<int>* progress_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// Options for a runtime with `workers` workers whose leak reports go
/// nowhere (tests that abandon tasks on purpose).
inline runtime_options quiet_options(std::size_t workers) {
  runtime_options o;
  o.worker_threads = workers;
  o.leak_reporter = [](std::span<const leaked_task>) {};
  return o;
}

/// Worker counts every runtime behaviour is checked with (0 = current thread).
inline const auto kWorkerCounts = ::testing::Values<std::size_t>(0, 1, 2, 4, 8);

inline std::string worker_name(const ::testing::TestParamInfo<std::size_t>& info) {
  return info.param == 0 ? std::string("current_thread") : std::to_string(info.param) + "_workers";
}

}  // namespace warden::testkit

// ASSERT_* returns from the function, which a coroutine cannot do: these
// record the failure and co_return instead.
#define CO_ASSERT_TRUE(cond)                     \
  if (!(cond)) {                                 \
    ADD_FAILURE() << "expected true: " << #cond; \
    co_return;                                   \
  }
#define CO_ASSERT_FALSE(cond) CO_ASSERT_TRUE(!(cond))
#define CO_ASSERT_EQ(a, b) \
  if (!((a) == (b))) {     \
    EXPECT_EQ(a, b);       \
    co_return;             \
  }
