// Internal: a worker's bounded run queue (single producer, many consumers).
//
// Layout: a ring of `kCapacity` slots indexed by two 32-bit counters that
// only wrap after 2^32 operations (the ring is far smaller, so differences
// stay exact). Only the owning worker pushes (writes `tail_`); the owner and
// thieves take from the front by compare-exchange on the head word, and the
// owner alone may also take the newest task back from the end (pop_back,
// which lowers `tail_`).
//
// The head word packs the front index (low 32 bits) with an *epoch* (high 32
// bits) that every pop_back bumps. A consumer snapshots the head word, reads
// slots, and claims them with one compare-exchange from its snapshot; the
// claim succeeds only if nobody consumed from the front *and* the owner took
// nothing back from the end meanwhile. The epoch is what makes the second
// part true: without it a thief could copy slots, the owner could take some
// of them back from the end and push new tasks into the same slots, and the
// thief's claim (head unchanged) would then hand it a task the owner already
// ran, and lose the new one.
//
// Interleavings handled:
//  * owner pop vs thief steal of the same slot: both CAS the head word; one
//    wins, the loser re-reads and retries;
//  * thief reads a slot while the owner wraps around and overwrites it: the
//    owner only overwrites slots below the front index (or ones it took back,
//    which bumped the epoch), so the thief's CAS fails and the stale value is
//    discarded;
//  * steal-half: the thief copies up to half the entries, then claims them
//    all with one CAS; on failure nothing was taken;
//  * owner pop_back vs a steal: see pop_back.
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
  /// 1024 rather than the 256 of Go and tokio: a full queue sends half of
  /// itself to the injection queue, from where tasks come back one per 61
  /// picks to whichever worker looks first, so with more tasks cycling
  /// (yield_now loops) than the queues hold, every task keeps moving between
  /// workers: its header and frame change cores, neighbouring frames (one
  /// cache line can hold parts of two) run on both workers at once, and the
  /// yielders parked in the injection queue wait behind the ones cycling
  /// locally. yield_many (1000 tasks on 2 workers) took 13.9 ms at 256 and
  /// 9.1 ms at 1024 (medians; CPU time 22 -> 16 ms). The ring is 8 KiB.
  static constexpr std::uint32_t kCapacity = 1024;

  /// Owner only. False when full.
  bool push(task_header* task) noexcept {
    bool was_empty = false;
    return push(task, was_empty);
  }

  /// Owner only. False when full; else `was_empty` tells whether the queue
  /// looked empty just before (a consumer may have emptied it meanwhile).
  bool push(task_header* task, bool& was_empty) noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    // acquire: consumers' reads of the slot we may overwrite happened before.
    const std::uint32_t head = front(head_.load(std::memory_order_acquire));
    if (tail - head >= kCapacity) return false;
    was_empty = tail == head;
    slots_[tail & kMask].store(task, std::memory_order_relaxed);
    tail_.store(tail + 1, std::memory_order_release);  // publishes the slot
    return true;
  }

  /// Owner only: claims up to `n` entries from the front (for moving half of
  /// a full queue to the injection queue) and returns how many it got; they
  /// are claimed(from), claimed(from + 1), ... with `from` set here. Only the
  /// owner writes slots, so they keep their tasks until its next push.
  std::uint32_t claim_batch(std::uint32_t n, std::uint32_t& from) noexcept {
    std::uint64_t word = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t avail = tail_.load(std::memory_order_relaxed) - front(word);
      const std::uint32_t take = avail < n ? avail : n;
      if (take == 0) return 0;
      if (head_.compare_exchange_weak(word, advanced(word, take), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        from = front(word);
        return take;
      }
    }
  }

  /// Owner only: an entry claim_batch claimed (`index` in its range).
  [[nodiscard]] task_header* claimed(std::uint32_t index) const noexcept {
    return slots_[index & kMask].load(std::memory_order_relaxed);  // relaxed: the owner's own write
  }

  /// Owner only: how many pushes fit now (consumers may make more room).
  /// The head is read with acquire, as push reads it: consumers' reads of
  /// the slots that fit happened before, so stage may overwrite them.
  [[nodiscard]] std::uint32_t room_owner() const noexcept { return kCapacity - size_owner(); }

  /// Owner only: a batch push without a check and a publication per task.
  /// stage(end_owner() + i, task) for i below room_owner(), then
  /// publish(end_owner() + count) makes them visible, in order, at once.
  [[nodiscard]] std::uint32_t end_owner() const noexcept {
    return tail_.load(std::memory_order_relaxed);  // relaxed: only the owner writes it
  }
  void stage(std::uint32_t index, task_header* task) noexcept {
    slots_[index & kMask].store(task, std::memory_order_relaxed);  // published by publish()
  }
  void publish(std::uint32_t end) noexcept {
    tail_.store(end, std::memory_order_release);  // release: the staged slots come with it
  }

  /// Owner only: claims the front of the queue into `out` with one CAS: a
  /// quarter of it (at least one entry, at most `max`), so that most of a
  /// long queue stays for thieves. Returns how many it got.
  std::size_t claim_front(task_header** out, std::size_t max) noexcept {
    std::uint64_t word = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t avail = tail_.load(std::memory_order_relaxed) - front(word);
      if (avail == 0) return 0;
      const std::uint32_t quarter = avail / 4 != 0 ? avail / 4 : 1;
      const std::size_t take = quarter < max ? quarter : max;
      for (std::size_t i = 0; i < take; ++i) out[i] = slots_[(front(word) + i) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(word, advanced(word, take), std::memory_order_acq_rel, std::memory_order_acquire))
        return take;
    }
  }

  /// Owner only: takes the oldest task, or nullptr.
  task_header* pop() noexcept {
    std::uint64_t word = head_.load(std::memory_order_acquire);
    for (;;) {
      // acquire: the slot written before this tail was published is visible.
      const std::uint32_t tail = tail_.load(std::memory_order_acquire);
      if (front(word) == tail) return nullptr;
      task_header* task = slots_[front(word) & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(word, advanced(word, 1), std::memory_order_acq_rel, std::memory_order_acquire))
        return task;
    }
  }

  /// Owner only: takes the most recently pushed task (LIFO), or nullptr.
  /// Used to run a not-yet-started task the owner is about to wait for
  /// (runtime_core::help_awaited).
  ///
  /// The owner first withdraws the slot by lowering `tail_`, then changes the
  /// head word with a CAS (release). If more than one task is left it bumps
  /// the epoch: a thief whose claim came first moved the front, so the CAS
  /// fails and the owner decides again with the new front; a thief that
  /// snapshotted the word earlier fails its claim and retries; a thief that
  /// reads the new word (acquire) also reads the lowered tail, so its range
  /// ends below the slot. With exactly one task left the owner races the
  /// thieves for it by moving the front index, like any consumer, and
  /// restores the tail. One RMW and no fence either way.
  task_header* pop_back() noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    std::uint64_t word = head_.load(std::memory_order_relaxed);
    if (front(word) == tail) return nullptr;
    const std::uint32_t last = tail - 1;
    tail_.store(last, std::memory_order_relaxed);  // published by the CAS below
    for (;;) {
      const std::uint32_t head = front(word);
      if (head != last && last - head < kCapacity) {  // more than one left: head < last
        if (head_.compare_exchange_weak(word, word + kEpochOne, std::memory_order_acq_rel, std::memory_order_relaxed))
          return slots_[last & kMask].load(std::memory_order_relaxed);
        continue;  // a consumer moved the front meanwhile: decide again
      }
      task_header* task = nullptr;
      if (head == last) {  // the last one: race the thieves for it
        task = slots_[last & kMask].load(std::memory_order_relaxed);
        if (!head_.compare_exchange_strong(word, advanced(word, 1), std::memory_order_acq_rel,
                                           std::memory_order_relaxed))
          task = nullptr;  // a thief took it
      }
      tail_.store(tail, std::memory_order_relaxed);  // empty now: front == tail
      return task;
    }
  }

  /// Owner only: claims up to `n` of the most recently pushed entries with
  /// one CAS, newest first into `out`, the last one too (a queue of one
  /// included). Returns how many it got (0 when empty). The tail is lowered
  /// first and the CAS bumps the epoch, as in pop_back's "more than one
  /// left" case, and that argument does not depend on how many are left: a
  /// consumer whose claim came first moved the front, so our CAS fails and
  /// we decide again with the new front; a consumer that snapshotted the
  /// head word before our CAS fails its claim (the epoch) and retries; one
  /// that reads the new word (acquire) also reads the lowered tail, so its
  /// range ends below what we took (empty when we took all). A consumer
  /// reading the lowered tail with an older word sees a stale range and
  /// re-reads (steal_into) or fails its CAS.
  ///
  /// `copied`: `out` already holds the newest `n` entries, newest first (from
  /// depth_from_back's copy), so only the claim is made. Only the owner
  /// writes slots, so what it read before the claim is what it claims.
  std::size_t pop_back_batch(task_header** out, std::uint32_t n, bool copied = false) noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    std::uint64_t word = head_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint32_t avail = tail - front(word);
      if (avail == 0 || avail > kCapacity) {  // (a stale front read above the lowered tail: empty)
        tail_.store(tail, std::memory_order_relaxed);
        return 0;
      }
      const std::uint32_t take = avail < n ? avail : n;
      tail_.store(tail - take, std::memory_order_relaxed);  // published by the CAS below
      if (head_.compare_exchange_weak(word, word + kEpochOne, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        if (!copied)
          for (std::uint32_t i = 0; i < take; ++i)
            out[i] = slots_[(tail - 1 - i) & kMask].load(std::memory_order_relaxed);
        return take;
      }
    }
  }

  /// Owner only: how far from the end `task` sits (1: the most recently
  /// pushed entry), looking at most `window` entries deep; 0 if not there.
  /// A hint (a thief may take it right after); pop_back decides.
  /// Also copies the entries it looked at, newest first, into `out` (room
  /// for `window`) when given: pop_back_batch(out, depth, true) then claims
  /// them without reading the slots again.
  [[nodiscard]] std::uint32_t depth_from_back(const task_header* task, std::uint32_t window,
                                              task_header** out = nullptr) const noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    std::uint32_t n = tail - front(head_.load(std::memory_order_relaxed));
    if (n > window) n = window;
    if (out != nullptr) return copy_back_to(task, tail, n, out);
    for (std::uint32_t i = 1; i <= n; ++i)
      if (slots_[(tail - i) & kMask].load(std::memory_order_relaxed) == task) return i;
    return 0;
  }

  /// Owner only: depth_from_back(task, window, out) and, if `task` is
  /// there, pop_back_batch(out, depth, true) in one, taking exactly the
  /// entries down to `task` or nothing: the depth, or 0 if `task` is not
  /// among the last `window` entries or a consumer took it (or an older
  /// entry) first. `out` has room for `window`; what it holds after a 0 is
  /// of no use. The claim is pop_back_batch's (see there); the tail and the
  /// head word are read once for the look and the claim.
  std::uint32_t claim_back_to(const task_header* task, std::uint32_t window, task_header** out) noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    std::uint64_t word = head_.load(std::memory_order_relaxed);
    std::uint32_t n = tail - front(word);
    if (n > window) n = window;
    const std::uint32_t depth = copy_back_to(task, tail, n, out);
    if (depth == 0) return 0;
    for (;;) {
      const std::uint32_t avail = tail - front(word);
      if (avail < depth || avail > kCapacity) {  // taken from the front meanwhile
        tail_.store(tail, std::memory_order_relaxed);
        return 0;
      }
      tail_.store(tail - depth, std::memory_order_relaxed);  // published by the CAS below
      if (head_.compare_exchange_weak(word, word + kEpochOne, std::memory_order_acq_rel, std::memory_order_relaxed))
        return depth;
    }
  }

  /// Thief: moves about half of this queue into `into` (owned by the
  /// caller) and returns one more task to run now, or nullptr. Takes
  /// nothing from a queue holding fewer than `min_tasks` (a lone task is
  /// about to be run by its owner; see "Spinning" in runtime_core.hpp).
  task_header* steal_into(local_queue& into, std::uint32_t min_tasks = 1) noexcept {
    // The stolen entries after the first go straight into `into`'s free
    // slots, staged there before the claim (unpublished until it succeeds,
    // staged again if it fails).
    const std::uint32_t end = into.end_owner();
    const std::uint32_t room = into.room_owner();  // (only grows meanwhile)
    std::uint64_t word = head_.load(std::memory_order_acquire);
    std::uint32_t take = 0;
    task_header* first = nullptr;
    for (;;) {
      // After the head word (acquire): a word written by pop_back's CAS
      // comes with the tail it lowered.
      const std::uint32_t tail = tail_.load(std::memory_order_acquire);
      const std::uint32_t avail = tail - front(word);
      if (avail == 0 || avail < min_tasks) return nullptr;
      // The snapshot is stale (the queue moved on meanwhile), or the owner's
      // pop_back lowered the tail below a front a thief just advanced.
      if (avail > kCapacity) {
        word = head_.load(std::memory_order_acquire);
        continue;
      }
      take = avail - avail / 2;
      if (take > kCapacity / 2) take = kCapacity / 2;
      if (take > room + 1) take = room + 1;
      first = slots_[front(word) & kMask].load(std::memory_order_relaxed);
      for (std::uint32_t i = 1; i < take; ++i)
        into.stage(end - 1 + i, slots_[(front(word) + i) & kMask].load(std::memory_order_relaxed));
      if (head_.compare_exchange_weak(word, advanced(word, take), std::memory_order_acq_rel, std::memory_order_acquire))
        break;
    }
    if (take > 1) into.publish(end - 1 + take);
    return first;
  }

  /// Approximate length, any thread (used to look for work before parking).
  [[nodiscard]] bool looks_empty() const noexcept {
    return tail_.load(std::memory_order_seq_cst) == front(head_.load(std::memory_order_seq_cst));
  }

 private:
  static constexpr std::uint32_t kMask = kCapacity - 1;
  static constexpr std::uint64_t kEpochOne = std::uint64_t{1} << 32;
  static constexpr std::uint32_t front(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word); }
  /// `word` with the front index moved by `n` (wrapping within its 32 bits)
  /// and the epoch kept.
  static constexpr std::uint64_t advanced(std::uint64_t word, std::size_t n) noexcept {
    return (word & ~std::uint64_t{0xFFFFFFFF}) | static_cast<std::uint32_t>(front(word) + n);
  }
  /// The last `n` entries before `tail`, newest first, into `out` until
  /// `task` (copied too); its depth (1: the newest), or 0 if not among them.
  /// The ring in (at most) two runs of adjacent slots, with a pointer each
  /// for the slots and `out`, two entries a round (callgrind: ~6
  /// instructions an entry instead of ~11).
  std::uint32_t copy_back_to(const task_header* task, std::uint32_t tail, std::uint32_t n,
                             task_header** out) const noexcept {
    task_header** o = out;
    std::uint32_t below = tail & kMask;  // the first run: slots [0, below)
    std::uint32_t run = below < n ? below : n;
    std::uint32_t rest = n - run;
    for (;;) {
      const std::atomic<task_header*>* p = slots_.data() + below;
      const std::atomic<task_header*>* const stop = p - run;
      if ((run & 1) != 0) {
        task_header* const a = (--p)->load(std::memory_order_relaxed);
        *o++ = a;
        if (a == task) return static_cast<std::uint32_t>(o - out);
      }
      while (p != stop) {
        task_header* const a = p[-1].load(std::memory_order_relaxed);
        task_header* const b = p[-2].load(std::memory_order_relaxed);
        p -= 2;
        o[0] = a;
        o[1] = b;
        o += 2;
        if (a == task) return static_cast<std::uint32_t>(o - out) - 1;
        if (b == task) return static_cast<std::uint32_t>(o - out);
      }
      if (rest == 0) return 0;
      below = kCapacity;  // the rest from the ring's top
      run = rest;
      rest = 0;
    }
  }

  [[nodiscard]] std::uint32_t size_owner() const noexcept {
    return tail_.load(std::memory_order_relaxed) - front(head_.load(std::memory_order_acquire));
  }

  alignas(64) std::atomic<std::uint64_t> head_{0};  // epoch << 32 | front index
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  alignas(64) std::array<std::atomic<task_header*>, kCapacity> slots_{};
};

}  // namespace warden::detail
