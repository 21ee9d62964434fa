// Internal: a timer registration, embedded in the awaiter that sleeps (so in
// the sleeping task's frame: arming a timer allocates nothing).
//
// A node is `armed` while filed in its runtime's timing wheel, `firing`
// once the driver took it out because its deadline passed (it then waits,
// waker inside, in the driver's list of due timers), `fired` once its waker
// was taken to be woken, `idle` otherwise. All fields are guarded by the
// time driver's lock; the owner disarms the node in its destructor, which is
// also the cancellation path. One exception: `status` is also read without
// the lock, by disarm, which skips the lock for a node it sees `fired`. The
// driver stores `fired` (release) as its last touch of the node, after
// taking its waker, so an owner that loads `fired` (acquire) owns the whole
// node again; any other value sends disarm to the locked path.
#pragma once

#include <warden/detail/task_header.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace warden::detail {

class time_driver;

struct timer_node {
  enum class state : std::uint8_t { idle, armed, firing, fired };

  std::uint64_t deadline = 0;  // driver tick (ms since its epoch), rounded up
  timer_node* prev = nullptr;
  timer_node* next = nullptr;
  std::uint8_t level = 0;
  std::uint8_t slot = 0;
  std::atomic<state> status{state::idle};
  // Set by sleep_for with a positive duration: the deadline is known to be
  // ahead, so await_ready need not read the clock. Owned by the awaiter.
  bool deadline_ahead = false;
  waker wake;
  time_driver* driver = nullptr;
};

}  // namespace warden::detail
