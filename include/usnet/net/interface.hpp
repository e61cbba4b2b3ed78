// The IPv4 network layer over one link: Ethernet dispatch, ARP, IPv4 input
// and output with fragmentation and reassembly, ICMP.
//
// Pure protocol logic: its only I/O is Link::rx_burst/tx_burst, and time is
// passed in. poll(now) receives (bursts of 32 frames) and runs the timers;
// next_deadline() says when it must run again. send() transmits at once (or
// queues behind ARP resolution).
//
// Buffers. The interface allocates, and is given by the link, buffers of
// the one owner it was made with. A received datagram is handed to the
// protocol handler as an InboundDatagram for the duration of the call: its
// payload span is valid until the handler returns. A handler that wants the
// buffer itself (zero-copy receive) calls take_frame(), which is possible for
// a datagram that arrived in one frame; it then owns the frame (same pool
// owner) and must free it. Otherwise the interface frees the frame after the
// call. The payload span points into the frame's buffer, so a handler that
// took the frame finds the payload at payload.data() - pool.buffer(
// frame.buffer).data(). A reassembled datagram lives in a heap buffer of the
// reassembler (see reassembly.hpp): take_frame() returns nullopt and the
// handler copies.
//
// Handlers may call send(), send_icmp_error() and send_ping(). They run
// inside poll(): a poll() from a handler receives nothing.
//
// Not done here: IP options are accepted and skipped, never acted on (no
// source routing, record route); no forwarding (we are a host: RFC 1122
// 3.3.1), so TTL is not checked on input (only a router decrements it);
// multicast groups cannot be joined yet, so multicast is dropped.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/arp_cache.hpp"
#include "usnet/net/drop_reason.hpp"
#include "usnet/net/icmp.hpp"
#include "usnet/net/reassembly.hpp"
#include "usnet/net/routes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/ipv4.hpp"

namespace usnet::net {

struct InterfaceAddress {
  wire::Ipv4Addr addr;
  std::uint8_t prefix_len = 24;
};

struct InterfaceConfig {
  std::vector<InterfaceAddress> addresses;  // at least one
  ArpConfig arp;
  ReassemblyConfig reassembly;
  IcmpConfig icmp;
  std::uint8_t default_ttl = 64;  // RFC 1700 / Linux default
  // First value of the IPv4 identification counter (one per datagram).
  // RFC 7739 advises identifications an off-path attacker cannot predict
  // (fragment injection): the caller seeds this from a random source, as
  // the core reads none; tests use a fixed value.
  std::uint16_t first_ident = 1;
};

// The IPv4 header of a received datagram, as an upper layer needs it.
struct Ipv4Info {
  wire::Ipv4Addr src;
  wire::Ipv4Addr dst;
  std::uint8_t protocol = 0;
  std::uint8_t ttl = 0;
  std::uint8_t dscp = 0;
  std::uint8_t ecn = 0;
  std::uint16_t ident = 0;
  bool reassembled = false;
  bool link_broadcast = false;  // the frame was sent to a broadcast/multicast MAC
  bool ip_broadcast = false;    // 255.255.255.255 or a directed broadcast of ours
  // Every checksum in the frame was verified by the link (FrameFlag or
  // Offload::kNoChecksums): the upper layer may skip its own.
  bool checksums_verified = false;
};

class Interface;

class InboundDatagram {
 public:
  Ipv4Info ip;
  std::span<const std::byte> payload;  // the IP payload (options skipped)
  // The IP header and the first 8 payload bytes: what an ICMP error quotes.
  std::span<const std::byte> quote;

  // The whole Ethernet frame holding the datagram, handed over to the
  // caller (same pool owner as the interface); nullopt for a reassembled
  // datagram or if already taken.
  std::optional<link::Frame> take_frame() noexcept {
    auto f = frame_;
    frame_.reset();
    return f;
  }

 private:
  friend class Interface;
  std::optional<link::Frame> frame_;
};

struct SendOptions {
  std::uint8_t ttl = 0;  // 0: the interface default
  std::uint8_t dscp = 0;
  std::uint8_t ecn = 0;
  bool dont_frag = false;
  wire::Ipv4Addr source;  // 0: the route's source address
};

// A datagram being built in its frame (Interface::reserve): the Ethernet
// and IPv4 headers are written; the upper layer writes `payload` (exactly
// the length it reserved), then hands it to transmit() or release().
class OutboundDatagram {
 public:
  std::span<std::byte> payload() const noexcept { return payload_; }
  // The source address in its IPv4 header (SendOptions::source, or the
  // route's when that was unspecified).
  wire::Ipv4Addr source() const noexcept { return src_; }

 private:
  friend class Interface;
  link::Frame frame_{};
  std::span<std::byte> payload_;
  wire::Ipv4Addr src_, next_hop_;
  bool broadcast_ = false;
};

using ProtocolHandler = std::function<void(InboundDatagram& datagram, Nanos now)>;
using ErrorHandler = std::function<void(const IcmpErrorInfo& error, Nanos now)>;
using PingHandler = std::function<void(const EchoReply& reply, Nanos now)>;

class Interface {
 public:
  static constexpr std::size_t kBurst = 32;
  static constexpr std::size_t kMaxBurstsPerPoll = 16;  // so timers run under a flood
  static constexpr std::size_t kEthHeaderLen = 14;
  static constexpr std::size_t kIpHeaderLen = 20;
  static constexpr std::size_t kHeadroom = kEthHeaderLen + kIpHeaderLen;

  // EINVAL: no address, a prefix length above 32, or an unspecified address.
  static Expected<std::unique_ptr<Interface>, std::error_code> create(link::Link& link, mem::PacketPool& pool,
                                                                      mem::OwnerId owner,
                                                                      const InterfaceConfig& config);
  // Frees every buffer it still holds (ARP queues, frames not yet sent).
  ~Interface();
  Interface(const Interface&) = delete;
  Interface& operator=(const Interface&) = delete;

  // Receives up to kMaxBurstsPerPoll bursts, then runs the timers (ARP
  // retransmits and expiry, reassembly timeouts, announcements at start).
  // Returns the frames received (0: the link had nothing). A handler that
  // calls poll() while one runs (a ping handler, say) receives nothing: the
  // outer call goes on with its burst.
  std::size_t poll(Nanos now);
  // The earliest time poll() has timer work (the link's own deadline
  // included); Nanos::max() if none. Before the first poll: 0.
  Nanos next_deadline() const noexcept;

  // IPv4 output (RFC 791, RFC 1122 3.3). ENETUNREACH: no route; EMSGSIZE:
  // too big for the MTU with dont_frag set, or above 65515 bytes; ENOBUFS:
  // the pool refused a buffer or the link was full; EHOSTUNREACH: ARP
  // resolution for the next hop has failed recently. The datagram may be
  // queued behind ARP resolution (success is returned). Each drop is counted.
  std::error_code send(wire::Ipv4Addr dst, std::uint8_t protocol, std::span<const std::byte> payload,
                       const SendOptions& options, Nanos now);

  // The same datagram built in place, without a copy of its payload: one
  // frame, so at most mtu() - 20 bytes (EMSGSIZE otherwise, whatever
  // dont_frag says); the other errors are send()'s, ENOBUFS from reserve()
  // when the pool has no buffer. A reserved datagram must be passed to
  // transmit() or release() before the next reserve() or poll().
  Expected<OutboundDatagram, std::error_code> reserve(wire::Ipv4Addr dst, std::uint8_t protocol,
                                                      std::size_t length, const SendOptions& options);
  std::error_code transmit(OutboundDatagram& datagram, Nanos now);
  void release(OutboundDatagram& datagram) noexcept;
  // How an upper layer fills in its checksums for this link (Ignore when
  // the link neither needs nor checks them).
  wire::ChecksumMode tx_checksum_mode() const noexcept;

  // Upper layers. The ICMP protocol is handled here (EINVAL for it).
  std::error_code set_protocol_handler(std::uint8_t protocol, ProtocolHandler handler);
  // Errors quoting a datagram of `protocol` that we sent (any protocol,
  // ICMP included: errors about our echo requests).
  void set_error_handler(std::uint8_t protocol, ErrorHandler handler);

  // ICMP error about a received datagram (port unreachable from UDP, say),
  // under RFC 1122 3.2.2's rules (never about an ICMP error, a broadcast, a
  // non-initial fragment or a non-unicast source) and the rate limit.
  // Returns whether one was sent.
  bool send_icmp_error(const InboundDatagram& about, std::uint8_t type, std::uint8_t code, Nanos now);

  // Ping client: an echo request with `data_len` bytes of data (the first 8
  // the send time, when data_len >= 8). Replies go to the ping handler.
  std::error_code send_ping(wire::Ipv4Addr dst, std::uint16_t ident, std::uint16_t seq, std::size_t data_len,
                            Nanos now);
  void set_ping_handler(PingHandler handler) { ping_handler_ = std::move(handler); }

  // The source address send() would use towards `dst` (for an upper
  // layer's pseudo-header checksum); nullopt when there is no route.
  std::optional<wire::Ipv4Addr> source_for(wire::Ipv4Addr dst) const noexcept;

  bool is_our_address(wire::Ipv4Addr a) const noexcept;
  const std::vector<InterfaceAddress>& addresses() const noexcept { return config_.addresses; }
  RouteTable& routes() noexcept { return routes_; }
  const ArpCache& arp() const noexcept { return arp_; }
  const Reassembler& reassembler() const noexcept { return reasm_; }
  const NetCounters& counters() const noexcept { return counters_; }
  // The counters (net::format_counters) and the state a peer can grow:
  // ARP entries and queued frames, reassembly datagrams and bytes.
  std::string format_counters(bool all = false) const;
  std::uint32_t mtu() const noexcept { return mtu_; }
  const link::LinkInfo& link_info() const noexcept { return link_->info(); }
  // Asks the link to hand the stack (add) or stop handing it UDP or TCP
  // traffic to `port` (link::SteerRule): the transport layers call it as
  // they bind and close. Counted: two adds need two removes.
  std::error_code steer_port(link::SteerRule::Kind kind, std::uint16_t port, bool add);

 private:
  Interface(link::Link& link, mem::PacketPool& pool, mem::OwnerId owner, const InterfaceConfig& config);

  // Receive.
  void handle_frame(const link::Frame& f, Nanos now);
  void handle_arp(std::span<const std::byte> arp, Nanos now);
  // Returns true when the frame was handed over (taken) and must not be freed.
  bool handle_ipv4(const link::Frame& f, std::span<const std::byte> ip, bool link_broadcast, Nanos now);
  void deliver(InboundDatagram& d, Nanos now);
  void handle_icmp(InboundDatagram& d, Nanos now);
  void handle_icmp_error(const InboundDatagram& d, std::uint8_t type, std::uint8_t code, std::uint16_t mtu,
                         std::uint8_t pointer, std::span<const std::byte> quoted, Nanos now);
  bool is_directed_broadcast(wire::Ipv4Addr a) const noexcept;
  // RFC 1122 3.2.2: whether an error may be sent about a datagram from
  // `src` quoted by `quote` (never about an ICMP error, a non-initial
  // fragment, or from a source that is not one host).
  bool icmp_error_allowed(wire::Ipv4Addr src, std::span<const std::byte> quote) const noexcept;
  // Sends an error (rate-limited) from `src` to `dst` quoting `quote`.
  bool send_icmp_error_to(wire::Ipv4Addr dst, wire::Ipv4Addr src, std::uint8_t type, std::uint8_t code,
                          std::span<const std::byte> quote, Nanos now);

  // Send.
  // The route for a datagram to `dst` (fills in the source when unspecified
  // and says whether it is a broadcast); ENETUNREACH when there is none.
  struct Route {
    wire::Ipv4Addr src, next_hop;
    bool broadcast = false;
  };
  Expected<Route, std::error_code> route(wire::Ipv4Addr src, wire::Ipv4Addr dst) noexcept;
  // Writes the Ethernet (source only) and IPv4 headers of one frame.
  void write_headers(std::span<std::byte> buf, wire::Ipv4Addr src, wire::Ipv4Addr dst, std::uint8_t protocol,
                     const SendOptions& options, std::uint16_t ident, bool more_frags,
                     std::size_t frag_offset, std::size_t len, wire::ChecksumMode mode) const noexcept;
  // Builds the frames of one datagram (fragmenting) and hands them to L2.
  std::error_code output(wire::Ipv4Addr src, wire::Ipv4Addr dst, std::uint8_t protocol,
                         std::span<const std::byte> payload, const SendOptions& options, Nanos now);
  std::error_code to_link(const link::Frame& f, wire::Ipv4Addr next_hop, bool broadcast, wire::Ipv4Addr src,
                          Nanos now);
  // ARP or reassembly state changed, so a deadline may have moved earlier:
  // the next poll runs the timer pass and works out when it is next due.
  void timers_changed() noexcept { timers_due_ = Nanos{0}; }
  void send_arp_request(wire::Ipv4Addr sender_ip, wire::Ipv4Addr target_ip, Nanos now);
  void send_arp(std::uint16_t op, wire::MacAddr eth_dst, wire::MacAddr target_mac, wire::Ipv4Addr sender_ip,
                wire::Ipv4Addr target_ip);
  // A frame with a fresh buffer in `f`; false (counted) when the pool has
  // none. An out-parameter, not an optional: see PacketPool::kNoBuffer.
  bool alloc_frame(link::Frame& f) noexcept;
  void queue_tx(const link::Frame& f) { tx_.push_back(f); }
  // Hands the queued frames to the link; false if it refused some (freed, counted).
  bool flush_tx(Nanos now);
  void free_frame(const link::Frame& f) noexcept;
  std::span<std::byte> frame_bytes(const link::Frame& f) const noexcept;

  link::Link* link_;
  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  InterfaceConfig config_;
  NetCounters counters_;
  RouteTable routes_;
  ArpCache arp_;
  Reassembler reasm_;
  TokenBucket icmp_errors_;
  std::uint32_t mtu_ = 0;
  std::uint16_t next_ident_ = 0;

  std::array<ProtocolHandler, 256> handlers_{};
  std::array<ErrorHandler, 256> error_handlers_{};
  PingHandler ping_handler_;

  std::uint32_t announcements_left_ = 0;

  Nanos timers_due_{0};  // poll() runs the timer pass from this time on
  Nanos next_announcement_{0};
  bool announced_once_ = false;

  std::vector<link::Frame> tx_;
  // poll()'s receive burst: a member, not a local, so that an idle poll does
  // not zero it (Frame's fields have initializers) on every call.
  std::array<link::Frame, kBurst> rx_frames_;
  bool polling_ = false;                  // poll() is on the stack (rx_frames_ in use)
  std::vector<wire::Ipv4Addr> steered_;   // addresses given to link_->steer(), taken back at destruction
  std::vector<link::Frame> ready_;        // scratch: frames released by ARP
  std::vector<link::Frame> frags_;        // scratch: the frames of one datagram
  std::vector<wire::Ipv4Addr> probes_;    // scratch
  std::vector<ExpiredDatagram> expired_;  // scratch
};

}  // namespace usnet::net
