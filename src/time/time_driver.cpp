#include "time_driver.hpp"

#include <algorithm>
#include <array>

namespace warden::detail {

namespace {
using ms = std::chrono::milliseconds;
}

time_driver::time_driver(bool paused, timer_host& host) : paused_(paused), epoch_(steady::now()), host_(host) {}

time_driver::steady::time_point time_driver::now() const noexcept {
  if (paused_) return epoch_ + std::chrono::nanoseconds(paused_offset_ns_.load(std::memory_order_acquire));
  return steady::now();
}

std::uint64_t time_driver::tick_of(steady::time_point t) const noexcept {
  if (t <= epoch_) return 0;
  // Round up: a timer never fires before its deadline.
  const auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(t - epoch_).count();
  return static_cast<std::uint64_t>((since + 999'999) / 1'000'000);
}

std::uint64_t time_driver::floor_tick(steady::time_point t) const noexcept {
  if (t <= epoch_) return 0;
  return static_cast<std::uint64_t>(std::chrono::duration_cast<ms>(t - epoch_).count());
}

time_driver::steady::time_point time_driver::time_of(std::uint64_t tick) const noexcept {
  return epoch_ + ms(static_cast<std::int64_t>(std::min<std::uint64_t>(tick, 1ull << 50)));
}

void time_driver::publish_next() noexcept {
  const auto next = wheel_.next_expiration();
  next_tick_.store(next ? *next : kNever, std::memory_order_relaxed);
}

bool time_driver::arm(timer_node& node, steady::time_point deadline) {
  const std::uint64_t tick = tick_of(deadline);
  std::ptrdiff_t wake = -2;  // -2: nobody; -1: any sleeper; >= 0: that worker
  {
    std::lock_guard lock(mutex_);
    // A deadline whose (rounded-up) tick is not after the wheel's time has
    // passed. The paused clock is also read (cheap, and tests expect a
    // passed deadline to complete at once). On the real clock it is not: a
    // deadline that passed since the wheel's last advance is filed and
    // fires at the next advance, moments later; that saves a clock read
    // per sleep.
    const std::uint64_t passed = paused_ ? std::max(wheel_.elapsed(), floor_tick(now())) : wheel_.elapsed();
    if (tick <= passed) return false;
    const std::uint64_t earliest_before = next_tick_.load(std::memory_order_relaxed);
    node.deadline = tick;
    node.driver = this;
    node.status.store(timer_node::state::armed, std::memory_order_relaxed);
    wheel_.insert(&node);
    // A timer not before the cached next expiration leaves it unchanged: the
    // wheel files a later deadline in the same or a later slot.
    if (tick < earliest_before) publish_next();
    if (driver_ >= 0) {
      if (tick < driver_tick_) wake = driver_;  // the driver sleeps too long now
    } else if (next_tick_.load(std::memory_order_relaxed) < earliest_before) {
      // Nobody drives and this is the new earliest timer: make sure a
      // worker comes to drive it. A later timer needs no wake: whoever
      // handles the earliest one (a worker woken for it, a busy worker
      // firing every few dozen polls, or the next one to park, which
      // becomes the driver) sees the whole wheel.
      wake = -1;
    }
  }
  if (wake >= 0)
    host_.wake_worker(static_cast<std::size_t>(wake));
  else if (wake == -1)
    host_.wake_sleeper();
  return true;
}

void time_driver::disarm(timer_node& node) noexcept {
  // Fired (the common end of a sleep): the driver took the waker and touches
  // the node no more (acquire: pairs with the release in fire_until). No lock.
  if (node.status.load(std::memory_order_acquire) == timer_node::state::fired) return;
  waker dropped;
  {
    std::lock_guard lock(mutex_);
    const timer_node::state status = node.status.load(std::memory_order_relaxed);
    if (status == timer_node::state::armed) {
      wheel_.remove(&node);
      publish_next();
    } else if (status == timer_node::state::firing) {
      firing_.remove(&node);
    }
    node.status.store(timer_node::state::idle, std::memory_order_relaxed);
    dropped = std::move(node.wake);
  }
}

bool time_driver::maybe_due() const noexcept {
  const std::uint64_t next = next_tick_.load(std::memory_order_relaxed);
  return next != kNever && next <= floor_tick(now());
}

void time_driver::fire_due() {
  if (!maybe_due()) return;
  fire_until(floor_tick(now()));
}

void time_driver::fire_until(std::uint64_t tick) {
  // The due timers move from the wheel to `firing_` in one step (nothing is
  // allocated, however many there are); their wakers are then taken out
  // and woken in batches, outside the lock. A node still in `firing_` can
  // be disarmed meanwhile (its owner was aborted): disarm unlinks it.
  constexpr std::size_t batch_size = 64;
  std::array<waker, batch_size> batch;
  std::unique_lock lock(mutex_);
  // `tick` is the floor of now: every deadline (rounded up) at or before it
  // has passed.
  wheel_.advance(tick, firing_);
  publish_next();
  for (;;) {
    std::size_t taken = 0;
    while (taken < batch_size) {
      timer_node* node = firing_.pop_front();
      if (node == nullptr) break;
      batch[taken++] = std::move(node->wake);
      // release, and the last touch of the node: see disarm.
      node->status.store(timer_node::state::fired, std::memory_order_release);
    }
    lock.unlock();
    for (std::size_t i = 0; i < taken; ++i) batch[i].wake();
    if (taken < batch_size) return;
    lock.lock();
  }
}

std::optional<time_driver::steady::time_point> time_driver::begin_driving(std::size_t index) {
  std::lock_guard lock(mutex_);
  if (driver_ >= 0 || wheel_.size() == 0) return std::nullopt;
  const auto next = wheel_.next_expiration();
  if (!next) return std::nullopt;
  driver_ = static_cast<std::ptrdiff_t>(index);
  driver_tick_ = *next;
  return time_of(*next);
}

void time_driver::end_driving() {
  {
    std::lock_guard lock(mutex_);
    driver_ = -1;
    driver_tick_ = kNever;
  }
  fire_due();
}

void time_driver::advance(std::chrono::nanoseconds d) {
  if (d.count() > 0) paused_offset_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
  fire_until(floor_tick(now()));
}

bool time_driver::auto_advance() {
  std::uint64_t next;
  {
    std::lock_guard lock(mutex_);
    const auto n = wheel_.next_expiration();
    if (!n) return false;
    next = *n;
  }
  const std::int64_t target = std::chrono::duration_cast<std::chrono::nanoseconds>(time_of(next) - epoch_).count();
  std::int64_t current = paused_offset_ns_.load(std::memory_order_acquire);
  while (current < target && !paused_offset_ns_.compare_exchange_weak(current, target, std::memory_order_acq_rel)) {
  }
  fire_until(floor_tick(now()));
  return true;
}

}  // namespace warden::detail
