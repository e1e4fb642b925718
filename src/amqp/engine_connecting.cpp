// The engine's connection life (engine_core.hpp): when an attempt starts (on demand, spaced by
// the back-off, bounded by the connect timeout), what opens it, and what a loss or shutdown
// fails. The back-off is a deadline like any other, so a test moves past it by passing a later
// time; the transport only opens the stream the engine asks for.
#include <unistd.h>

#include <string>
#include <utility>

#include "amqp/engine_core.hpp"
#include "amqp/mapping.hpp"

namespace qrt::amqp::detail {

std::string core::container_name(const endpoint& ep) {
  if (!ep.container_id.empty()) return ep.container_id;
  static std::atomic<std::uint64_t> counter{0};
  return "qrt-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

proton::connection_options core::options() const {
  proton::connection_options o;
  o.idle_timeout(proton::duration(where.idle_timeout.count()));
  o.handler(*const_cast<core*>(this));
  o.container_id(container_id);
  if (!where.virtual_host.empty()) o.virtual_host(where.virtual_host);
  o.sasl_enabled(true);
  if (!where.user.empty()) {
    o.user(where.user);
    o.password(where.password);
  }
  std::string mechs = where.sasl_mechanisms;
  if (mechs.empty()) mechs = where.user.empty() ? "ANONYMOUS" : "PLAIN";
  o.sasl_allowed_mechs(mechs);
  // PLAIN sends the password in clear; allowed without TLS only because the user asked for
  // a plain amqp:// endpoint with credentials (local brokers, test peers).
  o.sasl_allow_insecure_mechs(true);
  if (!where.properties.empty()) o.properties(where.properties);
  return o;
}

void core::when_open(milliseconds timeout, std::function<void(const error*)> fn) {
  if (shutting_down) {
    const error e = closed_error();
    fn(&e);
    return;
  }
  if (conn_state == state::open) {
    fn(nullptr);
    return;
  }
  const std::uint64_t id = next_waiter_id++;
  open_waiters.push_back({std::move(fn), id});
  after(timeout, [this, id, timeout] {
    auto it = std::find_if(open_waiters.begin(), open_waiters.end(),
                           [id](const open_waiter& w) { return w.id == id; });
    if (it == open_waiters.end()) return;
    auto fn = std::move(it->fn);
    open_waiters.erase(it);
    error e = last_error ? *last_error
                         : fail(errc::connection_failed,
                                "connect to '" + where.display() + "' did not finish within " +
                                    std::to_string(timeout.count()) + " ms");
    e.message += " (still reconnecting)";
    e.kind = error_kind::transient;
    fn(&e);
  });
  if (conn_state == state::disconnected && !attempt_scheduled) {
    if (now >= next_attempt_at) {
      start_connect();
    } else {
      attempt_scheduled = true;
      const auto delay =
          std::chrono::duration_cast<milliseconds>(next_attempt_at - now).count() + 1;
      after(milliseconds(delay), [this] {
        attempt_scheduled = false;
        if (conn_state == state::disconnected && !open_waiters.empty() && !shutting_down) {
          start_connect();
        }
      });
    }
  }
}

void core::start_connect() {
  conn_state = state::connecting;
  const std::uint64_t this_attempt = ++attempt;
  io = std::make_unique<attempt_io>(
      this_attempt, container_id,
      [this](std::span<const std::uint8_t> tag) { return format_of(tag); });
  stream_wanted = this_attempt;  // the transport opens it: engine::take_stream_request
  after(where.connect_timeout, [this, this_attempt] {
    if (attempt != this_attempt || conn_state != state::connecting) return;
    connection_lost(
        fail(errc::connection_failed, "connect to '" + where.display() + "' timed out after " +
                                          std::to_string(where.connect_timeout.count()) + " ms"));
  });
}

bool core::dispatch_events() {
  try {
    take_deliveries();
    if (!io) return false;
    io->driver.dispatch();
    return true;
  } catch (const std::exception& e) {
    connection_lost(
        fail(errc::protocol_error, "the connection to '" + where.display() +
                                       "' was dropped: handling what the broker sent failed (" +
                                       peer_text(e.what()) + ")"));
    return false;
  }
}

std::optional<std::uint32_t> core::format_of(std::span<const std::uint8_t> tag) {
  if (formats_to_write.empty() || tag.size() != sizeof(std::uint64_t)) return std::nullopt;
  std::uint64_t n = 0;
  std::memcpy(&n, tag.data(), sizeof n);
  auto it = formats_to_write.find(n);
  if (it == formats_to_write.end()) return std::nullopt;
  const std::uint32_t format = it->second;
  formats_to_write.erase(it);
  return format;
}

void core::on_connection_open(proton::connection& c) {
  if (c != conn) return;
  conn_state = state::open;
  backoff = milliseconds{0};
  last_error.reset();
  generation.fetch_add(1);
  if (observe) observe(true);
  auto waiters = std::move(open_waiters);
  open_waiters.clear();
  for (auto& w : waiters) w.fn(nullptr);
}

void core::on_transport_error(proton::transport& t) {
  if (t.connection() != conn) return;
  connection_lost(map_transport_error(t.error(), {"connect to", where.display()}));
}

void core::on_connection_error(proton::connection& c) {
  if (c != conn) return;
  connection_lost(map_condition(c.error(), {"connection to", where.display()}));
}

void core::on_connection_close(proton::connection& c) {
  if (c != conn) return;
  if (closing_gracefully()) {
    finish_shutdown();  // the broker's answer to our close frame
  } else if (!shutting_down) {
    connection_lost(fail(errc::connection_failed,
                         "the broker closed the connection to '" + where.display() + "'"));
  }
}

void core::on_transport_close(proton::transport& t) {
  if (t.connection() != conn) return;
  if (closing_gracefully()) return finish_shutdown();
  if (shutting_down) return;
  connection_lost(
      fail(errc::connection_failed, "the connection to '" + where.display() + "' dropped"));
}

void core::connection_lost(error e) {
  // Lost while closing: closed all the same (what was sent and not settled is unconfirmed).
  if (closing_gracefully()) return finish_shutdown(std::move(e));
  if (conn_state == state::disconnected && !conn) return;
  e.kind = e.code == errc::permission ? error_kind::permanent : error_kind::transient;
  if (e.code != errc::closed && observe) observe(false);  // closed: qrt closed it itself
  const bool was_open = conn_state == state::open;
  conn_state = state::disconnected;
  conn = proton::connection();
  unanswered_ends.clear();  // the old connection's sessions: a new one starts with none
  probe_session = proton::session();
  probe_waiting.clear();
  retire();
  formats_to_write.clear();
  last_error = e;
  backoff = backoff.count() == 0 ? where.reconnect_initial_delay
                                 : std::min(backoff * 2, where.reconnect_max_delay);
  // A connection that was up reconnects at once on demand; a failed attempt waits.
  next_attempt_at = was_open ? now : now + backoff;

  auto waiters = std::move(open_waiters);
  open_waiters.clear();
  for (auto& w : waiters) w.fn(&e);

  error link_died = e;
  link_died.message = "the link died with its connection: " + e.message;
  auto waiting_for_links = std::move(link_waiters);
  link_waiters.clear();
  for (auto& w : waiting_for_links) w.fail(link_died);
  for (auto& [address, s] : senders) {
    for (auto& op : s.waiting) abort_send(*op, link_died);
  }
  // Handed to the broker without an outcome back: it may have stored them. Only what never
  // went out (above) is certainly not sent.
  fail_in_flight_unconfirmed(e);
  senders.clear();
  for (auto& [id, r] : receivers) {
    for (auto& op : r.waiting) op->done(link_died);
    for (auto& w : r.open_waiters) w(link_died);
    fail_confirming(r, e);
  }
  receivers.clear();
  prefetched_bytes = 0;
  receiver_by_link.clear();
  live_instances.clear();
  for (auto& [node, n] : rpc_nodes) fail_pending_requests(node, std::move(n.pending), link_died);
  rpc_nodes.clear();
  rpc_by_name.clear();
}

void core::shutdown(std::function<void()> closed) {
  if (closed) {
    if (shutdown_finished) {
      closed();
      return;
    }
    closed_waiters.push_back(std::move(closed));
  }
  if (shutting_down) return;
  shutting_down = true;
  if (conn && conn_state == state::open && io) {
    // Settlements sent settled (a broker in rcv-settle-mode first never confirms them) are
    // only as safe as the frames that carry them: hung up on too early, the broker may drop
    // what it has not processed, and those messages are delivered again. A broker may also
    // process a session's frames apart from the connection's (RabbitMQ 3.10 answers the close
    // frame while a session still has dispositions queued). So every session is ended first,
    // and the broker's end, which comes after it processed that session's frames, is waited
    // for; then the close frame, and the broker's answer to it; all within close_timeout.
    //
    // Before that, messages already sent wait for their outcomes: ended first, they would be
    // left unconfirmed (the broker may have stored them or not), and a caller told "closed"
    // takes them for not sent. Messages not yet sent never go out: they fail with closed now.
    // Settlements sent unsettled (rcv-settle-mode second) wait for the broker's confirmation
    // likewise: it may be on its way, and without it the caller can only be told unconfirmed.
    after(where.close_timeout, [this] {
      error late = closed_error();
      late.message +=
          " (close_timeout of " + std::to_string(where.close_timeout.count()) + " ms passed first)";
      finish_shutdown(std::move(late));
    });
    for (auto& [address, s] : senders) {
      for (auto& op : s.waiting) abort_send(*op, closed_error());
      s.waiting.clear();
    }
    auto waiting_for_links = std::move(link_waiters);  // they would attach on a closing link
    link_waiters.clear();
    for (auto& w : waiting_for_links) w.fail(closed_error());
    // A message handed out now could not be settled any more (the provider is closing), and
    // the broker would deliver it again: a duplicate. Receives waiting now fail, later ones
    // fail in when_open, no credit is given (replenish), and what still arrives on credit
    // given before stays buffered, unsettled, and goes back released with the prefetch.
    // An attach still unanswered fails the same way: the link could not be used any more. It
    // stays in its session, which ends with the others, whenever the broker's answer comes.
    for (auto& [id, r] : receivers) {
      auto receives = std::move(r.waiting);
      r.waiting.clear();
      for (auto& op : receives) op->done(closed_error());
      auto attaching = std::move(r.open_waiters);
      r.open_waiters.clear();
      for (auto& w : attaching) w(closed_error());
    }
    // A request sent that changes state waits for its reply like a send for its outcome; the
    // rest (reads, requests not sent yet) fail closed now, and what was not sent never goes out.
    for (auto& [node, n] : rpc_nodes) fail_requests_not_awaited(n);
    awaiting_answers = true;
    end_sessions_once_answered();
    return;  // the frames go out in the pump that follows every engine call
  }
  finish_shutdown();
}

bool core::answers_owed() const {
  if (!in_flight.empty()) return true;
  for (const auto& [id, r] : receivers) {
    for (const auto& [key, c] : r.confirming) {
      // Without an op its settle() timed out: nobody is left to hear the answer.
      if (c.op && !c.op->finished) return true;
    }
  }
  for (const auto& [node, n] : rpc_nodes) {
    for (const auto& [id, p] : n.pending) {
      if (p.awaits_reply_at_close()) return true;
    }
  }
  return false;
}

void core::end_sessions_once_answered() {
  if (!awaiting_answers || answers_owed() || !closing_gracefully()) return;
  awaiting_answers = false;
  for (auto& [id, r] : receivers) release_buffered(r);  // ahead of the ends, in their sessions
  for (proton::session s : conn.sessions()) {
    if (s.active()) s.close();
  }
  close_when_sessions_ended();
}

void core::close_when_sessions_ended() {
  if (!closing_gracefully() || !conn || !conn.active()) return;
  for (proton::session s : conn.sessions()) {
    if (!s.closed() && !s.uninitialized()) return;  // its end is still to come
  }
  conn.close();  // answered in on_connection_close
}

void core::session_ended(proton::session& ssn) {
  end_answered(ssn);
  if (closing_gracefully()) return close_when_sessions_ended();
  session_gone(ssn);
}

void core::finish_shutdown(std::optional<error> cause) {
  if (shutdown_finished) return;
  shutdown_finished = true;
  shutting_down = true;
  awaiting_answers = false;
  // Sent, and no outcome came before the close ended: the broker may have stored them.
  const error why = cause ? *cause : closed_error();
  fail_in_flight_unconfirmed(why);
  for (auto& [id, r] : receivers) fail_confirming(r, why);  // the same for settlements
  for (auto& [node, n] : rpc_nodes) {  // and for state changes sent, failed unconfirmed
    fail_pending_requests(node, std::exchange(n.pending, {}), why);
    n.unsent.clear();
  }
  if (conn && conn.active()) {
    conn.close();  // not closed yet (a session never ended, or not open): the frame goes out
    try {
      if (io) io->driver.dispatch();
    } catch (const std::exception&) {  // closing anyway
    }
  }
  connection_lost(closed_error());
  auto waiters = std::move(open_waiters);
  open_waiters.clear();
  const error e = closed_error();
  for (auto& w : waiters) w.fn(&e);
  deadlines.clear();
  auto closed = std::move(closed_waiters);
  closed_waiters.clear();
  for (auto& fn : closed) fn();
}

}  // namespace qrt::amqp::detail
