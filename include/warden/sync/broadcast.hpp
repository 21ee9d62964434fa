// warden/sync/broadcast.hpp — a channel where every receiver sees every
// value: broadcast<T>(capacity), broadcast_sender<T>, broadcast_receiver<T>,
// broadcast_error.
//
// Senders publish; each receiver (made by `subscribe()`) gets its own copy
// of every value sent after it subscribed, in order. The channel keeps the
// last `capacity` values; a receiver that falls further behind than that
// learns how many it missed (`lagged(n)`) and continues with the oldest value
// still kept. Sending never waits: a slow receiver cannot hold up senders.
//
//   auto [tx, rx] = warden::broadcast<event>(64);
//   auto audit = tx.subscribe();                     // sees what is sent from now on
//   tx.send(ev);                                     // rx and audit both get a copy
//   for (;;) {
//     std::expected<event, warden::broadcast_error> got = co_await rx.recv();
//     if (got) { handle(*got); continue; }
//     if (got.error().is_lagged()) { note_missed(got.error().missed()); continue; }
//     break;                                         // closed: every sender is gone
//   }
//
// # Closing
// The channel closes when the last sender is destroyed. Receivers still get
// what they have not read yet (or `lagged` first, if they fell behind), then
// `closed`.
//
// # Cancellation
// A task aborted while parked in `recv` loses nothing: values stay in the
// channel until the receiver reads them; the receiver's position is
// unchanged.
//
// # Memory
// The ring of `capacity` slots is allocated when the channel is created;
// sending allocates nothing. A value is destroyed as soon as every receiver
// that was subscribed when it was sent has read it (the last reader gets it
// moved, the others copies), or when it is overwritten.
//
// # Requirements and threading
// `T` must be copyable and nothrow-move-constructible. Senders are
// copyable, receivers move-only; each may be used from any thread or task
// (one object by one thread at a time). One `recv` per receiver at a time (a
// second concurrent one throws `usage_error`). Awaiting `recv` outside a
// warden task throws `usage_error` when it would have to wait.
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/detail/wait_list.hpp>
#include <warden/errors.hpp>
#include <warden/sync/detail/channel.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace warden {

/// Why `broadcast_receiver::recv` yielded no value: the receiver lagged
/// (`missed()` values were overwritten before it read them; the next recv
/// continues with the oldest value kept), or the channel is closed and this
/// receiver has read everything.
class broadcast_error {
 public:
  static constexpr broadcast_error lagged(std::uint64_t missed) noexcept { return broadcast_error(missed); }
  static constexpr broadcast_error closed() noexcept { return broadcast_error(0); }

  [[nodiscard]] constexpr bool is_lagged() const noexcept { return missed_ != 0; }
  [[nodiscard]] constexpr bool is_closed() const noexcept { return missed_ == 0; }
  /// How many values this receiver missed (0 when closed).
  [[nodiscard]] constexpr std::uint64_t missed() const noexcept { return missed_; }

  friend constexpr bool operator==(broadcast_error, broadcast_error) noexcept = default;

 private:
  constexpr explicit broadcast_error(std::uint64_t missed) noexcept : missed_(missed) {}
  std::uint64_t missed_;  // 0: closed
};

template <class T>
class broadcast_sender;
template <class T>
class broadcast_receiver;

namespace detail {

/// The shared state of one broadcast channel, guarded by `mutex`.
///
/// Messages are numbered 0, 1, 2, ...; `next` is the number of the next one.
/// Message `s` lives in `slots[s % capacity]` until overwritten by message
/// `s + capacity`, so the kept messages are [oldest(), next). Each receiver
/// keeps its own position (the number of the next message it reads) in the
/// receiver object; a position below oldest() means the receiver lagged.
///
/// `slot::unread` counts the receivers that were subscribed when the message
/// was sent and have not read it (nor left); the reader that brings it to
/// zero takes the value by move and the slot becomes empty. A receiver that
/// leaves decrements every kept message at or after its position.
///
/// A receiver parks only when it has read everything (`position == next`)
/// and the channel is open; its node's `amount` is that position. Positions
/// only grow, so the parked list is ordered by `amount`, and a send of
/// message `s` wakes exactly the nodes with `amount <= s` (a receiver that
/// parks after the send waits for a later message). `closed` is sticky and
/// wakes every parked receiver.
///
/// Ownership: senders and receivers hold the state by shared_ptr; awaiters
/// point into their receiver, which outlives them.
template <class T>
struct broadcast_state {
  struct slot {
    std::optional<T> value;
    std::size_t unread = 0;
  };

  explicit broadcast_state(std::size_t bound) : slots(std::make_unique<slot[]>(bound)), capacity(bound) {}

  [[nodiscard]] std::uint64_t oldest() const noexcept { return next > capacity ? next - capacity : 0; }
  slot& at(std::uint64_t sequence) noexcept { return slots[static_cast<std::size_t>(sequence % capacity)]; }

  /// Under the lock: puts in `out` what a receiver at `position` gets now
  /// (advancing the position); false if it has to wait. Copying the value
  /// may throw; nothing changes then.
  bool take(std::uint64_t& position, std::optional<std::expected<T, broadcast_error>>& out) {
    if (position < oldest()) {
      const std::uint64_t missed = oldest() - position;
      position = oldest();
      out.emplace(std::unexpect, broadcast_error::lagged(missed));
      return true;
    }
    if (position < next) {
      slot& s = at(position);
      if (s.unread == 1) {
        out.emplace(std::move(*s.value));
        s.value.reset();
      } else {
        out.emplace(*s.value);
      }
      --s.unread;
      ++position;
      return true;
    }
    if (!closed) return false;
    out.emplace(std::unexpect, broadcast_error::closed());
    return true;
  }

  std::mutex mutex;
  std::unique_ptr<slot[]> slots;
  const std::size_t capacity;
  std::uint64_t next = 0;
  std::size_t senders = 1;
  std::size_t receivers = 1;
  bool closed = false;
  wait_list parked;
};

}  // namespace detail

/// Awaitable returned by `broadcast_receiver::recv`; yields
/// `std::expected<T, broadcast_error>`. Neither copyable nor movable.
template <class T>
class [[nodiscard]] broadcast_recv_awaiter {
 public:
  broadcast_recv_awaiter(const broadcast_recv_awaiter&) = delete;
  broadcast_recv_awaiter& operator=(const broadcast_recv_awaiter&) = delete;
  ~broadcast_recv_awaiter() {
    if (!parked_) return;
    // Aborted while parked: nothing was handed to us (the position did not
    // move), so leaving the list is all.
    std::lock_guard lock(state()->mutex);
    receiver_->waiting_ = false;
    if (node_.status == detail::wait_node::state::queued) state()->parked.remove(&node_);
  }

  bool await_ready() {
    std::lock_guard lock(state()->mutex);
    return state()->take(receiver_->position_, result_);
  }

  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::waker self = detail::suspend_current(awaiting);
    std::lock_guard lock(state()->mutex);
    if (state()->take(receiver_->position_, result_)) return false;
    if (receiver_->waiting_) detail::throw_channel_concurrent_recv("broadcast_receiver::recv");
    receiver_->waiting_ = true;
    node_.wake = std::move(self);
    node_.amount = receiver_->position_;
    state()->parked.push_back(&node_);
    parked_ = true;
    return true;
  }

  std::expected<T, broadcast_error> await_resume() {
    if (parked_) {
      // Woken by a send (a message at our position exists) or by the close.
      std::lock_guard lock(state()->mutex);
      parked_ = false;
      receiver_->waiting_ = false;
      node_.status = detail::wait_node::state::idle;
      (void)state()->take(receiver_->position_, result_);
    }
    // Always engaged here: a woken receiver finds a message or the close.
    if (!result_.has_value()) return std::unexpected(broadcast_error::closed());
    return std::move(*result_);
  }

 private:
  friend class broadcast_receiver<T>;
  explicit broadcast_recv_awaiter(broadcast_receiver<T>* receiver) noexcept : receiver_(receiver) {}
  detail::broadcast_state<T>* state() const noexcept { return receiver_->state_.get(); }

  broadcast_receiver<T>* receiver_;
  std::optional<std::expected<T, broadcast_error>> result_;
  detail::wait_node node_;
  bool parked_ = false;
};

/// The sending side of a broadcast channel. Copyable; the channel closes
/// when the last copy is destroyed. A default-constructed or moved-from
/// sender is empty: using it throws usage_error.
template <class T>
class broadcast_sender {
 public:
  broadcast_sender() noexcept = default;
  broadcast_sender(const broadcast_sender& other) : state_(other.state_) {
    if (state_ == nullptr) return;
    std::lock_guard lock(state_->mutex);
    ++state_->senders;
  }
  broadcast_sender(broadcast_sender&&) noexcept = default;
  broadcast_sender& operator=(const broadcast_sender& other) {
    if (this != &other) *this = broadcast_sender(other);
    return *this;
  }
  broadcast_sender& operator=(broadcast_sender&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~broadcast_sender() { release(); }

  /// Publishes `value` to every current receiver; never waits. If the ring
  /// is full the oldest value is overwritten (receivers that had not read it
  /// will see `lagged`). Returns how many receivers will see it, or gives the
  /// value back when there are none. Throws usage_error on an empty sender.
  std::expected<std::size_t, T> send(T value) {
    detail::broadcast_state<T>* state = checked("broadcast_sender::send");
    std::optional<T> overwritten;  // destroyed after the lock is released
    std::unique_lock lock(state->mutex);
    if (state->receivers == 0) return std::unexpected(std::move(value));
    auto& slot = state->at(state->next);
    if (slot.value.has_value()) {
      overwritten.emplace(std::move(*slot.value));
      slot.value.reset();
    }
    slot.value.emplace(std::move(value));
    slot.unread = state->receivers;
    const std::size_t receivers = state->receivers;
    const std::uint64_t sequence = state->next++;
    detail::wake_front_while(lock, state->parked,
                             [sequence](detail::wait_node& node) { return node.amount <= sequence; });
    return receivers;
  }

  /// A new receiver that will see every value sent from now on.
  /// Throws usage_error on an empty sender.
  [[nodiscard]] broadcast_receiver<T> subscribe() {
    detail::broadcast_state<T>* state = checked("broadcast_sender::subscribe");
    std::lock_guard lock(state->mutex);
    ++state->receivers;
    return broadcast_receiver<T>(state_, state->next);
  }

  /// Receivers subscribed now (a snapshot). Throws usage_error on an empty
  /// sender.
  [[nodiscard]] std::size_t receiver_count() const {
    detail::broadcast_state<T>* state = checked("broadcast_sender::receiver_count");
    std::lock_guard lock(state->mutex);
    return state->receivers;
  }

  /// Receivers parked in `recv` (a snapshot, for tests and metrics).
  /// Throws usage_error on an empty sender.
  [[nodiscard]] std::size_t waiting_receivers() const {
    detail::broadcast_state<T>* state = checked("broadcast_sender::waiting_receivers");
    std::lock_guard lock(state->mutex);
    return detail::count(state->parked);
  }

  /// False for an empty (default-constructed or moved-from) sender.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  template <class U>
  friend std::pair<broadcast_sender<U>, broadcast_receiver<U>> broadcast(std::size_t capacity);
  explicit broadcast_sender(std::shared_ptr<detail::broadcast_state<T>> state) noexcept : state_(std::move(state)) {}

  detail::broadcast_state<T>* checked(const char* operation) const {
    if (state_ == nullptr) detail::throw_channel_empty_handle(operation);
    return state_.get();
  }

  void release() noexcept {
    if (state_ == nullptr) return;
    {
      std::unique_lock lock(state_->mutex);
      if (--state_->senders == 0) {
        state_->closed = true;
        detail::wake_front_while(lock, state_->parked, [](detail::wait_node&) { return true; });
      }
    }
    state_.reset();
  }

  std::shared_ptr<detail::broadcast_state<T>> state_;
};

/// A receiving side of a broadcast channel: reads every value sent after it
/// was subscribed. Move-only. Destroying it releases its claim on the
/// values it has not read.
template <class T>
class broadcast_receiver {
 public:
  broadcast_receiver() noexcept = default;
  broadcast_receiver(broadcast_receiver&& other) noexcept
      : state_(std::move(other.state_)), position_(other.position_), waiting_(false) {}
  broadcast_receiver& operator=(broadcast_receiver&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
      position_ = other.position_;
    }
    return *this;
  }
  broadcast_receiver(const broadcast_receiver&) = delete;
  broadcast_receiver& operator=(const broadcast_receiver&) = delete;
  ~broadcast_receiver() { release(); }

  /// Waits for the next value. Yields a copy of it (the move for the last
  /// reader); `lagged(n)` if n values were overwritten before this receiver
  /// read them (the next recv yields the oldest kept value); `closed` once
  /// every sender is gone and everything kept was read. Throws usage_error
  /// on an empty receiver, when another recv of this receiver is already
  /// waiting, or outside a warden task when it has to wait; rethrows what
  /// copying `T` throws (the value stays unread then).
  /// Cancellation: aborted while waiting, nothing is lost or skipped.
  broadcast_recv_awaiter<T> recv() {
    if (state_ == nullptr) detail::throw_channel_empty_handle("broadcast_receiver::recv");
    return broadcast_recv_awaiter<T>(this);
  }

  /// False for an empty (default-constructed or moved-from) receiver.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  friend class broadcast_sender<T>;
  friend class broadcast_recv_awaiter<T>;
  template <class U>
  friend std::pair<broadcast_sender<U>, broadcast_receiver<U>> broadcast(std::size_t capacity);
  broadcast_receiver(std::shared_ptr<detail::broadcast_state<T>> state, std::uint64_t position) noexcept
      : state_(std::move(state)), position_(position) {}

  void release() noexcept {
    if (state_ == nullptr) return;
    detail::broadcast_state<T>& state = *state_;
    std::uint64_t end = 0;
    {
      std::lock_guard lock(state.mutex);
      --state.receivers;
      end = state.next;
    }
    // Give up our claim on every kept message we did not read, one lock at
    // a time so that a value we were the last reader of is destroyed
    // outside the lock (its destructor may use this very channel).
    for (std::uint64_t sequence = position_; sequence < end; ++sequence) {
      std::optional<T> last;
      std::lock_guard lock(state.mutex);
      if (sequence < state.oldest()) {
        sequence = state.oldest() - 1;  // overwritten: we no longer count there
        continue;
      }
      auto& slot = state.at(sequence);
      if (--slot.unread == 0) {
        last.emplace(std::move(*slot.value));
        slot.value.reset();
      }
    }
    state_.reset();
  }

  std::shared_ptr<detail::broadcast_state<T>> state_;
  std::uint64_t position_ = 0;  // the next message this receiver reads; under the channel's lock
  bool waiting_ = false;        // a recv of this receiver is parked; under the channel's lock
};

/// Creates a broadcast channel keeping the last `capacity` values, with one
/// receiver: `auto [tx, rx] = warden::broadcast<T>(capacity);`. More
/// receivers come from `tx.subscribe()`. Throws usage_error if `capacity` is
/// 0, std::bad_alloc if the ring cannot be allocated.
template <class T>
std::pair<broadcast_sender<T>, broadcast_receiver<T>> broadcast(std::size_t capacity) {
  static_assert(std::is_copy_constructible_v<T>, "broadcast<T>: T must be copyable (every receiver gets a copy)");
  static_assert(std::is_nothrow_move_constructible_v<T>, "broadcast<T>: T must be nothrow-move-constructible");
  if (capacity == 0)
    detail::throw_channel_zero_capacity("broadcast",
                                        "it is how many recent values are kept for receivers that fall behind");
  auto state = std::make_shared<detail::broadcast_state<T>>(capacity);
  return {broadcast_sender<T>(state), broadcast_receiver<T>(state, 0)};
}

}  // namespace warden
