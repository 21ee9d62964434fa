#include <warden/task_failure.hpp>

#include <string>
#include <type_traits>
#include <variant>

namespace warden {

std::string describe(const task_failure& failure) {
  std::string out = "task " + std::to_string(failure.task.id.value());
  if (!failure.task.name.empty()) out += " '" + failure.task.name + "'";
  std::visit(
      [&out](const auto& reason) {
        using reason_type = std::decay_t<decltype(reason)>;
        if constexpr (std::is_same_v<reason_type, panic_reason>)
          out += " panicked: " + reason.message;
        else if constexpr (std::is_same_v<reason_type, error_reason>)
          out += " returned an error: " + reason.message;
        else
          out += " ended, but it should run forever";
      },
      failure.reason);
  return out;
}

}  // namespace warden
