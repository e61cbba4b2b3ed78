#include "usnet/wire/icmpv4.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

constexpr std::size_t kIpv4Hdr = 20;

// The ICMP message of a reference packet (the bytes after its IPv4 header).
std::vector<std::byte> icmp_of(const char* name) {
  auto pkt = test::reference_packet("v6icmp.txt", name);
  if (pkt.size() < kIpv4Hdr) return {};
  return {pkt.begin() + kIpv4Hdr, pkt.end()};
}

std::string text(std::span<const std::byte> s) {
  std::string out;
  for (auto b : s) out.push_back(static_cast<char>(b));
  return out;
}

ParseResult<Icmpv4Repr> parse(std::span<const std::byte> msg, ChecksumMode mode = ChecksumMode::Verify) {
  auto v = Icmpv4View::make(msg);
  if (!v) return unexpected(v.error());
  return Icmpv4Repr::parse(*v, mode);
}

TEST(Icmpv4, ParsesEchoRequest) {
  auto msg = icmp_of("icmpv4_echo_request");
  auto v = Icmpv4View::make(msg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type(), Icmpv4Type::EchoRequest);
  EXPECT_EQ(v->code(), 0);
  EXPECT_EQ(v->ident(), 0x1234);
  EXPECT_EQ(v->seq(), 7);
  EXPECT_EQ(v->checksum(), 0xbfc8);
  EXPECT_TRUE(v->checksum_ok());
  EXPECT_FALSE(v->is_error());
  EXPECT_EQ(text(v->data()), "ping data 123");
  auto r = Icmpv4Repr::parse(*v);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(*r, (Icmpv4Repr{.type = Icmpv4Type::EchoRequest, .ident = 0x1234, .seq = 7, .data_len = 13}));
}

TEST(Icmpv4, ParsesEchoReply) {
  auto r = parse(icmp_of("icmpv4_echo_reply"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv4Repr{.type = Icmpv4Type::EchoReply, .ident = 0x1234, .seq = 7, .data_len = 13}));
}

// RFC 1191 4: "fragmentation needed" carries the next-hop MTU in the low 16 bits.
TEST(Icmpv4, ParsesFragmentationNeeded) {
  auto msg = icmp_of("icmpv4_frag_needed");
  auto v = Icmpv4View::make(msg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type(), Icmpv4Type::DestUnreachable);
  EXPECT_EQ(v->code(), Icmpv4UnreachCode::kFragNeeded);
  EXPECT_EQ(v->next_hop_mtu(), 1400);
  EXPECT_TRUE(v->is_error());
  // The invoking datagram: its IPv4 header (20 bytes) and UDP header.
  ASSERT_EQ(v->data().size(), 28u);
  EXPECT_EQ(v->data()[0], std::byte{0x45});
  EXPECT_EQ(test::to_hex(v->data().subspan(20, 4)), "9c40829a");  // ports 40000 -> 33434
  auto r = Icmpv4Repr::parse(*v);
  ASSERT_TRUE(r);
  EXPECT_EQ(
      *r, (Icmpv4Repr{.type = Icmpv4Type::DestUnreachable, .code = 4, .next_hop_mtu = 1400, .data_len = 28}));
}

TEST(Icmpv4, ParsesPortUnreachableWithoutMtu) {
  auto r = parse(icmp_of("icmpv4_port_unreach"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv4Repr{.type = Icmpv4Type::DestUnreachable, .code = 3, .data_len = 28}));
}

TEST(Icmpv4, ParsesTimeExceeded) {
  auto r = parse(icmp_of("icmpv4_time_exceeded"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv4Repr{.type = Icmpv4Type::TimeExceeded, .code = 0, .data_len = 28}));
}

TEST(Icmpv4, ParsesParameterProblem) {
  auto msg = icmp_of("icmpv4_param_problem");
  auto v = Icmpv4View::make(msg);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->pointer(), 20);
  auto r = Icmpv4Repr::parse(*v);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Icmpv4Repr{.type = Icmpv4Type::ParamProblem, .pointer = 20, .data_len = 28}));
}

// A type the parser does not know is a generic message, not an error.
TEST(Icmpv4, ParsesUnknownTypeAsGeneric) {
  auto r = parse(icmp_of("icmpv4_timestamp"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(static_cast<int>(r->type), 13);
  EXPECT_EQ(r->rest_of_header, 0x00550002u);
  EXPECT_EQ(r->ident, 0);  // echo fields stay zero for other types
  EXPECT_EQ(r->data_len, 12);
}

TEST(Icmpv4, EmitsScapyReferenceByteExactly) {
  for (const char* name :
       {"icmpv4_echo_request", "icmpv4_echo_reply", "icmpv4_frag_needed", "icmpv4_port_unreach",
        "icmpv4_time_exceeded", "icmpv4_param_problem", "icmpv4_timestamp"}) {
    SCOPED_TRACE(name);
    auto msg = icmp_of(name);
    auto r = parse(msg);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->total_len(), msg.size());
    std::vector<std::byte> out(msg.size());
    std::copy(msg.begin() + 8, msg.end(), out.begin() + 8);  // data first, then the header
    auto n = r->emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, r->buffer_len());
    EXPECT_EQ(test::to_hex(out), test::to_hex(msg));
  }
}

TEST(Icmpv4, RoundTrips) {
  for (const Icmpv4Repr& r : {
           Icmpv4Repr{.type = Icmpv4Type::EchoRequest, .ident = 0xffff, .seq = 1, .data_len = 3},
           Icmpv4Repr{.type = Icmpv4Type::EchoReply, .code = 0, .ident = 1, .seq = 0xffff, .data_len = 0},
           Icmpv4Repr{.type = Icmpv4Type::DestUnreachable, .code = 4, .next_hop_mtu = 576, .data_len = 28},
           Icmpv4Repr{.type = Icmpv4Type::DestUnreachable, .code = 1, .data_len = 28},
           Icmpv4Repr{.type = Icmpv4Type::TimeExceeded, .code = 1, .data_len = 9},
           Icmpv4Repr{.type = Icmpv4Type::ParamProblem, .code = 0, .pointer = 255, .data_len = 28},
           Icmpv4Repr{
               .type = static_cast<Icmpv4Type>(42), .code = 7, .rest_of_header = 0xdeadbeef, .data_len = 5},
       }) {
    std::vector<std::byte> buf(r.total_len(), std::byte{0x5a});
    ASSERT_TRUE(r.emit(buf));
    auto back = parse(buf);
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(*back, r);
  }
}

TEST(Icmpv4, RejectsEveryTruncation) {
  auto msg = icmp_of("icmpv4_echo_request");
  for (std::size_t n = 0; n < Icmpv4View::kHeaderLen; ++n) {
    auto v = Icmpv4View::make(std::span(msg).first(n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error(), ParseError::Truncated);
  }
  EXPECT_TRUE(Icmpv4View::make(std::span(msg).first(8)));
}

// No IPv4 datagram holds more than 65535 bytes.
TEST(Icmpv4, RejectsOversizedMessage) {
  std::vector<std::byte> big(65536);
  auto v = Icmpv4View::make(big);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), ParseError::BadLength);
  EXPECT_TRUE(Icmpv4View::make(std::span(big).first(65535)));
}

// RFC 792: the checksum covers the whole message; any flipped bit fails it.
TEST(Icmpv4, RejectsBadChecksumAnywhere) {
  auto msg = icmp_of("icmpv4_frag_needed");
  for (std::size_t i = 0; i < msg.size(); ++i) {
    auto bad = msg;
    bad[i] ^= std::byte{0x10};
    auto r = parse(bad);
    ASSERT_FALSE(r) << i;
    EXPECT_EQ(r.error(), ParseError::BadChecksum) << i;
    EXPECT_TRUE(parse(bad, ChecksumMode::Ignore)) << i;
  }
}

TEST(Icmpv4, IgnoreModeLeavesChecksumZero) {
  const Icmpv4Repr r{.type = Icmpv4Type::EchoRequest, .ident = 9, .seq = 9, .data_len = 4};
  std::vector<std::byte> buf(8, std::byte{0xee});  // room for the header only: fine without a checksum
  ASSERT_TRUE(r.emit(buf, ChecksumMode::Ignore));
  EXPECT_EQ(test::to_hex(buf), "0800000000090009");
}

// Unused bits are ignored on parse and written as zero.
TEST(Icmpv4, IgnoresUnusedBits) {
  auto msg = icmp_of("icmpv4_port_unreach");
  msg[6] = std::byte{0x05};  // "MTU" bytes in a code-3 message
  msg[7] = std::byte{0x78};
  auto r = parse(msg, ChecksumMode::Ignore);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->next_hop_mtu, 0);
  std::vector<std::byte> out(msg.size());
  ASSERT_TRUE(r->emit(out, ChecksumMode::Ignore));
  EXPECT_EQ(test::to_hex(std::span(out).subspan(4, 4)), "00000000");
}

TEST(Icmpv4, EmitRefusesSmallBuffer) {
  const Icmpv4Repr r{.type = Icmpv4Type::EchoRequest, .data_len = 4};
  std::vector<std::byte> header_only(8);
  auto n = r.emit(header_only);  // the checksum needs the data too
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), ParseError::NoSpace);
  std::vector<std::byte> small(7);
  EXPECT_EQ(r.emit(small, ChecksumMode::Ignore).error(), ParseError::NoSpace);
}

TEST(Icmpv4, EmitRefusesMessageOverMaximum) {
  const Icmpv4Repr r{.type = Icmpv4Type::EchoRequest, .data_len = 65535};
  std::vector<std::byte> buf(8);
  auto n = r.emit(buf, ChecksumMode::Ignore);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error(), ParseError::BadLength);
}

}  // namespace
}  // namespace usnet::wire
