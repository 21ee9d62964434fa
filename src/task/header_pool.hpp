// Internal: the process-wide pool of task headers.
//
// Headers live in chunks that are never returned to the system (type-stable
// memory): a pointer to a header stays a pointer to *some* header forever.
// That lets a sweep (shutdown, task dumps) walk every chunk without locks on
// the spawn path: it takes a reference only on headers whose count is not
// zero, and checks that the header belongs to the runtime it is sweeping.
//
// Allocation and free go through a per-thread cache; the global free list is
// locked only to refill or spill a batch.
#pragma once

#include <warden/detail/task_header.hpp>

#include <cstdint>

namespace warden::detail {

/// A header with every field reset and no references in its state word; the
/// caller initialises it and publishes it by storing the state (release).
task_header* allocate_header();
/// Returns a header whose last reference was released.
/// Returns a dead header (no references, frame and result gone) to the
/// pool, freeing its extras (free_extras) once no sweep can read them.
void free_header(task_header* header) noexcept;
/// Frees the header's extras record (task_header.cpp).
void free_extras(task_header* header) noexcept;
/// A fresh task id, unique in the process.
std::uint64_t next_task_id() noexcept;

/// Calls `fn(context, header)` for every task that has references and is not
/// complete yet. It takes no reference; a header freed during the sweep is
/// not reused until the sweep ends, so `header` stays valid through the call
/// (see "Sweeps" in header_pool.cpp).
void for_each_live_header(void (*fn)(void* context, task_header* header), void* context);

}  // namespace warden::detail
