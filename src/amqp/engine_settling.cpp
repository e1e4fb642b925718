// The engine's settlements (engine_core.hpp): a receipt finds its delivery on the link instance
// that delivered it (or is refused: expired with its link, unknown, already settled); on links
// attached with rcv-settle-mode second the outcome goes out unsettled and the call waits for the
// peer's settlement, which confirms or refuses it.
#include <proton/delivery.h>
#include <proton/disposition.h>

#include <algorithm>
#include <string>

#include "amqp/engine_core.hpp"
#include "amqp/mapping.hpp"

namespace qrt::amqp::detail {
namespace {

const char* outcome_name(outcome::kind k) {
  switch (k) {
    case outcome::kind::accepted:
      return "accepted";
    case outcome::kind::released:
      return "released";
    case outcome::kind::modified:
      return "modified";
    case outcome::kind::rejected:
      return "rejected";
  }
  return "unknown";
}

}  // namespace

std::optional<result<void>> core::settle_one(const delivery_ref& ref, const outcome& how,
                                             const std::shared_ptr<settle_op>& op,
                                             std::size_t index,
                                             std::vector<receiver_state*>& settled_on) {
  // The call's deliveries almost always come from a link it already settled on: found there
  // without the two lookups (instance -> link id -> receiver) per delivery.
  auto same_link = std::find_if(settled_on.begin(), settled_on.end(),
                                [&](const receiver_state* s) { return s->instance == ref.link; });
  receiver_state* found = same_link != settled_on.end() ? *same_link : nullptr;
  if (!found) {
    auto live = live_instances.find(ref.link);
    if (live == live_instances.end()) {
      if (ref.link == 0 || ref.link >= next_instance) {
        return result<void>{
            fail(errc::invalid_receipt, "the receipt was not issued by this AMQP connection")};
      }
      return result<void>{
          fail(errc::receipt_expired,
               "the receipt expired: the link that delivered the message died "
               "(connection lost or link detached), so its lock is gone and the broker "
               "has released the message for redelivery")};
    }
    found = &receivers.at(live->second);
  }
  receiver_state& r = *found;
  std::optional<delivery_handle> taken = r.handed_out.take(ref.seq);
  if (!taken) {
    // Sent before by a call that timed out: wait for the same answer (the outcome cannot be
    // changed once sent). Another outcome is refused: the answer to come is the first's, and
    // reporting it as this one's would say, say, dead-lettered for a message completed.
    for (auto& [key, c] : r.confirming) {
      if (c.seq != ref.seq || c.op) continue;
      if (c.sent != how.type) {
        return result<void>{fail(errc::invalid_receipt,
                                 std::string("an earlier settlement of this delivery sent the "
                                             "outcome '") +
                                     outcome_name(c.sent) +
                                     "' and waits for the broker's confirmation; an outcome "
                                     "cannot be changed once sent")};
      }
      c.op = op;
      c.index = index;
      ++op->pending;
      return std::nullopt;
    }
    return result<void>{
        fail(errc::invalid_receipt, "the receipt is unknown or was already settled")};
  }
  delivery_handle d = std::move(*taken);
  // Wait for the peer only when it agreed to rcv-settle-mode second in its attach; a broker
  // that answers "first" (RabbitMQ 3.10) never confirms, so settle at once there.
  const bool confirm = r.spec.confirm_settlement && settles_second(r.link);
  send_outcome(d.get(), how, !confirm);
  // The settle call's deliveries almost always share one link: it is noted once.
  if (std::find(settled_on.begin(), settled_on.end(), &r) == settled_on.end()) {
    settled_on.push_back(&r);
  }
  if (!confirm) return result<void>{};
  pn_delivery_t* key = d.get();
  r.confirming[key] = confirming_settle{std::move(d), ref.seq, op, index, how.type};
  ++op->pending;
  return std::nullopt;
}

void core::record_settle(settle_op& op, std::size_t index, result<void> outcome) {
  if (op.finished || op.results[index]) return;
  op.results[index] = std::move(outcome);
  if (op.pending > 0) --op.pending;
  if (op.pending == 0) finish_settle(op);
}

void core::finish_settle(settle_op& op) {
  if (op.finished) return;
  op.finished = true;
  op.done(results_of(op.results));
}

void core::on_delivery_settle(proton::delivery& d) {
  // Only outcomes we sent unsettled wait here (a timed-out one too, with no op: its late
  // answer still settles it). Anything else the peer settles on its own is left alone: the
  // delivery stays with its receipt, as before this event existed.
  receiver_state* r = receiver_of(d.receiver());
  if (!r) return;
  pn_delivery_t* pd = proton::internal::factory<proton::delivery>::unwrap(d);
  auto it = r->confirming.find(pd);
  if (it == r->confirming.end()) return;
  confirming_settle c = std::move(it->second);
  r->confirming.erase(it);
  pn_disposition_t* remote = pn_delivery_remote(pd);
  pn_condition_t* condition = pn_disposition_condition(remote);
  result<void> outcome;
  if (pn_condition_is_set(condition)) {
    const char* name = pn_condition_get_name(condition);
    const char* description = pn_condition_get_description(condition);
    outcome =
        map_condition(proton::error_condition(name ? name : "", description ? description : ""),
                      {"settle on", r->spec.address});
  } else if (pn_delivery_remote_state(pd) == PN_REJECTED && c.sent != outcome::kind::rejected) {
    outcome = fail(errc::provider_error,
                   "settle on '" + r->spec.address + "' failed: the broker rejected the outcome",
                   "amqp:rejected");
  }
  pn_delivery_settle(pd);
  if (c.op) record_settle(*c.op, c.index, std::move(outcome));
}

void core::fail_confirming(receiver_state& r, const error& cause) {
  auto pending = std::move(r.confirming);
  r.confirming.clear();
  // The outcome went out: the broker may have applied it or not.
  const error unconfirmed = unconfirmed_error(unconfirmed_kind::settlement, r.spec.address, cause);
  for (auto& [key, c] : pending) {
    if (c.op) record_settle(*c.op, c.index, unconfirmed);
  }
}

void core::time_out_settle(const std::shared_ptr<settle_op>& op, milliseconds timeout) {
  std::weak_ptr<settle_op> weak = op;
  after(timeout, weak, [this, weak, timeout] {
    auto op = weak.lock();
    if (!op || op->finished) return;
    const error e = fail(errc::timeout, "the broker did not confirm the settlement within " +
                                            std::to_string(timeout.count()) + " ms");
    // Every settlement still pending went out: the broker may have applied it. The deliveries
    // stay unsettled and waiting: a late answer settles them, and a retry of the same receipt
    // waits for that answer instead of failing as already settled.
    for (auto& [id, r] : receivers) {
      for (auto& [key, c] : r.confirming) {
        if (c.op != op) continue;
        if (!op->results[c.index]) {
          op->results[c.index] = unconfirmed_error(unconfirmed_kind::settlement, r.spec.address, e);
        }
        c.op.reset();
      }
    }
    for (auto& result : op->results) {
      if (!result) result = e;
    }
    op->pending = 0;
    finish_settle(*op);
  });
}

}  // namespace qrt::amqp::detail
