// A send batcher: many single sends become few batch calls (flushed by count, bytes or delay),
// each send still gets its own result.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <iostream>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <qrt/send_batcher.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt;
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto clicks = qrt::queue_name::from("clicks");
  rt.block_on(client.create_queue(clicks)).value();

  qrt::send_batcher batcher(
      client, rt.executor(),
      {.max_batch_messages = 10, .max_batch_bytes = 64 * 1024, .max_delay = 5ms});
  // 95 independent senders, as a web handler would have them.
  std::vector<std::future<qrt::result<qrt::message_id>>> sends;
  for (int i = 0; i < 95; ++i) {
    sends.push_back(boost::asio::co_spawn(
        rt.executor(), batcher.send(clicks, {.body = "click " + std::to_string(i)}),
        boost::asio::use_future));
  }
  std::size_t ok = 0;
  for (auto& s : sends) ok += s.get().has_value();
  auto stats = batcher.stats();
  std::cout << ok << " sent in " << stats.send_calls << " calls (" << stats.flushes_by_count
            << " full, " << stats.flushes_by_delay << " by delay)\n";
  auto depth = rt.block_on(client.stats(clicks)).value().active;
  return ok == 95 && depth == 95 && stats.send_calls < 95 ? 0 : 1;
}
