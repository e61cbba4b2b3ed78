#include "usnet/wire/icmpv6.hpp"

#include "usnet/wire/checksum.hpp"

namespace usnet::wire {

namespace {

constexpr std::uint8_t kIcmpv6NextHeader = 58;  // RFC 4443 2.3 pseudo-header
constexpr std::size_t kNdpOptionUnit = 8;       // RFC 4861 4.6: lengths count 8-octet units

// RFC 4861 4.2 flags byte; RFC 4191 2.2 puts the router preference in bits 3..4.
constexpr std::uint8_t kRaManaged = 0x80, kRaOtherConfig = 0x40, kRaPrefShift = 3, kRaPrefMask = 0x3;
// RFC 4191 2.2: Prf 10 is reserved; received, it MUST be read as 00 (medium).
constexpr std::uint8_t kRaPrefReserved = 0x2, kRaPrefMedium = 0x0;
// RFC 4861 4.4 flags word.
constexpr std::uint32_t kNaRouter = 0x80000000u, kNaSolicited = 0x40000000u, kNaOverride = 0x20000000u;
// RFC 4861 4.6.2 flags byte.
constexpr std::uint8_t kPrefixOnLink = 0x80, kPrefixAutonomous = 0x40;

}  // namespace

// ---- NDP options (RFC 4861 4.6) ----

bool operator==(const NdpOptions& a, const NdpOptions& b) noexcept {
  if (a.source_lladdr != b.source_lladdr || a.target_lladdr != b.target_lladdr || a.mtu != b.mtu)
    return false;
  const auto pa = a.prefix_infos(), pb = b.prefix_infos();
  if (pa.size() != pb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (!(pa[i] == pb[i])) return false;
  }
  return true;
}

bool NdpOptions::add_prefix(const NdpPrefixInfo& p) noexcept {
  if (prefix_count >= kMaxPrefixes) return false;
  prefixes[prefix_count++] = p;
  return true;
}

ParseResult<NdpOptions> NdpOptions::parse(std::span<const std::byte> options) noexcept {
  NdpOptions out;
  std::size_t i = 0;
  while (i < options.size()) {
    if (options.size() - i < 2) return unexpected(ParseError::BadOptionLength);
    const std::byte* o = options.data() + i;
    const std::uint8_t type = load_u8(o);
    const std::size_t len = std::size_t{load_u8(o + 1)} * kNdpOptionUnit;
    // RFC 4861 4.6: "Nodes MUST silently discard an ND packet that contains
    // an option with length zero" (it would also loop forever).
    if (len == 0 || len > options.size() - i) return unexpected(ParseError::BadOptionLength);
    switch (type) {
      case NdpOptionType::kSourceLinkLayerAddr:
      case NdpOptionType::kTargetLinkLayerAddr: {
        // RFC 2464 8: on Ethernet the option is 8 bytes with a 6-byte MAC.
        if (len != kLinkLayerAddrLen) return unexpected(ParseError::BadOption);
        auto& slot = type == NdpOptionType::kSourceLinkLayerAddr ? out.source_lladdr : out.target_lladdr;
        if (!slot) slot = MacAddr::read(o + 2);  // a repeat is ignored: the first counts
        break;
      }
      case NdpOptionType::kPrefixInfo: {
        if (len != kPrefixInfoLen) return unexpected(ParseError::BadOption);
        NdpPrefixInfo p;
        p.prefix_len = load_u8(o + 2);
        if (p.prefix_len > 128) return unexpected(ParseError::BadOption);
        const std::uint8_t flags = load_u8(o + 3);
        p.on_link = (flags & kPrefixOnLink) != 0;
        p.autonomous = (flags & kPrefixAutonomous) != 0;
        p.valid_lifetime = load_be32(o + 4);
        p.preferred_lifetime = load_be32(o + 8);
        p.prefix = Ipv6Addr::read(o + 16);  // bytes 12..16 are reserved
        out.add_prefix(p);                  // beyond kMaxPrefixes: dropped, a bound on work
        break;
      }
      case NdpOptionType::kMtu:
        if (len != kMtuLen) return unexpected(ParseError::BadOption);
        if (!out.mtu) out.mtu = load_be32(o + 4);  // bytes 2..4 are reserved
        break;
      default:
        // Redirected Header (4) and unknown options: RFC 4861 4.6 / 6.1
        // "silently ignore any options they do not recognize".
        break;
    }
    i += len;
  }
  return out;
}

std::size_t NdpOptions::buffer_len() const noexcept {
  return (source_lladdr ? kLinkLayerAddrLen : 0) + (target_lladdr ? kLinkLayerAddrLen : 0) +
         prefix_infos().size() * kPrefixInfoLen + (mtu ? kMtuLen : 0);
}

ParseResult<std::size_t> NdpOptions::emit(std::span<std::byte> out) const noexcept {
  if (prefix_count > kMaxPrefixes) return unexpected(ParseError::BadField);
  for (const auto& p : prefix_infos()) {
    if (p.prefix_len > 128) return unexpected(ParseError::BadField);
  }
  const std::size_t total = buffer_len();
  if (out.size() < total) return unexpected(ParseError::NoSpace);
  std::byte* o = out.data();
  auto put_lladdr = [&o](std::uint8_t type, const MacAddr& mac) {
    store_u8(o, type);
    store_u8(o + 1, kLinkLayerAddrLen / kNdpOptionUnit);
    mac.write(o + 2);
    o += kLinkLayerAddrLen;
  };
  if (source_lladdr) put_lladdr(NdpOptionType::kSourceLinkLayerAddr, *source_lladdr);
  if (target_lladdr) put_lladdr(NdpOptionType::kTargetLinkLayerAddr, *target_lladdr);
  for (const auto& p : prefix_infos()) {
    store_u8(o, NdpOptionType::kPrefixInfo);
    store_u8(o + 1, kPrefixInfoLen / kNdpOptionUnit);
    store_u8(o + 2, p.prefix_len);
    store_u8(o + 3, static_cast<std::uint8_t>((p.on_link ? kPrefixOnLink : 0) |
                                              (p.autonomous ? kPrefixAutonomous : 0)));
    store_be32(o + 4, p.valid_lifetime);
    store_be32(o + 8, p.preferred_lifetime);
    store_be32(o + 12, 0);
    p.prefix.write(o + 16);
    o += kPrefixInfoLen;
  }
  if (mtu) {
    store_u8(o, NdpOptionType::kMtu);
    store_u8(o + 1, kMtuLen / kNdpOptionUnit);
    store_be16(o + 2, 0);
    store_be32(o + 4, *mtu);
  }
  return total;
}

// ---- ICMPv6 messages ----

ParseResult<Icmpv6View> Icmpv6View::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  if (bytes.size() > 0xffff) return unexpected(ParseError::BadLength);
  const auto type = static_cast<Icmpv6Type>(load_u8(bytes.data() + Off::kType));
  if (bytes.size() < fixed_len(type)) return unexpected(ParseError::Truncated);
  return Icmpv6View(bytes);
}

std::span<const std::byte> Icmpv6View::ndp_options() const noexcept {
  if (!is_ndp_message(type())) return {};
  return b_.subspan(fixed_len(type()));
}

bool Icmpv6View::checksum_ok(const Ipv6Addr& src, const Ipv6Addr& dst) const noexcept {
  Checksum c;
  c.add_sum(pseudo_header_sum_v6(src, dst, kIcmpv6NextHeader, static_cast<std::uint32_t>(b_.size())));
  c.add(b_);
  return c.sum() == 0xffff;
}

ParseResult<Icmpv6Repr> Icmpv6Repr::parse(const Icmpv6View& v, const Ipv6Addr& src, const Ipv6Addr& dst,
                                          ChecksumMode mode) noexcept {
  if (mode == ChecksumMode::Verify && !v.checksum_ok(src, dst)) return unexpected(ParseError::BadChecksum);
  Icmpv6Repr r;
  r.type = v.type();
  r.code = v.code();
  if (is_ndp_message(r.type)) {
    // RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1: "ICMP Code is 0".
    if (r.code != 0) return unexpected(ParseError::BadField);
    auto opts = NdpOptions::parse(v.ndp_options());
    if (!opts) return unexpected(opts.error());
    r.ndp_options = *opts;
  } else {
    r.data_len = static_cast<std::uint16_t>(v.data().size());  // make() bounds it to 65535 - 8
  }
  switch (r.type) {
    case Icmpv6Type::EchoRequest:
    case Icmpv6Type::EchoReply:
      r.ident = v.ident();
      r.seq = v.seq();
      break;
    case Icmpv6Type::DestUnreachable:  // RFC 4443 3.1: bytes 4..8 unused
    case Icmpv6Type::TimeExceeded:     // RFC 4443 3.3: bytes 4..8 unused
    case Icmpv6Type::RouterSolicit:    // RFC 4861 4.1: bytes 4..8 reserved
    case Icmpv6Type::NeighborSolicit:  // RFC 4861 4.3: bytes 4..8 reserved
      break;
    case Icmpv6Type::PacketTooBig:
      r.mtu = v.mtu();
      break;
    case Icmpv6Type::ParamProblem:
      r.pointer = v.pointer();
      break;
    case Icmpv6Type::RouterAdvert: {
      const std::uint8_t flags = v.ra_flags();
      r.ra.cur_hop_limit = v.ra_cur_hop_limit();
      r.ra.managed = (flags & kRaManaged) != 0;
      r.ra.other_config = (flags & kRaOtherConfig) != 0;
      const auto pref = static_cast<std::uint8_t>((flags >> kRaPrefShift) & kRaPrefMask);
      r.ra.router_pref = pref == kRaPrefReserved ? kRaPrefMedium : pref;
      r.ra.router_lifetime = v.ra_router_lifetime();
      r.ra.reachable_time = v.ra_reachable_time();
      r.ra.retrans_timer = v.ra_retrans_timer();
      break;
    }
    case Icmpv6Type::NeighborAdvert: {
      const std::uint32_t flags = v.na_flags();
      r.na_router = (flags & kNaRouter) != 0;
      r.na_solicited = (flags & kNaSolicited) != 0;
      r.na_override = (flags & kNaOverride) != 0;
      break;
    }
    case Icmpv6Type::Redirect:
      r.destination = v.redirect_destination();
      break;
    default:
      r.rest_of_header = v.rest_of_header();
      break;
  }
  if (r.type == Icmpv6Type::NeighborSolicit || r.type == Icmpv6Type::NeighborAdvert ||
      r.type == Icmpv6Type::Redirect) {
    r.target = v.target();
  }
  return r;
}

std::size_t Icmpv6Repr::buffer_len() const noexcept {
  if (is_ndp_message(type)) return Icmpv6View::fixed_len(type) + ndp_options.buffer_len();
  return Icmpv6View::kHeaderLen;
}

std::size_t Icmpv6Repr::total_len() const noexcept {
  return is_ndp_message(type) ? buffer_len() : Icmpv6View::kHeaderLen + std::size_t{data_len};
}

ParseResult<std::size_t> Icmpv6Repr::emit(std::span<std::byte> out, const Ipv6Addr& src, const Ipv6Addr& dst,
                                          ChecksumMode mode) const noexcept {
  const bool ndp = is_ndp_message(type);
  // RFC 4191 2.2: a sender MUST NOT send the reserved preference 10.
  if (ndp && (code != 0 || ra.router_pref > kRaPrefMask || ra.router_pref == kRaPrefReserved)) {
    return unexpected(ParseError::BadField);
  }
  const std::size_t header = buffer_len();
  const std::size_t total = total_len();
  if (total > 0xffff) return unexpected(ParseError::BadLength);
  if (out.size() < header || (mode == ChecksumMode::Verify && out.size() < total)) {
    return unexpected(ParseError::NoSpace);
  }
  std::byte* p = out.data();
  store_u8(p + Icmpv6View::Off::kType, static_cast<std::uint8_t>(type));
  store_u8(p + Icmpv6View::Off::kCode, code);
  store_be16(p + Icmpv6View::Off::kChecksum, 0);
  std::uint32_t word = 0;
  switch (type) {
    case Icmpv6Type::EchoRequest:
    case Icmpv6Type::EchoReply:
      word = (std::uint32_t{ident} << 16) | seq;
      break;
    case Icmpv6Type::PacketTooBig:
      word = mtu;
      break;
    case Icmpv6Type::ParamProblem:
      word = pointer;
      break;
    case Icmpv6Type::RouterAdvert: {
      const auto flags =
          static_cast<std::uint8_t>((ra.managed ? kRaManaged : 0) | (ra.other_config ? kRaOtherConfig : 0) |
                                    (ra.router_pref << kRaPrefShift));
      word = (std::uint32_t{ra.cur_hop_limit} << 24) | (std::uint32_t{flags} << 16) | ra.router_lifetime;
      store_be32(p + Icmpv6View::Off::kRaReachableTime, ra.reachable_time);
      store_be32(p + Icmpv6View::Off::kRaRetransTimer, ra.retrans_timer);
      break;
    }
    case Icmpv6Type::NeighborAdvert:
      word =
          (na_router ? kNaRouter : 0) | (na_solicited ? kNaSolicited : 0) | (na_override ? kNaOverride : 0);
      break;
    case Icmpv6Type::DestUnreachable:
    case Icmpv6Type::TimeExceeded:
    case Icmpv6Type::RouterSolicit:
    case Icmpv6Type::NeighborSolicit:
    case Icmpv6Type::Redirect:
      break;
    default:
      word = rest_of_header;
      break;
  }
  store_be32(p + Icmpv6View::Off::kRestOfHeader, word);
  if (type == Icmpv6Type::NeighborSolicit || type == Icmpv6Type::NeighborAdvert ||
      type == Icmpv6Type::Redirect) {
    target.write(p + Icmpv6View::Off::kTarget);
  }
  if (type == Icmpv6Type::Redirect) destination.write(p + Icmpv6View::Off::kRedirectDest);
  if (ndp) {
    auto opts = ndp_options.emit(out.subspan(Icmpv6View::fixed_len(type)));
    if (!opts) return unexpected(opts.error());
  }
  if (mode == ChecksumMode::Verify) {
    Checksum c;
    c.add_sum(pseudo_header_sum_v6(src, dst, kIcmpv6NextHeader, static_cast<std::uint32_t>(total)));
    c.add(out.first(total));
    store_be16(p + Icmpv6View::Off::kChecksum, c.finish());
  }
  return header;
}

}  // namespace usnet::wire
