// Fuzz the UDP input path (length and checksum checks, demultiplexing to
// bound, connected and unbound ports, queue bounds, zero-copy and copied
// delivery, port unreachable, ICMP errors for our sockets) of udp::UdpLayer
// on a net::Interface over a MemoryLink with a fake clock, with an
// application receiving, holding and sending in between.
//
// Input: records of [control][len hi][len lo][len bytes].
// control bits 0-2: the clock advances by (bits)^3 ms before the record;
// bit 3: fix the UDP checksum (so the fuzzer gets past it);
// bits 4-5: what the bytes become: 0 the UDP part of a datagram to our
// address, 1 the same in two IP fragments (reassembled: the copy path),
// 2 the same to the subnet broadcast, 3 an ICMP error (type from byte 0,
// code from byte 1) quoting a UDP datagram we sent whose first 8 bytes are
// bytes 2-9;
// bits 6-7: then the application: 0 nothing, 1 recv_from() on every socket
// into a 16-byte buffer, 2 receive() zero-copy on every socket and hold the
// datagrams (at most 8 held), 3 send from every socket.
// Invariants after every record: each queue within its bounds, the buffers
// held equal to the frames queued in sockets, held by the application and
// waiting in ARP queues; after teardown, no buffer in use.
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "net_fuzz_common.hpp"
#include "usnet/link/memory_link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/wire/arp.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/icmpv4.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/udp.hpp"

using namespace usnet;
using namespace std::chrono_literals;

using namespace usnet::fuzz;

namespace {

const wire::Ipv4Addr kPeerIp = wire::Ipv4Addr::from_octets(198, 18, 0, 1);
const wire::Ipv4Addr kBroadcast = wire::Ipv4Addr::from_octets(198, 18, 0, 255);

net::InterfaceConfig config() {
  net::InterfaceConfig c;
  c.addresses.push_back({kOurIp, 24});
  c.arp.max_entries = 8;
  c.arp.max_queue_per_entry = 4;
  c.arp.max_queue_total = 8;
  c.arp.announce_count = 0;
  c.reassembly.max_memory = 64 * 1024;
  c.reassembly.max_datagrams = 4;
  return c;
}

std::vector<std::byte> ethernet(wire::MacAddr dst, std::uint16_t type, std::span<const std::byte> payload) {
  std::vector<std::byte> f(14 + payload.size());
  wire::EthernetRepr e{dst, kPeerMac, type, std::nullopt};
  (void)e.emit(f);
  if (!payload.empty()) std::memcpy(f.data() + 14, payload.data(), payload.size());
  return f;
}

// An IPv4 packet from the peer carrying `payload` (or a fragment of it).
std::vector<std::byte> ip_packet(wire::Ipv4Addr dst, std::uint8_t protocol,
                                 std::span<const std::byte> payload, std::uint16_t ident,
                                 std::uint16_t offset = 0, bool more = false) {
  std::vector<std::byte> ip(20 + payload.size());
  wire::Ipv4Repr r;
  r.src = kPeerIp;
  r.dst = dst;
  r.protocol = protocol;
  r.ident = ident;
  r.frag_offset_bytes = offset;
  r.more_frags = more;
  r.payload_len = static_cast<std::uint16_t>(payload.size());
  (void)r.emit(ip);
  if (!payload.empty()) std::memcpy(ip.data() + 20, payload.data(), payload.size());
  return ip;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& p = fuzz_pool();
  auto owner = p.add_owner({0, 100});
  if (!owner) std::abort();
  {
    link::LinkInfo info;
    info.name = "mem:fuzz";
    info.mac = kOurMac;
    info.mtu = 1500;
    link::MemoryLink link(p, *owner, info, 32);
    auto created = net::Interface::create(link, p, *owner, config());
    if (!created) std::abort();
    auto& iface = **created;
    auto made = udp::UdpLayer::create(iface, p, *owner, {.ephemeral_seed = 7});
    if (!made) std::abort();
    auto& layer = **made;

    const udp::SocketOptions small{.max_queue_datagrams = 4, .max_queue_bytes = 4000};
    std::vector<std::unique_ptr<udp::UdpSocket>> socks;
    for (int i = 0; i < 4; ++i) socks.push_back(layer.open(small));
    check(!socks[0]->bind({{}, 7}));
    check(!socks[1]->bind({kOurIp, 9}));
    check(!socks[1]->connect({kPeerIp, 5000}));
    check(!socks[2]->connect({kPeerIp, 53}));  // ephemeral port
    // socks[3] stays unbound until it sends.
    std::vector<udp::UdpDatagram> held;

    net::Nanos now{1s};
    // The peer's MAC is known, so errors and sends leave at once.
    {
      std::vector<std::byte> arp(28);
      wire::ArpRepr r{wire::ArpOperation::Request, kPeerMac, kPeerIp, {}, kOurIp};
      (void)r.emit(arp);
      (void)link.inject_rx(ethernet(wire::MacAddr::broadcast(), wire::ethertype::kArp, arp));
      iface.poll(now);
      while (link.pop_tx()) {
      }
    }

    std::vector<std::byte> body;
    std::uint16_t ident = 1;
    std::size_t i = 0;
    while (i + 3 <= size) {
      const std::uint8_t ctl = data[i];
      const std::size_t len =
          std::min<std::size_t>((std::size_t{data[i + 1]} << 8) | data[i + 2], size - i - 3);
      body.assign(reinterpret_cast<const std::byte*>(data + i + 3),
                  reinterpret_cast<const std::byte*>(data + i + 3 + len));
      i += 3 + len;
      const auto step = std::int64_t{ctl & 0x07};
      now += std::chrono::milliseconds(step * step * step);
      const int kind = (ctl >> 4) & 3;
      const wire::Ipv4Addr dst = kind == 2 ? kBroadcast : kOurIp;

      if (kind != 3 && (ctl & 0x08) != 0 && body.size() >= 8) {
        // Length field made consistent and the checksum computed.
        const auto total = static_cast<std::uint16_t>(std::min<std::size_t>(body.size(), 0xffff));
        const wire::UdpRepr r{load_be16(body.data()), load_be16(body.data() + 2),
                              static_cast<std::uint16_t>(total - 8)};
        (void)r.emit(std::span(body).first(total), wire::PseudoHeader::v4(kPeerIp, dst));
      }
      if (kind == 0 || kind == 2) {
        (void)link.inject_rx(ethernet(kind == 2 ? wire::MacAddr::broadcast() : kOurMac,
                                      wire::ethertype::kIpv4, ip_packet(dst, 17, body, ident++)));
      } else if (kind == 1) {
        const std::size_t half = std::min<std::size_t>(body.size() / 2 & ~std::size_t{7}, 1400);
        const auto id = ident++;
        if (half == 0 || body.size() - half > 1480) continue;
        const std::span<const std::byte> b(body);
        (void)link.inject_rx(
            ethernet(kOurMac, wire::ethertype::kIpv4, ip_packet(dst, 17, b.first(half), id, 0, true)));
        (void)link.inject_rx(
            ethernet(kOurMac, wire::ethertype::kIpv4,
                     ip_packet(dst, 17, b.subspan(half), id, static_cast<std::uint16_t>(half))));
      } else {
        if (body.size() < 10) continue;
        // The datagram we sent, as the router or peer quotes it.
        std::vector<std::byte> quoted(28);
        wire::Ipv4Repr q;
        q.src = kOurIp;
        q.dst = kPeerIp;
        q.protocol = 17;
        q.payload_len = 100;
        (void)q.emit(quoted);
        std::memcpy(quoted.data() + 20, body.data() + 2, 8);
        static constexpr wire::Icmpv4Type kTypes[] = {wire::Icmpv4Type::DestUnreachable,
                                                      wire::Icmpv4Type::TimeExceeded,
                                                      wire::Icmpv4Type::ParamProblem};
        wire::Icmpv4Repr e;
        e.type = kTypes[std::to_integer<unsigned>(body[0]) % 3];
        e.code = static_cast<std::uint8_t>(std::to_integer<unsigned>(body[1]) % 16);
        e.data_len = static_cast<std::uint16_t>(quoted.size());
        std::vector<std::byte> m(8 + quoted.size());
        std::memcpy(m.data() + 8, quoted.data(), quoted.size());
        (void)e.emit(m);
        (void)link.inject_rx(ethernet(kOurMac, wire::ethertype::kIpv4, ip_packet(kOurIp, 1, m, ident++)));
      }
      iface.poll(now);

      switch (ctl >> 6) {
        case 1:
          for (auto& s : socks) {
            std::array<std::byte, 16> buf{};
            auto r = s->recv_from(buf);
            if (r)
              check(r->copied == std::min<std::size_t>(r->length, buf.size()) &&
                    r->truncated == (r->length > 16));
          }
          break;
        case 2:
          for (auto& s : socks) {
            auto d = s->receive();
            if (!d) continue;
            if (d->frame()) {
              const auto buf = p.buffer(d->frame()->buffer);
              check(d->payload_offset() + d->payload().size() <= buf.size());
              check(d->payload().data() == buf.data() + d->payload_offset());
            }
            held.push_back(std::move(*d));
          }
          if (held.size() > 8)
            held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(held.size() - 8));
          break;
        case 3: {
          const auto n = std::min<std::size_t>(body.size(), 3000);
          const std::span<const std::byte> payload(body.data(), n);
          (void)socks[0]->send_to(payload, {kPeerIp, 5001}, now);
          (void)socks[1]->send(payload, now);
          (void)socks[2]->send(payload, now);
          (void)socks[3]->send_to(payload, {kPeerIp, 5002}, now);
          break;
        }
        default:
          break;
      }
      while (link.pop_tx()) {
      }

      std::size_t queued = 0;
      for (const auto& s : socks) {
        check(s->queued() <= small.max_queue_datagrams);
        check(s->queued_bytes() <= small.max_queue_bytes);
        queued += s->queued();
      }
      std::size_t held_frames = 0;
      for (const auto& d : held) held_frames += d.frame().has_value() ? 1 : 0;
      // Queued datagrams hold a frame each unless copied (reassembled).
      check(p.in_use(*owner) <= queued + held_frames + iface.arp().queued_total());
      check(p.in_use(*owner) >= held_frames + iface.arp().queued_total());
    }
    held.clear();
    socks.clear();
    check(p.in_use(*owner) == iface.arp().queued_total());
    now += 120s;
    iface.poll(now);
    while (link.pop_tx()) {
    }
  }
  check(p.in_use(*owner) == 0);
  check(!p.remove_owner(*owner));
  return 0;
}
