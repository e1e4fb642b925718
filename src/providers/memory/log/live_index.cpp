#include "live_index.hpp"

namespace qrt::memory::log {

void live_index::queue_created(const queue_name& queue, const queue_options& options,
                               std::uint64_t next_sequence) {
  queue_index& q = queues_[queue.parent()];
  q.options = options;
  q.next_sequence = std::max(q.next_sequence, next_sequence);
}

void live_index::subscription_created(const queue_name& subscription, const queue_options& options,
                                      std::uint64_t next_sequence,
                                      const subscription_filter& filter) {
  queue_created(subscription, options, next_sequence);
  queues_[subscription.parent()].filter = filter;
}

void live_index::topic_deleted(const topic_name& topic) {
  topics_.erase(topic);
  std::vector<queue_name> subscriptions;
  for (const auto& [name, q] : queues_) {
    if (name.is_subscription() && name.topic() == topic.str()) subscriptions.push_back(name);
  }
  for (const auto& name : subscriptions) queue_deleted(name);
}

void live_index::queue_deleted(const queue_name& queue) {
  auto it = queues_.find(queue.parent());
  if (it == queues_.end()) return;
  for (const auto& [seq, m] : it->second.live) release(m);
  for (const auto& [seq, m] : it->second.live_dead_letters) release(m);
  queues_.erase(it);
}

std::unordered_map<std::uint64_t, live_message>* live_index::messages_of(const queue_name& queue) {
  auto it = queues_.find(queue.parent());
  if (it == queues_.end()) return nullptr;
  return queue.is_dead_letter() ? &it->second.live_dead_letters : &it->second.live;
}

void live_index::enqueued(const queue_name& queue, std::uint64_t sequence,
                          std::uint32_t delivery_count, std::uint64_t segment) {
  queue_index& q = queues_[queue.parent()];
  q.next_sequence = std::max(q.next_sequence, sequence + 1);
  auto& messages = queue.is_dead_letter() ? q.live_dead_letters : q.live;
  auto [it, inserted] = messages.try_emplace(sequence, live_message{segment, delivery_count});
  if (!inserted) {
    // The same sequence enqueued twice: the later record wins; keep the counts exact.
    release(it->second);
    it->second = live_message{segment, delivery_count};
  }
  ++live_per_segment_[segment];
}

void live_index::delivered(const queue_name& queue, std::uint64_t sequence,
                           std::uint32_t delivery_count) {
  if (auto* messages = messages_of(queue)) {
    auto it = messages->find(sequence);
    if (it != messages->end()) it->second.delivery_count = delivery_count;
  }
}

void live_index::removed(const queue_name& queue, std::uint64_t sequence) {
  if (auto* messages = messages_of(queue)) {
    auto it = messages->find(sequence);
    if (it == messages->end()) return;
    release(it->second);
    messages->erase(it);
  }
}

void live_index::session_state_set(const queue_name& queue, const session_id& session,
                                   const std::string& state) {
  auto it = queues_.find(queue.parent());
  if (it == queues_.end()) return;
  if (state.empty())
    it->second.session_states.erase(session);
  else
    it->second.session_states[session] = state;
}

std::uint64_t live_index::live_in(std::uint64_t segment) const {
  auto it = live_per_segment_.find(segment);
  return it == live_per_segment_.end() ? 0 : it->second;
}

void live_index::moved(const queue_name& queue, std::uint64_t sequence, std::uint64_t to) {
  if (auto* messages = messages_of(queue)) {
    auto it = messages->find(sequence);
    if (it == messages->end()) return;
    release(it->second);
    it->second.segment = to;
    ++live_per_segment_[to];
  }
}

const live_message* live_index::find(const queue_name& queue, std::uint64_t sequence) const {
  auto it = queues_.find(queue.parent());
  if (it == queues_.end()) return nullptr;
  const auto& messages = queue.is_dead_letter() ? it->second.live_dead_letters : it->second.live;
  auto m = messages.find(sequence);
  return m == messages.end() ? nullptr : &m->second;
}

void live_index::release(const live_message& m) {
  auto it = live_per_segment_.find(m.segment);
  if (it != live_per_segment_.end() && it->second > 0) --it->second;
}

result<void> live_index::append_checkpoint(std::string& out) const {
  // Topics before their subscriptions, so a replay meets each subscription's topic first.
  for (const auto& topic : topics_) {
    if (auto r = append_topic_created(out, topic); !r) return r;
  }
  for (const auto& [name, q] : queues_) {
    auto r = q.filter
                 ? append_subscription_created(out, name, q.options, q.next_sequence, *q.filter)
                 : append_queue_created(out, name, q.options, q.next_sequence);
    if (!r) return r;
    for (const auto& [session, state] : q.session_states)
      if (auto r = append_session_state(out, name, session, state); !r) return r;
  }
  return {};
}

}  // namespace qrt::memory::log
