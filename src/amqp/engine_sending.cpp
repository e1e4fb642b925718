// The engine's senders (engine_core.hpp): a send call's messages go out on the cached sender
// link of their address as credit allows, each tagged with a number that finds its call again
// when the outcome comes back. Also the link cap (endpoint::max_links), shared with the
// request/response nodes, and the sessions: one per link, so the end of one ends one link.
#include <array>
#include <cstring>
#include <proton/sender_options.hpp>
#include <proton/target_options.hpp>
#include <string>

#include "amqp/engine_core.hpp"
#include "amqp/mapping.hpp"

namespace qrt::amqp::detail {

namespace {

/// A sent delivery's tag: its number's bytes, on the stack (one per message sent).
std::array<std::uint8_t, sizeof(std::uint64_t)> tag_of(std::uint64_t n) {
  std::array<std::uint8_t, sizeof n> tag{};
  std::memcpy(tag.data(), &n, sizeof n);
  return tag;
}

std::optional<std::uint64_t> number_of(std::span<const std::uint8_t> tag) {
  if (tag.size() != sizeof(std::uint64_t)) return std::nullopt;
  std::uint64_t n = 0;
  std::memcpy(&n, tag.data(), sizeof n);
  return n;
}

}  // namespace

error unconfirmed_error(unconfirmed_kind what, const std::string& address, const error& cause,
                        std::string_view operation) {
  // Its own code, whatever the cause's: a caller must be able to tell "maybe applied" from "not
  // applied" without reading the text, and a provider's own mapping of the cause's condition
  // (a permanent not-found, `closed`) would say "not done". The cause's code and words stay in
  // the message and its provider code stays, for whoever debugs it.
  error unconfirmed = cause;
  unconfirmed.code = errc::unconfirmed;
  unconfirmed.kind = default_kind(errc::unconfirmed);
  const std::string why = std::string(to_string(cause.code)) + ": " + cause.message;
  // Worded for any cause: the link or connection ended, the close gave up, or the call's own
  // deadline passed after the work went out.
  switch (what) {
    case unconfirmed_kind::send:
      unconfirmed.message = "no outcome came for the message sent to '" + address + "' (" + why +
                            "); it may or may not be stored (sending it again may store it twice)";
      break;
    case unconfirmed_kind::settlement:
      unconfirmed.message = "no confirmation came for the settlement of a message from '" +
                            address + "' (" + why +
                            "); it may or may not have been applied (if not, the message is "
                            "delivered again)";
      break;
    case unconfirmed_kind::request: {
      const std::string request =
          operation.empty() ? "the request" : "the request " + std::string(operation);
      unconfirmed.message = request + " to '" + address + "' got no answer (" + why +
                            "); it may or may not have been applied";
      break;
    }
  }
  return unconfirmed;
}

void core::fail_in_flight_unconfirmed(const error& cause) {
  for (auto& d : in_flight.take_all()) {
    record(d.op, d.index, unconfirmed_error(unconfirmed_kind::send, d.op->address, cause));
  }
}

void core::send(std::shared_ptr<send_op> op, milliseconds timeout) {
  std::weak_ptr<send_op> weak = op;
  after(timeout, weak, [this, weak, timeout] {
    auto op = weak.lock();
    if (!op || op->finished) return;
    const std::string within = " within " + std::to_string(timeout.count()) + " ms";
    // A message never handed to the broker (no link or no credit yet) was certainly not sent:
    // a plain timeout. One handed over may have been stored: its outcome is unknown.
    const std::size_t handed_over = op->next;
    fail_unsent(*op, fail(errc::timeout, "send to '" + op->address + "' did not finish" + within +
                                             "; the message was not sent"));
    const error unconfirmed =
        unconfirmed_error(unconfirmed_kind::send, op->address,
                          fail(errc::timeout, "the broker gave no outcome" + within));
    for (std::size_t i = 0; i < handed_over; ++i) {
      if (!op->outcomes[i]) op->outcomes[i] = unconfirmed;
    }
    op->unsettled = 0;
    finish(*op);
  });
  when_open(timeout, [this, op](const error* e) {
    if (e) {
      finish_whole(*op, *e);
      return;
    }
    start_send(op);
  });
}

void core::start_send(const std::shared_ptr<send_op>& op) {
  if (op->finished) return;
  auto it = senders.find(op->address);
  if (it == senders.end()) {
    if (!links_may_attach(1)) {
      link_waiters.push_back(link_waiter{[op] { return op->finished; },
                                         [this, op] { start_send(op); },
                                         [this, op](const error& e) { finish_whole(*op, e); }});
      return;
    }
    it = senders.try_emplace(op->address).first;
    proton::sender_options so;
    proton::target_options to;
    to.address(op->address);
    so.target(to);
    so.delivery_mode(proton::delivery_mode::AT_LEAST_ONCE);
    so.auto_settle(true);
    so.name("qrt-s-" + std::to_string(next_instance++));
    it->second.link = conn.open_session().open_sender(op->address, so);
    note_links_held();
  }
  it->second.last_use = ++use_clock;
  it->second.waiting.push_back(op);
  send_pending(it->second);
}

std::size_t core::links_held() const {
  return senders.size() + receivers.size() + 2 * rpc_nodes.size();
}

bool core::make_room_for_links(std::size_t count) {
  if (where.max_links == 0) return true;
  while (links_held() + count > where.max_links) {
    const auto sender = least_recently_used_idle(senders);
    const auto node = least_recently_used_idle(rpc_nodes);
    const bool close_sender =
        sender != senders.end() &&
        (node == rpc_nodes.end() || sender->second.last_use < node->second.last_use);
    if (close_sender) {
      end_link(sender->second.link);
      senders.erase(sender);
    } else if (node != rpc_nodes.end()) {
      drop_rpc_node(node, closed_error());  // idle: no request waits on it
    } else {
      return false;
    }
  }
  return true;
}

void core::link_freed() {
  if (link_waiters.empty()) return;
  link_waiters_scheduled = true;  // served by pump, after the handler that freed the link
}

void core::serve_link_waiters() {
  if (conn_state != state::open || shutting_down) return;
  while (!link_waiters.empty()) {
    if (link_waiters.front().finished()) {
      link_waiters.pop_front();
      continue;
    }
    if (!links_may_attach(2)) break;  // a sender or a node's two links
    auto next = std::move(link_waiters.front());
    link_waiters.pop_front();
    next.resume();
  }
}

void core::send_pending(sender_state& s) {
  while (!s.waiting.empty() && s.link.active() && s.link.credit() > 0) {
    auto op = s.waiting.front();
    if (op->finished) {
      s.waiting.pop_front();
      continue;
    }
    while (op->next < op->deliveries.size() && s.link.credit() > 0) {
      const std::uint64_t n = next_tag++;
      const std::size_t index = op->next++;
      const outgoing_delivery& d = op->deliveries[index];
      if (d.message_format != 0) formats_to_write.emplace(n, d.message_format);
      const auto tag = tag_of(n);
      send_encoded(s.link, tag, d.bytes);
      in_flight.add(n, in_flight_delivery{op, index, &s});
      ++op->unsettled;
      ++s.unsettled;
    }
    if (op->next == op->deliveries.size()) s.waiting.pop_front();
  }
}

void core::on_sendable(proton::sender& s) {
  for (auto& [address, state] : senders) {
    if (state.link == s) {
      send_pending(state);
      return;
    }
  }
  for (auto& [node, n] : rpc_nodes) {
    if (n.out == s) {
      send_requests(n);
      return;
    }
  }
}

void core::record(const std::shared_ptr<send_op>& op, std::size_t index, result<void> outcome) {
  if (op->finished) return;
  if (!op->outcomes[index]) {
    op->outcomes[index] = std::move(outcome);
    if (op->unsettled > 0) --op->unsettled;
  }
  if (op->next == op->deliveries.size() && op->unsettled == 0) finish(*op);
}

void core::fail_unsent(send_op& op, const error& e) {
  for (std::size_t i = op.next; i < op.deliveries.size(); ++i) op.outcomes[i] = e;
  op.next = op.deliveries.size();
}

void core::abort_send(send_op& op, const error& e) {
  if (op.finished) return;
  if (op.next == 0 && op.unsettled == 0) {
    finish_whole(op, e);
    return;
  }
  fail_unsent(op, e);
  if (op.unsettled == 0) finish(op);
}

void core::finish_whole(send_op& op, const error& e) {
  if (op.finished) return;
  op.finished = true;
  op.done(e);
  link_freed();
}

void core::finish(send_op& op) {
  if (op.finished) return;
  op.finished = true;
  op.done(results_of(op.outcomes));
  link_freed();
}

auto core::take_in_flight(const proton::tracker& t) -> std::optional<in_flight_delivery> {
  auto n = number_of(delivery_tag(proton::internal::factory<proton::tracker>::unwrap(t)));
  if (!n) return std::nullopt;
  // Tag numbers are unique among data deliveries only: Proton numbers the requests a node
  // sends ($cbs, $management) from 1 on its own. An outcome counts for the delivery of that
  // number only when it came on that delivery's link; a request's never settles a send.
  const proton::sender link = t.sender();
  auto entry =
      in_flight.take(*n, [&link](const in_flight_delivery& d) { return d.sender->link == link; });
  if (entry) --entry->sender->unsettled;
  return entry;
}

void core::on_tracker_accept(proton::tracker& t) {
  if (auto e = take_in_flight(t)) record(e->op, e->index, {});
}

void core::on_tracker_reject(proton::tracker& t) {
  if (auto e = take_in_flight(t)) {
    // The broker's reason (e.g. amqp:link:message-size-exceeded, amqp:not-allowed) is mapped
    // and its description kept; without one the refusal is a plain provider_error.
    const proton::error_condition why = remote_condition(t);
    record(e->op, e->index,
           why ? map_condition(why, {"send to", e->op->address})
               : fail(errc::provider_error,
                      "the broker rejected the message sent to '" + e->op->address + "'",
                      "amqp:rejected"));
  }
}

void core::on_tracker_release(proton::tracker& t) {
  if (auto e = take_in_flight(t)) {
    error err = fail(errc::provider_error,
                     "the broker released the message sent to '" + e->op->address +
                         "' without storing it (no route, or the queue refused it)",
                     "amqp:released");
    err.kind = error_kind::transient;
    record(e->op, e->index, std::move(err));
  }
}

void core::on_tracker_settle(proton::tracker& t) {
  // Settled without an outcome we recognise (e.g. modified): treat as not stored.
  if (auto e = take_in_flight(t)) {
    error err =
        fail(errc::provider_error,
             "the broker settled the message sent to '" + e->op->address + "' without accepting it",
             "amqp:modified");
    err.kind = error_kind::transient;
    record(e->op, e->index, std::move(err));
  }
}

void core::sender_gone(proton::sender& s, const proton::error_condition& condition) {
  for (auto it = senders.begin(); it != senders.end(); ++it) {
    if (it->second.link != s) continue;
    const std::string address = it->first;
    error e = condition ? map_condition(condition, {"send to", address})
                        : fail(errc::connection_failed,
                               "the broker detached the sender link to '" + address + "'");
    if (!condition) e.kind = error_kind::transient;
    // A condition about one message (too large for the broker) refuses that message, not the
    // link's others: those are unconfirmed or unsent, and worth sending again.
    const bool about_one_message = e.provider_code == "amqp:link:message-size-exceeded";
    const sender_state* gone = &it->second;
    auto unsettled =
        in_flight.take_if([&](const in_flight_delivery& d) { return d.sender == gone; });
    // The message the condition is about, where it can be told: the only one in flight, or
    // one over the size the broker announced in its attach.
    const std::uint64_t peer_limit = peer_max_message_size(s);
    const auto named = [&](const in_flight_delivery& d) {
      return about_one_message &&
             (unsettled.size() == 1 ||
              (peer_limit > 0 && d.op->deliveries[d.index].bytes.size() > peer_limit));
    };
    // The link ended before the broker gave the others an outcome: AMQP 1.0 leaves whether it
    // stored them unknown, so each gets a transient error saying so (sent again, one may be
    // stored twice) instead of the condition, which would call a message refused that the
    // broker may have kept, or refuse for good one that it never judged.
    const error unconfirmed = unconfirmed_error(unconfirmed_kind::send, address, e);
    for (auto& d : unsettled) record(d.op, d.index, named(d) ? error(e) : error(unconfirmed));
    error unsent = e;
    if (about_one_message) {
      unsent.code = errc::provider_error;
      unsent.kind = error_kind::transient;
      unsent.message =
          "not sent: the link to '" + address + "' ended over another message (" + e.message + ")";
    }
    for (auto& op : it->second.waiting) abort_send(*op, unsent);
    end_link(s);
    senders.erase(it);
    link_freed();
    return;
  }
  rpc_link_gone(s, condition);
}

void core::end_link(proton::link link) {
  if (!link) return;
  proton::session ssn = link.session();
  if (link.active()) link.close();
  if (ssn && ssn == probe_session) return;  // kept for the next probe
  if (!ssn || !ssn.active()) return;
  ssn.close();
  if (ssn.closed()) return;  // the broker had ended it already: nothing more comes on it
  const std::uint64_t id = next_end_id++;
  unanswered_ends.push_back(unanswered_end{id, ssn});
  after(unanswered_end_wait, [this, id] { forget_unanswered_end(id); });
}

void core::end_answered(const proton::session& ssn) {
  const auto answered =
      std::erase_if(unanswered_ends, [&](const unanswered_end& e) { return e.session == ssn; });
  if (answered && !sessions_held()) link_freed();  // the waiting calls go on in the pump
}

void core::forget_unanswered_end(std::uint64_t id) {
  const auto forgotten =
      std::erase_if(unanswered_ends, [&](const unanswered_end& e) { return e.id == id; });
  if (forgotten && !sessions_held()) link_freed();
}

void core::session_gone(proton::session& ssn) {
  const proton::error_condition condition = ssn.error();
  if (ssn == probe_session) {
    // Its one unanswered probe, if any, is found below and fails with the end's reason; the
    // next probe begins another session.
    probe_session = proton::session();
    if (ssn.active()) ssn.close();
  }
  for (auto& [address, st] : senders) {
    if (st.link && st.link.session() == ssn) {
      proton::sender link = st.link;
      sender_gone(link, condition);
      break;
    }
  }
  for (auto& [id, r] : receivers) {
    if (r.link && r.link.session() == ssn) {
      proton::receiver link = r.link;
      receiver_gone(link, condition);
      break;
    }
  }
  for (auto& [node, n] : rpc_nodes) {
    if (n.out && n.out.session() == ssn) {
      proton::sender link = n.out;
      rpc_link_gone(link, condition);
      break;
    }
  }
}

}  // namespace qrt::amqp::detail
