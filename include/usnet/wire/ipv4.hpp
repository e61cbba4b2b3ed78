// IPv4 header (RFC 791 3.1).
//
// Layout: ver/IHL(1) DSCP/ECN(1) total_len(2) ident(2) flags/frag_offset(2)
//         ttl(1) protocol(1) checksum(2) src(4) dst(4) options(IHL*4 - 20)
//
// Decisions:
//   - Fragment offsets are exposed in bytes (frag_offset_bytes), the unit
//     reassembly works in; the wire holds 8-byte units (frag_offset_units()).
//   - The reserved flag (bit 0 of the flags, "must be zero", RFC 791 3.1) is
//     a rule for senders. On receive it is ignored, as Linux and the BSDs do
//     (RFC 1122 1.2.2: be liberal in what you accept); the view shows it as
//     reserved_flag() so a caller can count it. Repr::emit never sets it.
//   - Options are never interpreted: the view skips them using the IHL and
//     exposes them as raw bytes (options()); the header checksum covers them.
//     Repr::emit writes a 20-byte header without options, so a packet with
//     options round-trips as a Repr, not byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

// IANA protocol numbers (the IPv4 protocol / IPv6 next header field).
namespace ip_protocol {
inline constexpr std::uint8_t kIcmp = 1;
inline constexpr std::uint8_t kTcp = 6;
inline constexpr std::uint8_t kUdp = 17;
}  // namespace ip_protocol

class Ipv4View {
 public:
  static constexpr std::size_t kMinHeaderLen = 20;
  static constexpr std::size_t kMaxHeaderLen = 60;
  static constexpr std::uint8_t kVersion = 4;
  struct Off {  // field offsets
    static constexpr std::size_t kVersionIhl = 0, kDscpEcn = 1, kTotalLen = 2, kIdent = 4, kFlagsFrag = 6,
                                 kTtl = 8, kProtocol = 9, kChecksum = 10, kSrc = 12, kDst = 16, kOptions = 20;
  };
  struct Flag {  // bits of the 16-bit flags/fragment-offset word
    static constexpr std::uint16_t kReserved = 0x8000, kDontFrag = 0x4000, kMoreFrags = 0x2000,
                                   kOffsetMask = 0x1fff;
  };

  // Checks, in order:
  //   fewer than 20 bytes                                  -> Truncated
  //   version != 4                                         -> BadVersion
  //   IHL < 5                                              -> BadHeaderLength
  //   total length < IHL*4, and IHL*4 past the data        -> BadHeaderLength
  //   total length < IHL*4                                 -> BadTotalLength
  //   total length (and so IHL*4) past the data            -> Truncated
  // The view then covers exactly total-length bytes: link padding (an
  // Ethernet frame padded to 60 bytes) is excluded from payload().
  // A header that is consistent but cut short by the link (IHL*4 <= total
  // length, both past the data) counts as Truncated, not a bad field.
  static ParseResult<Ipv4View> make(std::span<const std::byte> bytes) noexcept;

  std::uint8_t version() const noexcept { return load_u8(b_.data() + Off::kVersionIhl) >> 4; }
  std::size_t header_len() const noexcept {
    return std::size_t{load_u8(b_.data() + Off::kVersionIhl) & 0x0fu} * 4;
  }
  std::uint8_t dscp() const noexcept { return load_u8(b_.data() + Off::kDscpEcn) >> 2; }   // RFC 2474
  std::uint8_t ecn() const noexcept { return load_u8(b_.data() + Off::kDscpEcn) & 0x03; }  // RFC 3168
  std::uint16_t total_len() const noexcept { return load_be16(b_.data() + Off::kTotalLen); }
  std::uint16_t ident() const noexcept { return load_be16(b_.data() + Off::kIdent); }
  bool reserved_flag() const noexcept { return (flags_frag() & Flag::kReserved) != 0; }
  bool dont_frag() const noexcept { return (flags_frag() & Flag::kDontFrag) != 0; }
  bool more_frags() const noexcept { return (flags_frag() & Flag::kMoreFrags) != 0; }
  // The offset field as sent, in 8-byte units (0..8191).
  std::uint16_t frag_offset_units() const noexcept { return flags_frag() & Flag::kOffsetMask; }
  // The same offset in bytes (0..65528).
  std::uint16_t frag_offset_bytes() const noexcept {
    return static_cast<std::uint16_t>(frag_offset_units() * 8);
  }
  // RFC 791 3.2: a packet with MF set or a non-zero offset is part of a
  // fragmented datagram and goes to reassembly.
  bool is_fragment() const noexcept { return more_frags() || frag_offset_units() != 0; }
  std::uint8_t ttl() const noexcept { return load_u8(b_.data() + Off::kTtl); }
  std::uint8_t protocol() const noexcept { return load_u8(b_.data() + Off::kProtocol); }
  std::uint16_t checksum() const noexcept { return load_be16(b_.data() + Off::kChecksum); }
  Ipv4Addr src() const noexcept { return Ipv4Addr::read(b_.data() + Off::kSrc); }
  Ipv4Addr dst() const noexcept { return Ipv4Addr::read(b_.data() + Off::kDst); }
  // Raw option bytes (IHL*4 - 20 of them), not interpreted.
  std::span<const std::byte> options() const noexcept {
    return b_.subspan(Off::kOptions, header_len() - kMinHeaderLen);
  }
  std::span<const std::byte> header() const noexcept { return b_.first(header_len()); }
  std::span<const std::byte> payload() const noexcept { return b_.subspan(header_len()); }
  std::span<const std::byte> bytes() const noexcept { return b_; }
  // RFC 791 3.1: the one's-complement sum over the whole header (options
  // included) is all ones when the checksum field is right.
  bool checksum_ok() const noexcept { return ones_sum(header()) == 0xffff; }

 private:
  explicit Ipv4View(std::span<const std::byte> b) : b_(b) {}
  std::uint16_t flags_frag() const noexcept { return load_be16(b_.data() + Off::kFlagsFrag); }
  std::span<const std::byte> b_;
};

struct Ipv4Repr {
  Ipv4Addr src;
  Ipv4Addr dst;
  std::uint8_t protocol = 0;
  std::uint8_t ttl = 64;
  std::uint8_t dscp = 0;  // 0..63
  std::uint8_t ecn = 0;   // 0..3
  std::uint16_t ident = 0;
  bool dont_frag = false;
  bool more_frags = false;
  std::uint16_t frag_offset_bytes = 0;  // a multiple of 8
  std::uint16_t payload_len = 0;        // total length minus the header (options excluded)

  // Verifies the header checksum when mode == Verify (BadChecksum).
  static ParseResult<Ipv4Repr> parse(const Ipv4View& v, ChecksumMode mode = ChecksumMode::Verify) noexcept;
  std::size_t buffer_len() const noexcept { return Ipv4View::kMinHeaderLen; }
  // Writes a 20-byte header (IHL 5, no options) into out[0..20) and returns
  // 20. The checksum is computed with Verify and left zero with Ignore (a
  // link that promises intact frames, or hardware that fills it in).
  // NoSpace if out is shorter than 20 bytes; BadField for dscp > 63, ecn > 3
  // or an offset that is not a multiple of 8; BadTotalLength if
  // 20 + payload_len exceeds 65535.
  ParseResult<std::size_t> emit(std::span<std::byte> out,
                                ChecksumMode mode = ChecksumMode::Verify) const noexcept;
  bool is_fragment() const noexcept { return more_frags || frag_offset_bytes != 0; }

  friend bool operator==(const Ipv4Repr&, const Ipv4Repr&) = default;
};

}  // namespace usnet::wire
