#include "usnet/wire/udp.hpp"

namespace usnet::wire {

ParseResult<UdpView> UdpView::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  const std::uint16_t len = load_be16(bytes.data() + Off::kLength);
  if (len < kHeaderLen) return unexpected(ParseError::BadLength);
  if (len > bytes.size()) return unexpected(ParseError::Truncated);
  return UdpView(bytes.first(len));
}

bool UdpView::checksum_ok(const PseudoHeader& ph) const noexcept {
  if (checksum() == 0) return ph.family == PseudoHeader::Family::V4;
  // One ones_sum() over the datagram (never empty) plus the pseudo-header.
  return ones_add(ph.sum(kProtocol, length()), ones_sum(b_)) == 0xffff;
}

ParseResult<UdpRepr> UdpRepr::parse(const UdpView& v, const PseudoHeader& ph, ChecksumMode mode) noexcept {
  if (mode == ChecksumMode::Verify && !v.checksum_ok(ph)) return unexpected(ParseError::BadChecksum);
  return UdpRepr{v.src_port(), v.dst_port(), static_cast<std::uint16_t>(v.length() - UdpView::kHeaderLen)};
}

ParseResult<std::size_t> UdpRepr::emit(std::span<std::byte> out, const PseudoHeader& ph,
                                       ChecksumMode mode) const noexcept {
  const std::size_t total = UdpView::kHeaderLen + std::size_t{payload_len};
  if (total > 0xffff) return unexpected(ParseError::BadLength);
  if (out.size() < UdpView::kHeaderLen || (mode == ChecksumMode::Verify && out.size() < total)) {
    return unexpected(ParseError::NoSpace);
  }
  std::byte* p = out.data();
  store_be16(p + UdpView::Off::kSrcPort, src_port);
  store_be16(p + UdpView::Off::kDstPort, dst_port);
  store_be16(p + UdpView::Off::kLength, static_cast<std::uint16_t>(total));
  store_be16(p + UdpView::Off::kChecksum, 0);
  if (mode == ChecksumMode::Verify) {
    Checksum c;
    c.add_sum(ph.sum(UdpView::kProtocol, static_cast<std::uint32_t>(total)));
    c.add(out.first(total));
    std::uint16_t check = c.finish();
    // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    store_be16(p + UdpView::Off::kChecksum, check == 0 ? 0xffff : check);
  }
  return UdpView::kHeaderLen;
}

}  // namespace usnet::wire
