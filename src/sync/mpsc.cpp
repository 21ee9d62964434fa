// The part of the mpsc channel that does not depend on the value type: the
// deferred park of a capacity-1 recv (see mpsc_state_head).
#include <warden/sync/detail/mpsc_state.hpp>

namespace warden::detail {

bool commit_one_park(void* state, task_header* task, std::uint64_t word, const task_scheduler* solo) noexcept {
  return static_cast<mpsc_state_head*>(state)->park_one(unowned_waker{task, word, solo});
}

}  // namespace warden::detail
