// Fuzz ArpView::make / ArpRepr::parse with a round-trip oracle. The fixed
// fields are implied by the checks make() passed, so re-emitting a parsed
// packet must give the first 28 input bytes exactly.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "usnet/wire/arp.hpp"

using namespace usnet::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  auto view = ArpView::make(input);
  if (!view) {
    if (size >= ArpView::kLen && view.error() == ParseError::Truncated) __builtin_trap();
    return 0;
  }
  if (view->bytes().size() != ArpView::kLen) __builtin_trap();
  auto repr = ArpRepr::parse(*view);
  if (!repr) __builtin_trap();

  std::byte out[ArpView::kLen];
  auto n = repr->emit(out);
  if (!n || *n != ArpView::kLen) __builtin_trap();
  if (std::memcmp(out, input.data(), ArpView::kLen) != 0) __builtin_trap();

  auto view2 = ArpView::make(out);
  if (!view2) __builtin_trap();
  auto repr2 = ArpRepr::parse(*view2);
  if (!repr2 || !(*repr2 == *repr)) __builtin_trap();
  return 0;
}
