// Internal: the allocator behind every coroutine frame warden creates.
//
// Frames are recycled through per-thread, size-class free lists so that a
// spawn does not reach malloc in the steady state. A block may be freed on a
// different thread than the one that allocated it; it then joins the freeing
// thread's list (bounded; the excess goes back to the system allocator).
// Under AddressSanitizer the lists are bypassed so that use-after-free of a
// frame is still caught.
#pragma once

#include <cstddef>

namespace warden::detail {

void* allocate_frame(std::size_t size);
void deallocate_frame(void* block, std::size_t size) noexcept;

}  // namespace warden::detail
