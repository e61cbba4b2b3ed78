#include "usnet/wire/checksum.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Sum of the last n < 8 bytes as one little-endian word, zero-padded on the
// right as RFC 1071 says. Fixed-size loads: a variable-length memcpy here
// would cost more than the whole sum of a 20-byte header.
inline std::uint64_t load_tail(const std::byte* p, std::size_t n) noexcept {
  std::uint64_t t = 0;
  std::size_t k = 0;
  if (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    t = w;
    k = 4;
  }
  if (n - k >= 2) {
    std::uint16_t w;
    std::memcpy(&w, p + k, 2);
    t |= std::uint64_t{w} << (k * 8);
    k += 2;
  }
  if (n - k == 1) t |= std::uint64_t{std::to_integer<std::uint8_t>(p[k])} << (k * 8);
  return t;
}

// Portable kernel: 64-bit words with end-around carry, four independent
// accumulators so the adds run in parallel.
std::uint64_t sum_words_scalar(const std::byte* p, std::size_t n) noexcept {
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
  if (n > 0) acc = add_carry(acc, load_tail(p, n));
  return acc;
}

#if defined(__x86_64__)
// AVX2 kernel: 32-bit words widened into 64-bit lanes, so no carry can be
// lost for inputs below 16 GiB; 64 bytes per iteration.
__attribute__((target("avx2"))) std::uint64_t sum_words_avx2(const std::byte* p, std::size_t n) noexcept {
  const __m256i zero = _mm256_setzero_si256();
  __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
  while (n >= 64) {
    __m256i v0 = _mm256_loadu_si256(static_cast<const __m256i*>(static_cast<const void*>(p)));
    __m256i v1 = _mm256_loadu_si256(static_cast<const __m256i*>(static_cast<const void*>(p + 32)));
    s0 = _mm256_add_epi64(s0, _mm256_unpacklo_epi32(v0, zero));
    s1 = _mm256_add_epi64(s1, _mm256_unpackhi_epi32(v0, zero));
    s2 = _mm256_add_epi64(s2, _mm256_unpacklo_epi32(v1, zero));
    s3 = _mm256_add_epi64(s3, _mm256_unpackhi_epi32(v1, zero));
    p += 64;
    n -= 64;
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(static_cast<__m256i*>(static_cast<void*>(lanes)), s);
  std::uint64_t acc = add_carry(add_carry(lanes[0], lanes[1]), add_carry(lanes[2], lanes[3]));
  return add_carry(acc, sum_words_scalar(p, n));
}

const bool g_have_avx2 = __builtin_cpu_supports("avx2");
#endif

}  // namespace

// The data is summed in host (little-endian) order; RFC 1071 2(B) shows the
// one's-complement sum is byte-order independent, so one byte swap of the
// folded result gives the big-endian sum.
std::uint16_t ones_sum(std::span<const std::byte> data) noexcept {
  if (data.size() < 64) {
    // Headers and short segments: one accumulator, no set-up or merging of
    // the four the long loop uses.
    const std::byte* p = data.data();
    std::size_t n = data.size();
    std::uint64_t acc = 0;
    for (; n >= 8; p += 8, n -= 8) acc = add_carry(acc, load64(p));
    if (n > 0) acc = add_carry(acc, load_tail(p, n));
    return __builtin_bswap16(fold64(acc));
  }
  std::uint64_t acc;
#if defined(__x86_64__)
  if (data.size() >= 128 && g_have_avx2) {
    acc = sum_words_avx2(data.data(), data.size());
  } else {
    acc = sum_words_scalar(data.data(), data.size());
  }
#else
  acc = sum_words_scalar(data.data(), data.size());
#endif
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
