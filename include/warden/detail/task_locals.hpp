// Internal: per-task storage for task_local<T> values.
//
// Each task has a chain of bindings (newest first), shared immutably: a
// scope pushes a binding for the duration of its body and restores the
// previous chain afterwards; lookups walk the chain for the first binding of
// a key (so inner scopes shadow outer ones). The chain belongs to the task:
// only the thread running the task touches it.
//
// Spawn copies into the child the bindings whose key is inherited (one per
// key, the visible one), each value cloned, so the child's copy outlives the
// scope that set it and reaches grandchildren.
#pragma once

#include <memory>

namespace warden::detail {

struct task_header;

struct local_binding {
  const void* key = nullptr;
  std::shared_ptr<void> value;                            // the T
  std::shared_ptr<void> (*clone)(const void*) = nullptr;  // non-null: inherited by spawned tasks
  std::shared_ptr<const local_binding> next;
};
using local_chain = std::shared_ptr<const local_binding>;

struct task_locals {
  local_chain chain;
};

/// The running task's chain (usage_error outside a task).
local_chain& current_local_chain();
/// The running task's chain, or nullptr outside a task / with none.
const local_chain* try_current_local_chain() noexcept;
/// The bindings of `parent` a spawned task inherits.
local_chain inherit_locals(const local_chain& parent);
/// Gives `child` (being spawned from the running task) its inherited bindings.
void inherit_into(task_header* child);

}  // namespace warden::detail
