// Internal: the intrusive FIFO of parked awaiters that every synchronisation
// primitive is built on.
//
// A `wait_node` lives inside an awaiter (so inside the parked task's frame):
// parking allocates nothing. The list and every node's `state` are guarded
// by the owning primitive's lock; a node's waker is taken out under that
// lock and woken after it is released.
//
// Node states:
//   idle      not in any list (before parking, or after the awaiter left)
//   queued    parked in the list
//   notified  taken off the list by a waker that handed it something (the
//             lock, a permit, a message, a notification); the awaiter will
//             consume it when it resumes
// Cancel-safety: an awaiter destroyed while `queued` unlinks itself; one
// destroyed while `notified` (aborted after the hand-off, before it ran)
// must pass what it was handed to the next waiter. Each primitive documents
// which it does.
#pragma once

#include <warden/detail/task_header.hpp>

#include <cstdint>

namespace warden::detail {

struct wait_node {
  enum class state : std::uint8_t { idle, queued, notified };

  wait_node* prev = nullptr;
  wait_node* next = nullptr;
  waker wake;
  state status = state::idle;
  std::uint64_t amount = 0;  // what the waiter asks for (permits), primitive-specific
};

class wait_list {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] wait_node* front() const noexcept { return head_; }

  void push_back(wait_node* node) noexcept {
    node->prev = tail_;
    node->next = nullptr;
    if (tail_ != nullptr)
      tail_->next = node;
    else
      head_ = node;
    tail_ = node;
    node->status = wait_node::state::queued;
  }

  void remove(wait_node* node) noexcept {
    if (node->prev != nullptr)
      node->prev->next = node->next;
    else
      head_ = node->next;
    if (node->next != nullptr)
      node->next->prev = node->prev;
    else
      tail_ = node->prev;
    node->prev = node->next = nullptr;
    node->status = wait_node::state::idle;
  }

  /// Unlinks the first node and marks it notified; nullptr when empty.
  wait_node* pop_front() noexcept {
    wait_node* node = head_;
    if (node == nullptr) return nullptr;
    remove(node);
    node->status = wait_node::state::notified;
    return node;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

}  // namespace warden::detail
