// Internal: what the calling thread is doing for warden right now
// (thread_context, in task_header.hpp), and the runtime's entry points that
// use it.
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <cstdint>

namespace warden::detail {

// thread_context and tl_context are in <warden/detail/task_header.hpp> (defer_park
// is inline in the channels' awaiters).

/// For join-handle awaiters (runtime_core.cpp): on a worker of `child`'s
/// runtime, runs `child` right here if it is a never-started task of this
/// worker (stashed, or among the newest in its queue; younger siblings may
/// run first or be stashed: see "The stash" in runtime_core.hpp); true if
/// `child` is then complete (the awaiter need not suspend). False at once
/// anywhere else. Throws usage_error when no task is polled on this thread.
bool help_awaited(task_header* child);

/// poll_task_yielded for help_awaited's nested polls (task_header.cpp): the
/// same, with the usual end of a helped child inlined.
[[nodiscard]] bool poll_helped_task(task_header* task) noexcept;

}  // namespace warden::detail
