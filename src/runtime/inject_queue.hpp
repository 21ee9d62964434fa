// Internal: the runtime's global injection queue (FIFO, any thread).
//
// Tasks spawned or woken from outside the workers, and the overflow of full
// local queues, go here. It is an intrusive list through
// `task_header::queue_next` under a mutex; `size_` is readable without the
// lock so that workers can skip it cheaply when it is empty.
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>

namespace warden::detail {

class inject_queue {
 public:
  void push(task_header* task) noexcept { push_batch(task, task, 1); }

  /// Pushes the chain first..last (linked through queue_next) of `count` tasks.
  void push_batch(task_header* first, task_header* last, std::size_t count) noexcept {
    last->queue_next = nullptr;
    std::lock_guard lock(mutex_);
    if (tail_ != nullptr)
      tail_->queue_next = first;
    else
      head_ = first;
    tail_ = last;
    size_.store(size_.load(std::memory_order_relaxed) + count, std::memory_order_seq_cst);
  }

  task_header* pop() noexcept {
    if (size_.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard lock(mutex_);
    return pop_locked();
  }

  /// Pops up to `max` tasks; returns the first and writes the rest to `out`.
  template <class Sink>
  task_header* pop_batch(std::size_t max, Sink&& sink) noexcept {
    if (size_.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard lock(mutex_);
    task_header* first = pop_locked();
    for (std::size_t i = 1; i < max && first != nullptr; ++i) {
      task_header* t = pop_locked();
      if (t == nullptr) break;
      sink(t);
    }
    return first;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_seq_cst); }

 private:
  task_header* pop_locked() noexcept {
    task_header* t = head_;
    if (t == nullptr) return nullptr;
    head_ = t->queue_next;
    if (head_ == nullptr) tail_ = nullptr;
    t->queue_next = nullptr;
    size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    return t;
  }

  std::mutex mutex_;
  task_header* head_ = nullptr;
  task_header* tail_ = nullptr;
  std::atomic<std::size_t> size_{0};
};

}  // namespace warden::detail
