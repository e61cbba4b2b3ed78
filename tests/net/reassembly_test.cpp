#include "usnet/net/reassembly.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "usnet/wire/ipv4.hpp"

namespace usnet::net {
namespace {

using namespace std::chrono_literals;
using wire::Ipv4Addr;

const Ipv4Addr kSrc = Ipv4Addr::from_octets(198, 18, 0, 1);
const Ipv4Addr kDst = Ipv4Addr::from_octets(198, 18, 0, 2);

struct Frag {
  std::vector<std::byte> bytes;
  wire::Ipv4View view() const { return *wire::Ipv4View::make(bytes); }
};

Frag fragment(std::uint16_t ident, std::uint16_t offset, std::span<const std::byte> data, bool mf,
              Ipv4Addr src = kSrc, std::uint8_t proto = 17) {
  Frag f;
  f.bytes.resize(20 + data.size());
  wire::Ipv4Repr r;
  r.src = src;
  r.dst = kDst;
  r.protocol = proto;
  r.ident = ident;
  r.more_frags = mf;
  r.frag_offset_bytes = offset;
  r.payload_len = static_cast<std::uint16_t>(data.size());
  EXPECT_TRUE(r.emit(f.bytes));
  if (!data.empty()) std::memcpy(f.bytes.data() + 20, data.data(), data.size());
  return f;
}

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 7 + i / 251) & 0xff);
  return v;
}

// Splits `data` as a sender with this MTU would (RFC 791 3.2).
std::vector<Frag> split(std::uint16_t ident, std::span<const std::byte> data, std::size_t mtu) {
  const std::size_t per = (mtu - 20) & ~std::size_t{7};
  std::vector<Frag> out;
  for (std::size_t off = 0; off < data.size(); off += per) {
    const std::size_t len = std::min(per, data.size() - off);
    out.push_back(
        fragment(ident, static_cast<std::uint16_t>(off), data.subspan(off, len), off + len < data.size()));
  }
  return out;
}

TEST(Reassembly, InOrderAndShuffledGiveTheSameBytes) {
  const auto data = pattern(8000);
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    NetCounters c;
    Reassembler r({}, c);
    auto frags = split(static_cast<std::uint16_t>(round), data, 1500);
    ASSERT_EQ(frags.size(), 6u);
    if (round > 0) std::shuffle(frags.begin(), frags.end(), rng);
    std::optional<ReassembledDatagram> done;
    for (std::size_t i = 0; i < frags.size(); ++i) {
      auto out = r.add(frags[i].view(), 0s);
      if (i + 1 < frags.size()) {
        EXPECT_FALSE(out);
      } else {
        done = std::move(out);
      }
    }
    ASSERT_TRUE(done);
    EXPECT_EQ(done->payload, data);
    EXPECT_EQ(done->key.protocol, 17);
    EXPECT_EQ(r.memory_used(), 0u);
    EXPECT_EQ(r.datagrams(), 0u);
    EXPECT_EQ(c.reassembled, 1u);
  }
}

// RFC 5722 reasoning applied to IPv4: any overlap drops the whole datagram.
TEST(Reassembly, OverlapDropsTheWholeDatagram) {
  NetCounters c;
  Reassembler r({}, c);
  const auto data = pattern(64);
  EXPECT_FALSE(r.add(fragment(1, 0, std::span(data).first(16), true).view(), 0s));
  EXPECT_FALSE(r.add(fragment(1, 8, std::span(data).subspan(8, 16), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmOverlap), 1u);
  EXPECT_EQ(r.datagrams(), 0u);
  EXPECT_EQ(r.memory_used(), 0u);
  // The rest of the datagram then starts a new one that cannot complete.
  EXPECT_FALSE(r.add(fragment(1, 24, std::span(data).subspan(24, 8), false).view(), 0s));
  EXPECT_EQ(r.datagrams(), 1u);
}

TEST(Reassembly, TeardropStyleOverlapIntoEarlierFragment) {
  NetCounters c;
  Reassembler r({}, c);
  const auto data = pattern(64);
  EXPECT_FALSE(r.add(fragment(2, 16, std::span(data).subspan(16, 16), true).view(), 0s));
  EXPECT_FALSE(r.add(fragment(2, 0, std::span(data).first(24), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmOverlap), 1u);
  EXPECT_EQ(r.memory_used(), 0u);
}

TEST(Reassembly, ExactDuplicateIsDroppedAlone) {
  NetCounters c;
  Reassembler r({}, c);
  const auto data = pattern(24);
  EXPECT_FALSE(r.add(fragment(3, 0, std::span(data).first(16), true).view(), 0s));
  EXPECT_FALSE(r.add(fragment(3, 0, std::span(data).first(16), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmDuplicate), 1u);
  auto done = r.add(fragment(3, 16, std::span(data).subspan(16), false).view(), 0s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->payload, data);
  // Same range, different bytes: an overlap, not a duplicate.
  auto other = data;
  other[3] = std::byte{0xee};
  EXPECT_FALSE(r.add(fragment(4, 0, std::span(data).first(16), true).view(), 0s));
  EXPECT_FALSE(r.add(fragment(4, 0, std::span(other).first(16), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmOverlap), 1u);
}

TEST(Reassembly, InconsistentFragmentsAreDropped) {
  NetCounters c;
  Reassembler r({}, c);
  const auto data = pattern(64);
  // RFC 791: a fragment with MF set carries a multiple of 8 bytes.
  EXPECT_FALSE(r.add(fragment(5, 0, std::span(data).first(13), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmInconsistent), 1u);
  // Two different ends.
  EXPECT_FALSE(r.add(fragment(6, 32, std::span(data).first(8), false).view(), 0s));
  EXPECT_FALSE(r.add(fragment(6, 48, std::span(data).first(8), false).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmInconsistent), 2u);
  // Data past the end already fixed.
  EXPECT_FALSE(r.add(fragment(7, 32, std::span(data).first(8), false).view(), 0s));
  EXPECT_FALSE(r.add(fragment(7, 40, std::span(data).first(8), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmInconsistent), 3u);
  EXPECT_EQ(r.memory_used(), 0u);
}

TEST(Reassembly, DatagramLongerThan65535IsDropped) {
  NetCounters c;
  Reassembler r({}, c);
  const auto data = pattern(64);
  EXPECT_FALSE(r.add(fragment(8, 65512, std::span(data).first(16), true).view(), 0s));
  EXPECT_EQ(c.dropped(DropReason::ReasmTooLong), 1u);
  EXPECT_EQ(r.datagrams(), 0u);
}

TEST(Reassembly, TimeoutFreesMemoryAndReportsFirstFragment) {
  NetCounters c;
  ReassemblyConfig cfg;
  cfg.timeout = 30s;
  Reassembler r(cfg, c);
  const auto data = pattern(32);
  EXPECT_FALSE(r.add(fragment(9, 0, std::span(data).first(16), true).view(), 10s));
  EXPECT_FALSE(r.add(fragment(10, 16, std::span(data).first(16), true).view(), 20s));
  EXPECT_GT(r.memory_used(), 0u);
  EXPECT_EQ(r.next_deadline(), 40s);
  std::vector<ExpiredDatagram> expired;
  r.poll(39s, expired);
  EXPECT_TRUE(expired.empty());
  r.poll(40s, expired);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_TRUE(expired[0].had_first);
  EXPECT_EQ(expired[0].first.len, 28u);  // header + 8 bytes (RFC 792)
  r.poll(50s, expired);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_FALSE(expired[1].had_first);
  EXPECT_EQ(r.memory_used(), 0u);
  EXPECT_EQ(c.dropped(DropReason::ReasmTimeout), 2u);
  EXPECT_EQ(r.next_deadline(), Nanos::max());
}

TEST(Reassembly, DatagramCountBound) {
  NetCounters c;
  ReassemblyConfig cfg;
  cfg.max_datagrams = 4;
  Reassembler r(cfg, c);
  const auto data = pattern(16);
  for (std::uint16_t id = 0; id < 10; ++id) (void)r.add(fragment(id, 0, data, true).view(), 0s);
  EXPECT_EQ(r.datagrams(), 4u);
  EXPECT_EQ(c.dropped(DropReason::ReasmTooManyDatagrams), 6u);
}

TEST(Reassembly, FragmentCountBound) {
  NetCounters c;
  ReassemblyConfig cfg;
  cfg.max_fragments = 8;
  Reassembler r(cfg, c);
  const auto data = pattern(8);
  for (std::uint16_t i = 0; i < 9; ++i)
    (void)r.add(fragment(1, static_cast<std::uint16_t>(i * 16), data, true).view(), 0s);
  EXPECT_EQ(c.dropped(DropReason::ReasmTooManyFragments), 1u);
  EXPECT_EQ(r.datagrams(), 0u);
}

// Issue 3: "reassembly memory stays under its bound when fed endless
// fragments". 100,000 random fragments from a few sources and idents, with
// random offsets, sizes and flags and time moving on; the bound holds after
// every one, and everything is freed at the end.
TEST(Reassembly, MemoryStaysUnderBoundUnderEndlessRandomFragments) {
  NetCounters c;
  ReassemblyConfig cfg;
  cfg.max_memory = 256 * 1024;
  cfg.max_datagrams = 32;
  cfg.timeout = 30s;
  Reassembler r(cfg, c);
  std::mt19937 rng(12345);
  const auto data = pattern(1480);
  std::vector<ExpiredDatagram> expired;
  Nanos now{0};
  std::size_t peak = 0;
  for (int i = 0; i < 100000; ++i) {
    const auto ident = static_cast<std::uint16_t>(rng() % 64);
    const auto src = Ipv4Addr{kSrc.v + static_cast<std::uint32_t>(rng() % 4)};
    const auto offset = static_cast<std::uint16_t>((rng() % 8192) * 8);
    std::size_t len = 8 * (1 + rng() % 185);
    const bool mf = rng() % 4 != 0;
    if (!mf) len -= rng() % 8;
    const auto f = fragment(ident, offset, std::span(data).first(len), mf, src);
    (void)r.add(f.view(), now);
    ASSERT_LE(r.memory_used(), cfg.max_memory) << "after fragment " << i;
    ASSERT_LE(r.datagrams(), cfg.max_datagrams);
    peak = std::max(peak, r.memory_used());
    now += 1ms;
    if (i % 100 == 0) {
      expired.clear();
      r.poll(now, expired);
    }
  }
  EXPECT_GT(peak, cfg.max_memory / 2);  // the bound was really under pressure
  EXPECT_GT(c.dropped(DropReason::ReasmMemory) + c.dropped(DropReason::ReasmTooManyDatagrams), 0u);
  r.poll(now + 31s, expired);
  EXPECT_EQ(r.memory_used(), 0u);
  EXPECT_EQ(r.datagrams(), 0u);
}

}  // namespace
}  // namespace usnet::net
