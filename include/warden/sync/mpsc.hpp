// warden/sync/mpsc.hpp — multi-producer, single-consumer channels:
// mpsc<T>(capacity), mpsc_unbounded<T>(), mpsc_sender<T>, mpsc_receiver<T>.
//
// A channel carries values of `T` from any number of senders to one
// receiver, in the order they were sent. A bounded channel holds at most
// `capacity` values: `send` waits while it is full (back-pressure). An
// unbounded one never makes a sender wait. (Capacity 1 hands a value sent
// while the receiver waits straight to it: that value takes no place in the
// channel, so the next send may fill the slot before the receiver runs.)
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
// created (capacity 1 keeps its slot inside the channel's shared state);
// sending and receiving allocate nothing. An unbounded channel starts with
// 16 slots and doubles its ring when it is full.
//
// # Cost
// A bounded channel takes no lock to send or receive: a send takes a free
// slot with one CAS and publishes its value in the ring; a receive takes
// it back. Only a sender that must wait (channel full) takes the channel's
// lock to park. An unbounded channel guards its growing ring with a lock.
// Capacity 1 has its own layout: one word is the slot's state, the permit
// and the receiver's park flag, so a send into a waiting receiver is one
// CAS, and the receiver takes the handed value with none.
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
#include <warden/sync/detail/mpsc_state.hpp>

#include <algorithm>
#include <atomic>
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

/// Awaitable returned by `mpsc_sender::send`; yields
/// `std::expected<void, T>` (the value back when the channel is closed).
/// Owns the value until it enters the queue. Neither copyable nor movable:
/// `co_await` it where it is made.
template <class T>
class [[nodiscard]] mpsc_send_awaiter {
  using state_type = detail::mpsc_state<T>;
  using acquired = typename state_type::acquired;

 public:
  mpsc_send_awaiter(const mpsc_send_awaiter&) = delete;
  mpsc_send_awaiter& operator=(const mpsc_send_awaiter&) = delete;
  ~mpsc_send_awaiter() {
    if (phase_ == kParked) [[unlikely]] {
      // Aborted while parked: leave the queue, or hand a promised permit on.
      bool promised = false;
      {
        std::lock_guard lock(state_->mutex);
        if (node_.status == detail::wait_node::state::queued) {
          state_->parked_senders.remove(&node_);
          state_->parked_list_changed();
        } else {
          promised = node_.amount == 1;
        }
      }
      std::destroy_at(&node_);
      if (promised) state_->release_permit();
    }
    if (phase_ != kSent) std::destroy_at(&value_);
  }

  [[gnu::always_inline]] bool await_ready() {
    const acquired got = state_->send_now(value_);
    if (got == acquired::permit) sent();
    return got != acquired::full;
  }

  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::waker self = detail::suspend_current(awaiting);
    std::unique_lock lock(state_->mutex);
    const acquired got = state_->acquire_or_mark_parked();
    if (got != acquired::full) {
      lock.unlock();
      return !finish(got);
    }
    std::construct_at(&node_);
    node_.wake = std::move(self);
    node_.amount = 0;
    state_->parked_senders.push_back(&node_);
    phase_ = kParked;
    return true;
  }

  std::expected<void, T> await_resume() {
    if (phase_ == kParked) [[unlikely]] {
      // Woken holding a permit (amount 1) or by the close (0). Whoever woke
      // us took the node off the list under the lock before waking us.
      phase_ = kHolding;
      const bool promised = node_.amount == 1;
      std::destroy_at(&node_);
      if (promised) {
        if (state_->is_closed())
          state_->release_permit();  // closed before we ran: the send fails
        else
          finish(acquired::permit);
      }
    }
    if (phase_ == kHolding) return std::unexpected(std::move(value_));
    return {};
  }

 private:
  friend class mpsc_sender<T>;
  mpsc_send_awaiter(state_type* state, T&& value) : state_(state) { std::construct_at(&value_, std::move(value)); }

  /// The value is queued (moved from): gone from the awaiter.
  [[gnu::always_inline]] void sent() noexcept {
    std::destroy_at(&value_);
    phase_ = kSent;
  }

  /// Completes the send if `got` allows it: a permit queues the value, closed
  /// keeps it to give back. False when the channel is full.
  bool finish(acquired got) {
    if (got == acquired::full) return false;
    if (got == acquired::permit) {
      state_->push(std::move(value_));
      sent();
    }
    return true;
  }

  // kHolding: value_ holds the value (not sent yet, or given back: the
  // channel closed); kSent: queued or handed over, value_ is gone;
  // kParked: suspended and not yet resumed, value_ held and node_ belongs to
  // the channel. One byte for both questions the awaiter asks after the
  // send (parked? sent?), written after the send's wake, so the compiler
  // knows it there (a wake is a call it cannot see into, after which an
  // optional's flag and a separate parked flag had to be read back).
  static constexpr std::uint8_t kHolding = 0, kSent = 1, kParked = 2;

  state_type* state_;
  union {
    T value_;  // alive unless phase_ is kSent
  };
  // Built only when the send parks (most never do: building and
  // destroying it cost every send a few stores and a check); alive exactly
  // while parked.
  union {
    detail::wait_node node_;
  };
  std::uint8_t phase_ = kHolding;
};

/// Awaitable returned by `mpsc_receiver::recv`; yields `std::optional<T>`
/// (nullopt: closed and drained). Neither copyable nor movable.
template <class T>
class [[nodiscard]] mpsc_recv_awaiter {
 public:
  mpsc_recv_awaiter(const mpsc_recv_awaiter&) = delete;
  mpsc_recv_awaiter& operator=(const mpsc_recv_awaiter&) = delete;
  ~mpsc_recv_awaiter() {
    if (has_value_ != 0) std::destroy_at(&value_);
    if (parked_ == kNotParked) return;
    // Aborted while parked. Nothing was handed to us (values stay queued
    // until taken), so only our waker has to go; if a sender already took
    // it, we wait until that wake is done with our header (it finds the
    // task running, or a stale generation, and does nothing). Capacity 1
    // clears kActive there.
    state_->unpark_receiver_or_wait();
    if (parked_ == kParkedRing) state_->receiver_parked.store(false, std::memory_order_relaxed);
  }

  /// Capacity 1 takes in await_suspend (false: not ready yet), so that the
  /// channel's layout is tested once per recv: the take's atomic loads
  /// made the compiler load the awaiter's channel and its layout flag again
  /// for await_suspend.
  [[gnu::always_inline]] bool await_ready() { return !state_->single && try_take_ring(); }

  [[gnu::always_inline]] bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::mpsc_state<T>* const state = state_;
    if (state->single) {
      // The take, and the check for a second recv while one waits (misuse;
      // caught once the first one parked), in one look at the receiver's
      // state.
      const auto took = state->take_one_or_park(out());
      if (took == detail::mpsc_state<T>::recv_one::taken) return false;  // a value, or closed and drained
      if (took == detail::mpsc_state<T>::recv_one::concurrent) [[unlikely]]
        detail::throw_channel_concurrent_recv("mpsc_receiver::recv");
      // Capacity 1 parks with one CAS on the slot word: deferred to the end
      // of the poll, after the task is idle, so that neither the poll end
      // nor the wake needs an RMW on the task (see defer_park). If a value
      // came meanwhile the commit fails and the task is polled again, into
      // await_resume. Inline: this is every recv of a ping-pong, and a call
      // here cost a second prologue and epilogue inside the coroutine's.
      // The commit needs only the channel: its pointer goes as the park's
      // context (one load fewer in the commit). The commit is the library's
      // one commit_one_park for every T, which the poller runs inline.
      // (The commit sets kActive: see mpsc_state.)
      if (detail::defer_park(
              awaiting, detail::deferred_park{&detail::commit_one_park, static_cast<detail::mpsc_state_head*>(state)}))
          [[likely]] {
        parked_ = kParkedOne;
        return true;
      }
    }
    return park_now(awaiting);
  }

  [[gnu::always_inline]] std::optional<T> await_resume() {
    // Woken by a push or by the close once drained: see mpsc_state. A
    // push wakes us once its value is in, but the oldest position may
    // belong to a sender that claimed it just before and is still moving
    // its value in (a few instructions, no waiting): then we wait for it.
    // Capacity 1 first waits for the waker to be done with our header
    // (which also makes a handed value readable; take_handed_when_idle).
    // A handed value (the usual wake of a capacity-1 recv) goes straight
    // into the result, not through value_ (a store and a reload in the
    // frame), and the channel's pointer is read once. Capacity 1 is told
    // by parked_ (no look at the channel's layout).
    // parked_ is cleared after the atomic loads, so the compiler knows it
    // for the destructor's check.
    if (parked_ == kParkedOne) [[likely]] {
      // (take_handed_when_idle clears kActive.)
      if (std::optional<T> handed = state_->take_handed_when_idle()) {
        parked_ = kNotParked;
        return handed;
      }
    }
    if (parked_ != kNotParked) {
      // (Capacity 1 waited for its waker above; a ring's receiver waits for
      // its waker when it parks next: park_receiver.)
      if (parked_ == kParkedRing) state_->receiver_parked.store(false, std::memory_order_relaxed);
      parked_ = kNotParked;
      // This wait needs no other task to run, so it cannot hold up a sender
      // queued on this worker (in its LIFO slot, a claimed batch or the
      // stash, where no other worker takes it). We were woken once a value
      // was published or the channel was closed and drained. A ring
      // position before that value is claimed only inside slot_ring::push,
      // by a running sender holding a permit, and filled in the same
      // noexcept code with no suspension point (a sender woken holding a
      // permit passed on to it claims its position only when it runs).
      // Capacity 1 never waits here: the wake left a value readable
      // (kSlotFull or handed), which only this receiver takes, or the
      // channel closed and drained, which stays so; a slot held as
      // kSlotClaimed, also by a parked sender it was passed to, is never
      // readable, so a recv parks on it and the publishing CAS wakes it
      // (see "Capacity 1: the slot word" in mpsc_state.hpp).
      for (unsigned round = 0; !try_take();) detail::spin_pause(round);
    }
    // Rebuilt field by field, not copied whole: a copy of the optional would
    // load its value and flag at once, right after try_take stored them
    // separately, and stall on store forwarding.
    if (has_value_ == 0) return std::nullopt;
    return std::optional<T>(std::in_place, std::move(value_));
  }

 private:
  friend class mpsc_receiver<T>;
  explicit mpsc_recv_awaiter(detail::mpsc_state<T>* state) noexcept : state_(state) {}

  /// await_suspend's park with a waker published now: channels of other
  /// capacities, and capacity 1 when a park is already deferred in this poll.
  [[gnu::noinline]] bool park_now(std::coroutine_handle<> awaiting) {
    const detail::unowned_waker self = detail::suspend_current_unowned(awaiting);
    // No second look before parking: await_ready just looked, and parking
    // (the park handshake, or capacity 1's parking CAS) sees whatever came
    // since.
    // A second recv while one waits (misuse; caught when the first one
    // already parked). Capacity 1: its kActive bit, which await_suspend
    // looked at and the park sets.
    detail::mpsc_state<T>* const state = state_;
    if (state->single) {
      if (!state->park_receiver_unless_ready(self)) {
        // A value (or the close) came before our waker was visible. relaxed:
        // the receiver's own bits, no waker busy (kActive off).
        state->receiver_state.store(detail::mpsc_state<T>::kIdle, std::memory_order_relaxed);
        return !try_take();
      }
      parked_ = kParkedOne;
      return true;
    }
    if (state->receiver_parked.load(std::memory_order_relaxed))
      detail::throw_channel_concurrent_recv("mpsc_receiver::recv");
    state->receiver_parked.store(true, std::memory_order_relaxed);
    if (!state->park_receiver_unless_ready(self)) {
      // A value (or the close) came before our waker was visible.
      state->receiver_parked.store(false, std::memory_order_relaxed);
      return !try_take();
    }
    parked_ = kParkedRing;
    return true;
  }

  /// Takes the oldest value, or sees closed-and-drained.
  [[gnu::always_inline]] bool try_take() {
    if (state_->single) return state_->take_one(out());
    return try_take_ring();
  }
  /// try_take of a channel whose capacity is not 1.
  [[gnu::always_inline]] bool try_take_ring() {
    if (state_->ready()) {
      out().emplace(state_->pop());
      return true;
    }
    return state_->closed_and_drained();
  }

  /// Where a take puts the value: value_ and has_value_.
  [[gnu::always_inline]] detail::value_out<T> out() noexcept { return {&value_, &has_value_}; }

  detail::mpsc_state<T>* state_;
  union {
    T value_;  // alive while has_value_ is 1: taken, not yet moved out
  };
  // An optional's flag, kept apart from value_ so that it sits next to
  // parked_: the two initial stores are one.
  std::uint8_t has_value_ = 0;
  // Suspended in recv, parked or woken and not yet resumed: kParkedOne on
  // a channel of capacity 1, kParkedRing on the others.
  static constexpr std::uint8_t kNotParked = 0, kParkedOne = 1, kParkedRing = 2;
  std::uint8_t parked_ = kNotParked;
};

/// The sending side of an mpsc channel. Copyable: every copy is a sender,
/// and the channel closes when the last one is destroyed. A default
/// constructed or moved-from sender is empty: using it throws usage_error.
template <class T>
class mpsc_sender {
 public:
  mpsc_sender() noexcept = default;
  mpsc_sender(const mpsc_sender& other) : state_(other.state_) {
    // relaxed: a new reference from an existing one (like shared_ptr).
    if (state_ != nullptr) state_->senders.fetch_add(1, std::memory_order_relaxed);
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
    switch (state->send_now(value)) {
      case detail::mpsc_state<T>::acquired::closed:
        return std::unexpected(try_send_error<T>{try_send_failure::closed, std::move(value)});
      case detail::mpsc_state<T>::acquired::full:
        return std::unexpected(try_send_error<T>{try_send_failure::full, std::move(value)});
      case detail::mpsc_state<T>::acquired::permit:
        break;
    }
    return {};
  }

  /// True once the channel is closed (the receiver closed it or is gone).
  [[nodiscard]] bool is_closed() const { return checked("mpsc_sender::is_closed")->is_closed(); }

  /// True while a `recv` of the receiver is parked where a sender sees it:
  /// a value sent now goes to it (capacity 1 hands it over directly). False
  /// again once a sender took it to wake, and also in the instant between a
  /// recv suspending and its park becoming visible (capacity 1 commits the
  /// park at the end of the poll). A snapshot, for tests and metrics: a
  /// sender that saw true sees the park. Throws usage_error on an empty
  /// sender.
  [[nodiscard]] bool receiver_waiting() const { return checked("mpsc_sender::receiver_waiting")->receiver_waiting(); }

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
    // acq_rel: the last sender's close comes after every other sender's sends.
    if (state_->senders.fetch_sub(1, std::memory_order_acq_rel) == 1) state_->close();
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
    if (state->ready()) return state->pop();
    if (state->closed_and_drained()) return std::unexpected(try_recv_error::closed);
    return std::unexpected(try_recv_error::empty);
  }

  /// Closes the channel: every later or waiting send fails and gives its
  /// value back; values already queued stay and are received in order,
  /// then `recv` yields nullopt. Idempotent. Throws usage_error on an empty
  /// receiver.
  void close() { checked("mpsc_receiver::close")->close(); }

  /// Values queued now (a snapshot; on a bounded channel it includes sends
  /// that are putting their value in right now, and on capacity 1 a value
  /// handed to a waiting recv that has not returned it yet, so it may read
  /// 2 there).
  [[nodiscard]] std::size_t size() const { return checked("mpsc_receiver::size")->size(); }

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
    // Close, and destroy what is queued (one at a time, with no lock held:
    // a value's destructor may use this very channel, e.g. a queued sender).
    // A send that took its permit before the close may still put its value
    // in afterwards; the state destroys it when the last sender is gone.
    state_->close();
    while (state_->ready()) (void)state_->pop();
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
  // Larger than any ring that could be allocated: bad_alloc below.
  capacity = std::min<std::size_t>(capacity, detail::mpsc_state<T>::kMaxCapacity);
  auto state = std::make_shared<detail::mpsc_state<T>>(capacity);
  return {mpsc_sender<T>(state), mpsc_receiver<T>(state)};
}

/// Creates an unbounded channel: sends never wait (`try_send` is the
/// synchronous send); the ring grows by doubling.
template <class T>
std::pair<mpsc_sender<T>, mpsc_receiver<T>> mpsc_unbounded() {
  static_assert(std::is_nothrow_move_constructible_v<T>, "mpsc_unbounded<T>: T must be nothrow-move-constructible");
  auto state = std::make_shared<detail::mpsc_state<T>>(0);
  return {mpsc_sender<T>(state), mpsc_receiver<T>(state)};
}

}  // namespace warden
