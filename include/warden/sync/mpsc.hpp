// warden/sync/mpsc.hpp — multi-producer, single-consumer channels:
// mpsc<T>(capacity), mpsc_unbounded<T>(), mpsc_sender<T>, mpsc_receiver<T>.
//
// A channel carries values of `T` from any number of senders to one
// receiver, in the order they were sent. A bounded channel holds at most
// `capacity` values: `send` waits while it is full (back-pressure). An
// unbounded one never makes a sender wait.
//
//   auto [tx, rx] = warden::mpsc<std::string>(16);
//   warden::spawn([](warden::mpsc_sender<std::string> tx) -> warden::task<void> {
//     auto sent = co_await tx.send(std::string("hello"));   // waits while full
//     if (!sent) co_return;                                 // closed: value in sent.error()
//   }, tx);
//   while (std::optional<std::string> msg = co_await rx.recv()) use(*msg);
//   // nullopt: every sender is gone (or rx.close()) and the queue is drained
//
// # Closing
// A channel closes when the receiver calls `close()` or is destroyed, or
// when the last sender is destroyed. After that every send fails and gives
// its value back; the receiver still gets every value sent before the close,
// in order, and then `nullopt`. Values still queued when the receiver is
// destroyed are destroyed with it.
//
// A sender passed by value to a spawned task (as a parameter or a lambda
// capture) is destroyed when that task finishes: the runtime destroys a
// finished task's frame at once, keeping only its result for the handle.
//
// # Cancellation
// * A task aborted while parked in `send` (channel full) sends nothing: its
//   value is destroyed with the frame. If it had already been granted a
//   free slot, the slot passes to the next waiting sender.
// * A task aborted while parked in `recv` loses no message: values stay in
//   the queue until a receiver resumes and takes them.
//
// # Memory
// A bounded channel allocates its ring of `capacity` slots once, when it is
// created; sending and receiving allocate nothing. An unbounded channel
// starts with 16 slots and doubles its ring when it is full.
//
// # Requirements and threading
// `T` must be nothrow-move-constructible. Senders are copyable: each copy
// is a producer, usable from any thread or task; one sender object is not
// meant to be used by two threads at once (copy it instead). The receiver
// is move-only; one `recv` at a time (a second concurrent one throws
// `usage_error`). `close()`, `size()` and `waiting_senders()` may be called
// (e.g. by another task holding a pointer) while a `recv` waits. Awaiting
// `send` / `recv` outside a warden task throws `usage_error` when it would
// have to wait.
//
// # GCC 12
// `co_await tx.send(std::string("x"))` and `co_await tx.send(std::move(v))`
// are safe. GCC 12 miscompiles aggregate or braced temporaries inside a
// `co_await` expression (`co_await tx.send(message{std::string("x")})`, or
// `tx.send({...})`): build such a value in a local first.
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/detail/wait_list.hpp>
#include <warden/errors.hpp>
#include <warden/sync/detail/channel.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace warden {

/// Why `try_send` refused a value.
enum class try_send_failure : std::uint8_t {
  full,    ///< a bounded channel holds `capacity` values (or slots promised to waiting senders)
  closed,  ///< the channel is closed: no value will be received any more
};

/// The error of `mpsc_sender::try_send`: why, and the value given back.
template <class T>
struct try_send_error {
  try_send_failure reason;
  T value;

  [[nodiscard]] bool is_full() const noexcept { return reason == try_send_failure::full; }
  [[nodiscard]] bool is_closed() const noexcept { return reason == try_send_failure::closed; }
};

/// Why `mpsc_receiver::try_recv` returned no value.
enum class try_recv_error : std::uint8_t {
  empty,   ///< nothing queued now; senders remain
  closed,  ///< closed and drained: no value will ever come
};

template <class T>
class mpsc_sender;
template <class T>
class mpsc_receiver;

namespace detail {

/// The shared state of one mpsc channel.
///
/// Everything below is guarded by `mutex`; wakers are taken out under it and
/// woken after it is released.
///
/// Invariants:
/// * `queue.size() + reserved <= capacity` (bounded). `reserved` counts
///   slots promised to woken senders that have not yet put their value in.
/// * A sender parks only when there is no room; whenever room appears (a
///   value leaves, a promised slot is given back) and a sender is parked,
///   the slot is promised to the first parked sender at once (FIFO, no
///   barging: a new sender sees no room while anyone is parked).
/// * A parked sender's node has `amount` 1 when it was woken holding a
///   promised slot, 0 when woken by the close.
/// * `receiver_waker` is set only while the receiver is parked; it is taken
///   by the push that makes the queue non-empty, or by the close. Only the
///   receiver pops, so a woken receiver always finds a value or the close.
/// * `closed` is sticky. Once closed no value enters the queue.
///
/// Ownership: senders and the receiver hold the state by shared_ptr;
/// awaiters point into it while their sender / receiver is alive.
template <class T>
struct mpsc_state {
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

  explicit mpsc_state(std::size_t bound) : queue(bound == unbounded ? 16 : bound), capacity(bound) {}

  [[nodiscard]] bool has_room() const noexcept { return queue.size() + reserved < capacity; }

  /// Appends (growing an unbounded ring) and returns the receiver's waker
  /// if it was parked. Precondition: !closed && has_room().
  waker push(T&& value) {
    if (queue.full()) queue.grow();  // only unbounded rings are ever full here
    queue.push(std::move(value));
    return std::move(receiver_waker);
  }

  /// Promises the free slot to the first parked sender, if any; returns its
  /// waker (to wake after unlocking).
  waker grant_room() noexcept {
    if (closed || !has_room()) return {};
    wait_node* node = parked_senders.pop_front();
    if (node == nullptr) return {};
    node->amount = 1;
    ++reserved;
    return std::move(node->wake);
  }

  /// Marks the channel closed and wakes everybody parked. Takes `lock`
  /// held, returns with it released.
  void close(std::unique_lock<std::mutex>& lock) noexcept {
    closed = true;
    waker receiver = std::move(receiver_waker);
    wake_front_while(lock, parked_senders, [](wait_node& node) {
      node.amount = 0;
      return true;
    });
    receiver.wake();
  }

  /// Removes and returns the oldest value, promising its slot to a parked
  /// sender (`to_wake`). Precondition: !queue.empty().
  T pop(waker& to_wake) noexcept {
    T value = queue.pop();
    to_wake = grant_room();
    return value;
  }

  std::mutex mutex;
  ring<T> queue;
  const std::size_t capacity;
  std::size_t reserved = 0;
  std::size_t senders = 1;
  bool closed = false;
  bool receiver_parked = false;
  waker receiver_waker;
  wait_list parked_senders;
};

}  // namespace detail

/// Awaitable returned by `mpsc_sender::send`; yields
/// `std::expected<void, T>` (the value back when the channel is closed).
/// Owns the value until it enters the queue. Neither copyable nor movable:
/// `co_await` it where it is made.
template <class T>
class [[nodiscard]] mpsc_send_awaiter {
 public:
  mpsc_send_awaiter(const mpsc_send_awaiter&) = delete;
  mpsc_send_awaiter& operator=(const mpsc_send_awaiter&) = delete;
  ~mpsc_send_awaiter() {
    if (!parked_) return;
    // Aborted while parked: leave the queue, or hand a promised slot on.
    detail::deferred_wake next;
    std::lock_guard lock(state_->mutex);
    if (node_.status == detail::wait_node::state::queued) {
      state_->parked_senders.remove(&node_);
    } else if (node_.amount == 1) {
      --state_->reserved;
      next.target = state_->grant_room();
    }
  }

  bool await_ready() {
    detail::deferred_wake receiver;
    std::lock_guard lock(state_->mutex);
    return try_complete(receiver.target);
  }

  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::waker self = detail::suspend_current(awaiting);
    detail::deferred_wake receiver;
    std::lock_guard lock(state_->mutex);
    if (try_complete(receiver.target)) return false;
    node_.wake = std::move(self);
    node_.amount = 0;
    state_->parked_senders.push_back(&node_);
    parked_ = true;
    return true;
  }

  std::expected<void, T> await_resume() {
    if (parked_) {
      // Woken: holding a promised slot, or by the close.
      detail::deferred_wake receiver;
      std::lock_guard lock(state_->mutex);
      parked_ = false;
      node_.status = detail::wait_node::state::idle;
      if (node_.amount == 1) --state_->reserved;
      if (!state_->closed) {
        receiver.target = state_->push(std::move(*value_));
        value_.reset();
      }
    }
    if (value_.has_value()) return std::unexpected(std::move(*value_));
    return {};
  }

 private:
  friend class mpsc_sender<T>;
  mpsc_send_awaiter(detail::mpsc_state<T>* state, T&& value) : state_(state), value_(std::move(value)) {}

  /// Under the lock: finishes the send if it need not wait (closed: keep the
  /// value to give back; room: enqueue it). The receiver's waker goes to
  /// `receiver`, to be woken after the lock is released.
  bool try_complete(detail::waker& receiver) {
    if (state_->closed) return true;
    if (!state_->has_room() || !state_->parked_senders.empty()) return false;
    receiver = state_->push(std::move(*value_));
    value_.reset();
    return true;
  }

  detail::mpsc_state<T>* state_;
  std::optional<T> value_;  // engaged until the value is queued
  detail::wait_node node_;
  bool parked_ = false;  // suspended and not yet resumed: node_ belongs to the channel
};

/// Awaitable returned by `mpsc_receiver::recv`; yields `std::optional<T>`
/// (nullopt: closed and drained). Neither copyable nor movable.
template <class T>
class [[nodiscard]] mpsc_recv_awaiter {
 public:
  mpsc_recv_awaiter(const mpsc_recv_awaiter&) = delete;
  mpsc_recv_awaiter& operator=(const mpsc_recv_awaiter&) = delete;
  ~mpsc_recv_awaiter() {
    if (!parked_) return;
    // Aborted while parked. Nothing was handed to us (values stay queued
    // until taken), so only our waker has to go.
    detail::waker stale;
    std::lock_guard lock(state_->mutex);
    state_->receiver_parked = false;
    stale = std::move(state_->receiver_waker);
  }

  bool await_ready() {
    detail::deferred_wake sender;
    std::lock_guard lock(state_->mutex);
    return try_take(sender.target);
  }

  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::waker self = detail::suspend_current(awaiting);
    detail::deferred_wake sender;
    std::lock_guard lock(state_->mutex);
    if (try_take(sender.target)) return false;
    if (state_->receiver_parked) detail::throw_channel_concurrent_recv("mpsc_receiver::recv");
    state_->receiver_waker = std::move(self);
    state_->receiver_parked = true;
    parked_ = true;
    return true;
  }

  std::optional<T> await_resume() {
    if (parked_) {
      // Woken by a push (a value is queued; only we pop) or by the close.
      detail::deferred_wake sender;
      std::lock_guard lock(state_->mutex);
      parked_ = false;
      state_->receiver_parked = false;
      (void)try_take(sender.target);
    }
    return std::move(value_);
  }

 private:
  friend class mpsc_receiver<T>;
  explicit mpsc_recv_awaiter(detail::mpsc_state<T>* state) noexcept : state_(state) {}

  /// Under the lock: takes the oldest value, or sees closed-and-drained.
  bool try_take(detail::waker& sender) {
    if (!state_->queue.empty()) {
      value_.emplace(state_->pop(sender));
      return true;
    }
    return state_->closed;
  }

  detail::mpsc_state<T>* state_;
  std::optional<T> value_;
  bool parked_ = false;
};

/// The sending side of an mpsc channel. Copyable: every copy is a sender,
/// and the channel closes when the last one is destroyed. A default
/// constructed or moved-from sender is empty: using it throws usage_error.
template <class T>
class mpsc_sender {
 public:
  mpsc_sender() noexcept = default;
  mpsc_sender(const mpsc_sender& other) : state_(other.state_) {
    if (state_ == nullptr) return;
    std::lock_guard lock(state_->mutex);
    ++state_->senders;
  }
  mpsc_sender(mpsc_sender&& other) noexcept = default;
  mpsc_sender& operator=(const mpsc_sender& other) {
    if (this != &other) *this = mpsc_sender(other);
    return *this;
  }
  mpsc_sender& operator=(mpsc_sender&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~mpsc_sender() { release(); }

  /// Sends `value`, waiting while a bounded channel is full (senders are
  /// served in the order they started waiting). Yields
  /// `std::expected<void, T>`: success once the value is queued, or the
  /// value back if the channel is (or becomes, while waiting) closed.
  /// Throws usage_error on an empty sender, or outside a warden task when it
  /// has to wait.
  /// Cancellation: aborted while waiting, nothing is sent; the value is
  /// destroyed with the awaiting frame.
  mpsc_send_awaiter<T> send(T value) { return mpsc_send_awaiter<T>(checked("mpsc_sender::send"), std::move(value)); }

  /// Queues `value` now if it can: fails with `full` (bounded channel at
  /// capacity, or every free slot promised to waiting senders) or `closed`,
  /// giving the value back. On an unbounded channel it fails only when
  /// closed: it is the synchronous send. Throws usage_error on an empty
  /// sender; std::bad_alloc if an unbounded ring cannot grow.
  std::expected<void, try_send_error<T>> try_send(T value) {
    detail::mpsc_state<T>* state = checked("mpsc_sender::try_send");
    detail::deferred_wake receiver;
    std::lock_guard lock(state->mutex);
    if (state->closed) return std::unexpected(try_send_error<T>{try_send_failure::closed, std::move(value)});
    if (!state->has_room() || !state->parked_senders.empty())
      return std::unexpected(try_send_error<T>{try_send_failure::full, std::move(value)});
    receiver.target = state->push(std::move(value));
    return {};
  }

  /// True once the channel is closed (the receiver closed it or is gone).
  [[nodiscard]] bool is_closed() const {
    detail::mpsc_state<T>* state = checked("mpsc_sender::is_closed");
    std::lock_guard lock(state->mutex);
    return state->closed;
  }

  /// True while a `recv` of the receiver is waiting (parked, or woken and
  /// not yet resumed). A snapshot, for tests and metrics. Throws usage_error
  /// on an empty sender.
  [[nodiscard]] bool receiver_waiting() const {
    detail::mpsc_state<T>* state = checked("mpsc_sender::receiver_waiting");
    std::lock_guard lock(state->mutex);
    return state->receiver_parked;
  }

  /// False for an empty (default-constructed or moved-from) sender.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  template <class U>
  friend std::pair<mpsc_sender<U>, mpsc_receiver<U>> mpsc(std::size_t capacity);
  template <class U>
  friend std::pair<mpsc_sender<U>, mpsc_receiver<U>> mpsc_unbounded();
  explicit mpsc_sender(std::shared_ptr<detail::mpsc_state<T>> state) noexcept : state_(std::move(state)) {}

  detail::mpsc_state<T>* checked(const char* operation) const {
    if (state_ == nullptr) detail::throw_channel_empty_handle(operation);
    return state_.get();
  }

  void release() noexcept {
    if (state_ == nullptr) return;
    {
      std::unique_lock lock(state_->mutex);
      if (--state_->senders == 0 && !state_->closed) state_->close(lock);
    }
    state_.reset();
  }

  std::shared_ptr<detail::mpsc_state<T>> state_;
};

/// The receiving side of an mpsc channel. Move-only. Destroying it closes
/// the channel and destroys the values still queued.
template <class T>
class mpsc_receiver {
 public:
  mpsc_receiver() noexcept = default;
  mpsc_receiver(mpsc_receiver&&) noexcept = default;
  mpsc_receiver& operator=(mpsc_receiver&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  mpsc_receiver(const mpsc_receiver&) = delete;
  mpsc_receiver& operator=(const mpsc_receiver&) = delete;
  ~mpsc_receiver() { release(); }

  /// Waits for the next value. Yields it, or nullopt once the channel is
  /// closed and every value sent before the close was received. Throws
  /// usage_error on an empty receiver, when another `recv` of this receiver
  /// is already waiting, or outside a warden task when it has to wait.
  /// Cancellation: aborted while waiting, no value is lost; the next
  /// `recv` gets it.
  mpsc_recv_awaiter<T> recv() { return mpsc_recv_awaiter<T>(checked("mpsc_receiver::recv")); }

  /// The next value if one is queued; otherwise `empty`, or `closed` once
  /// closed and drained. Throws usage_error on an empty receiver.
  std::expected<T, try_recv_error> try_recv() {
    detail::mpsc_state<T>* state = checked("mpsc_receiver::try_recv");
    detail::deferred_wake sender;
    std::lock_guard lock(state->mutex);
    if (!state->queue.empty()) return state->pop(sender.target);
    return std::unexpected(state->closed ? try_recv_error::closed : try_recv_error::empty);
  }

  /// Closes the channel: every later or waiting send fails and gives its
  /// value back; values already queued stay and are received in order,
  /// then `recv` yields nullopt. Idempotent. Throws usage_error on an empty
  /// receiver.
  void close() {
    detail::mpsc_state<T>* state = checked("mpsc_receiver::close");
    std::unique_lock lock(state->mutex);
    if (!state->closed) state->close(lock);
  }

  /// Values queued now (a snapshot).
  [[nodiscard]] std::size_t size() const {
    detail::mpsc_state<T>* state = checked("mpsc_receiver::size");
    std::lock_guard lock(state->mutex);
    return state->queue.size();
  }

  /// Senders parked in `send` because the channel is full (a snapshot, for
  /// tests and metrics). Throws usage_error on an empty receiver.
  [[nodiscard]] std::size_t waiting_senders() const {
    detail::mpsc_state<T>* state = checked("mpsc_receiver::waiting_senders");
    std::lock_guard lock(state->mutex);
    return detail::count(state->parked_senders);
  }

  /// False for an empty (default-constructed or moved-from) receiver.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  template <class U>
  friend std::pair<mpsc_sender<U>, mpsc_receiver<U>> mpsc(std::size_t capacity);
  template <class U>
  friend std::pair<mpsc_sender<U>, mpsc_receiver<U>> mpsc_unbounded();
  explicit mpsc_receiver(std::shared_ptr<detail::mpsc_state<T>> state) noexcept : state_(std::move(state)) {}

  detail::mpsc_state<T>* checked(const char* operation) const {
    if (state_ == nullptr) detail::throw_channel_empty_handle(operation);
    return state_.get();
  }

  void release() noexcept {
    if (state_ == nullptr) return;
    // Close, and destroy what is queued outside the lock (a value's
    // destructor may use this very channel, e.g. a queued sender).
    {
      std::unique_lock lock(state_->mutex);
      if (!state_->closed) {
        state_->close(lock);
        lock.lock();
      }
      detail::ring<T> leftover(std::move(state_->queue));
      lock.unlock();
    }
    state_.reset();
  }

  std::shared_ptr<detail::mpsc_state<T>> state_;
};

/// Creates a bounded channel holding at most `capacity` values (its ring is
/// allocated now). Throws usage_error if `capacity` is 0 (use
/// mpsc_unbounded for no limit), std::bad_alloc if the ring cannot be
/// allocated.
template <class T>
std::pair<mpsc_sender<T>, mpsc_receiver<T>> mpsc(std::size_t capacity) {
  static_assert(std::is_nothrow_move_constructible_v<T>, "mpsc<T>: T must be nothrow-move-constructible");
  if (capacity == 0)
    detail::throw_channel_zero_capacity("mpsc", "for a channel without a limit use mpsc_unbounded<T>()");
  if (capacity == detail::mpsc_state<T>::unbounded) --capacity;
  auto state = std::make_shared<detail::mpsc_state<T>>(capacity);
  return {mpsc_sender<T>(state), mpsc_receiver<T>(state)};
}

/// Creates an unbounded channel: sends never wait (`try_send` is the
/// synchronous send); the ring grows by doubling.
template <class T>
std::pair<mpsc_sender<T>, mpsc_receiver<T>> mpsc_unbounded() {
  static_assert(std::is_nothrow_move_constructible_v<T>, "mpsc_unbounded<T>: T must be nothrow-move-constructible");
  auto state = std::make_shared<detail::mpsc_state<T>>(detail::mpsc_state<T>::unbounded);
  return {mpsc_sender<T>(state), mpsc_receiver<T>(state)};
}

}  // namespace warden
