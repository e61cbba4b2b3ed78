// ICMP pieces that need no interface (RFC 792, RFC 1122 3.2.2): the token
// bucket that limits the errors we send, what a received error says about
// the datagram it quotes, and what the ping client reports.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "usnet/wire/addr.hpp"

namespace usnet::net {

using Nanos = std::chrono::nanoseconds;

// RFC 1122 3.2.2 / RFC 1812 4.3.2.8: ICMP errors sent are rate-limited.
// A token bucket: `burst` tokens, refilled at `per_second`; time passed in.
class TokenBucket {
 public:
  // Rates above one token per nanosecond are taken as exactly that (a token
  // interval of zero would divide by zero).
  TokenBucket(std::uint32_t per_second, std::uint32_t burst) noexcept
      : per_second_(std::min<std::uint32_t>(per_second, 1'000'000'000u)), burst_(burst), tokens_(burst) {}
  // Takes a token if one is there.
  bool take(Nanos now) noexcept;

 private:
  std::uint32_t per_second_;
  std::uint32_t burst_;
  std::uint32_t tokens_;
  Nanos last_{0};
  bool started_ = false;
};

struct IcmpConfig {
  std::uint32_t error_rate_per_second = 100;  // errors we send (unreachable, time exceeded)
  std::uint32_t error_burst = 10;
  // RFC 1122 3.2.2.6 lets a host ignore echo requests to a broadcast
  // address; answering them is how smurf amplification works. We ignore them.
  bool reply_to_broadcast_echo = false;
};

// A received ICMP error, checked to quote a datagram we sent (RFC 5927:
// its source is one of our addresses), as given to the upper layer of the
// quoted protocol.
struct IcmpErrorInfo {
  wire::Ipv4Addr from;  // who sent the error (a router or the destination)
  std::uint8_t type = 0;
  std::uint8_t code = 0;
  std::uint8_t protocol = 0;  // of the quoted datagram
  wire::Ipv4Addr quoted_src;
  wire::Ipv4Addr quoted_dst;
  // The first 4 bytes of the quoted payload read as two 16-bit ports (what
  // they are for UDP and TCP); has_ports when 4 bytes were quoted.
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  bool has_ports = false;
  std::uint16_t mtu = 0;     // destination unreachable code 4 (RFC 1191), else 0
  std::uint8_t pointer = 0;  // parameter problem
  // The quoted payload's first bytes (at most 8, RFC 792), e.g. the TCP
  // sequence number a handler must check (RFC 5927). Valid only during the
  // handler call.
  std::span<const std::byte> quoted_payload;
};

// Parses the quoted datagram of an error message: at least a 20-byte IPv4
// header that is consistent (version 4, IHL >= 5 and inside the data);
// nullopt otherwise. Fills everything but `from`, `type`, `code`, `mtu`.
std::optional<IcmpErrorInfo> parse_quoted_datagram(std::span<const std::byte> quoted) noexcept;

struct EchoReply {
  wire::Ipv4Addr from;
  std::uint16_t ident = 0;
  std::uint16_t seq = 0;
  std::size_t data_len = 0;
  std::optional<Nanos> rtt;  // from the send time our ping wrote in the data, when present
  std::uint8_t ttl = 0;
};

// The ping client writes its send time in the first 8 bytes of the echo
// data (as ping(8) does), so no per-request state is kept and a reply's RTT
// is now minus that time. A reply with a time in the future has no RTT.
inline constexpr std::size_t kPingTimestampLen = 8;

}  // namespace usnet::net
