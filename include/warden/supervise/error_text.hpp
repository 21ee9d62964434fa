// Internal: turning a fallible task's error `E` into text (shared by the
// task monitor and ambient scopes): .message(), .what(), to_string(e) found
// by ADL, or operator<<, in that order; a clear compile error otherwise.
#pragma once

#include <concepts>
#include <ostream>
#include <sstream>
#include <string>

namespace warden::detail {

// ---- An E as text ------------------------------------------------------------

namespace error_text_adl {
using std::to_string;
template <class E>
concept has_to_string = requires(const E& e) {
  { to_string(e) } -> std::convertible_to<std::string>;
};
template <class E>
std::string call_to_string(const E& e) {
  return std::string(to_string(e));
}
}  // namespace error_text_adl

template <class E>
concept has_message = requires(const E& e) {
  { e.message() } -> std::convertible_to<std::string>;
};
template <class E>
concept has_what = requires(const E& e) {
  { e.what() } -> std::convertible_to<std::string>;
};
template <class E>
concept streamable = requires(std::ostream& out, const E& e) {
  out << e;
};

template <class E>
inline constexpr bool describable_error =
    has_message<E> || has_what<E> || error_text_adl::has_to_string<E> || streamable<E>;

/// `e` as text: .message(), .what(), to_string(e), operator<<, in that order.
template <class E>
std::string error_text(const E& e) {
  static_assert(describable_error<E>,
                "warden: a fallible task's error type E must be describable as text: give it a member "
                "message() or what() returning a string, a to_string(E) found by ADL, or an operator<<");
  if constexpr (has_message<E>) {
    return std::string(e.message());
  } else if constexpr (has_what<E>) {
    return std::string(e.what());
  } else if constexpr (error_text_adl::has_to_string<E>) {
    return error_text_adl::call_to_string(e);
  } else {
    std::ostringstream out;
    out << e;
    return std::move(out).str();
  }
}

}  // namespace warden::detail
