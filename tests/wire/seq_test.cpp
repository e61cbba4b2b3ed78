#include "usnet/wire/seq.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace usnet::wire {
namespace {

constexpr std::uint32_t kHalf = 0x80000000u;  // 2^31

// The ordering and arithmetic are constexpr: check a few at compile time too.
static_assert(SeqNum(0xffffffffu) < SeqNum(0));
static_assert(SeqNum(0xffffffffu) + 1 == SeqNum(0));
static_assert(in_window(SeqNum(2), SeqNum(0xfffffffeu), 8));

// RFC 9293 3.4: comparisons are modulo 2^32, so the number after 0xffffffff
// is 0 and 0xffffffff comes before it.
TEST(SeqNum, OrdersAcrossTheWrap) {
  const SeqNum last(0xffffffffu), zero(0);
  EXPECT_TRUE(last < zero);
  EXPECT_TRUE(last <= zero);
  EXPECT_FALSE(last > zero);
  EXPECT_FALSE(last >= zero);
  EXPECT_TRUE(zero > last);
  EXPECT_TRUE(seq_lt(last, zero));
  EXPECT_TRUE(seq_le(last, zero));
  EXPECT_TRUE(seq_gt(zero, last));
  EXPECT_TRUE(seq_ge(zero, last));
  EXPECT_FALSE(seq_lt(zero, last));
  EXPECT_TRUE(SeqNum(0xfffffff0u) < SeqNum(0x10));
}

TEST(SeqNum, OrdersPlainNumbers) {
  EXPECT_TRUE(SeqNum(1) < SeqNum(2));
  EXPECT_FALSE(SeqNum(2) < SeqNum(1));
  EXPECT_TRUE(SeqNum(5) <= SeqNum(5));
  EXPECT_TRUE(SeqNum(5) >= SeqNum(5));
  EXPECT_FALSE(SeqNum(5) < SeqNum(5));
  EXPECT_FALSE(SeqNum(5) > SeqNum(5));
  EXPECT_EQ(SeqNum(5), SeqNum(5));
  EXPECT_NE(SeqNum(5), SeqNum(6));
}

// Ordering holds up to 2^31 - 1 apart; exactly 2^31 apart the two numbers
// are unordered, so a < b and b < a never both hold.
TEST(SeqNum, HalfSpaceBoundary) {
  for (std::uint32_t base : {0u, 1u, 0x7fffffffu, kHalf, 0xfffffff0u, 0xffffffffu}) {
    SCOPED_TRACE(base);
    const SeqNum a(base);
    EXPECT_TRUE(a < a + (kHalf - 1));
    EXPECT_TRUE(a + (kHalf - 1) > a);
    EXPECT_FALSE(a < a + kHalf);
    EXPECT_FALSE(a + kHalf < a);
    EXPECT_FALSE(a <= a + kHalf);
    EXPECT_FALSE(a >= a + kHalf);
    EXPECT_EQ(a <=> a + kHalf, std::partial_ordering::unordered);
    // One past 2^31 flips: the far number is now behind.
    EXPECT_TRUE(a + (kHalf + 1) < a);
  }
}

TEST(SeqNum, AddsAndSubtractsWithWrap) {
  EXPECT_EQ(SeqNum(0xfffffffeu) + 3, SeqNum(1));
  EXPECT_EQ(SeqNum(1) - 3, SeqNum(0xfffffffeu));
  SeqNum s(0xffffffffu);
  s += 2;
  EXPECT_EQ(s.raw(), 1u);
  s -= 2;
  EXPECT_EQ(s.raw(), 0xffffffffu);
  EXPECT_EQ((SeqNum(7) + 0xffffffffu).raw(), 6u);
}

TEST(SeqNum, DistancesAcrossTheWrap) {
  EXPECT_EQ(distance(SeqNum(0xfffffff0u), SeqNum(0x10)), 0x20u);
  EXPECT_EQ(signed_distance(SeqNum(0xfffffff0u), SeqNum(0x10)), 0x20);
  EXPECT_EQ(signed_distance(SeqNum(0x10), SeqNum(0xfffffff0u)), -0x20);
  EXPECT_EQ(distance(SeqNum(0x10), SeqNum(0xfffffff0u)), 0xffffffe0u);  // always forward
  EXPECT_EQ(distance(SeqNum(1), SeqNum(0)), 0xffffffffu);
  EXPECT_EQ(signed_distance(SeqNum(1), SeqNum(0)), -1);
  EXPECT_EQ(signed_distance(SeqNum(0), SeqNum(kHalf - 1)), INT32_MAX);
  EXPECT_EQ(signed_distance(SeqNum(0), SeqNum(kHalf)), INT32_MIN);
  EXPECT_EQ(distance(SeqNum(42), SeqNum(42)), 0u);
}

// RFC 9293 3.4: start <= seq < start + len.
TEST(SeqNum, InWindowEdges) {
  const SeqNum start(1000);
  EXPECT_FALSE(in_window(start - 1, start, 10));
  EXPECT_TRUE(in_window(start, start, 10));
  EXPECT_TRUE(in_window(start + 9, start, 10));
  EXPECT_FALSE(in_window(start + 10, start, 10));
  EXPECT_FALSE(in_window(start, start, 0));  // an empty window holds nothing
}

TEST(SeqNum, InWindowStraddlingTheWrap) {
  const SeqNum start(0xfffffff8u);
  for (std::uint32_t k = 0; k < 16; ++k) EXPECT_TRUE(in_window(start + k, start, 16)) << k;
  EXPECT_TRUE(in_window(SeqNum(0), start, 16));
  EXPECT_TRUE(in_window(SeqNum(7), start, 16));
  EXPECT_FALSE(in_window(SeqNum(8), start, 16));
  EXPECT_FALSE(in_window(SeqNum(0xfffffff7u), start, 16));
  // The largest window: everything but the number just before start.
  EXPECT_TRUE(in_window(start - 2, start, 0xffffffffu));
  EXPECT_FALSE(in_window(start - 1, start, 0xffffffffu));
}

TEST(SeqNum, MaxAndMinAcrossTheWrap) {
  const SeqNum before(0xfffffffcu), after(3);
  EXPECT_EQ(seq_max(before, after), after);
  EXPECT_EQ(seq_max(after, before), after);
  EXPECT_EQ(seq_min(before, after), before);
  EXPECT_EQ(seq_min(after, before), before);
  EXPECT_EQ(seq_max(after, after), after);
}

TEST(SeqNum, RangesOverlap) {
  const SeqNum a(0xfffffff0u);
  EXPECT_TRUE(ranges_overlap(a, 0x20, SeqNum(0x0f), 1));   // last byte of a
  EXPECT_FALSE(ranges_overlap(a, 0x20, SeqNum(0x10), 5));  // starts right after a
  EXPECT_TRUE(ranges_overlap(SeqNum(0x0f), 1, a, 0x20));   // either order
  EXPECT_FALSE(ranges_overlap(a - 5, 5, a, 0x20));         // ends right before a
  EXPECT_TRUE(ranges_overlap(a - 5, 6, a, 0x20));
  EXPECT_FALSE(ranges_overlap(a, 0, a, 0x20));  // empty overlaps nothing
  EXPECT_FALSE(ranges_overlap(a + 1, 4, a, 0));
}

}  // namespace
}  // namespace usnet::wire
