// Fuzz the ICMP input path of net::Interface (echo, echo reply to the ping
// client, errors checked against what we sent and passed up) over a
// MemoryLink with a fake clock.
//
// Input: records of [control][source][len hi][len lo][len bytes of ICMP].
// Each is wrapped in an IPv4 header from 198.18.0.<source> (a correct
// header checksum). control bits 0-4: the clock advances by (bits)^3 ms;
// bit 5: fix the ICMP checksum (so the fuzzer gets past it); bit 6: to the
// broadcast MAC and 198.18.0.255; bit 7: first send a ping to the source.
// Invariants after every record: as in fuzz_net_ipv4_input, plus errors
// given to a handler quote one of our addresses.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "net_fuzz_common.hpp"
#include "usnet/link/memory_link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/ipv4.hpp"

using namespace usnet;
using namespace std::chrono_literals;

using namespace usnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& p = fuzz_pool();
  auto owner = p.add_owner({0, 100});
  if (!owner) std::abort();
  const auto cfg = small_config();
  {
    link::LinkInfo info;
    info.name = "mem:fuzz";
    info.mac = kOurMac;
    info.mtu = 1500;
    link::MemoryLink link(p, *owner, info, 64);
    auto created = net::Interface::create(link, p, *owner, cfg);
    if (!created) std::abort();
    auto& iface = **created;
    auto on_error = [&](const net::IcmpErrorInfo& e, net::Nanos) { check(e.quoted_src == kOurIp); };
    iface.set_error_handler(17, on_error);
    iface.set_error_handler(1, on_error);
    iface.set_error_handler(6, on_error);
    iface.set_ping_handler([](const net::EchoReply& r, net::Nanos) { check(!r.rtt || r.rtt->count() >= 0); });
    net::Nanos now{1s};
    std::vector<std::byte> frame;
    std::size_t i = 0;
    std::uint16_t seq = 0;
    while (i + 4 <= size) {
      const std::uint8_t ctl = data[i];
      const std::uint8_t source = data[i + 1];
      const std::size_t len =
          std::min<std::size_t>((std::size_t{data[i + 2]} << 8) | data[i + 3], size - i - 4);
      const auto* body = data + i + 4;
      i += 4 + len;
      const auto step = std::int64_t{ctl & 0x1f};
      now += std::chrono::milliseconds(step * step * step);

      const auto src_ip = wire::Ipv4Addr::from_octets(198, 18, 0, source);
      if ((ctl & 0x80) != 0) (void)iface.send_ping(src_ip, 7, seq++, len % 100, now);
      const bool bcast = (ctl & 0x40) != 0;
      const std::size_t ip_len = std::min<std::size_t>(20 + len, 0xffff);
      frame.assign(14 + ip_len, std::byte{0});
      wire::EthernetRepr eth{bcast ? wire::MacAddr::broadcast() : kOurMac, kPeerMac, wire::ethertype::kIpv4,
                             std::nullopt};
      (void)eth.emit(frame);
      if (ip_len > 20) std::memcpy(frame.data() + 34, body, ip_len - 20);
      if ((ctl & 0x20) != 0 && ip_len >= 24) {
        frame[34 + 2] = std::byte{0};
        frame[34 + 3] = std::byte{0};
        usnet::store_be16(frame.data() + 34 + 2, wire::internet_checksum(std::span(frame).subspan(34)));
      }
      wire::Ipv4Repr ip;
      ip.src = src_ip;
      ip.dst = bcast ? wire::Ipv4Addr::from_octets(198, 18, 0, 255) : kOurIp;
      ip.protocol = 1;
      ip.payload_len = static_cast<std::uint16_t>(ip_len - 20);
      (void)ip.emit(std::span(frame).subspan(14));
      (void)link.inject_rx(frame);
      iface.poll(now);
      while (link.pop_tx()) {
      }

      check(iface.reassembler().memory_used() <= cfg.reassembly.max_memory);
      check(iface.reassembler().datagrams() <= cfg.reassembly.max_datagrams);
      check(iface.arp().size() <= cfg.arp.max_entries);
      check(iface.arp().queued_total() <= cfg.arp.max_queue_total);
      check(p.in_use(*owner) == iface.arp().queued_total());
    }
    // Let every timer run out.
    now += 120s;
    iface.poll(now);
    while (link.pop_tx()) {
    }
    check(iface.reassembler().memory_used() == 0);
  }
  check(p.in_use(*owner) == 0);
  check(!p.remove_owner(*owner));
  return 0;
}
