// ECN for TCP (RFC 3168 6.1): negotiation in the handshake, ECT(0) on new
// data only, CE echoed as ECE until CWR, ECE answered by one window
// reduction per window and CWR on the next new data, and a connection
// without ECN that ignores all of it. Two connections over an in-memory
// "wire" that carries each segment's IP ECN field (fake clock, no sleeping),
// then two TcpLayers over MemoryLinks with a router between them that marks
// CE in the IP header.
#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "net/net_test_util.hpp"
#include "segment_bytes.hpp"
#include "tcp/stream_transfer.hpp"
#include "usnet/tcp/connection.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/wire/checksum.hpp"

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;
using wire::TcpFlags;
using wire::TcpRepr;
using Bytes = std::vector<std::byte>;

const wire::Ipv4Addr kA = wire::Ipv4Addr::from_octets(198, 18, 0, 1);
const wire::Ipv4Addr kB = wire::Ipv4Addr::from_octets(198, 18, 0, 2);

struct Segment {
  TcpRepr h;
  Bytes payload;
  IpEcn ecn = IpEcn::kNotEct;
};

// Records what a connection sends, with the ECN codepoint it asked for,
// after a round trip through the wire format.
class Sink : public SegmentSink {
 public:
  Sink(wire::Ipv4Addr src, wire::Ipv4Addr dst) : ph_(wire::PseudoHeader::v4(src, dst)) {}
  bool send_segment(const Endpoints& ep, const TcpRepr& h, Payload p, Nanos now) override {
    return send_segment_ecn(ep, h, p, IpEcn::kNotEct, now);
  }
  bool send_segment_ecn(const Endpoints&, const TcpRepr& h, Payload p, IpEcn ecn, Nanos) override {
    Bytes bytes = test_support::segment_bytes(h, p);
    EXPECT_TRUE(h.emit(bytes, ph_));
    auto v = wire::TcpView::make(bytes);
    EXPECT_TRUE(v);
    if (!v) return true;
    auto r = TcpRepr::parse(*v, ph_);
    EXPECT_TRUE(r) << "parse of our own segment";
    if (!r) return true;
    out.push_back(Segment{*r, Bytes(v->payload().begin(), v->payload().end()), ecn});
    all.push_back(out.back());
    return true;
  }
  std::deque<Segment> out;   // not yet delivered
  std::vector<Segment> all;  // everything sent

 private:
  wire::PseudoHeader ph_;
};

ConnectionConfig config(EcnMode ecn) {
  ConnectionConfig c;
  c.send_buffer = 256 * 1024;
  c.recv_buffer = 256 * 1024;
  c.msl = 1s;
  c.ecn = ecn;
  return c;
}

Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

// Two connections and the wire between them: A opens, B is made from A's
// SYN as a listener would make it.
class Pair {
 public:
  Pair(EcnMode a, EcnMode b) : sink_a_(kA, kB), sink_b_(kB, kA) {
    a_ = *Connection::create(config(a), {kA, 40000, kB, 80}, sink_a_, 11);
    b_ = *Connection::create(config(b), {kB, 80, kA, 40000}, sink_b_, 22);
  }
  Connection& a() { return *a_; }
  Connection& b() { return *b_; }
  Sink& sink_a() { return sink_a_; }
  Sink& sink_b() { return sink_b_; }
  Nanos now() const { return now_; }
  void advance(Nanos d) {
    now_ += d;
    if (a_->next_deadline() <= now_) a_->on_timer(now_);
    if (b_->next_deadline() <= now_) b_->on_timer(now_);
  }

  // A's SYN to B (accept_syn), then the wire until quiet.
  void handshake() {
    ASSERT_FALSE(a_->connect(SeqNum(1000), now_));
    ASSERT_EQ(sink_a_.out.size(), 1u);
    Segment syn = sink_a_.out.front();
    sink_a_.out.pop_front();
    if (filter && !filter(syn, true)) return;
    ASSERT_FALSE(b_->accept_syn(syn.h, SeqNum(5000), now_));
    pump();
  }

  // Delivers segments both ways until none is left (bounded); `filter` may
  // change a segment (its flags, its ECN field) or drop it (false).
  void pump(int max_rounds = 10000) {
    for (int i = 0; i < max_rounds; ++i) {
      if (sink_a_.out.empty() && sink_b_.out.empty()) return;
      deliver_all(sink_a_, *b_, true);
      deliver_all(sink_b_, *a_, false);
    }
    ADD_FAILURE() << "the wire never went quiet";
  }
  // The oldest segment A (or B) sent and has not been delivered, taken off.
  Segment take_from_a() { return take(sink_a_); }
  Segment take_from_b() { return take(sink_b_); }
  void to_b(const Segment& s) { b_->on_segment(s.h, s.payload, now_, nullptr, s.ecn); }
  void to_a(const Segment& s) { a_->on_segment(s.h, s.payload, now_, nullptr, s.ecn); }

  std::function<bool(Segment&, bool from_a)> filter;

 private:
  static Segment take(Sink& s) {
    EXPECT_FALSE(s.out.empty());
    if (s.out.empty()) return {};
    Segment seg = s.out.front();
    s.out.pop_front();
    return seg;
  }
  void deliver_all(Sink& from, Connection& to, bool from_a) {
    std::deque<Segment> batch;
    batch.swap(from.out);
    for (auto& s : batch) {
      if (filter && !filter(s, from_a)) continue;
      to.on_segment(s.h, s.payload, now_, nullptr, s.ecn);
    }
  }
  Sink sink_a_, sink_b_;
  std::unique_ptr<Connection> a_, b_;
  Nanos now_ = 1000s;
};

// Sends `data` from A and reads it at B, pumping the wire and the clock.
Bytes transfer(Pair& p, const Bytes& data, Nanos step = 1ms) {
  Bytes got;
  std::size_t sent = 0;
  std::array<std::byte, 16384> buf{};
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    if (sent < data.size()) {
      auto n = p.a().send(std::span(data).subspan(sent), p.now());
      if (n) sent += *n;
    }
    p.pump(100);
    for (;;) {
      auto r = p.b().receive(buf, p.now());
      if (!r || *r == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
    p.advance(step);
  }
  return got;
}

bool has(const TcpRepr& h, std::uint8_t bits) { return (h.flags.bits & bits) == bits; }

// --- Negotiation (RFC 3168 6.1.1) ---------------------------------------

TEST(TcpEcn, Rfc3168_6_1_1_BothWillingNegotiateEcn) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  ASSERT_EQ(p.a().state(), State::kEstablished);
  ASSERT_EQ(p.b().state(), State::kEstablished);
  // The ECN-setup SYN: ECE and CWR; the ECN-setup SYN,ACK: ECE alone.
  const Segment& syn = p.sink_a().all.front();
  const Segment& synack = p.sink_b().all.front();
  EXPECT_TRUE(has(syn.h, TcpFlags::kSyn | TcpFlags::kEce | TcpFlags::kCwr));
  EXPECT_TRUE(has(synack.h, TcpFlags::kSyn | TcpFlags::kAck | TcpFlags::kEce));
  EXPECT_FALSE(synack.h.flags.cwr());
  // Neither is ECN-capable in IP (6.1.1: not on SYN or SYN,ACK).
  EXPECT_EQ(syn.ecn, IpEcn::kNotEct);
  EXPECT_EQ(synack.ecn, IpEcn::kNotEct);
  EXPECT_TRUE(p.a().ecn_on());
  EXPECT_TRUE(p.b().ecn_on());
  EXPECT_EQ(p.a().counters().ecn_negotiated, 1u);
  EXPECT_EQ(p.b().counters().ecn_negotiated, 1u);
  // The third segment is an ordinary ACK: no ECE, no CWR.
  const Segment& third = p.sink_a().all.back();
  EXPECT_FALSE(third.h.flags.ece());
  EXPECT_FALSE(third.h.flags.cwr());
}

TEST(TcpEcn, Rfc3168_6_1_1_AcceptOnlyIsTheDefaultAndDoesNotAsk) {
  EXPECT_EQ(ConnectionConfig{}.ecn, EcnMode::kAccept);
  Pair p(EcnMode::kAccept, EcnMode::kOn);
  p.handshake();
  const Segment& syn = p.sink_a().all.front();
  EXPECT_FALSE(syn.h.flags.ece());
  EXPECT_FALSE(syn.h.flags.cwr());
  // A server that would ask as a client does not push ECN on a SYN that
  // did not ask.
  EXPECT_FALSE(p.sink_b().all.front().h.flags.ece());
  EXPECT_FALSE(p.a().ecn_on());
  EXPECT_FALSE(p.b().ecn_on());
  EXPECT_EQ(p.a().counters().ecn_negotiated + p.b().counters().ecn_negotiated, 0u);
}

TEST(TcpEcn, Rfc3168_6_1_1_ServerWithEcnOffDeclines) {
  Pair p(EcnMode::kOn, EcnMode::kOff);
  p.handshake();
  ASSERT_EQ(p.a().state(), State::kEstablished);
  EXPECT_TRUE(has(p.sink_a().all.front().h, TcpFlags::kEce | TcpFlags::kCwr));
  EXPECT_FALSE(p.sink_b().all.front().h.flags.ece());
  EXPECT_FALSE(p.a().ecn_on());
  EXPECT_FALSE(p.b().ecn_on());
  // No ECN: data goes out not-ECT.
  const Bytes data = pattern(20000, 1);
  EXPECT_EQ(transfer(p, data), data);
  for (const Segment& s : p.sink_a().all) EXPECT_EQ(s.ecn, IpEcn::kNotEct);
  EXPECT_EQ(p.a().counters().ect_sent, 0u);
}

TEST(TcpEcn, Rfc3168_6_1_1_SynWithOnlyOneOfEceAndCwrIsNotEcnSetup) {
  // A host that reflects the reserved bits, or sets one by mistake, does
  // not get ECN: the setup SYN needs both.
  for (const std::uint8_t one : {TcpFlags::kEce, TcpFlags::kCwr}) {
    Pair p(EcnMode::kOn, EcnMode::kOn);
    p.filter = [one](Segment& s, bool from_a) {
      if (from_a && s.h.flags.syn()) s.h.flags = TcpFlags{static_cast<std::uint8_t>(TcpFlags::kSyn | one)};
      return true;
    };
    p.handshake();
    ASSERT_EQ(p.b().state(), State::kEstablished);
    EXPECT_FALSE(p.sink_b().all.front().h.flags.ece()) << int{one};
    EXPECT_FALSE(p.b().ecn_on()) << int{one};
    EXPECT_FALSE(p.a().ecn_on()) << int{one};
  }
}

TEST(TcpEcn, Rfc3168_6_1_1_SynAckWithEceAndCwrIsNotEcnSetup) {
  // A SYN,ACK with both bits (a peer that echoes the SYN's flags back) does
  // not make the client ECN-capable; only ECE without CWR does.
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.filter = [](Segment& s, bool from_a) {
    if (!from_a && s.h.flags.syn()) {
      s.h.flags = TcpFlags{static_cast<std::uint8_t>(s.h.flags.bits | TcpFlags::kCwr)};
    }
    return true;
  };
  p.handshake();
  ASSERT_EQ(p.a().state(), State::kEstablished);
  EXPECT_FALSE(p.a().ecn_on());
  EXPECT_EQ(p.a().counters().ecn_negotiated, 0u);
}

TEST(TcpEcn, Rfc3168_6_1_1_1_SynSentAgainDoesNotAsk) {
  // The first SYN is lost (a middlebox dropping ECN-setup SYNs, say): the
  // one sent after the timeout is a plain SYN, and the connection goes on
  // without ECN.
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  ASSERT_FALSE(p.a().connect(SeqNum(1000), p.now()));
  Segment first = p.take_from_a();
  EXPECT_TRUE(has(first.h, TcpFlags::kSyn | TcpFlags::kEce | TcpFlags::kCwr));
  p.advance(1100ms);  // past the initial RTO
  Segment again = p.take_from_a();
  ASSERT_TRUE(again.h.flags.syn());
  EXPECT_FALSE(again.h.flags.ece());
  EXPECT_FALSE(again.h.flags.cwr());
  ASSERT_FALSE(p.b().accept_syn(again.h, SeqNum(5000), p.now()));
  p.pump();
  ASSERT_EQ(p.a().state(), State::kEstablished);
  EXPECT_FALSE(p.a().ecn_on());
  EXPECT_FALSE(p.b().ecn_on());
}

TEST(TcpEcn, Rfc3168_6_1_1_SimultaneousOpenSetsUpNoEcn) {
  Pair p(EcnMode::kOn, EcnMode::kOn);
  ASSERT_FALSE(p.a().connect(SeqNum(1000), p.now()));
  ASSERT_FALSE(p.b().connect(SeqNum(5000), p.now()));
  p.pump();
  ASSERT_EQ(p.a().state(), State::kEstablished);
  ASSERT_EQ(p.b().state(), State::kEstablished);
  EXPECT_FALSE(p.a().ecn_on());
  EXPECT_FALSE(p.b().ecn_on());
}

// --- The sender: ECT(0) on new data only (6.1.2, 6.1.4-6.1.6) -------------

TEST(TcpEcn, Rfc3168_6_1_4_and_6_1_5_EctOnNewDataNotOnAcksOrRetransmissions) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  ASSERT_TRUE(p.a().ecn_on());
  // Lose A's third data segment once: it comes back as a retransmission.
  int data_seen = 0;
  SeqNum lost;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && !s.payload.empty() && ++data_seen == 3) {
      lost = s.h.seq;
      return false;
    }
    return true;
  };
  const Bytes data = pattern(200000, 2);
  EXPECT_EQ(transfer(p, data), data);
  ASSERT_GE(data_seen, 3);
  std::uint64_t ect = 0, retransmitted = 0;
  SeqNum high(1001);  // one past the highest byte sent so far
  for (const Segment& s : p.sink_a().all) {
    if (s.h.flags.syn() || s.payload.empty()) {
      EXPECT_EQ(s.ecn, IpEcn::kNotEct) << "SYN or pure ACK, seq " << s.h.seq;
      continue;
    }
    const SeqNum end = s.h.seq + static_cast<std::uint32_t>(s.payload.size());
    if (s.h.seq >= high) {
      EXPECT_EQ(s.ecn, IpEcn::kEct0) << "new data, seq " << s.h.seq;
      ++ect;
    } else {
      EXPECT_EQ(s.ecn, IpEcn::kNotEct) << "retransmission, seq " << s.h.seq;
      ++retransmitted;
    }
    if (end > high) high = end;
  }
  EXPECT_GE(retransmitted, 1u);
  EXPECT_EQ(p.a().counters().ect_sent, ect);
  EXPECT_EQ(p.a().counters().retransmits, retransmitted);
  // B sent only pure ACKs: never ECT.
  for (const Segment& s : p.sink_b().all) EXPECT_EQ(s.ecn, IpEcn::kNotEct);
  EXPECT_EQ(p.b().counters().ect_sent, 0u);
}

TEST(TcpEcn, Rfc3168_6_1_6_WindowProbesAndResetsAreNotEct) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  ASSERT_TRUE(p.a().ecn_on());
  // B never reads: its window closes and A probes it.
  const Bytes data = pattern(400000, 3);
  std::size_t sent = 0;
  for (int i = 0; i < 2000 && sent < data.size(); ++i) {
    auto n = p.a().send(std::span(data).subspan(sent), p.now());
    if (n) sent += *n;
    p.pump(100);
    p.advance(10ms);
  }
  for (int i = 0; i < 500; ++i) {
    p.pump(100);
    p.advance(10ms);
  }
  EXPECT_GT(p.a().counters().window_probes, 0u);
  p.a().abort(p.now());
  std::uint64_t probes = 0, resets = 0;
  for (const Segment& s : p.sink_a().all) {
    if (s.payload.empty()) {
      EXPECT_EQ(s.ecn, IpEcn::kNotEct);
      probes += s.h.flags.rst() ? 0 : 1;
      resets += s.h.flags.rst() ? 1 : 0;
    }
  }
  EXPECT_GT(probes, 0u);
  EXPECT_EQ(resets, 1u);
}

// --- The receiver: CE in, ECE out until CWR (6.1.3) ------------------------

TEST(TcpEcn, Rfc3168_6_1_3_CeMakesEveryAckCarryEceUntilCwr) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  ASSERT_TRUE(p.a().ecn_on());
  const Bytes data = pattern(40000, 4);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  // IW10: ten segments; a router marks the first.
  ASSERT_GE(p.sink_a().out.size(), 4u);
  Segment first = p.take_from_a();
  ASSERT_EQ(first.ecn, IpEcn::kEct0);
  first.ecn = IpEcn::kCe;
  p.to_b(first);
  EXPECT_EQ(p.b().counters().ce_received, 1u);
  // Echoed at once, and on every later ACK, marked or not.
  ASSERT_EQ(p.sink_b().out.size(), 1u);
  EXPECT_TRUE(p.sink_b().out.back().h.flags.ece());
  while (!p.sink_a().out.empty()) {
    p.to_b(p.take_from_a());
  }
  ASSERT_GE(p.sink_b().out.size(), 2u);
  for (const Segment& s : p.sink_b().out) {
    EXPECT_TRUE(s.h.flags.ece()) << s.h.ack.raw();
    EXPECT_EQ(s.ecn, IpEcn::kNotEct);  // an ACK with ECE is still a pure ACK
  }
  const std::uint64_t echoes = p.sink_b().out.size();
  EXPECT_EQ(p.b().counters().ece_sent, echoes);

  // A: the ECE ACKs reduce the window once (one window of data) ...
  const std::uint64_t cwnd_before = p.a().congestion().cwnd();
  while (!p.sink_b().out.empty()) p.to_a(p.take_from_b());
  EXPECT_EQ(p.a().counters().ece_received, echoes);
  EXPECT_EQ(p.a().counters().ecn_cwnd_reductions, 1u);
  EXPECT_LT(p.a().congestion().cwnd(), cwnd_before);
  EXPECT_EQ(p.a().congestion().stats().ecn_reductions, 1u);
  // ... and the next new data segment carries CWR, only that one.
  ASSERT_FALSE(p.sink_a().out.empty());
  std::size_t with_cwr = 0;
  for (const Segment& s : p.sink_a().out) {
    if (s.h.flags.cwr()) ++with_cwr;
    EXPECT_EQ(s.ecn, IpEcn::kEct0);
  }
  EXPECT_EQ(with_cwr, 1u);
  EXPECT_TRUE(p.sink_a().out.front().h.flags.cwr());
  EXPECT_EQ(p.a().counters().cwr_sent, 1u);
  // B sees CWR: its ACKs stop carrying ECE.
  p.to_b(p.take_from_a());
  EXPECT_EQ(p.b().counters().cwr_received, 1u);
  p.pump();
  const Segment& last = p.sink_b().all.back();
  EXPECT_FALSE(last.h.flags.ece());
  EXPECT_EQ(p.b().counters().ece_sent, echoes);  // none after the CWR
  std::array<std::byte, 65536> buf{};
  std::size_t got = 0;
  for (int i = 0; i < 100 && got < data.size(); ++i) {
    p.pump();
    got += *p.b().receive(buf, p.now());
    p.advance(1ms);
  }
  EXPECT_EQ(got, data.size());
}

TEST(TcpEcn, Rfc3168_6_1_3_CeOnTheCwrSegmentStartsTheEchoAgain) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  const Bytes data = pattern(60000, 5);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  // Every data segment marked: after B's CWR, the CE on that same segment
  // starts the echo again.
  std::optional<SeqNum> cwr_end;  // one past the first CWR segment B got
  bool ece_after_cwr = false;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.ecn == IpEcn::kEct0) s.ecn = IpEcn::kCe;
    if (from_a && s.h.flags.cwr() && !cwr_end)
      cwr_end = s.h.seq + static_cast<std::uint32_t>(s.payload.size());
    // B's ACK of the CWR segment (or later) still echoes.
    if (!from_a && cwr_end && s.h.ack >= *cwr_end && s.h.flags.ece()) ece_after_cwr = true;
    return true;
  };
  for (int i = 0; i < 200 && p.b().readable() < data.size(); ++i) {
    p.pump();
    p.advance(1ms);
  }
  EXPECT_EQ(p.b().readable(), data.size());
  ASSERT_TRUE(cwr_end);
  EXPECT_GE(p.b().counters().cwr_received, 1u);
  EXPECT_TRUE(ece_after_cwr);
}

TEST(TcpEcn, Rfc3168_6_1_5_CeOnAnOldDuplicateIsIgnored) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  const Bytes data = pattern(2000, 6);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  Segment seg = p.take_from_a();
  p.to_b(seg);
  p.pump();
  // The same segment again, now marked: outside the window, dropped, no echo.
  seg.ecn = IpEcn::kCe;
  p.to_b(seg);
  EXPECT_EQ(p.b().counters().ce_received, 0u);
  EXPECT_FALSE(p.sink_b().all.back().h.flags.ece());
  p.pump();
}

// --- The sender: ECE in, one reduction per window, CWR (6.1.2) -------------

TEST(TcpEcn, Rfc3168_6_1_2_EceReducesOncePerWindowAndCwrGoesOnNextNewData) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  const std::uint32_t mss = p.a().peer_mss();
  // Window one: ten segments, every ACK forged with ECE.
  const Bytes data = pattern(std::size_t{10} * mss, 7);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  ASSERT_EQ(p.sink_a().out.size(), 10u);
  const SeqNum end_of_window = p.a().snd_nxt();
  while (!p.sink_a().out.empty()) p.to_b(p.take_from_a());
  ASSERT_EQ(p.sink_b().out.size(), 10u);  // quick ACKs: one per segment
  const std::uint64_t cwnd0 = p.a().congestion().cwnd();
  int n = 0;
  while (!p.sink_b().out.empty()) {
    Segment ack = p.take_from_b();
    ack.h.flags = TcpFlags{static_cast<std::uint8_t>(ack.h.flags.bits | TcpFlags::kEce)};
    p.to_a(ack);
    if (++n == 1) {
      EXPECT_LT(p.a().congestion().cwnd(), cwnd0);
    }
  }
  EXPECT_EQ(p.a().snd_una(), end_of_window);
  EXPECT_EQ(p.a().counters().ece_received, 10u);
  // One reduction, even for the ACK of the window's last byte (an echo of
  // marks on data sent before the reduction).
  EXPECT_EQ(p.a().counters().ecn_cwnd_reductions, 1u);
  const std::uint64_t reduced = p.a().congestion().cwnd();
  EXPECT_LT(reduced, cwnd0);
  // More ECE at SND.UNA before anything new was sent: the same event.
  {
    TcpRepr dup = p.sink_b().all.back().h;
    dup.flags = TcpFlags{static_cast<std::uint8_t>(TcpFlags::kAck | TcpFlags::kEce)};
    p.to_a({dup, {}, IpEcn::kNotEct});
  }
  EXPECT_EQ(p.a().counters().ecn_cwnd_reductions, 1u);

  // Window two: the first new segment carries CWR; an ECE on an ACK for
  // data sent after the reduction is a new congestion event.
  const Bytes more = pattern(std::size_t{4} * mss, 8);
  ASSERT_EQ(*p.a().send(more, p.now()), more.size());
  ASSERT_FALSE(p.sink_a().out.empty());
  EXPECT_TRUE(p.sink_a().out.front().h.flags.cwr());
  for (std::size_t i = 1; i < p.sink_a().out.size(); ++i) EXPECT_FALSE(p.sink_a().out[i].h.flags.cwr());
  EXPECT_EQ(p.a().counters().cwr_sent, 1u);
  while (!p.sink_a().out.empty()) p.to_b(p.take_from_a());
  Segment ack = p.take_from_b();
  EXPECT_FALSE(ack.h.flags.ece());  // B saw no CE
  EXPECT_GT(ack.h.ack, end_of_window);
  ack.h.flags = TcpFlags{static_cast<std::uint8_t>(ack.h.flags.bits | TcpFlags::kEce)};
  p.to_a(ack);
  EXPECT_EQ(p.a().counters().ecn_cwnd_reductions, 2u);
  p.pump();
  // The next new data carries CWR again.
  const Bytes last = pattern(mss, 9);
  ASSERT_EQ(*p.a().send(last, p.now()), last.size());
  ASSERT_FALSE(p.sink_a().out.empty());
  EXPECT_TRUE(p.sink_a().out.front().h.flags.cwr());
  EXPECT_EQ(p.a().counters().cwr_sent, 2u);
  p.pump();
}

TEST(TcpEcn, Rfc3168_6_1_2_LossInAWindowEcnAlreadyReducedForDoesNotReduceAgain) {
  // "the TCP sender SHOULD NOT decrease the slow-start threshold, ssthresh,
  // if it has been decreased within the last round trip time": the
  // controller alone, both algorithms.
  for (const auto algo : {CongestionAlgorithm::kNewReno, CongestionAlgorithm::kCubic}) {
    CongestionConfig cfg;
    cfg.smss = 1000;
    auto cc = std::move(*make_congestion_control(algo, cfg));
    const SeqNum una(0xfffff000u);  // across the wrap
    const SeqNum nxt = una + 10000;
    ASSERT_TRUE(cc->on_ecn_ce(EcnEvent{una + 1000, nxt, 10000, 1s}));
    const std::uint64_t ssthresh = cc->ssthresh();
    // Segment una+2000 is lost: data from before the reduction.
    ASSERT_TRUE(cc->enter_recovery(LossEvent{8000, 1s + 1ms, RecoveryStyle::kSack, nxt}));
    EXPECT_TRUE(cc->in_recovery());
    EXPECT_EQ(cc->ssthresh(), ssthresh) << to_string(algo);
    EXPECT_LE(cc->cwnd(), ssthresh);
    EXPECT_EQ(cc->stats().loss_events, 0u);
    EXPECT_EQ(cc->stats().losses_after_ecn, 1u);
    cc->on_recovery_exit(4000, 2s);
    // A loss of data sent after the reduction is new congestion.
    const SeqNum later = nxt + 20000;
    ASSERT_TRUE(cc->enter_recovery(LossEvent{4000, 3s, RecoveryStyle::kSack, later}));
    EXPECT_LT(cc->ssthresh(), ssthresh) << to_string(algo);
    EXPECT_EQ(cc->stats().loss_events, 1u);
  }
}

TEST(TcpEcn, Rfc3168_6_1_2_ConnectionLossAfterEceRecoversWithoutASecondReduction) {
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  const std::uint32_t mss = p.a().peer_mss();
  const Bytes data = pattern(std::size_t{10} * mss, 16);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  std::vector<Segment> segs;
  while (!p.sink_a().out.empty()) segs.push_back(p.take_from_a());
  ASSERT_EQ(segs.size(), 10u);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    if (i != 2) p.to_b(segs[i]);  // the third is lost
  }
  ASSERT_EQ(p.sink_b().out.size(), 9u);  // two ACKs, seven duplicates
  bool first = true;
  std::uint64_t ssthresh_after_ecn = 0;
  while (!p.sink_b().out.empty()) {
    Segment ack = p.take_from_b();
    if (first) ack.h.flags = TcpFlags{static_cast<std::uint8_t>(ack.h.flags.bits | TcpFlags::kEce)};
    p.to_a(ack);
    if (first) ssthresh_after_ecn = p.a().congestion().ssthresh();
    first = false;
  }
  EXPECT_EQ(p.a().counters().ecn_cwnd_reductions, 1u);
  EXPECT_EQ(p.a().counters().fast_retransmits, 1u);
  EXPECT_EQ(p.a().congestion().ssthresh(), ssthresh_after_ecn);
  EXPECT_EQ(p.a().congestion().stats().loss_events, 0u);
  EXPECT_EQ(p.a().congestion().stats().losses_after_ecn, 1u);
  // The fast retransmission is neither ECT nor CWR; the data all arrives.
  ASSERT_FALSE(p.sink_a().out.empty());
  EXPECT_EQ(p.sink_a().out.front().h.seq, segs[2].h.seq);
  EXPECT_EQ(p.sink_a().out.front().ecn, IpEcn::kNotEct);
  EXPECT_FALSE(p.sink_a().out.front().h.flags.cwr());
  for (int i = 0; i < 100 && p.b().readable() < data.size(); ++i) {
    p.pump();
    p.advance(10ms);
  }
  EXPECT_EQ(p.b().readable(), data.size());
}

TEST(TcpEcn, Rfc3168_6_1_2_CwrFollowsALossReductionToo) {
  // "When an ECN-Capable TCP sender reduces its congestion window for any
  // reason": a retransmission timeout here.
  Pair p(EcnMode::kOn, EcnMode::kAccept);
  p.handshake();
  // Two full segments (a short tail would wait for Nagle and go out as
  // new data, with the CWR, during the recovery).
  const Bytes data = pattern(std::size_t{2} * p.a().peer_mss(), 10);
  ASSERT_EQ(*p.a().send(data, p.now()), data.size());
  ASSERT_EQ(p.sink_a().out.size(), 2u);
  p.sink_a().out.clear();  // lost
  p.advance(1100ms);       // RTO: the window collapses, the head is sent again
  ASSERT_FALSE(p.sink_a().out.empty());
  EXPECT_FALSE(p.sink_a().out.front().h.flags.cwr());  // a retransmission: no CWR, not ECT
  EXPECT_EQ(p.sink_a().out.front().ecn, IpEcn::kNotEct);
  p.pump();
  p.advance(1100ms);
  p.pump();
  ASSERT_EQ(p.a().snd_una(), p.a().snd_nxt());
  EXPECT_EQ(p.a().counters().cwr_sent, 0u);
  const Bytes more = pattern(1000, 11);
  ASSERT_EQ(*p.a().send(more, p.now()), more.size());
  ASSERT_FALSE(p.sink_a().out.empty());
  EXPECT_TRUE(p.sink_a().out.front().h.flags.cwr());
  EXPECT_EQ(p.sink_a().out.front().ecn, IpEcn::kEct0);
  p.pump();
}

TEST(TcpEcn, Rfc3168_6_1_2_EceEndToEndUnderMarkingKeepsDataExact) {
  // A router that marks one ECT segment in 20: the transfer completes, the
  // sender reduced for some marks but at most once per round of marks.
  Pair p(EcnMode::kOn, EcnMode::kOn);
  p.handshake();
  int k = 0;
  p.filter = [&k](Segment& s, bool from_a) {
    if (from_a && s.ecn == IpEcn::kEct0 && ++k % 20 == 0) s.ecn = IpEcn::kCe;
    return true;
  };
  const Bytes data = pattern(1000000, 12);
  EXPECT_EQ(transfer(p, data), data);
  const auto& ca = p.a().counters();
  const auto& cb = p.b().counters();
  EXPECT_GT(cb.ce_received, 0u);
  EXPECT_GT(ca.ecn_cwnd_reductions, 0u);
  EXPECT_LE(ca.ecn_cwnd_reductions, cb.ce_received);
  EXPECT_EQ(ca.cwr_sent, cb.cwr_received);
  EXPECT_EQ(ca.retransmits, 0u);  // ECN signalled congestion without a loss
}

// --- A connection without ECN (RFC 3168 6.1.1: neither side may use it) ----

TEST(TcpEcn, Rfc3168_6_1_1_HostilePeerSettingEceOnANonEcnConnectionChangesNothing) {
  // Two identical transfers without ECN; in one, every segment from B
  // carries ECE and CWR and every segment to B arrives CE. The sender's
  // window and counters come out the same.
  auto run = [](bool hostile, std::uint64_t& cwnd, ConnectionCounters& ca, ConnectionCounters& cb,
                std::vector<Segment>& sent_by_a, std::vector<Segment>& sent_by_b) {
    Pair p(EcnMode::kAccept, EcnMode::kAccept);
    if (hostile) {
      p.filter = [](Segment& s, bool from_a) {
        if (from_a) {
          s.ecn = IpEcn::kCe;
        } else {
          s.h.flags = TcpFlags{static_cast<std::uint8_t>(s.h.flags.bits | TcpFlags::kEce | TcpFlags::kCwr)};
        }
        return true;
      };
    }
    p.handshake();  // the SYN,ACK too carries ECE and CWR in the hostile run
    const Bytes data = pattern(300000, 13);
    EXPECT_EQ(transfer(p, data), data);
    cwnd = p.a().congestion().cwnd();
    ca = p.a().counters();
    cb = p.b().counters();
    sent_by_a = p.sink_a().all;
    sent_by_b = p.sink_b().all;
    EXPECT_EQ(p.a().congestion().stats().ecn_reductions, 0u);
    EXPECT_EQ(p.a().congestion().stats().ecn_ignored, 0u);
  };
  std::uint64_t cwnd_quiet = 0, cwnd_hostile = 0;
  ConnectionCounters qa, qb, ha, hb;
  std::vector<Segment> qsa, qsb, hsa, hsb;
  run(false, cwnd_quiet, qa, qb, qsa, qsb);
  run(true, cwnd_hostile, ha, hb, hsa, hsb);
  EXPECT_EQ(cwnd_hostile, cwnd_quiet);
  EXPECT_EQ(ha.segments_out, qa.segments_out);
  EXPECT_EQ(hb.segments_out, qb.segments_out);
  for (const auto* c : {&ha, &hb}) {
    EXPECT_EQ(c->ecn_negotiated, 0u);
    EXPECT_EQ(c->ect_sent, 0u);
    EXPECT_EQ(c->ce_received, 0u);
    EXPECT_EQ(c->ece_sent, 0u);
    EXPECT_EQ(c->ece_received, 0u);
    EXPECT_EQ(c->cwr_sent, 0u);
    EXPECT_EQ(c->cwr_received, 0u);
    EXPECT_EQ(c->ecn_cwnd_reductions, 0u);
  }
  // Nothing of ours was marked, echoed or flagged.
  for (const auto* v : {&hsa, &hsb}) {
    for (const Segment& s : *v) {
      EXPECT_EQ(s.ecn, IpEcn::kNotEct);
      EXPECT_FALSE(s.h.flags.ece());
      EXPECT_FALSE(s.h.flags.cwr());
    }
  }
}

// --- Through two TcpLayers: the IP header's ECN field (RFC 3168 5) ---------

using net::test::Host;
using net::test::kOurIp;
using net::test::kPeerIp;
using net::test::kPeerMac;
using net::test::TestPool;

TcpConfig layer_config(std::uint64_t seed, EcnMode ecn) {
  TcpConfig c;
  c.seed = seed;
  c.connection.msl = 1s;
  c.connection.send_buffer = 64 * 1024;
  c.connection.recv_buffer = 64 * 1024;
  c.connection.ecn = ecn;
  return c;
}

struct Frame {
  Bytes bytes;
  bool ipv4_tcp() const {
    return bytes.size() >= 34 && bytes[12] == std::byte{0x08} && bytes[13] == std::byte{0} &&
           bytes[23] == std::byte{6};
  }
  std::size_t ihl() const { return std::size_t{std::to_integer<std::uint8_t>(bytes[14]) & 0x0fu} * 4; }
  IpEcn ecn() const { return static_cast<IpEcn>(std::to_integer<std::uint8_t>(bytes[15]) & 0x3); }
  std::uint8_t tcp_flags() const { return std::to_integer<std::uint8_t>(bytes[14 + ihl() + 13]); }
  std::size_t tcp_payload() const {
    const std::size_t total = (std::size_t{std::to_integer<std::uint8_t>(bytes[16])} << 8) |
                              std::to_integer<std::uint8_t>(bytes[17]);
    const std::size_t doff =
        static_cast<std::size_t>(std::to_integer<std::uint8_t>(bytes[14 + ihl() + 12]) >> 4) * 4;
    return total - ihl() - doff;
  }
  // A router marking congestion: CE in the IP header, header checksum again.
  void mark_ce() {
    bytes[15] = bytes[15] | std::byte{0x3};
    bytes[24] = bytes[25] = std::byte{0};
    const std::uint16_t sum = wire::internet_checksum(std::span(bytes).subspan(14, ihl()));
    bytes[24] = std::byte(sum >> 8);
    bytes[25] = std::byte(sum & 0xff);
  }
};

// a = 198.18.0.1 (client), b = 198.18.0.2 (server); the links are not
// joined: route() moves frames between them and may mark them.
struct Net {
  TestPool pool{64};
  Host a{pool, net::test::default_config(kPeerIp), kPeerMac};
  Host b{pool};
  std::unique_ptr<TcpLayer> ta;
  std::unique_ptr<TcpLayer> tb;
  std::function<void(Frame&, bool from_a)> router;
  std::vector<Frame> seen;
  Net(TcpConfig ca, TcpConfig cb) {
    ta = std::move(*TcpLayer::create(*a.iface, *pool, a.owner, ca));
    tb = std::move(*TcpLayer::create(*b.iface, *pool, b.owner, cb));
  }
  ~Net() {
    ta.reset();
    tb.reset();
  }
  Nanos now() const { return a.now; }
  void route() {
    for (auto& f : a.sent()) forward(Frame{std::move(f)}, true);
    for (auto& f : b.sent()) forward(Frame{std::move(f)}, false);
  }
  void forward(Frame f, bool from_a) {
    if (router) router(f, from_a);
    if (f.ipv4_tcp()) seen.push_back(f);
    EXPECT_TRUE((from_a ? b : a).link.inject_rx(f.bytes));
  }
  void step(Nanos d = 1ms) {
    a.now += d;
    b.now += d;
    a.poll();
    b.poll();
    route();
    a.poll();
    b.poll();
    route();
    ta->poll_timers(a.now);
    tb->poll_timers(b.now);
  }
};

using test::transfer;  // tcp/stream_transfer.hpp

TEST(TcpEcnLayer, Rfc3168_5_and_6_1_IpEcnFieldEndToEnd) {
  Net n(layer_config(11, EcnMode::kOn), layer_config(22, EcnMode::kAccept));
  // The router marks every tenth ECT(0) packet CE.
  int ect = 0;
  n.router = [&ect](Frame& f, bool) {
    if (f.ipv4_tcp() && f.ecn() == IpEcn::kEct0 && ++ect % 10 == 0) f.mark_ce();
  };
  auto listener = n.tb->listen({{}, 80});
  ASSERT_TRUE(listener);
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  ASSERT_TRUE(client);
  for (int i = 0; i < 20 && client->connection().state() != State::kEstablished; ++i) n.step();
  ASSERT_EQ(client->connection().state(), State::kEstablished);
  auto server = listener->accept();
  ASSERT_TRUE(server);
  EXPECT_TRUE(client->connection().ecn_on());
  EXPECT_TRUE(server->connection().ecn_on());

  const Bytes up = pattern(400000, 14);
  EXPECT_EQ(transfer(n, *client, *server, up), up);
  // On the wire: SYNs and pure ACKs not-ECT; first transmissions of data ECT(0).
  std::size_t data_frames = 0;
  for (const Frame& f : n.seen) {
    if ((f.tcp_flags() & TcpFlags::kSyn) != 0 || f.tcp_payload() == 0) {
      EXPECT_EQ(f.ecn(), IpEcn::kNotEct);
    } else {
      ++data_frames;
      EXPECT_NE(f.ecn(), IpEcn::kNotEct);  // ECT(0), or CE from the router
    }
  }
  EXPECT_GT(data_frames, 100u);
  const auto& cc = client->connection().counters();
  const auto& sc = server->connection().counters();
  EXPECT_GT(sc.ce_received, 0u);
  EXPECT_GT(sc.ece_sent, 0u);
  EXPECT_GT(cc.ece_received, 0u);
  EXPECT_GT(cc.ecn_cwnd_reductions, 0u);
  EXPECT_GT(cc.cwr_sent, 0u);
  EXPECT_EQ(cc.retransmits, 0u);
  // The layer's totals and text show it.
  EXPECT_EQ(n.ta->connection_totals().ecn_negotiated, 1u);
  EXPECT_EQ(n.tb->connection_totals().ce_received, sc.ce_received);
  const std::string text = n.ta->format_counters();
  EXPECT_NE(text.find("connections with ecn"), std::string::npos) << text;
  EXPECT_NE(text.find("congestion window reductions for ecn"), std::string::npos) << text;
}

TEST(TcpEcnLayer, Rfc3168_6_1_1_SynCookieConnectionsHaveNoEcn) {
  Net n(layer_config(11, EcnMode::kOn), layer_config(22, EcnMode::kAccept));
  auto listener = n.tb->listen({{}, 80}, 1);
  ASSERT_TRUE(listener);
  // One half-open connection from a host that never answers fills the
  // backlog: the next SYN is answered with a cookie.
  {
    wire::TcpRepr syn;
    syn.src_port = 5555;
    syn.dst_port = 80;
    syn.seq = SeqNum(1);
    syn.flags = TcpFlags{static_cast<std::uint8_t>(TcpFlags::kSyn | TcpFlags::kEce | TcpFlags::kCwr)};
    syn.window = 1024;
    syn.options.mss = 1460;
    const auto src = wire::Ipv4Addr::from_octets(198, 18, 0, 77);
    Bytes seg(syn.buffer_len());
    ASSERT_TRUE(syn.emit(seg, wire::PseudoHeader::v4(src, kOurIp)));
    net::test::IpParams ip;
    ip.src = src;
    ip.protocol = 6;
    ASSERT_TRUE(n.b.link.inject_rx(net::test::ip_frame(ip, seg)));
    n.step();
  }
  ASSERT_EQ(n.tb->connection_count(), 1u);
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  ASSERT_TRUE(client);
  for (int i = 0; i < 20 && client->connection().state() != State::kEstablished; ++i) n.step();
  ASSERT_EQ(client->connection().state(), State::kEstablished);
  EXPECT_EQ(n.tb->counters().syn_cookies_accepted, 1u);
  // The client asked; the cookie's SYN,ACK did not agree.
  bool asked = false, agreed = false;
  for (const Frame& f : n.seen) {
    const auto fl = f.tcp_flags();
    if ((fl & TcpFlags::kSyn) == 0) continue;
    if ((fl & TcpFlags::kAck) == 0 && (fl & TcpFlags::kEce) != 0 && (fl & TcpFlags::kCwr) != 0) asked = true;
    if ((fl & TcpFlags::kAck) != 0 && (fl & TcpFlags::kEce) != 0) agreed = true;
  }
  EXPECT_TRUE(asked);
  EXPECT_FALSE(agreed);
  EXPECT_FALSE(client->connection().ecn_on());
  std::optional<TcpStream> server;
  for (int i = 0; i < 20 && !server; ++i) {
    n.step();
    server = listener->accept();
  }
  ASSERT_TRUE(server);
  EXPECT_FALSE(server->connection().ecn_on());
  const Bytes data = pattern(50000, 15);
  EXPECT_EQ(transfer(n, *client, *server, data), data);
  EXPECT_EQ(client->connection().counters().ect_sent, 0u);
}

}  // namespace
}  // namespace usnet::tcp
