// The engine's state and the Proton handler that changes it (engine.hpp says what the engine
// is). Internal to the engine's files, which split it by what the members are for:
//   engine.cpp            the entry points, the time (deadlines, tick), the bytes in and out;
//   engine_connecting.cpp the connection's life: attempts, back-off, loss, shutdown;
//   engine_sending.cpp    senders, outcomes of sent messages, the link cap, sessions;
//   engine_receiving.cpp  receivers, credit and the prefetch budget, taking deliveries;
//   engine_settling.cpp   settlements, and the peer's confirmation of them;
//   engine_requests.cpp   request/response on $cbs and $management nodes.
// One struct because the handler's events touch several tables at once (a lost connection
// fails them all); nothing here includes Asio.
#pragma once

#include <proton/condition.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <proton/connection.hpp>
#include <proton/connection_options.hpp>
#include <proton/delivery.hpp>
#include <proton/error_condition.hpp>
#include <proton/io/connection_driver.hpp>
#include <proton/link.hpp>
#include <proton/message.hpp>
#include <proton/messaging_handler.hpp>
#include <proton/receiver.hpp>
#include <proton/sender.hpp>
#include <proton/session.hpp>
#include <proton/tracker.hpp>
#include <proton/transport.hpp>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "amqp/engine.hpp"
#include "amqp/front_queue.hpp"
#include "amqp/outbound_frames.hpp"
#include "amqp/proton_c.hpp"
#include "amqp/sequence_table.hpp"

namespace qrt::amqp::detail {

using time_point = engine::time_point;

error closed_error();

/// What went to the broker and waits for its answer: a sent message (its outcome), on a link in
/// rcv-settle-mode second a settlement (the broker's confirmation of it), or a request that
/// changes state at a request/response node (its reply).
enum class unconfirmed_kind { send, settlement, request };

/// An answer that will never come (the link ended, the connection was lost or closed first, or
/// the call's deadline passed after it went out) for what the broker may already have acted on:
/// a message it may or may not have stored, a settlement it may or may not have applied. It fails
/// with errc::unconfirmed (transient), with `cause` (why no answer will come: its code and message)
/// in its message and the cause's provider code kept, never with `closed` or the cause's code,
/// which read as not done. `address` is the link's target (send), its source (settlement) or the
/// node (request); `operation` names a request's operation.
error unconfirmed_error(unconfirmed_kind what, const std::string& address, const error& cause,
                        std::string_view operation = {});

/// A call's callback, run at most once however many tables hold a copy; done() says whether it
/// has run (a timed-out call's late answer is then dropped).
template <class T>
class once {
 public:
  explicit once(std::function<void(T)> fn) : state_(std::make_shared<state>(std::move(fn))) {}

  void operator()(T value) const {
    if (state_->done) return;
    state_->done = true;
    auto fn = std::move(state_->fn);
    fn(std::move(value));
  }
  bool done() const { return state_->done; }

 private:
  struct state {
    explicit state(std::function<void(T)> f) : fn(std::move(f)) {}
    std::function<void(T)> fn;
    bool done = false;
  };
  std::shared_ptr<state> state_;
};

/// One result per item of a finished call: what was recorded, success where nothing was (an
/// item whose outcome never arrived has been given its error before the call finishes).
std::vector<result<void>> results_of(std::vector<std::optional<result<void>>>& slots);

struct engine::core : proton::messaging_handler {
  core(endpoint ep, connection_observer observer);

  static std::string container_name(const endpoint& ep);

  const endpoint where;
  const std::string container_id;
  std::atomic<std::uint64_t> generation{0};
  engine::connection_observer observe;  ///< opens and failures, for connection_stats

  // ---------- the time ----------

  /// The time of the call being run: every entry point sets it first (engine.cpp).
  time_point now{};
  /// What runs when the time comes (operation timeouts, connect timeout, back-off), and the
  /// operation it times out, when it has one.
  struct deadline {
    std::function<void()> fn;
    std::weak_ptr<const void> operation;
    bool for_operation = false;
  };
  /// In order of time. A deadline whose operation is gone (finished and released) is dropped
  /// once it reaches the front (drop_finished_deadlines()), so the transport's timer is never
  /// armed for it: a call that finished costs no wake-up when its timeout would have come.
  std::multimap<time_point, deadline> deadlines;
  /// Proton's next idle-timeout deadline (heartbeat out, silent peer), max() when none.
  time_point proton_deadline = time_point::max();

  /// Runs `fn` once tick() is called at or after now + `delay`.
  void after(milliseconds delay, std::function<void()> fn);
  /// The same for the timeout of `operation`: dropped unrun once the operation is gone.
  void after(milliseconds delay, std::weak_ptr<const void> operation, std::function<void()> fn);
  /// Drops the deadlines at the front whose operation is gone.
  void drop_finished_deadlines();
  /// Runs the deadlines due by `now`, in order; each may add more.
  void run_due();

  // ---------- the byte stream ----------

  /// One connection attempt: its number, Proton driver and output. A new one per attempt; when
  /// the attempt is over, its last output goes to `closing` with the attempt's number.
  struct attempt_io {
    attempt_io(std::uint64_t n, const std::string& container_id,
               outbound_frames::format_lookup formats)
        : number(n), driver(container_id), frames(std::move(formats)) {}
    std::uint64_t number;
    proton::io::connection_driver driver;
    outbound_frames frames;
    bool amqp_started = false;  ///< the driver owns the connection (after TCP/TLS are up)
    std::string output;         ///< produced, not yet taken by the transport
  };
  std::unique_ptr<attempt_io> io;
  std::vector<std::unique_ptr<attempt_io>> retired;  ///< freed when the entry point returns
  std::optional<std::uint64_t> stream_wanted;        ///< an attempt waiting for its stream
  std::vector<engine::closing_stream> closing;
  /// Batch deliveries not yet written: tag number -> message format (see outbound_frames).
  std::unordered_map<std::uint64_t, std::uint32_t> formats_to_write;

  /// The current attempt, when `attempt` names it.
  attempt_io* current(std::uint64_t attempt) const;
  /// The stream is up: hand it to Proton (SASL, open, heartbeats).
  void start_amqp();
  /// Runs Proton's pending events (the handlers below) and the calls waiting for a link, then
  /// collects what they produced to write, and Proton's next deadline. Run at the end of every
  /// entry point (engine.cpp).
  void pump();
  /// Moves what Proton has to send through outbound_frames into the attempt's output.
  void collect_output(attempt_io& a);
  /// The attempt is over: its last output (a close frame) goes to `closing`.
  void retire();

  enum class state { disconnected, connecting, open };
  state conn_state = state::disconnected;
  proton::connection conn;
  std::uint64_t attempt = 0;
  milliseconds backoff{0};
  time_point next_attempt_at{};
  bool attempt_scheduled = false;
  std::optional<error> last_error;
  bool shutting_down = false;
  bool shutdown_finished = false;  ///< set by finish_shutdown(); implies shutting_down
  /// Shut down while open: the sessions are ending, then the close frame goes out, and the
  /// stream is kept until the broker answers or close_timeout passes (shutdown()). A shutdown
  /// of a connection that is not open finishes at once, so it is never seen in between.
  bool closing_gracefully() const noexcept { return shutting_down && !shutdown_finished; }
  /// Closing gracefully, first step: sends already handed to the broker wait for their
  /// outcomes, and settlements sent unsettled for the broker's confirmation, before any session
  /// ends (an end would leave their fate unknown).
  bool awaiting_answers = false;
  /// A sent message still waits for its outcome, a settle() call for a confirmation, or a sent
  /// request that changes state for its reply (awaits_reply_at_close).
  bool answers_owed() const;
  std::vector<std::function<void()>> closed_waiters;  ///< told when shutdown has finished

  struct open_waiter {
    std::function<void(const error*)> fn;
    std::uint64_t id;
  };
  std::vector<open_waiter> open_waiters;
  std::uint64_t next_waiter_id = 1;

  // -- senders --
  struct send_op {
    std::vector<outgoing_delivery> deliveries;
    std::size_t next = 0;       ///< first delivery not yet handed to Proton
    std::size_t unsettled = 0;  ///< handed to Proton, outcome not yet known
    std::vector<std::optional<result<void>>> outcomes;
    once<result<std::vector<result<void>>>> done;
    bool finished = false;
    std::string address;
  };
  struct sender_state {
    proton::sender link;
    std::deque<std::shared_ptr<send_op>> waiting;  ///< ops with messages not yet sent
    std::size_t unsettled = 0;                     ///< deliveries waiting for their outcome
    std::uint64_t last_use = 0;                    ///< use_clock at the last send
    bool idle() const { return waiting.empty() && unsettled == 0; }
  };
  std::map<std::string, sender_state> senders;  ///< by target address
  /// A delivery handed to the broker, waiting for its outcome, found again by its tag's number.
  struct in_flight_delivery {
    std::shared_ptr<send_op> op;
    std::size_t index;  ///< in op->deliveries
    /// Its link's state. A sender_state is erased only when idle (nothing of it in flight),
    /// after sender_gone has taken its deliveries out, or with all of in_flight when the
    /// connection is lost, so this never outlives it.
    sender_state* sender;
  };
  sequence_table<in_flight_delivery> in_flight;
  std::uint64_t next_tag = 1;

  // -- receivers --
  struct receive_op {
    std::size_t max;
    once<result<std::vector<inbound>>> done;
  };
  struct held_delivery {
    inbound item;
    delivery_handle delivery;
    /// When the message's time-to-live runs out while qrt holds it unasked (prefetch): its
    /// arrival plus the header's ttl. The broker's own clock started earlier, so this is never
    /// before the broker would expire it: qrt gives back late, never early.
    time_point expires = time_point::max();
    std::uint64_t bytes = 0;  ///< the delivery's encoded size, counted in the prefetch budget
  };
  /// One settle() call: its items' results, and how many still wait for the peer.
  struct settle_op {
    std::vector<std::optional<result<void>>> results;
    std::size_t pending = 0;
    once<result<std::vector<result<void>>>> done;
    bool finished = false;
  };
  /// An outcome sent unsettled (rcv-settle-mode second), waiting for the peer's settlement.
  /// `op` is null once the call that sent it timed out; a retry of the same receipt adopts it.
  struct confirming_settle {
    delivery_handle delivery;
    std::uint64_t seq = 0;
    std::shared_ptr<settle_op> op;
    std::size_t index = 0;
    outcome::kind sent = outcome::kind::accepted;
  };
  struct receiver_state {
    std::string id;
    receiver_spec spec;
    proton::receiver link;
    std::uint64_t instance = 0;
    bool open = false;
    front_queue<held_delivery> buffered;
    std::uint64_t buffered_bytes = 0;  ///< the sum of buffered[i].bytes
    /// How many of `buffered` have a time-to-live: give_back_expired walks the buffer only
    /// then, not on every batch of deliveries.
    std::size_t buffered_expiring = 0;
    /// Deliveries handed out to callers and not yet settled, by sequence number.
    sequence_table<delivery_handle> handed_out;
    std::unordered_map<pn_delivery_t*, confirming_settle> confirming;  ///< by delivery
    std::deque<std::shared_ptr<receive_op>> waiting;
    std::vector<once<result<link_info>>> open_waiters;
    std::uint64_t next_seq = 1;
    /// spec.report_refusals: why the link refused a delivery since a receive last heard it.
    std::optional<error> refused;
    /// A probe's link (probe()): detached as soon as the broker answers its attach.
    bool probe = false;
  };
  std::map<std::string, receiver_state> receivers;  ///< by link id
  /// Link -> link id, by the C object: every delivery event looks its receiver up, and
  /// proton::link::name() would copy the name each time.
  std::unordered_map<pn_link_t*, std::string> receiver_by_link;
  std::unordered_map<std::uint64_t, std::string> live_instances;  ///< instance -> link id
  std::uint64_t next_instance = 1;

  // -- request/response nodes --
  struct pending_request {
    once<result<proton::message>> done;
    request_kind kind;
    bool sent = false;  ///< handed to the link: the node may have acted on it
    /// A graceful close waits for its reply: without it the caller can only be told that the
    /// change may or may not have been applied. A read, or a request not sent, is not waited for.
    bool awaits_reply_at_close() const { return sent && kind.changes_state && !done.done(); }
  };
  struct rpc_node {
    std::string node;
    proton::sender out;
    proton::receiver in;
    std::string reply_to;
    bool in_open = false;
    std::deque<std::pair<proton::message, std::string>> unsent;  ///< waiting for credit/attach
    std::map<std::string, pending_request> pending;              ///< by message-id
    std::uint64_t last_use = 0;                                  ///< use_clock at the last request
    bool idle() const { return pending.empty() && unsent.empty(); }
  };
  std::map<std::string, rpc_node> rpc_nodes;                 ///< by node address
  std::unordered_map<std::string, std::string> rpc_by_name;  ///< link name -> node
  std::uint64_t next_request = 1;

  // -- what the connection holds, against endpoint::max_links and max_prefetch_bytes --
  std::uint64_t prefetched_bytes = 0;  ///< the sum of every receiver's buffered_bytes
  std::uint64_t peak_committed_bytes = 0;
  bool credit_withheld = false;  ///< the budget gave some link less credit than it wanted
  std::size_t peak_links = 0;
  std::uint64_t use_clock = 0;  ///< orders senders and nodes by last use
  /// A send or request waiting for a link to free up under max_links.
  struct link_waiter {
    std::function<bool()> finished;  ///< the call ended meanwhile (its timeout): drop it
    std::function<void()> resume;    ///< there is room now: attach and go on
    std::function<void(const error&)> fail;
  };
  std::deque<link_waiter> link_waiters;
  bool link_waiters_scheduled = false;

  // ---------- connecting ----------

  proton::connection_options options() const;

  /// Calls `fn(nullptr)` once connected, or `fn(&error)` when the attempt fails or `timeout`
  /// passes first.
  void when_open(milliseconds timeout, std::function<void(const error*)> fn);

  void start_connect();

  /// Takes the deliveries qrt decodes itself, then runs Proton's pending events. What a handler
  /// throws (a Proton conversion error on something the peer sent, or any other bug) goes no
  /// further: left alone, it would unwind out of the engine into the transport and stop the
  /// connection's reads. The connection is dropped with the reason instead: calls waiting on it
  /// fail, and the next one reconnects. False when it was dropped.
  bool dispatch_events();

  /// The message format of the delivery tagged `tag`, if it is a batch (asked by
  /// outbound_frames on the delivery's first transfer frame).
  std::optional<std::uint32_t> format_of(std::span<const std::uint8_t> tag);

  void on_connection_open(proton::connection& c) override;

  void on_transport_error(proton::transport& t) override;

  void on_connection_error(proton::connection& c) override;

  void on_connection_close(proton::connection& c) override;

  void on_transport_close(proton::transport& t) override;

  /// Everything tied to the connection is gone: fail what waits on it, forget links (their
  /// receipts expire), and space out the next attempt.
  void connection_lost(error e);

  // ---------- sending ----------

  void send(std::shared_ptr<send_op> op, milliseconds timeout);

  /// Hands the call to the sender link of its address, attaching one when there is none; at
  /// the link cap with every link busy, the call waits for one (its timeout still runs).
  void start_send(const std::shared_ptr<send_op>& op);

  // ---------- the link cap (endpoint::max_links) ----------

  std::size_t links_held() const;
  void note_links_held() { peak_links = std::max(peak_links, links_held()); }

  /// Makes room for `count` more links under the cap by closing the least recently used idle
  /// senders and request/response nodes (they attach again when next used). Receivers are
  /// never closed for room: a receiver's link holds its prefetch and, on Service Bus, a session
  /// lock. False when every link is busy.
  bool make_room_for_links(std::size_t count);

  /// True when `count` new links may attach now: no session is held (sessions_held) and there
  /// is room under the cap. Making room may end an idle link's session, so the hold is asked
  /// again after it.
  bool links_may_attach(std::size_t count) {
    return !sessions_held() && make_room_for_links(count) && !sessions_held();
  }

  /// The idle entry of `links` (senders or request/response nodes) used longest ago, or end().
  template <class Links>
  static typename Links::iterator least_recently_used_idle(Links& links) {
    auto oldest = links.end();
    for (auto it = links.begin(); it != links.end(); ++it) {
      if (it->second.idle() &&
          (oldest == links.end() || it->second.last_use < oldest->second.last_use))
        oldest = it;
    }
    return oldest;
  }

  /// A link may have freed up: the waiting calls are served at the end of the entry point
  /// (pump), never inside the handler that freed it (it may be walking the links).
  void link_freed();

  /// Resumes the calls waiting for a link, oldest first, as long as there is room. A lost
  /// connection has failed them all (connection_lost).
  void serve_link_waiters();

  void send_pending(sender_state& s);

  void on_sendable(proton::sender& s) override;

  void record(const std::shared_ptr<send_op>& op, std::size_t index, result<void> outcome);

  void fail_unsent(send_op& op, const error& e);

  /// The link is gone: a call that sent nothing fails as a whole; otherwise its unsent
  /// messages fail with `e` and the call finishes once no outcome is pending.
  void abort_send(send_op& op, const error& e);

  /// Nothing was sent: the whole call fails.
  void finish_whole(send_op& op, const error& e);

  void finish(send_op& op);

  std::optional<in_flight_delivery> take_in_flight(const proton::tracker& t);

  void on_tracker_accept(proton::tracker& t) override;
  void on_tracker_reject(proton::tracker& t) override;
  void on_tracker_release(proton::tracker& t) override;
  void on_tracker_settle(proton::tracker& t) override;

  void on_sender_error(proton::sender& s) override { sender_gone(s, s.error()); }
  void on_sender_close(proton::sender& s) override { sender_gone(s, s.error()); }

  void sender_gone(proton::sender& s, const proton::error_condition& condition);

  // ---------- receiving ----------

  /// The receiver link `id`, attached with `spec` when there is none; an error when the link
  /// cap leaves no room for it (receivers do not wait: one held for good would block the rest);
  /// nullptr when a new link must wait for the broker to answer an end (sessions_held): the
  /// caller queues itself in link_waiters. A probe's link goes on the probe session when that
  /// is free (see probe_session).
  result<receiver_state*> attach_receiver(const std::string& id, const receiver_spec& spec,
                                          bool probe = false);

  receiver_state* receiver_of(const proton::receiver& link);

  /// Grants credit so that buffered + handed out + outstanding credit reaches the prefetch, or
  /// so that a waiting receive call can be served in full, within the connection's prefetch
  /// budget (endpoint::max_prefetch_bytes). A link with a waiting receive and nothing buffered
  /// or credited always gets one credit: the budget slows a call down, never starves it. None
  /// once shutdown() has begun.
  void replenish(receiver_state& r);

  /// What one credit may bring: a delivery of up to the link's max-message-size.
  std::uint64_t credit_bytes(const receiver_spec& spec) const;

  /// The bytes the prefetch holds or has asked for: buffered deliveries plus every link's
  /// outstanding credit at its max-message-size.
  std::uint64_t committed_prefetch_bytes() const;

  /// Prefetched bytes were handed out or given back: links the budget held back may take more
  /// now. Nothing to do (the common case, on every receive) unless credit was withheld.
  void prefetch_budget_freed();

  void receive(const std::string& id, const receiver_spec& spec, std::size_t max, milliseconds wait,
               once<result<std::vector<inbound>>> done);

  /// A prefetched message whose time-to-live ran out in qrt's buffer is never handed out: it is
  /// released to the broker, which owns expiry (drops it, or dead-letters it as expired where
  /// the queue says so) by the same rule as for a message it never sent (docs/amqp.md).
  void give_back_expired(receiver_state& r);
  /// A link closed by qrt (its receiver closed, or the connection shut down) gives back what it
  /// prefetched and never handed out, released: the broker can deliver those messages to another
  /// receiver at once. Left to the detach, a broker that holds their locks until they run out
  /// keeps them from everyone meanwhile, and one that counts the detach as a failed delivery
  /// (Service Bus) counts one for messages no application ever saw.
  void release_buffered(receiver_state& r);

  void hand_out(receiver_state& r, receive_op& op);

  /// `h` leaves the buffer (handed out or given back): the counts it was part of drop.
  void unbuffer(receiver_state& r, const held_delivery& h);

  void on_message(proton::delivery& d, proton::message& m) override;

  /// Takes the whole deliveries waiting on receiver links and decodes them with the pure codec
  /// (message_codec.hpp), before Proton's dispatch would: its C++ adapter decodes every readable
  /// delivery into a proton::message before on_message, most of a receive's CPU. A delivery
  /// taken here is no longer readable, so the adapter's event for it does nothing.
  void take_deliveries();
  std::string scratch;  ///< a delivery's bytes while it is decoded

  void refuse_oversize(receiver_state& r, pn_delivery_t* d);
  /// Keeps why `r` refused a delivery for the next receive, where spec.report_refusals.
  void note_refusal(receiver_state& r, errc code, const std::string& what);
  /// Fails `op` with the refusal `r` keeps, and forgets it.
  void report_refusal(receiver_state& r, receive_op& op);

  void on_receiver_open(proton::receiver& link) override;

  void on_receiver_error(proton::receiver& link) override { receiver_gone(link, link.error()); }
  void on_receiver_close(proton::receiver& link) override { receiver_gone(link, link.error()); }

  void receiver_gone(proton::receiver& link, const proton::error_condition& condition);

  void forget_receiver(const std::string& id);

  void open_receiver(const std::string& id, const receiver_spec& spec, milliseconds timeout,
                     once<result<link_info>> done);

  // ---------- probes: does an address exist now? ----------
  //
  // A probe is a creditless receiver attach, detached as soon as the broker answers it. On a
  // session of its own it would cost a begin, an attach, a detach and an end, each answered,
  // and the end holds every new session back until it is answered (sessions_held). So probes
  // share one session, kept for them, and a probe answered there costs an attach and a detach.
  // RabbitMQ ends the whole session when it refuses an attach (a missing queue), and its end
  // does not say which attach it refused: so the probe session carries one unanswered attach at
  // a time, and the end is that probe's answer. A probe that finds the session busy goes on a
  // session of its own, ended with its link, as every probe once did.

  void probe(const std::string& address, milliseconds timeout, once<result<void>> done);
  /// The broker answered the probe `r` (or it timed out): its link detaches and is forgotten.
  void end_probe(receiver_state& r);
  /// Whether the probe session is there to attach on: begun on this connection, not ended,
  /// and no probe waiting on it for the broker's answer.
  bool probe_session_free() const;
  proton::session probe_session;  ///< null until the first probe, and after it ended
  std::string probe_waiting;      ///< the link id of the probe awaiting its answer on it
  std::uint64_t next_probe = 1;

  /// Settles one delivery, or sends its outcome and registers it with `op` to wait for the
  /// peer's confirmation (nullopt then). The link it came from is added to `settled_on` (once):
  /// the caller replenishes those links' credit after the whole call, not once per delivery.
  std::optional<result<void>> settle_one(const delivery_ref& ref, const outcome& how,
                                         const std::shared_ptr<settle_op>& op, std::size_t index,
                                         std::vector<receiver_state*>& settled_on);

  void record_settle(settle_op& op, std::size_t index, result<void> outcome);

  void finish_settle(settle_op& op);

  /// The peer settled a delivery we sent an outcome for: that is the confirmation (or refusal).
  void on_delivery_settle(proton::delivery& d) override;

  /// The connection is going away: every message sent and still waiting for its outcome fails
  /// as unconfirmed (the broker may have stored it), with `cause` as the reason.
  void fail_in_flight_unconfirmed(const error& cause);

  /// The link is going away: outcomes still waiting for the peer will never be confirmed, and
  /// fail as unconfirmed (the peer may have applied them), with `cause` as the reason.
  void fail_confirming(receiver_state& r, const error& cause);

  /// Bounds how long a settle() waits for the peer's confirmations.
  void time_out_settle(const std::shared_ptr<settle_op>& op, milliseconds timeout);

  // ---------- request / response ----------

  void request(const std::string& node, proton::message m, request_kind kind, milliseconds timeout,
               once<result<proton::message>> done);

  /// Sends the request on the node's links, attaching them when there are none; at the link
  /// cap with every link busy, the request waits for room (bounded by its timeout).
  void start_request(const std::string& node, proton::message m, request_kind kind,
                     milliseconds timeout, once<result<proton::message>> done);

  /// Fails `pending`, requests to `node` that will never be answered, for `cause`: one sent that
  /// changes state as unconfirmed (the node may have applied it); a read, or one never sent,
  /// with the cause and whether it went out (nothing was changed).
  void fail_pending_requests(const std::string& node,
                             std::map<std::string, pending_request> pending, const error& cause);

  /// At the start of a graceful close: fails closed, at once, the requests to `n` whose reply
  /// the close does not wait for (awaits_reply_at_close), and drops those not sent, which
  /// would otherwise go out on credit that comes during the close.
  void fail_requests_not_awaited(rpc_node& n);

  void send_requests(rpc_node& n);

  void rpc_response(const std::string& node, proton::delivery& d, proton::message& m);

  /// A reply growing past max_reply_bytes is refused before more of it is buffered. Which
  /// request it answers is in the part not yet read, so every request waiting on that node
  /// fails, and the node is attached afresh for the next one.
  void refuse_oversize_replies();

  void drop_rpc_node(std::map<std::string, rpc_node>::iterator nit, const error& e);

  void rpc_link_gone(proton::link& link, const proton::error_condition& condition);

  // ---------- sessions: one per link ----------
  //
  // Each link gets its own session because brokers end the whole session for a link-level
  // problem (RabbitMQ 3.10: amqp:not-found for a missing queue, amqp:invalid-field for
  // `modified`); with one session per link the error belongs to exactly one link.

  /// Closes the link and ends its session.
  void end_link(proton::link link);

  // A session's channel number is free for Proton again the moment qrt sends the session's end,
  // while the broker's last frames on that session (its detach, its end) may still be on their
  // way. RabbitMQ 3.10 answers each session on the channel number the client began it on and
  // writes the frames of different sessions independently, so a session begun on a reused
  // number can be handed the old session's detach (its link then reads as detached by the
  // broker) or frames for a handle it never attached (Proton closes the connection: "no such
  // handle"). So while an end qrt sent is unanswered no session begins: a call that needs a new
  // link waits with the calls waiting for room under max_links (link_waiters), and they go on
  // once the last such end is answered, or after unanswered_end_wait (engine.hpp): RabbitMQ now
  // and then never answers an end, and that must not hold every new link back for long.
  struct unanswered_end {
    std::uint64_t id = 0;
    proton::session session;
  };
  std::vector<unanswered_end> unanswered_ends;
  std::uint64_t next_end_id = 1;

  /// True while no new session may begin (see above).
  bool sessions_held() const { return !unanswered_ends.empty(); }
  /// The broker answered the end of `ssn`: the calls waiting for a link may go on once it was
  /// the last unanswered one.
  void end_answered(const proton::session& ssn);
  void forget_unanswered_end(std::uint64_t id);

  void on_session_error(proton::session& ssn) override { session_ended(ssn); }
  void on_session_close(proton::session& ssn) override { session_ended(ssn); }
  /// A session's end came from the broker: its links are gone, or (closing gracefully) one
  /// fewer session to wait for before the close frame.
  void session_ended(proton::session& ssn);

  void session_gone(proton::session& ssn);

  /// Proton's default throws out of the handler; every error is handled where it
  /// belongs (transport, connection, session, link), so there is nothing left to do here.
  void on_error(const proton::error_condition&) override {}

  // ---------- shutdown ----------

  void shutdown(std::function<void()> closed);
  /// Closing gracefully, once no answers are owed (answers_owed()): the sessions end.
  void end_sessions_once_answered();
  /// Closing gracefully: once the broker has ended every session, the close frame goes out.
  void close_when_sessions_ended();
  /// The stream is let go; a sent message still without its outcome, and a settlement still
  /// without its confirmation, fail as unconfirmed (`cause` says why no answer came: the
  /// connection lost, or close_timeout), every other pending call with errc::closed;
  /// closed_waiters run.
  void finish_shutdown(std::optional<error> cause = std::nullopt);
};

/// The engine's files define the members as `core::...`.
using core = engine::core;

}  // namespace qrt::amqp::detail
