// Internal: an intrusive doubly linked FIFO over any node type with `prev`
// and `next` pointers. The list owns nothing and allocates nothing; it is
// not synchronised (its owner's lock guards it). Used by wait_list (parked
// awaiters) and the time driver's list of due timers.
#pragma once

namespace warden::detail {

template <class Node>
class intrusive_list {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] Node* front() const noexcept { return head_; }

  void push_back(Node* node) noexcept {
    node->prev = tail_;
    node->next = nullptr;
    if (tail_ != nullptr)
      tail_->next = node;
    else
      head_ = node;
    tail_ = node;
  }

  /// Unlinks `node`, which must be in this list.
  void remove(Node* node) noexcept {
    if (node->prev != nullptr)
      node->prev->next = node->next;
    else
      head_ = node->next;
    if (node->next != nullptr)
      node->next->prev = node->prev;
    else
      tail_ = node->prev;
    node->prev = node->next = nullptr;
  }

  /// Unlinks and returns the first node; nullptr when empty.
  Node* pop_front() noexcept {
    Node* node = head_;
    if (node != nullptr) remove(node);
    return node;
  }

 private:
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
};

}  // namespace warden::detail
