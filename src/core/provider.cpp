// The provider interface's defaults for publish/subscribe: a provider without topics inherits
// them and refuses every such call with errc::unsupported, naming itself and the call, so code
// written against an earlier qrt keeps compiling (docs/adr/0050-topics-and-subscriptions.md).
#include <qrt/provider.hpp>

namespace qrt {
namespace {

error no_topics(const provider& p, std::string_view call) {
  return fail(errc::unsupported,
              std::string(p.name()) + " provider has no topics (" + std::string(call) + ")");
}

}  // namespace

bool subscription_filter::matches(const message& m) const {
  if (subject && m.subject != *subject) return false;
  for (const auto& [key, value] : attributes) {
    auto found = m.attributes.find(key);
    if (found == m.attributes.end() || found->second != value) return false;
  }
  return true;
}

awaitable<result<void>> provider::create_topic(const topic_name&) {
  co_return no_topics(*this, "create_topic");
}

awaitable<result<void>> provider::delete_topic(const topic_name&) {
  co_return no_topics(*this, "delete_topic");
}

awaitable<result<std::vector<send_outcome>>> provider::publish(const topic_name&,
                                                               std::vector<message>, milliseconds) {
  co_return no_topics(*this, "publish");
}

awaitable<result<void>> provider::create_subscription(const queue_name&,
                                                      const subscription_options&) {
  co_return no_topics(*this, "create_subscription");
}

awaitable<result<void>> provider::delete_subscription(const queue_name&) {
  co_return no_topics(*this, "delete_subscription");
}

awaitable<result<std::vector<subscription_info>>> provider::list_subscriptions(const topic_name&) {
  co_return no_topics(*this, "list_subscriptions");
}

}  // namespace qrt
