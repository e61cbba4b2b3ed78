// Fuzz UdpView::make / UdpRepr::parse with a round-trip oracle. The first
// input byte picks the pseudo-header family and whether checksums are
// verified; the rest is the UDP datagram.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "usnet/wire/udp.hpp"

using namespace usnet::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool v6 = (data[0] & 1) != 0;
  const auto mode = (data[0] & 0x0e) == 0 ? ChecksumMode::Verify : ChecksumMode::Ignore;
  const auto input = std::as_bytes(std::span(data + 1, size - 1));
  const auto ph =
      v6 ? PseudoHeader::v6(*Ipv6Addr::parse("2001:db8::1"), *Ipv6Addr::parse("2001:db8::2"))
         : PseudoHeader::v4(Ipv4Addr::from_octets(198, 18, 0, 1), Ipv4Addr::from_octets(198, 18, 0, 2));

  auto view = UdpView::make(input);
  if (!view) return 0;
  if (view->bytes().size() != view->length() || view->length() > input.size()) __builtin_trap();
  auto repr = UdpRepr::parse(*view, ph, mode);
  if (!repr) return 0;

  // Re-emit with a computed checksum over the same payload: it must verify
  // and parse back to the same value, with the ports and length unchanged.
  std::vector<std::byte> out(view->length());
  std::memcpy(out.data() + UdpView::kHeaderLen, view->payload().data(), view->payload().size());
  if (!repr->emit(out, ph, ChecksumMode::Verify)) __builtin_trap();
  auto view2 = UdpView::make(out);
  if (!view2 || !view2->checksum_ok(ph)) __builtin_trap();
  auto repr2 = UdpRepr::parse(*view2, ph, ChecksumMode::Verify);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  if (std::memcmp(out.data(), input.data(), 6) != 0) __builtin_trap();  // ports and length
  return 0;
}
