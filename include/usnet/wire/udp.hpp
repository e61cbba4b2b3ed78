// UDP (RFC 768). The pattern every wire type follows:
//   - a View: a zero-copy window over bytes. View::make() checks every length
//     once; after it succeeds no accessor can read out of bounds.
//   - a Repr: a small validated value with parse(), buffer_len() and emit().
//     parse(emit(r)) == r for every valid r.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

// Addresses for the pseudo-header; UDP and TCP checksums cover it.
struct PseudoHeader {
  enum class Family : std::uint8_t { V4, V6 } family = Family::V4;
  Ipv4Addr src4, dst4;
  Ipv6Addr src6, dst6;

  static PseudoHeader v4(Ipv4Addr s, Ipv4Addr d) { return {Family::V4, s, d, {}, {}}; }
  static PseudoHeader v6(const Ipv6Addr& s, const Ipv6Addr& d) { return {Family::V6, {}, {}, s, d}; }
  // Folded sum of the pseudo-header for `protocol` and upper-layer `length`.
  std::uint16_t sum(std::uint8_t protocol, std::uint32_t length) const noexcept {
    if (family == Family::V4) {
      return pseudo_header_sum_v4(src4, dst4, protocol, static_cast<std::uint16_t>(length));
    }
    return pseudo_header_sum_v6(src6, dst6, protocol, length);
  }
};

class UdpView {
 public:
  static constexpr std::size_t kHeaderLen = 8;
  static constexpr std::uint8_t kProtocol = 17;
  struct Off {  // field offsets
    static constexpr std::size_t kSrcPort = 0, kDstPort = 2, kLength = 4, kChecksum = 6;
  };

  // Checks: at least 8 bytes; length field >= 8 and <= the bytes given. The
  // view then covers exactly `length` bytes (IP padding beyond is excluded).
  static ParseResult<UdpView> make(std::span<const std::byte> bytes) noexcept;

  std::uint16_t src_port() const noexcept { return load_be16(b_.data() + Off::kSrcPort); }
  std::uint16_t dst_port() const noexcept { return load_be16(b_.data() + Off::kDstPort); }
  std::uint16_t length() const noexcept { return load_be16(b_.data() + Off::kLength); }
  std::uint16_t checksum() const noexcept { return load_be16(b_.data() + Off::kChecksum); }
  std::span<const std::byte> payload() const noexcept { return b_.subspan(kHeaderLen); }
  std::span<const std::byte> bytes() const noexcept { return b_; }
  // True if the checksum is zero (IPv4: not computed) or verifies.
  bool checksum_ok(const PseudoHeader& ph) const noexcept;

 private:
  explicit UdpView(std::span<const std::byte> b) : b_(b) {}
  std::span<const std::byte> b_;
};

struct UdpRepr {
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint16_t payload_len = 0;

  // Verifies the checksum when mode == Verify. A zero checksum is accepted on
  // IPv4 (RFC 768) and rejected on IPv6 (RFC 8200 8.1).
  static ParseResult<UdpRepr> parse(const UdpView& v, const PseudoHeader& ph,
                                    ChecksumMode mode = ChecksumMode::Verify) noexcept;
  std::size_t buffer_len() const noexcept { return UdpView::kHeaderLen; }
  // Writes the header into out[0..8). The payload must already be in
  // out[8..8+payload_len) when the checksum is computed (mode == Verify);
  // with Ignore the checksum field is left zero.
  ParseResult<std::size_t> emit(std::span<std::byte> out, const PseudoHeader& ph,
                                ChecksumMode mode = ChecksumMode::Verify) const noexcept;

  friend bool operator==(const UdpRepr&, const UdpRepr&) = default;
};

}  // namespace usnet::wire
