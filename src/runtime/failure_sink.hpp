// Internal: where a runtime's unhandled failures (R17) go.
//
// A sink is shared by reference count between the runtime and every
// finished, panicked task whose join handle has not decided yet whether it
// will observe the failure; so a handle dropped after its runtime is gone
// still reports to the policy that runtime was configured with.
#pragma once

#include <warden/runtime.hpp>
#include <warden/sync/broadcast.hpp>
#include <warden/task_failure.hpp>

#include <atomic>
#include <exception>

namespace warden::detail {

class failure_sink {
 public:
  failure_sink(unhandled_failure_policy policy, std::function<void(const unhandled_failure&)> reporter,
               std::size_t feed_capacity = 64);

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel: the deleting thread must see every other owner's last use.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  /// Applies the policy to `task`'s failure. Never throws (a throwing
  /// reporter is caught and its message printed).
  void report(const task_header* task, const std::exception_ptr& error) noexcept;

  /// A receiver of the failures `report` publishes from now on.
  broadcast_receiver<task_failure> subscribe() { return feed_.subscribe(); }

 private:
  std::atomic<std::uint32_t> refs_{1};
  unhandled_failure_policy policy_;
  std::function<void(const unhandled_failure&)> reporter_;
  // The feed of runtime::subscribe_failures(); its own receiver is dropped at
  // once, so that with no subscriber a failure is dropped, not kept.
  broadcast_sender<task_failure> feed_;
};

/// "what()" of an exception_ptr, or a placeholder for non-std exceptions.
std::string describe_exception(const std::exception_ptr& error);
/// True if `error` holds a std::exception.
bool is_std_exception(const std::exception_ptr& error) noexcept;
/// "task 12 'name' (spawned at file:line)".
std::string describe_task(task_id id, std::string_view name, const std::source_location& where);

}  // namespace warden::detail
