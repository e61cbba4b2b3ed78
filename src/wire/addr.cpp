#include "usnet/wire/addr.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace usnet::wire {

std::string MacAddr::to_string() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return buf;
}

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<MacAddr> MacAddr::parse(std::string_view s) {
  if (s.size() != 17) return std::nullopt;
  MacAddr m;
  for (std::size_t i = 0; i < 6; ++i) {
    int hi = hex_digit(s[i * 3]);
    int lo = hex_digit(s[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && s[i * 3 + 2] != ':') return std::nullopt;
    m.b[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return m;
}

std::string Ipv4Addr::to_string() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  return buf;
}

std::optional<Ipv4Addr> Ipv4Addr::parse(std::string_view s) {
  if (s.size() >= INET_ADDRSTRLEN) return std::nullopt;
  char buf[INET_ADDRSTRLEN] = {};
  std::memcpy(buf, s.data(), s.size());
  in_addr a{};
  if (inet_pton(AF_INET, buf, &a) != 1) return std::nullopt;
  return Ipv4Addr{ntohl(a.s_addr)};
}

Ipv6Addr Ipv6Addr::solicited_node() const noexcept {
  Ipv6Addr m{{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0}};
  m.b[13] = b[13];
  m.b[14] = b[14];
  m.b[15] = b[15];
  return m;
}

std::string Ipv6Addr::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, b.data(), buf, sizeof buf) == nullptr) return "?";
  return buf;
}

std::optional<Ipv6Addr> Ipv6Addr::parse(std::string_view s) {
  if (s.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, s.data(), s.size());
  Ipv6Addr a;
  if (inet_pton(AF_INET6, buf, a.b.data()) != 1) return std::nullopt;
  return a;
}

}  // namespace usnet::wire
