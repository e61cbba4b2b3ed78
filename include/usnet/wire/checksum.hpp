// The internet checksum (RFC 1071), its incremental update (RFC 1624) and the
// pseudo-headers that UDP, TCP and ICMPv6 cover (RFC 768, RFC 9293 3.1,
// RFC 8200 8.1).
//
// Sums are kept as "big-endian numeric" one's-complement values: the sum you
// would get by reading the data as 16-bit network-order words. That makes the
// result directly comparable with header fields read by load_be16().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "usnet/wire/addr.hpp"

namespace usnet::wire {

// One's-complement sum of `data` as 16-bit big-endian words (a trailing odd
// byte is padded with zero on the right), folded to 16 bits. Processes 32
// bytes per loop iteration with 64-bit additions.
std::uint16_t ones_sum(std::span<const std::byte> data) noexcept;

// The straightforward RFC 1071 loop, one 16-bit word at a time. Kept as the
// reference that tests and benchmarks compare ones_sum() against.
std::uint16_t ones_sum_naive(std::span<const std::byte> data) noexcept;

// One's-complement addition of two folded sums.
constexpr std::uint16_t ones_add(std::uint16_t a, std::uint16_t b) noexcept {
  std::uint32_t s = std::uint32_t{a} + b;
  return static_cast<std::uint16_t>((s & 0xffff) + (s >> 16));
}

// Folds a 32-bit sum of 16-bit words to a one's-complement 16-bit sum.
constexpr std::uint16_t ones_fold32(std::uint32_t s) noexcept {
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(s);
}

// Accumulates a checksum over several pieces of data. Pieces of odd length
// are handled: the next piece continues at the right byte position.
class Checksum {
 public:
  Checksum& add(std::span<const std::byte> data) noexcept;
  Checksum& add_u16(std::uint16_t v) noexcept;
  Checksum& add_u32(std::uint32_t v) noexcept;
  Checksum& add_sum(std::uint16_t folded_sum) noexcept;  // must be at an even position
  std::uint16_t sum() const noexcept { return sum_; }
  // The value to store in a checksum field: the complement of the sum.
  std::uint16_t finish() const noexcept { return static_cast<std::uint16_t>(~sum_); }

 private:
  std::uint16_t sum_ = 0;
  bool odd_ = false;
};

// Checksum field value for `data` (complement of ones_sum). Verifying data
// that contains its own correct checksum field gives 0.
inline std::uint16_t internet_checksum(std::span<const std::byte> data) noexcept {
  return static_cast<std::uint16_t>(~ones_sum(data));
}

// RFC 1624 eqn. 3: the new checksum field after one 16-bit word of the
// covered data changes from `old_word` to `new_word`.
constexpr std::uint16_t checksum_update16(std::uint16_t old_check, std::uint16_t old_word,
                                          std::uint16_t new_word) noexcept {
  std::uint16_t s = ones_add(static_cast<std::uint16_t>(~old_check), static_cast<std::uint16_t>(~old_word));
  s = ones_add(s, new_word);
  return static_cast<std::uint16_t>(~s);
}

// The same for a 32-bit field (an IPv4 address, a sequence number).
constexpr std::uint16_t checksum_update32(std::uint16_t old_check, std::uint32_t old_value,
                                          std::uint32_t new_value) noexcept {
  std::uint16_t c = checksum_update16(old_check, static_cast<std::uint16_t>(old_value >> 16),
                                      static_cast<std::uint16_t>(new_value >> 16));
  return checksum_update16(c, static_cast<std::uint16_t>(old_value & 0xffff),
                           static_cast<std::uint16_t>(new_value & 0xffff));
}

// Folded sums of the pseudo-headers. `length` is the upper-layer length
// (header plus payload). The IPv4 one is inline: every received TCP or UDP
// segment needs it. Six 16-bit words: at most 6 * 0xffff, no 32-bit overflow.
constexpr std::uint16_t pseudo_header_sum_v4(Ipv4Addr src, Ipv4Addr dst, std::uint8_t protocol,
                                             std::uint16_t length) noexcept {
  return ones_fold32((src.v >> 16) + (src.v & 0xffff) + (dst.v >> 16) + (dst.v & 0xffff) + protocol + length);
}
std::uint16_t pseudo_header_sum_v6(const Ipv6Addr& src, const Ipv6Addr& dst, std::uint8_t next_header,
                                   std::uint32_t length) noexcept;

}  // namespace usnet::wire
