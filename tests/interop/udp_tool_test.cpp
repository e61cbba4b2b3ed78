// `usnet udp-server` / `usnet udp-client` against the Linux kernel's UDP in a
// peer namespace (socat on the kernel side), over TAP, AF_PACKET and AF_XDP:
// byte-exact echo both ways, including 8000-byte datagrams over a 1500-byte
// MTU (fragmented and reassembled by each side); under injected loss and
// corruption nothing corrupted reaches the application and the checksum
// drops are counted. And two usnet processes over memif, no kernel involved.
// Every command is bounded in time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <regex>
#include <string>

#include "interop/link_kind.hpp"
#include "interop/netns.hpp"

#ifndef USNET_CLI
#error "USNET_CLI must name the usnet binary"
#endif

namespace usnet::test {
namespace {

const std::string kCli = USNET_CLI;

using Kind = LinkKind;

// "sent N, received M (x% loss), corrupted C, ..." -> {N, M, C}
struct EchoSummary {
  int sent = -1, received = -1, corrupted = -1;
};
EchoSummary summary_of(const std::string& out) {
  std::smatch m;
  static const std::regex re(R"(sent (\d+), received (\d+) \([0-9.]+% loss\), corrupted (\d+))");
  if (!std::regex_search(out, m, re)) return {};
  return {std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3])};
}

class UdpTool : public testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    ASSERT_EQ(interop_blocker({"socat", "ping", "ethtool"}), "");
    auto ns = peer_for(GetParam());
    ASSERT_TRUE(ns) << ns.error();
    ns_.emplace(std::move(*ns));
  }
  std::string link_uri() const { return usnet::test::link_uri(GetParam(), *ns_); }
  CmdResult usnet(const std::string& args, int timeout_s) const {
    return run_usnet(GetParam(), *ns_, kCli, args, timeout_s);
  }
  // A kernel UDP echo server on port 7 in the namespace, for `seconds`.
  std::future<CmdResult> kernel_echo_server(int seconds) const {
    return std::async(std::launch::async, [this, seconds] {
      return ns_->exec("timeout " + std::to_string(seconds) + " socat UDP4-RECVFROM:7,fork PIPE",
                       seconds + 5);
    });
  }
  std::optional<PeerNamespace> ns_;
};

TEST_P(UdpTool, UsnetClientGetsByteExactEchoesFromTheKernel) {
  auto server = kernel_echo_server(15);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // socat binds its port
  for (int size : {64, 1472, 8000}) {
    SCOPED_TRACE(size);
    const auto r = usnet("udp-client --link " + link_uri() + " --addr 198.18.0.1/24 -c 20 -i 0.02 -W 2 -s " +
                             std::to_string(size) + " 198.18.0.2:7",
                         30);
    EXPECT_EQ(r.status, 0) << r.output;
    const auto s = summary_of(r.output);
    EXPECT_EQ(s.sent, 20) << r.output;
    EXPECT_EQ(s.received, 20) << r.output;
    EXPECT_EQ(s.corrupted, 0) << r.output;
    if (size == 8000) {
      // 20 datagrams each way, 6 fragments each: usnet fragmented its own and
      // reassembled the kernel's.
      EXPECT_NE(r.output.find("120 fragments created"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("20 datagrams reassembled"), std::string::npos) << r.output;
    }
  }
  server.get();
}

TEST_P(UdpTool, KernelClientGetsByteExactEchoesFromUsnet) {
  auto server = std::async(std::launch::async, [this] {
    return usnet("udp-server --link " + link_uri() + " --addr 198.18.0.1/24 --duration 10", 20);
  });
  // Wait until usnet answers, then send with the kernel's UDP and compare.
  ASSERT_EQ(ns_->wait_for_answer(), "");
  const std::string dir = "/tmp/usnet-udp-" + std::to_string(::getpid());
  for (int size : {64, 8000}) {
    SCOPED_TRACE(size);
    const std::string in = dir + "-in-" + std::to_string(size), out = dir + "-out-" + std::to_string(size);
    const auto r = ns_->exec("head -c " + std::to_string(size) + " /dev/urandom > " + in +
                                 " && socat -T 3 -t 3 UDP4:198.18.0.1:7 - < " + in + " > " + out +
                                 " && cmp " + in + " " + out + " && wc -c < " + out,
                             15);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(std::to_string(size)), std::string::npos) << r.output;
    ::unlink(in.c_str());
    ::unlink(out.c_str());
  }
  const auto s = server.get();
  EXPECT_EQ(s.status, 0) << s.output;
  EXPECT_NE(s.output.find("echoed 2 datagrams"), std::string::npos) << s.output;
  // The kernel's 8000-byte datagram arrived in 6 fragments usnet reassembled.
  EXPECT_NE(s.output.find("1 datagrams reassembled"), std::string::npos) << s.output;
}

// 10% of received frames dropped and 2% corrupted (seeded): the echo loses
// roughly that share, nothing corrupted reaches the application, and the
// corrupted frames are dropped by a checksum and counted.
TEST_P(UdpTool, InjectedLossAndCorruptionNeverDeliverBadData) {
  auto server = kernel_echo_server(20);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto r = usnet("udp-client --link " + link_uri() +
                           " --addr 198.18.0.1/24 -c 500 -s 200 -i 0.002 -W 2 --max-loss 30 --fault-drop 0.1 "
                           "--fault-corrupt 0.02 --fault-seed 42 198.18.0.2:7",
                       30);
  EXPECT_EQ(r.status, 0) << r.output;
  const auto s = summary_of(r.output);
  EXPECT_EQ(s.sent, 500) << r.output;
  EXPECT_EQ(s.corrupted, 0) << r.output;
  const double loss = 100.0 * (s.sent - s.received) / s.sent;
  EXPECT_GT(loss, 5.0) << r.output;
  EXPECT_LT(loss, 25.0) << r.output;
  EXPECT_NE(r.output.find("dropped: bad checksum"), std::string::npos) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"((\d+) corrupted\n)"))) << r.output;
  EXPECT_GT(std::stoi(m[1]), 0) << r.output;
  server.get();
}

INSTANTIATE_TEST_SUITE_P(Links, UdpTool, testing::Values(Kind::Tap, Kind::AfPacket, Kind::AfXdp),
                         link_kind_name);

// Two usnet processes joined directly by memif (no kernel, no privileges):
// ping and UDP echo, 8000-byte datagrams included.
TEST(UdpToolMemif, TwoUsnetProcessesPingAndEcho) {
  char dir_template[] = "/tmp/usnet-memif-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string sock = std::string(dir_template) + "/m.sock";
  auto server = std::async(std::launch::async, [&] {
    return sh(kCli + " udp-server --link memif:" + sock + "?role=server --addr 198.18.0.1/24 --duration 8",
              20);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto ping =
      sh(kCli + " ping --link memif:" + sock + " --addr 198.18.0.2/24 -c 20 -i 0.01 198.18.0.1", 20);
  EXPECT_EQ(ping.status, 0) << ping.output;
  EXPECT_NE(ping.output.find("20 packets transmitted, 20 received, 0% packet loss"), std::string::npos)
      << ping.output;
  for (int size : {64, 8000}) {
    SCOPED_TRACE(size);
    const auto r = sh(kCli + " udp-client --link memif:" + sock + " --addr 198.18.0.2/24 -c 50 -i 0.005 -s " +
                          std::to_string(size) + " 198.18.0.1:7",
                      20);
    EXPECT_EQ(r.status, 0) << r.output;
    const auto s = summary_of(r.output);
    EXPECT_EQ(s.received, 50) << r.output;
    EXPECT_EQ(s.corrupted, 0) << r.output;
  }
  const auto s = server.get();
  EXPECT_EQ(s.status, 0) << s.output;
  EXPECT_NE(s.output.find("echoed 100 datagrams"), std::string::npos) << s.output;
  sh("rm -rf " + std::string(dir_template));
}

}  // namespace
}  // namespace usnet::test
