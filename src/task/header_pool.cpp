#include "header_pool.hpp"

#include <warden/detail/sanitizers.hpp>

#include "../detail/asymmetric_fence.hpp"
#include "../detail/batch_lock.hpp"

#include <algorithm>
#include <array>
#include <mutex>
#include <new>
#include <vector>

namespace warden::detail {

constinit std::atomic<std::uint32_t> headers::g_sweeps{headers::kFenceUnconfirmed};
constinit std::atomic<std::uint8_t> headers::g_heavy_fence{0};

namespace {

using headers::g_heavy_fence;
using headers::g_sweeps;
using headers::header_cache;
using headers::kCacheSize;
using headers::kFenceUnconfirmed;

constexpr std::size_t kChunkSize = 512;
constexpr std::uint32_t kBatch = 128;
constexpr std::uint64_t kIdBlock = 1024;

struct pool {
  std::mutex chunks_mutex;
  std::vector<task_header*> chunks;  // each kChunkSize headers; never freed
  std::mutex free_mutex;
  std::vector<task_header*> free;
  // Headers freed while a sweep ran, reused only once no sweep runs (under
  // free_mutex; see "Sweeps" at for_each_live_header).
  std::vector<task_header*> deferred;
  // The newest chunk's headers that were never handed out (under
  // free_mutex): refill takes them after `free`, by address, so a chunk's
  // headers are not pushed onto `free` one by one first.
  task_header* fresh_next = nullptr;
  task_header* fresh_end = nullptr;
  std::atomic<std::uint64_t> next_id_block{1};
};

[[gnu::noinline]] bool ask_heavy_fence() noexcept {
  const bool available = heavy_fence_available();
  g_heavy_fence.store(available ? 1 : 2, std::memory_order_relaxed);
  // relaxed: only a hint for free_header's inline path, which is correct
  // once the fence is known to work, whenever it learns it.
  if (available) g_sweeps.fetch_and(~kFenceUnconfirmed, std::memory_order_relaxed);
  return available;
}

/// Whether the sweeps pay with a heavy fence, so a compiler barrier is
/// enough on the freeing side.
inline bool light_fence_enough() noexcept {
  const std::uint8_t known = g_heavy_fence.load(std::memory_order_relaxed);
  if (known == 0) [[unlikely]]
    return ask_heavy_fence();
  return known == 1;
}

/// The freeing side of the sweep handshake: true if a sweep may be running,
/// after the caller stored the header's dead state.
inline bool sweep_may_run() noexcept {
  if constexpr (WARDEN_TSAN) {
    // TSan models neither fence: an RMW orders us against the sweep's.
    return (g_sweeps.fetch_add(0, std::memory_order_acq_rel) & ~kFenceUnconfirmed) != 0;
  } else {
    if (light_fence_enough())
      light_fence();
    else
      std::atomic_thread_fence(std::memory_order_seq_cst);
    return (g_sweeps.load(std::memory_order_relaxed) & ~kFenceUnconfirmed) != 0;
  }
}

pool& global_pool() {
  // Leaked on purpose: handles may be released during static destruction.
  static pool* p = new pool;
  return *p;
}

[[gnu::noinline]] void spill(header_cache& c, std::uint32_t n) {
  pool& p = global_pool();
  c.count -= n;
  const auto lock = lock_batch(p.free_mutex);
  p.free.insert(p.free.end(), c.items.begin() + c.count, c.items.begin() + c.count + n);
}

struct header_cache_cleanup {
  ~header_cache_cleanup() {
    header_cache& c = headers::tl_header_cache;
    c.dead = true;
    c.free_limit = 0;
    spill(c, c.count);
  }
};
thread_local header_cache_cleanup tl_cleanup;

[[gnu::noinline]] void register_cleanup_slow(header_cache& c) {
  c.registered = true;
  c.free_limit = c.dead ? 0 : kCacheSize;
  header_cache_cleanup* volatile touch = &tl_cleanup;  // odr-use registers the destructor
  (void)touch;
}

inline void register_cleanup(header_cache& c) {
  if (!c.registered) [[unlikely]]
    register_cleanup_slow(c);
}

[[gnu::noinline]] void refill(header_cache& c) {
  pool& p = global_pool();
  const auto lock = lock_batch(p.free_mutex);
  if (p.free.empty()) {
    if (p.fresh_next == p.fresh_end) {
      // Constructed whole: a sweep reads every header of every chunk.
      auto* chunk = new task_header[kChunkSize];
      {
        std::lock_guard chunks_lock(p.chunks_mutex);
        p.chunks.push_back(chunk);
      }
      p.fresh_next = chunk;
      p.fresh_end = chunk + kChunkSize;
    }
    const std::size_t n = std::min<std::size_t>(kBatch - c.count, static_cast<std::size_t>(p.fresh_end - p.fresh_next));
    for (std::size_t i = 0; i < n; ++i) c.items[c.count + i] = p.fresh_next + i;
    p.fresh_next += n;
    c.count += static_cast<std::uint32_t>(n);
    return;
  }
  const std::size_t n = std::min<std::size_t>(kBatch - c.count, p.free.size());
  std::copy(p.free.end() - static_cast<std::ptrdiff_t>(n), p.free.end(), c.items.begin() + c.count);
  p.free.resize(p.free.size() - n);
  c.count += static_cast<std::uint32_t>(n);
}

/// Thread exit: straight back to the global list.
[[gnu::noinline]] void free_to_pool(task_header* header) noexcept {
  pool& p = global_pool();
  std::lock_guard lock(p.free_mutex);
  p.free.push_back(header);
}

}  // namespace

task_header* allocate_header_slow() {
  header_cache& c = headers::tl_header_cache;
  if (c.dead) {
    // Thread exit: take one straight from the global list.
    c.dead = false;
    refill(c);
    task_header* h = c.items[--c.count];
    spill(c, c.count);
    c.dead = true;
    return h;
  }
  register_cleanup(c);
  if (c.count == 0) [[unlikely]]
    refill(c);
  return c.items[--c.count];
}

namespace {
/// free_header's slow path: a sweep may be looking at `header`.
[[gnu::noinline]] bool defer_free(task_header* header) noexcept {
  pool& p = global_pool();
  std::lock_guard lock(p.free_mutex);
  if ((g_sweeps.load(std::memory_order_relaxed) & ~kFenceUnconfirmed) == 0)
    return false;  // it ended (it drains under this lock)
  p.deferred.push_back(header);
  return true;
}
}  // namespace

void free_header_slow(task_header* header) noexcept {
  // Deferred with its extras: a sweep may be reading the task's name.
  if (sweep_may_run()) [[unlikely]]
    if (defer_free(header)) return;
  // release() has destroyed the frame and the result; the extras (name,
  // panic record, locals) go now, which leaves `extras` empty for the next
  // task. Every other field is written by spawn before the header is
  // published (the state word, with its references), so it is not reset
  // here.
  // acquire: the record may have been installed by another thread (a
  // reference holder or a sweep asking for the id: task_id_of), which
  // released its reference since, or ended its sweep (see "Sweeps" below).
  if (extras_of(header) != nullptr) [[unlikely]]
    free_extras(header);
  header_cache& c = headers::tl_header_cache;
  if (c.dead) [[unlikely]] {
    free_to_pool(header);
    return;
  }
  register_cleanup(c);
  if (c.count == kCacheSize) [[unlikely]]
    spill(c, kBatch);
  c.items[c.count++] = header;
}

std::uintptr_t free_header_keeping_site_slow(task_header* header) noexcept {
  // No sweep may run (it could be reading the header, or about to give the
  // task an id for a report), so the site word read next is final: only an
  // owner or a sweep installs extras, and the caller was the last owner.
  if (sweep_may_run()) return 0;
  // acquire: as in free_header_slow.
  const std::uintptr_t site = header->site_or_extras.load(std::memory_order_acquire);
  if ((site & task_header::kExtrasTag) != 0) return 0;
  free_header_slow(header);
  return site;
}

std::uint64_t next_task_id() noexcept {
  header_cache& c = headers::tl_header_cache;
  if (c.next_id == c.id_limit) {
    c.next_id = global_pool().next_id_block.fetch_add(kIdBlock, std::memory_order_relaxed);
    c.id_limit = c.next_id + kIdBlock;
  }
  return c.next_id++;
}

// # Sweeps
// A sweep visits headers without taking references (the state word's
// reference count is changed without an RMW on some paths: see release()
// and complete() in task_header.cpp). What keeps a visited header from
// being reused under the sweep is a Dekker handshake on `g_sweeps`: the
// sweep counts itself in, then a barrier, then reads each state word; a
// thread freeing a header stores its dead state (no references), then a
// barrier, then reads `g_sweeps`, and if a sweep may run it parks the header
// on `deferred` instead of the pool. So either the sweep sees the header
// dead and skips it, or the freeing thread sees the sweep and keeps the
// header out of reuse until the last sweep ends (which moves `deferred` to
// the free list). Where the kernel offers it (asymmetric_fence.hpp) the
// freeing side's barrier is a compiler barrier and the sweep pays for both.
// A header reused before the sweep began is simply a live task to visit.
void for_each_live_header(void (*fn)(void*, task_header*), void* context) {
  pool& p = global_pool();
  g_sweeps.fetch_add(1, std::memory_order_seq_cst);
  if (!WARDEN_TSAN && heavy_fence_available())
    heavy_fence();
  else
    std::atomic_thread_fence(std::memory_order_seq_cst);
  std::vector<task_header*> chunks;
  {
    std::lock_guard lock(p.chunks_mutex);
    chunks = p.chunks;
  }
  for (task_header* chunk : chunks) {
    for (std::size_t i = 0; i < kChunkSize; ++i) {
      task_header* h = &chunk[i];
      // acquire: the fields spawn wrote before its release store of the
      // state. Complete tasks are skipped: there is nothing left to do to
      // them.
      const std::uint64_t s = h->state.load(std::memory_order_acquire);
      if (task_header::refs_of(s) == 0 || (s & task_header::COMPLETE) != 0) continue;
      fn(context, h);
    }
  }
  std::vector<task_header*> reusable;
  {
    std::lock_guard lock(p.free_mutex);
    if ((g_sweeps.fetch_sub(1, std::memory_order_acq_rel) & ~kFenceUnconfirmed) == 1) reusable.swap(p.deferred);
  }
  if (reusable.empty()) return;
  // No sweep reads them any more (a later sweep skips dead headers).
  for (task_header* h : reusable)
    if (extras_of(h) != nullptr) free_extras(h);
  std::lock_guard lock(p.free_mutex);
  for (task_header* h : reusable) p.free.push_back(h);
}

}  // namespace warden::detail
