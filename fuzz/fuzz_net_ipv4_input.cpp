// Fuzz the IPv4 input path (header checks, delivery, reassembly with its
// bounds) of net::Interface over a MemoryLink with a fake clock.
//
// Input: records of [control][len hi][len lo][len bytes of IPv4 packet].
// control bits 0-4: the clock advances by (bits)^3 ms before the record
// (up to ~30 s, so reassembly timeouts fire); bit 5: fix the IP header
// checksum (so the fuzzer gets past it); bit 6: send to the broadcast MAC;
// bit 7: the UDP handler keeps the frame (and frees it itself).
// Invariants checked after every record: reassembly memory and datagram
// count within their bounds, ARP entries within theirs, the buffers held
// equal to what the ARP queues hold; after teardown, no buffer in use.
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
    std::vector<link::Frame> kept;
    bool keep_next = false;
    check(!iface.set_protocol_handler(17, [&](net::InboundDatagram& d, net::Nanos now) {
      if (keep_next) {
        if (auto f = d.take_frame()) kept.push_back(*f);
      }
      if (d.payload.size() % 3 == 0) iface.send_icmp_error(d, 3, 3, now);
    }));
    net::Nanos now{1s};
    std::vector<std::byte> frame;
    std::size_t i = 0;
    while (i + 3 <= size) {
      const std::uint8_t ctl = data[i];
      const std::size_t len =
          std::min<std::size_t>((std::size_t{data[i + 1]} << 8) | data[i + 2], size - i - 3);
      const auto* body = data + i + 3;
      i += 3 + len;
      const auto step = std::int64_t{ctl & 0x1f};
      now += std::chrono::milliseconds(step * step * step);
      keep_next = (ctl & 0x80) != 0;

      frame.assign(14 + len, std::byte{0});
      wire::EthernetRepr eth{(ctl & 0x40) != 0 ? wire::MacAddr::broadcast() : kOurMac, kPeerMac,
                             wire::ethertype::kIpv4, std::nullopt};
      (void)eth.emit(frame);
      if (len != 0) std::memcpy(frame.data() + 14, body, len);
      if ((ctl & 0x20) != 0 && len >= 20) {
        const std::size_t hl = std::min<std::size_t>(len, std::size_t{body[0] & 0x0fu} * 4);
        if (hl >= 12) {
          frame[14 + 10] = std::byte{0};
          frame[14 + 11] = std::byte{0};
          const auto sum = wire::internet_checksum(std::span(frame).subspan(14, hl));
          usnet::store_be16(frame.data() + 14 + 10, sum);
        }
      }
      (void)link.inject_rx(frame);
      iface.poll(now);
      while (link.pop_tx()) {
      }
      for (const auto& f : kept) check(!p.free(*owner, f.buffer));
      kept.clear();

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
