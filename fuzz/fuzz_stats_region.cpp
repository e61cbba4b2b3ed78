// parse_stats() reads a region another process wrote: untrusted input.
// Oracle: whatever it accepts has a text no longer than the input allows,
// made of printable ASCII and '\n' only, and a name of at most 20
// printable characters; stats_values() on it returns non-empty keys
// without spaces and values without newlines. Seeds: regions written by
// StatsWriter (an empty text; counters and a connection).
#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/stats.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  std::string why;
  auto s = usnet::parse_stats(bytes, &why);
  if (!s) {
    if (s.error() == std::errc::invalid_argument && why.empty()) __builtin_trap();  // a refusal says why
    return 0;
  }
  if (size < usnet::kStatsHeaderBytes || s->text.size() > size - usnet::kStatsHeaderBytes) __builtin_trap();
  for (char c : s->text) {
    if (c != '\n' && (c < 0x20 || c >= 0x7f)) __builtin_trap();
  }
  if (s->name.size() > 20) __builtin_trap();
  for (char c : s->name) {
    if (c < 0x20 || c >= 0x7f) __builtin_trap();
  }
  for (const auto& [key, value] : usnet::stats_values(*s)) {
    if (key.empty() || key.find(' ') != std::string::npos || key.find('\n') != std::string::npos ||
        value.find('\n') != std::string::npos)
      __builtin_trap();
  }
  return 0;
}
