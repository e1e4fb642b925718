#include <gtest/gtest.h>

#include <qrt/error.hpp>
#include <sstream>

using qrt::errc;
using qrt::error_kind;

TEST(Error, ClassificationDefaultsFollowTheCode) {
  EXPECT_EQ(qrt::default_kind(errc::throttled), error_kind::throttled);
  EXPECT_EQ(qrt::default_kind(errc::connection_failed), error_kind::transient);
  EXPECT_EQ(qrt::default_kind(errc::timeout), error_kind::transient);
  EXPECT_EQ(qrt::default_kind(errc::queue_not_found), error_kind::permanent);
  EXPECT_EQ(qrt::default_kind(errc::message_too_large), error_kind::permanent);
  EXPECT_EQ(qrt::default_kind(errc::receipt_expired), error_kind::permanent);
}

// "Maybe applied" is a code of its own, so a caller branches on it instead of parsing a
// message: transient (a retry may duplicate a send or find a settlement already applied), and
// appended after every older code, whose numbers (stored, compared across versions) stay put.
TEST(Error, UnconfirmedIsATransientCodeOfItsOwnAppendedLast) {
  EXPECT_EQ(qrt::default_kind(errc::unconfirmed), error_kind::transient);
  EXPECT_EQ(qrt::to_string(errc::unconfirmed), "unconfirmed");
  EXPECT_EQ(qrt::make_error_code(errc::unconfirmed).message(), "unconfirmed");
  EXPECT_EQ(static_cast<int>(errc::queue_not_found), 1);
  EXPECT_EQ(static_cast<int>(errc::topic_not_found), 18);
  EXPECT_EQ(static_cast<int>(errc::unconfirmed), 19);
  const qrt::error e{errc::unconfirmed, "the link to 'q' ended", "amqp:link:detach-forced"};
  EXPECT_TRUE(e.is_transient());
  EXPECT_EQ(e.to_string(), "unconfirmed: the link to 'q' ended [amqp:link:detach-forced]");
}

TEST(Error, ToStringKeepsTheProviderCode) {
  qrt::error e{errc::queue_not_found, "queue 'orders' does not exist", "QueueDoesNotExist"};
  EXPECT_EQ(e.to_string(), "queue_not_found: queue 'orders' does not exist [QueueDoesNotExist]");
  EXPECT_FALSE(e.is_transient());
  EXPECT_TRUE(e == errc::queue_not_found);
}

// Codes, kinds and errors print by name: a failed EXPECT_EQ(e.code, errc::x) or a log line says
// "unconfirmed", not a number (or, from gtest, the enum's raw bytes).
TEST(Error, CodesKindsAndErrorsPrintByName) {
  std::ostringstream os;
  os << errc::unconfirmed << ' ' << error_kind::throttled << ' '
     << qrt::error{errc::timeout, "receive took too long", "X"};
  EXPECT_EQ(os.str(), "unconfirmed throttled timeout: receive took too long [X]");
  EXPECT_EQ(testing::PrintToString(errc::queue_full), "queue_full");
  EXPECT_EQ(testing::PrintToString(error_kind::permanent), "permanent");
}

TEST(Error, ErrorCodeUsesTheQrtCategory) {
  boost::system::error_code ec = errc::session_locked;
  EXPECT_EQ(ec.category().name(), std::string("qrt"));
  EXPECT_EQ(ec.message(), "session_locked");
}

TEST(Error, ResultValueThrowsQrtException) {
  qrt::result<int> r = qrt::fail(errc::timeout, "receive took too long");
  try {
    (void)r.value();
    FAIL() << "value() on an error must throw";
  } catch (const qrt::exception& ex) {
    EXPECT_EQ(ex.get().code, errc::timeout);
    EXPECT_STREQ(ex.what(), "timeout: receive took too long");
  }
}
