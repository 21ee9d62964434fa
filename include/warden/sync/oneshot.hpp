// warden/sync/oneshot.hpp — a channel for exactly one value: oneshot<T>(),
// oneshot_sender<T>, oneshot_receiver<T>, sender_dropped.
//
// Use it to hand one result from one task (or thread) to another: a reply
// to a request, a "done" signal carrying a value.
//
//   auto [tx, rx] = warden::oneshot<int>();
//   warden::spawn([](warden::oneshot_sender<int> tx) -> warden::task<void> {
//     tx.send(42);                    // synchronous; never waits
//     co_return;
//   }, std::move(tx));
//   std::expected<int, warden::sender_dropped> v = co_await rx.recv();
//
// # Outcomes
// `recv` yields the value, or `sender_dropped` when the sender was destroyed
// without sending (a task holding it was aborted or returned early): the
// receiver never waits forever. `send` gives the value back when the
// receiver is already gone.
//
// # Cancellation
// A task aborted while parked in `recv` loses nothing: the value stays in
// the channel (and is destroyed with it). A sender destroyed with an aborted
// task's frame wakes the receiver with `sender_dropped`.
//
// # Requirements and threading
// `T` must be nothrow-move-constructible. Sender and receiver are
// move-only and may live on different threads. Awaiting `recv` outside a
// warden task throws `usage_error` when it would have to wait.
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/errors.hpp>
#include <warden/sync/detail/channel.hpp>

#include <coroutine>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace warden {

/// The error of `oneshot_receiver::recv`: the sender was destroyed without
/// sending a value (or the value was already received).
struct sender_dropped {
  friend bool operator==(sender_dropped, sender_dropped) noexcept = default;
};

template <class T>
class oneshot_sender;
template <class T>
class oneshot_receiver;

namespace detail {

/// The shared state of one oneshot channel, guarded by `mutex`.
///
/// States: empty (sender alive, no value) -> sent (value present) -> taken
/// (value moved out by recv); or empty -> sender gone. `receiver_waker` is
/// set only while the receiver is parked and is taken by the send or by the
/// sender's destruction, both of which end the waiting for good, so a woken
/// receiver always finds the value or the sender gone.
template <class T>
struct oneshot_state {
  std::mutex mutex;
  std::optional<T> value;
  bool sender_alive = true;  // false once sent or destroyed
  bool receiver_alive = true;
  bool receiver_parked = false;
  waker receiver_waker;
};

}  // namespace detail

/// Awaitable returned by `oneshot_receiver::recv`; yields
/// `std::expected<T, sender_dropped>`. Neither copyable nor movable.
template <class T>
class [[nodiscard]] oneshot_recv_awaiter {
 public:
  oneshot_recv_awaiter(const oneshot_recv_awaiter&) = delete;
  oneshot_recv_awaiter& operator=(const oneshot_recv_awaiter&) = delete;
  ~oneshot_recv_awaiter() {
    if (!parked_) return;
    // Aborted while parked: the value (if any) stays in the channel.
    detail::waker stale;
    std::lock_guard lock(state_->mutex);
    state_->receiver_parked = false;
    stale = std::move(state_->receiver_waker);
  }

  bool await_ready() {
    std::lock_guard lock(state_->mutex);
    return settled();
  }

  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::waker self = detail::suspend_current(awaiting);
    std::lock_guard lock(state_->mutex);
    if (settled()) return false;
    if (state_->receiver_parked) detail::throw_channel_concurrent_recv("oneshot_receiver::recv");
    state_->receiver_waker = std::move(self);
    state_->receiver_parked = true;
    parked_ = true;
    return true;
  }

  std::expected<T, sender_dropped> await_resume() {
    std::lock_guard lock(state_->mutex);
    if (parked_) {
      parked_ = false;
      state_->receiver_parked = false;
    }
    if (!state_->value.has_value()) return std::unexpected(sender_dropped{});
    std::expected<T, sender_dropped> result(std::move(*state_->value));
    state_->value.reset();
    return result;
  }

 private:
  friend class oneshot_receiver<T>;
  explicit oneshot_recv_awaiter(detail::oneshot_state<T>* state) noexcept : state_(state) {}

  [[nodiscard]] bool settled() const noexcept { return state_->value.has_value() || !state_->sender_alive; }

  detail::oneshot_state<T>* state_;
  bool parked_ = false;
};

/// The sending side of a oneshot channel: sends at most once. Move-only.
/// Destroying it unsent wakes the receiver with `sender_dropped`.
template <class T>
class oneshot_sender {
 public:
  oneshot_sender() noexcept = default;
  oneshot_sender(oneshot_sender&&) noexcept = default;
  oneshot_sender& operator=(oneshot_sender&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  oneshot_sender(const oneshot_sender&) = delete;
  oneshot_sender& operator=(const oneshot_sender&) = delete;
  ~oneshot_sender() { release(); }

  /// Delivers `value` and wakes the receiver; never waits, callable from
  /// any thread. Gives the value back if the receiver is gone. Afterwards
  /// the sender is empty. Throws usage_error if it already sent (or is
  /// empty: default-constructed or moved-from).
  std::expected<void, T> send(T value) {
    if (state_ == nullptr) detail::throw_oneshot_already_sent();
    std::shared_ptr<detail::oneshot_state<T>> state = std::move(state_);
    detail::deferred_wake receiver;
    std::lock_guard lock(state->mutex);
    state->sender_alive = false;
    if (!state->receiver_alive) return std::unexpected(std::move(value));
    state->value.emplace(std::move(value));
    receiver.target = std::move(state->receiver_waker);
    return {};
  }

  /// True when the receiver is gone (a send would give the value back).
  /// Throws usage_error on an empty sender.
  [[nodiscard]] bool is_closed() const {
    if (state_ == nullptr) detail::throw_channel_empty_handle("oneshot_sender::is_closed");
    std::lock_guard lock(state_->mutex);
    return !state_->receiver_alive;
  }

  /// True while a `recv` is waiting (parked, or woken and not yet resumed).
  /// A snapshot, for tests and metrics. Throws usage_error on an empty
  /// sender.
  [[nodiscard]] bool receiver_waiting() const {
    if (state_ == nullptr) detail::throw_channel_empty_handle("oneshot_sender::receiver_waiting");
    std::lock_guard lock(state_->mutex);
    return state_->receiver_parked;
  }

  /// False once sent, or when default-constructed or moved-from.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  template <class U>
  friend std::pair<oneshot_sender<U>, oneshot_receiver<U>> oneshot();
  explicit oneshot_sender(std::shared_ptr<detail::oneshot_state<T>> state) noexcept : state_(std::move(state)) {}

  void release() noexcept {
    if (state_ == nullptr) return;
    {
      detail::deferred_wake receiver;
      std::lock_guard lock(state_->mutex);
      state_->sender_alive = false;
      receiver.target = std::move(state_->receiver_waker);
    }
    state_.reset();
  }

  std::shared_ptr<detail::oneshot_state<T>> state_;
};

/// The receiving side of a oneshot channel. Move-only. Destroying it makes
/// a later `send` fail (and destroys a value sent but not received).
template <class T>
class oneshot_receiver {
 public:
  oneshot_receiver() noexcept = default;
  oneshot_receiver(oneshot_receiver&&) noexcept = default;
  oneshot_receiver& operator=(oneshot_receiver&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  oneshot_receiver(const oneshot_receiver&) = delete;
  oneshot_receiver& operator=(const oneshot_receiver&) = delete;
  ~oneshot_receiver() { release(); }

  /// Waits until the value is sent or the sender is destroyed. Yields the
  /// value, or `sender_dropped` (also on every recv after the value was
  /// received). Throws usage_error on an empty receiver, when another recv
  /// of this receiver is already waiting, or outside a warden task when it
  /// has to wait.
  /// Cancellation: aborted while waiting, the value is not lost; a later
  /// recv (from another task holding the receiver) still gets it.
  oneshot_recv_awaiter<T> recv() {
    if (state_ == nullptr) detail::throw_channel_empty_handle("oneshot_receiver::recv");
    return oneshot_recv_awaiter<T>(state_.get());
  }

  /// False for an empty (default-constructed or moved-from) receiver.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

 private:
  template <class U>
  friend std::pair<oneshot_sender<U>, oneshot_receiver<U>> oneshot();
  explicit oneshot_receiver(std::shared_ptr<detail::oneshot_state<T>> state) noexcept : state_(std::move(state)) {}

  void release() noexcept {
    if (state_ == nullptr) return;
    std::optional<T> unreceived;  // destroyed after the lock is released
    {
      std::lock_guard lock(state_->mutex);
      state_->receiver_alive = false;
      if (state_->value.has_value()) {
        unreceived.emplace(std::move(*state_->value));
        state_->value.reset();
      }
    }
    state_.reset();
  }

  std::shared_ptr<detail::oneshot_state<T>> state_;
};

/// Creates a oneshot channel: `auto [tx, rx] = warden::oneshot<T>();`.
template <class T>
std::pair<oneshot_sender<T>, oneshot_receiver<T>> oneshot() {
  static_assert(std::is_nothrow_move_constructible_v<T>, "oneshot<T>: T must be nothrow-move-constructible");
  auto state = std::make_shared<detail::oneshot_state<T>>();
  return {oneshot_sender<T>(state), oneshot_receiver<T>(state)};
}

}  // namespace warden
