// Internal: the parts the channel headers (oneshot, mpsc, broadcast) share —
// the FIFO ring that holds queued messages, waking a batch of parked
// awaiters outside the channel's lock, and the throw helpers (compiled in
// src/sync/channel_errors.cpp).
#pragma once

#include <warden/detail/wait_list.hpp>

#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

namespace warden::detail {

[[noreturn]] void throw_channel_zero_capacity(const char* factory, const char* hint);
[[noreturn]] void throw_channel_empty_handle(const char* operation);
[[noreturn]] void throw_channel_concurrent_recv(const char* operation);
[[noreturn]] void throw_oneshot_already_sent();

/// A FIFO of `T` in one preallocated block of `capacity()` slots: pushing
/// and popping allocate nothing; `grow()` moves everything into a block
/// twice as large (used by unbounded channels only).
///
/// Not synchronised: the owning channel's lock guards it. `T` must be
/// nothrow-move-constructible, so push, pop and grow never leave a slot
/// half-moved.
template <class T>
class ring {
  static_assert(std::is_nothrow_move_constructible_v<T>);

 public:
  ring() noexcept = default;
  explicit ring(std::size_t capacity) : slots_(allocator().allocate(capacity)), capacity_(capacity) {}
  ring(ring&& other) noexcept
      : slots_(std::exchange(other.slots_, nullptr)),
        capacity_(std::exchange(other.capacity_, 0)),
        head_(std::exchange(other.head_, 0)),
        size_(std::exchange(other.size_, 0)) {}
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  ring& operator=(ring&&) = delete;
  ~ring() {
    while (size_ != 0) (void)pop();
    if (slots_ != nullptr) allocator().deallocate(slots_, capacity_);
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] bool full() const noexcept { return size_ == capacity_; }

  /// Appends `value`. Precondition: !full().
  void push(T&& value) noexcept {
    std::construct_at(slots_ + wrap(head_ + size_), std::move(value));
    ++size_;
  }

  /// Removes and returns the oldest value. Precondition: !empty().
  T pop() noexcept {
    T* slot = slots_ + head_;
    T value = std::move(*slot);
    std::destroy_at(slot);
    head_ = wrap(head_ + 1);
    --size_;
    return value;
  }

  /// Doubles the capacity (at least 16 slots), keeping the order. May throw
  /// std::bad_alloc; the ring is unchanged then.
  void grow() {
    const std::size_t bigger = capacity_ < 8 ? 16 : capacity_ * 2;
    T* fresh = allocator().allocate(bigger);
    for (std::size_t i = 0; i < size_; ++i) {
      T* from = slots_ + wrap(head_ + i);
      std::construct_at(fresh + i, std::move(*from));
      std::destroy_at(from);
    }
    if (slots_ != nullptr) allocator().deallocate(slots_, capacity_);
    slots_ = fresh;
    capacity_ = bigger;
    head_ = 0;
  }

 private:
  static std::allocator<T> allocator() noexcept { return {}; }
  [[nodiscard]] std::size_t wrap(std::size_t index) const noexcept {
    return index >= capacity_ ? index - capacity_ : index;
  }

  T* slots_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;  // index of the oldest value
  std::size_t size_ = 0;
};

/// The number of nodes in `list` (walks it; for snapshots only).
inline std::size_t count(const wait_list& list) noexcept {
  std::size_t n = 0;
  for (const wait_node* node = list.front(); node != nullptr; node = node->next) ++n;
  return n;
}

/// A waker woken when this object is destroyed. Declared before a lock
/// guard, it wakes after the guard released the lock:
///   deferred_wake receiver;
///   std::lock_guard lock(state.mutex);
///   receiver.target = std::move(state.receiver_waker);
struct deferred_wake {
  deferred_wake() noexcept = default;
  deferred_wake(const deferred_wake&) = delete;
  deferred_wake& operator=(const deferred_wake&) = delete;
  ~deferred_wake() { target.wake(); }
  waker target;
};

/// Wakes the parked awaiters at the front of `list` for which `eligible(node)`
/// holds, stopping at the first that does not. Called with `lock` held on
/// the list's mutex; returns with it released. Wakers are taken out under
/// the lock (the nodes become `notified`) and woken after it is released, in
/// batches, so a large crowd costs no allocation and no wake runs under the
/// lock. `eligible` must stay false for nodes parked after the caller's
/// change (re-checked under the lock for every batch).
template <class Eligible>
void wake_front_while(std::unique_lock<std::mutex>& lock, wait_list& list, Eligible eligible) noexcept {
  constexpr std::size_t batch_size = 8;
  std::array<waker, batch_size> batch;
  for (;;) {
    std::size_t taken = 0;
    while (taken < batch_size) {
      wait_node* node = list.front();
      if (node == nullptr || !eligible(*node)) break;
      list.pop_front();
      batch[taken++] = std::move(node->wake);
    }
    lock.unlock();
    for (std::size_t i = 0; i < taken; ++i) batch[i].wake();
    if (taken < batch_size) return;
    lock.lock();
  }
}

}  // namespace warden::detail
