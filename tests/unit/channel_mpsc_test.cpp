// mpsc<T>(capacity) and mpsc_unbounded<T>(): order, back-pressure, close
// semantics, cancellation of parked senders and receivers, misuse
// (SEMANTICS P6).
#include "support/test_support.hpp"

#include <warden/sync/mpsc.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using warden::mpsc_receiver;
using warden::mpsc_sender;
using warden::task;
using warden::try_recv_error;
using warden::try_send_failure;

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

/// Yields until `done()` holds (the other tasks run meanwhile, also in
/// current-thread mode).
template <class F>
task<void> until(F done) {
  while (!done()) co_await warden::yield_now{};
}

/// A move-only value that counts live instances (moved-from ones do not
/// count), to check that values are destroyed exactly once.
class tracked {
 public:
  tracked(int id, std::atomic<int>& live) : id_(id), live_(&live) { live_->fetch_add(1); }
  tracked(tracked&& other) noexcept : id_(other.id_), live_(std::exchange(other.live_, nullptr)) {}
  tracked& operator=(tracked&&) = delete;
  ~tracked() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }
  [[nodiscard]] int id() const { return id_; }

 private:
  int id_;
  std::atomic<int>* live_;
};

task<void> send_one(mpsc_sender<int> tx, int value, std::atomic<bool>* sent) {
  auto r = co_await tx.send(value);
  EXPECT_TRUE(r.has_value());
  sent->store(true);
}

/// Sends `value`; yields the value back if the send failed.
task<std::optional<int>> send_or_return(mpsc_sender<int> tx, int value) {
  auto r = co_await tx.send(value);
  if (r) co_return std::nullopt;
  co_return r.error();
}

task<std::optional<int>> receive_one(mpsc_receiver<int>* rx) { co_return co_await rx->recv(); }

task<void> send_tracked(mpsc_sender<tracked> tx, int id, std::atomic<int>* live) {
  (void)co_await tx.send(tracked(id, *live));
}

/// Sends `count` values numbered from producer * count.
task<void> produce(mpsc_sender<int> tx, int producer, int count) {
  // A spawned task's parameters live until its join handle takes the
  // result, a local only until co_return: moved here, the sender goes when
  // the producer finishes, and with the last one the channel closes.
  mpsc_sender<int> mine = std::move(tx);
  for (int i = 0; i < count; ++i) EXPECT_TRUE((co_await mine.send(producer * count + i)).has_value());
}

task<void> park_forever(mpsc_sender<int> tx, warden::testkit::test_event* never) {
  (void)tx;
  co_await never->wait();
}

class mpsc_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  bool current_thread_mode() const { return GetParam() == 0; }

  std::atomic<int> live{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// ---- order, bounded and unbounded -------------------------------------------

// P6: values arrive in the order they were sent (bounded).
TEST_P(mpsc_test, values_arrive_in_the_order_they_were_sent) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(4);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE((co_await tx.send(i)).has_value());
    for (int i = 0; i < 4; ++i) EXPECT_EQ(co_await rx.recv(), i);
    EXPECT_EQ(rx.size(), 0u);
  });
}

// P6: unbounded: send never waits, however many values are queued; order kept.
TEST_P(mpsc_test, unbounded_sends_never_wait_and_keep_their_order) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc_unbounded<int>();
    for (int i = 0; i < 10'000; ++i) {
      if (i % 2 == 0)
        EXPECT_TRUE(tx.try_send(i).has_value());
      else
        EXPECT_TRUE((co_await tx.send(i)).has_value());
    }
    EXPECT_EQ(rx.size(), 10'000u);
    for (int i = 0; i < 10'000; ++i) EXPECT_EQ(co_await rx.recv(), i);
  });
}

// P6: a bounded send waits while the channel is full and completes when the
// receiver frees a slot.
TEST_P(mpsc_test, send_waits_while_the_channel_is_full) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(1).has_value());
    std::atomic<bool> sent{false};
    auto h = warden::spawn(send_one(tx, 2, &sent));
    co_await until([&] { return rx.waiting_senders() == 1; });
    for (int i = 0; i < 50; ++i) co_await warden::yield_now{};
    EXPECT_FALSE(sent.load());  // still parked: nobody made room
    EXPECT_EQ(co_await rx.recv(), 1);
    co_await h;
    EXPECT_TRUE(sent.load());
    EXPECT_EQ(co_await rx.recv(), 2);
  });
}

// P6: try_send on a full channel fails with `full` and gives the value back.
TEST_P(mpsc_test, try_send_on_a_full_channel_returns_full_and_the_value) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<std::string>(2);
    EXPECT_TRUE(tx.try_send("a").has_value());
    EXPECT_TRUE(tx.try_send("b").has_value());
    auto r = tx.try_send(std::string(40, 'c'));
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_TRUE(r.error().is_full());
      EXPECT_EQ(r.error().reason, try_send_failure::full);
      EXPECT_EQ(r.error().value, std::string(40, 'c'));
    }
    EXPECT_EQ(co_await rx.recv(), "a");
    co_return;
  });
}

// P6: waiting senders are served in the order they started waiting.
TEST_P(mpsc_test, parked_senders_are_served_in_the_order_they_parked) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(0).has_value());
    std::vector<warden::join_handle<std::optional<int>>> senders;
    for (int i = 1; i <= 4; ++i) {
      senders.push_back(warden::spawn(send_or_return(tx, i)));
      co_await until([&] { return rx.waiting_senders() == static_cast<std::size_t>(i); });
    }
    for (int i = 0; i <= 4; ++i) EXPECT_EQ(co_await rx.recv(), i);
    for (auto& s : senders) EXPECT_EQ(co_await s, std::nullopt);
  });
}

// P6: a slot freed while senders wait goes to the first of them; a newcomer
// does not take it (no barging).
TEST_P(mpsc_test, a_new_sender_does_not_overtake_a_parked_one) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(1).has_value());
    auto parked = warden::spawn(send_or_return(tx, 2));
    co_await until([&] { return rx.waiting_senders() == 1; });
    EXPECT_EQ(co_await rx.recv(), 1);  // the slot is promised to the parked sender
    auto r = tx.try_send(3);
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_TRUE(r.error().is_full());
    }
    EXPECT_EQ(co_await rx.recv(), 2);
    EXPECT_EQ(co_await parked, std::nullopt);
  });
}

// P6: the receiver waits for a value and is woken by the send.
TEST_P(mpsc_test, a_parked_receiver_is_woken_by_a_send) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(2);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.try_send(7).has_value());
    EXPECT_EQ(co_await receiver, 7);
  });
}

// P6: many producers: every value arrives exactly once, each producer's in
// its own order.
TEST_P(mpsc_test, many_producers_deliver_every_value_exactly_once_in_per_producer_order) {
  constexpr int producers = 8;
  constexpr int per_producer = 500;
  for (bool bounded : {true, false}) {
    run([&]() -> task<void> {
      auto [tx, rx] = bounded ? warden::mpsc<int>(3) : warden::mpsc_unbounded<int>();
      std::vector<warden::join_handle<void>> handles;
      for (int p = 0; p < producers; ++p) handles.push_back(warden::spawn(produce(tx, p, per_producer)));
      tx = {};  // only the producers' copies remain: the channel closes when they finish
      std::vector<int> last(producers, -1);
      int received = 0;
      while (std::optional<int> v = co_await rx.recv()) {
        const int producer = *v / per_producer;
        EXPECT_GT(*v, last[producer]);
        last[producer] = *v;
        ++received;
      }
      EXPECT_EQ(received, producers * per_producer);
      for (auto& h : handles) co_await h;
    });
  }
}

// ---- close semantics ----------------------------------------------------------

// P6: after close the receiver drains what was sent, then sees closed; a
// send after close fails and gives the value back.
TEST_P(mpsc_test, close_lets_the_receiver_drain_then_reports_closed) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<std::string>(4);
    EXPECT_TRUE((co_await tx.send(std::string("one"))).has_value());
    EXPECT_TRUE((co_await tx.send(std::string("two"))).has_value());
    rx.close();
    rx.close();  // idempotent
    EXPECT_TRUE(tx.is_closed());
    auto refused = co_await tx.send(std::string(50, 'x'));
    EXPECT_FALSE(refused.has_value());
    if (!refused) {
      EXPECT_EQ(refused.error(), std::string(50, 'x'));
    }
    auto refused_now = tx.try_send("three");
    EXPECT_FALSE(refused_now.has_value());
    if (!refused_now) {
      EXPECT_TRUE(refused_now.error().is_closed());
      EXPECT_EQ(refused_now.error().value, "three");
    }
    EXPECT_EQ(co_await rx.recv(), "one");
    EXPECT_EQ(co_await rx.recv(), "two");
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
    EXPECT_EQ(co_await rx.recv(), std::nullopt);  // stays closed
  });
}

// P6: close wakes the senders parked on a full channel; each gets its value
// back, and what was queued before still reaches the receiver.
TEST_P(mpsc_test, close_gives_parked_senders_their_values_back) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(1).has_value());
    auto a = warden::spawn(send_or_return(tx, 2));
    auto b = warden::spawn(send_or_return(tx, 3));
    co_await until([&] { return rx.waiting_senders() == 2; });
    rx.close();
    EXPECT_EQ(co_await a, 2);
    EXPECT_EQ(co_await b, 3);
    EXPECT_EQ(rx.waiting_senders(), 0u);
    EXPECT_EQ(co_await rx.recv(), 1);
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
  });
}

// P6: the channel closes when every sender is gone (copies included); the
// receiver drains first.
TEST_P(mpsc_test, dropping_the_last_sender_closes_after_the_queue_drains) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(4);
    mpsc_sender<int> copy = tx;
    EXPECT_TRUE(tx.try_send(1).has_value());
    tx = {};
    EXPECT_EQ(rx.try_recv(), 1);
    EXPECT_EQ(rx.try_recv(), std::unexpected(try_recv_error::empty));  // the copy keeps it open
    EXPECT_TRUE(copy.try_send(2).has_value());
    copy = {};
    EXPECT_EQ(co_await rx.recv(), 2);
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
    EXPECT_EQ(rx.try_recv(), std::unexpected(try_recv_error::closed));
  });
}

// P6: a receiver parked on an empty channel is woken with nullopt when the
// last sender goes away.
TEST_P(mpsc_test, the_last_sender_leaving_wakes_a_parked_receiver_with_closed) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc_unbounded<int>();
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    tx = {};
    EXPECT_EQ(co_await receiver, std::nullopt);
  });
}

// P6: a sender destroyed with an aborted task's frame counts as gone.
TEST_P(mpsc_test, a_sender_in_an_aborted_task_is_dropped_with_its_frame) {
  run([&]() -> task<void> {
    warden::testkit::test_event never;
    auto [tx, rx] = warden::mpsc<int>(1);
    auto holder = warden::spawn(park_forever(std::move(tx), &never));
    co_await until([&] { return never.waiters() == 1; });
    holder.abort();
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
  });
}

// P6: destroying the receiver closes the channel: later sends fail with the
// value back, parked senders get theirs back, queued values are destroyed.
TEST_P(mpsc_test, dropping_the_receiver_closes_and_destroys_queued_values) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    auto parked = warden::spawn(
        [](mpsc_sender<tracked> tx, std::atomic<int>* live) -> task<int> {
          auto r = co_await tx.send(tracked(2, *live));
          co_return r ? 0 : r.error().id();
        },
        tx, &live);
    co_await until([&] { return rx.waiting_senders() == 1; });
    EXPECT_EQ(live.load(), 2);
    { mpsc_receiver<tracked> gone = std::move(rx); }
    EXPECT_EQ(co_await parked, 2);
    EXPECT_EQ(live.load(), 0);  // the queued value went with the receiver
    EXPECT_TRUE(tx.is_closed());
    auto r = tx.try_send(tracked(3, live));
    EXPECT_FALSE(r.has_value());
  });
  EXPECT_EQ(live.load(), 0);
}

// ---- cancellation ------------------------------------------------------------

// P6: a sender aborted while parked on a full channel sends nothing; its
// value is destroyed with the frame.
TEST_P(mpsc_test, an_aborted_parked_sender_sends_nothing) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    auto parked = warden::spawn(send_tracked(tx, 2, &live));
    co_await until([&] { return rx.waiting_senders() == 1; });
    parked.abort();
    auto r = co_await parked.result();
    EXPECT_TRUE(!r.has_value() && r.error().is_cancelled());
    EXPECT_EQ(rx.waiting_senders(), 0u);
    EXPECT_EQ(live.load(), 1);  // only the queued value is left
    auto first = co_await rx.recv();
    EXPECT_EQ(first ? first->id() : -1, 1);
    EXPECT_EQ(rx.try_recv().error(), try_recv_error::empty);
    // The slot is free again.
    EXPECT_TRUE(tx.try_send(tracked(3, live)).has_value());
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: a sender that was promised a slot but aborted before it ran passes
// the slot to the next waiting sender (nobody stays parked for nothing).
TEST_P(mpsc_test, an_aborted_sender_passes_its_promised_slot_on) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(1).has_value());
    auto first = warden::spawn(send_or_return(tx, 2));
    co_await until([&] { return rx.waiting_senders() == 1; });
    auto second = warden::spawn(send_or_return(tx, 3));
    co_await until([&] { return rx.waiting_senders() == 2; });
    EXPECT_EQ(co_await rx.recv(), 1);  // promises the slot to `first` and wakes it
    first.abort();                     // in current-thread mode it has not run yet
    auto r = co_await first.result();
    std::vector<int> rest;
    while (rest.empty() || rest.back() != 3) {
      auto v = co_await rx.recv();
      if (!v) break;
      rest.push_back(*v);
    }
    if (r.has_value()) {  // `first` ran before the abort: its value was sent
      EXPECT_EQ(rest, (std::vector<int>{2, 3}));
    } else {
      EXPECT_EQ(rest, (std::vector<int>{3}));
    }
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
    }
    EXPECT_EQ(co_await second, std::nullopt);
  });
}

// P6: a receiver aborted while parked loses no message: the value sent
// afterwards (or just before the abort took effect) is still received.
TEST_P(mpsc_test, an_aborted_parked_receiver_loses_no_message) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(2);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    receiver.abort();
    (void)co_await receiver.result();
    EXPECT_FALSE(tx.receiver_waiting());
    EXPECT_TRUE(tx.try_send(5).has_value());
    EXPECT_EQ(co_await rx.recv(), 5);
  });
}

// P6: a receiver woken by a send but aborted before it ran does not take
// the value with it: the value stays queued for the next recv.
TEST_P(mpsc_test, a_receiver_woken_then_aborted_leaves_the_value_queued) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(2);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.try_send(9).has_value());  // wakes the receiver
    receiver.abort();                         // current-thread mode: before it ran
    auto r = co_await receiver.result();
    std::vector<int> got;
    if (r.has_value() && *r) got.push_back(**r);
    while (auto v = rx.try_recv()) got.push_back(*v);
    EXPECT_EQ(got, std::vector<int>{9});  // exactly once, by one of the two
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
    }
  });
}

// ---- capacity 1: the slot word ---------------------------------------------
// Capacity 1 has its own lock-free protocol (one word: slot, permit and the
// receiver's park flag; see mpsc_state.hpp). Its edges, each pinned here.

// P6: a send into a parked receiver hands the value over; a second value
// waits for the slot (capacity 1 holds one value, also while it is being
// handed over).
TEST_P(mpsc_test, capacity_one_hands_a_value_to_a_parked_receiver_without_taking_the_slot) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.try_send(1).has_value());  // handed to the waiting receiver
    EXPECT_TRUE(tx.try_send(2).has_value());  // the slot is still free
    auto third = tx.try_send(3);
    if (current_thread_mode()) {  // the receiver has not run: 1 handed, 2 in the slot
      EXPECT_FALSE(third.has_value());
      EXPECT_EQ(rx.size(), 2u);
    }
    EXPECT_EQ(co_await receiver, 1);
    EXPECT_EQ(co_await rx.recv(), 2);
    if (third) {
      EXPECT_EQ(co_await rx.recv(), 3);
    }
    EXPECT_EQ(rx.size(), 0u);
    EXPECT_TRUE(tx.try_send(4).has_value());
    EXPECT_EQ(rx.try_recv(), 4);
  });
}

/// Receives one value from `rx` and sends it on through `out`.
task<void> relay_one(mpsc_receiver<int> rx, mpsc_sender<int> out) {
  auto v = co_await rx.recv();
  EXPECT_TRUE(v.has_value());
  EXPECT_TRUE((co_await out.send(v.value_or(-1))).has_value());
}

// P6: a capacity-1 receiver parked in recv is woken by a send from a thread
// that is no worker, whether its park was solo (a detached task: its waker
// names the runtime whose worker parked it) or not (a join handle holds the
// task: the waker names no runtime). Off a worker both wakes take the RMW
// path; a waker whose "no runtime" equalled such a thread's (none) would
// have taken the worker-only solo path there and crashed.
TEST_P(mpsc_test, capacity_one_a_parked_receiver_is_woken_by_a_send_from_a_plain_thread) {
  run([&]() -> task<void> {
    {
      auto [tx, rx] = warden::mpsc<int>(1);
      auto receiver = warden::spawn(receive_one(&rx));  // not solo: the handle holds it
      co_await until([&] { return tx.receiver_waiting(); });
      std::thread sender([&] { EXPECT_TRUE(tx.try_send(7).has_value()); });
      sender.join();
      EXPECT_EQ(co_await receiver, 7);
    }
    {
      auto [tx, rx] = warden::mpsc<int>(1);
      auto [back_tx, back_rx] = warden::mpsc<int>(1);
      warden::spawn(relay_one(std::move(rx), std::move(back_tx))).detach();  // parks solo
      co_await until([&] { return tx.receiver_waiting(); });
      std::thread sender([&] { EXPECT_TRUE(tx.try_send(8).has_value()); });
      sender.join();
      EXPECT_EQ(co_await back_rx.recv(), 8);
    }
  });
}

// P6: a value handed to a parked recv whose task is aborted before it runs
// is not lost: the next recv gets it, before the one in the slot.
TEST_P(mpsc_test, capacity_one_value_handed_to_an_aborted_receiver_goes_to_the_next_recv) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    auto receiver = warden::spawn(
        [](warden::mpsc_receiver<tracked>* rx) -> task<int> {
          auto v = co_await rx->recv();
          co_return v ? v->id() : -1;
        },
        &rx);
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    receiver.abort();  // in current-thread mode it has not run yet: the value stays handed
    auto outcome = co_await receiver.result();
    if (!outcome) {
      EXPECT_TRUE(outcome.error().is_cancelled());
      EXPECT_TRUE(tx.try_send(tracked(2, live)).has_value());
      auto first = co_await rx.recv();
      EXPECT_EQ(first ? first->id() : -1, 1);
      auto second = co_await rx.recv();
      EXPECT_EQ(second ? second->id() : -1, 2);
    } else {
      EXPECT_EQ(*outcome, 1);  // it ran before the abort
    }
    EXPECT_EQ(rx.size(), 0u);
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: close while a sender waits: it gets its value back, the queued value
// is still received, then closed.
TEST_P(mpsc_test, capacity_one_close_while_a_sender_waits_gives_it_the_value_back) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    auto parked = warden::spawn(
        [](mpsc_sender<tracked> tx, std::atomic<int>* live) -> task<int> {
          auto r = co_await tx.send(tracked(2, *live));
          co_return r ? 0 : r.error().id();
        },
        tx, &live);
    co_await until([&] { return rx.waiting_senders() == 1; });
    rx.close();
    EXPECT_EQ(co_await parked, 2);
    auto first = co_await rx.recv();
    EXPECT_EQ(first ? first->id() : -1, 1);
    EXPECT_FALSE(co_await rx.recv());
    EXPECT_TRUE(tx.try_send(tracked(3, live)).error().is_closed());
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: a waiting sender handed the slot, but closed out before it ran, fails
// with its value back; the receiver parked meanwhile on the promised slot is
// woken with closed.
TEST_P(mpsc_test, capacity_one_a_sender_handed_the_slot_then_closed_out_returns_its_value) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    EXPECT_TRUE(tx.try_send(1).has_value());
    auto parked = warden::spawn(send_or_return(tx, 2));
    co_await until([&] { return rx.waiting_senders() == 1; });
    EXPECT_EQ(rx.try_recv(), 1);  // hands the slot to `parked` and wakes it
    rx.close();
    auto second = co_await rx.recv();  // current-thread mode: parks on the promised slot
    auto returned = co_await parked;
    if (current_thread_mode()) {
      EXPECT_EQ(returned, 2);
    }
    // Exactly one of them has the value.
    EXPECT_EQ(second.has_value(), !returned.has_value());
    if (second) {
      EXPECT_EQ(*second, 2);
    }
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
  });
}

// P6: a sender handed the slot but aborted before it ran sends nothing and
// frees the slot; a receiver that parked on the promised slot meanwhile is
// woken with closed once the channel is closed and drained.
TEST_P(mpsc_test, capacity_one_an_aborted_sender_handed_the_slot_frees_it) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    auto parked = warden::spawn(send_tracked(tx, 2, &live));
    co_await until([&] { return rx.waiting_senders() == 1; });
    auto first = co_await rx.recv();  // hands the slot to `parked`
    EXPECT_EQ(first ? first->id() : -1, 1);
    first.reset();
    rx.close();
    parked.abort();
    auto next = co_await rx.recv();  // current-thread mode: parks until the abort frees the slot
    auto r = co_await parked.result();
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
      EXPECT_FALSE(next.has_value());
    }
    if (next) {
      EXPECT_EQ(next->id(), 2);
      next.reset();
      EXPECT_FALSE(co_await rx.recv());
    }
    EXPECT_EQ(live.load(), 0);
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: a cancelled send keeps nothing: a sender aborted while waiting leaves
// the slot to the next sender, in order.
TEST_P(mpsc_test, capacity_one_an_aborted_waiting_sender_keeps_nothing_and_the_next_goes_on) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    auto aborted = warden::spawn(send_tracked(tx, 2, &live));
    co_await until([&] { return rx.waiting_senders() == 1; });
    auto next = warden::spawn(send_tracked(tx, 3, &live));
    co_await until([&] { return rx.waiting_senders() == 2; });
    aborted.abort();
    (void)co_await aborted.result();
    EXPECT_EQ(live.load(), 2);  // 1 queued, 3 waiting; 2 destroyed with its frame
    std::vector<int> got;
    for (int i = 0; i < 2; ++i) {
      auto v = co_await rx.recv();
      got.push_back(v ? v->id() : -1);
    }
    EXPECT_EQ(got, (std::vector<int>{1, 3}));
    co_await next;
    EXPECT_EQ(rx.waiting_senders(), 0u);
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: a cancelled recv loses nothing: a receiver handed the value directly
// (it was parked) but aborted before it ran leaves it in the slot.
TEST_P(mpsc_test, capacity_one_a_receiver_handed_a_value_then_aborted_leaves_it_in_the_slot) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.try_send(9).has_value());  // hands 9 over and wakes the receiver
    receiver.abort();                         // current-thread mode: before it ran
    auto r = co_await receiver.result();
    std::vector<int> got;
    if (r.has_value() && *r) got.push_back(**r);
    if (auto v = rx.try_recv()) got.push_back(*v);
    EXPECT_EQ(got, std::vector<int>{9});
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
    }
    // The receiver parks and is handed values again.
    auto again = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE((co_await tx.send(10)).has_value());
    EXPECT_EQ(co_await again, 10);
  });
}

// P6: a receiver aborted while parked on an empty slot loses nothing and
// leaves no waker behind: the next value goes to the next recv.
TEST_P(mpsc_test, capacity_one_an_aborted_parked_receiver_leaves_no_waker_behind) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    receiver.abort();
    (void)co_await receiver.result();
    EXPECT_FALSE(tx.receiver_waiting());
    EXPECT_TRUE(tx.try_send(5).has_value());
    EXPECT_EQ(co_await rx.recv(), 5);
    rx.close();
    EXPECT_EQ(co_await rx.recv(), std::nullopt);
  });
}

// P6: dropping the receiver with a value in the slot destroys the value;
// a value handed to an aborted recv is destroyed the same way.
TEST_P(mpsc_test, capacity_one_dropping_the_receiver_destroys_the_value_in_the_slot) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<tracked>(1);
    EXPECT_TRUE(tx.try_send(tracked(1, live)).has_value());
    { mpsc_receiver<tracked> gone = std::move(rx); }
    EXPECT_EQ(live.load(), 0);
    {
      auto r = tx.try_send(tracked(2, live));
      EXPECT_TRUE(!r.has_value() && r.error().is_closed());
    }

    auto [tx2, rx2] = warden::mpsc<tracked>(1);
    auto receiver = warden::spawn(
        [](mpsc_receiver<tracked>* rx) -> task<int> {
          auto v = co_await rx->recv();
          co_return v ? v->id() : -1;
        },
        &rx2);
    co_await until([&] { return tx2.receiver_waiting(); });
    EXPECT_TRUE(tx2.try_send(tracked(3, live)).has_value());
    receiver.abort();
    (void)co_await receiver.result();
    { mpsc_receiver<tracked> gone = std::move(rx2); }
    EXPECT_EQ(live.load(), 0);
  });
  EXPECT_EQ(live.load(), 0);
}

// P6: the last sender leaving wakes a receiver parked on an empty slot.
TEST_P(mpsc_test, capacity_one_the_last_sender_leaving_wakes_a_parked_receiver_with_closed) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    auto receiver = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    tx = {};
    EXPECT_EQ(co_await receiver, std::nullopt);
  });
}

// ---- values and the GCC 12 co_await pitfall ---------------------------------

// The natural calls are safe: a temporary, a moved local, a converted
// literal, across a real suspension (the channel is full when they start).
TEST_P(mpsc_test, send_takes_temporaries_and_moved_values_safely_across_a_wait) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<std::string>(1);
    EXPECT_TRUE(tx.try_send("first").has_value());
    auto drain = warden::spawn(
        [](mpsc_receiver<std::string>* rx) -> task<std::vector<std::string>> {
          std::vector<std::string> got;
          while (auto v = co_await rx->recv()) got.push_back(std::move(*v));
          co_return got;
        },
        &rx);
    const std::string long_text(100, 'm');
    std::string local = long_text;
    EXPECT_TRUE((co_await tx.send(std::string(80, 't'))).has_value());
    EXPECT_TRUE((co_await tx.send(std::move(local))).has_value());
    EXPECT_TRUE((co_await tx.send("a literal long enough to live on the heap, not in the SSO buffer")).has_value());
    EXPECT_TRUE((co_await tx.send(long_text)).has_value());
    tx = {};
    auto got = co_await drain;
    EXPECT_EQ(
        got, (std::vector<std::string>{"first", std::string(80, 't'), long_text,
                                       "a literal long enough to live on the heap, not in the SSO buffer", long_text}));
  });
}

// Move-only values travel; nothing is copied or leaked.
TEST_P(mpsc_test, move_only_values_are_moved_through) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<std::unique_ptr<int>>(2);
    EXPECT_TRUE((co_await tx.send(std::make_unique<int>(4))).has_value());
    auto v = co_await rx.recv();
    EXPECT_TRUE(v && *v && **v == 4);
  });
}

// ---- misuse --------------------------------------------------------------------

// A zero capacity is a programming error, reported with the way out.
TEST(mpsc_misuse, zero_capacity_throws_usage_error_naming_the_fix) {
  try {
    (void)warden::mpsc<int>(0);
    FAIL() << "no exception";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "capacity must be at least 1"));
    EXPECT_TRUE(mentions(e.what(), "mpsc_unbounded"));
  }
}

// Empty (moved-from or default) handles throw instead of crashing.
TEST(mpsc_misuse, empty_handles_throw_usage_error) {
  auto [tx, rx] = warden::mpsc<int>(1);
  mpsc_sender<int> moved = std::move(tx);
  mpsc_receiver<int> taken = std::move(rx);
  EXPECT_FALSE(tx.valid());
  EXPECT_FALSE(rx.valid());
  EXPECT_THROW((void)tx.try_send(1), warden::usage_error);
  EXPECT_THROW((void)tx.send(1), warden::usage_error);
  EXPECT_THROW((void)rx.recv(), warden::usage_error);
  EXPECT_THROW((void)rx.try_recv(), warden::usage_error);
  EXPECT_THROW(rx.close(), warden::usage_error);
  try {
    (void)mpsc_sender<int>{}.try_send(1);
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "mpsc_sender::try_send"));
    EXPECT_TRUE(mentions(e.what(), "empty"));
  }
}

// Two recvs of one receiver waiting at once: the second throws.
TEST_P(mpsc_test, a_second_concurrent_recv_throws_usage_error) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::mpsc<int>(1);
    auto first = warden::spawn(receive_one(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    bool threw = false;
    try {
      (void)co_await rx.recv();
    } catch (const warden::usage_error& e) {
      threw = mentions(e.what(), "already waiting");
    }
    EXPECT_TRUE(threw);
    EXPECT_TRUE(tx.try_send(1).has_value());
    EXPECT_EQ(co_await first, 1);
  });
}

INSTANTIATE_TEST_SUITE_P(workers, mpsc_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
