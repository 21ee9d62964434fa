// Stress: oneshot, mpsc and broadcast channels under random aborts of parked
// senders and receivers, closes racing sends, and many producers (SEMANTICS
// P6). Afterwards every value sent is received exactly once or given back
// to its sender (none lost or duplicated), lag reports account for every
// value a receiver did not get, and no value is leaked.
#include "support/test_support.hpp"

#include <warden/sync/broadcast.hpp>
#include <warden/sync/mpsc.hpp>
#include <warden/sync/oneshot.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace {

using warden::join_handle;
using warden::task;

/// A value with an id that counts live instances (moved-from ones do not
/// count), so a leak or a double destruction shows.
class token {
 public:
  token(int id, std::atomic<int>& live) : id_(id), live_(&live) { live_->fetch_add(1, std::memory_order_relaxed); }
  token(const token& other) : id_(other.id_), live_(other.live_) { live_->fetch_add(1, std::memory_order_relaxed); }
  token(token&& other) noexcept : id_(other.id_), live_(std::exchange(other.live_, nullptr)) {}
  token& operator=(const token&) = delete;
  ~token() {
    if (live_ != nullptr) live_->fetch_sub(1, std::memory_order_relaxed);
  }
  [[nodiscard]] int id() const { return id_; }

 private:
  int id_;
  std::atomic<int>* live_;
};

/// What happened to each value, written by the tasks of one round.
struct ledger {
  void add(std::vector<int>& list, int id) {
    std::lock_guard lock(mutex);
    list.push_back(id);
  }
  std::mutex mutex;
  std::vector<int> sent;      // the send succeeded
  std::vector<int> returned;  // the send failed and gave the value back
  std::vector<int> received;
};

std::vector<int> sorted(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool has_duplicates(const std::vector<int>& sorted_ids) {
  return std::adjacent_find(sorted_ids.begin(), sorted_ids.end()) != sorted_ids.end();
}

/// Yields 0..max times (lets the other tasks move on).
task<void> wander(std::mt19937_64& rng, unsigned max) {
  for (unsigned n = static_cast<unsigned>(rng() % (max + 1)); n > 0; --n) co_await warden::yield_now{};
}

class channel_stress : public ::testing::TestWithParam<std::size_t> {
 protected:
  template <class Round>
  void run_rounds(Round round, int release_iterations) {
    const std::uint64_t seed = warden::testkit::stress_seed();
    SCOPED_TRACE(warden::testkit::seed_trace(seed));
    const int iterations = warden::testkit::stress_iterations(release_iterations);
    for (int i = 0; i < iterations && !HasFailure(); ++i) {
      SCOPED_TRACE("iteration " + std::to_string(i));
      rt.block_on(round(seed + static_cast<std::uint64_t>(i), &live));
      EXPECT_EQ(live.load(), 0) << "values leaked or destroyed twice";
    }
  }

  std::atomic<int> live{0};
  warden::runtime rt{warden::testkit::quiet_options(GetParam())};
};

// ---- mpsc ------------------------------------------------------------------------

task<void> mpsc_producer(warden::mpsc_sender<token> tx, int first_id, int count, ledger* book, std::atomic<int>* live,
                         std::uint64_t seed) {
  // Moved into a local so that the sender goes when the body ends (a
  // spawned task's parameters live until its handle is consumed).
  warden::mpsc_sender<token> mine = std::move(tx);
  std::mt19937_64 rng(seed);
  for (int id = first_id; id < first_id + count; ++id) {
    if (rng() % 4 == 0) {
      auto r = mine.try_send(token(id, *live));
      if (r)
        book->add(book->sent, id);
      else
        book->add(book->returned, r.error().value.id());
    } else {
      auto r = co_await mine.send(token(id, *live));
      if (r)
        book->add(book->sent, id);
      else
        book->add(book->returned, r.error().id());
    }
    co_await wander(rng, 1);
  }
}

task<void> mpsc_consumer(warden::mpsc_receiver<token>* rx, ledger* book, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  while (std::optional<token> v = co_await rx->recv()) {
    book->add(book->received, v->id());
    co_await wander(rng, 1);
  }
}

task<void> mpsc_round(std::uint64_t seed, std::atomic<int>* live) {
  std::mt19937_64 rng(seed);
  const std::size_t capacity = rng() % 5;  // 0: unbounded
  const int producers = 1 + static_cast<int>(rng() % 6);
  ledger book;
  auto [tx, rx] = capacity == 0 ? warden::mpsc_unbounded<token>() : warden::mpsc<token>(capacity);
  std::vector<join_handle<void>> senders;
  for (int p = 0; p < producers; ++p)
    senders.push_back(warden::spawn(mpsc_producer(tx, p * 1000, 1 + static_cast<int>(rng() % 12), &book, live, rng())));
  tx = {};
  auto consumer = warden::spawn(mpsc_consumer(&rx, &book, rng()));

  for (int step = static_cast<int>(rng() % 10); step > 0; --step) {
    co_await wander(rng, 3);
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2:  // abort a producer: parked on a full channel, running, or done
        senders[rng() % senders.size()].abort();
        break;
      case 3:
      case 4:
      case 5:  // abort the consumer wherever it is and start a new one
        consumer.abort();
        (void)co_await consumer.result();
        consumer = warden::spawn(mpsc_consumer(&rx, &book, rng()));
        break;
      case 6:  // close while producers send
        rx.close();
        break;
      default:
        break;
    }
  }
  // Every producer finishes or is cancelled (frames destroyed, senders
  // gone), so the channel closes and the last consumer drains it.
  for (auto& s : senders) (void)co_await s.result();
  auto last = co_await consumer.result();
  EXPECT_TRUE(last.has_value());
  EXPECT_EQ(rx.waiting_senders(), 0u);
  EXPECT_EQ(rx.try_recv().error(), warden::try_recv_error::closed);

  const std::vector<int> sent = sorted(book.sent);
  const std::vector<int> received = sorted(book.received);
  std::vector<int> everything = sent;
  everything.insert(everything.end(), book.returned.begin(), book.returned.end());
  everything = sorted(std::move(everything));
  EXPECT_EQ(received, sent) << "a value sent was lost or duplicated";
  EXPECT_FALSE(has_duplicates(everything)) << "a value was both delivered and returned";
}

TEST_P(channel_stress, mpsc_delivers_every_value_exactly_once_under_aborts_and_close) { run_rounds(mpsc_round, 10000); }

// The lock-free paths of a bounded channel (permit CAS, slot ring, the
// receiver's park handshake) raced hard: no yields between operations,
// capacities 1-3, producers on every worker, a close or the receiver's
// destruction racing the sends. Each producer's values must arrive in its
// order; every value is received, given back, or (receiver destroyed)
// destroyed, never lost twice or leaked.
task<void> mpsc_tight_producer(warden::mpsc_sender<token> tx, int first_id, int count, ledger* book,
                               std::atomic<int>* live) {
  warden::mpsc_sender<token> mine = std::move(tx);
  for (int id = first_id; id < first_id + count; ++id) {
    auto r = co_await mine.send(token(id, *live));
    book->add(r ? book->sent : book->returned, id);
  }
}

task<void> mpsc_tight_consumer(warden::mpsc_receiver<token> rx, ledger* book, int stop_after) {
  warden::mpsc_receiver<token> mine = std::move(rx);
  int taken = 0;
  while (std::optional<token> v = co_await mine.recv()) {
    book->add(book->received, v->id());
    if (++taken == stop_after) mine.close();
  }
}

task<void> mpsc_tight_round(std::uint64_t seed, std::atomic<int>* live) {
  std::mt19937_64 rng(seed);
  const std::size_t capacity = 1 + rng() % 3;
  const int producers = 1 + static_cast<int>(rng() % 4);
  const int per_producer = 1 + static_cast<int>(rng() % 200);
  // Half the rounds: the consumer closes after a random number of values
  // (sends race the close); a few: it is aborted mid-way (the receiver is
  // destroyed with its frame while sends race).
  const int ending = static_cast<int>(rng() % 8);
  const int stop_after = ending < 4 ? 1 + static_cast<int>(rng() % (producers * per_producer)) : -1;
  ledger book;
  auto [tx, rx] = warden::mpsc<token>(capacity);
  auto consumer = warden::spawn(mpsc_tight_consumer(std::move(rx), &book, stop_after));
  std::vector<join_handle<void>> senders;
  for (int p = 0; p < producers; ++p)
    senders.push_back(warden::spawn(mpsc_tight_producer(tx, p * 1000, per_producer, &book, live)));
  tx = {};
  if (ending == 7) {
    co_await warden::yield_now{};
    consumer.abort();
  }
  for (auto& s : senders) (void)co_await s.result();
  (void)co_await consumer.result();

  std::lock_guard lock(book.mutex);
  std::vector<int> last(producers, -1);
  for (int id : book.received) {
    EXPECT_GT(id, last[id / 1000]) << "a producer's values arrived out of order";
    last[id / 1000] = id;
  }
  const std::vector<int> sent = sorted(book.sent);
  const std::vector<int> received = sorted(book.received);
  EXPECT_FALSE(has_duplicates(received)) << "a value was received twice";
  if (ending != 7) {
    EXPECT_EQ(received, sent) << "a value sent was lost";
  }
  std::vector<int> everything = sent;
  everything.insert(everything.end(), book.returned.begin(), book.returned.end());
  everything = sorted(std::move(everything));
  EXPECT_FALSE(has_duplicates(everything)) << "a value was both delivered and returned";
  EXPECT_EQ(everything.size(), static_cast<std::size_t>(producers * per_producer));
}

TEST_P(channel_stress, mpsc_lock_free_paths_keep_order_and_lose_nothing_under_tight_races) {
  run_rounds(mpsc_tight_round, 10000);
}

// Capacity 1 has its own protocol (one word: slot, permit and the receiver's
// park flag; see mpsc_state.hpp), raced here: producers mixing send and
// try_send with few yields, a consumer mixing recv and try_recv that is
// aborted and restarted wherever it is (parked, just handed a value,
// running), producers aborted while waiting or holding a slot handed to
// them, and a close or the receiver's destruction racing all of it. Each
// producer's values arrive in its order; every value is received, given
// back or (sender aborted, receiver destroyed) destroyed, never twice; at
// most the one value in the slot goes with a destroyed receiver; nothing
// leaks.
task<void> one_slot_producer(warden::mpsc_sender<token> tx, int first_id, int count, ledger* book,
                             std::atomic<int>* live, std::uint64_t seed) {
  warden::mpsc_sender<token> mine = std::move(tx);
  std::mt19937_64 rng(seed);
  for (int id = first_id; id < first_id + count; ++id) {
    bool sent = false;
    if (rng() % 3 == 0) {
      auto now = mine.try_send(token(id, *live));
      if (now) {
        sent = true;
      } else if (now.error().is_full()) {
        auto op = mine.send(std::move(now.error().value));
        sent = (co_await op).has_value();
      }
    } else {
      auto op = mine.send(token(id, *live));
      sent = (co_await op).has_value();
    }
    book->add(sent ? book->sent : book->returned, id);
    if (rng() % 4 == 0) co_await warden::yield_now{};
  }
}

task<void> one_slot_consumer(warden::mpsc_receiver<token>* rx, ledger* book, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (;;) {
    if (rng() % 3 == 0) {
      auto v = rx->try_recv();
      if (v) {
        book->add(book->received, v->id());
        continue;
      }
      if (v.error() == warden::try_recv_error::closed) co_return;
      co_await warden::yield_now{};
    } else {
      std::optional<token> v = co_await rx->recv();
      if (!v) co_return;
      book->add(book->received, v->id());
    }
  }
}

task<void> mpsc_one_slot_round(std::uint64_t seed, std::atomic<int>* live) {
  std::mt19937_64 rng(seed);
  const int producers = 1 + static_cast<int>(rng() % 4);
  const int per_producer = 1 + static_cast<int>(rng() % 40);
  const int ending = static_cast<int>(rng() % 4);  // 1: closes race the sends, 2: the receiver is destroyed
  ledger book;
  auto [tx, rx] = warden::mpsc<token>(1);
  auto receiver = std::make_unique<warden::mpsc_receiver<token>>(std::move(rx));
  auto consumer = warden::spawn(one_slot_consumer(receiver.get(), &book, rng()));
  std::vector<join_handle<void>> senders;
  for (int p = 0; p < producers; ++p)
    senders.push_back(warden::spawn(one_slot_producer(tx, p * 1000, per_producer, &book, live, rng())));
  tx = {};
  for (int step = static_cast<int>(rng() % 8); step > 0; --step) {
    co_await wander(rng, 2);
    switch (rng() % 6) {
      case 0:
      case 1:  // abort a producer: waiting, holding a handed slot, running or done
        senders[rng() % senders.size()].abort();
        break;
      case 2:
      case 3:  // abort the consumer wherever it is and start a new one
        consumer.abort();
        (void)co_await consumer.result();
        consumer = warden::spawn(one_slot_consumer(receiver.get(), &book, rng()));
        break;
      case 4:
        if (ending == 1) receiver->close();
        break;
      default:
        break;
    }
  }
  if (ending == 2) {
    consumer.abort();
    (void)co_await consumer.result();
    receiver.reset();  // closes; a value in the slot goes with it
  }
  for (auto& s : senders) (void)co_await s.result();
  if (ending != 2) {
    auto last = co_await consumer.result();
    EXPECT_TRUE(last.has_value());
    EXPECT_EQ(receiver->waiting_senders(), 0u);
    EXPECT_EQ(receiver->try_recv().error(), warden::try_recv_error::closed);
  }

  std::lock_guard lock(book.mutex);
  std::vector<int> last(static_cast<std::size_t>(producers), -1);
  for (int id : book.received) {
    EXPECT_GT(id, last[static_cast<std::size_t>(id / 1000)]) << "a producer's values arrived out of order";
    last[static_cast<std::size_t>(id / 1000)] = id;
  }
  const std::vector<int> sent = sorted(book.sent);
  const std::vector<int> received = sorted(book.received);
  EXPECT_FALSE(has_duplicates(received)) << "a value was received twice";
  EXPECT_TRUE(std::includes(sent.begin(), sent.end(), received.begin(), received.end()))
      << "a value received was never sent";
  if (ending == 2) {
    // The slot's value and one handed to a recv that was aborted before it
    // ran (see "Hand-off" in mpsc_state.hpp).
    EXPECT_LE(sent.size(), received.size() + 2) << "more than the slot's and a handed value went with the receiver";
  } else {
    EXPECT_EQ(received, sent) << "a value sent was lost";
  }
  std::vector<int> everything = sent;
  everything.insert(everything.end(), book.returned.begin(), book.returned.end());
  EXPECT_FALSE(has_duplicates(sorted(std::move(everything)))) << "a value was both delivered and returned";
}

TEST_P(channel_stress, mpsc_capacity_one_slot_word_loses_and_duplicates_nothing_under_races) {
  run_rounds(mpsc_one_slot_round, 10000);
}

// ---- broadcast --------------------------------------------------------------------

struct receiver_log {
  std::mutex mutex;
  std::vector<int> values;
  std::uint64_t missed = 0;
  bool closed = false;
};

task<void> broadcast_reader(warden::broadcast_receiver<token>* rx, receiver_log* log, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (;;) {
    auto r = co_await rx->recv();
    {
      std::lock_guard lock(log->mutex);
      if (r) {
        log->values.push_back(r->id());
      } else if (r.error().is_lagged()) {
        log->missed += r.error().missed();
      } else {
        log->closed = true;
        co_return;
      }
    }
    co_await wander(rng, 1);
  }
}

task<void> broadcast_publisher(warden::broadcast_sender<token> tx, int first_id, int count, ledger* book,
                               std::atomic<int>* live, std::uint64_t seed) {
  warden::broadcast_sender<token> mine = std::move(tx);
  std::mt19937_64 rng(seed);
  for (int id = first_id; id < first_id + count; ++id) {
    auto r = mine.send(token(id, *live));
    if (r)
      book->add(book->sent, id);
    else
      book->add(book->returned, r.error().id());
    co_await wander(rng, 1);
  }
}

task<void> broadcast_round(std::uint64_t seed, std::atomic<int>* live) {
  std::mt19937_64 rng(seed);
  const std::size_t capacity = 1 + rng() % 4;
  const std::size_t receiver_count = 1 + rng() % 4;
  const int publishers = 1 + static_cast<int>(rng() % 3);
  ledger book;
  auto [tx, first] = warden::broadcast<token>(capacity);
  std::vector<warden::broadcast_receiver<token>> receivers;
  receivers.push_back(std::move(first));
  while (receivers.size() < receiver_count) receivers.push_back(tx.subscribe());
  std::vector<receiver_log> logs(receiver_count);
  std::vector<join_handle<void>> readers;
  for (std::size_t r = 0; r < receiver_count; ++r)
    readers.push_back(warden::spawn(broadcast_reader(&receivers[r], &logs[r], rng())));
  std::vector<join_handle<void>> senders;
  for (int p = 0; p < publishers; ++p)
    senders.push_back(
        warden::spawn(broadcast_publisher(tx, p * 1000, 1 + static_cast<int>(rng() % 16), &book, live, rng())));
  tx = {};

  for (int step = static_cast<int>(rng() % 10); step > 0; --step) {
    co_await wander(rng, 3);
    if (rng() % 3 == 0) {
      senders[rng() % senders.size()].abort();
    } else {  // abort a reader wherever it is (parked or not) and start a new one
      const std::size_t r = rng() % receiver_count;
      readers[r].abort();
      (void)co_await readers[r].result();
      readers[r] = warden::spawn(broadcast_reader(&receivers[r], &logs[r], rng()));
    }
  }
  for (auto& s : senders) (void)co_await s.result();
  for (auto& r : readers) (void)co_await r.result();

  const std::vector<int> sent = sorted(book.sent);
  EXPECT_TRUE(book.returned.empty());  // a receiver always existed
  for (std::size_t r = 0; r < receiver_count; ++r) {
    const receiver_log& log = logs[r];
    EXPECT_TRUE(log.closed);
    // Every value sent reached this receiver or was reported missed.
    EXPECT_EQ(log.values.size() + log.missed, sent.size()) << "receiver " << r;
    const std::vector<int> got = sorted(log.values);
    EXPECT_FALSE(has_duplicates(got)) << "receiver " << r;
    EXPECT_TRUE(std::includes(sent.begin(), sent.end(), got.begin(), got.end())) << "receiver " << r;
    // Each publisher's values arrive in the order it sent them.
    std::vector<int> last(static_cast<std::size_t>(publishers), -1);
    for (int id : log.values) {
      EXPECT_GT(id, last[static_cast<std::size_t>(id / 1000)]) << "receiver " << r;
      last[static_cast<std::size_t>(id / 1000)] = id;
    }
  }
}

TEST_P(channel_stress, broadcast_accounts_for_every_value_under_aborts_and_lag) { run_rounds(broadcast_round, 10000); }

// ---- oneshot -----------------------------------------------------------------------

task<void> oneshot_sender_task(warden::oneshot_sender<token> tx, bool send, ledger* book, std::atomic<int>* live,
                               std::uint64_t seed) {
  warden::oneshot_sender<token> mine = std::move(tx);
  std::mt19937_64 rng(seed);
  co_await wander(rng, 3);
  if (!send) co_return;  // dropped without sending
  auto r = mine.send(token(7, *live));
  book->add(r ? book->sent : book->returned, 7);
}

task<void> oneshot_receiver_task(warden::oneshot_receiver<token>* rx, ledger* book) {
  auto r = co_await rx->recv();
  if (r) book->add(book->received, r->id());
}

task<void> oneshot_round(std::uint64_t seed, std::atomic<int>* live) {
  std::mt19937_64 rng(seed);
  ledger book;
  auto [tx, rx] = warden::oneshot<token>();
  auto receiver = warden::spawn(oneshot_receiver_task(&rx, &book));
  auto sender = warden::spawn(oneshot_sender_task(std::move(tx), rng() % 4 != 0, &book, live, rng()));
  co_await wander(rng, 3);
  bool receiver_joined = false;
  switch (rng() % 4) {
    case 0:
      sender.abort();
      break;
    case 1:  // abort the receiver task; the receiver object survives
      receiver.abort();
      break;
    case 2:  // abort the receiver task and drop the receiver: a later send gives the value back
      receiver.abort();
      (void)co_await receiver.result();
      receiver_joined = true;  // and dropped
      rx = {};
      break;
    default:
      break;
  }
  (void)co_await sender.result();
  if (!receiver_joined) (void)co_await receiver.result();
  if (rx.valid()) {  // whatever is left: the sender is gone, so this never waits
    auto r = co_await rx.recv();
    if (r) book.add(book.received, r->id());
  }
  EXPECT_LE(book.sent.size() + book.returned.size(), 1u);
  if (receiver_joined) {
    // The receiver was dropped: a value sent before that was received by
    // the task before its abort, or destroyed with the receiver (the live
    // count checks that); one sent after came back.
    EXPECT_LE(book.received.size(), book.sent.size());
    if (!book.received.empty()) {
      EXPECT_EQ(book.received, book.sent);
    }
  } else {
    EXPECT_EQ(book.received, book.sent) << "the value was lost or received twice";
    EXPECT_TRUE(book.returned.empty());
  }
}

TEST_P(channel_stress, oneshot_value_is_received_once_or_returned_under_aborts) { run_rounds(oneshot_round, 20000); }

INSTANTIATE_TEST_SUITE_P(workers, channel_stress, warden::testkit::kWorkerCounts, warden::testkit::worker_name);

}  // namespace
