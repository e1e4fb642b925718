// The engine's receivers (engine_core.hpp): attaching a receiver link, granting credit by hand
// within the link's prefetch and the connection's prefetch budget, taking whole deliveries off
// the links and decoding them with the pure codec, and handing them to receive calls.
#include <proton/receiver_options.hpp>
#include <proton/source_options.hpp>
#include <string>

#include "amqp/engine_core.hpp"
#include "amqp/mapping.hpp"
#include "amqp/message_codec.hpp"

namespace qrt::amqp::detail {

auto core::attach_receiver(const std::string& id, const receiver_spec& spec, bool probe)
    -> result<receiver_state*> {
  if (auto it = receivers.find(id); it != receivers.end()) return &it->second;
  // A link on the probe session begins no session: an unanswered end does not hold it back.
  const bool shared = probe && probe_session_free();
  if (!shared && sessions_held()) return nullptr;
  if (!make_room_for_links(1)) {
    error e = fail(errc::provider_error,
                   "no room for the receiver link on '" + spec.address + "': the connection to '" +
                       where.display() + "' holds " + std::to_string(links_held()) +
                       " links, all in use (max_links " + std::to_string(where.max_links) + ")");
    e.kind = error_kind::transient;
    return e;
  }
  if (!shared && sessions_held()) return nullptr;  // making room ended an idle link's session
  receiver_state& r = receivers.try_emplace(id).first->second;
  r.id = id;
  r.spec = spec;
  r.probe = probe;
  r.instance = next_instance++;
  const std::string name = "qrt-r-" + std::to_string(r.instance);
  proton::receiver_options ro;
  proton::source_options so;
  so.address(spec.address);
  if (!spec.filters.empty()) so.filters(spec.filters);
  if (spec.durable) {
    so.durability_mode(proton::source::UNSETTLED_STATE);
    so.expiry_policy(proton::source::NEVER);
  }
  ro.source(so);
  ro.name(name);
  ro.credit_window(0);  // credit by hand: see replenish()
  ro.auto_accept(false);
  ro.delivery_mode(proton::delivery_mode::AT_LEAST_ONCE);
  if (!spec.properties.empty()) ro.properties(spec.properties);
  proton::session ssn;
  if (shared) {
    ssn = probe_session;
  } else {
    ssn = conn.open_session();
    // The first probe, or the first since the probe session ended, begins the next one.
    if (probe && probe_waiting.empty()) probe_session = ssn;
  }
  if (probe && ssn == probe_session) probe_waiting = id;
  r.link = ssn.open_receiver(spec.address, ro);
  // Still before the attach frame goes out: frames are collected when the entry point pumps.
  if (spec.confirm_settlement) request_settle_second(r.link);
  announce_max_message_size(r.link, spec.max_message_size);
  receiver_by_link[proton::internal::factory<proton::link>::unwrap(r.link)] = id;
  live_instances[r.instance] = id;
  note_links_held();
  return &r;
}

auto core::receiver_of(const proton::receiver& link) -> receiver_state* {
  auto it = receiver_by_link.find(proton::internal::factory<proton::link>::unwrap(link));
  if (it == receiver_by_link.end()) return nullptr;
  auto rit = receivers.find(it->second);
  return rit == receivers.end() ? nullptr : &rit->second;
}

void core::replenish(receiver_state& r) {
  // Closing: nothing that came on new credit could be handed out (shutdown()).
  if (shutting_down || !r.open || !r.link.active()) return;
  // Negative when the peer sent past the credit (credit_increment): none is outstanding, and
  // what it sent is counted in the buffer.
  const long link_credit = r.link.credit();
  const long credit = std::max(link_credit, 0L);
  const long buffered = static_cast<long>(r.buffered.size());
  const long locked = buffered + static_cast<long>(r.handed_out.size()) + credit;
  const long for_prefetch = static_cast<long>(r.spec.prefetch) - locked;
  // A receive may ask for any number (SIZE_MAX: "all there is"); a link's credit is a 32-bit
  // count, and a larger ask read as a long or cut to 32 bits would ask for nothing.
  const long asked = static_cast<long>(
      std::min<std::size_t>(r.waiting.empty() ? 0 : r.waiting.front()->max, INT32_MAX));
  const long for_demand = r.waiting.empty() ? 0 : asked - (buffered + credit);
  long add = std::max({for_prefetch, for_demand, 0L});
  if (add > 0 && where.max_prefetch_bytes > 0) {
    const std::uint64_t committed = committed_prefetch_bytes();
    const std::uint64_t room =
        committed < where.max_prefetch_bytes ? where.max_prefetch_bytes - committed : 0;
    const long wanted = add;
    add = std::min<long>(add, static_cast<long>(std::min<std::uint64_t>(room / credit_bytes(r.spec),
                                                                        std::uint64_t{INT32_MAX})));
    if (add == 0 && !r.waiting.empty() && buffered == 0 && credit == 0) add = 1;
    if (add < wanted) credit_withheld = true;
    peak_committed_bytes = std::max(
        peak_committed_bytes, committed + static_cast<std::uint64_t>(add) * credit_bytes(r.spec));
  }
  if (add > 0) r.link.add_credit(credit_increment(link_credit, add));
}

std::uint64_t core::credit_bytes(const receiver_spec& spec) const {
  if (spec.max_message_size > 0) return spec.max_message_size;
  return std::max<std::uint64_t>(where.max_prefetch_bytes, 1);  // unbounded: one credit fills it
}

std::uint64_t core::committed_prefetch_bytes() const {
  std::uint64_t committed = prefetched_bytes;
  for (const auto& [id, r] : receivers) {
    if (r.link && r.link.active() && r.link.credit() > 0)
      committed += static_cast<std::uint64_t>(r.link.credit()) * credit_bytes(r.spec);
  }
  return committed;
}

void core::prefetch_budget_freed() {
  if (!credit_withheld) return;
  credit_withheld = false;  // set again by any link the budget still holds back
  for (auto& [id, r] : receivers) replenish(r);
}

void core::receive(const std::string& id, const receiver_spec& spec, std::size_t max,
                   milliseconds wait, once<result<std::vector<inbound>>> done) {
  auto op = std::make_shared<receive_op>(receive_op{max, done});
  // The caller's wait bounds the connect too; a connect needs a few round trips, so it gets
  // at least the connect timeout when the wait is shorter.
  const milliseconds connect_budget = std::max(wait, where.connect_timeout);
  when_open(connect_budget, [this, id, spec, max, op, wait](const error* e) {
    if (e) {
      op->done(*e);
      return;
    }
    auto attached = attach_receiver(id, spec);
    if (!attached) {
      op->done(attached.error());
      return;
    }
    if (!*attached) {
      link_waiters.push_back(
          link_waiter{[op] { return op->done.done(); },
                      [this, id, spec, max, wait, op] { receive(id, spec, max, wait, op->done); },
                      [op](const error& why) { op->done(why); }});
      return;
    }
    receiver_state& r = **attached;
    give_back_expired(r);
    if (!r.buffered.empty()) {
      hand_out(r, *op);
      return;
    }
    if (r.refused) {
      report_refusal(r, *op);
      return;
    }
    r.waiting.push_back(op);
    replenish(r);
    std::weak_ptr<receive_op> weak = op;
    auto wait_for_messages = [this, id, weak, wait] {
      after(wait, weak, [this, id, weak] {
        auto op = weak.lock();
        if (!op || op->done.done()) return;
        op->done(std::vector<inbound>{});
        auto it = receivers.find(id);
        if (it == receivers.end()) return;
        auto& w = it->second.waiting;
        w.erase(std::remove(w.begin(), w.end(), op), w.end());
      });
    };
    if (r.open) {
      wait_for_messages();
      return;
    }
    // The wait for messages starts once the broker has answered the attach: a short wait would
    // otherwise end before a refusal (a missing queue or subscription) arrives and read as "no
    // messages". A refusal fails the waiting receive itself (receiver_gone); an attach left
    // unanswered is bounded by the connect timeout.
    r.open_waiters.push_back(once<result<link_info>>([wait_for_messages](result<link_info> open) {
      if (open) wait_for_messages();
    }));
    const milliseconds attach_budget = where.connect_timeout;
    after(attach_budget, weak, [this, weak, id, attach_budget] {
      auto op = weak.lock();
      if (!op || op->done.done()) return;
      auto it = receivers.find(id);
      if (it != receivers.end() && it->second.open) return;  // answered: the wait runs
      if (it != receivers.end()) {
        auto& w = it->second.waiting;
        w.erase(std::remove(w.begin(), w.end(), op), w.end());
      }
      op->done(fail(errc::timeout, "attaching receiver link '" + id + "' took longer than " +
                                       std::to_string(attach_budget.count()) + " ms"));
    });
  });
}

void core::give_back_expired(receiver_state& r) {
  if (r.buffered_expiring == 0) return;  // nothing buffered has a time-to-live
  const auto before = r.buffered.size();
  r.buffered.erase_if([&](held_delivery& h) {
    if (h.expires > now) return false;
    send_outcome(h.delivery.get(), outcome::released(), true);
    unbuffer(r, h);
    return true;
  });
  if (r.buffered.size() != before) {
    replenish(r);
    prefetch_budget_freed();
  }
}

void core::release_buffered(receiver_state& r) {
  while (!r.buffered.empty()) {
    held_delivery& h = r.buffered.front();
    send_outcome(h.delivery.get(), outcome::released(), true);
    unbuffer(r, h);
    r.buffered.pop_front();
  }
}

void core::hand_out(receiver_state& r, receive_op& op) {
  std::vector<inbound> out;
  const std::size_t n = std::min(op.max, r.buffered.size());
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    // Moved out of the buffer straight into the answer: a decoded message is a dozen strings.
    held_delivery& h = r.buffered.front();
    unbuffer(r, h);
    r.handed_out.add(h.item.ref.seq, std::move(h.delivery));
    out.push_back(std::move(h.item));
    r.buffered.pop_front();
  }
  op.done(std::move(out));
  prefetch_budget_freed();
}

void core::unbuffer(receiver_state& r, const held_delivery& h) {
  r.buffered_bytes -= h.bytes;
  prefetched_bytes -= h.bytes;
  if (h.expires != time_point::max()) --r.buffered_expiring;
}

void core::on_message(proton::delivery& d, proton::message& m) {
  const proton::receiver link = d.receiver();
  if (auto rit = rpc_by_name.find(link.name()); rit != rpc_by_name.end()) {
    rpc_response(rit->second, d, m);
    return;
  }
  // Receiver links' deliveries are taken before dispatch (take_deliveries), so what reaches
  // here is for a link qrt no longer holds: give it back to the broker.
  (void)m;
  d.release();
}

void core::take_deliveries() {
  refuse_oversize_replies();
  for (auto& [id, r] : receivers) {
    if (!r.link) continue;
    bool took = false;
    for (;;) {
      if (drop_aborted_delivery(r.link)) {
        took = true;  // its sender gave it up: nothing to hand out, and its credit is free again
        continue;
      }
      if (auto big = take_oversize_delivery(r.link, r.spec.max_message_size)) {
        // Larger than the link announced it takes: refused (Service Bus dead-letters it)
        // before the rest of it is buffered.
        took = true;
        refuse_oversize(r, big->get());
        continue;
      }
      auto d = take_complete_delivery(r.link, scratch);
      if (!d) break;
      took = true;
      // Decoded in place, in the buffer: a message is a dozen strings, not moved there.
      held_delivery& held = r.buffered.emplace_back();
      auto decoded = decode_message_into(
          std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(scratch.data()),
                                        scratch.size()),
          held.item.message);
      if (!decoded) {
        r.buffered.pop_back();
        // Not a message qrt can read: refuse it with the reason rather than drop it or fail
        // the link. Service Bus dead-letters a rejected message, taking the reason from the
        // info map; other brokers dead-letter or drop it per their policy (docs/amqp.md).
        const std::string why = decoded.error().message;
        send_outcome(d->get(),
                     outcome::rejected("amqp:decode-error", why,
                                       {{"DeadLetterReason", "amqp:decode-error"},
                                        {"DeadLetterErrorDescription", why}}),
                     true);
        note_refusal(r, errc::protocol_error,
                     "a message on '" + r.spec.address + "' that qrt cannot decode (" + why + ")");
        continue;
      }
      const auto tag = delivery_tag(d->get());
      held.item.tag.assign(reinterpret_cast<const char*>(tag.data()), tag.size());
      held.item.ref = delivery_ref{r.instance, r.next_seq++};
      held.delivery = std::move(*d);
      if (const auto ttl = held.item.message.message.time_to_live) held.expires = now + *ttl;
      if (held.expires != time_point::max()) ++r.buffered_expiring;  // as unbuffer() counts
      held.bytes = scratch.size();
      r.buffered_bytes += held.bytes;
      prefetched_bytes += held.bytes;
    }
    if (!took) continue;
    give_back_expired(r);
    while (!r.waiting.empty() && (!r.buffered.empty() || r.refused)) {
      auto op = r.waiting.front();
      r.waiting.pop_front();
      if (op->done.done()) continue;
      if (r.buffered.empty()) {
        report_refusal(r, *op);
      } else {
        hand_out(r, *op);
      }
    }
    replenish(r);
  }
}

void core::refuse_oversize(receiver_state& r, pn_delivery_t* d) {
  const std::string why = "the message is larger than the " +
                          std::to_string(r.spec.max_message_size) +
                          "-byte max-message-size of the receiver link on '" + r.spec.address + "'";
  send_outcome(d,
               outcome::rejected("amqp:link:message-size-exceeded", why,
                                 {{"DeadLetterReason", "amqp:link:message-size-exceeded"},
                                  {"DeadLetterErrorDescription", why}}),
               true);
  note_refusal(r, errc::message_too_large,
               "a message on '" + r.spec.address + "' larger than the " +
                   std::to_string(r.spec.max_message_size) + " bytes the receiver takes");
}

void core::note_refusal(receiver_state& r, errc code, const std::string& what) {
  if (!r.spec.report_refusals) return;
  // One error for however many were refused before a receive heard of it: the latest says why.
  r.refused = fail(code, what +
                             " was refused (rejected): the broker dead-letters it if the queue "
                             "has a dead-letter policy, and otherwise drops it");
  r.refused->kind = error_kind::transient;  // the receives after it go on
}

void core::report_refusal(receiver_state& r, receive_op& op) {
  auto e = std::move(*r.refused);
  r.refused.reset();
  op.done(std::move(e));
}

void core::on_receiver_open(proton::receiver& link) {
  // A refusal: the detach with the reason follows and fails whatever waits on this link.
  if (attach_refused(link)) return;
  if (auto it = rpc_by_name.find(link.name()); it != rpc_by_name.end()) {
    auto nit = rpc_nodes.find(it->second);
    if (nit != rpc_nodes.end()) {
      nit->second.in_open = true;
      send_requests(nit->second);
    }
    return;
  }
  receiver_state* r = receiver_of(link);
  if (!r) return;
  r->open = true;
  link_info info;
  info.instance = r->instance;
  info.remote_filters = link.source().filters();
  info.remote_properties = link.properties();
  auto waiters = std::move(r->open_waiters);
  r->open_waiters.clear();
  for (auto& w : waiters) w(info);
  if (r->probe) {
    end_probe(*r);  // answered: that was all it was for
    return;
  }
  replenish(*r);
}

void core::receiver_gone(proton::receiver& link, const proton::error_condition& condition) {
  if (rpc_by_name.count(link.name())) {
    rpc_link_gone(link, condition);
    return;
  }
  receiver_state* r = receiver_of(link);
  if (!r) return;
  const std::string id = r->id;
  error e = condition
                ? map_condition(condition, {"receive from", r->spec.address})
                : fail(errc::connection_failed,
                       "the broker detached the receiver link from '" + r->spec.address + "'");
  if (!condition) e.kind = error_kind::transient;
  for (auto& op : r->waiting) op->done(e);
  for (auto& w : r->open_waiters) w(e);
  fail_confirming(*r, e);
  end_link(link);
  forget_receiver(id);
}

void core::forget_receiver(const std::string& id) {
  auto it = receivers.find(id);
  if (it == receivers.end()) return;
  if (id == probe_waiting) probe_waiting.clear();
  live_instances.erase(it->second.instance);
  receiver_by_link.erase(proton::internal::factory<proton::link>::unwrap(it->second.link));
  prefetched_bytes -= it->second.buffered_bytes;
  receivers.erase(it);
  prefetch_budget_freed();
  link_freed();
}

void core::open_receiver(const std::string& id, const receiver_spec& spec, milliseconds timeout,
                         once<result<link_info>> done) {
  when_open(timeout, [this, id, spec, done, timeout](const error* e) {
    if (e) {
      done(*e);
      return;
    }
    auto attached = attach_receiver(id, spec);
    if (!attached) {
      done(attached.error());
      return;
    }
    if (!*attached) {
      link_waiters.push_back(
          link_waiter{[done] { return done.done(); },
                      [this, id, spec, timeout, done] { open_receiver(id, spec, timeout, done); },
                      [done](const error& why) { done(why); }});
      return;
    }
    receiver_state& r = **attached;
    if (r.open) {
      link_info info;
      info.instance = r.instance;
      info.remote_filters = r.link.source().filters();
      info.remote_properties = r.link.properties();
      done(info);
      return;
    }
    r.open_waiters.push_back(done);
    after(timeout, [done, id, timeout] {
      done(fail(errc::timeout, "attaching receiver link '" + id + "' took longer than " +
                                   std::to_string(timeout.count()) + " ms"));
    });
  });
}

bool core::probe_session_free() const {
  // An end from the broker has been handled (session_gone forgot the session) by the time a
  // call runs: every entry point dispatches what came in before it returns.
  return probe_session && probe_waiting.empty() && probe_session.active();
}

void core::probe(const std::string& address, milliseconds timeout, once<result<void>> done) {
  // Owned by the waiter on the link's attach: once that has run or is dropped with the link,
  // the probe's timeout is dropped unrun.
  auto op = std::make_shared<once<result<void>>>(done);
  when_open(timeout, [this, address, timeout, op](const error* e) {
    if (e) {
      (*op)(*e);
      return;
    }
    const std::string id = "probe:" + std::to_string(next_probe++);
    receiver_spec spec;
    spec.address = address;
    spec.prefetch = 0;  // never any credit: the broker has nothing to deliver on it
    auto attached = attach_receiver(id, spec, true);
    if (!attached) {
      (*op)(attached.error());
      return;
    }
    if (!*attached) {
      link_waiters.push_back(
          link_waiter{[op] { return op->done(); },
                      [this, address, timeout, op] { probe(address, timeout, *op); },
                      [op](const error& why) { (*op)(why); }});
      return;
    }
    receiver_state& r = **attached;
    r.open_waiters.push_back(once<result<link_info>>([op](result<link_info> answer) {
      if (answer) {
        (*op)(result<void>{});
      } else {
        (*op)(answer.error());
      }
    }));
    std::weak_ptr<once<result<void>>> weak = op;
    after(timeout, weak, [this, weak, id, address, timeout] {
      auto op = weak.lock();
      if (!op || op->done()) return;
      (*op)(fail(errc::timeout, "probing '" + address + "' took longer than " +
                                    std::to_string(timeout.count()) + " ms"));
      auto it = receivers.find(id);
      if (it == receivers.end()) return;
      // Its answer may still come, and a refusal would end the probe session: the session
      // is left to this probe, and ended with it, and the next probe begins another.
      if (it->second.link.session() == probe_session) probe_session = proton::session();
      end_probe(it->second);
    });
  });
}

void core::end_probe(receiver_state& r) {
  const std::string id = r.id;
  for (auto& w : r.open_waiters) w(closed_error());
  end_link(r.link);
  forget_receiver(id);
}

}  // namespace qrt::amqp::detail
