// Internal: a runtime's timers — the wheel, the clock (real or paused), and
// who drives them.
//
// # Who fires timers
// Nobody runs a timer thread. A worker about to park while timers are armed
// becomes the *driver* (at most one at a time) and parks only until the next
// expiration; when it wakes it fires what is due. Busy workers check the
// cached next expiration every few dozen polls and fire what is due. Arming
// a timer earlier than the driver's wake-up unparks the driver; arming a new
// earliest timer while nobody drives wakes a sleeping worker so that one
// becomes driver (a later timer needs no wake: see arm).
// All of that is decided under `mutex_`, so a driver computing its deadline
// and a concurrent arm cannot miss each other.
//
// # Paused clock (tests)
// With `paused`, time stands still at the runtime's start until `advance()`
// moves it, or until the runtime has nothing to run (current-thread mode
// only): then it jumps to the next expiration (auto-advance), so sleeps in
// tests complete at once and deterministically.
#pragma once

#include <warden/detail/timer.hpp>

#include "timer_wheel.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace warden::detail {

/// What the driver needs from its runtime.
class timer_host {
 public:
  /// Unparks worker `index` (the driver, whose wake-up moved earlier).
  virtual void wake_worker(std::size_t index) noexcept = 0;
  /// Wakes any parked worker, so that one becomes the driver.
  virtual void wake_sleeper() noexcept = 0;

 protected:
  ~timer_host() = default;
};

class time_driver {
 public:
  using steady = std::chrono::steady_clock;
  static constexpr std::uint64_t kNever = ~0ull;

  time_driver(bool paused, timer_host& host);

  [[nodiscard]] bool paused() const noexcept { return paused_; }
  [[nodiscard]] steady::time_point now() const noexcept;

  /// Arms `node` for `deadline` (its waker already set). False, and the node
  /// left idle, if the deadline has passed.
  bool arm(timer_node& node, steady::time_point deadline);
  /// Disarms `node` if armed (safe to call in any state).
  void disarm(timer_node& node) noexcept;

  /// Fires every timer due at now().
  void fire_due();
  /// Cheap check for busy workers: is some timer possibly due?
  [[nodiscard]] bool maybe_due() const noexcept;

  /// Called by worker `index` about to park: if timers are armed and nobody
  /// drives, it becomes the driver and gets the instant to wake at.
  std::optional<steady::time_point> begin_driving(std::size_t index);
  /// The driver woke up: gives up driving and fires what is due.
  void end_driving();

  /// Paused clock: moves time forward by `d` and fires what is due.
  void advance(std::chrono::nanoseconds d);
  /// Paused clock: jumps to the next expiration and fires it. False if no
  /// timer is armed.
  bool auto_advance();

 private:
  [[nodiscard]] std::uint64_t tick_of(steady::time_point t) const noexcept;     // rounded up
  [[nodiscard]] std::uint64_t floor_tick(steady::time_point t) const noexcept;  // rounded down
  [[nodiscard]] steady::time_point time_of(std::uint64_t tick) const noexcept;
  void fire_until(std::uint64_t tick);
  void publish_next() noexcept;  // under mutex_

  const bool paused_;
  const steady::time_point epoch_;
  std::atomic<std::int64_t> paused_offset_ns_{0};
  timer_host& host_;

  mutable std::mutex mutex_;
  timer_wheel wheel_;                             // guarded by mutex_
  timer_list firing_;                             // due, waker not yet taken; guarded by mutex_
  std::ptrdiff_t driver_ = -1;                    // guarded by mutex_
  std::uint64_t driver_tick_ = kNever;            // guarded by mutex_
  std::atomic<std::uint64_t> next_tick_{kNever};  // relaxed cache of wheel_.next_expiration()
};

}  // namespace warden::detail
