// Internal: a relaxed atomic load that is only compared, as one compare
// with memory.
//
// GCC loads a relaxed atomic into a register before it tests it (it folds
// no atomic load into another instruction), so `flag.load(relaxed) == 0`
// is a load, a test and a branch where x86-64 needs a compare with memory
// and a branch. On the hottest paths (the solo section's look at
// `solo_blocked`, every message of a ping-pong) that instruction counts.
// The compare is an asm reading the object (an aligned byte load, atomic
// on x86-64, with no more ordering than a relaxed load: the callers'
// barriers order it as they ordered the load); elsewhere, and under
// ThreadSanitizer (which does not see an asm's reads), it is the relaxed
// load.
#pragma once

#include "sanitizers.hpp"

#include <atomic>
#include <cstdint>

namespace warden::detail {

/// Whether the one-byte atomic `flag` is zero, read relaxed.
template <class B>
[[gnu::always_inline]] inline bool relaxed_byte_is_zero(const std::atomic<B>& flag) noexcept {
  static_assert(sizeof(B) == 1 && std::atomic<B>::is_always_lock_free);
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__) && !WARDEN_TSAN
  bool zero;
  asm volatile("cmpb $0, %1" : "=@ccz"(zero) : "m"(flag));
  return zero;
#else
  return flag.load(std::memory_order_relaxed) == B{0};
#endif
}

/// Whether none of `mask`'s bits is set in the atomic `word`, read relaxed.
[[gnu::always_inline]] inline bool relaxed_bits_clear(const std::atomic<std::uint64_t>& word,
                                                      std::uint64_t mask) noexcept {
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__) && !WARDEN_TSAN
  bool clear;
  asm volatile("testq %2, %1" : "=@ccz"(clear) : "m"(word), "er"(mask));
  return clear;
#else
  return (word.load(std::memory_order_relaxed) & mask) == 0;
#endif
}

/// Whether the atomic `word`, read relaxed, equals `value`.
[[gnu::always_inline]] inline bool relaxed_equals(const std::atomic<std::uint64_t>& word,
                                                  std::uint64_t value) noexcept {
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__) && !WARDEN_TSAN
  bool equal;
  asm volatile("cmpq %2, %1" : "=@ccz"(equal) : "m"(word), "r"(value));
  return equal;
#else
  return word.load(std::memory_order_relaxed) == value;
#endif
}

}  // namespace warden::detail
