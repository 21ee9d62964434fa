// warden/sync/event.hpp — event: a manual-reset flag that tasks can wait for.
//
// An event is either set or not. `co_await ev.wait()` completes at once when
// the event is set and otherwise parks the task until `set()`. `set()` wakes
// every task parked at that moment, exactly once, and the event stays set
// (later waits complete at once) until `reset()`.
//
//   warden::event ready;
//   warden::spawn([&]() -> warden::task<void> {
//     co_await ready.wait();               // parks until ready.set()
//     serve();
//   });
//   load_configuration();
//   ready.set();                           // wakes every waiter; stays set
//
// `set()`, `reset()` and `is_set()` may be called from any thread, inside or
// outside tasks; `wait()` must be awaited inside a warden task.
//
// # Cancellation
// A task aborted while parked in `wait()` is removed from the event; nothing
// else changes (there is nothing to hand on: a set wakes everyone).
//
// # Lifetime
// The event must outlive every task parked on it (destroying an event with
// parked waiters is undefined behaviour).
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace warden {

namespace detail {

/// The node of a task parked in `event::wait()`, inside the awaiter (so
/// inside the parked frame): the event's FIFO links and the parked task,
/// which holds a reference (the one waker of that suspension; see
/// waker::for_parked). Node states, guarded by the event's lock, as in
/// wait_list.hpp: idle, queued, notified.
///
/// Byte-aligned on purpose: GCC 12 lays a coroutine frame out as resume and
/// destroy pointers, promise, self handle, parameters, resume index and
/// flags, initial awaiter, then the body's awaiters, then the final awaiter
/// (one byte) last. An awaiter aligned to 8 starts at the next multiple of
/// 8 and the final awaiter's byte then costs 8 more: with an 8-aligned
/// 32-byte node (and the event pointer) a task parked on an event had a
/// 104-byte frame (112-byte malloc chunk). Byte-aligned, the awaiter starts
/// right after the initial awaiter and the final awaiter's byte fits in the
/// frame's tail padding: 88 bytes (96-byte chunk). Every byte counts twice
/// over: the awaiter has 34 to spend, so the task is kept without the
/// waker's generation (read when the task is woken instead, see
/// waker::for_parked). The pointers are copied in and out with memcpy
/// (unaligned loads and stores, as cheap as aligned ones on x86-64).
class event_wait_node {
 public:
  enum class state : std::uint8_t { idle, queued, notified };

  [[nodiscard]] event_wait_node* prev() const noexcept { return get<event_wait_node*>(prev_); }
  [[nodiscard]] event_wait_node* next() const noexcept { return get<event_wait_node*>(next_); }
  [[nodiscard]] task_header* task() const noexcept { return get<task_header*>(task_); }
  void set_prev(event_wait_node* node) noexcept { put(prev_, node); }
  void set_next(event_wait_node* node) noexcept { put(next_, node); }
  void set_task(task_header* task) noexcept { put(task_, task); }

  state status = state::idle;  // under the event's lock
  // Whether the awaiter is parked and must leave when destroyed. Only the
  // awaiting task's thread touches it; a separate byte from `status`, which
  // the event writes under its lock, so the two never race.
  bool parked = false;

 private:
  template <class T>
  static T get(const unsigned char (&bytes)[sizeof(T)]) noexcept {
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }
  template <class T>
  static void put(unsigned char (&bytes)[sizeof(T)], T value) noexcept {
    std::memcpy(bytes, &value, sizeof(T));
  }

  unsigned char prev_[sizeof(void*)]{};
  unsigned char next_[sizeof(void*)]{};
  unsigned char task_[sizeof(void*)]{};
};

}  // namespace detail

class event {
 public:
  class wait_awaiter;

  /// An event that starts cleared, or set when `initially_set`.
  explicit event(bool initially_set = false) noexcept : set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  ~event() = default;

  /// Sets the event and wakes every task parked in `wait()` at this moment,
  /// each exactly once. A no-op when the event is already set.
  void set() noexcept;

  /// Clears the event: later `wait()`s park until the next `set()`. Tasks
  /// already woken by an earlier `set()` still complete. A no-op when clear.
  void reset() noexcept;

  /// Whether the event is set. Seeing `true` also makes visible everything
  /// the setter did before `set()`.
  [[nodiscard]] bool is_set() const noexcept {
    // acquire: pairs with the release store in set(), so a waiter that reads
    // `true` sees what the setter wrote before setting.
    return set_.load(std::memory_order_acquire);
  }

  /// Awaitable: completes at once if the event is set, else parks the task
  /// until the next `set()`. Awaiting it outside a warden task throws
  /// usage_error. Cancellation: see the top of this header.
  [[nodiscard]] wait_awaiter wait() noexcept;

  /// Tasks parked in `wait()` right now (a diagnostic; it may be stale by the
  /// time it is read).
  [[nodiscard]] std::size_t waiter_count() const noexcept;

 private:
  bool park(detail::event_wait_node& node, std::coroutine_handle<> awaiting);
  void leave(detail::event_wait_node& node) noexcept;
  // The FIFO of parked nodes (head_ .. tail_, linked through prev/next).
  void push_back(detail::event_wait_node* node) noexcept;
  void remove(detail::event_wait_node* node) noexcept;
  detail::event_wait_node* pop_front() noexcept;

  // Invariants (under lock_): every node in the FIFO is `queued`, belongs
  // to a parked wait_awaiter and holds a reference to its task; the FIFO is
  // empty whenever set_ has been true since the last lock release (set()
  // pops everyone in the same critical section, and park() re-checks set_
  // under the lock). waiter_count_ is the length of the FIFO. set_ is
  // written only under lock_; read lock-free by is_set() and the awaiter's
  // fast path.
  mutable std::mutex lock_;
  std::atomic<bool> set_;
  detail::event_wait_node* head_ = nullptr;
  detail::event_wait_node* tail_ = nullptr;
  std::size_t waiter_count_ = 0;
};

/// The awaitable returned by `event::wait()`. Not copyable or movable: it
/// lives in the awaiting frame while parked. Byte-aligned, 34 bytes (see
/// event_wait_node).
class event::wait_awaiter {
 public:
  explicit wait_awaiter(event& e) noexcept {
    event* p = &e;
    std::memcpy(event_, &p, sizeof(p));
  }
  wait_awaiter(const wait_awaiter&) = delete;
  wait_awaiter& operator=(const wait_awaiter&) = delete;
  /// Runs on normal resumption and when the parked task is aborted: in the
  /// latter case it removes the task from the event.
  ~wait_awaiter() {
    if (node_.parked) target()->leave(node_);
  }

  [[nodiscard]] bool await_ready() const noexcept { return target()->is_set(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    node_.parked = target()->park(node_, awaiting);
    return node_.parked;
  }
  // Resumed by set(): the node was popped and its task taken under the
  // event's lock, and the wake orders that before this resumption, so the
  // awaiter owns the node again and need not leave.
  void await_resume() noexcept { node_.parked = false; }

 private:
  [[nodiscard]] event* target() const noexcept {
    event* p;
    std::memcpy(&p, event_, sizeof(p));
    return p;
  }

  unsigned char event_[sizeof(event*)];
  detail::event_wait_node node_;  // node_.parked: only the awaiting task's thread touches it
};
static_assert(sizeof(void*) != 8 || (sizeof(event::wait_awaiter) == 34 && alignof(event::wait_awaiter) == 1),
              "the event's awaiter is meant to be byte-aligned and 34 bytes (see event_wait_node)");

inline event::wait_awaiter event::wait() noexcept { return wait_awaiter{*this}; }

}  // namespace warden
