#include "asymmetric_fence.hpp"

#include <warden/detail/sanitizers.hpp>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace warden::detail {
namespace {

bool register_membarrier() noexcept {
  if constexpr (WARDEN_TSAN) return false;  // TSan cannot see the kernel's barrier
  const long supported = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

bool heavy_fence_available() noexcept {
  static const bool available = register_membarrier();
  return available;
}

void heavy_fence() noexcept {
  // Cannot fail once registered; if it did, a full fence here alone would
  // not be enough, so the registration is the only place that decides.
  ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}

}  // namespace warden::detail
