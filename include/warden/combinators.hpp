// warden/combinators.hpp — run several tasks concurrently and wait for all of
// them (`when_all`) or for the first (`when_any`).
//
//   auto [user, feed] = co_await warden::when_all(load_user(id), load_feed(id));
//
//   auto r = co_await warden::when_any(ask_primary(q), ask_replica(q));
//   answer a = r.index() == 0 ? r.get<0>() : r.get<1>();   // rethrows a failure
//
// # How they run
// Each task handed in is spawned (with `warden::spawn`) on the runtime the
// awaiting task runs on, so the tasks run concurrently, on any worker, each
// as its own runtime task. (A task has a single resume point, so
// sub-coroutines cannot be interleaved inside one task.) Consequences:
// * The combinator must be awaited inside a warden task; the children are
//   spawned when it is first awaited, not when it is called.
// * Task-local values (task_local.hpp) reach the children only if their key
//   is inherited: the children are spawned tasks.
// * A child panicking inside a combinator is never an "unhandled failure":
//   the combinator observes every outcome.
//
// # Results
// * `when_all(task<Ts>...)` yields `std::tuple<R...>` in argument order,
//   where R is T, or `std::monostate` for a `task<void>` (so `std::get<I>`
//   always names argument I). `when_all(std::vector<task<T>>)` yields
//   `std::vector<T>` in the vector's order, or nothing (`task<void>`) when T
//   is void.
// * `when_any(task<Ts>...)` yields a `when_any_result<Ts...>`: the index of
//   the first task to finish and its outcome (value or exception).
//   `when_any(std::vector<task<T>>)` yields a `when_any_vector_result<T>`.
//   Whatever the other tasks produce (values, exceptions) is discarded.
//
// # Failures
// `when_all` rethrows the first exception in time (not in argument order):
// the other children are aborted and their frames destroyed before the
// exception reaches the awaiting task. A child cancelled by someone else
// (only a runtime shutdown can reach it) counts as a failure with a
// `join_error` (is_cancelled()). `when_any` treats an exception like a value:
// the first child to finish wins, whatever it finished with.
//
// # Cancellation
// When the combinator returns or throws, every child frame has been
// destroyed (finished, or aborted and destroyed). If the task awaiting a
// combinator is itself aborted, the combinator aborts every child that is
// still running (their frames are destroyed on the runtime's workers shortly
// after; nobody waits for them, but none keeps running orphaned).
//
// # Errors
// `usage_error` (thrown when the combinator is awaited): an empty task among
// the arguments, `when_any` of an empty vector, awaiting outside a warden
// task. `runtime_closed` if the runtime shuts down while the children are
// being spawned (the ones already spawned are aborted and awaited first).
#pragma once

#include <warden/detail/task_header.hpp>
#include <warden/errors.hpp>
#include <warden/join_handle.hpp>
#include <warden/runtime.hpp>
#include <warden/task.hpp>

#include <array>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace warden {

/// What `when_any(task<Ts>...)` yields: which task finished first and how.
///
/// `outcome()` is a `std::variant` whose alternative I is
/// `std::expected<Ts[I], std::exception_ptr>` (alternatives may repeat a
/// type, so use the index, not the type).
template <class... Ts>
class when_any_result {
 public:
  using outcome_type = std::variant<std::expected<Ts, std::exception_ptr>...>;
  /// The result type of task I.
  template <std::size_t I>
  using task_type = typename std::tuple_element_t<I, std::tuple<std::type_identity<Ts>...>>::type;

  template <std::size_t I, class... Args>
  explicit when_any_result(std::in_place_index_t<I> which, Args&&... args)
      : outcome_(which, std::forward<Args>(args)...) {}

  /// The argument position of the task that finished first.
  [[nodiscard]] std::size_t index() const noexcept { return outcome_.index(); }
  /// True when the winner produced a value, false when it threw.
  [[nodiscard]] bool has_value() const noexcept {
    return std::visit([](const auto& o) { return o.has_value(); }, outcome_);
  }
  /// The winner's exception, or null when it produced a value.
  [[nodiscard]] std::exception_ptr exception() const noexcept {
    return std::visit([](const auto& o) { return o.has_value() ? std::exception_ptr() : o.error(); }, outcome_);
  }

  /// The value of task I (void for a task<void>); rethrows its exception if
  /// it threw. Throws usage_error if task I was not the winner.
  template <std::size_t I>
  std::add_lvalue_reference_t<task_type<I>> get() & {
    auto& o = checked<I>();
    if (!o.has_value()) std::rethrow_exception(o.error());
    return *o;
  }
  template <std::size_t I>
  task_type<I> get() && {
    auto& o = checked<I>();
    if (!o.has_value()) std::rethrow_exception(o.error());
    if constexpr (!std::is_void_v<task_type<I>>) return std::move(*o);
  }

  [[nodiscard]] outcome_type& outcome() & noexcept { return outcome_; }
  [[nodiscard]] const outcome_type& outcome() const& noexcept { return outcome_; }
  [[nodiscard]] outcome_type&& outcome() && noexcept { return std::move(outcome_); }

 private:
  template <std::size_t I>
  auto& checked() {
    static_assert(I < sizeof...(Ts), "when_any_result::get<I>: I is past the last task");
    if (outcome_.index() != I)
      throw usage_error("when_any_result::get<I>: task I did not finish first; check index() before get<I>()");
    return std::get<I>(outcome_);
  }

  outcome_type outcome_;
};

/// What `when_any(std::vector<task<T>>)` yields: the position in the vector
/// of the task that finished first, and its value or exception.
template <class T>
class when_any_vector_result {
 public:
  when_any_vector_result(std::size_t index, std::expected<T, std::exception_ptr> outcome)
      : index_(index), outcome_(std::move(outcome)) {}

  [[nodiscard]] std::size_t index() const noexcept { return index_; }
  [[nodiscard]] bool has_value() const noexcept { return outcome_.has_value(); }
  [[nodiscard]] std::exception_ptr exception() const noexcept {
    return outcome_.has_value() ? std::exception_ptr() : outcome_.error();
  }
  /// The winner's value (void for task<void>), or rethrows its exception.
  std::add_lvalue_reference_t<T> get() & {
    if (!outcome_.has_value()) std::rethrow_exception(outcome_.error());
    return *outcome_;
  }
  T get() && {
    if (!outcome_.has_value()) std::rethrow_exception(outcome_.error());
    if constexpr (!std::is_void_v<T>) return std::move(*outcome_);
  }
  [[nodiscard]] std::expected<T, std::exception_ptr>& outcome() & noexcept { return outcome_; }
  [[nodiscard]] std::expected<T, std::exception_ptr>&& outcome() && noexcept { return std::move(outcome_); }

 private:
  std::size_t index_;
  std::expected<T, std::exception_ptr> outcome_;
};

namespace detail {

/// The meeting point of a combinator and its children.
///
/// Invariants (all fields guarded by `mutex_`):
/// * `remaining_` counts children that have not reported; each child reports
///   exactly once (`child_finished`), from the destructor of a guard in its
///   frame: when it returns, throws, or its frame is destroyed by an abort.
/// * `decisive_` is the first child (in time) whose report decides the
///   combinator: the first failure (`until::all_or_first_failure`) or the
///   first report of any kind (`until::first`); `none` until then. Set once.
/// * `waiter_` holds the waker of the combinator's task while it is parked
///   in `decided()`; the report that makes the combinator decided moves it
///   out and wakes it after unlocking. The awaiter withdraws it when it is
///   destroyed (the combinator's task was aborted while parked).
/// The children's results are written by each child into its own slot before
/// it reports and read by the combinator after it saw the report under the
/// lock, so the mutex orders them.
class completion_signal {
 public:
  enum class until : std::uint8_t { all_or_first_failure, first };
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  completion_signal(std::size_t children, until mode) noexcept : remaining_(children), mode_(mode) {}
  completion_signal(const completion_signal&) = delete;
  completion_signal& operator=(const completion_signal&) = delete;

  /// Child `index` finished: `failed` when it threw or was destroyed.
  void child_finished(std::size_t index, bool failed) noexcept;
  /// The child that decided the combinator (none while undecided).
  [[nodiscard]] std::size_t decisive_child() const;

  class awaiter {
   public:
    explicit awaiter(completion_signal& signal) noexcept : signal_(&signal) {}
    awaiter(const awaiter&) = delete;
    awaiter& operator=(const awaiter&) = delete;
    ~awaiter();
    bool await_ready() const { return signal_->is_decided(); }
    bool await_suspend(std::coroutine_handle<> awaiting);
    void await_resume() const noexcept {}

   private:
    completion_signal* signal_;
    bool parked_ = false;
  };
  /// Parks the calling task until the combinator is decided.
  awaiter decided() noexcept { return awaiter{*this}; }

 private:
  [[nodiscard]] bool is_decided() const;
  [[nodiscard]] bool decided_locked() const noexcept {
    return decisive_ != none || (mode_ == until::all_or_first_failure && remaining_ == 0);
  }

  mutable std::mutex mutex_;
  std::size_t remaining_;
  std::size_t decisive_ = none;
  waker waiter_;
  until mode_;
};

/// Reports a child's end to its signal when the child's frame ends, however
/// it ends. `failed` stays true unless the child stored a value.
struct child_report {
  completion_signal* signal;
  std::size_t index;
  bool failed = true;
  child_report(completion_signal* s, std::size_t i) noexcept : signal(s), index(i) {}
  child_report(const child_report&) = delete;
  child_report& operator=(const child_report&) = delete;
  ~child_report() { signal->child_finished(index, failed); }
};

/// Where a child leaves its outcome; empty if its frame was destroyed first.
template <class T>
using child_slot = std::optional<std::expected<T, std::exception_ptr>>;

/// The spawned task wrapping one child: runs it, stores its outcome in its
/// slot, then reports. Never throws: the combinator observes every outcome.
/// `keep_alive` owns the signal and the slot.
template <class T>
task<void> run_child(task<T> body, std::shared_ptr<void> keep_alive, completion_signal* signal, child_slot<T>* slot,
                     std::size_t index) {
  child_report report{signal, index};
  try {
    if constexpr (std::is_void_v<T>) {
      co_await body;
      slot->emplace();
    } else {
      T value = co_await body;
      slot->emplace(std::in_place, std::move(value));
    }
    report.failed = false;
  } catch (...) {
    slot->emplace(std::unexpect, std::current_exception());
  }
  (void)keep_alive;
}

/// Aborts every handle if `abort`, then awaits each, so that every child
/// frame is destroyed when it returns. Empty handles are skipped.
task<void> settle(std::span<join_handle<void>> handles, bool abort);

/// Spawns `body` as child `index`; the handle aborts the child when dropped.
template <class T>
join_handle<void> spawn_child(task<T>&& body, const std::shared_ptr<void>& keep_alive, completion_signal* signal,
                              child_slot<T>* slot, std::size_t index) {
  join_handle<void> handle = warden::spawn(run_child<T>(std::move(body), keep_alive, signal, slot, index));
  handle.abort_on_drop();
  return handle;
}

/// The outcome of a child that reported, as an expected; a child whose frame
/// was destroyed before storing anything was cancelled.
template <class T>
std::expected<T, std::exception_ptr> take_outcome(child_slot<T>& slot, const join_handle<void>& handle) {
  if (slot) return std::move(*slot);
  return std::unexpected(std::make_exception_ptr(join_error::cancelled(handle.id(), handle.name())));
}

template <class T>
using all_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
all_value_t<T> unwrap_value(std::expected<T, std::exception_ptr>&& outcome) {
  if (!outcome.has_value()) std::rethrow_exception(outcome.error());
  if constexpr (std::is_void_v<T>)
    return std::monostate{};
  else
    return std::move(*outcome);
}

[[noreturn]] void throw_empty_argument(const char* combinator, std::size_t index);
[[noreturn]] void throw_when_any_of_nothing();

template <class... Ts>
struct variadic_state {
  completion_signal signal;
  std::tuple<child_slot<Ts>...> slots;
  explicit variadic_state(completion_signal::until mode) : signal(sizeof...(Ts), mode) {}
};

template <class T>
struct vector_state {
  completion_signal signal;
  std::vector<child_slot<T>> slots;
  vector_state(std::size_t n, completion_signal::until mode) : signal(n, mode), slots(n) {}
};

/// Spawns every child in order; returns the exception that stopped it (a
/// closing runtime), the children spawned so far being abort-on-drop.
template <class... Ts, std::size_t... Is>
std::exception_ptr spawn_all(std::span<join_handle<void>> handles, const std::shared_ptr<variadic_state<Ts...>>& state,
                             std::index_sequence<Is...>, task<Ts>&... tasks) {
  try {
    ((handles[Is] = spawn_child<Ts>(std::move(tasks), state, &state->signal, &std::get<Is>(state->slots), Is)), ...);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

template <class T>
std::exception_ptr spawn_all(std::span<join_handle<void>> handles, const std::shared_ptr<vector_state<T>>& state,
                             std::vector<task<T>>& tasks) {
  try {
    for (std::size_t i = 0; i < tasks.size(); ++i)
      handles[i] = spawn_child<T>(std::move(tasks[i]), state, &state->signal, &state->slots[i], i);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

template <class... Ts>
void check_arguments(const char* combinator, const task<Ts>&... tasks) {
  std::size_t index = 0;
  ((tasks.valid() ? void(++index) : throw_empty_argument(combinator, index)), ...);
  (void)index;
  (void)combinator;
}

template <class T>
void check_arguments(const char* combinator, const std::vector<task<T>>& tasks) {
  for (std::size_t i = 0; i < tasks.size(); ++i)
    if (!tasks[i].valid()) throw_empty_argument(combinator, i);
}

/// The exception of the child that decided a failed when_all.
template <class... Ts, std::size_t... Is>
std::exception_ptr failure_of(variadic_state<Ts...>& state, std::span<join_handle<void>> handles, std::size_t failed,
                              std::index_sequence<Is...>) {
  std::exception_ptr error;
  ((Is == failed ? void(error = take_outcome(std::get<Is>(state.slots), handles[Is]).error()) : void()), ...);
  return error;
}

template <class... Ts, std::size_t... Is>
when_any_result<Ts...> winner_of(variadic_state<Ts...>& state, std::span<join_handle<void>> handles, std::size_t winner,
                                 std::index_sequence<Is...>) {
  std::optional<when_any_result<Ts...>> result;
  ((Is == winner ? void(result.emplace(std::in_place_index<Is>, take_outcome(std::get<Is>(state.slots), handles[Is])))
                 : void()),
   ...);
  return std::move(*result);
}

template <class T>
struct not_a_reference {
  static_assert(!std::is_reference_v<T>,
                "when_all / when_any take tasks with non-reference results: a reference would outlive the spawned "
                "task that produced it");
  static constexpr bool value = true;
};

}  // namespace detail

/// Runs every task concurrently and yields their results in argument order
/// (`std::monostate` for a task<void>). On the first exception (in time) the
/// others are aborted, their frames destroyed, then that exception is
/// rethrown. See the top of this header for cancellation and errors.
template <class... Ts>
task<std::tuple<detail::all_value_t<Ts>...>> when_all(task<Ts>... tasks) {
  static_assert((detail::not_a_reference<Ts>::value && ...));
  using result_type = std::tuple<detail::all_value_t<Ts>...>;
  constexpr std::size_t n = sizeof...(Ts);
  detail::check_arguments("when_all", tasks...);
  if constexpr (n == 0) {
    co_return result_type{};
  } else {
    auto state =
        std::make_shared<detail::variadic_state<Ts...>>(detail::completion_signal::until::all_or_first_failure);
    std::array<join_handle<void>, n> handles;
    if (std::exception_ptr error =
            detail::spawn_all(std::span(handles), state, std::index_sequence_for<Ts...>{}, tasks...)) {
      co_await detail::settle(std::span(handles), true);
      std::rethrow_exception(error);
    }
    co_await state->signal.decided();
    const std::size_t failed = state->signal.decisive_child();
    co_await detail::settle(std::span(handles), failed != detail::completion_signal::none);
    if (failed != detail::completion_signal::none)
      std::rethrow_exception(detail::failure_of(*state, std::span(handles), failed, std::index_sequence_for<Ts...>{}));
    co_return [&]<std::size_t... Is>(std::index_sequence<Is...>) {
      return result_type{detail::unwrap_value<Ts>(std::move(*std::get<Is>(state->slots)))...};
    }
    (std::index_sequence_for<Ts...>{});
  }
}

/// Runs every task of the vector concurrently and yields their results in
/// the vector's order (nothing for task<void>). Failures and cancellation as
/// for the variadic form; an empty vector yields an empty result at once.
template <class T>
task<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> when_all(std::vector<task<T>> tasks) {
  static_assert(detail::not_a_reference<T>::value);
  detail::check_arguments("when_all", tasks);
  auto state =
      std::make_shared<detail::vector_state<T>>(tasks.size(), detail::completion_signal::until::all_or_first_failure);
  std::vector<join_handle<void>> handles(tasks.size());
  if (std::exception_ptr error = detail::spawn_all(std::span(handles), state, tasks)) {
    co_await detail::settle(std::span(handles), true);
    std::rethrow_exception(error);
  }
  co_await state->signal.decided();
  const std::size_t failed = state->signal.decisive_child();
  co_await detail::settle(std::span(handles), failed != detail::completion_signal::none);
  if (failed != detail::completion_signal::none)
    std::rethrow_exception(detail::take_outcome(state->slots[failed], handles[failed]).error());
  if constexpr (!std::is_void_v<T>) {
    std::vector<T> results;
    results.reserve(state->slots.size());
    for (auto& slot : state->slots) results.push_back(std::move(**slot));
    co_return results;
  }
}

/// Runs every task concurrently and yields the first to finish (its index
/// and its value or exception); the others are aborted and their frames
/// destroyed before it returns. See the top of this header.
template <class... Ts>
task<when_any_result<Ts...>> when_any(task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0, "when_any of no tasks would never finish");
  static_assert((detail::not_a_reference<Ts>::value && ...));
  detail::check_arguments("when_any", tasks...);
  auto state = std::make_shared<detail::variadic_state<Ts...>>(detail::completion_signal::until::first);
  std::array<join_handle<void>, sizeof...(Ts)> handles;
  if (std::exception_ptr error =
          detail::spawn_all(std::span(handles), state, std::index_sequence_for<Ts...>{}, tasks...)) {
    co_await detail::settle(std::span(handles), true);
    std::rethrow_exception(error);
  }
  co_await state->signal.decided();
  co_await detail::settle(std::span(handles), true);
  co_return detail::winner_of(*state, std::span(handles), state->signal.decisive_child(),
                              std::index_sequence_for<Ts...>{});
}

/// The vector form of when_any. Throws usage_error for an empty vector
/// (nothing could ever finish first).
template <class T>
task<when_any_vector_result<T>> when_any(std::vector<task<T>> tasks) {
  static_assert(detail::not_a_reference<T>::value);
  if (tasks.empty()) detail::throw_when_any_of_nothing();
  detail::check_arguments("when_any", tasks);
  auto state = std::make_shared<detail::vector_state<T>>(tasks.size(), detail::completion_signal::until::first);
  std::vector<join_handle<void>> handles(tasks.size());
  if (std::exception_ptr error = detail::spawn_all(std::span(handles), state, tasks)) {
    co_await detail::settle(std::span(handles), true);
    std::rethrow_exception(error);
  }
  co_await state->signal.decided();
  co_await detail::settle(std::span(handles), true);
  const std::size_t winner = state->signal.decisive_child();
  co_return when_any_vector_result<T>(winner, detail::take_outcome(state->slots[winner], handles[winner]));
}

}  // namespace warden
