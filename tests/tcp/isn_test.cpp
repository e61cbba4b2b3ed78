#include "usnet/tcp/isn.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;
using wire::Ipv4Addr;
using wire::SeqNum;

SipKey key_from(std::uint8_t first) {
  SipKey k;
  for (std::size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<std::uint8_t>(first + i);
  return k;
}

std::vector<std::byte> counting_bytes(std::size_t n) {
  std::vector<std::byte> m(n);
  for (std::size_t i = 0; i < n; ++i) m[i] = std::byte(static_cast<std::uint8_t>(i));
  return m;
}

const TupleBytes kTuple =
    TupleBytes::v4(Ipv4Addr::from_octets(198, 18, 0, 1), 80, Ipv4Addr::from_octets(198, 18, 0, 2), 40000);

TupleBytes v6_tuple() {
  auto a = wire::Ipv6Addr::parse("2001:db8::1");
  auto b = wire::Ipv6Addr::parse("2001:db8::2");
  return TupleBytes::v6(*a, 80, *b, 40000);
}

// The SipHash paper, Appendix A: key 00 01 .. 0f, message 00 01 .. 0e.
TEST(SipHash, PaperTestVector) {
  const auto m = counting_bytes(15);
  EXPECT_EQ(siphash24(key_from(0), m), 0xa129ca6149be45e5ull);
}

// The reference implementation's vector for the empty message under the same
// key (bytes 31 0e 0e dd 47 db 6f 72, little-endian), which exercises the
// length-only final word.
TEST(SipHash, EmptyMessage) { EXPECT_EQ(siphash24(key_from(0), {}), 0x726fdb47dd0e0e31ull); }

TEST(SipHash, EveryLengthAndKeyMatters) {
  std::set<std::uint64_t> seen;
  for (std::size_t n = 0; n <= 64; ++n) seen.insert(siphash24(key_from(0), counting_bytes(n)));
  EXPECT_EQ(seen.size(), 65u);  // lengths 0..64: across the 8-byte word boundaries
  const auto m = counting_bytes(15);
  EXPECT_NE(siphash24(key_from(0), m), siphash24(key_from(1), m));
}

TEST(SipHash, RandomKeyFromGetrandom) {
  auto a = random_sip_key();
  auto b = random_sip_key();
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_NE(*a, *b);  // 2^-128 to fail
  EXPECT_NE(*a, SipKey{});
}

// RFC 6528 3: M ticks every 4 microseconds.
TEST(Isn, ClockTicksAt250kPerSecond) {
  EXPECT_EQ(IsnGenerator::clock(0ns), 0u);
  EXPECT_EQ(IsnGenerator::clock(3999ns), 0u);
  EXPECT_EQ(IsnGenerator::clock(4us), 1u);
  EXPECT_EQ(IsnGenerator::clock(1s), 250'000u);
  // Wraps modulo 2^32: every 2^32 * 4 us, about 4.77 hours.
  EXPECT_EQ(IsnGenerator::clock(4us * (std::int64_t{1} << 32)), 0u);
  EXPECT_EQ(IsnGenerator::clock(-1s), 0u);
}

TEST(Isn, IncreasesWithTimeAt250kPerSecond) {
  const IsnGenerator g(key_from(7));
  const Nanos t0 = 123456789s;
  const SeqNum a = g.isn(kTuple, t0);
  EXPECT_EQ(distance(a, g.isn(kTuple, t0 + 1s)), 250'000u);
  EXPECT_EQ(distance(a, g.isn(kTuple, t0 + 4us)), 1u);
  EXPECT_EQ(g.isn(kTuple, t0 + 3us), a);
  // Monotone in modular order over a minute in 1 ms steps, across any wrap.
  SeqNum prev = a;
  for (int i = 1; i <= 60'000; ++i) {
    const SeqNum s = g.isn(kTuple, t0 + 1ms * i);
    ASSERT_TRUE(s > prev);
    prev = s;
  }
  EXPECT_EQ(a, SeqNum(g.offset(kTuple)) + IsnGenerator::clock(t0));
}

TEST(Isn, VariesWithEachTupleFieldAndTheKey) {
  const IsnGenerator g(key_from(7));
  const Nanos now = 5s;
  const SeqNum base = g.isn(kTuple, now);
  TupleBytes t = kTuple;
  t.local_addr[3] ^= 1;
  EXPECT_NE(g.isn(t, now), base);
  t = kTuple;
  t.remote_addr[3] ^= 1;
  EXPECT_NE(g.isn(t, now), base);
  t = kTuple;
  t.local_port ^= 1;
  EXPECT_NE(g.isn(t, now), base);
  t = kTuple;
  t.remote_port ^= 1;
  EXPECT_NE(g.isn(t, now), base);
  // Swapping the ends is another connection.
  t = kTuple;
  std::swap(t.local_addr, t.remote_addr);
  std::swap(t.local_port, t.remote_port);
  EXPECT_NE(g.isn(t, now), base);
  EXPECT_NE(IsnGenerator(key_from(8)).isn(kTuple, now), base);
  // IPv6, and IPv4 bytes seen as a 16-byte address, are distinct tuples.
  EXPECT_NE(g.isn(v6_tuple(), now), base);
  t = kTuple;
  t.addr_len = 16;
  EXPECT_NE(g.isn(t, now), base);
  // Bytes past the address length are not part of the tuple.
  t = kTuple;
  t.local_addr[10] = 0xaa;
  EXPECT_EQ(g.isn(t, now), base);
}

// ROBUSTNESS.md item 13: ISNs from a keyed hash, not guessable. Outputs for
// adjacent tuples (next remote port, next remote address, next local port)
// at the same instant differ in about half their 32 bits on average, and
// every bit flips about half the time, over many samples.
TEST(Isn, Robustness13IsnNotGuessableAdjacentTuplesDifferInHalfTheBits) {
  auto key = random_sip_key();
  ASSERT_TRUE(key.has_value());
  for (const SipKey& k : {*key, key_from(0x40)}) {
    const IsnGenerator g(k);
    std::mt19937 rng(13);
    constexpr int kSamples = 20'000;
    std::uint64_t total_bits = 0;
    std::array<int, 32> flips{};
    for (int i = 0; i < kSamples; ++i) {
      TupleBytes a = TupleBytes::v4(Ipv4Addr{0xc6120000u | static_cast<std::uint32_t>(rng() & 0xffff)},
                                    static_cast<std::uint16_t>(rng()),
                                    Ipv4Addr{0xc6130000u | static_cast<std::uint32_t>(rng() & 0xffff)},
                                    static_cast<std::uint16_t>(rng()));
      TupleBytes b = a;
      switch (i % 3) {
        case 0:
          b.remote_port = static_cast<std::uint16_t>(a.remote_port + 1);
          break;
        case 1:
          b.remote_addr[3] = static_cast<std::uint8_t>(a.remote_addr[3] + 1);
          break;
        default:
          b.local_port = static_cast<std::uint16_t>(a.local_port + 1);
          break;
      }
      const Nanos now = 1ms * static_cast<std::int64_t>(rng());
      const std::uint32_t diff = g.isn(a, now).raw() ^ g.isn(b, now).raw();
      total_bits += static_cast<std::uint64_t>(std::popcount(diff));
      for (int bit = 0; bit < 32; ++bit) flips[bit] += static_cast<int>((diff >> bit) & 1);
    }
    // Mean of 20,000 Binomial(32, 1/2) draws: 16 with standard error 0.02.
    const double mean = static_cast<double>(total_bits) / kSamples;
    EXPECT_GT(mean, 15.8);
    EXPECT_LT(mean, 16.2);
    // Each bit: 10,000 expected, standard deviation about 71.
    for (int bit = 0; bit < 32; ++bit) {
      EXPECT_GT(flips[bit], 9'500) << "bit " << bit;
      EXPECT_LT(flips[bit], 10'500) << "bit " << bit;
    }
  }
}

SynCookies cookies(const SipKey& k = key_from(0x10), SynCookieConfig c = {}) {
  auto s = SynCookies::create(c, k);
  EXPECT_TRUE(s.has_value());
  return std::move(*s);
}

TEST(SynCookie, CreateRejectsBadConfig) {
  const SipKey k = key_from(1);
  EXPECT_FALSE(SynCookies::create({.period = 0s}, k).has_value());
  EXPECT_FALSE(SynCookies::create({.max_age = 32}, k).has_value());
  SynCookieConfig c;
  c.mss_table[3] = c.mss_table[2];
  EXPECT_FALSE(SynCookies::create(c, k).has_value());
  c = {};
  c.mss_table[0] = 0;
  EXPECT_FALSE(SynCookies::create(c, k).has_value());
  EXPECT_TRUE(SynCookies::create({.max_age = 31}, k).has_value());
}

// RFC 4987 3.6: the SYN-ACK's ISN carries the MSS; the ACK's ack - 1 gives it back.
TEST(SynCookie, RoundTripsTheMss) {
  auto s = cookies();
  const SeqNum client_isn(0xfffffff0u);
  const Nanos now = 1000s;
  struct Case {
    std::uint16_t client_mss, encoded;
  };
  for (const Case c : {Case{536, 536}, Case{1460, 1460}, Case{1459, 1452}, Case{100, 536}, Case{65535, 8960},
                       Case{1220, 1220}, Case{1300, 1300}, Case{9000, 8960}, Case{1441, 1440}}) {
    const auto ck = s.make(kTuple, client_isn, c.client_mss, now);
    EXPECT_EQ(ck.mss, c.encoded);
    // The final ACK: SEG.ACK = cookie + 1, SEG.SEQ = client ISN + 1.
    const SeqNum ack = ck.isn + 1;
    const SeqNum seq = client_isn + 1;
    EXPECT_EQ(s.check(ack - 1, kTuple, seq - 1, now), c.encoded);
  }
  // IPv6 too.
  const auto ck = s.make(v6_tuple(), client_isn, 1440, now);
  EXPECT_EQ(s.check(ck.isn, v6_tuple(), client_isn, now + 1s), 1440);
  EXPECT_EQ(s.counters().sent, 10u);
  EXPECT_EQ(s.counters().accepted, 10u);
}

TEST(SynCookie, RejectsWrongTupleIsnOrKey) {
  auto s = cookies();
  const SeqNum client_isn(12345);
  const Nanos now = 77s;
  const SeqNum ck = s.make(kTuple, client_isn, 1460, now).isn;
  ASSERT_TRUE(s.check(ck, kTuple, client_isn, now).has_value());

  std::vector<TupleBytes> wrong;
  TupleBytes t = kTuple;
  t.local_addr[3] ^= 1;
  wrong.push_back(t);
  t = kTuple;
  t.remote_addr[0] ^= 0x80;
  wrong.push_back(t);
  t = kTuple;
  t.local_port++;
  wrong.push_back(t);
  t = kTuple;
  t.remote_port--;
  wrong.push_back(t);
  wrong.push_back(v6_tuple());
  for (const auto& w : wrong) EXPECT_FALSE(s.check(ck, w, client_isn, now).has_value());
  EXPECT_FALSE(s.check(ck, kTuple, client_isn + 1, now).has_value());
  // +-1 changes only the MSS index: authenticated, so refused.
  EXPECT_FALSE(s.check(ck + 1, kTuple, client_isn, now).has_value());
  EXPECT_FALSE(s.check(ck - 1, kTuple, client_isn, now).has_value());
  auto other = cookies(key_from(0x11));
  EXPECT_FALSE(other.check(ck, kTuple, client_isn, now).has_value());
  EXPECT_EQ(s.counters().accepted, 1u);
  EXPECT_EQ(s.counters().expired + s.counters().bad_mac, 8u);
}

TEST(SynCookie, ExpiresAfterTheAllowedAge) {
  auto s = cookies();  // 64 s counts, max_age 2
  const SeqNum client_isn(999);
  const Nanos made = 64s * 1000 + 63s;  // the last second of count 1000
  const SeqNum ck = s.make(kTuple, client_isn, 1460, made).isn;
  EXPECT_TRUE(s.check(ck, kTuple, client_isn, made).has_value());
  EXPECT_TRUE(s.check(ck, kTuple, client_isn, 64s * 1001).has_value());
  EXPECT_TRUE(s.check(ck, kTuple, client_isn, 64s * 1003 - 1ns).has_value());  // count 1002: age 2
  EXPECT_FALSE(s.check(ck, kTuple, client_isn, 64s * 1003).has_value());       // count 1003: age 3
  EXPECT_EQ(s.counters().expired, 1u);
  // From the future (a clock that went back): refused.
  EXPECT_FALSE(s.check(ck, kTuple, client_isn, 64s * 999).has_value());

  // max_age 0: only the count it was made in.
  auto strict = cookies(key_from(0x10), {.max_age = 0});
  const SeqNum c2 = strict.make(kTuple, client_isn, 1460, 64s * 5).isn;
  EXPECT_TRUE(strict.check(c2, kTuple, client_isn, 64s * 6 - 1ns).has_value());
  EXPECT_FALSE(strict.check(c2, kTuple, client_isn, 64s * 6).has_value());
}

// The 5-bit count field wraps every 32 counts: a cookie made in count 31
// (field 31) is valid in counts 32 and 33 (fields 0 and 1); one made 32
// counts ago has the same field as a fresh one and is refused by its MAC.
TEST(SynCookie, TimeCounterWrapsCorrectly) {
  auto s = cookies(key_from(0x20), {.period = 1s, .max_age = 2});
  const SeqNum client_isn(0x80000000u);
  for (std::uint64_t base : {std::uint64_t{0}, std::uint64_t{32} * 1000, (std::uint64_t{1} << 30)}) {
    const Nanos made = 1s * static_cast<std::int64_t>(base + 31);
    const SeqNum ck = s.make(kTuple, client_isn, 1300, made).isn;
    EXPECT_EQ(s.check(ck, kTuple, client_isn, made + 1s), 1300);
    EXPECT_EQ(s.check(ck, kTuple, client_isn, made + 2s), 1300);
    EXPECT_FALSE(s.check(ck, kTuple, client_isn, made + 3s).has_value());
    const auto bad_mac = s.counters().bad_mac;
    EXPECT_FALSE(s.check(ck, kTuple, client_isn, made + 32s).has_value());
    EXPECT_FALSE(s.check(ck, kTuple, client_isn, made + 33s).has_value());
    EXPECT_EQ(s.counters().bad_mac, bad_mac + 2);
  }
}

// Forged cookies: random guesses for a live tuple essentially never pass
// (about 3 of 32 land in the age window, then 1 in 2^24 match the MAC).
TEST(SynCookie, RandomForgeriesAreRefused) {
  auto s = cookies();
  std::mt19937 rng(4987);
  const Nanos now = 64s * 77;
  int accepted = 0;
  for (int i = 0; i < 100'000; ++i) {
    if (s.check(SeqNum(rng()), kTuple, SeqNum(rng()), now)) ++accepted;
  }
  EXPECT_EQ(accepted, 0);
  EXPECT_EQ(s.counters().expired + s.counters().bad_mac, 100'000u);
  // Most forgeries fall outside the age window: 29 of 32.
  EXPECT_GT(s.counters().expired, 85'000u);
}

// A cookie looks like any ISN: cookies for the same tuple and time but
// different client ISNs differ in about half their bits (the count and the
// MSS index are hidden).
TEST(SynCookie, CookiesHideTheirFields) {
  auto s = cookies();
  const Nanos now = 64s * 3;
  std::uint64_t bits = 0;
  constexpr int kSamples = 5000;
  for (int i = 0; i < kSamples; ++i) {
    const auto a = s.make(kTuple, SeqNum(static_cast<std::uint32_t>(i)), 1460, now).isn.raw();
    const auto b = s.make(kTuple, SeqNum(static_cast<std::uint32_t>(i + 1)), 1460, now).isn.raw();
    bits += static_cast<std::uint64_t>(std::popcount(a ^ b));
  }
  const double mean = static_cast<double>(bits) / kSamples;
  EXPECT_GT(mean, 15.5);
  EXPECT_LT(mean, 16.5);
}

}  // namespace
}  // namespace usnet::tcp
