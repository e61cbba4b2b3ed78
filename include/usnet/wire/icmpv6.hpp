// ICMPv6 (RFC 4443) and the Neighbor Discovery messages it carries
// (RFC 4861 4). The checksum covers the IPv6 pseudo-header with next header
// 58 (RFC 4443 2.3, RFC 8200 8.1).
//
// Types this file does not know (MLD, ...) are parsed as generic messages
// (type, code, bytes 4..8 as rest_of_header, data) rather than rejected;
// RFC 4443 2.4 (b)/(c) leave it to the ICMPv6 layer to pass them up or drop
// them by type.
//
// NDP validity checks that need more than the ICMPv6 bytes are the caller's
// (RFC 4861 6.1, 7.1, 8.1): IP hop limit 255, a target that is not
// multicast, no source link-layer option from the unspecified address, and
// so on. The parser checks what the message itself says: code 0 (BadField),
// the fixed part present (Truncated), option lengths (BadOptionLength) and
// the known options' sizes (BadOption).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

// A fixed underlying type lets an unknown type value be held as well.
enum class Icmpv6Type : std::uint8_t {
  DestUnreachable = 1,    // RFC 4443 3.1
  PacketTooBig = 2,       // RFC 4443 3.2
  TimeExceeded = 3,       // RFC 4443 3.3
  ParamProblem = 4,       // RFC 4443 3.4
  EchoRequest = 128,      // RFC 4443 4.1
  EchoReply = 129,        // RFC 4443 4.2
  RouterSolicit = 133,    // RFC 4861 4.1
  RouterAdvert = 134,     // RFC 4861 4.2
  NeighborSolicit = 135,  // RFC 4861 4.3
  NeighborAdvert = 136,   // RFC 4861 4.4
  Redirect = 137,         // RFC 4861 4.5
};

constexpr bool is_ndp_message(Icmpv6Type t) noexcept {
  return t >= Icmpv6Type::RouterSolicit && t <= Icmpv6Type::Redirect;
}

// RFC 4443 2.1: error messages have types 0..127.
constexpr bool is_icmpv6_error(Icmpv6Type t) noexcept { return static_cast<std::uint8_t>(t) < 128; }

// RFC 4861 4.6 option types.
struct NdpOptionType {
  static constexpr std::uint8_t kSourceLinkLayerAddr = 1, kTargetLinkLayerAddr = 2, kPrefixInfo = 3,
                                kRedirectedHeader = 4, kMtu = 5;
};

// RFC 4861 4.6.2 Prefix Information.
struct NdpPrefixInfo {
  std::uint8_t prefix_len = 0;           // 0..128
  bool on_link = false;                  // L flag
  bool autonomous = false;               // A flag (RFC 4862 address autoconfiguration)
  std::uint32_t valid_lifetime = 0;      // seconds, 0xffffffff = infinity
  std::uint32_t preferred_lifetime = 0;  // seconds, 0xffffffff = infinity
  Ipv6Addr prefix{};

  friend bool operator==(const NdpPrefixInfo&, const NdpPrefixInfo&) = default;
};

// The NDP options of one message, for an Ethernet link (a link-layer address
// option is exactly 8 bytes). Parse keeps the first of a repeated
// link-layer address or MTU option and at most kMaxPrefixes prefix options;
// the Redirected Header and unknown options are skipped (RFC 4861 4.6:
// "silently ignore"). Emit writes options in type order: source, target
// link-layer address, prefixes, MTU.
struct NdpOptions {
  static constexpr std::size_t kMaxPrefixes = 4;
  static constexpr std::size_t kLinkLayerAddrLen = 8;  // Ethernet: type, length, 6-byte MAC
  static constexpr std::size_t kPrefixInfoLen = 32;
  static constexpr std::size_t kMtuLen = 8;

  std::optional<MacAddr> source_lladdr{};  // RFC 4861 4.6.1, type 1
  std::optional<MacAddr> target_lladdr{};  // RFC 4861 4.6.1, type 2
  std::optional<std::uint32_t> mtu{};      // RFC 4861 4.6.4
  std::array<NdpPrefixInfo, kMaxPrefixes> prefixes{};
  std::uint8_t prefix_count = 0;

  // Errors: an option with length 0 or past the end (BadOptionLength,
  // RFC 4861 4.6: "MUST silently discard"); a known option of the wrong size
  // or a prefix length over 128 (BadOption).
  static ParseResult<NdpOptions> parse(std::span<const std::byte> options) noexcept;
  std::size_t buffer_len() const noexcept;
  // Writes buffer_len() bytes. BadField if prefix_count > kMaxPrefixes or a
  // prefix length is over 128; NoSpace if out is too short.
  ParseResult<std::size_t> emit(std::span<std::byte> out) const noexcept;

  std::span<const NdpPrefixInfo> prefix_infos() const noexcept {
    return std::span<const NdpPrefixInfo>(prefixes).first(prefix_count < kMaxPrefixes ? prefix_count
                                                                                      : kMaxPrefixes);
  }
  // False (and nothing added) when kMaxPrefixes are already held.
  bool add_prefix(const NdpPrefixInfo& p) noexcept;

  // Compares only the prefixes in use.
  friend bool operator==(const NdpOptions& a, const NdpOptions& b) noexcept;
};

// RFC 4861 4.2 Router Advertisement fields.
struct NdpRouterAdvert {
  std::uint8_t cur_hop_limit = 0;     // 0 = unspecified by this router
  bool managed = false;               // M: addresses via DHCPv6
  bool other_config = false;          // O: other configuration via DHCPv6
  std::uint8_t router_pref = 0;       // RFC 4191 2.2 Prf: 01 high, 00 medium, 11 low (10 reads as 00)
  std::uint16_t router_lifetime = 0;  // seconds, 0 = not a default router
  std::uint32_t reachable_time = 0;   // milliseconds, 0 = unspecified
  std::uint32_t retrans_timer = 0;    // milliseconds, 0 = unspecified

  friend bool operator==(const NdpRouterAdvert&, const NdpRouterAdvert&) = default;
};

class Icmpv6View {
 public:
  static constexpr std::size_t kHeaderLen = 8;
  struct Off {  // field offsets
    static constexpr std::size_t kType = 0, kCode = 1, kChecksum = 2, kRestOfHeader = 4, kIdent = 4, kSeq = 6,
                                 kMtu = 4, kPointer = 4;
    // NDP (RFC 4861 4.2-4.5)
    static constexpr std::size_t kRaCurHopLimit = 4, kRaFlags = 5, kRaRouterLifetime = 6,
                                 kRaReachableTime = 8, kRaRetransTimer = 12, kNaFlags = 4, kTarget = 8,
                                 kRedirectDest = 24;
  };

  // Length of the message up to its options (NDP) or data (others).
  static constexpr std::size_t fixed_len(Icmpv6Type t) noexcept {
    switch (t) {
      case Icmpv6Type::RouterAdvert:
        return 16;
      case Icmpv6Type::NeighborSolicit:
      case Icmpv6Type::NeighborAdvert:
        return 24;
      case Icmpv6Type::Redirect:
        return 40;
      default:
        return kHeaderLen;
    }
  }

  // Checks: at least 8 bytes and at least the fixed part of an NDP message
  // (Truncated); at most 65535 (BadLength, Jumbograms are not supported). The
  // view covers all the bytes given, which the caller has cut to the upper
  // layer of the IPv6 packet.
  static ParseResult<Icmpv6View> make(std::span<const std::byte> bytes) noexcept;

  Icmpv6Type type() const noexcept { return static_cast<Icmpv6Type>(load_u8(b_.data() + Off::kType)); }
  std::uint8_t code() const noexcept { return load_u8(b_.data() + Off::kCode); }
  std::uint16_t checksum() const noexcept { return load_be16(b_.data() + Off::kChecksum); }
  std::uint32_t rest_of_header() const noexcept { return load_be32(b_.data() + Off::kRestOfHeader); }
  std::uint16_t ident() const noexcept { return load_be16(b_.data() + Off::kIdent); }      // echo
  std::uint16_t seq() const noexcept { return load_be16(b_.data() + Off::kSeq); }          // echo
  std::uint32_t mtu() const noexcept { return load_be32(b_.data() + Off::kMtu); }          // packet too big
  std::uint32_t pointer() const noexcept { return load_be32(b_.data() + Off::kPointer); }  // param problem
  // Everything after the 8-byte header: echo data or the invoking packet.
  std::span<const std::byte> data() const noexcept { return b_.subspan(kHeaderLen); }
  std::span<const std::byte> bytes() const noexcept { return b_; }

  // NDP accessors. They read the fields of the named message; called on a
  // message too short for the field, they return zero instead of reading
  // past the view.
  std::uint8_t ra_cur_hop_limit() const noexcept { return load_u8(b_.data() + Off::kRaCurHopLimit); }
  std::uint8_t ra_flags() const noexcept { return load_u8(b_.data() + Off::kRaFlags); }
  std::uint16_t ra_router_lifetime() const noexcept { return load_be16(b_.data() + Off::kRaRouterLifetime); }
  std::uint32_t ra_reachable_time() const noexcept { return be32_or_zero(Off::kRaReachableTime); }
  std::uint32_t ra_retrans_timer() const noexcept { return be32_or_zero(Off::kRaRetransTimer); }
  std::uint32_t na_flags() const noexcept { return load_be32(b_.data() + Off::kNaFlags); }
  Ipv6Addr target() const noexcept { return addr_or_zero(Off::kTarget); }  // NS, NA, Redirect
  Ipv6Addr redirect_destination() const noexcept { return addr_or_zero(Off::kRedirectDest); }
  // The options of an NDP message (empty for other types).
  std::span<const std::byte> ndp_options() const noexcept;

  bool checksum_ok(const Ipv6Addr& src, const Ipv6Addr& dst) const noexcept;

 private:
  explicit Icmpv6View(std::span<const std::byte> b) : b_(b) {}
  std::uint32_t be32_or_zero(std::size_t off) const noexcept {
    return b_.size() >= off + 4 ? load_be32(b_.data() + off) : 0;
  }
  Ipv6Addr addr_or_zero(std::size_t off) const noexcept {
    return b_.size() >= off + 16 ? Ipv6Addr::read(b_.data() + off) : Ipv6Addr{};
  }
  std::span<const std::byte> b_;
};

// One value for every message type; fields the type does not carry are zero
// after parse and ignored by emit.
struct Icmpv6Repr {
  Icmpv6Type type = Icmpv6Type::EchoRequest;
  std::uint8_t code = 0;
  std::uint16_t ident = 0;           // echo request/reply
  std::uint16_t seq = 0;             // echo request/reply
  std::uint32_t mtu = 0;             // packet too big
  std::uint32_t pointer = 0;         // parameter problem
  std::uint32_t rest_of_header = 0;  // unknown types: bytes 4..8 kept as they are
  Ipv6Addr target{};                 // NS, NA, Redirect
  Ipv6Addr destination{};            // Redirect
  bool na_router = false;            // NA R flag
  bool na_solicited = false;         // NA S flag
  bool na_override = false;          // NA O flag
  NdpRouterAdvert ra{};              // RA
  NdpOptions ndp_options{};          // NDP messages
  // Bytes after the 8-byte header (echo data, invoking packet, body of an
  // unknown type). Always 0 for NDP messages, whose tail is their options.
  std::uint16_t data_len = 0;

  // Verifies the checksum when mode == Verify (BadChecksum); an NDP message
  // with code != 0 is BadField; option errors as in NdpOptions::parse.
  static ParseResult<Icmpv6Repr> parse(const Icmpv6View& v, const Ipv6Addr& src, const Ipv6Addr& dst,
                                       ChecksumMode mode = ChecksumMode::Verify) noexcept;
  // Bytes emit() writes: the 8-byte header, or for NDP the whole message.
  std::size_t buffer_len() const noexcept;
  // The whole message: buffer_len() plus data_len (not for NDP).
  std::size_t total_len() const noexcept;
  // Writes buffer_len() bytes into out. For other than NDP, the data must
  // already be in out[8..8+data_len) when the checksum is computed (mode ==
  // Verify); with Ignore the checksum field is left zero. BadField for an
  // NDP message with code != 0, router_pref 2 (reserved, RFC 4191 2.2) or
  // above 3, or bad options;
  // BadLength past 65535 bytes; NoSpace if out is too short.
  ParseResult<std::size_t> emit(std::span<std::byte> out, const Ipv6Addr& src, const Ipv6Addr& dst,
                                ChecksumMode mode = ChecksumMode::Verify) const noexcept;

  friend bool operator==(const Icmpv6Repr&, const Icmpv6Repr&) = default;
};

}  // namespace usnet::wire
