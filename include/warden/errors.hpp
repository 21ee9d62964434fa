// warden/errors.hpp — the exception types warden throws for misuse and for
// work that could not be accepted.
//
// Two families, so callers can tell a bug from a condition:
//   * `usage_error` (a std::logic_error): the program used warden wrongly —
//     spawning with no runtime, awaiting a join handle twice, calling
//     block_on from a worker. The message names the misuse and the way out.
//   * `runtime_closed` (a std::runtime_error): the runtime is shutting down
//     and refuses new work. The task handed in is destroyed unrun.
//
//   try { warden::spawn(job()); }
//   catch (const warden::usage_error& e) { std::cerr << e.what(); }
#pragma once

#include <stdexcept>
#include <string>

namespace warden {

/// Thrown when warden is used in a way that can never work (a programming
/// error). `what()` says what was wrong and how to fix it.
class usage_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// Thrown by `spawn` / `spawn_blocking` / `block_on` on a runtime that has
/// begun shutting down. The task passed in was destroyed without running.
class runtime_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace warden
