// Connection lookup: a fixed-capacity hash table from a TCP 4-tuple to a
// caller's value (a connection index), and a listener table with wildcard
// fallback. Issue 4: "connections found in O(1) by their 4-tuple".
//
// What. ConnTable maps FourTuple -> std::uint32_t (the caller's connection
// index, slot number, ...). ListenerTable maps (local address, local port)
// -> std::uint32_t and, on lookup, prefers an exact address over the
// family's wildcard (0.0.0.0 or ::), as a socket bound to a specific address
// is preferred over INADDR_ANY by every BSD-derived stack.
//
// Why keyed. Every segment that arrives is looked up with a tuple the peer
// chose. With an unkeyed hash, a peer who knows the function sends SYNs or
// data with tuples that all land in one bucket and turns every lookup into a
// walk of the whole table (hash flooding, as against CPython and Perl
// dictionaries in 2011). The table hashes with SipHash-1-3 (Aumasson and
// Bernstein; written here from the paper's description) under a 128-bit key
// the caller draws from a random source at create(): without the key a peer
// cannot compute where a tuple lands. SipHash-1-3 rather than 2-4: the
// attacker never sees a hash value, only timing, and 1-3 is the variant
// CPython and Rust's HashMap use for the same purpose; siphash() also takes
// the 2-4 round counts so tests check it against the paper's vectors.
//
// Representation. Open addressing with linear probing under the Robin Hood
// rule (an insert that meets an entry closer to its home slot than the new
// entry is to its own takes that slot and carries the displaced entry on), and
// backward-shift deletion: erase moves the following run back one slot, so
// there are no tombstones at all and a table that sees endless insert/erase
// churn never degrades (tombstones would lengthen probes until a rehash,
// which a fixed-capacity, no-allocation table cannot do). A lookup stops at
// the first slot whose entry is closer to home than the distance probed so
// far, so misses (the common case under a SYN flood) are as short as hits.
// Each slot keeps the 32-bit hash, so most non-matching slots are rejected
// without comparing the key.
//
// Limits and cost. create() allocates slot arrays once: the slot count is the
// smallest power of two >= 2 * max_entries (load factor <= 0.5), 50 bytes
// per slot (12 of metadata, 38 of key), so 100,000 connections cost 262,144
// slots, 13 MB. (A table sized for 65,536, the default, costs 6.5 MB.)
// insert, find and erase never allocate; expected O(1) probes. An insert
// past max_entries fails with std::errc::no_buffer_space and bumps
// insert_full. Probe lengths are reported (ConnTableStats): the largest
// displacement ever held and the exact sum over the entries held now, so a
// caller can export mean and maximum probe length as counters.
//
// Not thread-safe: one table per stack thread, like the rest of the core.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::tcp {

// A 128-bit hash key; draw it from a random source (getrandom) per stack.
struct HashKey {
  std::uint64_t k0 = 0;
  std::uint64_t k1 = 0;
};

// SipHash-c-d over `data` (little-endian words, as the paper specifies).
// Defaults to SipHash-1-3, the table's hash.
std::uint64_t siphash(const HashKey& key, std::span<const std::byte> data, int compression_rounds = 1,
                      int finalization_rounds = 3) noexcept;

enum class IpFamily : std::uint8_t { kIpv4 = 4, kIpv6 = 6 };

// An IPv4 or IPv6 address. An IPv4 address sits in the first four bytes
// (network order), the rest zero, so equal addresses have equal bytes and the
// family keeps 198.18.0.1 apart from the IPv6 address c612:1::.
struct IpAddr {
  std::array<std::uint8_t, 16> bytes{};
  IpFamily family = IpFamily::kIpv4;

  static IpAddr v4(wire::Ipv4Addr a) noexcept {
    IpAddr r;
    r.bytes[0] = static_cast<std::uint8_t>(a.v >> 24);
    r.bytes[1] = static_cast<std::uint8_t>(a.v >> 16);
    r.bytes[2] = static_cast<std::uint8_t>(a.v >> 8);
    r.bytes[3] = static_cast<std::uint8_t>(a.v);
    return r;
  }
  static IpAddr v6(const wire::Ipv6Addr& a) noexcept {
    IpAddr r;
    r.bytes = a.b;
    r.family = IpFamily::kIpv6;
    return r;
  }
  // The wildcard address of a family: 0.0.0.0 or ::.
  static IpAddr any(IpFamily f) noexcept {
    IpAddr r;
    r.family = f;
    return r;
  }
  bool is_v4() const noexcept { return family == IpFamily::kIpv4; }
  bool is_v6() const noexcept { return family == IpFamily::kIpv6; }
  bool is_unspecified() const noexcept { return bytes == std::array<std::uint8_t, 16>{}; }
  // Only meaningful when is_v4() / is_v6().
  wire::Ipv4Addr to_v4() const noexcept {
    return wire::Ipv4Addr::from_octets(bytes[0], bytes[1], bytes[2], bytes[3]);
  }
  wire::Ipv6Addr to_v6() const noexcept { return wire::Ipv6Addr{bytes}; }
  friend bool operator==(const IpAddr&, const IpAddr&) = default;
};

// A connection's identity as seen from this stack. local and remote are of
// the same family (a caller mixing them gets a key that never matches a
// packet, nothing worse).
struct FourTuple {
  IpAddr local;
  IpAddr remote;
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  friend bool operator==(const FourTuple&, const FourTuple&) = default;
};

struct ConnTableConfig {
  std::uint32_t max_entries = 65536;  // at most 2^30
  HashKey key;                        // from a random source; all-zero only in tests
};

struct ConnTableStats {
  std::uint32_t size = 0;           // entries held
  std::uint32_t slots = 0;          // slot count (power of two)
  std::uint32_t max_probe_len = 0;  // most slots a lookup of a held entry ever needed (high-water mark)
  std::uint64_t probe_len_sum = 0;  // sum over held entries of their probe length (mean = sum / size)
  std::uint64_t insert_full = 0;    // inserts refused: max_entries reached
  std::uint64_t insert_exists = 0;  // inserts refused: key already present
};

class ConnTable {
 public:
  using Value = std::uint32_t;

  // std::errc::invalid_argument if max_entries is 0 or above 2^30.
  static Expected<ConnTable, std::error_code> create(const ConnTableConfig& config);

  // O(1) expected, no allocation. Errors: no_buffer_space (full, counted in
  // insert_full), file_exists (the tuple is already there; its value is kept).
  Expected<void, std::error_code> insert(const FourTuple& key, Value value) noexcept;
  std::optional<Value> find(const FourTuple& key) const noexcept;
  // Replaces the value of a present key; false if absent.
  bool update(const FourTuple& key, Value value) noexcept;
  // Removes the key and returns its value, or nullopt if absent.
  std::optional<Value> erase(const FourTuple& key) noexcept;

  std::uint32_t size() const noexcept { return size_; }
  std::uint32_t max_entries() const noexcept { return max_entries_; }
  ConnTableStats stats() const noexcept;
  // The longest probe any held entry needs now: a walk over every slot,
  // O(slots), for tests and diagnostics only.
  std::uint32_t current_max_probe_len() const noexcept;

  // Calls f(const FourTuple&, Value) for every entry, in no useful order. f
  // must not modify the table.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (meta_[i].used) f(keys_[i], meta_[i].value);
  }

  std::uint64_t hash(const FourTuple& key) const noexcept;

 private:
  // Hot metadata apart from the keys so a probe walks 12-byte entries and
  // touches a key only when the stored hash matches.
  struct Meta {
    std::uint32_t hash = 0;  // low 32 bits of the key's hash
    Value value = 0;
    std::uint32_t used = 0;  // 0: empty slot
  };

  ConnTable() = default;
  std::uint32_t home(std::uint32_t h) const noexcept { return h & mask_; }
  std::uint32_t distance(std::uint32_t slot) const noexcept {
    return (slot - home(meta_[slot].hash)) & mask_;
  }
  std::optional<std::uint32_t> locate(const FourTuple& key, std::uint32_t h) const noexcept;

  std::vector<Meta> meta_;
  std::vector<FourTuple> keys_;
  HashKey key_;
  std::uint32_t mask_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t max_entries_ = 0;
  std::uint32_t max_probe_len_ = 0;
  std::uint64_t probe_len_sum_ = 0;
  std::uint64_t insert_full_ = 0;
  std::uint64_t insert_exists_ = 0;
};

struct ListenerTableConfig {
  std::uint32_t max_listeners = 1024;  // at most 2^20
  HashKey key;
};

struct ListenerTableStats {
  std::uint32_t size = 0;
  std::uint64_t insert_full = 0;
  std::uint64_t insert_exists = 0;
  std::uint64_t exact_hits = 0;     // lookups answered by an exact-address listener
  std::uint64_t wildcard_hits = 0;  // lookups answered by the wildcard listener
  std::uint64_t misses = 0;         // no listener: the caller answers with a RST
};

// Listening sockets by (local address, local port). A listener bound to the
// wildcard of a family (IpAddr::any) accepts segments for any local address
// of that family; one bound to an address only segments for that address.
// lookup(addr, port) tries the exact address first, then the wildcard: two
// probes of the same keyed table. An IPv6 wildcard does not accept IPv4
// segments (no IPv4-mapped dual stack; a caller wanting both binds both).
// Same representation as ConnTable (a ConnTable with port 0 / :: remote).
class ListenerTable {
 public:
  using Value = std::uint32_t;

  static Expected<ListenerTable, std::error_code> create(const ListenerTableConfig& config);

  // Errors: no_buffer_space (full), address_in_use (already listening there).
  Expected<void, std::error_code> insert(const IpAddr& local, std::uint16_t port, Value value) noexcept;
  std::optional<Value> erase(const IpAddr& local, std::uint16_t port) noexcept;
  // The listener for a segment to (local, port): exact address, else wildcard.
  std::optional<Value> lookup(const IpAddr& local, std::uint16_t port) noexcept;
  // Only an exact (address, port) registration, no fallback (for bind checks).
  std::optional<Value> find_exact(const IpAddr& local, std::uint16_t port) const noexcept;

  std::uint32_t size() const noexcept { return table_.size(); }
  ListenerTableStats stats() const noexcept;

 private:
  explicit ListenerTable(ConnTable t) : table_(std::move(t)) {}
  static FourTuple key_of(const IpAddr& local, std::uint16_t port) noexcept;

  ConnTable table_;
  std::uint64_t exact_hits_ = 0;
  std::uint64_t wildcard_hits_ = 0;
  std::uint64_t misses_ = 0;
};

}  // namespace usnet::tcp
