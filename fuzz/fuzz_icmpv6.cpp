// Fuzz Icmpv6View::make / Icmpv6Repr::parse (NDP options included) with a
// round-trip oracle. The first input byte picks the mode: odd = verify the
// checksum (over a fixed pseudo-header, 2001:db8::1 -> 2001:db8::2), even =
// ignore it so random bytes reach the message and option parsers. The rest
// is the ICMPv6 message. A parsed message is re-emitted with a computed
// checksum and must parse, verified, to the same Repr; the fixed part keeps
// exactly the bits its type defines (a reserved router preference becomes
// medium), and NDP options never grow.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "usnet/wire/icmpv6.hpp"

using namespace usnet::wire;

namespace {

std::array<std::byte, 65536> g_out;

const Ipv6Addr kSrc{{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
const Ipv6Addr kDst{{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}};

// RFC 4191 2.2: the reserved router preference 10 (bits 0x00100000 of bytes
// 4..8) is read, and so re-sent, as 00.
constexpr std::uint32_t kRaPrefBits = 0x00180000u, kRaPrefReserved = 0x00100000u;

// The bits of bytes 4..8 that a message of this type carries.
std::uint32_t defined_bits(Icmpv6Type type) {
  switch (type) {
    case Icmpv6Type::DestUnreachable:
    case Icmpv6Type::TimeExceeded:
    case Icmpv6Type::RouterSolicit:
    case Icmpv6Type::NeighborSolicit:
    case Icmpv6Type::Redirect:
      return 0;
    case Icmpv6Type::RouterAdvert:
      return 0xffd8ffffu;  // hop limit, M, O, Prf, router lifetime
    case Icmpv6Type::NeighborAdvert:
      return 0xe0000000u;  // R, S, O
    default:
      return 0xffffffffu;  // echo, packet too big, parameter problem, unknown types
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const ChecksumMode mode = (data[0] & 1) != 0 ? ChecksumMode::Verify : ChecksumMode::Ignore;
  const auto input = std::as_bytes(std::span(data + 1, size - 1));
  auto view = Icmpv6View::make(input);
  if (!view) return 0;
  if (input.size() < Icmpv6View::fixed_len(view->type())) __builtin_trap();
  auto repr = Icmpv6Repr::parse(*view, kSrc, kDst, mode);
  if (!repr) {
    if (repr.error() == ParseError::BadChecksum &&
        (mode != ChecksumMode::Verify || view->checksum_ok(kSrc, kDst))) {
      __builtin_trap();
    }
    return 0;
  }
  if (mode == ChecksumMode::Verify) {
    auto unchecked = Icmpv6Repr::parse(*view, kSrc, kDst, ChecksumMode::Ignore);
    if (!unchecked || !(*unchecked == *repr)) __builtin_trap();
  }

  const bool ndp = is_ndp_message(repr->type);
  const std::size_t total = repr->total_len();
  if (ndp ? total > input.size() : total != input.size()) __builtin_trap();
  const std::span<std::byte> out(g_out.data(), total);
  if (!ndp && input.size() > Icmpv6View::kHeaderLen) {
    std::memcpy(out.data() + Icmpv6View::kHeaderLen, view->data().data(), view->data().size());
  }
  auto n = repr->emit(out, kSrc, kDst, ChecksumMode::Verify);
  if (!n || *n != repr->buffer_len()) __builtin_trap();

  if (std::memcmp(out.data(), input.data(), Icmpv6View::Off::kChecksum) != 0) __builtin_trap();
  std::uint32_t expected_word = view->rest_of_header() & defined_bits(repr->type);
  if (repr->type == Icmpv6Type::RouterAdvert && (expected_word & kRaPrefBits) == kRaPrefReserved) {
    expected_word &= ~kRaPrefBits;
  }
  if (usnet::load_be32(out.data() + Icmpv6View::Off::kRestOfHeader) != expected_word) {
    __builtin_trap();
  }
  // The rest of an NDP fixed part (RA timers, targets) is all defined bits.
  const std::size_t fixed = Icmpv6View::fixed_len(repr->type);
  if (ndp && std::memcmp(out.data() + Icmpv6View::kHeaderLen, input.data() + Icmpv6View::kHeaderLen,
                         fixed - Icmpv6View::kHeaderLen) != 0) {
    __builtin_trap();
  }

  auto view2 = Icmpv6View::make(out);
  if (!view2 || !view2->checksum_ok(kSrc, kDst)) __builtin_trap();
  auto repr2 = Icmpv6Repr::parse(*view2, kSrc, kDst, ChecksumMode::Verify);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  return 0;
}
