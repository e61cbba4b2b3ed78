// Tests for the keyed 4-tuple table and the listener table (issue 4:
// connections found in O(1) by their 4-tuple; ROBUSTNESS.md: limits on what a
// peer can grow).
#include "usnet/tcp/conn_table.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

namespace usnet::tcp {
namespace {

using wire::Ipv4Addr;
using wire::Ipv6Addr;

constexpr HashKey kTestKey{0x0123456789abcdefull, 0xfedcba9876543210ull};

ConnTable make_table(std::uint32_t max_entries, HashKey key = kTestKey) {
  auto t = ConnTable::create(ConnTableConfig{max_entries, key});
  EXPECT_TRUE(t.has_value());
  return std::move(*t);
}

FourTuple v4_tuple(std::uint32_t remote, std::uint16_t remote_port, std::uint16_t local_port = 80) {
  FourTuple t;
  t.local = IpAddr::v4(Ipv4Addr::from_octets(198, 18, 0, 1));
  t.remote = IpAddr::v4(Ipv4Addr{remote});
  t.local_port = local_port;
  t.remote_port = remote_port;
  return t;
}

FourTuple v6_tuple(std::uint16_t last, std::uint16_t remote_port) {
  FourTuple t;
  t.local = IpAddr::v6(*Ipv6Addr::parse("2001:db8::1"));
  Ipv6Addr r = *Ipv6Addr::parse("2001:db8::");
  r.b[14] = static_cast<std::uint8_t>(last >> 8);
  r.b[15] = static_cast<std::uint8_t>(last);
  t.remote = IpAddr::v6(r);
  t.local_port = 443;
  t.remote_port = remote_port;
  return t;
}

std::vector<std::byte> counting_bytes(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i);
  return v;
}

// SipHash-2-4 against the reference vectors of the SipHash paper (key
// 00 01 .. 0f, message 00 01 .. n-1).
TEST(SipHash, ReferenceVectors24) {
  const HashKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  EXPECT_EQ(siphash(key, counting_bytes(0), 2, 4), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(siphash(key, counting_bytes(1), 2, 4), 0x74f839c593dc67fdull);
  EXPECT_EQ(siphash(key, counting_bytes(8), 2, 4), 0x93f5f5799a932462ull);
  EXPECT_EQ(siphash(key, counting_bytes(15), 2, 4), 0xa129ca6149be45e5ull);
}

// SipHash-1-3 with an all-zero key against CPython 3.11's bytes hash under
// PYTHONHASHSEED=0 (which is SipHash-1-3 with a zero key):
//   PYTHONHASHSEED=0 python3 -c 'print(hex(hash(b"a") & (2**64-1)))'
TEST(SipHash, Reference13AgainstCPython) {
  const HashKey zero{};
  auto bytes_of = [](std::string_view s) {
    std::vector<std::byte> v;
    for (char c : s) v.push_back(static_cast<std::byte>(c));
    return v;
  };
  EXPECT_EQ(siphash(zero, bytes_of("a")), 0x407448d2b89b1813ull);
  EXPECT_EQ(siphash(zero, bytes_of("abcdefgh")), 0x3f7b849c0b8e35eaull);
  EXPECT_EQ(siphash(zero, bytes_of("0123456789abcdef0123456789abcdef01234")), 0x164b9e4df8001e66ull);
}

TEST(SipHash, KeyChangesEveryHash) {
  const auto data = counting_bytes(37);
  EXPECT_NE(siphash(HashKey{1, 2}, data), siphash(HashKey{1, 3}, data));
  EXPECT_NE(siphash(HashKey{1, 2}, data), siphash(HashKey{2, 2}, data));
}

TEST(IpAddr, FamiliesStayApart) {
  const IpAddr a4 = IpAddr::v4(Ipv4Addr::from_octets(198, 18, 0, 1));
  EXPECT_TRUE(a4.is_v4());
  EXPECT_EQ(a4.to_v4(), Ipv4Addr::from_octets(198, 18, 0, 1));
  // The IPv6 address with the same leading bytes is a different address.
  Ipv6Addr same_bytes{};
  same_bytes.b[0] = 198;
  same_bytes.b[1] = 18;
  same_bytes.b[3] = 1;
  EXPECT_NE(a4, IpAddr::v6(same_bytes));
  EXPECT_TRUE(IpAddr::any(IpFamily::kIpv4).is_unspecified());
  EXPECT_TRUE(IpAddr::any(IpFamily::kIpv6).is_unspecified());
  EXPECT_NE(IpAddr::any(IpFamily::kIpv4), IpAddr::any(IpFamily::kIpv6));
  const Ipv6Addr v6 = *Ipv6Addr::parse("2001:db8::7");
  EXPECT_EQ(IpAddr::v6(v6).to_v6(), v6);
}

TEST(ConnTable, CreateRejectsBadSizes) {
  EXPECT_EQ(ConnTable::create(ConnTableConfig{0, kTestKey}).error(), std::errc::invalid_argument);
  EXPECT_EQ(ConnTable::create(ConnTableConfig{(1u << 30) + 1, kTestKey}).error(),
            std::errc::invalid_argument);
  auto t = make_table(100);
  EXPECT_EQ(t.stats().slots, 256u);  // power of two >= 2 * max_entries
}

TEST(ConnTable, InsertFindEraseIpv4) {
  auto t = make_table(16);
  const FourTuple a = v4_tuple(0xc6120002, 40000);
  const FourTuple b = v4_tuple(0xc6120002, 40001);      // differs in the remote port only
  const FourTuple c = v4_tuple(0xc6120003, 40000);      // differs in the remote address only
  const FourTuple d = v4_tuple(0xc6120002, 40000, 81);  // differs in the local port only
  ASSERT_TRUE(t.insert(a, 1));
  ASSERT_TRUE(t.insert(b, 2));
  ASSERT_TRUE(t.insert(c, 3));
  ASSERT_TRUE(t.insert(d, 4));
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.find(a), 1u);
  EXPECT_EQ(t.find(b), 2u);
  EXPECT_EQ(t.find(c), 3u);
  EXPECT_EQ(t.find(d), 4u);
  EXPECT_EQ(t.find(v4_tuple(0xc6120004, 40000)), std::nullopt);

  // A duplicate is refused and keeps the old value.
  auto dup = t.insert(a, 9);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error(), std::errc::file_exists);
  EXPECT_EQ(t.find(a), 1u);
  EXPECT_EQ(t.stats().insert_exists, 1u);

  EXPECT_TRUE(t.update(a, 7));
  EXPECT_EQ(t.find(a), 7u);
  EXPECT_FALSE(t.update(v4_tuple(1, 1), 7));

  EXPECT_EQ(t.erase(b), 2u);
  EXPECT_EQ(t.erase(b), std::nullopt);
  EXPECT_EQ(t.find(b), std::nullopt);
  EXPECT_EQ(t.find(a), 7u);
  EXPECT_EQ(t.find(c), 3u);
  EXPECT_EQ(t.size(), 3u);
  // The slot can be used again.
  ASSERT_TRUE(t.insert(b, 5));
  EXPECT_EQ(t.find(b), 5u);
}

TEST(ConnTable, Ipv6AndIpv4Together) {
  auto t = make_table(64);
  for (std::uint16_t i = 0; i < 20; ++i) ASSERT_TRUE(t.insert(v6_tuple(i, 50000), i));
  for (std::uint16_t i = 0; i < 20; ++i)
    ASSERT_TRUE(t.insert(v4_tuple(0xc6120000u + i, 50000, 443), 100u + i));
  for (std::uint16_t i = 0; i < 20; ++i) {
    EXPECT_EQ(t.find(v6_tuple(i, 50000)), i);
    EXPECT_EQ(t.find(v4_tuple(0xc6120000u + i, 50000, 443)), 100u + i);
  }
  // Addresses differing only in the last byte of 16 are told apart.
  EXPECT_EQ(t.find(v6_tuple(20, 50000)), std::nullopt);
  for (std::uint16_t i = 0; i < 20; i += 2) EXPECT_EQ(t.erase(v6_tuple(i, 50000)), i);
  for (std::uint16_t i = 0; i < 20; ++i)
    EXPECT_EQ(t.find(v6_tuple(i, 50000)), i % 2 ? std::optional<std::uint32_t>(i) : std::nullopt);
  EXPECT_EQ(t.size(), 30u);
}

TEST(ConnTable, FullTableRefusesWithAnError) {
  auto t = make_table(8);
  for (std::uint16_t i = 0; i < 8; ++i) ASSERT_TRUE(t.insert(v4_tuple(0xc6120002, i), i));
  auto r = t.insert(v4_tuple(0xc6120002, 100), 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), std::errc::no_buffer_space);
  EXPECT_EQ(t.stats().insert_full, 1u);
  EXPECT_EQ(t.find(v4_tuple(0xc6120002, 100)), std::nullopt);
  // Erasing one makes room for exactly one.
  ASSERT_TRUE(t.erase(v4_tuple(0xc6120002, 3)));
  EXPECT_TRUE(t.insert(v4_tuple(0xc6120002, 100), 100));
  EXPECT_FALSE(t.insert(v4_tuple(0xc6120002, 101), 101));
  EXPECT_EQ(t.stats().insert_full, 2u);
  for (std::uint16_t i = 0; i < 8; ++i)
    if (i != 3) {
      EXPECT_EQ(t.find(v4_tuple(0xc6120002, i)), i);
    }
}

struct TupleHash {
  std::size_t operator()(const FourTuple& t) const noexcept {
    // Reference side only; quality does not matter, correctness does.
    std::size_t h = t.local_port * 31u + t.remote_port;
    for (auto b : t.remote.bytes) h = h * 131 + b;
    for (auto b : t.local.bytes) h = h * 137 + b;
    return h ^ static_cast<std::size_t>(t.local.family);
  }
};

// Invariants a caller can check from outside: the exact probe sum matches a
// recount, and every entry is reachable.
void expect_consistent(const ConnTable& t,
                       const std::unordered_map<FourTuple, std::uint32_t, TupleHash>& ref) {
  ASSERT_EQ(t.size(), ref.size());
  std::size_t seen = 0;
  t.for_each([&](const FourTuple& k, std::uint32_t v) {
    ++seen;
    auto it = ref.find(k);
    ASSERT_NE(it, ref.end());
    EXPECT_EQ(it->second, v);
  });
  EXPECT_EQ(seen, ref.size());
  EXPECT_LE(t.current_max_probe_len(), t.stats().max_probe_len);
}

// 100,000 random operations against std::unordered_map, fixed seed. A small
// key space (both families) makes hits, misses, duplicates and a full table
// all common.
TEST(ConnTable, RandomizedAgainstUnorderedMap) {
  constexpr std::uint32_t kMax = 700;
  auto t = make_table(kMax, HashKey{42, 4242});
  std::unordered_map<FourTuple, std::uint32_t, TupleHash> ref;
  std::mt19937_64 rng(20261121);
  auto random_tuple = [&] {
    const auto r = rng();
    const auto port = static_cast<std::uint16_t>(r % 40);
    const auto host = static_cast<std::uint16_t>((r >> 8) % 30);
    return (r >> 20) & 1 ? v6_tuple(host, port) : v4_tuple(0xc6120000u + host, port);
  };
  std::uint64_t full_refusals = 0;
  for (int op = 0; op < 100000; ++op) {
    const FourTuple k = random_tuple();
    const auto value = static_cast<std::uint32_t>(rng());
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto r = t.insert(k, value);
        if (ref.contains(k)) {
          ASSERT_FALSE(r);
          ASSERT_EQ(r.error(), std::errc::file_exists);
        } else if (ref.size() >= kMax) {
          ASSERT_FALSE(r);
          ASSERT_EQ(r.error(), std::errc::no_buffer_space);
          ++full_refusals;
        } else {
          ASSERT_TRUE(r);
          ref.emplace(k, value);
        }
        break;
      }
      case 2: {
        auto it = ref.find(k);
        auto got = t.erase(k);
        if (it == ref.end()) {
          ASSERT_EQ(got, std::nullopt);
        } else {
          ASSERT_EQ(got, it->second);
          ref.erase(it);
        }
        break;
      }
      default: {
        auto it = ref.find(k);
        ASSERT_EQ(t.find(k), it == ref.end() ? std::nullopt : std::optional<std::uint32_t>(it->second));
        break;
      }
    }
    ASSERT_EQ(t.size(), ref.size());
    if (op % 10000 == 0) expect_consistent(t, ref);
  }
  expect_consistent(t, ref);
  EXPECT_GT(full_refusals, 0u);  // the run did reach the limit
  EXPECT_EQ(t.stats().insert_full, full_refusals);
}

// 100,000 connections: probes stay short. At load <= 0.5 with linear probing
// the mean successful probe is about 1.5 slots; Robin Hood keeps the longest
// one near log2(n).
TEST(ConnTable, HundredThousandEntriesKeepProbesShort) {
  constexpr std::uint32_t kN = 100000;
  auto t = make_table(kN, HashKey{0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull});
  // Sequential tuples: what a NAT or a load generator produces, and the
  // pattern a weak hash would cluster.
  for (std::uint32_t i = 0; i < kN; ++i)
    ASSERT_TRUE(t.insert(v4_tuple(0xc6120000u + (i >> 16), static_cast<std::uint16_t>(i)), i));
  ConnTableStats s = t.stats();
  EXPECT_EQ(s.size, kN);
  const double mean = static_cast<double>(s.probe_len_sum) / s.size;
  EXPECT_LT(mean, 2.0);
  EXPECT_LE(s.max_probe_len, 24u);
  RecordProperty("max_probe_len", static_cast<int>(s.max_probe_len));
  RecordProperty("mean_probe_len_x1000", static_cast<int>(mean * 1000));
  EXPECT_EQ(t.current_max_probe_len(), s.max_probe_len);
  for (std::uint32_t i = 0; i < kN; ++i)
    ASSERT_EQ(t.find(v4_tuple(0xc6120000u + (i >> 16), static_cast<std::uint16_t>(i))), i);
  // Churn: erase and re-add half; without tombstones nothing degrades.
  for (std::uint32_t i = 0; i < kN; i += 2)
    ASSERT_TRUE(t.erase(v4_tuple(0xc6120000u + (i >> 16), static_cast<std::uint16_t>(i))));
  for (std::uint32_t i = 0; i < kN; i += 2)
    ASSERT_TRUE(t.insert(v6_tuple(static_cast<std::uint16_t>(i >> 16), static_cast<std::uint16_t>(i)), i));
  s = t.stats();
  EXPECT_EQ(s.size, kN);
  EXPECT_LT(static_cast<double>(s.probe_len_sum) / s.size, 2.0);
  EXPECT_LE(t.current_max_probe_len(), 24u);
  std::uint64_t recount = 0;
  t.for_each([&](const FourTuple&, std::uint32_t) { ++recount; });
  EXPECT_EQ(recount, kN);
}

// Listener lookup prefers the exact local address, falls back to the wildcard
// of the same family, and an IPv6 wildcard does not catch IPv4.
TEST(ListenerTable, ExactBeforeWildcard) {
  auto created = ListenerTable::create(ListenerTableConfig{16, kTestKey});
  ASSERT_TRUE(created);
  ListenerTable t = std::move(*created);
  const IpAddr a1 = IpAddr::v4(Ipv4Addr::from_octets(198, 18, 0, 1));
  const IpAddr a2 = IpAddr::v4(Ipv4Addr::from_octets(198, 18, 0, 2));
  const IpAddr any4 = IpAddr::any(IpFamily::kIpv4);
  const IpAddr any6 = IpAddr::any(IpFamily::kIpv6);
  const IpAddr b1 = IpAddr::v6(*Ipv6Addr::parse("2001:db8::1"));

  ASSERT_TRUE(t.insert(any4, 80, 1));
  ASSERT_TRUE(t.insert(a1, 80, 2));
  ASSERT_TRUE(t.insert(any6, 443, 3));

  EXPECT_EQ(t.lookup(a1, 80), 2u);  // exact wins
  EXPECT_EQ(t.lookup(a2, 80), 1u);  // wildcard catches the rest
  EXPECT_EQ(t.lookup(a1, 81), std::nullopt);
  EXPECT_EQ(t.lookup(b1, 443), 3u);            // IPv6 wildcard
  EXPECT_EQ(t.lookup(a1, 443), std::nullopt);  // ... only for IPv6
  EXPECT_EQ(t.lookup(b1, 80), std::nullopt);   // and the IPv4 wildcard only for IPv4

  auto dup = t.insert(a1, 80, 9);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error(), std::errc::address_in_use);
  EXPECT_EQ(t.find_exact(a2, 80), std::nullopt);
  EXPECT_EQ(t.find_exact(any4, 80), 1u);

  // Closing the exact listener leaves the wildcard; closing the wildcard
  // leaves the exact one.
  EXPECT_EQ(t.erase(a1, 80), 2u);
  EXPECT_EQ(t.lookup(a1, 80), 1u);
  ASSERT_TRUE(t.insert(a1, 80, 2));
  EXPECT_EQ(t.erase(any4, 80), 1u);
  EXPECT_EQ(t.lookup(a1, 80), 2u);
  EXPECT_EQ(t.lookup(a2, 80), std::nullopt);

  const ListenerTableStats s = t.stats();
  EXPECT_EQ(s.size, 2u);
  EXPECT_EQ(s.exact_hits, 2u);
  EXPECT_EQ(s.wildcard_hits, 3u);
  EXPECT_EQ(s.misses, 4u);
}

TEST(ListenerTable, FullRefuses) {
  auto created = ListenerTable::create(ListenerTableConfig{2, kTestKey});
  ASSERT_TRUE(created);
  ListenerTable t = std::move(*created);
  const IpAddr any4 = IpAddr::any(IpFamily::kIpv4);
  ASSERT_TRUE(t.insert(any4, 1, 1));
  ASSERT_TRUE(t.insert(any4, 2, 2));
  auto r = t.insert(any4, 3, 3);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), std::errc::no_buffer_space);
  EXPECT_EQ(t.stats().insert_full, 1u);
  EXPECT_EQ(ListenerTable::create(ListenerTableConfig{0, kTestKey}).error(), std::errc::invalid_argument);
}

}  // namespace
}  // namespace usnet::tcp
