// The session processor's presets and its settings from a provider's configuration, beside the
// plain processor's (processor.cpp): same renewal and back-off where they mean the same.
#include <qrt/session_processor.hpp>

#include "core/config_binder.hpp"

namespace qrt {

static_assert(detail::most_concurrent_sessions ==
                  session_processor_options::most_concurrent_sessions,
              "the providers check max_concurrent_sessions against the processor's own bound");

session_processor_options session_processor_options::for_high_throughput() {
  return {.max_concurrent_sessions = 32,
          .max_messages_per_receive = 50,
          .max_auto_lock_renewal_duration = milliseconds{600'000},
          .retry = retry_policy::exponential_backoff(milliseconds{100}, milliseconds{30'000}, 3.0)};
}

session_processor_options session_processor_options::for_low_latency() {
  return {.max_concurrent_sessions = 4,
          .max_auto_lock_renewal_duration = milliseconds{60'000},
          .retry = retry_policy::fixed_interval(milliseconds{50})};
}

result<session_processor_options> session_processor_options::from_config(const config& cfg) {
  session_processor_options o;
  auto preset = cfg.get_string("preset", std::string());
  if (!preset) return preset.error();
  if (*preset == "high_throughput") o = for_high_throughput();
  if (*preset == "low_latency") o = for_low_latency();
  // Read as processor_options::from_config reads its keys, within the bounds the providers
  // check them with (check_processing_keys()).
  auto renewal =
      cfg.get_duration("max_auto_lock_renewal_duration", o.max_auto_lock_renewal_duration);
  if (!renewal) return renewal.error();
  o.max_auto_lock_renewal_duration = *renewal;
  auto sessions = cfg.get_uint("max_concurrent_sessions", o.max_concurrent_sessions, 1,
                               detail::most_concurrent_sessions);
  if (!sessions) return sessions.error();
  o.max_concurrent_sessions = *sessions;
  auto idle = cfg.get_duration("session_idle_timeout", o.session_idle_timeout);
  if (!idle) return idle.error();
  o.session_idle_timeout = *idle;
  auto hold = cfg.get_duration("max_session_hold", o.max_session_hold);
  if (!hold) return hold.error();
  o.max_session_hold = *hold;
  return o;
}

}  // namespace qrt
