// Per-thread size-class free lists for coroutine frames, with a global depot
// for frames that die on another thread than the one that made them.
//
// Each thread keeps, per size class (up to about 1 KiB, see below), a singly
// linked list of free blocks threaded through the blocks themselves. Only the
// owning thread touches its lists, so no atomics are needed.
//
// # Frames that cross threads
// With work stealing a frame is often allocated on one worker (the spawner)
// and freed on another (the one that ran the task). Left alone, the freeing
// thread's list would fill up while the spawner's stays empty and falls back
// to malloc on every spawn. So a list that reaches `kMaxCached` hands its
// oldest `kBatch` blocks, as one chain, to the global depot of its class, and
// a thread whose list is empty takes a whole chain back from the depot
// before it asks the system. The depot is locked once per `kBatch` frames,
// never per frame. It keeps at most `kMaxDepotChains` chains per class; past
// that the blocks go back to the system allocator, so a burst does not pin
// memory forever.
//
// A thread's own lists are returned to the system when it exits; the depot
// lives as long as the process (it is leaked on purpose: frames may be freed
// during static destruction).
#include <warden/detail/frame_allocator.hpp>

#include "../detail/sanitizers.hpp"

#include <array>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

namespace warden::detail {
namespace {

// Size classes: 16-byte steps up to 264 bytes (small frames, where a coarse
// step would waste a large fraction: a parked task's frame of 120 bytes
// would take 152), then 64-byte steps up to 1032 bytes. Every class size is
// 8 more than a multiple of 16: a block is one system allocation, and
// glibc's malloc puts an 8-byte size word before each chunk and rounds the
// chunk to 16 bytes, so a class of 16k + 8 bytes fills its chunk exactly (a
// class of 16k bytes would take 16k + 16 and waste 8).
using frames::frame_cache;
using frames::free_block;
using frames::kBatch;
using frames::kClasses;
using frames::kCoarseStep;
using frames::kFineClasses;
using frames::kFineLimit;
using frames::kFineStep;
using frames::kFirst;
using frames::kLimit;
using frames::kMaxCached;
using frames::size_class;
constexpr std::size_t kMaxDepotChains = 64;

/// The block size of class `cls`.
constexpr std::size_t class_size(std::size_t cls) noexcept {
  return cls < kFineClasses ? kFirst + cls * kFineStep : kFineLimit + (cls + 1 - kFineClasses) * kCoarseStep;
}
static_assert(size_class(1) == 0 && class_size(0) == 24);
static_assert(size_class(25) == 1 && class_size(1) == 40);
static_assert(size_class(120) == 6 && class_size(6) == 120);
static_assert(size_class(128) == 7 && class_size(7) == 136);
static_assert(size_class(kFineLimit) == kFineClasses - 1 && class_size(kFineClasses - 1) == kFineLimit);
static_assert(size_class(kFineLimit + 1) == kFineClasses && class_size(kFineClasses) == 328);
static_assert(size_class(kLimit) == kClasses - 1 && class_size(kClasses - 1) == kLimit);
static_assert(size_class(kLimit + 1) == kClasses);
static_assert([] {
  for (std::size_t cls = 0; cls < kClasses; ++cls)
    if (class_size(cls) % 16 != 8 || size_class(class_size(cls)) != cls) return false;
  return true;
}());

struct chain {
  free_block* head;
  free_block* tail;
};

struct depot {
  std::mutex mutex;
  std::array<std::vector<chain>, kClasses> chains;
};

depot& global_depot() {
  static depot* d = new depot;  // leaked on purpose (see above)
  return *d;
}

}  // namespace

// Trivially destructible so that access needs no TLS guard; the cleanup
// object below is registered on first use (which opens the lists to the
// inline free in frame_allocator.hpp).
constinit thread_local frame_cache frames::tl_frame_cache{};

namespace {

struct frame_cache_cleanup {
  ~frame_cache_cleanup() {
    frame_cache& c = frames::tl_frame_cache;
    c.dead = true;
    c.open = false;
    for (std::size_t i = 0; i < kClasses; ++i) {
      while (free_block* b = c.heads[i]) {
        c.heads[i] = b->next;
        ::operator delete(static_cast<void*>(b), class_size(i));
      }
      c.counts[i] = 0;
    }
  }
};
thread_local frame_cache_cleanup tl_cleanup;

/// Moves the first kBatch blocks of the list of `cls` to the depot (or to
/// the system when the depot is full). Out of line: keeps the fast paths
/// small.
[[gnu::noinline]] void spill(frame_cache& c, std::size_t cls) noexcept {
  free_block* head = c.heads[cls];
  free_block* tail = head;
  for (std::uint32_t i = 1; i < kBatch; ++i) tail = tail->next;
  c.heads[cls] = tail->next;
  c.counts[cls] -= kBatch;
  tail->next = nullptr;
  depot& d = global_depot();
  {
    std::lock_guard lock(d.mutex);
    auto& chains = d.chains[cls];
    if (chains.size() < kMaxDepotChains) {
      try {
        chains.push_back(chain{head, tail});
        return;
      } catch (...) {  // no memory for the bookkeeping: free the blocks instead
      }
    }
  }
  while (head != nullptr) {
    free_block* next = head->next;
    ::operator delete(static_cast<void*>(head), class_size(cls));
    head = next;
  }
}

/// Refills the empty list of `cls` with a chain from the depot. False if
/// the depot has none.
[[gnu::noinline]] bool refill(frame_cache& c, std::size_t cls) noexcept {
  depot& d = global_depot();
  chain taken;
  {
    std::lock_guard lock(d.mutex);
    auto& chains = d.chains[cls];
    if (chains.empty()) return false;
    taken = chains.back();
    chains.pop_back();
  }
  taken.tail->next = c.heads[cls];
  c.heads[cls] = taken.head;
  c.counts[cls] += kBatch;
  return true;
}

[[gnu::noinline]] void register_cleanup_slow(frame_cache& c) noexcept {
  c.registered = true;
  c.open = !c.dead;
  // The odr-use constructs the thread_local and registers its destructor.
  frame_cache_cleanup* volatile touch = &tl_cleanup;
  (void)touch;
}

inline void register_cleanup(frame_cache& c) noexcept {
  if (!c.registered) [[unlikely]]
    register_cleanup_slow(c);
}

}  // namespace

void* allocate_frame_slow(std::size_t size) {
  if constexpr (WARDEN_ASAN) return ::operator new(size);
  const std::size_t cls = size_class(size);
  if (cls >= kClasses) return ::operator new(size);
  frame_cache& c = frames::tl_frame_cache;
  if (c.heads[cls] == nullptr && !c.dead) [[unlikely]] {
    register_cleanup(c);
    refill(c, cls);
  }
  if (free_block* b = c.heads[cls]) {
    c.heads[cls] = b->next;
    --c.counts[cls];
    return b;
  }
  return ::operator new(class_size(cls));
}

void deallocate_frame_slow(void* block, std::size_t size) noexcept {
  if constexpr (WARDEN_ASAN) {
    ::operator delete(block, size);
    return;
  }
  const std::size_t cls = size_class(size);
  if (cls >= kClasses) {
    ::operator delete(block, size);
    return;
  }
  frame_cache& c = frames::tl_frame_cache;
  if (c.dead) [[unlikely]] {
    ::operator delete(block, class_size(cls));
    return;
  }
  register_cleanup(c);
  auto* b = static_cast<free_block*>(block);
  b->next = c.heads[cls];
  c.heads[cls] = b;
  if (++c.counts[cls] > kMaxCached) [[unlikely]]
    spill(c, cls);
}

}  // namespace warden::detail
