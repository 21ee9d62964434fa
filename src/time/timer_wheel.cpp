#include "timer_wheel.hpp"

#include <algorithm>
#include <bit>

namespace warden::detail {

void timer_wheel::push(int level, std::uint64_t slot, timer_node* node) noexcept {
  slot_list& list = levels_[level].slots[slot];
  node->prev = nullptr;
  node->next = list.head;
  if (list.head != nullptr) list.head->prev = node;
  list.head = node;
  node->level = static_cast<std::uint8_t>(level);
  node->slot = static_cast<std::uint8_t>(slot);
  levels_[level].occupied |= 1ull << slot;
}

void timer_wheel::insert(timer_node* node) noexcept {
  // Clamp far deadlines: they are re-filed when their (clamped) slot comes.
  const std::uint64_t filing = std::min(node->deadline, elapsed_ + kMaxSpan);
  const std::uint64_t differing = (elapsed_ ^ filing) | (kSlots - 1);
  const int highest = 63 - std::countl_zero(differing);
  const int level = std::min(highest / kSlotBits, kLevels - 1);
  const std::uint64_t slot = (filing >> (level * kSlotBits)) & (kSlots - 1);
  push(level, slot, node);
  ++size_;
}

void timer_wheel::remove(timer_node* node) noexcept {
  level& lvl = levels_[node->level];
  slot_list& list = lvl.slots[node->slot];
  if (node->prev != nullptr)
    node->prev->next = node->next;
  else
    list.head = node->next;
  if (node->next != nullptr) node->next->prev = node->prev;
  if (list.head == nullptr) lvl.occupied &= ~(1ull << node->slot);
  node->prev = node->next = nullptr;
  --size_;
}

std::optional<timer_wheel::expiration> timer_wheel::next() const noexcept {
  for (int l = 0; l < kLevels; ++l) {
    const std::uint64_t occupied = levels_[l].occupied;
    if (occupied == 0) continue;
    const int shift = l * kSlotBits;
    const std::uint64_t current = (elapsed_ >> shift) & (kSlots - 1);
    const std::uint64_t slot =
        (std::countr_zero(std::rotr(occupied, static_cast<int>(current))) + current) & (kSlots - 1);
    const std::uint64_t span = 1ull << shift;
    const std::uint64_t window = span << kSlotBits;
    std::uint64_t deadline = (elapsed_ & ~(window - 1)) + slot * span;
    // A slot at or before the current one belongs to the next window (only
    // clamped far timers wrap like this).
    if (slot < current || (slot == current && l > 0)) deadline += window;
    return expiration{l, slot, deadline};
  }
  return std::nullopt;
}

std::optional<std::uint64_t> timer_wheel::next_expiration() const noexcept {
  if (auto e = next()) return e->deadline;
  return std::nullopt;
}

void timer_wheel::advance(std::uint64_t now, timer_list& due) noexcept {
  for (auto e = next(); e && e->deadline <= now; e = next()) {
    level& lvl = levels_[e->level];
    timer_node* node = lvl.slots[e->slot].head;
    lvl.slots[e->slot].head = nullptr;
    lvl.occupied &= ~(1ull << e->slot);
    elapsed_ = std::max(elapsed_, e->deadline);
    while (node != nullptr) {
      timer_node* following = node->next;
      node->prev = node->next = nullptr;
      --size_;
      if (node->deadline <= now) {
        // In the due list now: a disarm must unlink it from there.
        node->status.store(timer_node::state::firing, std::memory_order_relaxed);
        due.push_back(node);  // relinks prev / next
      } else
        insert(node);  // cascades to a lower level
      node = following;
    }
  }
  elapsed_ = std::max(elapsed_, now);
}

}  // namespace warden::detail
