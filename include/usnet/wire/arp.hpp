// ARP (RFC 826) for Ethernet hardware addresses and IPv4 protocol addresses,
// the only pairing usnet speaks. Anything else is rejected, with a reason.
//
// Layout (28 bytes): htype(2) ptype(2) hlen(1) plen(1) op(2)
//                    sender_mac(6) sender_ip(4) target_mac(6) target_ip(4)
// An ARP frame is padded to the Ethernet minimum (60 bytes) on the wire; the
// view covers the first 28 bytes and ignores whatever follows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

enum class ArpOperation : std::uint16_t { Request = 1, Reply = 2 };

class ArpView {
 public:
  static constexpr std::size_t kLen = 28;
  static constexpr std::uint16_t kHardwareEthernet = 1;  // RFC 826 ar$hrd, from Assigned Numbers
  static constexpr std::uint8_t kMacLen = 6;
  static constexpr std::uint16_t kProtocolIpv4 = 0x0800;  // ar$pro is an ethertype
  static constexpr std::uint8_t kIpv4Len = 4;
  struct Off {  // field offsets
    static constexpr std::size_t kHardwareType = 0, kProtocolType = 2, kHardwareLen = 4, kProtocolLen = 5,
                                 kOperation = 6, kSenderMac = 8, kSenderIp = 14, kTargetMac = 18,
                                 kTargetIp = 24;
  };

  // Checks: at least 28 bytes (Truncated); htype 1 and hlen 6
  // (BadHardwareType); ptype 0x0800 and plen 4 (BadProtocolType); operation
  // request or reply (BadOperation).
  static ParseResult<ArpView> make(std::span<const std::byte> bytes) noexcept;

  std::uint16_t hardware_type() const noexcept { return load_be16(b_.data() + Off::kHardwareType); }
  std::uint16_t protocol_type() const noexcept { return load_be16(b_.data() + Off::kProtocolType); }
  std::uint8_t hardware_len() const noexcept { return load_u8(b_.data() + Off::kHardwareLen); }
  std::uint8_t protocol_len() const noexcept { return load_u8(b_.data() + Off::kProtocolLen); }
  ArpOperation operation() const noexcept {
    return static_cast<ArpOperation>(load_be16(b_.data() + Off::kOperation));
  }
  MacAddr sender_mac() const noexcept { return MacAddr::read(b_.data() + Off::kSenderMac); }
  Ipv4Addr sender_ip() const noexcept { return Ipv4Addr::read(b_.data() + Off::kSenderIp); }
  MacAddr target_mac() const noexcept { return MacAddr::read(b_.data() + Off::kTargetMac); }
  Ipv4Addr target_ip() const noexcept { return Ipv4Addr::read(b_.data() + Off::kTargetIp); }
  std::span<const std::byte> bytes() const noexcept { return b_; }

 private:
  explicit ArpView(std::span<const std::byte> b) : b_(b) {}
  std::span<const std::byte> b_;
};

struct ArpRepr {
  ArpOperation operation = ArpOperation::Request;
  MacAddr sender_mac;
  Ipv4Addr sender_ip;
  MacAddr target_mac;  // all zero in a request (RFC 826 leaves it unspecified)
  Ipv4Addr target_ip;

  static ParseResult<ArpRepr> parse(const ArpView& v) noexcept;
  std::size_t buffer_len() const noexcept { return ArpView::kLen; }
  // Writes 28 bytes into out and returns 28; no padding (the link pads).
  // NoSpace if out is shorter; BadOperation if operation is not 1 or 2.
  ParseResult<std::size_t> emit(std::span<std::byte> out) const noexcept;

  friend bool operator==(const ArpRepr&, const ArpRepr&) = default;
};

}  // namespace usnet::wire
