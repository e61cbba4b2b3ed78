// Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438)
// driven by ACK, loss, RTO and ECN events with a fake clock. Expected CUBIC
// values are computed here in floating point from the RFC's formulas,
// independently of the integer code under test.
#include "usnet/tcp/congestion.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <random>

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;
using wire::SeqNum;

constexpr std::uint32_t kMss = 1000;  // round numbers: IW10 = 10,000 bytes

CongestionConfig config(std::uint64_t max_cwnd = std::uint64_t{1} << 30) {
  CongestionConfig c;
  c.smss = kMss;
  c.max_cwnd = max_cwnd;
  return c;
}

std::uint64_t segs(std::uint64_t n) { return n * kMss; }

// One round trip: the window at the start is sent; one ACK per `per_ack`
// bytes (the last one for the rest) arrives, spread evenly over `rtt`.
// Returns the end of the round.
Nanos ack_round(CongestionControl& cc, Nanos start, Nanos rtt, std::uint64_t per_ack = kMss) {
  const std::uint64_t window = cc.cwnd();
  const std::uint64_t n = (window + per_ack - 1) / per_ack;
  std::uint64_t left = window;
  for (std::uint64_t i = 1; i <= n; ++i) {
    const std::uint64_t bytes = std::min(per_ack, left);
    left -= bytes;
    cc.on_ack(
        AckEvent{bytes, rtt, start + rtt * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n)});
  }
  return start + rtt;
}

// Grows cwnd to at least `target` bytes, one SMSS per ACK; exactly `target`
// in slow start. Returns the window reached.
std::uint64_t grow_to(CongestionControl& cc, std::uint64_t target, Nanos now = 0ns) {
  while (cc.cwnd() < target) cc.on_ack(AckEvent{kMss, 0ns, now});
  return cc.cwnd();
}

// A loss at `cwnd`, recovered SACK-style (cwnd = ssthresh afterwards).
void loss_and_recovery(CongestionControl& cc, Nanos now) {
  ASSERT_TRUE(cc.enter_recovery(LossEvent{cc.cwnd(), now, RecoveryStyle::kSack, SeqNum(0)}));
  cc.on_recovery_exit(cc.cwnd(), now);
}

// ---------------------------------------------------------------------------
// Initial window and factory

TEST(CongestionInitialWindow, Rfc6928) {
  auto iw = [](std::uint32_t smss, std::uint32_t n = 10) {
    CongestionConfig c;
    c.smss = smss;
    c.initial_window_segments = n;
    return initial_window(c);
  };
  EXPECT_EQ(iw(1460), 14600u);  // RFC 6928 2: min(10*MSS, max(2*MSS, 14600))
  EXPECT_EQ(iw(536), 5360u);
  EXPECT_EQ(iw(4000), 14600u);  // capped at 14600 bytes for large MSS
  EXPECT_EQ(iw(9000), 18000u);  // but at least 2 segments
  EXPECT_EQ(iw(1460, 4), 5840u);
  EXPECT_EQ(iw(1460, 1), 1460u);

  auto cc = make_congestion_control(CongestionAlgorithm::kNewReno, config());
  ASSERT_TRUE(cc);
  EXPECT_EQ((*cc)->cwnd(), 10000u);
  EXPECT_TRUE((*cc)->in_slow_start());
}

TEST(CongestionFactory, MakesBothAndRejectsBadConfig) {
  auto reno = make_congestion_control(CongestionAlgorithm::kNewReno, config());
  auto cubic = make_congestion_control(kDefaultCongestionAlgorithm, config());
  ASSERT_TRUE(reno && cubic);
  EXPECT_EQ((*reno)->algorithm(), CongestionAlgorithm::kNewReno);
  EXPECT_EQ((*cubic)->algorithm(), CongestionAlgorithm::kCubic);
  EXPECT_EQ(to_string(CongestionAlgorithm::kCubic), "cubic");
  EXPECT_EQ(to_string(CongestionAlgorithm::kNewReno), "newreno");

  CongestionConfig bad = config();
  bad.smss = 0;
  EXPECT_EQ(make_congestion_control(CongestionAlgorithm::kCubic, bad).error(), std::errc::invalid_argument);
  bad = config();
  bad.max_cwnd = std::uint64_t{1} << 41;
  EXPECT_FALSE(make_congestion_control(CongestionAlgorithm::kCubic, bad));
  bad = config();
  bad.max_cwnd = kMss;  // below 4 segments
  EXPECT_FALSE(make_congestion_control(CongestionAlgorithm::kNewReno, bad));
  bad = config();
  bad.cubic_c_milli = 0;
  EXPECT_FALSE(make_congestion_control(CongestionAlgorithm::kCubic, bad));
  bad = config();
  bad.slow_start_ack_limit_segments = 3;
  EXPECT_FALSE(make_congestion_control(CongestionAlgorithm::kCubic, bad));
}

// ---------------------------------------------------------------------------
// Slow start (RFC 5681 3.1, RFC 3465), both algorithms

class BothAlgorithms : public ::testing::TestWithParam<CongestionAlgorithm> {
 protected:
  std::unique_ptr<CongestionControl> make(const CongestionConfig& c = config()) {
    auto cc = make_congestion_control(GetParam(), c);
    EXPECT_TRUE(cc);
    return std::move(*cc);
  }
};

INSTANTIATE_TEST_SUITE_P(Algorithms, BothAlgorithms,
                         ::testing::Values(CongestionAlgorithm::kNewReno, CongestionAlgorithm::kCubic),
                         [](const auto& param_info) { return std::string(to_string(param_info.param)); });

TEST_P(BothAlgorithms, SlowStartDoublesPerRtt) {
  auto cc = make();
  Nanos now = 0ns;
  std::uint64_t expected = segs(10);
  for (int round = 0; round < 6; ++round) {
    ASSERT_EQ(cc->cwnd(), expected) << "round " << round;
    now = ack_round(*cc, now, 50ms);
    expected *= 2;
  }
  EXPECT_EQ(cc->cwnd(), segs(640));
}

TEST_P(BothAlgorithms, SlowStartDoublesWithDelayedAcksUnderAbcL2) {
  // RFC 3465: with one ACK per two segments and L = 2 SMSS the window still
  // doubles per round trip.
  auto cc = make();
  Nanos now = 0ns;
  for (int round = 0; round < 4; ++round) now = ack_round(*cc, now, 50ms, 2 * kMss);
  EXPECT_EQ(cc->cwnd(), segs(160));

  // RFC 5681's L = 1 SMSS: 1.5x per round trip.
  CongestionConfig c = config();
  c.slow_start_ack_limit_segments = 1;
  auto strict = make(c);
  now = 0ns;
  for (int round = 0; round < 2; ++round) now = ack_round(*strict, now, 50ms, 2 * kMss);
  EXPECT_EQ(strict->cwnd(), segs(23));  // 10 -> 15 -> 23 (8 ACKs for the 15-segment window)
}

TEST_P(BothAlgorithms, AppLimitedAcksDoNotGrow) {
  auto cc = make();
  for (int i = 0; i < 100; ++i) cc->on_ack(AckEvent{kMss, 10ms, Nanos(i * 1ms), /*app_limited=*/true});
  EXPECT_EQ(cc->cwnd(), segs(10));
}

TEST_P(BothAlgorithms, RtoCollapsesToOneSegment) {
  auto cc = make();
  grow_to(*cc, segs(20));
  cc->on_rto(RtoEvent{segs(20), 1s, true});
  EXPECT_EQ(cc->cwnd(), segs(1));  // RFC 5681 3.1: loss window
  const std::uint64_t ssthresh = cc->ssthresh();
  if (GetParam() == CongestionAlgorithm::kNewReno) {
    EXPECT_EQ(ssthresh, segs(10));  // max(FlightSize/2, 2*SMSS)
  } else {
    EXPECT_EQ(ssthresh, segs(14));  // beta_cubic * cwnd (RFC 9438 4.8)
  }
  EXPECT_EQ(cc->stats().rto_events, 1u);
  // The backed-off timer fires again: ssthresh is not reduced a second time.
  cc->on_rto(RtoEvent{segs(1), 3s, false});
  EXPECT_EQ(cc->cwnd(), segs(1));
  EXPECT_EQ(cc->ssthresh(), ssthresh);
  // Slow start again up to ssthresh, then congestion avoidance.
  Nanos now = 4s;
  for (int i = 0; i < 4; ++i) now = ack_round(*cc, now, 10ms);
  EXPECT_GE(cc->cwnd(), ssthresh);
  EXPECT_LE(cc->cwnd(), ssthresh + segs(3));
  EXPECT_FALSE(cc->in_slow_start());
}

TEST_P(BothAlgorithms, RtoDuringRecoveryKeepsTheRecoveryThreshold) {
  auto cc = make();
  grow_to(*cc, segs(40));
  ASSERT_TRUE(cc->enter_recovery(LossEvent{segs(40), 1s, RecoveryStyle::kSack, SeqNum(100)}));
  const std::uint64_t ssthresh = cc->ssthresh();
  cc->on_rto(RtoEvent{segs(40), 2s, true});
  EXPECT_FALSE(cc->in_recovery());
  EXPECT_EQ(cc->cwnd(), segs(1));
  EXPECT_EQ(cc->ssthresh(), ssthresh);
}

TEST_P(BothAlgorithms, UndoRestoresWindowAfterSpuriousLoss) {
  auto cc = make();
  grow_to(*cc, segs(50));
  EXPECT_FALSE(cc->undo_last_reduction());  // nothing yet
  ASSERT_TRUE(cc->enter_recovery(LossEvent{segs(50), 1s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_LT(cc->cwnd(), segs(50));
  EXPECT_TRUE(cc->undo_last_reduction());
  EXPECT_EQ(cc->cwnd(), segs(50));
  EXPECT_FALSE(cc->in_recovery());
  EXPECT_TRUE(cc->in_slow_start());         // ssthresh back to "arbitrarily high"
  EXPECT_FALSE(cc->undo_last_reduction());  // one level only
  EXPECT_EQ(cc->stats().undos, 1u);
}

TEST_P(BothAlgorithms, SmssChangeKeepsWindowInSegments) {
  auto cc = make();
  grow_to(*cc, segs(30));
  loss_and_recovery(*cc, 1s);
  const std::uint64_t cwnd_segs = cc->cwnd() / kMss;
  const std::uint64_t ssthresh_segs = cc->ssthresh() / kMss;
  cc->set_smss(500);  // path MTU fell
  EXPECT_EQ(cc->smss(), 500u);
  EXPECT_EQ(cc->cwnd(), cwnd_segs * 500);
  EXPECT_EQ(cc->ssthresh(), ssthresh_segs * 500);
  // And it keeps working.
  Nanos now = 2s;
  for (int i = 0; i < 10; ++i) now = ack_round(*cc, now, 10ms, 500);
  EXPECT_GT(cc->cwnd(), cwnd_segs * 500);
}

TEST_P(BothAlgorithms, EcnReducesAtMostOncePerWindow) {
  auto cc = make();
  grow_to(*cc, segs(40));
  // Sequence numbers straddle the 2^32 wrap: comparisons are modular.
  const SeqNum una(0xffff0000u);
  const SeqNum nxt = una + segs(40);
  ASSERT_TRUE(cc->on_ecn_ce(EcnEvent{una + kMss, nxt, segs(40), 1s}));
  const std::uint64_t reduced = cc->cwnd();
  EXPECT_LT(reduced, segs(40));
  if (GetParam() == CongestionAlgorithm::kNewReno) {
    EXPECT_EQ(reduced, segs(20));  // RFC 3168 6.1.2: halved
  } else {
    EXPECT_EQ(reduced, segs(28));  // beta_cubic
  }
  // The ACK that carried ECE grows nothing (RFC 3168 6.1.2).
  cc->on_ack(AckEvent{kMss, 10ms, 1s});
  EXPECT_EQ(cc->cwnd(), reduced);
  // Further ECE for data sent before the reduction: the same window.
  for (std::uint32_t i = 2; i < 40; ++i) {
    EXPECT_FALSE(cc->on_ecn_ce(EcnEvent{una + i * kMss, nxt + i * kMss, segs(40), 1s + i * 1ms}));
  }
  EXPECT_EQ(cc->cwnd(), reduced);
  EXPECT_EQ(cc->stats().ecn_ignored, 38u);
  // Once SND.UNA passes the SND.NXT of the reduction, a new ECE reduces again.
  EXPECT_TRUE(cc->on_ecn_ce(EcnEvent{nxt, nxt + segs(20), reduced, 2s}));
  EXPECT_LT(cc->cwnd(), reduced);
  EXPECT_EQ(cc->stats().ecn_reductions, 2u);
  // Much later (more than 2^31 bytes on, where modular order would put the
  // ACK "before" the old SND.NXT again) a new mark still counts.
  const SeqNum far = nxt + 0x90000000u;
  ASSERT_TRUE(far < nxt);  // what a plain "SEG.ACK < recover" guard would see
  EXPECT_TRUE(cc->on_ecn_ce(EcnEvent{far + 0x10000u, far + 0x20000u, segs(20), 100s}));
  EXPECT_EQ(cc->stats().ecn_reductions, 3u);
}

TEST_P(BothAlgorithms, EcnIgnoredDuringLossRecoveryAndForTheLostWindow) {
  auto cc = make();
  grow_to(*cc, segs(40));
  const SeqNum nxt(5000000);
  ASSERT_TRUE(cc->enter_recovery(LossEvent{segs(40), 1s, RecoveryStyle::kSack, nxt}));
  const std::uint64_t w = cc->cwnd();
  EXPECT_FALSE(cc->on_ecn_ce(EcnEvent{nxt - 100, nxt, segs(40), 1s}));
  cc->on_recovery_exit(segs(10), 2s);
  // Still the window of the loss: no second reduction.
  EXPECT_FALSE(cc->on_ecn_ce(EcnEvent{nxt - 1, nxt + 10, segs(10), 2s}));
  EXPECT_EQ(cc->cwnd(), w);
  EXPECT_TRUE(cc->on_ecn_ce(EcnEvent{nxt, nxt + 10, segs(10), 2s}));
}

// The sawtooth over a few thousand round trips: a bottleneck of 150
// segments drops when the window passes it, plus random timeouts and ECN
// marks. Invariants after every event; at the end, losses happened
// periodically and the window oscillated below the bottleneck.
TEST_P(BothAlgorithms, SawtoothStaysSane) {
  constexpr std::uint64_t kCap = std::uint64_t{1} << 20;
  auto cc = make(config(kCap));
  std::mt19937_64 rng(4);
  const Nanos rtt = 20ms;
  const std::uint64_t bottleneck = segs(150);
  Nanos now = 0ns;
  SeqNum nxt(0xfff00000u);
  std::uint64_t losses = 0, min_after_warmup = UINT64_MAX, max_seen = 0;
  auto check = [&](int round) {
    ASSERT_GE(cc->cwnd(), kMss) << round;
    ASSERT_LE(cc->cwnd(), kCap) << round;
    ASSERT_GE(cc->ssthresh(), 2u * kMss) << round;
    ASSERT_LE(cc->ssthresh(), kCap) << round;
  };
  for (int round = 0; round < 5000; ++round) {
    const std::uint64_t w = cc->cwnd();
    const SeqNum una = nxt;
    nxt += static_cast<std::uint32_t>(w);
    const auto dice = rng() % 1000;
    if (dice < 2) {
      cc->on_rto(RtoEvent{w, now, true});
      check(round);
      now += rtt * 3;
      continue;
    }
    if (dice < 10) {
      cc->on_ecn_ce(EcnEvent{una, nxt, w, now});
      check(round);
    }
    if (w > bottleneck) {
      ++losses;
      const RecoveryStyle style = losses % 2 ? RecoveryStyle::kSack : RecoveryStyle::kNewReno;
      cc->enter_recovery(LossEvent{w, now, style, nxt});
      check(round);
      for (int i = 0; i < 5; ++i) cc->on_dup_ack();
      cc->on_ack(AckEvent{w / 2, rtt, now + rtt / 2});  // partial ACK
      check(round);
      now += rtt;
      cc->on_recovery_exit(w / 2, now);
      check(round);
      continue;
    }
    now = ack_round(*cc, now, rtt);
    check(round);
    if (round > 500) {
      min_after_warmup = std::min(min_after_warmup, cc->cwnd());
      max_seen = std::max(max_seen, cc->cwnd());
    }
  }
  std::printf("%s sawtooth: %llu losses, window after warm-up %llu..%llu segments\n",
              std::string(to_string(GetParam())).c_str(), static_cast<unsigned long long>(losses),
              static_cast<unsigned long long>(min_after_warmup / kMss),
              static_cast<unsigned long long>(max_seen / kMss));
  EXPECT_GT(losses, 10u);
  EXPECT_LE(max_seen, bottleneck + bottleneck / 2);
  EXPECT_GE(max_seen, bottleneck);  // the window does climb back to the bottleneck
  EXPECT_GE(min_after_warmup, kMss);
}

TEST_P(BothAlgorithms, NeverAboveTheCap) {
  auto cc = make(config(segs(64)));
  Nanos now = 0ns;
  for (int round = 0; round < 300; ++round) {
    now = ack_round(*cc, now, 1ms);
    ASSERT_LE(cc->cwnd(), segs(64));
  }
  EXPECT_EQ(cc->cwnd(), segs(64));
  EXPECT_GT(cc->stats().cwnd_capped, 0u);
  // An hours-long gap between ACKs (t - K huge) neither overflows nor
  // escapes the cap.
  cc->on_ack(AckEvent{kMss, 1ms, now + std::chrono::hours(10)});
  cc->on_ack(AckEvent{std::uint64_t{1} << 40, 1ms, now + std::chrono::hours(24 * 365)});
  EXPECT_EQ(cc->cwnd(), segs(64));
}

// ---------------------------------------------------------------------------
// HyStart++ (RFC 9406)

// A sender behind a FIFO bottleneck with an unbounded buffer: base RTT 20 ms,
// 5,000 segments per second (a 100-segment BDP). Each ACK releases as much
// new data as cwnd allows. Nothing is ever dropped, so only a delay signal
// can end slow start before the queue grows without bound.
struct BottleneckRun {
  std::uint64_t final_cwnd = 0;
  std::uint64_t ssthresh_at_exit = 0;  // first ssthresh below the cap, 0 if none
  std::uint64_t acks = 0;
  std::uint64_t cwnd_at_css = 0;  // cwnd when Conservative Slow Start began
};

BottleneckRun run_bottleneck(CongestionControl& cc, Nanos duration) {
  const Nanos base = 20ms;
  const Nanos tx = 200us;
  struct Seg {
    SeqNum end;
    Nanos sent;
    Nanos ack_at;
  };
  std::deque<Seg> flight;
  SeqNum una(0xfffff000u);  // across the wrap
  SeqNum nxt = una;
  Nanos now = 0ns;
  Nanos last_departure = 0ns;
  BottleneckRun r;
  auto send = [&] {
    while (distance(una, nxt) + kMss <= cc.cwnd()) {
      const Nanos depart = std::max(now + base / 2, last_departure) + tx;
      last_departure = depart;
      nxt += kMss;
      flight.push_back(Seg{nxt, now, depart + base / 2});
    }
  };
  send();
  while (!flight.empty() && now < duration) {
    const Seg s = flight.front();
    flight.pop_front();
    now = s.ack_at;
    una = s.end;
    cc.on_ack(AckEvent{kMss, s.ack_at - s.sent, now, false, una, nxt});
    ++r.acks;
    if (r.cwnd_at_css == 0 && cc.in_css()) r.cwnd_at_css = cc.cwnd();
    if (r.ssthresh_at_exit == 0 && !cc.in_slow_start()) r.ssthresh_at_exit = cc.ssthresh();
    send();
  }
  r.final_cwnd = cc.cwnd();
  return r;
}

TEST_P(BothAlgorithms, HyStartLeavesSlowStartOnRisingDelay) {
  auto cc = make();
  const BottleneckRun r = run_bottleneck(*cc, 2s);
  EXPECT_GE(cc->stats().hystart_css_entries, 1u);
  EXPECT_EQ(cc->stats().hystart_exits, 1u);
  EXPECT_FALSE(cc->in_slow_start());
  EXPECT_EQ(cc->stats().loss_events, 0u);
  // CSS began once about 20 segments (4 ms) stood in the queue, then grew
  // 1.25x per round for 5 rounds: a few times the BDP, not unbounded.
  std::printf("HyStart++ %s: CSS at %llu segments, slow start ended at %llu, cwnd %llu after 2 s\n",
              std::string(to_string(GetParam())).c_str(),
              static_cast<unsigned long long>(r.cwnd_at_css / kMss),
              static_cast<unsigned long long>(r.ssthresh_at_exit / kMss),
              static_cast<unsigned long long>(r.final_cwnd / kMss));
  EXPECT_GE(r.cwnd_at_css, segs(100));
  EXPECT_LE(r.cwnd_at_css, segs(400));
  EXPECT_GE(r.ssthresh_at_exit, segs(100));
  EXPECT_LE(r.ssthresh_at_exit, segs(1200));
  EXPECT_LE(r.final_cwnd, segs(1500));

  // Without HyStart++ slow start only ends at a loss: one segment per ACK.
  CongestionConfig c = config();
  c.hystart = false;
  auto plain = make(c);
  const BottleneckRun p = run_bottleneck(*plain, 2s);
  EXPECT_TRUE(plain->in_slow_start());
  EXPECT_GT(p.final_cwnd, segs(5000));
  EXPECT_EQ(plain->stats().hystart_css_entries, 0u);
}

// One ACK per segment with the sequence numbers RFC 9406 rounds need; the
// window is sent at the start of the round.
Nanos seq_round(CongestionControl& cc, SeqNum& una, Nanos start, Nanos rtt) {
  const std::uint64_t n = cc.cwnd() / kMss;
  const SeqNum nxt = una + static_cast<std::uint32_t>(n * kMss);
  for (std::uint64_t i = 1; i <= n; ++i) {
    una += kMss;
    cc.on_ack(AckEvent{kMss, rtt, start + rtt * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n),
                       false, una, nxt});
  }
  return start + rtt;
}

TEST_P(BothAlgorithms, HyStartResumesSlowStartWhenTheRttRiseWasSpurious) {
  auto cc = make();
  SeqNum una(1);
  Nanos now = 0ns;
  now = seq_round(*cc, una, now, 20ms);  // 10 segments
  now = seq_round(*cc, una, now, 20ms);  // 20
  ASSERT_EQ(cc->cwnd(), segs(40));
  now = seq_round(*cc, una, now, 30ms);  // a 10 ms rise (threshold: max(4, 20/8) ms)
  now = seq_round(*cc, una, now, 30ms);
  EXPECT_EQ(cc->stats().hystart_css_entries, 1u);
  EXPECT_TRUE(cc->in_css());
  const std::uint64_t in_css = cc->cwnd();
  EXPECT_LT(in_css, segs(160));          // CSS grew a quarter as fast for part of the round
  now = seq_round(*cc, una, now, 20ms);  // the delay is gone
  EXPECT_EQ(cc->stats().hystart_css_resumed, 1u);
  EXPECT_FALSE(cc->in_css());
  EXPECT_TRUE(cc->in_slow_start());
  const std::uint64_t before = cc->cwnd();
  now = seq_round(*cc, una, now, 20ms);
  EXPECT_EQ(cc->cwnd(), before + before / kMss * kMss);  // one SMSS per ACK again: doubling
  EXPECT_EQ(cc->stats().hystart_exits, 0u);
}

TEST_P(BothAlgorithms, HyStartOnlyInTheInitialSlowStart) {
  auto cc = make();
  SeqNum una(1);
  Nanos now = seq_round(*cc, una, 0ns, 20ms);
  cc->on_rto(RtoEvent{cc->cwnd(), now, true});
  // Slow start after the timeout ignores any rise in delay.
  Nanos rtt = 20ms;
  while (cc->in_slow_start()) {
    now = seq_round(*cc, una, now, rtt);
    rtt += 20ms;
  }
  EXPECT_EQ(cc->stats().hystart_css_entries, 0u);
}

// ---------------------------------------------------------------------------
// NewReno: congestion avoidance and fast recovery

TEST(NewReno, CongestionAvoidanceAddsOneSegmentPerRtt) {
  NewReno cc(config());
  grow_to(cc, segs(40));
  loss_and_recovery(cc, 0ns);  // ssthresh = 20 segments
  ASSERT_EQ(cc.cwnd(), segs(20));
  ASSERT_FALSE(cc.in_slow_start());
  Nanos now = 0ns;
  for (std::uint64_t round = 1; round <= 20; ++round) {
    now = ack_round(cc, now, 30ms);
    ASSERT_EQ(cc.cwnd(), segs(20 + round)) << "RFC 5681 3.1: +1 SMSS per RTT";
  }
  // Delayed ACKs (one per two segments) change nothing: bytes are counted.
  for (std::uint64_t round = 1; round <= 5; ++round) now = ack_round(cc, now, 30ms, 2 * kMss);
  EXPECT_EQ(cc.cwnd(), segs(45));
}

TEST(NewReno, FastRecoveryWithPartialAcks) {
  NewReno cc(config());
  grow_to(cc, segs(20));
  // Third duplicate ACK: RFC 6582 3.2 step 2-3.
  ASSERT_TRUE(cc.enter_recovery(LossEvent{segs(20), 1s, RecoveryStyle::kNewReno, SeqNum(20000)}));
  EXPECT_EQ(cc.ssthresh(), segs(10));  // max(FlightSize/2, 2*SMSS)
  EXPECT_EQ(cc.cwnd(), segs(13));      // ssthresh + 3*SMSS
  EXPECT_TRUE(cc.in_recovery());
  EXPECT_FALSE(cc.enter_recovery(LossEvent{segs(20), 1s, RecoveryStyle::kNewReno, SeqNum(20000)}));
  EXPECT_EQ(cc.stats().loss_events, 1u);
  // Step 4: each further duplicate ACK inflates by one SMSS.
  for (int i = 0; i < 3; ++i) cc.on_dup_ack();
  EXPECT_EQ(cc.cwnd(), segs(16));
  // Step 5: a partial ACK of 5 segments deflates by 5 and adds one back.
  cc.on_ack(AckEvent{segs(5), 10ms, 1s + 10ms});
  EXPECT_EQ(cc.cwnd(), segs(12));
  EXPECT_TRUE(cc.in_recovery());
  // A partial ACK of less than one SMSS: deflate only.
  cc.on_ack(AckEvent{500, 10ms, 1s + 20ms});
  EXPECT_EQ(cc.cwnd(), segs(12) - 500);
  // Step 3 on the full ACK, option (1): min(ssthresh, max(FlightSize, SMSS) + SMSS).
  cc.on_recovery_exit(segs(8), 1s + 30ms);
  EXPECT_FALSE(cc.in_recovery());
  EXPECT_EQ(cc.cwnd(), segs(9));
  // Below ssthresh again: slow start up to it (RFC 5681 3.1).
  EXPECT_TRUE(cc.in_slow_start());
  EXPECT_EQ(cc.ssthresh(), segs(10));
}

TEST(NewReno, FullAckWithMuchInFlightSetsSsthresh) {
  NewReno cc(config());
  grow_to(cc, segs(40));
  ASSERT_TRUE(cc.enter_recovery(LossEvent{segs(40), 1s, RecoveryStyle::kNewReno, SeqNum(0)}));
  cc.on_recovery_exit(segs(30), 2s);
  EXPECT_EQ(cc.cwnd(), segs(20));
}

TEST(NewReno, DuplicateAckInflationBoundedByFlightSize) {
  // ROBUSTNESS.md: a peer forging duplicate ACKs must not inflate without end.
  NewReno cc(config());
  grow_to(cc, segs(20));
  ASSERT_TRUE(cc.enter_recovery(LossEvent{segs(20), 1s, RecoveryStyle::kNewReno, SeqNum(0)}));
  for (int i = 0; i < 1000; ++i) cc.on_dup_ack();
  // ssthresh + at most FlightSize (20 segments, 3 of them at entry).
  EXPECT_EQ(cc.cwnd(), segs(30));
  EXPECT_EQ(cc.stats().dupack_inflation_capped, 1000u - 17u);
}

TEST(NewReno, SackStyleRecoveryLeavesCwndAtSsthresh) {
  NewReno cc(config());
  grow_to(cc, segs(20));
  ASSERT_TRUE(cc.enter_recovery(LossEvent{segs(20), 1s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_EQ(cc.cwnd(), segs(10));  // RFC 6675 5 step 4.2: cwnd = ssthresh
  for (int i = 0; i < 5; ++i) cc.on_dup_ack();
  cc.on_ack(AckEvent{segs(4), 10ms, 1s});
  EXPECT_EQ(cc.cwnd(), segs(10));
  cc.on_recovery_exit(segs(2), 2s);
  EXPECT_EQ(cc.cwnd(), segs(10));
}

TEST(NewReno, FlightSizeFloorOfTwoSegments) {
  NewReno cc(config());
  ASSERT_TRUE(cc.enter_recovery(LossEvent{kMss, 1s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_EQ(cc.ssthresh(), segs(2));  // RFC 5681 eq. 4
}

// ---------------------------------------------------------------------------
// CUBIC (RFC 9438)

constexpr double kC = 0.4;
constexpr double kBeta = 0.7;

double expected_k_seconds(double w_max_segs, double cwnd_epoch_segs) {
  return std::cbrt((w_max_segs - cwnd_epoch_segs) / kC);  // RFC 9438 eq. 2
}

double expected_w_cubic_segs(double t, double k, double w_max_segs) {
  return kC * std::pow(t - k, 3) + w_max_segs;  // RFC 9438 eq. 1
}

TEST(Cubic, LossSetsWindowToBetaWmax) {
  Cubic cc(config());
  grow_to(cc, segs(100));
  ASSERT_TRUE(cc.enter_recovery(LossEvent{segs(100), 1s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_EQ(cc.w_max(), segs(100));
  EXPECT_EQ(cc.ssthresh(), segs(70));  // beta_cubic * cwnd
  EXPECT_EQ(cc.cwnd(), segs(70));
  cc.on_recovery_exit(segs(70), 1s);
  EXPECT_EQ(cc.cwnd(), segs(70));
}

TEST(Cubic, KForKnownValues) {
  for (std::uint64_t w_max : {100u, 1000u, 10u, 12345u}) {
    Cubic cc(config());
    grow_to(cc, segs(w_max));
    loss_and_recovery(cc, 0ns);
    cc.on_ack(AckEvent{kMss, 10ms, 1ms});  // the first ACK in congestion avoidance starts the epoch
    ASSERT_TRUE(cc.epoch_started());
    const double expected =
        expected_k_seconds(static_cast<double>(w_max), kBeta * static_cast<double>(w_max));
    EXPECT_NEAR(std::chrono::duration<double>(cc.k()).count(), expected, 1e-5) << "W_max " << w_max;
  }
  // The classic example: W_max = 100 segments gives K = cbrt(75) = 4.2172 s.
  Cubic cc(config());
  grow_to(cc, segs(100));
  loss_and_recovery(cc, 0ns);
  cc.on_ack(AckEvent{kMss, 10ms, 1ms});
  EXPECT_NEAR(std::chrono::duration<double>(cc.k()).count(), 4.2172, 1e-4);
}

TEST(Cubic, FastConvergenceLowersWmax) {
  Cubic cc(config());
  grow_to(cc, segs(100));
  loss_and_recovery(cc, 0ns);
  ASSERT_EQ(cc.cwnd(), segs(70));
  const std::uint64_t peak = grow_to(cc, segs(80), 1s);  // below the old W_max
  ASSERT_TRUE(cc.enter_recovery(LossEvent{peak, 2s, RecoveryStyle::kSack, SeqNum(0)}));
  // RFC 9438 4.7: the new peak is below the old: W_max = cwnd * (1 + beta) / 2.
  EXPECT_EQ(cc.w_max(), peak * 17 / 20);
  EXPECT_EQ(cc.cwnd(), peak * 7 / 10);

  CongestionConfig no_fc = config();
  no_fc.cubic_fast_convergence = false;
  Cubic plain(no_fc);
  grow_to(plain, segs(100));
  loss_and_recovery(plain, 0ns);
  const std::uint64_t plain_peak = grow_to(plain, segs(80), 1s);
  ASSERT_TRUE(plain.enter_recovery(LossEvent{plain_peak, 2s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_EQ(plain.w_max(), plain_peak);
}

// Large RTT * cwnd: the cubic region. cwnd follows W_cubic(t): concave up to
// W_max at t = K, then convex beyond it. With the Reno-friendly region on,
// the expected window is max(W_cubic(t), W_est(t)) (RFC 9438 4.2-4.3); W_est
// takes over late in the convex phase here, once it has reached cwnd_prior
// and grows one segment per RTT.
void check_cubic_curve(bool reno_friendly) {
  CongestionConfig c = config();
  c.cubic_reno_friendly = reno_friendly;
  Cubic cc(c);
  grow_to(cc, segs(100));
  const Nanos loss_time = 10s;
  loss_and_recovery(cc, loss_time);
  const Nanos rtt = 100ms;
  const double k = expected_k_seconds(100, 70);
  const double alpha = 3 * (1 - kBeta) / (1 + kBeta);
  double w_est = 70;
  Nanos now = loss_time;
  int checked = 0;
  double worst = 0;
  for (int round = 1; round <= 80; ++round) {
    now = ack_round(cc, now, rtt);
    w_est += w_est >= 100 ? 1.0 : alpha;
    if (round % 5 != 0) continue;
    const double t = std::chrono::duration<double>(now - loss_time).count();
    const double cubic = expected_w_cubic_segs(t, k, 100);
    const double expected = reno_friendly ? std::max(cubic, w_est) : cubic;
    const double got = static_cast<double>(cc.cwnd()) / kMss;
    // cwnd chases W_cubic(t + RTT) one ACK at a time, so it lies between
    // W_cubic(t) and W_cubic(t + RTT): within 1% or 1 segment of W_cubic(t)
    // (the integer code lands within 0.1% here).
    EXPECT_NEAR(got, expected, std::max(1.0, 0.01 * expected)) << "t = " << t << " s";
    worst = std::max(worst, std::abs(got - expected) / expected);
    ++checked;
    if (t < k - 0.2) {
      EXPECT_LT(got, 100.0) << "concave region stays below W_max";
    }
    if (t > k + 1.0) {
      EXPECT_GT(got, 100.0) << "convex region passes W_max";
    }
  }
  EXPECT_EQ(checked, 16);
  std::printf("CUBIC curve (Reno-friendly %s): worst relative error %.4f\n", reno_friendly ? "on" : "off",
              worst);
  // The epoch started with the first ACK after the loss.
  EXPECT_NEAR(std::chrono::duration<double>(cc.k()).count(), k, 1e-5);
}

TEST(Cubic, GrowthFollowsTheCubicCurve) { check_cubic_curve(false); }
TEST(Cubic, GrowthFollowsTheCubicCurveOrWest) { check_cubic_curve(true); }

// Small RTT * cwnd: the Reno-friendly region. With W_max = 20 segments and a
// 1 ms RTT, W_cubic barely moves in 0.2 s while W_est grows alpha_cubic =
// 9/17 segment per RTT until it reaches cwnd_prior, then 1 per RTT.
TEST(Cubic, RenoFriendlyRegionDominatesAtSmallRttTimesCwnd) {
  Cubic cc(config());
  grow_to(cc, segs(20));
  loss_and_recovery(cc, 0ns);
  ASSERT_EQ(cc.cwnd(), segs(14));
  const Nanos rtt = 1ms;
  Nanos now = 0ns;
  double w_est = 14;  // segments, the RFC 9438 4.3 model, round by round
  const double alpha = 3 * (1 - kBeta) / (1 + kBeta);
  for (int round = 1; round <= 200; ++round) {
    now = ack_round(cc, now, rtt);
    w_est += w_est >= 20 ? 1.0 : alpha;
  }
  const double got = static_cast<double>(cc.cwnd()) / kMss;
  const double t = std::chrono::duration<double>(now).count();
  const double cubic_only = expected_w_cubic_segs(t, expected_k_seconds(20, 14), 20);
  EXPECT_LT(cubic_only, 20.0);
  EXPECT_NEAR(got, w_est, 0.03 * w_est);
  EXPECT_GT(got, 5 * cubic_only);

  // Switched off, only the curve is left.
  CongestionConfig c = config();
  c.cubic_reno_friendly = false;
  Cubic pure(c);
  grow_to(pure, segs(20));
  loss_and_recovery(pure, 0ns);
  now = 0ns;
  for (int round = 1; round <= 200; ++round) now = ack_round(pure, now, rtt);
  EXPECT_NEAR(static_cast<double>(pure.cwnd()) / kMss, cubic_only, 2.0);
}

TEST(Cubic, AfterTimeoutKIsZeroAndWmaxIsTheEpochWindow) {
  Cubic cc(config());
  grow_to(cc, segs(100));
  cc.on_rto(RtoEvent{segs(100), 1s, true});
  EXPECT_EQ(cc.ssthresh(), segs(70));
  Nanos now = 1s;
  // Slow start from 1 segment to ssthresh, then the epoch begins.
  while (cc.in_slow_start()) now = ack_round(cc, now, 10ms);
  now = ack_round(cc, now, 10ms);
  ASSERT_TRUE(cc.epoch_started());
  EXPECT_EQ(cc.k(), 0ns);  // RFC 9438 4.8
  EXPECT_GE(cc.w_max(), segs(70));
  EXPECT_LE(cc.w_max(), segs(72));
}

TEST(Cubic, SlowStartExitWithoutLossStartsConvex) {
  // RFC 9438 4.10: no W_max yet: K = 0, W_max = cwnd at the epoch start.
  CongestionConfig c = config(segs(1000));
  Cubic cc(c);
  Nanos now = 0ns;
  // Force a congestion-avoidance start without a loss: the cap ends slow start.
  while (cc.in_slow_start()) now = ack_round(cc, now, 10ms);
  now = ack_round(cc, now, 10ms);
  EXPECT_TRUE(cc.epoch_started());
  EXPECT_EQ(cc.k(), 0ns);
}

TEST(Cubic, UndoRestoresWmax) {
  Cubic cc(config());
  grow_to(cc, segs(100));
  loss_and_recovery(cc, 0ns);
  const std::uint64_t peak = grow_to(cc, segs(90), 1s);
  ASSERT_TRUE(cc.enter_recovery(LossEvent{peak, 2s, RecoveryStyle::kSack, SeqNum(0)}));
  EXPECT_EQ(cc.w_max(), peak * 17 / 20);
  ASSERT_TRUE(cc.undo_last_reduction());
  EXPECT_EQ(cc.w_max(), segs(100));
  EXPECT_EQ(cc.cwnd(), peak);
  EXPECT_EQ(cc.ssthresh(), segs(70));
}

}  // namespace
}  // namespace usnet::tcp
