// The session processor's presets and its settings from a provider's configuration, beside the
// plain processor's (processor.cpp): same renewal and back-off where they mean the same.
#include <qrt/session_processor.hpp>

namespace qrt {

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
  auto renewal =
      cfg.get_duration("max_auto_lock_renewal_duration", o.max_auto_lock_renewal_duration);
  if (!renewal) return renewal.error();
  o.max_auto_lock_renewal_duration = *renewal;
  return o;
}

}  // namespace qrt
