// The TCP connection state machine, two connections joined by an in-memory
// "wire" with a fake clock: every segment is emitted to bytes, checksummed,
// parsed back (so option encoding is exercised) and delivered, or dropped or
// altered by the test. No sleeping: time moves only when the test moves it.
#include "usnet/tcp/connection.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <random>
#include <set>
#include <vector>

#include "net/net_test_util.hpp"
#include "segment_bytes.hpp"
#include "usnet/wire/udp.hpp"

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
};

// Records what a connection sends, after a round trip through the wire format.
class Sink : public SegmentSink {
 public:
  Sink(wire::Ipv4Addr src, wire::Ipv4Addr dst) : ph_(wire::PseudoHeader::v4(src, dst)) {}
  bool send_segment(const Endpoints&, const TcpRepr& h, Payload p, Nanos) override {
    if (refuse > 0) {
      --refuse;
      return false;
    }
    Bytes bytes = test_support::segment_bytes(h, p);
    EXPECT_EQ(h.payload_len, test_support::payload_size(p));
    auto n = h.emit(bytes, ph_);
    EXPECT_TRUE(n) << "emit";
    auto v = wire::TcpView::make(bytes);
    EXPECT_TRUE(v);
    auto r = TcpRepr::parse(*v, ph_);
    EXPECT_TRUE(r) << "parse of our own segment";
    if (!v || !r) return true;
    out.push_back({*r, Bytes(v->payload().begin(), v->payload().end())});
    return true;
  }
  int refuse = 0;  // the next this many segments are refused (a full link)
  std::deque<Segment> out;

 private:
  wire::PseudoHeader ph_;
};

ConnectionConfig small_config() {
  ConnectionConfig c;
  c.send_buffer = 64 * 1024;
  c.recv_buffer = 64 * 1024;
  c.msl = 1s;
  return c;
}

std::size_t or0(const Expected<std::size_t, std::error_code>& r) { return r ? *r : 0; }

Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

// Two connections and the wire between them.
class Pair {
 public:
  // With `pooled`, segments arrive in pool buffers that the connections
  // may keep (their out-of-order queues work).
  explicit Pair(ConnectionConfig ca = small_config(), ConnectionConfig cb = small_config(),
                bool pooled = false)
      : sink_a_(kA, kB), sink_b_(kB, kA), config_b_(cb) {
    if (pooled) {
      pool_.emplace(64);
      owner_ = pool_->add_owner();
    }
    mem::PacketPool* pool = pooled ? &**pool_ : nullptr;
    a_ = *Connection::create(ca, {kA, 40000, kB, 80}, sink_a_, 11, pool, owner_);
    b_ = *Connection::create(cb, {kB, 80, kA, 40000}, sink_b_, 22, pool, owner_);
  }
  ~Pair() {
    a_.reset();
    b_.reset();
    if (pool_) {
      EXPECT_EQ((*pool_)->in_use(), 0u);
    }
  }
  std::size_t pool_in_use() { return pool_ ? (*pool_)->in_use() : 0; }
  Connection& a() { return *a_; }
  Connection& b() { return *b_; }
  Sink& sink_a() { return sink_a_; }
  Sink& sink_b() { return sink_b_; }
  Nanos now() const { return now_; }
  void advance(Nanos d) {
    now_ += d;
    run_timers();
  }
  void run_timers() {
    if (a_->next_deadline() <= now_) a_->on_timer(now_);
    if (b_->next_deadline() <= now_) b_->on_timer(now_);
  }

  // A connects; B is made from A's SYN as a listener would.
  void handshake(SeqNum iss_a = SeqNum(1000), SeqNum iss_b = SeqNum(5000)) {
    ASSERT_FALSE(a_->connect(iss_a, now_));
    ASSERT_EQ(sink_a_.out.size(), 1u);
    const Segment syn = sink_a_.out.front();
    sink_a_.out.pop_front();
    ASSERT_FALSE(b_->accept_syn(syn.h, iss_b, now_));
    pump();
    ASSERT_EQ(a_->state(), State::kEstablished);
    ASSERT_EQ(b_->state(), State::kEstablished);
  }

  // Delivers segments both ways until none is left (bounded), letting
  // `filter` drop (false) or change each one; time moves by `step` per round.
  void pump(int max_rounds = 10000, Nanos step = 0ns) {
    for (int i = 0; i < max_rounds; ++i) {
      if (sink_a_.out.empty() && sink_b_.out.empty()) return;
      deliver(sink_a_, *b_, true);
      deliver(sink_b_, *a_, false);
      if (step > 0ns) advance(step);
    }
    ADD_FAILURE() << "the wire never went quiet";
  }
  std::function<bool(Segment&, bool from_a)> filter;
  // One crafted segment to A, through the same path as the wire's.
  void deliver_to_a(const TcpRepr& h, std::span<const std::byte> payload) {
    std::deque<Segment> one{{h, Bytes(payload.begin(), payload.end())}};
    Sink* dummy = &sink_b_;
    std::swap(dummy->out, one);
    deliver(sink_b_, *a_, false);
    std::swap(dummy->out, one);
  }

 private:
  void deliver(Sink& from, Connection& to, bool from_a) {
    std::deque<Segment> batch;
    batch.swap(from.out);
    for (auto& s : batch) {
      if (filter && !filter(s, from_a)) continue;
      if (!pool_ || s.payload.empty()) {
        to.on_segment(s.h, s.payload, now_);
        continue;
      }
      auto b = (*pool_)->alloc(owner_);
      ASSERT_TRUE(b);
      auto mem = (*pool_)->buffer(*b).subspan(100, s.payload.size());
      std::copy(s.payload.begin(), s.payload.end(), mem.begin());
      Connection::InboundBuffer in{*b, 100, false};
      to.on_segment(s.h, mem, now_, &in);
      if (!in.taken) {
        EXPECT_FALSE((*pool_)->free(owner_, *b));
      }
    }
  }
  std::optional<net::test::TestPool> pool_;
  mem::OwnerId owner_;
  Sink sink_a_, sink_b_;
  ConnectionConfig config_b_;
  std::unique_ptr<Connection> a_, b_;
  Nanos now_ = 1000s;
};

// Sends `data` from `from` and reads it at `to`, pumping the wire and the
// clock, until all arrived (bounded); returns what arrived.
Bytes transfer(Pair& p, Connection& from, Connection& to, const Bytes& data, Nanos step = 1ms,
               int max_rounds = 200000) {
  Bytes got;
  std::size_t sent = 0;
  std::array<std::byte, 8192> buf{};
  for (int i = 0; i < max_rounds && got.size() < data.size(); ++i) {
    if (sent < data.size()) {
      auto n = from.send(std::span(data).subspan(sent), p.now());
      if (n) sent += *n;
    }
    p.pump(100);
    for (;;) {
      auto r = to.receive(buf, p.now());
      if (!r || *r == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
    p.advance(step);
  }
  return got;
}

TcpRepr from_b_seq(Pair& p, std::uint8_t flags, SeqNum seq);

// --- Opening ---------------------------------------------------------------

TEST(TcpConnection, HandshakeNegotiatesOptions) {
  Pair p;
  ASSERT_FALSE(p.a().connect(SeqNum(1000), p.now()));
  ASSERT_EQ(p.sink_a().out.size(), 1u);
  const auto syn = p.sink_a().out.front();
  EXPECT_EQ(syn.h.flags.bits, TcpFlags::kSyn);
  EXPECT_EQ(syn.h.seq, SeqNum(1000));
  EXPECT_EQ(syn.h.options.mss, 1460);
  EXPECT_EQ(syn.h.options.window_scale, 7);
  ASSERT_TRUE(syn.h.options.timestamps);
  EXPECT_EQ(syn.h.options.timestamps->tsecr, 0u);
  EXPECT_EQ(p.a().state(), State::kSynSent);
  p.sink_a().out.pop_front();
  ASSERT_FALSE(p.b().accept_syn(syn.h, SeqNum(5000), p.now()));
  EXPECT_EQ(p.b().state(), State::kSynReceived);
  const auto synack = p.sink_b().out.front();
  EXPECT_EQ(synack.h.flags.bits, TcpFlags::kSyn | TcpFlags::kAck);
  EXPECT_EQ(synack.h.ack, SeqNum(1001));
  EXPECT_EQ(synack.h.options.window_scale, 7);
  ASSERT_TRUE(synack.h.options.timestamps);
  EXPECT_EQ(synack.h.options.timestamps->tsecr, syn.h.options.timestamps->tsval);
  p.pump();
  EXPECT_EQ(p.a().state(), State::kEstablished);
  EXPECT_EQ(p.b().state(), State::kEstablished);
  EXPECT_TRUE(p.a().timestamps_on());
  EXPECT_EQ(p.a().snd_shift(), 7);
  EXPECT_EQ(p.a().rcv_shift(), 7);
  EXPECT_EQ(p.a().peer_mss(), 1460 - 12);  // the timestamps option comes out of it
  EXPECT_EQ(p.a().snd_nxt(), SeqNum(1001));
  EXPECT_EQ(p.b().rcv_nxt(), SeqNum(1001));
}

TEST(TcpConnection, PeerWithoutOptionsGetsRfcDefaults) {
  Pair p;
  TcpRepr syn;
  syn.src_port = 80;
  syn.dst_port = 40000;
  syn.seq = SeqNum(77);
  syn.flags = TcpFlags{TcpFlags::kSyn};
  syn.window = 8192;
  ASSERT_FALSE(p.a().accept_syn(syn, SeqNum(1), p.now()));
  const auto& synack = p.sink_a().out.back().h;
  // No window scale or timestamps back to a peer that offered none.
  EXPECT_FALSE(synack.options.window_scale);
  EXPECT_FALSE(synack.options.timestamps);
  EXPECT_EQ(p.a().peer_mss(), 536);  // RFC 9293 3.7.1
  EXPECT_EQ(p.a().snd_wnd(), 8192u);
}

TEST(TcpConnection, TinyMssIsRaisedToTheMinimum) {
  // ROBUSTNESS 10: a peer cannot make us send 1-byte segments.
  Pair p;
  TcpRepr syn;
  syn.src_port = 80;
  syn.dst_port = 40000;
  syn.flags = TcpFlags{TcpFlags::kSyn};
  syn.options.mss = 1;
  ASSERT_FALSE(p.a().accept_syn(syn, SeqNum(1), p.now()));
  EXPECT_EQ(p.a().peer_mss(), 88);
}

TEST(TcpConnection, SimultaneousOpen) {
  Pair p;
  ASSERT_FALSE(p.a().connect(SeqNum(100), p.now()));
  ASSERT_FALSE(p.b().connect(SeqNum(900), p.now()));
  // The SYNs cross.
  p.pump();
  EXPECT_EQ(p.a().state(), State::kEstablished);
  EXPECT_EQ(p.b().state(), State::kEstablished);
  const Bytes data = pattern(5000, 1);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data), data);
}

TEST(TcpConnection, ConnectionRefusedByRst) {
  Pair p;
  ASSERT_FALSE(p.a().connect(SeqNum(100), p.now()));
  const auto syn = p.sink_a().out.front().h;
  TcpRepr rst;
  rst.src_port = 80;
  rst.dst_port = 40000;
  rst.flags = TcpFlags{TcpFlags::kRst | TcpFlags::kAck};
  rst.ack = syn.seq + 1;
  // An RST without an acceptable ACK is ignored (RFC 9293 3.10.7.3).
  TcpRepr bad = rst;
  bad.ack = syn.seq + 7;
  p.a().on_segment(bad, {}, p.now());
  EXPECT_EQ(p.a().state(), State::kSynSent);
  p.a().on_segment(rst, {}, p.now());
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.a().error(), std::make_error_code(std::errc::connection_refused));
}

TEST(TcpConnection, SynRetransmitsThenTimesOut) {
  Pair p;
  ASSERT_FALSE(p.a().connect(SeqNum(100), p.now()));
  std::size_t syns = 0;
  for (int i = 0; i < 200 && p.a().state() != State::kClosed; ++i) {
    syns += p.sink_a().out.size();
    p.sink_a().out.clear();
    p.advance(1s);
  }
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.a().error(), std::make_error_code(std::errc::timed_out));
  EXPECT_EQ(syns, 1u + 6u);  // the first and max_syn_retransmits more, backing off
}

// --- Data --------------------------------------------------------------------

TEST(TcpConnection, DataBothWaysByteExact) {
  Pair p;
  p.handshake();
  const Bytes ab = pattern(300000, 2);
  const Bytes ba = pattern(200000, 3);
  EXPECT_EQ(transfer(p, p.a(), p.b(), ab), ab);
  EXPECT_EQ(transfer(p, p.b(), p.a(), ba), ba);
  EXPECT_EQ(p.a().counters().retransmits, 0u);
  EXPECT_EQ(p.a().counters().bytes_out, ab.size());
  EXPECT_EQ(p.b().counters().bytes_in, ab.size());
}

TEST(TcpConnection, WindowScalingOpensBeyond64KiB) {
  ConnectionConfig big = small_config();
  big.send_buffer = 1 << 20;
  big.recv_buffer = 1 << 20;
  Pair p(big, big);
  p.handshake();
  const Bytes data = pattern(1 << 20, 4);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data), data);
  EXPECT_GT(p.a().snd_wnd(), 65535u);
}

TEST(TcpConnection, LostSegmentIsRetransmittedAfterTheTimeout) {
  Pair p;
  p.handshake();
  int dropped = 0;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.h.payload_len > 0 && dropped == 0) {
      ++dropped;
      return false;
    }
    return true;
  };
  const Nanos rto_before = p.a().rto();
  const Bytes data = pattern(1000, 5);
  ASSERT_EQ(or0(p.a().send(data, p.now())), data.size());
  p.pump();
  EXPECT_EQ(p.b().readable(), 0u);
  p.advance(rto_before);
  p.pump();
  EXPECT_EQ(p.b().readable(), data.size());
  EXPECT_EQ(p.a().counters().timeouts, 1u);
  EXPECT_EQ(p.a().counters().retransmits, 1u);
  Bytes got(data.size());
  ASSERT_EQ(or0(p.b().receive(got, p.now())), data.size());
  EXPECT_EQ(got, data);
}

TEST(TcpConnection, ThreeDuplicateAcksTriggerFastRetransmit) {
  Pair p;
  p.handshake();
  // Let the window grow first.
  const Bytes warm = pattern(100000, 6);
  ASSERT_EQ(transfer(p, p.a(), p.b(), warm), warm);
  int seen = 0;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.h.payload_len > 0 && ++seen == 2) return false;  // the second segment of the burst
    return true;
  };
  const Bytes data = pattern(20 * 1460, 7);
  const Bytes got = transfer(p, p.a(), p.b(), data, 1ms, 2000);
  EXPECT_EQ(got, data);
  EXPECT_EQ(p.a().counters().fast_retransmits, 1u);
  EXPECT_EQ(p.a().counters().timeouts, 0u);
  EXPECT_GE(p.b().counters().dropped(SegmentDrop::kOutOfOrder), 3u);
}

TEST(TcpConnection, NagleCoalescesSmallWritesWhileDataIsUnacknowledged) {
  Pair p;
  p.handshake();
  int data_segments = 0;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.h.payload_len > 0) ++data_segments;
    return true;
  };
  const std::byte one[1] = {std::byte{1}};
  ASSERT_TRUE(p.a().send(one, p.now()));
  EXPECT_EQ(p.sink_a().out.size(), 1u);  // nothing in flight: sent
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.a().send(one, p.now()));
  EXPECT_EQ(p.sink_a().out.size(), 1u);  // held back until the ACK
  p.pump(10000, 1ms);
  EXPECT_EQ(p.b().readable(), 11u);
  EXPECT_EQ(data_segments, 2);  // the first byte, then the other ten together
}

TEST(TcpConnection, NoDelaySendsEachWriteAtOnce) {
  ConnectionConfig c = small_config();
  c.no_delay = true;
  Pair p(c, c);
  p.handshake();
  const std::byte one[1] = {std::byte{1}};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(p.a().send(one, p.now()));
  EXPECT_EQ(p.sink_a().out.size(), 5u);
}

TEST(TcpConnection, DelayedAckWaitsThenAcks) {
  ConnectionConfig c = small_config();
  c.quick_acks = 0;
  Pair p(c, c);
  p.handshake();
  const std::byte one[1] = {std::byte{1}};
  ASSERT_TRUE(p.a().send(one, p.now()));
  p.pump();
  EXPECT_TRUE(p.sink_b().out.empty());  // no ACK yet
  EXPECT_EQ(p.b().next_deadline(), p.now() + 40ms);
  p.advance(40ms);
  ASSERT_EQ(p.sink_b().out.size(), 1u);
  EXPECT_EQ(p.sink_b().out.front().h.ack, p.a().snd_nxt());
  EXPECT_EQ(p.b().counters().delayed_acks, 1u);
}

TEST(TcpConnection, OutOfOrderSegmentsAreHeldAndSackedUntilTheHoleIsFilled) {
  Pair p(small_config(), small_config(), true);
  p.handshake();
  EXPECT_TRUE(p.a().sack_on());
  const Bytes warm = pattern(100000, 15);
  ASSERT_EQ(transfer(p, p.a(), p.b(), warm), warm);
  int seen = 0;
  SeqNum lost;
  std::vector<wire::SackBlock> sacks;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.h.payload_len > 0 && ++seen == 2) {
      lost = s.h.seq;
      return false;
    }
    if (!from_a && s.h.options.sack_count > 0) sacks.push_back(s.h.options.sacks()[0]);
    return true;
  };
  const Bytes data = pattern(20 * 1448, 16);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data, 1ms, 2000), data);
  // The receiver kept what came after the hole and said so in SACK blocks
  // that start right after the lost segment.
  EXPECT_GE(p.b().counters().ooo_queued, 3u);
  EXPECT_EQ(p.b().counters().dropped(SegmentDrop::kOutOfOrder), 0u);
  ASSERT_FALSE(sacks.empty());
  EXPECT_EQ(sacks.front().left, lost + 1448);
  // One retransmission repaired it: nothing after the hole was sent twice.
  EXPECT_EQ(p.a().counters().retransmits, 1u);
  EXPECT_EQ(p.a().counters().fast_retransmits, 1u);
  EXPECT_EQ(p.b().ooo_segments(), 0u);
  EXPECT_EQ(p.pool_in_use(), 0u);
}

TEST(TcpConnection, SackRecoveryRepairsSeveralHolesInOneWindowWithoutATimeout) {
  // RFC 6675: three segments of one window lost; the scoreboard names the
  // holes and only they are sent again, within the recovery.
  Pair p(small_config(), small_config(), true);
  p.handshake();
  const Bytes warm = pattern(200000, 17);
  ASSERT_EQ(transfer(p, p.a(), p.b(), warm), warm);
  int seen = 0;
  p.filter = [&](Segment& s, bool from_a) {
    if (!from_a || s.h.payload_len == 0) return true;
    ++seen;
    return seen != 2 && seen != 5 && seen != 9;
  };
  const Bytes data = pattern(30 * 1448, 18);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data, 1ms, 3000), data);
  EXPECT_EQ(p.a().counters().sack_recoveries, 1u);
  EXPECT_EQ(p.a().counters().timeouts, 0u);
  // The three holes, plus at most RFC 6675's one rescue retransmission
  // (NextSeg rule 4) per recovery; never the SACKed data.
  EXPECT_GE(p.a().counters().retransmits, 3u);
  EXPECT_LE(p.a().counters().retransmits, 4u);
  EXPECT_GE(p.b().counters().ooo_queued, 3u);
}

TEST(TcpConnection, AfterATimeoutTheHeadIsSentAgainAndSackInformationForgotten) {
  // RFC 2018 8 / RFC 6675 5.1: everything but one segment reached the peer
  // and was SACKed; the ACKs are lost until the timer fires. The receiver
  // may have reneged, so the SACK information is forgotten and the head is
  // sent again; the peer's cumulative ACK then covers what it held, so
  // nothing else goes twice.
  Pair p(small_config(), small_config(), true);
  p.handshake();
  const Bytes warm = pattern(100000, 19);
  ASSERT_EQ(transfer(p, p.a(), p.b(), warm), warm);
  int data_seen = 0;
  bool drop_acks = true;
  p.filter = [&](Segment& s, bool from_a) {
    if (from_a && s.h.payload_len > 0 && ++data_seen == 1) return false;  // the hole
    if (!from_a && drop_acks && s.h.options.sack_count > 0) {
      // Let only the first SACK through, so the sender knows what the peer
      // holds but sees too few duplicate ACKs to recover before the timer.
      static int sacks = 0;
      return ++sacks == 1;
    }
    return true;
  };
  const Bytes data = pattern(6 * 1448, 20);
  ASSERT_EQ(p.a().send(data, p.now()).value(), data.size());
  p.pump(100);
  drop_acks = false;
  const auto before = p.a().counters().retransmits;
  p.advance(p.a().rto());
  p.pump(100, 1ms);
  EXPECT_EQ(p.a().counters().timeouts, 1u);
  EXPECT_EQ(p.a().counters().retransmits - before, 1u) << "only the head is sent again";
  EXPECT_EQ(p.b().readable(), data.size() + 0u);
}

TEST(TcpConnection, SegmentsTheLinkRefusesAreSentAgainShortly) {
  // Back-pressure: a full link refuses segments; they are not counted as
  // sent, and go out a millisecond later.
  Pair p;
  p.handshake();
  p.sink_a().refuse = 3;
  const Bytes data = pattern(10 * 1448, 22);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data, 1ms, 2000), data);
  EXPECT_EQ(p.a().counters().send_refused, 3u);
  EXPECT_EQ(p.a().counters().timeouts, 0u);
  EXPECT_EQ(p.a().counters().retransmits, 0u);
}

TEST(TcpConnection, Robustness11OutOfOrderQueueIsBounded) {
  ConnectionConfig c = small_config();
  c.ooo_max_segments = 32;
  Pair p(c, c, true);
  p.handshake();
  // 10,000 one-byte segments, each beyond a hole, all in the window.
  for (std::uint32_t i = 0; i < 10000; ++i) {
    TcpRepr h = from_b_seq(p, TcpFlags::kAck, p.a().rcv_nxt() + 2 + (i * 7919) % 60000);
    h.payload_len = 1;
    const std::byte one[1] = {std::byte{0x5a}};
    p.deliver_to_a(h, one);
    ASSERT_LE(p.a().ooo_segments(), 32u);
    ASSERT_LE(p.pool_in_use(), 32u);
  }
  EXPECT_EQ(p.a().state(), State::kEstablished);
  EXPECT_EQ(p.a().readable(), 0u);
}

TEST(TcpConnection, Robustness12PathMtuOnlyFromMessagesQuotingDataInFlight) {
  Pair p;
  p.handshake();
  const Bytes data = pattern(20 * 1448, 21);
  p.filter = [](Segment&, bool) { return false; };  // nothing arrives: all stays in flight
  ASSERT_TRUE(p.a().send(data, p.now()));
  p.pump();
  ASSERT_GT(distance(p.a().snd_una(), p.a().snd_nxt()), 2000u);
  const std::uint16_t before = p.a().peer_mss();
  // RFC 5927: a sequence number outside [SND.UNA, SND.NXT) is ignored.
  EXPECT_FALSE(p.a().on_path_mtu(1280, p.a().snd_nxt() + 100, p.now()));
  EXPECT_FALSE(p.a().on_path_mtu(1280, p.a().snd_una() - 1, p.now()));
  EXPECT_EQ(p.a().peer_mss(), before);
  // An MTU that does not shrink anything is ignored too.
  EXPECT_FALSE(p.a().on_path_mtu(9000, p.a().snd_una(), p.now()));
  // A real one: the segment size drops and the data goes again in smaller
  // segments.
  p.filter = nullptr;
  EXPECT_TRUE(p.a().on_path_mtu(1280, p.a().snd_una() + 10, p.now()));
  EXPECT_EQ(p.a().peer_mss(), 1280 - 40 - 12);
  for (const auto& s : p.sink_a().out) EXPECT_LE(s.h.payload_len, 1280u - 40u - 12u);
  EXPECT_EQ(p.a().counters().pmtu_updates, 1u);
  EXPECT_EQ(p.a().counters().pmtu_ignored, 3u);
  // A forged tiny MTU cannot push the segment size below min_mss.
  EXPECT_TRUE(p.a().on_path_mtu(68, p.a().snd_una(), p.now()));
  EXPECT_EQ(p.a().peer_mss(), 88);
  Bytes got;
  std::array<std::byte, 8192> buf{};
  for (int i = 0; i < 20000 && got.size() < data.size(); ++i) {
    p.pump(100);
    auto r = p.b().receive(buf, p.now());
    ASSERT_TRUE(r);
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    p.advance(1ms);
  }
  EXPECT_EQ(got, data);
}

TEST(TcpConnection, KeepAliveIsOffByDefaultThenProbesAndGivesUp) {
  ConnectionConfig c = small_config();
  c.keepalive_idle = 10s;
  c.keepalive_interval = 1s;
  c.keepalive_probes = 3;
  Pair p(c, c);
  p.handshake();
  p.advance(1h);  // off by default (RFC 1122 4.2.3.6): nothing happens
  EXPECT_EQ(p.a().counters().keepalive_probes, 0u);
  EXPECT_EQ(p.a().state(), State::kEstablished);
  p.a().set_keepalive(true, p.now());
  // The peer answers: probes go on, the connection lives.
  for (int i = 0; i < 60; ++i) {
    p.advance(1s);
    p.pump();
  }
  EXPECT_GE(p.a().counters().keepalive_probes, 4u);
  EXPECT_EQ(p.a().state(), State::kEstablished);
  // The peer goes silent: after 3 unanswered probes, ETIMEDOUT.
  p.filter = [](Segment&, bool from_a) { return from_a; };
  for (int i = 0; i < 30 && p.a().state() != State::kClosed; ++i) {
    p.advance(1s);
    p.pump();
  }
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.a().error(), std::make_error_code(std::errc::timed_out));
}

TEST(TcpConnection, NoDelaySwitchedOnSendsWhatNagleHeld) {
  Pair p;
  p.handshake();
  const std::byte one[1] = {std::byte{1}};
  ASSERT_TRUE(p.a().send(one, p.now()));
  ASSERT_TRUE(p.a().send(one, p.now()));
  EXPECT_EQ(p.sink_a().out.size(), 1u);  // the second byte waits (Nagle)
  p.a().set_no_delay(true, p.now());
  EXPECT_EQ(p.sink_a().out.size(), 2u);
}

// --- Closing -----------------------------------------------------------------

TEST(TcpConnection, ActiveCloseGoesThroughTimeWait) {
  Pair p;
  p.handshake();
  p.a().close(p.now());
  EXPECT_EQ(p.a().state(), State::kFinWait1);
  p.pump();
  EXPECT_EQ(p.a().state(), State::kFinWait2);
  EXPECT_EQ(p.b().state(), State::kCloseWait);
  EXPECT_TRUE(p.b().eof());
  p.b().close(p.now());
  EXPECT_EQ(p.b().state(), State::kLastAck);
  p.pump();
  EXPECT_EQ(p.b().state(), State::kClosed);
  EXPECT_FALSE(p.b().error());
  EXPECT_EQ(p.a().state(), State::kTimeWait);
  p.advance(2s - 1ns);  // 2 MSL with msl = 1 s
  EXPECT_EQ(p.a().state(), State::kTimeWait);
  p.advance(1ns);
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_FALSE(p.a().error());
}

TEST(TcpConnection, OrphanInFinWait2IsDroppedAfterTheTimeout) {
  Pair p;
  p.handshake();
  p.a().close(p.now());
  p.pump();
  ASSERT_EQ(p.a().state(), State::kFinWait2);
  // The peer never closes. A half-closed connection the application still
  // holds would wait; this one was closed by it, so it goes after 60 s.
  p.advance(59s);
  EXPECT_EQ(p.a().state(), State::kFinWait2);
  p.advance(1s);
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_FALSE(p.a().error());
}

TEST(TcpConnection, SimultaneousCloseGoesThroughClosing) {
  Pair p;
  p.handshake();
  p.a().close(p.now());
  p.b().close(p.now());
  // The FINs cross: both in CLOSING, then TIME-WAIT when their FIN is acked.
  p.pump();
  EXPECT_EQ(p.a().state(), State::kTimeWait);
  EXPECT_EQ(p.b().state(), State::kTimeWait);
  p.advance(2s);
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.b().state(), State::kClosed);
}

TEST(TcpConnection, LostFinIsRetransmitted) {
  Pair p;
  p.handshake();
  int fins = 0;
  p.filter = [&](Segment& s, bool from_a) { return !(from_a && s.h.flags.fin() && fins++ == 0); };
  p.a().close(p.now());
  p.pump();
  EXPECT_EQ(p.a().state(), State::kFinWait1);
  p.advance(p.a().rto());
  p.pump();
  EXPECT_EQ(p.a().state(), State::kFinWait2);
  EXPECT_EQ(p.b().state(), State::kCloseWait);
}

TEST(TcpConnection, DataThenFinAllArrive) {
  Pair p;
  p.handshake();
  const Bytes data = pattern(50000, 8);
  ASSERT_EQ(or0(p.a().send(data, p.now())), data.size());
  ASSERT_FALSE(p.a().shutdown_write(p.now()));
  EXPECT_EQ(p.a().send(data, p.now()).error(), std::make_error_code(std::errc::broken_pipe));
  Bytes got;
  std::array<std::byte, 4096> buf{};
  for (int i = 0; i < 1000 && !p.b().eof(); ++i) {
    p.pump(100, 1ms);
    auto r = p.b().receive(buf, p.now());
    ASSERT_TRUE(r);
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
  }
  EXPECT_EQ(got, data);
  EXPECT_TRUE(p.b().eof());
}

TEST(TcpConnection, CloseWithUnreadDataResets) {
  Pair p;
  p.handshake();
  const Bytes data = pattern(100, 9);
  ASSERT_TRUE(p.a().send(data, p.now()));
  p.pump();
  ASSERT_EQ(p.b().readable(), 100u);
  p.b().close(p.now());
  EXPECT_EQ(p.b().state(), State::kClosed);
  ASSERT_FALSE(p.sink_b().out.empty());
  EXPECT_TRUE(p.sink_b().out.back().h.flags.rst());
  p.pump();
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.a().error(), std::make_error_code(std::errc::connection_reset));
}

// --- Hostile segments (ROBUSTNESS.md, RFC 5961) ------------------------------

// A segment from B to A at B's current sequence numbers.
TcpRepr from_b(Pair& p, std::uint8_t flags) {
  TcpRepr h;
  h.src_port = 80;
  h.dst_port = 40000;
  h.seq = p.a().rcv_nxt();
  h.ack = p.a().snd_nxt();
  h.flags = TcpFlags{flags};
  h.window = 1000;
  return h;
}

TcpRepr from_b_seq(Pair& p, std::uint8_t flags, SeqNum seq) {
  TcpRepr h = from_b(p, flags);
  h.seq = seq;
  return h;
}

TEST(TcpConnection, Robustness1RstOutsideTheWindowIsIgnored) {
  Pair p;
  p.handshake();
  TcpRepr rst = from_b(p, TcpFlags::kRst);
  rst.seq = p.a().rcv_nxt() + (1u << 20);
  p.a().on_segment(rst, {}, p.now());
  EXPECT_EQ(p.a().state(), State::kEstablished);
  EXPECT_TRUE(p.sink_a().out.empty());  // silently
  EXPECT_EQ(p.a().counters().dropped(SegmentDrop::kRstOutOfWindow), 1u);
}

TEST(TcpConnection, Robustness2RstAtRcvNxtResets) {
  Pair p;
  p.handshake();
  p.a().on_segment(from_b(p, TcpFlags::kRst), {}, p.now());
  EXPECT_EQ(p.a().state(), State::kClosed);
  EXPECT_EQ(p.a().error(), std::make_error_code(std::errc::connection_reset));
  std::array<std::byte, 10> buf{};
  EXPECT_EQ(p.a().receive(buf, p.now()).error(), std::make_error_code(std::errc::connection_reset));
}

TEST(TcpConnection, Robustness3RstInTheWindowGetsAChallengeAck) {
  Pair p;
  p.handshake();
  TcpRepr rst = from_b(p, TcpFlags::kRst);
  rst.seq = p.a().rcv_nxt() + 100;
  p.a().on_segment(rst, {}, p.now());
  EXPECT_EQ(p.a().state(), State::kEstablished);
  ASSERT_EQ(p.sink_a().out.size(), 1u);
  const auto& ack = p.sink_a().out.front().h;
  EXPECT_EQ(ack.flags.bits, TcpFlags::kAck);
  EXPECT_EQ(ack.ack, p.a().rcv_nxt());
  EXPECT_EQ(p.a().counters().challenge_acks, 1u);
}

TEST(TcpConnection, Robustness4SynOnAnEstablishedConnectionGetsAChallengeAck) {
  Pair p;
  p.handshake();
  for (const std::uint32_t off : {0u, 100u, 1u << 30}) {
    TcpRepr syn = from_b(p, TcpFlags::kSyn);
    syn.seq = p.a().rcv_nxt() + off;
    p.sink_a().out.clear();
    p.a().on_segment(syn, {}, p.now());
    EXPECT_EQ(p.a().state(), State::kEstablished) << off;
    ASSERT_EQ(p.sink_a().out.size(), 1u) << off;
    EXPECT_FALSE(p.sink_a().out.front().h.flags.rst());  // never a reset
    EXPECT_TRUE(p.sink_a().out.front().h.flags.ack());
  }
}

TEST(TcpConnection, Robustness5AckForDataNeverSentIsDroppedAndAcked) {
  Pair p;
  p.handshake();
  const Bytes data = pattern(10, 10);
  TcpRepr h = from_b(p, TcpFlags::kAck | TcpFlags::kPsh);
  h.ack = p.a().snd_nxt() + 5000;  // beyond SND.NXT
  h.payload_len = static_cast<std::uint32_t>(data.size());
  p.a().on_segment(h, data, p.now());
  EXPECT_EQ(p.a().readable(), 0u);  // the data is not taken
  EXPECT_EQ(p.a().counters().dropped(SegmentDrop::kAckUnacceptable), 1u);
  ASSERT_EQ(p.sink_a().out.size(), 1u);
  EXPECT_EQ(p.sink_a().out.front().h.ack, p.a().rcv_nxt());
  // Far below SND.UNA - MAX.SND.WND likewise (RFC 5961 5.2).
  h.ack = p.a().snd_una() - (1u << 30);
  p.a().on_segment(h, data, p.now());
  EXPECT_EQ(p.a().counters().dropped(SegmentDrop::kAckUnacceptable), 2u);
  EXPECT_EQ(p.a().readable(), 0u);
}

TEST(TcpConnection, Robustness6ChallengeAcksAreRateLimitedWithRandomness) {
  std::set<std::uint64_t> allowances;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    Sink s(kA, kB);
    auto c = *Connection::create(small_config(), {kA, 40000, kB, 80}, s, seed);
    TcpRepr syn;
    syn.src_port = 80;
    syn.dst_port = 40000;
    syn.seq = SeqNum(1);
    syn.flags = TcpFlags{TcpFlags::kSyn};
    syn.window = 65535;
    ASSERT_FALSE(c->accept_syn(syn, SeqNum(100), 1s));
    TcpRepr ack = syn;
    ack.seq = SeqNum(2);
    ack.ack = SeqNum(101);
    ack.flags = TcpFlags{TcpFlags::kAck};
    c->on_segment(ack, {}, 1s);
    ASSERT_EQ(c->state(), State::kEstablished);
    TcpRepr rst = ack;
    rst.flags = TcpFlags{TcpFlags::kRst};
    rst.seq = SeqNum(500);
    for (int i = 0; i < 1000; ++i) c->on_segment(rst, {}, 2s);
    const auto sent = c->counters().challenge_acks;
    EXPECT_GE(sent, 10u);
    EXPECT_LE(sent, 15u);
    EXPECT_EQ(sent + c->counters().challenge_acks_limited, 1000u);
    allowances.insert(sent);
    // The next second brings a new allowance.
    c->on_segment(rst, {}, 3s);
    EXPECT_EQ(c->counters().challenge_acks, sent + 1);
    EXPECT_EQ(c->state(), State::kEstablished);
  }
  EXPECT_GT(allowances.size(), 1u) << "the allowance is not randomized";
}

TEST(TcpConnection, Robustness7PawsDropsOldTimestamps) {
  Pair p;
  p.handshake();
  std::uint32_t b_tsval = 0;
  p.filter = [&](Segment& s, bool from_a) {
    if (!from_a && s.h.options.timestamps) b_tsval = s.h.options.timestamps->tsval;
    return true;
  };
  const Bytes data = pattern(100, 11);
  EXPECT_EQ(transfer(p, p.b(), p.a(), data), data);
  // A segment with a timestamp older than TS.Recent: dropped and ACKed.
  TcpRepr h = from_b(p, TcpFlags::kAck | TcpFlags::kPsh);
  h.options.timestamps = wire::TcpTimestamps{b_tsval - 1000, 0};  // a second before B's latest
  h.payload_len = 10;
  p.sink_a().out.clear();
  p.a().on_segment(h, std::span(data).first(10), p.now());
  EXPECT_EQ(p.a().readable(), 0u);
  EXPECT_EQ(p.a().counters().dropped(SegmentDrop::kPaws), 1u);
  EXPECT_EQ(p.sink_a().out.size(), 1u);
  // An RST with an old timestamp is still judged by its sequence number.
  TcpRepr rst = from_b(p, TcpFlags::kRst);
  rst.options.timestamps = wire::TcpTimestamps{b_tsval - 1000, 0};
  p.a().on_segment(rst, {}, p.now());
  EXPECT_EQ(p.a().state(), State::kClosed);
}

TEST(TcpConnection, AForgedSegmentBeyondRcvNxtCannotFreezeTheSendWindow) {
  // Found by the stateful fuzz target: a segment ahead of RCV.NXT (inside
  // the window) with window 0 must not set SND.WL1 past every genuine
  // segment.
  Pair p;
  p.handshake();
  TcpRepr forged = from_b(p, TcpFlags::kAck);
  forged.seq = p.a().rcv_nxt() + 752;
  forged.window = 0;
  forged.payload_len = 1;
  const std::byte x[1] = {std::byte{1}};
  p.a().on_segment(forged, x, p.now());
  p.sink_a().out.clear();
  const Bytes data = pattern(20000, 23);
  EXPECT_EQ(transfer(p, p.a(), p.b(), data, 1ms, 5000), data);
  EXPECT_GT(p.a().snd_wnd(), 0u);
}

TEST(TcpConnection, Robustness9UrgentPointerPastThePayloadIsHarmless) {
  Pair p;
  p.handshake();
  const Bytes data = pattern(10, 12);
  TcpRepr h = from_b(p, TcpFlags::kAck | TcpFlags::kUrg);
  h.urgent = 60000;
  h.payload_len = 10;
  p.a().on_segment(h, data, p.now());
  EXPECT_EQ(p.a().readable(), 10u);
  EXPECT_EQ(p.a().state(), State::kEstablished);
}

TEST(TcpConnection, Robustness15ZeroWindowHeldForALongTimeLosesNothing) {
  ConnectionConfig c = small_config();
  c.recv_buffer = 8 * 1024;
  Pair p(small_config(), c);
  p.handshake();
  const Bytes data = pattern(40000, 13);
  std::size_t sent = 0;
  // B's application reads nothing for ten minutes.
  for (int i = 0; i < 600; ++i) {
    if (sent < data.size()) sent += or0(p.a().send(std::span(data).subspan(sent), p.now()));
    p.pump(100);
    p.advance(1s);
    p.pump(100);
  }
  EXPECT_EQ(p.a().snd_wnd(), 0u);
  EXPECT_EQ(p.a().state(), State::kEstablished);
  EXPECT_GT(p.a().counters().window_probes, 5u);  // probes went on, backing off
  EXPECT_EQ(p.a().counters().timeouts, 0u);
  // Then it reads everything, byte-exact.
  Bytes got;
  std::array<std::byte, 4096> buf{};
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    if (sent < data.size()) sent += or0(p.a().send(std::span(data).subspan(sent), p.now()));
    auto r = p.b().receive(buf, p.now());
    ASSERT_TRUE(r);
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    p.pump(100);
    p.advance(10ms);
  }
  EXPECT_EQ(got, data);
}

TEST(TcpConnection, Robustness16SequenceAndTimestampWraparound) {
  Pair p;
  // Both sequence spaces start just below 2^32 and the timestamp clock is
  // moved so that it wraps during the transfer.
  ASSERT_FALSE(p.a().connect(SeqNum(0xffffff00u), p.now()));
  const std::uint32_t ts0 = p.sink_a().out.front().h.options.timestamps->tsval;
  p.sink_a().out.clear();
  // Start over at a time whose timestamp is 2000 ms before the wrap.
  const Nanos shift = std::chrono::milliseconds(std::uint64_t{0xffffffffu} - ts0 - 2000);
  Pair q;
  q.advance(shift);
  q.handshake(SeqNum(0xffffff00u), SeqNum(0xfffff000u));
  const Bytes ab = pattern(2'000'000, 14);
  const Bytes got = transfer(q, q.a(), q.b(), ab, 1ms, 400000);
  EXPECT_EQ(got, ab);
  EXPECT_LT(q.a().snd_nxt(), SeqNum(0xffffff00u) + 3'000'000);  // wrapped past 0
  EXPECT_EQ(q.a().counters().dropped(SegmentDrop::kPaws) + q.b().counters().dropped(SegmentDrop::kPaws), 0u);
  EXPECT_EQ(q.a().counters().retransmits, 0u);
}

}  // namespace
}  // namespace usnet::tcp
