#include "usnet/wire/checksum.hpp"

#include <cstring>

namespace usnet::wire {

namespace {

// Folds a 64-bit one's-complement accumulator to 16 bits.
inline std::uint16_t fold64(std::uint64_t s) noexcept {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(s);
}

inline std::uint64_t load64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Add with end-around carry: the one's-complement sum of 64-bit words.
inline std::uint64_t add_carry(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t s;
  bool carry = __builtin_add_overflow(a, b, &s);
  return s + carry;
}

}  // namespace

// The data is summed in host (little-endian) order; RFC 1071 2(B) shows the
// one's-complement sum is byte-order independent, so one byte swap of the
// folded result gives the big-endian sum.
std::uint16_t ones_sum(std::span<const std::byte> data) noexcept {
  const std::byte* p = data.data();
  std::size_t n = data.size();
  // Four independent accumulators let the CPU run the adds in parallel.
  std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  while (n >= 32) {
    a0 = add_carry(a0, load64(p));
    a1 = add_carry(a1, load64(p + 8));
    a2 = add_carry(a2, load64(p + 16));
    a3 = add_carry(a3, load64(p + 24));
    p += 32;
    n -= 32;
  }
  std::uint64_t acc = add_carry(add_carry(a0, a1), add_carry(a2, a3));
  while (n >= 8) {
    acc = add_carry(acc, load64(p));
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t tail = 0;
    std::memcpy(&tail, p, n);  // zero padding on the right, as RFC 1071 says
    acc = add_carry(acc, tail);
  }
  return __builtin_bswap16(fold64(acc));
}

std::uint16_t ones_sum_naive(std::span<const std::byte> data) noexcept {
  std::uint32_t sum = 0;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) {
    sum += (std::to_integer<std::uint32_t>(data[i]) << 8) | std::to_integer<std::uint32_t>(data[i + 1]);
  }
  if (i < data.size()) sum += std::to_integer<std::uint32_t>(data[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

Checksum& Checksum::add(std::span<const std::byte> data) noexcept {
  if (data.empty()) return *this;
  std::uint16_t s = ones_sum(data);
  // A piece that starts at an odd position has its bytes in the other halves
  // of the 16-bit words: its sum is byte-swapped.
  if (odd_) s = __builtin_bswap16(s);
  sum_ = ones_add(sum_, s);
  odd_ = odd_ != ((data.size() & 1) != 0);
  return *this;
}

Checksum& Checksum::add_u16(std::uint16_t v) noexcept {
  sum_ = ones_add(sum_, odd_ ? __builtin_bswap16(v) : v);
  return *this;
}

Checksum& Checksum::add_u32(std::uint32_t v) noexcept {
  add_u16(static_cast<std::uint16_t>(v >> 16));
  return add_u16(static_cast<std::uint16_t>(v & 0xffff));
}

Checksum& Checksum::add_sum(std::uint16_t folded_sum) noexcept { return add_u16(folded_sum); }

std::uint16_t pseudo_header_sum_v4(Ipv4Addr src, Ipv4Addr dst, std::uint8_t protocol,
                                   std::uint16_t length) noexcept {
  std::uint64_t s =
      std::uint64_t{src.v >> 16} + (src.v & 0xffff) + (dst.v >> 16) + (dst.v & 0xffff) + protocol + length;
  return fold64(s);
}

std::uint16_t pseudo_header_sum_v6(const Ipv6Addr& src, const Ipv6Addr& dst, std::uint8_t next_header,
                                   std::uint32_t length) noexcept {
  std::byte buf[40];
  src.write(buf);
  dst.write(buf + 16);
  store_be32(buf + 32, length);
  buf[36] = buf[37] = buf[38] = std::byte{0};
  buf[39] = std::byte{next_header};
  return ones_sum(buf);
}

}  // namespace usnet::wire
