#include "usnet/net/drop_reason.hpp"

#include <cstdio>

#include "usnet/util/counter_text.hpp"

namespace usnet::net {

std::string_view to_string(DropReason r) noexcept {
  switch (r) {
    case DropReason::EthTruncated:
      return "ethernet truncated";
    case DropReason::EthNotForUs:
      return "ethernet destination not ours";
    case DropReason::EthUnknownType:
      return "unknown ethertype";
    case DropReason::ArpMalformed:
      return "arp malformed";
    case DropReason::ArpNotForUs:
      return "arp not for us";
    case DropReason::ArpBadSender:
      return "arp bad sender";
    case DropReason::ArpQueueFull:
      return "arp queue full";
    case DropReason::ArpResolveFailed:
      return "arp resolution failed";
    case DropReason::ArpTableFull:
      return "arp table full";
    case DropReason::IpTruncated:
      return "ip truncated";
    case DropReason::IpBadHeader:
      return "ip bad header";
    case DropReason::IpBadChecksum:
      return "ip bad checksum";
    case DropReason::IpNotForUs:
      return "ip destination not ours";
    case DropReason::IpMulticastNotJoined:
      return "ip multicast group not joined";
    case DropReason::IpBadSource:
      return "ip bad source address";
    case DropReason::IpUnknownProtocol:
      return "ip unknown protocol";
    case DropReason::ReasmTimeout:
      return "reassembly timeout";
    case DropReason::ReasmOverlap:
      return "reassembly overlapping fragments";
    case DropReason::ReasmMemory:
      return "reassembly memory bound";
    case DropReason::ReasmTooManyDatagrams:
      return "reassembly datagram bound";
    case DropReason::ReasmTooLong:
      return "reassembly datagram too long";
    case DropReason::ReasmTooManyFragments:
      return "reassembly fragment bound";
    case DropReason::ReasmDuplicate:
      return "reassembly duplicate fragment";
    case DropReason::ReasmInconsistent:
      return "reassembly inconsistent fragments";
    case DropReason::NoRoute:
      return "no route";
    case DropReason::TooBig:
      return "too big with DF set";
    case DropReason::NoBuffer:
      return "no buffer";
    case DropReason::LinkFull:
      return "link full";
    case DropReason::IcmpMalformed:
      return "icmp malformed";
    case DropReason::IcmpBadChecksum:
      return "icmp bad checksum";
    case DropReason::IcmpUnknownType:
      return "icmp unknown type";
    case DropReason::IcmpErrorNotOurs:
      return "icmp error not for a datagram of ours";
    case DropReason::IcmpErrorNoHandler:
      return "icmp error with no handler";
    case DropReason::IcmpEchoToBroadcast:
      return "icmp echo to broadcast";
    case DropReason::IcmpNoPingHandler:
      return "icmp echo reply with no ping client";
    case DropReason::RateLimited:
      return "icmp error rate limited";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

std::uint64_t NetCounters::dropped_total() const noexcept {
  std::uint64_t t = 0;
  for (auto d : drops) t += d;
  return t;
}

std::string format_counters(const NetCounters& c, bool all) {
  std::string out;
  auto line = [&out](std::uint64_t v, std::string_view what) { append_counter_line(out, v, what); };
  out += "Net:\n";
  line(c.rx_frames, "frames received");
  line(c.rx_arp, "arp packets received");
  line(c.rx_ipv4, "ip packets received");
  line(c.rx_fragments, "fragments received");
  line(c.reassembled, "datagrams reassembled");
  line(c.rx_delivered, "datagrams delivered");
  line(c.tx_frames, "frames sent");
  line(c.tx_datagrams, "datagrams sent");
  line(c.tx_fragments, "fragments created");
  line(c.arp_requests_sent, "arp requests sent");
  line(c.arp_replies_sent, "arp replies sent");
  line(c.arp_announcements_sent, "arp announcements sent");
  line(c.icmp_echo_replies_sent, "icmp echo replies sent");
  line(c.icmp_echo_requests_sent, "icmp echo requests sent");
  line(c.icmp_errors_sent, "icmp errors sent");
  line(c.icmp_errors_delivered, "icmp errors delivered");
  line(c.dropped_total(), "packets dropped");
  for (std::size_t i = 0; i < kDropReasonCount; ++i) {
    if (c.drops[i] == 0 && !all) continue;
    std::string what = "dropped: ";
    what += to_string(static_cast<DropReason>(i));
    line(c.drops[i], what);
  }
  return out;
}

}  // namespace usnet::net
