// Internal: the shared state of one mpsc channel — a counting semaphore of
// free slots (the *permits*), the queue of values, the parked senders and
// the receiver's waker; for capacity 1, one word that is at once the slot's
// state, the permit and the receiver's park flag. Sending and receiving take
// no lock unless a sender has to park; see mpsc_state below.
#pragma once

#include <warden/detail/atomic_test.hpp>
#include <warden/detail/spin_pause.hpp>
#include <warden/detail/task_header.hpp>
#include <warden/detail/wait_list.hpp>
#include <warden/sync/detail/channel.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace warden::detail {

/// The values of a bounded channel: a fixed ring of `capacity` slots, many
/// producers, one consumer, no lock (a per-slot sequence number, after
/// Vyukov's bounded queue).
///
/// A producer may push only while it holds a permit of the channel (so at
/// most `capacity` values are queued or being pushed); it claims a position
/// `pos` with one fetch_add on `tail_` and uses slot `pos % capacity`.
/// Slot sequence numbers, for the slot of position `pos`:
///   == pos          free: the previous lap's value was taken (or none yet)
///   == pos + 1      published: the value of `pos` can be taken
///   (consumer sets pos + capacity when it takes it: free for the next lap)
/// Only the consumer moves `head_`; it reads `head_`'s slot and nothing else.
template <class T>
class slot_ring {
  static_assert(std::is_nothrow_move_constructible_v<T>);

 public:
  explicit slot_ring(std::size_t capacity)
      : slots_(new slot[capacity]), capacity_(capacity), mask_((capacity & (capacity - 1)) == 0 ? capacity - 1 : 0) {
    for (std::size_t i = 0; i < capacity; ++i) slots_[i].sequence.store(i, std::memory_order_relaxed);
  }
  slot_ring(const slot_ring&) = delete;
  slot_ring& operator=(const slot_ring&) = delete;
  ~slot_ring() {
    while (ready()) (void)pop();
  }

  /// Producer holding a permit: appends `value`.
  void push(T&& value) noexcept {
    // relaxed: the claim only picks the position; the slot's sequence orders
    // the data.
    const std::uint64_t pos = tail_.fetch_add(1, std::memory_order_relaxed);
    slot& s = slots_[index(pos)];
    // acquire: pairs with the consumer's release when it emptied the slot on
    // the previous lap. The permit we hold means that lap's value was taken
    // or is being taken right now, so this waits a few instructions at most.
    for (unsigned round = 0; s.sequence.load(std::memory_order_acquire) != pos;) spin_pause(round);
    std::construct_at(s.value(), std::move(value));
    // seq_cst (a release store at least, publishing the value): it is also
    // one side of the receiver's park handshake (see mpsc_state).
    s.sequence.store(pos + 1, std::memory_order_seq_cst);
  }

  /// Consumer: whether the oldest position holds a published value.
  /// seq_cst: the other side of the park handshake.
  [[nodiscard]] bool ready() const noexcept {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    return slots_[index(head)].sequence.load(std::memory_order_seq_cst) == head + 1;
  }

  /// Consumer: takes the oldest value. Precondition: ready().
  T pop() noexcept {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    slot& s = slots_[index(head)];
    T value = std::move(*s.value());
    std::destroy_at(s.value());
    // release: the next lap's producer writes the slot after we read it.
    s.sequence.store(head + capacity_, std::memory_order_release);
    head_.store(head + 1, std::memory_order_relaxed);  // relaxed: size() is a snapshot
    return value;
  }

  /// Values queued or being pushed (a snapshot).
  [[nodiscard]] std::size_t size() const noexcept {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    return tail > head ? static_cast<std::size_t>(tail - head) : 0;
  }

 private:
  /// The slot of a position (no division for power-of-two capacities).
  [[nodiscard]] std::size_t index(std::uint64_t pos) const noexcept {
    return mask_ != 0 || capacity_ == 1 ? static_cast<std::size_t>(pos & mask_)
                                        : static_cast<std::size_t>(pos % capacity_);
  }

  struct slot {
    std::atomic<std::uint64_t> sequence{0};
    alignas(T) unsigned char storage[sizeof(T)];
    T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  std::unique_ptr<slot[]> slots_;
  const std::size_t capacity_;
  const std::uint64_t mask_;            // capacity - 1 for a power of two, else 0
  std::atomic<std::uint64_t> tail_{0};  // next position to claim (producers)
  std::atomic<std::uint64_t> head_{0};  // oldest position (written by the consumer only)
};

/// The value of a channel of capacity 1: storage for one `T`. Whether it
/// holds one is told by the channel's slot word (see mpsc_state, "Capacity
/// 1"), which also orders the writes and reads of the value.
template <class T>
struct one_slot {
  static_assert(std::is_nothrow_move_constructible_v<T>);
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  alignas(T) unsigned char storage[sizeof(T)];
};

/// The values of an unbounded channel: a growing ring under its own small
/// lock. A push checks the close under that lock, so no push straddles a
/// close and unbounded channels need no permits. `published_` counts the
/// values ever pushed and `taken_` those the consumer took (only it writes
/// it), for the park handshake and the closed-and-drained check.
template <class T>
class locked_ring {
 public:
  /// Appends `value` unless `closed()` (checked under the lock); false then,
  /// and `value` is untouched. May throw std::bad_alloc when the ring must
  /// grow (nothing is queued then).
  template <class Closed>
  bool push_unless(T&& value, Closed closed) {
    std::lock_guard lock(mutex_);
    if (closed()) return false;
    if (ring_.full()) ring_.grow();
    ring_.push(std::move(value));
    // seq_cst: one side of the receiver's park handshake (see mpsc_state).
    published_.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  /// Runs `f` under the lock: between two pushes, never during one.
  template <class F>
  void between_pushes(F f) {
    std::lock_guard lock(mutex_);
    f();
  }
  /// Consumer only.
  [[nodiscard]] bool ready() const noexcept {
    return published_.load(std::memory_order_seq_cst) != taken_.load(std::memory_order_relaxed);
  }
  /// Consumer only. Precondition: ready().
  T pop() noexcept {
    std::lock_guard lock(mutex_);
    // relaxed: written by the consumer only; size() reads a snapshot.
    taken_.store(taken_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return ring_.pop();
  }
  [[nodiscard]] std::size_t size() const noexcept {
    const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
    const std::uint64_t published = published_.load(std::memory_order_relaxed);
    return published > taken ? static_cast<std::size_t>(published - taken) : 0;
  }

 private:
  mutable std::mutex mutex_;
  ring<T> ring_{16};
  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> taken_{0};
};

/// Where a receive puts the value it takes: the receiving awaiter's storage
/// and its flag (an optional's two parts, apart, so that the awaiter can
/// keep its own flag byte next to this one).
template <class T>
struct value_out {
  T* storage;
  std::uint8_t* engaged;
  void emplace(T&& value) noexcept {
    std::construct_at(storage, std::move(value));
    *engaged = 1;
  }
};

/// The part of an mpsc channel's state that does not depend on `T` (see
/// mpsc_state, whose first fields these are): the constants, the slot word
/// (or permit count), the receiver's state and waker, and capacity 1's
/// park. Not a template, so that the deferred park of a capacity-1 recv is
/// one function of the library (commit_one_park), which a poller that finds
/// it as its task's pending park runs inline (see poll_end in
/// task_header.cpp): no indirect call, no return value to test.
struct mpsc_state_head {
  static constexpr std::uint64_t kClosed = 1;
  static constexpr std::uint64_t kSendersParked = 2;
  static constexpr std::uint64_t kOnePermit = 4;
  static constexpr std::uint64_t kMaxCapacity = 1ull << 60;
  static constexpr std::uint8_t kIdle = 0, kParked = 1, kTaking = 2;
  // Capacity 1, next to the state in `receiver_state` (kStateMask):
  // `queue.one.handed` holds a value (see "Hand-off"), and kActive: a recv
  // is suspended in recv (parked, or woken and not yet resumed; to catch a
  // second recv, from the moment the park is committed: a deferred park's
  // window before that is the end of the recv's own poll). The receiver's
  // park sets kActive and the receiver clears it when it resumes or goes;
  // a waker that takes the parked receiver's waker keeps it in its kIdle
  // store.
  static constexpr std::uint8_t kStateMask = 3, kHanded = 4, kActive = 8;
  // Capacity 1 (see "Capacity 1: the slot word").
  static constexpr std::uint64_t kSlotEmpty = 0, kSlotClaimed = 4, kSlotFull = 12, kSlotMask = 12;
  static constexpr std::uint64_t kReceiverParked = 16;

  mpsc_state_head(std::uint64_t permits_, bool bounded_, bool single_) noexcept
      : permits(permits_), bounded(bounded_), single(single_) {}
  mpsc_state_head(const mpsc_state_head&) = delete;
  mpsc_state_head& operator=(const mpsc_state_head&) = delete;

  /// park_receiver_unless_ready for capacity 1: one CAS.
  [[gnu::always_inline]] bool park_one(unowned_waker self) noexcept {
    // No earlier waker is busy (receiver_state is kIdle: see the top);
    // kActive on (and kept if we find a value: the recv is suspended until
    // it resumes).
    // Field by field: a copy of the whole struct went through the stack.
    receiver_waker.task = self.task;
    receiver_waker.word = self.word;
    receiver_waker.solo = self.solo;
    receiver_state.store(kParked | kActive, std::memory_order_relaxed);  // released by the CAS
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t slot = word & kSlotMask;
      // Empty and open, the usual park, in one test.
      if ((word & (kSlotMask | kClosed)) != kSlotEmpty &&
          (slot == kSlotFull || (slot == kSlotEmpty && (word & kClosed) != 0))) {
        receiver_state.store(kIdle | kActive, std::memory_order_relaxed);
        return false;
      }
      // Empty or being written: park. release: the waker and kParked, for
      // whoever takes kReceiverParked away.
      if (permits.compare_exchange_weak(word, word | kReceiverParked, std::memory_order_release,
                                        std::memory_order_relaxed))
        return true;
    }
  }

  // Layout: what a message touches first, together, so that a capacity-1
  // channel's traffic (the slot word, the receiver's state and waker, the
  // value) stays in one cache line; the struct is line-aligned so that no
  // other channel (often used by a pair of tasks on the other worker)
  // shares that line. The rarely used rest (senders, the lock, the parked
  // senders) follows.
  std::atomic<std::uint64_t> permits;  // for capacity 1 the slot word
  // kIdle, kParked or kTaking (see "The receiver's waker"); for capacity 1
  // also kHanded (see "Hand-off"), set with kIdle by the sender that took
  // the parked receiver's waker, cleared by the receiver, and kActive.
  std::atomic<std::uint8_t> receiver_state{kIdle};
  // A recv is suspended in recv, parked or woken and not yet resumed (to
  // catch a second recv), on a channel whose capacity is not 1 (capacity 1
  // has kActive). Written by the receiver only, relaxed.
  std::atomic<bool> receiver_parked{false};
  const bool bounded;
  const bool single;             // capacity 1: `queue.one` and the slot word
  unowned_waker receiver_waker;  // see "The receiver's waker"
};

/// The deferred park of a capacity-1 recv (mpsc_recv_awaiter::await_suspend;
/// a detail::deferred_park's commit): `state` is the channel's
/// mpsc_state_head, the rest the receiver's waker; park_one.
bool commit_one_park(void* state, task_header* task, std::uint64_t word, const task_scheduler* solo) noexcept;

/// The shared state of one mpsc channel.
///
/// # Permits
/// `permits` holds the number of free slots (in units of kOnePermit) and two
/// flags. A sender takes a permit before it pushes (one CAS when one is
/// free) and the receiver gives one back after each pop. Unbounded channels
/// use only the kClosed flag (see locked_ring).
///   kClosed         sticky; no permit is handed out any more
///   kSendersParked  senders are parked in `parked_senders`; then the count
///                   is 0 and a returned permit goes straight to the first
///                   of them (FIFO, no barging: a new sender sees none free)
/// kSendersParked is set and cleared only under `mutex`, together with the
/// list becoming non-empty / empty; the count and kClosed change by CAS /
/// RMW from anywhere.
///
/// A permit is held from a successful acquire until the value is popped
/// (or given back unused). So "closed, queue empty, every permit back" means
/// closed and drained: no value is on its way.
///
/// # Parked senders
/// `mutex` guards `parked_senders` and the nodes in it (status, amount).
/// A node woken with `amount` 1 holds a permit; with 0 it was woken by the
/// close.
///
/// # The receiver's waker
/// (Capacity 1 keeps the park flag in its slot word instead: see below.)
/// `receiver_state` is kIdle, kParked (the receiver stored its waker in
/// `receiver_waker` and may be suspended) or kTaking (a waker is waking
/// it). Only the receiver moves kIdle -> kParked, after writing the waker;
/// a waker moves kParked -> kTaking by CAS, wakes the receiver and then
/// stores kIdle; the receiver may take its waker back with a CAS
/// kParked -> kIdle. The handshake: the receiver stores kParked then checks
/// the queue; a sender publishes a value then loads `receiver_state` (all
/// seq_cst), so one of them sees the other.
///
/// `receiver_waker` is an unowned_waker (no reference on the receiving
/// task's header: two RMWs fewer per parked recv). The header outlives
/// every use: a waker uses it only between its kParked -> kTaking CAS and
/// its kIdle store, and the receiving task cannot complete (and free the
/// header) in that window. It is suspended in recv until woken, and wake()
/// touches the header only until it has queued the task (nobody polls the
/// task before that; after it, the waker only stores kIdle into this
/// state). If the parked recv's frame is
/// destroyed instead (the task was aborted), its destructor
/// either takes the waker back (kParked -> kIdle) or, having lost that race
/// to a waker, waits for the kIdle store before the frame (and then the
/// task) can finish: see unpark_receiver_or_wait. The next recv waits for
/// kIdle as well before it writes `receiver_waker` (park_receiver).
/// The receiver is woken only after a value was published or once the
/// channel is closed and drained (both stay true until the receiver acts).
/// A published value may sit behind a position whose sender claimed it
/// first and is still moving its value in; the woken receiver waits for
/// that one (see mpsc_recv_awaiter::await_resume).
///
/// # Capacity 1: the slot word
/// A channel of capacity 1 has no ring and no permit count: `permits` is the
/// *slot word*, with kClosed and kSendersParked as above and
///   the slot (kSlotMask)
///     kSlotEmpty     no value, none on its way: the permit is free
///     kSlotClaimed   a sender holds the slot (the permit) and is moving its
///                    value in, or a parked sender was handed it
///     kSlotFull      the value is readable
///   kReceiverParked  the receiver's waker is in `receiver_waker`
/// Every change is a CAS on this one word, so the slot, the permit, the
/// close and the receiver's park are always seen together:
///   send     kSlotEmpty with kReceiverParked: takes kReceiverParked away
///            and leaves the slot empty: the value goes straight to the
///            parked receiver (*hand-off*, below). kSlotEmpty otherwise:
///            -> kSlotClaimed, the value goes in, and a second CAS
///            -> kSlotFull publishes it, taking kReceiverParked away if the
///            receiver parked meanwhile. Nothing in kSlotClaimed is
///            readable, so a receiver never waits for a sender still
///            writing; it parks and the publishing CAS wakes it.
///   recv     a handed value first (no CAS). kSlotFull: takes the value,
///            then one CAS back to kSlotEmpty, or (senders parked) hands the
///            slot to the first of them as kSlotClaimed, under `mutex`.
///            Else, unless closed and empty, one CAS adds kReceiverParked.
///   close    adds kClosed; if the slot is empty (closed and drained) it
///            takes kReceiverParked away and wakes the receiver.
///   a claim given back unused (the channel closed before the woken sender
///            ran, or it was aborted): as recv's CAS back, and if that made
///            the channel closed and drained it wakes a parked receiver.
/// A parked sender waits only while the slot is occupied, so a sender that
/// finds it empty may claim it (no barging).
///
/// Whoever takes kReceiverParked away owns the waker: it wakes the receiver
/// and then stores kIdle into `receiver_state`, which the receiver set to
/// kParked before its parking CAS (which releases it). Until that store the
/// waker may still touch the receiving task's header, so the receiver waits
/// for kIdle after a wake (await_resume) and before an aborted recv's frame
/// goes (unpark_receiver_or_wait); a receiver that takes kReceiverParked
/// back itself stores kIdle. So `receiver_state`'s state (kStateMask) is
/// kIdle whenever no recv is parked, and the kIdle store also publishes a
/// handed value. Its kActive bit is the receiver's: set by the park's
/// kParked store (and kept if the park finds a value instead), kept by the
/// waker's store (the receiver is still in recv), and cleared by the
/// receiver's store once it resumed (or its aborted recv's frame goes),
/// which also clears kHanded when it took the handed value.
///
/// Hand-off: a sender that takes kReceiverParked from an empty slot moves
/// its value into `queue.one.handed` (not the slot), wakes the receiver and
/// stores kIdle with kHanded (one store). The receiver waits for kIdle (it
/// does anyway; kIdle with kHanded is the usual case, one compare) and
/// takes the handed value with no RMW on the slot word, storing plain kIdle
/// (no waker can be busy: it is not parked). Only
/// the receiver's next park can let another hand-off in, and it takes the
/// handed value before it parks, so one hand-off place is enough. The value
/// went to a waiting receiver: it takes no capacity, and the slot may fill
/// meanwhile (FIFO holds: the handed value's claim came first, and a recv
/// takes it first). If the woken recv is aborted before it runs, the value
/// stays handed for the next recv: nothing is lost.
/// A ping-pong message costs two locked operations on this word (claim,
/// park) where the ring's permits cost five.
///
/// The receiver's park (park_one) is deferred to the end of its poll
/// (detail::defer_park, from mpsc_recv_awaiter::await_suspend): the poller
/// commits it after the task went idle, so a detached receiver (no other
/// owner of its task) parks and is woken with plain stores on its task's
/// state word ("Solo" in task_header.cpp) and a message costs no locked
/// operation on the task at all. A commit that finds the slot readable (or
/// closed and drained) publishes nothing and the receiver is polled again,
/// straight into await_resume.
template <class T>
struct alignas(64) mpsc_state : mpsc_state_head {
  /// `capacity` 0 means unbounded.
  explicit mpsc_state(std::size_t capacity)
      : mpsc_state_head(capacity == 1 ? 0 : static_cast<std::uint64_t>(capacity) * kOnePermit, capacity != 0,
                        capacity == 1),
        all_permits(single ? 0 : static_cast<std::uint64_t>(capacity) * kOnePermit) {
    if (single)
      std::construct_at(&queue.one);
    else if (bounded)
      std::construct_at(&queue.fixed, capacity);
    else
      std::construct_at(&queue.growing);
  }
  mpsc_state(const mpsc_state&) = delete;
  mpsc_state& operator=(const mpsc_state&) = delete;
  ~mpsc_state() {
    if (single) {
      // relaxed: the last owner's release of the state orders everything.
      if ((permits.load(std::memory_order_relaxed) & kSlotMask) == kSlotFull) std::destroy_at(queue.one.slot.value());
      if ((receiver_state.load(std::memory_order_relaxed) & kHanded) != 0) std::destroy_at(queue.one.handed.value());
    } else if (bounded) {
      std::destroy_at(&queue.fixed);
    } else {
      std::destroy_at(&queue.growing);
    }
  }

  enum class acquired : std::uint8_t { permit, full, closed };

  /// Takes a free permit if there is one (never while senders are parked).
  acquired try_acquire() noexcept {
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    for (;;) {
      if ((word & kClosed) != 0) return acquired::closed;
      if (word < kOnePermit) return acquired::full;
      // acquire: the slot the permit stands for was emptied by a pop that
      // released it (release_permit).
      if (permits.compare_exchange_weak(word, word - kOnePermit, std::memory_order_acquire, std::memory_order_relaxed))
        return acquired::permit;
    }
  }

  /// Under `mutex`: takes a free permit, or else marks senders parked
  /// (the caller then parks). Closed wins.
  acquired acquire_or_mark_parked() noexcept {
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    if (single) {
      for (;;) {
        if ((word & kClosed) != 0) return acquired::closed;
        if ((word & kSlotMask) == kSlotEmpty) {
          // Claimed leaving kReceiverParked: publish_one wakes the receiver.
          // acquire: as in send_one.
          if (permits.compare_exchange_weak(word, word | kSlotClaimed, std::memory_order_acquire,
                                            std::memory_order_relaxed))
            return acquired::permit;
        } else if ((word & kSendersParked) != 0 ||
                   permits.compare_exchange_weak(word, word | kSendersParked, std::memory_order_relaxed)) {
          return acquired::full;
        }
      }
    }
    for (;;) {
      if ((word & kClosed) != 0) return acquired::closed;
      if (word >= kOnePermit) {
        if (permits.compare_exchange_weak(word, word - kOnePermit, std::memory_order_acquire,
                                          std::memory_order_relaxed))
          return acquired::permit;
      } else if ((word & kSendersParked) != 0 ||
                 permits.compare_exchange_weak(word, word | kSendersParked, std::memory_order_relaxed)) {
        return acquired::full;
      }
    }
  }

  /// Under `mutex`, after a node left `parked_senders`.
  void parked_list_changed() noexcept {
    // relaxed: the flag is only read to decide to take `mutex`, which orders
    // the list itself.
    if (parked_senders.empty()) permits.fetch_and(~kSendersParked, std::memory_order_relaxed);
  }

  /// Gives a permit back: to the first parked sender (woken holding it), or
  /// to the count. Then, if the channel is closed and this made it drained,
  /// wakes the receiver.
  void release_permit() noexcept {
    if (single) return free_one_slot();
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    for (;;) {
      if ((word & kSendersParked) == 0) {
        // seq_cst (release at least: our pop happens-before the next push
        // into the slot); seq_cst also for the closed-and-drained check below.
        if (permits.compare_exchange_weak(word, word + kOnePermit, std::memory_order_seq_cst,
                                          std::memory_order_relaxed)) {
          if ((word & kClosed) != 0 && word + kOnePermit == (all_permits | kClosed)) wake_receiver();
          return;
        }
        continue;
      }
      waker next;
      {
        std::lock_guard lock(mutex);
        if (wait_node* node = parked_senders.pop_front()) {
          node->amount = 1;
          next = std::move(node->wake);
          parked_list_changed();
        }
      }
      if (next) {
        next.wake();
        return;
      }
      word = permits.load(std::memory_order_relaxed);  // the list emptied meanwhile
    }
  }

  /// Closes (idempotent): wakes the parked senders with nothing, and the
  /// receiver if nothing is on its way.
  void close() noexcept {
    std::uint64_t before = 0;
    bool took_receiver = false;
    if (single) {
      before = permits.load(std::memory_order_relaxed);
      std::uint64_t closed;
      do {
        if ((before & kClosed) != 0) return;
        closed = before | kClosed;
        // Empty: closed and drained, so the parked receiver is ours to wake.
        took_receiver = (before & (kSlotMask | kReceiverParked)) == kReceiverParked;
        if (took_receiver) closed &= ~kReceiverParked;
        // acquire: the receiver's waker, if we take it.
      } while (!permits.compare_exchange_weak(before, closed, std::memory_order_acq_rel, std::memory_order_relaxed));
    } else if (bounded) {
      // seq_cst: against the receiver's park handshake (closed_and_drained).
      before = permits.fetch_or(kClosed, std::memory_order_seq_cst);
    } else {
      queue.growing.between_pushes([&] { before = permits.fetch_or(kClosed, std::memory_order_seq_cst); });
    }
    if ((before & kClosed) != 0) return;
    if ((before & kSendersParked) != 0) {
      std::unique_lock lock(mutex);
      permits.fetch_and(~kSendersParked, std::memory_order_relaxed);
      // Nobody parks after the close (acquire_or_mark_parked sees it under
      // the lock), so the batches below drain the list.
      wake_front_while(lock, parked_senders, [](wait_node& node) {
        node.amount = 0;
        return true;
      });
    }
    if (single) {
      if (took_receiver) wake_taken_receiver();
    } else if (closed_and_drained()) {
      wake_receiver();
    }
  }

  [[nodiscard]] bool is_closed() const noexcept { return (permits.load(std::memory_order_acquire) & kClosed) != 0; }
  /// Closed, and every permit is back: no value is queued or on its way.
  [[nodiscard, gnu::always_inline]] bool closed_and_drained() const noexcept {
    if (single) {
      // acquire: as in ready_one (a value taken, a claim given back).
      return (permits.load(std::memory_order_acquire) & (kClosed | kSlotMask)) == (kClosed | kSlotEmpty) &&
             (receiver_state.load(std::memory_order_acquire) & kHanded) == 0;
    }
    if (!bounded) return (permits.load(std::memory_order_seq_cst) & kClosed) != 0 && !queue.growing.ready();
    return (permits.load(std::memory_order_seq_cst) & ~kSendersParked) == (all_permits | kClosed);
  }

  /// Sends `value` now if it need not wait: `permit` (queued, `value` moved
  /// from), `full` (bounded only) or `closed` (`value` untouched). Throws
  /// std::bad_alloc if an unbounded ring cannot grow.
  [[gnu::always_inline]] acquired send_now(T& value) {
    if (single) return send_one(value);
    if (!bounded) {
      if (!queue.growing.push_unless(std::move(value), [this] { return is_closed(); })) return acquired::closed;
      wake_receiver();
      return acquired::permit;
    }
    const acquired got = try_acquire();
    if (got == acquired::permit) push(std::move(value));
    return got;
  }

  /// Bounded, sender holding a permit: queues `value`, wakes the receiver.
  void push(T&& value) noexcept {
    if (single) {
      std::construct_at(queue.one.slot.value(), std::move(value));
      publish_one();
      return;
    }
    queue.fixed.push(std::move(value));
    wake_receiver();
  }

  // ---- receiver side (one receiver operation at a time) ----
  [[nodiscard, gnu::always_inline]] bool ready() const noexcept {
    if (single) return ready_one();
    return bounded ? queue.fixed.ready() : queue.growing.ready();
  }
  /// Takes the oldest value and gives its permit back. Precondition: ready().
  [[gnu::always_inline]] T pop() noexcept {
    if (single) {
      if ((receiver_state.load(std::memory_order_relaxed) & kHanded) != 0) {  // ready_one looked (acquire)
        T value = std::move(*queue.one.handed.value());
        std::destroy_at(queue.one.handed.value());
        // relaxed: only the receiver writes it while it is not parked.
        receiver_state.store(kIdle, std::memory_order_relaxed);
        return value;
      }
      T value = std::move(*queue.one.slot.value());
      std::destroy_at(queue.one.slot.value());
      free_one_slot();
      return value;
    }
    if (!bounded) return queue.growing.pop();
    T value = queue.fixed.pop();
    release_permit();
    return value;
  }
  [[nodiscard]] std::size_t size() const noexcept {
    if (single)
      return ((permits.load(std::memory_order_relaxed) & kSlotMask) != kSlotEmpty ? 1 : 0) +
             ((receiver_state.load(std::memory_order_relaxed) & kHanded) != 0 ? 1 : 0);
    return bounded ? queue.fixed.size() : queue.growing.size();
  }

  /// Receiver: parks with `self` as its waker, unless a value is readable
  /// or the channel is closed and drained (false then: nothing parked).
  /// True: a waker will wake the receiver, after a value is readable or
  /// once closed and drained.
  bool park_receiver_unless_ready(unowned_waker self) noexcept {
    if (single) return park_one(self);
    park_receiver(self);
    // A value (or the close) that came before our waker was visible.
    return !((ready() || closed_and_drained()) && unpark_receiver());
  }

  /// A recv's park is visible to senders (see mpsc_sender::receiver_waiting).
  /// acquire: pairs with the parking CAS / kParked store, so a sender that
  /// saw the park also sees it in its own send.
  [[nodiscard]] bool receiver_waiting() const noexcept {
    if (single) return (permits.load(std::memory_order_acquire) & kReceiverParked) != 0;
    return receiver_state.load(std::memory_order_acquire) == kParked;
  }

  /// Wakes the receiver if it is parked (see the top of this struct).
  void wake_receiver() noexcept {
    // seq_cst: the sender's half of the park handshake.
    if (receiver_state.load(std::memory_order_seq_cst) != kParked) return;
    std::uint8_t expected = kParked;
    // acquire: the receiver wrote the waker before it stored kParked.
    if (!receiver_state.compare_exchange_strong(expected, kTaking, std::memory_order_acquire,
                                                std::memory_order_relaxed))
      return;
    receiver_waker.wake();
    // release: our last use of the receiver's header (and of the waker)
    // comes before the receiver sees kIdle (a next recv writing the waker,
    // or a destroyed recv letting its task finish).
    receiver_state.store(kIdle, std::memory_order_release);
  }

  /// Receiver: publishes its waker. Precondition: not parked.
  void park_receiver(unowned_waker self) noexcept {
    // A waker may still be waking us for an earlier recv (we may run before
    // it has stored kIdle) or the aborted frame of one.
    for (unsigned round = 0; receiver_state.load(std::memory_order_acquire) == kTaking;) spin_pause(round);
    receiver_waker = self;
    // seq_cst: the receiver's half of the park handshake.
    receiver_state.store(kParked, std::memory_order_seq_cst);
  }

  /// Receiver: takes its waker back. False if a waker already took it (the
  /// receiver is being woken).
  bool unpark_receiver() noexcept {
    std::uint8_t expected = kParked;
    return receiver_state.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed);
  }

  /// A parked recv that goes away unresumed: takes its waker back, or else
  /// waits until the waker that took it is done with the task's header (it
  /// is a few instructions away from kIdle: see the top of this struct).
  void unpark_receiver_or_wait() noexcept {
    if (single) {
      std::uint64_t word = permits.load(std::memory_order_relaxed);
      while ((word & kReceiverParked) != 0) {
        // relaxed: nothing to publish; the waker is ours again.
        if (permits.compare_exchange_weak(word, word & ~kReceiverParked, std::memory_order_relaxed,
                                          std::memory_order_relaxed)) {
          receiver_state.store(kIdle, std::memory_order_relaxed);  // kActive off too
          return;
        }
      }
      // kActive off, a handed value kept for the next recv. relaxed: ours
      // alone once the waker is done (the wait's acquire).
      receiver_state.store(wait_until_receiver_idle() & kHanded, std::memory_order_relaxed);
      return;
    }
    if (unpark_receiver()) return;
    for (unsigned round = 0; receiver_state.load(std::memory_order_acquire) == kTaking;) spin_pause(round);
  }

  // ---- capacity 1 (see "Capacity 1: the slot word") ----

  /// send_now for capacity 1: claims the empty slot (and the parked
  /// receiver's waker with it), moves `value` in, makes it readable.
  acquired send_one(T& value) noexcept {
    if constexpr (std::is_trivially_copyable_v<T> && sizeof(T) <= 2 * sizeof(void*)) {
      // Copied before the claim, into registers: moved in after it, the
      // value was read again from the sender's awaiter (the claim's acquire
      // keeps the compiler from reusing an earlier read). A trivial move
      // leaves `value` as it was, for a send that fails.
      T copy(std::move(value));
      return claim_one(copy);
    } else {
      return claim_one(value);
    }
  }
  /// send_one's work.
  [[gnu::always_inline]] acquired claim_one(T& value) noexcept {
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    for (;;) {
      // Closed or occupied: one test for both.
      if ((word & (kClosed | kSlotMask)) != kSlotEmpty) {
        if ((word & kClosed) != 0) return acquired::closed;
        return acquired::full;  // also while senders are parked
      }
      // Two CASes, one per case, so that each knows its case after it (one
      // test before the claim instead of building the claim from the word
      // and testing it again after). acquire: the receiver read the last
      // value before it emptied the slot (release), and wrote its waker
      // before parking (release).
      if ((word & kReceiverParked) != 0) {
        // A parked receiver: the hand-off, the slot stays empty
        // (kReceiverParked off). The receiver took any earlier handed value
        // before it parked.
        if (permits.compare_exchange_weak(word, word & ~kReceiverParked, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
          std::construct_at(queue.one.handed.value(), std::move(value));
          wake_taken_receiver(kHanded);  // kHanded with kIdle: one store releases both
          return acquired::permit;
        }
      } else if (permits.compare_exchange_weak(word, word | kSlotClaimed, std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
        std::construct_at(queue.one.slot.value(), std::move(value));
        publish_one();
        return acquired::permit;
      }
    }
  }

  /// Sender holding kSlotClaimed, its value moved in: makes it readable and
  /// wakes the receiver if it parked meanwhile.
  void publish_one() noexcept {
    std::uint64_t word = permits.load(std::memory_order_relaxed);
    // release: the value; acquire: the waker of a receiver that parked.
    while (!permits.compare_exchange_weak(word, (word & ~(kSlotMask | kReceiverParked)) | kSlotFull,
                                          std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
    if ((word & kReceiverParked) != 0) wake_taken_receiver();
  }

  /// Whoever took kReceiverParked away: wakes the receiver, then lets it
  /// go on: kIdle, with kActive (the receiver is still in recv) and
  /// `handed` (kHanded after a hand-off; it is clear while the receiver is
  /// parked: it took any handed value first).
  void wake_taken_receiver(std::uint8_t handed = 0) noexcept {
    receiver_waker.wake();
    // release: our last use of the receiver's header (and of the waker), and
    // a handed value, come before the receiver sees kIdle.
    receiver_state.store(kIdle | kActive | handed, std::memory_order_release);
  }

  /// Receiver, capacity 1: waits until no waker is busy with it; returns
  /// `receiver_state` as it saw it then (kIdle, with kHanded and kActive
  /// as they are).
  [[gnu::always_inline]] std::uint8_t wait_until_receiver_idle() const noexcept {
    // acquire: pairs with wake_taken_receiver's release. The wait out of
    // line: its loop's setup was hoisted above the usual first look.
    const std::uint8_t r = receiver_state.load(std::memory_order_acquire);
    if ((r & kStateMask) != kIdle) [[unlikely]]
      return spin_until_receiver_idle();
    return r;
  }
  /// The wait of wait_until_receiver_idle.
  [[gnu::noinline, gnu::cold]] std::uint8_t spin_until_receiver_idle() const noexcept {
    for (unsigned round = 0;; spin_pause(round)) {
      // acquire: as in wait_until_receiver_idle.
      const std::uint8_t r = receiver_state.load(std::memory_order_acquire);
      if ((r & kStateMask) == kIdle) return r;
    }
  }

  /// Empties the slot (the receiver took the value, or a claim is given back
  /// unused): hands it to the first parked sender (woken holding it as
  /// kSlotClaimed), or else leaves it empty and, if that made the channel
  /// closed and drained, wakes a parked receiver.
  void free_one_slot() noexcept {
    do {
      std::uint64_t word = permits.load(std::memory_order_relaxed);
      while ((word & kSendersParked) == 0) {
        const bool drained = (word & (kClosed | kReceiverParked)) == (kClosed | kReceiverParked);
        const std::uint64_t emptied = word & ~(kSlotMask | (drained ? kReceiverParked : 0));
        // release: our read of the value comes before the next claimant's
        // write; acquire: the receiver's waker, if we take it.
        if (permits.compare_exchange_weak(word, emptied, std::memory_order_acq_rel, std::memory_order_relaxed)) {
          if (drained) wake_taken_receiver();
          return;
        }
      }
    } while (!hand_slot_to_parked_sender());  // false: the list emptied meanwhile (the flag with it)
  }

  /// free_one_slot with senders parked (out of line: the common path stays
  /// a few instructions). False if none is parked any more.
  [[gnu::noinline]] bool hand_slot_to_parked_sender() noexcept {
    waker next;
    {
      std::lock_guard lock(mutex);
      if (wait_node* node = parked_senders.pop_front()) {
        node->amount = 1;
        next = std::move(node->wake);
        // The slot stays occupied, claimed by the woken sender; the flag
        // goes with the last parked sender (under `mutex`, as always).
        const std::uint64_t keep = parked_senders.empty() ? ~kSendersParked : ~std::uint64_t{0};
        std::uint64_t word = permits.load(std::memory_order_relaxed);
        // release: our read of the value comes before the woken sender's
        // write (the wake hands it on as well).
        while (!permits.compare_exchange_weak(word, ((word & ~kSlotMask) | kSlotClaimed) & keep,
                                              std::memory_order_release, std::memory_order_relaxed)) {
        }
      }
    }
    if (!next) return false;
    next.wake();
    return true;
  }

  /// Receiver, capacity 1: a value readable now?
  [[nodiscard, gnu::always_inline]] bool ready_one() const noexcept {
    // A handed value: every recv that can see it comes after the hand-off's
    // kIdle store (a woken recv waits for it, an aborted one's destructor
    // too, and only then can another recv start). acquire: pairs with that
    // store, for a recv on another thread.
    if ((receiver_state.load(std::memory_order_acquire) & kHanded) != 0) return true;
    // acquire: a kSlotFull value (publish_one's release).
    return (permits.load(std::memory_order_acquire) & kSlotMask) == kSlotFull;
  }

  /// The receiver's take for capacity 1 (ready_one, pop and
  /// closed_and_drained in one, the slot word read once): the oldest value
  /// into `out` (true), or true with `out` empty if the channel is closed
  /// and drained, else false. Reading kHanded first and the word after is
  /// as good as closed_and_drained's order: only this receiver's park lets
  /// a hand-off in, and it is not parked while it takes.
  [[gnu::always_inline]] bool take_one(value_out<T> out) noexcept {
    // acquire: as in ready_one.
    if ((receiver_state.load(std::memory_order_acquire) & kHanded) != 0) {
      take_handed(out);
      return true;
    }
    return take_from_slot(out);
  }

  /// What take_one_or_park found.
  enum class recv_one : std::uint8_t { taken, park, concurrent };

  /// take_one for a recv that parks unless it takes: also tells whether
  /// another recv is in progress (kActive), in the same look at
  /// `receiver_state`. Not `taken`: nothing changed.
  [[gnu::always_inline]] recv_one take_one_or_park(value_out<T> out) noexcept {
    // acquire: as in ready_one. The usual kIdle in one compare with memory
    // (atomic_test.hpp), else read again and looked at whole: kActive (a
    // concurrent recv), a handed value, or kIdle after all (a concurrent
    // recv, misuse, changed it since the first look: as if seen first).
    if (!acquire_byte_equals(receiver_state, kIdle)) [[unlikely]] {
      const std::uint8_t r = receiver_state.load(std::memory_order_acquire);
      if ((r & kActive) != 0) return recv_one::concurrent;
      if ((r & kHanded) != 0) {
        take_handed(out);
        return recv_one::taken;
      }
    }
    return take_from_slot(out) ? recv_one::taken : recv_one::park;
  }

  /// take_one's handed value (kHanded is set, seen with acquire).
  [[gnu::always_inline]] void take_handed(value_out<T> out) noexcept {
    out.emplace(std::move(*queue.one.handed.value()));
    std::destroy_at(queue.one.handed.value());
    // relaxed: only the receiver writes it while it is not parked.
    receiver_state.store(kIdle, std::memory_order_relaxed);
  }

  /// take_one after it found no handed value: the slot word's part.
  [[gnu::always_inline]] bool take_from_slot(value_out<T> out) noexcept {
    // Empty and open first (one test with memory, atomic_test.hpp): the
    // recv that is going to park. Else read again (a later look: whatever
    // it finds, the park's CAS sees what came since).
    if (acquire_bits_clear(permits, kClosed | kSlotMask)) return false;
    const std::uint64_t word = permits.load(std::memory_order_acquire);
    if ((word & kSlotMask) == kSlotFull) {
      out.emplace(std::move(*queue.one.slot.value()));
      std::destroy_at(queue.one.slot.value());
      free_one_slot();
      return true;
    }
    return (word & (kClosed | kSlotMask)) == (kClosed | kSlotEmpty);
  }

  /// Receiver, capacity 1, resumed after parking: waits until its waker is
  /// done with it (wait_until_receiver_idle), then takes the handed value
  /// if there is one (as take_one's first step), else returns empty. The
  /// usual case, kIdle with kHanded, is one load and one compare. Written
  /// out, not shared with take_one: built through a common helper (an
  /// optional filled in place) the value went through the frame, +4.5%
  /// instructions on ping_pong.
  [[gnu::always_inline]] std::optional<T> take_handed_when_idle() noexcept {
    // acquire: pairs with wake_taken_receiver's release (a handed value, and
    // the waker's last use of our header). The usual case in one compare
    // with memory (atomic_test.hpp), else read again.
    if (!acquire_byte_equals(receiver_state, std::uint8_t{kIdle | kActive | kHanded})) [[unlikely]] {
      std::uint8_t r = receiver_state.load(std::memory_order_acquire);
      if ((r & kStateMask) != kIdle) r = spin_until_receiver_idle();
      if ((r & kHanded) == 0) {
        // relaxed: ours alone now (kActive off).
        receiver_state.store(kIdle, std::memory_order_relaxed);
        return std::nullopt;
      }
    }
    std::optional<T> out(std::in_place, std::move(*queue.one.handed.value()));
    std::destroy_at(queue.one.handed.value());
    // relaxed: only the receiver writes it while it is not parked (kActive
    // off too).
    receiver_state.store(kIdle, std::memory_order_relaxed);
    return out;
  }

  union values {
    values() noexcept {}
    ~values() {}
    slot_ring<T> fixed;
    locked_ring<T> growing;
    struct {
      one_slot<T> slot;    // the channel's one place
      one_slot<T> handed;  // a value handed to a parked receiver (see "Hand-off")
    } one;
  };

  // Layout: the head's fields first (see there), then the value, in the
  // same cache line for a small T; the rarely used rest (senders, the
  // lock, the parked senders) follows.
  values queue;
  const std::uint64_t all_permits;
  std::atomic<std::size_t> senders{1};
  std::mutex mutex;  // guards parked_senders
  wait_list parked_senders;
};

}  // namespace warden::detail
