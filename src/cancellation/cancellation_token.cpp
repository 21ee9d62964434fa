// cancellation_token: the handle side. The tree lives in cancellation_state.
#include <warden/cancellation.hpp>

#include "cancellation_state.hpp"

#include <string>

namespace warden {

using detail::cancellation_state;

cancellation_token::cancellation_token() : state_(cancellation_state::make_root()) {}

cancellation_token::cancellation_token(const cancellation_token& other) noexcept : state_(other.state_) {
  if (state_ != nullptr) state_->retain();
}

cancellation_token& cancellation_token::operator=(const cancellation_token& other) noexcept {
  if (other.state_ != nullptr) other.state_->retain();
  cancellation_state::release(std::exchange(state_, other.state_));
  return *this;
}

cancellation_token& cancellation_token::operator=(cancellation_token&& other) noexcept {
  if (this != &other) cancellation_state::release(std::exchange(state_, std::exchange(other.state_, nullptr)));
  return *this;
}

cancellation_token::~cancellation_token() { cancellation_state::release(state_); }

void cancellation_token::check_valid(const char* what) const {
  if (state_ == nullptr)
    throw usage_error(std::string("cancellation_token::") + what +
                      ": the token is empty (moved from); copy the token instead of moving it if it is still needed");
}

cancellation_token cancellation_token::child_token() const {
  check_valid("child_token");
  return cancellation_token{state_->make_child()};
}

void cancellation_token::cancel() {
  check_valid("cancel");
  // A reference of our own: a callback may destroy this handle (and with it
  // the caller's reference) while the cancellation runs.
  cancellation_state* state = state_;
  state->retain();
  state->cancel();
  cancellation_state::release(state);
}

bool cancellation_token::is_cancelled() const {
  check_valid("is_cancelled");
  return state_->is_cancelled();
}

std::stop_token cancellation_token::get_stop_token() const {
  check_valid("get_stop_token");
  return state_->stop_token();
}

cancellation_token cancellation_token::from_stop_token(std::stop_token stop) {
  return cancellation_token{cancellation_state::make_from_stop_token(stop)};
}

namespace detail {

std::size_t cancellation_probe::children(const cancellation_token& token) {
  token.check_valid("children");
  return token.state_->child_count();
}
std::size_t cancellation_probe::callbacks(const cancellation_token& token) {
  token.check_valid("callbacks");
  return token.state_->callback_count();
}
std::size_t cancellation_probe::waiters(const cancellation_token& token) {
  token.check_valid("waiters");
  return token.state_->waiter_count();
}

}  // namespace detail

}  // namespace warden
