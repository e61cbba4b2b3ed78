// Fuzz Ipv4View::make / Ipv4Repr::parse with a round-trip oracle. The input
// is parsed without checksum verification (random bytes rarely carry a valid
// one), re-emitted with a computed checksum, and parsed again with
// verification: the Repr and the payload must survive. Options are not
// re-emitted, so Reprs are compared, not bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "usnet/wire/ipv4.hpp"

using namespace usnet::wire;

namespace {
std::array<std::byte, 65536> g_out;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  auto view = Ipv4View::make(input);
  if (!view) return 0;
  if (view->bytes().size() != view->total_len() || view->header_len() < Ipv4View::kMinHeaderLen ||
      view->header_len() > view->bytes().size()) {
    __builtin_trap();
  }
  auto verified = Ipv4Repr::parse(*view, ChecksumMode::Verify);
  if (verified.has_value() != view->checksum_ok()) __builtin_trap();
  auto repr = Ipv4Repr::parse(*view, ChecksumMode::Ignore);
  if (!repr) __builtin_trap();
  if (verified && !(*verified == *repr)) __builtin_trap();
  if (repr->is_fragment() != view->is_fragment()) __builtin_trap();

  const std::size_t total = Ipv4View::kMinHeaderLen + repr->payload_len;
  const std::span<std::byte> out(g_out.data(), total);
  auto n = repr->emit(out, ChecksumMode::Verify);
  if (!n || *n != Ipv4View::kMinHeaderLen) __builtin_trap();
  const auto payload = view->payload();
  if (!payload.empty()) std::memcpy(out.data() + *n, payload.data(), payload.size());

  // Without options and the reserved flag, the header is re-emitted byte for
  // byte apart from the checksum (0x0000 and 0xffff can both verify).
  if (view->header_len() == Ipv4View::kMinHeaderLen && !view->reserved_flag()) {
    if (std::memcmp(out.data(), input.data(), Ipv4View::Off::kChecksum) != 0 ||
        std::memcmp(out.data() + Ipv4View::Off::kSrc, input.data() + Ipv4View::Off::kSrc, 8) != 0) {
      __builtin_trap();
    }
  }

  auto view2 = Ipv4View::make(out);
  if (!view2 || !view2->checksum_ok() || view2->reserved_flag()) __builtin_trap();
  auto repr2 = Ipv4Repr::parse(*view2, ChecksumMode::Verify);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  if (view2->payload().size() != payload.size() ||
      (!payload.empty() && std::memcmp(view2->payload().data(), payload.data(), payload.size()) != 0)) {
    __builtin_trap();
  }
  return 0;
}
