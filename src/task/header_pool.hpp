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

#include <warden/detail/sanitizers.hpp>
#include <warden/detail/task_header.hpp>

#include "../detail/asymmetric_fence.hpp"

#include <array>
#include <atomic>
#include <cstdint>

namespace warden::detail {

/// allocate_header / free_header's own paths (header_pool.cpp): an empty or
/// full cache, a thread not set up or exiting, a sweep, extras to free.
task_header* allocate_header_slow();
void free_header_slow(task_header* header) noexcept;

namespace headers {

inline constexpr std::uint32_t kCacheSize = 256;

/// A thread's cache of free headers; only that thread touches it.
struct header_cache {
  std::array<task_header*, kCacheSize> items{};
  std::uint32_t count = 0;
  bool registered = false;
  bool dead = false;
  // kCacheSize when registered && !dead (the cache is "open": the inline
  // paths below may use it), else 0: a free goes inline while count is
  // below it (one compare for "open and not full"). A cache that is not
  // open holds no headers (count == 0: it registers before its first
  // refill or free, and a dying thread's cache is emptied and stays
  // empty), so a non-zero count means open.
  std::uint32_t free_limit = 0;
  std::uint64_t next_id = 0;
  std::uint64_t id_limit = 0;
};
// Defined here (inline), not in header_pool.cpp: a translation unit that
// sees the definition addresses it from the thread pointer with one
// constant offset (see tl_frame_cache in frame_allocator.hpp). Trivially
// destructible: no TLS guard; the cleanup object in header_pool.cpp is
// registered on first use, which opens the cache to the inline paths.
inline constinit thread_local header_cache tl_header_cache{};

/// Sweeps running now (see for_each_live_header), plus kFenceUnconfirmed
/// until the heavy fence is known to work (never cleared where it does
/// not): so a free that reads 0 here after a compiler barrier knows both
/// that the barrier was enough and that no sweep runs (free_header).
extern constinit std::atomic<std::uint32_t> g_sweeps;
inline constexpr std::uint32_t kFenceUnconfirmed = 1u << 31;
/// heavy_fence_available(), remembered (it is asked on every free): 0 not
/// asked yet, 1 yes, 2 no. Asking twice is harmless.
extern constinit std::atomic<std::uint8_t> g_heavy_fence;

}  // namespace headers

/// A header with every field reset and no references in its state word; the
/// caller initialises it and publishes it by storing the state (release).
inline task_header* allocate_header() {
  headers::header_cache& c = headers::tl_header_cache;
  if (c.count != 0) [[likely]]  // so the cache is open (see header_cache)
    return c.items[--c.count];
  return allocate_header_slow();
}

/// Returns a dead header (no references, frame and result gone) to the
/// pool, freeing its extras (free_extras) once no sweep can read them.
inline void free_header(task_header* header) noexcept {
  if constexpr (!WARDEN_TSAN) {
    // The common case of free_header_slow: the freeing side of the sweep
    // handshake with a compiler barrier ("Sweeps" in header_pool.cpp), no
    // sweep, no extras, room in the cache.
    // One word for the fence's kind and the sweeps (see g_sweeps): 0 after
    // the barrier means this barrier was enough and no sweep runs.
    light_fence();
    headers::header_cache& c = headers::tl_header_cache;
    if (headers::g_sweeps.load(std::memory_order_relaxed) == 0 && !has_extras_relaxed(header) && c.count < c.free_limit)
        [[likely]] {
      c.items[c.count++] = header;
      return;
    }
  }
  free_header_slow(header);
}
/// For a header whose last owner has stored its dead state (no references,
/// frame and result gone), free_header's common case if the header has no
/// extras: frees it and sets `site` to its site word (the bare spawn_site
/// pointer), true. False (nothing done) otherwise, or if a sweep may run or
/// the cache is full: then free_header_keeping_site_slow. A consumed join
/// handle keeps the site instead of the header (join_handle.hpp).
[[gnu::always_inline]] inline bool free_header_keeping_site(task_header* header, std::uintptr_t& site) noexcept {
  if constexpr (!WARDEN_TSAN) {
    // As free_header: the site word read after the barrier is the one that
    // counts (a sweep may have installed extras since the caller looked).
    light_fence();
    headers::header_cache& c = headers::tl_header_cache;
    if (headers::g_sweeps.load(std::memory_order_relaxed) == 0) [[likely]] {
      site = header->site_or_extras.load(std::memory_order_relaxed);
      if ((site & task_header::kExtrasTag) == 0 && c.count < c.free_limit) [[likely]] {
        c.items[c.count++] = header;
        return true;
      }
    }
  }
  return false;
}
/// free_header_keeping_site's other cases (header_pool.cpp): frees the
/// header and returns its site word, or returns 0 if it has extras or a
/// sweep may run (the header is left to the caller, who then makes it a
/// live header again).
std::uintptr_t free_header_keeping_site_slow(task_header* header) noexcept;
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
