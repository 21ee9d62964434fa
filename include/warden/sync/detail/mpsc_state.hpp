// Internal: the shared state of one mpsc channel — a counting semaphore of
// free slots (the *permits*), the queue of values, the parked senders and
// the receiver's waker. Sending and receiving take no lock unless a sender
// has to park; see mpsc_state below.
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/detail/wait_list.hpp>
#include <warden/sync/detail/channel.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>

namespace warden::detail {

/// Waits (briefly) for another thread to finish a step of a few
/// instructions that it has already started.
inline void spin_pause(unsigned& round) noexcept {
  if (++round < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    std::this_thread::yield();
  }
}

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
    // the data. With one slot, one permit: the holder is the only producer
    // (the previous one's store happens-before our permit, through the
    // receiver's pop and permit release), so a plain load and store do.
    std::uint64_t pos;
    if (capacity_ == 1) {
      pos = tail_.load(std::memory_order_relaxed);
      tail_.store(pos + 1, std::memory_order_relaxed);
    } else {
      pos = tail_.fetch_add(1, std::memory_order_relaxed);
    }
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
  /// The slot of a position (no division for power-of-two capacities, as
  /// the common 1 is).
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
template <class T>
struct mpsc_state {
  static constexpr std::uint64_t kClosed = 1;
  static constexpr std::uint64_t kSendersParked = 2;
  static constexpr std::uint64_t kOnePermit = 4;
  static constexpr std::uint64_t kMaxCapacity = 1ull << 60;
  static constexpr std::uint8_t kIdle = 0, kParked = 1, kTaking = 2;

  /// `capacity` 0 means unbounded.
  explicit mpsc_state(std::size_t capacity)
      : bounded(capacity != 0), all_permits(static_cast<std::uint64_t>(capacity) * kOnePermit), permits(all_permits) {
    if (bounded)
      std::construct_at(&queue.fixed, capacity);
    else
      std::construct_at(&queue.growing);
  }
  mpsc_state(const mpsc_state&) = delete;
  mpsc_state& operator=(const mpsc_state&) = delete;
  ~mpsc_state() {
    if (bounded)
      std::destroy_at(&queue.fixed);
    else
      std::destroy_at(&queue.growing);
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
    // seq_cst: against the receiver's park handshake (closed_and_drained).
    if (bounded)
      before = permits.fetch_or(kClosed, std::memory_order_seq_cst);
    else
      queue.growing.between_pushes([&] { before = permits.fetch_or(kClosed, std::memory_order_seq_cst); });
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
    if (closed_and_drained()) wake_receiver();
  }

  [[nodiscard]] bool is_closed() const noexcept { return (permits.load(std::memory_order_acquire) & kClosed) != 0; }
  /// Closed, and every permit is back: no value is queued or on its way.
  [[nodiscard]] bool closed_and_drained() const noexcept {
    if (!bounded) return (permits.load(std::memory_order_seq_cst) & kClosed) != 0 && !queue.growing.ready();
    return (permits.load(std::memory_order_seq_cst) & ~kSendersParked) == (all_permits | kClosed);
  }

  /// Sends `value` now if it need not wait: `permit` (queued, `value` moved
  /// from), `full` (bounded only) or `closed` (`value` untouched). Throws
  /// std::bad_alloc if an unbounded ring cannot grow.
  acquired send_now(T& value) {
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
    queue.fixed.push(std::move(value));
    wake_receiver();
  }

  // ---- receiver side (one receiver operation at a time) ----
  [[nodiscard]] bool ready() const noexcept { return bounded ? queue.fixed.ready() : queue.growing.ready(); }
  /// Takes the oldest value and gives its permit back. Precondition: ready().
  T pop() noexcept {
    if (!bounded) return queue.growing.pop();
    T value = queue.fixed.pop();
    release_permit();
    return value;
  }
  [[nodiscard]] std::size_t size() const noexcept { return bounded ? queue.fixed.size() : queue.growing.size(); }

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
    if (unpark_receiver()) return;
    for (unsigned round = 0; receiver_state.load(std::memory_order_acquire) == kTaking;) spin_pause(round);
  }

  union values {
    values() noexcept {}
    ~values() {}
    slot_ring<T> fixed;
    locked_ring<T> growing;
  };

  const bool bounded;
  const std::uint64_t all_permits;
  std::atomic<std::uint64_t> permits;
  values queue;
  std::atomic<std::uint8_t> receiver_state{kIdle};
  // A recv is waiting (for receiver_waiting and to catch a second recv).
  // Written by the receiver only, relaxed: a snapshot, no ordering.
  std::atomic<bool> receiver_parked{false};
  unowned_waker receiver_waker;  // see "The receiver's waker"
  std::atomic<std::size_t> senders{1};
  std::mutex mutex;  // guards parked_senders
  wait_list parked_senders;
};

}  // namespace warden::detail
