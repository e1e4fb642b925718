// How a send, receive or settle finds its queue without the registry's lock
// (src/providers/memory/queue_borrow.hpp, docs/adr/0004-embedded-provider.md): what one thread
// announces another sees, a lookup remembered from before a queue was deleted is not used after
// it, and queues deleted and made again while other threads use them fail those calls cleanly.
#include "providers/memory/queue_borrow.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <qrt/client.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using qrt::errc;
using qrt::queue_name;
namespace detail = qrt::memory::detail;

namespace {

// An address to announce; never dereferenced.
const detail::queue_state* fake_state(const int& somewhere) {
  return reinterpret_cast<const detail::queue_state*>(&somewhere);
}

// `what` announced in this thread's slot, as the provider's announce() does, until the borrow
// ends.
detail::queue_borrow borrow_in_this_thread(const detail::queue_state* what) {
  auto& mine = detail::this_threads_borrows();
  mine.slot->in_use.store(what);
  return {const_cast<detail::queue_state*>(what), mine.slot};
}

}  // namespace

TEST(QueueBorrow, WhatAThreadAnnouncesOthersSeeUntilItIsReleased) {
  const int a = 0;
  const int b = 0;
  std::promise<void> announced;
  std::promise<void> may_release;
  std::promise<void> released;
  std::thread user([&] {
    {
      auto borrow = borrow_in_this_thread(fake_state(a));
      announced.set_value();
      may_release.get_future().wait();
    }
    released.set_value();
  });
  announced.get_future().wait();
  EXPECT_TRUE(detail::anyone_borrows(fake_state(a)));
  EXPECT_FALSE(detail::anyone_borrows(fake_state(b)));
  may_release.set_value();
  released.get_future().wait();
  EXPECT_FALSE(detail::anyone_borrows(fake_state(a)));
  user.join();
}

TEST(QueueBorrow, EachThreadAnnouncesInItsOwnSlot) {
  const int a = 0;
  const int b = 0;
  std::promise<void> both_announced_a;
  std::promise<void> both_announced_b;
  std::promise<void> done;
  auto done_future = done.get_future().share();
  auto hold = [&done_future](const detail::queue_state* what, std::promise<void>& announced) {
    auto borrow = borrow_in_this_thread(what);
    announced.set_value();
    done_future.wait();
  };
  std::thread first(hold, fake_state(a), std::ref(both_announced_a));
  std::thread second(hold, fake_state(b), std::ref(both_announced_b));
  both_announced_a.get_future().wait();
  both_announced_b.get_future().wait();
  EXPECT_TRUE(detail::anyone_borrows(fake_state(a)));
  EXPECT_TRUE(detail::anyone_borrows(fake_state(b)));
  done.set_value();
  first.join();
  second.join();
  EXPECT_FALSE(detail::anyone_borrows(fake_state(a)));
  EXPECT_FALSE(detail::anyone_borrows(fake_state(b)));
}

// One thread runs every call, so each lookup finds the one it remembered from the call before.
// The queue deleted and made again under the same name is another queue: a send goes to the new
// one, not to the deleted state that thread found last.
TEST(QueueBorrow, ASendAfterItsQueueWasDeletedAndMadeAgainGoesToTheNewQueue) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto p = qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{p, {.retry = std::nullopt}};
  const auto q = queue_name::from("remade");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "to the first"})));
  ASSERT_TRUE(rt.block_on(client.delete_queue(q)));
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {})));
  auto sent = rt.block_on(client.send(q, qrt::message{.body = "to the second"}));
  ASSERT_TRUE(sent) << sent.error().to_string();
  auto got = rt.block_on(client.receive(q, 10, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().body, "to the second");
}

// A settlement remembers the queue it found by id. Once that queue is deleted and its state
// freed (another deletion frees what no thread uses any more), a later settlement of one of its
// receipts on the same thread must not reach the freed state: it is refused. Under ASan a stale
// lookup shows as a use after free.
TEST(QueueBorrow, AReceiptOfADeletedQueueIsRefusedAfterItsStateIsFreed) {
  qrt::runtime rt{{.worker_threads = 1}};
  auto p = qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{p, {.retry = std::nullopt}};
  const auto q = queue_name::from("gone");
  const auto other = queue_name::from("other");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {})));
  ASSERT_TRUE(rt.block_on(client.create_queue(other, {})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "1"})));
  ASSERT_TRUE(rt.block_on(client.send(q, qrt::message{.body = "2"})));
  auto got = rt.block_on(client.receive(q, 2, 1s));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  ASSERT_TRUE(rt.block_on(client.complete(got->at(0).receipt)));  // remembers the queue by id
  ASSERT_TRUE(rt.block_on(client.delete_queue(q)));
  ASSERT_TRUE(rt.block_on(client.delete_queue(other)));  // frees the state of `q`
  auto late = rt.block_on(client.complete(got->at(1).receipt));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, errc::invalid_receipt);
}

// Four senders, receivers and settlers on four threads while a fifth coroutine deletes the queue
// and makes it again a hundred times: each call succeeds or says the queue (or the receipt's
// queue) is gone; none reaches a freed state (ASan, TSan).
TEST(QueueBorrow, AQueueDeletedAndMadeAgainUnderLoadFailsItsCallsCleanly) {
  qrt::runtime rt{{.worker_threads = 4}};
  auto p = qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client{p, {.retry = std::nullopt}};
  const auto q = queue_name::from("churn");
  ASSERT_TRUE(rt.block_on(client.create_queue(q, {})));
  std::atomic<bool> churning{true};
  std::atomic<int> succeeded{0};
  std::mutex codes_mutex;
  std::set<errc> codes;
  auto note = [&](const qrt::error& e) {
    std::lock_guard lock(codes_mutex);
    codes.insert(e.code);
  };
  auto user = [&]() -> qrt::awaitable<void> {
    while (churning) {
      // The provider answers without suspending: without a yield the four users would keep
      // every thread of the runtime and the deletions below would never run.
      co_await boost::asio::post(co_await boost::asio::this_coro::executor,
                                 boost::asio::use_awaitable);
      qrt::message m{.body = "m"};  // a named local: GCC 12 mishandles temporaries in co_await
      auto sent = co_await client.send(q, std::move(m));
      if (!sent) {
        note(sent.error());
        continue;
      }
      auto got = co_await client.receive(q, 1, 0ms);
      if (!got) {
        note(got.error());
        continue;
      }
      for (auto& r : *got) {
        auto done = co_await client.complete(r.receipt);
        if (done) {
          ++succeeded;
        } else {
          note(done.error());
        }
      }
    }
  };
  std::vector<std::future<void>> users;
  for (int i = 0; i < 4; ++i) {
    users.push_back(boost::asio::co_spawn(rt.executor(), user(), boost::asio::use_future));
  }
  int remade = 0;
  for (int i = 0; i < 100; ++i) {
    if (rt.block_on(client.delete_queue(q))) ++remade;
    ASSERT_TRUE(rt.block_on(client.create_queue(q, {})));
  }
  churning = false;
  for (auto& u : users) u.get();
  EXPECT_EQ(remade, 100);
  EXPECT_GT(succeeded.load(), 0);
  for (const auto code : codes) {
    EXPECT_TRUE(code == errc::queue_not_found || code == errc::invalid_receipt)
        << "unexpected error code " << static_cast<int>(code);
  }
}
