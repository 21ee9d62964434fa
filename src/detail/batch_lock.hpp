// Internal: locking the mutexes that guard batch hand-offs (the injection
// queue, the header pool, the frame depot).
//
// Their holders keep them for a few dozen nanoseconds (a few pointer moves),
// but two workers handing batches to each other collide often: in a spawn
// storm one worker allocates what the other frees. A plain lock() that finds
// the mutex taken sleeps in the kernel, and the holder's unlock then pays a
// futex wake: microseconds for a wait of nanoseconds. So try a few times
// with a pause first, and only then block.
#pragma once

#include <warden/detail/spin_pause.hpp>

#include <mutex>

namespace warden::detail {

[[nodiscard]] inline std::unique_lock<std::mutex> lock_batch(std::mutex& m) noexcept {
  // Fewer rounds than spin_pause's 64 pauses: it never yields here.
  for (unsigned round = 0; round < 63;) {
    if (m.try_lock()) return std::unique_lock<std::mutex>(m, std::adopt_lock);
    spin_pause(round);
  }
  return std::unique_lock<std::mutex>(m);
}

}  // namespace warden::detail
