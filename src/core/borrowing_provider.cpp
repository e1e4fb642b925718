#include "borrowing_provider.hpp"

namespace qrt::detail {

// The arguments live in these coroutines' frames while the borrowing calls read them.

awaitable<result<std::vector<send_outcome>>> provider_that_borrows::send(
    const queue_name& queue, std::vector<message> messages, milliseconds timeout) {
  co_return co_await send_from(queue, messages, timeout);
}

awaitable<result<std::vector<send_outcome>>> provider_that_borrows::publish(
    const topic_name& topic, std::vector<message> messages, milliseconds timeout) {
  co_return co_await publish_from(topic, messages, timeout);
}

awaitable<std::vector<result<void>>> provider_that_borrows::settle(
    std::vector<settlement> settlements) {
  co_return co_await settle_from(settlements);
}

}  // namespace qrt::detail
