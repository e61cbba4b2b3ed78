#include "usnet/wire/ipv6.hpp"

namespace usnet::wire {

ParseResult<Ipv6View> Ipv6View::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  if ((load_u8(bytes.data()) >> 4) != 6) return unexpected(ParseError::BadVersion);
  const std::size_t total = kHeaderLen + load_be16(bytes.data() + Off::kPayloadLen);
  if (total > bytes.size()) return unexpected(ParseError::Truncated);
  return Ipv6View(bytes.first(total));
}

ParseResult<Ipv6Repr> Ipv6Repr::parse(const Ipv6View& v) noexcept {
  Ipv6Repr r;
  r.src = v.src();
  r.dst = v.dst();
  r.next_header = v.next_header();
  r.hop_limit = v.hop_limit();
  r.dscp = v.dscp();
  r.ecn = v.ecn();
  r.flow_label = v.flow_label();
  r.payload_len = v.payload_len();
  return r;
}

ParseResult<std::size_t> Ipv6Repr::emit(std::span<std::byte> out) const noexcept {
  if (dscp > 0x3f || ecn > 0x3 || flow_label > 0xfffff) return unexpected(ParseError::BadField);
  if (out.size() < Ipv6View::kHeaderLen) return unexpected(ParseError::NoSpace);
  std::byte* p = out.data();
  // RFC 8200 3: version (4 bits), traffic class (8), flow label (20).
  const std::uint32_t traffic_class = (std::uint32_t{dscp} << 2) | ecn;
  store_be32(p + Ipv6View::Off::kVersionClassFlow, (6u << 28) | (traffic_class << 20) | flow_label);
  store_be16(p + Ipv6View::Off::kPayloadLen, payload_len);
  store_u8(p + Ipv6View::Off::kNextHeader, next_header);
  store_u8(p + Ipv6View::Off::kHopLimit, hop_limit);
  src.write(p + Ipv6View::Off::kSrc);
  dst.write(p + Ipv6View::Off::kDst);
  return Ipv6View::kHeaderLen;
}

namespace {

// RFC 8200 4.2: the two option types every node recognises.
constexpr std::uint8_t kPad1 = 0;
constexpr std::uint8_t kPadN = 1;

// Every extension header is at least 8 bytes, and its first byte is the next
// header (RFC 8200 4.3-4.6, RFC 4302 2).
constexpr std::size_t kMinExtHeaderLen = 8;
constexpr std::size_t kMinAuthHeaderLen = 12;  // RFC 4302 2: next header .. sequence number
constexpr std::size_t kIpv6AuthAlign = 8;      // RFC 4302 2.2: 64-bit multiple on IPv6

bool is_extension_header(std::uint8_t nh) noexcept {
  switch (nh) {
    case Ipv6NextHeader::kHopByHop:
    case Ipv6NextHeader::kRouting:
    case Ipv6NextHeader::kFragment:
    case Ipv6NextHeader::kDestOptions:
    case Ipv6NextHeader::kAuth:
      return true;
    default:
      return false;
  }
}

// Walks the TLV options of a Hop-by-Hop or Destination Options header
// (RFC 8200 4.2). `header` is the whole extension header; its options start
// after the next-header and length bytes.
Expected<void, ParseError> walk_options(std::span<const std::byte> header, std::size_t header_offset,
                                        std::uint8_t kind, Ipv6ExtWalk& walk) noexcept {
  std::size_t i = 2;
  while (i < header.size()) {
    const std::uint8_t type = load_u8(header.data() + i);
    if (type == kPad1) {  // the one option without a length byte
      ++i;
      continue;
    }
    if (header.size() - i < 2) return unexpected(ParseError::BadOptionLength);
    const std::size_t len = 2 + std::size_t{load_u8(header.data() + i + 1)};
    if (len > header.size() - i) return unexpected(ParseError::BadOptionLength);
    if (type != kPadN) {
      ++walk.unknown_option_count;
      if (!walk.first_unknown_option && ipv6_option_action(type) != Ipv6OptionAction::Skip) {
        walk.first_unknown_option = Ipv6UnknownOption{type, header_offset + i, kind};
      }
    }
    i += len;
  }
  return {};
}

}  // namespace

ParseResult<Ipv6ExtWalk> walk_extension_headers(const Ipv6View& v, unsigned max_headers) noexcept {
  const std::span<const std::byte> payload = v.payload();
  Ipv6ExtWalk walk;
  std::uint8_t next = v.next_header();
  std::size_t off = 0;  // invariant: off <= payload.size()
  while (is_extension_header(next)) {
    // RFC 8200 4.3: Hop-by-Hop Options only immediately after the IPv6 header.
    if (next == Ipv6NextHeader::kHopByHop && walk.header_count != 0) {
      return unexpected(ParseError::BadExtHeader);
    }
    if (walk.header_count >= max_headers) return unexpected(ParseError::TooManyExtHeaders);
    if (payload.size() - off < kMinExtHeaderLen) return unexpected(ParseError::Truncated);
    const std::byte* h = payload.data() + off;
    const std::uint8_t len_field = load_u8(h + 1);
    std::size_t len;
    if (next == Ipv6NextHeader::kFragment) {
      len = Ipv6FragmentInfo::kLen;  // RFC 8200 4.5: fixed size, byte 1 is reserved
    } else if (next == Ipv6NextHeader::kAuth) {
      len = (std::size_t{len_field} + 2) * 4;  // RFC 4302 2.2: 4-octet units, minus 2
      if (len < kMinAuthHeaderLen) return unexpected(ParseError::BadExtHeader);
      // RFC 4302 2.2: on IPv6 the header (ICV padding included) is a
      // multiple of 8 octets.
      if (len % kIpv6AuthAlign != 0) return unexpected(ParseError::BadExtHeader);
    } else {
      len = (std::size_t{len_field} + 1) * 8;  // RFC 8200 4.3: 8-octet units, not counting the first 8
    }
    if (len > payload.size() - off) return unexpected(ParseError::Truncated);
    ++walk.header_count;

    if (next == Ipv6NextHeader::kHopByHop || next == Ipv6NextHeader::kDestOptions) {
      auto ok = walk_options(payload.subspan(off, len), off, next, walk);
      if (!ok) return unexpected(ok.error());
    } else if (next == Ipv6NextHeader::kFragment) {
      // A second Fragment header (nested fragmentation) is not reassembled:
      // no sender we serve produces it and it only serves to evade filters.
      if (walk.fragment) return unexpected(ParseError::BadExtHeader);
      const std::uint16_t offset_flags = load_be16(h + 2);
      Ipv6FragmentInfo frag;
      frag.offset = static_cast<std::uint16_t>(offset_flags >> 3);
      frag.more_fragments = (offset_flags & 0x1) != 0;
      frag.identification = load_be32(h + 4);
      frag.next_header = load_u8(h);
      frag.header_offset = off;
      walk.fragment = frag;
      if (frag.offset != 0) {
        // Not the first fragment: the bytes after this header continue the
        // fragmentable part mid-stream and cannot be walked (RFC 8200 4.5).
        walk.upper_protocol = frag.next_header;
        walk.upper_offset = off + len;
        return walk;
      }
    }
    next = load_u8(h);
    off += len;
  }
  walk.upper_protocol = next;
  walk.upper_offset = off;
  return walk;
}

}  // namespace usnet::wire
