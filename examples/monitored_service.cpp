// A small service supervised by warden: a heartbeat loop that must never
// end, a fallible sync job, and a connection whose destructor registers its
// async cleanup with the ambient scope. Every failure is reported, none is
// silent.
//
//   ./build/release/examples/monitored_service
#include <warden/supervise/monitor.hpp>
#include <warden/supervise/scope.hpp>
#include <warden/warden.hpp>

#include <chrono>
#include <cstdio>
#include <expected>
#include <string>

using namespace std::chrono_literals;

// A heartbeat: meant to run until the service stops.
warden::task<void> heartbeat(int beats) {
  for (int i = 0; i < beats; ++i) {
    co_await warden::sleep_for(10ms);
    std::printf("heartbeat %d\n", i);
  }
  // Returning is a failure for an infinite task: the monitor reports it.
}

struct sync_error {
  std::string reason;
  std::string message() const { return "sync failed: " + reason; }
};

// A fallible job: an error is a value, reported with its message().
warden::task<std::expected<void, sync_error>> sync_once() {
  co_await warden::sleep_for(5ms);
  co_return std::unexpected(sync_error{"upstream returned 503"});
}

warden::task<void> close_connection(std::string peer) {
  co_await warden::sleep_for(5ms);  // e.g. a graceful goodbye on the wire
  std::printf("closed the connection to %s\n", peer.c_str());
}

// Its destructor cannot await, so it hands the async close to the scope.
struct connection {
  std::string peer;
  ~connection() { warden::spawn_cleanup_job(close_connection(peer)); }
};

warden::task<void> handle_requests() {
  connection c{"db.example:5432"};
  warden::spawn_daemon(heartbeat(3));  // deep code registers work with the scope
  co_await warden::sleep_for(20ms);
  std::printf("requests handled\n");
}  // c's destructor registers the cleanup; the scope waits for it

warden::task<void> service() {
  warden::task_monitor monitor;
  auto failures = monitor.subscribe();
  auto beat = monitor.spawn_infinite_task("heartbeat", heartbeat(2));
  auto sync = monitor.spawn_fallible_task("sync", sync_once());

  co_await warden::enter_scope(handle_requests());  // returns after the heartbeat and the cleanup

  for (int i = 0; i < 2; ++i) {
    auto failure = co_await failures.recv();
    if (failure) std::printf("monitor: %s\n", warden::describe(*failure).c_str());
  }
}

int main() {
  warden::runtime rt;
  rt.block_on(service());
}
