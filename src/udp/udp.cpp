#include "usnet/udp/udp.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "usnet/util/counter_text.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::udp {
namespace {

std::error_code err(std::errc e) { return std::make_error_code(e); }

constexpr std::uint8_t kProtocol = wire::UdpView::kProtocol;

// The errno a connected socket is given for an ICMP error (RFC 1122
// 4.1.3.3: UDP passes ICMP errors up to the application), as Linux maps
// them; an empty code for errors not reported.
std::error_code error_for_icmp(std::uint8_t type, std::uint8_t code) {
  if (type == 12) return err(std::errc::protocol_error);  // parameter problem
  if (type != 3) return {};  // time exceeded and the rest: transient or not errors
  switch (code) {
    case 0:   // net unreachable
    case 6:   // destination network unknown
    case 9:   // network administratively prohibited
    case 11:  // network unreachable for TOS
      return err(std::errc::network_unreachable);
    case 2:
      return err(std::errc::no_protocol_option);  // protocol unreachable (ENOPROTOOPT)
    case 3:
      return err(std::errc::connection_refused);  // port unreachable
    case 4:
      return {};  // fragmentation needed: we send with DF clear
    case 5:
      return err(std::errc::operation_not_supported);  // source route failed
    default:  // host unreachable, unknown, isolated, prohibited, precedence ...
      return err(std::errc::host_unreachable);
  }
}

// splitmix64: a small well-mixed generator for the ephemeral port offset.
std::uint64_t next_random(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::string Endpoint::to_string() const { return addr.to_string() + ":" + std::to_string(port); }

std::string_view to_string(UdpDropReason r) noexcept {
  switch (r) {
    case UdpDropReason::Truncated:
      return "truncated";
    case UdpDropReason::BadLength:
      return "bad length";
    case UdpDropReason::BadChecksum:
      return "bad checksum";
    case UdpDropReason::BadPort:
      return "destination port 0";
    case UdpDropReason::NoPort:
      return "no socket on port";
    case UdpDropReason::NotFromPeer:
      return "not from the connected peer";
    case UdpDropReason::QueueFull:
      return "receive queue full (datagrams)";
    case UdpDropReason::QueueBytes:
      return "receive queue full (bytes)";
    case UdpDropReason::IcmpNoSocket:
      return "icmp error for no socket";
    case UdpDropReason::IcmpIgnored:
      return "icmp error ignored";
    case UdpDropReason::kCount:
      break;
  }
  return "unknown";
}

std::uint64_t UdpCounters::dropped_total() const noexcept {
  std::uint64_t t = 0;
  for (auto d : drops) t += d;
  return t;
}

std::string format_counters(const UdpCounters& c, bool all) {
  std::string out;
  auto line = [&out](std::uint64_t v, std::string_view what) { append_counter_line(out, v, what); };
  out += "Udp:\n";
  line(c.rx_datagrams, "datagrams received");
  line(c.rx_delivered, "datagrams delivered to sockets");
  line(c.rx_bytes, "bytes delivered to sockets");
  line(c.rx_zero_copy, "datagrams kept in their frame (zero-copy)");
  line(c.rx_copied, "datagrams copied (reassembled)");
  line(c.tx_datagrams, "datagrams sent");
  line(c.tx_bytes, "bytes sent");
  line(c.tx_errors, "send errors");
  line(c.port_unreachable_sent, "port unreachable sent");
  line(c.icmp_errors_received, "icmp errors received");
  line(c.icmp_errors_reported, "icmp errors reported to sockets");
  for (std::size_t i = 0; i < kUdpDropReasonCount; ++i) {
    if (c.drops[i] == 0 && !all) continue;
    line(c.drops[i], std::string("dropped: ") + std::string(to_string(static_cast<UdpDropReason>(i))));
  }
  return out;
}

// ---------------------------------------------------------------------------
// UdpDatagram

UdpDatagram::UdpDatagram(UdpDatagram&& o) noexcept { *this = std::move(o); }

UdpDatagram& UdpDatagram::operator=(UdpDatagram&& o) noexcept {
  if (this == &o) return *this;
  release();
  from = o.from;
  to = o.to;
  broadcast = o.broadcast;
  ttl = o.ttl;
  dscp = o.dscp;
  ecn = o.ecn;
  pool_ = o.pool_;
  owner_ = o.owner_;
  frame_ = o.frame_;
  payload_offset_ = o.payload_offset_;
  copied_ = o.copied_;
  copy_ = std::move(o.copy_);  // a moved vector keeps its storage: payload_ stays valid
  payload_ = o.payload_;
  o.frame_.reset();
  o.copy_.clear();
  o.payload_ = {};
  o.copied_ = false;
  return *this;
}

void UdpDatagram::release() noexcept {
  if (frame_ && pool_ != nullptr) (void)pool_->free(owner_, frame_->buffer);
  frame_.reset();
  copy_.clear();
  copy_.shrink_to_fit();
  payload_ = {};
}

// ---------------------------------------------------------------------------
// DatagramQueue

namespace detail {

void DatagramQueue::push_back(UdpDatagram&& d) {
  if (count_ == slots_.size()) {
    // A power of two, so that a position is a mask away.
    std::vector<UdpDatagram> grown(std::max<std::size_t>(8, slots_.size() * 2));
    for (std::size_t i = 0; i < count_; ++i) grown[i] = std::move(slots_[(head_ + i) & (slots_.size() - 1)]);
    slots_ = std::move(grown);
    head_ = 0;
  }
  slots_[(head_ + count_) & (slots_.size() - 1)] = std::move(d);
  ++count_;
}

void DatagramQueue::pop_front() noexcept {
  slots_[head_].release();
  head_ = (head_ + 1) & (slots_.size() - 1);
  --count_;
}

void DatagramQueue::clear() noexcept {
  while (count_ > 0) pop_front();
  head_ = 0;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// UdpSocket

UdpSocket::~UdpSocket() {
  close();
  if (layer_ != nullptr) layer_->forget(this);
}

std::error_code UdpSocket::bind(Endpoint local) {
  if (layer_ == nullptr) return err(std::errc::bad_file_descriptor);
  if (bound_) return err(std::errc::invalid_argument);
  if (!local.addr.is_unspecified() && !layer_->iface_->is_our_address(local.addr)) {
    return err(std::errc::address_not_available);
  }
  if (local.port == 0) {
    auto p = layer_->pick_ephemeral(local.addr);
    if (!p) return err(std::errc::address_in_use);
    local.port = *p;
  } else if (layer_->port_in_use(local.addr, local.port, this)) {
    return err(std::errc::address_in_use);
  }
  // A link shared with the kernel (AF_XDP) must hand us this port's traffic.
  if (auto ec = layer_->iface_->steer_port(link::SteerRule::Kind::kUdpPort, local.port, true)) return ec;
  local_ = local;
  bound_ = true;
  return {};
}

std::error_code UdpSocket::connect(Endpoint remote) {
  if (layer_ == nullptr) return err(std::errc::bad_file_descriptor);
  if (remote.addr.is_unspecified() || remote.port == 0) return err(std::errc::invalid_argument);
  if (layer_->is_broadcast(remote.addr) && !options_.allow_broadcast)
    return err(std::errc::permission_denied);
  if (!layer_->iface_->source_for(remote.addr)) return err(std::errc::network_unreachable);
  if (!bound_) {
    if (auto ec = bind({})) return ec;
  }
  remote_ = remote;
  connected_ = true;
  return {};
}

void UdpSocket::disconnect() noexcept {
  connected_ = false;
  remote_ = {};
}

void UdpSocket::close() noexcept {
  free_queue();
  if (bound_ && layer_ != nullptr) {
    (void)layer_->iface_->steer_port(link::SteerRule::Kind::kUdpPort, local_.port, false);
  }
  bound_ = false;
  connected_ = false;
  local_ = {};
  remote_ = {};
  error_ = {};
}

void UdpSocket::free_queue() noexcept {
  queue_.clear();  // each datagram gives its buffer back
  queued_bytes_ = 0;
}

std::error_code UdpSocket::take_error() noexcept { return std::exchange(error_, {}); }

std::error_code UdpSocket::send_to(std::span<const std::byte> payload, Endpoint to, Nanos now) {
  if (layer_ == nullptr) return err(std::errc::bad_file_descriptor);
  if (error_) return take_error();
  return layer_->send(*this, payload, to, now);
}

std::error_code UdpSocket::send(std::span<const std::byte> payload, Nanos now) {
  if (layer_ == nullptr) return err(std::errc::bad_file_descriptor);
  if (error_) return take_error();
  if (!connected_) return err(std::errc::destination_address_required);
  return layer_->send(*this, payload, remote_, now);
}

Expected<RecvInfo, std::error_code> UdpSocket::recv_from(std::span<std::byte> buffer) {
  if (layer_ == nullptr) return unexpected(err(std::errc::bad_file_descriptor));
  if (error_) return unexpected(take_error());
  if (queue_.empty()) return unexpected(err(std::errc::resource_unavailable_try_again));
  const UdpDatagram& d = queue_.front();
  RecvInfo info;
  info.from = d.from;
  info.to = d.to;
  info.length = d.payload().size();
  info.copied = std::min(info.length, buffer.size());
  info.truncated = info.copied < info.length;
  info.broadcast = d.broadcast;
  info.ttl = d.ttl;
  info.dscp = d.dscp;
  info.ecn = d.ecn;
  if (info.copied != 0) std::memcpy(buffer.data(), d.payload().data(), info.copied);
  queued_bytes_ -= info.length;
  queue_.pop_front();  // frees the buffer
  return info;
}

Expected<UdpDatagram, std::error_code> UdpSocket::receive() {
  if (layer_ == nullptr) return unexpected(err(std::errc::bad_file_descriptor));
  if (error_) return unexpected(take_error());
  if (queue_.empty()) return unexpected(err(std::errc::resource_unavailable_try_again));
  UdpDatagram d = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= d.payload().size();
  return Expected<UdpDatagram, std::error_code>(std::move(d));
}

// ---------------------------------------------------------------------------
// UdpLayer

Expected<std::unique_ptr<UdpLayer>, std::error_code> UdpLayer::create(net::Interface& iface,
                                                                      mem::PacketPool& pool,
                                                                      mem::OwnerId owner,
                                                                      const UdpConfig& config) {
  if (config.ephemeral_min == 0 || config.ephemeral_min > config.ephemeral_max) {
    return unexpected(err(std::errc::invalid_argument));
  }
  std::unique_ptr<UdpLayer> layer(new UdpLayer(iface, pool, owner, config));
  UdpLayer* l = layer.get();
  if (auto ec = iface.set_protocol_handler(kProtocol,
                                           [l](net::InboundDatagram& d, Nanos now) { l->input(d, now); })) {
    return unexpected(ec);
  }
  iface.set_error_handler(kProtocol, [l](const net::IcmpErrorInfo& e, Nanos) { l->icmp_error(e); });
  return layer;
}

UdpLayer::UdpLayer(net::Interface& iface, mem::PacketPool& pool, mem::OwnerId owner, const UdpConfig& config)
    : iface_(&iface), pool_(&pool), owner_(owner), config_(config), rng_(config.ephemeral_seed) {}

UdpLayer::~UdpLayer() {
  (void)iface_->set_protocol_handler(kProtocol, nullptr);
  iface_->set_error_handler(kProtocol, nullptr);
  for (UdpSocket* s : sockets_) {
    s->close();
    s->layer_ = nullptr;
  }
}

std::unique_ptr<UdpSocket> UdpLayer::open(const SocketOptions& options) {
  std::unique_ptr<UdpSocket> s(new UdpSocket(*this, options));
  sockets_.push_back(s.get());
  return s;
}

void UdpLayer::forget(UdpSocket* s) noexcept { std::erase(sockets_, s); }

bool UdpLayer::is_broadcast(wire::Ipv4Addr a) const noexcept {
  if (a.is_broadcast()) return true;
  // Directed broadcast of one of our subnets (the interface keeps its own
  // test private). /31 and /32 have none (RFC 3021).
  for (const auto& x : iface_->addresses()) {
    if (x.prefix_len > 30) continue;
    const std::uint32_t host_mask = x.prefix_len == 0 ? 0xffffffffu : (0xffffffffu >> x.prefix_len);
    if ((a.v & ~host_mask) == (x.addr.v & ~host_mask) && (a.v & host_mask) == host_mask) return true;
  }
  return false;
}

UdpSocket* UdpLayer::lookup(wire::Ipv4Addr dst, std::uint16_t port) const noexcept {
  UdpSocket* any = nullptr;
  for (UdpSocket* s : sockets_) {
    if (!s->bound_ || s->local_.port != port) continue;
    if (s->local_.addr == dst) return s;
    if (s->local_.addr.is_unspecified()) any = s;
  }
  return any;
}

bool UdpLayer::port_in_use(wire::Ipv4Addr addr, std::uint16_t port, const UdpSocket* except) const noexcept {
  for (const UdpSocket* s : sockets_) {
    if (s == except || !s->bound_ || s->local_.port != port) continue;
    if (s->local_.addr.is_unspecified() || addr.is_unspecified() || s->local_.addr == addr) return true;
  }
  return false;
}

// RFC 6056 3.3.1 (Algorithm 1, simple port randomization): start at a
// random point of the range and take the first free port from there.
std::optional<std::uint16_t> UdpLayer::pick_ephemeral(wire::Ipv4Addr addr) noexcept {
  const std::uint32_t n = std::uint32_t{config_.ephemeral_max} - config_.ephemeral_min + 1;
  const std::uint32_t start = static_cast<std::uint32_t>(next_random(rng_) % n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto port = static_cast<std::uint16_t>(config_.ephemeral_min + (start + i) % n);
    if (!port_in_use(addr, port, nullptr)) return port;
  }
  return std::nullopt;
}

std::error_code UdpLayer::send(UdpSocket& s, std::span<const std::byte> payload, Endpoint to, Nanos now) {
  auto fail = [this](std::error_code ec) {
    ++counters_.tx_errors;
    return ec;
  };
  if (payload.size() > kMaxPayload) return fail(err(std::errc::message_size));
  if (to.port == 0 || to.addr.is_unspecified()) return fail(err(std::errc::invalid_argument));
  if (is_broadcast(to.addr) && !s.options_.allow_broadcast) return fail(err(std::errc::permission_denied));
  if (!s.bound_) {
    if (auto ec = s.bind({})) return fail(ec);
  }
  const wire::UdpRepr udp{s.local_.port, to.port, static_cast<std::uint16_t>(payload.size())};
  const auto mode = iface_->tx_checksum_mode();
  net::SendOptions o;
  o.ttl = s.options_.ttl;
  o.dscp = s.options_.dscp;
  o.source = s.local_.addr;  // unspecified: the route's
  const std::size_t len = wire::UdpView::kHeaderLen + payload.size();
  if (len <= iface_->mtu() - net::Interface::kIpHeaderLen) {
    // One frame: built in place, the payload copied once; the route is
    // looked up once, by reserve(), which also picks the source address.
    auto d = iface_->reserve(to.addr, kProtocol, len, o);
    if (!d) return fail(d.error());
    const std::span<std::byte> out = d->payload();
    if (!payload.empty()) std::memcpy(out.data() + wire::UdpView::kHeaderLen, payload.data(), payload.size());
    (void)udp.emit(out, wire::PseudoHeader::v4(d->source(), to.addr), mode);
    if (auto ec = iface_->transmit(*d, now)) return fail(ec);
  } else {
    if (o.source.is_unspecified()) {
      auto from = iface_->source_for(to.addr);
      if (!from) return fail(err(std::errc::network_unreachable));
      o.source = *from;
    }
    const auto ph = wire::PseudoHeader::v4(o.source, to.addr);
    // Fragments: Interface::send splits the datagram, so it is built here
    // first (header in front of the payload) and copied into the frames.
    scratch_.resize(len);
    if (!payload.empty())
      std::memcpy(scratch_.data() + wire::UdpView::kHeaderLen, payload.data(), payload.size());
    (void)udp.emit(scratch_, ph, mode);
    if (auto ec = iface_->send(to.addr, kProtocol, scratch_, o, now)) return fail(ec);
  }
  ++counters_.tx_datagrams;
  counters_.tx_bytes += payload.size();
  return {};
}

// RFC 768, RFC 1122 4.1.3: check, demultiplex to a socket, queue.
void UdpLayer::input(net::InboundDatagram& d, Nanos now) {
  ++counters_.rx_datagrams;
  auto v = wire::UdpView::make(d.payload);
  if (!v) {
    counters_.drop(d.payload.size() < wire::UdpView::kHeaderLen ? UdpDropReason::Truncated
                                                                : UdpDropReason::BadLength);
    return;
  }
  // RFC 1122 4.1.3.4: a datagram whose checksum fails is discarded; a
  // zero checksum (IPv4: not computed) is accepted (RFC 768).
  const auto mode = d.ip.checksums_verified ? wire::ChecksumMode::Ignore : wire::ChecksumMode::Verify;
  auto r = wire::UdpRepr::parse(*v, wire::PseudoHeader::v4(d.ip.src, d.ip.dst), mode);
  if (!r) {
    counters_.drop(UdpDropReason::BadChecksum);
    return;
  }
  if (r->dst_port == 0) {
    counters_.drop(UdpDropReason::BadPort);
    return;
  }
  const Endpoint from{d.ip.src, r->src_port};
  UdpSocket* s = lookup(d.ip.dst, r->dst_port);
  if (s == nullptr || (s->connected_ && s->remote_ != from)) {
    counters_.drop(s == nullptr ? UdpDropReason::NoPort : UdpDropReason::NotFromPeer);
    // RFC 1122 4.1.3.1: port unreachable (send_icmp_error applies 3.2.2's
    // rules: never for a broadcast; and the rate limit).
    if (iface_->send_icmp_error(d, 3, 3, now)) ++counters_.port_unreachable_sent;
    return;
  }
  const std::size_t len = r->payload_len;
  if (s->queue_.size() >= s->options_.max_queue_datagrams) {
    counters_.drop(UdpDropReason::QueueFull);
    return;
  }
  if (s->queued_bytes_ + len > s->options_.max_queue_bytes) {
    counters_.drop(UdpDropReason::QueueBytes);
    return;
  }
  UdpDatagram u;
  u.from = from;
  u.to = d.ip.dst;
  u.broadcast = d.ip.ip_broadcast;
  u.ttl = d.ip.ttl;
  u.dscp = d.ip.dscp;
  u.ecn = d.ip.ecn;
  u.pool_ = pool_;
  u.owner_ = owner_;
  const auto payload = v->payload();
  if (auto f = d.take_frame()) {
    u.frame_ = *f;
    u.payload_offset_ = static_cast<std::size_t>(payload.data() - pool_->buffer(f->buffer).data());
    u.payload_ = payload;
    ++counters_.rx_zero_copy;
  } else {
    // Reassembled: the bytes live in the reassembler until we return.
    u.copy_.assign(payload.begin(), payload.end());
    u.payload_ = u.copy_;
    u.copied_ = true;
    ++counters_.rx_copied;
  }
  s->queue_.push_back(std::move(u));
  s->queued_bytes_ += len;
  ++counters_.rx_delivered;
  counters_.rx_bytes += len;
}

// RFC 1122 4.1.3.3: ICMP errors are passed to the application. Only a
// connected socket can tie one to what it sent (the quoted ports and
// addresses are its 4-tuple); others ignore it, as Linux without IP_RECVERR.
void UdpLayer::icmp_error(const net::IcmpErrorInfo& e) {
  ++counters_.icmp_errors_received;
  if (!e.has_ports) {
    counters_.drop(UdpDropReason::IcmpIgnored);
    return;
  }
  UdpSocket* s = lookup(e.quoted_src, e.src_port);
  if (s == nullptr) {
    counters_.drop(UdpDropReason::IcmpNoSocket);
    return;
  }
  const auto ec = error_for_icmp(e.type, e.code);
  if (!s->connected_ || s->remote_ != Endpoint{e.quoted_dst, e.dst_port} || !ec) {
    counters_.drop(UdpDropReason::IcmpIgnored);
    return;
  }
  s->error_ = ec;
  ++counters_.icmp_errors_reported;
}

}  // namespace usnet::udp
