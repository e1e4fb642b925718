// The AMQP connection against a broker in memory: no socket. The connection (its awaitable
// front end, the Asio transport and the engine together) runs over a byte_stream whose other
// end is a second Proton connection_driver acting as the broker (memory_brokers.hpp); the
// bytes one side writes are fed to the other. The broker's behaviour is a messaging_handler
// written for each test, so each test checks what the broker saw (credit) or what the caller
// got back (the reply matched by correlation id, the error for a refused attach or garbage).
#include "amqp/connection.hpp"

#include <gtest/gtest.h>
#include <proton/link.h>
#include <proton/terminus.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <proton/connection.hpp>
#include <proton/connection_options.hpp>
#include <proton/delivery.hpp>
#include <proton/error_condition.hpp>
#include <proton/io/connection_driver.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/messaging_handler.hpp>
#include <proton/receiver.hpp>
#include <proton/receiver_options.hpp>
#include <proton/sender.hpp>
#include <proton/sender_options.hpp>
#include <proton/source.hpp>
#include <proton/source_options.hpp>
#include <proton/target.hpp>
#include <proton/target_options.hpp>
#include <proton/tracker.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "amqp/byte_stream.hpp"
#include "amqp/proton_c.hpp"
#include "memory_brokers.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using qrt::amqp::detail::byte_stream;
using qrt::amqp::detail::connection;
using qrt::amqp::detail::connection_strand;
using qrt::amqp::detail::endpoint;
using qrt::amqp::detail::receiver_spec;
using namespace qrt::amqp::test;  // the brokers

/// The client's end of the pipe. What the connection writes goes to `peer` at once; what the
/// peer answers is read back. Completions are posted, never run inline (byte_stream.hpp).
class memory_stream final : public byte_stream {
 public:
  using peer_fn = std::function<std::string(std::string_view)>;

  /// The broker's end of one attempt's pipe: hang_up() drops the connection as a broker or
  /// network would (the client reads end-of-file).
  struct far_end {
    bool gone = false;
    std::function<void()> wake;  ///< set while the stream lives
    void hang_up() {
      gone = true;
      if (wake) wake();
    }
  };

  memory_stream(const connection_strand& strand, peer_fn peer, std::size_t* bytes_read,
                std::shared_ptr<far_end> end)
      : strand_(strand), peer_(std::move(peer)), bytes_read_(bytes_read), end_(std::move(end)) {
    end_->wake = [this] { serve_read(); };
  }
  ~memory_stream() override { end_->wake = nullptr; }

  void async_open(open_handler done) override {
    asio::post(strand_, [done = std::move(done)] { done(std::nullopt); });
  }

  void async_read_some(asio::mutable_buffer into, io_handler done) override {
    read_into_ = into;
    read_done_ = std::move(done);
    serve_read();
  }

  void async_write(asio::const_buffer bytes, io_handler done) override {
    if (!open_) {
      asio::post(strand_, [done = std::move(done)] { done(asio::error::operation_aborted, 0); });
      return;
    }
    to_client_ += peer_(std::string_view(static_cast<const char*>(bytes.data()), bytes.size()));
    asio::post(strand_, [done = std::move(done), n = bytes.size()] { done({}, n); });
    serve_read();
  }

  void close() override {
    open_ = false;
    serve_read();
  }

  bool is_open() const override { return open_; }

 private:
  void serve_read() {
    if (!read_done_ || (open_ && !end_->gone && to_client_.empty())) return;
    auto done = std::exchange(read_done_, nullptr);
    if (!open_) {
      asio::post(strand_, [done = std::move(done)] { done(asio::error::operation_aborted, 0); });
      return;
    }
    if (to_client_.empty()) {  // the broker hung up
      asio::post(strand_, [done = std::move(done)] { done(asio::error::eof, 0); });
      return;
    }
    const std::size_t n = std::min(read_into_.size(), to_client_.size());
    std::memcpy(read_into_.data(), to_client_.data(), n);
    to_client_.erase(0, n);
    *bytes_read_ += n;
    asio::post(strand_, [done = std::move(done), n] { done({}, n); });
  }

  connection_strand strand_;
  peer_fn peer_;
  std::size_t* bytes_read_;
  std::shared_ptr<far_end> end_;
  bool open_ = true;
  std::string to_client_;
  asio::mutable_buffer read_into_;
  io_handler read_done_;
};

template <class T>
asio::awaitable<void> store(asio::awaitable<T> a, std::optional<T>* out) {
  out->emplace(co_await std::move(a));
}

/// A receiver link on queue "q" holding at most `prefetch` messages.
receiver_spec queue_q(std::uint32_t prefetch) {
  receiver_spec spec;
  spec.address = "q";
  spec.prefetch = prefetch;
  return spec;
}

/// close(), as a call with a result for harness::run.
asio::awaitable<bool> closing(std::shared_ptr<connection> c) {
  co_await c->close();
  co_return true;
}

endpoint test_endpoint() {
  endpoint where;
  where.host = "broker.test";
  return where;
}

/// A connection to a peer in memory, and the io_context that runs both (one thread: this one).
struct harness {
  /// Every attempt talks to `peer`.
  explicit harness(memory_stream::peer_fn peer) : harness([peer] { return peer; }) {}
  /// Every attempt talks to a broker of its own (a broker restarted), run by `handler`.
  explicit harness(proton::messaging_handler& handler)
      : harness([this, &handler]() -> memory_stream::peer_fn {
          brokers.push_back(std::make_unique<memory_broker>(handler));
          return [b = brokers.back().get()](std::string_view in) { return b->exchange(in); };
        }) {}

  /// Every attempt talks to `peer`; `where` says how the client behaves (its timeouts).
  harness(memory_stream::peer_fn peer, endpoint where)
      : harness([peer] { return peer; }, std::move(where)) {}

  explicit harness(std::function<memory_stream::peer_fn()> next_peer,
                   endpoint where = test_endpoint()) {
    conn = connection::create(
        where, io.get_executor(),
        [this, next_peer = std::move(next_peer)](
            const connection_strand& strand) -> qrt::result<std::unique_ptr<byte_stream>> {
          ++attempts;
          line = std::make_shared<memory_stream::far_end>();
          return std::unique_ptr<byte_stream>(
              std::make_unique<memory_stream>(strand, next_peer(), &bytes_read, line));
        });
  }

  /// The broker of the current attempt hangs up.
  void drop() { line->hang_up(); }

  ~harness() {
    std::optional<bool> closed;
    asio::co_spawn(
        io,
        [](std::shared_ptr<connection> c, std::optional<bool>* out) -> asio::awaitable<void> {
          co_await c->close();
          out->emplace(true);
        }(conn, &closed),
        asio::detached);
    io.restart();
    io.run();
  }

  /// Runs the io_context until `a` completes.
  template <class T>
  T run(asio::awaitable<T> a) {
    std::optional<T> out;
    asio::co_spawn(io, store(std::move(a), &out), asio::detached);
    io.restart();
    while (!out && io.run_one() > 0) {
    }
    EXPECT_TRUE(out.has_value()) << "the call never completed";
    if (!out) throw std::runtime_error("the call never completed");
    return std::move(*out);
  }

  asio::io_context io;
  std::vector<std::unique_ptr<memory_broker>> brokers;
  std::shared_ptr<memory_stream::far_end> line;
  std::size_t bytes_read = 0;
  int attempts = 0;
  std::shared_ptr<connection> conn;
};

TEST(amqp_connection, connects_to_a_broker_in_memory) {
  echoing_broker broker;
  harness h(broker);
  auto connected = h.run(h.conn->connect(5s));
  ASSERT_TRUE(connected) << connected.error().to_string();
  EXPECT_EQ(h.conn->generation(), 1u);
  EXPECT_EQ(h.attempts, 1);
}

TEST(amqp_connection, a_reply_is_matched_to_its_request_by_correlation_id) {
  management_node broker;
  harness h(broker);
  proton::message ping("ping");
  auto reply = h.run(h.conn->request("$management", ping, 5s));
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(proton::get<std::string>(reply->body()), "pong");
  EXPECT_EQ(broker.requests, 1);

  // The node's links stay: a second request is answered on them, again by its own id.
  proton::message again("ping");
  auto second = h.run(h.conn->request("$management", again, 5s));
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(proton::get<std::string>(second->body()), "pong");
  EXPECT_EQ(broker.requests, 2);
  EXPECT_EQ(broker.reply_links.size(), 1u);
}

TEST(amqp_connection, a_receiver_holds_at_most_its_prefetch) {
  queue_with_messages broker;
  harness h(broker);
  receiver_spec spec = queue_q(3);
  auto got = h.run(h.conn->receive("r1", spec, 1, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(broker.max_credit_seen, 3);
  EXPECT_EQ(broker.sent, 3);  // one handed out, two buffered: nothing more asked for

  // The two buffered ones come from the buffer: still no new credit while all three are locked.
  auto more = h.run(h.conn->receive("r1", spec, 5, 0ms));
  ASSERT_TRUE(more) << more.error().to_string();
  EXPECT_EQ(more->size(), 2u);
  EXPECT_EQ(broker.sent, 3);

  // Settling one frees one place: exactly one more message is asked for.
  std::vector<std::pair<qrt::amqp::detail::delivery_ref, qrt::amqp::detail::outcome>> items{
      {got->front().ref, qrt::amqp::detail::outcome::accepted()}};
  auto settled = h.run(h.conn->settle(items, 2s));
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_TRUE(settled[0]) << settled[0].error().to_string();
  auto next = h.run(h.conn->receive("r1", spec, 5, 2s));
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(next->size(), 1u);
  EXPECT_EQ(broker.sent, 4);
  EXPECT_LE(broker.max_credit_seen, 3);
}

TEST(amqp_connection, a_refused_attach_fails_with_the_brokers_reason) {
  refusing_broker broker;
  harness h(broker);
  receiver_spec spec;
  spec.address = "missing";
  auto opened = h.run(h.conn->open_receiver("r1", spec, 2s));
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("no queue 'missing' here"), std::string::npos)
      << opened.error().to_string();
  EXPECT_NE(opened.error().code, qrt::errc::timeout) << opened.error().to_string();
}

// A peer that answers with garbage instead of AMQP: the connection fails with an error that
// says so (Proton's framing error, with the endpoint), and stops reading: of a megabyte of
// garbage it takes at most the read that brought the bad header and the one already asked for
// (64 KiB each), and buffers none of it beyond its read buffer.
TEST(amqp_connection, garbage_from_the_peer_fails_the_connection_without_reading_it_all) {
  const std::string garbage(1 << 20, '\x5a');
  bool answered = false;
  harness h([&](std::string_view) {
    if (answered) return std::string();
    answered = true;
    return "HTTP/1.1 400 Bad Request\r\n\r\n" + garbage;
  });
  auto connected = h.run(h.conn->connect(5s));
  ASSERT_FALSE(connected);
  EXPECT_NE(connected.error().message.find("amqp://broker.test:5672"), std::string::npos)
      << connected.error().to_string();
  EXPECT_EQ(connected.error().provider_code, "amqp:connection:framing-error");
  EXPECT_EQ(connected.error().code, qrt::errc::connection_failed);
  EXPECT_LE(h.bytes_read, 2u * 64 * 1024) << "read on after the protocol header was refused";
  EXPECT_EQ(h.conn->generation(), 0u);
}

// Receipts belong to the connection that delivered them: after a reconnect, settling a
// delivery of the previous connection fails with receipt_expired and sends nothing on the new
// one (the broker has released the message when the old connection died).
TEST(amqp_connection, a_receipt_from_before_a_reconnect_is_refused_not_sent) {
  queue_with_messages broker;
  harness h(broker);
  receiver_spec spec = queue_q(1);
  auto got = h.run(h.conn->receive("r1", spec, 1, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(h.conn->generation(), 1u);

  h.drop();
  auto reconnected = h.run(h.conn->connect(5s));
  ASSERT_TRUE(reconnected) << reconnected.error().to_string();
  EXPECT_EQ(h.conn->generation(), 2u);
  EXPECT_EQ(h.attempts, 2);

  std::vector<std::pair<qrt::amqp::detail::delivery_ref, qrt::amqp::detail::outcome>> items{
      {got->front().ref, qrt::amqp::detail::outcome::accepted()}};
  auto settled = h.run(h.conn->settle(items, 2s));
  ASSERT_EQ(settled.size(), 1u);
  ASSERT_FALSE(settled[0]);
  EXPECT_EQ(settled[0].error().code, qrt::errc::receipt_expired) << settled[0].error().to_string();
  EXPECT_EQ(broker.accepted, 0);

  // The new connection works: the link is attached again and delivers.
  auto again = h.run(h.conn->receive("r1", spec, 1, 2s));
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->size(), 1u);
}

TEST(amqp_connection, settle_second_waits_for_the_brokers_settlement_and_reports_a_refusal) {
  settle_second_queue broker;
  harness h(broker);
  receiver_spec spec = queue_q(2);
  spec.confirm_settlement = true;
  auto got = h.run(h.conn->receive("r1", spec, 2, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 2u);

  using qrt::amqp::detail::outcome;
  std::vector<std::pair<qrt::amqp::detail::delivery_ref, outcome>> first{
      {(*got)[0].ref, outcome::accepted()}};
  auto confirmed = h.run(h.conn->settle(first, 2s));
  ASSERT_EQ(confirmed.size(), 1u);
  EXPECT_TRUE(confirmed[0]) << confirmed[0].error().to_string();
  EXPECT_EQ(broker.accepted, 1);
  EXPECT_EQ(broker.settled_by_client, 0);  // sent unsettled: the broker's settlement confirms

  broker.refuse = true;
  std::vector<std::pair<qrt::amqp::detail::delivery_ref, outcome>> second{
      {(*got)[1].ref, outcome::accepted()}};
  auto refused = h.run(h.conn->settle(second, 2s));
  ASSERT_EQ(refused.size(), 1u);
  ASSERT_FALSE(refused[0]);
  EXPECT_NE(refused[0].error().message.find("the lock on this message is lost"), std::string::npos)
      << refused[0].error().to_string();
  EXPECT_EQ(refused[0].error().provider_code, "com.microsoft:message-lock-lost");
  EXPECT_EQ(broker.settled_by_client, 0);
}

TEST(amqp_connection, a_link_detached_with_an_error_fails_the_waiting_receive) {
  detaching_queue broker;
  harness h(broker);
  receiver_spec spec = queue_q(1);
  auto got = h.run(h.conn->receive("r1", spec, 1, 30s));
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("queue 'q' was deleted"), std::string::npos)
      << got.error().to_string();
  EXPECT_EQ(got.error().provider_code, "amqp:resource-deleted");
}

// The order in which a broker is told the client is done: the receiver's settlements, then
// the end of its session, then the close frame. A broker may handle a session's frames apart
// from the connection's; the session's end, answered after its frames, is what close() waits
// for before it closes the connection, so no settlement sent settled is cut off.
struct recording_queue : queue_with_messages {
  void on_tracker_accept(proton::tracker& t) override {
    queue_with_messages::on_tracker_accept(t);
    events.push_back("accept");
  }
  void on_session_close(proton::session&) override { events.push_back("end"); }
  void on_connection_close(proton::connection&) override { events.push_back("close"); }
  std::vector<std::string> events;
};

TEST(amqp_connection, close_ends_each_session_after_its_settlements_then_closes) {
  recording_queue broker;
  harness h(broker);
  receiver_spec spec = queue_q(3);
  auto got = h.run(h.conn->receive("r1", spec, 3, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 3u);
  std::vector<std::pair<qrt::amqp::detail::delivery_ref, qrt::amqp::detail::outcome>> items;
  for (auto& d : *got) items.emplace_back(d.ref, qrt::amqp::detail::outcome::accepted());
  auto settled = h.run(h.conn->settle(items, 2s));
  for (auto& r : settled) ASSERT_TRUE(r) << r.error().to_string();

  EXPECT_TRUE(h.run(closing(h.conn)));
  const std::vector<std::string> expected{"accept", "accept", "accept", "end", "close"};
  EXPECT_EQ(broker.events, expected);
}

/// A broker that answers until `silent` is set, then reads what the client writes and never
/// answers again; the client gives up closing after 50 ms.
struct falling_silent {
  static endpoint short_close() {
    endpoint where = test_endpoint();
    where.close_timeout = 50ms;
    return where;
  }
  echoing_broker broker;
  memory_broker peer{broker};
  bool silent = false;
  harness h{[this](std::string_view in) { return silent ? std::string() : peer.exchange(in); },
            short_close()};
};

// A broker that has gone silent is not waited for past close_timeout, and what was still
// pending fails with errc::closed.
TEST(amqp_connection, close_gives_up_on_a_silent_broker_after_close_timeout) {
  falling_silent line;
  harness& h = line.h;
  receiver_spec spec = queue_q(1);
  auto opened = h.run(h.conn->open_receiver("r1", spec, 2s));
  ASSERT_TRUE(opened) << opened.error().to_string();
  std::optional<qrt::result<std::vector<qrt::amqp::detail::inbound>>> waiting;
  asio::co_spawn(h.io, store(h.conn->receive("r1", spec, 1, 30s), &waiting), asio::detached);

  line.silent = true;
  EXPECT_TRUE(h.run(closing(h.conn)));  // fails the test if it never completes
  while (!waiting && h.io.run_one() > 0) {
  }
  ASSERT_TRUE(waiting.has_value()) << "the pending receive never completed";
  ASSERT_FALSE(*waiting);
  EXPECT_EQ(waiting->error().code, qrt::errc::closed) << waiting->error().to_string();
}

// close() is idempotent, and every call returns only once the close is over: a second call
// made while the first waits for a silent broker does not return before the first.
TEST(amqp_connection, a_second_close_returns_only_when_the_first_has_finished) {
  falling_silent line;
  harness& h = line.h;
  auto connected = h.run(h.conn->connect(5s));
  ASSERT_TRUE(connected) << connected.error().to_string();

  line.silent = true;
  std::optional<bool> first;
  std::optional<bool> first_done_when_second_returned;
  asio::co_spawn(h.io, store(closing(h.conn), &first), asio::detached);
  asio::co_spawn(
      h.io,
      [](std::shared_ptr<connection> c, const std::optional<bool>* first,
         std::optional<bool>* out) -> asio::awaitable<void> {
        co_await c->close();
        out->emplace(first->has_value());
      }(h.conn, &first, &first_done_when_second_returned),
      asio::detached);
  h.io.restart();
  while (!(first && first_done_when_second_returned) && h.io.run_one() > 0) {
  }
  ASSERT_TRUE(first.has_value()) << "the first close() never returned";
  ASSERT_TRUE(first_done_when_second_returned.has_value()) << "the second close() never returned";
  EXPECT_TRUE(*first_done_when_second_returned)
      << "the second close() returned while the first still waited for the broker";
}

}  // namespace
