#include <warden/supervise/tracker_scheduler.hpp>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

namespace warden {

void schedule_slot::release() noexcept {
  permit_.release();
  if (task_scheduler* owner = std::exchange(owner_, nullptr)) owner->release(data_);
}

// ---- unlimited ----------------------------------------------------------------------

task<acquire_result> unlimited_scheduler::acquire(cancellation_token token) {
  if (token.is_cancelled()) co_return acquire_result::cancelled();
  co_return acquire_result::granted(schedule_slot{});
}

// ---- semaphore --------------------------------------------------------------------------

namespace {

task<semaphore_permit> take_permit(semaphore& permits) { co_return co_await permits.acquire(); }

task<void> sleep_until_task(clock::time_point at) { co_await sleep_until(at); }

}  // namespace

semaphore_scheduler::semaphore_scheduler(std::size_t limit)
    : limit_(limit == 0 ? throw std::invalid_argument(
                              "semaphore_scheduler: the limit is 0, so no task could ever run; use at least 1 "
                              "(or unlimited_scheduler for no limit)")
                        : limit),
      permits_(limit) {}

std::optional<acquire_result> semaphore_scheduler::try_acquire() {
  std::optional<semaphore_permit> permit = permits_.try_acquire();
  if (!permit) return std::nullopt;
  return acquire_result::granted(schedule_slot(std::move(*permit)));
}

task<acquire_result> semaphore_scheduler::acquire(cancellation_token token) {
  if (token.is_cancelled()) co_return acquire_result::cancelled();
  // The permit is taken by an inner task that the token aborts: an abort
  // after the permit was handed over gives it back (see semaphore.hpp), so
  // cancellation never leaks a slot.
  task<semaphore_permit> taking = take_permit(permits_);
  task<std::optional<semaphore_permit>> racing = run_until_cancelled(token, std::move(taking));
  std::optional<semaphore_permit> permit = co_await std::move(racing);
  if (!permit) co_return acquire_result::cancelled();
  co_return acquire_result::granted(schedule_slot(std::move(*permit)));
}

// ---- token bucket -------------------------------------------------------------------------

namespace {

clock::duration interval_of(double rate) {
  if (!std::isfinite(rate) || rate <= 0.0)
    throw std::invalid_argument("token_bucket_scheduler: the rate is " + std::to_string(rate) +
                                " tasks per second; it must be a finite number > 0");
  const double seconds = 1.0 / rate;
  if (seconds > 1e9)
    throw std::invalid_argument("token_bucket_scheduler: the rate " + std::to_string(rate) +
                                " tasks per second is too small (one task per more than 1e9 s)");
  return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

token_bucket_scheduler::token_bucket_scheduler(double rate_per_second, std::size_t burst)
    : rate_(rate_per_second), burst_(burst), interval_(interval_of(rate_per_second)), tolerance_() {
  if (burst == 0)
    throw std::invalid_argument("token_bucket_scheduler: the burst is 0, so no task could ever start; use at least 1");
  if (burst > 1'000'000'000)
    throw std::invalid_argument("token_bucket_scheduler: the burst " + std::to_string(burst) +
                                " is too large (at most 1e9)");
  // Saturate at ~31 years rather than overflow (a huge burst of slow starts).
  constexpr clock::rep kMax = 1'000'000'000'000'000'000;
  const auto ahead = static_cast<clock::rep>(burst - 1);
  tolerance_ = interval_.count() != 0 && ahead > kMax / interval_.count() ? clock::duration(kMax) : interval_ * ahead;
}

clock::time_point token_bucket_scheduler::reserve(clock::time_point now) {
  const clock::time_point arrival = next_.has_value() && *next_ > now ? *next_ : now;
  next_ = arrival + interval_;
  // The start is allowed once at most burst - 1 earlier starts are "ahead".
  return arrival - tolerance_;
}

bool token_bucket_scheduler::give_back(clock::time_point reserved_until) noexcept {
  std::lock_guard lock(lock_);
  if (next_ != reserved_until) return false;  // someone reserved after us: keep the order
  *next_ -= interval_;
  return true;
}

std::optional<acquire_result> token_bucket_scheduler::try_acquire() {
  const clock::time_point now = clock::now();
  std::lock_guard lock(lock_);
  const clock::time_point arrival = next_.has_value() && *next_ > now ? *next_ : now;
  if (arrival - tolerance_ > now) return std::nullopt;
  (void)reserve(now);
  return acquire_result::granted(schedule_slot{});
}

task<acquire_result> token_bucket_scheduler::acquire(cancellation_token token) {
  if (token.is_cancelled()) co_return acquire_result::cancelled();
  const clock::time_point now = clock::now();
  clock::time_point allowed;
  clock::time_point reserved_until;
  {
    std::lock_guard lock(lock_);
    allowed = reserve(now);
    reserved_until = *next_;
  }
  if (allowed > now) {
    task<void> waiting = sleep_until_task(allowed);
    task<bool> racing = run_until_cancelled(token, std::move(waiting));
    const bool waited = co_await std::move(racing);
    if (!waited) {
      (void)give_back(reserved_until);
      co_return acquire_result::cancelled();
    }
  }
  co_return acquire_result::granted(schedule_slot{});
}

}  // namespace warden
