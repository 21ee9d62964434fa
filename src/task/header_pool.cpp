#include "header_pool.hpp"

#include <array>
#include <mutex>
#include <new>
#include <vector>

namespace warden::detail {
namespace {

constexpr std::size_t kChunkSize = 512;
constexpr std::uint32_t kCacheSize = 256;
constexpr std::uint32_t kBatch = 128;
constexpr std::uint64_t kIdBlock = 1024;

struct pool {
  std::mutex chunks_mutex;
  std::vector<task_header*> chunks;  // each kChunkSize headers; never freed
  std::mutex free_mutex;
  std::vector<task_header*> free;
  std::atomic<std::uint64_t> next_id_block{1};
};

pool& global_pool() {
  // Leaked on purpose: handles may be released during static destruction.
  static pool* p = new pool;
  return *p;
}

struct header_cache {
  std::array<task_header*, kCacheSize> items{};
  std::uint32_t count = 0;
  std::uint64_t next_id = 0;
  std::uint64_t id_limit = 0;
  bool registered = false;
  bool dead = false;
};
thread_local header_cache tl_cache;

[[gnu::noinline]] void spill(header_cache& c, std::uint32_t n) {
  pool& p = global_pool();
  std::lock_guard lock(p.free_mutex);
  for (std::uint32_t i = 0; i < n; ++i) p.free.push_back(c.items[--c.count]);
}

struct header_cache_cleanup {
  ~header_cache_cleanup() {
    header_cache& c = tl_cache;
    c.dead = true;
    spill(c, c.count);
  }
};
thread_local header_cache_cleanup tl_cleanup;

[[gnu::noinline]] void register_cleanup_slow(header_cache& c) {
  c.registered = true;
  header_cache_cleanup* volatile touch = &tl_cleanup;  // odr-use registers the destructor
  (void)touch;
}

inline void register_cleanup(header_cache& c) {
  if (!c.registered) [[unlikely]]
    register_cleanup_slow(c);
}

[[gnu::noinline]] void refill(header_cache& c) {
  pool& p = global_pool();
  std::lock_guard lock(p.free_mutex);
  if (p.free.empty()) {
    auto* chunk = new task_header[kChunkSize];
    {
      std::lock_guard chunks_lock(p.chunks_mutex);
      p.chunks.push_back(chunk);
    }
    for (std::size_t i = 0; i < kChunkSize; ++i) p.free.push_back(&chunk[i]);
  }
  while (c.count < kBatch && !p.free.empty()) {
    c.items[c.count++] = p.free.back();
    p.free.pop_back();
  }
}

/// Thread exit: straight back to the global list.
[[gnu::noinline]] void free_to_pool(task_header* header) noexcept {
  pool& p = global_pool();
  std::lock_guard lock(p.free_mutex);
  p.free.push_back(header);
}

}  // namespace

task_header* allocate_header() {
  header_cache& c = tl_cache;
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

void free_header(task_header* header) noexcept {
  // release() has destroyed the frame, the result and the extras (panic
  // record, locals) and cleared `extras`, which must read as empty for the
  // next task. Every other field is written by spawn before the header is
  // published (the state word, with its references), so it is not reset
  // here.
  header_cache& c = tl_cache;
  if (c.dead) [[unlikely]] {
    free_to_pool(header);
    return;
  }
  register_cleanup(c);
  if (c.count == kCacheSize) [[unlikely]]
    spill(c, kBatch);
  c.items[c.count++] = header;
}

std::uint64_t next_task_id() noexcept {
  header_cache& c = tl_cache;
  if (c.next_id == c.id_limit) {
    c.next_id = global_pool().next_id_block.fetch_add(kIdBlock, std::memory_order_relaxed);
    c.id_limit = c.next_id + kIdBlock;
  }
  return c.next_id++;
}

void for_each_live_header(void (*fn)(void*, task_header*), void* context) {
  pool& p = global_pool();
  std::vector<task_header*> chunks;
  {
    std::lock_guard lock(p.chunks_mutex);
    chunks = p.chunks;
  }
  for (task_header* chunk : chunks) {
    for (std::size_t i = 0; i < kChunkSize; ++i) {
      task_header* h = &chunk[i];
      std::uint64_t s = h->state.load(std::memory_order_relaxed);
      // acquire on success: the fields were published by spawn's release
      // store of the state (with the first references).
      // Complete tasks are skipped: release() counts on nobody but an owner
      // taking a reference to one (its last owner frees it without an RMW).
      const auto visit = [](std::uint64_t word) {
        return task_header::refs_of(word) != 0 && (word & task_header::COMPLETE) == 0;
      };
      while (visit(s) && !h->state.compare_exchange_weak(s, s + task_header::REF_ONE, std::memory_order_acquire,
                                                         std::memory_order_relaxed)) {
      }
      if (!visit(s)) continue;
      fn(context, h);
      release(h);
    }
  }
}

}  // namespace warden::detail
