// A host that owns its thread and calls in: the way a game engine, a GUI
// toolkit, a plugin host or a smart-contract VM drives warden tasks through a
// warden::local_executor.
//
// The fake host below runs 60 "frames". Each frame it
//   * delivers the replies to requests made by earlier frames (an update
//     context: the callback wakes the tasks awaiting them, which then run),
//   * runs the game tick, which spawns a small task,
//   * every 15th frame answers a read-only query (a query context: only
//     query tasks run there; update work waits for the next update context),
//   * once, reports that a reply's callback failed (a trap): the task that
//     awaited it is destroyed instead of run, and its guard, seeing
//     is_recovering_from_trap(), spawns a retry.
#include <warden/embed/local_executor.hpp>
#include <warden/sync/oneshot.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

/// Requests in flight: the host answers each one some frames later.
class fake_network {
 public:
  warden::oneshot_receiver<std::string> request(std::string what, int now, int latency) {
    auto [tx, rx] = warden::oneshot<std::string>();
    in_flight_.push_back({now + latency, std::move(what), std::move(tx)});
    return std::move(rx);
  }

  /// Replies due by `now` (the host wakes their tasks by sending).
  void deliver(int now, const std::string& failing) {
    for (auto& r : in_flight_)
      if (r.due <= now && r.tx.valid() && r.what != failing) (void)r.tx.send("<" + r.what + " bytes>");
  }
  /// The reply to `what` failed: dropping its sender wakes its task.
  void fail(const std::string& what) {
    for (auto& r : in_flight_)
      if (r.what == what) r.tx = {};
  }

 private:
  struct pending {
    int due;
    std::string what;
    warden::oneshot_sender<std::string> tx;
  };
  std::vector<pending> in_flight_;
};

struct game {
  fake_network network;
  std::map<std::string, std::string> assets;
  int frame = 0;
  int ticks = 0;
  warden::local_executor exec;  // last: destroyed first, with whatever tasks are left
};

warden::task<void> load_asset(game& g, std::string name);

/// Lives in load_asset's frame. On a trap, the load's effects were rolled
/// back by the host: schedule a retry (it runs in the next update context).
struct retry_on_trap {
  game* g;
  std::string name;
  ~retry_on_trap() {
    if (!warden::is_recovering_from_trap()) return;
    std::printf("  [frame %2d] load of %s trapped: cleaning up, retry scheduled\n", g->frame, name.c_str());
    (void)warden::local_executor::current()->spawn(load_asset(*g, name + "-retry"));
  }
};

warden::task<void> load_asset(game& g, std::string name) {
  retry_on_trap guard{&g, name};
  auto reply = g.network.request(name, g.frame, 3 + static_cast<int>(name.size() % 4));
  auto bytes = co_await reply.recv();  // parked until the host delivers the reply
  if (!bytes) co_return;               // the host dropped the request
  g.assets[name] = *bytes;
  std::printf("  [frame %2d] loaded %s\n", g.frame, name.c_str());
}

warden::task<void> tick(game& g) {
  ++g.ticks;
  co_await warden::yield_now{};  // lets the other ready tasks run first
}

warden::task<void> report(game& g) {
  std::printf("  [frame %2d] query: %zu assets loaded, %d ticks, %zu tasks alive (this one included)\n", g.frame,
              g.assets.size(), g.ticks, g.exec.alive_tasks());
  co_return;
}

}  // namespace

int main() {
  game g;
  const std::string failing = "music";
  for (g.frame = 1; g.frame <= 60; ++g.frame) {
    // The frame callback: an update context. Spawned tasks and the tasks the
    // replies wake run when the callback returns, before run_update returns.
    g.exec.run_update([&] {
      if (g.frame == 1)
        for (const char* name : {"map", "music", "sprites"}) (void)g.exec.spawn(load_asset(g, name));
      g.network.deliver(g.frame, failing);
      (void)g.exec.spawn(tick(g));
    });
    // The reply to the music request came back as a failure: destroy the
    // task it would have woken (its destructors see is_recovering_from_trap()).
    if (g.frame == 8) g.exec.run_cancellation([&] { g.network.fail(failing); });
    // A read-only query from the host: only query tasks run here.
    if (g.frame % 15 == 0) g.exec.run_query([&] { (void)g.exec.spawn(report(g)); });
  }
  std::printf("after 60 frames: %zu assets, %d ticks, %zu tasks alive\n", g.assets.size(), g.ticks,
              g.exec.alive_tasks());
  return g.assets.size() == 3 && g.assets.count("music-retry") == 1 ? 0 : 1;
}
