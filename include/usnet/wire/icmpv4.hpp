// ICMP for IPv4 (RFC 792, RFC 1191 for "fragmentation needed").
//
// Every message is an 8-byte header (type, code, checksum, one type-specific
// word) followed by data: the echo data, or for error messages the invoking
// datagram (its IP header and at least 8 bytes of its payload, RFC 1122
// 3.2.2). Whether the quoted datagram is long enough to act on is the ICMP
// layer's check (RFC 5927), not the parser's.
//
// Types this file does not know (timestamp, router advertisement, ...) are
// parsed as generic messages (type, code, the type-specific word kept as
// rest_of_header, data) rather than rejected: RFC 1122 3.2.2 has the ICMP
// layer silently discard unknown types, and it can count them by type; a
// captured packet also round-trips unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

// The IPv4 protocol number of ICMP (distinct name: ipv4.hpp has its own list).
inline constexpr std::uint8_t kIcmpv4Protocol = 1;

// A fixed underlying type lets an unknown type value be held as well.
enum class Icmpv4Type : std::uint8_t {
  EchoReply = 0,
  DestUnreachable = 3,
  EchoRequest = 8,
  TimeExceeded = 11,
  ParamProblem = 12,
};

// RFC 792 destination unreachable codes (RFC 1191: 4 carries the MTU).
struct Icmpv4UnreachCode {
  static constexpr std::uint8_t kNet = 0, kHost = 1, kProtocol = 2, kPort = 3, kFragNeeded = 4,
                                kSourceRouteFailed = 5;
};

class Icmpv4View {
 public:
  static constexpr std::size_t kHeaderLen = 8;
  struct Off {  // field offsets
    static constexpr std::size_t kType = 0, kCode = 1, kChecksum = 2, kRestOfHeader = 4, kIdent = 4, kSeq = 6,
                                 kPointer = 4, kNextHopMtu = 6;
  };

  // Checks: at least 8 bytes (Truncated), at most 65535 (BadLength: no IPv4
  // datagram is longer). ICMP has no length field: the view covers all the
  // bytes given, which the caller has cut to the IP payload.
  static ParseResult<Icmpv4View> make(std::span<const std::byte> bytes) noexcept;

  Icmpv4Type type() const noexcept { return static_cast<Icmpv4Type>(load_u8(b_.data() + Off::kType)); }
  std::uint8_t code() const noexcept { return load_u8(b_.data() + Off::kCode); }
  std::uint16_t checksum() const noexcept { return load_be16(b_.data() + Off::kChecksum); }
  // Bytes 4..8 as one word, whatever the type.
  std::uint32_t rest_of_header() const noexcept { return load_be32(b_.data() + Off::kRestOfHeader); }
  // Echo request/reply (RFC 792).
  std::uint16_t ident() const noexcept { return load_be16(b_.data() + Off::kIdent); }
  std::uint16_t seq() const noexcept { return load_be16(b_.data() + Off::kSeq); }
  // Parameter problem (RFC 792): the octet of the invoking datagram at fault.
  std::uint8_t pointer() const noexcept { return load_u8(b_.data() + Off::kPointer); }
  // Destination unreachable, code 4 (RFC 1191 4): MTU of the next-hop link.
  std::uint16_t next_hop_mtu() const noexcept { return load_be16(b_.data() + Off::kNextHopMtu); }
  // Everything after the 8-byte header: echo data or the invoking datagram.
  std::span<const std::byte> data() const noexcept { return b_.subspan(kHeaderLen); }
  std::span<const std::byte> bytes() const noexcept { return b_; }
  bool is_error() const noexcept;  // destination unreachable, time exceeded, parameter problem
  bool checksum_ok() const noexcept;

 private:
  explicit Icmpv4View(std::span<const std::byte> b) : b_(b) {}
  std::span<const std::byte> b_;
};

// One value for every message type; fields the type does not carry are zero
// after parse and ignored by emit.
struct Icmpv4Repr {
  Icmpv4Type type = Icmpv4Type::EchoRequest;
  std::uint8_t code = 0;
  std::uint16_t ident = 0;           // echo request/reply
  std::uint16_t seq = 0;             // echo request/reply
  std::uint16_t next_hop_mtu = 0;    // destination unreachable, code 4 (RFC 1191)
  std::uint8_t pointer = 0;          // parameter problem
  std::uint32_t rest_of_header = 0;  // unknown types: bytes 4..8 kept as they are
  std::uint16_t data_len = 0;        // bytes after the header (echo data, invoking datagram)

  // Verifies the checksum when mode == Verify (BadChecksum). Unused bits of
  // the known types are not checked, and emit writes them as zero.
  static ParseResult<Icmpv4Repr> parse(const Icmpv4View& v,
                                       ChecksumMode mode = ChecksumMode::Verify) noexcept;
  std::size_t buffer_len() const noexcept { return Icmpv4View::kHeaderLen; }
  std::size_t total_len() const noexcept { return Icmpv4View::kHeaderLen + data_len; }
  // Writes the header into out[0..8). The data must already be in
  // out[8..8+data_len) when the checksum is computed (mode == Verify); with
  // Ignore the checksum field is left zero. BadLength if the message would
  // pass 65535 bytes; NoSpace if out is too short.
  ParseResult<std::size_t> emit(std::span<std::byte> out,
                                ChecksumMode mode = ChecksumMode::Verify) const noexcept;

  friend bool operator==(const Icmpv4Repr&, const Icmpv4Repr&) = default;
};

}  // namespace usnet::wire
