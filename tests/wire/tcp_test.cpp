#include "usnet/wire/tcp.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::from_hex;
using test::reference_packet;
using test::to_hex;

constexpr std::size_t kIpv4Hdr = 20, kIpv6Hdr = 40;
const auto kHostA = Ipv4Addr::from_octets(198, 18, 0, 1);
const auto kHostB = Ipv4Addr::from_octets(198, 18, 0, 2);

// Pseudo-headers of the reference packets: A -> B, B -> A, and v6 ::2 -> ::1.
PseudoHeader ph_ab() { return PseudoHeader::v4(kHostA, kHostB); }
PseudoHeader ph_ba() { return PseudoHeader::v4(kHostB, kHostA); }
PseudoHeader ph6_back() {
  return PseudoHeader::v6(*Ipv6Addr::parse("2001:db8::2"), *Ipv6Addr::parse("2001:db8::1"));
}

struct Reference {
  const char* name;
  PseudoHeader ph;
  std::size_t ip_hdr;
};

// The TCP segment of a reference packet, in a vector of exactly its size so
// that ASan flags any read past it.
std::vector<std::byte> segment(const Reference& ref) {
  auto pkt = reference_packet("tcp.txt", ref.name);
  if (pkt.size() < ref.ip_hdr) return {};
  return {pkt.begin() + static_cast<std::ptrdiff_t>(ref.ip_hdr), pkt.end()};
}

// Every reference, and those whose options are in the layout emit() writes.
std::vector<Reference> all_references() {
  return {{"ipv4_tcp_syn", ph_ab(), kIpv4Hdr},
          {"ipv6_tcp_synack", ph6_back(), kIpv6Hdr},
          {"ipv4_tcp_syn_no_ts", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_data_ts", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_ack_sack3_ts", ph_ba(), kIpv4Hdr},
          {"ipv4_tcp_unknown_option", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_eol_trailing", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_ws_over_limit", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_urgent_past_payload", ph_ab(), kIpv4Hdr},
          {"ipv4_tcp_rst", ph_ba(), kIpv4Hdr}};
}
std::vector<Reference> canonical_references() {
  auto refs = all_references();
  std::erase_if(refs, [](const Reference& r) {
    const std::string n = r.name;
    return n == "ipv4_tcp_unknown_option" || n == "ipv4_tcp_eol_trailing" || n == "ipv4_tcp_ws_over_limit";
  });
  return refs;
}

TcpRepr parse_reference(const Reference& ref) {
  auto seg = segment(ref);
  auto view = TcpView::make(seg);
  EXPECT_TRUE(view) << ref.name;
  if (!view) return {};
  auto repr = TcpRepr::parse(*view, ref.ph);
  EXPECT_TRUE(repr) << ref.name << ": " << to_string(repr.error());
  return repr ? *repr : TcpRepr{};
}

// Emits `r` with `payload` placed after the header first (the checksum
// covers it), as a caller building a segment in place does.
std::vector<std::byte> emit_segment(const TcpRepr& r, std::span<const std::byte> payload,
                                    const PseudoHeader& ph, ChecksumMode mode = ChecksumMode::Verify) {
  std::vector<std::byte> out(r.buffer_len() + payload.size());
  std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(r.buffer_len()));
  auto n = r.emit(out, ph, mode);
  EXPECT_TRUE(n) << to_string(n.error());
  if (n) {
    EXPECT_EQ(*n, r.buffer_len());
  }
  return out;
}

std::string as_text(std::span<const std::byte> b) {
  std::string s;
  for (auto x : b) s += static_cast<char>(std::to_integer<unsigned char>(x));
  return s;
}

// A 20-byte header (ports 1 -> 2, data offset 5, ACK) followed by `tail`:
// options and payload, with data offset set to cover `options_words` words.
std::vector<std::byte> header_with(std::string_view tail_hex, unsigned options_words) {
  auto seg = from_hex("0001000200000001000000025010100000000000");
  auto tail = from_hex(tail_hex);
  seg.insert(seg.end(), tail.begin(), tail.end());
  seg[TcpView::Off::kDataOffset] = std::byte{static_cast<unsigned char>((5 + options_words) << 4)};
  return seg;
}

// ---------------------------------------------------------------------------
// Scapy references, field by field.

TEST(Tcp, ParsesLinuxSyn) {
  auto seg = segment({"ipv4_tcp_syn", ph_ab(), kIpv4Hdr});
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->src_port(), 40000);
  EXPECT_EQ(v->dst_port(), 80);
  EXPECT_EQ(v->seq(), SeqNum(0x12345678));
  EXPECT_EQ(v->ack(), SeqNum(0));
  EXPECT_EQ(v->data_offset(), 10);
  EXPECT_EQ(v->header_len(), 40u);
  EXPECT_EQ(v->reserved(), 0);
  EXPECT_EQ(v->flags(), TcpFlags{TcpFlags::kSyn});
  EXPECT_EQ(v->flags().to_string(), "S");
  EXPECT_EQ(v->flags().to_tcpdump(), "[S]");
  EXPECT_EQ(v->window(), 64240);
  EXPECT_EQ(v->checksum(), 0x1e0d);
  EXPECT_EQ(v->urgent_pointer(), 0);
  EXPECT_EQ(v->options().size(), 20u);
  EXPECT_TRUE(v->payload().empty());
  EXPECT_TRUE(v->checksum_ok(ph_ab()));

  auto r = TcpRepr::parse(*v, ph_ab());
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->options.mss, 1460);
  EXPECT_TRUE(r->options.sack_permitted);
  EXPECT_EQ(r->options.timestamps, (TcpTimestamps{0xdeadbeef, 0}));
  EXPECT_EQ(r->options.window_scale, 7);
  EXPECT_EQ(r->options.sack_count, 0);
  EXPECT_EQ(r->options.unknown_count, 0);
  EXPECT_EQ(r->payload_len, 0u);
}

TEST(Tcp, ParsesSynAckOverIpv6) {
  auto r = parse_reference({"ipv6_tcp_synack", ph6_back(), kIpv6Hdr});
  EXPECT_EQ(r.src_port, 80);
  EXPECT_EQ(r.dst_port, 40000);
  EXPECT_EQ(r.seq, SeqNum(0xfffffff0));
  EXPECT_EQ(r.ack, SeqNum(0x12345679));
  EXPECT_EQ(r.flags, TcpFlags{TcpFlags::kSyn | TcpFlags::kAck});
  EXPECT_EQ(r.flags.to_string(), "SA");
  EXPECT_EQ(r.flags.to_tcpdump(), "[S.]");
  EXPECT_EQ(r.window, 65160);
  EXPECT_EQ(r.options.mss, 1440);
  EXPECT_TRUE(r.options.sack_permitted);
  EXPECT_EQ(r.options.timestamps, (TcpTimestamps{0x01020304, 0xdeadbeef}));
  EXPECT_EQ(r.options.window_scale, 10);
}

TEST(Tcp, ParsesSynWithoutTimestamps) {
  auto r = parse_reference({"ipv4_tcp_syn_no_ts", ph_ab(), kIpv4Hdr});
  EXPECT_EQ(r.options.mss, 1460);
  EXPECT_TRUE(r.options.sack_permitted);
  EXPECT_FALSE(r.options.timestamps);
  EXPECT_EQ(r.options.window_scale, 7);
  EXPECT_EQ(r.options.buffer_len(), 12u);
}

TEST(Tcp, ParsesDataSegmentWithTimestamps) {
  auto seg = segment({"ipv4_tcp_data_ts", ph_ab(), kIpv4Hdr});
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->header_len(), 32u);
  EXPECT_EQ(as_text(v->payload()), "hello, tcp\n");
  auto r = TcpRepr::parse(*v, ph_ab());
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->seq, SeqNum(0x12345679));
  EXPECT_EQ(r->ack, SeqNum(0xfffffff1));
  EXPECT_EQ(r->flags.to_string(), "PA");
  EXPECT_EQ(r->flags.to_tcpdump(), "[P.]");
  EXPECT_EQ(r->window, 502);
  EXPECT_EQ(r->options.timestamps, (TcpTimestamps{0xdeadbf00, 0x01020304}));
  EXPECT_FALSE(r->options.mss);
  EXPECT_FALSE(r->options.window_scale);
  EXPECT_FALSE(r->options.sack_permitted);
  EXPECT_EQ(r->payload_len, 11u);
}

// RFC 2018 3: three blocks fit beside a timestamp; one straddles the wrap.
TEST(Tcp, ParsesThreeSackBlocksWithTimestamps) {
  auto r = parse_reference({"ipv4_tcp_ack_sack3_ts", ph_ba(), kIpv4Hdr});
  EXPECT_EQ(r.flags.to_tcpdump(), "[.]");
  EXPECT_EQ(r.options.timestamps, (TcpTimestamps{0x01020400, 0xdeadbf00}));
  ASSERT_EQ(r.options.sack_count, 3);
  EXPECT_EQ(r.options.sacks()[0], (SackBlock{SeqNum(0x12346000), SeqNum(0x12346100)}));
  EXPECT_EQ(r.options.sacks()[1], (SackBlock{SeqNum(0xfffffff0), SeqNum(0x00000010)}));
  EXPECT_EQ(r.options.sacks()[2], (SackBlock{SeqNum(0x12345800), SeqNum(0x12345900)}));
  EXPECT_TRUE(r.options.sacks()[1].left < r.options.sacks()[1].right);
  EXPECT_EQ(distance(r.options.sacks()[1].left, r.options.sacks()[1].right), 0x20u);
  EXPECT_EQ(r.options.buffer_len(), 40u);
}

// RFC 9293 3.2, MUST-6: an unknown kind is skipped by its length.
TEST(Tcp, SkipsAndCountsUnknownOption) {
  auto r = parse_reference({"ipv4_tcp_unknown_option", ph_ab(), kIpv4Hdr});
  EXPECT_EQ(r.options.mss, 536);
  EXPECT_EQ(r.options.unknown_count, 1);
  EXPECT_FALSE(r.options.timestamps);
  EXPECT_FALSE(r.options.window_scale);
}

// RFC 9293 3.2: EOL ends the list; what follows (here a SACK of length 1,
// which would be rejected if read) is ignored.
TEST(Tcp, StopsAtEndOfOptionList) {
  auto seg = segment({"ipv4_tcp_eol_trailing", ph_ab(), kIpv4Hdr});
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  auto r = TcpRepr::parse(*v, ph_ab());
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->options.mss, 1460);
  EXPECT_EQ(r->options.sack_count, 0);
  EXPECT_EQ(r->options.unknown_count, 0);
  EXPECT_EQ(as_text(v->payload()), "data");
  EXPECT_EQ(r->payload_len, 4u);
}

// RFC 7323 2.3: a shift above 14 is used as 14; the value sent stays visible.
TEST(Tcp, ClampsWindowScaleAbove14) {
  auto r = parse_reference({"ipv4_tcp_ws_over_limit", ph_ab(), kIpv4Hdr});
  EXPECT_EQ(r.options.window_scale, 14);
  EXPECT_EQ(r.options.window_scale_over_limit, 15);
  auto at_limit = TcpOptions::parse(from_hex("0103030e"));
  ASSERT_TRUE(at_limit);
  EXPECT_EQ(at_limit->window_scale, 14);
  EXPECT_EQ(at_limit->window_scale_over_limit, 0);
  auto max = TcpOptions::parse(from_hex("010303ff"));
  ASSERT_TRUE(max);
  EXPECT_EQ(max->window_scale, 14);
  EXPECT_EQ(max->window_scale_over_limit, 255);
}

// ROBUSTNESS 9: an urgent pointer past the data parses (the TCP layer
// judges it) and nothing reads past the segment; the segment sits in a
// vector of its exact size, so ASan would report any overread.
TEST(Tcp, UrgentPointerPastPayloadParses) {
  auto seg = segment({"ipv4_tcp_urgent_past_payload", ph_ab(), kIpv4Hdr});
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  auto r = TcpRepr::parse(*v, ph_ab());
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->urgent, 1000);
  EXPECT_TRUE(r->flags.urg());
  EXPECT_EQ(r->flags.to_tcpdump(), "[P.U]");
  EXPECT_EQ(r->payload_len, 1u);
  EXPECT_EQ(v->payload().size(), 1u);
  EXPECT_EQ(v->payload().data() + v->payload().size(), seg.data() + seg.size());
}

TEST(Tcp, ParsesBareReset) {
  auto r = parse_reference({"ipv4_tcp_rst", ph_ba(), kIpv4Hdr});
  EXPECT_TRUE(r.flags.rst());
  EXPECT_EQ(r.flags.to_string(), "R");
  EXPECT_EQ(r.window, 0);
  EXPECT_EQ(r.options, TcpOptions{});
  EXPECT_EQ(r.buffer_len(), 20u);
}

// ---------------------------------------------------------------------------
// Round trips.

// Reference -> parse -> emit gives the same bytes: the option order and
// padding match what Linux sends (see the comment on TcpOptions).
TEST(Tcp, EmitsReferencesByteExactly) {
  for (const auto& ref : canonical_references()) {
    SCOPED_TRACE(ref.name);
    auto seg = segment(ref);
    auto v = TcpView::make(seg);
    ASSERT_TRUE(v);
    auto r = TcpRepr::parse(*v, ref.ph);
    ASSERT_TRUE(r) << to_string(r.error());
    EXPECT_EQ(r->buffer_len(), v->header_len());
    EXPECT_EQ(to_hex(emit_segment(*r, v->payload(), ref.ph)), to_hex(seg));
  }
}

// References whose options emit() would lay out differently: re-emitting
// gives the canonical form, which parses back to the same options (minus
// the parse-only facts).
TEST(Tcp, ReemitsNonCanonicalOptionsCanonically) {
  for (const auto& [name, expected_options_hex] :
       {std::pair{"ipv4_tcp_unknown_option", "02040218"}, std::pair{"ipv4_tcp_eol_trailing", "020405b4"},
        std::pair{"ipv4_tcp_ws_over_limit", "0103030e"}}) {
    SCOPED_TRACE(name);
    const Reference ref{name, ph_ab(), kIpv4Hdr};
    auto seg = segment(ref);
    auto v = TcpView::make(seg);
    ASSERT_TRUE(v);
    auto r = TcpRepr::parse(*v, ref.ph);
    ASSERT_TRUE(r) << to_string(r.error());
    auto out = emit_segment(*r, v->payload(), ref.ph);
    auto v2 = TcpView::make(out);
    ASSERT_TRUE(v2);
    EXPECT_EQ(to_hex(v2->options()), expected_options_hex);
    auto back = TcpRepr::parse(*v2, ref.ph);
    ASSERT_TRUE(back) << to_string(back.error());
    TcpRepr expected = *r;
    expected.options.unknown_count = 0;
    expected.options.window_scale_over_limit = 0;
    EXPECT_EQ(*back, expected);
  }
}

TcpOptions make_options(std::optional<std::uint16_t> mss, std::optional<std::uint8_t> ws, bool sack_perm,
                        std::optional<TcpTimestamps> ts, std::uint8_t sack_blocks) {
  TcpOptions o;
  o.mss = mss;
  o.window_scale = ws;
  o.sack_permitted = sack_perm;
  o.timestamps = ts;
  for (std::uint32_t i = 0; i < sack_blocks; ++i) {
    // Blocks near the wrap, one per 0x100 bytes.
    o.add_sack({SeqNum(0xfffffe00u + i * 0x100u), SeqNum(0xfffffe80u + i * 0x100u)});
  }
  return o;
}

TEST(Tcp, RoundTripsManyOptionCombinations) {
  const TcpTimestamps ts{0xfffffffe, 7};
  struct Case {
    TcpOptions options;
    std::size_t options_len;
  };
  const Case cases[] = {
      {make_options({}, {}, false, {}, 0), 0},
      {make_options(1460, {}, false, {}, 0), 4},
      {make_options({}, 0, false, {}, 0), 4},
      {make_options({}, {}, true, {}, 0), 4},
      {make_options({}, {}, false, ts, 0), 12},
      {make_options({}, {}, true, ts, 0), 12},  // SACK-perm shares the TS word
      {make_options(1460, 7, true, ts, 0), 20},
      {make_options(65535, 14, true, {}, 0), 12},
      {make_options(0, 7, false, ts, 0), 20},
      {make_options({}, {}, false, {}, 1), 12},
      {make_options({}, {}, false, {}, 4), 36},
      {make_options({}, {}, false, ts, 1), 24},
      {make_options({}, {}, false, ts, 3), 40},
      {make_options(536, 2, true, ts, 2), 40},
      {make_options(536, {}, false, {}, 4), 40},
  };
  const std::vector<PseudoHeader> phs = {ph_ab(), ph6_back()};
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    for (const auto& ph : phs) {
      for (auto mode : {ChecksumMode::Verify, ChecksumMode::Ignore}) {
        SCOPED_TRACE(testing::Message()
                     << "case " << i << (ph.family == PseudoHeader::Family::V4 ? " v4" : " v6")
                     << (mode == ChecksumMode::Verify ? " verify" : " ignore"));
        TcpRepr r;
        r.src_port = static_cast<std::uint16_t>(1000 + i);
        r.dst_port = 65535;
        r.seq = SeqNum(0xffffffff - static_cast<std::uint32_t>(i));
        r.ack = SeqNum(static_cast<std::uint32_t>(i) * 0x01010101u);
        r.flags = TcpFlags{static_cast<std::uint8_t>(0x10 | i)};
        r.window = static_cast<std::uint16_t>(0xffff - i);
        r.urgent = static_cast<std::uint16_t>(i * 3);
        r.options = cases[i].options;
        r.payload_len = static_cast<std::uint32_t>(i % 4 == 0 ? 0 : 37 * i);
        EXPECT_EQ(r.options.buffer_len(), cases[i].options_len);
        std::vector<std::byte> payload(r.payload_len);
        for (std::size_t k = 0; k < payload.size(); ++k)
          payload[k] = std::byte{static_cast<unsigned char>(k * 7)};

        auto out = emit_segment(r, payload, ph, mode);
        auto v = TcpView::make(out);
        ASSERT_TRUE(v);
        EXPECT_EQ(v->header_len(), 20 + cases[i].options_len);
        EXPECT_EQ(v->options().size() % 4, 0u);
        auto back = TcpRepr::parse(*v, ph, mode);
        ASSERT_TRUE(back) << to_string(back.error());
        EXPECT_EQ(*back, r);
        if (mode == ChecksumMode::Ignore) {
          EXPECT_EQ(v->checksum(), 0);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Malformed segments.

// Below 20 bytes: Truncated. From 20 bytes until the header the data offset
// claims: BadDataOffset. Past the header a short payload is undetectable
// without the checksum, which then fails.
TEST(Tcp, RejectsEveryTruncation) {
  for (const auto& ref : all_references()) {
    SCOPED_TRACE(ref.name);
    const auto seg = segment(ref);
    const std::size_t header_len = static_cast<std::size_t>(std::to_integer<std::uint8_t>(seg[12]) >> 4) * 4;
    for (std::size_t n = 0; n < seg.size(); ++n) {
      std::vector<std::byte> cut(seg.begin(), seg.begin() + static_cast<std::ptrdiff_t>(n));
      auto v = TcpView::make(cut);
      if (n < TcpView::kHeaderLen) {
        ASSERT_FALSE(v) << n;
        EXPECT_EQ(v.error(), ParseError::Truncated) << n;
      } else if (n < header_len) {
        ASSERT_FALSE(v) << n;
        EXPECT_EQ(v.error(), ParseError::BadDataOffset) << n;
      } else {
        ASSERT_TRUE(v) << n;
        auto r = TcpRepr::parse(*v, ref.ph);
        ASSERT_FALSE(r) << n;
        EXPECT_EQ(r.error(), ParseError::BadChecksum) << n;
      }
    }
  }
}

// RFC 9293 3.1: the header is at least five 32-bit words.
TEST(Tcp, RejectsDataOffsetBelowFive) {
  auto seg = segment({"ipv4_tcp_data_ts", ph_ab(), kIpv4Hdr});
  for (unsigned offset = 0; offset < 5; ++offset) {
    auto bad = seg;
    bad[TcpView::Off::kDataOffset] = std::byte{static_cast<unsigned char>(offset << 4)};
    auto v = TcpView::make(bad);
    ASSERT_FALSE(v) << offset;
    EXPECT_EQ(v.error(), ParseError::BadDataOffset) << offset;
  }
}

TEST(Tcp, RejectsDataOffsetPastTheSegment) {
  auto seg = segment({"ipv4_tcp_rst", ph_ba(), kIpv4Hdr});  // exactly 20 bytes
  for (unsigned offset = 6; offset < 16; ++offset) {
    auto bad = seg;
    bad[TcpView::Off::kDataOffset] = std::byte{static_cast<unsigned char>(offset << 4)};
    auto v = TcpView::make(bad);
    ASSERT_FALSE(v) << offset;
    EXPECT_EQ(v.error(), ParseError::BadDataOffset) << offset;
  }
  // 15 words over 60 bytes is fine: the whole segment is header.
  auto full = header_with(std::string(80, '1'), 10);
  ASSERT_EQ(full.size(), 60u);
  auto v = TcpView::make(full);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->options().size(), 40u);
  EXPECT_TRUE(v->payload().empty());
}

// The reserved bits are readable but not part of the Repr; emit clears them.
TEST(Tcp, IgnoresReservedBits) {
  auto seg = segment({"ipv4_tcp_rst", ph_ba(), kIpv4Hdr});
  seg[TcpView::Off::kDataOffset] |= std::byte{0x0f};
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->reserved(), 0x0f);
  EXPECT_EQ(v->data_offset(), 5);
  auto r = TcpRepr::parse(*v, ph_ba(), ChecksumMode::Ignore);
  ASSERT_TRUE(r);
  auto out = emit_segment(*r, {}, ph_ba());
  EXPECT_EQ(std::to_integer<int>(out[TcpView::Off::kDataOffset]), 0x50);
}

struct BadOptions {
  std::string hex;  // the options area, a multiple of 4 bytes
  ParseError error;
  const char* why;
};

const BadOptions kBadOptions[] = {
    {"02000000", ParseError::BadOptionLength, "length 0"},
    {"02010000", ParseError::BadOptionLength, "length 1"},
    {"fe000000", ParseError::BadOptionLength, "unknown kind, length 0"},
    {"01fe0100", ParseError::BadOptionLength, "unknown kind, length 1"},
    {"02080000", ParseError::BadOptionLength, "MSS running past the header"},
    {"0101fe0700000000", ParseError::BadOptionLength, "unknown kind running past the header"},
    {"01010102", ParseError::BadOptionLength, "kind in the last byte, no length byte"},
    {"02030501", ParseError::BadOption, "MSS length 3"},
    {"020505b400000000", ParseError::BadOption, "MSS length 5"},
    {"03040700", ParseError::BadOption, "window scale length 4"},
    {"03020000", ParseError::BadOption, "window scale length 2"},
    {"04030000", ParseError::BadOption, "SACK-permitted length 3"},
    {"080800000001000000020000", ParseError::BadOption, "timestamps length 8"},
    {"080b0000000100000002000000000000", ParseError::BadOption, "timestamps length 11"},
    {"05020000", ParseError::BadOption, "SACK with no block"},
    {"050b0000000100000002000000000000", ParseError::BadOption, "SACK length 2+8+1"},
    {"0513000000010000000200000003000000040000", ParseError::BadOption, "SACK length 2+16+1"},
    {"052a" + std::string(76, '0'), ParseError::BadOptionLength, "SACK of 5 blocks, length 42 > 40"},
};

TEST(Tcp, RejectsBadOptions) {
  for (const auto& bad : kBadOptions) {
    SCOPED_TRACE(bad.why);
    auto area = from_hex(bad.hex);
    ASSERT_EQ(area.size() % 4, 0u);
    auto o = TcpOptions::parse(area);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error(), bad.error);
    // The same through a whole segment (checksum ignored: it is not the point).
    auto seg = header_with(bad.hex, static_cast<unsigned>(area.size() / 4));
    auto v = TcpView::make(seg);
    ASSERT_TRUE(v);
    auto r = TcpRepr::parse(*v, ph_ab(), ChecksumMode::Ignore);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), bad.error);
  }
}

// RFC 2018 3: at most 4 blocks. 5 blocks (length 42) cannot fit a TCP
// header, but TcpOptions::parse checks the count itself rather than rely on
// its caller's area size.
TEST(Tcp, RejectsFiveSackBlocksEvenWhenTheyFit) {
  auto area = from_hex("052a" + std::string(80, '0'));
  ASSERT_EQ(area.size(), 42u);
  auto o = TcpOptions::parse(area);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error(), ParseError::BadOption);
  auto four =
      TcpOptions::parse(from_hex("0101"
                                 "0522" +
                                 std::string(64, '1')));
  ASSERT_TRUE(four);
  EXPECT_EQ(four->sack_count, 4);
}

TEST(Tcp, AcceptsOddOptionLayouts) {
  // Only NOPs; an EOL first with garbage after; options not 4-aligned.
  auto nops = TcpOptions::parse(from_hex("01010101"));
  ASSERT_TRUE(nops);
  EXPECT_EQ(*nops, TcpOptions{});
  auto eol = TcpOptions::parse(from_hex("00020101"));
  ASSERT_TRUE(eol);
  EXPECT_EQ(*eol, TcpOptions{});
  auto unaligned =
      TcpOptions::parse(from_hex("0402"
                                 "080a0000000100000002"
                                 "0303"
                                 "05"
                                 "020405b4"
                                 "00"));
  ASSERT_TRUE(unaligned);
  EXPECT_TRUE(unaligned->sack_permitted);
  EXPECT_EQ(unaligned->timestamps, (TcpTimestamps{1, 2}));
  EXPECT_EQ(unaligned->window_scale, 5);
  EXPECT_EQ(unaligned->mss, 1460);
  // A repeated option replaces the earlier one.
  auto twice =
      TcpOptions::parse(from_hex("02040100"
                                 "02040200"));
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->mss, 0x200);
  // Twenty unknown options of length 2 fill the 40 bytes and are counted.
  auto many = TcpOptions::parse(from_hex([] {
    std::string s;
    for (int i = 0; i < 20; ++i) s += "fd02";
    return s;
  }()));
  ASSERT_TRUE(many);
  EXPECT_EQ(many->unknown_count, 20);
}

// NOP NOP TS alone is parsed by a one-compare fast path; it must give what
// the general loop gives, and near misses must still take the loop.
TEST(Tcp, NopNopTimestampsFastPathMatchesTheGeneralLoop) {
  const TcpTimestamps ts{0xfffffffe, 7};
  auto fast = TcpOptions::parse(from_hex("0101 080a fffffffe 00000007"));
  auto loop = TcpOptions::parse(from_hex("080a fffffffe 00000007 0101"));
  ASSERT_TRUE(fast);
  ASSERT_TRUE(loop);
  EXPECT_EQ(fast->timestamps, ts);
  EXPECT_EQ(*fast, *loop);
  EXPECT_EQ(*fast, make_options({}, {}, false, ts, 0));

  auto bad_len = TcpOptions::parse(from_hex("0101 080b fffffffe 00000007"));
  ASSERT_FALSE(bad_len);
  EXPECT_EQ(bad_len.error(), ParseError::BadOptionLength);  // runs past the area
  auto short_len = TcpOptions::parse(from_hex("0101 0809 fffffffe 000000 00"));
  ASSERT_FALSE(short_len);
  EXPECT_EQ(short_len.error(), ParseError::BadOption);
  // The same 12 bytes followed by more options: the loop reads them all.
  auto longer = TcpOptions::parse(from_hex("0101 080a fffffffe 00000007 0303 0700"));
  ASSERT_TRUE(longer);
  EXPECT_EQ(longer->timestamps, ts);
  EXPECT_EQ(longer->window_scale, 7);
}

TEST(Tcp, RejectsBadChecksum) {
  const Reference ref{"ipv4_tcp_data_ts", ph_ab(), kIpv4Hdr};
  auto seg = segment(ref);
  for (std::size_t i : {std::size_t{0}, std::size_t{16}, std::size_t{25}, seg.size() - 1}) {
    auto bad = seg;
    bad[i] ^= std::byte{0x01};
    auto v = TcpView::make(bad);
    ASSERT_TRUE(v) << i;
    EXPECT_FALSE(v->checksum_ok(ref.ph)) << i;
    auto r = TcpRepr::parse(*v, ref.ph);
    ASSERT_FALSE(r) << i;
    EXPECT_EQ(r.error(), ParseError::BadChecksum) << i;
    EXPECT_TRUE(TcpRepr::parse(*v, ref.ph, ChecksumMode::Ignore)) << i;
  }
  // Right bytes, wrong pseudo-header (the reply direction).
  auto v = TcpView::make(seg);
  ASSERT_TRUE(v);
  auto r = TcpRepr::parse(*v, PseudoHeader::v4(kHostA, Ipv4Addr::from_octets(198, 19, 0, 2)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadChecksum);
}

// ---------------------------------------------------------------------------
// Emit limits.

// RFC 9293 3.1: 40 bytes of options at most. Timestamps take 12, each SACK
// block 8 after a 4-byte head: 3 blocks fit with timestamps, 4 do not.
TEST(Tcp, EmitRefusesOptionsThatDoNotFit) {
  const TcpTimestamps ts{1, 2};
  std::vector<std::byte> buf(100);
  TcpRepr r;
  r.options = make_options({}, {}, false, ts, 3);
  EXPECT_EQ(r.buffer_len(), 60u);
  EXPECT_TRUE(r.emit(buf, ph_ab()));

  r.options = make_options({}, {}, false, ts, 4);
  auto e = r.emit(buf, ph_ab());
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::BadOption);

  r.options = make_options(1460, 7, true, {}, 4);  // 4 + 4 + 4 + 36
  e = r.emit(buf, ph_ab());
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::BadOption);

  // RFC 7323 2.3: never send a shift above 14.
  r.options = make_options({}, 15, false, {}, 0);
  e = r.emit(buf, ph_ab());
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::BadOption);

  r.options = make_options({}, {}, false, {}, 4);
  EXPECT_FALSE(r.options.add_sack({}));
  r.options.sack_count = 5;  // forced past the array: refused, never read
  e = r.emit(buf, ph_ab());
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::BadOption);
}

// sack_count is a public field: a value past the array must never make
// sacks() or operator== read beyond the four blocks held.
TEST(Tcp, SacksClampsForcedCountToTheArray) {
  TcpOptions a = make_options({}, {}, false, {}, 4);
  TcpOptions b = a;
  a.sack_count = 200;
  b.sack_count = 200;
  EXPECT_EQ(a.sacks().size(), TcpOptions::kMaxSackBlocks);
  EXPECT_EQ(a.sacks().data(), a.sack_blocks.data());
  EXPECT_TRUE(a == b);
  b.sack_blocks[3].right = SeqNum(12345);
  EXPECT_FALSE(a == b);                                   // the clamped blocks are still compared
  EXPECT_FALSE(a == make_options({}, {}, false, {}, 4));  // and so is the count
}

// PseudoHeader::sum for IPv4 must equal the sum of the 12 pseudo-header
// bytes written out (RFC 9293 3.1), carries included.
TEST(Tcp, Ipv4PseudoHeaderSumMatchesTheBytesWrittenOut) {
  const std::uint32_t addrs[] = {0,           1,           0xc6120001u, 0xc6130002u,
                                 0x0000ffffu, 0xffff0000u, 0xfffffffeu, 0xffffffffu};
  for (std::uint32_t s : addrs) {
    for (std::uint32_t d : addrs) {
      for (std::uint32_t len : {0u, 20u, 0xfffeu, 0xffffu}) {
        for (std::uint8_t proto : {std::uint8_t{6}, std::uint8_t{17}, std::uint8_t{0xff}}) {
          std::byte bytes[12] = {};
          store_be32(bytes, s);
          store_be32(bytes + 4, d);
          bytes[9] = std::byte{proto};
          store_be16(bytes + 10, static_cast<std::uint16_t>(len));
          EXPECT_EQ(PseudoHeader::v4(Ipv4Addr{s}, Ipv4Addr{d}).sum(proto, len), ones_sum(bytes))
              << std::hex << s << " " << d << " " << len << " " << int{proto};
        }
      }
    }
  }
}

TEST(Tcp, EmitRefusesSmallBuffer) {
  TcpRepr r;
  r.options = make_options(1460, {}, false, {}, 0);
  r.payload_len = 10;
  for (std::size_t n : {0, 19, 20, 23}) {
    std::vector<std::byte> small(n);
    auto e = r.emit(small, ph_ab(), ChecksumMode::Ignore);
    ASSERT_FALSE(e) << n;
    EXPECT_EQ(e.error(), ParseError::NoSpace) << n;
  }
  // The header fits, but the checksum needs the payload too.
  std::vector<std::byte> header_only(24);
  EXPECT_TRUE(r.emit(header_only, ph_ab(), ChecksumMode::Ignore));
  auto e = r.emit(header_only, ph_ab(), ChecksumMode::Verify);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::NoSpace);
}

TEST(Tcp, EmitRefusesSegmentTooLongForIpv4) {
  TcpRepr r;
  r.payload_len = 0xffff - 20 + 1;
  std::vector<std::byte> buf(20);
  auto e = r.emit(buf, ph_ab(), ChecksumMode::Ignore);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ParseError::BadLength);
  // IPv6 carries a 32-bit length in its pseudo-header (jumbograms).
  EXPECT_TRUE(r.emit(buf, ph6_back(), ChecksumMode::Ignore));
}

// ---------------------------------------------------------------------------
// Flags.

TEST(TcpFlags, PrintsLikeScapyAndTcpdump) {
  EXPECT_EQ(TcpFlags{}.to_string(), "");
  EXPECT_EQ(TcpFlags{}.to_tcpdump(), "[none]");
  const TcpFlags fin_psh_ack{TcpFlags::kFin | TcpFlags::kPsh | TcpFlags::kAck};
  EXPECT_EQ(fin_psh_ack.to_string(), "FPA");
  EXPECT_EQ(fin_psh_ack.to_tcpdump(), "[FP.]");
  const TcpFlags ecn_syn{TcpFlags::kSyn | TcpFlags::kEce | TcpFlags::kCwr};
  EXPECT_EQ(ecn_syn.to_string(), "SEC");
  EXPECT_EQ(ecn_syn.to_tcpdump(), "[SEW]");
  EXPECT_EQ(TcpFlags{0xff}.to_string(), "FSRPAUEC");
  EXPECT_EQ(TcpFlags{0xff}.to_tcpdump(), "[FSRP.UEW]");
  EXPECT_EQ((TcpFlags{TcpFlags::kRst} | TcpFlags{TcpFlags::kAck}).to_tcpdump(), "[R.]");
}

TEST(TcpFlags, NamedBits) {
  const TcpFlags f{TcpFlags::kSyn | TcpFlags::kAck};
  EXPECT_TRUE(f.syn());
  EXPECT_TRUE(f.ack());
  EXPECT_FALSE(f.fin() || f.rst() || f.psh() || f.urg() || f.ece() || f.cwr());
  EXPECT_TRUE(f.has(TcpFlags::kSyn | TcpFlags::kAck));
  EXPECT_FALSE(f.has(TcpFlags::kSyn | TcpFlags::kFin));
  EXPECT_TRUE(TcpFlags{TcpFlags::kFin}.fin());
  EXPECT_TRUE(TcpFlags{TcpFlags::kRst}.rst());
  EXPECT_TRUE(TcpFlags{TcpFlags::kPsh}.psh());
  EXPECT_TRUE(TcpFlags{TcpFlags::kUrg}.urg());
  EXPECT_TRUE(TcpFlags{TcpFlags::kEce}.ece());
  EXPECT_TRUE(TcpFlags{TcpFlags::kCwr}.cwr());
}

}  // namespace
}  // namespace usnet::wire
