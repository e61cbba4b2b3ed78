// Fuzz Ipv6View::make / Ipv6Repr::parse and walk_extension_headers.
// Oracles: the fixed header is fully represented, so re-emitting it gives the
// input's 40 bytes exactly and parses to the same Repr; a successful walk
// stays inside the payload, succeeds again with a bound of exactly its header
// count and fails with TooManyExtHeaders with one less.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "usnet/wire/ipv6.hpp"

using namespace usnet::wire;

namespace {

std::array<std::byte, Ipv6View::kHeaderLen> g_out;

void check_walk(const Ipv6View& view) {
  const auto payload = view.payload();
  auto walk = walk_extension_headers(view);
  if (!walk) {
    switch (walk.error()) {
      case ParseError::Truncated:
      case ParseError::TooManyExtHeaders:
      case ParseError::BadExtHeader:
      case ParseError::BadOptionLength:
        return;
      default:
        __builtin_trap();  // no other reason is possible
    }
  }
  if (walk->upper_offset > payload.size() || walk->header_count > 8) __builtin_trap();
  if (walk->header_count == 0 && (walk->upper_offset != 0 || walk->upper_protocol != view.next_header())) {
    __builtin_trap();
  }
  if (walk->fragment) {
    const auto& f = *walk->fragment;
    if (f.header_offset + Ipv6FragmentInfo::kLen > walk->upper_offset) __builtin_trap();
    if (usnet::load_be32(payload.data() + f.header_offset + 4) != f.identification) __builtin_trap();
    if (usnet::load_u8(payload.data() + f.header_offset) != f.next_header) __builtin_trap();
    if (f.offset != 0 && walk->upper_offset != f.header_offset + Ipv6FragmentInfo::kLen) __builtin_trap();
  }
  if (walk->first_unknown_option) {
    const auto& o = *walk->first_unknown_option;
    if (o.payload_offset >= walk->upper_offset) __builtin_trap();
    if (usnet::load_u8(payload.data() + o.payload_offset) != o.type) __builtin_trap();
    if (o.action() == Ipv6OptionAction::Skip || walk->unknown_option_count == 0) __builtin_trap();
  }
  auto exact = walk_extension_headers(view, walk->header_count);
  if (!exact || !(*exact == *walk)) __builtin_trap();
  if (walk->header_count > 0) {
    auto short_bound = walk_extension_headers(view, walk->header_count - 1);
    if (short_bound || short_bound.error() != ParseError::TooManyExtHeaders) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  auto view = Ipv6View::make(input);
  if (!view) return 0;
  if (view->bytes().size() != Ipv6View::kHeaderLen + view->payload_len() || view->version() != 6) {
    __builtin_trap();
  }
  auto repr = Ipv6Repr::parse(*view);
  if (!repr) __builtin_trap();
  auto n = repr->emit(g_out);
  if (!n || *n != Ipv6View::kHeaderLen) __builtin_trap();
  if (std::memcmp(g_out.data(), input.data(), Ipv6View::kHeaderLen) != 0) __builtin_trap();
  check_walk(*view);
  return 0;
}
