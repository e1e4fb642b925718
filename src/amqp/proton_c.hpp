// The few things Proton C++ 0.37 cannot express and the C API can: modified with
// delivery-failed / undeliverable-here flags, rejected with an error condition, an outcome sent
// without settling (rcv-settle-mode second), and the link's remote terminus and settle mode.
// Internal to the AMQP core (the engine, engine_*.cpp; defined in proton_c.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <proton/binary.hpp>
#include <proton/delivery.hpp>
#include <proton/link.hpp>
#include <proton/sender.hpp>
#include <proton/tracker.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "amqp/connection_types.hpp"

struct pn_delivery_t;
struct pn_link_t;

// Proton's own factory<> is how its wrappers reach the C object; delivery befriends it.
namespace proton::internal {
template <>
class factory<proton::delivery> {
 public:
  static pn_delivery_t* unwrap(const proton::delivery& d) { return d.pn_object(); }
};
template <>
class factory<proton::tracker> {
 public:
  static pn_delivery_t* unwrap(const proton::tracker& t) { return t.pn_object(); }
};
template <>
class factory<proton::link> {
 public:
  static pn_link_t* unwrap(const proton::link& l) { return l.pn_object(); }
};
}  // namespace proton::internal

namespace qrt::amqp::detail {

/// A counted reference to a delivery qrt took off its link itself (take_complete_delivery):
/// what proton::delivery holds, which cannot be made from a C pointer outside Proton's library.
class delivery_handle {
 public:
  delivery_handle() = default;
  explicit delivery_handle(pn_delivery_t* d);
  delivery_handle(const delivery_handle& other);
  delivery_handle(delivery_handle&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
  delivery_handle& operator=(delivery_handle other) noexcept {
    std::swap(d_, other.d_);
    return *this;
  }
  ~delivery_handle();

  pn_delivery_t* get() const noexcept { return d_; }

 private:
  pn_delivery_t* d_ = nullptr;
};

/// Sends `how` as the local state of `d`; settles `d` too unless `settle` is false (then the
/// peer's settled disposition confirms it: rcv-settle-mode second).
void send_outcome(pn_delivery_t* d, const outcome& how, bool settle);

/// The error condition the peer put on its outcome for a delivery we sent (rejected{error});
/// an unset condition when there is none.
proton::error_condition remote_condition(const proton::tracker& t);

/// Asks for rcv-settle-mode second on a receiver link that is not yet attached on the wire.
void request_settle_second(const proton::link& l);

/// Sends one delivery of already encoded message bytes (an AMQP message, or a Service Bus batch
/// envelope) on `s` with `tag`; its outcome arrives as for sender::send (on_tracker_*).
void send_encoded(const proton::sender& s, std::span<const std::uint8_t> tag,
                  std::string_view bytes);

/// The delivery tag of `d`, in place (valid while `d` is): reading it through proton::tracker
/// or proton::delivery copies it to the heap.
std::span<const std::uint8_t> delivery_tag(pn_delivery_t* d);

/// The receiver link's current delivery when it has arrived whole (not partial, not aborted):
/// its bytes are read into `bytes` (replacing them) and the link moves on to the next delivery.
/// Empty when there is none. Proton's C++ adapter then no longer sees it as readable, so it does
/// not decode it into a proton::message.
std::optional<delivery_handle> take_complete_delivery(const proton::receiver& r,
                                                      std::string& bytes);

/// The receiver link's current delivery when the bytes it has brought so far (all of them, or
/// the first frames of one still arriving) exceed `limit`: the link moves on to the next
/// delivery and what was buffered of this one is dropped. Empty when there is none or `limit`
/// is 0. Settling it (rejected) makes Proton drop its remaining frames as they arrive, so a
/// delivery of any size costs at most `limit` plus one read of buffered bytes.
std::optional<delivery_handle> take_oversize_delivery(const proton::receiver& r,
                                                      std::uint64_t limit);

/// Drops the receiver link's current delivery if its sender aborted it: the link moves on to
/// the next delivery and this one, implicitly settled by the abort (AMQP 1.0, 2.7.5), is
/// settled here and freed with its buffered bytes. True when one was dropped. Left in place,
/// an aborted delivery stayed current for ever, and every delivery after it on the link waited
/// behind it, never handed out.
bool drop_aborted_delivery(const proton::receiver& r);

/// What to pass to proton::receiver::add_credit for a receiver link whose credit is
/// `link_credit` so that `wanted` credits are outstanding afterwards. A peer that sends past
/// the credit it was given (RabbitMQ 3.10 does when a flow frame crosses its transfers) leaves
/// the link's credit negative; Proton adds to that count and writes the sum as the flow's
/// unsigned link-credit, so adding `wanted` alone to, say, -103 would announce four billion
/// credits and the broker would push its whole queue into the prefetch.
inline std::uint32_t credit_increment(long link_credit, long wanted) {
  return static_cast<std::uint32_t>(wanted - std::min(link_credit, 0L));
}

/// Sets the max-message-size a receiver link announces in its attach (0: no limit).
void announce_max_message_size(const proton::link& l, std::uint64_t limit);

/// The max-message-size the peer's attach announced for `l` (0: none).
std::uint64_t peer_max_message_size(const proton::link& l);

/// True when the peer's attach agreed to rcv-settle-mode second.
bool settles_second(const proton::link& l);

/// True when the peer attached the link without a terminus on its side (no source for a
/// receiver, no target for a sender): the attach is refused and a detach with the reason follows.
bool attach_refused(const proton::link& l);

}  // namespace qrt::amqp::detail
