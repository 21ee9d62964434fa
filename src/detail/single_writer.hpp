// Internal: counters with one writing thread and any number of readers.
//
// A worker's shard of the live-task count (runtime_core.hpp, "Live tasks")
// changes only on the worker's own thread, and other threads only load it.
// The portable way to change such a counter is a relaxed load and a relaxed
// store, which GCC emits as three instructions (load, add, store): it does
// not fuse atomic accesses into one read-modify-write instruction. On
// x86-64 one `add` with a memory operand does the same work as one
// instruction (one macro-op on the cores we run on), and its store is as
// atomic as a `mov` to an aligned quadword (a reader sees the old or the new
// value, never a mix). It is not a locked RMW and need not be: there is no
// second writer. The asm tells the compiler it reads and writes the
// counter and nothing else, which orders it as the relaxed pair would
// (not at all against other memory; the callers' fences order it);
// volatile, so that it is never dropped as an asm whose output looks unused.
// Elsewhere, and under ThreadSanitizer (which sees no asm), the relaxed pair.
#pragma once

#include <warden/detail/sanitizers.hpp>

#include <atomic>
#include <cstdint>

namespace warden::detail {

/// Adds `delta` to `counter`, which only the calling thread writes (see the
/// top of this header); no ordering beyond a relaxed store's.
[[gnu::always_inline]] inline void add_single_writer(std::atomic<std::int64_t>& counter, std::int64_t delta) noexcept {
#if defined(__x86_64__) && !WARDEN_TSAN
  static_assert(sizeof(std::atomic<std::int64_t>) == sizeof(std::int64_t) &&
                std::atomic<std::int64_t>::is_always_lock_free);
  asm volatile("addq %1, %0" : "+m"(*reinterpret_cast<std::int64_t*>(&counter)) : "er"(delta));
#else
  // relaxed: single writer (see above); readers order it with their fences.
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
#endif
}

}  // namespace warden::detail
