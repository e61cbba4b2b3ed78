// The IPv4 routing table: connected routes (one per interface address, from
// its prefix), static routes (prefix via gateway) and a default gateway.
// Lookup is longest-prefix match (RFC 1812 5.2.4.3); among equal prefixes a
// connected route wins over a static one. Linear in the number of routes: a
// user-space host stack has a handful, and a table that size beats a trie.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

#include "usnet/wire/addr.hpp"

namespace usnet::net {

struct Ipv4Prefix {
  wire::Ipv4Addr addr;   // host bits are cleared on insert
  std::uint8_t len = 0;  // 0..32

  std::uint32_t mask() const noexcept { return len == 0 ? 0 : ~std::uint32_t{0} << (32 - len); }
  bool contains(wire::Ipv4Addr a) const noexcept { return (a.v & mask()) == (addr.v & mask()); }
  friend bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

struct Route {
  Ipv4Prefix prefix;
  wire::Ipv4Addr gateway;  // 0: connected (the destination is on the link)
  wire::Ipv4Addr source;   // preferred source address; 0: the interface's first
  bool connected = false;
};

// Where a packet to a destination goes.
struct NextHop {
  wire::Ipv4Addr next_hop;  // the destination itself on a connected route, else the gateway
  wire::Ipv4Addr source;    // the source address to send from
  const Route* route = nullptr;
};

class RouteTable {
 public:
  static constexpr std::size_t kMaxRoutes = 256;

  // A connected route for addr/len with addr as its source. EINVAL for len > 32,
  // ENOSPC when full.
  std::error_code add_connected(wire::Ipv4Addr addr, std::uint8_t len);
  // prefix via gateway. EINVAL for len > 32 or a zero gateway, EEXIST for a
  // prefix already routed (static), ENOSPC when full. The gateway must be
  // reachable through a connected route when a packet is sent (checked then,
  // so routes may be added before addresses).
  std::error_code add_static(Ipv4Prefix prefix, wire::Ipv4Addr gateway);
  std::error_code set_default_gateway(wire::Ipv4Addr gateway) { return add_static({{0}, 0}, gateway); }
  // ENOENT if no such static route.
  std::error_code remove_static(Ipv4Prefix prefix);
  void remove_connected(wire::Ipv4Addr addr, std::uint8_t len);

  // Longest-prefix match; a gateway is itself resolved through a connected
  // route (one level, no recursion). nullopt: no route (ENETUNREACH).
  std::optional<NextHop> lookup(wire::Ipv4Addr dst) const noexcept;

  const std::vector<Route>& routes() const noexcept { return routes_; }

 private:
  const Route* longest_match(wire::Ipv4Addr dst, bool connected_only) const noexcept;
  std::vector<Route> routes_;
};

}  // namespace usnet::net
