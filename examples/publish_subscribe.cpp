// Publish/subscribe: one topic, two subscriptions (one filtered), each read as a queue. The
// configuration alone chooses the provider (QRT_PROVIDER and the other QRT_* variables; the
// embedded provider by default), so the same program runs on every provider with topics.
// Exits non-zero unless each subscription received exactly what it should.
#include <iostream>
#include <qrt/qrt.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <string>

using namespace std::chrono_literals;

namespace {

// Receives until `expected` messages arrived (or nothing more comes), completing each.
std::multiset<std::string> drain(qrt::runtime& rt, qrt::queue_client& client,
                                 const qrt::queue_name& subscription, std::size_t expected) {
  std::multiset<std::string> bodies;
  while (bodies.size() < expected) {
    auto got = rt.block_on(client.receive(subscription, 10, 5s));
    if (!got || got->empty()) break;
    for (const auto& m : *got) {
      bodies.insert(m.body);
      if (auto done = rt.block_on(client.complete(m.receipt)); !done) {
        std::cerr << "complete failed: " << done.error().to_string() << '\n';
      }
    }
  }
  // Anything beyond what was expected is a mistake too.
  if (auto more = rt.block_on(client.receive(subscription, 10, 200ms)); more) {
    for (const auto& m : *more) bodies.insert(m.body);
  }
  return bodies;
}

}  // namespace

int main() {
  qrt::runtime rt;
  auto cfg = qrt::config::from_environment();
  if (!cfg) {
    std::cerr << cfg.error().to_string() << '\n';
    return 1;
  }
  if (!cfg->contains("provider")) cfg->set("provider", "memory");
  auto provider = qrt::builtin_providers().make(*cfg, rt.executor());
  if (!provider) {
    std::cerr << provider.error().to_string() << '\n';
    return 1;
  }
  qrt::queue_client client(*provider);
  if (!client.caps().topics) {
    std::cerr << client.provider_name() << " has no topics\n";
    return 1;
  }

  const auto orders = qrt::topic_name::from("orders-events");
  const auto audit = qrt::queue_name::subscription(orders, "audit").value();
  const auto europe = qrt::queue_name::subscription(orders, "europe").value();
  qrt::subscription_options eu_only;
  eu_only.filter.attributes["region"] = "eu";  // only messages with region=eu
  auto setup = rt.block_on(client.create_topic(orders));
  if (setup) setup = rt.block_on(client.create_subscription(audit));
  if (setup) setup = rt.block_on(client.create_subscription(europe, eu_only));
  if (!setup) {
    std::cerr << "setup failed: " << setup.error().to_string() << '\n';
    return 1;
  }

  std::vector<qrt::message> events(3);
  events[0].body = "order 1 (eu)";
  events[0].attributes["region"] = "eu";
  events[1].body = "order 2 (us)";
  events[1].attributes["region"] = "us";
  events[2].body = "order 3 (eu)";
  events[2].attributes["region"] = "eu";
  auto published = rt.block_on(client.publish_batch(orders, std::move(events)));
  if (!published) {
    std::cerr << "publish failed: " << published.error().to_string() << '\n';
    return 1;
  }
  for (const auto& outcome : *published) {
    if (!outcome) {
      std::cerr << "a message was not published: " << outcome.error().to_string() << '\n';
      return 1;
    }
  }

  const auto all = drain(rt, client, audit, 3);
  const auto eu = drain(rt, client, europe, 2);
  for (const auto& b : all) std::cout << "audit received: " << b << '\n';
  for (const auto& b : eu) std::cout << "europe received: " << b << '\n';

  (void)rt.block_on(client.delete_topic(orders));  // its subscriptions go with it
  rt.block_on(client.close());
  const bool ok =
      all == std::multiset<std::string>{"order 1 (eu)", "order 2 (us)", "order 3 (eu)"} &&
      eu == std::multiset<std::string>{"order 1 (eu)", "order 3 (eu)"};
  if (!ok) std::cerr << "the subscriptions did not receive what was published to them\n";
  return ok ? 0 : 1;
}
