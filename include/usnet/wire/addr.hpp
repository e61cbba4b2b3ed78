// Link and network addresses as small value types.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "usnet/util/bytes.hpp"

namespace usnet::wire {

struct MacAddr {
  std::array<std::uint8_t, 6> b{};

  static constexpr MacAddr broadcast() { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  // Inline: these run on every frame, and an out-of-line call returning the
  // array costs more than the 6-byte copy itself.
  static MacAddr read(const std::byte* p) noexcept {
    MacAddr m;
    std::memcpy(m.b.data(), p, m.b.size());
    return m;
  }
  void write(std::byte* p) const noexcept { std::memcpy(p, b.data(), b.size()); }
  bool is_broadcast() const noexcept { return *this == broadcast(); }
  bool is_multicast() const noexcept { return (b[0] & 0x01) != 0; }
  bool is_unicast() const noexcept { return !is_multicast(); }
  std::string to_string() const;  // "02:00:00:00:00:01"
  static std::optional<MacAddr> parse(std::string_view s);
  friend auto operator<=>(const MacAddr&, const MacAddr&) = default;
};

// IPv4 address, held as a host-order integer (198.18.0.1 == 0xc6120001).
struct Ipv4Addr {
  std::uint32_t v = 0;

  static constexpr Ipv4Addr from_octets(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return {(std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) | d};
  }
  static Ipv4Addr read(const std::byte* p) noexcept { return {load_be32(p)}; }
  void write(std::byte* p) const noexcept { store_be32(p, v); }
  bool is_unspecified() const noexcept { return v == 0; }
  bool is_broadcast() const noexcept { return v == 0xffffffffu; }
  bool is_multicast() const noexcept { return (v >> 28) == 0xe; }
  bool is_loopback() const noexcept { return (v >> 24) == 127; }
  std::string to_string() const;  // dotted quad
  static std::optional<Ipv4Addr> parse(std::string_view s);
  friend auto operator<=>(const Ipv4Addr&, const Ipv4Addr&) = default;
};

struct Ipv6Addr {
  std::array<std::uint8_t, 16> b{};

  static Ipv6Addr read(const std::byte* p) noexcept {
    Ipv6Addr a;
    std::memcpy(a.b.data(), p, a.b.size());
    return a;
  }
  void write(std::byte* p) const noexcept { std::memcpy(p, b.data(), b.size()); }
  bool is_unspecified() const noexcept { return *this == Ipv6Addr{}; }
  bool is_multicast() const noexcept { return b[0] == 0xff; }
  bool is_link_local() const noexcept { return b[0] == 0xfe && (b[1] & 0xc0) == 0x80; }
  // Solicited-node multicast address ff02::1:ffXX:XXXX for this address (RFC 4291 2.7.1).
  Ipv6Addr solicited_node() const noexcept;
  std::string to_string() const;  // RFC 5952 text form
  static std::optional<Ipv6Addr> parse(std::string_view s);
  friend auto operator<=>(const Ipv6Addr&, const Ipv6Addr&) = default;
};

}  // namespace usnet::wire
