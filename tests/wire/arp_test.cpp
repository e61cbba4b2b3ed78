#include "usnet/wire/arp.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::reference_packet;

constexpr std::size_t kEthHdr = 14;
const MacAddr kMacA{{0x02, 0, 0, 0, 0, 0x01}};
const MacAddr kMacB{{0x02, 0, 0, 0, 0, 0x02}};
const Ipv4Addr kIpA = Ipv4Addr::from_octets(198, 18, 0, 1);
const Ipv4Addr kIpB = Ipv4Addr::from_octets(198, 18, 0, 2);

// The ARP packet of a reference frame (its Ethernet header removed).
std::vector<std::byte> arp_bytes(const char* name, std::size_t l2_len = kEthHdr) {
  auto frame = reference_packet("l2l3.txt", name);
  return {frame.begin() + static_cast<std::ptrdiff_t>(l2_len), frame.end()};
}

TEST(Arp, ParsesRequestFieldByField) {
  auto pkt = arp_bytes("eth_arp_request");
  ASSERT_EQ(pkt.size(), 28u);
  auto view = ArpView::make(pkt);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->hardware_type(), 1);
  EXPECT_EQ(view->protocol_type(), 0x0800);
  EXPECT_EQ(view->hardware_len(), 6);
  EXPECT_EQ(view->protocol_len(), 4);
  EXPECT_EQ(view->operation(), ArpOperation::Request);
  EXPECT_EQ(view->sender_mac(), kMacA);
  EXPECT_EQ(view->sender_ip(), kIpA);
  EXPECT_EQ(view->target_mac(), MacAddr{});
  EXPECT_EQ(view->target_ip(), kIpB);
  auto repr = ArpRepr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(*repr, (ArpRepr{ArpOperation::Request, kMacA, kIpA, MacAddr{}, kIpB}));
}

// ARP frames are padded to the 60-byte Ethernet minimum; the padding is not
// part of the packet.
TEST(Arp, ParsesPaddedReplyAndIgnoresPadding) {
  auto pkt = arp_bytes("eth_arp_reply_padded");
  ASSERT_EQ(pkt.size(), 46u);
  auto view = ArpView::make(pkt);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->bytes().size(), 28u);
  auto repr = ArpRepr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(*repr, (ArpRepr{ArpOperation::Reply, kMacB, kIpB, kMacA, kIpA}));
}

TEST(Arp, ParsesInsideVlanTaggedFrame) {
  auto pkt = arp_bytes("eth_vlan_dei_max_vid", kEthHdr + 4);
  auto view = ArpView::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->operation(), ArpOperation::Request);
  EXPECT_EQ(view->target_ip(), kIpB);
}

TEST(Arp, EmitsScapyReferencesByteExactly) {
  for (const char* name : {"eth_arp_request", "eth_arp_reply_padded"}) {
    SCOPED_TRACE(name);
    auto pkt = arp_bytes(name);
    auto view = ArpView::make(pkt);
    ASSERT_TRUE(view);
    auto repr = ArpRepr::parse(*view);
    ASSERT_TRUE(repr);
    std::vector<std::byte> out(repr->buffer_len());
    auto n = repr->emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 28u);
    EXPECT_EQ(test::to_hex(out), test::to_hex(std::span<const std::byte>(pkt).first(28)));
  }
}

TEST(Arp, RoundTrips) {
  for (const ArpRepr& r : {ArpRepr{ArpOperation::Request, kMacB, kIpB, MacAddr{}, kIpA},
                           ArpRepr{ArpOperation::Reply, kMacA, Ipv4Addr::from_octets(198, 19, 255, 255),
                                   MacAddr::broadcast(), Ipv4Addr{}}}) {
    std::vector<std::byte> buf(60, std::byte{0xee});
    ASSERT_TRUE(r.emit(buf));
    auto view = ArpView::make(buf);
    ASSERT_TRUE(view);
    auto back = ArpRepr::parse(*view);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, r);
  }
}

TEST(Arp, RejectsEveryTruncation) {
  for (const char* name : {"eth_arp_request", "eth_arp_reply_padded"}) {
    auto pkt = arp_bytes(name);
    std::span<const std::byte> all(pkt);
    for (std::size_t n = 0; n < 28; ++n) {
      auto v = ArpView::make(all.first(n));
      ASSERT_FALSE(v) << name << " " << n;
      EXPECT_EQ(v.error(), ParseError::Truncated) << name << " " << n;
    }
  }
}

struct BadField {
  std::size_t offset;
  std::vector<std::uint8_t> value;
  ParseError expected;
};

// RFC 826: only hardware type Ethernet (1, 6-byte addresses) and protocol
// IPv4 (0x0800, 4-byte addresses) with operation request or reply.
TEST(Arp, RejectsUnsupportedTypesLengthsAndOperations) {
  const BadField cases[] = {
      {0, {0x00, 0x06}, ParseError::BadHardwareType},  // IEEE 802 networks
      {0, {0x00, 0x00}, ParseError::BadHardwareType},
      {0, {0x01, 0x01}, ParseError::BadHardwareType},
      {4, {8}, ParseError::BadHardwareType},  // hlen
      {4, {0}, ParseError::BadHardwareType},
      {2, {0x86, 0xdd}, ParseError::BadProtocolType},  // ptype IPv6
      {2, {0x08, 0x06}, ParseError::BadProtocolType},
      {5, {16}, ParseError::BadProtocolType},  // plen
      {5, {0}, ParseError::BadProtocolType},
      {6, {0x00, 0x00}, ParseError::BadOperation},
      {6, {0x00, 0x03}, ParseError::BadOperation},  // RARP request (RFC 903)
      {6, {0x00, 0x08}, ParseError::BadOperation},  // InARP request (RFC 2390)
      {6, {0x01, 0x01}, ParseError::BadOperation},
  };
  for (const auto& c : cases) {
    auto pkt = arp_bytes("eth_arp_request");
    for (std::size_t i = 0; i < c.value.size(); ++i) pkt[c.offset + i] = std::byte{c.value[i]};
    auto v = ArpView::make(pkt);
    ASSERT_FALSE(v) << test::to_hex(pkt);
    EXPECT_EQ(v.error(), c.expected) << test::to_hex(pkt);
  }
}

TEST(Arp, EmitRefusesSmallBufferAndUnknownOperation) {
  std::vector<std::byte> out(27);
  ArpRepr r{ArpOperation::Reply, kMacA, kIpA, kMacB, kIpB};
  auto n = r.emit(out);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), ParseError::NoSpace);
  out.resize(28);
  r.operation = static_cast<ArpOperation>(3);
  auto m = r.emit(out);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), ParseError::BadOperation);
}

}  // namespace
}  // namespace usnet::wire
