// Fuzz Icmpv4View::make / Icmpv4Repr::parse with a round-trip oracle. The
// input is parsed without checksum verification, re-emitted with its data and
// a computed checksum, and parsed again with verification: the Repr and the
// data must survive, and the type-specific word must come back with exactly
// the bits the type defines (unused bits are written as zero).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "usnet/wire/icmpv4.hpp"

using namespace usnet::wire;

namespace {

std::array<std::byte, 65536> g_out;

// The bits of bytes 4..8 that a message of this type and code carries.
std::uint32_t defined_bits(Icmpv4Type type, std::uint8_t code) {
  switch (type) {
    case Icmpv4Type::EchoRequest:
    case Icmpv4Type::EchoReply:
      return 0xffffffffu;
    case Icmpv4Type::DestUnreachable:
      return code == Icmpv4UnreachCode::kFragNeeded ? 0x0000ffffu : 0;
    case Icmpv4Type::TimeExceeded:
      return 0;
    case Icmpv4Type::ParamProblem:
      return 0xff000000u;
    default:
      return 0xffffffffu;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  auto view = Icmpv4View::make(input);
  if (!view) return 0;
  if (view->bytes().size() != input.size()) __builtin_trap();
  auto verified = Icmpv4Repr::parse(*view, ChecksumMode::Verify);
  if (verified.has_value() != view->checksum_ok()) __builtin_trap();
  auto repr = Icmpv4Repr::parse(*view, ChecksumMode::Ignore);
  if (!repr) __builtin_trap();
  if (verified && !(*verified == *repr)) __builtin_trap();
  if (repr->total_len() != input.size()) __builtin_trap();

  const std::span<std::byte> out(g_out.data(), repr->total_len());
  const auto payload = view->data();
  if (!payload.empty()) std::memcpy(out.data() + Icmpv4View::kHeaderLen, payload.data(), payload.size());
  auto n = repr->emit(out, ChecksumMode::Verify);
  if (!n || *n != Icmpv4View::kHeaderLen) __builtin_trap();

  if (std::memcmp(out.data(), input.data(), Icmpv4View::Off::kChecksum) != 0) __builtin_trap();
  const std::uint32_t mask = defined_bits(view->type(), view->code());
  if (usnet::load_be32(out.data() + Icmpv4View::Off::kRestOfHeader) != (view->rest_of_header() & mask)) {
    __builtin_trap();
  }

  auto view2 = Icmpv4View::make(out);
  if (!view2 || !view2->checksum_ok()) __builtin_trap();
  auto repr2 = Icmpv4Repr::parse(*view2, ChecksumMode::Verify);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  if (view2->data().size() != payload.size()) __builtin_trap();
  return 0;
}
