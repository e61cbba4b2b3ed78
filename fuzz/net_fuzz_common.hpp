// What the fuzz targets of the net and UDP input paths share: a small packet
// pool made once per process, the addresses of "us" and the peer, limits
// small enough that the fuzzer reaches every bound, and a check that traps.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>

#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::fuzz {

inline const wire::MacAddr kOurMac{{0x02, 0, 0, 0, 0, 0x02}};
inline const wire::MacAddr kPeerMac{{0x02, 0, 0, 0, 0, 0x01}};
inline const wire::Ipv4Addr kOurIp = wire::Ipv4Addr::from_octets(198, 18, 0, 2);

// Four 64 KiB segments of 2048-byte buffers, for the whole fuzzing run.
inline mem::PacketPool& fuzz_pool() {
  static constexpr std::size_t kSegment = 64 * 1024;
  static constexpr std::uint32_t kSegments = 4;
  static std::optional<mem::PacketPool> p;
  if (!p) {
    void* m =
        ::mmap(nullptr, kSegment * kSegments, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) std::abort();
    mem::PoolConfig c;
    c.buffer_size = 2048;
    c.segment_bytes = kSegment;
    c.max_segments = kSegments;
    auto r = mem::PacketPool::create(c, std::span(static_cast<std::byte*>(m), kSegment * kSegments));
    if (!r) std::abort();
    p.emplace(std::move(*r));
  }
  return *p;
}

// Interface limits small enough for the fuzzer to hit every bound.
inline net::InterfaceConfig small_config() {
  net::InterfaceConfig c;
  c.addresses.push_back({kOurIp, 24});
  c.arp.max_entries = 16;
  c.arp.max_queue_per_entry = 4;
  c.arp.max_queue_total = 16;
  c.arp.announce_count = 1;
  c.reassembly.max_memory = 64 * 1024;
  c.reassembly.max_datagrams = 8;
  c.reassembly.max_fragments = 32;
  return c;
}

inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace usnet::fuzz
