// Internal: what the calling thread is doing for warden right now.
//
// Each thread has one `thread_context`. Only the thread itself reads or
// writes it, so it needs no synchronisation.
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <cstdint>

namespace warden::detail {

class runtime_core;
struct worker;

struct thread_context {
  runtime_core* core = nullptr;  // the runtime this thread belongs to (worker, driver, blocking thread)
  worker* on_worker = nullptr;   // set on a worker thread, and on a current-thread driver while driving
  task_header* task = nullptr;   // the task being polled on this thread
  bool yield_requested = false;  // the polled task awaited yield_now: re-queue it when the poll ends
  // Task wakers made on this thread (waker::for_task), ever; wraps. poll_task
  // compares it before and after a resume: see "poll end, yield" in
  // task_header.cpp.
  std::uint32_t wakers_made = 0;
  // The task help_awaited is polling for the join handle it awaits on this
  // thread (the handle is idle meanwhile: see "complete" in task_header.cpp).
  task_header* awaited_here = nullptr;
  // A park the polled task deferred to the end of its poll (defer_park);
  // empty outside that window.
  deferred_park pending_park;
  // Set on the threads of a runtime that lets its workers change the state
  // word of its tasks with plain stores where only a shutdown sweep could
  // race ("Solo" in task_header.cpp): that runtime, its flag saying a sweep
  // is coming, and this thread's flag saying it is inside such a change.
  const task_scheduler* solo_scheduler = nullptr;
  const std::atomic<bool>* solo_blocked = nullptr;
  std::atomic<std::uint8_t>* solo_inside = nullptr;
};

extern constinit thread_local thread_context tl_context;

/// For join-handle awaiters (runtime_core.cpp): on a worker of `child`'s
/// runtime, runs `child` right here if it is a never-started task of this
/// worker (stashed, or among the newest in its queue; younger siblings may
/// run first or be stashed: see "The stash" in runtime_core.hpp); true if
/// `child` is then complete (the awaiter need not suspend). False at once
/// anywhere else.
bool help_awaited(task_header* child) noexcept;

/// poll_task_yielded for help_awaited's nested polls (task_header.cpp): the
/// same, with the usual end of a helped child inlined.
[[nodiscard]] bool poll_helped_task(task_header* task) noexcept;

}  // namespace warden::detail
