// The engine's request/response nodes (engine_core.hpp): $cbs and $management. A node is a
// sender and a receiver on one session; each request carries a message-id and reply-to, and the
// reply whose correlation-id matches completes it. An unknown correlation-id (the answer to a
// request that timed out) is dropped.
#include <proton/message_id.hpp>
#include <proton/receiver_options.hpp>
#include <proton/sender_options.hpp>
#include <proton/source_options.hpp>
#include <proton/target_options.hpp>
#include <string>

#include "amqp/engine_core.hpp"
#include "amqp/mapping.hpp"

namespace qrt::amqp::detail {

void core::request(const std::string& node, proton::message m, request_kind kind,
                   milliseconds timeout, once<result<proton::message>> done) {
  when_open(timeout, [this, node, m = std::move(m), kind = std::move(kind), timeout,
                      done](const error* e) mutable {
    if (e) {
      done(*e);
      return;
    }
    start_request(node, std::move(m), std::move(kind), timeout, std::move(done));
  });
}

void core::start_request(const std::string& node, proton::message m, request_kind kind,
                         milliseconds timeout, once<result<proton::message>> done) {
  if (done.done()) return;
  auto it = rpc_nodes.find(node);
  if (it == rpc_nodes.end()) {
    if (!links_may_attach(2)) {
      auto request = std::make_shared<proton::message>(std::move(m));
      auto waiting_kind = std::make_shared<request_kind>(std::move(kind));
      after(timeout, [done, node, timeout] {
        done(fail(errc::timeout, "request to '" + node + "' could not attach its links within " +
                                     std::to_string(timeout.count()) +
                                     " ms (max_links reached, or an ended session unanswered)"));
      });
      link_waiters.push_back(link_waiter{[done] { return done.done(); },
                                         [this, node, request, waiting_kind, timeout, done] {
                                           start_request(node, std::move(*request),
                                                         std::move(*waiting_kind), timeout, done);
                                         },
                                         [done](const error& e) { done(e); }});
      return;
    }
    it = rpc_nodes.try_emplace(node).first;
    rpc_node& n = it->second;
    const std::uint64_t instance = next_instance++;
    n.node = node;
    n.reply_to = "qrt-reply-" + std::to_string(instance);
    proton::sender_options so;
    proton::target_options to;
    to.address(node);
    so.target(to);
    so.name("qrt-rpc-s-" + std::to_string(instance));
    proton::session rpc_session = conn.open_session();
    n.out = rpc_session.open_sender(node, so);
    proton::receiver_options ro;
    proton::source_options src;
    src.address(node);
    proton::target_options tgt;
    tgt.address(n.reply_to);
    ro.source(src);
    ro.target(tgt);
    ro.name("qrt-rpc-r-" + std::to_string(instance));
    ro.credit_window(16);
    ro.auto_accept(true);
    n.in = rpc_session.open_receiver(node, ro);
    announce_max_message_size(n.in, max_reply_bytes);
    rpc_by_name[n.out.name()] = node;
    rpc_by_name[n.in.name()] = node;
    note_links_held();
  }
  rpc_node& n = it->second;
  n.last_use = ++use_clock;
  const std::string id = "qrt-rpc-" + std::to_string(next_request++);
  m.id(id);
  m.reply_to(n.reply_to);
  n.pending.emplace(id, pending_request{done, std::move(kind)});
  n.unsent.emplace_back(std::move(m), id);
  send_requests(n);
  after(timeout, [this, node, id, timeout] {
    auto nit = rpc_nodes.find(node);
    if (nit == rpc_nodes.end()) return;
    auto pit = nit->second.pending.find(id);
    if (pit == nit->second.pending.end()) return;
    auto done = pit->second.done;
    const bool maybe_applied = pit->second.sent && pit->second.kind.changes_state;
    const std::string operation = pit->second.kind.operation;
    nit->second.pending.erase(pit);
    auto& unsent = nit->second.unsent;
    unsent.erase(
        std::remove_if(unsent.begin(), unsent.end(), [&](const auto& u) { return u.second == id; }),
        unsent.end());
    const error e = fail(errc::timeout, "request to '" + node + "' got no response within " +
                                            std::to_string(timeout.count()) + " ms");
    // Sent, a state change may have been applied although its answer never came; a read, or a
    // request still waiting for credit, changed nothing.
    done(maybe_applied ? unconfirmed_error(unconfirmed_kind::request, node, e, operation) : e);
    link_freed();
  });
}

void core::send_requests(rpc_node& n) {
  if (!n.in_open) return;  // responses need the reply link in place first
  while (!n.unsent.empty() && n.out.active() && n.out.credit() > 0) {
    n.out.send(n.unsent.front().first);
    if (auto pit = n.pending.find(n.unsent.front().second); pit != n.pending.end()) {
      pit->second.sent = true;
    }
    n.unsent.pop_front();
  }
}

void core::fail_pending_requests(const std::string& node,
                                 std::map<std::string, pending_request> pending,
                                 const error& cause) {
  for (auto& [id, p] : pending) {
    if (p.sent && p.kind.changes_state) {
      p.done(unconfirmed_error(unconfirmed_kind::request, node, cause, p.kind.operation));
      continue;
    }
    error e = cause;
    const std::string request =
        p.kind.operation.empty() ? "the request" : "the request " + p.kind.operation;
    e.message = request + " to '" + node + "' " + (p.sent ? "got no answer (" : "was not sent (") +
                cause.message + ")";
    p.done(std::move(e));
  }
}

void core::fail_requests_not_awaited(rpc_node& n) {
  n.unsent.clear();
  std::map<std::string, pending_request> not_awaited;
  for (auto it = n.pending.begin(); it != n.pending.end();) {
    if (it->second.awaits_reply_at_close()) {
      ++it;
    } else {
      not_awaited.insert(n.pending.extract(it++));
    }
  }
  fail_pending_requests(n.node, std::move(not_awaited), closed_error());
}

void core::rpc_response(const std::string& node, proton::delivery& d, proton::message& m) {
  (void)d;  // auto-accepted
  auto it = rpc_nodes.find(node);
  if (it == rpc_nodes.end()) return;
  const std::string correlation = id_to_string(m.correlation_id());
  auto pit = it->second.pending.find(correlation);
  if (pit == it->second.pending.end()) return;  // late answer to a timed-out request
  auto done = pit->second.done;
  it->second.pending.erase(pit);
  done(std::move(m));
  link_freed();
}

void core::refuse_oversize_replies() {
  std::vector<std::string> oversize;
  for (auto& [node, n] : rpc_nodes) {
    if (!n.in) continue;
    // An aborted reply would stay the link's current delivery and hold back every reply after
    // it (Proton's adapter does not take it): the request it answered times out.
    while (drop_aborted_delivery(n.in)) {
    }
    if (auto big = take_oversize_delivery(n.in, max_reply_bytes)) {
      send_outcome(
          big->get(),
          outcome::rejected("amqp:link:message-size-exceeded",
                            "a reply is larger than " + std::to_string(max_reply_bytes) + " bytes"),
          true);
      oversize.push_back(node);
    }
  }
  for (const auto& node : oversize) {
    auto nit = rpc_nodes.find(node);
    if (nit == rpc_nodes.end()) continue;
    const error e =
        fail(errc::protocol_error, "a reply from '" + node + "' was larger than the " +
                                       std::to_string(max_reply_bytes) + "-byte limit for replies");
    drop_rpc_node(nit, e);
  }
}

void core::drop_rpc_node(std::map<std::string, rpc_node>::iterator nit, const error& e) {
  auto pending = std::move(nit->second.pending);
  const std::string node = nit->first;
  end_link(nit->second.out);
  end_link(nit->second.in);
  rpc_by_name.erase(nit->second.out.name());
  rpc_by_name.erase(nit->second.in.name());
  rpc_nodes.erase(nit);
  fail_pending_requests(node, std::move(pending), e);
  link_freed();
}

void core::rpc_link_gone(proton::link& link, const proton::error_condition& condition) {
  auto it = rpc_by_name.find(link.name());
  if (it == rpc_by_name.end()) return;
  const std::string node = it->second;
  auto nit = rpc_nodes.find(node);
  if (nit == rpc_nodes.end()) return;
  error e = condition
                ? map_condition(condition, {"request to", node})
                : fail(errc::connection_failed, "the broker detached the link to '" + node + "'");
  drop_rpc_node(nit, e);
}

}  // namespace qrt::amqp::detail
