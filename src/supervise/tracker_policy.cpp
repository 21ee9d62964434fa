#include <warden/supervise/tracker_policy.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>

namespace warden {

// ---- log sink ---------------------------------------------------------------------------

namespace {

class stderr_sink final : public log_sink {
 public:
  void write(log_level level, std::string_view line) noexcept override {
    const char* tag = level == log_level::error ? "error" : level == log_level::warning ? "warning" : "info";
    // One fprintf per line: stdio locks the stream, so concurrent lines do not interleave.
    std::fprintf(stderr, "warden [%s] %.*s\n", tag, static_cast<int>(line.size()), line.data());
  }
};

std::string describe(const failure_context& context) {
  std::string line = "task " + std::to_string(context.id.value()) + " in tracker '" + context.tracker + "' ";
  line += context.panicked ? "panicked" : "failed";
  if (context.attempt > 1) line += " (attempt " + std::to_string(context.attempt) + ")";
  line += ": ";
  line += context.message;
  return line;
}

double uniform_draw() {
  thread_local std::minstd_rand engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

}  // namespace

std::shared_ptr<log_sink> stderr_log_sink() {
  static const std::shared_ptr<log_sink> sink = std::make_shared<stderr_sink>();
  return sink;
}

// ---- log only -------------------------------------------------------------------------------

log_only_policy::log_only_policy(std::shared_ptr<log_sink> sink) : sink_(std::move(sink)) {
  if (sink_ == nullptr) throw std::invalid_argument("log_only_policy: the log sink is null");
}

std::shared_ptr<error_policy> log_only_policy::create_child() { return std::make_shared<log_only_policy>(sink_); }

error_response log_only_policy::on_error(const failure_context& context) {
  sink_->write(log_level::error, describe(context));
  return error_response::fail();
}

// ---- cancel on error -------------------------------------------------------------------------

cancel_on_error_policy::cancel_on_error_policy(std::vector<std::string> patterns)
    : cancel_on_error_policy(std::move(patterns), cancellation_token()) {}

cancel_on_error_policy::cancel_on_error_policy(std::vector<std::string> patterns, cancellation_token token)
    : patterns_(std::move(patterns)), token_(std::move(token)) {
  if (!token_.valid()) throw std::invalid_argument("cancel_on_error_policy: the token is empty (moved from)");
}

std::shared_ptr<error_policy> cancel_on_error_policy::create_child() {
  return std::make_shared<cancel_on_error_policy>(patterns_, token_.child_token());
}

error_response cancel_on_error_policy::on_error(const failure_context& context) {
  const bool matches =
      patterns_.empty() || std::any_of(patterns_.begin(), patterns_.end(), [&](const std::string& pattern) {
        return context.message.find(pattern) != std::string::npos;
      });
  if (!matches) return error_response::fail();
  token_.cancel();
  return error_response::shutdown();
}

// ---- threshold ---------------------------------------------------------------------------------

threshold_policy::threshold_policy(std::size_t max_failures) : max_failures_(max_failures) {
  if (max_failures == 0)
    throw std::invalid_argument("threshold_policy: max_failures is 0; the n-th failure shuts down, so use at least 1");
}

std::shared_ptr<error_policy> threshold_policy::create_child() {
  return std::make_shared<threshold_policy>(max_failures_);
}

error_response threshold_policy::on_error(const failure_context& context) {
  (void)context;
  // relaxed: a count; exactly one failure sees the threshold reached.
  const std::size_t seen = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  return seen >= max_failures_ ? error_response::shutdown() : error_response::fail();
}

// ---- rate ----------------------------------------------------------------------------------------

rate_policy::rate_policy(std::size_t max_failures, clock::duration window)
    : max_failures_(max_failures), window_(window) {
  if (max_failures == 0)
    throw std::invalid_argument("rate_policy: max_failures is 0; it is how many failures a window tolerates");
  if (window <= clock::duration::zero()) throw std::invalid_argument("rate_policy: the window must be > 0");
}

std::shared_ptr<error_policy> rate_policy::create_child() {
  return std::make_shared<rate_policy>(max_failures_, window_);
}

error_response rate_policy::on_error(const failure_context& context) {
  (void)context;
  const clock::time_point now = clock::now();
  std::lock_guard lock(lock_);
  while (!recent_.empty() && now - recent_.front() >= window_) recent_.pop_front();
  recent_.push_back(now);
  return recent_.size() > max_failures_ ? error_response::shutdown() : error_response::fail();
}

// ---- retry ----------------------------------------------------------------------------------------

retry_policy::retry_policy(retry_options options) : options_(options) {
  if (options_.max_attempts == 0)
    throw std::invalid_argument("retry_options::max_attempts is 0; it counts every run, the first included (use 1+)");
  if (options_.initial_backoff < clock::duration::zero() || options_.max_backoff < clock::duration::zero())
    throw std::invalid_argument("retry_options: the backoff durations must not be negative");
  if (!(options_.multiplier >= 1.0) || !std::isfinite(options_.multiplier))
    throw std::invalid_argument("retry_options::multiplier must be a finite number >= 1");
  if (!(options_.jitter >= 0.0 && options_.jitter <= 1.0))
    throw std::invalid_argument("retry_options::jitter must be within [0, 1]");
}

std::shared_ptr<error_policy> retry_policy::create_child() { return std::make_shared<retry_policy>(options_); }

clock::duration retry_policy::backoff(std::uint32_t attempt, double u) const noexcept {
  const double base = static_cast<double>(options_.initial_backoff.count()) *
                      std::pow(options_.multiplier, static_cast<double>(attempt == 0 ? 0 : attempt - 1));
  const double capped = std::min(base, static_cast<double>(options_.max_backoff.count()));
  const double jittered = capped * (1.0 - options_.jitter * std::clamp(u, 0.0, 1.0));
  return clock::duration(static_cast<clock::rep>(jittered));
}

error_response retry_policy::on_error(const failure_context& context) {
  if (context.attempt >= options_.max_attempts) return error_response::fail();
  return error_response::retry_after(backoff(context.attempt, uniform_draw()));
}

bool retry_policy::should_reschedule(const failure_context& context) {
  (void)context;
  return options_.release_slot_while_waiting;
}

// ---- trigger token ------------------------------------------------------------------------------------

trigger_token_policy::trigger_token_policy(cancellation_token token) : token_(std::move(token)) {
  if (!token_.valid()) throw std::invalid_argument("trigger_token_policy: the token is empty (moved from)");
}

std::shared_ptr<error_policy> trigger_token_policy::create_child() {
  return std::make_shared<trigger_token_policy>(token_);
}

error_response trigger_token_policy::on_error(const failure_context& context) {
  (void)context;
  token_.cancel();
  return error_response::fail();
}

}  // namespace warden
