// Brokers in memory for the AMQP core's tests: a Proton connection_driver that accepted the
// connection (memory_broker), and the behaviours the tests give it (messaging handlers). The
// engine's tests (engine_test.cpp) and the connection's (connection_test.cpp) run against the
// same brokers, so a behaviour is written once.
#pragma once

#include <proton/link.h>
#include <proton/terminus.h>

#include <algorithm>
#include <cstring>
#include <map>
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
#include <vector>

#include "amqp/proton_c.hpp"

namespace qrt::amqp::test {

/// The broker's end: a Proton driver that accepted the connection, its behaviour given by
/// `handler`. exchange() feeds it what the client wrote and returns what it writes back.
class memory_broker {
 public:
  explicit memory_broker(proton::messaging_handler& handler) : driver_("memory-broker") {
    proton::connection_options o;
    o.handler(handler);
    o.sasl_enabled(true);
    o.sasl_allowed_mechs("ANONYMOUS");
    driver_.accept(o);
  }

  std::string exchange(std::string_view from_client) {
    std::size_t used = 0;
    while (used < from_client.size()) {
      proton::io::mutable_buffer room = driver_.read_buffer();
      if (room.size == 0) break;
      const std::size_t k = std::min(room.size, from_client.size() - used);
      std::memcpy(room.data, from_client.data() + used, k);
      driver_.read_done(k);
      used += k;
    }
    driver_.dispatch();
    std::string out;
    for (;;) {
      proton::io::const_buffer b = driver_.write_buffer();
      if (b.size == 0) break;
      out.append(b.data, b.size);
      driver_.write_done(b.size);
    }
    return out;
  }

 private:
  proton::io::connection_driver driver_;
};

/// A broker that answers a link's attach with the addresses the client asked for.
struct echoing_broker : proton::messaging_handler {
  void on_sender_open(proton::sender& s) override {
    if (s.active()) return;
    s.open(proton::sender_options()
               .source(proton::source_options().address(s.source().address()))
               .target(proton::target_options().address(s.target().address())));
  }
  void on_receiver_open(proton::receiver& r) override {
    if (r.active()) return;
    r.open(proton::receiver_options()
               .source(proton::source_options().address(r.source().address()))
               .target(proton::target_options().address(r.target().address())));
  }
};

// $management style: the reply is the message whose correlation id is the request's id; a
// reply with an id no request has is dropped, not handed to the waiting request.
struct management_node : echoing_broker {
  void on_sender_open(proton::sender& s) override {
    echoing_broker::on_sender_open(s);
    reply_links[s.target().address()] = s;
  }
  void on_message(proton::delivery& d, proton::message& request) override {
    ++requests;
    d.accept();
    proton::sender reply = reply_links.at(request.reply_to());
    proton::message stranger("not yours");
    stranger.correlation_id(std::string("qrt-rpc-no-such-request"));
    reply.send(stranger);
    proton::message answer("pong");
    answer.correlation_id(request.id());
    reply.send(answer);
  }
  std::map<std::string, proton::sender> reply_links;
  int requests = 0;
};

// Credit is granted by hand: a receiver link never has more than its prefetch outstanding
// (buffered plus handed out and unsettled), however many messages the broker has.
struct queue_with_messages : echoing_broker {
  void on_sendable(proton::sender& s) override {
    max_credit_seen = std::max(max_credit_seen, s.credit());
    while (s.credit() > 0) {
      s.send(proton::message("m" + std::to_string(++sent)));
    }
  }
  void on_tracker_accept(proton::tracker&) override { ++accepted; }
  void on_tracker_release(proton::tracker&) override { ++released; }
  int max_credit_seen = 0;
  int sent = 0;
  int accepted = 0;
  int released = 0;
};

// A broker that refuses the attach (no source on its side, then a detach with the reason): the
// open fails with the broker's reason, not as a success.
struct refusing_broker : echoing_broker {
  void on_sender_open(proton::sender& s) override {
    if (s.active()) return;
    // Attached without a source on the broker's side (Proton C++ would echo the client's):
    // that is the refusal; the detach with the reason follows.
    pn_link_t* link = proton::internal::factory<proton::link>::unwrap(s);
    pn_terminus_set_type(pn_link_source(link), PN_UNSPECIFIED);
    pn_link_open(link);
    s.close(proton::error_condition("amqp:not-found", "no queue 'missing' here"));
  }
};

// rcv-settle-mode second (Service Bus peek-lock): the outcome goes out unsettled, and settle()
// completes with the broker's answer when the broker settles: success, or its refusal with the
// broker's description.
struct settle_second_queue : queue_with_messages {
  void on_sender_open(proton::sender& s) override {
    if (s.active()) return;
    pn_link_set_rcv_settle_mode(proton::internal::factory<proton::link>::unwrap(s), PN_RCV_SECOND);
    echoing_broker::on_sender_open(s);
  }
  void on_tracker_accept(proton::tracker& t) override {
    ++accepted;
    if (t.settled()) ++settled_by_client;  // first mode: the client settled with its outcome
    if (refuse) {
      qrt::amqp::detail::send_outcome(
          proton::internal::factory<proton::tracker>::unwrap(t),
          qrt::amqp::detail::outcome::rejected("com.microsoft:message-lock-lost",
                                               "the lock on this message is lost"),
          true);
    } else {
      t.settle();
    }
  }
  bool refuse = false;
  int settled_by_client = 0;
};

// A broker in rcv-settle-mode second that holds every outcome unanswered until the test lets
// it confirm them (a service slow to confirm, or one whose confirmation was lost in flight).
struct confirm_later_queue : settle_second_queue {
  void on_tracker_accept(proton::tracker& t) override {
    ++accepted;
    held.push_back(t);
  }
  /// Confirms every held outcome; the frames go out in the broker's next exchange.
  void confirm_held() {
    for (auto& t : held) t.settle();
    held.clear();
  }
  /// Refuses every held outcome, as Service Bus does for a lock that expired meanwhile.
  void refuse_held() {
    for (auto& t : held) {
      qrt::amqp::detail::send_outcome(
          proton::internal::factory<proton::tracker>::unwrap(t),
          qrt::amqp::detail::outcome::rejected("com.microsoft:message-lock-lost",
                                               "the lock on this message is lost"),
          true);
    }
    held.clear();
  }
  std::vector<proton::tracker> held;
};

// A link the broker detaches with an error: the receive waiting on it fails with the broker's
// reason instead of waiting out its time.
struct detaching_queue : echoing_broker {
  void on_sendable(proton::sender& s) override {
    s.close(proton::error_condition("amqp:resource-deleted", "queue 'q' was deleted"));
  }
};

}  // namespace qrt::amqp::test
