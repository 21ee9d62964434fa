// warden/time.hpp — time in tasks: clock, sleep_for / sleep_until, timeout,
// interval, and the paused test clock (advance).
//
//   co_await warden::sleep_for(std::chrono::milliseconds(50));
//
//   auto r = co_await warden::timeout(std::chrono::seconds(2), fetch());
//   if (!r) log("fetch timed out");          // fetch() was cancelled
//
//   warden::interval every(std::chrono::seconds(1));
//   for (;;) { auto at = co_await every.tick(); heartbeat(at); }
//
// Timers live in the runtime's hierarchical timing wheel (1 ms resolution)
// and are fired by the workers themselves (a parking worker sleeps until the
// next expiration); there is no timer thread. A sleep resumes no earlier than
// its deadline.
//
// # The paused clock (tests)
// `runtime_options::start_paused = true` (current-thread mode only) freezes
// the runtime's clock at its start. It moves when a task awaits
// `advance(d)`, or by itself when the runtime has nothing to run: it then
// jumps to the next timer, so a test of a one-hour timeout finishes at once
// and always the same way. `clock::now()` on the runtime's thread reports the
// paused time.
//
// # Cancellation
// A sleeping task that is aborted disarms its timer (the awaiter's
// destructor removes it from the wheel): nothing fires later and nothing
// leaks. `timeout` cancels the inner task at the deadline and waits until
// its frame is destroyed before returning `timed_out`; if the task awaiting
// `timeout` is itself aborted, the inner task is aborted too.
//
// # Errors
// Sleeping outside a warden task: usage_error. `interval` with a period of
// zero or less: std::invalid_argument. `advance` on a runtime whose clock is
// not paused: usage_error.
#pragma once

#include <warden/detail/timer.hpp>
#include <warden/runtime.hpp>
#include <warden/task.hpp>

#include <chrono>
#include <coroutine>
#include <expected>
#include <source_location>

namespace warden {

/// The clock of the runtime the caller runs on: steady time, or the paused
/// test clock of a runtime started paused. Outside any runtime: steady time.
/// Its time points are comparable with std::chrono::steady_clock's.
struct clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<clock, duration>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept;
};

namespace detail {

/// Awaiter of sleep_until / sleep_for. Holds the timer registration.
class sleep_awaiter {
 public:
  explicit sleep_awaiter(clock::time_point deadline) noexcept : deadline_(deadline) {}
  /// `ahead`: the caller knows the deadline has not passed (sleep_for with
  /// a positive duration), so await_ready reads no clock.
  sleep_awaiter(clock::time_point deadline, bool ahead) noexcept : deadline_(deadline) { node_.deadline_ahead = ahead; }
  sleep_awaiter(const sleep_awaiter&) = delete;
  sleep_awaiter& operator=(const sleep_awaiter&) = delete;
  ~sleep_awaiter();

  bool await_ready() const noexcept { return !node_.deadline_ahead && deadline_ <= clock::now(); }
  bool await_suspend(std::coroutine_handle<> awaiting);
  void await_resume() const noexcept {}

  [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }

 private:
  clock::time_point deadline_;
  timer_node node_;
};

/// Suspends until `handle`'s task finishes or `deadline` passes; yields true
/// if the task finished.
class deadline_race {
 public:
  deadline_race(join_handle_base& handle, clock::time_point deadline) noexcept
      : task_(handle_access::header(handle)), deadline_(deadline) {}
  deadline_race(const deadline_race&) = delete;
  deadline_race& operator=(const deadline_race&) = delete;
  ~deadline_race();

  bool await_ready() const noexcept { return task_->is_complete() || deadline_ <= clock::now(); }
  bool await_suspend(std::coroutine_handle<> awaiting);
  bool await_resume() const noexcept { return task_->is_complete(); }

 private:
  task_header* task_;
  clock::time_point deadline_;
  timer_node node_;
  waker join_waker_;  // registered in task_'s header while joined_
  bool joined_ = false;
};

/// Awaiter of advance(d).
struct advance_awaiter {
  clock::duration by;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> awaiting) const;
  void await_resume() const noexcept {}
};

}  // namespace detail

/// Suspends the task until `deadline` (at once if it has passed).
inline detail::sleep_awaiter sleep_until(clock::time_point deadline) noexcept {
  return detail::sleep_awaiter{deadline};
}

/// Suspends the task for at least `d` (at once if `d` <= 0).
inline detail::sleep_awaiter sleep_for(clock::duration d) noexcept {
  const auto now = clock::now();
  // Saturate instead of overflowing for "forever"-like durations.
  const auto deadline = d > clock::time_point::max() - now ? clock::time_point::max() : now + d;
  return detail::sleep_awaiter{deadline, d > clock::duration::zero()};
}

/// The error of a timeout: the deadline passed first.
struct timed_out {
  clock::duration after;
};

/// Runs `t` (as a spawned task on the current runtime) with a deadline:
/// yields its value if it finishes first; otherwise cancels it, waits until
/// its frame is destroyed, and yields `timed_out`. An exception escaping `t`
/// is rethrown as is. `d <= 0` means the deadline has already passed: `t` is
/// destroyed unrun and `timed_out` returned.
template <class T>
task<std::expected<T, timed_out>> timeout(clock::duration d, task<T> t,
                                          std::source_location where = std::source_location::current()) {
  if (d <= clock::duration::zero()) co_return std::unexpected(timed_out{d});
  const auto deadline = clock::now() + d;
  join_handle<T> handle = warden::spawn(std::move(t), spawn_options{.name = "timeout", .location = where});
  handle.abort_on_drop();  // if we are aborted, so is the inner task
  const bool finished = co_await detail::deadline_race(handle, deadline);
  if (!finished) handle.abort();
  std::expected<T, join_error> outcome = co_await handle.result();
  if (outcome) {
    if constexpr (std::is_void_v<T>)
      co_return std::expected<T, timed_out>{};
    else
      co_return std::move(*outcome);
  }
  if (outcome.error().is_panic()) outcome.error().rethrow();
  if (!finished) co_return std::unexpected(timed_out{d});
  throw outcome.error();  // cancelled by someone else (e.g. shutdown)
}

/// What an interval does when ticks were missed (the task came late).
enum class missed_tick_behavior {
  burst,  ///< fire the missed ticks at once until caught up (default)
  delay,  ///< the next tick comes a full period after the late one
  skip,   ///< jump to the next multiple of the period after now
};

/// Ticks every `period`: the first tick completes at once, then one per
/// period. `co_await tick()` yields the instant the tick was scheduled for.
class interval {
 public:
  /// Throws std::invalid_argument if `period` <= 0.
  explicit interval(clock::duration period, missed_tick_behavior behavior = missed_tick_behavior::burst);

  class tick_awaiter {
   public:
    explicit tick_awaiter(interval& self) noexcept : self_(&self), sleep_(self.next_) {}
    bool await_ready() const noexcept { return sleep_.await_ready(); }
    bool await_suspend(std::coroutine_handle<> awaiting) { return sleep_.await_suspend(awaiting); }
    clock::time_point await_resume() noexcept { return self_->advance_after_tick(); }

   private:
    interval* self_;
    detail::sleep_awaiter sleep_;
  };

  /// Waits for the next tick; yields its scheduled instant.
  tick_awaiter tick() noexcept { return tick_awaiter{*this}; }
  /// The next tick is one period from now.
  void reset() noexcept;

  [[nodiscard]] clock::duration period() const noexcept { return period_; }
  [[nodiscard]] missed_tick_behavior behavior() const noexcept { return behavior_; }

 private:
  clock::time_point advance_after_tick() noexcept;

  clock::duration period_;
  missed_tick_behavior behavior_;
  clock::time_point next_;
};

/// Paused clock only: moves the runtime's time forward by `d`, fires the
/// timers that became due, and lets the tasks they woke run before the
/// awaiting task continues. usage_error if the clock is not paused.
inline detail::advance_awaiter advance(clock::duration d) noexcept { return detail::advance_awaiter{d}; }

}  // namespace warden
