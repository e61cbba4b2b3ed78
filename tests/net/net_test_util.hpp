// Shared fixtures of the net/ tests: a small pool over anonymous memory, an
// interface over a MemoryLink with a fake clock, and frame builders made
// with the wire Reprs (the peer's side of the conversation).
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "usnet/link/memory_link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/wire/arp.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/icmpv4.hpp"
#include "usnet/wire/ipv4.hpp"

namespace usnet::net::test {

using namespace std::chrono_literals;
using wire::Ipv4Addr;
using wire::MacAddr;

inline const MacAddr kOurMac{{0x02, 0, 0, 0, 0, 0x02}};
inline const MacAddr kPeerMac{{0x02, 0, 0, 0, 0, 0x01}};
inline const Ipv4Addr kOurIp = Ipv4Addr::from_octets(198, 18, 0, 2);
inline const Ipv4Addr kPeerIp = Ipv4Addr::from_octets(198, 18, 0, 1);

// Anonymous page-aligned memory that outlives the pool made over it.
class PoolMemory {
 public:
  explicit PoolMemory(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    mem_ = static_cast<std::byte*>(p);
  }
  ~PoolMemory() { ::munmap(mem_, bytes_); }
  PoolMemory(const PoolMemory&) = delete;
  PoolMemory& operator=(const PoolMemory&) = delete;
  std::span<std::byte> span() const { return {mem_, bytes_}; }

 private:
  std::byte* mem_;
  std::size_t bytes_;
};

// A pool of `segments` * 32 buffers of 2048 bytes.
class TestPool {
 public:
  static constexpr std::size_t kSegmentBytes = 64 * 1024;
  explicit TestPool(std::uint32_t segments = 16) : memory_(kSegmentBytes * segments) {
    mem::PoolConfig c;
    c.buffer_size = 2048;
    c.segment_bytes = kSegmentBytes;
    c.max_segments = segments;
    auto p = mem::PacketPool::create(c, memory_.span());
    if (!p) std::abort();
    pool_.emplace(std::move(*p));
  }
  mem::OwnerId add_owner(std::uint32_t ceiling = 10000) {
    auto o = pool_->add_owner({0, ceiling});
    if (!o) std::abort();
    return *o;
  }
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }

 private:
  PoolMemory memory_;
  std::optional<mem::PacketPool> pool_;
};

inline link::LinkInfo link_info(MacAddr mac, std::uint32_t mtu = 1500, std::uint32_t offloads = 0) {
  link::LinkInfo i;
  i.offloads = offloads;
  i.name = "mem:test";
  i.mac = mac;
  i.mtu = mtu;
  return i;
}

inline InterfaceConfig default_config(Ipv4Addr addr = kOurIp, std::uint8_t prefix = 24) {
  InterfaceConfig c;
  c.addresses.push_back({addr, prefix});
  c.arp.announce_count = 0;  // tests that want announcements ask for them
  return c;
}

// One interface over one MemoryLink; the test plays the peer.
struct Host {
  explicit Host(TestPool& pool, InterfaceConfig config = default_config(), MacAddr mac = kOurMac,
                std::uint32_t mtu = 1500, std::uint32_t offloads = 0)
      : pool_(&pool), owner(pool.add_owner()), link(*pool, owner, link_info(mac, mtu, offloads)) {
    auto i = Interface::create(link, *pool, owner, config);
    EXPECT_TRUE(i);
    iface = std::move(*i);
  }
  ~Host() {
    iface.reset();
    while (link.pop_tx()) {
    }
  }
  Interface* operator->() { return iface.get(); }
  void poll() { iface->poll(now); }
  std::uint64_t drops(DropReason r) const { return iface->counters().dropped(r); }
  std::vector<std::vector<std::byte>> sent() {
    std::vector<std::vector<std::byte>> out;
    while (auto f = link.pop_tx()) out.push_back(std::move(*f));
    return out;
  }

  TestPool* pool_;
  mem::OwnerId owner;
  link::MemoryLink link;
  std::unique_ptr<Interface> iface;
  Nanos now{std::chrono::seconds(1000)};
};

inline std::vector<std::byte> eth_frame(MacAddr dst, MacAddr src, std::uint16_t type,
                                        std::span<const std::byte> payload) {
  std::vector<std::byte> f(14 + payload.size());
  wire::EthernetRepr e{dst, src, type, std::nullopt};
  (void)e.emit(f);
  if (!payload.empty()) std::memcpy(f.data() + 14, payload.data(), payload.size());
  return f;
}

inline std::vector<std::byte> arp_frame(wire::ArpOperation op, MacAddr sender_mac, Ipv4Addr sender_ip,
                                        MacAddr target_mac, Ipv4Addr target_ip,
                                        MacAddr eth_dst = MacAddr::broadcast()) {
  std::vector<std::byte> a(28);
  wire::ArpRepr r{op, sender_mac, sender_ip, target_mac, target_ip};
  (void)r.emit(a);
  return eth_frame(eth_dst, sender_mac, wire::ethertype::kArp, a);
}

struct IpParams {
  Ipv4Addr src = kPeerIp;
  Ipv4Addr dst = kOurIp;
  std::uint8_t protocol = 17;
  std::uint16_t ident = 99;
  bool mf = false;
  std::uint16_t offset = 0;
  std::uint8_t ttl = 64;
  MacAddr eth_dst = kOurMac;
};

inline std::vector<std::byte> ip_frame(const IpParams& p, std::span<const std::byte> payload) {
  std::vector<std::byte> ip(20 + payload.size());
  wire::Ipv4Repr r;
  r.src = p.src;
  r.dst = p.dst;
  r.protocol = p.protocol;
  r.ident = p.ident;
  r.more_frags = p.mf;
  r.frag_offset_bytes = p.offset;
  r.ttl = p.ttl;
  r.payload_len = static_cast<std::uint16_t>(payload.size());
  (void)r.emit(ip);
  if (!payload.empty()) std::memcpy(ip.data() + 20, payload.data(), payload.size());
  return eth_frame(p.eth_dst, kPeerMac, wire::ethertype::kIpv4, ip);
}

// An ICMP message: header from `r` (data_len set here) then `data`.
inline std::vector<std::byte> icmp_message(wire::Icmpv4Repr r, std::span<const std::byte> data) {
  std::vector<std::byte> m(8 + data.size());
  if (!data.empty()) std::memcpy(m.data() + 8, data.data(), data.size());
  r.data_len = static_cast<std::uint16_t>(data.size());
  (void)r.emit(m);
  return m;
}

inline std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed = 1) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed;
  for (auto& b : v) {
    x = x * 1103515245u + 12345u;
    b = std::byte(x >> 16);
  }
  return v;
}

// Teaches `h` the peer's MAC: an ARP request from the peer for our address.
inline void learn_peer(Host& h, MacAddr mac = kPeerMac, Ipv4Addr ip = kPeerIp) {
  h.link.inject_rx(arp_frame(wire::ArpOperation::Request, mac, ip, {}, h->addresses().front().addr));
  h.poll();
  (void)h.sent();  // the reply
}

}  // namespace usnet::net::test
