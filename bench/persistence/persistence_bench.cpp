// Persisted queue benchmark: the same workload (256-byte payloads, P producers sending batches
// of B, C consumers receiving up to B and acknowledging them) against
//   qrt    the embedded provider with enable_persistence (durability always|interval)
//   redis  Redis Streams: XADD / XREADGROUP / XACK (hiredis)
//   sqlite a table-backed queue in WAL mode with synchronous=FULL
// and prints one line: system, msgs/s end to end, p50/p99 send->receive latency.
//
//   persistence_bench qrt DIR always|interval  [options]
//   persistence_bench redis HOST PORT          [options]
//   persistence_bench sqlite FILE              [options]
// options: --messages N (20000) --producers P (4) --consumers C (2) --batch B (1) --label TEXT
#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <qrt/memory.hpp>
#include <qrt/qrt.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

struct settings {
  std::size_t messages = 20000;
  std::size_t producers = 4;
  std::size_t consumers = 2;
  std::size_t batch = 1;
  std::string label;
};

constexpr std::size_t payload_size = 256;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
      .count();
}

/// 256 bytes whose first 8 carry the send time, for the end-to-end latency.
std::string make_payload() {
  std::string p(payload_size, 'p');
  const std::int64_t t = now_ns();
  std::memcpy(p.data(), &t, sizeof t);
  return p;
}

std::int64_t sent_at(const char* data, std::size_t size) {
  std::int64_t t = 0;
  if (size >= sizeof t) std::memcpy(&t, data, sizeof t);
  return t;
}

/// Latencies collected by the consumers, and the count of messages consumed.
struct tally {
  std::mutex mutex;
  std::vector<std::int64_t> latencies_ns;
  std::atomic<std::size_t> consumed{0};
  void add(const std::vector<std::int64_t>& l) {
    std::lock_guard lock(mutex);
    latencies_ns.insert(latencies_ns.end(), l.begin(), l.end());
  }
};

void report(const settings& s, const std::string& system, double seconds, tally& t) {
  auto& l = t.latencies_ns;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) {
    return l.empty() ? 0.0
                     : static_cast<double>(l[static_cast<std::size_t>(p * (l.size() - 1))]) / 1e6;
  };
  std::printf(
      "%-28s msgs/s=%10.0f  p50_ms=%8.2f  p99_ms=%8.2f  (messages=%zu producers=%zu consumers=%zu "
      "batch=%zu)\n",
      (s.label.empty() ? system : s.label).c_str(),
      static_cast<double>(t.consumed.load()) / seconds, pct(0.50), pct(0.99), t.consumed.load(),
      s.producers, s.consumers, s.batch);
  std::fflush(stdout);
}

/// How many messages producer `i` of `n` sends.
std::size_t share(std::size_t total, std::size_t i, std::size_t n) {
  return total / n + (i < total % n ? 1 : 0);
}

// ---- qrt --------------------------------------------------------------------------------------

int run_qrt(const settings& s, const std::string& dir, const std::string& mode) {
  boost::asio::thread_pool pool(2);
  qrt::memory::options o;
  o.enable_persistence = true;
  o.persistence_path = dir;
  o.durability_mode =
      mode == "interval" ? qrt::memory::durability::interval : qrt::memory::durability::always;
  o.sync_interval = qrt::milliseconds{100};
  o.max_queue_size = s.messages + 1;
  auto provider = qrt::memory::make_provider(o, pool.get_executor());
  if (!provider) {
    std::fprintf(stderr, "qrt: %s\n", provider.error().message.c_str());
    return 1;
  }
  auto p = *provider;
  const auto queue = qrt::queue_name::from("bench");
  std::promise<void> created;
  boost::asio::co_spawn(
      pool,
      [&]() -> qrt::awaitable<void> {
        (void)co_await p->create_queue(queue, {});
        created.set_value();
      },
      boost::asio::detached);
  created.get_future().wait();

  tally t;
  std::atomic<std::size_t> running{s.producers + s.consumers};
  std::promise<void> all_done;
  auto finish = [&] {
    if (--running == 0) all_done.set_value();
  };
  const auto start = steady::now();
  for (std::size_t i = 0; i < s.producers; ++i) {
    boost::asio::co_spawn(
        pool,
        [&, n = share(s.messages, i, s.producers)]() -> qrt::awaitable<void> {
          for (std::size_t sent = 0; sent < n;) {
            std::vector<qrt::message> batch(std::min(s.batch, n - sent));
            for (auto& m : batch) m.body = make_payload();
            auto r = co_await p->send(queue, std::move(batch), qrt::milliseconds{60000});
            if (!r) {
              std::fprintf(stderr, "send: %s\n", r.error().message.c_str());
              std::abort();
            }
            sent += r->size();
          }
          finish();
        },
        boost::asio::detached);
  }
  for (std::size_t i = 0; i < s.consumers; ++i) {
    boost::asio::co_spawn(
        pool,
        [&]() -> qrt::awaitable<void> {
          std::vector<std::int64_t> lat;
          while (t.consumed.load() < s.messages) {
            auto got = co_await p->receive(queue, s.batch, qrt::milliseconds{100});
            if (!got) {
              std::fprintf(stderr, "receive: %s\n", got.error().message.c_str());
              std::abort();
            }
            if (got->empty()) continue;
            const auto now = now_ns();
            std::vector<qrt::settlement> acks;
            for (auto& m : *got) {
              lat.push_back(now - sent_at(m.body.data(), m.body.size()));
              acks.push_back(qrt::settlement::complete(m.receipt));
            }
            auto results = co_await p->settle(std::move(acks));
            for (auto& r : results)
              if (!r) {
                std::fprintf(stderr, "settle: %s\n", r.error().message.c_str());
                std::abort();
              }
            t.consumed += got->size();
          }
          t.add(lat);
          finish();
        },
        boost::asio::detached);
  }
  all_done.get_future().wait();
  const double seconds = std::chrono::duration<double>(steady::now() - start).count();
  report(s, "qrt-" + mode, seconds, t);
  p.reset();
  pool.join();
  return 0;
}

// ---- redis ------------------------------------------------------------------------------------

redisContext* redis_connect(const std::string& host, int port) {
  redisContext* c = redisConnect(host.c_str(), port);
  if (!c || c->err) {
    std::fprintf(stderr, "redis: cannot connect: %s\n", c ? c->errstr : "out of memory");
    std::exit(1);
  }
  return c;
}

redisReply* command(redisContext* c, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  auto* r = static_cast<redisReply*>(redisvCommand(c, fmt, ap));
  va_end(ap);
  if (!r || r->type == REDIS_REPLY_ERROR) {
    std::fprintf(stderr, "redis: %s\n", r ? r->str : c->errstr);
    std::exit(1);
  }
  return r;
}

int run_redis(const settings& s, const std::string& host, int port) {
  {
    redisContext* c = redis_connect(host, port);
    freeReplyObject(command(c, "DEL bench"));
    freeReplyObject(command(c, "XGROUP CREATE bench g $ MKSTREAM"));
    redisFree(c);
  }
  tally t;
  const auto start = steady::now();
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < s.producers; ++i) {
    threads.emplace_back([&, n = share(s.messages, i, s.producers)] {
      redisContext* c = redis_connect(host, port);
      for (std::size_t sent = 0; sent < n;) {
        const std::size_t k = std::min(s.batch, n - sent);
        for (std::size_t j = 0; j < k; ++j) {
          const std::string body = make_payload();
          redisAppendCommand(c, "XADD bench * b %b", body.data(), body.size());
        }
        for (std::size_t j = 0; j < k; ++j) {
          void* reply = nullptr;
          if (redisGetReply(c, &reply) != REDIS_OK) {
            std::fprintf(stderr, "redis: %s\n", c->errstr);
            std::exit(1);
          }
          freeReplyObject(reply);
        }
        sent += k;
      }
      redisFree(c);
    });
  }
  for (std::size_t i = 0; i < s.consumers; ++i) {
    threads.emplace_back([&, i] {
      redisContext* c = redis_connect(host, port);
      const std::string consumer = "c" + std::to_string(i);
      std::vector<std::int64_t> lat;
      while (t.consumed.load() < s.messages) {
        const std::string count = std::to_string(s.batch);
        redisReply* r = command(c, "XREADGROUP GROUP g %s COUNT %s BLOCK 100 STREAMS bench >",
                                consumer.c_str(), count.c_str());
        std::vector<std::string> ids;
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
          redisReply* entries = r->element[0]->element[1];
          const auto now = now_ns();
          for (std::size_t e = 0; e < entries->elements; ++e) {
            redisReply* entry = entries->element[e];
            ids.emplace_back(entry->element[0]->str, entry->element[0]->len);
            redisReply* fields = entry->element[1];
            lat.push_back(now - sent_at(fields->element[1]->str, fields->element[1]->len));
          }
        }
        freeReplyObject(r);
        if (ids.empty()) continue;
        std::vector<const char*> argv{"XACK", "bench", "g"};
        std::vector<std::size_t> lens{4, 5, 1};
        for (auto& id : ids) {
          argv.push_back(id.c_str());
          lens.push_back(id.size());
        }
        auto* ack = static_cast<redisReply*>(
            redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
        if (!ack) std::exit(1);
        freeReplyObject(ack);
        t.consumed += ids.size();
      }
      t.add(lat);
      redisFree(c);
    });
  }
  for (auto& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(steady::now() - start).count();
  report(s, "redis", seconds, t);
  return 0;
}

// ---- sqlite -----------------------------------------------------------------------------------

sqlite3* sqlite_open(const std::string& file) {
  sqlite3* db = nullptr;
  if (sqlite3_open(file.c_str(), &db) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: cannot open %s\n", file.c_str());
    std::exit(1);
  }
  sqlite3_busy_timeout(db, 60000);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr, nullptr, nullptr);
  return db;
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
    std::exit(1);
  }
}

int run_sqlite(const settings& s, const std::string& file) {
  {
    sqlite3* db = sqlite_open(file);
    exec(db,
         "DROP TABLE IF EXISTS queue;"
         "CREATE TABLE queue(id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL,"
         " locked_by INTEGER NOT NULL DEFAULT 0);"
         "CREATE INDEX queue_ready ON queue(locked_by, id);");
    sqlite3_close(db);
  }
  tally t;
  const auto start = steady::now();
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < s.producers; ++i) {
    threads.emplace_back([&, n = share(s.messages, i, s.producers)] {
      sqlite3* db = sqlite_open(file);
      sqlite3_stmt* insert = nullptr;
      sqlite3_prepare_v2(db, "INSERT INTO queue(body) VALUES(?)", -1, &insert, nullptr);
      for (std::size_t sent = 0; sent < n;) {
        const std::size_t k = std::min(s.batch, n - sent);
        exec(db, "BEGIN IMMEDIATE");
        for (std::size_t j = 0; j < k; ++j) {
          const std::string body = make_payload();
          sqlite3_bind_blob(insert, 1, body.data(), static_cast<int>(body.size()),
                            SQLITE_TRANSIENT);
          if (sqlite3_step(insert) != SQLITE_DONE) {
            std::fprintf(stderr, "sqlite insert: %s\n", sqlite3_errmsg(db));
            std::exit(1);
          }
          sqlite3_reset(insert);
        }
        exec(db, "COMMIT");
        sent += k;
      }
      sqlite3_finalize(insert);
      sqlite3_close(db);
    });
  }
  for (std::size_t i = 0; i < s.consumers; ++i) {
    threads.emplace_back([&, i] {
      sqlite3* db = sqlite_open(file);
      const long owner = static_cast<long>(i) + 1;
      sqlite3_stmt* lock = nullptr;
      sqlite3_stmt* fetch = nullptr;
      sqlite3_stmt* done = nullptr;
      // Peek-lock in one transaction, acknowledge in another: the same two steps as a queue.
      sqlite3_prepare_v2(db,
                         "UPDATE queue SET locked_by=?1 WHERE id IN (SELECT id FROM queue WHERE "
                         "locked_by=0 ORDER BY id LIMIT ?2)",
                         -1, &lock, nullptr);
      sqlite3_prepare_v2(db, "SELECT id, body FROM queue WHERE locked_by=?1", -1, &fetch, nullptr);
      sqlite3_prepare_v2(db, "DELETE FROM queue WHERE locked_by=?1", -1, &done, nullptr);
      std::vector<std::int64_t> lat;
      while (t.consumed.load() < s.messages) {
        exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(lock, 1, owner);
        sqlite3_bind_int64(lock, 2, static_cast<sqlite3_int64>(s.batch));
        sqlite3_step(lock);
        sqlite3_reset(lock);
        sqlite3_bind_int64(fetch, 1, owner);
        std::size_t got = 0;
        const auto now = now_ns();
        while (sqlite3_step(fetch) == SQLITE_ROW) {
          lat.push_back(now - sent_at(static_cast<const char*>(sqlite3_column_blob(fetch, 1)),
                                      static_cast<std::size_t>(sqlite3_column_bytes(fetch, 1))));
          ++got;
        }
        sqlite3_reset(fetch);
        exec(db, "COMMIT");
        if (got == 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(done, 1, owner);
        sqlite3_step(done);
        sqlite3_reset(done);
        exec(db, "COMMIT");
        t.consumed += got;
      }
      t.add(lat);
      sqlite3_finalize(lock);
      sqlite3_finalize(fetch);
      sqlite3_finalize(done);
      sqlite3_close(db);
    });
  }
  for (auto& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(steady::now() - start).count();
  report(s, "sqlite-wal-full", seconds, t);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s qrt DIR always|interval | redis HOST PORT | sqlite FILE [--messages N] "
                 "[--producers P] [--consumers C] [--batch B] [--label L]\n",
                 argv[0]);
    return 2;
  }
  const std::string system = argv[1];
  std::vector<std::string> positional;
  settings s;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--messages")
      s.messages = std::stoul(next());
    else if (a == "--producers")
      s.producers = std::stoul(next());
    else if (a == "--consumers")
      s.consumers = std::stoul(next());
    else if (a == "--batch")
      s.batch = std::stoul(next());
    else if (a == "--label")
      s.label = next();
    else
      positional.push_back(a);
  }
  if (system == "qrt" && positional.size() == 2) return run_qrt(s, positional[0], positional[1]);
  if (system == "redis" && positional.size() == 2)
    return run_redis(s, positional[0], std::stoi(positional[1]));
  if (system == "sqlite" && positional.size() == 1) return run_sqlite(s, positional[0]);
  std::fprintf(stderr, "bad arguments\n");
  return 2;
}
