#include "usnet/wire/ipv4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "support/hex.hpp"
#include "usnet/wire/ethernet.hpp"

namespace usnet::wire {
namespace {

using test::reference_packet;

const Ipv4Addr kIpA = Ipv4Addr::from_octets(198, 18, 0, 1);
const Ipv4Addr kIpB = Ipv4Addr::from_octets(198, 18, 0, 2);

const char* const kAllReferences[] = {"ipv4_udp",      "ipv4_options_rr", "ipv4_options_max",
                                      "ipv4_fragment", "ipv4_df_tcp",     "ipv4_dscp_ecn"};
const char* const kReferencesWithoutOptions[] = {"ipv4_udp", "ipv4_fragment", "ipv4_df_tcp", "ipv4_dscp_ecn"};

std::vector<std::byte> ref(const char* name) { return reference_packet("l2l3.txt", name); }

// Rewrites the header checksum after a test edits a header field, so the
// edit is the only thing wrong with the packet.
void fix_checksum(std::vector<std::byte>& pkt) {
  const std::size_t ihl_bytes = std::size_t{std::to_integer<unsigned>(pkt[0]) & 0x0fu} * 4;
  store_be16(pkt.data() + Ipv4View::Off::kChecksum, 0);
  store_be16(pkt.data() + Ipv4View::Off::kChecksum, internet_checksum(std::span(pkt).first(ihl_bytes)));
}

ParseError make_error(std::span<const std::byte> bytes) {
  auto v = Ipv4View::make(bytes);
  EXPECT_FALSE(v);
  return v ? ParseError::NoSpace : v.error();
}

TEST(Ipv4, ParsesPlainUdpFieldByField) {
  auto pkt = ref("ipv4_udp");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->version(), 4);
  EXPECT_EQ(view->header_len(), 20u);
  EXPECT_EQ(view->dscp(), 0);
  EXPECT_EQ(view->ecn(), 0);
  EXPECT_EQ(view->total_len(), 33);
  EXPECT_EQ(view->ident(), 0x1234);
  EXPECT_FALSE(view->reserved_flag());
  EXPECT_FALSE(view->dont_frag());
  EXPECT_FALSE(view->more_frags());
  EXPECT_EQ(view->frag_offset_units(), 0);
  EXPECT_FALSE(view->is_fragment());
  EXPECT_EQ(view->ttl(), 64);
  EXPECT_EQ(view->protocol(), ip_protocol::kUdp);
  EXPECT_EQ(view->checksum(), 0xdc70);
  EXPECT_TRUE(view->checksum_ok());
  EXPECT_EQ(view->src(), kIpA);
  EXPECT_EQ(view->dst(), kIpB);
  EXPECT_TRUE(view->options().empty());
  EXPECT_EQ(view->payload().size(), 13u);
  EXPECT_EQ(test::to_hex(view->payload()), "9c400007000d939268656c6c6f");

  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr) << to_string(repr.error());
  Ipv4Repr want{
      .src = kIpA, .dst = kIpB, .protocol = ip_protocol::kUdp, .ttl = 64, .ident = 0x1234, .payload_len = 13};
  EXPECT_EQ(*repr, want);
}

// RFC 791 3.1: options are skipped using the IHL; the payload starts after
// them and the header checksum covers them.
TEST(Ipv4, SkipsRecordRouteOption) {
  auto pkt = ref("ipv4_options_rr");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->header_len(), 32u);
  EXPECT_EQ(test::to_hex(view->options()), "070b08c61200fe0000000000");
  EXPECT_EQ(view->payload().size(), 10u);
  EXPECT_EQ(test::to_hex(view->payload()), "00350035000a00d67272");
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr) << to_string(repr.error());
  EXPECT_EQ(repr->payload_len, 10);
  EXPECT_EQ(repr->protocol, ip_protocol::kUdp);
}

TEST(Ipv4, SkipsLargestOptionArea) {
  auto pkt = ref("ipv4_options_max");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->header_len(), Ipv4View::kMaxHeaderLen);
  EXPECT_EQ(view->options().size(), 40u);
  EXPECT_EQ(std::to_integer<int>(view->options().back()), 0);  // EOL
  EXPECT_EQ(view->payload().size(), 8u);
  EXPECT_EQ(std::to_integer<int>(view->payload()[0]), 8);  // ICMP echo request
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr) << to_string(repr.error());
  EXPECT_EQ(repr->protocol, ip_protocol::kIcmp);
  EXPECT_EQ(repr->payload_len, 8);
}

// RFC 791 3.2: MF set and a non-zero offset (in 8-byte units on the wire).
TEST(Ipv4, ParsesMiddleFragment) {
  auto pkt = ref("ipv4_fragment");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->more_frags());
  EXPECT_FALSE(view->dont_frag());
  EXPECT_EQ(view->frag_offset_units(), 185);
  EXPECT_EQ(view->frag_offset_bytes(), 1480);
  EXPECT_TRUE(view->is_fragment());
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(repr->ident, 0xbeef);
  EXPECT_TRUE(repr->more_frags);
  EXPECT_EQ(repr->frag_offset_bytes, 1480);
  EXPECT_EQ(repr->payload_len, 16);
  EXPECT_TRUE(repr->is_fragment());
}

TEST(Ipv4, ParsesDontFragment) {
  auto pkt = ref("ipv4_df_tcp");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->dont_frag());
  EXPECT_FALSE(view->more_frags());
  EXPECT_FALSE(view->is_fragment());
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr);
  Ipv4Repr want{.src = kIpA,
                .dst = Ipv4Addr::from_octets(198, 19, 255, 254),
                .protocol = ip_protocol::kTcp,
                .ttl = 255,
                .dont_frag = true,
                .payload_len = 20};
  EXPECT_EQ(*repr, want);
}

// RFC 2474 (DSCP, upper 6 bits) and RFC 3168 (ECN, lower 2 bits).
TEST(Ipv4, ParsesDscpAndEcn) {
  auto pkt = ref("ipv4_dscp_ecn");
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->dscp(), 46);
  EXPECT_EQ(view->ecn(), 1);
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(repr->dscp, 46);
  EXPECT_EQ(repr->ecn, 1);
  EXPECT_EQ(repr->ttl, 1);
  EXPECT_EQ(repr->protocol, ip_protocol::kIcmp);
}

// The total length, not the frame, says where the datagram ends: the
// Ethernet padding to 60 bytes is excluded.
TEST(Ipv4, ExcludesEthernetPadding) {
  auto frame = ref("eth_ipv4_padded");
  ASSERT_EQ(frame.size(), 60u);
  auto eth = EthernetView::make(frame);
  ASSERT_TRUE(eth);
  ASSERT_EQ(eth->ethertype(), ethertype::kIpv4);
  EXPECT_EQ(eth->payload().size(), 46u);
  auto view = Ipv4View::make(eth->payload());
  ASSERT_TRUE(view) << to_string(view.error());
  EXPECT_EQ(view->bytes().size(), 30u);
  EXPECT_EQ(view->payload().size(), 10u);
  EXPECT_EQ(test::to_hex(view->payload()), "00010002000a0b466869");
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr);
  EXPECT_EQ(repr->payload_len, 10);
}

TEST(Ipv4, EmitsScapyReferencesByteExactly) {
  for (const char* name : kReferencesWithoutOptions) {
    SCOPED_TRACE(name);
    auto pkt = ref(name);
    auto view = Ipv4View::make(pkt);
    ASSERT_TRUE(view);
    auto repr = Ipv4Repr::parse(*view);
    ASSERT_TRUE(repr);
    std::vector<std::byte> out(repr->buffer_len());
    auto n = repr->emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 20u);
    EXPECT_EQ(test::to_hex(out), test::to_hex(std::span<const std::byte>(pkt).first(20)));
  }
}

// Options are not re-emitted: the Repr survives, the bytes shrink by the
// option area, and the new 20-byte header carries a correct checksum.
TEST(Ipv4, PacketsWithOptionsRoundTripAsRepr) {
  for (const char* name : {"ipv4_options_rr", "ipv4_options_max"}) {
    SCOPED_TRACE(name);
    auto pkt = ref(name);
    auto view = Ipv4View::make(pkt);
    ASSERT_TRUE(view);
    auto repr = Ipv4Repr::parse(*view);
    ASSERT_TRUE(repr);
    std::vector<std::byte> out(20 + repr->payload_len);
    ASSERT_TRUE(repr->emit(out));
    std::copy(view->payload().begin(), view->payload().end(), out.begin() + 20);
    auto view2 = Ipv4View::make(out);
    ASSERT_TRUE(view2);
    EXPECT_TRUE(view2->options().empty());
    EXPECT_EQ(test::to_hex(view2->payload()), test::to_hex(view->payload()));
    auto back = Ipv4Repr::parse(*view2);
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(*back, *repr);
  }
}

TEST(Ipv4, RoundTrips) {
  const Ipv4Repr cases[] = {
      {.src = kIpA, .dst = kIpB, .protocol = ip_protocol::kTcp, .payload_len = 5},
      {.src = Ipv4Addr::from_octets(198, 19, 255, 255),
       .dst = Ipv4Addr{0xffffffff},
       .protocol = 253,
       .ttl = 0,
       .dscp = 63,
       .ecn = 3,
       .ident = 0xffff,
       .dont_frag = true,
       .more_frags = true,
       .frag_offset_bytes = 65528,
       .payload_len = 0},
      {.src = kIpB,
       .dst = kIpA,
       .protocol = ip_protocol::kUdp,
       .ttl = 1,
       .dscp = 10,
       .ecn = 2,
       .ident = 1,
       .frag_offset_bytes = 8,
       .payload_len = 3},
  };
  for (const Ipv4Repr& r : cases) {
    std::vector<std::byte> buf(20 + r.payload_len + 2, std::byte{0x77});  // 2 bytes of link padding
    auto n = r.emit(buf);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 20u);
    auto view = Ipv4View::make(buf);
    ASSERT_TRUE(view) << to_string(view.error());
    EXPECT_EQ(view->payload().size(), r.payload_len);
    EXPECT_FALSE(view->reserved_flag());
    auto back = Ipv4Repr::parse(*view);
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(*back, r);
  }
}

// With ChecksumMode::Ignore the checksum field stays zero; a verifying
// parser then rejects it, a trusting one accepts it.
TEST(Ipv4, EmitWithIgnoreLeavesChecksumZero) {
  const Ipv4Repr r{.src = kIpA, .dst = kIpB, .protocol = ip_protocol::kUdp, .payload_len = 0};
  std::vector<std::byte> buf(20, std::byte{0xff});
  ASSERT_TRUE(r.emit(buf, ChecksumMode::Ignore));
  auto view = Ipv4View::make(buf);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->checksum(), 0);
  auto verified = Ipv4Repr::parse(*view, ChecksumMode::Verify);
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error(), ParseError::BadChecksum);
  auto trusted = Ipv4Repr::parse(*view, ChecksumMode::Ignore);
  ASSERT_TRUE(trusted);
  EXPECT_EQ(*trusted, r);
}

TEST(Ipv4, RejectsEveryTruncation) {
  for (const char* name : kAllReferences) {
    auto pkt = ref(name);
    std::span<const std::byte> all(pkt);
    for (std::size_t n = 0; n < pkt.size(); ++n) {
      EXPECT_EQ(make_error(all.first(n)), ParseError::Truncated) << name << " cut to " << n;
    }
    EXPECT_TRUE(Ipv4View::make(all)) << name;
  }
}

// RFC 791 3.1: the version field is 4.
TEST(Ipv4, RejectsWrongVersion) {
  for (unsigned version : {0u, 5u, 6u, 15u}) {
    auto pkt = ref("ipv4_udp");
    pkt[0] = std::byte{static_cast<std::uint8_t>((version << 4) | 5)};
    EXPECT_EQ(make_error(pkt), ParseError::BadVersion) << version;
  }
}

// RFC 791 3.1: the minimum value of a correct header length is 5.
TEST(Ipv4, RejectsHeaderLengthBelowFive) {
  for (unsigned ihl = 0; ihl < 5; ++ihl) {
    auto pkt = ref("ipv4_udp");
    pkt[0] = std::byte{static_cast<std::uint8_t>(0x40 | ihl)};
    EXPECT_EQ(make_error(pkt), ParseError::BadHeaderLength) << ihl;
  }
}

TEST(Ipv4, RejectsHeaderLengthPastData) {
  auto pkt = ref("ipv4_udp");  // 33 bytes, total length 33
  pkt[0] = std::byte{0x4f};    // header of 60 bytes
  EXPECT_EQ(make_error(pkt), ParseError::BadHeaderLength);
  pkt[0] = std::byte{0x49};  // 36 bytes: one past the data
  EXPECT_EQ(make_error(pkt), ParseError::BadHeaderLength);
  pkt[0] = std::byte{0x48};  // 32 bytes fits: the UDP header is read as options
  auto v = Ipv4View::make(pkt);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->options().size(), 12u);
  EXPECT_EQ(v->payload().size(), 1u);
}

TEST(Ipv4, RejectsTotalLengthBelowHeader) {
  auto pkt = ref("ipv4_udp");
  for (std::uint16_t total : {0, 1, 19}) {
    store_be16(pkt.data() + Ipv4View::Off::kTotalLen, total);
    EXPECT_EQ(make_error(pkt), ParseError::BadTotalLength) << total;
  }
  auto opt = ref("ipv4_options_rr");  // header of 32 bytes
  store_be16(opt.data() + Ipv4View::Off::kTotalLen, 31);
  EXPECT_EQ(make_error(opt), ParseError::BadTotalLength);
  store_be16(opt.data() + Ipv4View::Off::kTotalLen, 32);  // header only, no payload
  auto v = Ipv4View::make(opt);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->payload().empty());
}

TEST(Ipv4, RejectsTotalLengthPastData) {
  auto pkt = ref("ipv4_udp");
  for (std::uint16_t total : {34, 1500, 65535}) {
    store_be16(pkt.data() + Ipv4View::Off::kTotalLen, total);
    EXPECT_EQ(make_error(pkt), ParseError::Truncated) << total;
  }
}

// RFC 791 3.1: the checksum covers the header, options included, and only
// the header.
TEST(Ipv4, RejectsBadChecksum) {
  struct Flip {
    const char* name;
    std::size_t offset;
  };
  for (auto [name, offset] : {Flip{"ipv4_udp", 8}, Flip{"ipv4_udp", 10}, Flip{"ipv4_udp", 19},
                              Flip{"ipv4_options_rr", 24}, Flip{"ipv4_options_max", 59}}) {
    auto pkt = ref(name);
    pkt[offset] ^= std::byte{0x01};
    auto view = Ipv4View::make(pkt);
    ASSERT_TRUE(view);
    EXPECT_FALSE(view->checksum_ok());
    auto r = Ipv4Repr::parse(*view);
    ASSERT_FALSE(r) << name << " " << offset;
    EXPECT_EQ(r.error(), ParseError::BadChecksum);
    EXPECT_TRUE(Ipv4Repr::parse(*view, ChecksumMode::Ignore)) << name << " " << offset;
  }
  auto pkt = ref("ipv4_udp");
  pkt.back() ^= std::byte{0xff};  // payload is not covered
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_TRUE(Ipv4Repr::parse(*view));
}

// RFC 791 3.1 says the reserved flag "must be zero": a rule for the sender.
// We accept such packets and ignore the bit (see ipv4.hpp), and never send it.
TEST(Ipv4, ReservedFlagIsIgnoredOnReceiveAndClearedOnEmit) {
  auto original = ref("ipv4_udp");
  auto pkt = original;
  pkt[Ipv4View::Off::kFlagsFrag] |= std::byte{0x80};
  fix_checksum(pkt);
  auto view = Ipv4View::make(pkt);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->reserved_flag());
  EXPECT_FALSE(view->dont_frag());
  EXPECT_FALSE(view->is_fragment());
  auto repr = Ipv4Repr::parse(*view);
  ASSERT_TRUE(repr) << to_string(repr.error());
  auto plain = Ipv4Repr::parse(*Ipv4View::make(original));
  ASSERT_TRUE(plain);
  EXPECT_EQ(*repr, *plain);
  std::vector<std::byte> out(20);
  ASSERT_TRUE(repr->emit(out));
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span<const std::byte>(original).first(20)));
}

// RFC 791 3.2: the last fragment has MF clear and a non-zero offset.
TEST(Ipv4, IsFragmentCoversFirstMiddleAndLast) {
  Ipv4Repr r{.src = kIpA, .dst = kIpB};
  EXPECT_FALSE(r.is_fragment());
  r.dont_frag = true;
  EXPECT_FALSE(r.is_fragment());
  r.more_frags = true;  // first fragment
  EXPECT_TRUE(r.is_fragment());
  r.frag_offset_bytes = 8;  // middle
  EXPECT_TRUE(r.is_fragment());
  r.more_frags = false;  // last
  EXPECT_TRUE(r.is_fragment());
  std::vector<std::byte> buf(20);
  ASSERT_TRUE(r.emit(buf));
  auto view = Ipv4View::make(buf);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->is_fragment());
  EXPECT_EQ(view->frag_offset_units(), 1);
}

TEST(Ipv4, EmitRefusesSmallBuffer) {
  std::vector<std::byte> out(19);
  auto n = Ipv4Repr{.src = kIpA, .dst = kIpB}.emit(out);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), ParseError::NoSpace);
}

TEST(Ipv4, EmitRefusesFieldsOutOfRange) {
  std::vector<std::byte> out(20);
  const Ipv4Repr base{.src = kIpA, .dst = kIpB};
  auto expect_error = [&](Ipv4Repr r, ParseError e) {
    auto n = r.emit(out);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), e);
  };
  auto r = base;
  r.dscp = 64;
  expect_error(r, ParseError::BadField);
  r = base;
  r.ecn = 4;
  expect_error(r, ParseError::BadField);
  r = base;
  r.frag_offset_bytes = 1479;  // not a multiple of 8
  expect_error(r, ParseError::BadField);
  r = base;
  r.payload_len = 65516;  // total length 65536
  expect_error(r, ParseError::BadTotalLength);
  r.payload_len = 65515;
  EXPECT_TRUE(r.emit(out));
  EXPECT_EQ(load_be16(out.data() + Ipv4View::Off::kTotalLen), 65535);
}

}  // namespace
}  // namespace usnet::wire
