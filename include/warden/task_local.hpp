// warden/task_local.hpp — task_local<T>: a value bound for the duration of a
// task's scope, like a thread_local that follows the task instead of the
// thread.
//
//   // A key: declare it static (at namespace scope or as a static local).
//   static warden::task_local<std::string> request_id{{.inherit = true}};
//
//   warden::task<void> log(std::string_view what) {
//     std::printf("[%s] %.*s\n", request_id.get().c_str(), int(what.size()), what.data());
//     co_return;
//   }
//   warden::task<void> handle(request r) {
//     co_await request_id.scope(r.id, [](request r) -> warden::task<void> {
//       co_await log("start");             // sees r.id, on whatever worker it resumes
//       co_await warden::spawn(audit(r));  // inherit = true: the child gets a copy
//     }(r));
//   }
//
// # Visibility
// `key.scope(value, body)` is a task that runs `body` with `value` bound to
// `key`: `get()` / `try_get()` see it in the body and in everything the body
// awaits, whichever worker the task resumes on, and nowhere else (not in
// other tasks running meanwhile, not after the body ended). A scope inside a
// scope of the same key shadows it until the inner body ends. The binding is
// removed when the body ends: by returning, by throwing, or by its frame
// being destroyed.
//
// # Inheritance
// `task_local_options{.inherit = true}`: a task spawned (by `spawn`, also
// the children of `when_all` / `when_any`) while the key is bound starts with
// its own COPY of the value (copy-constructed at spawn), which it keeps for
// its whole life: the copy reaches its own children (grandchildren of the
// scope), outlives the scope that set it, and changes to it stay in the
// child. With `inherit = false` (the default) spawned tasks do not see the
// value at all.
//
// # The value
// Each binding owns its T. `get()` returns a reference into the current
// task's binding, valid until that scope ends; the task may modify it (only
// the running task touches its bindings, so no lock is needed). The T is
// destroyed when the scope ends, on the thread the task runs on then.
//
// # GCC 12
// Do not write a brace-initialised aggregate temporary as the value inside
// the co_await expression (`co_await key.scope(point{1, 2}, body())`): GCC 12
// destroys such a temporary twice (the same compiler bug as for every
// coroutine call in a co_await). Name it first (`point p{1, 2}; co_await
// key.scope(std::move(p), body());`). Class temporaries built by a
// constructor (`std::string("x")`) are fine.
//
// # Keys
// A key is identified by its address and must outlive every scope and task
// that uses it: declare keys static. A key holds no value itself and is
// safe to use from any number of tasks at once.
//
// # Cancellation
// A scope whose task is aborted removes its binding while the frame is
// destroyed, after the body's own (inner) scopes; the value is destroyed
// with it.
//
// # Errors
// `get()` with no value bound (or outside a warden task) throws usage_error;
// `try_get()` returns nullptr instead. Awaiting `scope` outside a warden task
// throws usage_error. Constructing an inherited key for a T that cannot be
// copied throws usage_error (a compile error when the key is constinit).
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/detail/task_locals.hpp>
#include <warden/errors.hpp>
#include <warden/task.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace warden {

struct task_local_options {
  /// Tasks spawned inside a scope start with a copy of the value.
  bool inherit = false;
};

namespace detail {

/// Binds one value for as long as it lives: pushes a binding on the running
/// task's chain when constructed, restores the previous chain when
/// destroyed. Lives in a scope's frame; scopes of one task nest, so the
/// restores happen in the reverse order of the pushes.
///
/// The guard keeps a pointer to the task's chain rather than looking up the
/// running task again when it is destroyed: a frame destroyed by an abort may
/// be destroyed on a thread that runs no task. The chain lives in the task's
/// header until the header is freed, which happens after the frame is gone.
class local_scope_guard {
 public:
  local_scope_guard(const void* key, std::shared_ptr<void> value, std::shared_ptr<void> (*clone)(const void*))
      : chain_(&current_local_chain()), previous_(*chain_) {
    auto binding = std::make_shared<local_binding>();
    binding->key = key;
    binding->value = std::move(value);
    binding->clone = clone;
    binding->next = previous_;
    *chain_ = std::move(binding);
  }
  local_scope_guard(const local_scope_guard&) = delete;
  local_scope_guard& operator=(const local_scope_guard&) = delete;
  ~local_scope_guard() { *chain_ = std::move(previous_); }

 private:
  local_chain* chain_;
  local_chain previous_;
};

/// The value bound to `key` in the running task, or nullptr.
inline void* find_local(const void* key) noexcept {
  const local_chain* chain = try_current_local_chain();
  if (chain == nullptr) return nullptr;
  for (const local_binding* b = chain->get(); b != nullptr; b = b->next.get())
    if (b->key == key) return b->value.get();
  return nullptr;
}

[[noreturn]] void throw_task_local_unbound();
[[noreturn]] void throw_task_local_not_copyable();

}  // namespace detail

/// A key for a task-local value of type T. See the top of this header.
template <class T>
class task_local {
  static_assert(std::is_object_v<T> && !std::is_const_v<T>,
                "task_local<T>: T must be a non-const object type (bind a pointer to share something)");

 public:
  /// Throws usage_error if `options.inherit` is set and T is not copy
  /// constructible (inheriting makes a copy).
  constexpr explicit task_local(task_local_options options = {}) : inherit_(options.inherit) {
    if constexpr (!std::is_copy_constructible_v<T>)
      if (options.inherit) detail::throw_task_local_not_copyable();
  }
  task_local(const task_local&) = delete;
  task_local& operator=(const task_local&) = delete;

  /// A task that runs `body` with `value` bound to this key (see
  /// "Visibility" above) and yields what `body` yields (or rethrows what it
  /// throws). The binding is made when the returned task starts and removed
  /// when `body` ends or is destroyed. Throws usage_error when awaited
  /// outside a warden task.
  template <class R>
  task<R> scope(T value, task<R> body) const {
    detail::local_scope_guard bound(this, std::make_shared<T>(std::move(value)), inherit_ ? &clone : nullptr);
    // Moved into a local declared after the guard, so that on cancellation
    // the body's frame (and the scopes inside it) are destroyed before this
    // scope restores the chain.
    task<R> inner = std::move(body);
    co_return co_await inner;
  }

  /// The value bound in the running task, or nullptr when none is (or
  /// outside a warden task). Valid until the scope that bound it ends.
  [[nodiscard]] T* try_get() const noexcept { return static_cast<T*>(detail::find_local(this)); }

  /// The value bound in the running task. Throws usage_error when none is.
  [[nodiscard]] T& get() const {
    T* v = try_get();
    if (v == nullptr) detail::throw_task_local_unbound();
    return *v;
  }

  /// Whether tasks spawned inside a scope get a copy.
  [[nodiscard]] constexpr bool inherited() const noexcept { return inherit_; }

 private:
  static std::shared_ptr<void> clone(const void* value) {
    if constexpr (std::is_copy_constructible_v<T>)
      return std::make_shared<T>(*static_cast<const T*>(value));
    else
      return nullptr;  // unreachable: an inherited key of such a T cannot be built
  }

  bool inherit_;
};

}  // namespace warden
