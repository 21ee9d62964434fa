// event: slow paths. The invariants are listed in include/warden/sync/event.hpp.
#include <warden/sync/event.hpp>

#include "waker_batch.hpp"

namespace warden {

namespace {

using detail::task_header;

constexpr std::uintptr_t kFlags = task_header::kQueued | task_header::kLeft;

task_header* next_of(const task_header* entry) noexcept {
  return reinterpret_cast<task_header*>(entry->park_link & ~kFlags);
}

// Compaction starts once this many left entries outnumber the parked ones.
constexpr std::size_t kCompactAt = 64;

}  // namespace

event::~event() {
  // Only left entries can be here (see the Lifetime note in event.hpp).
  task_header* chain = nullptr;
  for (task_header* e = head_; e != nullptr;) {
    task_header* next = next_of(e);
    e->park_link = reinterpret_cast<std::uintptr_t>(chain);
    chain = e;
    e = next;
  }
  release_chain(chain);
}

void event::set() noexcept {
  detail::waker_batch batch;
  task_header* left = nullptr;
  {
    std::lock_guard lock(lock_);
    if (set_.load(std::memory_order_relaxed)) return;  // under lock_: the last writer is visible
    // release: pairs with the acquire load in is_set().
    set_.store(true, std::memory_order_release);
    // One pass under the lock: exactly the tasks parked now, each once. Each
    // entry's reference goes to its waker; the generation is read now, while
    // the task is still in the suspension the entry is for
    // (waker::for_parked). The next link is read before the wake: once
    // woken, the task may park elsewhere and reuse its park_link.
    for (task_header* e = head_; e != nullptr;) {
      task_header* const next = next_of(e);
      if ((e->park_link & task_header::kLeft) != 0) {
        e->park_link = reinterpret_cast<std::uintptr_t>(left);  // ours now: released below
        left = e;
      } else {
        e->park_link = 0;  // not queued: a leave() from now on finds nothing to do
        batch.add_locked(detail::waker::for_parked(e));
      }
      e = next;
    }
    head_ = tail_ = nullptr;
    waiter_count_ = 0;
    left_count_ = 0;
  }
  batch.wake_all();
  release_chain(left);
}

void event::reset() noexcept {
  std::lock_guard lock(lock_);
  // relaxed: clearing publishes nothing; park() reads set_ under lock_.
  set_.store(false, std::memory_order_relaxed);
}

std::size_t event::waiter_count() const noexcept {
  std::lock_guard lock(lock_);
  return waiter_count_;
}

bool event::park(std::coroutine_handle<> awaiting) {
  task_header* task = detail::suspend_current_task(awaiting);  // a reference, ours
  {
    std::lock_guard lock(lock_);
    // acquire (via the lock and the load): if set, the caller continues at
    // once and must see what the setter wrote.
    if (!set_.load(std::memory_order_acquire)) {
      task->park_link = task_header::kQueued;  // the entry keeps the reference
      if (tail_ != nullptr)
        tail_->park_link = reinterpret_cast<std::uintptr_t>(task) | (tail_->park_link & kFlags);
      else
        head_ = task;
      tail_ = task;
      ++waiter_count_;
      return true;
    }
  }
  detail::release(task);  // not parked: nobody will wake this suspension
  return false;
}

void event::leave() noexcept {
  // Only a task's cancellation destroys its parked awaiter (a task has a
  // single resume point), and the poller that cancels it runs it as the
  // current task.
  task_header* const task = detail::current_task();
  task_header* stale = nullptr;
  {
    std::lock_guard lock(lock_);
    // Not queued: set() already took the entry and its reference to wake
    // us; an event hands nothing on.
    if ((task->park_link & task_header::kQueued) == 0) return;
    task->park_link |= task_header::kLeft;
    --waiter_count_;
    ++left_count_;
    if (left_count_ >= kCompactAt && left_count_ > waiter_count_) stale = unlink_left();
  }
  // Never the last reference to this task (its poller holds the lifecycle
  // one), but maybe to other finished tasks.
  release_chain(stale);
}

task_header* event::unlink_left() noexcept {
  task_header* stale = nullptr;
  task_header* kept_tail = nullptr;
  for (task_header* e = head_; e != nullptr;) {
    task_header* const next = next_of(e);
    if ((e->park_link & task_header::kLeft) != 0) {
      e->park_link = reinterpret_cast<std::uintptr_t>(stale);
      stale = e;
    } else {
      if (kept_tail != nullptr)
        kept_tail->park_link = reinterpret_cast<std::uintptr_t>(e) | task_header::kQueued;
      else
        head_ = e;
      kept_tail = e;
    }
    e = next;
  }
  if (kept_tail != nullptr)
    kept_tail->park_link = task_header::kQueued;
  else
    head_ = nullptr;
  tail_ = kept_tail;
  left_count_ = 0;
  return stale;
}

void event::release_chain(task_header* chain) noexcept {
  while (chain != nullptr) {
    task_header* const next = reinterpret_cast<task_header*>(chain->park_link);
    chain->park_link = 0;
    detail::release(chain);
    chain = next;
  }
}

}  // namespace warden
