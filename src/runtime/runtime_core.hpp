// Internal: the runtime's scheduler — workers, queues, idling, shutdown.
//
// # Structure
// * `worker`: a local run queue (local_queue), a LIFO slot for the task most
//   recently woken by the task running on it, and a parker. In current-thread
//   mode there is exactly one worker and no thread: whichever thread is in
//   `block_on` (or `shutdown`) drives it ("the driver"), one at a time.
// * `inject_`: the global queue for work arriving from outside the workers
//   and for the overflow of full local queues.
// * `idle_`: which workers sleep, and how many search for work.
//
// # Where a runnable task goes (schedule)
// On a worker of this runtime: a woken task to the LIFO slot (the previous
// occupant moves to the back of the local queue), a new or yielded task to
// the back of the local queue. Anywhere else: the injection queue. Then, if
// nobody is searching and somebody sleeps, one sleeper is woken to search.
//
// # Choosing the next task (next_task)
// Every 61st pick looks at the injection queue first (fairness for outside
// work); the LIFO slot is taken at most 3 times in a row (so a ping-pong
// pair cannot starve the queue); then the local queue, then a batch from the
// injection queue, then stealing half of a random victim's queue.
//
// # Idling without lost wakeups
// A worker that found nothing registers as a sleeper (a seq_cst RMW on the
// idle state), then checks every queue again (seq_cst loads), and only then
// parks. A scheduler pushes work first and then reads the idle state after
// a seq_cst fence. Either the sleeper's re-check sees the work or the
// scheduler sees the sleeper and unparks it (Dekker). Parked workers use no
// CPU.
//
// # Live tasks and shutdown
// `live_` counts spawned, unfinished tasks, with a CLOSED bit. Spawn adds
// one and backs out if CLOSED was set, so no task slips in after shutdown
// closed the runtime; completion subtracts one and wakes the shutdown waiter
// when the count reaches zero while CLOSED.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/runtime.hpp>

#include "../detail/parker.hpp"
#include "../time/time_driver.hpp"
#include "failure_sink.hpp"
#include "inject_queue.hpp"
#include "local_queue.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace warden::detail {

class runtime_core;

struct worker {
  runtime_core* core = nullptr;
  std::size_t index = 0;
  local_queue queue;
  task_header* lifo = nullptr;  // owner-only
  parker park;
  std::thread thread;
  std::uint32_t tick = 0;
  std::uint32_t lifo_streak = 0;
  bool searching = false;
  std::uint64_t rng = 0x9E3779B97F4A7C15ull;
};

/// Sleeping workers and the number of searching ones.
///
/// `state_` packs (unparked << 16) | searching. It is changed by RMW only;
/// the sleeper list is guarded by `mutex_`, touched only when a worker parks
/// or is woken.
class idle_state {
 public:
  explicit idle_state(std::size_t workers);
  bool try_start_searching() noexcept;
  /// True if the caller was the last searching worker.
  bool stop_searching() noexcept;
  /// Registers `index` as asleep. True if it was the last searcher.
  bool register_sleeper(std::size_t index, bool searching) noexcept;
  /// Removes `index` from the sleepers if still there (true), else it was
  /// already picked by a notifier, which counted it as searching (false).
  bool cancel_sleep(std::size_t index) noexcept;
  /// A sleeper to wake (now counted as unparked and searching), or -1.
  std::ptrdiff_t pick_sleeper() noexcept;
  /// Reads the state after a store-load barrier (see "Idling" above).
  [[nodiscard]] bool should_notify() noexcept;

 private:
  static constexpr std::uint32_t kUnparkedShift = 16;
  static constexpr std::uint32_t kSearchMask = (1u << kUnparkedShift) - 1;
  std::atomic<std::uint32_t> state_;
  std::size_t workers_;
  std::mutex mutex_;
  std::vector<std::size_t> sleepers_;
};

/// The blocking pool: an elastic set of threads running spawn_blocking work.
class blocking_pool final : public task_scheduler {
 public:
  blocking_pool(runtime_core& core, std::size_t max_threads, std::chrono::milliseconds keep_alive);
  void schedule(task_header* task, schedule_hint hint) noexcept override;
  void on_complete(task_header* task) noexcept override;
  failure_sink* failures() noexcept override;
  void wait_for(task_header* task) override;
  /// Runs what is queued (aborted tasks are only destroyed), then joins every thread.
  void shutdown();
  /// Blocking calls queued or running (the paused clock waits for them).
  [[nodiscard]] bool busy() const noexcept { return in_flight_.load(std::memory_order_acquire) != 0; }

 private:
  void run(std::list<std::thread>::iterator self);
  void reap(std::unique_lock<std::mutex>& lock);

  runtime_core& core_;
  std::size_t max_threads_;
  std::chrono::milliseconds keep_alive_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable exit_cv_;
  task_header* head_ = nullptr;  // FIFO through queue_next
  task_header* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t idle_ = 0;
  std::atomic<std::size_t> in_flight_{0};
  bool stopping_ = false;
  std::list<std::thread> threads_;
  std::vector<std::thread> finished_;
};

class runtime_core final : public task_scheduler, public timer_host {
 public:
  explicit runtime_core(runtime_options options);
  ~runtime_core();
  runtime_core(const runtime_core&) = delete;
  runtime_core& operator=(const runtime_core&) = delete;

  // task_scheduler
  void schedule(task_header* task, schedule_hint hint) noexcept override;
  void on_complete(task_header* task) noexcept override;
  failure_sink* failures() noexcept override { return sink_; }
  void wait_for(task_header* task) override;

  // timer_host
  void wake_worker(std::size_t index) noexcept override { workers_[index]->park.unpark(); }
  void wake_sleeper() noexcept override { notify_parked(); }

  [[nodiscard]] time_driver& time() noexcept { return time_; }
  [[nodiscard]] const cancellation_token& root_token() const noexcept { return root_; }

  task_header* spawn(std::coroutine_handle<> root, promise_base& promise, const result_ops& results,
                     spawn_options&& options, bool blocking);
  void shutdown(std::chrono::nanoseconds grace);

  [[nodiscard]] std::size_t worker_count() const noexcept { return threaded_ ? workers_.size() : 0; }
  [[nodiscard]] std::size_t alive() const noexcept {
    return static_cast<std::size_t>(live_.load(std::memory_order_acquire) & ~kClosed);
  }
  [[nodiscard]] bool closed() const noexcept { return (live_.load(std::memory_order_acquire) & kClosed) != 0; }
  [[nodiscard]] bool owns(const task_header* task) const noexcept {
    return task->scheduler == this || task->scheduler == &blocking_;
  }

 private:
  static constexpr std::uint64_t kClosed = 1ull << 63;

  void run_worker(worker& w);
  template <class Done>
  void run_loop(worker& w, Done&& done, const std::chrono::steady_clock::time_point* deadline);
  template <class Done>
  bool drive(Done&& done, const std::chrono::steady_clock::time_point* deadline);
  task_header* next_task(worker& w) noexcept;
  task_header* search(worker& w) noexcept;
  task_header* take_injected(worker& w, std::size_t max) noexcept;
  void poll(worker& w, task_header* task) noexcept;
  void park_worker(worker& w, const std::chrono::steady_clock::time_point* deadline) noexcept;
  void push_local(worker& w, task_header* task) noexcept;
  void notify_parked() noexcept;
  [[nodiscard]] bool has_work_anywhere() const noexcept;
  void wait_quiescent(const std::chrono::steady_clock::time_point* deadline);

  runtime_options options_;
  bool threaded_;
  failure_sink* sink_;
  std::vector<std::unique_ptr<worker>> workers_;
  inject_queue inject_;
  idle_state idle_;
  blocking_pool blocking_;
  time_driver time_;
  cancellation_token root_;  // cancelled when shutdown starts
  alignas(64) std::atomic<std::uint64_t> live_{0};
  std::atomic<bool> stopping_{false};

  std::mutex quiescent_mutex_;  // shutdown waits here for live_ to reach 0
  std::condition_variable quiescent_cv_;

  std::mutex driver_mutex_;  // current-thread mode: who drives
  bool driving_ = false;
  std::vector<thread_parker*> driver_waiters_;

  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
};

}  // namespace warden::detail
