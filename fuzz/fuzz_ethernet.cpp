// Fuzz EthernetView::make / EthernetRepr::parse with a round-trip oracle.
// Every header field is in the Repr, so re-emitting a parsed header must give
// the input's header bytes exactly, and parsing those must give the same Repr.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "usnet/wire/ethernet.hpp"

using namespace usnet::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  auto view = EthernetView::make(input);
  if (!view) {
    const ParseError e = view.error();
    if (e != ParseError::Truncated && e != ParseError::BadField) __builtin_trap();
    return 0;
  }
  if (view->header_len() + view->payload().size() != size) __builtin_trap();
  auto repr = EthernetRepr::parse(*view);
  if (!repr) __builtin_trap();

  std::vector<std::byte> out(repr->buffer_len());
  auto n = repr->emit(out);
  if (!n || *n != view->header_len()) __builtin_trap();
  if (std::memcmp(out.data(), input.data(), *n) != 0) __builtin_trap();

  auto view2 = EthernetView::make(out);
  if (!view2) __builtin_trap();
  auto repr2 = EthernetRepr::parse(*view2);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  return 0;
}
