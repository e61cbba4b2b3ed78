// IPv4 reassembly (RFC 791 3.2, with RFC 815's idea of tracking what is
// still missing) under hard bounds on time and memory.
//
// Key: (source, destination, protocol, identification), RFC 791 3.2.
//
// Representation. Each datagram in progress is assembled into a
// std::vector<std::byte> owned by the reassembler: a fragment's payload is
// copied in at its offset and its pool buffer is freed at once, so
// fragments never pin packet buffers (the pool is shared with the receive
// path and must not be drained by a peer that never finishes a datagram).
// The completed datagram is handed to the caller as that vector (moved out,
// no second copy). Cost: one copy of every fragmented byte, and one heap
// allocation per datagram; datagrams that are not fragmented never come
// here and stay zero-copy. An 8000-byte UDP datagram over a 1500-byte MTU
// is six fragments, six copies of about 1480 bytes.
//
// Received ranges are a sorted list of [start, end) (RFC 815's holes are its
// complement); the datagram is complete when the last fragment (MF clear)
// has fixed the length and the ranges cover it.
//
// Bounds (everything a peer can grow):
//   - per datagram: header + payload <= 65535 (ReasmTooLong), at most
//     max_fragments ranges (ReasmTooManyFragments);
//   - in total: the memory charged to all datagrams (vector capacities, range
//     lists and a fixed overhead each) <= max_memory (ReasmMemory), and at
//     most max_datagrams in progress (ReasmTooManyDatagrams: the new one is
//     refused, the ones in progress keep their chance);
//   - in time: a datagram not completed `timeout` after its first fragment
//     arrived is dropped (ReasmTimeout). Default 30 s, as Linux: RFC 1122
//     3.3.2 suggests 60 to 120 s, but that is memory an attacker holds for
//     free, and a datagram that has not completed in 30 s on a LAN-class
//     path will not complete (upper layers retransmit the whole datagram
//     with a new identification anyway).
// A datagram that would pass a bound is dropped whole, memory and all: once
// one fragment is lost the rest can never complete it.
//
// Overlap. Any fragment overlapping data already held drops the whole
// datagram (ReasmOverlap). RFC 5722 says so for IPv6; the same reasoning
// applies to IPv4: overlaps have no legitimate use and are how IDS evasion
// and the Teardrop / FragmentSmack (CVE-2018-5391) attacks work. An exact
// duplicate (same range, same bytes: a link that duplicated a frame) is
// dropped alone (ReasmDuplicate), as RFC 5722 allows.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "usnet/net/drop_reason.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/ipv4.hpp"

namespace usnet::net {

using Nanos = std::chrono::nanoseconds;

struct ReassemblyConfig {
  Nanos timeout = std::chrono::seconds(30);
  std::size_t max_memory = 4u << 20;  // bytes charged across all datagrams
  std::size_t max_datagrams = 64;
  std::size_t max_fragments = 128;  // a 65535-byte datagram at MTU 576 is 117
};

struct FragmentKey {
  wire::Ipv4Addr src;
  wire::Ipv4Addr dst;
  std::uint8_t protocol = 0;
  std::uint16_t ident = 0;
  friend bool operator==(const FragmentKey&, const FragmentKey&) = default;
};

// RFC 792 and RFC 1122 3.2.2: an ICMP error quotes the IP header and the
// first 8 bytes of the datagram's payload.
struct QuotedHeader {
  std::array<std::byte, wire::Ipv4View::kMaxHeaderLen + 8> bytes{};
  std::size_t len = 0;
  std::span<const std::byte> span() const noexcept { return {bytes.data(), len}; }
  static QuotedHeader of(const wire::Ipv4View& v) noexcept;
};

struct ReassembledDatagram {
  FragmentKey key;
  std::uint8_t ttl = 0;  // of the first fragment (offset 0)
  std::uint8_t dscp = 0;
  std::uint8_t ecn = 0;
  QuotedHeader first;  // the first fragment's header and 8 payload bytes
  std::vector<std::byte> payload;
};

struct ExpiredDatagram {
  FragmentKey key;
  bool had_first = false;  // fragment 0 had arrived: RFC 792 time exceeded code 1 is due
  QuotedHeader first;
};

class Reassembler {
 public:
  static constexpr std::size_t kDatagramOverhead = 128;  // charged per datagram besides its buffers

  Reassembler(const ReassemblyConfig& config, NetCounters& counters);

  // Takes one fragment (view.is_fragment() is true, checksum already
  // checked). Returns the datagram when this fragment completed it. A drop
  // is counted with its reason; the caller frees the fragment's buffer in
  // every case (its bytes were copied).
  std::optional<ReassembledDatagram> add(const wire::Ipv4View& fragment, Nanos now);

  // Drops datagrams past their timeout; those are appended to `expired`.
  void poll(Nanos now, std::vector<ExpiredDatagram>& expired);
  Nanos next_deadline() const noexcept;

  std::size_t memory_used() const noexcept { return memory_; }
  std::size_t datagrams() const noexcept { return slots_.size(); }
  const ReassemblyConfig& config() const noexcept { return config_; }

 private:
  struct Range {
    std::uint32_t start, end;
  };
  struct InProgress {
    FragmentKey key;
    Nanos started{0};
    std::vector<std::byte> data;
    std::vector<Range> ranges;  // sorted, disjoint
    std::uint32_t total = 0;    // payload length once the last fragment arrived
    bool have_last = false;
    bool have_first = false;
    std::uint32_t received = 0;  // bytes held (ranges never overlap)
    std::uint8_t ttl = 0, dscp = 0, ecn = 0;
    QuotedHeader first;
    std::size_t charged = 0;
  };

  std::size_t charge_of(const InProgress& d) const noexcept;
  // Re-charges d after its buffers changed; false if the bound is passed.
  bool recharge(InProgress& d) noexcept;
  void remove(std::size_t i) noexcept;
  void drop(std::size_t i, DropReason why) noexcept;

  ReassemblyConfig config_;
  NetCounters* counters_;
  std::vector<InProgress> slots_;
  std::size_t memory_ = 0;
};

}  // namespace usnet::net
