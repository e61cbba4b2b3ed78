// Whole Ethernet frames: the one-line printer walks every layer's view, and
// each layer's Repr is parsed (checksums ignored so the fuzzer gets deep).
// Ethernet, ARP, IPv4, UDP and ICMPv4 Reprs are also re-emitted into a
// scratch buffer, which must succeed for any value parse accepted; TCP and
// ICMPv6 are only parsed here (their emit may legitimately refuse, e.g.
// options that do not fit; fuzz_tcp and fuzz_icmpv6 check their round trips).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "usnet/wire/arp.hpp"
#include "usnet/wire/describe.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/icmpv4.hpp"
#include "usnet/wire/icmpv6.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/ipv6.hpp"
#include "usnet/wire/tcp.hpp"
#include "usnet/wire/udp.hpp"

using namespace usnet::wire;

namespace {

constexpr auto kIgnore = ChecksumMode::Ignore;

template <class Repr, class... Args>
void must_emit(const Repr& r, std::size_t len, Args&&... args) {
  std::vector<std::byte> out(len);
  if (!r.emit(std::span(out), args...)) __builtin_trap();
}

void transport(std::uint8_t proto, std::span<const std::byte> p, const PseudoHeader& ph, bool v6) {
  if (proto == ip_protocol::kUdp) {
    if (auto v = UdpView::make(p)) {
      if (auto r = UdpRepr::parse(*v, ph, kIgnore)) must_emit(*r, v->length(), ph, kIgnore);
    }
  } else if (proto == ip_protocol::kTcp) {
    if (auto v = TcpView::make(p)) (void)TcpRepr::parse(*v, ph, kIgnore);
  } else if (!v6 && proto == kIcmpv4Protocol) {
    if (auto v = Icmpv4View::make(p)) {
      if (auto r = Icmpv4Repr::parse(*v, kIgnore)) must_emit(*r, r->total_len(), kIgnore);
    }
  } else if (v6 && proto == Ipv6NextHeader::kIcmpv6) {
    if (auto v = Icmpv6View::make(p)) (void)Icmpv6Repr::parse(*v, ph.src6, ph.dst6, kIgnore);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto frame = std::as_bytes(std::span(data, size));
  if (describe_frame(frame).empty()) __builtin_trap();

  auto eth = EthernetView::make(frame);
  if (!eth) return 0;
  if (auto r = EthernetRepr::parse(*eth)) must_emit(*r, r->buffer_len());
  switch (eth->ethertype()) {
    case ethertype::kArp:
      if (auto v = ArpView::make(eth->payload())) {
        if (auto r = ArpRepr::parse(*v)) must_emit(*r, r->buffer_len());
      }
      break;
    case ethertype::kIpv4:
      if (auto v = Ipv4View::make(eth->payload())) {
        if (auto r = Ipv4Repr::parse(*v, kIgnore); r && !r->is_fragment()) {
          must_emit(*r, r->buffer_len() + r->payload_len, kIgnore);
          transport(v->protocol(), v->payload(), PseudoHeader::v4(v->src(), v->dst()), false);
        }
      }
      break;
    case ethertype::kIpv6:
      if (auto v = Ipv6View::make(eth->payload())) {
        if (auto r = Ipv6Repr::parse(*v)) must_emit(*r, r->buffer_len());
        if (auto w = walk_extension_headers(*v); w && w->has_upper_layer() && !w->is_non_first_fragment()) {
          transport(w->upper_protocol, v->payload().subspan(w->upper_offset),
                    PseudoHeader::v6(v->src(), v->dst()), true);
        }
      }
      break;
    default:
      break;
  }
  return 0;
}
