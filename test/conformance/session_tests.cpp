// Sessions: per-session FIFO to one holder at a time, exclusive and expiring locks, state,
// accept-next. Each test names the item of docs/contract.md it checks.
#include <map>
#include <set>

#include "conformance/suite.hpp"

namespace qrt::conformance {
namespace {

using namespace std::chrono_literals;

queue_options session_queue(milliseconds lock) {
  return queue_options{.lock_duration = lock, .requires_session = true};
}

message in_session(const std::string& session, std::string body, std::size_t index) {
  message m = numbered(std::move(body), index);
  m.session = session_id::from(session);
  return m;
}

bool native_sessions(const capabilities& c) {
  return c.sessions == session_support::native;
}

/// What the consumers of the FIFO test saw, shared between their coroutines.
struct fifo_log {
  std::mutex mutex;
  std::map<std::string, std::vector<std::size_t>> order;  ///< session -> indexes as received
  std::map<std::string, int> holders;                     ///< session -> current holders
  std::set<int> consumers_seen;
  std::vector<std::string> errors;
  std::size_t received = 0;
  bool overlap = false;
};

awaitable<void> fifo_consumer(qrt::queue_client& client, queue_name q, std::size_t total,
                              milliseconds poll, std::chrono::steady_clock::time_point deadline,
                              fifo_log& log, int who) {
  auto done = [&] {
    std::lock_guard lock(log.mutex);
    return log.received >= total || !log.errors.empty();
  };
  auto error = [&](std::string what) {
    std::lock_guard lock(log.mutex);
    log.errors.push_back("consumer " + std::to_string(who) + ": " + std::move(what));
  };
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    auto accepted = co_await client.accept_session(q, std::nullopt, poll);
    if (!accepted) {
      if (accepted.error().code == errc::timeout) continue;  // none free right now
      error("accept_session: " + accepted.error().to_string());
      co_return;
    }
    session s = std::move(*accepted);
    const std::string id = s.id().str();
    {
      std::lock_guard lock(log.mutex);
      if (++log.holders[id] > 1) log.overlap = true;
    }
    // One small batch per acceptance, then release: the sessions move between consumers.
    auto got = co_await s.receive(4, poll);
    if (!got) error("session receive: " + got.error().to_string());
    if (got) {
      for (const auto& m : *got) {
        if (!m.session || m.session->str() != id) error("a message of another session: " + id);
        {
          std::lock_guard lock(log.mutex);
          log.order[id].push_back(index_of(m));
          log.consumers_seen.insert(who);
        }
        auto completed = co_await s.complete(m.receipt);
        if (!completed) error("complete: " + completed.error().to_string());
        std::lock_guard lock(log.mutex);
        ++log.received;
      }
    }
    {
      std::lock_guard lock(log.mutex);
      --log.holders[id];
    }
    auto closed = co_await s.close();
    if (!closed) error("close: " + closed.error().to_string());
  }
}

// Contract C20: messages with the same session id are delivered in send order, to one holder
// of the session lock at a time; here 3 interleaved sessions and 2 consumers.
TEST_P(provider_test, Sessions_FifoPerSessionWithTwoConsumers) {
  QRT_REQUIRE(caps().sessions != session_support::none, "sessions");
  QRT_MAKE_QUEUE(q, session_queue(std::max<milliseconds>(30s, tgt().event_timeout * 3)));
  const std::vector<std::string> sessions{"alpha", "bravo", "charlie"};
  constexpr std::size_t per_session = 20;
  std::vector<message> batch;
  for (std::size_t i = 0; i < per_session; ++i) {
    for (const auto& s : sessions) batch.push_back(in_session(s, s + "-" + std::to_string(i), i));
  }
  const std::size_t total = batch.size();
  for (const auto& o : send_batch(q, std::move(batch))) ASSERT_TRUE(o) << describe(o);

  fifo_log log;
  const auto deadline = std::chrono::steady_clock::now() + tgt().event_timeout * 3;
  const auto poll = tgt().empty_wait;
  auto a = io().spawn([&, q] { return fifo_consumer(client(), q, total, poll, deadline, log, 1); });
  auto b = io().spawn([&, q] { return fifo_consumer(client(), q, total, poll, deadline, log, 2); });
  io().wait(a);
  io().wait(b);

  EXPECT_TRUE(log.errors.empty()) << log.errors.front();
  EXPECT_FALSE(log.overlap) << "two consumers held one session at the same time";
  EXPECT_EQ(log.received, total);
  std::vector<std::size_t> expected(per_session);
  for (std::size_t i = 0; i < per_session; ++i) expected[i] = i;
  for (const auto& s : sessions) {
    EXPECT_EQ(log.order[s], expected) << "session " << s << " out of send order";
  }
}

// Contract C21: a second accept_session on a held session fails with session_locked (and
// closing the holder releases it).
TEST_P(provider_test, Sessions_SecondAcceptOfAHeldSessionFailsWithSessionLocked) {
  QRT_REQUIRE(native_sessions(caps()), "native session locks");
  QRT_MAKE_QUEUE(q, session_queue(std::max<milliseconds>(30s, tgt().event_timeout * 3)));
  send(q, in_session("held", "for the holder", 0));
  const auto held_id = session_id::from("held");

  auto holder = must(run(client().accept_session(q, held_id, tgt().event_timeout)), "accept");
  EXPECT_EQ(holder.id(), held_id);
  auto second = run(client().accept_session(q, held_id, tgt().empty_wait));
  ASSERT_FALSE(second) << "a held session was accepted twice";
  EXPECT_EQ(second.error().code, errc::session_locked) << second.error().to_string();

  auto got = must(run(holder.receive(10, tgt().event_timeout)), "holder receive");
  ASSERT_EQ(got.size(), 1u) << "the failed accept disturbed the holder";
  must(run(holder.complete(got.front().receipt)), "holder complete");
  must(run(holder.close()), "close");

  auto again = run(client().accept_session(q, held_id, tgt().event_timeout));
  ASSERT_TRUE(again) << "a closed session could not be accepted again: " << describe(again);
  must(run(again->close()), "close again");
}

// Contract C22: a session lock that is not renewed expires and the session can be accepted
// again. The unsettled message comes back to the new holder (delivery count + 1); the old holder's
// operations fail with session_lock_lost.
TEST_P(provider_test, Sessions_UnrenewedLockExpiresAndSessionCanBeTakenAgain) {
  QRT_REQUIRE(native_sessions(caps()), "native session locks");
  const auto lock = tgt().short_lock;
  QRT_MAKE_QUEUE(q, session_queue(lock));
  send(q, in_session("lapsing", "unsettled", 0));

  const auto start = std::chrono::steady_clock::now();
  auto first =
      must(run(client().accept_session(q, session_id::from("lapsing"), tgt().event_timeout)),
           "first accept");
  auto first_got = must(run(first.receive(1, tgt().event_timeout)), "first receive");
  ASSERT_EQ(first_got.size(), 1u);
  EXPECT_EQ(first_got.front().delivery_count, 1u);

  // The real event: the only session with messages becomes free when its lock lapses.
  auto second = run(client().accept_session(q, std::nullopt, lock * 2 + tgt().event_timeout));
  ASSERT_TRUE(second) << "the session was not released after its lock expired: "
                      << describe(second);
  EXPECT_GE(since(start), lock * 8 / 10) << "taken over while the first lock was still valid";
  EXPECT_EQ(second->id().str(), "lapsing");
  auto second_got = must(run(second->receive(1, tgt().event_timeout)), "second receive");
  ASSERT_EQ(second_got.size(), 1u) << "the unsettled message did not come back";
  EXPECT_EQ(second_got.front().id, first_got.front().id);
  EXPECT_EQ(second_got.front().delivery_count, 2u);

  auto stale = run(first.complete(first_got.front().receipt));
  ASSERT_FALSE(stale) << "the expired holder completed a message";
  EXPECT_EQ(stale.error().code, errc::session_lock_lost) << stale.error().to_string();
  auto renew = run(first.renew_lock());
  ASSERT_FALSE(renew) << "the expired holder renewed a lock another holder has";
  EXPECT_EQ(renew.error().code, errc::session_lock_lost) << renew.error().to_string();
  // Nor does it receive more: what it took now it could never settle.
  auto stale_receive = run(first.receive(1, tgt().event_timeout));
  ASSERT_FALSE(stale_receive) << "the expired holder received from a session another holder has";
  EXPECT_EQ(stale_receive.error().code, errc::session_lock_lost)
      << stale_receive.error().to_string();

  must(run(second->complete(second_got.front().receipt)), "second complete");
  must(run(second->close()), "second close");
  (void)run(first.close());  // may report the lost lock; must not disturb anything
}

// Contract C23: renew_session_lock keeps a session: renewed every third of the lock, nobody else
// can take it after the original lock would have run out.
TEST_P(provider_test, Sessions_RenewedLockIsKept) {
  QRT_REQUIRE(native_sessions(caps()), "native session locks");
  const auto lock = tgt().short_lock;
  QRT_MAKE_QUEUE(q, session_queue(lock));
  send(q, in_session("kept", "still mine", 0));
  const auto start = std::chrono::steady_clock::now();
  auto holder = must(run(client().accept_session(q, session_id::from("kept"), tgt().event_timeout)),
                     "accept");
  time_point locked_until = holder.locked_until();
  while (since(start) < lock * 5 / 2) {
    // Waiting for another session is the observation: a lapsed lock would hand this one over.
    auto other = run(client().accept_session(q, std::nullopt, lock / 3));
    if (other) {
      ADD_FAILURE() << "session '" << other->id().str() << "' taken while its lock was renewed";
      (void)run(other->close());
      break;
    }
    EXPECT_EQ(other.error().code, errc::timeout) << other.error().to_string();
    const auto renewed = must(run(holder.renew_lock()), "renew_session_lock");
    EXPECT_GT(renewed, locked_until);
    locked_until = renewed;
  }
  auto got = must(run(holder.receive(1, tgt().event_timeout)), "receive after renewals");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.front().delivery_count, 1u) << "the message was redelivered meanwhile";
  must(run(holder.complete(got.front().receipt)), "complete");
  must(run(holder.close()), "close");
}

// Contract C24: get/set session state. The state is binary-safe, outlives the holder, and can be
// cleared.
TEST_P(provider_test, Sessions_StateRoundTrips) {
  QRT_REQUIRE(native_sessions(caps()), "native sessions");
  QRT_REQUIRE(caps().session_state, "session state");
  QRT_MAKE_QUEUE(q, session_queue(std::max<milliseconds>(30s, tgt().event_timeout * 3)));
  send(q, in_session("stateful", "m", 0));
  const auto id = session_id::from("stateful");
  const std::string state("step=3\0\xFF\xC0 caf\xC3\xA9", 14);

  {
    auto first = must(run(client().accept_session(q, id, tgt().event_timeout)), "accept");
    EXPECT_EQ(must(run(first.get_state()), "get_state"), "") << "a new session has empty state";
    must(run(first.set_state(state)), "set_state");
    EXPECT_TRUE(must(run(first.get_state()), "get_state") == state);
    must(run(first.close()), "close");
  }
  reopen();  // the state is stored, and so is the session's message

  auto second = must(run(client().accept_session(q, id, tgt().event_timeout)), "accept again");
  EXPECT_TRUE(must(run(second.get_state()), "get_state") == state)
      << "the state did not outlive its holder";
  must(run(second.set_state("")), "clear state");
  EXPECT_EQ(must(run(second.get_state()), "get_state"), "");
  auto got = must(run(second.receive(1, tgt().event_timeout)), "receive");
  ASSERT_EQ(got.size(), 1u);
  must(run(second.complete(got.front().receipt)), "complete");
  must(run(second.close()), "close");
}

// Contract C25: accept_session(next available) picks an unlocked session that has messages;
// when none qualifies it fails with timeout after the wait.
TEST_P(provider_test, Sessions_AcceptNextAvailablePicksAnUnlockedSessionWithMessages) {
  QRT_REQUIRE(native_sessions(caps()), "native session locks");
  QRT_MAKE_QUEUE(q, session_queue(std::max<milliseconds>(30s, tgt().event_timeout * 3)));
  send(q, in_session("held", "locked by someone else", 0));
  send(q, in_session("free", "ready for next-available", 0));
  // A session that exists but has no messages (its state is set, so it is known).
  auto idle = must(run(client().accept_session(q, session_id::from("idle"), tgt().event_timeout)),
                   "accept idle");
  if (caps().session_state) must(run(idle.set_state("known")), "set idle state");
  must(run(idle.close()), "close idle");
  auto held = must(run(client().accept_session(q, session_id::from("held"), tgt().event_timeout)),
                   "accept held");

  auto next = must(run(client().accept_session(q, std::nullopt, tgt().event_timeout)),
                   "accept next available");
  EXPECT_EQ(next.id().str(), "free") << "picked a locked or empty session";
  auto got = must(run(next.receive(10, tgt().event_timeout)), "receive");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.front().body, "ready for next-available");

  const auto start = std::chrono::steady_clock::now();
  auto none = run(client().accept_session(q, std::nullopt, tgt().empty_wait));
  ASSERT_FALSE(none) << "accepted '" << none->id().str()
                     << "' although every session with messages is held";
  EXPECT_EQ(none.error().code, errc::timeout) << none.error().to_string();
  EXPECT_GE(since(start), tgt().empty_wait * 8 / 10) << "gave up before the wait";

  must(run(next.complete(got.front().receipt)), "complete");
  must(run(next.close()), "close next");
  must(run(held.close()), "close held");
}

}  // namespace
}  // namespace qrt::conformance
