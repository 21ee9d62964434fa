// The throw helpers of the channel headers (oneshot, mpsc, broadcast): the
// messages name the misuse and the way out.
#include <warden/errors.hpp>
#include <warden/sync/detail/channel.hpp>

#include <string>

namespace warden::detail {

void throw_channel_zero_capacity(const char* factory, const char* hint) {
  throw usage_error(std::string(factory) + "<T>(0): the capacity must be at least 1 (" + hint + ")");
}

void throw_channel_empty_handle(const char* operation) {
  throw usage_error(std::string(operation) +
                    ": this channel handle is empty (default-constructed or moved-from); use the handle the "
                    "channel factory returned, or a copy of a sender");
}

void throw_channel_concurrent_recv(const char* operation) {
  throw usage_error(std::string(operation) +
                    ": another recv on this receiver is already waiting; a receiver serves one recv at a time "
                    "(await them one after the other)");
}

void throw_oneshot_already_sent() {
  throw usage_error(
      "oneshot_sender::send: this sender already sent its value, or is empty (default-constructed or "
      "moved-from); a oneshot channel carries exactly one value");
}

}  // namespace warden::detail
