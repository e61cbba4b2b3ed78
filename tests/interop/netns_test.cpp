// The test-host helper itself: namespaces are made with the address asked
// for, commands run inside them, and everything is gone afterwards.
#include "netns.hpp"

#include <gtest/gtest.h>

namespace usnet::test {
namespace {

TEST(PeerNamespace, VethPeerIsConfiguredAndRemovedAfterwards) {
  ASSERT_EQ(interop_blocker(), "");
  std::string ns, usnet_if;
  {
    auto p = PeerNamespace::with_veth("198.18.0.2/24", "2001:db8::2/64");
    ASSERT_TRUE(p) << p.error();
    ns = p->name();
    usnet_if = p->usnet_if();
    auto addr = p->exec("ip -o addr show dev " + p->peer_if());
    EXPECT_EQ(addr.status, 0) << addr.output;
    EXPECT_NE(addr.output.find("198.18.0.2/24"), std::string::npos) << addr.output;
    EXPECT_NE(addr.output.find("2001:db8::2/64"), std::string::npos) << addr.output;
    // No default route: nothing can leave the test network.
    auto routes = p->exec("ip route show default; ip -6 route show default");
    EXPECT_EQ(routes.output, "") << routes.output;
    // The usnet end is in the root namespace, up, without addresses.
    auto outer = sh("ip -o addr show dev " + usnet_if);
    EXPECT_EQ(outer.status, 0) << outer.output;
    EXPECT_EQ(outer.output.find("inet"), std::string::npos) << outer.output;
    EXPECT_NE(p->peer_mac(), wire::MacAddr{});
  }
  EXPECT_NE(sh("test -e /run/netns/" + ns).status, 0) << "namespace " << ns << " left behind";
  EXPECT_NE(sh("ip link show " + usnet_if).status, 0) << "veth end left behind";
}

TEST(PeerNamespace, RefusesAddressesOutsideTheTestRanges) {
  ASSERT_EQ(interop_blocker(), "");
  auto p = PeerNamespace::with_veth("10.0.0.2/24");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("198.18.0.0/15"), std::string::npos);
}

TEST(PeerNamespace, CommandsAreBoundedInTime) {
  ASSERT_EQ(interop_blocker(), "");
  auto r = sh("sleep 5", 1);
  EXPECT_EQ(r.status, 128 + 9);
}

}  // namespace
}  // namespace usnet::test
