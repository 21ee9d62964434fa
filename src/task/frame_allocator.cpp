// Per-thread size-class free lists for coroutine frames.
//
// Each thread keeps, per size class (64-byte steps up to 1 KiB), a singly
// linked list of free blocks threaded through the blocks themselves. Only the
// owning thread touches its lists, so no atomics are needed. A block freed on
// another thread than it was allocated on simply joins the freeing thread's
// list; each list is capped so a producer/consumer pair cannot hoard memory,
// and a thread's lists are returned to the system when it exits.
#include <warden/detail/frame_allocator.hpp>

#include "../detail/sanitizers.hpp"

#include <array>
#include <cstdint>
#include <new>

namespace warden::detail {
namespace {

constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 16;  // up to 1 KiB
constexpr std::uint32_t kMaxCached = 512;

struct free_block {
  free_block* next;
};

// Trivially destructible so that access needs no TLS guard; the cleanup
// object below is registered on first use.
struct frame_cache {
  std::array<free_block*, kClasses> heads{};
  std::array<std::uint32_t, kClasses> counts{};
  bool registered = false;
  bool dead = false;  // thread is exiting: bypass the cache
};
thread_local frame_cache tl_cache;

struct frame_cache_cleanup {
  ~frame_cache_cleanup() {
    frame_cache& c = tl_cache;
    c.dead = true;
    for (std::size_t i = 0; i < kClasses; ++i) {
      while (free_block* b = c.heads[i]) {
        c.heads[i] = b->next;
        ::operator delete(static_cast<void*>(b), (i + 1) * kGranule);
      }
      c.counts[i] = 0;
    }
  }
};
thread_local frame_cache_cleanup tl_cleanup;

constexpr std::size_t size_class(std::size_t size) noexcept { return (size + kGranule - 1) / kGranule - 1; }

}  // namespace

void* allocate_frame(std::size_t size) {
  if constexpr (WARDEN_ASAN) return ::operator new(size);
  const std::size_t cls = size_class(size);
  if (cls >= kClasses) return ::operator new(size);
  frame_cache& c = tl_cache;
  if (free_block* b = c.heads[cls]) {
    c.heads[cls] = b->next;
    --c.counts[cls];
    return b;
  }
  return ::operator new((cls + 1) * kGranule);
}

void deallocate_frame(void* block, std::size_t size) noexcept {
  if constexpr (WARDEN_ASAN) {
    ::operator delete(block, size);
    return;
  }
  const std::size_t cls = size_class(size);
  if (cls >= kClasses) {
    ::operator delete(block, size);
    return;
  }
  frame_cache& c = tl_cache;
  if (c.dead || c.counts[cls] >= kMaxCached) {
    ::operator delete(block, (cls + 1) * kGranule);
    return;
  }
  if (!c.registered) {
    c.registered = true;
    // The odr-use constructs the thread_local and registers its destructor.
    frame_cache_cleanup* volatile touch = &tl_cleanup;
    (void)touch;
  }
  auto* b = static_cast<free_block*>(block);
  b->next = c.heads[cls];
  c.heads[cls] = b;
  ++c.counts[cls];
}

}  // namespace warden::detail
