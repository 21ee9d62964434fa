// The untyped half of when_all / when_any: the completion signal their
// children report to, and the settling of child handles. The invariants of
// the signal are at its declaration in include/warden/combinators.hpp.
#include <warden/combinators.hpp>

#include <string>

namespace warden::detail {

void completion_signal::child_finished(std::size_t index, bool failed) noexcept {
  waker to_wake;
  {
    std::lock_guard lock(mutex_);
    --remaining_;
    if (decisive_ == none && (failed || mode_ == until::first)) decisive_ = index;
    if (waiter_ && decided_locked()) to_wake = std::move(waiter_);
  }
  // Outside the lock: the woken task may run at once on another worker.
  to_wake.wake();
}

std::size_t completion_signal::decisive_child() const {
  std::lock_guard lock(mutex_);
  return decisive_;
}

bool completion_signal::is_decided() const {
  std::lock_guard lock(mutex_);
  return decided_locked();
}

bool completion_signal::awaiter::await_suspend(std::coroutine_handle<> awaiting) {
  waker self = suspend_current(awaiting);
  std::lock_guard lock(signal_->mutex_);
  if (signal_->decided_locked()) return false;  // a child reported since await_ready
  signal_->waiter_ = std::move(self);
  parked_ = true;
  return true;
}

completion_signal::awaiter::~awaiter() {
  if (!parked_) return;
  // Aborted while parked: withdraw the waker so no child wakes a dead await.
  // (After a normal wake-up the reporting child already moved it out.)
  waker stale;
  {
    std::lock_guard lock(signal_->mutex_);
    stale = std::move(signal_->waiter_);
  }
}

task<void> settle(std::span<join_handle<void>> handles, bool abort) {
  if (abort)
    for (auto& h : handles)
      if (h.valid()) h.abort();
  // Awaiting a handle returns once the child is complete: its frame finished
  // or was destroyed. The outcomes were already taken from the slots.
  for (auto& h : handles)
    if (h.valid()) (void)co_await h.result();
}

void throw_empty_argument(const char* combinator, std::size_t index) {
  throw usage_error(std::string(combinator) + ": task argument " + std::to_string(index) +
                    " is empty (moved-from or default-constructed); pass tasks you created");
}

void throw_when_any_of_nothing() {
  throw usage_error("when_any: the vector of tasks is empty, so no task could ever finish first; pass at least one");
}

}  // namespace warden::detail
