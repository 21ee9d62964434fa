// A crawler-like job runner on a task_tracker tree: one child tracker per
// host, each with its own concurrency limit (2 requests per host at a time),
// flaky fetches retried with exponential backoff and jitter, a graceful join
// at shutdown, and the metrics printed at the end (also as Prometheus text).
//
// The "network" is simulated: a fetch sleeps a little and fails the first
// time for some pages, so the retry policy has work to do.
#include <warden/warden.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct page {
  std::string url;
  std::size_t bytes = 0;
};

/// Counts attempts per URL, to make every third page fail once.
struct flaky_network {
  std::mutex lock;
  std::map<std::string, int> attempts;

  bool fails_this_time(const std::string& url) {
    std::lock_guard guard(lock);
    const int attempt = ++attempts[url];
    return attempt == 1 && url.size() % 3 == 0;
  }
};

warden::task<warden::cancellable_result<page>> fetch(std::shared_ptr<flaky_network> net, std::string url,
                                                     warden::cancellation_token token) {
  co_await warden::sleep_for(2ms);  // the request
  if (token.is_cancelled()) co_return warden::cancellable_result<page>::cancelled();
  if (net->fails_this_time(url)) co_return warden::cancellable_result<page>::error("503 from " + url);
  co_return warden::cancellable_result<page>::ok(page{url, 1000 + url.size()});
}

warden::task<void> crawl() {
  auto retry = std::make_shared<warden::retry_policy>(
      warden::retry_options{.max_attempts = 4, .initial_backoff = 5ms, .max_backoff = 100ms, .jitter = 0.3});
  auto crawler = warden::task_tracker::builder()
                     .name("crawler")
                     .scheduler(std::make_shared<warden::unlimited_scheduler>())  // the hosts set the limits
                     .error_policy(retry)
                     .build();

  const std::vector<std::string> hosts = {"a.example", "b.example", "c.example"};
  auto net = std::make_shared<flaky_network>();
  std::vector<warden::task_handle<page>> pages;
  for (const std::string& host : hosts) {
    // Per host: at most 2 requests at once (the child's own semaphore);
    // its counts roll up into "crawler".
    auto per_host = crawler.child_tracker_builder()
                        .name("crawler/" + host)
                        .scheduler(std::make_shared<warden::semaphore_scheduler>(2))
                        .build();
    for (int i = 0; i < 6; ++i) {
      std::string url = "https://" + host + "/page/" + std::to_string(i);
      pages.push_back(
          per_host.spawn_cancellable([net, url](warden::cancellation_token token) { return fetch(net, url, token); }));
    }
  }

  // Graceful shutdown: no new work, wait for every job (retries included).
  co_await crawler.join();

  std::size_t bytes = 0;
  int ok = 0;
  for (auto& h : pages) {
    auto got = co_await std::move(h);
    if (got) {
      ++ok;
      bytes += got->bytes;
    } else {
      std::printf("lost: %s\n", got.error().what());
    }
  }
  int attempts = 0;
  for (const auto& [url, n] : net->attempts) attempts += n;
  std::printf("%d fetches for %zu pages: %d retried after a failure\n", attempts, pages.size(),
              attempts - static_cast<int>(pages.size()));
  auto m = crawler.metrics();
  std::printf("crawled %d pages (%zu bytes): issued %llu, success %llu, failed %llu, cancelled %llu, pending %llu\n",
              ok, bytes, static_cast<unsigned long long>(m->issued()), static_cast<unsigned long long>(m->success()),
              static_cast<unsigned long long>(m->failed()), static_cast<unsigned long long>(m->cancelled()),
              static_cast<unsigned long long>(m->pending()));
  std::printf("%s", crawler.prometheus_text().c_str());
  if (ok != static_cast<int>(pages.size()) || m->pending() != 0) throw std::runtime_error("the crawl lost pages");
}

}  // namespace

int main() {
  warden::runtime rt;
  rt.block_on(crawl());
  return 0;
}
