// `usnet up` and `usnet ping` against the Linux kernel in a peer namespace,
// over TAP, AF_PACKET (veth) and AF_XDP (veth, XDP program steering usnet's
// traffic to its socket and the rest to the kernel): the kernel's ping reaches usnet (100
// echoes, none lost), usnet's ping reaches the kernel, each resolves the
// other's MAC by ARP, and the pcap of the run reads cleanly in tshark.
// Every command is bounded in time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <future>
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

using Kind = LinkKind;

class PingTool : public testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    ASSERT_EQ(interop_blocker({"ping", "tshark", "ethtool"}), "");
    auto ns = peer_for(GetParam());
    ASSERT_TRUE(ns) << ns.error();
    ns_.emplace(std::move(*ns));
    pcap_ = "/tmp/usnet-ping-" + std::to_string(::getpid()) + "-" + ns_->name() + ".pcap";
  }
  void TearDown() override { ::unlink(pcap_.c_str()); }

  std::string link_uri() const { return usnet::test::link_uri(GetParam(), *ns_); }
  // Runs the usnet command where it can reach its link: inside the
  // namespace for the TAP, in the root namespace for the veth end.
  CmdResult usnet(const std::string& args, int timeout_s) const {
    return run_usnet(GetParam(), *ns_, kCli, args, timeout_s);
  }

  std::optional<PeerNamespace> ns_;
  std::string pcap_;
};

TEST_P(PingTool, KernelPingReachesUsnetWithNoLoss) {
  auto up = std::async(std::launch::async, [this] {
    return usnet("up --link " + link_uri() + " --addr 198.18.0.1/24 --duration 8", 20);
  });
  // One warm-up echo lets ARP settle while usnet starts, then 100 counted.
  ASSERT_EQ(ns_->wait_for_answer(), "");
  const auto run = ns_->exec("ping -c 100 -i 0.01 -W 2 198.18.0.1", 20);
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("100 packets transmitted, 100 received, 0% packet loss"), std::string::npos)
      << run.output;
  // The kernel resolved usnet's address by ARP.
  const auto neigh = ns_->exec("ip neigh show 198.18.0.1");
  EXPECT_NE(neigh.output.find("lladdr"), std::string::npos) << neigh.output;
  const auto result = up.get();
  EXPECT_EQ(result.status, 0) << result.output;
  // The 100 counted echoes and at least the warm-up one were answered.
  const auto at = result.output.find(" icmp echo replies sent");
  ASSERT_NE(at, std::string::npos) << result.output;
  const auto line_start = result.output.rfind('\n', at) + 1;
  EXPECT_GE(std::stoi(result.output.substr(line_start, at - line_start)), 101) << result.output;
}

TEST_P(PingTool, UsnetPingReachesTheKernelAndThePcapIsClean) {
  const auto r = usnet("ping --link " + link_uri() + " --addr 198.18.0.1/24 -c 100 -i 0.01 -W 2 --pcap " +
                           pcap_ + " --stats 198.18.0.2",
                       30);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("100 packets transmitted, 100 received, 0% packet loss"), std::string::npos)
      << r.output;
  // usnet resolved the kernel's MAC by ARP (its request and the reply are in
  // the capture), and the capture has nothing malformed.
  const auto arp = sh("tshark -n -r " + pcap_ + " -Y arp 2>/dev/null");
  EXPECT_NE(arp.output.find("Who has 198.18.0.2? Tell 198.18.0.1"), std::string::npos) << arp.output;
  EXPECT_NE(arp.output.find("198.18.0.2 is at"), std::string::npos) << arp.output;
  const auto echo = sh("tshark -n -r " + pcap_ + " -Y 'icmp.type == 0' 2>/dev/null | wc -l");
  EXPECT_EQ(std::stoi(echo.output), 100) << echo.output;
  const auto expert = sh("tshark -n -q -r " + pcap_ + " -z expert,error 2>&1");
  EXPECT_EQ(expert.output.find("Malformed"), std::string::npos) << expert.output;
  EXPECT_EQ(expert.output.find("Errors ("), std::string::npos) << expert.output;
}

TEST_P(PingTool, UnansweredPingFailsWithLossReported) {
  // 198.18.0.3 does not exist: ARP fails, nothing is answered, exit 1.
  const auto r = usnet("ping --link " + link_uri() + " --addr 198.18.0.1/24 -c 2 -i 0.2 -W 1 198.18.0.3", 20);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("0 received, 100% packet loss"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Links, PingTool, testing::Values(Kind::Tap, Kind::AfPacket, Kind::AfXdp),
                         link_kind_name);

TEST(PingToolErrors, BadArgumentsGetClearErrors) {
  auto r = sh(kCli + " ping --link tap:x 198.18.0.300", 10);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not an IPv4 address"), std::string::npos) << r.output;
  r = sh(kCli + " ping --link bogus:x 198.18.0.2", 10);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("bogus"), std::string::npos) << r.output;
  r = sh(kCli + " ping --link af_packet:nosuchif0 198.18.0.2", 10);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("nosuchif0"), std::string::npos) << r.output;
  r = sh(kCli + " ping --link tap:x --addr 198.18.0.1/33 198.18.0.2", 10);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--addr"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace usnet::test
