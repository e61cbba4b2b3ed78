// Why the network layer dropped a packet, and the counters a user reads.
//
// Every drop site in net/ names one DropReason and bumps counters.drops[reason]
// (STYLE: every dropped packet returns a reason and bumps a counter). The
// counters print as netstat -s style lines with print_counters().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace usnet::net {

enum class DropReason : std::uint8_t {
  // Ethernet
  EthTruncated,    // shorter than an Ethernet header, or a bad VLAN tag
  EthNotForUs,     // destination MAC neither ours nor broadcast/multicast
  EthUnknownType,  // ethertype we do not handle (IPv6, QinQ, 802.3 length ...)
  // ARP
  ArpMalformed,      // the ARP parser refused it (length, hardware/protocol type, op)
  ArpNotForUs,       // a request for an address that is not ours (nothing learned either)
  ArpBadSender,      // sender address broadcast/multicast/ours (RFC 5227 conflict)
  ArpQueueFull,      // a packet waiting for resolution was dropped: a queue bound was hit
  ArpResolveFailed,  // resolution failed after max probes; the packets waiting are dropped
  ArpTableFull,      // no entry could be made: the entry bound was hit and none could be evicted
  // IPv4 input
  IpTruncated,    // total length past the frame, or fewer than 20 bytes
  IpBadHeader,    // version, header length or total length inconsistent
  IpBadChecksum,  // header checksum wrong
  IpNotForUs,     // destination not one of our addresses nor a broadcast
  IpMulticastNotJoined,
  IpBadSource,        // source is broadcast or multicast (RFC 1122 3.2.1.3)
  IpUnknownProtocol,  // no handler for the protocol (answered with protocol unreachable)
  // Reassembly
  ReasmTimeout,           // a datagram's fragments did not all arrive in time
  ReasmOverlap,           // fragments overlapped: the whole datagram is dropped
  ReasmMemory,            // the total reassembly memory bound would be passed
  ReasmTooManyDatagrams,  // the bound on datagrams in progress was hit
  ReasmTooLong,           // the datagram would exceed 65535 bytes
  ReasmTooManyFragments,  // the bound on fragments per datagram was hit
  ReasmDuplicate,         // an exact copy of a fragment already held (only the copy is dropped)
  ReasmInconsistent,      // a second "last fragment" with another end, or data past the end
  // IPv4 output
  NoRoute,   // no route to the destination (ENETUNREACH to the sender)
  TooBig,    // larger than the MTU with DF set (EMSGSIZE to the sender)
  NoBuffer,  // the pool refused a buffer
  LinkFull,  // the link took fewer frames than offered
  // ICMP
  IcmpMalformed,  // too short, or the ICMP parser refused it
  IcmpBadChecksum,
  IcmpUnknownType,      // a type we do not act on (RFC 1122 3.2.2: silently discarded)
  IcmpErrorNotOurs,     // an error quoting a datagram we did not send (RFC 5927)
  IcmpErrorNoHandler,   // an error for a protocol nobody registered
  IcmpEchoToBroadcast,  // RFC 1122 3.2.2.6: an echo request to a broadcast may be ignored; we do
  IcmpNoPingHandler,    // an echo reply and no ping client listening
  RateLimited,          // an ICMP error we would have sent was suppressed by the token bucket
  kCount
};

constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);

std::string_view to_string(DropReason r) noexcept;

struct NetCounters {
  std::uint64_t rx_frames = 0;     // frames taken from the link
  std::uint64_t rx_arp = 0;        // ARP packets accepted
  std::uint64_t rx_ipv4 = 0;       // IPv4 packets accepted (fragments each count)
  std::uint64_t rx_delivered = 0;  // datagrams handed to an upper-layer handler (ICMP included)
  std::uint64_t rx_fragments = 0;  // fragments taken into reassembly
  std::uint64_t reassembled = 0;   // datagrams completed by reassembly
  std::uint64_t tx_frames = 0;     // frames given to the link
  std::uint64_t tx_datagrams = 0;  // IPv4 datagrams sent (before fragmentation)
  std::uint64_t tx_fragments = 0;  // fragments made by fragmentation
  std::uint64_t arp_requests_sent = 0;
  std::uint64_t arp_replies_sent = 0;
  std::uint64_t arp_announcements_sent = 0;
  std::uint64_t icmp_echo_replies_sent = 0;
  std::uint64_t icmp_echo_requests_sent = 0;
  std::uint64_t icmp_errors_sent = 0;
  std::uint64_t icmp_errors_delivered = 0;
  std::array<std::uint64_t, kDropReasonCount> drops{};

  void drop(DropReason r) noexcept { ++drops[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped(DropReason r) const noexcept { return drops[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped_total() const noexcept;
};

// One line per counter, "    12 frames received", then one per non-zero drop
// reason, "    3 dropped: bad checksum" (all reasons when `all` is true).
std::string format_counters(const NetCounters& c, bool all = false);

}  // namespace usnet::net
