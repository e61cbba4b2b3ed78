#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "usnet/tcp/tcp.hpp"
#include "usnet/util/bytes.hpp"
#include "usnet/util/counter_text.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::tcp {

namespace {

constexpr std::uint8_t kProtocol = 6;  // IANA: TCP

std::error_code err(int e) { return {e, std::generic_category()}; }

std::uint64_t mix(std::uint64_t& s) noexcept {
  // splitmix64: derives independent values (keys, seeds) from the config seed.
  s += 0x9e3779b97f4a7c15ull;
  std::uint64_t z = s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

FourTuple tuple_of(const Endpoints& ep) {
  return {IpAddr::v4(ep.local_addr), IpAddr::v4(ep.remote_addr), ep.local_port, ep.remote_port};
}

}  // namespace

std::string Endpoint::to_string() const { return addr.to_string() + ":" + std::to_string(port); }

std::string_view to_string(TcpDropReason r) noexcept {
  switch (r) {
    case TcpDropReason::kMalformed:
      return "malformed header";
    case TcpDropReason::kBadChecksum:
      return "bad checksum";
    case TcpDropReason::kBadOptions:
      return "bad options";
    case TcpDropReason::kBroadcast:
      return "to a broadcast or multicast address";
    case TcpDropReason::kNoConnection:
      return "no connection or listener";
    case TcpDropReason::kBacklogFull:
      return "syn beyond the listen backlog";
    case TcpDropReason::kNoSlot:
      return "syn with every connection slot in use";
    case TcpDropReason::kNoMemory:
      return "connection past the buffer memory bound";
    case TcpDropReason::kResetLimited:
      return "reset withheld by the rate limit";
    case TcpDropReason::kBadCookie:
      return "ack to a listener with a bad syn cookie";
    case TcpDropReason::kNoSynNoAck:
      return "to a listener without syn, ack or rst";
    case TcpDropReason::kCount:
      break;
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Creation

Expected<std::unique_ptr<TcpLayer>, std::error_code> TcpLayer::create(net::Interface& iface,
                                                                      mem::PacketPool& pool,
                                                                      mem::OwnerId owner,
                                                                      const TcpConfig& config) {
  if (config.max_connections == 0 || config.max_listeners == 0 || config.ephemeral_min == 0 ||
      config.ephemeral_min > config.ephemeral_max ||
      config.max_buffer_memory < config.connection.send_buffer + config.connection.recv_buffer) {
    return unexpected(err(EINVAL));
  }
  // The connection config is checked by making one (with a throwaway sink).
  struct NullSink : SegmentSink {
    bool send_segment(const Endpoints&, const wire::TcpRepr&, Payload, Nanos) override { return true; }
  } null_sink;
  if (auto probe = Connection::create(config.connection, {}, null_sink, 1); !probe) {
    return unexpected(probe.error());
  }
  std::uint64_t s = config.seed;
  ConnTableConfig tc;
  tc.max_entries = config.max_connections;
  tc.key = {mix(s), mix(s)};
  auto table = ConnTable::create(tc);
  if (!table) return unexpected(table.error());
  ListenerTableConfig lc;
  lc.max_listeners = config.max_listeners;
  lc.key = {mix(s), mix(s)};
  auto listeners = ListenerTable::create(lc);
  if (!listeners) return unexpected(listeners.error());
  TimerWheelConfig wc;
  wc.capacity = config.max_connections;
  auto wheel = TimerWheel::create(wc);
  if (!wheel) return unexpected(wheel.error());
  std::unique_ptr<TcpLayer> layer(
      new TcpLayer(iface, pool, owner, config, std::move(*table), std::move(*listeners), std::move(*wheel)));
  if (auto ec = iface.set_protocol_handler(
          kProtocol, [l = layer.get()](net::InboundDatagram& d, Nanos now) { l->on_datagram(d, now); })) {
    return unexpected(ec);
  }
  iface.set_error_handler(
      kProtocol, [l = layer.get()](const net::IcmpErrorInfo& e, Nanos now) { l->on_icmp_error(e, now); });
  return layer;
}

TcpLayer::TcpLayer(net::Interface& iface, mem::PacketPool& pool, mem::OwnerId owner, const TcpConfig& config,
                   ConnTable table, ListenerTable listeners, TimerWheel wheel)
    : iface_(&iface),
      pool_(&pool),
      owner_(owner),
      config_(config),
      table_(std::move(table)),
      listeners_table_(std::move(listeners)),
      wheel_(std::move(wheel)),
      resets_(config.reset_rate, std::max<std::uint32_t>(config.reset_rate / 10, 1)),
      rng_(config.seed) {
  // Independent of the table keys: the third and later values of the seed.
  std::uint64_t s = config.seed + 0x5151;
  SipKey key;
  for (std::size_t i = 0; i < key.bytes.size(); i += 8) {
    const std::uint64_t v = mix(s);
    for (std::size_t j = 0; j < 8; ++j) key.bytes[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
  }
  isn_ = IsnGenerator(key);
  SipKey cookie_key;
  for (std::size_t i = 0; i < cookie_key.bytes.size(); i += 8) {
    const std::uint64_t v = mix(s);
    for (std::size_t j = 0; j < 8; ++j) cookie_key.bytes[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
  }
  if (auto c = SynCookies::create({}, cookie_key)) cookies_.emplace(std::move(*c));
  rng_ = mix(s);
  slots_.reserve(config.max_connections);
}

TcpLayer::~TcpLayer() {
  (void)iface_->set_protocol_handler(kProtocol, nullptr);
  iface_->set_error_handler(kProtocol, nullptr);
  for (std::uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].conn && slots_[i].steered) {
      (void)iface_->steer_port(link::SteerRule::Kind::kTcpPort, slots_[i].key.local_port, false);
    }
  }
  for (const Listener& l : listeners_) {
    if (l.open) (void)iface_->steer_port(link::SteerRule::Kind::kTcpPort, l.local.port, false);
  }
}

// ---------------------------------------------------------------------------
// Slots

bool TcpLayer::slot_ok(std::uint32_t slot, std::uint32_t generation) const noexcept {
  return slot < slots_.size() && slots_[slot].conn && slots_[slot].generation == generation;
}

std::optional<std::uint32_t> TcpLayer::new_slot(const Endpoints& ep, Nanos now) {
  (void)now;
  if (no_room()) return std::nullopt;
  std::uint32_t i = 0;
  if (!free_slots_.empty()) {
    i = free_slots_.back();
    free_slots_.pop_back();
  } else {
    i = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[i];
  auto conn = Connection::create(config_.connection, ep, *this, mix(rng_), pool_, owner_);
  if (!conn) {
    free_slots_.push_back(i);
    return std::nullopt;
  }
  s.conn = std::move(*conn);
  s.has_handle = false;
  s.in_table = false;
  s.steered = false;
  s.listener = -1;
  s.queued = false;
  s.timer = {};
  s.key = tuple_of(ep);
  ++live_;
  s.committed = per_connection_buffers();
  buffer_committed_ += s.committed;
  return i;
}

namespace {
void add_counters(ConnectionCounters& to, const ConnectionCounters& c) {
  to.segments_in += c.segments_in;
  to.segments_out += c.segments_out;
  to.bytes_in += c.bytes_in;
  to.bytes_out += c.bytes_out;
  to.retransmits += c.retransmits;
  to.retransmitted_bytes += c.retransmitted_bytes;
  to.timeouts += c.timeouts;
  to.fast_retransmits += c.fast_retransmits;
  to.dup_acks += c.dup_acks;
  to.challenge_acks += c.challenge_acks;
  to.challenge_acks_limited += c.challenge_acks_limited;
  to.window_probes += c.window_probes;
  to.delayed_acks += c.delayed_acks;
  to.ooo_queued += c.ooo_queued;
  to.keepalive_probes += c.keepalive_probes;
  to.send_refused += c.send_refused;
  to.pmtu_updates += c.pmtu_updates;
  to.pmtu_ignored += c.pmtu_ignored;
  to.sack_recoveries += c.sack_recoveries;
  to.dsacks_received += c.dsacks_received;
  to.ecn_negotiated += c.ecn_negotiated;
  to.ect_sent += c.ect_sent;
  to.ce_received += c.ce_received;
  to.ece_sent += c.ece_sent;
  to.ece_received += c.ece_received;
  to.cwr_sent += c.cwr_sent;
  to.cwr_received += c.cwr_received;
  to.ecn_cwnd_reductions += c.ecn_cwnd_reductions;
  for (std::size_t d = 0; d < kSegmentDropCount; ++d) to.drops[d] += c.drops[d];
}
}  // namespace

ConnectionCounters TcpLayer::connection_totals() const noexcept {
  ConnectionCounters t = freed_totals_;
  for (const Slot& s : slots_) {
    if (s.conn) add_counters(t, s.conn->counters());
  }
  return t;
}

std::size_t TcpLayer::connections_delivering() const noexcept {
  std::size_t n = 0;
  for (const Slot& s : slots_) {
    if (!s.conn) continue;
    const State st = s.conn->state();
    if (st == State::kTimeWait || st == State::kFinWait2 || st == State::kClosed) continue;
    // Established or half-closed with everything sent and acknowledged
    // waits on the peer, not on us.
    if ((st == State::kEstablished || st == State::kCloseWait) && s.conn->snd_una() == s.conn->snd_nxt() &&
        s.conn->send_queued() == 0) {
      continue;
    }
    ++n;
  }
  return n;
}

void TcpLayer::free_slot(std::uint32_t i) {
  Slot& s = slots_[i];
  add_counters(freed_totals_, s.conn->counters());
  if (s.in_table) (void)table_.erase(s.key);
  if (s.steered) (void)iface_->steer_port(link::SteerRule::Kind::kTcpPort, s.key.local_port, false);
  (void)wheel_.cancel(s.timer);
  if (s.listener >= 0) {
    Listener& l = listeners_[static_cast<std::size_t>(s.listener)];
    if (s.queued) {
      std::erase(l.accept_queue, i);
    } else if (l.half_open > 0) {
      --l.half_open;
    }
  }
  const std::uint32_t generation = s.generation + 1;
  buffer_committed_ -= s.committed;
  s = Slot{};
  s.generation = generation;
  free_slots_.push_back(i);
  --live_;
  ++counters_.connections_freed;
}

void TcpLayer::settle(std::uint32_t i, Nanos now) {
  Slot& s = slots_[i];
  Connection& c = *s.conn;
  if (s.listener >= 0 && !s.queued && c.established()) {
    // Handshake done: from half-open to the accept queue.
    Listener& l = listeners_[static_cast<std::size_t>(s.listener)];
    if (l.half_open > 0) --l.half_open;
    l.accept_queue.push_back(i);
    s.queued = true;
  }
  if (c.state() == State::kClosed) {
    if (s.in_table) {
      (void)table_.erase(s.key);
      s.in_table = false;
    }
    (void)wheel_.cancel(s.timer);
    s.armed = Nanos::max();
    if (!s.has_handle && !s.queued) {
      free_slot(i);
    } else if (s.queued && c.error()) {
      // Reset before it was accepted: nobody will ever read it.
      free_slot(i);
    }
    return;
  }
  // Most calls leave the deadline where it was (a segment that moves no
  // timer): the wheel is touched only when it changes.
  const Nanos d = c.next_deadline();
  const Nanos want = d == Nanos::max() ? d : std::max(d, now);
  if (want == s.armed) return;
  // Lazily: a deadline later than the armed one (the retransmission timer
  // moves later on every ACK of new data), or none at all, leaves the wheel
  // as it is; when the armed time comes, on_timer() finds nothing due and
  // this arms the real deadline. About one wheel operation per armed period
  // instead of one or two per segment. next_deadline() may then be early
  // (a wake-up with nothing to do), never late.
  if (s.armed != Nanos::max() && want > s.armed) return;
  if (!wheel_.arm(s.timer, want, i)) s.armed = want;
}

SeqNum TcpLayer::initial_sequence(const FourTuple& t, Nanos now) const noexcept {
  return isn_.isn(TupleBytes::v4(t.local.to_v4(), t.local_port, t.remote.to_v4(), t.remote_port), now);
}

// ---------------------------------------------------------------------------
// Opening

Expected<TcpStream, std::error_code> TcpLayer::connect(Endpoint remote, Nanos now, std::uint16_t local_port) {
  last_now_ = now;
  if (remote.addr.is_unspecified() || remote.port == 0 || remote.addr.is_broadcast() ||
      remote.addr.is_multicast()) {
    return unexpected(err(EINVAL));
  }
  const auto source = iface_->source_for(remote.addr);
  if (!source) return unexpected(err(ENETUNREACH));
  if (local_port == 0) {
    const auto p = pick_port(*source, remote);
    if (!p) return unexpected(err(EADDRINUSE));
    local_port = *p;
  } else if (table_.find(FourTuple{IpAddr::v4(*source), IpAddr::v4(remote.addr), local_port, remote.port})) {
    return unexpected(err(EADDRINUSE));
  }
  const Endpoints ep{*source, local_port, remote.addr, remote.port};
  const auto i = new_slot(ep, now);
  if (!i) return unexpected(err(ENOBUFS));
  Slot& s = slots_[*i];
  if (auto ec = iface_->steer_port(link::SteerRule::Kind::kTcpPort, local_port, true)) {
    free_slot(*i);
    return unexpected(ec);
  }
  s.steered = true;
  if (!table_.insert(s.key, *i)) {
    free_slot(*i);
    return unexpected(err(EADDRINUSE));
  }
  s.in_table = true;
  s.has_handle = true;
  ++counters_.active_opens;
  (void)s.conn->connect(initial_sequence(s.key, now), now);
  const std::uint32_t generation = s.generation;
  settle(*i, now);
  return TcpStream(this, *i, generation);
}

std::optional<std::uint16_t> TcpLayer::pick_port(wire::Ipv4Addr local, const Endpoint& remote) {
  // RFC 6056 3.3.1 (simple random start, then sequential search).
  const std::uint32_t range = std::uint32_t{config_.ephemeral_max} - config_.ephemeral_min + 1;
  const auto start = static_cast<std::uint32_t>(mix(rng_) % range);
  for (std::uint32_t k = 0; k < range; ++k) {
    const auto port = static_cast<std::uint16_t>(config_.ephemeral_min + (start + k) % range);
    const FourTuple t{IpAddr::v4(local), IpAddr::v4(remote.addr), port, remote.port};
    if (!table_.find(t) && !listeners_table_.find_exact(IpAddr::v4(local), port) &&
        !listeners_table_.find_exact(IpAddr::any(IpFamily::kIpv4), port)) {
      return port;
    }
  }
  return std::nullopt;
}

Expected<TcpListener, std::error_code> TcpLayer::listen(Endpoint local, std::uint32_t backlog) {
  if (local.port == 0 || backlog == 0) return unexpected(err(EINVAL));
  if (!local.addr.is_unspecified() && !iface_->is_our_address(local.addr))
    return unexpected(err(EADDRNOTAVAIL));
  std::uint32_t index = 0;
  bool found = false;
  for (std::uint32_t k = 0; k < listeners_.size(); ++k) {
    if (!listeners_[k].open) {
      index = k;
      found = true;
      break;
    }
  }
  if (!found) {
    if (listeners_.size() >= config_.max_listeners) return unexpected(err(ENOBUFS));
    index = static_cast<std::uint32_t>(listeners_.size());
    listeners_.emplace_back();
  }
  const IpAddr addr = local.addr.is_unspecified() ? IpAddr::any(IpFamily::kIpv4) : IpAddr::v4(local.addr);
  if (auto r = listeners_table_.insert(addr, local.port, index); !r) return unexpected(r.error());
  if (auto ec = iface_->steer_port(link::SteerRule::Kind::kTcpPort, local.port, true)) {
    (void)listeners_table_.erase(addr, local.port);
    return unexpected(ec);
  }
  Listener& l = listeners_[index];
  l.open = true;
  l.local = local;
  l.backlog = backlog;
  l.half_open = 0;
  l.accept_queue.clear();
  return TcpListener(this, index, l.generation);
}

// ---------------------------------------------------------------------------
// Input

void TcpLayer::on_datagram(net::InboundDatagram& d, Nanos now) {
  last_now_ = now;
  ++counters_.rx_segments;
  // RFC 1122 4.2.3.10: TCP never talks to broadcast or multicast addresses.
  if (d.ip.link_broadcast || d.ip.ip_broadcast || d.ip.dst.is_multicast() || d.ip.src.is_multicast() ||
      d.ip.src.is_broadcast()) {
    counters_.drop(TcpDropReason::kBroadcast);
    return;
  }
  auto view = wire::TcpView::make(d.payload);
  if (!view) {
    counters_.drop(TcpDropReason::kMalformed);
    return;
  }
  const auto mode = d.ip.checksums_verified ? wire::ChecksumMode::Ignore : wire::ChecksumMode::Verify;
  auto seg = wire::TcpRepr::parse(*view, wire::PseudoHeader::v4(d.ip.src, d.ip.dst), mode);
  if (!seg) {
    counters_.drop(seg.error() == wire::ParseError::BadChecksum ? TcpDropReason::kBadChecksum
                                                                : TcpDropReason::kBadOptions);
    return;
  }
  const std::span<const std::byte> payload = view->payload();
  const FourTuple t{IpAddr::v4(d.ip.dst), IpAddr::v4(d.ip.src), seg->dst_port, seg->src_port};
  // The connection of the previous segment first: a burst of one flow
  // skips the keyed hash (an exact match of a live entry, so nothing a
  // peer sends can make it find the wrong connection).
  std::optional<std::uint32_t> found;
  if (last_slot_ < slots_.size() && slots_[last_slot_].in_table && slots_[last_slot_].key == t) {
    found = last_slot_;
  } else if ((found = table_.find(t))) {
    last_slot_ = *found;
  }
  if (const auto i = found) {
    // Offer the frame's buffer: an out-of-order segment stays in it.
    std::optional<link::Frame> frame;
    Connection::InboundBuffer in;
    if (!payload.empty()) frame = d.take_frame();
    if (frame) {
      const std::byte* base = pool_->buffer(frame->buffer).data();
      in.buffer = frame->buffer;
      in.payload_offset = static_cast<std::uint16_t>(payload.data() - base);
    }
    slots_[*i].conn->on_segment(*seg, payload, now, frame ? &in : nullptr,
                                static_cast<IpEcn>(d.ip.ecn & 0x3));  // RFC 3168 6.1.3
    if (frame && !in.taken) (void)pool_->free(owner_, frame->buffer);
    settle(*i, now);
    return;
  }
  // A SYN for a listener (RFC 9293 3.10.7.2).
  if (seg->flags.syn() && !seg->flags.ack() && !seg->flags.rst()) {
    if (const auto li = listeners_table_.lookup(t.local, t.local_port)) {
      Listener& l = listeners_[*li];
      if (l.accept_queue.size() >= l.backlog) {
        counters_.drop(TcpDropReason::kBacklogFull);  // the application is not accepting
        return;
      }
      if (const auto full = l.half_open >= l.backlog ? TcpDropReason::kBacklogFull : no_room()) {
        // Under a SYN flood: answer statelessly (ROBUSTNESS 14).
        if (config_.syn_cookies && cookies_) {
          send_cookie(d, *seg, now);
        } else {
          counters_.drop(*full);
        }
        return;
      }
      const Endpoints ep{d.ip.dst, seg->dst_port, d.ip.src, seg->src_port};
      const auto i = new_slot(ep, now);
      if (!i) {
        counters_.drop(no_room().value_or(TcpDropReason::kNoSlot));
        return;
      }
      Slot& s = slots_[*i];
      if (!table_.insert(s.key, *i)) {
        free_slot(*i);
        counters_.drop(TcpDropReason::kNoSlot);
        return;
      }
      s.in_table = true;
      s.listener = static_cast<std::int32_t>(*li);
      ++l.half_open;
      ++counters_.passive_opens;
      (void)s.conn->accept_syn(*seg, initial_sequence(s.key, now), now);
      settle(*i, now);
      return;
    }
  }
  // RFC 9293 3.10.7.2 fourth: in LISTEN, a segment with none of SYN, ACK
  // and RST (a bare FIN, text without ACK) is dropped without a reply:
  // "Any other control or text-bearing segment (not containing SYN) must
  // have an ACK and thus would have been discarded by the ACK processing
  // in the second step [...] drop the segment and return." Only a port
  // with no listener answers it with a reset (3.10.7.1).
  if (!seg->flags.syn() && !seg->flags.ack() && !seg->flags.rst() &&
      listeners_table_.lookup(t.local, t.local_port)) {
    counters_.drop(TcpDropReason::kNoSynNoAck);
    return;
  }
  // The third segment of a cookie exchange (RFC 4987 3.6).
  if (seg->flags.ack() && !seg->flags.syn() && !seg->flags.rst() && config_.syn_cookies && cookies_) {
    if (const auto li = listeners_table_.lookup(t.local, t.local_port)) {
      if (accept_cookie(*li, d, *seg, payload, now)) return;
    }
  }
  counters_.drop(TcpDropReason::kNoConnection);
  if (!seg->flags.rst()) send_reset_for(d, *seg, now);
}

void TcpLayer::send_cookie(const net::InboundDatagram& d, const wire::TcpRepr& syn, Nanos now) {
  const TupleBytes tuple = TupleBytes::v4(d.ip.dst, syn.dst_port, d.ip.src, syn.src_port);
  const auto cookie = cookies_->make(tuple, syn.seq, syn.options.mss.value_or(536), now);
  wire::TcpRepr h;
  h.src_port = syn.dst_port;
  h.dst_port = syn.src_port;
  h.seq = cookie.isn;
  h.ack = syn.seq + 1;
  h.flags = wire::TcpFlags{wire::TcpFlags::kSyn | wire::TcpFlags::kAck};
  h.window = static_cast<std::uint16_t>(std::min<std::size_t>(config_.connection.recv_buffer, 0xffff));
  // Only the MSS: the cookie cannot remember window scaling, timestamps,
  // SACK or ECN, so none is offered (no ECE here: RFC 3168 6.1.1 lets a
  // host decline ECN in its SYN,ACK, and the client then uses none).
  h.options.mss = config_.connection.mss;
  ++counters_.syn_cookies_sent;
  (void)send_segment({d.ip.dst, syn.dst_port, d.ip.src, syn.src_port}, h, {}, now);
}

bool TcpLayer::accept_cookie(std::uint32_t li, net::InboundDatagram& d, const wire::TcpRepr& seg,
                             std::span<const std::byte> payload, Nanos now) {
  const TupleBytes tuple = TupleBytes::v4(d.ip.dst, seg.dst_port, d.ip.src, seg.src_port);
  const auto mss = cookies_->check(seg.ack - 1, tuple, seg.seq - 1, now);
  if (!mss) {
    counters_.drop(TcpDropReason::kBadCookie);
    return false;  // answered with a reset like any stray ACK
  }
  Listener& l = listeners_[li];
  if (l.accept_queue.size() >= l.backlog) {
    counters_.drop(TcpDropReason::kBacklogFull);
    return true;  // dropped: the client retransmits its ACK or data
  }
  const Endpoints ep{d.ip.dst, seg.dst_port, d.ip.src, seg.src_port};
  const auto i = new_slot(ep, now);
  if (!i) {
    counters_.drop(no_room().value_or(TcpDropReason::kNoSlot));
    return true;
  }
  Slot& s = slots_[*i];
  if (!table_.insert(s.key, *i)) {
    free_slot(*i);
    counters_.drop(TcpDropReason::kNoSlot);
    return true;
  }
  s.in_table = true;
  s.listener = static_cast<std::int32_t>(li);
  ++l.half_open;  // settle() moves it to the accept queue
  ++counters_.passive_opens;
  ++counters_.syn_cookies_accepted;
  std::optional<link::Frame> frame;
  Connection::InboundBuffer in;
  if (!payload.empty()) frame = d.take_frame();
  if (frame) {
    in.buffer = frame->buffer;
    in.payload_offset = static_cast<std::uint16_t>(payload.data() - pool_->buffer(frame->buffer).data());
  }
  (void)s.conn->accept_cookie(seg, payload, seg.ack - 1, *mss, now, frame ? &in : nullptr);
  if (frame && !in.taken) (void)pool_->free(owner_, frame->buffer);
  settle(*i, now);
  return true;
}

void TcpLayer::send_reset_for(const net::InboundDatagram& d, const wire::TcpRepr& seg, Nanos now) {
  if (!resets_.take(now)) {
    counters_.drop(TcpDropReason::kResetLimited);
    return;
  }
  // RFC 9293 3.10.7.1: with ACK, <SEQ=SEG.ACK><CTL=RST>; without,
  // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
  wire::TcpRepr rst;
  rst.src_port = seg.dst_port;
  rst.dst_port = seg.src_port;
  if (seg.flags.ack()) {
    rst.seq = seg.ack;
    rst.flags = wire::TcpFlags{wire::TcpFlags::kRst};
  } else {
    const std::uint32_t len = seg.payload_len + (seg.flags.syn() ? 1u : 0u) + (seg.flags.fin() ? 1u : 0u);
    rst.seq = SeqNum(0);
    rst.ack = seg.seq + len;
    rst.flags = wire::TcpFlags{wire::TcpFlags::kRst | wire::TcpFlags::kAck};
  }
  ++counters_.resets_sent;
  (void)send_segment({d.ip.dst, seg.dst_port, d.ip.src, seg.src_port}, rst, {}, now);
}

void TcpLayer::on_icmp_error(const net::IcmpErrorInfo& e, Nanos now) {
  last_now_ = now;
  ++counters_.icmp_errors;
  if (!e.has_ports) return;
  const FourTuple t{IpAddr::v4(e.quoted_src), IpAddr::v4(e.quoted_dst), e.src_port, e.dst_port};
  const auto i = table_.find(t);
  if (!i) return;
  Connection& c = *slots_[*i].conn;
  // RFC 1122 4.2.3.9 / RFC 5461: hard errors abort a connection only while
  // it is being opened; later they are soft (the retransmission timer
  // decides). Destination unreachable codes 2-4 (protocol, port, frag
  // needed) are hard; frag needed is path MTU (not handled yet).
  if (c.state() == State::kSynSent && e.type == 3 && (e.code == 2 || e.code == 3)) {
    // Linux reports ECONNREFUSED for port unreachable, ENOPROTOOPT for
    // protocol unreachable.
    c.abort(now, std::error_code(e.code == 3 ? ECONNREFUSED : ENOPROTOOPT, std::generic_category()));
    settle(*i, now);
    return;
  }
  if (e.type == 3 && e.code == 4 && e.mtu >= 68 && e.quoted_payload.size() >= 8) {
    // RFC 1191: fragmentation needed and DF set. The quoted TCP header's
    // sequence number (bytes 4-7) lets the connection check it (RFC 5927).
    const SeqNum quoted(load_be32(e.quoted_payload.data() + 4));
    (void)c.on_path_mtu(e.mtu, quoted, now);
    settle(*i, now);
  }
}

// ---------------------------------------------------------------------------
// Output

bool TcpLayer::send_segment(const Endpoints& ep, const wire::TcpRepr& header, Payload payload, Nanos now) {
  return send_segment_ecn(ep, header, payload, IpEcn::kNotEct, now);
}

bool TcpLayer::send_segment_ecn(const Endpoints& ep, const wire::TcpRepr& header, Payload payload, IpEcn ecn,
                                Nanos now) {
  // The segment is built in the frame it leaves in: header, then the
  // payload's pieces copied once from the send buffer, then the checksum.
  const std::size_t hlen = header.buffer_len();
  std::size_t plen = 0;
  for (const auto& piece : payload) plen += piece.size();
  net::SendOptions opts;
  opts.source = ep.local_addr;
  opts.dont_frag = true;  // RFC 1191 path MTU discovery, as Linux
  opts.ecn = static_cast<std::uint8_t>(ecn);
  auto d = iface_->reserve(ep.remote_addr, kProtocol, hlen + plen, opts);
  if (!d) {
    ++counters_.tx_errors;
    return false;
  }
  const std::span<std::byte> out = d->payload();
  std::size_t at = hlen;
  for (const auto& piece : payload) {
    if (!piece.empty()) std::memcpy(out.data() + at, piece.data(), piece.size());
    at += piece.size();
  }
  wire::TcpRepr h = header;
  h.payload_len = static_cast<std::uint32_t>(plen);
  if (!h.emit(out, wire::PseudoHeader::v4(ep.local_addr, ep.remote_addr), iface_->tx_checksum_mode())) {
    iface_->release(*d);
    ++counters_.tx_errors;
    return false;
  }
  if (iface_->transmit(*d, now)) {
    ++counters_.tx_errors;
    return false;
  }
  ++counters_.tx_segments;
  return true;
}

// ---------------------------------------------------------------------------
// Timers

void TcpLayer::poll_timers(Nanos now) {
  last_now_ = now;
  wheel_.advance(now, [this, now](TimerId, std::uint64_t cookie) {
    const auto i = static_cast<std::uint32_t>(cookie);
    if (i >= slots_.size() || !slots_[i].conn) return;
    slots_[i].timer = {};
    slots_[i].armed = Nanos::max();
    slots_[i].conn->on_timer(now);
    settle(i, now);
  });
}

Nanos TcpLayer::next_deadline() const noexcept { return wheel_.next_deadline().value_or(Nanos::max()); }

// ---------------------------------------------------------------------------
// Handles

void TcpLayer::release_stream(std::uint32_t i, std::uint32_t generation) {
  if (!slot_ok(i, generation)) return;
  Slot& s = slots_[i];
  s.has_handle = false;
  if (s.conn->state() != State::kClosed) s.conn->close(last_now_);
  settle(i, last_now_);
}

std::optional<TcpStream> TcpLayer::accept_from(std::uint32_t li, std::uint32_t generation) {
  if (li >= listeners_.size() || !listeners_[li].open || listeners_[li].generation != generation) return {};
  Listener& l = listeners_[li];
  while (!l.accept_queue.empty()) {
    const std::uint32_t i = l.accept_queue.front();
    l.accept_queue.pop_front();
    Slot& s = slots_[i];
    s.queued = false;
    s.listener = -1;
    s.has_handle = true;
    ++counters_.accepted;
    return TcpStream(this, i, s.generation);
  }
  return {};
}

void TcpLayer::close_listener(std::uint32_t li, std::uint32_t generation) {
  if (li >= listeners_.size() || !listeners_[li].open || listeners_[li].generation != generation) return;
  Listener& l = listeners_[li];
  const IpAddr addr = l.local.addr.is_unspecified() ? IpAddr::any(IpFamily::kIpv4) : IpAddr::v4(l.local.addr);
  (void)listeners_table_.erase(addr, l.local.port);
  (void)iface_->steer_port(link::SteerRule::Kind::kTcpPort, l.local.port, false);
  // Connections not yet accepted (half-open or queued) are reset.
  for (std::uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.conn || s.listener != static_cast<std::int32_t>(li)) continue;
    s.conn->abort(last_now_);
    s.queued = false;
    s.listener = -1;
    settle(i, last_now_);
  }
  l.open = false;
  l.accept_queue.clear();
  l.half_open = 0;
  ++l.generation;
}

std::string TcpLayer::format_counters(bool all) const {
  const TcpCounters& c = counters_;
  std::string out = "Tcp:\n";
  auto line = [&out](std::uint64_t v, std::string_view what) { append_counter_line(out, v, what); };
  line(c.rx_segments, "segments received");
  line(c.tx_segments, "segments sent");
  line(c.active_opens, "active opens");
  line(c.passive_opens, "passive opens");
  line(c.accepted, "connections accepted");
  line(c.resets_sent, "resets sent for segments nobody owns");
  line(c.connections_freed, "connections freed");
  line(c.icmp_errors, "icmp errors received");
  line(c.syn_cookies_sent, "syn cookies sent");
  line(c.syn_cookies_accepted, "connections made from syn cookies");
  line(c.tx_errors, "segments the interface refused");
  for (std::size_t r = 0; r < kTcpDropReasonCount; ++r) {
    if (all || c.drops[r] != 0)
      append_counter_line(out, c.drops[r],
                          "dropped: " + std::string(to_string(static_cast<TcpDropReason>(r))));
  }
  line(live_, "connections open");
  out += "    " + std::to_string(buffer_committed_) + " bytes of buffer memory committed (bound " +
         std::to_string(config_.max_buffer_memory) + ")\n";
  const ConnectionCounters t = connection_totals();
  line(t.bytes_in, "bytes received in order");
  line(t.bytes_out, "bytes sent (first transmissions)");
  line(t.retransmits, "segments retransmitted");
  line(t.retransmitted_bytes, "bytes retransmitted");
  line(t.timeouts, "retransmission timeouts");
  line(t.fast_retransmits, "fast retransmits (three duplicate acks)");
  line(t.dup_acks, "duplicate acks received");
  line(t.ooo_queued, "out-of-order segments queued (sacked)");
  line(t.challenge_acks, "challenge acks sent");
  line(t.window_probes, "zero-window probes sent");
  line(t.ecn_negotiated, "connections with ecn");
  line(t.ect_sent, "data segments sent ect(0)");
  line(t.ce_received, "data segments received with ce");
  line(t.ece_sent, "segments sent with ece");
  line(t.ece_received, "acks received with ece");
  line(t.cwr_sent, "segments sent with cwr");
  line(t.cwr_received, "segments received with cwr (ending ece)");
  line(t.ecn_cwnd_reductions, "congestion window reductions for ecn");
  for (std::size_t d = 0; d < kSegmentDropCount; ++d) {
    if (all || t.drops[d] != 0) {
      append_counter_line(out, t.drops[d],
                          std::string("segments dropped: ") + to_string(static_cast<SegmentDrop>(d)));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// TcpStream, TcpListener

TcpStream::TcpStream(TcpStream&& o) noexcept
    : layer_(std::exchange(o.layer_, nullptr)), slot_(o.slot_), generation_(o.generation_) {}

TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    if (layer_ != nullptr) layer_->release_stream(slot_, generation_);
    layer_ = std::exchange(o.layer_, nullptr);
    slot_ = o.slot_;
    generation_ = o.generation_;
  }
  return *this;
}

TcpStream::~TcpStream() {
  if (layer_ != nullptr) layer_->release_stream(slot_, generation_);
}

Connection& TcpStream::conn() const { return *layer_->slots_[slot_].conn; }
const Connection& TcpStream::connection() const { return conn(); }

Expected<std::size_t, std::error_code> TcpStream::send(std::span<const std::byte> data, Nanos now) {
  if (layer_ == nullptr) return unexpected(err(EBADF));
  layer_->last_now_ = now;
  auto r = conn().send(data, now);
  layer_->settle(slot_, now);
  return r;
}

Expected<std::size_t, std::error_code> TcpStream::receive(std::span<std::byte> out, Nanos now) {
  if (layer_ == nullptr) return unexpected(err(EBADF));
  layer_->last_now_ = now;
  auto r = conn().receive(out, now);
  layer_->settle(slot_, now);
  return r;
}

Expected<TcpBuffer, std::error_code> TcpStream::receive_buffer(Nanos now) {
  if (layer_ == nullptr) return unexpected(err(EBADF));
  layer_->last_now_ = now;
  Connection& c = conn();
  auto piece = c.receive_piece(now);
  layer_->settle(slot_, now);
  if (!piece) {
    if (c.error()) return unexpected(c.error());
    return TcpBuffer{};
  }
  return TcpBuffer(&c.buffer_pool(), c.buffer_owner(), piece->buffer, piece->offset, piece->len);
}

Expected<TcpBuffer, std::error_code> TcpStream::alloc_buffer() {
  if (layer_ == nullptr) return unexpected(err(EBADF));
  const Connection& c = conn();
  auto b = c.buffer_pool().alloc(c.buffer_owner());
  if (!b) return unexpected(b.error());
  return TcpBuffer(&c.buffer_pool(), c.buffer_owner(), *b, 0, 0);
}

Expected<std::size_t, std::error_code> TcpStream::send_buffer(TcpBuffer& buffer, Nanos now) {
  if (layer_ == nullptr) return unexpected(err(EBADF));
  Connection& c = conn();
  if (!buffer.valid() || buffer.pool_ != &c.buffer_pool() || buffer.owner_ != c.buffer_owner()) {
    return unexpected(err(EINVAL));
  }
  if (buffer.size() == 0) return std::size_t{0};
  layer_->last_now_ = now;
  auto r = c.send_buffer(buffer.index_, buffer.offset_, buffer.len_, now);
  layer_->settle(slot_, now);
  if (!r) return r;
  if (*r == buffer.len_) {
    buffer.pool_ = nullptr;  // the connection's now
    buffer.len_ = 0;
  } else {
    buffer.offset_ += *r;
    buffer.len_ -= *r;
  }
  return r;
}

TcpBuffer& TcpBuffer::operator=(TcpBuffer&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::exchange(o.pool_, nullptr);
    owner_ = o.owner_;
    index_ = o.index_;
    offset_ = o.offset_;
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

std::span<std::byte> TcpBuffer::data() const noexcept {
  if (pool_ == nullptr) return {};
  return pool_->buffer(index_).subspan(offset_, len_);
}

std::size_t TcpBuffer::capacity() const noexcept {
  return pool_ == nullptr ? 0 : pool_->buffer_size() - offset_;
}

std::span<std::byte> TcpBuffer::space() const noexcept {
  if (pool_ == nullptr) return {};
  return pool_->buffer(index_).subspan(offset_);
}

void TcpBuffer::resize(std::size_t n) noexcept { len_ = std::min(n, capacity()); }

void TcpBuffer::release() noexcept {
  if (pool_ != nullptr) (void)pool_->free(owner_, index_);
  pool_ = nullptr;
  len_ = 0;
}

std::error_code TcpStream::shutdown_write(Nanos now) {
  if (layer_ == nullptr) return err(EBADF);
  layer_->last_now_ = now;
  auto ec = conn().shutdown_write(now);
  layer_->settle(slot_, now);
  return ec;
}

void TcpStream::close(Nanos now) {
  if (layer_ == nullptr) return;
  layer_->last_now_ = now;
  std::exchange(layer_, nullptr)->release_stream(slot_, generation_);
}

void TcpStream::set_no_delay(bool on, Nanos now) {
  if (layer_ == nullptr) return;
  conn().set_no_delay(on, now);
  layer_->settle(slot_, now);
}

void TcpStream::set_keepalive(bool on, Nanos now) {
  if (layer_ == nullptr) return;
  conn().set_keepalive(on, now);
  layer_->settle(slot_, now);
}

std::error_code TcpStream::set_buffer_sizes(std::size_t send, std::size_t recv, Nanos now) {
  if (layer_ == nullptr) return err(EBADF);
  if (!Connection::valid_buffer_size(send) || !Connection::valid_buffer_size(recv)) return err(EINVAL);
  TcpLayer::Slot& s = layer_->slots_[slot_];
  const std::size_t others = layer_->buffer_committed_ - s.committed;
  if (others + send + recv > layer_->config_.max_buffer_memory) return err(ENOBUFS);
  if (auto ec = conn().set_buffer_sizes(send, recv, now)) return ec;
  layer_->buffer_committed_ = others + send + recv;
  s.committed = send + recv;
  layer_->settle(slot_, now);
  return {};
}

void TcpStream::abort(Nanos now) {
  if (layer_ == nullptr) return;
  layer_->last_now_ = now;
  conn().abort(now);
  std::exchange(layer_, nullptr)->release_stream(slot_, generation_);
}

TcpListener::TcpListener(TcpListener&& o) noexcept
    : layer_(std::exchange(o.layer_, nullptr)), index_(o.index_), generation_(o.generation_) {}

TcpListener& TcpListener::operator=(TcpListener&& o) noexcept {
  if (this != &o) {
    close();
    layer_ = std::exchange(o.layer_, nullptr);
    index_ = o.index_;
    generation_ = o.generation_;
  }
  return *this;
}

TcpListener::~TcpListener() { close(); }

std::optional<TcpStream> TcpListener::accept() {
  if (layer_ == nullptr) return {};
  return layer_->accept_from(index_, generation_);
}

std::size_t TcpListener::pending() const {
  if (layer_ == nullptr || index_ >= layer_->listeners_.size()) return 0;
  return layer_->listeners_[index_].accept_queue.size();
}

void TcpListener::close() {
  if (layer_ == nullptr) return;
  std::exchange(layer_, nullptr)->close_listener(index_, generation_);
}

}  // namespace usnet::tcp
