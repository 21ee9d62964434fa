// Internal: the allocator behind every coroutine frame warden creates.
//
// Frames are recycled through per-thread, size-class free lists so that a
// spawn does not reach malloc in the steady state. New blocks are carved from
// slabs, so a block costs its class size and nothing more (no allocator
// header, 16-byte steps: a parked task's frame is what it holds). A block may
// be freed on a different thread than the one that allocated it; it then
// joins the freeing thread's list (bounded; the excess goes to a global
// depot that other threads refill from). Slab memory stays in these pools for
// the life of the process. Under AddressSanitizer the lists and slabs are
// bypassed so that use-after-free of a frame is still caught.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace warden::detail {

/// The allocator's own paths (frame_allocator.cpp): a miss (depot or new
/// slab) or a full list, sizes beyond the classes, a thread not set up or
/// exiting, AddressSanitizer. Cold: a coroutine's ramp then keeps its
/// parameters in the registers they came in on the common path and saves
/// them only around this call (without it GCC kept them in callee-saved
/// registers: three pushes, pops and moves more per ramp).
[[gnu::cold]] void* allocate_frame_slow(std::size_t size);
[[gnu::cold]] void deallocate_frame_slow(void* block, std::size_t size) noexcept;
/// deallocate_frame_slow for a block of a class whose room the inline free
/// took (and found none): gives it back first.
[[gnu::cold]] void deallocate_frame_no_room(void* block, std::size_t size) noexcept;

namespace frames {

// Size classes (see frame_allocator.cpp for why these steps).
inline constexpr std::size_t kFineStep = 16;
inline constexpr std::size_t kFirst = 32;
inline constexpr std::size_t kFineLimit = 256;
inline constexpr std::size_t kCoarseStep = 64;
inline constexpr std::size_t kLimit = 1024;
inline constexpr std::size_t kFineClasses = (kFineLimit - kFirst) / kFineStep + 1;
inline constexpr std::size_t kClasses = kFineClasses + (kLimit - kFineLimit) / kCoarseStep;
inline constexpr std::uint32_t kBatch = 256;
inline constexpr std::uint32_t kMaxCached = 2 * kBatch;

/// The class of a request of `size` bytes (kClasses and above: too large).
/// A constant where the size is (a coroutine frame's is).
constexpr std::size_t size_class(std::size_t size) noexcept {
  if (size <= kFirst) return 0;
  if (size <= kFineLimit) return (size - kFirst + kFineStep - 1) / kFineStep;
  return kFineClasses + (size - kFineLimit + kCoarseStep - 1) / kCoarseStep - 1;
}

struct free_block {
  free_block* next;
};

/// Where a thread carves new blocks of one class: the rest of its current
/// slab, untouched until carved (a few blocks at a time).
struct slab_cursor {
  char* next = nullptr;
  char* end = nullptr;
};

/// A thread's free lists; only that thread touches them.
struct frame_cache {
  std::array<free_block*, kClasses> heads{};
  // Per class, max_cached minus the blocks on its list: how many more a
  // free may put there inline (so "open and that list not full" is one
  // decrement and a sign test; a free that finds no room undoes it and
  // takes the slow path). A spill walks kBatch blocks of its list once,
  // amortised over kBatch frees.
  std::array<std::int32_t, kClasses> room{};
  std::array<slab_cursor, kClasses> slabs{};
  bool registered = false;
  bool dead = false;  // thread is exiting: bypass the cache
  // kMaxCached when registered && !dead (frees may go to the lists
  // inline), else 0 (no room for any free). `room` moves with it.
  std::uint32_t max_cached = 0;
};
// Defined here (inline) rather than in the library: a translation unit that
// sees the definition of a thread_local built into an executable (PIE or
// not) addresses it from the thread pointer with one constant offset, where
// an extern one costs a load of its offset first (the initial-exec model,
// which the linker turns into a move of the constant): one instruction
// more per allocation and per free. Trivially destructible and constant
// initialised, so no TLS guard either; the cleanup object in
// frame_allocator.cpp is registered on first use (which opens the lists to
// the inline free below).
inline constinit thread_local frame_cache tl_frame_cache{};

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kInline = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kInline = false;
#else
inline constexpr bool kInline = true;
#endif
#else
inline constexpr bool kInline = true;
#endif

}  // namespace frames

/// A block of at least `size` bytes: the head of this thread's list for its
/// class, inline, else allocate_frame_slow. (Under AddressSanitizer every
/// block goes to and from the system allocator, in the library's paths; a
/// library built with it never opens the lists, so a translation unit built
/// without it falls through to those paths too.)
inline void* allocate_frame(std::size_t size) {
  if constexpr (frames::kInline) {
    const std::size_t cls = frames::size_class(size);
    if (cls < frames::kClasses) {
      frames::frame_cache& c = frames::tl_frame_cache;
      if (frames::free_block* b = c.heads[cls]) [[likely]] {
        c.heads[cls] = b->next;
        ++c.room[cls];
        return b;
      }
    }
  }
  return allocate_frame_slow(size);
}

/// Frees a block from allocate_frame(size): onto this thread's list for its
/// class, inline, unless the list is full or the thread not set up.
inline void deallocate_frame(void* block, std::size_t size) noexcept {
  if constexpr (frames::kInline) {
    const std::size_t cls = frames::size_class(size);
    frames::frame_cache& c = frames::tl_frame_cache;
    if (cls < frames::kClasses) {
      if (--c.room[cls] >= 0) [[likely]] {
        auto* b = static_cast<frames::free_block*>(block);
        b->next = c.heads[cls];
        c.heads[cls] = b;
        return;
      }
      deallocate_frame_no_room(block, size);  // undoes the decrement
      return;
    }
  }
  deallocate_frame_slow(block, size);
}

}  // namespace warden::detail
