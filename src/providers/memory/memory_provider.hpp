// Internal construction of the embedded provider, for the persisted mode: the log owns the
// event_sink and hands over what it recovered.
#pragma once

#include <optional>
#include <qrt/memory.hpp>

#include "events.hpp"

namespace qrt::memory::detail {

/// `sink` may be null (in-memory mode). `recovered` is applied before the provider is returned.
provider_ptr make_memory_provider(const options& opts, boost::asio::any_io_executor executor,
                                  std::shared_ptr<event_sink> sink, recovered_state recovered);

}  // namespace qrt::memory::detail

namespace qrt::memory::detail {

/// The provider's byte budget (max_memory_bytes) as accounted; zeros without one. For tests.
struct byte_usage {
  std::uint64_t used = 0;
  std::uint64_t peak = 0;  ///< the most ever accounted at once
  std::uint64_t limit = 0;
};
byte_usage memory_byte_usage(provider& p);

/// How many receives, sends and session accepts are parked, waiting for a change. For tests.
std::size_t parked_waiters(provider& p);

/// How many times the persistence log synced its files to disk so far; nullopt without a log.
/// For tests of the durability settings.
std::optional<std::uint64_t> persistence_syncs(provider& p);

}  // namespace qrt::memory::detail
