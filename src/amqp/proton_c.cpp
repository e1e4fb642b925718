// The few things qrt does through Proton's C API (proton_c.hpp): outcomes Proton C++ cannot
// express, deliveries read and sent as encoded bytes, and the link's settle mode and terminus.
#include "amqp/proton_c.hpp"

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/link.h>
#include <proton/object.h>
#include <proton/terminus.h>

#include <proton/error_condition.hpp>
#include <proton/receiver.hpp>

namespace qrt::amqp::detail {

delivery_handle::delivery_handle(pn_delivery_t* d) : d_(d) {
  if (d_) pn_incref(d_);
}
delivery_handle::delivery_handle(const delivery_handle& other) : d_(other.d_) {
  if (d_) pn_incref(d_);
}
delivery_handle::~delivery_handle() {
  if (d_) pn_decref(d_);
}

std::span<const std::uint8_t> delivery_tag(pn_delivery_t* d) {
  const pn_delivery_tag_t t = pn_delivery_tag(d);
  return {reinterpret_cast<const std::uint8_t*>(t.start), t.size};
}

void send_outcome(pn_delivery_t* pd, const outcome& how, bool settle) {
  pn_disposition_t* local = pn_delivery_local(pd);
  std::uint64_t state = PN_ACCEPTED;
  switch (how.type) {
    case outcome::kind::accepted:
      break;
    case outcome::kind::released:
      state = PN_RELEASED;
      break;
    case outcome::kind::modified:
      state = PN_MODIFIED;
      pn_disposition_set_failed(local, how.delivery_failed);
      pn_disposition_set_undeliverable(local, how.undeliverable_here);
      break;
    case outcome::kind::rejected: {
      state = PN_REJECTED;
      pn_condition_t* condition = pn_disposition_condition(local);
      if (!how.error_name.empty()) pn_condition_set_name(condition, how.error_name.c_str());
      if (!how.error_description.empty()) {
        pn_condition_set_description(condition, how.error_description.c_str());
      }
      if (!how.error_info.empty()) {
        pn_data_t* data = pn_condition_info(condition);
        pn_data_clear(data);
        pn_data_put_map(data);
        pn_data_enter(data);
        for (const auto& [key, value] : how.error_info) {
          pn_data_put_symbol(data, pn_bytes(key.size(), key.data()));
          pn_data_put_string(data, pn_bytes(value.size(), value.data()));
        }
        pn_data_exit(data);
      }
      break;
    }
  }
  pn_delivery_update(pd, state);
  if (settle) pn_delivery_settle(pd);
}

proton::error_condition remote_condition(const proton::tracker& t) {
  pn_condition_t* c = pn_disposition_condition(
      pn_delivery_remote(proton::internal::factory<proton::tracker>::unwrap(t)));
  if (!pn_condition_is_set(c)) return {};
  const char* name = pn_condition_get_name(c);
  const char* description = pn_condition_get_description(c);
  return proton::error_condition(name ? name : "", description ? description : "");
}

void request_settle_second(const proton::link& l) {
  pn_link_set_rcv_settle_mode(proton::internal::factory<proton::link>::unwrap(l), PN_RCV_SECOND);
}

void send_encoded(const proton::sender& s, std::span<const std::uint8_t> tag,
                  std::string_view bytes) {
  pn_link_t* pl = proton::internal::factory<proton::link>::unwrap(s);
  pn_delivery(pl, pn_dtag(reinterpret_cast<const char*>(tag.data()), tag.size()));
  pn_link_send(pl, bytes.data(), bytes.size());
  pn_link_advance(pl);
}

std::optional<delivery_handle> take_complete_delivery(const proton::receiver& r,
                                                      std::string& bytes) {
  pn_link_t* pl = proton::internal::factory<proton::link>::unwrap(r);
  pn_delivery_t* pd = pn_link_current(pl);
  if (!pd || !pn_delivery_readable(pd) || pn_delivery_partial(pd) || pn_delivery_aborted(pd)) {
    return std::nullopt;  // nothing whole yet (an aborted one: drop_aborted_delivery)
  }
  // A whole delivery's pending count is all of its bytes: read until none are left, without a
  // last read to be told PN_EOS (that read needed room past the end, zeroed every time).
  std::size_t got = 0;
  for (std::size_t left = pn_delivery_pending(pd); left > 0; left = pn_delivery_pending(pd)) {
    bytes.resize(got + left);
    const ssize_t n = pn_link_recv(pl, bytes.data() + got, left);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  pn_link_advance(pl);
  return delivery_handle(pd);
}

bool drop_aborted_delivery(const proton::receiver& r) {
  pn_link_t* pl = proton::internal::factory<proton::link>::unwrap(r);
  pn_delivery_t* pd = pn_link_current(pl);
  if (!pd || !pn_delivery_aborted(pd)) return false;
  pn_link_advance(pl);
  pn_delivery_settle(pd);
  return true;
}

std::optional<delivery_handle> take_oversize_delivery(const proton::receiver& r,
                                                      std::uint64_t limit) {
  if (limit == 0) return std::nullopt;
  pn_link_t* pl = proton::internal::factory<proton::link>::unwrap(r);
  pn_delivery_t* pd = pn_link_current(pl);
  if (!pd || pn_delivery_aborted(pd) || pn_delivery_pending(pd) <= limit) return std::nullopt;
  delivery_handle taken(pd);
  pn_link_advance(pl);  // frees the bytes buffered so far
  return taken;
}

void announce_max_message_size(const proton::link& l, std::uint64_t limit) {
  pn_link_set_max_message_size(proton::internal::factory<proton::link>::unwrap(l), limit);
}

std::uint64_t peer_max_message_size(const proton::link& l) {
  return pn_link_remote_max_message_size(proton::internal::factory<proton::link>::unwrap(l));
}

bool settles_second(const proton::link& l) {
  return pn_link_remote_rcv_settle_mode(proton::internal::factory<proton::link>::unwrap(l)) ==
         PN_RCV_SECOND;
}

bool attach_refused(const proton::link& l) {
  pn_link_t* pl = proton::internal::factory<proton::link>::unwrap(l);
  pn_terminus_t* theirs =
      pn_link_is_receiver(pl) ? pn_link_remote_source(pl) : pn_link_remote_target(pl);
  return pn_terminus_get_type(theirs) == PN_UNSPECIFIED;
}

}  // namespace qrt::amqp::detail
