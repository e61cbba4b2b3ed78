#include "usnet/wire/ipv6.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::from_hex;
using test::reference_packet;

constexpr std::size_t kHdr = Ipv6View::kHeaderLen;
const Ipv6Addr kA1 = *Ipv6Addr::parse("2001:db8::1");
const Ipv6Addr kA2 = *Ipv6Addr::parse("2001:db8::2");

std::vector<std::byte> ref(const char* name) { return reference_packet("v6icmp.txt", name); }

// An IPv6 packet from kA1 to kA2 whose payload is `payload` (extension
// headers written by hand) and whose first next header is `first`.
std::vector<std::byte> packet(std::uint8_t first, const std::vector<std::byte>& payload) {
  Ipv6Repr r{kA1, kA2, first, 64, 0, 0, 0, static_cast<std::uint16_t>(payload.size())};
  std::vector<std::byte> out(kHdr);
  EXPECT_TRUE(r.emit(out));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// A Destination Options header of 8 bytes holding one PadN option.
std::vector<std::byte> dest_opts(std::uint8_t next) {
  auto h = from_hex("00 00 01 04 00000000");
  h[0] = std::byte{next};
  return h;
}

ParseResult<Ipv6ExtWalk> walk(const std::vector<std::byte>& pkt, unsigned bound = 8) {
  auto v = Ipv6View::make(pkt);
  EXPECT_TRUE(v);
  if (!v) return unexpected(v.error());
  return walk_extension_headers(*v, bound);
}

// ---- fixed header (RFC 8200 3) ----

TEST(Ipv6, ParsesScapyReference) {
  auto pkt = ref("ipv6_udp");
  auto v = Ipv6View::make(pkt);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->version(), 6);
  EXPECT_EQ(v->traffic_class(), 0xb9);
  EXPECT_EQ(v->dscp(), 46);
  EXPECT_EQ(v->ecn(), 1);
  EXPECT_EQ(v->flow_label(), 0xabcdeu);
  EXPECT_EQ(v->payload_len(), 10);
  EXPECT_EQ(v->next_header(), Ipv6NextHeader::kUdp);
  EXPECT_EQ(v->hop_limit(), 17);
  EXPECT_EQ(v->src(), kA1);
  EXPECT_EQ(v->dst(), kA2);
  EXPECT_EQ(v->payload().size(), 10u);
  EXPECT_EQ(v->bytes().size(), pkt.size());
  auto r = Ipv6Repr::parse(*v);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Ipv6Repr{kA1, kA2, 17, 17, 46, 1, 0xabcde, 10}));
}

TEST(Ipv6, EmitsScapyReferenceByteExactly) {
  for (const char* name :
       {"ipv6_udp", "ipv6_chain", "ipv6_frag_later", "ipv6_hbh_unknown", "ipv6_ah", "ipv6_no_next"}) {
    SCOPED_TRACE(name);
    auto pkt = ref(name);
    auto v = Ipv6View::make(pkt);
    ASSERT_TRUE(v);
    auto r = Ipv6Repr::parse(*v);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->buffer_len(), kHdr);
    std::vector<std::byte> out(kHdr);
    auto n = r->emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kHdr);
    EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(pkt).first(kHdr)));
  }
}

TEST(Ipv6, RoundTrips) {
  for (const Ipv6Repr& r :
       {Ipv6Repr{kA1, kA2, 58, 255, 63, 3, 0xfffff, 65535}, Ipv6Repr{kA2, Ipv6Addr{}, 0, 0, 0, 0, 0, 0},
        Ipv6Repr{kA1, kA1, 6, 1, 10, 2, 0x12345, 1}}) {
    std::vector<std::byte> buf(kHdr + r.payload_len);
    ASSERT_TRUE(r.emit(buf));
    auto v = Ipv6View::make(buf);
    ASSERT_TRUE(v);
    auto back = Ipv6Repr::parse(*v);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, r);
  }
}

TEST(Ipv6, RejectsEveryTruncation) {
  auto pkt = ref("ipv6_chain");
  for (std::size_t n = 0; n < pkt.size(); ++n) {
    auto v = Ipv6View::make(std::span(pkt).first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated) << n;
  }
  EXPECT_TRUE(Ipv6View::make(pkt));
}

TEST(Ipv6, RejectsVersionOtherThanSix) {
  auto pkt = ref("ipv6_udp");
  for (unsigned version = 0; version < 16; ++version) {
    if (version == 6) continue;
    pkt[0] = std::byte(version << 4 | 0x0b);
    auto v = Ipv6View::make(pkt);
    ASSERT_FALSE(v) << version;
    EXPECT_EQ(v.error(), ParseError::BadVersion);
  }
}

TEST(Ipv6, RejectsPayloadLengthPastTheData) {
  auto pkt = ref("ipv6_udp");
  pkt[5] = std::byte{11};  // payload length 11, 10 bytes present
  auto v = Ipv6View::make(pkt);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), ParseError::Truncated);
  pkt[4] = std::byte{0xff};
  EXPECT_EQ(Ipv6View::make(pkt).error(), ParseError::Truncated);
}

TEST(Ipv6, ExcludesBytesPastThePayloadLength) {
  auto pkt = ref("ipv6_udp");
  pkt.insert(pkt.end(), 6, std::byte{0xee});  // Ethernet minimum-frame padding
  auto v = Ipv6View::make(pkt);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->bytes().size(), pkt.size() - 6);
  EXPECT_EQ(v->payload().size(), 10u);
}

// Jumbograms (RFC 2675) are not supported: payload length 0 means no payload,
// so a Hop-by-Hop header announced by a zero-length packet is truncated.
TEST(Ipv6, PayloadLengthZeroIsTakenLiterally) {
  auto pkt = packet(Ipv6NextHeader::kHopByHop, {});
  pkt.insert(pkt.end(), 8, std::byte{0});
  auto v = Ipv6View::make(pkt);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->payload().empty());
  auto w = walk_extension_headers(*v);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::Truncated);
}

TEST(Ipv6, EmitRefusesFieldsWiderThanTheirBits) {
  std::vector<std::byte> buf(kHdr);
  for (const Ipv6Repr& r : {Ipv6Repr{kA1, kA2, 17, 64, 64, 0, 0, 0}, Ipv6Repr{kA1, kA2, 17, 64, 0, 4, 0, 0},
                            Ipv6Repr{kA1, kA2, 17, 64, 0, 0, 0x100000, 0}}) {
    auto n = r.emit(buf);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), ParseError::BadField);
  }
}

TEST(Ipv6, EmitRefusesSmallBuffer) {
  std::vector<std::byte> small(kHdr - 1);
  auto n = Ipv6Repr{kA1, kA2}.emit(small);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), ParseError::NoSpace);
}

// ---- extension-header walk (RFC 8200 4) ----

TEST(Ipv6Ext, NoExtensionHeaders) {
  auto w = walk(ref("ipv6_udp"));
  ASSERT_TRUE(w);
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kUdp);
  EXPECT_EQ(w->upper_offset, 0u);
  EXPECT_EQ(w->header_count, 0u);
  EXPECT_FALSE(w->fragment);
  EXPECT_TRUE(w->has_upper_layer());
}

// HbH(Router Alert) / DestOpts / Routing / Fragment(first) / DestOpts / UDP.
TEST(Ipv6Ext, WalksTheScapyChain) {
  auto w = walk(ref("ipv6_chain"));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->header_count, 5u);
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kUdp);
  EXPECT_EQ(w->upper_offset, 8u + 8 + 24 + 8 + 8);
  ASSERT_TRUE(w->fragment);
  EXPECT_EQ(*w->fragment, (Ipv6FragmentInfo{0, true, 0x12345678, Ipv6NextHeader::kDestOptions, 40}));
  EXPECT_FALSE(w->is_non_first_fragment());
  // Router Alert is not one the walk knows, but its action is "skip".
  EXPECT_EQ(w->unknown_option_count, 1u);
  EXPECT_FALSE(w->first_unknown_option);
}

// RFC 8200 4.5: after a non-first fragment's header comes fragment data.
TEST(Ipv6Ext, StopsAtANonFirstFragment) {
  auto w = walk(ref("ipv6_frag_later"));
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->fragment);
  EXPECT_EQ(*w->fragment, (Ipv6FragmentInfo{185, false, 0xdeadbeef, Ipv6NextHeader::kUdp, 0}));
  EXPECT_TRUE(w->is_non_first_fragment());
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kUdp);
  EXPECT_EQ(w->upper_offset, 8u);
  EXPECT_EQ(w->header_count, 1u);
}

// A non-first fragment's data is not walked even when it looks like headers.
TEST(Ipv6Ext, DoesNotWalkFragmentData) {
  auto payload = from_hex("00 00 0009 00000001");  // next header HbH, offset 1, M
  auto junk = from_hex("00 ff 0000 00000000");     // would be a truncated HbH
  payload.insert(payload.end(), junk.begin(), junk.end());
  auto w = walk(packet(Ipv6NextHeader::kFragment, payload));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kHopByHop);
  EXPECT_EQ(w->upper_offset, 8u);
  EXPECT_EQ(w->fragment->offset, 1);
  EXPECT_TRUE(w->fragment->more_fragments);
}

// RFC 8200 4.2: options are walked; the first unrecognised option whose
// action is not "skip" is reported for the IP layer to act on.
TEST(Ipv6Ext, ReportsUnknownOptions) {
  auto w = walk(ref("ipv6_hbh_unknown"));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kIcmpv6);
  EXPECT_EQ(w->upper_offset, 16u);
  EXPECT_EQ(w->unknown_option_count, 3u);  // 0x3e, 0x9e, 0x7f; Pad1 and PadN are known
  ASSERT_TRUE(w->first_unknown_option);
  EXPECT_EQ(*w->first_unknown_option, (Ipv6UnknownOption{0x9e, 7, Ipv6NextHeader::kHopByHop}));
  EXPECT_EQ(w->first_unknown_option->action(), Ipv6OptionAction::DiscardAndIcmp);
}

TEST(Ipv6Ext, ReportsUnknownOptionInDestinationOptions) {
  // DestOpts: PadN(0), then option 0xc2 (action 11) with 2 data bytes.
  auto w = walk(packet(Ipv6NextHeader::kDestOptions, from_hex("3b 00 01 00 c2 02 0000")));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(*w->first_unknown_option, (Ipv6UnknownOption{0xc2, 4, Ipv6NextHeader::kDestOptions}));
  EXPECT_EQ(w->first_unknown_option->action(), Ipv6OptionAction::DiscardAndIcmpUnicast);
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kNoNextHeader);
}

TEST(Ipv6Ext, OptionActionsFromTheHighBits) {
  EXPECT_EQ(ipv6_option_action(0x05), Ipv6OptionAction::Skip);
  EXPECT_EQ(ipv6_option_action(0x7f), Ipv6OptionAction::Discard);
  EXPECT_EQ(ipv6_option_action(0x80), Ipv6OptionAction::DiscardAndIcmp);
  EXPECT_EQ(ipv6_option_action(0xc2), Ipv6OptionAction::DiscardAndIcmpUnicast);
}

// RFC 4302 2.2: the AH length counts 4-octet units, minus 2.
TEST(Ipv6Ext, WalksAuthenticationHeader) {
  auto w = walk(ref("ipv6_ah"));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->header_count, 1u);
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kUdp);
  EXPECT_EQ(w->upper_offset, 24u);
}

TEST(Ipv6Ext, RejectsAuthenticationHeaderShorterThanItsFixedPart) {
  auto w = walk(packet(Ipv6NextHeader::kAuth, from_hex("11 00 0000 00000100")));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::BadExtHeader);
}

// RFC 4302 2.2: on IPv6 the AH length must be a multiple of 8 octets (the
// ICV is padded to keep 64-bit alignment).
TEST(Ipv6Ext, RejectsAuthenticationHeaderNotAMultipleOfEightOctets) {
  // Length field 1: 12 bytes (no ICV); 3: 20 bytes (8 bytes of ICV).
  for (const char* ah : {"11 01 0000 00000100 00000001", "11 03 0000 00000100 00000001 aaaaaaaaaaaaaaaa"}) {
    SCOPED_TRACE(ah);
    std::vector<std::byte> payload = from_hex(ah);
    const auto udp = from_hex("0001 0002 0008 0000");
    payload.insert(payload.end(), udp.begin(), udp.end());
    auto w = walk(packet(Ipv6NextHeader::kAuth, payload));
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error(), ParseError::BadExtHeader);
  }
  // Length field 2: 16 bytes (4 bytes of ICV) is a multiple of 8.
  std::vector<std::byte> payload = from_hex("11 02 0000 00000100 00000001 aaaaaaaa 0001 0002 0008 0000");
  auto w = walk(packet(Ipv6NextHeader::kAuth, payload));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->upper_offset, 16u);
}

// RFC 8200 4.7: No Next Header ends the chain; anything after is ignored.
TEST(Ipv6Ext, NoNextHeaderEndsTheWalk) {
  auto w = walk(ref("ipv6_no_next"));
  ASSERT_TRUE(w);
  EXPECT_EQ(w->upper_protocol, Ipv6NextHeader::kNoNextHeader);
  EXPECT_FALSE(w->has_upper_layer());
  EXPECT_EQ(w->upper_offset, 0u);
}

TEST(Ipv6Ext, UnknownNextHeaderIsTheUpperLayer) {
  for (std::uint8_t nh : {Ipv6NextHeader::kEsp, Ipv6NextHeader::kTcp, std::uint8_t{253}}) {
    auto w = walk(packet(Ipv6NextHeader::kDestOptions, dest_opts(nh)));
    ASSERT_TRUE(w);
    EXPECT_EQ(w->upper_protocol, nh);
    EXPECT_EQ(w->upper_offset, 8u);
  }
}

TEST(Ipv6Ext, AcceptsChainAtTheBound) {
  std::vector<std::byte> payload;
  for (int i = 0; i < 8; ++i) {
    auto h = dest_opts(i == 7 ? Ipv6NextHeader::kUdp : Ipv6NextHeader::kDestOptions);
    payload.insert(payload.end(), h.begin(), h.end());
  }
  auto w = walk(packet(Ipv6NextHeader::kDestOptions, payload));
  ASSERT_TRUE(w) << to_string(w.error());
  EXPECT_EQ(w->header_count, 8u);
  EXPECT_EQ(w->upper_offset, 64u);
}

TEST(Ipv6Ext, RejectsChainOfNineOrMore) {
  for (int count : {9, 10, 40}) {
    std::vector<std::byte> payload;
    for (int i = 0; i < count; ++i) {
      auto h = dest_opts(i == count - 1 ? Ipv6NextHeader::kUdp : Ipv6NextHeader::kDestOptions);
      payload.insert(payload.end(), h.begin(), h.end());
    }
    auto w = walk(packet(Ipv6NextHeader::kDestOptions, payload));
    ASSERT_FALSE(w) << count;
    EXPECT_EQ(w.error(), ParseError::TooManyExtHeaders);
  }
}

TEST(Ipv6Ext, HonoursACallerBound) {
  auto pkt = ref("ipv6_chain");  // five extension headers
  EXPECT_TRUE(walk(pkt, 5));
  auto w = walk(pkt, 4);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::TooManyExtHeaders);
  EXPECT_EQ(walk(pkt, 0).error(), ParseError::TooManyExtHeaders);
}

// RFC 8200 4.3: Hop-by-Hop Options only immediately after the IPv6 header.
TEST(Ipv6Ext, RejectsHopByHopNotFirst) {
  auto payload = dest_opts(Ipv6NextHeader::kHopByHop);
  auto hbh = from_hex("11 00 01 04 00000000");
  payload.insert(payload.end(), hbh.begin(), hbh.end());
  auto w = walk(packet(Ipv6NextHeader::kDestOptions, payload));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::BadExtHeader);
}

TEST(Ipv6Ext, RejectsASecondFragmentHeader) {
  auto payload = from_hex("2c 00 0001 00000001  11 00 0001 00000002");
  auto w = walk(packet(Ipv6NextHeader::kFragment, payload));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::BadExtHeader);
}

// Every cut of the chain that ends inside an extension header (RFC 7112:
// the first fragment must hold the whole chain) is Truncated.
TEST(Ipv6Ext, RejectsEveryTruncationOfTheChain) {
  auto pkt = ref("ipv6_chain");
  const std::size_t upper = 56;
  for (std::size_t n = 0; n < upper; ++n) {
    std::vector<std::byte> cut(pkt.begin(), pkt.begin() + static_cast<std::ptrdiff_t>(kHdr + n));
    cut[4] = std::byte{0};
    cut[5] = std::byte(n);  // payload length follows the cut
    auto w = walk(cut);
    ASSERT_FALSE(w) << n;
    EXPECT_EQ(w.error(), ParseError::Truncated) << n;
  }
}

TEST(Ipv6Ext, RejectsHeaderLengthPastThePayload) {
  // Routing header whose length field says 24 bytes; 16 are present.
  auto w = walk(packet(Ipv6NextHeader::kRouting, from_hex("11 02 00 01 00000000 2001 0db8 0000 0000")));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), ParseError::Truncated);
  auto ah = walk(packet(Ipv6NextHeader::kAuth, from_hex("11 04 0000 00000100 00000001 aaaaaaaa")));
  ASSERT_FALSE(ah);
  EXPECT_EQ(ah.error(), ParseError::Truncated);
}

TEST(Ipv6Ext, RejectsOptionPastItsHeader) {
  for (const char* header : {
           "11 00 01 05 00000000",                   // PadN claiming 5 bytes, 4 left
           "11 00 9e 05 00000000",                   // unknown option claiming 5 bytes
           "11 00 00 00 00 00 00 01",                // PadN type in the last byte, no length byte
           "11 01 01 0d 00000000 0000000000000000",  // PadN of 13 in a 16-byte header (12 left)
       }) {
    SCOPED_TRACE(header);
    auto w = walk(packet(Ipv6NextHeader::kHopByHop, from_hex(header)));
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error(), ParseError::BadOptionLength);
  }
}

TEST(Ipv6Ext, AcceptsOptionsThatExactlyFill) {
  for (const char* header : {"11 00 00 00 00 00 00 00", "11 00 01 04 00000000", "11 00 3e 04 01020304"}) {
    SCOPED_TRACE(header);
    auto w = walk(packet(Ipv6NextHeader::kHopByHop, from_hex(header)));
    ASSERT_TRUE(w);
    EXPECT_EQ(w->upper_offset, 8u);
  }
}

}  // namespace
}  // namespace usnet::wire
