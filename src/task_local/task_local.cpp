// The out-of-line error paths of task_local<T> (include/warden/task_local.hpp).
#include <warden/task_local.hpp>

namespace warden::detail {

void throw_task_local_unbound() {
  throw usage_error(
      "task_local::get: no value is bound in this task; call it inside key.scope(value, body) (or in a task "
      "spawned there, if the key is inherited), or use try_get()");
}

void throw_task_local_not_copyable() {
  throw usage_error(
      "task_local: an inherited key (task_local_options{.inherit = true}) needs a copyable T, because every "
      "spawned task gets a copy; use inherit = false or bind a std::shared_ptr");
}

}  // namespace warden::detail
