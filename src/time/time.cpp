#include <warden/time.hpp>

#include "../detail/context.hpp"
#include "../runtime/runtime_core.hpp"
#include "time_driver.hpp"

#include <stdexcept>

namespace warden {
namespace detail {
namespace {

using steady = std::chrono::steady_clock;

steady::time_point to_steady(clock::time_point t) noexcept {
  return steady::time_point(std::chrono::duration_cast<steady::duration>(t.time_since_epoch()));
}

time_driver& driver_or_throw(const char* what) {
  runtime_core* core = tl_context.core;
  if (core == nullptr || tl_context.task == nullptr)
    throw usage_error(std::string(what) + " awaited outside a warden task: timers belong to a runtime");
  return core->time();
}

void disarm(timer_node& node) noexcept {
  if (node.driver != nullptr) node.driver->disarm(node);
}

}  // namespace

sleep_awaiter::~sleep_awaiter() { disarm(node_); }

bool sleep_awaiter::await_suspend(std::coroutine_handle<> awaiting) {
  time_driver& driver = driver_or_throw("sleep_for/sleep_until");
  node_.wake = suspend_current(awaiting);
  if (!driver.arm(node_, to_steady(deadline_))) {
    node_.wake.reset();
    return false;  // the deadline passed meanwhile
  }
  return true;
}

deadline_race::~deadline_race() {
  disarm(node_);
  if (joined_) clear_join_waker(task_);
}

bool deadline_race::await_suspend(std::coroutine_handle<> awaiting) {
  time_driver& driver = driver_or_throw("timeout");
  waker for_timer = suspend_current(awaiting);
  join_waker_ = for_timer.clone();
  if (!set_join_waker(task_, join_waker_)) {
    join_waker_.reset();
    return false;  // finished meanwhile
  }
  joined_ = true;
  node_.wake = std::move(for_timer);
  if (!driver.arm(node_, to_steady(deadline_))) {
    node_.wake.reset();
    return false;  // deadline passed meanwhile
  }
  return true;
}

void advance_awaiter::await_suspend(std::coroutine_handle<> awaiting) const {
  runtime_core* core = tl_context.core;
  if (core == nullptr || tl_context.task == nullptr) throw usage_error("advance awaited outside a warden task");
  if (!core->time().paused())
    throw usage_error("advance: the runtime's clock is not paused; create it with runtime_options::start_paused");
  core->time().advance(by);
  // Like yield_now: the tasks the timers woke run before we continue.
  waker self = suspend_current(awaiting);
  self.wake();
}

}  // namespace detail

clock::time_point clock::now() noexcept {
  const auto t =
      detail::tl_context.core != nullptr ? detail::tl_context.core->time().now() : std::chrono::steady_clock::now();
  return time_point(std::chrono::duration_cast<duration>(t.time_since_epoch()));
}

interval::interval(clock::duration period, missed_tick_behavior behavior)
    : period_(period), behavior_(behavior), next_(clock::now()) {
  if (period <= clock::duration::zero())
    throw std::invalid_argument("interval: the period must be positive (got " + std::to_string(period.count()) +
                                " ns)");
}

void interval::reset() noexcept { next_ = clock::now() + period_; }

clock::time_point interval::advance_after_tick() noexcept {
  const clock::time_point scheduled = next_;
  const clock::time_point now = clock::now();
  switch (behavior_) {
    case missed_tick_behavior::burst:
      next_ = scheduled + period_;
      break;
    case missed_tick_behavior::delay:
      next_ = now + period_;
      break;
    case missed_tick_behavior::skip: {
      // The first multiple of the period (from `scheduled`) after now.
      const auto late = now - scheduled;
      next_ = scheduled + period_ * (late / period_ + 1);
      break;
    }
  }
  return scheduled;
}

}  // namespace warden
