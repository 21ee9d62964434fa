// Internal: the shared state behind a cancellation_token — one node of the
// cancellation tree.
//
// # References (`refs_`)
// Owners of a reference: every token handle, every active registration,
// every `cancelled()` awaiter, every child (one on its parent), and a
// canceller while it works on the node. The last release unlinks the node
// from its parent, destroys it, and releases the parent (iteratively, so a
// long chain of otherwise unowned ancestors does not recurse).
//
// # Phase (`phase_`)
//   active      not cancelled: callbacks, waiters and children may be added
//   cancelling  a canceller owns the node and is running its callbacks,
//               waking its waiters and cancelling its children; the lists
//               accept nothing new (on_cancel runs inline, park refuses,
//               child_token makes a child born cancelled)
//   cancelled   the node and its whole subtree are cancelled
// active -> cancelling happens once, under `mutex_`, by the one thread that
// then owns the node's cancellation (`begin_cancel`); cancelling ->
// cancelled after the whole subtree it reached is done. Threads that find a
// node `cancelling` wait on `done_` for `cancelled`.
//
// # Who touches what
// * `mutex_` guards: `phase_` writes, the callback list and each linked
//   callback's bookkeeping, `waiters_`, the children list, `stop_source_`
//   creation, and — for each child — the child's sibling links and
//   `linked_` (a child's links are guarded by its *parent's* mutex).
// * `phase_` is written only under `mutex_` (release stores, for the
//   lock-free `is_cancelled` reader's acquire); reads under the mutex are
//   relaxed, the mutex orders them.
// * `parent_` is set at construction and never changes; the child owns a
//   reference on it.
// * `work_next_` belongs to the canceller that unlinked the node from its
//   parent (each node is unlinked at most once) — the intrusive work list of
//   one tree cancellation, so cancelling allocates nothing.
// * `stop_bridge_` (from_stop_token) holds a raw pointer to this state; it is
//   destroyed first in the destructor, which waits for a running bridge
//   callback, and the callback only touches the state after `try_retain`
//   succeeded.
//
// # Deadlock freedom of the waits
// A canceller waits only (a) for a descendant node owned by another
// canceller — whose region of the tree lies strictly below, so waits point
// down the tree and cannot form a cycle — and (b) never from inside a
// callback (a thread-local depth counts the cancellations on this thread's
// stack; nested ones do not wait for others). Registration destruction
// waiting for a callback running elsewhere is the documented exception (as
// with std::stop_callback).
#pragma once

#include <warden/cancellation.hpp>
#include <warden/detail/wait_list.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>

namespace warden::detail {

class cancellation_state {
 public:
  enum class phase : std::uint8_t { active, cancelling, cancelled };

  /// A new root with one reference (the caller's).
  static cancellation_state* make_root();
  /// A new child of `this` with one reference; born cancelled if `this`
  /// is no longer active.
  cancellation_state* make_child();
  /// A new root with one reference, cancelled when `stop` is requested.
  static cancellation_state* make_from_stop_token(const std::stop_token& stop);

  cancellation_state(const cancellation_state&) = delete;
  cancellation_state& operator=(const cancellation_state&) = delete;

  void retain() noexcept {
    // relaxed: the caller already owns a reference, which keeps the state alive.
    refs_.fetch_add(1, std::memory_order_relaxed);
  }
  /// A reference unless the count already reached zero (the node is being
  /// destroyed). Only called where the memory is known to be alive: under
  /// the parent's mutex on a linked child, or from the stop bridge.
  bool try_retain() noexcept;
  static void release(cancellation_state* state) noexcept;

  [[nodiscard]] bool is_cancelled() const noexcept {
    // acquire: pairs with the release store in begin_cancel, so what the
    // canceller did before cancel() is visible to whoever sees the flag.
    return phase_.load(std::memory_order_acquire) != phase::active;
  }

  /// Cancels this node and its subtree; see the top of this file. The
  /// caller owns a reference.
  void cancel() noexcept;

  bool add_callback(cancellation_callback* callback);
  void remove_callback(cancellation_callback* callback) noexcept;
  bool park(wait_node& node, waker&& w);
  void unpark(wait_node& node) noexcept;
  std::stop_token stop_token();

  std::size_t child_count();
  std::size_t callback_count();
  std::size_t waiter_count();

 private:
  struct stop_bridge {
    cancellation_state* state;
    void operator()() const noexcept;
  };

  cancellation_state() = default;
  ~cancellation_state();

  /// active -> cancelling; false if some thread did it before.
  bool begin_cancel() noexcept;
  /// Wakes the waiters, runs the callbacks, requests the stop source, and
  /// moves the retained live children onto `work`.
  void run_cancellation(cancellation_state*& work) noexcept;
  /// cancelling -> cancelled, waking threads waiting for it.
  void finish_cancel() noexcept;
  void wait_until_cancelled() noexcept;
  /// Unlinks from the parent; returns the parent (whose reference the
  /// caller must release), or null.
  cancellation_state* unlink_from_parent() noexcept;

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<phase> phase_{phase::active};
  std::mutex mutex_;
  std::condition_variable done_;  // phase_ reached cancelled, or a callback finished

  // Registered callbacks, FIFO.
  cancellation_callback* callbacks_head_ = nullptr;
  cancellation_callback* callbacks_tail_ = nullptr;
  wait_list waiters_;

  // Children (linked while active and alive), guarded by mutex_.
  cancellation_state* children_ = nullptr;
  // Links in the parent's children list, guarded by the parent's mutex.
  cancellation_state* sibling_prev_ = nullptr;
  cancellation_state* sibling_next_ = nullptr;
  bool linked_ = false;
  cancellation_state* parent_ = nullptr;  // owns a reference; immutable

  cancellation_state* work_next_ = nullptr;  // see "Who touches what"

  std::optional<std::stop_source> stop_source_;                 // created by get_stop_token
  std::optional<std::stop_callback<stop_bridge>> stop_bridge_;  // from_stop_token
};

}  // namespace warden::detail
