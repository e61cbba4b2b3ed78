// A thousand concurrent TCP connections between the Linux kernel and usnet,
// over TAP, AF_PACKET and AF_XDP: a kernel client (tcp_many.py, in the peer
// namespace) opens 1,000 connections to `usnet http-server` and holds them
// all open, then sends one request on each, checks every body byte for
// byte, and closes them all. usnet must have held all 1,000 at once, left
// none open, and given back every packet buffer; the kernel must be left
// with no connection to usnet other than in TIME-WAIT (it closed first).
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <iostream>
#include <string>

#include "interop/link_kind.hpp"
#include "interop/netns.hpp"

#ifndef USNET_CLI
#error "USNET_CLI must name the usnet binary"
#endif

namespace usnet::test {
namespace {

const std::string kCli = USNET_CLI;
const std::string kScript = std::string(USNET_TEST_DATA_DIR) + "/../interop/tcp_many.py";
constexpr int kConnections = 1000;

class TcpMany : public testing::TestWithParam<LinkKind> {
 protected:
  void SetUp() override {
    ASSERT_EQ(interop_blocker({"ping", "ethtool", "ss", "/usr/bin/python3"}), "");
    ASSERT_EQ(access(kScript.c_str(), R_OK), 0) << kScript << " is missing";
    auto ns = peer_for(GetParam());
    ASSERT_TRUE(ns) << ns.error();
    ns_.emplace(std::move(*ns));
    dir_ = "/tmp/usnet-many-" + std::to_string(::getpid()) + "-" + ns_->name();
    ASSERT_EQ(sh("mkdir -p " + dir_ + "/www && head -c 5000 /dev/urandom > " + dir_ + "/www/page").status, 0);
  }
  void TearDown() override { (void)sh("rm -rf " + dir_); }

  std::optional<PeerNamespace> ns_;
  std::string dir_;
};

TEST_P(TcpMany, AThousandKernelConnectionsOpenExchangeAndCloseCleanly) {
  auto server = std::async(std::launch::async, [this] {
    return run_usnet(GetParam(), *ns_, kCli,
                     "http-server --link " + link_uri(GetParam(), *ns_) + " --addr 198.18.0.1/24 --root " +
                         dir_ + "/www --max-requests " + std::to_string(kConnections) +
                         " --close-grace 30 --duration 120",
                     150);
  });
  if (const std::string why = ns_->wait_for_answer(); !why.empty()) {
    (void)sh("pkill -INT -f -- '--root " + dir_ + "/www'", 5);
    FAIL() << why << "\nusnet's report: " << server.get().output;
  }
  const auto client =
      ns_->exec("/usr/bin/python3 " + kScript + " --addr 198.18.0.1 --count " + std::to_string(kConnections) +
                    " --path /page --expect " + dir_ + "/www/page --timeout 90",
                100);
  EXPECT_EQ(client.status, 0) << client.output;
  std::cout << "the kernel client: " << client.output;
  const auto s = server.get();
  EXPECT_EQ(s.status, 0) << s.output;
  std::cout << "usnet: " << s.output.substr(s.output.find('\n') + 1, 80) << "...\n";
  const std::string n = std::to_string(kConnections);
  EXPECT_NE(s.output.find(n + " connections accepted, " + n + " responses"), std::string::npos) << s.output;
  EXPECT_EQ(counter(s.output, "connections open at most at once"), std::uint64_t{kConnections}) << s.output;
  // Every connection went through its close and was freed: none left open,
  // and every packet buffer came back.
  EXPECT_EQ(counter(s.output, "connections open\\n"), 0u) << s.output;
  EXPECT_EQ(counter(s.output, "connections freed"), std::uint64_t{kConnections}) << s.output;
  EXPECT_NE(s.output.find("\n0 packet buffers in use after shutdown"), std::string::npos) << s.output;
  // The kernel closed first: anything still to 198.18.0.1 is in TIME-WAIT.
  const auto left = ns_->exec("ss -Htan dst 198.18.0.1 | grep -v TIME-WAIT | wc -l", 10);
  EXPECT_EQ(left.output, "0\n") << ns_->exec("ss -tan dst 198.18.0.1 | head -20", 10).output;
}

INSTANTIATE_TEST_SUITE_P(Links, TcpMany, testing::Values(LinkKind::Tap, LinkKind::AfPacket, LinkKind::AfXdp),
                         link_kind_name);

}  // namespace
}  // namespace usnet::test
