// The cancellation tree: see cancellation_state.hpp for the invariants.
#include "cancellation_state.hpp"

#include <cstdio>
#include <exception>
#include <thread>

namespace warden::detail {

namespace {

/// Tree cancellations on this thread's stack. Non-zero while a cancellation
/// runs callbacks (or wakes, or stop callbacks): a cancel() from there must
/// not wait for a cancellation owned by another thread, see the top of
/// cancellation_state.hpp.
thread_local int t_cancel_depth = 0;

}  // namespace

// ---- lifetime -----------------------------------------------------------------

cancellation_state* cancellation_state::make_root() { return new cancellation_state(); }

cancellation_state* cancellation_state::make_child() {
  auto* child = new cancellation_state();
  std::lock_guard lock(mutex_);
  if (phase_.load(std::memory_order_relaxed) != phase::active) {
    // Born cancelled: this node's cancellation already took its children
    // list (or is about to find it frozen), so the child must not wait for it.
    // relaxed: nobody else sees the child before it is handed out.
    child->phase_.store(phase::cancelled, std::memory_order_relaxed);
    return child;
  }
  retain();  // the child's reference on its parent
  child->parent_ = this;
  child->sibling_next_ = children_;
  if (children_ != nullptr) children_->sibling_prev_ = child;
  children_ = child;
  child->linked_ = true;
  return child;
}

cancellation_state* cancellation_state::make_from_stop_token(const std::stop_token& stop) {
  cancellation_state* state = make_root();
  // Runs the bridge inline if stop was already requested: the caller's
  // reference keeps the state alive through it.
  if (stop.stop_possible()) state->stop_bridge_.emplace(stop, stop_bridge{state});
  return state;
}

cancellation_state::~cancellation_state() {
  // First: waits for a bridge callback running on another thread (it holds
  // no reference, see stop_bridge::operator()).
  stop_bridge_.reset();
}

bool cancellation_state::try_retain() noexcept {
  // relaxed: the memory is kept alive by the caller's context (the parent's
  // mutex or the stop bridge), and everything read afterwards is read under
  // this node's mutex.
  std::uint32_t n = refs_.load(std::memory_order_relaxed);
  while (n != 0)
    if (refs_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  return false;
}

void cancellation_state::release(cancellation_state* state) noexcept {
  // acq_rel: release so this owner's writes happen before the destruction;
  // acquire (on the last release) to see every other owner's writes.
  while (state != nullptr && state->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    cancellation_state* parent = state->unlink_from_parent();
    delete state;
    state = parent;  // drop the child's reference on its parent (iteratively)
  }
}

cancellation_state* cancellation_state::unlink_from_parent() noexcept {
  cancellation_state* parent = parent_;
  if (parent == nullptr) return nullptr;
  std::lock_guard lock(parent->mutex_);
  if (linked_) {  // else a canceller of the parent already unlinked us
    if (sibling_prev_ != nullptr)
      sibling_prev_->sibling_next_ = sibling_next_;
    else
      parent->children_ = sibling_next_;
    if (sibling_next_ != nullptr) sibling_next_->sibling_prev_ = sibling_prev_;
    linked_ = false;
  }
  return parent;
}

void cancellation_state::stop_bridge::operator()() const noexcept {
  // The state may be dying (count zero): then its destructor is waiting for
  // this call to return and nobody can observe the cancellation anyway.
  if (!state->try_retain()) return;
  cancellation_state* s = state;
  s->cancel();
  release(s);  // may destroy the state and this bridge: touch nothing after
}

// ---- cancelling ----------------------------------------------------------------

bool cancellation_state::begin_cancel() noexcept {
  std::lock_guard lock(mutex_);
  if (phase_.load(std::memory_order_relaxed) != phase::active) return false;
  // release: pairs with is_cancelled's acquire (see there).
  phase_.store(phase::cancelling, std::memory_order_release);
  return true;
}

void cancellation_state::finish_cancel() noexcept {
  std::lock_guard lock(mutex_);
  phase_.store(phase::cancelled, std::memory_order_release);
  done_.notify_all();
}

void cancellation_state::wait_until_cancelled() noexcept {
  std::unique_lock lock(mutex_);
  done_.wait(lock, [this] { return phase_.load(std::memory_order_relaxed) == phase::cancelled; });
}

void cancellation_state::cancel() noexcept {
  const bool nested = t_cancel_depth > 0;
  if (!begin_cancel()) {
    if (!nested) wait_until_cancelled();
    return;
  }
  ++t_cancel_depth;
  // `work`: children unlinked (and retained) but not yet cancelled; `owned`:
  // nodes this call cancelled, to be marked complete at the end. Both are
  // chained through work_next_, which belongs to us for these nodes.
  cancellation_state* work = nullptr;
  cancellation_state* owned = nullptr;
  run_cancellation(work);
  while (work != nullptr) {
    cancellation_state* node = work;
    work = node->work_next_;
    if (node->begin_cancel()) {
      node->run_cancellation(work);
      node->work_next_ = owned;
      owned = node;
    } else {
      // Another thread cancelled this child directly; its subtree is part
      // of ours, so wait for it (it lies below us: no cycle).
      if (!nested) node->wait_until_cancelled();
      release(node);
    }
  }
  --t_cancel_depth;
  // Every node reached is done: now each may report completion.
  while (owned != nullptr) {
    cancellation_state* node = owned;
    owned = node->work_next_;
    node->finish_cancel();
    release(node);
  }
  finish_cancel();
}

void cancellation_state::run_cancellation(cancellation_state*& work) noexcept {
  std::unique_lock lock(mutex_);
  // The lists are frozen now (phase is cancelling): nothing is added, only
  // removed by awaiters and registrations leaving.

  // Waiters: take each waker under the lock (the awaiter may be destroyed as
  // soon as the lock is released), wake it outside.
  while (wait_node* node = waiters_.pop_front()) {
    waker w = std::move(node->wake);
    lock.unlock();
    w.wake();
    lock.lock();
  }

  // Callbacks, in registration order, each outside the lock so that it may
  // use tokens (this one included).
  const std::thread::id me = std::this_thread::get_id();
  while (cancellation_callback* callback = callbacks_head_) {
    callbacks_head_ = callback->next_;
    if (callbacks_head_ != nullptr)
      callbacks_head_->prev_ = nullptr;
    else
      callbacks_tail_ = nullptr;
    callback->next_ = nullptr;
    callback->status_ = cancellation_callback::status::running;
    callback->invoking_thread_ = me;
    lock.unlock();
    callback->invoke();
    lock.lock();
    if (callback->orphaned_) {
      // Its registration was destroyed from inside it: the node is ours.
      lock.unlock();
      delete callback;
      lock.lock();
    } else {
      callback->status_ = cancellation_callback::status::done;
      done_.notify_all();  // a registration may be waiting for it
    }
  }

  // Children: unlink them all; those still alive go onto the work list.
  while (cancellation_state* child = children_) {
    children_ = child->sibling_next_;
    child->sibling_prev_ = child->sibling_next_ = nullptr;
    child->linked_ = false;
    if (child->try_retain()) {
      child->work_next_ = work;
      work = child;
    }
  }

  std::stop_source* source = stop_source_ ? &*stop_source_ : nullptr;
  lock.unlock();
  // Outside the lock: runs the std::stop_callbacks registered on our stop
  // tokens, which may use this token.
  if (source != nullptr) source->request_stop();
}

// ---- callbacks, waiters, stop tokens ---------------------------------------------

bool cancellation_state::add_callback(cancellation_callback* callback) {
  std::lock_guard lock(mutex_);
  if (phase_.load(std::memory_order_relaxed) != phase::active) return false;
  callback->prev_ = callbacks_tail_;
  callback->next_ = nullptr;
  if (callbacks_tail_ != nullptr)
    callbacks_tail_->next_ = callback;
  else
    callbacks_head_ = callback;
  callbacks_tail_ = callback;
  callback->status_ = cancellation_callback::status::queued;
  retain();  // the registration's reference
  return true;
}

void cancellation_state::remove_callback(cancellation_callback* callback) noexcept {
  std::unique_lock lock(mutex_);
  switch (callback->status_) {
    case cancellation_callback::status::queued:
      if (callback->prev_ != nullptr)
        callback->prev_->next_ = callback->next_;
      else
        callbacks_head_ = callback->next_;
      if (callback->next_ != nullptr)
        callback->next_->prev_ = callback->prev_;
      else
        callbacks_tail_ = callback->prev_;
      break;
    case cancellation_callback::status::running:
      if (callback->invoking_thread_ == std::this_thread::get_id()) {
        // From inside the callback: it is still executing on this stack, so
        // the canceller frees it when it returns (and holds its own
        // reference on this state meanwhile).
        callback->orphaned_ = true;
        lock.unlock();
        release(this);
        return;
      }
      done_.wait(lock, [callback] { return callback->status_ != cancellation_callback::status::running; });
      break;
    case cancellation_callback::status::idle:
    case cancellation_callback::status::done:
      break;
  }
  lock.unlock();
  delete callback;
  release(this);  // the registration's reference; may destroy this state
}

bool cancellation_state::park(wait_node& node, waker&& w) {
  std::lock_guard lock(mutex_);
  if (phase_.load(std::memory_order_relaxed) != phase::active) return false;
  node.wake = std::move(w);
  waiters_.push_back(&node);
  return true;
}

void cancellation_state::unpark(wait_node& node) noexcept {
  std::lock_guard lock(mutex_);
  // notified: the canceller took the waker; nothing to hand on (cancellation
  // is a broadcast).
  if (node.status == wait_node::state::queued) waiters_.remove(&node);
}

std::stop_token cancellation_state::stop_token() {
  std::stop_source* source = nullptr;
  bool request = false;
  {
    std::lock_guard lock(mutex_);
    if (!stop_source_) {
      stop_source_.emplace();
      // Already cancelling: the canceller may have looked for a stop source
      // before this one existed, so request it ourselves (request_stop is
      // idempotent).
      request = phase_.load(std::memory_order_relaxed) != phase::active;
    }
    source = &*stop_source_;  // never reset while the state lives
  }
  if (request) source->request_stop();
  return source->get_token();
}

std::size_t cancellation_state::child_count() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (cancellation_state* c = children_; c != nullptr; c = c->sibling_next_) ++n;
  return n;
}

std::size_t cancellation_state::callback_count() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (cancellation_callback* c = callbacks_head_; c != nullptr; c = c->next_) ++n;
  return n;
}

std::size_t cancellation_state::waiter_count() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (wait_node* w = waiters_.front(); w != nullptr; w = w->next) ++n;
  return n;
}

// ---- the free functions the header uses ------------------------------------------

void retain(cancellation_state* state) noexcept { state->retain(); }
void release(cancellation_state* state) noexcept { cancellation_state::release(state); }
bool is_cancelled(const cancellation_state* state) noexcept { return state->is_cancelled(); }
bool add_callback(cancellation_state* state, cancellation_callback* callback) { return state->add_callback(callback); }
void remove_callback(cancellation_state* state, cancellation_callback* callback) noexcept {
  state->remove_callback(callback);
}
bool park(cancellation_state* state, wait_node& node, waker&& w) { return state->park(node, std::move(w)); }
void unpark(cancellation_state* state, wait_node& node) noexcept { state->unpark(node); }

void cancellation_callback_threw() noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warden: a cancellation callback threw an exception (%s); callbacks must not throw\n",
                 e.what());
  } catch (...) {
    std::fprintf(stderr,
                 "warden: a cancellation callback threw an exception (not a std::exception); "
                 "callbacks must not throw\n");
  }
  std::fflush(stderr);
  std::terminate();
}

}  // namespace warden::detail
