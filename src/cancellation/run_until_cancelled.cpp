// run_until_cancelled for task<void>; the valued form is in the header.
#include <warden/cancellation.hpp>

namespace warden {

task<bool> run_until_cancelled(cancellation_token token, task<void> work, std::source_location where) {
  if (token.is_cancelled()) co_return false;
  join_handle<void> inner = spawn(std::move(work), spawn_options{.location = where});
  inner.abort_on_drop();  // the caller aborted: never orphan the work
  cancellation_registration on_cancel = token.on_cancel([abort = inner.get_abort_handle()] { abort.abort(); });
  std::expected<void, join_error> outcome = co_await inner.result();
  if (outcome) co_return true;
  if (outcome.error().is_panic()) outcome.error().rethrow();
  if (token.is_cancelled()) co_return false;
  throw outcome.error();
}

}  // namespace warden
