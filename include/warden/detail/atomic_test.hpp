// Internal: an atomic load that is only compared, as one compare with
// memory.
//
// GCC loads an atomic into a register before it tests it (it folds no
// atomic load into another instruction), so `flag.load(relaxed) == 0` is a
// load, a test and a branch where x86-64 needs a compare with memory and a
// branch. On the hottest paths (the solo sections, a capacity-1 recv: every
// message of a ping-pong) that instruction counts. On x86-64 the compare
// is an asm reading the object: an aligned load of at most 8 bytes is
// atomic there, and every load is an acquire in hardware (TSO), so the asm
// is a relaxed load, and with a compiler barrier after it (the "memory"
// clobber of the acquire forms) an acquire load. Elsewhere, and under
// ThreadSanitizer (which does not see an asm's reads), it is the atomic
// load itself.
#pragma once

#include <warden/detail/sanitizers.hpp>

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__) && !WARDEN_TSAN
#define WARDEN_ATOMIC_TEST_ASM 1
#else
#define WARDEN_ATOMIC_TEST_ASM 0
#endif

namespace warden::detail {

/// Whether the one-byte atomic `flag` is zero, read relaxed.
template <class B>
[[gnu::always_inline]] inline bool relaxed_byte_is_zero(const std::atomic<B>& flag) noexcept {
  static_assert(sizeof(B) == 1 && std::atomic<B>::is_always_lock_free);
#if WARDEN_ATOMIC_TEST_ASM
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
#if WARDEN_ATOMIC_TEST_ASM
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
#if WARDEN_ATOMIC_TEST_ASM
  bool equal;
  asm volatile("cmpq %2, %1" : "=@ccz"(equal) : "m"(word), "r"(value));
  return equal;
#else
  return word.load(std::memory_order_relaxed) == value;
#endif
}

/// Whether the one-byte atomic `flag`, read with acquire, equals `value`.
template <class B>
[[gnu::always_inline]] inline bool acquire_byte_equals(const std::atomic<B>& flag, B value) noexcept {
  static_assert(sizeof(B) == 1 && std::atomic<B>::is_always_lock_free);
#if WARDEN_ATOMIC_TEST_ASM
  bool equal;
  asm volatile("cmpb %2, %1" : "=@ccz"(equal) : "m"(flag), "iq"(value) : "memory");
  return equal;
#else
  return flag.load(std::memory_order_acquire) == value;
#endif
}

/// Whether none of `mask`'s bits is set in the atomic `word`, read with
/// acquire.
[[gnu::always_inline]] inline bool acquire_bits_clear(const std::atomic<std::uint64_t>& word,
                                                      std::uint64_t mask) noexcept {
#if WARDEN_ATOMIC_TEST_ASM
  bool clear;
  asm volatile("testq %2, %1" : "=@ccz"(clear) : "m"(word), "er"(mask) : "memory");
  return clear;
#else
  return (word.load(std::memory_order_acquire) & mask) == 0;
#endif
}

}  // namespace warden::detail
