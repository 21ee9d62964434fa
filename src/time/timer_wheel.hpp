// Internal: the hierarchical timing wheel (millisecond ticks).
//
// Six levels of 64 slots. Level L slot s holds timers whose deadline lies in
// the s-th 64^L-tick span of the current 64^(L+1)-tick window of level L; a
// timer goes to the lowest level at which its deadline and `elapsed_` share
// every higher bit (level = index of the highest differing 6-bit group). So
// level 0 holds the next 64 ms at 1 ms resolution, level 1 the next ~4 s at
// 64 ms, ..., level 5 ~2.2 years; later deadlines are clamped to the end of
// level 5 and re-filed when reached.
//
// Invariant: every timer in the wheel has deadline > elapsed_, and a timer at
// level L sits in a slot strictly after elapsed_'s slot at that level, within
// the same window. Hence the earliest occupied slot of the lowest non-empty
// level holds the earliest deadline. Advancing to `now` takes that slot,
// fires its timers that are due, re-files the rest at lower levels, and
// repeats; then elapsed_ = now.
//
// Not thread-safe: the time driver guards it with its lock.
#pragma once

#include <warden/detail/intrusive_list.hpp>
#include <warden/detail/timer.hpp>

#include <array>
#include <cstdint>
#include <optional>

namespace warden::detail {

/// The timers that came due, in a FIFO through their prev / next links.
/// Not synchronised.
using timer_list = intrusive_list<timer_node>;

class timer_wheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kSlotBits = 6;
  static constexpr std::uint64_t kSlots = 1u << kSlotBits;
  static constexpr std::uint64_t kMaxSpan = (1ull << (kLevels * kSlotBits)) - 1;

  /// Files `node` (its deadline must be > elapsed()).
  void insert(timer_node* node) noexcept;
  /// Unlinks a filed node.
  void remove(timer_node* node) noexcept;
  /// The start tick of the earliest occupied slot (a lower bound of the
  /// earliest deadline; exact at level 0), or nullopt when empty.
  [[nodiscard]] std::optional<std::uint64_t> next_expiration() const noexcept;
  /// Moves time to `now`, appending every timer with deadline <= now to `due`
  /// (taken out of the wheel, marked `firing`, in no particular order).
  /// Allocates nothing.
  void advance(std::uint64_t now, timer_list& due) noexcept;

  [[nodiscard]] std::uint64_t elapsed() const noexcept { return elapsed_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct slot_list {
    timer_node* head = nullptr;
  };
  struct level {
    std::uint64_t occupied = 0;
    std::array<slot_list, kSlots> slots{};
  };
  struct expiration {
    int level;
    std::uint64_t slot;
    std::uint64_t deadline;
  };

  [[nodiscard]] std::optional<expiration> next() const noexcept;
  void push(int level, std::uint64_t slot, timer_node* node) noexcept;

  std::uint64_t elapsed_ = 0;
  std::size_t size_ = 0;
  std::array<level, kLevels> levels_{};
};

}  // namespace warden::detail
