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

#include <warden/detail/intrusive_list.hpp>
#include <warden/detail/task_header.hpp>

#include <cstdint>

namespace warden::detail {

/// What every parked awaiter's node has: the list links, the waker, the
/// state and the awaiter's own flag. `Node` is the node type itself (the
/// links point to it).
template <class Node>
struct wait_links {
  enum class state : std::uint8_t { idle, queued, notified };

  Node* prev = nullptr;
  Node* next = nullptr;
  // A waker is a pointer and a 32-bit generation: the two one-byte fields
  // below sit in its tail padding, so the links take 32 bytes of the parked
  // frame, not 40.
  [[no_unique_address]] waker wake;
  state status = state::idle;
  // The awaiter's own flag (whether it is parked and must leave when
  // destroyed), for awaiters that want one. Only the awaiting task's thread
  // touches it; a separate byte from `status`, which the primitive writes
  // under its lock, so the two never race.
  bool parked = false;
};

/// The node of primitives whose waiters ask for something (permits, a
/// position): 40 bytes. (The event, whose waiters ask for nothing, has a
/// byte-aligned node of its own: event_wait_node in event.hpp.)
struct wait_node : wait_links<wait_node> {
  std::uint64_t amount = 0;  // what the waiter asks for (permits), primitive-specific
};
static_assert(sizeof(void*) != 8 || sizeof(wait_node) == 40,
              "status and parked are meant to share the waker's padding");

/// The FIFO of parked awaiters: an intrusive_list that also keeps each
/// node's `status` (see the states above).
template <class Node>
class basic_wait_list {
 public:
  [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
  [[nodiscard]] Node* front() const noexcept { return nodes_.front(); }

  void push_back(Node* node) noexcept {
    nodes_.push_back(node);
    node->status = Node::state::queued;
  }

  void remove(Node* node) noexcept {
    nodes_.remove(node);
    node->status = Node::state::idle;
  }

  /// Unlinks the first node and marks it notified; nullptr when empty.
  Node* pop_front() noexcept {
    Node* node = nodes_.pop_front();
    if (node != nullptr) node->status = Node::state::notified;
    return node;
  }

 private:
  intrusive_list<Node> nodes_;
};

using wait_list = basic_wait_list<wait_node>;

}  // namespace warden::detail
