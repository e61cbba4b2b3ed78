#include "usnet/wire/icmpv4.hpp"

#include "usnet/wire/checksum.hpp"

namespace usnet::wire {

ParseResult<Icmpv4View> Icmpv4View::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  if (bytes.size() > 0xffff) return unexpected(ParseError::BadLength);
  return Icmpv4View(bytes);
}

bool Icmpv4View::is_error() const noexcept {
  switch (type()) {
    case Icmpv4Type::DestUnreachable:
    case Icmpv4Type::TimeExceeded:
    case Icmpv4Type::ParamProblem:
      return true;
    default:
      return false;
  }
}

// RFC 792: the checksum covers the whole ICMP message, no pseudo-header.
bool Icmpv4View::checksum_ok() const noexcept { return ones_sum(b_) == 0xffff; }

ParseResult<Icmpv4Repr> Icmpv4Repr::parse(const Icmpv4View& v, ChecksumMode mode) noexcept {
  if (mode == ChecksumMode::Verify && !v.checksum_ok()) return unexpected(ParseError::BadChecksum);
  Icmpv4Repr r;
  r.type = v.type();
  r.code = v.code();
  r.data_len = static_cast<std::uint16_t>(v.data().size());  // make() bounds it to 65535 - 8
  switch (r.type) {
    case Icmpv4Type::EchoRequest:
    case Icmpv4Type::EchoReply:
      r.ident = v.ident();
      r.seq = v.seq();
      break;
    case Icmpv4Type::DestUnreachable:
      // RFC 1191 4: only code 4 carries the MTU; in other codes the word is unused.
      if (r.code == Icmpv4UnreachCode::kFragNeeded) r.next_hop_mtu = v.next_hop_mtu();
      break;
    case Icmpv4Type::TimeExceeded:
      break;
    case Icmpv4Type::ParamProblem:
      r.pointer = v.pointer();
      break;
    default:
      r.rest_of_header = v.rest_of_header();
      break;
  }
  return r;
}

ParseResult<std::size_t> Icmpv4Repr::emit(std::span<std::byte> out, ChecksumMode mode) const noexcept {
  const std::size_t total = total_len();
  if (total > 0xffff) return unexpected(ParseError::BadLength);
  if (out.size() < Icmpv4View::kHeaderLen || (mode == ChecksumMode::Verify && out.size() < total)) {
    return unexpected(ParseError::NoSpace);
  }
  std::uint32_t word = 0;
  switch (type) {
    case Icmpv4Type::EchoRequest:
    case Icmpv4Type::EchoReply:
      word = (std::uint32_t{ident} << 16) | seq;
      break;
    case Icmpv4Type::DestUnreachable:
      if (code == Icmpv4UnreachCode::kFragNeeded) word = next_hop_mtu;
      break;
    case Icmpv4Type::TimeExceeded:
      break;
    case Icmpv4Type::ParamProblem:
      word = std::uint32_t{pointer} << 24;
      break;
    default:
      word = rest_of_header;
      break;
  }
  std::byte* p = out.data();
  store_u8(p + Icmpv4View::Off::kType, static_cast<std::uint8_t>(type));
  store_u8(p + Icmpv4View::Off::kCode, code);
  store_be16(p + Icmpv4View::Off::kChecksum, 0);
  store_be32(p + Icmpv4View::Off::kRestOfHeader, word);
  if (mode == ChecksumMode::Verify) {
    store_be16(p + Icmpv4View::Off::kChecksum, internet_checksum(out.first(total)));
  }
  return Icmpv4View::kHeaderLen;
}

}  // namespace usnet::wire
