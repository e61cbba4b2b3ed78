#include "usnet/wire/udp.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::reference_packet;

constexpr std::size_t kIpv4Hdr = 20, kIpv6Hdr = 40;
const auto kSrc4 = Ipv4Addr::from_octets(198, 18, 0, 1);

PseudoHeader ph4(Ipv4Addr d) { return PseudoHeader::v4(kSrc4, d); }
PseudoHeader ph6() {
  return PseudoHeader::v6(*Ipv6Addr::parse("2001:db8::1"), *Ipv6Addr::parse("2001:db8::2"));
}

TEST(Udp, ParsesScapyReferenceV4) {
  auto pkt = reference_packet("udp.txt", "ipv4_udp_hello");
  auto seg = std::span<const std::byte>(pkt).subspan(kIpv4Hdr);
  auto view = UdpView::make(seg);
  ASSERT_TRUE(view);
  auto repr = UdpRepr::parse(*view, ph4(Ipv4Addr::from_octets(198, 18, 0, 2)));
  ASSERT_TRUE(repr) << to_string(repr.error());
  EXPECT_EQ(*repr, (UdpRepr{40000, 7, 5}));
  EXPECT_EQ(view->payload().size(), 5u);
}

TEST(Udp, EmitsScapyReferenceByteExactly) {
  for (auto [name, ph, hdr] :
       {std::tuple{"ipv4_udp_hello", ph4(Ipv4Addr::from_octets(198, 18, 0, 2)), kIpv4Hdr},
        std::tuple{"ipv4_udp_empty", ph4(Ipv4Addr::from_octets(198, 19, 1, 1)), kIpv4Hdr},
        std::tuple{"ipv6_udp_payload", ph6(), kIpv6Hdr}}) {
    SCOPED_TRACE(name);
    auto pkt = reference_packet("udp.txt", name);
    std::vector<std::byte> seg(pkt.begin() + static_cast<std::ptrdiff_t>(hdr), pkt.end());
    auto view = UdpView::make(seg);
    ASSERT_TRUE(view);
    auto repr = UdpRepr::parse(*view, ph);
    ASSERT_TRUE(repr) << to_string(repr.error());
    ASSERT_GE(seg.size(), UdpView::kHeaderLen);
    std::vector<std::byte> out(seg.size());
    const auto payload = view->payload();  // payload first, then the header
    std::copy(payload.begin(), payload.end(), out.end() - static_cast<std::ptrdiff_t>(payload.size()));
    ASSERT_TRUE(repr->emit(out, ph));
    EXPECT_EQ(test::to_hex(out), test::to_hex(seg));
  }
}

TEST(Udp, RoundTrips) {
  const UdpRepr r{1, 65535, 3};
  std::vector<std::byte> buf(11, std::byte{0x5a});
  ASSERT_TRUE(r.emit(buf, ph6()));
  auto view = UdpView::make(buf);
  ASSERT_TRUE(view);
  auto back = UdpRepr::parse(*view, ph6());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
}

TEST(Udp, RejectsEveryTruncation) {
  auto pkt = reference_packet("udp.txt", "ipv4_udp_hello");
  auto seg = std::span<const std::byte>(pkt).subspan(kIpv4Hdr);
  for (std::size_t n = 0; n < seg.size(); ++n) {
    auto v = UdpView::make(seg.first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated);
  }
}

TEST(Udp, RejectsLengthBelowHeader) {
  auto seg = test::from_hex("9c40000700070000");
  auto v = UdpView::make(seg);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), ParseError::BadLength);
}

TEST(Udp, ExcludesBytesPastTheLengthField) {
  auto seg = test::from_hex(
      "9c400007000a0000abcd"
      "eeee");
  auto v = UdpView::make(seg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->payload().size(), 2u);
}

TEST(Udp, RejectsBadChecksum) {
  auto pkt = reference_packet("udp.txt", "ipv4_udp_hello");
  std::vector<std::byte> seg(pkt.begin() + kIpv4Hdr, pkt.end());
  seg.back() ^= std::byte{1};
  auto view = UdpView::make(seg);
  ASSERT_TRUE(view);
  auto r = UdpRepr::parse(*view, ph4(Ipv4Addr::from_octets(198, 18, 0, 2)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadChecksum);
  EXPECT_TRUE(UdpRepr::parse(*view, ph4(Ipv4Addr::from_octets(198, 18, 0, 2)), ChecksumMode::Ignore));
}

// RFC 768: zero means "no checksum" on IPv4; RFC 8200 8.1 forbids it on IPv6.
TEST(Udp, ZeroChecksumAcceptedOnV4Only) {
  auto seg = test::from_hex("04d2162e000a0000abcd");
  auto view = UdpView::make(seg);
  ASSERT_TRUE(view);
  EXPECT_TRUE(UdpRepr::parse(*view, ph4(Ipv4Addr::from_octets(198, 18, 0, 2))));
  auto r6 = UdpRepr::parse(*view, ph6());
  ASSERT_FALSE(r6);
  EXPECT_EQ(r6.error(), ParseError::BadChecksum);
}

TEST(Udp, EmitRefusesSmallBuffer) {
  std::vector<std::byte> small(7);
  auto r = UdpRepr{1, 2, 0}.emit(small, ph6());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::NoSpace);
}

}  // namespace
}  // namespace usnet::wire
