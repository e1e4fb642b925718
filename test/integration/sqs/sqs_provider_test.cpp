// The SQS provider against a real SQS emulator (fauxqs): every operation of the provider
// interface, its error mapping, and the paths where messages could be lost or duplicated.
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <qrt/client.hpp>
#include <set>

#include "sqs_fixture.hpp"

using namespace qrt;
using namespace std::chrono_literals;
using qrt::test::text;

class SqsProvider : public qrt::test::sqs_fixture {
 protected:
  std::vector<received_message> receive_all(const queue_name& q, std::size_t n,
                                            milliseconds wait = 2s) {
    std::vector<received_message> out;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto r = run(provider_->receive(q, n - out.size(), wait));
      EXPECT_TRUE(r) << r.error().to_string();
      if (!r) break;
      for (auto& m : *r) out.push_back(std::move(m));
    }
    return out;
  }
  result<void> settle_one(settlement s) {
    std::vector<settlement> v;
    v.push_back(std::move(s));
    return run(provider_->settle(std::move(v))).at(0);
  }
};

TEST_F(SqsProvider, RoundTripKeepsBinaryBodyAttributesAndFields) {
  auto q = create("roundtrip");
  message m;
  m.body = std::string("\x00\x01\x02\xff\xfe binary \xe2\x98", 16);  // not valid UTF-8
  m.attributes = {{"tenant", "acme"}, {"unicode", "h\xc3\xa9llo \xe2\x98\x83"}};
  m.correlation_id = "corr-7";
  m.content_type = "application/octet-stream";
  m.subject = "invoice";
  const auto before = clock::now();
  auto sent = run(provider_->send(q, {m}, 5s));
  ASSERT_TRUE(sent) << sent.error().to_string();
  ASSERT_TRUE(sent->at(0)) << sent->at(0).error().to_string();

  auto got = receive_all(q, 1);
  ASSERT_EQ(got.size(), 1u);
  const auto& r = got[0];
  EXPECT_EQ(r.body, m.body);
  EXPECT_EQ(r.attributes, m.attributes);
  EXPECT_EQ(r.correlation_id, "corr-7");
  EXPECT_EQ(r.content_type, "application/octet-stream");
  EXPECT_EQ(r.subject, "invoice");
  EXPECT_EQ(r.id, *sent->at(0));
  EXPECT_EQ(r.delivery_count, 1u);
  EXPECT_GE(r.enqueued_time, before - 2s);
  EXPECT_LE(r.enqueued_time, clock::now() + 2s);
  EXPECT_GT(r.locked_until, clock::now());
  ASSERT_TRUE(settle_one(settlement::complete(r.receipt)));
  auto stats = run(provider_->stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->active, 0);
  EXPECT_EQ(stats->in_flight, 0);
}

TEST_F(SqsProvider, BatchesSplitAndLargeReceivesLoopAndNothingIsLost) {
  auto q = create("batch");
  queue_client client(provider_);
  std::vector<message> batch;
  for (int i = 0; i < 35; ++i) batch.push_back(text("m" + std::to_string(i)));
  auto sent = run(client.send_batch(q, batch));
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->size(), 35u);
  std::set<std::string> ids;
  for (auto& o : *sent) {
    ASSERT_TRUE(o) << o.error().to_string();
    ids.insert(*o);
  }
  EXPECT_EQ(ids.size(), 35u);

  // One receive call for 35 loops ReceiveMessage (10 at most per call).
  auto got = receive_all(q, 35);
  ASSERT_EQ(got.size(), 35u);
  std::set<std::string> bodies;
  std::vector<settlement> completes;
  for (auto& m : got) {
    bodies.insert(m.body);
    completes.push_back(settlement::complete(m.receipt));
  }
  EXPECT_EQ(bodies.size(), 35u);
  auto results = run(provider_->settle(std::move(completes)));
  for (auto& r : results) EXPECT_TRUE(r) << r.error().to_string();
  auto more = run(provider_->receive(q, 10, 0ms));
  ASSERT_TRUE(more);
  EXPECT_TRUE(more->empty());
}

TEST_F(SqsProvider, PerMessageFailuresInABatchLeaveTheOthersSent) {
  auto q = create("partial");
  std::vector<message> batch{text("ok-1"), text("bad"), text("ok-2")};
  for (int i = 0; i < 11; ++i) batch[1].attributes["a" + std::to_string(i)] = "x";  // SQS allows 10
  auto sent = run(provider_->send(q, batch, 5s));
  ASSERT_TRUE(sent);
  EXPECT_TRUE(sent->at(0));
  ASSERT_FALSE(sent->at(1));
  EXPECT_EQ(sent->at(1).error().code, errc::invalid_argument);
  EXPECT_TRUE(sent->at(2));
  auto got = receive_all(q, 2);
  ASSERT_EQ(got.size(), 2u);
  std::set<std::string> bodies{got[0].body, got[1].body};
  EXPECT_EQ(bodies, (std::set<std::string>{"ok-1", "ok-2"}));
}

TEST_F(SqsProvider, SizeLimitIsEnforcedAndBigBatchesAreSplitByBytes) {
  queue_options qo;
  qo.max_message_bytes = 262'144;
  auto q = create("size", qo);
  auto too_big = run(provider_->send(q, {text(std::string(262'145, 'x'))}, 5s));
  ASSERT_TRUE(too_big);
  ASSERT_FALSE(too_big->at(0));
  EXPECT_EQ(too_big->at(0).error().code, errc::message_too_large);

  // Three 100 KB messages cannot share one 256 KiB batch: they must all arrive anyway.
  std::vector<message> big;
  for (char c : {'a', 'b', 'c'}) big.push_back(text(std::string(100'000, c)));
  auto sent = run(provider_->send(q, big, 5s));
  ASSERT_TRUE(sent);
  for (auto& o : *sent) EXPECT_TRUE(o) << o.error().to_string();
  auto got = receive_all(q, 3);
  ASSERT_EQ(got.size(), 3u);
  for (auto& m : got) EXPECT_EQ(m.body.size(), 100'000u);
}

TEST_F(SqsProvider, AbandonRedeliversWithHigherDeliveryCount) {
  auto q = create("abandon");
  ASSERT_TRUE(run(provider_->send(q, {text("again")}, 5s)));
  auto first = receive_all(q, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].delivery_count, 1u);
  ASSERT_TRUE(settle_one(settlement::abandon(first[0].receipt)));
  auto second = receive_all(q, 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].body, "again");
  EXPECT_EQ(second[0].delivery_count, 2u);
  // The abandoned receipt is spent.
  auto stale = settle_one(settlement::complete(first[0].receipt));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, errc::invalid_receipt);
}

TEST_F(SqsProvider, SecondSettleOfAReceiptFailsDistinctly) {
  auto q = create("twice");
  ASSERT_TRUE(run(provider_->send(q, {text("x")}, 5s)));
  auto got = receive_all(q, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(settle_one(settlement::complete(got[0].receipt)));
  auto again = settle_one(settlement::complete(got[0].receipt));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::invalid_receipt);
  receipt_handle forged = got[0].receipt;
  forged.owner = 0;
  EXPECT_EQ(settle_one(settlement::complete(forged)).error().code, errc::invalid_receipt);
}

TEST_F(SqsProvider, RenewLockExtendsVisibilityAndAnExpiredReceiptIsRefused) {
  queue_options qo;
  qo.lock_duration = 3s;
  auto q = create("lock", qo);
  ASSERT_TRUE(run(provider_->send(q, {text("held")}, 5s)));
  auto got = receive_all(q, 1);
  ASSERT_EQ(got.size(), 1u);
  const auto first_lock_ends = got[0].locked_until;

  // While the lock holds, nobody else gets the message; this long poll also lets part of the
  // lock run out, so that a renewal has something to extend.
  auto held = run(provider_->receive(q, 1, 2s));
  ASSERT_TRUE(held) << held.error().to_string();
  EXPECT_TRUE(held->empty()) << "a locked message was delivered again";

  auto renewed = run(provider_->renew_lock(got[0].receipt));
  ASSERT_TRUE(renewed) << renewed.error().to_string();
  EXPECT_GE(*renewed, first_lock_ends + 1s) << "the renewal did not move the lock's end";

  // The renewal reached SQS: past the first lock's end the message is still invisible.
  auto still_held = run(provider_->receive(q, 1, 2s));
  ASSERT_TRUE(still_held) << still_held.error().to_string();
  EXPECT_GT(clock::now(), first_lock_ends) << "the long poll ended before the first lock did";
  EXPECT_TRUE(still_held->empty()) << "the message came back at the end of the unrenewed lock";

  // Past the renewed lock, the message comes back and the old receipt is refused as expired.
  auto back = receive_all(q, 1, 5s);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_GE(clock::now(), *renewed - 1s) << "redelivered before the renewed lock ran out";
  EXPECT_EQ(back[0].delivery_count, 2u);
  auto late = settle_one(settlement::complete(got[0].receipt));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, errc::receipt_expired);
  EXPECT_TRUE(settle_one(settlement::complete(back[0].receipt)));
}

TEST_F(SqsProvider, DeadLetterMovesTheMessageWithItsReason) {
  auto q = create("dlq");
  message m = text("poison");
  m.attributes = {{"k", "v"}};
  m.correlation_id = "c-1";
  ASSERT_TRUE(run(provider_->send(q, {m}, 5s)));
  auto got = receive_all(q, 1);
  ASSERT_EQ(got.size(), 1u);
  auto r = settle_one(settlement::dead_letter(got[0].receipt, "bad-format", "field x missing"));
  ASSERT_TRUE(r) << r.error().to_string();

  auto left = run(provider_->receive(q, 1, 0ms));
  ASSERT_TRUE(left);
  EXPECT_TRUE(left->empty()) << "the original must be gone from the queue";
  auto dead = receive_all(q.dead_letter(), 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "poison");
  EXPECT_EQ(dead[0].attributes, m.attributes);
  EXPECT_EQ(dead[0].correlation_id, "c-1");
  ASSERT_TRUE(dead[0].dead_letter);
  EXPECT_EQ(dead[0].dead_letter->reason, "bad-format");
  EXPECT_EQ(dead[0].dead_letter->description, "field x missing");
  auto stats = run(provider_->stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->dead_lettered, 0) << "received from the DLQ, so in flight there";
}

TEST_F(SqsProvider, MaxDeliveryCountMovesToTheDeadLetterQueueBySqsRedrive) {
  queue_options qo;
  qo.max_delivery_count = 2;
  auto q = create("redrive", qo);
  ASSERT_TRUE(run(provider_->send(q, {text("flaky")}, 5s)));
  for (int i = 0; i < 2; ++i) {
    auto got = receive_all(q, 1);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(settle_one(settlement::abandon(got[0].receipt)));
  }
  auto again = run(provider_->receive(q, 1, 1s));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty()) << "a third delivery must not happen";
  auto dead = receive_all(q.dead_letter(), 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "flaky");
  ASSERT_TRUE(dead[0].dead_letter);
  EXPECT_EQ(dead[0].dead_letter->reason, "MaxDeliveryCountExceeded");
}

TEST_F(SqsProvider, FifoKeepsPerGroupOrderAndDeduplicatesById) {
  auto q = create("fifo", {}, true);
  std::vector<message> batch;
  for (int i = 0; i < 6; ++i) {
    message m = text(std::to_string(i));
    m.session = session_id::from(i % 2 ? "odd" : "even");
    m.id = "id-" + std::to_string(i);
    batch.push_back(std::move(m));
  }
  ASSERT_TRUE(run(provider_->send(q, batch, 5s)));
  // The same id again within the dedup window is dropped by SQS.
  message dup = text("0-again");
  dup.session = session_id::from("even");
  dup.id = "id-0";
  auto d = run(provider_->send(q, {dup}, 5s));
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->at(0));

  std::map<std::string, std::vector<std::string>> by_group;
  std::size_t total = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (total < 6 && std::chrono::steady_clock::now() < deadline) {
    auto got = run(provider_->receive(q, 10, 1s));
    ASSERT_TRUE(got) << got.error().to_string();
    std::vector<settlement> done;
    for (auto& m : *got) {
      ASSERT_TRUE(m.session);
      by_group[m.session->str()].push_back(m.body);
      done.push_back(settlement::complete(m.receipt));
      ++total;
    }
    for (auto& r : run(provider_->settle(std::move(done)))) EXPECT_TRUE(r);
  }
  EXPECT_EQ(by_group["even"], (std::vector<std::string>{"0", "2", "4"}));
  EXPECT_EQ(by_group["odd"], (std::vector<std::string>{"1", "3", "5"}));
  auto rest = run(provider_->receive(q, 10, 1s));
  ASSERT_TRUE(rest);
  EXPECT_TRUE(rest->empty()) << "the duplicate must have been dropped";
}

TEST_F(SqsProvider, FifoReceiveRequestAttemptIdIsAccepted) {
  auto o = default_options();
  o.receive_request_attempt_id = true;
  auto p = make(o);
  auto q = create("attempt", {}, true);
  ASSERT_TRUE(run(p->send(q, {text("a")}, 5s)));
  auto got = run(p->receive(q, 1, 2s));
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  run(p->close());
}

TEST_F(SqsProvider, LongPollReturnsAsSoonAsAMessageArrives) {
  using namespace boost::asio::experimental::awaitable_operators;
  auto q = create("longpoll");
  auto sender = make();
  // The receive starts first and waits; a message sent 300 ms later ends the wait.
  auto scenario = [&]() -> awaitable<result<std::vector<received_message>>> {
    auto later = [&]() -> awaitable<void> {
      boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 300ms);
      co_await t.async_wait(boost::asio::use_awaitable);
      std::vector<message> one{text("late")};  // (GCC 12: no braced lists inside co_await)
      (void)co_await sender->send(q, std::move(one), 5s);
    };
    co_return co_await (provider_->receive(q, 1, 10s) && later());
  };
  const auto start = std::chrono::steady_clock::now();
  auto got = run(scenario());
  ASSERT_TRUE(got) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->at(0).body, "late");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s)
      << "the poll must end early, not at its wait";
  run(sender->close());
}

TEST_F(SqsProvider, DelayedMessageIsHiddenUntilItsTime) {
  auto q = create("delay");
  message m = text("later");
  m.scheduled_enqueue_time = clock::now() + 2s;
  ASSERT_TRUE(run(provider_->send(q, {m}, 5s)));
  auto now = run(provider_->receive(q, 1, 0ms));
  ASSERT_TRUE(now);
  EXPECT_TRUE(now->empty());
  auto stats = run(provider_->stats(q));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->scheduled, 1);
  auto got = receive_all(q, 1, 5s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "later");
}

TEST_F(SqsProvider, MissingQueueIsQueueNotFound) {
  auto q = unique_queue("missing");
  auto s = run(provider_->send(q, {text("x")}, 5s));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::queue_not_found);
  EXPECT_NE(s.error().message.find(q.str()), std::string::npos);
  auto r = run(provider_->receive(q, 1, 0ms));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::queue_not_found);
}

TEST_F(SqsProvider, DeletedQueueIsForgottenFromTheUrlCache) {
  auto q = create("deleted");
  ASSERT_TRUE(run(provider_->send(q, {text("x")}, 5s)));
  ASSERT_TRUE(run(provider_->delete_queue(q)));
  auto s = run(provider_->send(q, {text("y")}, 5s));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::queue_not_found);
  auto dlq = run(provider_->receive(q.dead_letter(), 1, 0ms));
  ASSERT_FALSE(dlq);
  EXPECT_EQ(dlq.error().code, errc::queue_not_found) << "the paired DLQ goes with its queue";
}

// qrt pairs a queue with "<name>-dlq" by name. A queue of that name qrt did not make as the
// pair's (here a queue of the user's own, with messages) is neither taken over by creating
// "<name>" nor deleted with it.
TEST_F(SqsProvider, AQueueNamedLikeAPairsDeadLetterQueueIsNotTakenOverOrDeleted) {
  const auto orders = unique_queue("pairing");
  const auto theirs = queue_name::from(orders.str() + "-dlq");
  ASSERT_TRUE(run(provider_->create_queue(theirs, {})));
  ASSERT_TRUE(run(provider_->send(theirs, {text("a"), text("b"), text("c")}, 5s)));

  auto refused = run(provider_->create_queue(orders, {}));
  ASSERT_FALSE(refused) << "a queue of the user's own was taken as a dead-letter queue";
  EXPECT_EQ(refused.error().code, errc::invalid_argument) << refused.error().to_string();
  EXPECT_NE(refused.error().message.find(theirs.str()), std::string::npos)
      << refused.error().to_string();
  auto missing = run(provider_->stats(orders));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::queue_not_found) << "the refused queue was created";
  auto kept = run(provider_->stats(theirs));
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_EQ(kept->active, 3);

  // Made by qrt, the pair is created again and deleted together, as before.
  const auto paired = create("pairing-own");
  ASSERT_TRUE(run(provider_->create_queue(paired, {}))) << "creating a pair again is refused";
  ASSERT_TRUE(run(provider_->delete_queue(paired)));
  auto gone = run(provider_->receive(paired.dead_letter(), 1, 0ms));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, errc::queue_not_found);
  ASSERT_TRUE(run(provider_->delete_queue(theirs)));
}

TEST_F(SqsProvider, UnsupportedOperationsSaySo) {
  auto q = create("unsupported");
  auto peek = run(provider_->peek(q, 1, 0));
  ASSERT_FALSE(peek);
  EXPECT_EQ(peek.error().code, errc::unsupported);
  auto session = run(provider_->accept_session(q, std::nullopt, 0ms));
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, errc::unsupported);
  EXPECT_NE(session.error().message.find("FIFO"), std::string::npos);
}

TEST_F(SqsProvider, EmulatedSessionsHandOutOneGroupInOrderPerAcceptance) {
  auto q = create("sessions", {}, true);
  // Three interleaved groups; two consumers alternate accepting the next available group.
  std::vector<message> batch;
  for (int i = 0; i < 12; ++i) {
    message m = text(std::to_string(i));
    m.session = session_id::from(std::string("g") + static_cast<char>('a' + i % 3));
    batch.push_back(std::move(m));
  }
  ASSERT_TRUE(run(provider_->send(q, batch, 5s)));
  auto second = make();
  std::map<std::string, std::vector<int>> order;
  std::size_t total = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int turn = 0; total < 12 && std::chrono::steady_clock::now() < deadline; ++turn) {
    auto& p = turn % 2 ? second : provider_;
    auto accepted = run(p->accept_session(q, std::nullopt, 1s));
    if (!accepted && accepted.error().code == errc::timeout) continue;
    ASSERT_TRUE(accepted) << accepted.error().to_string();
    auto s = *accepted;
    auto got = run(s->receive(4, 1s));
    ASSERT_TRUE(got) << got.error().to_string();
    std::vector<settlement> done;
    for (auto& m : *got) {
      ASSERT_TRUE(m.session);
      EXPECT_EQ(m.session->str(), s->id().str()) << "a session only sees its own group";
      order[m.session->str()].push_back(std::stoi(m.body));
      done.push_back(settlement::complete(m.receipt));
      ++total;
    }
    for (auto& r : run(s->settle(std::move(done)))) EXPECT_TRUE(r) << r.error().to_string();
    ASSERT_TRUE(run(s->close()));
  }
  EXPECT_EQ(order["ga"], (std::vector<int>{0, 3, 6, 9}));
  EXPECT_EQ(order["gb"], (std::vector<int>{1, 4, 7, 10}));
  EXPECT_EQ(order["gc"], (std::vector<int>{2, 5, 8, 11}));
  run(second->close());

  auto named = run(provider_->accept_session(q, session_id::from("ga"), 0ms));
  ASSERT_FALSE(named);
  EXPECT_EQ(named.error().code, errc::unsupported);
  auto none = run(provider_->accept_session(q, std::nullopt, 1s));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, errc::timeout);
}

TEST_F(SqsProvider, ClosedProviderRefusesCalls) {
  auto q = create("closed");
  run(provider_->close());
  auto s = run(provider_->send(q, {text("x")}, 5s));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::closed);
}

TEST_F(SqsProvider, ConcurrentCallsDoNotQueueBehindALongPoll) {
  using namespace boost::asio::experimental::awaitable_operators;
  auto idle = create("idle");
  auto busy = create("busy");
  // A long poll on an empty queue is in flight while 20 sends to another queue run; only the
  // message the last of them sends to the polled queue can end the poll (its wait is the longest
  // SQS allows). Sends that queued behind the poll's connection could never send it: the poll
  // would end empty at the end of its wait, with the sends not done.
  bool sends_done = false;
  bool sends_done_before_poll_ended = false;
  auto scenario = [&]() -> awaitable<std::vector<std::string>> {
    auto poll = [&]() -> awaitable<std::vector<std::string>> {
      auto r = co_await provider_->receive(idle, 1, 20s);
      sends_done_before_poll_ended = sends_done;
      std::vector<std::string> bodies;
      if (!r) {
        bodies.push_back("error: " + r.error().to_string());
      } else {
        for (const auto& m : *r) bodies.push_back(m.body);
      }
      co_return bodies;
    };
    auto sends = [&]() -> awaitable<std::size_t> {
      std::size_t ok = 0;
      for (int i = 0; i < 20; ++i) {
        std::vector<message> one{text("x")};
        auto r = co_await provider_->send(busy, std::move(one), 5s);
        if (r && r->at(0)) ++ok;
      }
      sends_done = true;
      std::vector<message> wake{text("wake up")};
      auto r = co_await provider_->send(idle, std::move(wake), 5s);
      co_return (r && r->at(0)) ? ok + 1 : ok;
    };
    auto [polled, sent] = co_await (poll() && sends());
    EXPECT_EQ(sent, 21u);
    co_return polled;
  };
  EXPECT_EQ(run(scenario()), std::vector<std::string>{"wake up"});
  EXPECT_TRUE(sends_done_before_poll_ended);
}
