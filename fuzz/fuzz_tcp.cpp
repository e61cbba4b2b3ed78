// Fuzz target for the TCP view, options parser and repr, with a round-trip
// oracle: whatever parses must emit, parse back to the same Repr and emit
// the same bytes again.
//
// Input: one control byte, then the segment. Control bit 0 selects the IPv6
// pseudo-header; bits 1..3 all set select ChecksumMode::Verify (1 input in
// 8), otherwise Ignore, so most inputs reach the options parser instead of
// stopping at the checksum.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "usnet/wire/tcp.hpp"

using namespace usnet::wire;

namespace {

const PseudoHeader kPh4 =
    PseudoHeader::v4(Ipv4Addr::from_octets(198, 18, 0, 1), Ipv4Addr::from_octets(198, 18, 0, 2));
const PseudoHeader kPh6 = [] {
  Ipv6Addr s, d;
  s.b = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  d.b = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  return PseudoHeader::v6(s, d);
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const PseudoHeader& ph = (control & 0x01) != 0 ? kPh6 : kPh4;
  const ChecksumMode mode = (control & 0x0e) == 0x0e ? ChecksumMode::Verify : ChecksumMode::Ignore;
  // A copy of exactly the segment's size, so ASan sees any overread.
  std::vector<std::byte> seg(size - 1);
  if (!seg.empty()) std::memcpy(seg.data(), data + 1, seg.size());

  auto view = TcpView::make(seg);
  if (!view) return 0;
  if (view->header_len() > seg.size() || view->options().size() > TcpView::kMaxOptionsLen) __builtin_trap();
  // The options parser alone, on the raw area, must agree with the repr.
  auto options = TcpOptions::parse(view->options());
  auto repr = TcpRepr::parse(*view, ph, mode);
  if (!repr) {
    if (mode == ChecksumMode::Ignore && options) __builtin_trap();  // only options can fail then
    return 0;
  }
  if (!options || !(*options == repr->options)) __builtin_trap();
  if (repr->payload_len != view->payload().size()) __builtin_trap();

  // Emit may refuse an option set the parser accepted but that does not fit
  // the canonical padded layout in 40 bytes (e.g. WS + SACK-perm + 4 SACK
  // blocks sent unpadded), and a segment too long for an IPv4 pseudo-header;
  // nothing else.
  const std::size_t header_len = repr->buffer_len();
  std::vector<std::byte> out(header_len + repr->payload_len);
  if (header_len <= TcpView::kMaxHeaderLen) {
    std::copy(view->payload().begin(), view->payload().end(),
              out.begin() + static_cast<std::ptrdiff_t>(header_len));
  }
  auto written = repr->emit(out, ph, mode);
  if (!written) {
    const bool too_long_for_v4 = &ph == &kPh4 && out.size() > 0xffff;
    if (too_long_for_v4 && written.error() == ParseError::BadLength) return 0;
    if (written.error() != ParseError::BadOption || header_len <= TcpView::kMaxHeaderLen) __builtin_trap();
    return 0;
  }
  if (*written != header_len) __builtin_trap();

  auto view2 = TcpView::make(out);
  if (!view2) __builtin_trap();
  auto repr2 = TcpRepr::parse(*view2, ph, mode);
  if (!repr2) __builtin_trap();
  // emit() does not write unknown options nor a window scale above 14.
  TcpRepr expected = *repr;
  expected.options.unknown_count = 0;
  expected.options.window_scale_over_limit = 0;
  if (!(*repr2 == expected)) __builtin_trap();
  if (!std::equal(view2->payload().begin(), view2->payload().end(), view->payload().begin(),
                  view->payload().end())) {
    __builtin_trap();
  }

  // Emitting the re-parsed repr gives the same bytes: the layout is canonical.
  std::vector<std::byte> out2(out.size());
  std::copy(view2->payload().begin(), view2->payload().end(),
            out2.begin() + static_cast<std::ptrdiff_t>(header_len));
  auto written2 = repr2->emit(out2, ph, mode);
  if (!written2 || out2 != out) __builtin_trap();
  return 0;
}
