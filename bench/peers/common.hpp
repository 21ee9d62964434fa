// Shared by the peer workload programs (bench/peers/*_workloads.cpp): the
// workload names and default sizes, the command line, the clock, RSS readings
// from /proc/self/status, and the one RESULT / SKIP line each run prints.
//
// Every program is run as `<program> <workload> [n]` and prints exactly one
// line on stdout:
//   RESULT peer=<p> workload=<w> n=<n> wall_ms=<ms> ok=<0|1> hwm_kb=<peak RSS>
//          [baseline_kb=.. parked_kb=.. bytes_per_task=..]     (parked_memory)
//   SKIP peer=<p> workload=<w> reason=<why>                    (exit code 3)
// Exit code: 0 when ok=1, 1 when the run's own check failed, 2 on bad usage.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace bench {

inline constexpr int worker_threads = 2;

// Per-workload fixed shape (the numbers); `n` on the command line
// scales the first dimension only.
inline constexpr std::uint64_t yields_per_task = 1000;       // yield_many
inline constexpr std::uint64_t round_trips_per_pair = 1000;  // ping_pong
inline constexpr auto timer_sleep = std::chrono::milliseconds(10);

struct workload_info {
  std::string_view name;
  std::uint64_t default_n;
  const char* meaning;
};

inline constexpr workload_info workloads[] = {
    {"spawn_many", 1'000'000, "trivial tasks spawned from inside the runtime"},
    {"skynet", 1'000'000, "leaves of the 10-ary tree (a power of 10)"},
    {"yield_many", 1'000, "tasks, each yielding 1000 times"},
    {"chained_spawn", 1'000'000, "tasks in the chain"},
    {"ping_pong", 1'000, "pairs, each doing 1000 round trips"},
    {"timers", 100'000, "tasks each sleeping 10 ms"},
    {"parked_memory", 1'000'000, "tasks parked on one event"},
};

struct args {
  std::string workload;
  std::uint64_t n = 0;
};

[[noreturn]] inline void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s <workload> [n]\nworkloads:\n", argv0);
  for (const auto& w : workloads)
    std::fprintf(stderr, "  %-14s n = %s (default %llu)\n", std::string(w.name).c_str(), w.meaning,
                 static_cast<unsigned long long>(w.default_n));
  std::exit(2);
}

inline args parse(int argc, char** argv) {
  if (argc < 2 || argc > 3) usage(argv[0]);
  args a;
  a.workload = argv[1];
  const workload_info* info = nullptr;
  for (const auto& w : workloads)
    if (w.name == a.workload) info = &w;
  if (info == nullptr) usage(argv[0]);
  a.n = info->default_n;
  if (argc == 3) {
    char* end = nullptr;
    a.n = std::strtoull(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0' || a.n == 0) usage(argv[0]);
  }
  if (a.workload == "skynet") {
    std::uint64_t p = 1;
    while (p < a.n) p *= 10;
    if (p != a.n) {
      std::fprintf(stderr, "skynet: n must be a power of 10\n");
      std::exit(2);
    }
  }
  return a;
}

/// Sum of leaf numbers 0..n-1: what skynet must return.
constexpr std::uint64_t skynet_expected(std::uint64_t n) { return n * (n - 1) / 2; }

/// A field of /proc/self/status in kB (VmRSS, VmHWM), or 0.
inline std::uint64_t status_kb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  std::uint64_t value = 0;
  const std::size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') {
      value = std::strtoull(line + len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return value;
}
inline std::uint64_t rss_kb() { return status_kb("VmRSS"); }
inline std::uint64_t hwm_kb() { return status_kb("VmHWM"); }

using clock = std::chrono::steady_clock;

struct stopwatch {
  clock::time_point start = clock::now();
  [[nodiscard]] double ms() const { return std::chrono::duration<double, std::milli>(clock::now() - start).count(); }
};

/// parked_memory's extra fields.
struct parked {
  std::uint64_t baseline_kb = 0;
  std::uint64_t parked_kb = 0;
};

inline int report(std::string_view peer, const args& a, double wall_ms, bool ok,
                  std::optional<parked> p = std::nullopt) {
  std::printf("RESULT peer=%.*s workload=%s n=%llu wall_ms=%.3f ok=%d hwm_kb=%llu", static_cast<int>(peer.size()),
              peer.data(), a.workload.c_str(), static_cast<unsigned long long>(a.n), wall_ms, ok ? 1 : 0,
              static_cast<unsigned long long>(hwm_kb()));
  if (p) {
    const double per_task =
        (static_cast<double>(p->parked_kb) - static_cast<double>(p->baseline_kb)) * 1024.0 / static_cast<double>(a.n);
    std::printf(" baseline_kb=%llu parked_kb=%llu bytes_per_task=%.1f", static_cast<unsigned long long>(p->baseline_kb),
                static_cast<unsigned long long>(p->parked_kb), per_task);
  }
  std::printf("\n");
  std::fflush(stdout);
  return ok ? 0 : 1;
}

inline int skip(std::string_view peer, const args& a, std::string_view reason) {
  std::printf("SKIP peer=%.*s workload=%s reason=%.*s\n", static_cast<int>(peer.size()), peer.data(),
              a.workload.c_str(), static_cast<int>(reason.size()), reason.data());
  std::fflush(stdout);
  return 3;
}

/// Waits (polling, 1 ms) until `pred()` holds; used by parked_memory to see
/// every task parked before reading RSS. Not part of any timed hot path
/// (the parking itself is included in wall_ms, the poll granularity too).
template <class Pred>
void wait_until(Pred pred) {
  while (!pred()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

/// Whether `l` is released, giving it up to `d` (polling; latch has no timed wait).
inline bool wait_for(std::latch& l, std::chrono::milliseconds d) {
  if (l.try_wait()) return true;
  std::this_thread::sleep_for(d);
  return l.try_wait();
}

}  // namespace bench
