#include "usnet/wire/arp.hpp"

namespace usnet::wire {

namespace {
bool is_known_operation(ArpOperation op) noexcept {
  return op == ArpOperation::Request || op == ArpOperation::Reply;
}
}  // namespace

ParseResult<ArpView> ArpView::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kLen) return unexpected(ParseError::Truncated);
  const ArpView v(bytes.first(kLen));
  // RFC 826 "Packet Reception": a packet whose hardware or protocol type we
  // do not speak is discarded. The lengths are checked too, because every
  // offset after byte 8 assumes 6-byte and 4-byte addresses.
  if (v.hardware_type() != kHardwareEthernet || v.hardware_len() != kMacLen) {
    return unexpected(ParseError::BadHardwareType);
  }
  if (v.protocol_type() != kProtocolIpv4 || v.protocol_len() != kIpv4Len) {
    return unexpected(ParseError::BadProtocolType);
  }
  if (!is_known_operation(v.operation())) return unexpected(ParseError::BadOperation);
  return v;
}

ParseResult<ArpRepr> ArpRepr::parse(const ArpView& v) noexcept {
  return ArpRepr{v.operation(), v.sender_mac(), v.sender_ip(), v.target_mac(), v.target_ip()};
}

ParseResult<std::size_t> ArpRepr::emit(std::span<std::byte> out) const noexcept {
  if (!is_known_operation(operation)) return unexpected(ParseError::BadOperation);
  if (out.size() < ArpView::kLen) return unexpected(ParseError::NoSpace);
  std::byte* p = out.data();
  store_be16(p + ArpView::Off::kHardwareType, ArpView::kHardwareEthernet);
  store_be16(p + ArpView::Off::kProtocolType, ArpView::kProtocolIpv4);
  store_u8(p + ArpView::Off::kHardwareLen, ArpView::kMacLen);
  store_u8(p + ArpView::Off::kProtocolLen, ArpView::kIpv4Len);
  store_be16(p + ArpView::Off::kOperation, static_cast<std::uint16_t>(operation));
  sender_mac.write(p + ArpView::Off::kSenderMac);
  sender_ip.write(p + ArpView::Off::kSenderIp);
  target_mac.write(p + ArpView::Off::kTargetMac);
  target_ip.write(p + ArpView::Off::kTargetIp);
  return ArpView::kLen;
}

}  // namespace usnet::wire
