// One TCP Connection per test, put into each RFC 9293 state by a scripted
// peer, then fed one crafted segment per case: segment arrival as RFC 9293
// 3.10.7 lays it out state by state, with the RFC 5961 rules (RST, SYN and
// ACK checks) and RFC 7323 PAWS. Each case names the segment, the state it
// must leave the connection in, what the connection must send (nothing, an
// ACK, a challenge ACK, a reset, a SYN,ACK) and the error the user sees.
//
// The pieces:
//   - Harness: the connection, a sink that captures what it sends (after a
//     round trip through the wire format), a fake clock, and the peer's side
//     of the conversation (its SND.NXT, what of ours it has received, its
//     timestamp clock). drive(state) takes a fresh connection to any state
//     with the ISNs and options the test chose.
//   - Seg: a segment template from the peer's current sequence, ACK, window
//     and timestamps; a case overrides only what matters, in one expression:
//     h.seg(kRst).seq_off(100), h.seg().ack_off(1).data(10).
//   - Case tables run against every synchronized state, once with ordinary
//     sequence numbers and once with both ISNs a few bytes below 2^32 and
//     the peer's timestamp clock about to wrap.
// LISTEN and CLOSED-without-a-TCB live in the layer: a TcpLayer over a
// MemoryLink plays them at the end of the file.
//
// Each case quotes the RFC text it checks. Where the code departs from the
// text on purpose (a SHOULD that deployed stacks break: RFC 7323 3.2), the
// test checks the chosen behaviour and says why; a departure found later
// goes in as a DISABLED_ test quoting the text, until it is fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "net/net_test_util.hpp"
#include "segment_bytes.hpp"
#include "usnet/tcp/connection.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;
using wire::TcpFlags;
using wire::TcpRepr;
using Bytes = std::vector<std::byte>;

constexpr std::uint8_t kFin = TcpFlags::kFin;
constexpr std::uint8_t kSyn = TcpFlags::kSyn;
constexpr std::uint8_t kRst = TcpFlags::kRst;
constexpr std::uint8_t kPsh = TcpFlags::kPsh;
constexpr std::uint8_t kAck = TcpFlags::kAck;

const wire::Ipv4Addr kUs = wire::Ipv4Addr::from_octets(198, 18, 0, 1);
const wire::Ipv4Addr kThem = wire::Ipv4Addr::from_octets(198, 18, 0, 2);
constexpr std::uint16_t kUsPort = 40000;
constexpr std::uint16_t kThemPort = 80;

// The window the peer offers (no window scaling by default, so that
// MAX.SND.WND of RFC 5961 5.2 is exactly this).
constexpr std::uint16_t kPeerWindow = 65535;

std::error_code errc(std::errc e) { return std::make_error_code(e); }

Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& v : b) {
    x = x * 1103515245u + 12345u;
    v = static_cast<std::byte>(x >> 16);
  }
  return b;
}

std::string flag_names(TcpFlags f) {
  std::string s;
  if (f.syn()) s += "S";
  if (f.fin()) s += "F";
  if (f.rst()) s += "R";
  if ((f.bits & kPsh) != 0) s += "P";
  if (f.ack()) s += ".";
  return s;
}

struct Sent {
  TcpRepr h;
  Bytes payload;
};

std::string describe(const std::vector<Sent>& out) {
  std::string s = std::to_string(out.size()) + " segment(s):";
  for (const Sent& x : out) {
    s += " [" + flag_names(x.h.flags) + " seq " + std::to_string(x.h.seq.raw()) + " ack " +
         std::to_string(x.h.ack.raw()) + " len " + std::to_string(x.payload.size()) + "]";
  }
  return s;
}

// What the connection sends, after emit + parse (so its options encode).
class CaptureSink : public SegmentSink {
 public:
  bool send_segment(const Endpoints& ep, const TcpRepr& h, Payload p, Nanos) override {
    EXPECT_EQ(ep.remote_addr, kThem);
    EXPECT_EQ(h.payload_len, test_support::payload_size(p));
    const auto ph = wire::PseudoHeader::v4(kUs, kThem);
    Bytes bytes = test_support::segment_bytes(h, p);
    EXPECT_TRUE(h.emit(bytes, ph)) << "emit";
    auto v = wire::TcpView::make(bytes);
    EXPECT_TRUE(v);
    if (!v) return true;
    auto r = TcpRepr::parse(*v, ph);
    EXPECT_TRUE(r) << "parse of our own segment";
    if (!r) return true;
    out.push_back({*r, Bytes(v->payload().begin(), v->payload().end())});
    return true;
  }
  std::vector<Sent> out;
};

// A segment from the peer: a template filled from the peer's current state,
// whose fields a test overrides in one expression.
class Seg {
 public:
  explicit Seg(const TcpRepr& h) : h_(h) {}
  Seg& flags(std::uint8_t f) {
    h_.flags = TcpFlags{f};
    return *this;
  }
  // Offsets count modulo 2^32, like the sequence space (negative: before).
  Seg& seq_off(std::int64_t d) {
    h_.seq += static_cast<std::uint32_t>(d);
    return *this;
  }
  Seg& ack_off(std::int64_t d) {
    h_.ack += static_cast<std::uint32_t>(d);
    return *this;
  }
  Seg& seq(SeqNum s) {
    h_.seq = s;
    return *this;
  }
  Seg& ack(SeqNum a) {
    h_.ack = a;
    return *this;
  }
  Seg& window(std::uint16_t w) {
    h_.window = w;
    return *this;
  }
  Seg& data(Bytes b) {
    payload_ = std::move(b);
    h_.payload_len = static_cast<std::uint32_t>(payload_.size());
    return *this;
  }
  Seg& data(std::size_t n, std::uint32_t seed = 7) { return data(pattern(n, seed)); }
  Seg& tsval(std::uint32_t v) {
    if (h_.options.timestamps) h_.options.timestamps->tsval = v;
    return *this;
  }
  Seg& no_timestamps() {
    h_.options.timestamps.reset();
    return *this;
  }
  Seg& sack(SeqNum left, SeqNum right) {
    h_.options.add_sack({left, right});
    return *this;
  }
  const TcpRepr& header() const { return h_; }
  const Bytes& payload() const { return payload_; }
  // Sequence space it takes (RFC 9293 3.4).
  std::uint32_t len() const {
    return h_.payload_len + (h_.flags.syn() ? 1u : 0u) + (h_.flags.fin() ? 1u : 0u);
  }

 private:
  TcpRepr h_;
  Bytes payload_;
};

struct PeerOptions {
  SeqNum our_iss{1000};
  SeqNum peer_iss{5000};
  bool timestamps = true;
  std::uint32_t peer_ts = 7'000'000;  // the peer's TSval clock at the start
  bool sack = true;
  std::uint16_t mss = 1460;
  Nanos start = 1000s;
};

// Both sequence spaces a few bytes below 2^32 (the handshake and the FINs
// cross it) and the peer's timestamp clock 16 ticks before its wrap.
PeerOptions at_the_wrap() {
  PeerOptions o;
  o.our_iss = SeqNum(0xfffffff0u);
  o.peer_iss = SeqNum(0xfffffffau);
  o.peer_ts = 0xfffffff0u;
  return o;
}

ConnectionConfig test_config() {
  ConnectionConfig c;
  c.send_buffer = 64 * 1024;
  c.recv_buffer = 64 * 1024;
  c.msl = 1s;
  c.fin_wait2_timeout = 5s;
  c.window_scaling = true;  // offered; the peer does not, so windows are unscaled
  return c;
}

class Harness {
 public:
  explicit Harness(PeerOptions o = {}, ConnectionConfig c = test_config())
      : o_(o), now_(o.start), peer_nxt_(o.peer_iss), peer_ts_(o.peer_ts) {
    owner_ = pool_.add_owner();
    conn_ = std::move(*Connection::create(c, {kUs, kUsPort, kThem, kThemPort}, sink_, 42, &*pool_, owner_));
  }
  ~Harness() {
    conn_.reset();  // the out-of-order queue gives its buffers back
    EXPECT_EQ(pool_->in_use(), 0u);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  Connection& conn() { return *conn_; }
  const PeerOptions& options() const { return o_; }
  Nanos now() const { return now_; }
  SeqNum peer_nxt() const { return peer_nxt_; }
  SeqNum peer_rcv() const { return peer_rcv_; }
  std::uint32_t peer_ts() const { return peer_ts_; }
  void set_peer_ts(std::uint32_t ts) { peer_ts_ = ts; }
  const Bytes& peer_got() const { return peer_got_; }

  // The template: the peer's next sequence number, an ACK of everything of
  // ours it has received, its window and its timestamps.
  Seg seg(std::uint8_t flags = kAck) const {
    TcpRepr h;
    h.src_port = kThemPort;
    h.dst_port = kUsPort;
    h.seq = peer_nxt_;
    h.ack = peer_rcv_;
    h.flags = TcpFlags{flags};
    h.window = kPeerWindow;
    if (o_.timestamps) h.options.timestamps = wire::TcpTimestamps{peer_ts_, ts_echo_};
    return Seg(h);
  }
  // The template with the options of the peer's SYN (or SYN,ACK).
  Seg syn_seg(std::uint8_t flags = kSyn) const {
    Seg s = seg(flags);
    TcpRepr h = s.header();
    h.options.mss = o_.mss;
    h.options.sack_permitted = o_.sack;
    return Seg(h);
  }

  // One segment to the connection, its payload in a pool buffer as the
  // layer would hand it over (the connection may keep it).
  void deliver(const Seg& s) {
    if (s.payload().empty()) {
      conn_->on_segment(s.header(), {}, now_);
      return;
    }
    ASSERT_LE(s.payload().size(), 1900u);
    auto b = pool_->alloc(owner_);
    ASSERT_TRUE(b);
    auto mem = pool_->buffer(*b).subspan(100, s.payload().size());
    std::copy(s.payload().begin(), s.payload().end(), mem.begin());
    Connection::InboundBuffer in{*b, 100, false};
    conn_->on_segment(s.header(), mem, now_, &in);
    if (!in.taken) {
      EXPECT_FALSE(pool_->free(owner_, *b));
    }
  }
  // The peer sends in order: delivered, and its SND.NXT moves on.
  void peer_send(const Seg& s) {
    deliver(s);
    peer_nxt_ = s.header().seq + s.len();
  }

  // What the connection sent since the last call; the peer takes it in
  // (what of ours it has in order, the TSval to echo).
  std::vector<Sent> take() {
    std::vector<Sent> out;
    out.swap(sink_.out);
    for (const Sent& x : out) {
      if (x.h.options.timestamps) ts_echo_ = x.h.options.timestamps->tsval;
      if (x.h.flags.rst()) continue;
      const std::uint32_t len = x.h.payload_len + (x.h.flags.syn() ? 1u : 0u) + (x.h.flags.fin() ? 1u : 0u);
      if (x.h.flags.syn() && !peer_synced_) {
        peer_synced_ = true;
        peer_rcv_ = x.h.seq + len;
        continue;
      }
      if (!peer_synced_ || len == 0) continue;
      if (x.h.seq <= peer_rcv_ && peer_rcv_ < x.h.seq + len) {
        const std::uint32_t skip = distance(x.h.seq, peer_rcv_);
        if (skip < x.payload.size()) {
          peer_got_.insert(peer_got_.end(), x.payload.begin() + skip, x.payload.end());
        }
        peer_rcv_ = x.h.seq + len;
      }
    }
    return out;
  }

  // The peer has not received our FIN yet (it is still on its way): the
  // template's ACK stops short of it, so a generic case does not move
  // FIN-WAIT-1, CLOSING or LAST-ACK on by acknowledging it.
  void fin_in_flight() {
    if (conn_->snd_una() != conn_->snd_nxt()) peer_rcv_ = conn_->snd_una();
  }

  // Moves the fake clock and runs the timers that fell due.
  void advance(Nanos d) {
    now_ += d;
    for (int i = 0; i < 16 && conn_->next_deadline() <= now_; ++i) conn_->on_timer(now_);
  }

  // A fresh connection into `s`: actively opened (passively for
  // SYN-RECEIVED, or with `passive`), then closed the way the state needs.
  // The application shuts down with shutdown_write(), so data that arrives
  // in FIN-WAIT-1/2 is still read.
  void drive(State s, bool passive = false) {
    switch (s) {
      case State::kClosed:
        drive(State::kLastAck, passive);
        (void)take();
        peer_send(seg());
        break;
      case State::kListen:
        FAIL() << "LISTEN is the layer's";
      case State::kSynSent:
        ASSERT_FALSE(conn_->connect(o_.our_iss, now_));
        break;
      case State::kSynReceived: {
        const Seg syn = syn_seg(kSyn);
        ASSERT_FALSE(conn_->accept_syn(syn.header(), o_.our_iss, now_));
        peer_nxt_ = syn.header().seq + 1;
        break;
      }
      case State::kEstablished:
        if (passive) {
          drive(State::kSynReceived);
          (void)take();
          peer_send(seg());
        } else {
          drive(State::kSynSent);
          (void)take();
          peer_send(syn_seg(kSyn | kAck));
        }
        break;
      case State::kFinWait1:
        drive(State::kEstablished, passive);
        (void)take();
        ASSERT_FALSE(conn_->shutdown_write(now_));
        break;
      case State::kFinWait2:
        drive(State::kFinWait1, passive);
        (void)take();
        peer_send(seg());
        break;
      case State::kCloseWait:
        drive(State::kEstablished, passive);
        (void)take();
        peer_send(seg(kFin | kAck));
        break;
      case State::kClosing:
        drive(State::kFinWait1, passive);
        (void)take();
        peer_send(seg(kFin | kAck).ack_off(-1));  // our FIN not yet acknowledged
        break;
      case State::kLastAck:
        drive(State::kCloseWait, passive);
        (void)take();
        ASSERT_FALSE(conn_->shutdown_write(now_));
        break;
      case State::kTimeWait:
        drive(State::kFinWait2, passive);
        (void)take();
        peer_send(seg(kFin | kAck));
        break;
    }
    ASSERT_EQ(conn_->state(), s) << "drive reached " << to_string(conn_->state()) << ", not " << to_string(s);
    ASSERT_FALSE(conn_->error());
    if (s != State::kSynSent && s != State::kClosed) {
      ASSERT_EQ(conn_->rcv_nxt(), peer_nxt_) << "the scripted peer lost track";
    }
  }

 private:
  PeerOptions o_;
  net::test::TestPool pool_{2};
  mem::OwnerId owner_;
  CaptureSink sink_;
  std::unique_ptr<Connection> conn_;
  Nanos now_;
  SeqNum peer_nxt_;  // the peer's SND.NXT
  SeqNum peer_rcv_;  // the peer's RCV.NXT: what it acknowledges
  bool peer_synced_ = false;
  std::uint32_t peer_ts_;
  std::uint32_t ts_echo_ = 0;
  Bytes peer_got_;
};

#define EXPECT_STATE(h, s) \
  EXPECT_EQ((h).conn().state(), (s)) << to_string((h).conn().state()) << " instead of " << to_string(s)

// --- Case tables ------------------------------------------------------------

enum class Reply : std::uint8_t {
  kNothing,
  kAckOnly,       // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, not a challenge ACK
  kChallengeAck,  // the same, counted as a challenge ACK (RFC 5961 7)
  kReset,         // <SEQ=SEG.ACK><CTL=RST>
  kSynAck,        // <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>
};

struct Case {
  std::string what;
  std::function<Seg(Harness&)> make;
  State after;
  Reply reply;
  std::error_code error{};
  std::optional<std::size_t> readable{};  // bytes the application can read afterwards
  std::optional<SegmentDrop> drop{};      // the drop counter that must move
  std::function<void(Harness&, const std::vector<Sent>&)> also{};
};

void expect_reply(Harness& h, const std::vector<Sent>& out, Reply r, const Seg& s,
                  const ConnectionCounters& before) {
  const auto challenges = h.conn().counters().challenge_acks - before.challenge_acks;
  switch (r) {
    case Reply::kNothing:
      EXPECT_TRUE(out.empty()) << describe(out);
      break;
    case Reply::kAckOnly:
    case Reply::kChallengeAck:
      ASSERT_EQ(out.size(), 1u) << describe(out);
      EXPECT_EQ(out[0].h.flags.bits, kAck) << describe(out);
      EXPECT_EQ(out[0].h.seq, h.conn().snd_nxt());
      EXPECT_EQ(out[0].h.ack, h.conn().rcv_nxt());
      EXPECT_TRUE(out[0].payload.empty());
      EXPECT_EQ(challenges, r == Reply::kChallengeAck ? 1u : 0u);
      return;
    case Reply::kReset:
      ASSERT_EQ(out.size(), 1u) << describe(out);
      EXPECT_EQ(out[0].h.flags.bits, kRst) << describe(out);
      EXPECT_EQ(out[0].h.seq, s.header().ack);
      break;
    case Reply::kSynAck:
      ASSERT_EQ(out.size(), 1u) << describe(out);
      EXPECT_EQ(out[0].h.flags.bits, kSyn | kAck) << describe(out);
      EXPECT_EQ(out[0].h.seq, h.options().our_iss);
      EXPECT_EQ(out[0].h.ack, h.conn().rcv_nxt());
      break;
  }
  EXPECT_EQ(challenges, 0u);
}

// With `fin_in_flight`, the peer has not seen our FIN (Harness::fin_in_flight).
void run_cases(State start, const std::vector<Case>& cases, const PeerOptions& o = {}, bool passive = false,
               bool fin_in_flight = false) {
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(to_string(start)) + ": " + c.what);
    Harness h(o);
    ASSERT_NO_FATAL_FAILURE(h.drive(start, passive));
    (void)h.take();
    if (fin_in_flight) h.fin_in_flight();
    const ConnectionCounters before = h.conn().counters();
    const Seg s = c.make(h);
    h.deliver(s);
    const std::vector<Sent> out = h.take();
    EXPECT_STATE(h, c.after);
    expect_reply(h, out, c.reply, s, before);
    EXPECT_EQ(h.conn().error(), c.error);
    if (c.error) {
      // The user sees it on the next call (RFC 9293 3.10.7.4 second:
      // "any outstanding RECEIVEs and SEND should receive reset responses").
      std::array<std::byte, 16> buf{};
      const auto r = h.conn().receive(buf, h.now());
      EXPECT_TRUE(!r && r.error() == c.error);
      const auto w = h.conn().send(buf, h.now());
      EXPECT_TRUE(!w && w.error() == c.error);
    }
    if (c.readable) {
      EXPECT_EQ(h.conn().readable(), *c.readable);
    }
    if (c.drop) {
      EXPECT_EQ(h.conn().counters().dropped(*c.drop), before.dropped(*c.drop) + 1) << to_string(*c.drop);
    }
    if (c.also) c.also(h, out);
  }
}

bool reset_quietly(State s) {
  // RFC 9293 3.10.7.4 second: in CLOSING, LAST-ACK and TIME-WAIT an RST
  // just ends the connection; before that the user is told "reset".
  return s == State::kClosing || s == State::kLastAck || s == State::kTimeWait;
}

bool takes_text(State s) {
  // RFC 9293 3.10.7.4 seventh: text is processed in ESTABLISHED and
  // FIN-WAIT-1/2; after the peer's FIN it is ignored.
  return s == State::kEstablished || s == State::kFinWait1 || s == State::kFinWait2;
}

// Second, the RST bit (RFC 9293 3.10.7.4 with RFC 5961 3.2).
std::vector<Case> rst_cases(State s) {
  const std::error_code reset = reset_quietly(s) ? std::error_code{} : errc(std::errc::connection_reset);
  return {
      {"RST at RCV.NXT resets (RFC 5961 3.2 1)", [](Harness& h) { return h.seg(kRst); }, State::kClosed,
       Reply::kNothing, reset},
      {"RST,ACK at RCV.NXT resets", [](Harness& h) { return h.seg(kRst | kAck); }, State::kClosed,
       Reply::kNothing, reset},
      {"RST with an old timestamp is judged by its sequence number (RFC 7323 5.3 R1)",
       [](Harness& h) { return h.seg(kRst).tsval(h.peer_ts() - 1000); }, State::kClosed, Reply::kNothing,
       reset},
      {"RST one past RCV.NXT: challenge ACK (RFC 5961 3.2 3)",
       [](Harness& h) { return h.seg(kRst).seq_off(1); },
       s,
       Reply::kChallengeAck,
       {},
       {},
       SegmentDrop::kRstChallenged},
      {"RST in the window: challenge ACK (RFC 5961 3.2 3)",
       [](Harness& h) { return h.seg(kRst).seq_off(30000); },
       s,
       Reply::kChallengeAck,
       {},
       {},
       SegmentDrop::kRstChallenged},
      {"RST one before RCV.NXT: outside, ignored (RFC 5961 3.2 2)",
       [](Harness& h) { return h.seg(kRst).seq_off(-1); },
       s,
       Reply::kNothing,
       {},
       {},
       SegmentDrop::kRstOutOfWindow},
      {"RST past the window: ignored (RFC 5961 3.2 2)",
       [](Harness& h) { return h.seg(kRst).seq_off(70000); },
       s,
       Reply::kNothing,
       {},
       {},
       SegmentDrop::kRstOutOfWindow},
      {"RST 2^30 away: ignored",
       [](Harness& h) { return h.seg(kRst).seq_off(std::int64_t{1} << 30); },
       s,
       Reply::kNothing,
       {},
       {},
       SegmentDrop::kRstOutOfWindow},
  };
}

// Fourth, the SYN bit (RFC 9293 3.10.7.4, RFC 5961 4.2): a challenge ACK
// whatever the sequence number, never a reset.
std::vector<Case> syn_cases(State s) {
  return {
      {"SYN at RCV.NXT: challenge ACK (RFC 5961 4.2)",
       [](Harness& h) { return h.syn_seg(kSyn); },
       s,
       Reply::kChallengeAck,
       {},
       {},
       SegmentDrop::kSynChallenged},
      {"SYN,ACK in the window: challenge ACK (RFC 5961 4.2)",
       [](Harness& h) { return h.syn_seg(kSyn | kAck).seq_off(100); },
       s,
       Reply::kChallengeAck,
       {},
       {},
       SegmentDrop::kSynChallenged},
      {"SYN with the peer's first ISN again (outside the window): ACK (3.10.7.4 first)",
       [](Harness& h) { return h.syn_seg(kSyn).seq(h.options().peer_iss); },
       s,
       Reply::kAckOnly,
       {},
       {},
       SegmentDrop::kNotAcceptable},
      {"SYN 2^30 away: ACK, never a reset",
       [](Harness& h) { return h.syn_seg(kSyn).seq_off(1u << 30); },
       s,
       Reply::kAckOnly,
       {},
       {},
       SegmentDrop::kNotAcceptable},
  };
}

// Fifth, the ACK field (RFC 9293 3.10.7.4, RFC 5961 5.2: acceptable when
// SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT).
std::vector<Case> ack_cases(State s) {
  const std::size_t text = 0;  // the data these segments carry is never taken
  return {
      {"ACK beyond SND.NXT: dropped, ACKed (RFC 5961 5.2)",
       [](Harness& h) { return h.seg().ack(h.conn().snd_nxt() + 1).data(10); },
       s,
       Reply::kAckOnly,
       {},
       text,
       SegmentDrop::kAckUnacceptable},
      {"ACK far beyond SND.NXT: dropped, ACKed",
       [](Harness& h) { return h.seg().ack(h.conn().snd_nxt() + (1u << 20)).data(10); },
       s,
       Reply::kAckOnly,
       {},
       text,
       SegmentDrop::kAckUnacceptable},
      {"ACK one below SND.UNA - MAX.SND.WND: dropped, ACKed (RFC 5961 5.2)",
       [](Harness& h) { return h.seg().ack(h.conn().snd_una() - (kPeerWindow + 1u)).data(10); },
       s,
       Reply::kAckOnly,
       {},
       text,
       SegmentDrop::kAckUnacceptable},
      {"no ACK bit: dropped silently (3.10.7.4 fifth)",
       [](Harness& h) { return h.seg(kPsh).data(10); },
       s,
       Reply::kNothing,
       {},
       text,
       SegmentDrop::kNoAck},
      {"an old but acceptable ACK (SND.UNA - MAX.SND.WND) is ignored",
       [](Harness& h) { return h.seg().ack(h.conn().snd_una() - kPeerWindow); }, s, Reply::kNothing},
  };
}

// Seventh, the segment text (and the first step's duplicates).
std::vector<Case> text_cases(State s) {
  const bool takes = takes_text(s);
  std::vector<Case> v = {
      {takes ? "data at RCV.NXT: taken, ACKed at once (quick ACK)"
             : "data at RCV.NXT: ignored (3.10.7.4 seventh)",
       [](Harness& h) { return h.seg(kAck | kPsh).data(10); },
       s,
       takes ? Reply::kAckOnly : Reply::kNothing,
       {},
       takes ? 10u : 0u},
      {takes ? "data from before RCV.NXT: only the new part taken" : "data overlapping RCV.NXT: ignored",
       [](Harness& h) { return h.seg().seq_off(-4).data(10); },
       s,
       takes ? Reply::kAckOnly : Reply::kNothing,
       {},
       takes ? 6u : 0u},
      {"a duplicate wholly before RCV.NXT: ACK (3.10.7.4 first)",
       [](Harness& h) { return h.seg().seq_off(-30).data(10); },
       s,
       Reply::kAckOnly,
       {},
       0u,
       SegmentDrop::kNotAcceptable},
      {"data past the window: ACK (3.10.7.4 first)",
       [](Harness& h) { return h.seg().seq_off(70000).data(10); },
       s,
       Reply::kAckOnly,
       {},
       0u,
       SegmentDrop::kNotAcceptable},
      {"an empty ACK before RCV.NXT: ACK (3.10.7.4 first)",
       [](Harness& h) { return h.seg().seq_off(-1); },
       s,
       Reply::kAckOnly,
       {},
       0u,
       SegmentDrop::kNotAcceptable},
  };
  if (takes) {
    v.push_back(
        {"data ahead of RCV.NXT in the window: held, duplicate ACK with a SACK block (RFC 5681 4.2, "
         "RFC 2018 4)",
         [](Harness& h) { return h.seg().seq_off(100).data(10); },
         s,
         Reply::kAckOnly,
         {},
         0u,
         {},
         [](Harness& h, const std::vector<Sent>& out) {
           EXPECT_EQ(h.conn().ooo_segments(), 1u);
           ASSERT_FALSE(out.empty());
           ASSERT_EQ(out[0].h.options.sack_count, 1u);
           EXPECT_EQ(out[0].h.options.sack_blocks[0].left, h.conn().rcv_nxt() + 100);
           EXPECT_EQ(out[0].h.options.sack_blocks[0].right, h.conn().rcv_nxt() + 110);
         }});
  } else {
    v.push_back({"data ahead of RCV.NXT: ignored",
                 [](Harness& h) { return h.seg().seq_off(100).data(10); },
                 s,
                 Reply::kNothing,
                 {},
                 0u});
  }
  return v;
}

// RFC 7323 5.3 across the wrap of the peer's timestamp clock (the harness
// starts it at 0xfffffff0: at_the_wrap()).
std::vector<Case> paws_cases(State s) {
  const bool takes = takes_text(s);
  return {
      {"TSval past 2^32 (0x10 after 0xfffffff0) is newer: accepted, TS.Recent moves (RFC 7323 5.3)",
       [](Harness& h) { return h.seg(kAck | kPsh).tsval(0x10).data(10); },
       s,
       takes ? Reply::kAckOnly : Reply::kNothing,
       {},
       takes ? 10u : 0u,
       {},
       [](Harness& h, const std::vector<Sent>& out) {
         EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kPaws), 0u);
         if (!out.empty()) {
           ASSERT_TRUE(out[0].h.options.timestamps);
           EXPECT_EQ(out[0].h.options.timestamps->tsecr, 0x10u);  // TS.Recent echoed
         }
         // TS.Recent is now 0x10: 0xfffffff8, before the wrap, is old.
         h.deliver(h.seg().tsval(0xfffffff8u));
         EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kPaws), 1u);
         EXPECT_EQ(h.take().size(), 1u);  // dropped and ACKed
       }},
      {"TSval before the wrap and older than TS.Recent: PAWS drops it, ACK (RFC 7323 5.3 R1)",
       [](Harness& h) { return h.seg(kAck | kPsh).tsval(0xffffffe0u).data(10); },
       s,
       Reply::kAckOnly,
       {},
       0u,
       SegmentDrop::kPaws},
      {"TSval 2^31 - 1 ahead (still newer)",
       [](Harness& h) { return h.seg().tsval(h.peer_ts() + 0x7fffffffu); },
       s,
       Reply::kNothing,
       {},
       {},
       {},
       [](Harness& h, const std::vector<Sent>&) {
         EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kPaws), 0u);
       }},
  };
}

std::vector<Case> all_common_cases(State s) {
  std::vector<Case> v;
  for (auto* f : {&rst_cases, &syn_cases, &ack_cases, &text_cases}) {
    auto part = (*f)(s);
    v.insert(v.end(), part.begin(), part.end());
  }
  return v;
}

// The generic tables for one synchronized state, as separate tests.
#define USNET_SYNCHRONIZED_STATE_TABLES(Suite, state)                      \
  TEST(Suite, RstChecks_Rfc9293_3_10_7_4_Second_Rfc5961_3_2) {             \
    run_cases(state, rst_cases(state), {}, false, true);                   \
  }                                                                        \
  TEST(Suite, SynGetsAChallengeAck_Rfc9293_3_10_7_4_Fourth_Rfc5961_4_2) {  \
    run_cases(state, syn_cases(state), {}, false, true);                   \
  }                                                                        \
  TEST(Suite, AckChecks_Rfc9293_3_10_7_4_Fifth_Rfc5961_5_2) {              \
    run_cases(state, ack_cases(state), {}, false, true);                   \
  }                                                                        \
  TEST(Suite, SegmentText_Rfc9293_3_10_7_4_First_Seventh) {                \
    run_cases(state, text_cases(state), {}, false, true);                  \
  }                                                                        \
  TEST(Suite, TimestampsAcrossTheWrap_Rfc7323_5_3) {                       \
    run_cases(state, paws_cases(state), at_the_wrap(), false, true);       \
  }                                                                        \
  TEST(Suite, EveryCaseWithSequenceNumbersAtTheWrap_Rfc9293_3_4) {         \
    run_cases(state, all_common_cases(state), at_the_wrap(), false, true); \
  }

// --- SYN-SENT (RFC 9293 3.10.7.3) --------------------------------------------

TEST(TcpStateSynSent, SegmentArrival_Rfc9293_3_10_7_3) {
  for (const PeerOptions& o : {PeerOptions{}, at_the_wrap()}) {
    run_cases(
        State::kSynSent,
        {
            {"SYN,ACK for our SYN: ESTABLISHED, ACK (fourth)",
             [](Harness& h) { return h.syn_seg(kSyn | kAck); }, State::kEstablished, Reply::kAckOnly},
            {"SYN,ACK with SEG.ACK = ISS: reset <SEQ=SEG.ACK> (first)",
             [](Harness& h) { return h.syn_seg(kSyn | kAck).ack(h.options().our_iss); },
             State::kSynSent,
             Reply::kReset,
             {},
             {},
             SegmentDrop::kBadSynSentAck},
            {"SYN,ACK with SEG.ACK > SND.NXT: reset (first)",
             [](Harness& h) { return h.syn_seg(kSyn | kAck).ack_off(1); },
             State::kSynSent,
             Reply::kReset,
             {},
             {},
             SegmentDrop::kBadSynSentAck},
            {"ACK far off: reset (first)",
             [](Harness& h) { return h.seg().ack_off(1u << 30); },
             State::kSynSent,
             Reply::kReset,
             {},
             {},
             SegmentDrop::kBadSynSentAck},
            {"RST with an unacceptable ACK: dropped (first)",
             [](Harness& h) { return h.seg(kRst | kAck).ack_off(1); },
             State::kSynSent,
             Reply::kNothing,
             {},
             {},
             SegmentDrop::kBadSynSentAck},
            {"RST with an acceptable ACK: refused (second)", [](Harness& h) { return h.seg(kRst | kAck); },
             State::kClosed, Reply::kNothing, errc(std::errc::connection_refused)},
            {"RST without ACK: ignored (second, RFC 5961 3.2)",
             [](Harness& h) { return h.seg(kRst); },
             State::kSynSent,
             Reply::kNothing,
             {},
             {},
             SegmentDrop::kRstOutOfWindow},
            {"SYN without ACK: simultaneous open, SYN-RECEIVED, SYN,ACK (fourth)",
             [](Harness& h) { return h.syn_seg(kSyn); }, State::kSynReceived, Reply::kSynAck},
            {"an acceptable ACK without SYN: dropped (fifth)",
             [](Harness& h) { return h.seg(); },
             State::kSynSent,
             Reply::kNothing,
             {},
             {},
             SegmentDrop::kNoAck},
            {"FIN,ACK without SYN: dropped (fifth; eighth: no FIN in SYN-SENT)",
             [](Harness& h) { return h.seg(kFin | kAck); }, State::kSynSent, Reply::kNothing},
        },
        o);
  }
}

TEST(TcpStateSynSent, HandshakeTakesThePeersOptions_Rfc9293_3_10_7_3_Rfc7323) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynSent));
  const auto syn = h.take();
  ASSERT_EQ(syn.size(), 1u);
  EXPECT_EQ(syn[0].h.flags.bits, kSyn);
  EXPECT_EQ(syn[0].h.seq, h.options().our_iss);
  h.peer_send(h.syn_seg(kSyn | kAck));
  EXPECT_STATE(h, State::kEstablished);
  EXPECT_EQ(h.conn().snd_una(), h.options().our_iss + 1);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 1);
  EXPECT_EQ(h.conn().snd_wnd(), kPeerWindow);  // a SYN's window is never scaled
  EXPECT_TRUE(h.conn().timestamps_on());
  EXPECT_TRUE(h.conn().sack_on());
  EXPECT_EQ(h.conn().snd_shift(), 0);  // the peer offered no window scale
  EXPECT_EQ(h.conn().peer_mss(), 1460 - 12);
}

TEST(TcpStateSynSent, SynIsRetransmittedAfterTheInitialRto_Rfc6298_5) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynSent));
  (void)h.take();
  h.advance(1s - 1ns);
  EXPECT_TRUE(h.take().empty());
  h.advance(1ns);
  const auto again = h.take();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].h.flags.bits, kSyn);
  EXPECT_EQ(again[0].h.seq, h.options().our_iss);
  EXPECT_STATE(h, State::kSynSent);
}

// RFC 9293 3.10.7.3 fourth: "If there are other controls or text in the
// segment, then continue processing at the sixth step under Section
// 3.10.7.4 where the URG bit is checked". The text of a SYN,ACK is
// delivered and its FIN taken, and the one ACK of the handshake covers
// them.
TEST(TcpStateSynSent, TextOnASynAckIsDelivered_Rfc9293_3_10_7_3_Fourth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynSent));
  (void)h.take();
  const Bytes data = pattern(10, 9);
  h.deliver(h.syn_seg(kSyn | kAck).data(data));
  EXPECT_STATE(h, State::kEstablished);
  EXPECT_EQ(h.conn().readable(), 10u);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 11);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_EQ(out[0].h.flags.bits, kAck);
  EXPECT_EQ(out[0].h.ack, h.options().peer_iss + 11);
  Bytes got(10);
  ASSERT_EQ(h.conn().receive(got, h.now()).value(), 10u);
  EXPECT_EQ(got, data);
}

// The same with a FIN after the text: CLOSE-WAIT at once.
TEST(TcpStateSynSent, FinOnASynAckIsTaken_Rfc9293_3_10_7_3_Fourth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynSent));
  (void)h.take();
  h.deliver(h.syn_seg(kSyn | kAck | kFin).data(10));
  EXPECT_STATE(h, State::kCloseWait);
  EXPECT_EQ(h.conn().readable(), 10u);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 12);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_EQ(out[0].h.ack, h.options().peer_iss + 12);
  EXPECT_FALSE(h.conn().eof());  // the text is still to be read
}

// --- SYN-RECEIVED (passive open; RFC 9293 3.10.7.2 made it) ------------------

TEST(TcpStateSynReceived, SegmentArrival_Rfc9293_3_10_7_4) {
  for (const PeerOptions& o : {PeerOptions{}, at_the_wrap()}) {
    run_cases(State::kSynReceived,
              {
                  {"ACK of our SYN: ESTABLISHED (fifth)", [](Harness& h) { return h.seg(); },
                   State::kEstablished, Reply::kNothing},
                  {"ACK with data: ESTABLISHED, data taken, ACK",
                   [](Harness& h) { return h.seg(kAck | kPsh).data(10); },
                   State::kEstablished,
                   Reply::kAckOnly,
                   {},
                   10u},
                  {"ACK with FIN: ESTABLISHED then CLOSE-WAIT, ACK (eighth)",
                   [](Harness& h) { return h.seg(kFin | kAck); }, State::kCloseWait, Reply::kAckOnly},
                  {"SEG.ACK = SND.UNA (ISS): reset <SEQ=SEG.ACK> (fifth)",
                   [](Harness& h) { return h.seg().ack_off(-1); },
                   State::kSynReceived,
                   Reply::kReset,
                   {},
                   {},
                   SegmentDrop::kAckUnacceptable},
                  {"SEG.ACK > SND.NXT: reset <SEQ=SEG.ACK> (fifth)",
                   [](Harness& h) { return h.seg().ack_off(1); },
                   State::kSynReceived,
                   Reply::kReset,
                   {},
                   {},
                   SegmentDrop::kAckUnacceptable},
                  {"no ACK bit: dropped (fifth)",
                   [](Harness& h) { return h.seg(kPsh).data(10); },
                   State::kSynReceived,
                   Reply::kNothing,
                   {},
                   0u,
                   SegmentDrop::kNoAck},
                  {"RST at RCV.NXT: the passive open ends (second)", [](Harness& h) { return h.seg(kRst); },
                   State::kClosed, Reply::kNothing, errc(std::errc::connection_refused)},
                  {"RST in the window: challenge ACK (RFC 5961 3.2)",
                   [](Harness& h) { return h.seg(kRst).seq_off(10); },
                   State::kSynReceived,
                   Reply::kChallengeAck,
                   {},
                   {},
                   SegmentDrop::kRstChallenged},
                  {"RST outside the window: ignored (RFC 5961 3.2)",
                   [](Harness& h) { return h.seg(kRst).seq_off(-1); },
                   State::kSynReceived,
                   Reply::kNothing,
                   {},
                   {},
                   SegmentDrop::kRstOutOfWindow},
                  // The peer's SYN again sits before RCV.NXT: not acceptable, so the
                  // first step's ACK answers it.
                  {"the peer's SYN again: ACK (first)",
                   [](Harness& h) { return h.syn_seg(kSyn).seq_off(-1); },
                   State::kSynReceived,
                   Reply::kAckOnly,
                   {},
                   {},
                   SegmentDrop::kNotAcceptable},
                  // RFC 5961 4.2 replaces RFC 793's fourth step, which listed
                  // SYN-RECEIVED among the states where an in-window SYN reset the
                  // connection; RFC 9293 now says a passive open returns to LISTEN.
                  // The connection challenges: an off-path SYN cannot end a
                  // half-open connection that way.
                  {"SYN at RCV.NXT: challenge ACK (RFC 5961 4.2)",
                   [](Harness& h) { return h.syn_seg(kSyn); },
                   State::kSynReceived,
                   Reply::kChallengeAck,
                   {},
                   {},
                   SegmentDrop::kSynChallenged},
                  {"old TSval: PAWS drop, ACK (RFC 7323 5.3)",
                   [](Harness& h) { return h.seg().tsval(h.peer_ts() - 100); },
                   State::kSynReceived,
                   Reply::kAckOnly,
                   {},
                   {},
                   SegmentDrop::kPaws},
              },
              o);
  }
}

TEST(TcpStateSynReceived, SynAckCarriesTheAgreedOptions_Rfc9293_3_10_7_2_Rfc7323_1_3) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynReceived));
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].h.flags.bits, kSyn | kAck);
  EXPECT_EQ(out[0].h.seq, h.options().our_iss);
  EXPECT_EQ(out[0].h.ack, h.options().peer_iss + 1);
  EXPECT_FALSE(out[0].h.options.window_scale);  // the peer's SYN had none
  EXPECT_TRUE(out[0].h.options.sack_permitted);
  ASSERT_TRUE(out[0].h.options.timestamps);
  EXPECT_EQ(out[0].h.options.timestamps->tsecr, h.options().peer_ts);
}

TEST(TcpStateSynReceived, SynAckIsRetransmittedAfterTheInitialRto_Rfc6298_5) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynReceived));
  (void)h.take();
  h.advance(1s - 1ns);
  EXPECT_TRUE(h.take().empty());
  h.advance(1ns);
  const auto again = h.take();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].h.flags.bits, kSyn | kAck);
  EXPECT_EQ(again[0].h.seq, h.options().our_iss);
}

TEST(TcpStateSynReceived, ShutdownBeforeTheHandshakeEndsSendsFinOnceEstablished_Rfc9293_3_10_4) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynReceived));
  (void)h.take();
  ASSERT_FALSE(h.conn().shutdown_write(h.now()));
  EXPECT_STATE(h, State::kSynReceived);
  EXPECT_TRUE(h.take().empty());  // no FIN before our SYN is acknowledged
  h.peer_send(h.seg());
  EXPECT_STATE(h, State::kFinWait1);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].h.flags.fin());
  EXPECT_EQ(out[0].h.seq, h.options().our_iss + 1);
}

// RFC 7323 4.1 with our own timestamp clock wrapping between the SYN,ACK
// and the ACK that echoes it: the RTT sample is still 10 ms.
TEST(TcpStateSynReceived, RttFromAnEchoAcrossOurTimestampClockWrap_Rfc7323_4_1) {
  std::uint32_t offset = 0;
  {
    Harness probe;
    ASSERT_NO_FATAL_FAILURE(probe.drive(State::kSynReceived));
    const auto out = probe.take();
    ASSERT_EQ(out.size(), 1u);
    const auto ms = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(probe.now()).count());
    offset = out[0].h.options.timestamps->tsval - ms;  // the connection's clock offset (seeded)
  }
  PeerOptions o;
  // The SYN,ACK goes out 4 ticks before our clock wraps.
  o.start = std::chrono::milliseconds(std::uint32_t{0xfffffffcu} - offset);
  Harness h(o);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kSynReceived));
  const auto synack = h.take();
  ASSERT_EQ(synack.size(), 1u);
  EXPECT_EQ(synack[0].h.options.timestamps->tsval, 0xfffffffcu);
  h.advance(10ms);
  h.peer_send(h.seg());  // echoes 0xfffffffc; our clock reads 6 now
  EXPECT_STATE(h, State::kEstablished);
  EXPECT_EQ(h.conn().srtt(), 10ms);
}

// --- ESTABLISHED ----------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateEstablished, State::kEstablished)

TEST(TcpStateEstablished, PassiveOpenBehavesAlike_Rfc9293_3_10_7_4) {
  run_cases(State::kEstablished, all_common_cases(State::kEstablished), {}, /*passive=*/true);
}

TEST(TcpStateEstablished, FinMovesToCloseWait_Rfc9293_3_10_7_4_Eighth) {
  run_cases(
      State::kEstablished,
      {
          {"FIN at RCV.NXT: CLOSE-WAIT, ACK of the FIN",
           [](Harness& h) { return h.seg(kFin | kAck); },
           State::kCloseWait,
           Reply::kAckOnly,
           {},
           0u,
           {},
           [](Harness& h, const std::vector<Sent>& out) {
             ASSERT_EQ(out.size(), 1u);
             EXPECT_EQ(out[0].h.ack, h.peer_nxt() + 1);
             EXPECT_TRUE(h.conn().eof());
           }},
          {"data and FIN: both taken, CLOSE-WAIT",
           [](Harness& h) { return h.seg(kFin | kAck | kPsh).data(20); },
           State::kCloseWait,
           Reply::kAckOnly,
           {},
           20u,
           {},
           [](Harness& h, const std::vector<Sent>&) { EXPECT_EQ(h.conn().rcv_nxt(), h.peer_nxt() + 21); }},
          {"FIN without ACK: dropped (fifth)",
           [](Harness& h) { return h.seg(kFin); },
           State::kEstablished,
           Reply::kNothing,
           {},
           {},
           SegmentDrop::kNoAck},
          {"FIN past the window: ACK",
           [](Harness& h) { return h.seg(kFin | kAck).seq_off(70000); },
           State::kEstablished,
           Reply::kAckOnly,
           {},
           {},
           SegmentDrop::kNotAcceptable},
      });
}

TEST(TcpStateEstablished, AckOfNewDataAdvancesSndUna_Rfc9293_3_10_7_4_Fifth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  const Bytes data = pattern(1000, 3);
  ASSERT_EQ(h.conn().send(data, h.now()).value(), 1000u);
  ASSERT_EQ(h.take().size(), 1u);
  EXPECT_EQ(h.peer_got(), data);
  h.deliver(h.seg().ack_off(-400));  // part of it
  EXPECT_EQ(h.conn().snd_una(), h.options().our_iss + 1 + 600);
  h.deliver(h.seg());
  EXPECT_EQ(h.conn().snd_una(), h.conn().snd_nxt());
  EXPECT_EQ(h.conn().next_deadline(), Nanos::max());  // RFC 6298 5.2: the timer stops
  EXPECT_TRUE(h.take().empty());
}

// RFC 9293 3.10.7.4: segments ahead of RCV.NXT "SHOULD be held for later
// processing", and RFC 5681 4.2: a receiver "SHOULD send an immediate
// duplicate ACK when an out-of-order segment arrives". A FIN alone beyond
// RCV.NXT (the data before it lost) is answered with a duplicate ACK and
// held (OooQueue::hold_fin), so once the hole is filled the connection
// takes it at once instead of waiting for the peer's retransmission.
TEST(TcpStateEstablished, FinAheadOfRcvNxtIsHeldAndDuplicateAcked_Rfc9293_3_10_7_4_Rfc5681_4_2) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  const Bytes data = pattern(10, 5);
  h.deliver(h.seg(kFin | kAck).seq_off(10));  // the 10 bytes before it are missing
  EXPECT_EQ(h.take().size(), 1u) << "no duplicate ACK for the out-of-order FIN";
  h.peer_send(h.seg(kAck | kPsh).data(data));  // the hole is filled
  (void)h.take();
  EXPECT_STATE(h, State::kCloseWait);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 1 + 11);
}

// The same for data and FIN in one segment that arrives out of order: the
// out-of-order queue keeps its data and its FIN. Once the hole is filled,
// RCV.NXT moves over the data and the FIN together: CLOSE-WAIT.
TEST(TcpStateEstablished, FinOfAnOutOfOrderSegmentIsHeld_Rfc9293_3_10_7_4_Seventh) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  h.deliver(h.seg(kFin | kAck | kPsh).seq_off(10).data(10, 6));  // data + FIN after a 10-byte hole
  EXPECT_EQ(h.conn().ooo_segments(), 1u);
  h.peer_send(h.seg(kAck | kPsh).data(10, 5));  // the hole is filled
  (void)h.take();
  EXPECT_EQ(h.conn().readable(), 20u);
  EXPECT_STATE(h, State::kCloseWait);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 1 + 21);
}

// A held FIN is bounded like any other sequence number: one whose
// sequence number lies past the window is not acceptable (RFC 9293
// 3.10.7.4 first) and is not held, though the text before it is.
TEST(TcpStateEstablished, FinPastTheWindowIsNotHeld_Rfc9293_3_10_7_4_First) {
  ConnectionConfig c = test_config();
  c.recv_buffer = 1000;  // the window the peer sees
  Harness h({}, c);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  const auto not_acceptable = h.conn().counters().dropped(SegmentDrop::kNotAcceptable);
  h.deliver(h.seg(kFin | kAck | kPsh).seq_off(10).data(990, 6));  // the FIN would be byte 1000
  EXPECT_EQ(h.take().size(), 1u);
  EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kNotAcceptable), not_acceptable + 1);
  EXPECT_EQ(h.conn().ooo_segments(), 1u);
  h.peer_send(h.seg(kAck | kPsh).data(10, 5));
  (void)h.take();
  EXPECT_EQ(h.conn().readable(), 1000u);
  EXPECT_STATE(h, State::kEstablished);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 1 + 1000);
}

// A peer that puts its FIN in several places (broken or hostile): the
// lowest wins, as taking the segments in sequence order would decide, and
// no byte past it is delivered, whichever order they come in.
TEST(TcpStateEstablished, LowestOfSeveralFinsWins_Rfc9293_3_10_7_4_Eighth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  h.deliver(h.seg(kFin | kAck).seq_off(10));
  h.deliver(h.seg(kFin | kAck).seq_off(5));  // lower: moves the end down
  const auto beyond = h.conn().counters().dropped(SegmentDrop::kBeyondFin);
  h.deliver(h.seg(kFin | kAck).seq_off(20));  // higher: refused
  EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kBeyondFin), beyond + 1);
  EXPECT_EQ(h.take().size(), 3u);  // a duplicate ACK each
  EXPECT_STATE(h, State::kEstablished);
  h.deliver(h.seg(kAck | kPsh).data(20, 5));  // in order, past the held FIN
  EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kBeyondFin), beyond + 2);
  EXPECT_EQ(h.conn().readable(), 5u);
  EXPECT_STATE(h, State::kCloseWait);
  EXPECT_EQ(h.conn().rcv_nxt(), h.options().peer_iss + 1 + 6);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_EQ(out[0].h.ack, h.conn().rcv_nxt());
}

TEST(TcpStateEstablished, AckFieldRules_Rfc9293_3_10_7_4_Fifth) {
  run_cases(State::kEstablished,
            {
                {"an old ACK is ignored, the data it carries is not",
                 [](Harness& h) { return h.seg(kAck | kPsh).ack_off(-1000).data(10); },
                 State::kEstablished,
                 Reply::kAckOnly,
                 {},
                 10u},
                {"a new window is taken (SND.WL1/WL2 rule)",
                 [](Harness& h) { return h.seg().window(1000); },
                 State::kEstablished,
                 Reply::kNothing,
                 {},
                 {},
                 {},
                 [](Harness& h, const std::vector<Sent>&) { EXPECT_EQ(h.conn().snd_wnd(), 1000u); }},
            });
}

TEST(TcpStateEstablished, DuplicateSackBlockIsTolerated_Rfc2883_4) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  ASSERT_EQ(h.conn().send(pattern(1000, 1), h.now()).value(), 1000u);
  (void)h.take();
  h.deliver(h.seg());
  // The peer reports bytes it got twice, below the cumulative ACK.
  const SeqNum una = h.conn().snd_una();
  h.deliver(h.seg().sack(una - 500, una - 400));
  EXPECT_EQ(h.conn().counters().dsacks_received, 1u);
  EXPECT_STATE(h, State::kEstablished);
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.conn().counters().retransmits, 0u);
}

// RFC 9293 3.10.7.4 first: "If the RCV.WND is zero, no segments will be
// acceptable, but special allowance should be made to accept valid ACKs,
// URGs, and RSTs."
// ESTABLISHED with our receive window closed: the peer filled our
// 1000-byte buffer, which the application does not read; 100 bytes of ours
// are in flight.
void drive_to_zero_window(Harness& h) {
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  h.peer_send(h.seg(kAck | kPsh).data(1000));
  const auto out = h.take();
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.back().h.window, 0u);
  ASSERT_EQ(h.conn().send(pattern(100, 2), h.now()).value(), 100u);
  (void)h.take();
}

ConnectionConfig zero_window_config() {
  ConnectionConfig c = test_config();
  c.recv_buffer = 1000;
  return c;
}

TEST(TcpStateEstablished, ZeroReceiveWindow_Rfc9293_3_10_7_4_First) {
  const ConnectionConfig c = zero_window_config();
  struct ZeroCase {
    const char* what;
    std::function<Seg(Harness&)> make;
    State after;
    bool acked;           // an ACK goes back
    bool our_data_acked;  // SND.UNA moved
  };
  const ZeroCase cases[] = {
      {"an empty ACK at RCV.NXT: acceptable, its ACK taken", [](Harness& h) { return h.seg(); },
       State::kEstablished, false, true},
      {"RST at RCV.NXT: reset", [](Harness& h) { return h.seg(kRst); }, State::kClosed, false, false},
      {"RST one past RCV.NXT: outside a zero window, ignored",
       [](Harness& h) { return h.seg(kRst).seq_off(1); }, State::kEstablished, false, false},
  };
  for (const ZeroCase& z : cases) {
    SCOPED_TRACE(z.what);
    Harness h({}, c);
    ASSERT_NO_FATAL_FAILURE(drive_to_zero_window(h));
    const SeqNum una = h.conn().snd_una();
    h.deliver(z.make(h));
    const auto out = h.take();
    EXPECT_STATE(h, z.after);
    EXPECT_EQ(out.size(), z.acked ? 1u : 0u) << describe(out);
    if (z.after != State::kClosed) {
      EXPECT_EQ(h.conn().readable(), 1000u);
      EXPECT_EQ(h.conn().snd_una(), z.our_data_acked ? una + 100 : una);
    }
  }
}

// RFC 9293 3.10.7.4 first: a segment with data is not acceptable in a zero
// window, and "If an incoming segment is not acceptable, an acknowledgment
// should be sent in reply"; RFC 1122 4.2.2.17: the sender keeps probing
// "as long as the receiving TCP continues to send acknowledgments in
// response to the probe segments". The connection takes the ACK field of
// such a segment (the special allowance), drops its text (counted) and
// ACKs it, so a peer that probes with one octet of new data at RCV.NXT
// (RFC 9293 3.8.6.1; BSD, Windows and lwIP do; Linux probes with
// SND.UNA - 1) is answered while the window stays closed, and a lost
// window update is repeated.
TEST(TcpStateEstablished, DataProbeIntoAZeroWindowIsAcked_Rfc9293_3_10_7_4_First_Rfc1122_4_2_2_17) {
  for (const std::int64_t ack_back : {100, 0}) {  // without / with an ACK of our data
    SCOPED_TRACE(ack_back);
    Harness h({}, zero_window_config());
    ASSERT_NO_FATAL_FAILURE(drive_to_zero_window(h));
    const SeqNum una = h.conn().snd_una();
    const auto dropped = h.conn().counters().dropped(SegmentDrop::kZeroWindow);
    h.deliver(h.seg(kAck | kPsh).ack_off(-ack_back).data(1));
    const auto out = h.take();
    EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kZeroWindow), dropped + 1);
    EXPECT_EQ(out.size(), 1u) << describe(out);
    if (out.size() == 1) {
      EXPECT_EQ(out[0].h.ack, h.conn().rcv_nxt());
      EXPECT_EQ(out[0].h.window, 0u);
    }
    EXPECT_EQ(h.conn().readable(), 1000u);
    EXPECT_EQ(h.conn().snd_una(), ack_back == 0 ? una + 100 : una);
  }
}

// RFC 7323 3.2: "If a non-<RST> segment is received without a TSopt, a TCP
// SHOULD silently drop the segment." A SHOULD that deployed stacks break
// (some agree to timestamps and leave them off keep-alives or every later
// segment), so by default, as FreeBSD's tolerate_missing_ts and Linux, the
// segment is processed and counted (ConnectionConfig::drop_missing_timestamps
// says why); TS.Recent is left alone.
TEST(TcpStateEstablished, SegmentWithoutTimestampsIsProcessedAndCountedOnceAgreed_Rfc7323_3_2) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  ASSERT_TRUE(h.conn().timestamps_on());
  h.peer_send(h.seg(kAck | kPsh).no_timestamps().data(10));
  EXPECT_EQ(h.conn().readable(), 10u);
  EXPECT_EQ(h.conn().counters().ts_missing, 1u);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);  // the quick ACK of the data
  ASSERT_TRUE(out[0].h.options.timestamps);
  EXPECT_EQ(out[0].h.options.timestamps->tsecr, h.peer_ts());  // TS.Recent unchanged
  // PAWS still works on the segments that carry the option.
  h.deliver(h.seg(kAck | kPsh).tsval(h.peer_ts() - 1).data(10));
  EXPECT_EQ(h.conn().readable(), 10u);
}

// With drop_missing_timestamps, the RFC's SHOULD: dropped silently and
// counted; an RST without it still counts ("MUST NOT be dropped solely
// because it lacks TSopt").
TEST(TcpStateEstablished, SegmentWithoutTimestampsIsDroppedWhenConfigured_Rfc7323_3_2) {
  ConnectionConfig c = test_config();
  c.drop_missing_timestamps = true;
  Harness h({}, c);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  ASSERT_TRUE(h.conn().timestamps_on());
  h.deliver(h.seg(kAck | kPsh).no_timestamps().data(10));
  EXPECT_EQ(h.conn().readable(), 0u);
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kNoTimestamps), 1u);
  h.deliver(h.seg(kRst).no_timestamps());
  EXPECT_STATE(h, State::kClosed);
}

TEST(TcpStateEstablished, SequenceNumbersWrapByteExactBothWays_Rfc9293_3_4) {
  // Our data starts 1000 bytes before 2^32, the peer's 6 bytes before it.
  PeerOptions o;
  o.our_iss = SeqNum(0xfffffc17u);
  o.peer_iss = SeqNum(0xfffffff9u);
  Harness h(o);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  // The peer sends 3000 bytes in 300-byte segments, the second and third
  // swapped (the third is held across the wrap, SACKed, then delivered).
  const Bytes in = pattern(3000, 8);
  auto piece = [&](std::size_t i) {
    return Bytes(in.begin() + static_cast<std::ptrdiff_t>(300 * i),
                 in.begin() + static_cast<std::ptrdiff_t>(300 * (i + 1)));
  };
  h.peer_send(h.seg(kAck | kPsh).data(piece(0)));
  h.deliver(h.seg(kAck | kPsh).seq_off(300).data(piece(2)));
  auto dup = h.take();
  ASSERT_FALSE(dup.empty());
  EXPECT_EQ(dup.back().h.ack, h.options().peer_iss + 301);
  ASSERT_EQ(dup.back().h.options.sack_count, 1u);
  EXPECT_EQ(dup.back().h.options.sack_blocks[0].left, SeqNum(0xfffffffau + 600));  // past the wrap
  h.peer_send(h.seg(kAck | kPsh).data(piece(1)));
  h.peer_send(h.seg(kAck | kPsh).seq_off(300).data(piece(3)));  // after the held one
  for (std::size_t i = 4; i < 10; ++i) h.peer_send(h.seg(kAck | kPsh).data(piece(i)));
  Bytes got(3000);
  ASSERT_EQ(h.conn().receive(got, h.now()).value(), 3000u);
  EXPECT_EQ(got, in);
  EXPECT_EQ(h.conn().rcv_nxt(), SeqNum(0xfffffffau + 3000));
  EXPECT_EQ(h.conn().ooo_segments(), 0u);
  (void)h.take();
  // We send 3000 bytes across our own wrap; the peer ACKs each segment.
  const Bytes out = pattern(3000, 9);
  std::size_t queued = 0;
  for (int i = 0; i < 100 && h.peer_got().size() < out.size(); ++i) {
    if (queued < out.size()) queued += h.conn().send(std::span(out).subspan(queued), h.now()).value();
    (void)h.take();
    h.deliver(h.seg());
    h.advance(1ms);
  }
  EXPECT_EQ(h.peer_got(), out);
  (void)h.take();
  h.deliver(h.seg());
  EXPECT_EQ(h.conn().snd_una(), SeqNum(0xfffffc18u + 3000));
  EXPECT_EQ(h.conn().snd_una(), h.conn().snd_nxt());
  EXPECT_EQ(h.conn().counters().retransmits, 0u);
  EXPECT_EQ(h.conn().writable(), std::size_t{64} * 1024);
}

// --- FIN-WAIT-1 -----------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateFinWait1, State::kFinWait1)

TEST(TcpStateFinWait1, FinIsSentAfterShutdown_Rfc9293_3_10_4) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  (void)h.take();
  ASSERT_FALSE(h.conn().shutdown_write(h.now()));
  EXPECT_STATE(h, State::kFinWait1);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].h.flags.bits, kFin | kAck);
  EXPECT_EQ(out[0].h.seq, h.options().our_iss + 1);
  EXPECT_EQ(h.conn().snd_nxt(), h.options().our_iss + 2);
  EXPECT_EQ(h.conn().send(pattern(1, 1), h.now()).error(), errc(std::errc::broken_pipe));
}

TEST(TcpStateFinWait1, AckOfFinMovesToFinWait2_Rfc9293_3_10_7_4_Fifth) {
  run_cases(State::kFinWait1,
            {
                {"ACK of our FIN: FIN-WAIT-2", [](Harness& h) { return h.seg(); }, State::kFinWait2,
                 Reply::kNothing},
                {"ACK not covering our FIN: stays", [](Harness& h) { return h.seg().ack_off(-1); },
                 State::kFinWait1, Reply::kNothing},
                {"ACK of our FIN with data: FIN-WAIT-2, data taken",
                 [](Harness& h) { return h.seg(kAck | kPsh).data(10); },
                 State::kFinWait2,
                 Reply::kAckOnly,
                 {},
                 10u},
            });
}

TEST(TcpStateFinWait1, FinMovesToClosing_Rfc9293_3_10_7_4_Eighth) {
  run_cases(State::kFinWait1,
            {
                {"FIN not acknowledging ours: CLOSING, ACK",
                 [](Harness& h) { return h.seg(kFin | kAck).ack_off(-1); }, State::kClosing, Reply::kAckOnly},
                {"FIN acknowledging ours: TIME-WAIT at once, ACK",
                 [](Harness& h) { return h.seg(kFin | kAck); },
                 State::kTimeWait,
                 Reply::kAckOnly,
                 {},
                 {},
                 {},
                 [](Harness& h, const std::vector<Sent>&) {
                   EXPECT_EQ(h.conn().next_deadline(), h.now() + 2s);  // 2 MSL
                 }},
            });
}

TEST(TcpStateFinWait1, FinIsRetransmittedAfterTheRto_Rfc6298_5) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kFinWait1));
  (void)h.take();
  const Nanos rto = h.conn().rto();
  h.advance(rto - 1ns);
  EXPECT_TRUE(h.take().empty());
  h.advance(1ns);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].h.flags.bits, kFin | kAck);
  EXPECT_EQ(out[0].h.seq, h.options().our_iss + 1);
  EXPECT_STATE(h, State::kFinWait1);
}

// --- FIN-WAIT-2 -----------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateFinWait2, State::kFinWait2)

TEST(TcpStateFinWait2, FinMovesToTimeWait_Rfc9293_3_10_7_4_Eighth) {
  run_cases(State::kFinWait2, {
                                  {"FIN: TIME-WAIT, ACK of the FIN",
                                   [](Harness& h) { return h.seg(kFin | kAck); },
                                   State::kTimeWait,
                                   Reply::kAckOnly,
                                   {},
                                   {},
                                   {},
                                   [](Harness& h, const std::vector<Sent>& out) {
                                     ASSERT_EQ(out.size(), 1u);
                                     EXPECT_EQ(out[0].h.ack, h.peer_nxt() + 1);
                                     EXPECT_EQ(h.conn().next_deadline(), h.now() + 2s);
                                   }},
                                  {"data and FIN: taken, TIME-WAIT",
                                   [](Harness& h) { return h.seg(kFin | kAck).data(5); },
                                   State::kTimeWait,
                                   Reply::kAckOnly,
                                   {},
                                   5u},
                              });
}

TEST(TcpStateFinWait2, WaitsForThePeerWhileTheApplicationHoldsIt_Rfc9293_3_10_7_4) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kFinWait2));
  (void)h.take();
  EXPECT_EQ(h.conn().next_deadline(), Nanos::max());  // shutdown_write: no orphan timeout
  h.advance(1h);
  EXPECT_STATE(h, State::kFinWait2);
  EXPECT_TRUE(h.take().empty());
}

TEST(TcpStateFinWait2, OrphanIsDroppedAfterTheFinWait2Timeout) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kFinWait2));
  (void)h.take();
  h.conn().close(h.now());
  EXPECT_EQ(h.conn().next_deadline(), h.now() + 5s);  // test_config().fin_wait2_timeout
  h.advance(5s);
  EXPECT_STATE(h, State::kClosed);
  EXPECT_FALSE(h.conn().error());
}

TEST(TcpStateFinWait2, DataAfterCloseIsAnsweredWithReset_Rfc1122_4_2_2_13) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kFinWait2));
  (void)h.take();
  h.conn().close(h.now());
  h.deliver(h.seg(kAck | kPsh).data(10));
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_TRUE(out[0].h.flags.rst());
  EXPECT_EQ(out[0].h.seq, h.conn().snd_nxt());
  EXPECT_STATE(h, State::kClosed);
  EXPECT_EQ(h.conn().error(), errc(std::errc::connection_reset));
}

// --- CLOSE-WAIT -----------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateCloseWait, State::kCloseWait)

TEST(TcpStateCloseWait, RetransmittedFinIsAckedAgain_Rfc9293_3_10_7_4_First) {
  run_cases(State::kCloseWait, {
                                   {"the peer's FIN again: ACK, stays",
                                    [](Harness& h) { return h.seg(kFin | kAck).seq_off(-1); },
                                    State::kCloseWait,
                                    Reply::kAckOnly,
                                    {},
                                    {},
                                    SegmentDrop::kNotAcceptable},
                               });
}

TEST(TcpStateCloseWait, ApplicationReadsEofAndMaySendStill_Rfc9293_3_10_7_4_Eighth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kCloseWait));
  (void)h.take();
  std::array<std::byte, 8> buf{};
  EXPECT_EQ(h.conn().receive(buf, h.now()).value(), 0u);
  EXPECT_TRUE(h.conn().eof());
  const Bytes data = pattern(100, 4);
  EXPECT_EQ(h.conn().send(data, h.now()).value(), 100u);
  (void)h.take();
  EXPECT_EQ(h.peer_got(), data);
}

TEST(TcpStateCloseWait, ShutdownMovesToLastAck_Rfc9293_3_10_4) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kCloseWait));
  (void)h.take();
  ASSERT_FALSE(h.conn().shutdown_write(h.now()));
  EXPECT_STATE(h, State::kLastAck);
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].h.flags.bits, kFin | kAck);
  EXPECT_EQ(out[0].h.ack, h.peer_nxt());
}

// --- CLOSING --------------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateClosing, State::kClosing)

TEST(TcpStateClosing, AckOfFinMovesToTimeWait_Rfc9293_3_10_7_4_Fifth) {
  run_cases(
      State::kClosing,
      {
          {"ACK of our FIN: TIME-WAIT",
           [](Harness& h) { return h.seg(); },
           State::kTimeWait,
           Reply::kNothing,
           {},
           {},
           {},
           [](Harness& h, const std::vector<Sent>&) { EXPECT_EQ(h.conn().next_deadline(), h.now() + 2s); }},
          {"ACK not covering our FIN: stays", [](Harness& h) { return h.seg().ack_off(-1); }, State::kClosing,
           Reply::kNothing},
          {"the peer's FIN again: ACK, stays",
           [](Harness& h) { return h.seg(kFin | kAck).seq_off(-1).ack_off(-1); },
           State::kClosing,
           Reply::kAckOnly,
           {},
           {},
           SegmentDrop::kNotAcceptable},
      });
}

TEST(TcpStateClosing, FinIsRetransmittedAfterTheRto_Rfc6298_5) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kClosing));
  (void)h.take();
  h.advance(h.conn().rto());
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].h.flags.bits, kFin | kAck);
  EXPECT_EQ(out[0].h.seq, h.options().our_iss + 1);
  EXPECT_EQ(out[0].h.ack, h.peer_nxt());  // the peer's FIN acknowledged
}

// --- LAST-ACK -------------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateLastAck, State::kLastAck)

TEST(TcpStateLastAck, AckOfFinCloses_Rfc9293_3_10_7_4_Fifth) {
  run_cases(State::kLastAck,
            {
                {"ACK of our FIN: CLOSED, no error", [](Harness& h) { return h.seg(); }, State::kClosed,
                 Reply::kNothing},
                {"ACK not covering our FIN: stays", [](Harness& h) { return h.seg().ack_off(-1); },
                 State::kLastAck, Reply::kNothing},
                {"the peer's FIN again: ACK, stays",
                 [](Harness& h) { return h.seg(kFin | kAck).seq_off(-1).ack_off(-1); },
                 State::kLastAck,
                 Reply::kAckOnly,
                 {},
                 {},
                 SegmentDrop::kNotAcceptable},
            });
}

TEST(TcpStateLastAck, FinIsRetransmittedThenTheConnectionGivesUp_Rfc9293_3_8_3) {
  ConnectionConfig c = test_config();
  c.max_retransmits = 3;
  Harness h({}, c);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kLastAck));
  (void)h.take();
  int fins = 0;
  for (int i = 0; i < 100 && h.conn().state() == State::kLastAck; ++i) {
    h.advance(100ms);
    for (const Sent& s : h.take()) fins += s.h.flags.fin() ? 1 : 0;
  }
  EXPECT_EQ(fins, 3);
  EXPECT_STATE(h, State::kClosed);
  EXPECT_EQ(h.conn().error(), errc(std::errc::timed_out));
}

// --- TIME-WAIT ------------------------------------------------------------------

USNET_SYNCHRONIZED_STATE_TABLES(TcpStateTimeWait, State::kTimeWait)

TEST(TcpStateTimeWait, TwoMslEndIt_Rfc9293_3_10_7_4_Eighth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kTimeWait));
  (void)h.take();
  EXPECT_EQ(h.conn().next_deadline(), h.now() + 2s);  // 2 * msl
  h.advance(2s - 1ns);
  EXPECT_STATE(h, State::kTimeWait);
  h.advance(1ns);
  EXPECT_STATE(h, State::kClosed);
  EXPECT_FALSE(h.conn().error());
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.conn().next_deadline(), Nanos::max());
}

TEST(TcpStateTimeWait, RetransmittedFinIsAckedAndRestartsTheTimer_Rfc9293_3_10_7_4_Eighth) {
  for (const PeerOptions& o : {PeerOptions{}, at_the_wrap()}) {
    Harness h(o);
    ASSERT_NO_FATAL_FAILURE(h.drive(State::kTimeWait));
    (void)h.take();
    h.advance(1500ms);
    h.deliver(h.seg(kFin | kAck).seq_off(-1));  // our last ACK was lost
    const auto out = h.take();
    ASSERT_EQ(out.size(), 1u) << describe(out);
    EXPECT_EQ(out[0].h.flags.bits, kAck);
    EXPECT_EQ(out[0].h.ack, h.peer_nxt());
    EXPECT_EQ(h.conn().next_deadline(), h.now() + 2s);  // restarted
    h.advance(1999ms);
    EXPECT_STATE(h, State::kTimeWait);
    h.advance(1ms);
    EXPECT_STATE(h, State::kClosed);
  }
}

TEST(TcpStateTimeWait, ReachedFromClosingByTheAckOfOurFin_Rfc9293_3_10_7_4_Fifth) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kClosing));
  (void)h.take();
  h.deliver(h.seg());
  EXPECT_STATE(h, State::kTimeWait);
  h.advance(2s);
  EXPECT_STATE(h, State::kClosed);
}

// The FINs on the last sequence number before 2^32: the peer's FIN takes
// 0xffffffff (RCV.NXT wraps to 0), ours likewise (SND.NXT wraps to 0).
TEST(TcpStateTimeWait, FinsOnTheLastSequenceNumberBeforeTheWrap_Rfc9293_3_4) {
  PeerOptions o;
  o.our_iss = SeqNum(0xfffffffeu);
  o.peer_iss = SeqNum(0xfffffffeu);
  Harness h(o);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kTimeWait));
  EXPECT_EQ(h.conn().rcv_nxt(), SeqNum(0));
  EXPECT_EQ(h.conn().snd_nxt(), SeqNum(0));
  (void)h.take();
  h.deliver(h.seg(kFin | kAck).seq(SeqNum(0xffffffffu)));
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_EQ(out[0].h.ack, SeqNum(0));
  h.deliver(h.seg(kRst).seq(SeqNum(0)));
  EXPECT_STATE(h, State::kClosed);
  EXPECT_FALSE(h.conn().error());
}

TEST(TcpStateLastAck, AckOfAFinOnTheLastSequenceNumberCloses_Rfc9293_3_4) {
  PeerOptions o;
  o.our_iss = SeqNum(0xfffffffeu);
  o.peer_iss = SeqNum(0xfffffffdu);
  Harness h(o);
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kLastAck));
  (void)h.take();
  h.deliver(h.seg().ack(SeqNum(0xffffffffu)));  // not our FIN
  EXPECT_STATE(h, State::kLastAck);
  h.deliver(h.seg().ack(SeqNum(0)));
  EXPECT_STATE(h, State::kClosed);
  EXPECT_FALSE(h.conn().error());
}

// --- CLOSED ---------------------------------------------------------------------

TEST(TcpStateClosed, ConnectionIgnoresEverySegment_Rfc9293_3_10_7_1) {
  // A connection that has reached CLOSED sends nothing itself: resets for
  // closed connections are the layer's (TcpStateClosedPort below).
  for (const bool by_reset : {false, true}) {
    Harness h;
    if (by_reset) {
      ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
      h.deliver(h.seg(kRst));
      ASSERT_EQ(h.conn().state(), State::kClosed);
    } else {
      ASSERT_NO_FATAL_FAILURE(h.drive(State::kClosed));
    }
    (void)h.take();
    for (const int f : {int{kAck}, int{kSyn}, int{kRst}, kFin | kAck, kAck | kPsh}) {
      Seg s = h.seg(static_cast<std::uint8_t>(f));
      if ((f & kPsh) != 0) s.data(10);
      h.deliver(s);
    }
    EXPECT_TRUE(h.take().empty());
    EXPECT_EQ(h.conn().counters().dropped(SegmentDrop::kClosed), 5u);
    EXPECT_STATE(h, State::kClosed);
    EXPECT_EQ(h.conn().next_deadline(), Nanos::max());
    EXPECT_EQ(h.conn().error(), by_reset ? errc(std::errc::connection_reset) : std::error_code{});
  }
}

// RFC 9293 3.10.5, ABORT: SYN-SENT deletes the TCB; SYN-RECEIVED,
// ESTABLISHED, FIN-WAIT-1/2 and CLOSE-WAIT send <SEQ=SND.NXT><CTL=RST>;
// CLOSING, LAST-ACK and TIME-WAIT "respond with 'ok' and delete the TCB".
void expect_abort(State s, bool reset) {
  SCOPED_TRACE(to_string(s));
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(s));
  (void)h.take();
  const SeqNum nxt = h.conn().snd_nxt();
  h.conn().abort(h.now());
  const auto out = h.take();
  if (reset) {
    ASSERT_EQ(out.size(), 1u) << describe(out);
    EXPECT_EQ(out[0].h.flags.bits, kRst);
    EXPECT_EQ(out[0].h.seq, nxt);
  } else {
    EXPECT_TRUE(out.empty()) << describe(out);
  }
  EXPECT_STATE(h, State::kClosed);
  EXPECT_EQ(h.conn().next_deadline(), Nanos::max());
}

TEST(TcpStateClosed, AbortResetsWhereTheRfcSays_Rfc9293_3_10_5) {
  expect_abort(State::kSynSent, false);
  for (const State s :
       {State::kSynReceived, State::kEstablished, State::kFinWait1, State::kFinWait2, State::kCloseWait}) {
    expect_abort(s, true);
  }
  expect_abort(State::kTimeWait, false);
}

// RFC 9293 3.10.5 ABORT, "CLOSING STATE, LAST-ACK STATE, TIME-WAIT STATE:
// Respond with 'ok' and delete the TCB, enter CLOSED state, and return."
// Linux (tcp_need_reset) does not reset from these states either.
TEST(TcpStateClosed, AbortInClosingOrLastAckSendsNoReset_Rfc9293_3_10_5) {
  expect_abort(State::kClosing, false);
  expect_abort(State::kLastAck, false);
}

// CLOSE (not ABORT) with unread data still tells the peer the data was lost
// (RFC 2525 2.17), in LAST-ACK too, as Linux's tcp_close.
TEST(TcpStateClosed, CloseWithUnreadDataInLastAckResets_Rfc2525_2_17) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.drive(State::kEstablished));
  h.peer_send(h.seg(kAck | kPsh | kFin).data(10));
  ASSERT_FALSE(h.conn().shutdown_write(h.now()));
  (void)h.take();
  ASSERT_EQ(h.conn().state(), State::kLastAck);
  ASSERT_EQ(h.conn().readable(), 10u);
  const SeqNum nxt = h.conn().snd_nxt();
  h.conn().close(h.now());
  const auto out = h.take();
  ASSERT_EQ(out.size(), 1u) << describe(out);
  EXPECT_EQ(out[0].h.flags.bits, kRst);
  EXPECT_EQ(out[0].h.seq, nxt);
  EXPECT_STATE(h, State::kClosed);
}

// --- LISTEN and CLOSED without a connection: the layer ------------------------

// Our stack (198.18.0.2) with a TcpLayer; the test plays the peer
// (198.18.0.1) with crafted frames.
class LayerPeer {
 public:
  LayerPeer() {
    TcpConfig c;
    c.seed = 3;
    c.connection = test_config();
    layer_ = std::move(*TcpLayer::create(*us_.iface, *pool_, us_.owner, c));
    net::test::learn_peer(us_);
  }
  ~LayerPeer() { layer_.reset(); }
  LayerPeer(const LayerPeer&) = delete;
  LayerPeer& operator=(const LayerPeer&) = delete;
  TcpLayer& layer() { return *layer_; }

  void inject(const TcpRepr& h, std::span<const std::byte> payload = {}) {
    Bytes seg(h.buffer_len() + payload.size());
    std::copy(payload.begin(), payload.end(), seg.begin() + static_cast<std::ptrdiff_t>(h.buffer_len()));
    TcpRepr hh = h;
    hh.payload_len = static_cast<std::uint32_t>(payload.size());
    ASSERT_TRUE(hh.emit(seg, wire::PseudoHeader::v4(net::test::kPeerIp, net::test::kOurIp)));
    net::test::IpParams ip;
    ip.protocol = 6;
    ASSERT_TRUE(us_.link.inject_rx(net::test::ip_frame(ip, seg)));
    us_.poll();
  }
  // The TCP segments our stack sent.
  std::vector<TcpRepr> sent() {
    std::vector<TcpRepr> out;
    for (const auto& frame : us_.sent()) {
      if (frame.size() < 14) continue;
      auto ip = wire::Ipv4View::make(std::span(frame).subspan(14));
      if (!ip || ip->protocol() != 6) continue;
      auto v = wire::TcpView::make(ip->payload());
      EXPECT_TRUE(v);
      if (!v) continue;
      auto r = TcpRepr::parse(*v, wire::PseudoHeader::v4(ip->src(), ip->dst()));
      EXPECT_TRUE(r);
      if (r) out.push_back(*r);
    }
    return out;
  }
  static TcpRepr segment(std::uint8_t flags, std::uint16_t dst_port = 80) {
    TcpRepr h;
    h.src_port = 5555;
    h.dst_port = dst_port;
    h.seq = SeqNum(0x12345678u);
    h.ack = SeqNum(0x9abcdef0u);
    h.flags = TcpFlags{flags};
    h.window = 65535;
    return h;
  }

 private:
  net::test::TestPool pool_{4};
  net::test::Host us_{pool_};
  std::unique_ptr<TcpLayer> layer_;
};

TEST(TcpStateListen, SynMakesASynReceivedConnection_Rfc9293_3_10_7_2_Third) {
  LayerPeer p;
  auto listener = p.layer().listen({{}, 80});
  ASSERT_TRUE(listener);
  TcpRepr syn = LayerPeer::segment(kSyn);
  syn.options.mss = 1460;
  p.inject(syn);
  const auto out = p.sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags.bits, kSyn | kAck);
  EXPECT_EQ(out[0].ack, syn.seq + 1);
  EXPECT_EQ(out[0].dst_port, 5555);
  EXPECT_EQ(p.layer().connection_count(), 1u);
  EXPECT_EQ(p.layer().counters().passive_opens, 1u);
  EXPECT_EQ(listener->pending(), 0u);  // not established yet
}

TEST(TcpStateListen, SegmentArrival_Rfc9293_3_10_7_2) {
  struct ListenCase {
    const char* what;
    std::uint8_t flags;
    std::size_t data;
    bool reset;  // answered with <SEQ=SEG.ACK><CTL=RST>
  };
  const ListenCase cases[] = {
      {"RST: ignored (first)", kRst, 0, false},
      {"RST,ACK: ignored (first)", kRst | kAck, 0, false},
      {"ACK: reset <SEQ=SEG.ACK> (second)", kAck, 0, true},
      {"ACK with data: reset <SEQ=SEG.ACK> (second)", kAck | kPsh, 10, true},
      {"SYN,ACK: reset <SEQ=SEG.ACK> (second)", kSyn | kAck, 0, true},
      {"FIN,ACK: reset <SEQ=SEG.ACK> (second)", kFin | kAck, 0, true},
  };
  for (const ListenCase& c : cases) {
    SCOPED_TRACE(c.what);
    LayerPeer p;
    auto listener = p.layer().listen({{}, 80});
    ASSERT_TRUE(listener);
    const TcpRepr h = LayerPeer::segment(c.flags);
    const Bytes data = pattern(c.data, 2);
    p.inject(h, data);
    const auto out = p.sent();
    if (c.reset) {
      ASSERT_EQ(out.size(), 1u);
      EXPECT_EQ(out[0].flags.bits, kRst);
      EXPECT_EQ(out[0].seq, h.ack);
    } else {
      EXPECT_TRUE(out.empty());
    }
    EXPECT_EQ(p.layer().connection_count(), 0u);
    EXPECT_EQ(listener->pending(), 0u);
  }
}

// RFC 9293 3.10.7.2 fourth: "Any other control or text-bearing segment (not
// containing SYN) must have an ACK and thus would have been discarded by
// the ACK processing in the second step, unless it was first discarded by
// RST checking in the first step. [...] drop the segment and return."
// A listener's port drops a segment with neither SYN, ACK nor RST (a bare
// FIN, or data without ACK), counted, where a port with no listener would
// answer with RST,ACK (3.10.7.1). Linux drops these silently in LISTEN too.
TEST(TcpStateListen, SegmentWithoutSynAckOrRstIsDroppedSilently_Rfc9293_3_10_7_2_Fourth) {
  for (const std::uint8_t flags : {kFin, kPsh, std::uint8_t{0}}) {
    LayerPeer p;
    auto listener = p.layer().listen({{}, 80});
    ASSERT_TRUE(listener);
    const Bytes data = pattern(10, 3);
    p.inject(LayerPeer::segment(flags), data);
    const auto out = p.sent();
    EXPECT_TRUE(out.empty()) << "flags " << int{flags} << ": " << out.size() << " segment(s) sent";
    EXPECT_EQ(p.layer().connection_count(), 0u);
    EXPECT_EQ(p.layer().counters().dropped(TcpDropReason::kNoSynNoAck), 1u);
    EXPECT_EQ(p.layer().counters().dropped(TcpDropReason::kNoConnection), 0u);
  }
}

TEST(TcpStateClosedPort, SegmentsForNoConnectionGetResets_Rfc9293_3_10_7_1) {
  struct ClosedCase {
    const char* what;
    std::uint8_t flags;
    std::size_t data;
  };
  const ClosedCase cases[] = {
      {"SYN", kSyn, 0},
      {"SYN with data", kSyn, 10},
      {"data without ACK", kPsh, 10},
      {"FIN with data", kFin, 7},
      {"ACK", kAck, 0},
      {"ACK with data", kAck | kPsh, 10},
      {"RST", kRst, 0},
      {"RST,ACK", kRst | kAck, 0},
  };
  for (const ClosedCase& c : cases) {
    SCOPED_TRACE(c.what);
    LayerPeer p;
    const TcpRepr h = LayerPeer::segment(c.flags, 81);
    const Bytes data = pattern(c.data, 4);
    p.inject(h, data);
    const auto out = p.sent();
    if ((c.flags & kRst) != 0) {
      EXPECT_TRUE(out.empty());  // "An incoming segment containing a RST is discarded."
      continue;
    }
    ASSERT_EQ(out.size(), 1u);
    if ((c.flags & kAck) != 0) {
      EXPECT_EQ(out[0].flags.bits, kRst);  // <SEQ=SEG.ACK><CTL=RST>
      EXPECT_EQ(out[0].seq, h.ack);
    } else {
      // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
      const std::uint32_t len = static_cast<std::uint32_t>(c.data) + ((c.flags & kSyn) != 0 ? 1u : 0u) +
                                ((c.flags & kFin) != 0 ? 1u : 0u);
      EXPECT_EQ(out[0].flags.bits, kRst | kAck);
      EXPECT_EQ(out[0].seq, SeqNum(0));
      EXPECT_EQ(out[0].ack, h.seq + len);
    }
    EXPECT_EQ(p.layer().counters().dropped(TcpDropReason::kNoConnection), 1u);
  }
}

}  // namespace
}  // namespace usnet::tcp
