// The coroutine frame allocator (include/warden/detail/frame_allocator.hpp):
// size classes carved from slabs, per-thread free lists, a global depot for
// frames freed on another thread (SEMANTICS: spawn does not allocate beyond
// the task frame; a parked task costs its header and its frame).
#include "support/test_support.hpp"

#include <warden/detail/frame_allocator.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

namespace {

using warden::detail::allocate_frame;
using warden::detail::deallocate_frame;
namespace frames = warden::detail::frames;

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Every size, inside the classes and beyond them, gets a block aligned as
// operator new aligns (16) that holds the whole request, and blocks handed
// out at the same time never overlap.
TEST(frame_allocator, every_size_gets_a_16_aligned_block_of_its_own) {
  std::vector<std::pair<unsigned char*, std::size_t>> live;
  for (std::size_t size = 1; size <= 1100; size += (size < 300 ? 1 : 7)) {
    for (int copy = 0; copy < 3; ++copy) {
      auto* p = static_cast<unsigned char*>(allocate_frame(size));
      ASSERT_TRUE(aligned16(p)) << "size " << size;
      std::memset(p, static_cast<int>(size & 0xff), size);
      live.emplace_back(p, size);
    }
  }
  for (auto [p, size] : live)
    for (std::size_t i = 0; i < size; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(size & 0xff)) << "size " << size;
  for (auto [p, size] : live) deallocate_frame(p, size);
}

// A block freed on its thread is the next one that thread gets for a size of
// the same class (no system allocation in the steady state).
TEST(frame_allocator, a_freed_block_is_reused_by_the_next_allocation_of_its_class) {
  if (!frames::kInline) GTEST_SKIP() << "AddressSanitizer build: every block comes from the system, to catch misuse";
  void* a = allocate_frame(60);
  deallocate_frame(a, 60);
  EXPECT_EQ(allocate_frame(64), a);  // 60 and 64 share the 64-byte class
  deallocate_frame(a, 64);
  void* b = allocate_frame(65);  // the next class
  EXPECT_NE(b, a);
  deallocate_frame(b, 65);
}

// Frames made on one thread and freed on another come back to the first
// thread through the depot, instead of piling up where they died.
TEST(frame_allocator, frames_freed_on_another_thread_return_through_the_depot) {
  if (!frames::kInline) GTEST_SKIP() << "AddressSanitizer build: every block comes from the system, to catch misuse";
  constexpr std::size_t kCount = 8 * frames::kBatch;
  constexpr std::size_t kSize = 200;
  std::vector<void*> made(kCount);
  for (auto& p : made) p = allocate_frame(kSize);
  const std::set<void*> first(made.begin(), made.end());
  std::thread([&] {
    for (void* p : made) deallocate_frame(p, kSize);
  }).join();  // the freeing thread exits too: what it kept goes to the depot
  std::size_t reused = 0;
  for (auto& p : made) {
    p = allocate_frame(kSize);
    reused += first.count(p);
  }
  // All but the few blocks this thread's last miss carved ahead (2 KiB of
  // its slab, see carve()), which its list hands out first.
  EXPECT_GE(reused, kCount - 2048 / kSize);
  for (void* p : made) deallocate_frame(p, kSize);
}

// A thread that exits hands what it held (its lists and the rest of its
// slabs) to the depot; a thread that allocates during its exit still gets
// working blocks.
TEST(frame_allocator, an_exiting_thread_hands_its_blocks_on) {
  if (!frames::kInline) GTEST_SKIP() << "AddressSanitizer build: every block comes from the system, to catch misuse";
  constexpr std::size_t kSize = 968;
  std::set<void*> freed;
  std::thread([&] {
    std::vector<void*> blocks;
    for (int i = 0; i < 10; ++i) blocks.push_back(allocate_frame(kSize));
    for (void* p : blocks) {
      freed.insert(p);
      deallocate_frame(p, kSize);
    }
  }).join();
  // A fresh thread (empty lists) refills from the depot before it carves:
  // the exiting thread's chain holds the ten blocks, behind what was left of
  // its slab.
  std::size_t reused = 0;
  std::thread([&] {
    std::vector<void*> again;
    for (int i = 0; i < 64 && reused < freed.size(); ++i) {
      again.push_back(allocate_frame(kSize));
      reused += freed.count(again.back());
    }
    for (void* p : again) deallocate_frame(p, kSize);
  }).join();
  EXPECT_EQ(reused, freed.size());

  struct at_exit {
    ~at_exit() {
      void* p = allocate_frame(100);
      EXPECT_TRUE(aligned16(p));
      std::memset(p, 1, 100);
      deallocate_frame(p, 100);
    }
  };
  std::thread([] {
    thread_local at_exit late;
    void* p = allocate_frame(100);  // registers the allocator's own cleanup first
    deallocate_frame(p, 100);
    (void)&late;
  }).join();
}

}  // namespace
