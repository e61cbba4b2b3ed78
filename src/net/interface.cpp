#include "usnet/net/interface.hpp"

#include <algorithm>
#include <cstring>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/arp.hpp"
#include "usnet/wire/ethernet.hpp"

namespace usnet::net {

namespace {
std::error_code err(std::errc e) { return std::make_error_code(e); }
}  // namespace

Expected<std::unique_ptr<Interface>, std::error_code> Interface::create(link::Link& link,
                                                                        mem::PacketPool& pool,
                                                                        mem::OwnerId owner,
                                                                        const InterfaceConfig& config) {
  if (config.addresses.empty()) return unexpected(err(std::errc::invalid_argument));
  for (const auto& a : config.addresses) {
    if (a.prefix_len > 32 || a.addr.is_unspecified() || a.addr.is_broadcast() || a.addr.is_multicast()) {
      return unexpected(err(std::errc::invalid_argument));
    }
  }
  // RFC 791 3.2: every link must carry 68-byte datagrams; and a buffer must
  // hold an Ethernet header and a minimal IP header with 8 bytes of data.
  if (link.info().mtu < 68 || pool.buffer_size() < kEthHeaderLen + 68) {
    return unexpected(err(std::errc::invalid_argument));
  }
  std::unique_ptr<Interface> iface(new Interface(link, pool, owner, config));
  // A link that shares its device with the kernel must hand us the traffic
  // for our addresses (AF_XDP's program); the others accept and ignore this.
  for (const auto& a : config.addresses) {
    if (auto ec = link.steer({link::SteerRule::Kind::kIpv4Address, a.addr, 0}, true)) return unexpected(ec);
    iface->steered_.push_back(a.addr);
  }
  return iface;
}

Interface::Interface(link::Link& link, mem::PacketPool& pool, mem::OwnerId owner,
                     const InterfaceConfig& config)
    : link_(&link),
      pool_(&pool),
      owner_(owner),
      config_(config),
      arp_(config.arp, pool, owner, counters_),
      reasm_(config.reassembly, counters_),
      icmp_errors_(config.icmp.error_rate_per_second, config.icmp.error_burst),
      mtu_(static_cast<std::uint32_t>(
          std::min<std::size_t>(link.info().mtu, pool.buffer_size() - kEthHeaderLen))),
      next_ident_(config.first_ident),
      announcements_left_(config.arp.announce_count) {
  for (const auto& a : config_.addresses) (void)routes_.add_connected(a.addr, a.prefix_len);
  tx_.reserve(kBurst * 2);
}

Interface::~Interface() {
  for (const auto& f : tx_) free_frame(f);
  for (const auto a : steered_) (void)link_->steer({link::SteerRule::Kind::kIpv4Address, a, 0}, false);
}

std::error_code Interface::steer_port(link::SteerRule::Kind kind, std::uint16_t port, bool add) {
  return link_->steer({kind, {}, port}, add);
}

// ---------------------------------------------------------------------------
// Helpers

void Interface::free_frame(const link::Frame& f) noexcept { (void)pool_->free(owner_, f.buffer); }

std::span<std::byte> Interface::frame_bytes(const link::Frame& f) const noexcept {
  auto buf = pool_->buffer(f.buffer);
  if (std::size_t{f.offset} + f.length > buf.size()) return {};
  return buf.subspan(f.offset, f.length);
}

wire::ChecksumMode Interface::tx_checksum_mode() const noexcept {
  return (link_->info().offloads & link::Offload::kNoChecksums) != 0 ? wire::ChecksumMode::Ignore
                                                                     : wire::ChecksumMode::Verify;
}

bool Interface::alloc_frame(link::Frame& f) noexcept {
  auto b = pool_->alloc(owner_);
  if (!b) {
    counters_.drop(DropReason::NoBuffer);
    return false;
  }
  f = link::Frame{};
  f.buffer = *b;
  return true;
}

bool Interface::flush_tx(Nanos now) {
  if (tx_.empty()) return true;
  const std::size_t taken = link_->tx_burst(tx_, now);
  counters_.tx_frames += taken;
  for (std::size_t i = taken; i < tx_.size(); ++i) {
    free_frame(tx_[i]);
    counters_.drop(DropReason::LinkFull);
  }
  const bool all = taken == tx_.size();
  tx_.clear();
  return all;
}

std::optional<wire::Ipv4Addr> Interface::source_for(wire::Ipv4Addr dst) const noexcept {
  if (dst.is_broadcast()) return config_.addresses.front().addr;
  if (dst.is_multicast()) return std::nullopt;
  auto hop = routes_.lookup(dst);
  if (!hop) return std::nullopt;
  return hop->source;
}

bool Interface::is_our_address(wire::Ipv4Addr a) const noexcept {
  return std::any_of(config_.addresses.begin(), config_.addresses.end(),
                     [a](const InterfaceAddress& x) { return x.addr == a; });
}

bool Interface::is_directed_broadcast(wire::Ipv4Addr a) const noexcept {
  for (const auto& x : config_.addresses) {
    if (x.prefix_len > 30) continue;  // /31 (RFC 3021) and /32 have no broadcast address
    const Ipv4Prefix p{x.addr, x.prefix_len};
    if (p.contains(a) && (a.v | p.mask()) == 0xffffffffu) return true;
  }
  return false;
}

std::string Interface::format_counters(bool all) const {
  std::string out = net::format_counters(counters_, all);
  auto line = [&out](std::size_t v, std::size_t bound, std::string_view what) {
    out += "    " + std::to_string(v) + " " + std::string(what) + " (bound " + std::to_string(bound) + ")\n";
  };
  line(arp_.size(), arp_.config().max_entries, "arp entries");
  line(arp_.queued_total(), arp_.config().max_queue_total, "frames waiting for arp");
  line(reasm_.datagrams(), reasm_.config().max_datagrams, "datagrams in reassembly");
  line(reasm_.memory_used(), reasm_.config().max_memory, "bytes held by reassembly");
  return out;
}

// ---------------------------------------------------------------------------
// Poll and timers

std::size_t Interface::poll(Nanos now) {
  if (polling_) return 0;
  std::size_t received = 0;
  {
    struct Polling {
      bool& flag;
      explicit Polling(bool& f) : flag(f) { flag = true; }
      ~Polling() { flag = false; }
      Polling(const Polling&) = delete;
      Polling& operator=(const Polling&) = delete;
    } polling(polling_);
    for (std::size_t b = 0; b < kMaxBurstsPerPoll; ++b) {
      const std::size_t n = link_->rx_burst(rx_frames_, now);
      received += n;
      for (std::size_t i = 0; i < n; ++i) {
        ++counters_.rx_frames;
        handle_frame(rx_frames_[i], now);
      }
      flush_tx(now);
      if (n < kBurst) break;
    }
  }

  // The timer pass walks every ARP entry and reassembly slot, so it runs
  // only when one of them is due, or after their state changed (see
  // timers_changed()): an idle poll costs no walk.
  if (now >= timers_due_) {
    // ARP retransmissions (RFC 1122 2.3.2.1: at most one per second per
    // destination, the cache's retransmit_interval) and expiry.
    probes_.clear();
    arp_.poll(now, probes_);
    for (const auto ip : probes_) {
      auto hop = routes_.lookup(ip);
      const wire::Ipv4Addr src = hop ? hop->source : config_.addresses.front().addr;
      send_arp_request(src, ip, now);
    }

    // Reassembly timeouts: RFC 792 time exceeded, code 1, when fragment zero
    // had arrived (RFC 1122 3.3.2: "fragment reassembly time exceeded").
    expired_.clear();
    reasm_.poll(now, expired_);
    for (const auto& e : expired_) {
      if (!e.had_first || !is_our_address(e.key.dst)) continue;
      if (!icmp_error_allowed(e.key.src, e.first.span())) continue;
      send_icmp_error_to(e.key.src, e.key.dst, 11, 1, e.first.span(), now);
    }
    timers_due_ = std::min(arp_.next_deadline(), reasm_.next_deadline());
  }

  // RFC 5227 2.3: ARP announcements of our addresses at start.
  if (announcements_left_ > 0 && (!announced_once_ || now >= next_announcement_)) {
    for (const auto& a : config_.addresses) {
      send_arp(1, wire::MacAddr::broadcast(), {}, a.addr, a.addr);
      ++counters_.arp_announcements_sent;
    }
    --announcements_left_;
    announced_once_ = true;
    next_announcement_ = now + config_.arp.announce_interval;
  }
  flush_tx(now);
  return received;
}

Nanos Interface::next_deadline() const noexcept {
  Nanos next = std::min({arp_.next_deadline(), reasm_.next_deadline(), link_->next_deadline()});
  if (announcements_left_ > 0) next = std::min(next, announced_once_ ? next_announcement_ : Nanos{0});
  return next;
}

// ---------------------------------------------------------------------------
// Receive

void Interface::handle_frame(const link::Frame& f, Nanos now) {
  const auto bytes = frame_bytes(f);
  auto eth = wire::EthernetView::make(bytes);
  if (!eth) {
    counters_.drop(DropReason::EthTruncated);
    free_frame(f);
    return;
  }
  const wire::MacAddr dst = eth->dst();
  const bool link_broadcast = dst.is_multicast();  // broadcast included
  if (!link_broadcast && dst != link_->info().mac) {
    counters_.drop(DropReason::EthNotForUs);
    free_frame(f);
    return;
  }
  // VLANs are not configured: only untagged and priority-tagged (VID 0) frames.
  if (eth->has_vlan() && eth->vlan()->vid != 0) {
    counters_.drop(DropReason::EthUnknownType);
    free_frame(f);
    return;
  }
  switch (eth->ethertype()) {
    case wire::ethertype::kArp:
      handle_arp(eth->payload(), now);
      break;
    case wire::ethertype::kIpv4:
      if (handle_ipv4(f, eth->payload(), link_broadcast, now)) return;  // taken by a handler
      break;
    default:
      counters_.drop(DropReason::EthUnknownType);
      break;
  }
  free_frame(f);
}

void Interface::handle_arp(std::span<const std::byte> bytes, Nanos now) {
  auto v = wire::ArpView::make(bytes);
  if (!v) {
    counters_.drop(DropReason::ArpMalformed);
    return;
  }
  auto r = wire::ArpRepr::parse(*v);
  if (!r) {
    counters_.drop(DropReason::ArpMalformed);
    return;
  }
  ++counters_.rx_arp;
  const wire::MacAddr our_mac = link_->info().mac;
  if (r->sender_mac.is_multicast() || r->sender_ip.is_broadcast() || r->sender_ip.is_multicast() ||
      r->sender_mac == our_mac) {
    counters_.drop(DropReason::ArpBadSender);
    return;
  }
  // RFC 5227 2.4: another host claims one of our addresses. We do not
  // defend (no timers for that yet) but must not learn it.
  if (is_our_address(r->sender_ip)) {
    counters_.drop(DropReason::ArpBadSender);
    return;
  }
  const bool for_us = is_our_address(r->target_ip);
  // RFC 826 packet reception: merge the sender into an existing entry; add
  // it only if we are the target. A probe (sender 0.0.0.0, RFC 5227 2.1.1)
  // teaches nothing.
  if (!r->sender_ip.is_unspecified()) {
    ready_.clear();
    arp_.learn(r->sender_ip, r->sender_mac, for_us, now, ready_);
    timers_changed();
    for (const auto& f : ready_) {
      auto fb = frame_bytes(f);
      if (fb.size() >= kEthHeaderLen) r->sender_mac.write(fb.data());
      queue_tx(f);
    }
  }
  if (!for_us) {
    counters_.drop(DropReason::ArpNotForUs);  // after the merge above
    return;
  }
  if (r->operation == wire::ArpOperation::Request) {
    send_arp(2, r->sender_mac, r->sender_mac, r->target_ip, r->sender_ip);
    ++counters_.arp_replies_sent;
  }
}

bool Interface::handle_ipv4(const link::Frame& f, std::span<const std::byte> bytes, bool link_broadcast,
                            Nanos now) {
  auto v = wire::Ipv4View::make(bytes);
  if (!v) {
    counters_.drop(v.error() == wire::ParseError::Truncated ? DropReason::IpTruncated
                                                            : DropReason::IpBadHeader);
    return false;
  }
  const bool verified = (f.flags & link::FrameFlag::kChecksumsVerified) != 0 ||
                        (link_->info().offloads & link::Offload::kNoChecksums) != 0;
  if (!verified && !v->checksum_ok()) {
    counters_.drop(DropReason::IpBadChecksum);
    return false;
  }
  const wire::Ipv4Addr src = v->src();
  const wire::Ipv4Addr dst = v->dst();
  // RFC 1122 3.2.1.3: a source that is not one host is discarded; so is
  // one of our own addresses coming in from the link (spoofed: "martian").
  if (src.is_broadcast() || src.is_multicast() || is_directed_broadcast(src) || is_our_address(src)) {
    counters_.drop(DropReason::IpBadSource);
    return false;
  }
  const bool ip_broadcast = dst.is_broadcast() || is_directed_broadcast(dst);
  if (!ip_broadcast && !is_our_address(dst)) {
    counters_.drop(dst.is_multicast() ? DropReason::IpMulticastNotJoined : DropReason::IpNotForUs);
    return false;
  }
  ++counters_.rx_ipv4;
  // RFC 1122 3.2.1.7: a host does not check TTL on what it receives (only
  // a forwarding router does); we never forward.

  InboundDatagram d;
  d.ip.src = src;
  d.ip.dst = dst;
  d.ip.protocol = v->protocol();
  d.ip.link_broadcast = link_broadcast;
  d.ip.ip_broadcast = ip_broadcast;

  if (v->is_fragment()) {
    auto done = reasm_.add(*v, now);
    timers_changed();
    if (!done) return false;
    d.ip.ttl = done->ttl;
    d.ip.dscp = done->dscp;
    d.ip.ecn = done->ecn;
    d.ip.ident = done->key.ident;
    d.ip.reassembled = true;
    // The upper-layer checksum covers bytes from several frames: only a
    // link that guarantees intact frames lets it be skipped.
    d.ip.checksums_verified = (link_->info().offloads & link::Offload::kNoChecksums) != 0;
    d.payload = done->payload;
    d.quote = done->first.span();
    deliver(d, now);
    return false;
  }
  d.ip.ttl = v->ttl();
  d.ip.dscp = v->dscp();
  d.ip.ecn = v->ecn();
  d.ip.ident = v->ident();
  d.ip.checksums_verified = verified;
  d.payload = v->payload();
  d.quote = v->bytes().first(std::min(v->bytes().size(), v->header_len() + 8));
  d.frame_ = f;
  deliver(d, now);
  return !d.frame_.has_value();
}

void Interface::deliver(InboundDatagram& d, Nanos now) {
  if (d.ip.protocol == wire::ip_protocol::kIcmp) {
    handle_icmp(d, now);
    return;
  }
  auto& h = handlers_[d.ip.protocol];
  if (!h) {
    counters_.drop(DropReason::IpUnknownProtocol);
    // RFC 1122 3.2.2.1: protocol unreachable (code 2).
    send_icmp_error(d, 3, 2, now);
    return;
  }
  ++counters_.rx_delivered;
  h(d, now);
}

std::error_code Interface::set_protocol_handler(std::uint8_t protocol, ProtocolHandler handler) {
  if (protocol == wire::ip_protocol::kIcmp) return err(std::errc::invalid_argument);
  handlers_[protocol] = std::move(handler);
  return {};
}

void Interface::set_error_handler(std::uint8_t protocol, ErrorHandler handler) {
  error_handlers_[protocol] = std::move(handler);
}

// ---------------------------------------------------------------------------
// Send

std::error_code Interface::send(wire::Ipv4Addr dst, std::uint8_t protocol, std::span<const std::byte> payload,
                                const SendOptions& options, Nanos now) {
  std::error_code ec = output(options.source, dst, protocol, payload, options, now);
  if (!flush_tx(now) && !ec) ec = err(std::errc::no_buffer_space);
  return ec;
}

Expected<Interface::Route, std::error_code> Interface::route(wire::Ipv4Addr src,
                                                             wire::Ipv4Addr dst) noexcept {
  Route r{src, dst, dst.is_broadcast() || is_directed_broadcast(dst)};
  if (dst.is_broadcast()) {
    if (r.src.is_unspecified()) r.src = config_.addresses.front().addr;
    return r;
  }
  auto hop = dst.is_multicast() ? std::nullopt : routes_.lookup(dst);
  if (!hop) {
    counters_.drop(DropReason::NoRoute);
    return unexpected(err(std::errc::network_unreachable));
  }
  r.next_hop = hop->next_hop;
  if (r.src.is_unspecified()) r.src = hop->source;
  return r;
}

void Interface::write_headers(std::span<std::byte> buf, wire::Ipv4Addr src, wire::Ipv4Addr dst,
                              std::uint8_t protocol, const SendOptions& options, std::uint16_t ident,
                              bool more_frags, std::size_t frag_offset, std::size_t len,
                              wire::ChecksumMode mode) const noexcept {
  wire::EthernetRepr eth{{}, link_->info().mac, wire::ethertype::kIpv4, std::nullopt};
  (void)eth.emit(buf);
  wire::Ipv4Repr ip;
  ip.src = src;
  ip.dst = dst;
  ip.protocol = protocol;
  ip.ttl = options.ttl != 0 ? options.ttl : config_.default_ttl;
  ip.dscp = options.dscp & 0x3f;
  ip.ecn = options.ecn & 0x03;
  ip.ident = ident;
  ip.dont_frag = options.dont_frag;
  ip.more_frags = more_frags;
  ip.frag_offset_bytes = static_cast<std::uint16_t>(frag_offset);
  ip.payload_len = static_cast<std::uint16_t>(len);
  (void)ip.emit(buf.subspan(kEthHeaderLen), mode);
}

std::error_code Interface::output(wire::Ipv4Addr src, wire::Ipv4Addr dst, std::uint8_t protocol,
                                  std::span<const std::byte> payload, const SendOptions& options, Nanos now) {
  if (payload.size() > 0xffff - kIpHeaderLen) {
    counters_.drop(DropReason::TooBig);
    return err(std::errc::message_size);
  }
  const auto r = route(src, dst);
  if (!r) return r.error();
  const std::size_t one_frame = mtu_ - kIpHeaderLen;
  if (payload.size() > one_frame && options.dont_frag) {
    counters_.drop(DropReason::TooBig);
    return err(std::errc::message_size);
  }
  // RFC 791 3.2: fragments carry multiples of 8 bytes, MF on all but the last.
  const std::size_t per_frag = payload.size() <= one_frame ? payload.size() : (one_frame & ~std::size_t{7});
  const auto mode = tx_checksum_mode();
  const std::uint16_t ident = next_ident_++;

  frags_.clear();
  std::size_t off = 0;
  do {
    const std::size_t len = std::min(per_frag, payload.size() - off);
    link::Frame f;
    if (!alloc_frame(f)) {
      for (const auto& g : frags_) free_frame(g);
      frags_.clear();
      return err(std::errc::no_buffer_space);
    }
    auto buf = pool_->buffer(f.buffer);
    write_headers(buf, r->src, dst, protocol, options, ident, off + len < payload.size(), off, len, mode);
    if (len != 0) std::memcpy(buf.data() + kHeadroom, payload.data() + off, len);
    f.length = static_cast<std::uint32_t>(kHeadroom + len);
    if (mode == wire::ChecksumMode::Ignore) f.flags = link::FrameFlag::kChecksumsVerified;
    frags_.push_back(f);
    off += len;
  } while (off < payload.size());

  ++counters_.tx_datagrams;
  if (frags_.size() > 1) counters_.tx_fragments += frags_.size();
  std::error_code first_error;
  for (const auto& f : frags_) {
    auto ec = to_link(f, r->next_hop, r->broadcast, r->src, now);
    if (ec && !first_error) first_error = ec;
  }
  frags_.clear();
  return first_error;
}

Expected<OutboundDatagram, std::error_code> Interface::reserve(wire::Ipv4Addr dst, std::uint8_t protocol,
                                                               std::size_t length,
                                                               const SendOptions& options) {
  if (length > mtu_ - kIpHeaderLen) {
    counters_.drop(DropReason::TooBig);
    return unexpected(err(std::errc::message_size));
  }
  const auto r = route(options.source, dst);
  if (!r) return unexpected(r.error());
  link::Frame f;
  if (!alloc_frame(f)) return unexpected(err(std::errc::no_buffer_space));
  const auto mode = tx_checksum_mode();
  auto buf = pool_->buffer(f.buffer);
  write_headers(buf, r->src, dst, protocol, options, next_ident_++, false, 0, length, mode);
  f.length = static_cast<std::uint32_t>(kHeadroom + length);
  if (mode == wire::ChecksumMode::Ignore) f.flags = link::FrameFlag::kChecksumsVerified;
  OutboundDatagram d;
  d.frame_ = f;
  d.payload_ = buf.subspan(kHeadroom, length);
  d.src_ = r->src;
  d.next_hop_ = r->next_hop;
  d.broadcast_ = r->broadcast;
  return d;
}

std::error_code Interface::transmit(OutboundDatagram& d, Nanos now) {
  if (d.payload_.data() == nullptr) return err(std::errc::invalid_argument);
  d.payload_ = {};
  ++counters_.tx_datagrams;
  std::error_code ec = to_link(d.frame_, d.next_hop_, d.broadcast_, d.src_, now);
  if (!flush_tx(now) && !ec) ec = err(std::errc::no_buffer_space);
  return ec;
}

void Interface::release(OutboundDatagram& d) noexcept {
  if (d.payload_.data() == nullptr) return;
  d.payload_ = {};
  free_frame(d.frame_);
}

std::error_code Interface::to_link(const link::Frame& f, wire::Ipv4Addr next_hop, bool broadcast,
                                   wire::Ipv4Addr src, Nanos now) {
  auto bytes = frame_bytes(f);
  if (broadcast) {
    wire::MacAddr::broadcast().write(bytes.data());
    queue_tx(f);
    return {};
  }
  auto res = arp_.resolve(next_hop, f, now);
  if (res.changed) timers_changed();
  if (res.send_request) {
    const wire::Ipv4Addr sender = is_our_address(src) ? src : config_.addresses.front().addr;
    send_arp_request(sender, next_hop, now);
  }
  switch (res.kind) {
    case ArpCache::Resolution::Kind::Send:
      res.mac.write(bytes.data());
      queue_tx(f);
      return {};
    case ArpCache::Resolution::Kind::Queued:
      return {};
    case ArpCache::Resolution::Kind::Dropped:
      break;
  }
  return arp_.state(next_hop) == ArpState::Failed ? err(std::errc::host_unreachable)
                                                  : err(std::errc::no_buffer_space);
}

void Interface::send_arp_request(wire::Ipv4Addr sender_ip, wire::Ipv4Addr target_ip, Nanos now) {
  // Out at once rather than with the next flush, so that a link that
  // refuses it (a memif not yet connected, a full ring) is known now and the
  // cache retries soon instead of a whole retransmit interval later.
  flush_tx(now);
  send_arp(1, wire::MacAddr::broadcast(), {}, sender_ip, target_ip);
  if (tx_.empty()) return;  // no buffer for it: counted by alloc_frame
  if (flush_tx(now)) {
    ++counters_.arp_requests_sent;
  } else {
    arp_.request_refused(target_ip, now);
    timers_changed();
  }
}

void Interface::send_arp(std::uint16_t op, wire::MacAddr eth_dst, wire::MacAddr target_mac,
                         wire::Ipv4Addr sender_ip, wire::Ipv4Addr target_ip) {
  link::Frame f;
  if (!alloc_frame(f)) return;
  auto buf = pool_->buffer(f.buffer);
  const wire::MacAddr our_mac = link_->info().mac;
  wire::EthernetRepr eth{eth_dst, our_mac, wire::ethertype::kArp, std::nullopt};
  (void)eth.emit(buf);
  wire::ArpRepr arp{static_cast<wire::ArpOperation>(op), our_mac, sender_ip, target_mac, target_ip};
  (void)arp.emit(buf.subspan(kEthHeaderLen));
  f.length = static_cast<std::uint32_t>(kEthHeaderLen + wire::ArpView::kLen);
  queue_tx(f);
}

}  // namespace usnet::net
