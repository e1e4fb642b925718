// Internal construction of the embedded provider, for the persisted mode: the log owns the
// event_sink and hands over what it recovered.
#pragma once

#include <qrt/memory.hpp>

#include "events.hpp"

namespace qrt::memory::detail {

/// `sink` may be null (in-memory mode). `recovered` is applied before the provider is returned.
provider_ptr make_memory_provider(const options& opts, boost::asio::any_io_executor executor,
                                  std::shared_ptr<event_sink> sink, recovered_state recovered);

}  // namespace qrt::memory::detail
