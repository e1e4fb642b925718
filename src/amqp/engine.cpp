// The engine's entry points (engine.hpp), the time and the bytes. Every entry point sets the
// time it was given, does its work, then pumps (core::pump): Proton's events run, what they
// produced is collected for the transport, and Proton's next deadline is read. That one rule
// is what lets the transport be a loop of "call, then write what there is, then wait for the
// next deadline or the next bytes".
#include "amqp/engine.hpp"

#include <cstring>
#include <string>

#include "amqp/engine_core.hpp"

namespace qrt::amqp::detail {

error closed_error() {
  return fail(errc::closed, "the AMQP connection has been closed");
}

std::vector<result<void>> results_of(std::vector<std::optional<result<void>>>& slots) {
  std::vector<result<void>> out;
  out.reserve(slots.size());
  for (auto& slot : slots) out.push_back(slot ? std::move(*slot) : result<void>{});
  return out;
}

engine::core::core(endpoint ep, connection_observer observer)
    : where(std::move(ep)), container_id(container_name(where)), observe(std::move(observer)) {}

// ---------- the time ----------

void engine::core::after(milliseconds delay, std::function<void()> fn) {
  deadlines.emplace(now + delay, deadline{std::move(fn), {}, false});
}

void engine::core::after(milliseconds delay, std::weak_ptr<const void> operation,
                         std::function<void()> fn) {
  deadlines.emplace(now + delay, deadline{std::move(fn), std::move(operation), true});
}

void engine::core::drop_finished_deadlines() {
  while (!deadlines.empty() && deadlines.begin()->second.for_operation &&
         deadlines.begin()->second.operation.expired()) {
    deadlines.erase(deadlines.begin());
  }
}

void engine::core::run_due() {
  // Deadlines still run while closing gracefully: close_timeout is one of them.
  while (!shutdown_finished && !deadlines.empty() && deadlines.begin()->first <= now) {
    auto fn = std::move(deadlines.begin()->second.fn);
    deadlines.erase(deadlines.begin());
    fn();
  }
}

// ---------- the bytes ----------

engine::core::attempt_io* engine::core::current(std::uint64_t attempt) const {
  return io && io->number == attempt ? io.get() : nullptr;
}

void engine::core::start_amqp() {
  io->driver.connect(options());
  io->amqp_started = true;
  conn = io->driver.connection();
}

void engine::core::pump() {
  if (link_waiters_scheduled) {
    link_waiters_scheduled = false;
    if (!shutting_down) serve_link_waiters();
  }
  if (!io || !io->amqp_started) return;
  attempt_io* const a = io.get();  // a handler that loses the connection retires it
  // Proton's idle-timeout bookkeeping (heartbeats out, a silent peer detected) needs tick() by
  // the deadline it returns; its clock is any monotonic one in milliseconds. Ticked before the
  // events run, so what it finds (a silent peer) is handled, and what it makes (a heartbeat)
  // written, in this same pump.
  const auto now_ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch());
  const proton::timestamp next = a->driver.tick(proton::timestamp(now_ms.count()));
  proton_deadline =
      next.milliseconds() == 0 ? time_point::max() : time_point(milliseconds(next.milliseconds()));
  if (!dispatch_events() || io.get() != a) return;  // dropped: retire() collected the rest
  if (awaiting_answers && !answers_owed()) {        // closing: the last answer came
    end_sessions_once_answered();
    if (!dispatch_events() || io.get() != a) return;
  }
  if (link_waiters_scheduled) {  // freed by a handler: served now, their frames go out too
    link_waiters_scheduled = false;
    serve_link_waiters();
    if (!dispatch_events() || io.get() != a) return;
  }
  collect_output(*a);
}

void engine::core::collect_output(attempt_io& a) {
  for (;;) {
    proton::io::const_buffer b = a.driver.write_buffer();
    if (b.size == 0) break;
    a.frames.write(std::span<const char>(b.data, b.size), a.output, !formats_to_write.empty());
    a.driver.write_done(b.size);
  }
}

void engine::core::retire() {
  if (!io) return;
  if (io->amqp_started) collect_output(*io);
  closing.push_back(closing_stream{io->number, std::move(io->output)});
  if (stream_wanted == io->number) stream_wanted.reset();
  // Kept until the entry point returns: a handler of its driver may be what retired it.
  retired.push_back(std::move(io));
  proton_deadline = time_point::max();
}

// ---------- engine: each entry point runs `work` at `now`, then pumps ----------

namespace {

template <class Work>
void run(engine::core& c, engine::time_point now, Work&& work) {
  c.now = std::max(c.now, now);  // never backwards: deadlines already passed stay passed
  work();
  c.pump();
  c.retired.clear();
  c.drop_finished_deadlines();  // before the caller asks for the next deadline
}

}  // namespace

engine::engine(endpoint where, connection_observer observe)
    : core_(std::make_unique<core>(std::move(where), std::move(observe))) {}

engine::~engine() = default;

void engine::connect(milliseconds timeout, time_point now, callback<result<void>> done) {
  run(*core_, now, [&] {
    core_->when_open(timeout, [done = std::move(done)](const error* e) {
      if (e) {
        done(*e);
      } else {
        done(result<void>{});
      }
    });
  });
}

void engine::send(std::string address, std::vector<outgoing_delivery> deliveries,
                  milliseconds timeout, time_point now,
                  callback<result<std::vector<result<void>>>> done) {
  run(*core_, now, [&] {
    if (deliveries.empty()) {
      done(std::vector<result<void>>{});
      return;
    }
    auto op = std::make_shared<core::send_op>(core::send_op{
        std::move(deliveries), 0, 0, {}, once(std::move(done)), false, std::move(address)});
    op->outcomes.resize(op->deliveries.size());
    core_->send(std::move(op), timeout);
  });
}

void engine::open_receiver(std::string link_id, receiver_spec spec, milliseconds timeout,
                           time_point now, callback<result<link_info>> done) {
  run(*core_, now, [&] { core_->open_receiver(link_id, spec, timeout, once(std::move(done))); });
}

void engine::probe(std::string address, milliseconds timeout, time_point now,
                   callback<result<void>> done) {
  run(*core_, now, [&] { core_->probe(address, timeout, once(std::move(done))); });
}

void engine::receive(std::string link_id, receiver_spec spec, std::size_t max, milliseconds wait,
                     time_point now, callback<result<std::vector<inbound>>> done) {
  run(*core_, now, [&] {
    if (max == 0) {
      done(std::vector<inbound>{});
      return;
    }
    core_->receive(link_id, spec, max, wait, once(std::move(done)));
  });
}

void engine::settle(std::vector<settle_item> items, milliseconds timeout, time_point now,
                    callback<result<std::vector<result<void>>>> done) {
  run(*core_, now, [&] {
    auto op = std::make_shared<core::settle_op>(core::settle_op{
        std::vector<std::optional<result<void>>>(items.size()), 0, once(std::move(done)), false});
    std::vector<core::receiver_state*> settled_on;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const auto& [ref, how] = items[i];
      if (auto immediate = core_->settle_one(ref, how, op, i, settled_on)) {
        op->results[i] = std::move(*immediate);
      }
    }
    // Credit once per link for the whole call: the same total as topping up after each
    // delivery, and Proton sends one flow frame for it either way.
    for (auto* r : settled_on) core_->replenish(*r);
    if (op->pending == 0) {
      core_->finish_settle(*op);
    } else {
      core_->time_out_settle(op, timeout);
    }
  });
}

void engine::close_receiver(const std::string& link_id, time_point now) {
  run(*core_, now, [&] {
    auto it = core_->receivers.find(link_id);
    if (it == core_->receivers.end()) return;
    const error e = fail(errc::closed, "the receiver link '" + link_id + "' was closed");
    for (auto& op : it->second.waiting) op->done(e);
    core_->fail_confirming(it->second, e);
    core_->release_buffered(it->second);
    core_->end_link(it->second.link);
    core_->forget_receiver(link_id);
  });
}

void engine::request(std::string node, proton::message request, milliseconds timeout,
                     time_point now, callback<result<proton::message>> done, request_kind kind) {
  run(*core_, now, [&] {
    core_->request(node, std::move(request), std::move(kind), timeout, once(std::move(done)));
  });
}

engine::usage engine::current_usage() const {
  usage u;
  u.links = core_->links_held();
  u.peak_links = core_->peak_links;
  u.prefetched_bytes = core_->prefetched_bytes;
  u.peak_committed_bytes = core_->peak_committed_bytes;
  return u;
}

void engine::shutdown(time_point now, std::function<void()> closed) {
  run(*core_, now, [&] { core_->shutdown(std::move(closed)); });
}

std::optional<std::uint64_t> engine::take_stream_request() {
  return std::exchange(core_->stream_wanted, std::nullopt);
}

void engine::stream_opened(std::uint64_t attempt, time_point now) {
  run(*core_, now, [&] {
    if (core_->current(attempt) && !core_->io->amqp_started) core_->start_amqp();
  });
}

void engine::stream_failed(std::uint64_t attempt, const error& why, time_point now) {
  run(*core_, now, [&] {
    auto* a = core_->current(attempt);
    if (!a) return;
    if (!a->amqp_started) {
      core_->connection_lost(why);  // never got as far as AMQP: the attempt's own error
      return;
    }
    a->driver.disconnected(proton::error_condition("proton:io", why.message));
  });
}

std::size_t engine::bytes_in(std::uint64_t attempt, std::span<const char> bytes, time_point now) {
  std::size_t used = 0;
  run(*core_, now, [&] {
    auto* a = core_->current(attempt);
    if (!a || !a->amqp_started) return;
    while (used < bytes.size()) {
      proton::io::mutable_buffer room = a->driver.read_buffer();
      if (room.size == 0) break;  // Proton reads no more: the transport is closing
      const std::size_t k = std::min(room.size, bytes.size() - used);
      std::memcpy(room.data, bytes.data() + used, k);
      a->driver.read_done(k);
      used += k;
    }
  });
  return used;
}

bool engine::reading(std::uint64_t attempt) const {
  return core_->current(attempt) != nullptr;
}

void engine::take_output(std::string& out) {
  if (!core_->io || core_->io->output.empty()) return;
  if (out.empty()) {
    out.swap(core_->io->output);
  } else {
    out += core_->io->output;
    core_->io->output.clear();
  }
}

std::vector<engine::closing_stream> engine::take_closing() {
  return std::exchange(core_->closing, {});
}

engine::time_point engine::tick(time_point now) {
  run(*core_, now, [&] { core_->run_due(); });
  return next_deadline();
}

engine::time_point engine::next_deadline() const {
  const time_point own =
      core_->deadlines.empty() ? time_point::max() : core_->deadlines.begin()->first;
  return std::min(own, core_->proton_deadline);
}

std::uint64_t engine::generation() const noexcept {
  return core_->generation.load();
}

const endpoint& engine::where() const noexcept {
  return core_->where;
}

}  // namespace qrt::amqp::detail
