#include "failure_sink.hpp"

#include <cstdio>
#include <exception>
#include <string>

namespace warden::detail {

std::string describe_exception(const std::exception_ptr& error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

bool is_std_exception(const std::exception_ptr& error) noexcept {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception&) {
    return true;
  } catch (...) {
    return false;
  }
}

std::string describe_task(task_id id, std::string_view name, const std::source_location& where) {
  std::string out = "task " + std::to_string(id.value());
  if (!name.empty()) {
    out += " '";
    out += name;
    out += "'";
  }
  if (where.file_name() != nullptr && where.file_name()[0] != '\0') {
    out += " (spawned at ";
    out += where.file_name();
    out += ":" + std::to_string(where.line()) + ")";
  }
  return out;
}

failure_sink::failure_sink(unhandled_failure_policy policy, std::function<void(const unhandled_failure&)> reporter,
                           std::size_t feed_capacity)
    : policy_(policy), reporter_(std::move(reporter)) {
  if (feed_capacity == 0)
    throw usage_error(
        "runtime_options::failure_feed_capacity is 0: it is how many recent failures "
        "runtime::subscribe_failures() keeps for a slow subscriber; use at least 1");
  feed_ = broadcast<task_failure>(feed_capacity).first;
}

void failure_sink::report(const task_header* task, const std::exception_ptr& error) noexcept {
  if (policy_ == unhandled_failure_policy::ignore) return;
  try {
    unhandled_failure failure{task_id{task_id_of(task)}, std::string(task_name(task)), spawn_location(task), error,
                              describe_exception(error)};
    if (policy_ == unhandled_failure_policy::terminate) {
      std::fprintf(stderr, "warden: unhandled failure of %s: %s; terminating (unhandled_failure_policy::terminate)\n",
                   describe_task(failure.id, failure.name, failure.location).c_str(), failure.message.c_str());
      std::fflush(stderr);
      std::terminate();
    }
    if (reporter_) {
      try {
        reporter_(failure);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "warden: the unhandled-failure reporter threw: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "warden: the unhandled-failure reporter threw\n");
      }
    } else {
      std::fprintf(stderr,
                   "warden: unhandled failure of %s: %s (nobody awaited its join handle; await it, or set "
                   "runtime_options::on_unhandled_failure)\n",
                   describe_task(failure.id, failure.name, failure.location).c_str(), failure.message.c_str());
    }
    // After the reporter (even one that threw): a subscriber that sees the
    // record knows the reporter ran.
    (void)feed_.send(task_failure{failed_task{failure.id, failure.name}, panic_reason{failure.message}});
  } catch (...) {
    // Out of memory building the record: nothing better to do than drop it.
    std::fprintf(stderr, "warden: could not report an unhandled failure (out of memory)\n");
  }
}

}  // namespace warden::detail
