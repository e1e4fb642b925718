// What the log must remember about the state it describes to decide when a segment can go:
// the live (unsettled) messages and the segment that holds each one's enqueue record, plus the
// queue definitions and session states a new segment's checkpoint repeats.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "record.hpp"

namespace qrt::memory::log {

struct live_message {
  std::uint64_t segment = 0;
  std::uint32_t delivery_count = 0;
};

struct queue_index {
  queue_options options;
  /// Set for a topic's subscription: its filter (the checkpoint writes subscription_created).
  std::optional<subscription_filter> filter;
  std::uint64_t next_sequence = 1;
  std::map<session_id, std::string> session_states;
  std::unordered_map<std::uint64_t, live_message> live;               ///< the queue's messages
  std::unordered_map<std::uint64_t, live_message> live_dead_letters;  ///< its DLQ's messages
};

class live_index {
 public:
  void queue_created(const queue_name& queue, const queue_options& options,
                     std::uint64_t next_sequence);
  void queue_deleted(const queue_name& queue);
  void topic_created(const topic_name& topic) { topics_.insert(topic); }
  /// Forgets the topic and any subscription of it still known (a log written by this provider
  /// deleted them first; a damaged one may not have).
  void topic_deleted(const topic_name& topic);
  void subscription_created(const queue_name& subscription, const queue_options& options,
                            std::uint64_t next_sequence, const subscription_filter& filter);
  /// Creates the queue with default options if the log never declared it (a damaged log must
  /// still give its messages back).
  void enqueued(const queue_name& queue, std::uint64_t sequence, std::uint32_t delivery_count,
                std::uint64_t segment);
  void delivered(const queue_name& queue, std::uint64_t sequence, std::uint32_t delivery_count);
  void removed(const queue_name& queue, std::uint64_t sequence);
  void session_state_set(const queue_name& queue, const session_id& session,
                         const std::string& state);

  /// A segment starts holding no live message; records counted against it from now on.
  void segment_opened(std::uint64_t segment) { live_per_segment_.try_emplace(segment, 0); }
  void segment_deleted(std::uint64_t segment) { live_per_segment_.erase(segment); }
  std::uint64_t live_in(std::uint64_t segment) const;
  /// Live messages whose enqueue record is in `segment` are now held by `to` (compaction).
  void moved(const queue_name& queue, std::uint64_t sequence, std::uint64_t to);

  const std::map<queue_name, queue_index>& queues() const { return queues_; }
  const std::set<topic_name>& topics() const { return topics_; }
  const live_message* find(const queue_name& queue, std::uint64_t sequence) const;

  /// The checkpoint a new segment starts with: every topic, every queue and subscription (with
  /// its next sequence, and a subscription's filter) and every non-empty session state, so
  /// older segments can be deleted without losing any of them.
  result<void> append_checkpoint(std::string& out) const;

 private:
  std::unordered_map<std::uint64_t, live_message>* messages_of(const queue_name& queue);
  void release(const live_message& m);

  std::map<queue_name, queue_index> queues_;  ///< keyed by the parent queue
  std::set<topic_name> topics_;
  std::map<std::uint64_t, std::uint64_t> live_per_segment_;
};

}  // namespace qrt::memory::log
