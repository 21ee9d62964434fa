// oneshot<T>(): the value or "sender dropped", cancellation, misuse
// (SEMANTICS P6).
#include "support/test_support.hpp"

#include <warden/sync/oneshot.hpp>

#include <atomic>
#include <expected>
#include <memory>
#include <string>
#include <thread>
#include <utility>

namespace {

using warden::oneshot_receiver;
using warden::oneshot_sender;
using warden::sender_dropped;
using warden::task;

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

template <class F>
task<void> until(F done) {
  while (!done()) co_await warden::yield_now{};
}

/// Counts live instances (moved-from ones do not count).
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

template <class T>
task<std::expected<T, sender_dropped>> receive(oneshot_receiver<T>* rx) {
  co_return co_await rx->recv();
}

task<void> hold_until(oneshot_sender<int> tx, warden::testkit::test_event* never) {
  (void)tx;
  co_await never->wait();
}

class oneshot_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  bool current_thread_mode() const { return GetParam() == 0; }

  std::atomic<int> live{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P6: oneshot: a value sent before recv is received.
TEST_P(oneshot_test, a_value_sent_first_is_received) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<std::string>();
    EXPECT_TRUE(tx.send(std::string(64, 'v')).has_value());
    EXPECT_FALSE(tx.valid());  // a oneshot sender is spent by its send
    auto v = co_await rx.recv();
    EXPECT_EQ(v, std::string(64, 'v'));
  });
}

// P6: oneshot: recv waits until the value is sent (from another task).
TEST_P(oneshot_test, recv_waits_for_the_send) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    auto receiver = warden::spawn(receive<int>(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_FALSE(receiver.is_finished());
    EXPECT_TRUE(tx.send(42).has_value());
    EXPECT_EQ(co_await receiver, 42);
  });
}

// P6: oneshot: a plain thread may send (send never waits).
TEST_P(oneshot_test, a_plain_thread_can_send) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    std::thread sender([tx = std::move(tx)]() mutable { EXPECT_TRUE(tx.send(7).has_value()); });
    auto v = co_await rx.recv();
    sender.join();
    EXPECT_EQ(v, 7);
  });
}

// P6: oneshot "sender dropped": destroying the sender unsent wakes a parked
// receiver with sender_dropped.
TEST_P(oneshot_test, dropping_the_sender_wakes_the_receiver_with_sender_dropped) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    auto receiver = warden::spawn(receive<int>(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    tx = {};
    EXPECT_EQ(co_await receiver, std::unexpected(sender_dropped{}));
  });
}

// P6: oneshot "sender dropped", without waiting: the sender was already gone.
TEST_P(oneshot_test, recv_after_the_sender_is_gone_yields_sender_dropped_at_once) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    { oneshot_sender<int> gone = std::move(tx); }
    EXPECT_EQ(co_await rx.recv(), std::unexpected(sender_dropped{}));
  });
}

// P6: a sender destroyed with an aborted task's frame counts as dropped.
TEST_P(oneshot_test, a_sender_in_an_aborted_task_counts_as_dropped) {
  run([&]() -> task<void> {
    warden::testkit::test_event never;
    auto [tx, rx] = warden::oneshot<int>();
    auto holder = warden::spawn(hold_until(std::move(tx), &never));
    co_await until([&] { return never.waiters() == 1; });
    holder.abort();
    EXPECT_EQ(co_await rx.recv(), std::unexpected(sender_dropped{}));
  });
}

// P6: a value is received once; a second recv sees the sender gone.
TEST_P(oneshot_test, the_value_is_received_once) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<std::unique_ptr<int>>();
    EXPECT_TRUE(tx.send(std::make_unique<int>(3)).has_value());
    auto first = co_await rx.recv();
    EXPECT_TRUE(first.has_value() && *first && **first == 3);
    EXPECT_EQ(co_await rx.recv(), std::unexpected(sender_dropped{}));
  });
}

// P6: send when the receiver is gone fails and gives the value back.
TEST_P(oneshot_test, send_to_a_dropped_receiver_gives_the_value_back) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<std::string>();
    EXPECT_FALSE(tx.is_closed());
    { oneshot_receiver<std::string> gone = std::move(rx); }
    EXPECT_TRUE(tx.is_closed());
    auto r = tx.send(std::string(40, 'r'));
    EXPECT_EQ(r, std::unexpected(std::string(40, 'r')));
    co_return;
  });
}

// A value sent but never received is destroyed with the receiver.
TEST_P(oneshot_test, an_unreceived_value_is_destroyed_with_the_receiver) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<tracked>();
    EXPECT_TRUE(tx.send(tracked(1, live)).has_value());
    EXPECT_EQ(live.load(), 1);
    { oneshot_receiver<tracked> gone = std::move(rx); }
    EXPECT_EQ(live.load(), 0);
    co_return;
  });
}

// P6 cancellation: a receiver aborted while parked loses nothing; the value
// sent later is received by the next recv.
TEST_P(oneshot_test, an_aborted_parked_receiver_loses_nothing) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<tracked>();
    auto receiver = warden::spawn(receive<tracked>(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    receiver.abort();
    (void)co_await receiver.result();
    EXPECT_FALSE(tx.receiver_waiting());
    EXPECT_TRUE(tx.send(tracked(5, live)).has_value());
    auto v = co_await rx.recv();
    EXPECT_EQ(v ? v->id() : -1, 5);
  });
  EXPECT_EQ(live.load(), 0);
}

// P6 cancellation: a receiver woken by the send but aborted before it ran
// leaves the value for the next recv.
TEST_P(oneshot_test, a_receiver_woken_then_aborted_leaves_the_value) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    auto receiver = warden::spawn(receive<int>(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    EXPECT_TRUE(tx.send(8).has_value());
    receiver.abort();  // current-thread mode: before it ran
    auto r = co_await receiver.result();
    int received = 0;
    if (r.has_value() && r->has_value()) received += **r == 8 ? 1 : 100;
    auto again = co_await rx.recv();
    if (again.has_value()) received += *again == 8 ? 1 : 100;
    EXPECT_EQ(received, 1);  // exactly once, by one of the two
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
    }
  });
}

// ---- misuse --------------------------------------------------------------------

// A oneshot sends once; the second send (or a send on an empty sender) throws.
TEST(oneshot_misuse, a_second_send_throws_usage_error) {
  auto [tx, rx] = warden::oneshot<int>();
  EXPECT_TRUE(tx.send(1).has_value());
  try {
    (void)tx.send(2);
    FAIL() << "no exception";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "already sent"));
  }
  EXPECT_THROW((void)oneshot_sender<int>{}.send(1), warden::usage_error);
  EXPECT_THROW((void)oneshot_receiver<int>{}.recv(), warden::usage_error);
  EXPECT_THROW((void)oneshot_sender<int>{}.is_closed(), warden::usage_error);
}

// Two recvs waiting at once on one receiver: the second throws.
TEST_P(oneshot_test, a_second_concurrent_recv_throws_usage_error) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::oneshot<int>();
    auto first = warden::spawn(receive<int>(&rx));
    co_await until([&] { return tx.receiver_waiting(); });
    bool threw = false;
    try {
      (void)co_await rx.recv();
    } catch (const warden::usage_error& e) {
      threw = mentions(e.what(), "already waiting");
    }
    EXPECT_TRUE(threw);
    EXPECT_TRUE(tx.send(1).has_value());
    EXPECT_EQ(co_await first, 1);
  });
}

INSTANTIATE_TEST_SUITE_P(workers, oneshot_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
