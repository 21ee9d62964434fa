// The timing wheel against a reference model (SEMANTICS P1: timers fire no
// earlier than their deadline, and are not lost).
#include "../../src/time/timer_wheel.hpp"
#include "support/test_support.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

namespace {

using warden::detail::timer_node;
using warden::detail::timer_wheel;

struct harness {
  timer_wheel wheel;
  std::vector<std::unique_ptr<timer_node>> nodes;
  std::set<timer_node*> armed;

  timer_node* add(std::uint64_t deadline) {
    nodes.push_back(std::make_unique<timer_node>());
    timer_node* n = nodes.back().get();
    n->deadline = deadline;
    wheel.insert(n);
    armed.insert(n);
    return n;
  }
  std::vector<timer_node*> advance(std::uint64_t now) {
    warden::detail::timer_list fired;
    wheel.advance(now, fired);
    std::vector<timer_node*> due;
    while (timer_node* n = fired.pop_front()) due.push_back(n);
    for (timer_node* n : due) armed.erase(n);
    return due;
  }
};

TEST(timer_wheel, a_timer_fires_at_its_tick_and_not_before) {
  harness h;
  timer_node* n = h.add(100);
  EXPECT_TRUE(h.advance(99).empty());
  auto due = h.advance(100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], n);
  EXPECT_EQ(h.wheel.size(), 0u);
}

TEST(timer_wheel, next_expiration_is_a_lower_bound_of_the_earliest_deadline) {
  harness h;
  h.add(5000);
  h.add(70);
  ASSERT_TRUE(h.wheel.next_expiration().has_value());
  EXPECT_LE(*h.wheel.next_expiration(), 70u);
}

TEST(timer_wheel, removed_timers_never_fire) {
  harness h;
  timer_node* a = h.add(10);
  timer_node* b = h.add(10);
  h.wheel.remove(a);
  auto due = h.advance(1000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], b);
}

TEST(timer_wheel, far_deadlines_beyond_the_top_level_are_refiled_and_fire_on_time) {
  harness h;
  const std::uint64_t far = (1ull << 40) + 12345;
  h.add(far);
  h.add(timer_wheel::kMaxSpan + 7);
  std::uint64_t now = 0;
  std::vector<std::uint64_t> fired;
  // Jump from expiration to expiration, as a driver does.
  while (auto next = h.wheel.next_expiration()) {
    now = std::max(now, *next);
    for (timer_node* n : h.advance(now)) {
      EXPECT_LE(n->deadline, now);
      EXPECT_EQ(n->deadline, now) << "fired late";
      fired.push_back(n->deadline);
    }
  }
  std::sort(fired.begin(), fired.end());
  EXPECT_EQ(fired, (std::vector<std::uint64_t>{timer_wheel::kMaxSpan + 7, far}));
}

// P1: against a reference model, random inserts, removals and advances:
// every timer fires exactly once, in the first advance that reaches its
// deadline, never earlier.
TEST(timer_wheel, random_operations_match_a_reference_model) {
  const auto seed = warden::testkit::stress_seed();
  SCOPED_TRACE(warden::testkit::seed_trace(seed));
  std::mt19937_64 rng(seed);
  harness h;
  std::uint64_t now = 0;
  const int rounds = warden::testkit::stress_iterations(20000);
  for (int i = 0; i < rounds; ++i) {
    switch (rng() % 4) {
      case 0:
      case 1: {
        // Deadlines from the next tick to far beyond the top level.
        const int scale = static_cast<int>(rng() % 40);
        const std::uint64_t delta = 1 + (rng() % (1ull << (scale % 38 + 1)));
        h.add(now + delta);
        break;
      }
      case 2: {
        if (h.armed.empty()) break;
        auto it = h.armed.begin();
        std::advance(it, static_cast<long>(rng() % h.armed.size()));
        h.wheel.remove(*it);
        h.armed.erase(it);
        break;
      }
      case 3: {
        const std::uint64_t target = now + (rng() % 3 == 0 ? rng() % (1ull << 20) : rng() % 200);
        std::set<timer_node*> expected;
        for (timer_node* n : h.armed)
          if (n->deadline <= target) expected.insert(n);
        auto due = h.advance(target);
        std::set<timer_node*> got(due.begin(), due.end());
        ASSERT_EQ(got.size(), due.size()) << "a timer fired twice";
        ASSERT_EQ(got, expected) << "advance to " << target;
        now = target;
        break;
      }
    }
    ASSERT_EQ(h.wheel.size(), h.armed.size());
  }
}

}  // namespace
