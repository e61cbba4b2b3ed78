// The sender's SACK scoreboard: RFC 6675 4 (IsLost, SetPipe, NextSeg),
// RFC 2883 4 (D-SACK), block validation, bounds (ROBUSTNESS.md item 10).
// Every test runs at several bases, two of them so that the flight straddles
// 2^32.
#include "usnet/tcp/sack_scoreboard.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace usnet::tcp {
namespace {

class SackScoreboardTest : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  SeqNum S(std::uint32_t off) const { return SeqNum(GetParam()) + off; }
  SackBlock B(std::uint32_t from, std::uint32_t to) const { return {S(from), S(to)}; }

  SackScoreboard make(SackScoreboardConfig c = smss1000()) {
    auto sb = SackScoreboard::create(c, S(0));
    EXPECT_TRUE(sb);
    return std::move(*sb);
  }
  static SackScoreboardConfig smss1000() {
    SackScoreboardConfig c;
    c.smss = 1000;
    return c;
  }
  // An ACK with SACK blocks, 10 segments of 1000 bytes in flight by default.
  SackUpdateResult ack(SackScoreboard& sb, std::uint32_t ack_off, std::vector<SackBlock> blocks,
                       std::uint32_t snd_nxt = 10000) {
    return sb.update(S(ack_off), S(snd_nxt), blocks);
  }
};

INSTANTIATE_TEST_SUITE_P(Bases, SackScoreboardTest,
                         ::testing::Values(1u, 0xffffd000u, 0xfffffc18u, 0x80000000u));

// RFC 6675 4 IsLost, worked by hand with SMSS 1000, DupThresh 3, segments
// 0..9 of 1000 bytes: lost when 3 discontiguous SACKed ranges or more than
// 2 * SMSS = 2000 SACKed bytes lie above.
TEST_P(SackScoreboardTest, Rfc6675IsLostByRangesAndBytes) {
  auto sb = make();
  ack(sb, 0, {B(1000, 2000)});
  EXPECT_FALSE(sb.is_lost(S(0)));  // 1 range, 1000 bytes
  ack(sb, 0, {B(3000, 4000), B(1000, 2000)});
  EXPECT_FALSE(sb.is_lost(S(0)));  // 2 ranges, 2000 bytes: not *more than* 2000
  ack(sb, 0, {B(5000, 6000), B(3000, 4000), B(1000, 2000)});
  EXPECT_TRUE(sb.is_lost(S(0)));  // 3 ranges above
  EXPECT_TRUE(sb.is_lost(S(999)));
  EXPECT_FALSE(sb.is_lost(S(1000)));  // SACKed is never lost
  EXPECT_FALSE(sb.is_lost(S(2000)));  // 2 ranges, 2000 bytes above
  EXPECT_FALSE(sb.is_lost(S(4500)));
  EXPECT_FALSE(sb.is_lost(S(9000)));  // nothing above
  EXPECT_EQ(sb.lost_end(), S(1000));
  ack(sb, 0, {B(7000, 8000), B(5000, 6000), B(3000, 4000)});
  EXPECT_TRUE(sb.is_lost(S(2000)));  // now 3 ranges above
  EXPECT_FALSE(sb.is_lost(S(4000)));
  EXPECT_EQ(sb.lost_end(), S(3000));
  EXPECT_EQ(sb.range_count(), 4u);
  EXPECT_EQ(sb.sacked_bytes(), 4000u);

  // The byte rule alone: one contiguous range of 3 segments.
  auto sb2 = make();
  ack(sb2, 0, {B(1000, 3000)});
  EXPECT_FALSE(sb2.is_lost(S(0)));
  ack(sb2, 0, {B(1000, 3001)});
  EXPECT_TRUE(sb2.is_lost(S(0)));
}

// RFC 6675 4 SetPipe, by hand: 10000 bytes out, 3000 SACKed, [0, 1000) lost:
// pipe = 10000 - 3000 - 1000 = 6000; after retransmitting [0, 1000) (HighRxt),
// 7000.
TEST_P(SackScoreboardTest, Rfc6675SetPipe) {
  auto sb = make();
  EXPECT_EQ(sb.set_pipe(), 0u);
  sb.on_send(S(10000));
  EXPECT_EQ(sb.set_pipe(), 10000u);
  ack(sb, 0, {B(5000, 6000), B(3000, 4000), B(1000, 2000)});
  EXPECT_EQ(sb.set_pipe(), 6000u);
  sb.enter_recovery();
  const NextSeg fr = sb.fast_retransmit();
  EXPECT_EQ(fr, (NextSeg{NextSegKind::FastRetransmit, S(0), 1000}));
  sb.on_transmit(fr);
  EXPECT_EQ(sb.high_rxt(), S(1000));
  EXPECT_EQ(sb.set_pipe(), 7000u);
  // The cumulative ACK for it: [0, 2000) gone, 2 ranges (2000 bytes) left.
  ack(sb, 2000, {B(5000, 6000), B(3000, 4000)});
  EXPECT_EQ(sb.high_ack(), S(2000));
  EXPECT_EQ(sb.high_rxt(), S(2000));
  EXPECT_EQ(sb.set_pipe(), 6000u);  // [2000,3000) [4000,5000) [6000,10000), none lost
}

// RFC 6675 4 NextSeg rules 1-3 by hand.
TEST_P(SackScoreboardTest, Rfc6675NextSegRules) {
  auto sb = make();
  ack(sb, 0, {B(5000, 6000), B(3000, 4000), B(1000, 2000)});
  sb.enter_recovery();
  // Rule 1: the lowest lost octet, up to SMSS, stopping at the SACKed byte.
  NextSeg s = sb.next_seg(true);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Lost, S(0), 1000}));
  sb.on_transmit(s);
  // Rule 2 before rule 3 when new data may go.
  s = sb.next_seg(true);
  EXPECT_EQ(s, (NextSeg{NextSegKind::NewData, S(10000), 1000}));
  // Rule 3: the lowest unSACKed octet above HighRxt below the highest SACK.
  s = sb.next_seg(false);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Unlost, S(2000), 1000}));
  sb.on_transmit(s);
  s = sb.next_seg(false);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Unlost, S(4000), 1000}));
  sb.on_transmit(s);
  EXPECT_EQ(sb.high_rxt(), S(5000));
  // Nothing unSACKed below the highest SACK is left: rescue (rule 4) of the
  // highest unSACKed octet, once.
  s = sb.next_seg(false);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Rescue, S(9000), 1000}));
  sb.on_transmit(s);
  EXPECT_EQ(sb.rescue_rxt(), S(10000));
  EXPECT_EQ(sb.high_rxt(), S(5000));  // rule 4 leaves HighRxt
  EXPECT_EQ(sb.next_seg(false).kind, NextSegKind::None);
  // A new SACK makes [6000, 7000) lost: rule 1 again, from HighRxt.
  ack(sb, 0, {B(7000, 8000), B(5000, 6000)});
  EXPECT_EQ(sb.lost_end(), S(3000));
  s = sb.next_seg(false);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Unlost, S(6000), 1000}));
  ack(sb, 0, {B(8000, 8500), B(7000, 8000)});  // merges into [7000, 8500)
  ack(sb, 0, {B(9000, 9200)});
  EXPECT_EQ(sb.range_count(), 5u);
  EXPECT_EQ(sb.lost_end(), S(5000));                        // 3 ranges above the hole [4000, 5000)
  EXPECT_EQ(sb.next_seg(false).kind, NextSegKind::Unlost);  // [6000, 7000) has only 2 above
  ack(sb, 0, {B(9500, 9600)});
  EXPECT_EQ(sb.lost_end(), S(7000));
  // Rule 1 again, from HighRxt, even after the rescue.
  s = sb.next_seg(true);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Lost, S(6000), 1000}));
}

// RFC 6675 5 (4.3) and rule 4: the rescue waits until the first
// retransmission is ACKed, then goes once per recovery.
TEST_P(SackScoreboardTest, Rfc6675RescueRetransmission) {
  auto sb = make();
  ack(sb, 0, {B(1000, 2000)});  // tail loss: [2000, 10000) unSACKed
  sb.enter_recovery();
  EXPECT_EQ(sb.recovery_point(), S(10000));
  const NextSeg fr = sb.fast_retransmit();
  sb.on_transmit(fr);
  EXPECT_EQ(sb.rescue_rxt(), S(1000));
  EXPECT_EQ(sb.next_seg(false).kind, NextSegKind::None);  // HighACK not above RescueRxt
  ack(sb, 2000, {});
  EXPECT_TRUE(sb.in_recovery());
  NextSeg s = sb.next_seg(false);
  EXPECT_EQ(s, (NextSeg{NextSegKind::Rescue, S(9000), 1000}));
  sb.on_transmit(s);
  EXPECT_EQ(sb.next_seg(false).kind, NextSegKind::None);
  EXPECT_EQ(sb.counters().rescues, 1u);
  // The recovery ends at RecoveryPoint.
  ack(sb, 10000, {});
  EXPECT_FALSE(sb.in_recovery());

  SackScoreboardConfig off = smss1000();
  off.rescue_retransmission = false;
  auto sb2 = make(off);
  ack(sb2, 0, {B(1000, 2000)});
  sb2.enter_recovery();
  sb2.on_transmit(sb2.fast_retransmit());
  ack(sb2, 2000, {});
  EXPECT_EQ(sb2.next_seg(false).kind, NextSegKind::None);
}

// RFC 6675 5.1: after an RTO, no new recovery until RecoveryPoint is ACKed.
TEST_P(SackScoreboardTest, Rfc6675RtoRecoveryPoint) {
  auto sb = make();
  ack(sb, 0, {B(1000, 2000)});
  EXPECT_TRUE(sb.recovery_allowed());
  sb.on_rto();
  EXPECT_FALSE(sb.recovery_allowed());
  EXPECT_EQ(sb.recovery_point(), S(10000));
  EXPECT_EQ(sb.range_count(), 1u);  // SACK information kept
  // Retransmitting after the timeout skips SACKed data.
  EXPECT_EQ(sb.next_unsacked(S(0)), B(0, 1000));
  EXPECT_EQ(sb.next_unsacked(S(1000)), B(2000, 10000));
  EXPECT_EQ(sb.next_unsacked(S(1500)), B(2000, 10000));
  EXPECT_EQ(sb.next_unsacked(S(10000)).left, sb.next_unsacked(S(10000)).right);
  ack(sb, 9000, {});
  EXPECT_FALSE(sb.recovery_allowed());
  ack(sb, 10000, {});
  EXPECT_TRUE(sb.recovery_allowed());
  EXPECT_EQ(sb.range_count(), 0u);
}

// RFC 2883 4.1.1: a duplicate below the cumulative ACK (ACK lost,
// retransmission arrives): the first block is below the ACK.
TEST_P(SackScoreboardTest, Rfc2883DsackBelowAck) {
  auto sb = make();
  sb.on_send(S(4000));
  auto r = sb.update(S(4000), S(4000), std::vector<SackBlock>{B(3000, 3500)});
  ASSERT_TRUE(r.dsack);
  EXPECT_EQ(*r.dsack, B(3000, 3500));
  EXPECT_EQ(r.blocks_recorded, 0u);
  EXPECT_EQ(r.blocks_old, 0u);
  EXPECT_EQ(sb.range_count(), 0u);
  EXPECT_EQ(sb.counters().dsacks, 1u);
}

// RFC 2883 4.1.2 / 4.1.3: a segment duplicated above the ACK: the D-SACK
// block lies inside (or equals) the second block.
TEST_P(SackScoreboardTest, Rfc2883DsackInsideSecondBlock) {
  auto sb = make();
  auto r = ack(sb, 4000, {B(4500, 5000)}, 6000);
  EXPECT_FALSE(r.dsack);
  r = ack(sb, 4000, {B(4500, 5000), B(4500, 5000)}, 6000);  // 4.1.2: replicated by the network
  ASSERT_TRUE(r.dsack);
  EXPECT_EQ(*r.dsack, B(4500, 5000));
  r = ack(sb, 4000, {B(5000, 5500), B(4500, 6000)}, 6000);  // 4.2: inside a larger block
  ASSERT_TRUE(r.dsack);
  EXPECT_EQ(*r.dsack, B(5000, 5500));
  EXPECT_EQ(sb.ranges().size(), 1u);
  EXPECT_EQ(sb.ranges()[0], B(4500, 6000));
  // 4.3 note: a first block above the ACK and not inside the second is
  // an ordinary SACK block to the sender.
  r = ack(sb, 4000, {B(3000, 3500), B(4500, 6000)}, 6000);  // below the ACK: D-SACK
  EXPECT_TRUE(r.dsack);
  auto sb2 = make();
  r = ack(sb2, 1000, {B(5000, 5500), B(3000, 4000)}, 6000);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.blocks_recorded, 2u);
  // A partly overlapping second block is not containment.
  r = ack(sb2, 1000, {B(2500, 3500), B(3000, 4000)}, 6000);
  EXPECT_FALSE(r.dsack);
  // A malformed first block is no D-SACK, even below the ACK.
  r = ack(sb2, 1000, {B(500, 400)}, 6000);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.blocks_malformed, 1u);
  EXPECT_EQ(sb2.counters().dsacks, 0u);
}

// RFC 2018 / ROBUSTNESS.md item 10: malformed and out-of-window blocks are
// ignored and counted; a block straddling SND.UNA is clipped.
TEST_P(SackScoreboardTest, MalformedAndOutOfWindowBlocksIgnored) {
  auto sb = make();
  ack(sb, 1000, {}, 10000);
  auto r = ack(sb, 1000, {B(3000, 3000), B(4000, 3000)});
  EXPECT_EQ(r.blocks_malformed, 2u);
  r = ack(sb, 1000, {B(2000, 3000), B(9000, 10001)});  // first block is not D-SACK: above ACK
  EXPECT_EQ(r.blocks_beyond, 1u);
  EXPECT_EQ(r.blocks_recorded, 1u);
  r = ack(sb, 1000, {B(2000, 3000), B(200, 900)});  // second block old
  EXPECT_EQ(r.blocks_old, 1u);
  r = ack(sb, 1000, {B(2000, 3000), {S(5000), S(5000) + 0x80000000u}});  // 2^31 long
  EXPECT_EQ(r.blocks_malformed, 1u);
  r = ack(sb, 1000, {B(2000, 3000), {S(5000) + 0x90000000u, S(5000) + 0x90001000u}});  // far away
  EXPECT_EQ(r.blocks_old + r.blocks_beyond, 1u);
  EXPECT_EQ(sb.range_count(), 1u);
  EXPECT_EQ(sb.ranges()[0], B(2000, 3000));
  // Straddling SND.UNA: kept from SND.UNA (second block, so no D-SACK).
  r = ack(sb, 1000, {B(2000, 3000), B(500, 1500)});
  EXPECT_EQ(r.blocks_recorded, 2u);
  EXPECT_EQ(r.newly_sacked, 500u);
  EXPECT_EQ(sb.ranges()[0], B(1000, 1500));
  EXPECT_EQ(sb.counters().blocks_malformed, 3u);
  EXPECT_EQ(sb.counters().blocks_beyond, 1u);
}

TEST_P(SackScoreboardTest, MergesAdjacentAndOverlappingBlocks) {
  auto sb = make();
  auto r = ack(sb, 0, {B(2000, 3000), B(4000, 5000), B(6000, 7000)});
  EXPECT_EQ(r.newly_sacked, 3000u);
  r = ack(sb, 0, {B(3000, 4000)});  // fills the gap between two: one range
  EXPECT_EQ(r.newly_sacked, 1000u);
  EXPECT_EQ(sb.range_count(), 2u);
  EXPECT_EQ(sb.ranges()[0], B(2000, 5000));
  r = ack(sb, 0, {B(1500, 8000)});  // covers all
  EXPECT_EQ(r.newly_sacked, 2500u);
  EXPECT_EQ(sb.range_count(), 1u);
  EXPECT_EQ(sb.sacked_bytes(), 6500u);
  r = ack(sb, 0, {B(1500, 8000)});  // repeated: nothing new
  EXPECT_EQ(r.newly_sacked, 0u);
  EXPECT_TRUE(sb.is_sacked(S(1500)));
  EXPECT_TRUE(sb.is_sacked(S(7999)));
  EXPECT_FALSE(sb.is_sacked(S(8000)));
  EXPECT_FALSE(sb.is_sacked(S(1499)));
  // Cumulative ACK inside the range clips it, past it drops it.
  ack(sb, 3000, {});
  EXPECT_EQ(sb.ranges()[0], B(3000, 8000));
  EXPECT_EQ(sb.sacked_bytes(), 5000u);
  ack(sb, 9000, {});
  EXPECT_EQ(sb.range_count(), 0u);
  EXPECT_EQ(sb.sacked_bytes(), 0u);
}

// ROBUSTNESS.md item 10: at the range bound the highest range is forgotten,
// never merged across a gap.
TEST_P(SackScoreboardTest, Robustness10RangeBoundForgetsHighest) {
  SackScoreboardConfig c = smss1000();
  c.max_ranges = 3;
  auto sb = make(c);
  ack(sb, 0, {B(1000, 1100), B(2000, 2100), B(3000, 3100)});
  auto r = ack(sb, 0, {B(4000, 4100)});  // highest: forgotten itself
  EXPECT_EQ(r.ranges_forgotten, 1u);
  EXPECT_EQ(sb.range_count(), 3u);
  EXPECT_FALSE(sb.is_sacked(S(4000)));
  r = ack(sb, 0, {B(500, 600)});  // lower: the top range goes
  EXPECT_EQ(r.ranges_forgotten, 1u);
  EXPECT_EQ(sb.ranges().back(), B(2000, 2100));
  EXPECT_FALSE(sb.is_sacked(S(3000)));
  EXPECT_FALSE(sb.is_sacked(S(1500)));  // no gap was merged
  EXPECT_EQ(sb.sacked_bytes(), 300u);
  EXPECT_EQ(sb.counters().ranges_forgotten, 2u);
  EXPECT_EQ(sb.counters().bytes_forgotten, 200u);
  r = ack(sb, 0, {B(600, 1000)});  // merging still works at the bound
  EXPECT_EQ(r.ranges_forgotten, 0u);
  EXPECT_EQ(sb.range_count(), 2u);
}

// ROBUSTNESS.md item 10 (CVE-2019-11477/11478/11479): tiny MSS (48) and
// 100,000 random SACK blocks, some malformed or out of window. The range
// count stays at its bound, the work per update stays bounded (counted, not
// timed), and nothing is ever claimed SACKed that the receiver did not SACK.
TEST_P(SackScoreboardTest, Robustness10TinyMssManySackBlocksStayBounded) {
  constexpr std::uint32_t kMss = 48;
  constexpr std::uint32_t kSegments = 20000;
  SackScoreboardConfig c;
  c.smss = kMss;
  auto sb = make(c);
  const std::uint32_t snd_nxt = kMss * kSegments;
  sb.on_send(S(snd_nxt));
  std::vector<bool> truth(kSegments, false);  // segments SACKed by some valid block
  std::mt19937 rng(GetParam());
  std::uint32_t una_seg = 0;
  std::uint32_t max_work = 0;
  std::uint64_t total_work = 0;
  const std::uint32_t work_bound = 4 * (16 + 2 * c.max_ranges) + 2 * c.max_ranges;
  int blocks_sent = 0;
  for (int update = 0; blocks_sent < 100000; ++update) {
    if (update % 100 == 99 && una_seg + 10 < kSegments) una_seg += static_cast<std::uint32_t>(rng() % 10);
    std::vector<SackBlock> blocks;
    for (int k = 0; k < 4; ++k, ++blocks_sent) {
      const std::uint32_t seg = una_seg + static_cast<std::uint32_t>(rng() % (kSegments - una_seg));
      const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng() % 3);
      const std::uint32_t end_seg = std::min(seg + n, kSegments);
      switch (rng() % 10) {
        case 0:
          blocks.push_back({S(seg * kMss + 7), S(seg * kMss)});  // malformed
          break;
        case 1:
          blocks.push_back({S(snd_nxt + 100), S(snd_nxt + 200)});  // beyond SND.NXT
          break;
        default:
          blocks.push_back({S(seg * kMss), S(end_seg * kMss)});
          for (std::uint32_t s = seg; s < end_seg; ++s) truth[s] = true;
      }
    }
    const auto r = sb.update(S(una_seg * kMss), S(snd_nxt), blocks);
    ASSERT_LE(sb.range_count(), c.max_ranges);
    ASSERT_LE(r.work, work_bound) << update;
    max_work = std::max(max_work, r.work);
    total_work += r.work;
    // The RFC 6675 queries stay cheap and sane at the bound.
    ASSERT_LE(sb.set_pipe(), snd_nxt - una_seg * kMss);
    (void)sb.next_seg(false);
    if (update % 500 == 0) {
      std::uint64_t sum = 0;
      for (const SackBlock& b : sb.ranges()) {
        const std::uint32_t from = distance(S(0), b.left), to = distance(S(0), b.right);
        ASSERT_GE(from, una_seg * kMss);
        ASSERT_LE(to, snd_nxt);
        for (std::uint32_t off = from; off < to; off += kMss) ASSERT_TRUE(truth[off / kMss]) << off;
        sum += to - from;
      }
      ASSERT_EQ(sum, sb.sacked_bytes());
    }
  }
  EXPECT_GT(sb.counters().ranges_forgotten, 0u);
  EXPECT_GT(sb.counters().blocks_malformed, 0u);
  EXPECT_GT(sb.counters().blocks_beyond, 0u);
  RecordProperty("max_work_per_update", static_cast<int>(max_work));
  RecordProperty("total_work", static_cast<int>(total_work));
}

// RFC 6675 4 taken literally, octet by octet, on a bitmap of SACKed bytes,
// against the scoreboard's range arithmetic: random ACKs and blocks
// (valid, malformed, old, beyond SND.NXT), random retransmissions.
TEST_P(SackScoreboardTest, Rfc6675MatchesOctetByOctetDefinition) {
  constexpr std::uint32_t kSmss = 50;
  constexpr std::uint32_t kSpace = 3000;
  std::uint64_t lost_seen = 0, rule1_seen = 0, rule3_seen = 0;
  for (std::uint32_t seed = 1; seed <= 8; ++seed) {
    std::mt19937 rng(seed);
    SackScoreboardConfig c;
    c.smss = kSmss;
    c.max_ranges = SackScoreboard::kMaxRanges;  // nothing forgotten: exact comparison
    auto sb = make(c);
    std::vector<bool> sacked(kSpace, false);
    std::uint32_t una = 0, nxt = 0, rxt = 0;
    for (int step = 0; step < 120; ++step) {
      // The sender sends more, the ACK moves up sometimes.
      nxt = std::min<std::uint32_t>(kSpace, nxt + static_cast<std::uint32_t>(rng() % 200));
      if (rng() % 4 == 0) una = std::min(nxt, una + static_cast<std::uint32_t>(rng() % 150));
      std::vector<SackBlock> blocks;
      const int nblocks = static_cast<int>(rng() % 5);
      for (int k = 0; k < nblocks; ++k) {
        const std::uint32_t l = static_cast<std::uint32_t>(rng() % (kSpace + 200));
        const std::uint32_t len = static_cast<std::uint32_t>(rng() % 300);
        const std::uint32_t rr = l + len;
        blocks.push_back({S(l), S(rr)});
        if (len > 0 && rr > una && rr <= nxt) {
          for (std::uint32_t x = std::max(l, una); x < rr; ++x) sacked[x] = true;
        }
      }
      sb.update(S(una), S(nxt), blocks);
      if (rng() % 3 == 0) {
        if (!sb.in_recovery() && sb.recovery_allowed()) sb.enter_recovery();
        const NextSeg seg = sb.next_seg(false);
        if (seg.kind == NextSegKind::Lost || seg.kind == NextSegKind::Unlost) sb.on_transmit(seg);
      }
      rxt = std::max(una, distance(S(0), sb.high_rxt()));
      ASSERT_LE(rxt, std::max(nxt, una));

      // Octet-level model of IsLost: SACKed runs and bytes above each octet.
      std::vector<bool> lost(kSpace, false);
      std::uint32_t runs = 0, bytes = 0;
      for (std::uint32_t x = nxt; x-- > una;) {
        if (sacked[x]) {
          ++bytes;
          if (x + 1 == nxt || !sacked[x + 1]) ++runs;
        } else {
          lost[x] = runs >= c.dup_thresh || bytes > (c.dup_thresh - 1) * kSmss;
          lost_seen += lost[x] ? 1 : 0;
        }
      }
      std::uint64_t pipe = 0;
      std::uint64_t sacked_bytes = 0;
      for (std::uint32_t x = una; x < nxt; ++x) {
        ASSERT_EQ(sb.is_sacked(S(x)), sacked[x]) << "seed " << seed << " step " << step << " x " << x;
        ASSERT_EQ(sb.is_lost(S(x)), lost[x]) << "seed " << seed << " step " << step << " x " << x;
        if (sacked[x]) {
          ++sacked_bytes;
        } else {
          pipe += (lost[x] ? 0 : 1) + (x < rxt ? 1 : 0);
        }
      }
      ASSERT_EQ(sb.sacked_bytes(), sacked_bytes);
      ASSERT_EQ(sb.set_pipe(), pipe) << "seed " << seed << " step " << step;

      // NextSeg rules 1 and 3 (rule 2 not offered): the lowest unSACKed
      // octet at or above HighRxt below the highest SACKed octet.
      std::uint32_t high_sacked = una;
      for (std::uint32_t x = una; x < nxt; ++x) {
        if (sacked[x]) high_sacked = x + 1;
      }
      std::uint32_t s2 = rxt;
      while (s2 < high_sacked && sacked[s2]) ++s2;
      const NextSeg seg = sb.next_seg(false);
      if (s2 < high_sacked) {
        std::uint32_t run = 0;
        while (s2 + run < nxt && !sacked[s2 + run] && run < kSmss) ++run;
        ASSERT_EQ(seg.kind, lost[s2] ? NextSegKind::Lost : NextSegKind::Unlost);
        ++(lost[s2] ? rule1_seen : rule3_seen);
        ASSERT_EQ(seg.seq, S(s2));
        ASSERT_EQ(seg.len, run);
      } else {
        ASSERT_TRUE(seg.kind == NextSegKind::None || seg.kind == NextSegKind::Rescue) << to_string(seg.kind);
      }
    }
  }
  // The walk reached every case it claims to check.
  EXPECT_GT(lost_seen, 0u);
  EXPECT_GT(rule1_seen, 0u);
  EXPECT_GT(rule3_seen, 0u);
}

TEST(SackScoreboardConfig, BadConfigRefused) {
  SackScoreboardConfig c;
  c.max_ranges = 0;
  EXPECT_FALSE(SackScoreboard::create(c, SeqNum(1)));
  c.max_ranges = SackScoreboard::kMaxRanges + 1;
  EXPECT_FALSE(SackScoreboard::create(c, SeqNum(1)));
  c = {};
  c.smss = 0;
  EXPECT_FALSE(SackScoreboard::create(c, SeqNum(1)));
  c = {};
  c.dup_thresh = 0;
  EXPECT_FALSE(SackScoreboard::create(c, SeqNum(1)));
  EXPECT_TRUE(SackScoreboard::create({}, SeqNum(1)));
}

}  // namespace
}  // namespace usnet::tcp
