#include <warden/detail/task_locals.hpp>
#include <warden/errors.hpp>

#include "../detail/context.hpp"

#include <vector>

namespace warden::detail {

local_chain& current_local_chain() {
  task_header* task = tl_context.task;
  if (task == nullptr) throw usage_error("task_local used outside a warden task");
  task_extras& extras = extras_for(task);
  if (extras.locals == nullptr) extras.locals = new task_locals{};
  return extras.locals->chain;
}

const local_chain* try_current_local_chain() noexcept {
  task_header* task = tl_context.task;
  if (task == nullptr) return nullptr;
  // acquire: another thread may have installed the record (task_id_of).
  const task_extras* extras = extras_of(task);
  if (extras == nullptr || extras->locals == nullptr) return nullptr;
  return &extras->locals->chain;
}

local_chain inherit_locals(const local_chain& parent) {
  // The visible binding of each inherited key, oldest first so the rebuilt
  // chain keeps the same order.
  std::vector<const local_binding*> visible;
  std::vector<const void*> seen;
  for (const local_binding* b = parent.get(); b != nullptr; b = b->next.get()) {
    bool shadowed = false;
    for (const void* k : seen) shadowed = shadowed || k == b->key;
    if (shadowed) continue;
    seen.push_back(b->key);
    if (b->clone != nullptr) visible.push_back(b);
  }
  local_chain chain;
  for (auto it = visible.rbegin(); it != visible.rend(); ++it) {
    auto copy = std::make_shared<local_binding>();
    copy->key = (*it)->key;
    copy->value = (*it)->clone((*it)->value.get());
    copy->clone = (*it)->clone;
    copy->next = std::move(chain);
    chain = std::move(copy);
  }
  return chain;
}

void inherit_into(task_header* child) {
  const local_chain* parent = try_current_local_chain();
  if (parent == nullptr || !*parent) return;
  local_chain inherited = inherit_locals(*parent);
  if (!inherited) return;
  extras_for(child).locals = new task_locals{std::move(inherited)};
}

}  // namespace warden::detail
