// Per-thread size-class free lists for coroutine frames, fed from slabs, with
// a global depot for frames that die on another thread than the one that
// made them.
//
// Each thread keeps, per size class (up to 1 KiB, see below), a singly
// linked list of free blocks threaded through the blocks themselves. Only the
// owning thread touches its lists, so no atomics are needed.
//
// # Slabs
// A block is never a system allocation of its own: a thread whose list and
// the depot are both empty carves the next blocks of its current slab for
// the class (kSlabBytes from the system, carved kCarveBytes at a time: the
// first is returned, the others go onto the list, so pages are touched only
// shortly before their blocks are used). A block then costs exactly its class
// size: malloc would add its 8-byte size word and round to 16, which for a
// parked task's 64-byte frame is 80 bytes. Slabs are never returned to the
// system; their blocks circulate between the threads' lists and the depot
// for the life of the process (as the task headers do, see header_pool.hpp),
// so the peak of frames a burst needed stays reserved for the next burst.
//
// # Frames that cross threads
// With work stealing a frame is often allocated on one worker (the spawner)
// and freed on another (the one that ran the task). Left alone, the freeing
// thread's list would fill up while the spawner's stays empty. So a list
// that reaches `kMaxCached` hands `kBatch` blocks, as one chain, to the
// global depot of its class, and a thread whose list is empty takes a whole
// chain back from the depot before it carves a new block. The depot is
// locked once per `kBatch` frames, never per frame. A thread that exits gives
// its lists, and what it had not carved of its slabs, to the depot. The depot
// lives as long as the process (it is leaked on purpose: frames may be freed
// during static destruction).
#include <warden/detail/frame_allocator.hpp>
#include <warden/detail/sanitizers.hpp>

#include "../detail/batch_lock.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

namespace warden::detail {
namespace {

// Size classes: 16-byte steps from 32 to 256 bytes (small frames, where a
// coarse step would waste a large fraction), then 64-byte steps up to 1 KiB.
// Every class is a multiple of 16, so every block of a 16-aligned slab is
// aligned as operator new would align it (__STDCPP_DEFAULT_NEW_ALIGNMENT__).
// The smallest class is 32 bytes: a chain in the depot keeps its link to the
// next chain and its length in its first block (see `chain_head`).
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
using frames::slab_cursor;

constexpr std::size_t kSlabBytes = 16 * 1024;
// How much of a slab a miss carves at once (at least one block): the blocks
// after the one it returns go onto the thread's list.
constexpr std::size_t kCarveBytes = 2048;
static_assert(kCarveBytes >= kLimit);

/// The block size of class `cls`.
constexpr std::size_t class_size(std::size_t cls) noexcept {
  return cls < kFineClasses ? kFirst + cls * kFineStep : kFineLimit + (cls + 1 - kFineClasses) * kCoarseStep;
}
static_assert(size_class(1) == 0 && class_size(0) == 32);
static_assert(size_class(33) == 1 && class_size(1) == 48);
static_assert(size_class(62) == 2 && class_size(2) == 64);
static_assert(size_class(64) == 2 && size_class(65) == 3);
static_assert(size_class(kFineLimit) == kFineClasses - 1 && class_size(kFineClasses - 1) == kFineLimit);
static_assert(size_class(kFineLimit + 1) == kFineClasses && class_size(kFineClasses) == 320);
static_assert(size_class(kLimit) == kClasses - 1 && class_size(kClasses - 1) == kLimit);
static_assert(size_class(kLimit + 1) == kClasses);
static_assert([] {
  for (std::size_t cls = 0; cls < kClasses; ++cls)
    if (class_size(cls) % 16 != 0 || size_class(class_size(cls)) != cls ||
        kSlabBytes % class_size(cls) >= kSlabBytes / 2)
      return false;
  return true;
}());

/// The first block of a chain in the depot: the chain's blocks are linked
/// through `block.next`; the chain itself through `next_chain`.
struct chain_head {
  free_block block;
  chain_head* next_chain;
  std::uint32_t length;
};
static_assert(sizeof(chain_head) <= kFirst);

struct depot {
  std::mutex mutex;
  // Written under `mutex`; read without it only as a hint (refill: an empty
  // class is not worth the lock).
  std::array<std::atomic<chain_head*>, kClasses> chains{};
};

// Never destroyed (frames may be freed during static destruction), and
// constant-initialised: no guard to test on every use.
union depot_storage {
  depot d;
  constexpr depot_storage() : d() {}
  ~depot_storage() {}
};
constinit depot_storage g_depot;

depot& global_depot() noexcept { return g_depot.d; }

/// Hands the chain `head` .. (`length` blocks) to the depot.
void give_to_depot(std::size_t cls, free_block* head, std::uint32_t length) noexcept {
  auto* chain = reinterpret_cast<chain_head*>(head);
  chain->length = length;
  depot& d = global_depot();
  const auto lock = lock_batch(d.mutex);
  // relaxed: the mutex orders the chains' contents; refill's look without it
  // is a hint only.
  chain->next_chain = d.chains[cls].load(std::memory_order_relaxed);
  d.chains[cls].store(chain, std::memory_order_relaxed);
}

/// The blocks on the list of `cls`.
std::uint32_t list_length(const frame_cache& c, std::size_t cls) noexcept {
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(c.max_cached) - c.room[cls]);
}

/// Sets the room of `cls` for a list of `length` blocks.
void set_list_length(frame_cache& c, std::size_t cls, std::uint32_t length) noexcept {
  c.room[cls] = static_cast<std::int32_t>(c.max_cached) - static_cast<std::int32_t>(length);
}

/// Sets max_cached, moving every class's room with it.
void set_max_cached(frame_cache& c, std::uint32_t max) noexcept {
  const std::int32_t delta = static_cast<std::int32_t>(max) - static_cast<std::int32_t>(c.max_cached);
  for (std::int32_t& r : c.room) r += delta;
  c.max_cached = max;
}

struct frame_cache_cleanup {
  ~frame_cache_cleanup() {
    frame_cache& c = frames::tl_frame_cache;
    c.dead = true;
    set_max_cached(c, 0);
    for (std::size_t cls = 0; cls < kClasses; ++cls) {
      // What is left of the slab becomes blocks too, so a thread that exits
      // loses nothing it reserved.
      slab_cursor& s = c.slabs[cls];
      const std::size_t size = class_size(cls);
      for (; s.next != s.end; s.next += size) {
        auto* b = reinterpret_cast<free_block*>(s.next);
        b->next = c.heads[cls];
        c.heads[cls] = b;
        --c.room[cls];
      }
      if (c.heads[cls] != nullptr) give_to_depot(cls, c.heads[cls], list_length(c, cls));
      c.heads[cls] = nullptr;
      c.room[cls] = 0;  // max_cached is 0: no room
    }
  }
};
thread_local frame_cache_cleanup tl_cleanup;

/// Moves kBatch blocks of the list of `cls` to the depot. Out of line:
/// keeps the fast paths small.
[[gnu::noinline]] void spill(frame_cache& c, std::size_t cls) noexcept {
  free_block* head = c.heads[cls];
  free_block* tail = head;
  for (std::uint32_t i = 1; i < kBatch; ++i) tail = tail->next;
  c.heads[cls] = tail->next;
  c.room[cls] += static_cast<std::int32_t>(kBatch);
  tail->next = nullptr;
  give_to_depot(cls, head, kBatch);
}

/// Refills the empty list of `cls` with a chain from the depot. False if
/// the depot has none.
bool refill(frame_cache& c, std::size_t cls) noexcept {
  depot& d = global_depot();
  // relaxed, a hint: a class that looks empty is not locked (a chain given
  // meanwhile waits for the next miss; the caller carves a block instead).
  // The common miss of a spawner that outruns the threads freeing its
  // frames, or of a burst that needs more frames than were ever freed.
  if (d.chains[cls].load(std::memory_order_relaxed) == nullptr) return false;
  chain_head* taken;
  {
    const auto lock = lock_batch(d.mutex);
    taken = d.chains[cls].load(std::memory_order_relaxed);  // relaxed: under the mutex
    if (taken == nullptr) return false;
    d.chains[cls].store(taken->next_chain, std::memory_order_relaxed);  // relaxed: under the mutex
  }
  c.heads[cls] = &taken->block;
  set_list_length(c, cls, taken->length);  // was empty
  return true;
}

/// The next block of this thread's slab for `cls`, starting a new slab when
/// the current one is used up (the last few bytes of a slab that hold no
/// whole block are never used). The blocks after it, up to kCarveBytes of
/// them, go onto the class's list (empty here), so the misses of a thread
/// that outruns the frees come once per few blocks, not once per block.
void* carve(frame_cache& c, std::size_t cls) {
  slab_cursor& s = c.slabs[cls];
  const std::size_t size = class_size(cls);
  if (s.next == s.end) {
    // operator new aligns to __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16), and
    // every class is a multiple of 16.
    char* slab = static_cast<char*>(::operator new(kSlabBytes));
    s.next = slab;
    s.end = slab + kSlabBytes / size * size;
  }
  char* const block = s.next;
  const std::size_t left = static_cast<std::size_t>(s.end - block) / size;
  const std::size_t count = left < kCarveBytes / size ? left : kCarveBytes / size;  // (both at least 1)
  s.next = block + count * size;
  if (count > 1) {
    char* const last = block + (count - 1) * size;
    for (char* p = block + size; p != last; p += size)
      reinterpret_cast<free_block*>(p)->next = reinterpret_cast<free_block*>(p + size);
    reinterpret_cast<free_block*>(last)->next = nullptr;
    c.heads[cls] = reinterpret_cast<free_block*>(block + size);
    set_list_length(c, cls, static_cast<std::uint32_t>(count - 1));  // was empty
  }
  return block;
}

[[gnu::noinline]] void register_cleanup_slow(frame_cache& c) noexcept {
  c.registered = true;
  set_max_cached(c, c.dead ? 0 : kMaxCached);
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
  if (c.max_cached == 0) [[unlikely]] {  // not open
    // A thread that is exiting (its lists went to the depot) neither takes
    // a chain nor begins a slab, which it would not hand back: its block
    // comes from the system, and joins the pool when freed.
    if (c.dead) return ::operator new(class_size(cls));
    register_cleanup_slow(c);
  }
  if (c.heads[cls] == nullptr && !refill(c, cls)) return carve(c, cls);
  free_block* b = c.heads[cls];
  c.heads[cls] = b->next;
  ++c.room[cls];
  return b;
}

void deallocate_frame_no_room(void* block, std::size_t size) noexcept {
  ++frames::tl_frame_cache.room[size_class(size)];
  deallocate_frame_slow(block, size);
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
  auto* b = static_cast<free_block*>(block);
  if (c.dead) [[unlikely]] {
    // The thread is exiting (its lists went to the depot): the block goes
    // straight to the depot as a chain of one.
    b->next = nullptr;
    give_to_depot(cls, b, 1);
    return;
  }
  register_cleanup(c);  // open from here on (not dead): max_cached is kMaxCached
  b->next = c.heads[cls];
  c.heads[cls] = b;
  if (--c.room[cls] < 0) [[unlikely]]  // more than kMaxCached on the list
    spill(c, cls);
}

}  // namespace warden::detail
