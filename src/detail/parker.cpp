#include "parker.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

namespace warden::detail {
namespace {

void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, const timespec* relative) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, relative, nullptr, 0);
}

void futex_wake_one(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

}  // namespace

void parker::park() noexcept { park_impl(nullptr); }

bool parker::park_until(std::chrono::steady_clock::time_point deadline) noexcept { return park_impl(&deadline); }

bool parker::park_impl(const std::chrono::steady_clock::time_point* deadline) noexcept {
  // Fast path: a token is waiting.
  std::uint32_t expected = NOTIFIED;
  if (state_.compare_exchange_strong(expected, EMPTY, std::memory_order_acquire)) return true;
  expected = EMPTY;
  if (!state_.compare_exchange_strong(expected, PARKED, std::memory_order_acquire)) {
    // Only the owner parks, so the other state is NOTIFIED.
    state_.exchange(EMPTY, std::memory_order_acquire);
    return true;
  }
  for (;;) {
    if (deadline != nullptr) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= *deadline) {
        // Time is up: leave PARKED unless a token arrived meanwhile.
        return state_.exchange(EMPTY, std::memory_order_acquire) == NOTIFIED;
      }
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - now).count();
      timespec ts{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
      futex_wait(&state_, PARKED, &ts);
    } else {
      futex_wait(&state_, PARKED, nullptr);
    }
    expected = NOTIFIED;
    if (state_.compare_exchange_strong(expected, EMPTY, std::memory_order_acquire)) return true;
  }
}

void parker::unpark() noexcept {
  // release: publishes what the caller did before waking the owner.
  if (state_.exchange(NOTIFIED, std::memory_order_release) == PARKED) futex_wake_one(&state_);
}

namespace {
struct parker_holder {
  thread_parker* parker = nullptr;
  ~parker_holder() {
    if (parker != nullptr) parker->release();
  }
};
thread_local parker_holder tl_parker;
}  // namespace

thread_parker& current_thread_parker() {
  parker_holder& h = tl_parker;
  if (h.parker == nullptr) h.parker = new thread_parker;
  return *h.parker;
}

}  // namespace warden::detail
