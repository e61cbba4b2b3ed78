#include "usnet/wire/describe.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

std::string describe(const char* name) { return describe_frame(test::reference_packet("frames.txt", name)); }

TEST(Describe, OneLinePerKnownFrame) {
  EXPECT_EQ(describe("arp_request"),
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ARP who-has 198.18.0.2 tell 198.18.0.1");
  EXPECT_EQ(describe("arp_reply"),
            "02:00:00:00:00:02 > 02:00:00:00:00:01, ARP 198.18.0.2 is-at 02:00:00:00:00:02");
  EXPECT_EQ(describe("icmp_echo"),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 198.18.0.1 > 198.18.0.2: ICMP echo request id 4660 "
            "seq 1 len 10");
  EXPECT_EQ(describe("udp_dns_port"),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 198.18.0.1.40000 > 198.18.0.2.9999: UDP len 11");
  EXPECT_EQ(describe("tcp_syn"),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 198.18.0.1.40001 > 198.18.0.2.80: TCP [S] seq 1000 "
            "win 64240 <mss 1460,sackOK,TS 1:0,wscale 7> len 0");
  EXPECT_EQ(describe("tcp_data"),
            "02:00:00:00:00:02 > 02:00:00:00:00:01, IPv4 198.18.0.2.80 > 198.18.0.1.40001: TCP [P.] seq 5000 "
            "ack 1001 win 502 <TS 100:1> len 19");
  EXPECT_EQ(describe("vlan_udp"),
            "02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 42 pcp 5, IPv4 tos dscp 46 ecn 0 "
            "198.18.0.1.5004 > 198.18.0.2.5004: UDP len 5");
  EXPECT_EQ(describe("ipv6_ns"),
            "02:00:00:00:00:01 > 33:33:ff:00:00:02, IPv6 2001:db8::1 > ff02::1:ff00:2: ICMP6 neighbor "
            "solicitation who-has 2001:db8::2");
  EXPECT_EQ(
      describe("ipv6_echo"),
      "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv6 2001:db8::1 > 2001:db8::2: ICMP6 echo request id 1 seq 2 "
      "len 5");
  EXPECT_EQ(describe("ipv6_udp"),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv6 2001:db8::1.1234 > 2001:db8::2.5678: UDP len 40");
}

TEST(Describe, EveryTruncationGivesALineNamingTheProblem) {
  for (const char* name : {"arp_request", "icmp_echo", "tcp_syn", "vlan_udp", "ipv6_ns", "ipv6_udp"}) {
    auto frame = test::reference_packet("frames.txt", name);
    for (std::size_t n = 0; n < frame.size(); ++n) {
      std::string line = describe_frame(std::span(frame).first(n));
      ASSERT_FALSE(line.empty());
      // Ethernet padding aside, a cut frame always fails some layer's check.
      EXPECT_NE(line.find("[malformed: "), std::string::npos) << name << " cut at " << n << ": " << line;
    }
  }
}

TEST(Describe, UnknownEthertypeIsShownNotRejected) {
  auto frame = test::from_hex("020000000002020000000001 88b5 00010203");
  EXPECT_EQ(describe_frame(frame), "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype 0x88b5 len 4");
}

}  // namespace
}  // namespace usnet::wire
