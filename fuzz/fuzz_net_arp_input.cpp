// Fuzz the ARP input path of net::Interface (RFC 826 merge, replies, the
// cache's states, queues and bounds) over a MemoryLink with a fake clock.
//
// Input: records of [control][len hi][len lo][len bytes of ARP packet].
// control bits 0-4: the clock advances by (bits)^3 ms before the record
// (so retransmits, failures and expiry run); bit 5: first send a datagram
// to 198.18.0.<last byte of the record> (so resolutions start and queue);
// bit 6: the frame goes to the broadcast MAC; bit 7: the first 6 bytes are
// forced to a valid Ethernet/IPv4 ARP header (htype 1, ptype 0x0800, 6, 4)
// so the fuzzer reaches the semantics.
// Invariants after every record: ARP entries and queued frames within their
// bounds, the buffers held equal to what the ARP queues hold; after
// teardown, no buffer in use.
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

      if ((ctl & 0x20) != 0) {
        const std::uint8_t last = len != 0 ? body[len - 1] : 1;
        const std::byte payload[8] = {};
        (void)iface.send(wire::Ipv4Addr::from_octets(198, 18, 0, last), 17, payload, {}, now);
      }
      frame.assign(14 + len, std::byte{0});
      wire::EthernetRepr eth{(ctl & 0x40) != 0 ? wire::MacAddr::broadcast() : kOurMac, kPeerMac,
                             wire::ethertype::kArp, std::nullopt};
      (void)eth.emit(frame);
      if (len != 0) std::memcpy(frame.data() + 14, body, len);
      if ((ctl & 0x80) != 0 && len >= 6) {
        const std::uint8_t fixed[6] = {0x00, 0x01, 0x08, 0x00, 0x06, 0x04};
        std::memcpy(frame.data() + 14, fixed, sizeof fixed);
      }
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
