// task_local<T> (SEMANTICS P8): visibility in the scope's body and what it
// awaits, on any worker, and nowhere else; shadowing; restoring on return,
// throw and abort; inheritance by spawned tasks as copies that reach
// grandchildren and outlive the scope.
#include "support/test_support.hpp"

#include <warden/combinators.hpp>
#include <warden/task_local.hpp>

#include <atomic>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using warden::task;
using warden::task_local;
using warden::testkit::live_counter;
using warden::testkit::test_event;

// Keys are static, as the header asks. constinit: the constructor is constexpr.
constinit task_local<int> number;
constinit task_local<int> other_number;
constinit task_local<std::string> request_id{{.inherit = true}};
constinit task_local<std::vector<int>> trail{{.inherit = true}};
constinit task_local<std::unique_ptr<int>> owned;

struct test_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool mentions(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

/// What `key` holds in the running task, or -1.
template <class Key>
int seen(const Key& key) {
  const int* v = key.try_get();
  return v != nullptr ? *v : -1;
}

task<int> read_number() { co_return seen(number); }
task<int> read_number_deeper() { co_return co_await read_number(); }
task<std::string> read_request_id() {
  const std::string* v = request_id.try_get();
  co_return v != nullptr ? *v : std::string("<unbound>");
}

class task_local_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  std::size_t workers() const { return GetParam(); }

  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }

  std::atomic<int> alive{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// ---- visibility -----------------------------------------------------------------

// P8: the value is visible in the body and in everything the body awaits,
// and the scope yields what the body yields.
TEST_P(task_local_test, value_is_visible_in_the_body_and_everything_it_awaits) {
  auto body = []() -> task<int> {
    const int here = number.get();
    const int deeper = co_await read_number_deeper();
    co_return here * 100 + deeper;
  };
  const int r = run([&]() -> task<int> { co_return co_await number.scope(7, body()); });
  EXPECT_EQ(r, 707);
}

// P8: "on whatever worker it resumes": the value follows the task across
// suspensions, whichever thread resumes it.
TEST_P(task_local_test, value_follows_the_task_to_whatever_worker_resumes_it) {
  std::atomic<int> wrong{0};
  std::set<std::thread::id> threads;  // touched only by the one task
  auto body = [&]() -> task<void> {
    for (int i = 0; i < 200; ++i) {
      threads.insert(std::this_thread::get_id());
      if (number.get() != 11) wrong.fetch_add(1);
      co_await warden::yield_now{};
    }
  };
  // Other tasks keep the workers busy, so the scoped task is stolen around.
  auto noise = []() -> task<void> {
    for (int i = 0; i < 200; ++i) co_await warden::yield_now{};
  };
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> others;
    for (std::size_t i = 0; i < 2 * workers(); ++i) others.push_back(warden::spawn(noise()));
    co_await number.scope(11, body());
    for (auto& h : others) co_await h;
  });
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_FALSE(threads.empty());
}

// P8: "nowhere else": concurrent tasks binding the same key each see only
// their own value, at every resumption.
TEST_P(task_local_test, concurrent_scopes_of_one_key_do_not_see_each_other) {
  std::atomic<int> wrong{0};
  auto body = [&](int mine) -> task<void> {
    for (int i = 0; i < 100; ++i) {
      if (number.get() != mine) wrong.fetch_add(1);
      co_await warden::yield_now{};
    }
  };
  run([&]() -> task<void> {
    std::vector<warden::join_handle<void>> tasks;
    for (int i = 0; i < 16; ++i) tasks.push_back(warden::spawn(number.scope(i, body(i))));
    for (auto& h : tasks) co_await h;
  });
  EXPECT_EQ(wrong.load(), 0);
}

// P8: "nowhere else": not before the scope, not after it, not in a task that
// is running while the scope is active.
TEST_P(task_local_test, value_is_not_visible_outside_its_scope_or_in_other_tasks) {
  test_event scope_active;
  test_event checked;
  int outsider_saw = 0;
  auto outsider = [&]() -> task<void> {
    co_await scope_active.wait();
    outsider_saw = seen(number);
    checked.set();
  };
  auto body = [&]() -> task<void> {
    scope_active.set();
    co_await checked.wait();
  };
  auto observer = rt.spawn(outsider());  // from the test thread: not a child of the scope
  std::vector<int> seen_in_scoping_task;
  run([&]() -> task<void> {
    seen_in_scoping_task.push_back(seen(number));
    co_await number.scope(5, body());
    seen_in_scoping_task.push_back(seen(number));
  });
  observer.join();
  EXPECT_EQ(outsider_saw, -1);
  EXPECT_EQ(seen_in_scoping_task, (std::vector<int>{-1, -1}));
}

// P8: an inner scope of the same key shadows the outer one until it ends;
// other keys are untouched.
TEST_P(task_local_test, inner_scope_shadows_the_outer_one_until_it_ends) {
  std::vector<int> log;
  auto inner = [&]() -> task<void> {
    log.push_back(number.get());
    log.push_back(other_number.get());
    co_await warden::yield_now{};
    log.push_back(number.get());
  };
  auto outer = [&]() -> task<void> {
    log.push_back(number.get());
    co_await number.scope(2, inner());
    log.push_back(number.get());
  };
  run([&]() -> task<void> { co_await other_number.scope(9, number.scope(1, outer())); });
  EXPECT_EQ(log, (std::vector<int>{1, 2, 9, 2, 1}));
}

// P8: the binding is removed when the body throws; the exception passes
// through the scope.
TEST_P(task_local_test, binding_is_restored_when_the_body_throws) {
  auto fails = []() -> task<int> {
    co_await warden::yield_now{};
    throw test_failure("inside the scope");
  };
  std::vector<int> log;
  run([&]() -> task<void> {
    auto outer = [&]() -> task<void> {
      try {
        (void)co_await number.scope(2, fails());
      } catch (const test_failure&) {
        log.push_back(number.get());
      }
    };
    co_await number.scope(1, outer());
    log.push_back(seen(number));
  });
  EXPECT_EQ(log, (std::vector<int>{1, -1}));
}

// Cancellation: aborting a task parked inside a scope destroys the bound
// value with the frame.
TEST_P(task_local_test, aborting_a_task_inside_a_scope_destroys_the_bound_value) {
  static constinit task_local<live_counter> counted;
  test_event never;
  test_event entered;
  auto body = [&]() -> task<void> {
    entered.set();
    co_await never.wait();
  };
  run([&]() -> task<void> {
    auto h = warden::spawn(counted.scope(live_counter(alive), body()));
    co_await entered.wait();
    EXPECT_GT(alive.load(), 0);
    h.abort();
    (void)co_await h.result();
  });
  EXPECT_EQ(alive.load(), 0);
}

// Errors: get() with nothing bound throws a usage_error saying what to do;
// try_get() returns nullptr; both also outside any task.
TEST_P(task_local_test, get_without_a_binding_throws_usage_error) {
  std::string message;
  bool try_get_was_null = false;
  run([&]() -> task<void> {
    try_get_was_null = number.try_get() == nullptr;
    try {
      (void)number.get();
    } catch (const warden::usage_error& e) {
      message = e.what();
    }
    co_return;
  });
  EXPECT_TRUE(try_get_was_null);
  EXPECT_TRUE(mentions(message, "no value is bound")) << message;
  EXPECT_TRUE(mentions(message, "scope(value, body)")) << message;
  EXPECT_EQ(number.try_get(), nullptr);
  EXPECT_THROW((void)number.get(), warden::usage_error);
}

// The value belongs to the task: it can be modified through get(), and the
// change is seen by later reads in the same scope.
TEST_P(task_local_test, the_bound_value_can_be_modified_within_its_scope) {
  auto body = []() -> task<int> {
    number.get() += 5;
    co_await warden::yield_now{};
    co_return co_await read_number();
  };
  EXPECT_EQ(run([&]() -> task<int> { co_return co_await number.scope(10, body()); }), 15);
}

// Move-only values can be bound (when the key is not inherited).
TEST_P(task_local_test, move_only_values_can_be_bound) {
  auto body = []() -> task<int> { co_return *owned.get(); };
  EXPECT_EQ(run([&]() -> task<int> { co_return co_await owned.scope(std::make_unique<int>(3), body()); }), 3);
}

// The natural call with a temporary std::string value inside co_await (a
// GCC 12 hazard for non-trivially-copyable temporaries) keeps the value.
TEST_P(task_local_test, a_temporary_string_value_in_the_co_await_expression_arrives_intact) {
  auto r = run([&]() -> task<std::string> {
    co_return co_await request_id.scope(std::string("a request id long enough to be heap allocated"),
                                        read_request_id());
  });
  EXPECT_EQ(r, "a request id long enough to be heap allocated");
}

// ---- inheritance ----------------------------------------------------------------

// P8: with inherit = false (the default), spawned tasks do not see the value.
TEST_P(task_local_test, tasks_spawned_in_a_scope_do_not_see_a_key_that_is_not_inherited) {
  auto body = []() -> task<int> { co_return co_await warden::spawn(read_number()); };
  EXPECT_EQ(run([&]() -> task<int> { co_return co_await number.scope(4, body()); }), -1);
}

// P8: with inherit = true a spawned task sees a copy: changes on either side
// after the spawn stay on that side.
TEST_P(task_local_test, an_inherited_value_is_a_copy) {
  test_event parent_changed;
  std::vector<int> in_child;
  std::vector<int> in_parent;
  auto child = [&]() -> task<void> {
    trail.get().push_back(2);  // the child's copy only
    co_await parent_changed.wait();
    in_child = trail.get();
  };
  auto body = [&]() -> task<void> {
    auto h = warden::spawn(child());
    trail.get().push_back(3);  // the parent's own value only
    parent_changed.set();
    co_await h;
    in_parent = trail.get();
  };
  run([&]() -> task<void> {
    // A local, not `std::vector<int>{1}` in the co_await expression: GCC 12
    // rejects an initializer list inside co_await ("array used as initializer").
    std::vector<int> start{1};
    co_await trail.scope(std::move(start), body());
  });
  EXPECT_EQ(in_child, (std::vector<int>{1, 2}));
  EXPECT_EQ(in_parent, (std::vector<int>{1, 3}));
}

// P8: an inherited value reaches grandchildren (each a copy of its parent's).
TEST_P(task_local_test, an_inherited_value_reaches_grandchildren) {
  auto grandchild = []() -> task<std::string> { co_return co_await read_request_id(); };
  auto child = [&]() -> task<std::string> { co_return co_await warden::spawn(grandchild()); };
  auto r = run([&]() -> task<std::string> {
    co_return co_await request_id.scope(std::string("req-42"),
                                        [&]() -> task<std::string> { co_return co_await warden::spawn(child()); }());
  });
  EXPECT_EQ(r, "req-42");
}

// P8: the child's copy outlives the scope that set it: the child still reads
// it after the parent's scope ended (and the parent's value was destroyed).
TEST_P(task_local_test, an_inherited_value_outlives_the_scope_that_set_it) {
  static constinit task_local<std::shared_ptr<int>> shared{{.inherit = true}};
  test_event scope_ended;
  std::weak_ptr<int> parents_value;
  int child_read = 0;
  long owners_after_scope = 0;
  auto child = [&]() -> task<void> {
    co_await scope_ended.wait();
    child_read = *shared.get();
    owners_after_scope = shared.get().use_count();
  };
  auto body = [&]() -> task<warden::join_handle<void>> {
    parents_value = shared.get();
    co_return warden::spawn(child());
  };
  run([&]() -> task<void> {
    auto h = co_await shared.scope(std::make_shared<int>(8), body());
    EXPECT_EQ(shared.try_get(), nullptr);  // the scope is over here
    scope_ended.set();
    co_await h;
  });
  EXPECT_EQ(child_read, 8);
  // The child held its own copy of the shared_ptr (one owner: the parent's
  // binding was destroyed when the scope ended).
  EXPECT_EQ(owners_after_scope, 1);
  EXPECT_TRUE(parents_value.expired());
}

// P8: a spawned task inherits the binding visible at the spawn (the
// innermost), taken when it was spawned.
TEST_P(task_local_test, a_spawned_task_inherits_the_innermost_binding) {
  auto inner = []() -> task<std::string> { co_return co_await warden::spawn(read_request_id()); };
  auto r = run([&]() -> task<std::string> {
    co_return co_await request_id.scope(std::string("outer"), request_id.scope(std::string("inner"), inner()));
  });
  EXPECT_EQ(r, "inner");
}

// P8 with the combinators: their children are spawned tasks, so they see
// copies of inherited keys and nothing of the others.
TEST_P(task_local_test, combinator_children_see_inherited_keys_only) {
  auto body = []() -> task<std::tuple<std::string, int>> {
    co_return co_await warden::when_all(read_request_id(), read_number());
  };
  auto [id, n] = run([&]() -> task<std::tuple<std::string, int>> {
    co_return co_await request_id.scope(std::string("req-7"), number.scope(3, body()));
  });
  EXPECT_EQ(id, "req-7");
  EXPECT_EQ(n, -1);
}

// Errors: an inherited key needs a copyable T.
TEST(task_local_errors, an_inherited_key_of_a_move_only_type_throws_usage_error) {
  try {
    task_local<std::unique_ptr<int>> key{{.inherit = true}};
    ADD_FAILURE() << "constructed";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "copyable")) << e.what();
  }
  task_local<std::unique_ptr<int>> fine{{.inherit = false}};
  EXPECT_FALSE(fine.inherited());
  EXPECT_TRUE(request_id.inherited());
}

INSTANTIATE_TEST_SUITE_P(workers, task_local_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
