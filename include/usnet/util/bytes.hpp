// Alignment-safe big-endian access to packet bytes. Packet bytes are never
// reinterpreted as structs: every field is read and written through memcpy,
// which compiles to a plain load or store plus a byte swap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace usnet {

using ByteSpan = std::span<const std::byte>;
using MutByteSpan = std::span<std::byte>;

inline std::uint8_t load_u8(const std::byte* p) noexcept { return std::to_integer<std::uint8_t>(*p); }

inline std::uint16_t load_be16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap16(v);
}

inline std::uint32_t load_be32(const std::byte* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap32(v);
}

inline std::uint64_t load_be64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap64(v);
}

inline void store_u8(std::byte* p, std::uint8_t v) noexcept { *p = std::byte{v}; }

inline void store_be16(std::byte* p, std::uint16_t v) noexcept {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, sizeof v);
}

inline void store_be32(std::byte* p, std::uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, sizeof v);
}

inline void store_be64(std::byte* p, std::uint64_t v) noexcept {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, sizeof v);
}

// Little-endian helpers, for file formats such as pcap that are written in
// the host's order on the machines we run on.
inline void store_le16(std::byte* p, std::uint16_t v) noexcept { std::memcpy(p, &v, sizeof v); }
inline void store_le32(std::byte* p, std::uint32_t v) noexcept { std::memcpy(p, &v, sizeof v); }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "usnet assumes a little-endian host");

}  // namespace usnet
