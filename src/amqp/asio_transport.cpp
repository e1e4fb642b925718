// The Asio transport (asio_transport.hpp): the engine's bytes over a byte_stream, its time over
// one steady_timer. Every handler here runs on the strand; each ends with service(), so what an
// engine call produced is acted on before the strand runs anything else.
#include "amqp/asio_transport.hpp"

#include <boost/asio/buffer.hpp>
#include <span>
#include <utility>

namespace qrt::amqp::detail {

asio_transport::asio_transport(endpoint where, boost::asio::any_io_executor executor,
                               stream_factory streams)
    : strand(boost::asio::make_strand(std::move(executor))),
      protocol(std::move(where),
               [this](bool opened) {
                 if (opened) {
                   meter.opened();
                 } else {
                   meter.failed();
                 }
               }),
      // tcp_streams keeps a reference to the endpoint: the engine's, which lives as long as this.
      make_stream_(streams ? std::move(streams) : tcp_streams(protocol.where())),
      timer_(strand) {}

void asio_transport::service() {
  for (;;) {
    for (auto& closing : protocol.take_closing()) retire(std::move(closing));
    auto attempt = protocol.take_stream_request();
    if (!attempt) break;
    open_stream(*attempt);  // a stream that cannot be made fails the attempt: look again
  }
  if (current_) {
    protocol.take_output(current_->next_out);
    write_out(current_);
  }
  wait_for_deadline();
}

void asio_transport::open_stream(std::uint64_t attempt) {
  auto bytes = make_stream_(strand);
  if (!bytes) {
    protocol.stream_failed(attempt, bytes.error(), now());
    return;
  }
  auto s = std::make_shared<stream_io>(attempt, std::move(*bytes));
  current_ = s;
  s->stream->async_open([self = shared_from_this(), s](std::optional<error> failed) {
    if (!self->is_current(s)) return;
    if (failed) {
      self->protocol.stream_failed(s->attempt, *failed, now());
    } else {
      self->protocol.stream_opened(s->attempt, now());
      self->read_more(s);
    }
    self->service();
  });
}

void asio_transport::read_more(const std::shared_ptr<stream_io>& s) {
  s->stream->async_read_some(boost::asio::buffer(s->in), [self = shared_from_this(), s](
                                                             boost::system::error_code ec,
                                                             std::size_t n) {
    self->meter.received(n);
    if (!self->is_current(s)) return;
    if (ec) {
      self->protocol.stream_failed(s->attempt, fail(errc::connection_failed, ec.message()), now());
    } else {
      self->protocol.bytes_in(s->attempt, std::span<const char>(s->in.data(), n), now());
    }
    self->service();
    // A refused or lost attempt is read no more (its stream is retired by then).
    if (!ec && self->is_current(s) && self->protocol.reading(s->attempt)) self->read_more(s);
  });
}

void asio_transport::write_out(const std::shared_ptr<stream_io>& s) {
  if (s->writing || s->next_out.empty()) return;
  s->out.swap(s->next_out);
  s->next_out.clear();
  s->writing = true;
  s->stream->async_write(boost::asio::buffer(s->out), [self = shared_from_this(), s](
                                                          boost::system::error_code ec,
                                                          std::size_t written) {
    self->meter.sent(written);
    s->writing = false;
    s->out.clear();
    if (s->retired) {
      // Closing: what was produced before the close (the close frame) goes out, then the
      // stream closes.
      if (!ec && !s->next_out.empty()) return self->write_out(s);
      s->stream->close();
      return;
    }
    if (!self->is_current(s)) return;
    if (ec) {
      self->protocol.stream_failed(s->attempt, fail(errc::connection_failed, ec.message()), now());
    }
    self->service();
  });
}

void asio_transport::retire(engine::closing_stream closing) {
  if (!current_ || current_->attempt != closing.attempt) return;  // its stream was never made
  auto s = std::exchange(current_, nullptr);
  s->retired = true;
  s->next_out += closing.last_bytes;
  if (s->writing) return;  // its completion writes the rest, then closes
  if (s->next_out.empty() || !s->stream->is_open()) {
    s->stream->close();
  } else {
    write_out(s);
  }
}

void asio_transport::wait_for_deadline() {
  const engine::time_point at = protocol.next_deadline();
  if (at == engine::time_point::max()) {
    if (timer_at_ == at) return;
    timer_at_ = at;
    ++timer_waits_;
    timer_.cancel();  // nothing waits on the time: no handler keeps the transport alive
    return;
  }
  // Proton's deadline moves a little later with almost every call: a wait that ends earlier
  // stays (it ticks early, harmlessly, and waits again), so the timer is re-armed only for an
  // earlier deadline, not once per call.
  if (at >= timer_at_) return;
  timer_at_ = at;
  const std::uint64_t wait = ++timer_waits_;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this(), wait](boost::system::error_code ec) {
    if (ec || wait != self->timer_waits_) return;  // re-armed since: that wait owns the timer
    self->timer_at_ = engine::time_point::max();
    self->protocol.tick(now());
    self->service();
  });
}

}  // namespace qrt::amqp::detail
