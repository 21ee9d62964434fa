#include "idle_state.hpp"

#include <algorithm>

namespace warden::detail {
idle_state::idle_state(std::size_t workers)
    : state_(static_cast<std::uint64_t>(workers) << kUnparkedShift),
      all_busy_state_(static_cast<std::uint32_t>(workers) << kUnparkedShift),
      workers_(workers) {
  sleepers_.reserve(workers);
}

bool idle_state::try_start_searching() noexcept {
  const std::uint64_t s = state_.load(std::memory_order_seq_cst);
  // At most half the workers search at once (at least one may).
  if (2 * looking(s) >= workers_ && looking(s) != 0) return false;
  state_.fetch_add(1, std::memory_order_seq_cst);
  return true;
}

bool idle_state::stop_searching() noexcept { return looking(state_.fetch_sub(1, std::memory_order_seq_cst)) == 1; }

bool idle_state::register_sleeper(std::size_t index, bool searching) noexcept {
  std::lock_guard lock(mutex_);
  const std::uint64_t dec = (std::uint64_t{1} << kUnparkedShift) + (searching ? 1u : 0u);
  // seq_cst RMW: the sleeper's half of the Dekker handshake.
  const std::uint64_t prev = state_.fetch_sub(dec, std::memory_order_seq_cst);
  sleepers_.push_back(index);
  return searching && looking(prev) == 1;
}

bool idle_state::cancel_sleep(std::size_t index) noexcept {
  std::lock_guard lock(mutex_);
  auto it = std::find(sleepers_.begin(), sleepers_.end(), index);
  if (it == sleepers_.end()) {
    // One RMW: woken - 1, searching + 1 (so `looking` never dips meanwhile).
    state_.fetch_sub(kWokenOne - 1, std::memory_order_seq_cst);
    return false;
  }
  sleepers_.erase(it);
  state_.fetch_add(std::uint64_t{1} << kUnparkedShift, std::memory_order_seq_cst);
  return true;
}

std::ptrdiff_t idle_state::pick_sleeper() noexcept {
  std::lock_guard lock(mutex_);
  const std::uint64_t s = state_.load(std::memory_order_seq_cst);
  if (looking(s) != 0 || sleepers_.empty()) return -1;
  const std::size_t index = sleepers_.back();
  sleepers_.pop_back();
  state_.fetch_add((std::uint64_t{1} << kUnparkedShift) + kWokenOne, std::memory_order_seq_cst);
  return static_cast<std::ptrdiff_t>(index);
}

}  // namespace warden::detail
