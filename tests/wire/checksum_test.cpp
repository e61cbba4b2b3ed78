#include "usnet/wire/checksum.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "support/hex.hpp"

namespace usnet::wire {
namespace {

using test::from_hex;

// RFC 1071 section 3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
TEST(Checksum, Rfc1071Example) {
  auto data = from_hex("0001f203f4f5f6f7");
  EXPECT_EQ(ones_sum(data), 0xddf2);
  EXPECT_EQ(ones_sum_naive(data), 0xddf2);
  EXPECT_EQ(internet_checksum(data), 0x220d);
}

// A real IPv4 header (checksum b861) verifies to zero and recomputes exactly.
TEST(Checksum, Ipv4HeaderVerifiesToZero) {
  auto hdr = from_hex("450000730000400040110000c0a80001c0a800c7");
  EXPECT_EQ(internet_checksum(hdr), 0xb861);
  hdr[10] = std::byte{0xb8};
  hdr[11] = std::byte{0x61};
  EXPECT_EQ(internet_checksum(hdr), 0);
}

TEST(Checksum, FastMatchesNaiveForEveryLengthAndAlignment) {
  std::mt19937 rng(1071);
  std::vector<std::byte> buf(4096 + 16);
  for (auto& b : buf) b = std::byte(rng());
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t len = 0; len <= 300; ++len) {
      std::span<const std::byte> s(buf.data() + offset, len);
      ASSERT_EQ(ones_sum(s), ones_sum_naive(s)) << "offset " << offset << " len " << len;
    }
  }
  std::span<const std::byte> big(buf.data() + 3, 4096);
  EXPECT_EQ(ones_sum(big), ones_sum_naive(big));
}

TEST(Checksum, AllOnesDataDoesNotOverflow) {
  std::vector<std::byte> ff(65536, std::byte{0xff});
  EXPECT_EQ(ones_sum(ff), ones_sum_naive(ff));
  EXPECT_EQ(ones_sum(ff), 0xffff);
}

TEST(Checksum, PiecesOfOddLengthGiveTheSameSum) {
  std::mt19937 rng(7);
  std::vector<std::byte> buf(257);
  for (auto& b : buf) b = std::byte(rng());
  for (std::size_t cut1 = 0; cut1 < buf.size(); cut1 += 13) {
    for (std::size_t cut2 = cut1; cut2 < buf.size(); cut2 += 29) {
      Checksum c;
      c.add(std::span(buf).subspan(0, cut1));
      c.add(std::span(buf).subspan(cut1, cut2 - cut1));
      c.add(std::span(buf).subspan(cut2));
      ASSERT_EQ(c.sum(), ones_sum(buf)) << cut1 << "," << cut2;
    }
  }
}

// RFC 1624 section 3's worked example: the rest of the header sums to 0xcd7a
// and a field changes from 0x5555 to 0x3285. Recomputing gives 0x0000; RFC
// 1141's formula gave 0xffff (-0 instead of +0); eqn. 3 must give 0x0000.
TEST(Checksum, Rfc1624MinusZeroExample) {
  auto data = from_hex("cd7a5555");
  EXPECT_EQ(internet_checksum(data), 0xdd2f);
  EXPECT_EQ(checksum_update16(0xdd2f, 0x5555, 0x3285), 0x0000);
  data[2] = std::byte{0x32};
  data[3] = std::byte{0x85};
  EXPECT_EQ(internet_checksum(data), 0x0000);
}

// RFC 1624: updating a checksum for a changed word equals recomputing it.
TEST(Checksum, IncrementalUpdateMatchesRecompute) {
  std::mt19937 rng(1624);
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::byte> data(40);
    for (auto& b : data) b = std::byte(rng());
    std::uint16_t before = internet_checksum(data);
    std::size_t word = (rng() % 20) * 2;
    std::uint16_t old_word = load_be16(&data[word]);
    std::uint16_t new_word = static_cast<std::uint16_t>(rng());
    store_be16(&data[word], new_word);
    ASSERT_EQ(checksum_update16(before, old_word, new_word), internet_checksum(data));
  }
}

TEST(Checksum, IncrementalUpdate32MatchesRecompute) {
  auto hdr = from_hex("450000730000400040110000c0a80001c0a800c7");
  std::uint16_t before = internet_checksum(hdr);
  Ipv4Addr old_dst{load_be32(&hdr[16])};
  Ipv4Addr new_dst = Ipv4Addr::from_octets(198, 18, 0, 2);
  new_dst.write(&hdr[16]);
  EXPECT_EQ(checksum_update32(before, old_dst.v, new_dst.v), internet_checksum(hdr));
}

TEST(Checksum, PseudoHeaderV4MatchesExplicitBytes) {
  auto src = Ipv4Addr::from_octets(198, 18, 0, 1);
  auto dst = Ipv4Addr::from_octets(198, 19, 255, 254);
  auto bytes = from_hex("c6120001c613fffe0011001c");
  EXPECT_EQ(pseudo_header_sum_v4(src, dst, 17, 28), ones_sum(bytes));
}

TEST(Checksum, PseudoHeaderV6MatchesExplicitBytes) {
  auto src = *Ipv6Addr::parse("2001:db8::1");
  auto dst = *Ipv6Addr::parse("2001:db8::ffff:2");
  auto bytes = from_hex(
      "20010db8000000000000000000000001"
      "20010db80000000000000000ffff0002"
      "0001000c0000003a");
  EXPECT_EQ(pseudo_header_sum_v6(src, dst, 58, 0x1000c), ones_sum(bytes));
}

}  // namespace
}  // namespace usnet::wire
