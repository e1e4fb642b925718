// Dead letters are kept, not lost: a message that failed too often waits in its queue's
// dead-letter queue with the reason. Once the cause is fixed, an operator's tool reads the
// dead-letter queue, sends each message back to its queue and completes the dead letter only
// after that send succeeded, so a crash in between duplicates a message but never loses one.
#include <iostream>
#include <qrt/client.hpp>
#include <qrt/memory.hpp>
#include <qrt/runtime.hpp>

using namespace std::chrono_literals;

int main() {
  qrt::runtime rt(qrt::runtime_configuration::for_low_resource());
  auto provider =
      qrt::memory::make_provider(qrt::memory::options::for_testing(), rt.executor()).value();
  qrt::queue_client client(provider);
  const auto invoices = qrt::queue_name::from("invoices");
  rt.block_on(client.create_queue(invoices, {.max_delivery_count = 2})).value();
  for (const char* body : {"invoice-1", "invoice-2 (bad currency)", "invoice-3"}) {
    rt.block_on(client.send(invoices, {.body = body})).value();
  }

  // A consumer that cannot handle invoice-2 yet: it gives it back each time, and after its
  // second delivery the queue moves it to the dead-letter queue.
  int completed = 0;
  for (int round = 0; round < 10; ++round) {
    auto batch = rt.block_on(client.receive(invoices, 10, 200ms)).value();
    if (batch.empty()) break;
    for (const auto& m : batch) {
      if (m.body.find("bad") != std::string::npos) {
        rt.block_on(client.abandon(m.receipt)).value();
      } else {
        rt.block_on(client.complete(m.receipt)).value();
        ++completed;
      }
    }
  }

  // The fix is deployed; resubmit what the dead-letter queue holds. A send that fails means the
  // cause is not fixed after all: that dead letter and the rest of its batch are given back and
  // the tool stops, rather than take the same dead letter again and again.
  int resubmitted = 0;
  bool failed = false;
  while (!failed) {
    auto dead = rt.block_on(client.receive(invoices.dead_letter(), 10, 0ms)).value();
    if (dead.empty()) break;
    for (const auto& m : dead) {
      if (failed) {
        rt.block_on(client.abandon(m.receipt)).value();
        continue;
      }
      std::cout << "dead letter " << m.id << ": " << m.body << " (" << m.dead_letter->reason
                << ", delivery " << m.delivery_count << ")\n";
      qrt::message again = m;  // body, attributes, subject, correlation id, content type
      again.id.clear();        // a new message: let the queue assign its id
      again.attributes["resubmitted-from"] = m.id;
      if (auto sent = rt.block_on(client.send(invoices, std::move(again))); !sent) {
        std::cerr << "resubmit failed, the dead letters stay: " << sent.error().to_string() << '\n';
        rt.block_on(client.abandon(m.receipt)).value();
        failed = true;
        continue;
      }
      rt.block_on(client.complete(m.receipt)).value();
      ++resubmitted;
    }
  }

  // The fixed consumer handles the resubmitted invoice like any other.
  auto back = rt.block_on(client.receive(invoices, 10, 1s)).value();
  for (const auto& m : back) {
    std::cout << "handled " << m.body << " (resubmitted from "
              << m.attributes.at("resubmitted-from") << ", delivery " << m.delivery_count << ")\n";
    rt.block_on(client.complete(m.receipt)).value();
  }
  const auto stats = rt.block_on(client.stats(invoices)).value();
  std::cout << completed << " completed at first, " << resubmitted
            << " resubmitted; left: " << stats.active << " active, " << stats.dead_lettered
            << " dead-lettered\n";
  return !failed && completed == 2 && resubmitted == 1 && back.size() == 1 &&
                 back[0].delivery_count == 1 && stats.active == 0 && stats.dead_lettered == 0
             ? 0
             : 1;
}
