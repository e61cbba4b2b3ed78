#include "usnet/wire/ipv4.hpp"

namespace usnet::wire {

ParseResult<Ipv4View> Ipv4View::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kMinHeaderLen) return unexpected(ParseError::Truncated);
  const std::uint8_t version_ihl = load_u8(bytes.data() + Off::kVersionIhl);
  if ((version_ihl >> 4) != kVersion) return unexpected(ParseError::BadVersion);
  // RFC 791 3.1: the IHL counts 32-bit words; 5 is the minimum.
  const std::size_t header_len = std::size_t{version_ihl & 0x0fu} * 4;
  if (header_len < kMinHeaderLen) return unexpected(ParseError::BadHeaderLength);
  const std::size_t total_len = load_be16(bytes.data() + Off::kTotalLen);
  if (total_len < header_len) {
    // Inconsistent fields. If the header also runs past the data, the IHL is
    // the field to blame; otherwise the total length is.
    return unexpected(header_len > bytes.size() ? ParseError::BadHeaderLength : ParseError::BadTotalLength);
  }
  // header_len <= total_len here, so this also keeps the header in bounds.
  if (total_len > bytes.size()) return unexpected(ParseError::Truncated);
  return Ipv4View(bytes.first(total_len));
}

ParseResult<Ipv4Repr> Ipv4Repr::parse(const Ipv4View& v, ChecksumMode mode) noexcept {
  if (mode == ChecksumMode::Verify && !v.checksum_ok()) return unexpected(ParseError::BadChecksum);
  Ipv4Repr r;
  r.src = v.src();
  r.dst = v.dst();
  r.protocol = v.protocol();
  r.ttl = v.ttl();
  r.dscp = v.dscp();
  r.ecn = v.ecn();
  r.ident = v.ident();
  r.dont_frag = v.dont_frag();
  r.more_frags = v.more_frags();
  r.frag_offset_bytes = v.frag_offset_bytes();
  r.payload_len = static_cast<std::uint16_t>(v.total_len() - v.header_len());
  return r;
}

ParseResult<std::size_t> Ipv4Repr::emit(std::span<std::byte> out, ChecksumMode mode) const noexcept {
  if (dscp > 63 || ecn > 3 || frag_offset_bytes % 8 != 0) return unexpected(ParseError::BadField);
  const std::size_t total = Ipv4View::kMinHeaderLen + std::size_t{payload_len};
  if (total > 0xffff) return unexpected(ParseError::BadTotalLength);
  if (out.size() < Ipv4View::kMinHeaderLen) return unexpected(ParseError::NoSpace);
  std::byte* p = out.data();
  using Off = Ipv4View::Off;
  using Flag = Ipv4View::Flag;
  store_u8(p + Off::kVersionIhl,
           static_cast<std::uint8_t>((Ipv4View::kVersion << 4) | (Ipv4View::kMinHeaderLen / 4)));
  store_u8(p + Off::kDscpEcn, static_cast<std::uint8_t>((dscp << 2) | ecn));
  store_be16(p + Off::kTotalLen, static_cast<std::uint16_t>(total));
  store_be16(p + Off::kIdent, ident);
  // RFC 791 3.1: the reserved flag is always sent as zero.
  const std::uint16_t flags_frag = static_cast<std::uint16_t>(
      (dont_frag ? Flag::kDontFrag : 0) | (more_frags ? Flag::kMoreFrags : 0) | (frag_offset_bytes / 8));
  store_be16(p + Off::kFlagsFrag, flags_frag);
  store_u8(p + Off::kTtl, ttl);
  store_u8(p + Off::kProtocol, protocol);
  store_be16(p + Off::kChecksum, 0);
  src.write(p + Off::kSrc);
  dst.write(p + Off::kDst);
  if (mode == ChecksumMode::Verify) {
    store_be16(p + Off::kChecksum, internet_checksum(out.first(Ipv4View::kMinHeaderLen)));
  }
  return Ipv4View::kMinHeaderLen;
}

}  // namespace usnet::wire
