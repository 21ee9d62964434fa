// Internal: the runtime's global injection queue (FIFO, any thread).
//
// Tasks spawned or woken from outside the workers, and the overflow of full
// local queues, go here.
//
// # Layout
// A ring of task pointers under a mutex. Pushing and popping copy pointers
// only: the headers themselves are not touched, so moving a batch of 512
// tasks costs one lock and one short copy each way, not 512 cache misses on
// cold headers (an intrusive list through the headers had to chase each
// one). The batches go straight between a worker's ring and this one
// (push_each and pop_each take the source and the destination as callbacks,
// run under the lock): a full local queue's half is claimed there and
// copied from its slots, and a worker that takes a batch stages it in its
// queue's free slots and publishes them with one store.
// The ring doubles when full (allocation under the lock, only when the queue
// reaches a new high-water mark, so not in the steady state); if that
// allocation fails, the tasks go to an intrusive overflow list through
// `task_header::queue_next`, which is drained after the ring (FIFO holds:
// while the list is not empty every push goes to the list too).
//
// `size_` is readable without the lock so that workers can skip the queue
// cheaply when it is empty; it is written under the lock.
#pragma once

#include <warden/detail/task_header.hpp>

#include "../detail/batch_lock.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

namespace warden::detail {

class inject_queue {
 public:
  inject_queue() = default;
  inject_queue(const inject_queue&) = delete;
  inject_queue& operator=(const inject_queue&) = delete;
  ~inject_queue() { delete[] ring_; }

  void push(task_header* task) noexcept { push_batch(&task, 1); }

  /// Pushes `count` tasks, in order. Out of line: callers' fast paths
  /// (a push onto a local queue) stay small.
  [[gnu::noinline]] void push_batch(task_header* const* tasks, std::size_t count) noexcept {
    push_each(count, [tasks](std::size_t i) { return tasks[i]; });
  }

  /// Pushes `count` tasks, in order: `source(i)` for i in [0, count), read
  /// under the lock (so a batch goes from where it is straight into the
  /// ring, with no copy in between).
  template <class Source>
  void push_each(std::size_t count, Source&& source) noexcept {
    const auto lock = lock_batch(mutex_);
    if (list_head_ == nullptr && (tail_ - head_ + count <= capacity_ || grow(tail_ - head_ + count))) {
      // In locals: the stores through `ring` could alias the members.
      task_header** const ring = ring_;
      const std::uint64_t mask = capacity_ - 1;
      const std::uint64_t tail = tail_;
      for (std::size_t i = 0; i < count; ++i) ring[(tail + i) & mask] = source(i);
      tail_ = tail + count;
    } else {
      for (std::size_t i = 0; i < count; ++i) {
        task_header* const task = source(i);
        task->queue_next = nullptr;
        if (list_tail_ != nullptr)
          list_tail_->queue_next = task;
        else
          list_head_ = task;
        list_tail_ = task;
      }
    }
    // seq_cst: a parking worker's re-check (has_work_anywhere) reads it.
    size_.store(size_.load(std::memory_order_relaxed) + count, std::memory_order_seq_cst);
  }

  task_header* pop() noexcept {
    task_header* t = nullptr;
    pop_each(1, [&t](std::size_t, task_header* task) { t = task; });
    return t;
  }

  /// Pops up to `max` tasks, oldest first, handing each to `sink(i, task)`
  /// (i from 0) under the lock, so a batch goes straight where it is wanted.
  /// Returns how many.
  template <class Sink>
  std::size_t pop_each(std::size_t max, Sink&& sink) noexcept {
    if (size_.load(std::memory_order_relaxed) == 0) return 0;
    const auto lock = lock_batch(mutex_);
    std::size_t n = std::min<std::uint64_t>(max, tail_ - head_);
    {
      // In locals: the sink's stores could alias the members.
      task_header* const* const ring = ring_;
      const std::uint64_t mask = capacity_ - 1;
      const std::uint64_t head = head_;
      // The first apart: a sink that treats it differently tests no index.
      if (n != 0) sink(std::size_t{0}, ring[head & mask]);
      for (std::size_t i = 1; i < n; ++i) sink(i, ring[(head + i) & mask]);
      head_ = head + n;
    }
    while (n < max && list_head_ != nullptr) {
      task_header* t = list_head_;
      list_head_ = t->queue_next;
      if (list_head_ == nullptr) list_tail_ = nullptr;
      t->queue_next = nullptr;
      sink(n++, t);
    }
    size_.store(size_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    return n;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_seq_cst); }

 private:
  /// Makes room for `needed` entries. False if memory ran out.
  bool grow(std::uint64_t needed) noexcept {
    std::size_t capacity = std::max<std::size_t>(capacity_ * 2, 1024);
    while (capacity < needed) capacity *= 2;
    auto* ring = new (std::nothrow) task_header*[capacity];
    if (ring == nullptr) return false;
    const std::uint64_t n = tail_ - head_;
    for (std::uint64_t i = 0; i < n; ++i) ring[i] = ring_[(head_ + i) & (capacity_ - 1)];
    delete[] ring_;
    ring_ = ring;
    capacity_ = capacity;
    head_ = 0;
    tail_ = n;
    return true;
  }

  std::mutex mutex_;
  task_header** ring_ = nullptr;  // capacity_ entries, a power of two
  std::size_t capacity_ = 0;
  std::uint64_t head_ = 0;            // next to pop
  std::uint64_t tail_ = 0;            // next free
  task_header* list_head_ = nullptr;  // overflow when the ring could not grow
  task_header* list_tail_ = nullptr;
  std::atomic<std::size_t> size_{0};
};

}  // namespace warden::detail
