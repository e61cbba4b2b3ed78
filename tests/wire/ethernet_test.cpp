#include "usnet/wire/ethernet.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::reference_packet;

const MacAddr kMacA{{0x02, 0, 0, 0, 0, 0x01}};
const MacAddr kMacB{{0x02, 0, 0, 0, 0, 0x02}};

TEST(Ethernet, ParsesUntaggedReference) {
  auto frame = reference_packet("l2l3.txt", "eth_ipv4_udp");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->dst(), kMacB);
  EXPECT_EQ(view->src(), kMacA);
  EXPECT_FALSE(view->has_vlan());
  EXPECT_EQ(view->vlan(), std::nullopt);
  EXPECT_EQ(view->ethertype(), ethertype::kIpv4);
  EXPECT_EQ(view->header_len(), 14u);
  auto ip = reference_packet("l2l3.txt", "ipv4_udp");
  EXPECT_EQ(test::to_hex(view->payload()), test::to_hex(ip));
  auto repr = EthernetRepr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(*repr, (EthernetRepr{kMacB, kMacA, ethertype::kIpv4, std::nullopt}));
}

TEST(Ethernet, ParsesIpv6Ethertype) {
  auto frame = reference_packet("l2l3.txt", "eth_ipv6_untagged");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->ethertype(), ethertype::kIpv6);
  EXPECT_EQ(view->payload().size(), 40u);
}

// IEEE 802.1Q 9.6: TCI = PCP(3) DEI(1) VID(12); the type after the tag is
// the payload's.
TEST(Ethernet, ParsesVlanTagWithPriority) {
  auto frame = reference_packet("l2l3.txt", "eth_vlan_pcp5");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_TRUE(view->has_vlan());
  ASSERT_TRUE(view->vlan());
  EXPECT_EQ(*view->vlan(), (VlanTag{5, false, 100}));
  EXPECT_EQ(view->ethertype(), ethertype::kIpv4);
  EXPECT_EQ(view->header_len(), 18u);
  EXPECT_EQ(view->payload().size(), frame.size() - 18);
  EXPECT_EQ(std::to_integer<int>(view->payload()[0]), 0x45);
  auto repr = EthernetRepr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(*repr, (EthernetRepr{kMacB, kMacA, ethertype::kIpv4, VlanTag{5, false, 100}}));
}

TEST(Ethernet, ParsesVlanTagWithDeiAndHighestVid) {
  auto frame = reference_packet("l2l3.txt", "eth_vlan_dei_max_vid");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->dst(), MacAddr::broadcast());
  EXPECT_EQ(*view->vlan(), (VlanTag{0, true, 0xffe}));
  EXPECT_EQ(view->ethertype(), ethertype::kArp);
  EXPECT_EQ(view->payload().size(), 28u);
}

TEST(Ethernet, EmitsScapyReferencesByteExactly) {
  for (const char* name :
       {"eth_ipv4_udp", "eth_ipv4_padded", "eth_ipv6_untagged", "eth_vlan_pcp5", "eth_vlan_dei_max_vid",
        "eth_double_8100", "eth_qinq_88a8", "eth_arp_request", "eth_arp_reply_padded"}) {
    SCOPED_TRACE(name);
    auto frame = reference_packet("l2l3.txt", name);
    auto view = EthernetView::make(frame);
    ASSERT_TRUE(view);
    auto repr = EthernetRepr::parse(*view);
    ASSERT_TRUE(repr);
    ASSERT_EQ(repr->buffer_len(), view->header_len());
    std::vector<std::byte> out(repr->buffer_len());
    auto n = repr->emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, view->header_len());
    EXPECT_EQ(test::to_hex(out), test::to_hex(std::span<const std::byte>(frame).first(*n)));
  }
}

TEST(Ethernet, RoundTrips) {
  for (const EthernetRepr& r : {
           EthernetRepr{kMacA, kMacB, ethertype::kArp, std::nullopt},
           EthernetRepr{MacAddr::broadcast(), kMacA, 0x0600, std::nullopt},
           EthernetRepr{kMacA, kMacB, ethertype::kIpv6, VlanTag{7, true, 0xffe}},
           EthernetRepr{kMacA, kMacB, ethertype::kIpv4, VlanTag{0, false, 0}},  // priority-tagged
           EthernetRepr{kMacA, kMacB, ethertype::kVlan, VlanTag{1, false, 1}},  // as a double tag parses
       }) {
    std::vector<std::byte> buf(r.buffer_len() + 3, std::byte{0x5a});
    auto n = r.emit(buf);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, r.buffer_len());
    auto view = EthernetView::make(buf);
    ASSERT_TRUE(view);
    EXPECT_EQ(view->header_len(), r.buffer_len());
    EXPECT_EQ(view->payload().size(), 3u);
    auto back = EthernetRepr::parse(*view);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, r);
  }
}

TEST(Ethernet, VlanTciPacksFieldsInOrder) {
  EXPECT_EQ((VlanTag{5, false, 100}.tci()), 0xa064);
  EXPECT_EQ((VlanTag{0, true, 0xffe}.tci()), 0x1ffe);
  EXPECT_EQ((VlanTag{7, true, 0}.tci()), 0xf000);
  EXPECT_EQ(VlanTag::from_tci(0xf123), (VlanTag{7, true, 0x123}));
  EXPECT_NE((VlanTag{1, false, 2}), (VlanTag{1, true, 2}));
}

TEST(Ethernet, RejectsEveryTruncationUntagged) {
  auto frame = reference_packet("l2l3.txt", "eth_ipv4_udp");
  std::span<const std::byte> all(frame);
  for (std::size_t n = 0; n < 14; ++n) {
    auto v = EthernetView::make(all.first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated) << n;
  }
  // No minimum frame size in the wire type: a bare header is a frame.
  auto bare = EthernetView::make(all.first(14));
  ASSERT_TRUE(bare);
  EXPECT_TRUE(bare->payload().empty());
}

TEST(Ethernet, RejectsEveryTruncationTagged) {
  auto frame = reference_packet("l2l3.txt", "eth_vlan_pcp5");
  std::span<const std::byte> all(frame);
  for (std::size_t n = 0; n < 18; ++n) {
    auto v = EthernetView::make(all.first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated) << n;
  }
  auto bare = EthernetView::make(all.first(18));
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->ethertype(), ethertype::kIpv4);
  EXPECT_TRUE(bare->payload().empty());
}

// IEEE 802.1Q 9.6, Table 9-2: VID 0xfff is reserved.
TEST(Ethernet, RejectsReservedVid) {
  auto frame = reference_packet("l2l3.txt", "eth_vlan_pcp5");
  frame[14] = std::byte{0xaf};  // PCP 5, DEI 0, VID 0xfff
  frame[15] = std::byte{0xff};
  auto v = EthernetView::make(frame);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), ParseError::BadField);
  frame[15] = std::byte{0xfe};  // VID 0xffe is the highest usable one
  EXPECT_TRUE(EthernetView::make(frame));
}

// Stacked tags are not supported. An outer 802.1ad S-tag is not a tag to us:
// the frame reports type 0x88a8 and the caller drops it as unknown.
TEST(Ethernet, QinQOuterTagIsReportedAsUnknownEthertype) {
  auto frame = reference_packet("l2l3.txt", "eth_qinq_88a8");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view);
  EXPECT_FALSE(view->has_vlan());
  EXPECT_EQ(view->ethertype(), ethertype::kQinQ);
  EXPECT_EQ(view->header_len(), 14u);
}

// Two 0x8100 tags: only the outer one is read, and the payload type is
// reported as 0x8100, which no upper layer handles, so the frame is dropped.
TEST(Ethernet, DoubleTagReportsInnerTpidAsEthertype) {
  auto frame = reference_packet("l2l3.txt", "eth_double_8100");
  auto view = EthernetView::make(frame);
  ASSERT_TRUE(view);
  EXPECT_EQ(*view->vlan(), (VlanTag{2, false, 10}));
  EXPECT_EQ(view->ethertype(), ethertype::kVlan);
  EXPECT_EQ(view->header_len(), 18u);
}

// The inner tag is not interpreted, so its reserved VID is not rejected.
TEST(Ethernet, InnerTagIsNotInterpreted) {
  auto frame = reference_packet("l2l3.txt", "eth_double_8100");
  frame[18] = std::byte{0x0f};  // inner TCI VID 0xfff
  frame[19] = std::byte{0xff};
  EXPECT_TRUE(EthernetView::make(frame));
}

TEST(Ethernet, EmitRefusesSmallBuffer) {
  std::vector<std::byte> out(17);
  auto untagged = EthernetRepr{kMacA, kMacB, ethertype::kIpv4, std::nullopt};
  EXPECT_TRUE(untagged.emit(std::span(out).first(14)));
  auto r = untagged.emit(std::span(out).first(13));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::NoSpace);
  auto tagged = EthernetRepr{kMacA, kMacB, ethertype::kIpv4, VlanTag{1, false, 2}};
  auto t = tagged.emit(out);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error(), ParseError::NoSpace);
}

TEST(Ethernet, EmitRefusesWhatWouldNotParseBack) {
  std::vector<std::byte> out(18);
  for (const EthernetRepr& r : {
           EthernetRepr{kMacA, kMacB, ethertype::kIpv4, VlanTag{0, false, 0xfff}},
           EthernetRepr{kMacA, kMacB, ethertype::kIpv4, VlanTag{8, false, 1}},
           EthernetRepr{kMacA, kMacB, ethertype::kIpv4, VlanTag{0, false, 0x1000}},
           EthernetRepr{kMacA, kMacB, ethertype::kVlan, std::nullopt},
       }) {
    auto n = r.emit(out);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), ParseError::BadField);
  }
}

}  // namespace
}  // namespace usnet::wire
