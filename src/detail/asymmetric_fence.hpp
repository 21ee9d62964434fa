// Internal: an asymmetric store-load barrier (Linux membarrier).
//
// A Dekker handshake between a hot path (store A, then load B) and a rare
// path (store B, then load A) needs a full barrier on both sides. With this
// pair the hot side needs only a compiler barrier (`light_fence`) and the
// rare side pays for both (`heavy_fence`): the kernel makes every running
// thread of the process execute a full barrier before `heavy_fence`
// returns. So either the hot side's load comes after that barrier and sees
// the rare side's store, or its store had drained by then and the rare
// side's later load sees it.
//
// Available when the kernel supports MEMBARRIER_CMD_PRIVATE_EXPEDITED and
// the process could register for it; callers check `heavy_fence_available()`
// once and otherwise use seq_cst read-modify-writes on both sides. Not used
// under ThreadSanitizer, which does not model it.
#pragma once

#include <atomic>

namespace warden::detail {

/// True if heavy_fence works (decided once per process).
bool heavy_fence_available() noexcept;
/// The rare side's barrier. Only call when heavy_fence_available().
void heavy_fence() noexcept;
/// The hot side's barrier: the compiler keeps the order, the CPU may not.
inline void light_fence() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

}  // namespace warden::detail
