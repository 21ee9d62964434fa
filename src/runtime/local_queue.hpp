// Internal: a worker's bounded run queue (single producer, many consumers).
//
// Layout: a ring of `kCapacity` slots indexed by two ever-increasing 64-bit
// counters (no ABA in practice). Only the owning worker pushes (writes
// `tail_`); the owner and thieves take from the front by compare-exchange on
// `head_`. Because `head_` only grows, a consumer that read a slot and then
// wins the CAS from the value it read knows nobody consumed that slot in
// between, hence the owner cannot have overwritten it.
//
// Interleavings handled:
//  * owner pop vs thief steal of the same slot: both CAS `head_`; one wins,
//    the loser re-reads and retries;
//  * thief reads a slot while the owner wraps around and overwrites it: the
//    owner only overwrites slots below `head_`, so the thief's CAS (from an
//    older head) fails and the stale value is discarded;
//  * steal-half: the thief copies up to half the entries, then claims them
//    all with one CAS; on failure nothing was taken.
// Slots are atomics (relaxed) because a losing consumer may read a slot the
// owner is writing; the value is only used after a successful CAS.
#pragma once

#include <warden/detail/task_header.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace warden::detail {

class local_queue {
 public:
  static constexpr std::uint64_t kCapacity = 256;

  /// Owner only. False when full.
  bool push(task_header* task) noexcept {
    bool was_empty = false;
    return push(task, was_empty);
  }

  /// Owner only. False when full; else `was_empty` tells whether the queue
  /// looked empty just before (a consumer may have emptied it meanwhile).
  bool push(task_header* task, bool& was_empty) noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    // acquire: consumers' reads of the slot we may overwrite happened before.
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    if (tail - head >= kCapacity) return false;
    was_empty = tail == head;
    slots_[tail & kMask].store(task, std::memory_order_relaxed);
    tail_.store(tail + 1, std::memory_order_release);  // publishes the slot
    return true;
  }

  /// Owner only: claims `n` entries from the front into `out` (for moving
  /// half of a full queue to the injection queue). Returns how many it got.
  std::size_t pop_batch(task_header** out, std::size_t n) noexcept {
    std::uint64_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
      const std::uint64_t avail = tail - head;
      const std::size_t take = avail < n ? static_cast<std::size_t>(avail) : n;
      if (take == 0) return 0;
      for (std::size_t i = 0; i < take; ++i) out[i] = slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + take, std::memory_order_acq_rel, std::memory_order_acquire))
        return take;
    }
  }

  /// Owner only: claims the front of the queue into `out` with one CAS: a
  /// quarter of it (at least one entry, at most `max`), so that most of a
  /// long queue stays for thieves. Returns how many it got.
  std::size_t claim_front(task_header** out, std::size_t max) noexcept {
    std::uint64_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t avail = tail_.load(std::memory_order_relaxed) - head;
      if (avail == 0) return 0;
      const std::uint64_t quarter = avail / 4 != 0 ? avail / 4 : 1;
      const std::size_t take = quarter < max ? static_cast<std::size_t>(quarter) : max;
      for (std::size_t i = 0; i < take; ++i) out[i] = slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + take, std::memory_order_acq_rel, std::memory_order_acquire))
        return take;
    }
  }

  /// Any thread.
  task_header* pop() noexcept {
    std::uint64_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      // acquire: the slot written before this tail was published is visible.
      const std::uint64_t tail = tail_.load(std::memory_order_acquire);
      if (head == tail) return nullptr;
      task_header* task = slots_[head & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return task;
    }
  }

  /// Thief: moves about half of this queue into `into` (owned by the
  /// caller) and returns one more task to run now, or nullptr. Takes
  /// nothing from a queue holding fewer than `min_tasks` (a lone task is
  /// about to be run by its owner; see "Spinning" in runtime_core.hpp).
  task_header* steal_into(local_queue& into, std::uint64_t min_tasks = 1) noexcept {
    std::array<task_header*, kCapacity / 2> buffer;
    std::uint64_t head = head_.load(std::memory_order_acquire);
    std::size_t take = 0;
    for (;;) {
      const std::uint64_t tail = tail_.load(std::memory_order_acquire);
      const std::uint64_t avail = tail - head;
      if (avail == 0 || avail < min_tasks) return nullptr;
      if (avail > kCapacity) {  // `head` is stale: the queue moved on meanwhile
        head = head_.load(std::memory_order_acquire);
        continue;
      }
      take = static_cast<std::size_t>(avail - avail / 2);
      const std::uint64_t room = kCapacity - into.size_owner();
      if (take > buffer.size()) take = buffer.size();
      if (take > room + 1) take = static_cast<std::size_t>(room + 1);
      for (std::size_t i = 0; i < take; ++i) buffer[i] = slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + take, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    for (std::size_t i = 1; i < take; ++i) into.push(buffer[i]);
    return buffer[0];
  }

  /// Approximate length, any thread (used to look for work before parking).
  [[nodiscard]] bool looks_empty() const noexcept {
    return tail_.load(std::memory_order_seq_cst) == head_.load(std::memory_order_seq_cst);
  }

 private:
  static constexpr std::uint64_t kMask = kCapacity - 1;
  [[nodiscard]] std::uint64_t size_owner() const noexcept {
    return tail_.load(std::memory_order_relaxed) - head_.load(std::memory_order_acquire);
  }

  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  alignas(64) std::array<std::atomic<task_header*>, kCapacity> slots_{};
};

}  // namespace warden::detail
