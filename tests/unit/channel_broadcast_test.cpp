// broadcast<T>(capacity): every receiver sees every value sent after it
// subscribed, lagged(n) with the exact n, close, cancellation, memory,
// misuse (SEMANTICS P6).
#include "support/test_support.hpp"

#include <warden/sync/broadcast.hpp>

#include <atomic>
#include <cstdint>
#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace {

using warden::broadcast_error;
using warden::broadcast_receiver;
using warden::broadcast_sender;
using warden::task;

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

template <class F>
task<void> until(F done) {
  while (!done()) co_await warden::yield_now{};
}

using result = std::expected<int, broadcast_error>;
result value(int v) { return result(v); }
result lagged(std::uint64_t n) { return result(std::unexpect, broadcast_error::lagged(n)); }
result closed() { return result(std::unexpect, broadcast_error::closed()); }

/// Reads until closed, recording values and lag reports.
task<std::vector<result>> read_all(broadcast_receiver<int>* rx) {
  std::vector<result> got;
  for (;;) {
    result r = co_await rx->recv();
    got.push_back(r);
    if (!r && r.error().is_closed()) co_return got;
  }
}

task<result> read_one(broadcast_receiver<int>* rx) { co_return co_await rx->recv(); }

/// Counts live instances and copies (moved-from ones do not count).
class tracked {
 public:
  tracked(int id, std::atomic<int>& live, std::atomic<int>& copies) : id_(id), live_(&live), copies_(&copies) {
    live_->fetch_add(1);
  }
  tracked(const tracked& other) : id_(other.id_), live_(other.live_), copies_(other.copies_) {
    live_->fetch_add(1);
    copies_->fetch_add(1);
  }
  tracked(tracked&& other) noexcept
      : id_(other.id_), live_(std::exchange(other.live_, nullptr)), copies_(other.copies_) {}
  tracked& operator=(const tracked&) = delete;
  ~tracked() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }
  [[nodiscard]] int id() const { return id_; }

 private:
  int id_;
  std::atomic<int>* live_;
  std::atomic<int>* copies_;
};

class broadcast_test : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class F>
  auto run(F body) {
    return rt.block_on(body());
  }
  bool current_thread_mode() const { return GetParam() == 0; }

  std::atomic<int> live{0};
  std::atomic<int> copies{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// P6: every receiver sees every value sent after it subscribed, in order.
TEST_P(broadcast_test, every_receiver_sees_every_value_sent_after_it_subscribed) {
  run([&]() -> task<void> {
    auto [tx, early] = warden::broadcast<int>(8);
    EXPECT_EQ(tx.send(1), 1u);
    broadcast_receiver<int> late = tx.subscribe();
    EXPECT_EQ(tx.send(2), 2u);
    EXPECT_EQ(tx.send(3), 2u);
    tx = {};
    // Expectations are locals: GCC 12 miscompiles braced lists inside a co_await expression.
    const std::vector<result> from_start{value(1), value(2), value(3), closed()};
    const std::vector<result> from_second{value(2), value(3), closed()};
    EXPECT_EQ(co_await read_all(&early), from_start);
    EXPECT_EQ(co_await read_all(&late), from_second);
  });
}

// P6: a receiver more than capacity behind gets lagged(n), n = the values it
// missed, then continues with the oldest value kept.
TEST_P(broadcast_test, a_receiver_more_than_capacity_behind_gets_lagged_with_the_exact_count) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(2);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(tx.send(i).has_value());
    EXPECT_EQ(co_await rx.recv(), lagged(3));  // 0, 1, 2 were overwritten
    EXPECT_EQ(co_await rx.recv(), value(3));
    EXPECT_EQ(co_await rx.recv(), value(4));
    // Lagging again later counts from where it stood.
    for (int i = 5; i < 12; ++i) EXPECT_TRUE(tx.send(i).has_value());
    EXPECT_EQ(co_await rx.recv(), lagged(5));  // 5..9 missed, 10 and 11 kept
    EXPECT_EQ(co_await rx.recv(), value(10));
    EXPECT_EQ(co_await rx.recv(), value(11));
  });
}

// P6: exactly capacity behind is not lagged (everything is still kept).
TEST_P(broadcast_test, a_receiver_exactly_capacity_behind_is_not_lagged) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(3);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(tx.send(i).has_value());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(co_await rx.recv(), value(i));
    EXPECT_TRUE(tx.send(3).has_value());  // one more than capacity, but read up to date
    EXPECT_EQ(co_await rx.recv(), value(3));
  });
}

// P6: lag is per receiver: a fast receiver is unaffected by a slow one.
TEST_P(broadcast_test, lag_is_per_receiver) {
  run([&]() -> task<void> {
    auto [tx, slow] = warden::broadcast<int>(2);
    broadcast_receiver<int> fast = tx.subscribe();
    for (int i = 0; i < 6; ++i) {
      EXPECT_TRUE(tx.send(i).has_value());
      EXPECT_EQ(co_await fast.recv(), value(i));
    }
    EXPECT_EQ(co_await slow.recv(), lagged(4));
    EXPECT_EQ(co_await slow.recv(), value(4));
  });
}

// P6: closed when all senders are gone; receivers drain (lagged first if
// they fell behind), then see closed for good.
TEST_P(broadcast_test, closes_when_every_sender_is_gone_after_receivers_drain) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(2);
    broadcast_sender<int> copy = tx;
    broadcast_receiver<int> behind = tx.subscribe();
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(tx.send(i).has_value());
    tx = {};
    EXPECT_TRUE(copy.send(3).has_value());  // a copy keeps it open
    copy = {};
    const std::vector<result> expected{lagged(2), value(2), value(3), closed()};
    EXPECT_EQ(co_await read_all(&rx), expected);
    EXPECT_EQ(co_await read_all(&behind), expected);
    EXPECT_EQ(co_await rx.recv(), closed());
  });
}

// P6: a send wakes every parked receiver; the close wakes them too.
TEST_P(broadcast_test, a_send_wakes_every_parked_receiver) {
  run([&]() -> task<void> {
    auto [tx, first] = warden::broadcast<int>(4);
    std::vector<broadcast_receiver<int>> receivers;
    receivers.push_back(std::move(first));
    for (int i = 0; i < 3; ++i) receivers.push_back(tx.subscribe());
    std::vector<warden::join_handle<std::vector<result>>> readers;
    for (auto& rx : receivers) readers.push_back(warden::spawn(read_all(&rx)));
    co_await until([&] { return tx.waiting_receivers() == 4; });
    EXPECT_EQ(tx.send(10), 4u);
    co_await until([&] { return tx.waiting_receivers() == 4; });
    tx = {};  // close: wakes them all again
    const std::vector<result> expected{value(10), closed()};
    for (auto& h : readers) EXPECT_EQ(co_await h, expected);
  });
}

// P6: with no receiver, a send gives the value back (nobody could see it).
TEST_P(broadcast_test, a_send_without_receivers_gives_the_value_back) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<std::string>(2);
    EXPECT_EQ(tx.receiver_count(), 1u);
    { broadcast_receiver<std::string> gone = std::move(rx); }
    EXPECT_EQ(tx.receiver_count(), 0u);
    EXPECT_EQ(tx.send(std::string(40, 'q')), std::unexpected(std::string(40, 'q')));
    broadcast_receiver<std::string> again = tx.subscribe();
    EXPECT_EQ(tx.send("seen"), 1u);
    auto got = co_await again.recv();
    EXPECT_EQ(got, std::string("seen"));
  });
}

// P6 cancellation: a receiver aborted while parked loses nothing and skips
// nothing.
TEST_P(broadcast_test, an_aborted_parked_receiver_loses_nothing) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(4);
    auto reader = warden::spawn(read_one(&rx));
    co_await until([&] { return tx.waiting_receivers() == 1; });
    reader.abort();
    (void)co_await reader.result();
    EXPECT_EQ(tx.waiting_receivers(), 0u);
    EXPECT_TRUE(tx.send(1).has_value());
    EXPECT_EQ(co_await rx.recv(), value(1));
  });
}

// P6 cancellation: woken by a send, aborted before it ran: the value is still
// there for the receiver's next recv.
TEST_P(broadcast_test, a_receiver_woken_then_aborted_keeps_its_position) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(4);
    auto reader = warden::spawn(read_one(&rx));
    co_await until([&] { return tx.waiting_receivers() == 1; });
    EXPECT_TRUE(tx.send(1).has_value());
    reader.abort();  // current-thread mode: before it ran
    auto r = co_await reader.result();
    std::vector<result> got;
    if (r.has_value()) {
      got.push_back(*r);
    }
    tx = {};
    auto rest = co_await read_all(&rx);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, (std::vector<result>{value(1), closed()}));
    if (current_thread_mode()) {
      EXPECT_FALSE(r.has_value());
    }
  });
}

// Memory: a value lives until every receiver read it; the last reader gets
// it moved (n receivers cost n - 1 copies).
TEST_P(broadcast_test, values_are_copied_to_all_but_the_last_reader_and_then_destroyed) {
  run([&]() -> task<void> {
    auto [tx, a] = warden::broadcast<tracked>(4);
    broadcast_receiver<tracked> b = tx.subscribe();
    broadcast_receiver<tracked> c = tx.subscribe();
    EXPECT_TRUE(tx.send(tracked(1, live, copies)).has_value());
    EXPECT_EQ(live.load(), 1);
    {
      auto from_a = co_await a.recv();
      auto from_b = co_await b.recv();
      EXPECT_EQ(copies.load(), 2);
      EXPECT_EQ(live.load(), 3);
      auto from_c = co_await c.recv();
      EXPECT_EQ(copies.load(), 2);  // c, the last reader, got the original
      EXPECT_EQ(live.load(), 3);    // none left in the channel
      EXPECT_TRUE(from_a && from_b && from_c && from_c->id() == 1);
    }
    EXPECT_EQ(live.load(), 0);
  });
}

// Memory: a receiver that leaves gives up its claim on what it did not read;
// overwritten values are destroyed at once.
TEST_P(broadcast_test, leaving_receivers_and_overwrites_release_values) {
  run([&]() -> task<void> {
    auto [tx, a] = warden::broadcast<tracked>(2);
    broadcast_receiver<tracked> b = tx.subscribe();
    EXPECT_TRUE(tx.send(tracked(1, live, copies)).has_value());
    EXPECT_TRUE(tx.send(tracked(2, live, copies)).has_value());
    EXPECT_TRUE(tx.send(tracked(3, live, copies)).has_value());
    EXPECT_EQ(live.load(), 2);         // the ring keeps 2
    { auto got = co_await a.recv(); }  // lagged(1)
    { auto got = co_await a.recv(); }  // 2, copied (b has not read it)
    EXPECT_EQ(live.load(), 2);
    { broadcast_receiver<tracked> gone = std::move(b); }
    EXPECT_EQ(live.load(), 1);  // 2 had no reader left; 3 still waits for a
    { auto got = co_await a.recv(); }
    EXPECT_EQ(live.load(), 0);
  });
}

// ---- misuse --------------------------------------------------------------------

TEST(broadcast_misuse, zero_capacity_throws_usage_error) {
  try {
    (void)warden::broadcast<int>(0);
    FAIL() << "no exception";
  } catch (const warden::usage_error& e) {
    EXPECT_TRUE(mentions(e.what(), "broadcast<T>(0)"));
    EXPECT_TRUE(mentions(e.what(), "at least 1"));
  }
}

TEST(broadcast_misuse, empty_handles_throw_usage_error) {
  EXPECT_THROW((void)broadcast_sender<int>{}.send(1), warden::usage_error);
  EXPECT_THROW((void)broadcast_sender<int>{}.subscribe(), warden::usage_error);
  EXPECT_THROW((void)broadcast_receiver<int>{}.recv(), warden::usage_error);
}

TEST(broadcast_misuse, broadcast_error_says_which) {
  EXPECT_TRUE(broadcast_error::lagged(3).is_lagged());
  EXPECT_EQ(broadcast_error::lagged(3).missed(), 3u);
  EXPECT_TRUE(broadcast_error::closed().is_closed());
  EXPECT_FALSE(broadcast_error::closed().is_lagged());
  EXPECT_NE(broadcast_error::lagged(1), broadcast_error::closed());
}

TEST_P(broadcast_test, a_second_concurrent_recv_throws_usage_error) {
  run([&]() -> task<void> {
    auto [tx, rx] = warden::broadcast<int>(1);
    auto first = warden::spawn(read_one(&rx));
    co_await until([&] { return tx.waiting_receivers() == 1; });
    bool threw = false;
    try {
      (void)co_await rx.recv();
    } catch (const warden::usage_error& e) {
      threw = mentions(e.what(), "already waiting");
    }
    EXPECT_TRUE(threw);
    EXPECT_TRUE(tx.send(1).has_value());
    EXPECT_EQ(co_await first, value(1));
  });
}

INSTANTIATE_TEST_SUITE_P(workers, broadcast_test, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
