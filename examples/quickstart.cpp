// Quick start: spawn, join, abort, and how a failing task is seen.
#include <warden/warden.hpp>

#include <iostream>
#include <stdexcept>

warden::task<int> compute(int x) { co_return x * 2; }

warden::task<void> forever() {
  for (;;) co_await warden::yield_now{};  // a task that never finishes by itself
}

warden::task<int> fails() {
  throw std::runtime_error("disk full");
  co_return 0;
}

warden::task<int> service() {
  // Spawn: the task runs concurrently; the handle yields its value.
  warden::join_handle<int> doubled = warden::spawn(compute(21), {.name = "compute"});
  int value = co_await std::move(doubled);
  std::cout << "compute(21) = " << value << "\n";

  // Abort: a task that would run forever is cancelled; its handle says so.
  auto spinner = warden::spawn(forever(), {.name = "spinner"});
  spinner.abort();
  auto outcome = co_await spinner.result();
  std::cout << "spinner cancelled: " << std::boolalpha << outcome.error().is_cancelled() << "\n";

  // Failure: an exception escaping a task reaches whoever awaits its handle.
  try {
    co_await warden::spawn(fails(), {.name = "writer"});
  } catch (const warden::join_error& e) {
    std::cout << "caught: " << e.what() << "\n";
  }
  co_return value;
}

int main() {
  warden::runtime_options options;
  options.worker_threads = 2;
  // A failure nobody awaits is reported, never silently dropped:
  options.failure_reporter = [](const warden::unhandled_failure& f) {
    std::cout << "unhandled failure of task '" << f.name << "': " << f.message << "\n";
  };
  warden::runtime rt(options);

  int result = rt.block_on(service());

  // A detached task that fails goes to the failure reporter.
  rt.spawn(fails(), {.name = "detached-writer"}).detach();
  rt.shutdown(std::chrono::seconds(1));
  std::cout << "service returned " << result << "\n";
}
