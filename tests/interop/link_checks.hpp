// Checks shared by the kernel interop tests of the TAP and AF_PACKET links:
// a pool for the link, sending and receiving with deadlines, ARP and ICMP
// frames built with the wire types, and the checks each link must pass
// against the kernel in a peer namespace. Every wait has a deadline.
#pragma once

#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "interop/netns.hpp"
#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/wire/arp.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/icmpv4.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::link::interop {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;
using test::PeerNamespace;

inline const wire::Ipv4Addr kUsnetIp = wire::Ipv4Addr::from_octets(198, 18, 0, 1);
inline const wire::Ipv4Addr kPeerIp = wire::Ipv4Addr::from_octets(198, 18, 0, 2);

inline Nanos now() { return std::chrono::duration_cast<Nanos>(Clock::now().time_since_epoch()); }

// A pool in its own anonymous mapping, and the owner the link works for.
class PoolHarness {
 public:
  static constexpr std::size_t kSegment = 64 * 1024;
  static constexpr std::uint32_t kSegments = 16;

  explicit PoolHarness(std::uint32_t ceiling = 256) {
    void* m =
        ::mmap(nullptr, kSegment * kSegments, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(m, MAP_FAILED);
    memory_ = static_cast<std::byte*>(m);
    auto p = mem::PacketPool::create({2048, kSegment, kSegments, std::chrono::seconds(2)},
                                     {memory_, kSegment * kSegments});
    EXPECT_TRUE(p);
    pool_.emplace(std::move(*p));
    owner_ = *pool_->add_owner({0, ceiling});
  }
  ~PoolHarness() {
    pool_.reset();
    ::munmap(memory_, kSegment * kSegments);
  }
  mem::PacketPool& pool() { return *pool_; }
  mem::OwnerId owner() const { return owner_; }

 private:
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
  mem::OwnerId owner_;
};

// Copies `frame` into a new buffer and sends it, retrying a full device
// until the deadline.
inline bool send(Link& link, PoolHarness& h, const Bytes& frame) {
  auto buf = h.pool().alloc(h.owner());
  if (!buf) return false;
  std::memcpy(h.pool().buffer(*buf).data(), frame.data(), frame.size());
  const Frame f{*buf, static_cast<std::uint32_t>(frame.size()), 0, 0};
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  while (Clock::now() < deadline) {
    if (link.tx_burst({&f, 1}, now()) == 1) {
      (void)link.tx_burst({}, now());  // a link may hold frames back for a batch (Link::tx_burst)
      return true;
    }
    pollfd p{link.wait_fd(), POLLOUT, 1};
    ::poll(&p, 1, 1);
  }
  (void)h.pool().free(h.owner(), *buf);
  return false;
}

// Receives until `handle` returns true for a frame, or the deadline. Every
// buffer is freed here; `handle` sees the bytes only.
inline bool receive_until(Link& link, PoolHarness& h, std::chrono::milliseconds timeout,
                          const std::function<bool(std::span<const std::byte>)>& handle) {
  const auto deadline = Clock::now() + timeout;
  Frame frames[32];
  bool done = false;
  while (!done && Clock::now() < deadline) {
    const std::size_t n = link.rx_burst(frames, now());
    for (std::size_t i = 0; i < n; ++i) {
      auto mem = h.pool().buffer(frames[i].buffer).subspan(frames[i].offset, frames[i].length);
      if (!done && handle(mem)) done = true;
      EXPECT_FALSE(h.pool().free(h.owner(), frames[i].buffer));
    }
    if (n == 0 && !done) {
      pollfd p{link.wait_fd(), POLLIN, 0};
      ::poll(&p, 1, 1);
    }
  }
  return done;
}

inline Bytes arp_frame(wire::ArpOperation op, wire::MacAddr eth_dst, wire::MacAddr src_mac,
                       wire::Ipv4Addr src_ip, wire::MacAddr target_mac, wire::Ipv4Addr target_ip) {
  Bytes out(14 + 28);
  const wire::EthernetRepr eth{eth_dst, src_mac, wire::ethertype::kArp, std::nullopt};
  const wire::ArpRepr arp{op, src_mac, src_ip, target_mac, target_ip};
  EXPECT_TRUE(eth.emit(out));
  EXPECT_TRUE(arp.emit(std::span(out).subspan(14)));
  return out;
}

inline std::optional<wire::ArpRepr> as_arp(std::span<const std::byte> frame) {
  auto eth = wire::EthernetView::make(frame);
  if (!eth || eth->ethertype() != wire::ethertype::kArp) return std::nullopt;
  auto v = wire::ArpView::make(eth->payload());
  if (!v) return std::nullopt;
  auto r = wire::ArpRepr::parse(*v);
  if (!r) return std::nullopt;
  return *r;
}

// Sends a request for `kPeerIp` and waits for the kernel's answer.
inline void expect_kernel_answers_arp(Link& link, PoolHarness& h, const PeerNamespace& ns) {
  const wire::MacAddr mac = link.info().mac;
  ASSERT_TRUE(send(link, h,
                   arp_frame(wire::ArpOperation::Request, wire::MacAddr::broadcast(), mac, kUsnetIp,
                             wire::MacAddr{}, kPeerIp)));
  std::optional<wire::ArpRepr> reply;
  wire::MacAddr reply_dst;
  const bool got = receive_until(link, h, std::chrono::seconds(3), [&](std::span<const std::byte> f) {
    auto a = as_arp(f);
    if (!a || a->operation != wire::ArpOperation::Reply || a->sender_ip != kPeerIp) return false;
    reply = a;
    reply_dst = wire::EthernetView::make(f)->dst();
    return true;
  });
  ASSERT_TRUE(got) << "no ARP reply from the kernel for " << kPeerIp.to_string() << " within 3 s";
  EXPECT_EQ(reply->sender_mac, ns.peer_mac());
  EXPECT_EQ(reply->target_ip, kUsnetIp);
  EXPECT_EQ(reply->target_mac, mac);
  EXPECT_EQ(reply_dst, mac);
}

// Runs the kernel's ping to usnet, answering its ARP request and its echo
// request with frames built from the wire types.
inline void expect_kernel_ping_succeeds(Link& link, PoolHarness& h, const PeerNamespace& ns) {
  const wire::MacAddr mac = link.info().mac;
  auto ping = std::async(std::launch::async, [&ns] { return ns.exec("ping -c 1 -W 3 198.18.0.1", 10); });
  bool answered_arp = false;
  bool answered_echo = false;
  const bool got = receive_until(link, h, std::chrono::seconds(5), [&](std::span<const std::byte> f) {
    auto eth = wire::EthernetView::make(f);
    if (!eth) return false;
    if (auto a = as_arp(f)) {
      if (a->operation == wire::ArpOperation::Request && a->target_ip == kUsnetIp) {
        EXPECT_TRUE(send(
            link, h,
            arp_frame(wire::ArpOperation::Reply, a->sender_mac, mac, kUsnetIp, a->sender_mac, a->sender_ip)));
        answered_arp = true;
      }
      return false;
    }
    if (eth->ethertype() != wire::ethertype::kIpv4 || eth->dst() != mac) return false;
    auto ip = wire::Ipv4View::make(eth->payload());
    if (!ip || ip->protocol() != wire::ip_protocol::kIcmp || ip->dst() != kUsnetIp) return false;
    auto ipr = wire::Ipv4Repr::parse(*ip);
    auto icmp = wire::Icmpv4View::make(ip->payload());
    if (!ipr || !icmp) return false;
    auto req = wire::Icmpv4Repr::parse(*icmp);
    if (!req || req->type != wire::Icmpv4Type::EchoRequest) return false;
    // RFC 792: the echo reply returns the identifier, sequence and data.
    wire::Icmpv4Repr rep = *req;
    rep.type = wire::Icmpv4Type::EchoReply;
    rep.code = 0;
    wire::Ipv4Repr ipo{kUsnetIp, ipr->src, wire::ip_protocol::kIcmp};
    ipo.payload_len = static_cast<std::uint16_t>(rep.total_len());
    Bytes out(14 + 20 + rep.total_len());
    std::span<std::byte> o(out);
    EXPECT_TRUE((wire::EthernetRepr{eth->src(), mac, wire::ethertype::kIpv4, std::nullopt}.emit(o)));
    EXPECT_TRUE(ipo.emit(o.subspan(14)));
    std::memcpy(out.data() + 14 + 20 + 8, icmp->data().data(), icmp->data().size());
    EXPECT_TRUE(rep.emit(o.subspan(34)));
    EXPECT_TRUE(send(link, h, out));
    answered_echo = true;
    return true;
  });
  const test::CmdResult r = ping.get();  // bounded by ping's own -W and exec's timeout
  EXPECT_TRUE(answered_arp) << "the kernel never asked for usnet's MAC";
  ASSERT_TRUE(got && answered_echo) << "no ICMP echo request reached usnet within 5 s";
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("1 received"), std::string::npos) << r.output;
}

// A frame of exactly MTU + 14 bytes: an IPv4/UDP datagram to the kernel's
// port 9 (discard, nobody listening) with a 1472-byte payload. The kernel
// checks the IP and UDP checksums before counting it in Udp NoPorts.
inline Bytes mtu_frame(wire::MacAddr src, wire::MacAddr dst) {
  constexpr std::size_t kPayload = 1472;
  Bytes out(14 + 20 + 8 + kPayload);
  std::span<std::byte> o(out);
  for (std::size_t i = 0; i < kPayload; ++i) out[42 + i] = static_cast<std::byte>(i * 7 + 3);
  EXPECT_TRUE((wire::EthernetRepr{dst, src, wire::ethertype::kIpv4, std::nullopt}.emit(o)));
  wire::Ipv4Repr ip{kUsnetIp, kPeerIp, wire::ip_protocol::kUdp};
  ip.payload_len = 8 + kPayload;
  EXPECT_TRUE(ip.emit(o.subspan(14)));
  const wire::UdpRepr udp{40000, 9, kPayload};
  EXPECT_TRUE(udp.emit(o.subspan(34), wire::PseudoHeader::v4(kUsnetIp, kPeerIp)));
  return out;
}

inline std::uint64_t udp_no_ports(const PeerNamespace& ns) {
  // /proc/net/snmp: a "Udp:" header line of names, then a "Udp:" line of values.
  auto r = ns.exec(
      "awk '/^Udp:/ {n++; if (n == 1) for (i = 2; i <= NF; i++) if ($i == \"NoPorts\") c = i; "
      "if (n == 2) print $c}' /proc/net/snmp");
  return std::strtoull(r.output.c_str(), nullptr, 10);
}

inline std::uint64_t peer_rx_bytes(const PeerNamespace& ns) {
  auto r = ns.exec("cat /sys/class/net/" + ns.peer_if() + "/statistics/rx_bytes");
  return std::strtoull(r.output.c_str(), nullptr, 10);
}

inline void expect_kernel_counts_mtu_frame(Link& link, PoolHarness& h, const PeerNamespace& ns) {
  ASSERT_EQ(link.info().mtu, 1500u);
  // Learn the kernel's MAC first so the frame is addressed to it.
  const wire::MacAddr peer = ns.peer_mac();
  const std::uint64_t no_ports = udp_no_ports(ns);
  const std::uint64_t rx_bytes = peer_rx_bytes(ns);
  const Bytes frame = mtu_frame(link.info().mac, peer);
  ASSERT_EQ(frame.size(), 1514u);
  ASSERT_TRUE(send(link, h, frame));
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (udp_no_ports(ns) == no_ports && Clock::now() < deadline) ::usleep(10000);
  EXPECT_EQ(udp_no_ports(ns), no_ports + 1) << "the kernel did not take the 1514-byte datagram";
  EXPECT_GE(peer_rx_bytes(ns), rx_bytes + 1514);
  // Drain what the kernel sent back (its ARP request, port unreachable).
  receive_until(link, h, std::chrono::milliseconds(50), [](auto) { return false; });
}

// The pool refuses (the owner's ceiling is one buffer, held here): the
// kernel's ARP reply must wait (in the TAP's queue, or in the AF_PACKET
// ring), be counted as rx_no_buffer, and arrive once a buffer is free.
// `h` must have been made with a ceiling of 1.
inline void expect_frame_waits_for_a_buffer(Link& link, PoolHarness& h) {
  ASSERT_TRUE(send(link, h,
                   arp_frame(wire::ArpOperation::Request, wire::MacAddr::broadcast(), link.info().mac,
                             kUsnetIp, wire::MacAddr{}, kPeerIp)));
  auto held = h.pool().alloc(h.owner());
  ASSERT_TRUE(held);
  ASSERT_FALSE(h.pool().alloc(h.owner())) << "the owner should be at its ceiling";
  pollfd p{link.wait_fd(), POLLIN, 0};
  if (::poll(&p, 1, 3000) != 1) {
    (void)h.pool().free(h.owner(), *held);
    FAIL() << "nothing from the kernel within 3 s";
  }
  Frame out[8];
  EXPECT_EQ(link.rx_burst(out, now()), 0u);
  EXPECT_GE(link.counters().rx_no_buffer, 1u);
  EXPECT_EQ(link.counters().rx_frames, 0u);
  ASSERT_FALSE(h.pool().free(h.owner(), *held));
  const bool got = receive_until(link, h, std::chrono::seconds(3), [](std::span<const std::byte> f) {
    auto a = as_arp(f);
    return a && a->operation == wire::ArpOperation::Reply && a->sender_ip == kPeerIp;
  });
  EXPECT_TRUE(got) << "the ARP reply left waiting never arrived";
  EXPECT_EQ(h.pool().in_use(), 0u);
}

// No answer: the wait ends at its deadline, it does not hang.
inline void expect_silence_is_bounded(Link& link, PoolHarness& h) {
  const wire::Ipv4Addr nobody = wire::Ipv4Addr::from_octets(198, 18, 0, 3);
  ASSERT_TRUE(send(link, h,
                   arp_frame(wire::ArpOperation::Request, wire::MacAddr::broadcast(), link.info().mac,
                             kUsnetIp, wire::MacAddr{}, nobody)));
  const auto start = Clock::now();
  const bool got = receive_until(link, h, std::chrono::milliseconds(500), [&](std::span<const std::byte> f) {
    auto a = as_arp(f);
    return a && a->operation == wire::ArpOperation::Reply && a->sender_ip == nobody;
  });
  const auto took = Clock::now() - start;
  EXPECT_FALSE(got);
  EXPECT_GE(took, std::chrono::milliseconds(500));
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

// IEEE 802.1Q: a tagged frame from the kernel's side reaches usnet with its
// tag in the frame. On veth the kernel takes the tag out of the frame before
// packet sockets see it (skb_vlan_untag), so this checks that the link puts
// it back. The sender is scapy on a raw socket in the namespace: this
// kernel may have no 802.1Q module for a VLAN interface.
inline void expect_vlan_tag_arrives(Link& link, PoolHarness& h, const PeerNamespace& ns) {
  ASSERT_EQ(test::interop_blocker({"/usr/bin/python3"}), "");
  const wire::MacAddr mac = link.info().mac;
  const std::string cmd =
      "/usr/bin/python3 -c \"from scapy.all import Ether, Dot1Q, ARP, sendp; sendp(Ether(dst='" +
      mac.to_string() + "')/Dot1Q(vlan=5, prio=3)/ARP(op=1, psrc='198.18.1.2', pdst='198.18.1.1'), iface='" +
      ns.peer_if() + "', verbose=0)\"";
  auto sender = std::async(std::launch::async, [&ns, cmd] { return ns.exec(cmd, 20); });
  std::optional<wire::VlanTag> tag;
  auto handle = [&](std::span<const std::byte> f) {
    auto e = wire::EthernetView::make(f);
    if (!e || e->ethertype() != wire::ethertype::kArp || e->dst() != mac) return false;
    auto v = wire::ArpView::make(e->payload());
    if (!v || v->sender_ip() != wire::Ipv4Addr::from_octets(198, 18, 1, 2)) return false;
    tag = e->vlan();
    return true;
  };
  // Until the frame arrives, or a last look once the sender has finished
  // (scapy takes a second or two to start); 20 s at most.
  bool got = false;
  for (int i = 0; i < 100 && !got; ++i) {
    const bool sender_done = sender.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    got = receive_until(link, h, std::chrono::milliseconds(200), handle);
    if (sender_done) break;
  }
  const test::CmdResult r = sender.get();
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(got) << "the tagged frame never arrived";
  ASSERT_TRUE(tag.has_value()) << "the frame lost its VLAN tag";
  EXPECT_EQ(tag->vid, 5);
  EXPECT_EQ(tag->pcp, 3);
}

// A UDP datagram from a kernel socket (socat) reaches usnet with a checksum
// that verifies, though the kernel may have left it to the device (veth
// offloads it: AF_PACKET sees TP_STATUS_CSUMNOTREADY and the link finishes
// it). usnet answers the kernel's ARP request first.
inline void expect_kernel_udp_checksum_verifies(Link& link, PoolHarness& h, const PeerNamespace& ns,
                                                bool link_verifies_checksums) {
  ASSERT_EQ(test::interop_blocker({"socat"}), "");
  const wire::MacAddr mac = link.info().mac;
  auto sender = std::async(std::launch::async, [&ns] {
    return ns.exec("printf 'usnet link udp check' | socat -u - UDP-SENDTO:198.18.0.1:7,sourceport=5555", 10);
  });
  std::string payload;
  std::optional<wire::ParseError> udp_error;
  std::uint16_t flags = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  Frame frames[32];
  bool got = false;
  while (!got && Clock::now() < deadline) {
    const std::size_t n = link.rx_burst(frames, now());
    for (std::size_t i = 0; i < n; ++i) {
      auto f = h.pool().buffer(frames[i].buffer).subspan(frames[i].offset, frames[i].length);
      auto eth = wire::EthernetView::make(f);
      if (auto a = as_arp(f); a && a->operation == wire::ArpOperation::Request && a->target_ip == kUsnetIp) {
        EXPECT_TRUE(send(
            link, h,
            arp_frame(wire::ArpOperation::Reply, a->sender_mac, mac, kUsnetIp, a->sender_mac, a->sender_ip)));
      } else if (!got && eth && eth->ethertype() == wire::ethertype::kIpv4) {
        auto ip = wire::Ipv4View::make(eth->payload());
        if (ip && ip->protocol() == wire::ip_protocol::kUdp && ip->dst() == kUsnetIp) {
          auto udp = wire::UdpView::make(ip->payload());
          if (udp && udp->dst_port() == 7) {
            got = true;
            flags = frames[i].flags;
            auto r = wire::UdpRepr::parse(*udp, wire::PseudoHeader::v4(ip->src(), ip->dst()));
            if (!r) udp_error = r.error();
            payload.assign(reinterpret_cast<const char*>(udp->payload().data()), udp->payload().size());
          }
        }
      }
      EXPECT_FALSE(h.pool().free(h.owner(), frames[i].buffer));
    }
    if (n == 0) {
      pollfd p{link.wait_fd(), POLLIN, 0};
      ::poll(&p, 1, 1);
    }
  }
  const test::CmdResult r = sender.get();
  EXPECT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(got) << "no UDP datagram from the kernel within 5 s";
  EXPECT_EQ(payload, "usnet link udp check");
  // A link whose device leaves checksums unfinished (veth) completes them
  // and says so; the others pass frames as they came.
  if (link_verifies_checksums) {
    EXPECT_NE(flags & FrameFlag::kChecksumsVerified, 0);
  }
  EXPECT_FALSE(udp_error.has_value())
      << "UDP checksum: " << wire::to_string(*udp_error) << " (frame flags " << flags << ")";
}

}  // namespace usnet::link::interop
