// AF_XDP coexistence: usnet and the kernel's own stack share one interface
// (one MAC address). The interface's kernel side holds 198.18.0.3/24 and
// serves a TCP port (socat) and its own ping; usnet, on the same interface
// through AF_XDP, holds 198.18.0.1/24 and serves UDP echo on port 7. From the
// peer namespace (198.18.0.2) both answer at once: the XDP program sends
// usnet only its own traffic and passes the rest to the kernel.
// Every command is bounded in time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <regex>
#include <string>
#include <thread>

#include "interop/link_kind.hpp"
#include "interop/netns.hpp"

#ifndef USNET_CLI
#error "USNET_CLI must name the usnet binary"
#endif

namespace usnet::test {
namespace {

const std::string kCli = USNET_CLI;

TEST(AfXdpCoexistence, KernelAndUsnetAnswerOnTheSameInterface) {
  ASSERT_EQ(interop_blocker({"socat", "ping", "ethtool"}), "");
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  ASSERT_EQ(prepare_af_xdp_peer(*ns), "");
  const std::string ifname = ns->usnet_if();
  // The kernel's own address on the interface usnet will share (the veth
  // and the address go when the namespace's veth pair is deleted).
  auto r = sh("ip addr add 198.18.0.3/24 dev " + ifname);
  ASSERT_EQ(r.status, 0) << r.output;
  auto kernel_tcp = std::async(std::launch::async, [] {
    return sh("timeout 12 socat TCP4-LISTEN:8080,bind=198.18.0.3,reuseaddr,fork SYSTEM:'echo kernel-tcp-ok'",
              15);
  });
  auto server = std::async(std::launch::async, [&] {
    return sh(kCli + " udp-server --link af_xdp:" + ifname + " --addr 198.18.0.1/24 --duration 10", 20);
  });
  // usnet is up once it answers a ping (bounded: 20 tries of 1 s at most).
  ASSERT_EQ(ns->wait_for_answer(), "");

  // Both answer ping and ARP, on one MAC address.
  auto ping_usnet = ns->exec("ping -c 20 -i 0.01 -W 2 198.18.0.1", 15);
  EXPECT_NE(ping_usnet.output.find("20 received, 0% packet loss"), std::string::npos)
      << ping_usnet.output << "\n(diagnostics) " << sh("ip -d link show " + ifname).output
      << ns->exec("ethtool -k " + ns->peer_if() + " | grep -E 'segmentation|checksumming'; ip neigh").output;
  auto ping_kernel = ns->exec("ping -c 20 -i 0.01 -W 2 198.18.0.3", 15);
  EXPECT_NE(ping_kernel.output.find("20 received, 0% packet loss"), std::string::npos) << ping_kernel.output;
  const std::string mac = sh("cat /sys/class/net/" + ifname + "/address").output.substr(0, 17);
  EXPECT_NE(ns->exec("ip neigh show 198.18.0.1").output.find(mac), std::string::npos);
  EXPECT_NE(ns->exec("ip neigh show 198.18.0.3").output.find(mac), std::string::npos);

  // The kernel's TCP service works while usnet serves UDP, alternating.
  for (int i = 0; i < 3; ++i) {
    auto tcp = ns->exec("socat -T 3 - TCP4:198.18.0.3:8080,connect-timeout=3 < /dev/null", 8);
    EXPECT_EQ(tcp.output, "kernel-tcp-ok\n") << tcp.output;
    auto udp = ns->exec(
        "head -c 8000 /dev/urandom > /tmp/usnet-coexist-$$ && socat -T 3 -t 3 UDP4:198.18.0.1:7 - "
        "< /tmp/usnet-coexist-$$ | cmp - /tmp/usnet-coexist-$$ && echo udp-same; "
        "rm -f /tmp/usnet-coexist-$$",
        8);
    EXPECT_NE(udp.output.find("udp-same"), std::string::npos) << udp.output;
  }
  // A UDP port usnet does not serve is not its: the frame goes to the
  // kernel, which does not hold 198.18.0.1 and drops it; usnet never sees it.
  (void)ns->exec("echo x | socat -u - UDP4-SENDTO:198.18.0.1:9", 5);

  const auto out = server.get().output;
  EXPECT_NE(out.find("af_xdp: copy mode"), std::string::npos) << out;
  // usnet saw its traffic only: the kernel's TCP and ICMP went past it.
  EXPECT_GT(counter(out, "frames steered to usnet"), 0u) << out;
  EXPECT_GT(counter(out, "frames passed to the kernel"), 20u) << out;
  EXPECT_EQ(counter(out, "dropped: no socket on port"), 0u) << out;
  EXPECT_EQ(counter(out, "dropped: bad checksum"), 0u) << out;
  (void)kernel_tcp.get();
}

}  // namespace
}  // namespace usnet::test
