// Internal: the runtime's idle state: how many workers are unparked,
// searching for work or on their way after a wake, and which ones sleep.
// The rules it serves (who wakes whom, and the Dekker handshake that keeps
// a wake from being lost) are in runtime_core.hpp, "Idling without lost
// wakeups" and "Spinning before parking".
#pragma once

#include <warden/detail/sanitizers.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace warden::detail {

/// Sleeping workers and the numbers of searching and woken ones.
///
/// `state_` packs three 16-bit counts: (woken << 32) | (unparked << 16) |
/// searching. A worker a notifier picks from the sleepers is *woken*:
/// counted as unparked at once, and as searching only once its thread runs
/// again (cancel_sleep). Until then it counts as searching for every
/// decision about whom to wake or let search (so one notification is not
/// repeated while the woken worker is on its way), but not for all_busy:
/// it does not look for work yet, and the time its thread takes to run
/// (a futex wake-up; in a VM, up to milliseconds for an idle vCPU) is no
/// reason for the busy workers to stop stashing (see "The stash" in
/// runtime_core.hpp).
/// It is changed by RMW only; the sleeper list is guarded by `mutex_`,
/// touched only when a worker parks or is woken.
class idle_state {
 public:
  explicit idle_state(std::size_t workers);
  bool try_start_searching() noexcept;
  /// True if the caller was the last searching (or woken) worker.
  bool stop_searching() noexcept;
  /// Registers `index` as asleep. True if it was the last searcher.
  bool register_sleeper(std::size_t index, bool searching) noexcept;
  /// Removes `index` from the sleepers if still there (true), else it was
  /// already picked by a notifier, which counted it as woken, and it now
  /// counts as searching (false).
  bool cancel_sleep(std::size_t index) noexcept;
  /// A sleeper to wake (now counted as unparked and woken), or -1.
  std::ptrdiff_t pick_sleeper() noexcept;
  /// Nobody looks for work and somebody sleeps. Reads the state after a
  /// store-load barrier (see "Idling" in runtime_core.hpp): orders the
  /// caller's earlier stores (a queue push) before the load. TSan does not
  /// model fences, so there the barrier is an RMW on the word itself, which
  /// gives the same guarantee against the RMW on the other side.
  [[nodiscard]] bool should_notify() noexcept {
#if WARDEN_TSAN
    const std::uint64_t s = state_.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint64_t s = state_.load(std::memory_order_seq_cst);
#endif
    return wants_notify(s);
  }
  /// should_notify without the barrier: a hint (relaxed), for a worker that
  /// pushed onto its own queue (see "Idling" in runtime_core.hpp).
  [[nodiscard]] bool should_notify_unfenced() const noexcept {
    return wants_notify(state_.load(std::memory_order_relaxed));
  }
  /// A hint (relaxed read): every worker is unparked and none searches (a
  /// woken one on its way does not count as searching here).
  [[nodiscard]] bool all_busy() const noexcept {
    return static_cast<std::uint32_t>(state_.load(std::memory_order_relaxed)) == all_busy_state_;
  }

 private:
  static constexpr std::uint32_t kUnparkedShift = 16;
  static constexpr std::uint32_t kWokenShift = 32;
  static constexpr std::uint64_t kCountMask = (1u << kUnparkedShift) - 1;
  static constexpr std::uint64_t kWokenOne = std::uint64_t{1} << kWokenShift;
  /// Searching and woken workers: those that look, or will, for work.
  static std::uint64_t looking(std::uint64_t s) noexcept { return (s & kCountMask) + (s >> kWokenShift); }
  static constexpr std::uint64_t kLookingMask = kCountMask | (kCountMask << kWokenShift);
  /// Nobody searching or woken, and fewer than all unparked: with the two
  /// counts zero, `s` is just the unparked count, shifted as in
  /// all_busy_state_.
  [[nodiscard]] bool wants_notify(std::uint64_t s) const noexcept {
    return (s & kLookingMask) == 0 && s < all_busy_state_;
  }
  std::atomic<std::uint64_t> state_;
  /// The low half of `state_` when every worker is unparked and none
  /// searches (all_busy: one compare; the packing needs fewer than 2^16
  /// workers, which runtime_options checks).
  std::uint32_t all_busy_state_;
  std::size_t workers_;
  std::mutex mutex_;
  std::vector<std::size_t> sleepers_;
};

}  // namespace warden::detail
