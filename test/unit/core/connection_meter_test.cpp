// The counts behind qrt::connection_stats: one recovery per outage however many attempts
// failed, timed from the outage's first failure; opens without a failure before are no
// recovery.
#include "core/connection_meter.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using qrt::detail::connection_meter;

TEST(ConnectionMeter, AnOutageIsOneRecoveryTimedFromItsFirstFailure) {
  connection_meter meter;
  const auto t0 = connection_meter::clock::now();
  meter.opened(t0);
  meter.sent(100);
  meter.received(40);
  meter.failed(t0 + 1s);  // the connection breaks
  meter.failed(t0 + 2s);  // reconnect attempts fail
  meter.failed(t0 + 3s);
  meter.opened(t0 + 4s);  // back: 3 s after the first failure
  meter.opened(t0 + 5s);  // a second connection, no outage
  meter.failed(t0 + 6s);
  meter.opened(t0 + 6s + 500ms);

  const auto s = meter.read();
  EXPECT_EQ(s.bytes_sent, 100u);
  EXPECT_EQ(s.bytes_received, 40u);
  EXPECT_EQ(s.connections_opened, 4u);
  EXPECT_EQ(s.connection_failures, 4u);
  EXPECT_EQ(s.recoveries, 2u);
  EXPECT_EQ(s.recovery_time_total, 3500ms);
  EXPECT_EQ(s.longest_recovery, 3s);
}

TEST(ConnectionMeter, FailuresWithoutARecoveryAreCountedButNotTimed) {
  connection_meter meter;
  const auto t0 = connection_meter::clock::now();
  meter.failed(t0);
  meter.failed(t0 + 1s);
  const auto s = meter.read();
  EXPECT_EQ(s.connection_failures, 2u);
  EXPECT_EQ(s.connections_opened, 0u);
  EXPECT_EQ(s.recoveries, 0u);
  EXPECT_EQ(s.recovery_time_total.count(), 0);
}
