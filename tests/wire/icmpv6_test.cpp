#include "usnet/wire/icmpv6.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::from_hex;

constexpr std::size_t kIpv6Hdr = 40;
const Ipv6Addr kA1 = *Ipv6Addr::parse("2001:db8::1");
const Ipv6Addr kA2 = *Ipv6Addr::parse("2001:db8::2");
const Ipv6Addr kA3 = *Ipv6Addr::parse("2001:db8::3");
const MacAddr kMac1 = *MacAddr::parse("02:00:00:00:00:01");
const MacAddr kMac2 = *MacAddr::parse("02:00:00:00:00:02");

// The ICMPv6 message of a reference packet, and the addresses of its
// pseudo-header (every reference has a bare 40-byte IPv6 header).
struct Message {
  std::vector<std::byte> bytes;
  Ipv6Addr src, dst;
};

Message icmp_of(const char* name) {
  auto pkt = test::reference_packet("v6icmp.txt", name);
  if (pkt.size() < kIpv6Hdr) return {};
  return {
      {pkt.begin() + kIpv6Hdr, pkt.end()}, Ipv6Addr::read(pkt.data() + 8), Ipv6Addr::read(pkt.data() + 24)};
}

ParseResult<Icmpv6Repr> parse(std::span<const std::byte> msg, const Ipv6Addr& src = kA1,
                              const Ipv6Addr& dst = kA2, ChecksumMode mode = ChecksumMode::Verify) {
  auto v = Icmpv6View::make(msg);
  if (!v) return unexpected(v.error());
  return Icmpv6Repr::parse(*v, src, dst, mode);
}

ParseResult<Icmpv6Repr> parse(const Message& m) { return parse(m.bytes, m.src, m.dst); }

ParseResult<Icmpv6Repr> parse_unchecked(std::span<const std::byte> msg) {
  return parse(msg, kA1, kA2, ChecksumMode::Ignore);
}

NdpPrefixInfo prefix(std::uint8_t len, bool l, bool a, std::uint32_t valid, std::uint32_t preferred,
                     const char* addr) {
  return {len, l, a, valid, preferred, *Ipv6Addr::parse(addr)};
}

// ---- RFC 4443 messages ----

TEST(Icmpv6, ParsesEchoRequest) {
  auto m = icmp_of("icmpv6_echo_request");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type(), Icmpv6Type::EchoRequest);
  EXPECT_EQ(v->code(), 0);
  EXPECT_EQ(v->ident(), 0x4242);
  EXPECT_EQ(v->seq(), 9);
  EXPECT_EQ(v->checksum(), 0xf43e);
  EXPECT_TRUE(v->checksum_ok(kA1, kA2));
  EXPECT_EQ(test::to_hex(v->data()), test::to_hex(from_hex("70696e67362064617461")));  // "ping6 data"
  EXPECT_TRUE(v->ndp_options().empty());
  auto r = Icmpv6Repr::parse(*v, kA1, kA2);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::EchoRequest, .ident = 0x4242, .seq = 9, .data_len = 10}));
}

TEST(Icmpv6, ParsesEchoReply) {
  auto r = parse(icmp_of("icmpv6_echo_reply"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::EchoReply, .ident = 0x4242, .seq = 9, .data_len = 10}));
}

TEST(Icmpv6, ParsesDestinationUnreachable) {
  auto m = icmp_of("icmpv6_dest_unreach");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_TRUE(is_icmpv6_error(v->type()));
  // The invoking packet: IPv6 header (40 bytes) and UDP header.
  ASSERT_EQ(v->data().size(), 48u);
  EXPECT_EQ(v->data()[0], std::byte{0x60});
  EXPECT_EQ(test::to_hex(v->data().subspan(40, 4)), "9c40829a");
  auto r = parse(m);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::DestUnreachable, .code = 4, .data_len = 48}));
}

TEST(Icmpv6, ParsesPacketTooBig) {
  auto r = parse(icmp_of("icmpv6_packet_too_big"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::PacketTooBig, .mtu = 1280, .data_len = 48}));
}

TEST(Icmpv6, ParsesTimeExceeded) {
  auto r = parse(icmp_of("icmpv6_time_exceeded"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::TimeExceeded, .code = 1, .data_len = 48}));
}

TEST(Icmpv6, ParsesParameterProblem) {
  auto r = parse(icmp_of("icmpv6_param_problem"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::ParamProblem, .code = 1, .pointer = 40, .data_len = 48}));
}

TEST(Icmpv6, ParsesUnknownTypeAsGeneric) {
  auto r = parse(icmp_of("icmpv6_mld_query"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(static_cast<int>(r->type), 130);
  EXPECT_FALSE(is_icmpv6_error(r->type));
  EXPECT_FALSE(is_ndp_message(r->type));
  EXPECT_EQ(r->rest_of_header, 0x27100000u);  // maximum response delay 10000
  EXPECT_EQ(r->data_len, 16);
}

// ---- NDP (RFC 4861) ----

TEST(Ndp, ParsesRouterSolicitation) {
  auto r = parse(icmp_of("ndp_rs"));
  ASSERT_TRUE(r) << to_string(r.error());
  Icmpv6Repr want{.type = Icmpv6Type::RouterSolicit};
  want.ndp_options.source_lladdr = kMac1;
  EXPECT_EQ(*r, want);
}

TEST(Ndp, ParsesRouterAdvertisement) {
  auto m = icmp_of("ndp_ra");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->ra_cur_hop_limit(), 64);
  EXPECT_EQ(v->ra_router_lifetime(), 1800);
  EXPECT_EQ(v->ra_reachable_time(), 30000u);
  EXPECT_EQ(v->ra_retrans_timer(), 1000u);
  EXPECT_EQ(v->ndp_options().size(), 8u + 32 + 32 + 8);
  auto r = Icmpv6Repr::parse(*v, m.src, m.dst);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->type, Icmpv6Type::RouterAdvert);
  EXPECT_EQ(r->ra, (NdpRouterAdvert{64, true, false, 1, 1800, 30000, 1000}));
  EXPECT_EQ(r->ndp_options.source_lladdr, kMac2);
  EXPECT_FALSE(r->ndp_options.target_lladdr);
  EXPECT_EQ(r->ndp_options.mtu, 1500u);
  ASSERT_EQ(r->ndp_options.prefix_infos().size(), 2u);
  EXPECT_EQ(r->ndp_options.prefix_infos()[0], prefix(64, true, true, 86400, 14400, "2001:db8:1::"));
  EXPECT_EQ(r->ndp_options.prefix_infos()[1], prefix(48, true, false, 0xffffffff, 0, "2001:db8:2::"));
  EXPECT_EQ(r->data_len, 0);
}

// RFC 4861 4.6: unknown options (RDNSS here) are skipped; options may come in
// any order. Re-emitting writes type order, so only the repr round-trips.
TEST(Ndp, ParsesOptionsInAnyOrderAndSkipsUnknown) {
  auto m = icmp_of("ndp_ra_mixed");
  auto r = parse(m);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->ra, (NdpRouterAdvert{0, false, true, 3, 0, 0, 0}));
  EXPECT_EQ(r->ndp_options.source_lladdr, kMac2);
  EXPECT_EQ(r->ndp_options.mtu, 9000u);
  EXPECT_TRUE(r->ndp_options.prefix_infos().empty());
  std::vector<std::byte> out(r->buffer_len());
  ASSERT_TRUE(r->emit(out, m.src, m.dst));
  EXPECT_EQ(out.size(), m.bytes.size() - 24);  // the RDNSS option is gone
  auto back = parse(out, m.src, m.dst);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *r);
}

TEST(Ndp, ParsesNeighborSolicitation) {
  auto m = icmp_of("ndp_ns");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->target(), kA2);
  auto r = Icmpv6Repr::parse(*v, m.src, m.dst);
  ASSERT_TRUE(r);
  Icmpv6Repr want{.type = Icmpv6Type::NeighborSolicit, .target = kA2};
  want.ndp_options.source_lladdr = kMac1;
  EXPECT_EQ(*r, want);
}

// RFC 4862 5.4.2: duplicate address detection, from :: and without options.
TEST(Ndp, ParsesDuplicateAddressDetectionProbe) {
  auto m = icmp_of("ndp_ns_dad");
  EXPECT_TRUE(m.src.is_unspecified());
  auto r = parse(m);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(*r, (Icmpv6Repr{.type = Icmpv6Type::NeighborSolicit, .target = kA2}));
}

TEST(Ndp, ParsesNeighborAdvertisement) {
  auto m = icmp_of("ndp_na");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->na_flags(), 0x60000000u);
  auto r = Icmpv6Repr::parse(*v, m.src, m.dst);
  ASSERT_TRUE(r);
  Icmpv6Repr want{.type = Icmpv6Type::NeighborAdvert,
                  .target = kA1,
                  .na_router = false,
                  .na_solicited = true,
                  .na_override = true};
  want.ndp_options.target_lladdr = kMac1;
  EXPECT_EQ(*r, want);
}

TEST(Ndp, ParsesRedirect) {
  auto m = icmp_of("ndp_redirect");
  auto v = Icmpv6View::make(m.bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->target(), kA3);
  EXPECT_EQ(v->redirect_destination(), *Ipv6Addr::parse("2001:db8:7::7"));
  auto r = Icmpv6Repr::parse(*v, m.src, m.dst);
  ASSERT_TRUE(r);
  Icmpv6Repr want{
      .type = Icmpv6Type::Redirect, .target = kA3, .destination = *Ipv6Addr::parse("2001:db8:7::7")};
  want.ndp_options.target_lladdr = kMac2;
  EXPECT_EQ(*r, want);
  // The Redirected Header option is skipped: the same value as without it.
  auto with_header = parse(icmp_of("ndp_redirect_hdr"));
  ASSERT_TRUE(with_header) << to_string(with_header.error());
  EXPECT_EQ(*with_header, want);
}

TEST(Icmpv6, EmitsScapyReferenceByteExactly) {
  for (const char* name :
       {"icmpv6_echo_request", "icmpv6_echo_reply", "icmpv6_dest_unreach", "icmpv6_packet_too_big",
        "icmpv6_time_exceeded", "icmpv6_param_problem", "icmpv6_mld_query", "ndp_rs", "ndp_ra", "ndp_ns",
        "ndp_ns_dad", "ndp_na", "ndp_redirect"}) {
    SCOPED_TRACE(name);
    auto m = icmp_of(name);
    auto r = parse(m);
    ASSERT_TRUE(r) << to_string(r.error());
    EXPECT_EQ(r->total_len(), m.bytes.size());
    std::vector<std::byte> out(m.bytes.size());
    const std::size_t header = r->buffer_len();
    std::copy(m.bytes.begin() + static_cast<std::ptrdiff_t>(header), m.bytes.end(),
              out.begin() + static_cast<std::ptrdiff_t>(header));  // data first, then the header
    auto n = r->emit(out, m.src, m.dst);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, header);
    EXPECT_EQ(test::to_hex(out), test::to_hex(m.bytes));
  }
}

TEST(Icmpv6, RoundTrips) {
  Icmpv6Repr ra{.type = Icmpv6Type::RouterAdvert, .ra = {255, false, true, 3, 65535, 0xffffffff, 1}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(ra.ndp_options.add_prefix(prefix(static_cast<std::uint8_t>(32 * i), i % 2 == 0, true,
                                                 static_cast<std::uint32_t>(i), 7, "2001:db8:ffff::")));
  }
  ra.ndp_options.source_lladdr = kMac1;
  ra.ndp_options.target_lladdr = kMac2;
  ra.ndp_options.mtu = 0xffffffff;
  Icmpv6Repr na{.type = Icmpv6Type::NeighborAdvert, .target = kA3, .na_router = true, .na_override = true};
  Icmpv6Repr redirect{.type = Icmpv6Type::Redirect, .target = kA1, .destination = kA2};
  redirect.ndp_options.target_lladdr = kMac1;
  for (const Icmpv6Repr& r : {
           Icmpv6Repr{.type = Icmpv6Type::EchoRequest, .ident = 1, .seq = 0xffff, .data_len = 5},
           Icmpv6Repr{.type = Icmpv6Type::EchoReply, .ident = 0xffff, .seq = 0, .data_len = 0},
           Icmpv6Repr{.type = Icmpv6Type::DestUnreachable, .code = 1, .data_len = 48},
           Icmpv6Repr{.type = Icmpv6Type::PacketTooBig, .mtu = 0xffffffff, .data_len = 48},
           Icmpv6Repr{.type = Icmpv6Type::TimeExceeded, .code = 0, .data_len = 1},
           Icmpv6Repr{.type = Icmpv6Type::ParamProblem, .code = 2, .pointer = 0x12345678, .data_len = 48},
           Icmpv6Repr{
               .type = static_cast<Icmpv6Type>(200), .code = 9, .rest_of_header = 0xfeedface, .data_len = 3},
           Icmpv6Repr{.type = Icmpv6Type::RouterSolicit},
           Icmpv6Repr{.type = Icmpv6Type::NeighborSolicit, .target = kA2},
           ra,
           na,
           redirect,
       }) {
    SCOPED_TRACE(static_cast<int>(r.type));
    std::vector<std::byte> buf(r.total_len(), std::byte{0x5a});
    auto n = r.emit(buf, kA3, kA1);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, r.buffer_len());
    auto back = parse(buf, kA3, kA1);
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(*back, r);
  }
}

// ---- malformed input ----

TEST(Icmpv6, RejectsEveryTruncationOfTheHeader) {
  auto m = icmp_of("icmpv6_echo_request");
  for (std::size_t n = 0; n < Icmpv6View::kHeaderLen; ++n) {
    auto v = Icmpv6View::make(std::span(m.bytes).first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated);
  }
}

TEST(Icmpv6, RejectsOversizedMessage) {
  std::vector<std::byte> big(65536);
  big[0] = std::byte{128};
  EXPECT_EQ(Icmpv6View::make(big).error(), ParseError::BadLength);
}

// Every cut of an NDP message: inside the fixed part it is Truncated; inside
// an option it is BadOptionLength; at an option boundary it parses (fewer
// options).
TEST(Ndp, RejectsEveryTruncation) {
  for (const char* name : {"ndp_rs", "ndp_ra", "ndp_ns", "ndp_na", "ndp_redirect", "ndp_redirect_hdr"}) {
    SCOPED_TRACE(name);
    auto m = icmp_of(name);
    const auto type = static_cast<Icmpv6Type>(std::to_integer<std::uint8_t>(m.bytes[0]));
    const std::size_t fixed = Icmpv6View::fixed_len(type);
    // Option boundaries from the reference itself.
    std::vector<std::size_t> boundaries{fixed};
    for (std::size_t i = fixed; i < m.bytes.size();) {
      i += std::to_integer<std::size_t>(m.bytes[i + 1]) * 8;
      boundaries.push_back(i);
    }
    for (std::size_t n = 0; n < m.bytes.size(); ++n) {
      auto r = parse_unchecked(std::span(m.bytes).first(n));
      if (n < fixed) {
        ASSERT_FALSE(r) << n;
        EXPECT_EQ(r.error(), ParseError::Truncated) << n;
      } else if (std::find(boundaries.begin(), boundaries.end(), n) != boundaries.end()) {
        EXPECT_TRUE(r) << n;
      } else {
        ASSERT_FALSE(r) << n;
        EXPECT_EQ(r.error(), ParseError::BadOptionLength) << n;
      }
    }
  }
}

// RFC 4861 4.6: "Nodes MUST silently discard an ND packet that contains an
// option with length zero."
TEST(Ndp, RejectsOptionWithLengthZero) {
  auto m = icmp_of("ndp_ns");
  m.bytes[25] = std::byte{0};
  auto r = parse_unchecked(m.bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadOptionLength);
  // Also for an unknown option, after a good one.
  auto ra = icmp_of("ndp_ra_mixed");
  ra.bytes[24] = std::byte{99};  // the RDNSS option becomes type 99, length 0
  ra.bytes[25] = std::byte{0};
  EXPECT_EQ(parse_unchecked(ra.bytes).error(), ParseError::BadOptionLength);
}

TEST(Ndp, RejectsOptionPastTheEnd) {
  auto m = icmp_of("ndp_ns");
  m.bytes[25] = std::byte{2};  // 16 bytes claimed, 8 present
  EXPECT_EQ(parse_unchecked(m.bytes).error(), ParseError::BadOptionLength);
  auto tail = icmp_of("ndp_ns");
  tail.bytes.push_back(std::byte{1});  // a lone type byte after the last option
  EXPECT_EQ(parse_unchecked(tail.bytes).error(), ParseError::BadOptionLength);
}

TEST(Ndp, RejectsKnownOptionOfTheWrongSize) {
  {  // A link-layer address option of 16 bytes is not an Ethernet address.
    auto m = icmp_of("ndp_ns");
    m.bytes[25] = std::byte{2};
    m.bytes.resize(m.bytes.size() + 8);
    EXPECT_EQ(parse_unchecked(m.bytes).error(), ParseError::BadOption);
  }
  {  // Prefix information of 24 bytes instead of 32.
    auto opts = NdpOptions::parse(from_hex("0303 40c0 00000000 00000000 00000000 00000000 00000000"));
    ASSERT_FALSE(opts);
    EXPECT_EQ(opts.error(), ParseError::BadOption);
  }
  {  // MTU option of 16 bytes.
    auto opts = NdpOptions::parse(from_hex("0502 0000 000005dc 0000000000000000"));
    ASSERT_FALSE(opts);
    EXPECT_EQ(opts.error(), ParseError::BadOption);
  }
}

TEST(Ndp, RejectsPrefixLengthOver128) {
  auto m = icmp_of("ndp_ra");
  m.bytes[16 + 8 + 2] = std::byte{129};  // first prefix option's prefix length
  auto r = parse_unchecked(m.bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadOption);
  m.bytes[16 + 8 + 2] = std::byte{128};
  EXPECT_TRUE(parse_unchecked(m.bytes));
}

// RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1: ICMP Code is 0.
TEST(Ndp, RejectsNonZeroCode) {
  for (const char* name : {"ndp_rs", "ndp_ra", "ndp_ns", "ndp_na", "ndp_redirect"}) {
    SCOPED_TRACE(name);
    auto m = icmp_of(name);
    m.bytes[1] = std::byte{1};
    auto r = parse_unchecked(m.bytes);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ParseError::BadField);
  }
  auto echo = icmp_of("icmpv6_echo_request");
  echo.bytes[1] = std::byte{1};  // not NDP: the code is the ICMPv6 layer's business
  EXPECT_TRUE(parse_unchecked(echo.bytes));
}

// RFC 4191 2.2: Prf 10 is reserved; a receiver MUST treat it as 00 (medium)
// and a sender MUST NOT send it.
TEST(Ndp, ReadsReservedRouterPreferenceAsMediumAndNeverSendsIt) {
  auto m = icmp_of("ndp_ra");
  constexpr std::size_t kFlags = 5;  // RFC 4861 4.2: M O Prf(bits 3..4) reserved
  for (std::uint8_t prf = 0; prf < 4; ++prf) {
    SCOPED_TRACE(static_cast<int>(prf));
    auto bytes = m.bytes;
    bytes[kFlags] = (bytes[kFlags] & std::byte{0xe7}) | std::byte(prf << 3);
    auto r = parse_unchecked(bytes);
    ASSERT_TRUE(r) << to_string(r.error());
    EXPECT_EQ(r->ra.router_pref, prf == 2 ? 0 : prf);
    EXPECT_TRUE(r->ra.managed);  // the neighbouring flags are untouched
  }
  std::vector<std::byte> buf(256);
  auto reserved = Icmpv6Repr{.type = Icmpv6Type::RouterAdvert, .ra = {.router_pref = 2}}.emit(buf, kA1, kA2);
  ASSERT_FALSE(reserved);
  EXPECT_EQ(reserved.error(), ParseError::BadField);
  for (std::uint8_t prf : {0, 1, 3}) {
    Icmpv6Repr ra{.type = Icmpv6Type::RouterAdvert};
    ra.ra.router_pref = prf;
    EXPECT_TRUE(ra.emit(buf, kA1, kA2)) << static_cast<int>(prf);
  }
}

TEST(Ndp, KeepsFirstOfRepeatedOptionsAndBoundsPrefixes) {
  std::vector<std::byte> opts =
      from_hex("0101 020000000001  0101 020000000009  0501 0000 000005dc  0501 0000 00000500");
  for (int i = 0; i < 6; ++i) {
    auto p = from_hex("0304 40c0 00000001 00000002 00000000 20010db8000000000000000000000000");
    p[2] = std::byte(i);  // prefix length tells them apart
    opts.insert(opts.end(), p.begin(), p.end());
  }
  auto r = NdpOptions::parse(opts);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->source_lladdr, kMac1);
  EXPECT_EQ(r->mtu, 1500u);
  ASSERT_EQ(r->prefix_infos().size(), NdpOptions::kMaxPrefixes);
  for (std::size_t i = 0; i < NdpOptions::kMaxPrefixes; ++i) EXPECT_EQ(r->prefix_infos()[i].prefix_len, i);
  EXPECT_FALSE(r->add_prefix(NdpPrefixInfo{}));
}

TEST(Icmpv6, RejectsBadChecksumAnywhere) {
  for (const char* name : {"icmpv6_echo_request", "ndp_ra"}) {
    auto m = icmp_of(name);
    for (std::size_t i = 0; i < m.bytes.size(); ++i) {
      auto bad = m.bytes;
      bad[i] ^= std::byte{0x01};
      auto r = parse(bad, m.src, m.dst);
      ASSERT_FALSE(r) << name << " " << i;
      EXPECT_EQ(r.error(), ParseError::BadChecksum);
    }
  }
}

// RFC 4443 2.3: the checksum covers the pseudo-header too.
TEST(Icmpv6, RejectsChecksumForOtherAddresses) {
  auto m = icmp_of("ndp_ns");
  auto r = parse(m.bytes, m.src, kA3);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadChecksum);
  EXPECT_TRUE(parse(m.bytes, m.src, kA3, ChecksumMode::Ignore));
}

TEST(Icmpv6, EmitRefusesBadFields) {
  std::vector<std::byte> buf(256);
  auto code = Icmpv6Repr{.type = Icmpv6Type::NeighborSolicit, .code = 1}.emit(buf, kA1, kA2);
  ASSERT_FALSE(code);
  EXPECT_EQ(code.error(), ParseError::BadField);
  auto pref = Icmpv6Repr{.type = Icmpv6Type::RouterAdvert, .ra = {.router_pref = 4}}.emit(buf, kA1, kA2);
  ASSERT_FALSE(pref);
  EXPECT_EQ(pref.error(), ParseError::BadField);
  Icmpv6Repr ra{.type = Icmpv6Type::RouterAdvert};
  ra.ndp_options.add_prefix(prefix(129, true, true, 1, 1, "2001:db8::"));
  EXPECT_EQ(ra.emit(buf, kA1, kA2).error(), ParseError::BadField);
}

TEST(Icmpv6, EmitRefusesOversizeAndTooManyPrefixes) {
  std::vector<std::byte> buf(8);
  auto big = Icmpv6Repr{.type = Icmpv6Type::EchoRequest, .data_len = 65535}.emit(buf, kA1, kA2,
                                                                                 ChecksumMode::Ignore);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error(), ParseError::BadLength);
  Icmpv6Repr ra{.type = Icmpv6Type::RouterAdvert};
  ra.ndp_options.prefix_count = NdpOptions::kMaxPrefixes + 1;
  std::vector<std::byte> room(512);
  EXPECT_EQ(ra.emit(room, kA1, kA2).error(), ParseError::BadField);
}

TEST(Icmpv6, EmitRefusesSmallBuffer) {
  Icmpv6Repr ns{.type = Icmpv6Type::NeighborSolicit, .target = kA2};
  ns.ndp_options.source_lladdr = kMac1;
  std::vector<std::byte> small(ns.buffer_len() - 1);
  EXPECT_EQ(ns.emit(small, kA1, kA2).error(), ParseError::NoSpace);
  const Icmpv6Repr echo{.type = Icmpv6Type::EchoRequest, .data_len = 4};
  std::vector<std::byte> header_only(8);
  EXPECT_EQ(echo.emit(header_only, kA1, kA2).error(), ParseError::NoSpace);
  EXPECT_TRUE(echo.emit(header_only, kA1, kA2, ChecksumMode::Ignore));
}

}  // namespace
}  // namespace usnet::wire
