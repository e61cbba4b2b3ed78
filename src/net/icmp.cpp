// ICMP (RFC 792, RFC 1122 3.2.2): the token bucket, quoted-datagram parsing,
// and the interface's ICMP input, error generation and ping client.
#include "usnet/net/icmp.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "usnet/net/interface.hpp"
#include "usnet/util/bytes.hpp"
#include "usnet/wire/icmpv4.hpp"

namespace usnet::net {

bool TokenBucket::take(Nanos now) noexcept {
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  if (per_second_ != 0 && now > last_) {
    // Whole tokens earned since last_; the remainder of time is kept.
    const auto per_token = Nanos{std::chrono::seconds(1)} / per_second_;
    const auto earned = static_cast<std::uint64_t>((now - last_) / per_token);
    if (earned > 0) {
      tokens_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(burst_, tokens_ + earned));
      last_ = tokens_ == burst_ ? now : last_ + per_token * static_cast<std::int64_t>(earned);
    }
  }
  if (tokens_ == 0) return false;
  --tokens_;
  return true;
}

std::optional<IcmpErrorInfo> parse_quoted_datagram(std::span<const std::byte> q) noexcept {
  if (q.size() < 20) return std::nullopt;
  const std::uint8_t vihl = load_u8(q.data());
  const std::size_t hl = std::size_t{vihl & 0x0fu} * 4;
  if ((vihl >> 4) != 4 || hl < 20 || hl > q.size()) return std::nullopt;
  IcmpErrorInfo info;
  info.protocol = load_u8(q.data() + 9);
  info.quoted_src = wire::Ipv4Addr::read(q.data() + 12);
  info.quoted_dst = wire::Ipv4Addr::read(q.data() + 16);
  const auto rest = q.subspan(hl);
  info.quoted_payload = rest.first(std::min<std::size_t>(rest.size(), 8));
  if (rest.size() >= 4) {
    info.has_ports = true;
    info.src_port = load_be16(rest.data());
    info.dst_port = load_be16(rest.data() + 2);
  }
  return info;
}

namespace {
bool is_error_type(std::uint8_t t) {
  // Destination unreachable, source quench, redirect, time exceeded,
  // parameter problem (RFC 792).
  return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
}
}  // namespace

void Interface::handle_icmp(InboundDatagram& d, Nanos now) {
  auto v = wire::Icmpv4View::make(d.payload);
  if (!v) {
    counters_.drop(DropReason::IcmpMalformed);
    return;
  }
  if (!d.ip.checksums_verified && !v->checksum_ok()) {
    counters_.drop(DropReason::IcmpBadChecksum);
    return;
  }
  const auto type = static_cast<std::uint8_t>(v->type());
  switch (v->type()) {
    case wire::Icmpv4Type::EchoRequest: {
      // RFC 1122 3.2.2.6: a request to a broadcast address may be ignored.
      if ((d.ip.ip_broadcast || d.ip.link_broadcast) && !config_.icmp.reply_to_broadcast_echo) {
        counters_.drop(DropReason::IcmpEchoToBroadcast);
        return;
      }
      ++counters_.rx_delivered;
      // The reply carries the same identifier, sequence and data (RFC 792).
      std::vector<std::byte> msg(d.payload.begin(), d.payload.end());
      wire::Icmpv4Repr r;
      r.type = wire::Icmpv4Type::EchoReply;
      r.ident = v->ident();
      r.seq = v->seq();
      r.data_len = static_cast<std::uint16_t>(msg.size() - wire::Icmpv4View::kHeaderLen);
      (void)r.emit(msg, tx_checksum_mode());
      SendOptions o;
      o.dscp = d.ip.dscp;
      const wire::Ipv4Addr src = is_our_address(d.ip.dst) ? d.ip.dst : wire::Ipv4Addr{};
      if (!output(src, d.ip.src, wire::ip_protocol::kIcmp, msg, o, now)) ++counters_.icmp_echo_replies_sent;
      return;
    }
    case wire::Icmpv4Type::EchoReply: {
      if (!ping_handler_) {
        counters_.drop(DropReason::IcmpNoPingHandler);
        return;
      }
      ++counters_.rx_delivered;
      EchoReply er;
      er.from = d.ip.src;
      er.ident = v->ident();
      er.seq = v->seq();
      er.data_len = v->data().size();
      er.ttl = d.ip.ttl;
      if (v->data().size() >= kPingTimestampLen) {
        const auto sent = static_cast<std::int64_t>(load_be64(v->data().data()));
        if (sent >= 0 && sent <= now.count()) er.rtt = now - Nanos{sent};
      }
      ping_handler_(er, now);
      return;
    }
    case wire::Icmpv4Type::DestUnreachable:
    case wire::Icmpv4Type::TimeExceeded:
    case wire::Icmpv4Type::ParamProblem:
      handle_icmp_error(d, type, v->code(), type == 3 && v->code() == 4 ? v->next_hop_mtu() : 0,
                        type == 12 ? v->pointer() : 0, v->data(), now);
      return;
  }
  // RFC 1122 3.2.2: unknown types are silently discarded.
  counters_.drop(DropReason::IcmpUnknownType);
}

void Interface::handle_icmp_error(const InboundDatagram& d, std::uint8_t type, std::uint8_t code,
                                  std::uint16_t mtu, std::uint8_t pointer, std::span<const std::byte> quoted,
                                  Nanos now) {
  auto info = parse_quoted_datagram(quoted);
  if (!info) {
    counters_.drop(DropReason::IcmpMalformed);
    return;
  }
  // RFC 5927 4.1: act only on errors about datagrams we sent.
  if (!is_our_address(info->quoted_src) || d.ip.ip_broadcast) {
    counters_.drop(DropReason::IcmpErrorNotOurs);
    return;
  }
  auto& h = error_handlers_[info->protocol];
  if (!h) {
    counters_.drop(DropReason::IcmpErrorNoHandler);
    return;
  }
  info->from = d.ip.src;
  info->type = type;
  info->code = code;
  info->mtu = mtu;
  info->pointer = pointer;
  ++counters_.rx_delivered;
  ++counters_.icmp_errors_delivered;
  h(*info, now);
}

bool Interface::icmp_error_allowed(wire::Ipv4Addr src, std::span<const std::byte> quote) const noexcept {
  // RFC 1122 3.2.2: not to a source that is not one host.
  // Class E (240/4, RFC 1122 3.2.1.3 (b)) included.
  if (src.is_unspecified() || src.is_broadcast() || src.is_multicast() || src.is_loopback() ||
      (src.v >> 28) == 0xf || is_directed_broadcast(src)) {
    return false;
  }
  if (quote.size() < 20) return false;
  const std::size_t hl = std::size_t{load_u8(quote.data()) & 0x0fu} * 4;
  // Not about a fragment other than the first.
  if ((load_be16(quote.data() + 6) & 0x1fff) != 0) return false;
  // Never about an ICMP error (and not when we cannot tell).
  if (load_u8(quote.data() + 9) == wire::ip_protocol::kIcmp) {
    if (quote.size() <= hl) return false;
    if (is_error_type(load_u8(quote.data() + hl))) return false;
  }
  return true;
}

bool Interface::send_icmp_error(const InboundDatagram& about, std::uint8_t type, std::uint8_t code,
                                Nanos now) {
  // RFC 1122 3.2.2: never about a datagram to a broadcast or multicast
  // address, at the IP or the link layer.
  if (about.ip.link_broadcast || about.ip.ip_broadcast) return false;
  if (!icmp_error_allowed(about.ip.src, about.quote)) return false;
  const bool sent = send_icmp_error_to(about.ip.src, about.ip.dst, type, code, about.quote, now);
  flush_tx(now);
  return sent;
}

bool Interface::send_icmp_error_to(wire::Ipv4Addr dst, wire::Ipv4Addr src, std::uint8_t type,
                                   std::uint8_t code, std::span<const std::byte> quote, Nanos now) {
  if (!icmp_errors_.take(now)) {
    counters_.drop(DropReason::RateLimited);
    return false;
  }
  // The IP header and 8 bytes of the datagram (RFC 792); at most 68 bytes.
  quote = quote.first(std::min<std::size_t>(quote.size(), wire::Ipv4View::kMaxHeaderLen + 8));
  std::array<std::byte, wire::Icmpv4View::kHeaderLen + wire::Ipv4View::kMaxHeaderLen + 8> msg{};
  std::memcpy(msg.data() + wire::Icmpv4View::kHeaderLen, quote.data(), quote.size());
  wire::Icmpv4Repr r;
  r.type = static_cast<wire::Icmpv4Type>(type);
  r.code = code;
  r.data_len = static_cast<std::uint16_t>(quote.size());
  const auto bytes = std::span<std::byte>(msg).first(r.total_len());
  if (!r.emit(bytes, tx_checksum_mode())) return false;
  SendOptions o;
  if (output(is_our_address(src) ? src : wire::Ipv4Addr{}, dst, wire::ip_protocol::kIcmp, bytes, o, now)) {
    return false;
  }
  ++counters_.icmp_errors_sent;
  return true;
}

std::error_code Interface::send_ping(wire::Ipv4Addr dst, std::uint16_t ident, std::uint16_t seq,
                                     std::size_t data_len, Nanos now) {
  if (data_len > 0xffff - kIpHeaderLen - wire::Icmpv4View::kHeaderLen) {
    return std::make_error_code(std::errc::message_size);
  }
  std::vector<std::byte> msg(wire::Icmpv4View::kHeaderLen + data_len);
  auto data = std::span<std::byte>(msg).subspan(wire::Icmpv4View::kHeaderLen);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i & 0xff);
  if (data.size() >= kPingTimestampLen) store_be64(data.data(), static_cast<std::uint64_t>(now.count()));
  wire::Icmpv4Repr r;
  r.type = wire::Icmpv4Type::EchoRequest;
  r.ident = ident;
  r.seq = seq;
  r.data_len = static_cast<std::uint16_t>(data_len);
  (void)r.emit(msg, tx_checksum_mode());
  auto ec = send(dst, wire::ip_protocol::kIcmp, msg, SendOptions{}, now);
  if (!ec) ++counters_.icmp_echo_requests_sent;
  return ec;
}

}  // namespace usnet::net
