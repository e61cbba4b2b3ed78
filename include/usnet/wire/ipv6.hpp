// IPv6 fixed header (RFC 8200 3) and the extension-header walk (RFC 8200 4).
//
// The walk is a pure function of the bytes: it finds where the upper layer
// starts and reports what the IP layer must decide on (a fragment header, an
// unknown option and its action bits). It never acts on them itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

// Next Header values the walk knows about (IANA "Assigned Internet Protocol
// Numbers"); any other value is taken to be the upper layer.
struct Ipv6NextHeader {
  static constexpr std::uint8_t kHopByHop = 0;       // RFC 8200 4.3
  static constexpr std::uint8_t kTcp = 6;            // RFC 9293
  static constexpr std::uint8_t kUdp = 17;           // RFC 768
  static constexpr std::uint8_t kRouting = 43;       // RFC 8200 4.4
  static constexpr std::uint8_t kFragment = 44;      // RFC 8200 4.5
  static constexpr std::uint8_t kEsp = 50;           // RFC 4303 (encrypted: ends the walk)
  static constexpr std::uint8_t kAuth = 51;          // RFC 4302
  static constexpr std::uint8_t kIcmpv6 = 58;        // RFC 4443
  static constexpr std::uint8_t kNoNextHeader = 59;  // RFC 8200 4.7
  static constexpr std::uint8_t kDestOptions = 60;   // RFC 8200 4.6
};

class Ipv6View {
 public:
  static constexpr std::size_t kHeaderLen = 40;
  struct Off {  // field offsets
    static constexpr std::size_t kVersionClassFlow = 0, kPayloadLen = 4, kNextHeader = 6, kHopLimit = 7,
                                 kSrc = 8, kDst = 24;
  };

  // Checks: at least 40 bytes; version 6 (BadVersion); 40 + payload length
  // <= the bytes given (Truncated). The view then covers exactly 40 + payload
  // length bytes (link padding beyond is excluded). A payload length of 0 is
  // taken literally: Jumbograms (RFC 2675) are not supported.
  static ParseResult<Ipv6View> make(std::span<const std::byte> bytes) noexcept;

  std::uint8_t version() const noexcept { return static_cast<std::uint8_t>(word0() >> 28); }
  std::uint8_t traffic_class() const noexcept { return static_cast<std::uint8_t>(word0() >> 20); }
  // RFC 2474 / RFC 3168: the traffic class is DSCP (6 bits) then ECN (2 bits).
  std::uint8_t dscp() const noexcept { return static_cast<std::uint8_t>(traffic_class() >> 2); }
  std::uint8_t ecn() const noexcept { return static_cast<std::uint8_t>(traffic_class() & 0x3); }
  std::uint32_t flow_label() const noexcept { return word0() & 0xfffff; }
  std::uint16_t payload_len() const noexcept { return load_be16(b_.data() + Off::kPayloadLen); }
  std::uint8_t next_header() const noexcept { return load_u8(b_.data() + Off::kNextHeader); }
  std::uint8_t hop_limit() const noexcept { return load_u8(b_.data() + Off::kHopLimit); }
  Ipv6Addr src() const noexcept { return Ipv6Addr::read(b_.data() + Off::kSrc); }
  Ipv6Addr dst() const noexcept { return Ipv6Addr::read(b_.data() + Off::kDst); }
  // Everything after the fixed header: extension headers and the upper layer.
  std::span<const std::byte> payload() const noexcept { return b_.subspan(kHeaderLen); }
  std::span<const std::byte> bytes() const noexcept { return b_; }

 private:
  explicit Ipv6View(std::span<const std::byte> b) : b_(b) {}
  std::uint32_t word0() const noexcept { return load_be32(b_.data() + Off::kVersionClassFlow); }
  std::span<const std::byte> b_;
};

struct Ipv6Repr {
  Ipv6Addr src{};
  Ipv6Addr dst{};
  std::uint8_t next_header = 0;
  std::uint8_t hop_limit = 64;
  std::uint8_t dscp = 0;         // 6 bits
  std::uint8_t ecn = 0;          // 2 bits
  std::uint32_t flow_label = 0;  // 20 bits
  std::uint16_t payload_len = 0;

  static ParseResult<Ipv6Repr> parse(const Ipv6View& v) noexcept;
  std::size_t buffer_len() const noexcept { return Ipv6View::kHeaderLen; }
  // Writes the 40-byte fixed header into out[0..40). BadField if dscp, ecn or
  // flow_label do not fit their bits; NoSpace if out is shorter than 40.
  ParseResult<std::size_t> emit(std::span<std::byte> out) const noexcept;

  friend bool operator==(const Ipv6Repr&, const Ipv6Repr&) = default;
};

// RFC 8200 4.2: the two high bits of an option type say what a node that
// does not recognise the option must do.
enum class Ipv6OptionAction : std::uint8_t {
  Skip = 0,                   // skip over this option
  Discard = 1,                // discard the packet silently
  DiscardAndIcmp = 2,         // discard, send ICMPv6 Parameter Problem code 2
  DiscardAndIcmpUnicast = 3,  // same, only if the destination is not multicast
};

constexpr Ipv6OptionAction ipv6_option_action(std::uint8_t option_type) noexcept {
  return static_cast<Ipv6OptionAction>(option_type >> 6);
}

// The first unrecognised option (in a Hop-by-Hop or Destination Options
// header) whose action is not Skip: the one the IP layer has to act on.
struct Ipv6UnknownOption {
  std::uint8_t type = 0;
  // Offset of the option's type byte within the IPv6 payload. An ICMPv6
  // Parameter Problem pointer is this plus Ipv6View::kHeaderLen.
  std::size_t payload_offset = 0;
  std::uint8_t in_header = 0;  // Ipv6NextHeader::kHopByHop or kDestOptions

  Ipv6OptionAction action() const noexcept { return ipv6_option_action(type); }
  friend bool operator==(const Ipv6UnknownOption&, const Ipv6UnknownOption&) = default;
};

// RFC 8200 4.5 Fragment header fields.
struct Ipv6FragmentInfo {
  std::uint16_t offset = 0;  // in 8-octet units (13 bits)
  bool more_fragments = false;
  std::uint32_t identification = 0;
  std::uint8_t next_header = 0;   // first header of the fragmentable part
  std::size_t header_offset = 0;  // where the fragment header sits in the payload
  // Bytes before header_offset are the unfragmentable part; fragment data
  // starts at header_offset + kLen.
  static constexpr std::size_t kLen = 8;

  friend bool operator==(const Ipv6FragmentInfo&, const Ipv6FragmentInfo&) = default;
};

struct Ipv6ExtWalk {
  // Protocol of the upper layer (Ipv6NextHeader::kNoNextHeader if the chain
  // ended with No Next Header: then there is no upper layer, RFC 8200 4.7).
  std::uint8_t upper_protocol = 0;
  // Where the upper layer starts within the IPv6 payload.
  std::size_t upper_offset = 0;
  // Extension headers walked over.
  unsigned header_count = 0;
  // Set if a Fragment header was seen. A non-first fragment (offset != 0)
  // ends the walk there: what follows is the middle of the fragmentable part,
  // so upper_protocol/upper_offset then name fragment data, not a header.
  std::optional<Ipv6FragmentInfo> fragment;
  // Unrecognised options seen (any action), and the first that is not Skip.
  unsigned unknown_option_count = 0;
  std::optional<Ipv6UnknownOption> first_unknown_option;

  bool has_upper_layer() const noexcept { return upper_protocol != Ipv6NextHeader::kNoNextHeader; }
  bool is_non_first_fragment() const noexcept { return fragment && fragment->offset != 0; }
  friend bool operator==(const Ipv6ExtWalk&, const Ipv6ExtWalk&) = default;
};

// Follows the extension-header chain of `v` (RFC 8200 4.1): Hop-by-Hop (only
// as the first header, else BadExtHeader, RFC 8200 4.3), Routing, Fragment,
// Destination Options, and AH (RFC 4302 2.2, length in 4-byte units, at
// least 12 bytes and a multiple of 8, else BadExtHeader). Options in
// Hop-by-Hop and Destination Options headers are walked: an option running
// past its header is BadOptionLength. A header running past the payload is
// Truncated (this also rejects a first fragment that does not hold the whole
// chain, RFC 7112). A second Fragment header is BadExtHeader (nested
// fragmentation is not reassembled). More than `max_headers` extension
// headers is TooManyExtHeaders. Any other next-header value is the upper
// layer and ends the walk.
ParseResult<Ipv6ExtWalk> walk_extension_headers(const Ipv6View& v, unsigned max_headers = 8) noexcept;

}  // namespace usnet::wire
