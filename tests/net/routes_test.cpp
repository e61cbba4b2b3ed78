#include "usnet/net/routes.hpp"

#include <gtest/gtest.h>

namespace usnet::net {
namespace {

using wire::Ipv4Addr;

Ipv4Addr ip(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return Ipv4Addr::from_octets(a, b, c, d);
}

TEST(Routes, ConnectedRouteSendsDirectFromItsAddress) {
  RouteTable t;
  ASSERT_FALSE(t.add_connected(ip(198, 18, 0, 2), 24));
  auto h = t.lookup(ip(198, 18, 0, 77));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->next_hop, ip(198, 18, 0, 77));
  EXPECT_EQ(h->source, ip(198, 18, 0, 2));
  EXPECT_FALSE(t.lookup(ip(198, 19, 0, 1)));  // no default: ENETUNREACH for the caller
}

// RFC 1812 5.2.4.3: the longest matching prefix wins.
TEST(Routes, LongestPrefixMatchWins) {
  RouteTable t;
  ASSERT_FALSE(t.add_connected(ip(198, 18, 0, 2), 24));
  ASSERT_FALSE(t.add_connected(ip(198, 18, 1, 2), 24));
  ASSERT_FALSE(t.set_default_gateway(ip(198, 18, 0, 1)));
  ASSERT_FALSE(t.add_static({ip(198, 19, 0, 0), 16}, ip(198, 18, 1, 1)));
  ASSERT_FALSE(t.add_static({ip(198, 19, 7, 0), 24}, ip(198, 18, 0, 254)));

  auto a = t.lookup(ip(198, 19, 7, 9));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->next_hop, ip(198, 18, 0, 254));
  EXPECT_EQ(a->source, ip(198, 18, 0, 2));
  auto b = t.lookup(ip(198, 19, 8, 9));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->next_hop, ip(198, 18, 1, 1));
  EXPECT_EQ(b->source, ip(198, 18, 1, 2));  // the address on the gateway's network
  auto c = t.lookup(ip(203, 0, 113, 5));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->next_hop, ip(198, 18, 0, 1));
  auto d = t.lookup(ip(198, 18, 1, 40));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->next_hop, ip(198, 18, 1, 40));
}

TEST(Routes, GatewayMustBeOnAConnectedNetwork) {
  RouteTable t;
  ASSERT_FALSE(t.add_connected(ip(198, 18, 0, 2), 24));
  ASSERT_FALSE(t.set_default_gateway(ip(10, 0, 0, 1)));  // accepted now, unusable
  EXPECT_FALSE(t.lookup(ip(203, 0, 113, 5)));
}

TEST(Routes, AddRemoveAndErrors) {
  RouteTable t;
  EXPECT_EQ(t.add_connected(ip(198, 18, 0, 2), 33), std::errc::invalid_argument);
  EXPECT_EQ(t.add_static({ip(198, 19, 0, 0), 16}, Ipv4Addr{}), std::errc::invalid_argument);
  ASSERT_FALSE(t.add_connected(ip(198, 18, 0, 2), 24));
  ASSERT_FALSE(t.add_static({ip(198, 19, 0, 5), 16}, ip(198, 18, 0, 1)));  // host bits cleared
  EXPECT_EQ(t.add_static({ip(198, 19, 0, 0), 16}, ip(198, 18, 0, 9)), std::errc::file_exists);
  EXPECT_TRUE(t.lookup(ip(198, 19, 3, 3)));
  EXPECT_FALSE(t.remove_static({ip(198, 19, 0, 0), 16}));
  EXPECT_EQ(t.remove_static({ip(198, 19, 0, 0), 16}), std::errc::no_such_file_or_directory);
  EXPECT_FALSE(t.lookup(ip(198, 19, 3, 3)));
  t.remove_connected(ip(198, 18, 0, 2), 24);
  EXPECT_FALSE(t.lookup(ip(198, 18, 0, 1)));
  for (std::size_t i = 0; i < RouteTable::kMaxRoutes; ++i) {
    ASSERT_FALSE(t.add_connected(ip(10, 0, static_cast<std::uint8_t>(i), 1), 32));
  }
  EXPECT_EQ(t.add_connected(ip(11, 0, 0, 1), 32), std::errc::no_space_on_device);
}

TEST(Routes, HostRouteAndZeroPrefix) {
  RouteTable t;
  ASSERT_FALSE(t.add_connected(ip(198, 18, 0, 2), 32));
  EXPECT_TRUE(t.lookup(ip(198, 18, 0, 2)));
  EXPECT_FALSE(t.lookup(ip(198, 18, 0, 3)));
  Ipv4Prefix all{ip(1, 2, 3, 4), 0};
  EXPECT_EQ(all.mask(), 0u);
  EXPECT_TRUE(all.contains(ip(255, 255, 255, 255)));
}

}  // namespace
}  // namespace usnet::net
