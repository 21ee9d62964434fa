// Interned spawn sites: one immutable record per (spawn location, result
// type, scheduler), which every task spawned there points to
// (task_header::site), so a header keeps one word for its result_ops, its
// spawn location and its scheduler.
//
// The records are made under a global lock the first time a thread spawns at
// a site, and never freed (a program has a bounded number of spawn sites;
// the table is leaked on purpose: tasks may be spawned or reported during
// static destruction, and a header, which may outlive its runtime, reads its
// record until it is freed). The scheduler is part of the key: a program
// that makes runtimes (or local executors) at ever new addresses keeps one
// record (48 bytes) per spawn site and scheduler address used, which is the
// price of the header's eighth word; a runtime made at a reused address
// reuses the records. A thread finds the record again through a small
// direct-mapped cache of its own, a few loads and compares per spawn; a
// miss, or a collision in the cache, takes the lock. In front of that cache,
// the record of the thread's last spawn is compared first, inline at the
// spawn (spawn_site.hpp).
//
// Keys: see kLocationIsOneWord below. Locations that compare equal are
// interchangeable for every reader (reports, spawn_location()).
#include "spawn_site.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <type_traits>
#include <unordered_map>

namespace warden::detail {
namespace {

// A std::source_location is one pointer to a per-call-site record in
// libstdc++ and libc++; its bits, when it is that small, identify the call
// site exactly (two equal locations with different bits just get two
// records), so the common key is two words compared and hashed in a few
// instructions. Elsewhere the key is the location's fields.
constexpr bool kLocationIsOneWord =
    sizeof(std::source_location) == sizeof(std::uintptr_t) && std::is_trivially_copyable_v<std::source_location>;

struct site_key {
  const result_ops* results;
  task_scheduler* scheduler;
  std::uintptr_t bits;  // kLocationIsOneWord: the location's bits
  const char* file;
  const char* function;
  std::uint_least32_t line;
  std::uint_least32_t column;

  bool operator==(const site_key&) const noexcept = default;
};

std::uintptr_t bits_of(const std::source_location& location) noexcept {
  std::uintptr_t bits = 0;
  if constexpr (kLocationIsOneWord) std::memcpy(&bits, &location, sizeof(bits));
  return bits;
}

site_key key_of(const std::source_location& location, const result_ops& results, task_scheduler* scheduler) noexcept {
  if constexpr (kLocationIsOneWord) return {&results, scheduler, bits_of(location), nullptr, nullptr, 0, 0};
  return {&results, scheduler, 0, location.file_name(), location.function_name(), location.line(), location.column()};
}

bool matches(const spawn_site& site, const site_key& key) noexcept {
  if constexpr (kLocationIsOneWord)
    return site.results == key.results && site.scheduler == key.scheduler && bits_of(site.location) == key.bits;
  return site.results == key.results && site.scheduler == key.scheduler && site.location.line() == key.line &&
         site.location.column() == key.column && site.location.file_name() == key.file &&
         site.location.function_name() == key.function;
}

std::size_t hash_of(const site_key& key) noexcept {
  // The scheduler is mixed in with a shift (two instructions): the final
  // multiply spreads it, and a program rarely has more than one or two.
  std::uint64_t h = (reinterpret_cast<std::uintptr_t>(key.results) >> 3) ^ key.bits ^
                    (reinterpret_cast<std::uintptr_t>(key.scheduler) >> 6);
  if constexpr (!kLocationIsOneWord) {
    h = h * 0x9E3779B97F4A7C15ull + (reinterpret_cast<std::uintptr_t>(key.file) >> 3);
    h = h * 0x9E3779B97F4A7C15ull + key.line;
    h = h * 0x9E3779B97F4A7C15ull + key.column;
    h = h * 0x9E3779B97F4A7C15ull + (reinterpret_cast<std::uintptr_t>(key.function) >> 3);
  }
  h *= 0x9E3779B97F4A7C15ull;
  return static_cast<std::size_t>(h >> 32);
}

struct key_hash {
  std::size_t operator()(const site_key& key) const noexcept { return hash_of(key); }
};

struct site_table {
  std::mutex mutex;
  std::unordered_map<site_key, const spawn_site*, key_hash> sites;
};

site_table& global_sites() {
  static site_table* table = new site_table;  // leaked on purpose (see above)
  return *table;
}

constexpr std::size_t kCacheSlots = 64;
// Trivially destructible: no TLS guard, nothing to do at thread exit (the
// records belong to the global table).
constinit thread_local std::array<const spawn_site*, kCacheSlots> tl_sites{};

const spawn_site* intern_slow_or_throw(const site_key& key, const std::source_location& location,
                                       const spawn_site*& slot) {
  site_table& table = global_sites();
  std::lock_guard lock(table.mutex);
  auto [it, inserted] = table.sites.try_emplace(key, nullptr);
  if (inserted) {
    try {
      it->second = new spawn_site{key.results, key.scheduler, location};
    } catch (...) {
      table.sites.erase(it);
      throw;
    }
  }
  slot = it->second;
  return it->second;
}

// Takes the key's parts, not the key: the fast path then builds no key in
// memory (its compares use the parts in registers).
[[gnu::noinline]] const spawn_site* intern_slow(std::coroutine_handle<> root, const std::source_location& location,
                                                const result_ops& results, task_scheduler* scheduler,
                                                const spawn_site*& slot) {
  try {
    return intern_slow_or_throw(key_of(location, results, scheduler), location, slot);
  } catch (...) {
    root.destroy();  // the task never runs
    throw;
  }
}

}  // namespace

namespace {
/// What tl_last_spawn_site holds before a thread's first spawn: matches no
/// spawn (no result_ops, no scheduler), so the front entry needs no null
/// test.
constinit const spawn_site no_spawn_site{nullptr, nullptr, std::source_location{}};
}  // namespace

constinit thread_local const spawn_site* tl_last_spawn_site = &no_spawn_site;

const spawn_site* intern_spawn_site(std::coroutine_handle<> root, const std::source_location& location,
                                    const result_ops& results, task_scheduler* scheduler) {
  const site_key key = key_of(location, results, scheduler);
  const spawn_site*& slot = tl_sites[hash_of(key) % kCacheSlots];
  const spawn_site* site = slot;
  if (site == nullptr || !matches(*site, key)) [[unlikely]]
    site = intern_slow(root, location, results, scheduler, slot);
  tl_last_spawn_site = site;  // intern_spawn_site_inline's front entry
  return site;
}

}  // namespace warden::detail
