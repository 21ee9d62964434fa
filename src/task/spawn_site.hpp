// Internal: intern_spawn_site with a one-entry front cache, inline at the
// spawn (see spawn_site.cpp).
#pragma once

#include <warden/detail/task_header.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace warden::detail {

/// The record the calling thread's last intern_spawn_site returned (before
/// the first, a record that matches no spawn: never null). Records are
/// never freed, so it stays valid.
extern constinit thread_local const spawn_site* tl_last_spawn_site;

/// The thread's last record if it is the one for `location`, `results` and
/// `scheduler`, else null (where a location is one word, compared by its
/// bits as the cache behind it does; elsewhere always null).
[[gnu::always_inline]] inline const spawn_site* last_spawn_site_for(const std::source_location& location,
                                                                    const result_ops& results,
                                                                    const task_scheduler* scheduler) noexcept {
  if constexpr (sizeof(std::source_location) == sizeof(std::uintptr_t) &&
                std::is_trivially_copyable_v<std::source_location>) {
    const spawn_site* const last = tl_last_spawn_site;
    if (last->results == &results && last->scheduler == scheduler) {
      std::uintptr_t a;
      std::uintptr_t b;
      std::memcpy(&a, &last->location, sizeof(a));
      std::memcpy(&b, &location, sizeof(b));
      if (a == b) [[likely]]
        return last;
    }
  }
  return nullptr;
}

/// intern_spawn_site, first comparing with the thread's last record: a loop
/// of spawns at one place (the common case) costs a load and three compares.
/// Only where a location is one word, compared by its bits as the cache
/// behind it does (see spawn_site.cpp).
[[gnu::always_inline]] inline const spawn_site* intern_spawn_site_inline(std::coroutine_handle<> root,
                                                                         const std::source_location& location,
                                                                         const result_ops& results,
                                                                         task_scheduler* scheduler) {
  if (const spawn_site* const last = last_spawn_site_for(location, results, scheduler)) [[likely]]
    return last;
  return intern_spawn_site(root, location, results, scheduler);
}

}  // namespace warden::detail
