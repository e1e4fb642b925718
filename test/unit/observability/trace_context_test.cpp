#include <gtest/gtest.h>

#include <qrt/trace_context.hpp>

namespace qrt::tracing {
namespace {

constexpr std::string_view example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContext, ParsesAndPrintsTheSpecExample) {
  auto ctx = trace_context::parse(example);
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(ctx->sampled());
  EXPECT_EQ(ctx->trace_id[0], 0x4b);
  EXPECT_EQ(ctx->parent_id[7], 0xb7);
  EXPECT_EQ(ctx->to_traceparent(), example);
}

TEST(TraceContext, RefusesMalformedValues) {
  for (std::string_view bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // short
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // v00 with extra
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // forbidden version
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // uppercase
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent id
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    // not hex
       }) {
    EXPECT_FALSE(trace_context::parse(bad)) << bad;
  }
}

TEST(TraceContext, ReadsAHigherVersionByItsVersionZeroPrefix) {
  auto ctx = trace_context::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->to_traceparent(), example);
}

TEST(TraceContext, GeneratedContextsAreValidAndDistinct) {
  auto a = trace_context::generate();
  auto b = trace_context::generate(false);
  EXPECT_NE(a.trace_id, b.trace_id);
  EXPECT_TRUE(a.sampled());
  EXPECT_FALSE(b.sampled());
  EXPECT_EQ(trace_context::parse(a.to_traceparent()), a);
  auto child = a.child();
  EXPECT_EQ(child.trace_id, a.trace_id);
  EXPECT_NE(child.parent_id, a.parent_id);
}

TEST(TraceContext, InjectThenExtractRoundTripsThroughTheMessageAttributes) {
  message m;
  m.attributes["tenant"] = "acme";
  const auto ctx = trace_context::generate();
  inject(m, ctx);
  EXPECT_EQ(m.attributes.at("traceparent"), ctx.to_traceparent());
  EXPECT_EQ(m.attributes.at("tenant"), "acme");
  EXPECT_EQ(extract(m), ctx);
}

TEST(TraceContext, ExtractIgnoresAMissingOrMalformedHeader) {
  message m;
  EXPECT_FALSE(extract(m));
  m.attributes["traceparent"] = "garbage";
  EXPECT_FALSE(extract(m));
}

}  // namespace
}  // namespace qrt::tracing
