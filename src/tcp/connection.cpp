#include "usnet/tcp/connection.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <utility>

namespace usnet::tcp {

namespace {

using std::chrono::milliseconds;
using wire::TcpFlags;
using wire::TcpRepr;

std::error_code err(int e) { return {e, std::generic_category()}; }

bool synchronized(State s) {
  return s != State::kClosed && s != State::kListen && s != State::kSynSent && s != State::kSynReceived;
}

// States in which this side may still send data or its FIN.
bool may_send(State s) {
  return s == State::kEstablished || s == State::kCloseWait || s == State::kFinWait1 ||
         s == State::kClosing || s == State::kLastAck;
}

// RFC 9293 3.4: the sequence space a segment occupies.
std::uint32_t seg_len(const TcpRepr& seg) {
  return seg.payload_len + (seg.flags.syn() ? 1u : 0u) + (seg.flags.fin() ? 1u : 0u);
}

// RFC 7323 5.3: timestamps compare modulo 2^32 like sequence numbers.
bool ts_before(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

// RFC 9293 3.8.6.2.1: the sender's override timeout, 0.1 to 1 s.
constexpr Nanos kSwsOverride = std::chrono::milliseconds(200);

}  // namespace

const char* to_string(State s) noexcept {
  switch (s) {
    case State::kClosed:
      return "CLOSED";
    case State::kListen:
      return "LISTEN";
    case State::kSynSent:
      return "SYN-SENT";
    case State::kSynReceived:
      return "SYN-RECEIVED";
    case State::kEstablished:
      return "ESTABLISHED";
    case State::kFinWait1:
      return "FIN-WAIT-1";
    case State::kFinWait2:
      return "FIN-WAIT-2";
    case State::kCloseWait:
      return "CLOSE-WAIT";
    case State::kClosing:
      return "CLOSING";
    case State::kLastAck:
      return "LAST-ACK";
    case State::kTimeWait:
      return "TIME-WAIT";
  }
  return "?";
}

const char* to_string(EcnMode m) noexcept {
  switch (m) {
    case EcnMode::kOff:
      return "off";
    case EcnMode::kAccept:
      return "accept";
    case EcnMode::kOn:
      return "on";
  }
  return "?";
}

const char* to_string(SegmentDrop d) noexcept {
  switch (d) {
    case SegmentDrop::kNotAcceptable:
      return "outside the receive window";
    case SegmentDrop::kPaws:
      return "old timestamp (PAWS)";
    case SegmentDrop::kRstOutOfWindow:
      return "rst outside the window";
    case SegmentDrop::kRstChallenged:
      return "rst in the window, not at rcv.nxt (challenged)";
    case SegmentDrop::kSynChallenged:
      return "syn on a synchronized connection (challenged)";
    case SegmentDrop::kAckUnacceptable:
      return "ack outside the send window";
    case SegmentDrop::kNoAck:
      return "no ack bit";
    case SegmentDrop::kOutOfOrder:
      return "out of order (not queued)";
    case SegmentDrop::kBadSynSentAck:
      return "ack in syn-sent for nothing we sent";
    case SegmentDrop::kClosed:
      return "connection closed";
    case SegmentDrop::kZeroWindow:
      return "text into a zero receive window (acked)";
    case SegmentDrop::kBeyondFin:
      return "text or a fin past the peer's fin";
    case SegmentDrop::kNoTimestamps:
      return "no timestamps once agreed";
    case SegmentDrop::kNoBuffer:
      return "no pool buffer for in-order text";
    case SegmentDrop::kCount:
      break;
  }
  return "?";
}

// A connection made without a pool (tests, tools that need no shared memory)
// keeps its send and receive buffers in a pool of its own: private anonymous
// memory reserved for the most buffers both chains can hold, whose pages are
// touched only as buffers are first used.
struct Connection::OwnPool {
  static constexpr std::size_t kBufferSize = 2048;
  static constexpr std::size_t kSegmentBytes = 64 * 1024;

  static Expected<std::unique_ptr<OwnPool>, std::error_code> make(const ConnectionConfig& c) {
    const std::size_t half = kBufferSize / 2;  // a chain's collapse_below
    const std::size_t buffers = 2 * (c.send_buffer / half) + 2 * (c.recv_buffer / half) + 8;
    const std::size_t per_segment = kSegmentBytes / kBufferSize;
    // Capped at the pool's reach (64 MiB of buffers): chains larger than
    // that take less when the private pool runs dry, as with any pool.
    const std::size_t segments =
        std::min<std::size_t>((buffers + per_segment - 1) / per_segment, mem::PacketPool::kMaxSegments);
    auto own = std::make_unique<OwnPool>();
    own->bytes = segments * kSegmentBytes;
    void* m =
        mmap(nullptr, own->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return unexpected(err(ENOMEM));
    own->memory = static_cast<std::byte*>(m);
    auto pool = mem::PacketPool::create({kBufferSize, kSegmentBytes, static_cast<std::uint32_t>(segments)},
                                        std::span(own->memory, own->bytes));
    if (!pool) return unexpected(pool.error());
    own->pool.emplace(std::move(*pool));
    const auto n = static_cast<std::uint32_t>(segments * per_segment);
    auto o = own->pool->add_owner({0, n});
    if (!o) return unexpected(o.error());
    own->owner = *o;
    return own;
  }
  OwnPool() = default;
  OwnPool(const OwnPool&) = delete;
  OwnPool& operator=(const OwnPool&) = delete;
  ~OwnPool() {
    if (pool) (void)pool->remove_owner(owner);
    pool.reset();
    if (memory != nullptr) munmap(memory, bytes);
  }

  std::byte* memory = nullptr;
  std::size_t bytes = 0;
  std::optional<mem::PacketPool> pool;
  mem::OwnerId owner;
};

Connection::~Connection() = default;

Expected<std::unique_ptr<Connection>, std::error_code> Connection::create(
    const ConnectionConfig& config, const Endpoints& endpoints, SegmentSink& sink, std::uint64_t random,
    mem::PacketPool* pool, mem::OwnerId owner) {
  if (!valid_buffer_size(config.send_buffer) || !valid_buffer_size(config.recv_buffer) ||
      config.mss < config.min_mss || config.min_mss < 64 ||
      config.window_shift > wire::TcpOptions::kMaxWindowScale || config.min_rto <= Nanos{0} ||
      config.max_rto < config.min_rto || config.initial_rto < config.min_rto || config.msl < Nanos{0}) {
    return unexpected(err(EINVAL));
  }
  CongestionConfig cc_config;
  cc_config.smss = config.mss;
  auto cc = make_congestion_control(config.congestion, cc_config);
  if (!cc) return unexpected(cc.error());
  std::optional<OooQueue> ooo;
  if (pool != nullptr) {
    OooConfig oc;
    oc.max_entries = std::max<std::uint32_t>(config.ooo_max_segments, 1);
    oc.max_bytes = static_cast<std::uint32_t>(config.recv_buffer);
    auto q = OooQueue::create(oc, *pool, owner);
    if (!q) return unexpected(q.error());
    ooo.emplace(std::move(*q));
  }
  std::unique_ptr<OwnPool> own;
  if (pool == nullptr) {
    auto p = OwnPool::make(config);
    if (!p) return unexpected(p.error());
    own = std::move(*p);
  }
  return std::unique_ptr<Connection>(new Connection(config, endpoints, sink, random, std::move(*cc),
                                                    std::move(ooo), pool, owner, std::move(own)));
}

Connection::Connection(const ConnectionConfig& config, const Endpoints& endpoints, SegmentSink& sink,
                       std::uint64_t random, std::unique_ptr<CongestionControl> cc,
                       std::optional<OooQueue> ooo, mem::PacketPool* pool, mem::OwnerId owner,
                       std::unique_ptr<OwnPool> own_pool)
    : config_(config),
      ep_(endpoints),
      sink_(&sink),
      cc_(std::move(cc)),
      ooo_(std::move(ooo)),
      pool_(pool),
      owner_(owner),
      own_pool_(std::move(own_pool)),
      chain_pool_(pool != nullptr ? pool : &*own_pool_->pool),
      chain_owner_(pool != nullptr ? owner : own_pool_->owner),
      send_(chain_pool_, chain_owner_, config.send_buffer, chain_pool_->buffer_size() / 2),
      recv_(chain_pool_, chain_owner_, config.recv_buffer, chain_pool_->buffer_size() / 2),
      gather_(2 * (std::size_t{config.mss} / std::max<std::size_t>(chain_pool_->buffer_size() / 2, 1)) + 4),
      rto_(config.initial_rto),
      quick_acks_left_(config.quick_acks),
      rng_(random | 1) {
  ts_offset_ = static_cast<std::uint32_t>(next_random());
}

std::uint64_t Connection::next_random() noexcept {
  // xorshift64*: enough to make the challenge-ACK allowance unpredictable
  // from outside when seeded from a random source.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545f4914f6cdd1dull;
}

bool Connection::established() const noexcept { return synchronized(state_) && state_ != State::kTimeWait; }

std::uint32_t Connection::ts_now(Nanos now) const noexcept {
  // RFC 7323 5.4: a clock of 1 ms ticks, offset per connection (RFC 7323 6).
  return static_cast<std::uint32_t>(std::chrono::duration_cast<milliseconds>(now).count()) + ts_offset_;
}

std::uint32_t Connection::flight_size() const noexcept { return distance(snd_una_, snd_max_); }

// ---------------------------------------------------------------------------
// Opening

std::error_code Connection::connect(SeqNum iss, Nanos now) {
  if (state_ != State::kClosed || error_) return err(EISCONN);
  iss_ = iss;
  snd_una_ = iss;
  snd_nxt_ = iss;
  snd_max_ = iss;
  recover_ = iss;
  state_ = State::kSynSent;
  send_syn(false, now);
  return {};
}

std::error_code Connection::accept_syn(const TcpRepr& syn, SeqNum iss, Nanos now) {
  if (state_ != State::kClosed || !syn.flags.syn() || syn.flags.ack() || syn.flags.rst()) return err(EINVAL);
  irs_ = syn.seq;
  rcv_nxt_ = syn.seq + 1;
  rcv_adv_ = rcv_nxt_;
  take_peer_options(syn);
  // RFC 3168 6.1.1: an ECN-setup SYN has ECE and CWR both set (a SYN with
  // only one of them, as from a host that reflects reserved bits, is not);
  // then our SYN,ACK carries ECE alone and the connection is ECN-capable.
  ecn_on_ = config_.ecn != EcnMode::kOff && syn.flags.ece() && syn.flags.cwr();
  iss_ = iss;
  snd_una_ = iss;
  snd_nxt_ = iss;
  snd_max_ = iss;
  recover_ = iss;
  // RFC 7323 2.2: the window of a SYN is never scaled.
  snd_wnd_ = syn.window;
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = syn.seq;
  snd_wl2_ = iss;
  state_ = State::kSynReceived;
  send_syn(true, now);
  return {};
}

std::error_code Connection::accept_cookie(const TcpRepr& ack, std::span<const std::byte> payload, SeqNum iss,
                                          std::uint16_t mss, Nanos now, InboundBuffer* buffer) {
  if (state_ != State::kClosed || !ack.flags.ack() || ack.flags.syn() || ack.flags.rst()) return err(EINVAL);
  iss_ = iss;
  snd_una_ = iss + 1;
  snd_nxt_ = snd_una_;
  snd_max_ = snd_una_;
  recover_ = snd_una_;
  irs_ = ack.seq - 1;
  rcv_nxt_ = ack.seq;
  // The window our SYN,ACK offered (unscaled, as sent in it).
  rcv_adv_ = rcv_nxt_ + static_cast<std::uint32_t>(std::min<std::size_t>(recv_.free_space(), 0xffff));
  snd_shift_ = rcv_shift_ = 0;
  ts_on_ = false;
  sack_on_ = false;
  // The cookie's SYN,ACK did not carry ECE: no ECN (RFC 3168 6.1.1).
  ecn_on_ = false;
  snd_mss_ = std::clamp<std::uint16_t>(mss, config_.min_mss, config_.mss);
  cc_->set_smss(snd_mss_);
  snd_wnd_ = ack.window;
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = ack.seq;
  snd_wl2_ = ack.ack;
  state_ = State::kEstablished;
  on_segment_synchronized(ack, payload, now, buffer);
  return {};
}

void Connection::take_peer_options(const TcpRepr& syn) {
  const auto& o = syn.options;
  // RFC 9293 3.7.1: 536 when the peer names none; never more than our own
  // MTU allows, never below min_mss (a peer cannot make us send tiny
  // segments: ROBUSTNESS 10).
  // RFC 7323 2.2: scaling only when both sides sent the option.
  if (config_.window_scaling && o.window_scale) {
    snd_shift_ = *o.window_scale;
    rcv_shift_ = config_.window_shift;
  } else {
    snd_shift_ = 0;
    rcv_shift_ = 0;
  }
  if (config_.timestamps && o.timestamps) {
    ts_on_ = true;
    ts_recent_ = o.timestamps->tsval;
  } else {
    ts_on_ = false;
  }
  sack_on_ = config_.sack && ooo_.has_value() && o.sack_permitted;
  std::uint16_t mss = o.mss.value_or(536);
  mss = std::clamp<std::uint16_t>(mss, config_.min_mss, config_.mss);
  // RFC 9293 3.7.1: the options every segment carries come out of the MSS
  // (the timestamps option takes 12 bytes with its padding).
  if (ts_on_) mss = static_cast<std::uint16_t>(std::max<int>(mss - 12, config_.min_mss));
  snd_mss_ = mss;
  cc_->set_smss(snd_mss_);
}

// ---------------------------------------------------------------------------
// Segment arrival (RFC 9293 3.10.7)

void Connection::on_segment(const TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                            InboundBuffer* buffer, IpEcn ecn) {
  ++counters_.segments_in;
  payload = payload.first(std::min<std::size_t>(payload.size(), seg.payload_len));
  switch (state_) {
    case State::kClosed:
    case State::kListen:
      // The layer answers segments for closed connections (3.10.7.1).
      counters_.drop(SegmentDrop::kClosed);
      return;
    case State::kSynSent:
      on_segment_syn_sent(seg, payload, now, ecn);
      return;
    default:
      on_segment_synchronized(seg, payload, now, buffer, ecn);
      return;
  }
}

// RFC 9293 3.10.7.3, with RFC 5961 3.2's rule for RST.
void Connection::on_segment_syn_sent(const TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                                     IpEcn ecn) {
  // First, check the ACK bit.
  const bool ack = seg.flags.ack();
  if (ack && (seg.ack <= iss_ || seg.ack > snd_max_)) {
    counters_.drop(SegmentDrop::kBadSynSentAck);
    if (!seg.flags.rst()) send_rst(seg.ack, now);
    return;
  }
  // Second, the RST bit: only with an acceptable ACK (otherwise anyone
  // could kill a connection being opened).
  if (seg.flags.rst()) {
    if (ack) {
      set_closed(err(ECONNREFUSED));
    } else {
      counters_.drop(SegmentDrop::kRstOutOfWindow);
    }
    return;
  }
  // Fourth, the SYN bit.
  if (!seg.flags.syn()) {
    counters_.drop(SegmentDrop::kNoAck);
    return;
  }
  irs_ = seg.seq;
  rcv_nxt_ = seg.seq + 1;
  // The window our SYN offered (unscaled, as sent in it: nothing has been
  // received since to take from it).
  rcv_adv_ = rcv_nxt_ + static_cast<std::uint32_t>(std::min<std::size_t>(recv_.free_space(), 0xffff));
  take_peer_options(seg);
  // RFC 3168 6.1.1: ECN if our SYN asked and this is an ECN-setup SYN,ACK
  // (ECE without CWR). A SYN without ACK (simultaneous open) sets up no ECN.
  ecn_on_ = ack && ecn_syn_asked_ && seg.flags.ece() && !seg.flags.cwr();
  if (ack) {
    snd_una_ = seg.ack;
    if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
  }
  if (snd_una_ > iss_) {
    // Our SYN is acknowledged: ESTABLISHED.
    state_ = State::kEstablished;
    snd_wnd_ = seg.window;  // never scaled in a SYN (RFC 7323 2.2)
    max_snd_wnd_ = snd_wnd_;
    snd_wl1_ = seg.seq;
    snd_wl2_ = seg.ack;
    if (rtt_timing_) {  // Karn: only a SYN sent once gives a sample
      update_rtt(now - rtt_start_);
      rtt_timing_ = false;
    }
    retransmits_ = 0;
    rto_deadline_ = Nanos::max();
    if (ecn_on_) counters_.ecn_negotiated = 1;
    if (!payload.empty() || seg.flags.fin()) {
      // RFC 9293 3.10.7.3 fourth: "If there are other controls or text in
      // the segment, then continue processing at the sixth step under
      // Section 3.10.7.4": the text after the SYN is delivered (trimmed to
      // the window our SYN offered) and a FIN after it taken, and the one
      // ACK the handshake sends at once covers them too.
      TcpRepr rest = seg;
      rest.seq = seg.seq + 1;
      rest.flags = TcpFlags{static_cast<std::uint8_t>(seg.flags.bits & ~TcpFlags::kSyn)};
      receive_text(rest, payload, now, nullptr, ecn, false, true);
      return;
    }
    send_ack(now);
    output(now);
    return;
  }
  // Simultaneous open: SYN-RECEIVED, our SYN again with an ACK. Text on
  // the SYN is not kept for later (RFC 9293 3.10.7.3 fourth would queue it
  // until ESTABLISHED): the peer sends it again.
  state_ = State::kSynReceived;
  snd_wnd_ = seg.window;
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = seg.seq;
  snd_nxt_ = iss_;
  send_syn(true, now);
}

bool Connection::acceptable(const TcpRepr& seg, std::uint32_t len) const noexcept {
  // RFC 9293 3.10.7.4 first: the four cases.
  const std::uint32_t wnd = distance(rcv_nxt_, rcv_adv_) > (1u << 31) ? 0 : distance(rcv_nxt_, rcv_adv_);
  const SeqNum end = rcv_nxt_ + wnd;
  auto in_window = [&](SeqNum s) { return rcv_nxt_ <= s && s < end; };
  if (len == 0) return wnd == 0 ? seg.seq == rcv_nxt_ : in_window(seg.seq);
  if (wnd == 0) return false;
  return in_window(seg.seq) || in_window(seg.seq + (len - 1));
}

void Connection::on_segment_synchronized(const TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                                         InboundBuffer* buffer, IpEcn ecn) {
  std::uint32_t len = seg_len(seg);
  // RFC 7323 3.2: a non-RST segment without TSopt once timestamps are
  // agreed "SHOULD" be dropped silently; by default it is processed and
  // counted (see ConnectionConfig::drop_missing_timestamps for why).
  if (ts_on_ && !seg.options.timestamps && !seg.flags.rst()) {
    if (config_.drop_missing_timestamps) {
      counters_.drop(SegmentDrop::kNoTimestamps);
      return;
    }
    ++counters_.ts_missing;
  }
  // RFC 7323 5.3 R1: PAWS, before anything else (an RST is still judged by
  // its sequence number: R1 exempts it so that a peer with a reset clock
  // can still reset).
  if (ts_on_ && seg.options.timestamps && !seg.flags.rst() &&
      ts_before(seg.options.timestamps->tsval, ts_recent_)) {
    counters_.drop(SegmentDrop::kPaws);
    send_ack(now);
    return;
  }

  // First, check the sequence number.
  bool zero_window_text = false;
  if (!acceptable(seg, len)) {
    // RFC 9293 3.10.7.4 first: "If the RCV.WND is zero, no segments will be
    // acceptable, but special allowance should be made to accept valid
    // ACKs": the ACK field of a segment at RCV.NXT is still processed, its
    // text is not (and the ACK that step seven sends answers it).
    const bool zero_window_ack =
        seg.seq == rcv_nxt_ && rcv_adv_ == rcv_nxt_ && seg.flags.ack() && !seg.flags.rst();
    if (!zero_window_ack) {
      if (state_ == State::kTimeWait && seg.flags.fin() && !seg.flags.rst()) {
        // The peer's FIN again (our last ACK was lost): ACK it and restart
        // the 2 MSL timeout (RFC 9293 3.10.7.4 eighth, TIME-WAIT).
        time_wait_deadline_ = now + 2 * config_.msl;
      }
      if (seg.flags.rst()) {
        counters_.drop(SegmentDrop::kRstOutOfWindow);
      } else {
        counters_.drop(SegmentDrop::kNotAcceptable);
        send_ack(now);
      }
      return;
    }
    // A zero-window probe with data (RFC 9293 3.8.6.1: one octet of new
    // data at RCV.NXT, as BSD, Windows and lwIP probe) is not acceptable:
    // "an acknowledgment should be sent in reply", and RFC 1122 4.2.2.17:
    // the sender probes "as long as the receiving TCP continues to send
    // acknowledgments in response to the probe segments" (a lost window
    // update is repeated only this way). A bare FIN at RCV.NXT takes no
    // buffer space and is still taken, as Linux does (tcp_data_queue).
    zero_window_text = seg.payload_len > 0;
    payload = {};
    len = 0;
  }

  // Anything acceptable from the peer shows it alive.
  keepalive_sent_ = 0;
  arm_keepalive(now);

  // RFC 7323 5.3 R3: TS.Recent from a segment that covers Last.ACK.sent.
  if (ts_on_ && seg.options.timestamps && seg.seq <= rcv_nxt_ &&
      !ts_before(seg.options.timestamps->tsval, ts_recent_)) {
    ts_recent_ = seg.options.timestamps->tsval;
  }

  // Second, check the RST bit (RFC 5961 3.2).
  if (seg.flags.rst()) {
    if (seg.seq != rcv_nxt_) {
      counters_.drop(SegmentDrop::kRstChallenged);
      send_challenge_ack(now);
      return;
    }
    switch (state_) {
      case State::kSynReceived:
        // A passive open goes back to LISTEN: for us the listener is the
        // layer's, so this connection just ends; an active one is refused.
        set_closed(err(ECONNREFUSED));
        return;
      case State::kClosing:
      case State::kLastAck:
      case State::kTimeWait:
        set_closed({});
        return;
      default:
        set_closed(err(ECONNRESET));
        return;
    }
  }

  // Fourth, check the SYN bit (RFC 5961 4.2: a challenge ACK in every
  // synchronized state, never a reset).
  if (seg.flags.syn()) {
    counters_.drop(SegmentDrop::kSynChallenged);
    send_challenge_ack(now);
    return;
  }

  // Fifth, check the ACK field.
  if (!seg.flags.ack()) {
    counters_.drop(SegmentDrop::kNoAck);
    return;
  }
  if (state_ == State::kSynReceived) {
    if (snd_una_ < seg.ack && seg.ack <= snd_max_) {
      state_ = State::kEstablished;
      snd_wnd_ = std::uint32_t{seg.window} << snd_shift_;
      max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
      snd_wl1_ = seg.seq;
      snd_wl2_ = seg.ack;
      if (ecn_on_) counters_.ecn_negotiated = 1;
      if (shut_wr_) state_ = State::kFinWait1;  // closed before the handshake ended
    } else {
      counters_.drop(SegmentDrop::kAckUnacceptable);
      send_rst(seg.ack, now);
      return;
    }
  }
  if (!process_ack(seg, now)) return;
  if (state_ == State::kClosed) return;
  receive_text(seg, payload, now, buffer, ecn, zero_window_text, false);
}

void Connection::receive_text(const TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                              InboundBuffer* buffer, IpEcn ecn, bool zero_window_text, bool ack_now) {
  // Sixth, the URG bit: not supported, the data is delivered in line.

  // Seventh, the segment text. Its IP ECN field first (RFC 3168 6.1.3): the
  // ECE it may call for goes on the ACKs this step sends.
  if (ecn_on_ && ecn_on_receive(seg, payload.size(), ecn)) ack_now = true;
  if (zero_window_text) {
    // Its text dropped in step one: the ACK answers the probe.
    counters_.drop(SegmentDrop::kZeroWindow);
    ack_now = true;
  }
  // The FIN of a segment whose text step one refused is not taken either.
  const bool fin = seg.flags.fin() && !zero_window_text;
  const bool takes_text =
      state_ == State::kEstablished || state_ == State::kFinWait1 || state_ == State::kFinWait2;
  if (takes_text && seg.seq > rcv_nxt_ && (!payload.empty() || fin)) {
    // Out of order (RFC 9293 3.10.7.4 seventh: "segments with higher
    // beginning sequence numbers SHOULD be held for later processing"):
    // the text is kept in its buffer, trimmed to the window, and the FIN
    // is held as its sequence number when it lies inside the window
    // (OooQueue::hold_fin: the lowest FIN wins, nothing past it is kept).
    // RFC 5681 4.2: "an immediate duplicate ACK" (with SACK blocks), for
    // a FIN alone too.
    const std::uint32_t room = distance(seg.seq, rcv_adv_);
    if (!payload.empty()) {
      const auto held = static_cast<std::uint32_t>(std::min<std::size_t>(payload.size(), room));
      if (ooo_ && buffer != nullptr && !buffer->taken && held > 0 && !closed_by_app_) {
        buffer->taken = true;  // the queue takes it whatever it decides
        const OooResult r = ooo_->insert(seg.seq, held, buffer->buffer, buffer->payload_offset, rcv_nxt_);
        if (r == OooResult::Queued) {
          ++counters_.ooo_queued;
        } else if (r == OooResult::BeyondFin) {
          counters_.drop(SegmentDrop::kBeyondFin);
        } else if (r != OooResult::Duplicate) {
          counters_.drop(SegmentDrop::kOutOfOrder);
        }
      } else {
        counters_.drop(SegmentDrop::kOutOfOrder);
      }
    }
    if (fin) {
      if (seg.payload_len >= room) {
        // The FIN's sequence number is past the window (its text was
        // trimmed to it): not acceptable (RFC 9293 3.10.7.4 first).
        counters_.drop(SegmentDrop::kNotAcceptable);
      } else if (!ooo_) {
        counters_.drop(SegmentDrop::kOutOfOrder);  // no queue: the peer sends it again
      } else {
        const OooResult r = ooo_->hold_fin(seg.seq + seg.payload_len, rcv_nxt_);
        if (r == OooResult::BeyondFin) {
          counters_.drop(SegmentDrop::kBeyondFin);
        } else if (r != OooResult::Queued && r != OooResult::Duplicate) {
          counters_.drop(SegmentDrop::kOutOfOrder);
        }
      }
    }
    send_ack(now);
    output(now);
    return;
  }
  if (!payload.empty() && takes_text) {
    const std::uint32_t skip = distance(seg.seq, rcv_nxt_);
    if (skip < payload.size()) {
      if (closed_by_app_) {
        // Nobody will read it (RFC 9293 3.10.4: data after CLOSE): reset.
        send_rst(snd_nxt_, now);
        set_closed(err(ECONNRESET));
        return;
      }
      const auto fresh = payload.subspan(skip);
      std::size_t limit = distance(rcv_nxt_, rcv_adv_);
      if (ooo_ && ooo_->fin()) {
        // Text past a FIN held earlier is never delivered (the lowest FIN
        // wins, as in OooQueue).
        const std::size_t to_fin = distance(rcv_nxt_, *ooo_->fin());
        if (fresh.size() > to_fin) counters_.drop(SegmentDrop::kBeyondFin);
        limit = std::min(limit, to_fin);
      }
      const std::size_t want = std::min({fresh.size(), limit, recv_.free_space()});
      std::size_t take = 0;
      if (buffer != nullptr && want > 0) {
        // The frame joins the receive chain (or is collapsed into it): the
        // chain owns it from here, and `payload` must not be read again.
        buffer->taken = true;
        take = recv_.push_buffer(buffer->buffer, buffer->payload_offset + skip, want);
      } else {
        take = recv_.push(fresh.first(want));
      }
      if (take < want) counters_.drop(SegmentDrop::kNoBuffer);
      rcv_nxt_ += static_cast<std::uint32_t>(take);
      counters_.bytes_in += take;
      ++unacked_segments_;
      if (ooo_ && (!ooo_->empty() || ooo_->fin())) {
        // RFC 5681 4.2: ACK at once when a segment fills (part of) a hole.
        drain_ooo();
        ack_now = true;
      }
      if (take < fresh.size()) ack_now = true;  // trimmed to the window
      if (quick_acks_left_ > 0) {
        --quick_acks_left_;
        ack_now = true;
      }
      if (unacked_segments_ >= 2) ack_now = true;  // RFC 5681 4.2: every second full segment
    } else {
      ack_now = true;  // all old: a duplicate, ACK at once
    }
  }

  // Eighth, check the FIN bit: only once every byte before it is in. A FIN
  // held out of order is taken here once the text before it has arrived.
  const bool held_fin_reached = takes_text && ooo_ && ooo_->fin() && *ooo_->fin() == rcv_nxt_;
  if ((held_fin_reached || (fin && seg.seq + seg.payload_len == rcv_nxt_)) && !fin_received_) {
    // Nothing past the FIN will be delivered: the queue's buffers go back.
    if (ooo_) ooo_->clear();
    rcv_nxt_ += 1;
    fin_received_ = true;
    ack_now = true;
    switch (state_) {
      case State::kSynReceived:
      case State::kEstablished:
        state_ = State::kCloseWait;
        break;
      case State::kFinWait1:
        // Our FIN not yet acknowledged (else step five made it FIN-WAIT-2).
        state_ = State::kClosing;
        break;
      case State::kFinWait2:
        enter_time_wait(now);
        break;
      default:
        break;
    }
  } else if (seg.flags.fin() && state_ == State::kTimeWait) {
    // A retransmitted FIN: ACK it and restart the 2 MSL timeout.
    time_wait_deadline_ = now + 2 * config_.msl;
    ack_now = true;
  }

  if (ack_now) {
    send_ack(now);
  } else if (unacked_segments_ > 0 && delack_deadline_ == Nanos::max()) {
    delack_deadline_ = now + config_.delayed_ack;
  }
  output(now);
}

bool Connection::process_ack(const TcpRepr& seg, Nanos now) {
  // RFC 5961 5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
  if (seg.ack > snd_max_ || seg.ack < snd_una_ - max_snd_wnd_) {
    counters_.drop(SegmentDrop::kAckUnacceptable);
    send_ack(now);
    return false;
  }
  const std::uint32_t window = std::uint32_t{seg.window} << snd_shift_;
  if (ecn_on_ && seg.flags.ece()) ecn_on_echo(seg, now);
  // RFC 6675: with SACK, the scoreboard learns from every acceptable ACK.
  const bool sack_mode = ensure_scoreboard();
  if (sack_mode) {
    const SackUpdateResult r = sb_->update(seg.ack, snd_max_, seg.options.sacks());
    if (r.dsack) ++counters_.dsacks_received;
  }
  if (seg.ack > snd_una_) {
    std::uint32_t acked = distance(snd_una_, seg.ack);
    if (snd_una_ == iss_) --acked;  // the SYN's sequence number
    const bool fin_acked = fin_sent_ && seg.ack == snd_max_;
    const std::uint32_t data_acked =
        std::min<std::uint32_t>(fin_acked ? acked - 1 : acked, static_cast<std::uint32_t>(send_.size()));
    send_.consume(data_acked);
    const std::uint32_t newly = distance(snd_una_, seg.ack);
    snd_una_ = seg.ack;
    if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
    if (ecn_guard_ && snd_una_ > ecn_recover_) ecn_guard_ = false;  // a new window

    // RTT sample (RFC 7323 4.1 with timestamps; RFC 6298 3 Karn otherwise).
    Nanos sample{0};
    if (ts_on_ && seg.options.timestamps && seg.options.timestamps->tsecr != 0) {
      const std::uint32_t ms = ts_now(now) - seg.options.timestamps->tsecr;
      if (ms < (1u << 31)) sample = milliseconds(std::max<std::uint32_t>(ms, 1));
    } else if (rtt_timing_ && seg.ack > rtt_seq_) {
      sample = now - rtt_start_;
      rtt_timing_ = false;
    }
    if (sample > Nanos{0}) update_rtt(sample);
    retransmits_ = 0;
    dup_acks_ = 0;

    AckEvent ev;
    ev.bytes_acked = newly;
    ev.rtt = sample;
    ev.now = now;
    ev.ack = seg.ack;
    ev.snd_nxt = snd_max_;
    ev.app_limited = send_.size() <= distance(snd_una_, snd_max_) && flight_size() + newly < cc_->cwnd();
    cc_->on_ack(ev);
    if (in_recovery_) {
      if (seg.ack >= recover_) {
        in_recovery_ = false;
        cc_->on_recovery_exit(flight_size(), now);
      } else if (!sack_mode) {
        retransmit_head(now);  // RFC 6582 3.2 step 5: a partial ACK
      } else if (sb_->range_count() == 0) {
        // A partial ACK with nothing SACKed (the peer holds nothing above
        // the hole): the next hole starts at SND.UNA; send it, as NewReno.
        const NextSeg head = sb_->fast_retransmit();
        if (head.kind != NextSegKind::None) send_range(head, now);
      }
    }
    // RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart.
    rto_deadline_ = snd_una_ == snd_max_ ? Nanos::max() : now + rto_;

    if (fin_acked) {
      switch (state_) {
        case State::kFinWait1:
          state_ = State::kFinWait2;
          // An orphan (closed by the application) does not wait for the
          // peer's FIN forever (as Linux's tcp_fin_timeout).
          if (closed_by_app_) time_wait_deadline_ = now + config_.fin_wait2_timeout;
          break;
        case State::kClosing:
          enter_time_wait(now);
          break;
        case State::kLastAck:
          set_closed({});
          return false;
        default:
          break;
      }
    }
  } else if (seg.ack == snd_una_ && seg.payload_len == 0 && !seg.flags.fin() && window == snd_wnd_ &&
             snd_max_ != snd_una_) {
    // RFC 5681 2: a duplicate ACK.
    ++counters_.dup_acks;
    ++dup_acks_;
    if (sack_mode) {
      // RFC 6675: recovery starts below, from the scoreboard.
    } else if (dup_acks_ == 3 && !in_recovery_ && snd_una_ > recover_) {
      // RFC 6582 3.2 steps 1-2: fast retransmit, then fast recovery.
      LossEvent ev;
      ev.flight_size = flight_size();
      ev.now = now;
      ev.style = RecoveryStyle::kNewReno;
      ev.snd_nxt = snd_max_;
      cc_->enter_recovery(ev);
      ecn_window_reduced();
      in_recovery_ = true;
      recover_ = snd_max_;
      ++counters_.fast_retransmits;
      retransmit_head(now);
    } else if (in_recovery_) {
      cc_->on_dup_ack();
    }
  }

  // RFC 9293 3.10.7.4 fifth: the send window, from the newest segment. Not
  // from a segment beyond RCV.NXT: one forged there (still inside the
  // window) would otherwise set SND.WL1 ahead of every genuine segment and
  // freeze the window it carried (the stateful fuzz target found it).
  if (seg.seq <= rcv_nxt_ && (snd_wl1_ < seg.seq || (snd_wl1_ == seg.seq && snd_wl2_ <= seg.ack))) {
    snd_wnd_ = window;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    snd_wl1_ = seg.seq;
    snd_wl2_ = seg.ack;
    if (snd_wnd_ > 0) {
      persist_deadline_ = Nanos::max();
      persist_backoff_ = 0;
    }
  }
  if (sack_mode && state_ != State::kClosed) {
    // RFC 6675 5: DupThresh duplicate ACKs, or the octet at SND.UNA deemed
    // lost by the SACKed data above it, start a recovery (once per window:
    // recovery_allowed() is false until SND.UNA passes the last one's point).
    if (!in_recovery_ && snd_max_ != snd_una_ && sb_->recovery_allowed() &&
        (dup_acks_ >= 3 || sb_->is_lost(snd_una_))) {
      LossEvent ev;
      ev.flight_size = flight_size();
      ev.now = now;
      ev.style = RecoveryStyle::kSack;
      ev.snd_nxt = snd_max_;
      cc_->enter_recovery(ev);
      ecn_window_reduced();
      sb_->enter_recovery();
      in_recovery_ = true;
      recover_ = snd_max_;
      ++counters_.fast_retransmits;
      ++counters_.sack_recoveries;
      const NextSeg first = sb_->fast_retransmit();
      if (first.kind != NextSegKind::None) send_range(first, now);
    }
    if (in_recovery_) sack_send(now);
  }
  return true;
}

bool Connection::ecn_on_receive(const TcpRepr& seg, std::size_t payload_len, IpEcn ecn) {
  // RFC 3168 6.1.3: CWR ends the echo (the sender has reduced its window),
  // then a CE on this very segment starts it again. The CWR is taken from
  // any segment that got this far, lenient with a sender that puts it on
  // a pure ACK; forging one takes a segment inside the window.
  if (seg.flags.cwr() && ece_pending_) {
    ece_pending_ = false;
    ++counters_.cwr_received;
  }
  // Only data carries ECT (6.1.4), and data outside the window was dropped
  // before this step (6.1.5: its ECN field is ignored).
  if (payload_len == 0 || ecn != IpEcn::kCe) return false;
  ++counters_.ce_received;
  const bool first = !ece_pending_;
  ece_pending_ = true;
  // Echo the first mark at once rather than after the delayed-ACK timer
  // (as Linux's quick ACK on CE): the sender learns a round trip sooner.
  return first;
}

void Connection::ecn_on_echo(const TcpRepr& seg, Nanos now) {
  ++counters_.ece_received;
  // Nothing of ours could have been marked before we sent ECT data (the
  // third ACK of the handshake, say).
  if (counters_.ect_sent == 0) return;
  // RFC 3168 6.1.2: once per window of data. ECN-Echo on an ACK up to the
  // SND.NXT of the last reduction echoes a mark on data sent before it
  // (the peer echoes until our CWR, which rides on data after it); the
  // congestion controller's own guard leaves that last ACK out.
  if (ecn_guard_ && seg.ack <= ecn_recover_) return;
  EcnEvent ev;
  ev.ack = seg.ack;
  ev.snd_nxt = snd_max_;
  ev.flight_size = flight_size();
  ev.now = now;
  if (cc_->on_ecn_ce(ev)) {
    ++counters_.ecn_cwnd_reductions;
    ecn_window_reduced();
  }
}

void Connection::ecn_window_reduced() noexcept {
  if (!ecn_on_) return;
  // RFC 3168 6.1.2: "When an ECN-Capable TCP sender reduces its congestion
  // window for any reason (because of a retransmit timeout, a Fast
  // Retransmit, or in response to an ECN Notification)", CWR goes on the
  // first new data packet after it.
  cwr_pending_ = true;
  ecn_guard_ = true;
  ecn_recover_ = snd_max_;
}

bool Connection::ensure_scoreboard() {
  if (!sack_on_) return false;
  if (sb_) return true;
  if (snd_una_ == iss_) return false;  // the SYN is not acknowledged yet
  SackScoreboardConfig c;
  c.max_ranges = config_.sack_max_ranges;
  c.smss = snd_mss_;
  auto sb = SackScoreboard::create(c, snd_una_);
  if (!sb) return false;
  sb_.emplace(std::move(*sb));
  sb_->on_send(snd_max_);
  return true;
}

bool Connection::send_range(const NextSeg& ns, Nanos now) {
  // A retransmission of [ns.seq, ns.seq + ns.len) of data already sent;
  // the FIN goes with the last byte if it was sent.
  const std::uint32_t off = distance(snd_una_, ns.seq);
  if (off > send_.size()) return true;
  const std::size_t len = std::min<std::size_t>({ns.len, send_.size() - off, snd_mss_ - sack_option_len()});
  const bool fin = fin_sent_ && off + len == send_.size();
  if (len == 0 && !fin) return true;
  if (!send_data(ns.seq, len, fin, now)) return false;
  sb_->on_transmit(NextSeg{ns.kind, ns.seq, static_cast<std::uint32_t>(len)});
  return true;
}

void Connection::sack_send(Nanos now) {
  // RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send what NextSeg names.
  const std::size_t mss = snd_mss_ - sack_option_len();
  for (int guard = 0; guard < 1024; ++guard) {
    const std::uint64_t pipe = sb_->set_pipe();
    if (cc_->cwnd() < pipe + mss) return;
    const std::uint32_t sent = distance(snd_una_, snd_max_);
    const std::size_t queued = send_.size();
    const std::size_t unsent = sent < queued ? queued - sent : 0;
    const bool window_ok = std::uint64_t{sent} + std::min(unsent, mss) <= snd_wnd_;
    const bool can_new = unsent > 0 && window_ok && snd_nxt_ == snd_max_ && may_send(state_);
    const NextSeg ns = sb_->next_seg(can_new);
    if (ns.kind == NextSegKind::None) return;
    if (ns.kind == NextSegKind::NewData) {
      const std::size_t len = std::min(unsent, mss);
      const bool fin = shut_wr_ && len == unsent;
      if (!send_data(snd_max_, len, fin, now)) return;
      snd_max_ += static_cast<std::uint32_t>(len) + (fin ? 1u : 0u);
      snd_nxt_ = snd_max_;
      if (fin) fin_sent_ = true;
      sb_->on_send(snd_max_);
      continue;
    }
    if (!send_range(ns, now)) return;
  }
}

void Connection::drain_ooo() {
  std::array<OooSegment, 16> segs{};
  for (;;) {
    const auto r = ooo_->pop_in_order(rcv_nxt_, segs);
    bool full = false;
    for (std::size_t i = 0; i < r.count; ++i) {
      const OooSegment& o = segs[i];
      if (!full && o.seq == rcv_nxt_) {
        // It fits: it lay inside a window that recv_'s free space covered,
        // and that space has only grown since. Should it not, what is left
        // is dropped unacknowledged and the peer sends it again.
        const std::size_t took = recv_.push_buffer(o.buffer, o.offset, o.len);  // the chain's now
        rcv_nxt_ += static_cast<std::uint32_t>(took);
        counters_.bytes_in += took;
        full = took < o.len;
        if (full) counters_.drop(SegmentDrop::kNoBuffer);
      } else {
        (void)pool_->free(owner_, o.buffer);
      }
    }
    if (full || r.count < segs.size()) return;
  }
}

std::size_t Connection::sack_option_len() const noexcept {
  if (!sack_on_ || !ooo_) return 0;
  const std::size_t blocks = std::min<std::size_t>(ooo_->size() + (ooo_->dsack() ? 1 : 0), ts_on_ ? 3 : 4);
  return blocks == 0 ? 0 : 4 + 8 * blocks;  // NOP NOP kind len, 8 bytes a block
}

// ---------------------------------------------------------------------------
// Output

TcpRepr Connection::header(SeqNum seq, std::uint8_t flags, Nanos now) const {
  TcpRepr h;
  h.src_port = ep_.local_port;
  h.dst_port = ep_.remote_port;
  h.seq = seq;
  // RFC 3168 6.1.3: ECE on every ACK while a CE mark waits for the peer's CWR.
  if (ece_pending_ && ecn_on_ && (flags & TcpFlags::kAck) != 0 &&
      (flags & (TcpFlags::kSyn | TcpFlags::kRst)) == 0) {
    flags |= TcpFlags::kEce;
  }
  h.flags = TcpFlags{flags};
  if (h.flags.ack()) h.ack = rcv_nxt_;
  if (ts_on_ && !h.flags.rst()) h.options.timestamps = wire::TcpTimestamps{ts_now(now), ts_recent_};
  if (sack_on_ && ooo_ && h.flags.ack() && !h.flags.syn() && !h.flags.rst()) {
    // RFC 2018 3: at most 3 blocks beside timestamps, 4 without.
    h.options.sack_count =
        static_cast<std::uint8_t>(ooo_->sack_blocks(h.options.sack_blocks, ts_on_ ? 3 : 4));
  }
  return h;
}

bool Connection::transmit(const TcpRepr& h, Payload payload, IpEcn ecn, Nanos now) {
  if (!sink_->send_segment_ecn(ep_, h, payload, ecn, now)) return false;
  if (h.flags.ece() && !h.flags.syn()) ++counters_.ece_sent;
  if (h.flags.cwr() && !h.flags.syn()) ++counters_.cwr_sent;
  return true;
}

std::uint16_t Connection::window_to_advertise() {
  // Receiver silly window avoidance (RFC 9293 3.8.6.2.2): the right edge
  // moves only by at least min(buffer / 2, MSS), and never moves left.
  const std::uint32_t offered = distance(rcv_nxt_, rcv_adv_) > (1u << 31) ? 0 : distance(rcv_nxt_, rcv_adv_);
  if (recv_.capacity() != config_.recv_buffer) fit_recv_capacity(offered);  // after set_buffer_sizes()
  std::uint32_t free = static_cast<std::uint32_t>(recv_.free_space());
  const std::uint32_t step =
      std::min<std::uint32_t>(static_cast<std::uint32_t>(config_.recv_buffer / 2), config_.mss);
  std::uint32_t wnd = offered;
  if (free >= offered + step || (free > offered && free == recv_.capacity())) wnd = free;
  const std::uint32_t max_wnd = std::uint32_t{0xffff} << rcv_shift_;
  wnd = std::min(wnd, max_wnd);
  const auto field = static_cast<std::uint16_t>(wnd >> rcv_shift_);
  const SeqNum edge = rcv_nxt_ + (std::uint32_t{field} << rcv_shift_);
  if (edge > rcv_adv_) rcv_adv_ = edge;
  return field;
}

void Connection::send_syn(bool with_ack, Nanos now) {
  TcpRepr h = header(iss_, with_ack ? (TcpFlags::kSyn | TcpFlags::kAck) : TcpFlags::kSyn, now);
  const bool again = snd_max_ != iss_;
  if (with_ack) {
    // RFC 3168 6.1.1: the ECN-setup SYN,ACK has ECE and not CWR.
    if (ecn_on_) h.flags = TcpFlags{static_cast<std::uint8_t>(h.flags.bits | TcpFlags::kEce)};
  } else {
    // RFC 3168 6.1.1: the ECN-setup SYN has ECE and CWR. Sent again after a
    // timeout, it no longer asks (6.1.1.1: the first may have been dropped
    // for asking).
    ecn_syn_asked_ = config_.ecn == EcnMode::kOn && !again;
    if (ecn_syn_asked_) {
      h.flags = TcpFlags{static_cast<std::uint8_t>(h.flags.bits | TcpFlags::kEce | TcpFlags::kCwr)};
    }
  }
  h.options.mss = config_.mss;
  // In a SYN,ACK each option only if the peer's SYN had it (RFC 7323 1.3).
  const bool ws = config_.window_scaling && (!with_ack || rcv_shift_ > 0 || snd_shift_ > 0);
  if (ws) h.options.window_scale = with_ack ? rcv_shift_ : config_.window_shift;
  // SACK-permitted only when this side can send SACK blocks (it has an
  // out-of-order queue); in a SYN,ACK only if the peer's SYN had it.
  h.options.sack_permitted = config_.sack && ooo_.has_value() && (!with_ack || sack_on_);
  if (config_.timestamps && (!with_ack || ts_on_)) {
    h.options.timestamps = wire::TcpTimestamps{ts_now(now), with_ack ? ts_recent_ : 0};
  } else {
    h.options.timestamps.reset();
  }
  // RFC 7323 2.2: a SYN's window is not scaled.
  h.window = static_cast<std::uint16_t>(std::min<std::size_t>(recv_.free_space(), 0xffff));
  if (with_ack) rcv_adv_ = rcv_nxt_ + h.window;
  if (again) {
    ++counters_.retransmits;
  } else if (!rtt_timing_) {
    rtt_timing_ = true;
    rtt_seq_ = iss_;
    rtt_start_ = now;
  }
  snd_nxt_ = iss_ + 1;
  if (snd_max_ < snd_nxt_) snd_max_ = snd_nxt_;
  h.payload_len = 0;
  ++counters_.segments_out;
  (void)transmit(h, {}, IpEcn::kNotEct, now);  // RFC 3168 6.1.1: SYNs are not ECT
  if (rto_deadline_ == Nanos::max()) rto_deadline_ = now + rto_;
}

void Connection::send_ack(Nanos now) {
  if (!synchronized(state_) && state_ != State::kSynReceived) return;
  TcpRepr h = header(snd_nxt_, TcpFlags::kAck, now);
  h.window = window_to_advertise();
  ++counters_.segments_out;
  delack_deadline_ = Nanos::max();
  unacked_segments_ = 0;
  (void)transmit(h, {}, IpEcn::kNotEct, now);                 // RFC 3168 6.1.4: pure ACKs are not ECT
  if (ooo_ && h.options.sack_count > 0) ooo_->clear_dsack();  // RFC 2883 4: reported once
}

void Connection::send_challenge_ack(Nanos now) {
  // RFC 5961 7: a per-connection limit with a random part, redrawn every
  // second.
  if (now - challenge_window_start_ >= std::chrono::seconds(1) || challenge_window_start_ == Nanos{0}) {
    challenge_window_start_ = now;
    const std::uint32_t limit = config_.challenge_ack_limit;
    challenge_allowance_ = limit + static_cast<std::uint32_t>(next_random() % (limit / 2 + 1));
  }
  if (challenge_allowance_ == 0) {
    ++counters_.challenge_acks_limited;
    return;
  }
  --challenge_allowance_;
  ++counters_.challenge_acks;
  send_ack(now);
}

void Connection::send_rst(SeqNum seq, Nanos now) {
  TcpRepr h = header(seq, TcpFlags::kRst, now);
  h.window = 0;
  ++counters_.segments_out;
  (void)transmit(h, {}, IpEcn::kNotEct, now);
}

bool Connection::send_data(SeqNum seq, std::size_t len, bool fin, Nanos now) {
  const std::uint32_t off = distance(snd_una_, seq);
  std::size_t pieces = 0;
  std::size_t bytes = 0;
  for (;;) {
    pieces = send_.peek(off, len, gather_);
    bytes = 0;
    for (std::size_t i = 0; i < pieces; ++i) bytes += gather_[i].size();
    // gather_ is sized for a full segment of the smallest pieces a chain
    // keeps; should a segment ever span more, it grows rather than send
    // fewer bytes than the sequence numbers say.
    if (bytes == len || pieces < gather_.size()) break;
    gather_.resize(gather_.size() * 2);
  }
  std::uint8_t flags = TcpFlags::kAck;
  if (fin) flags |= TcpFlags::kFin;
  if (len > 0 && off + len == send_.size()) flags |= TcpFlags::kPsh;
  const bool retransmission = seq < snd_max_;
  // RFC 3168 6.1.2 and 6.1.5: new data is ECT(0) and carries the CWR a
  // window reduction asked for; a retransmission is neither.
  const bool fresh_data = ecn_on_ && len > 0 && !retransmission;
  if (fresh_data && cwr_pending_) flags |= TcpFlags::kCwr;
  TcpRepr h = header(seq, flags, now);
  h.window = window_to_advertise();
  h.payload_len = static_cast<std::uint32_t>(bytes);
  if (!transmit(h, Payload(gather_).first(pieces), fresh_data ? IpEcn::kEct0 : IpEcn::kNotEct, now)) {
    // Back-pressure: the segment never left; try again shortly.
    ++counters_.send_refused;
    if (retry_deadline_ == Nanos::max()) retry_deadline_ = now + std::chrono::milliseconds(1);
    return false;
  }
  if (fresh_data) {
    ++counters_.ect_sent;
    if (h.flags.cwr()) cwr_pending_ = false;
  }
  if (retransmission) {
    ++counters_.retransmits;
    counters_.retransmitted_bytes += h.payload_len;
    // Karn: a sample spanning a retransmission is ambiguous.
    if (rtt_timing_ && seq <= rtt_seq_) rtt_timing_ = false;
  } else {
    counters_.bytes_out += h.payload_len;
    if (!ts_on_ && !rtt_timing_ && len > 0) {
      rtt_timing_ = true;
      rtt_seq_ = seq;
      rtt_start_ = now;
    }
  }
  ++counters_.segments_out;
  delack_deadline_ = Nanos::max();
  unacked_segments_ = 0;
  if (ooo_ && h.options.sack_count > 0) ooo_->clear_dsack();
  if (rto_deadline_ == Nanos::max()) rto_deadline_ = now + rto_;
  return true;
}

void Connection::output(Nanos now) {
  if (!may_send(state_)) return;
  for (int guard = 0; guard < 1024; ++guard) {
    std::size_t hole_limit = std::numeric_limits<std::size_t>::max();
    if (sb_ && snd_una_ < snd_nxt_ && snd_nxt_ < snd_max_) {
      // Going back after a timeout: what the peer SACKed since is not sent
      // again (RFC 6675 5.1); the segment at SND.UNA always is.
      const SackBlock hole = sb_->next_unsacked(snd_nxt_);
      if (hole.left == hole.right) {
        snd_nxt_ = snd_max_;
      } else {
        if (snd_nxt_ < hole.left) snd_nxt_ = hole.left;
        hole_limit = distance(snd_nxt_, hole.right);
      }
    }
    const std::uint32_t sent = distance(snd_una_, snd_nxt_);
    const std::size_t queued = send_.size();
    const bool fin_pending = shut_wr_ && snd_nxt_ <= snd_una_ + static_cast<std::uint32_t>(queued);
    const std::size_t left = sent < queued ? queued - sent : 0;
    if (left == 0 && !fin_pending) break;
    const std::uint64_t wnd = std::min<std::uint64_t>(snd_wnd_, cc_->cwnd());
    const std::uint32_t in_flight = distance(snd_una_, snd_nxt_);
    const std::uint64_t usable = wnd > in_flight ? wnd - in_flight : 0;
    const std::size_t mss = snd_mss_ - sack_option_len();
    const std::size_t len = std::min<std::size_t>({left, mss, static_cast<std::size_t>(usable), hole_limit});
    const bool fin = fin_pending && len == left;
    if (len == 0 && !fin) {
      // Zero window with data waiting and nothing in flight to bring an
      // ACK: probe (RFC 9293 3.8.6.1).
      if (snd_wnd_ == 0 && in_flight == 0 && persist_deadline_ == Nanos::max()) {
        persist_deadline_ = now + std::min(rto_, config_.max_rto);
      }
      break;
    }
    if (len < mss && !fin) {
      // Sender silly window avoidance and Nagle (RFC 9293 3.8.6.2.1,
      // RFC 1122 4.2.3.4): a short segment only if it is all there is and
      // nothing is unacknowledged (or no_delay), or it fills half the
      // largest window the peer offered.
      const bool all = len == left;
      const bool nagle_ok = config_.no_delay || in_flight == 0;
      const bool half_window = max_snd_wnd_ > 0 && len >= max_snd_wnd_ / 2;
      if (!((all && nagle_ok) || (half_window && nagle_ok))) {
        // RFC 9293 3.8.6.2.1: with nothing in flight, the override timeout
        // sends what the window allows anyway (else a window that stays
        // below half the peer's largest would never be used).
        if (in_flight == 0 && persist_deadline_ == Nanos::max()) persist_deadline_ = now + kSwsOverride;
        break;
      }
    }
    if (!send_data(snd_nxt_, len, fin, now)) break;
    snd_nxt_ += static_cast<std::uint32_t>(len) + (fin ? 1u : 0u);
    if (snd_max_ < snd_nxt_) {
      snd_max_ = snd_nxt_;
      if (sb_) sb_->on_send(snd_max_);
    }
    if (fin) {
      fin_sent_ = true;
      break;
    }
  }
}

void Connection::retransmit_head(Nanos now) {
  if (state_ == State::kSynSent || state_ == State::kSynReceived) {
    send_syn(state_ == State::kSynReceived, now);
    return;
  }
  const std::size_t len = std::min<std::size_t>(send_.size(), snd_mss_ - sack_option_len());
  const bool fin = fin_sent_ && len == send_.size();
  if (len == 0 && !fin) return;
  send_data(snd_una_, len, fin, now);
}

bool Connection::on_path_mtu(std::uint32_t mtu, SeqNum quoted_seq, Nanos now) {
  // RFC 5927 4.1: only about data in flight.
  if (!(snd_una_ <= quoted_seq && quoted_seq < snd_max_)) {
    ++counters_.pmtu_ignored;
    return false;
  }
  // RFC 1191 / RFC 8201 floor of 68; the MSS below our configured minimum
  // is not taken (a forged tiny MTU cannot make us send tiny segments).
  const std::uint32_t headers = 20 + 20 + (ts_on_ ? 12u : 0u);
  const std::uint32_t mss = mtu > headers ? mtu - headers : 0;
  const auto new_mss = static_cast<std::uint16_t>(std::max<std::uint32_t>(mss, config_.min_mss));
  if (new_mss >= snd_mss_) {
    ++counters_.pmtu_ignored;
    return false;
  }
  ++counters_.pmtu_updates;
  snd_mss_ = new_mss;
  cc_->set_smss(snd_mss_);
  if (sb_) sb_->set_smss(snd_mss_);
  // RFC 1191 6.4: what was too big is sent again, now in smaller segments.
  snd_nxt_ = snd_una_;
  rtt_timing_ = false;
  output(now);
  return true;
}

// ---------------------------------------------------------------------------
// Timers

Nanos Connection::next_deadline() const noexcept {
  return std::min({rto_deadline_, persist_deadline_, delack_deadline_, time_wait_deadline_,
                   keepalive_deadline_, retry_deadline_});
}

void Connection::update_rtt(Nanos r) noexcept {
  // RFC 6298 2.2 and 2.3 (alpha 1/8, beta 1/4), G = 1 ms.
  if (!have_rtt_) {
    srtt_ = r;
    rttvar_ = r / 2;
    have_rtt_ = true;
  } else {
    const Nanos delta = srtt_ > r ? srtt_ - r : r - srtt_;
    rttvar_ = (3 * rttvar_ + delta) / 4;
    srtt_ = (7 * srtt_ + r) / 8;
  }
  rto_ = std::clamp(srtt_ + std::max<Nanos>(milliseconds(1), 4 * rttvar_), config_.min_rto, config_.max_rto);
}

void Connection::on_timer(Nanos now) {
  if (time_wait_deadline_ <= now) {
    time_wait_deadline_ = Nanos::max();
    set_closed({});
    return;
  }
  if (retry_deadline_ <= now) {
    retry_deadline_ = Nanos::max();
    if (in_recovery_ && sb_) {
      sack_send(now);
    } else {
      output(now);
    }
  }
  if (delack_deadline_ <= now) {
    ++counters_.delayed_acks;
    send_ack(now);
  }
  if (keepalive_deadline_ <= now) {
    keepalive_deadline_ = Nanos::max();
    if (config_.keepalive && (state_ == State::kEstablished || state_ == State::kCloseWait)) {
      if (snd_una_ != snd_max_ || !send_.empty()) {
        arm_keepalive(now);  // data outstanding: the retransmission timer watches the peer
      } else if (keepalive_sent_ >= config_.keepalive_probes) {
        set_closed(err(ETIMEDOUT));
        return;
      } else {
        // RFC 1122 4.2.3.6: a segment with SEG.SEQ = SND.NXT - 1 and no
        // data, which the peer must answer with an ACK.
        ++keepalive_sent_;
        ++counters_.keepalive_probes;
        TcpRepr h = header(snd_nxt_ - 1, TcpFlags::kAck, now);
        h.window = window_to_advertise();
        ++counters_.segments_out;
        (void)transmit(h, {}, IpEcn::kNotEct, now);
        keepalive_deadline_ = now + config_.keepalive_interval;
      }
    }
  }
  if (rto_deadline_ <= now) on_rto(now);
  if (persist_deadline_ <= now && state_ != State::kClosed) {
    persist_deadline_ = Nanos::max();
    const std::uint32_t sent = distance(snd_una_, snd_nxt_);
    const std::size_t left = sent < send_.size() ? send_.size() - sent : 0;
    const std::uint64_t wnd = std::min<std::uint64_t>(snd_wnd_, cc_->cwnd());
    const std::uint64_t usable = wnd > sent ? wnd - sent : 0;
    if (may_send(state_) && left > 0 && usable > 0) {
      // The silly-window override: send what fits now.
      const std::size_t len =
          std::min<std::size_t>({left, snd_mss_ - sack_option_len(), static_cast<std::size_t>(usable)});
      const bool fin = shut_wr_ && len == left;
      if (!send_data(snd_nxt_, len, fin, now)) return;
      snd_nxt_ += static_cast<std::uint32_t>(len) + (fin ? 1u : 0u);
      if (snd_max_ < snd_nxt_) snd_max_ = snd_nxt_;
      if (fin) fin_sent_ = true;
      return;
    }
    if (!may_send(state_) || left == 0 || snd_wnd_ != 0) return;
    // A window probe that takes no sequence space: an ACK with SND.UNA - 1,
    // which the peer answers with its current window (as Linux probes).
    ++counters_.window_probes;
    TcpRepr h = header(snd_una_ - 1, TcpFlags::kAck, now);
    h.window = window_to_advertise();
    ++counters_.segments_out;
    (void)transmit(h, {}, IpEcn::kNotEct, now);  // RFC 3168 6.1.6: window probes are not ECT
    persist_backoff_ = std::min<std::uint32_t>(persist_backoff_ + 1, 16);
    const Nanos next = std::min(rto_ * (std::int64_t{1} << persist_backoff_), config_.max_rto);
    persist_deadline_ = now + next;
  }
}

void Connection::on_rto(Nanos now) {
  rto_deadline_ = Nanos::max();
  if (snd_una_ == snd_max_) return;
  ++counters_.timeouts;
  ++retransmits_;
  const bool handshake = state_ == State::kSynSent || state_ == State::kSynReceived;
  if (retransmits_ > (handshake ? config_.max_syn_retransmits : config_.max_retransmits)) {
    set_closed(err(ETIMEDOUT));
    return;
  }
  // RFC 6298 5.5: back off; 5.6-5.7 restart with the head retransmitted.
  rto_ = std::min(rto_ * 2, config_.max_rto);
  rtt_timing_ = false;
  if (handshake) {
    retransmit_head(now);
    return;
  }
  RtoEvent ev;
  ev.flight_size = flight_size();
  ev.now = now;
  ev.first = retransmits_ == 1;
  cc_->on_rto(ev);
  if (ev.first) ecn_window_reduced();
  if (sb_) {
    // RFC 2018 8 / RFC 6675 5.1: the receiver may have reneged (ours evicts
    // out-of-order data under pressure), so what it SACKed is forgotten.
    sb_->on_rto();
    sb_->clear();
  }
  in_recovery_ = false;
  recover_ = snd_max_;
  dup_acks_ = 0;
  // Go back: everything from SND.UNA is sent again as the window allows
  // (the loss window is one segment).
  snd_nxt_ = snd_una_;
  output(now);
  if (rto_deadline_ == Nanos::max()) rto_deadline_ = now + rto_;
}

// ---------------------------------------------------------------------------
// Application

std::error_code Connection::can_send() const noexcept {
  if (error_) return error_;
  if (shut_wr_ || closed_by_app_) return err(EPIPE);
  if (state_ != State::kEstablished && state_ != State::kCloseWait) {
    return err(state_ == State::kSynSent || state_ == State::kSynReceived ? ENOTCONN : EPIPE);
  }
  return {};
}

Expected<std::size_t, std::error_code> Connection::send(std::span<const std::byte> data, Nanos now) {
  if (auto ec = can_send()) return unexpected(ec);
  const std::size_t n = send_.push(data);
  output(now);
  return n;
}

Expected<std::size_t, std::error_code> Connection::send_buffer(mem::BufIndex buffer, std::size_t offset,
                                                               std::size_t len, Nanos now) {
  if (auto ec = can_send()) return unexpected(ec);
  if (len > send_.free_space()) return unexpected(err(EAGAIN));
  if (offset > chain_pool_->buffer_size() || len > chain_pool_->buffer_size() - offset) {
    return unexpected(err(EINVAL));
  }
  std::size_t n = len;
  if (!send_.append(buffer, offset, len)) {
    n = send_.push(chain_pool_->buffer(buffer).subspan(offset, len));
    if (n == len) (void)chain_pool_->free(chain_owner_, buffer);
  }
  output(now);
  return n;
}

void Connection::after_read(std::uint32_t window_before, Nanos now) {
  // A window update when reading opened the window by enough to matter
  // (RFC 9293 3.8.6.2.2): at least an MSS or half the buffer.
  if (synchronized(state_) && !fin_received_) {
    const std::size_t free = recv_.free_space();
    const std::size_t step = std::min<std::size_t>(config_.recv_buffer / 2, config_.mss);
    if (free >= window_before + step) send_ack(now);
  }
}

Expected<std::size_t, std::error_code> Connection::receive(std::span<std::byte> out, Nanos now) {
  if (recv_.empty()) {
    if (error_) return unexpected(error_);
    return std::size_t{0};
  }
  const std::uint32_t before = distance(rcv_nxt_, rcv_adv_);
  const std::size_t n = recv_.pop(out);
  after_read(before, now);
  return n;
}

std::optional<BufferChain::Piece> Connection::receive_piece(Nanos now) {
  if (recv_.empty()) return std::nullopt;
  const std::uint32_t before = distance(rcv_nxt_, rcv_adv_);
  auto p = recv_.pop_piece();
  after_read(before, now);
  return p;
}

std::error_code Connection::shutdown_write(Nanos now) {
  if (error_) return error_;
  if (shut_wr_) return {};
  switch (state_) {
    case State::kClosed:
    case State::kListen:
      return err(ENOTCONN);
    case State::kSynSent:
      set_closed({});
      return {};
    case State::kSynReceived:
      shut_wr_ = true;  // FIN once established
      return {};
    case State::kEstablished:
      shut_wr_ = true;
      state_ = State::kFinWait1;
      break;
    case State::kCloseWait:
      shut_wr_ = true;
      state_ = State::kLastAck;
      break;
    default:
      return {};
  }
  output(now);
  return {};
}

void Connection::close(Nanos now) {
  closed_by_app_ = true;
  if (!recv_.empty() && synchronized(state_)) {
    // Unread data is lost: tell the peer with a reset (RFC 9293 3.10.4, RFC
    // 2525 2.17), in CLOSING and LAST-ACK too (as Linux's tcp_close), where
    // an ABORT would not send one.
    if (state_ != State::kTimeWait) send_rst(snd_nxt_, now);
    set_closed({});
    return;
  }
  (void)shutdown_write(now);
  if (state_ == State::kFinWait2) time_wait_deadline_ = now + config_.fin_wait2_timeout;
}

void Connection::abort(Nanos now, std::error_code why) {
  // RFC 9293 3.10.5: <SEQ=SND.NXT><CTL=RST> in SYN-RECEIVED, ESTABLISHED,
  // FIN-WAIT-1/2 and CLOSE-WAIT; "CLOSING STATE, LAST-ACK STATE, TIME-WAIT
  // STATE: Respond with 'ok' and delete the TCB" without one (the peer has
  // sent its FIN and has nothing more to be told; Linux's tcp_need_reset
  // agrees); none before the peer is synchronized (SYN-SENT).
  switch (state_) {
    case State::kSynReceived:
    case State::kEstablished:
    case State::kFinWait1:
    case State::kFinWait2:
    case State::kCloseWait:
      send_rst(snd_nxt_, now);
      break;
    default:
      break;
  }
  set_closed(why);
}

void Connection::arm_keepalive(Nanos now) noexcept {
  keepalive_deadline_ = config_.keepalive && (state_ == State::kEstablished || state_ == State::kCloseWait)
                            ? now + config_.keepalive_idle
                            : Nanos::max();
}

void Connection::set_no_delay(bool on, Nanos now) {
  config_.no_delay = on;
  if (on) output(now);  // what Nagle held back goes now
}

void Connection::fit_recv_capacity(std::uint32_t offered) {
  recv_.set_capacity(std::max<std::size_t>(config_.recv_buffer, recv_.size() + offered));
}

std::error_code Connection::set_buffer_sizes(std::size_t send, std::size_t recv, Nanos now) {
  if (!valid_buffer_size(send) || !valid_buffer_size(recv)) return err(EINVAL);
  config_.send_buffer = send;
  config_.recv_buffer = recv;
  send_.set_capacity(send);
  const std::uint32_t offered =
      synchronized(state_) && distance(rcv_nxt_, rcv_adv_) < (1u << 31) ? distance(rcv_nxt_, rcv_adv_) : 0;
  fit_recv_capacity(offered);
  // A window that grew by enough is told at once, as after a read.
  if (synchronized(state_) && !fin_received_) after_read(offered, now);
  return {};
}

void Connection::set_keepalive(bool on, Nanos now) {
  config_.keepalive = on;
  keepalive_sent_ = 0;
  arm_keepalive(now);
}

void Connection::enter_time_wait(Nanos now) {
  state_ = State::kTimeWait;
  keepalive_deadline_ = Nanos::max();
  retry_deadline_ = Nanos::max();
  rto_deadline_ = Nanos::max();
  persist_deadline_ = Nanos::max();
  delack_deadline_ = Nanos::max();
  time_wait_deadline_ = now + 2 * config_.msl;
  send_.clear();
  if (ooo_) ooo_->clear();
}

void Connection::set_closed(std::error_code error) {
  state_ = State::kClosed;
  if (error && !error_) error_ = error;
  keepalive_deadline_ = Nanos::max();
  retry_deadline_ = Nanos::max();
  rto_deadline_ = Nanos::max();
  persist_deadline_ = Nanos::max();
  delack_deadline_ = Nanos::max();
  time_wait_deadline_ = Nanos::max();
  send_.clear();
  if (ooo_) ooo_->clear();  // its buffers go back to the pool now
}

}  // namespace usnet::tcp
