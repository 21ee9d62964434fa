// warden/task_failure.hpp — the record of a task that failed: task_failure,
// failed_task, panic_reason, error_reason, early_termination.
//
// One record type for every failure warden reports, so that a monitored
// task's failure (warden/supervise/monitor.hpp) and a detached task's
// unhandled failure (runtime::subscribe_failures) look alike:
//
//   auto failures = monitor.subscribe();               // or rt.subscribe_failures()
//   auto got = co_await failures.recv();
//   if (got) std::printf("%s\n", warden::describe(*got).c_str());
//   // "task 12 'heartbeat' panicked: connection reset"
//
// # Backtrace
// `panic_reason::backtrace` is meant for the task's async backtrace (the
// chain of awaiting frames and their co_await locations). That backtrace
// does not exist in warden yet: the field is always empty for now.
#pragma once

#include <warden/join_handle.hpp>

#include <string>
#include <variant>

namespace warden {

/// Which task failed.
struct failed_task {
  task_id id;
  std::string name{};  ///< the name it was spawned with ("" when none)
};

/// An exception escaped the task.
struct panic_reason {
  std::string message;         ///< the exception's what(), or a placeholder
  std::string backtrace = {};  ///< always empty for now (see the top of this header)
};

/// A fallible task returned an error; `message` is the error as text.
struct error_reason {
  std::string message;
};

/// A task meant to run forever returned.
struct early_termination {};

using failure_reason = std::variant<panic_reason, error_reason, early_termination>;

/// One failure: which task, and why.
struct task_failure {
  failed_task task;
  failure_reason reason;
};

/// One line: "task 12 'name' panicked: what" / "... returned an error: what"
/// / "... ended, but it should run forever".
std::string describe(const task_failure& failure);

}  // namespace warden
