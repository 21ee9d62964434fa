// Internal: the back-off of a thread that waits for another to finish a
// step it has already started (a few instructions away).
#pragma once

#include <thread>

namespace warden::detail {

/// One pause instruction: tells the CPU the thread is spinning (saves power,
/// yields the core's pipeline to its sibling hyper-thread).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

/// One round of waiting: a pause instruction for the first rounds, then
/// the thread yields (the other thread may have been preempted mid-step).
inline void spin_pause(unsigned& round) noexcept {
  if (++round < 64) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

}  // namespace warden::detail
