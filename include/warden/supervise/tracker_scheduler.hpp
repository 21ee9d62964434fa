// warden/supervise/tracker_scheduler.hpp — when a task_tracker's task may
// start: task_scheduler (the interface), schedule_slot, acquire_result, and
// the built-in unlimited_scheduler, semaphore_scheduler, token_bucket_scheduler.
//
// A tracker asks its scheduler for a slot before each task runs, and keeps
// the slot (an RAII guard) until the task and its continuations are done:
//
//   auto limit = std::make_shared<warden::semaphore_scheduler>(2);   // at most 2 at once
//   auto tracker = warden::task_tracker::builder()
//                      .scheduler(limit)
//                      .error_policy(std::make_shared<warden::log_only_policy>())
//                      .build();
//   auto other = warden::task_tracker::builder().scheduler(limit)...;  // shares the limit
//
// # Writing a scheduler
// Derive from task_scheduler and implement `acquire(token)`: wait until the
// task may run and return `acquire_result::granted(slot)`; return
// `cancelled()` as soon as `token` is cancelled (the tracker, or this task,
// was cancelled), or `rejected(reason)` if the task must never run (a full
// queue, say). Optionally override `try_acquire()`, a synchronous fast path
// the tracker calls first (no coroutine frame when it succeeds). A slot that
// must give something back when the task ends is made with
// `make_slot(data)`: the scheduler's `release(data)` runs when the slot is
// destroyed; a slot can also carry a semaphore_permit, given back on its own.
// A scheduler may be shared by any number of trackers and called from any
// thread concurrently; it must outlive every slot it granted (trackers keep
// theirs alive with a shared_ptr for as long as any of their tasks lives).
//
// # Errors
// semaphore_scheduler(0) and a token bucket with a rate that is not a finite
// number > 0, or a burst of 0, throw std::invalid_argument at construction.
#pragma once

#include <warden/cancellation.hpp>
#include <warden/sync/semaphore.hpp>
#include <warden/task.hpp>
#include <warden/time.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace warden {

class task_scheduler;

/// Permission for one task to run, held until the task (and its
/// continuations) end. Move-only; destroying it gives the slot back.
class [[nodiscard]] schedule_slot {
 public:
  schedule_slot() noexcept = default;  ///< a slot that gives nothing back
  /// A slot that returns `permit` to its semaphore when released.
  explicit schedule_slot(semaphore_permit permit) noexcept : permit_(std::move(permit)) {}
  schedule_slot(schedule_slot&& other) noexcept
      : permit_(std::move(other.permit_)), owner_(std::exchange(other.owner_, nullptr)), data_(other.data_) {}
  schedule_slot& operator=(schedule_slot&& other) noexcept {
    if (this != &other) {
      release();
      permit_ = std::move(other.permit_);
      owner_ = std::exchange(other.owner_, nullptr);
      data_ = other.data_;
    }
    return *this;
  }
  schedule_slot(const schedule_slot&) = delete;
  schedule_slot& operator=(const schedule_slot&) = delete;
  ~schedule_slot() { release(); }

  /// Gives the slot back now (idempotent).
  void release() noexcept;

 private:
  friend class task_scheduler;
  schedule_slot(task_scheduler* owner, std::uintptr_t data) noexcept : owner_(owner), data_(data) {}

  semaphore_permit permit_;
  task_scheduler* owner_ = nullptr;  // calls owner_->release(data_) when set
  std::uintptr_t data_ = 0;
};

/// What a scheduler answers: a slot, cancelled, or rejected with a reason.
class [[nodiscard]] acquire_result {
 public:
  enum class status : std::uint8_t { granted, cancelled, rejected };

  static acquire_result granted(schedule_slot slot) noexcept {
    acquire_result r(status::granted);
    r.slot_ = std::move(slot);
    return r;
  }
  static acquire_result cancelled() noexcept { return acquire_result(status::cancelled); }
  static acquire_result rejected(std::string reason) {
    acquire_result r(status::rejected);
    r.reason_ = std::move(reason);
    return r;
  }

  [[nodiscard]] status outcome() const noexcept { return status_; }
  [[nodiscard]] bool is_granted() const noexcept { return status_ == status::granted; }
  /// The slot (granted only); moving it out leaves an empty slot.
  [[nodiscard]] schedule_slot take_slot() noexcept { return std::move(slot_); }
  /// Why the task was rejected ("" otherwise).
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

 private:
  explicit acquire_result(status s) noexcept : status_(s) {}
  status status_;
  schedule_slot slot_;
  std::string reason_;
};

/// Decides when a tracker's task may start. See the top of this header.
class task_scheduler {
 public:
  task_scheduler() = default;
  task_scheduler(const task_scheduler&) = delete;
  task_scheduler& operator=(const task_scheduler&) = delete;
  virtual ~task_scheduler() = default;

  /// A slot at once, or nullopt when the task has to wait (then the tracker
  /// calls acquire()). Must not block. The default always says "wait".
  virtual std::optional<acquire_result> try_acquire() { return std::nullopt; }

  /// Waits until the task may run. Must end with `cancelled()` promptly once
  /// `token` is cancelled, and must not leak a slot when the awaiting task
  /// is aborted.
  virtual task<acquire_result> acquire(cancellation_token token) = 0;

 protected:
  /// A slot that calls `release(data)` on this scheduler when given back.
  schedule_slot make_slot(std::uintptr_t data = 0) noexcept { return schedule_slot(this, data); }
  /// Called once for each slot made by make_slot, when it is given back
  /// (on whichever thread destroys it). Must not throw.
  virtual void release(std::uintptr_t data) noexcept { (void)data; }

  friend class schedule_slot;
};

/// Every task runs at once.
class unlimited_scheduler final : public task_scheduler {
 public:
  std::optional<acquire_result> try_acquire() override { return acquire_result::granted(schedule_slot{}); }
  task<acquire_result> acquire(cancellation_token token) override;
};

/// At most `limit` tasks run at once (over every tracker sharing this
/// scheduler); the others wait in FIFO order. Waiting is cancellable.
class semaphore_scheduler final : public task_scheduler {
 public:
  /// Throws std::invalid_argument when limit == 0.
  explicit semaphore_scheduler(std::size_t limit);

  std::optional<acquire_result> try_acquire() override;
  task<acquire_result> acquire(cancellation_token token) override;

  [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
  /// Slots free right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t available() const noexcept { return permits_.available_permits(); }
  /// Tasks waiting for a slot right now (a diagnostic; may be stale).
  [[nodiscard]] std::size_t waiting() const noexcept { return permits_.waiter_count(); }

 private:
  std::size_t limit_;
  semaphore permits_;
};

/// Starts at most `burst` tasks at once and then `rate` tasks per second on
/// average (a token bucket: it holds up to `burst` tokens, refilled at
/// `rate` per second; each task start takes one). Limits how often tasks
/// start, not how many run: the slot gives nothing back. Waiters are served
/// in the order they asked; a waiter cancelled before its turn gives its
/// turn back when nobody queued behind it. Uses warden::clock (so the
/// paused test clock drives it).
class token_bucket_scheduler final : public task_scheduler {
 public:
  /// Throws std::invalid_argument unless rate is finite and > 0 and burst > 0.
  token_bucket_scheduler(double rate_per_second, std::size_t burst);

  std::optional<acquire_result> try_acquire() override;
  task<acquire_result> acquire(cancellation_token token) override;

  [[nodiscard]] double rate() const noexcept { return rate_; }
  [[nodiscard]] std::size_t burst() const noexcept { return burst_; }

 private:
  // GCRA (the "virtual scheduling" form of a token bucket): `next_` is the
  // theoretical arrival time of the next start; a start at `now` is allowed
  // when next_ - tolerance_ <= now, tolerance_ = (burst - 1) * interval_.
  // Each start (or reservation by a waiter) pushes next_ by interval_.
  clock::time_point reserve(clock::time_point now);  // under lock_: when the caller may start
  bool give_back(clock::time_point reserved_until) noexcept;

  double rate_;
  std::size_t burst_;
  clock::duration interval_;
  clock::duration tolerance_;
  std::mutex lock_;
  std::optional<clock::time_point> next_;  // under lock_
};

}  // namespace warden
