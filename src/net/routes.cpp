#include "usnet/net/routes.hpp"

#include <algorithm>

namespace usnet::net {

namespace {
Ipv4Prefix normalised(Ipv4Prefix p) {
  p.addr.v &= p.mask();
  return p;
}
}  // namespace

std::error_code RouteTable::add_connected(wire::Ipv4Addr addr, std::uint8_t len) {
  if (len > 32) return std::make_error_code(std::errc::invalid_argument);
  if (routes_.size() >= kMaxRoutes) return std::make_error_code(std::errc::no_space_on_device);
  Route r;
  r.prefix = normalised({addr, len});
  r.source = addr;
  r.connected = true;
  routes_.push_back(r);
  return {};
}

std::error_code RouteTable::add_static(Ipv4Prefix prefix, wire::Ipv4Addr gateway) {
  if (prefix.len > 32 || gateway.is_unspecified()) return std::make_error_code(std::errc::invalid_argument);
  prefix = normalised(prefix);
  for (const auto& r : routes_) {
    if (!r.connected && r.prefix == prefix) return std::make_error_code(std::errc::file_exists);
  }
  if (routes_.size() >= kMaxRoutes) return std::make_error_code(std::errc::no_space_on_device);
  Route r;
  r.prefix = prefix;
  r.gateway = gateway;
  routes_.push_back(r);
  return {};
}

std::error_code RouteTable::remove_static(Ipv4Prefix prefix) {
  prefix = normalised(prefix);
  auto it = std::find_if(routes_.begin(), routes_.end(),
                         [&](const Route& r) { return !r.connected && r.prefix == prefix; });
  if (it == routes_.end()) return std::make_error_code(std::errc::no_such_file_or_directory);
  routes_.erase(it);
  return {};
}

void RouteTable::remove_connected(wire::Ipv4Addr addr, std::uint8_t len) {
  const Ipv4Prefix p = normalised({addr, len});
  std::erase_if(routes_, [&](const Route& r) { return r.connected && r.prefix == p && r.source == addr; });
}

const Route* RouteTable::longest_match(wire::Ipv4Addr dst, bool connected_only) const noexcept {
  const Route* best = nullptr;
  for (const auto& r : routes_) {
    if (connected_only && !r.connected) continue;
    if (!r.prefix.contains(dst)) continue;
    if (best == nullptr || r.prefix.len > best->prefix.len ||
        (r.prefix.len == best->prefix.len && r.connected && !best->connected)) {
      best = &r;
    }
  }
  return best;
}

std::optional<NextHop> RouteTable::lookup(wire::Ipv4Addr dst) const noexcept {
  const Route* r = longest_match(dst, false);
  if (r == nullptr) return std::nullopt;
  if (r->connected) return NextHop{dst, r->source, r};
  // RFC 1122 3.3.1.1: a gateway must be on a connected network.
  const Route* via = longest_match(r->gateway, true);
  if (via == nullptr) return std::nullopt;
  return NextHop{r->gateway, via->source, r};
}

}  // namespace usnet::net
