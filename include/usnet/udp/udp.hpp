// UDP over IPv4 (RFC 768, RFC 1122 4.1): a UdpLayer registered with one
// net::Interface for protocol 17, and the sockets it demultiplexes to.
//
// Like the interface, the layer does no I/O and reads no clock: datagrams
// arrive while the application calls Interface::poll(now) (the layer's
// handler runs inside it), and sends go out through Interface::send().
//
// Sockets. UdpLayer::open() makes a socket owned by the caller (a
// unique_ptr). A socket binds to an explicit port or an ephemeral one, to
// one of the interface's addresses or to any; connect() sets the default
// destination and from then on only datagrams from that peer are received.
// Destroying the socket closes it (its queued datagrams are freed). The
// layer may die first: its sockets are then detached, their queues freed,
// and every call on them returns EBADF. The layer must die before the
// interface it registered with (it unregisters from it).
//
// Receive. Each socket has a queue bounded in datagrams and in payload
// bytes; what does not fit is dropped and counted (QueueFull*). Two ways
// to take a datagram out:
//   - receive(): zero-copy. The datagram keeps the pool buffer the link
//     received it in (the interface's owner holds it); the application reads
//     the payload in place and gives the buffer back with release() (or by
//     destroying the UdpDatagram). A datagram reassembled from fragments has
//     no single frame: the layer copies it into heap memory on arrival and
//     receive() hands that copy (frame() is nullopt, copied() is true).
//   - recv_from(buffer): copies the payload into the caller's buffer and
//     frees the datagram; a datagram longer than the buffer is truncated and
//     says so (like MSG_TRUNC: RecvInfo::length is its full length).
//
// Errors. A call on a socket first returns (and clears) a pending error,
// like SO_ERROR on Linux: ICMP errors about datagrams a connected socket sent
// (port unreachable -> ECONNREFUSED, net/host unreachable -> ENETUNREACH/
// EHOSTUNREACH, ...). Unconnected sockets ignore ICMP errors (counted), as
// Linux does without IP_RECVERR: the error cannot be tied to one send.
// "Fragmentation needed" is not reported (we send with DF clear, so it is
// not ours to act on) and time exceeded is transient (Linux also keeps it
// from a connected socket); both are counted as ignored.
//
// Unbound ports: a datagram nobody is bound to (or a connected socket's
// port, from another peer, as Linux does) is answered with ICMP port
// unreachable through Interface::send_icmp_error, which applies RFC 1122
// 3.2.2's rules (never to a broadcast ...) and the rate limit.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::udp {

using Nanos = std::chrono::nanoseconds;

// RFC 768 over IPv4: 65535 - 20 (IP header) - 8 (UDP header).
inline constexpr std::size_t kMaxPayload = 65507;

struct Endpoint {
  wire::Ipv4Addr addr;  // unspecified: any (bind) / none
  std::uint16_t port = 0;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  std::string to_string() const;  // "198.18.0.2:7"
};

enum class UdpDropReason : std::uint8_t {
  Truncated,     // fewer than 8 bytes
  BadLength,     // length field below 8 or past the IP payload
  BadChecksum,   // checksum did not verify (RFC 768, RFC 1122 4.1.3.4)
  BadPort,       // destination port 0
  NoPort,        // nobody bound to the port (port unreachable sent unless the rules forbid)
  NotFromPeer,   // the port's socket is connected to another peer (port unreachable, as Linux)
  QueueFull,     // the socket's receive queue holds its maximum of datagrams
  QueueBytes,    // the socket's receive queue would pass its byte bound
  IcmpNoSocket,  // an ICMP error quoting a port nobody is bound to now
  IcmpIgnored,   // an ICMP error for an unconnected socket, another peer, or a kind not reported
  kCount
};

constexpr std::size_t kUdpDropReasonCount = static_cast<std::size_t>(UdpDropReason::kCount);

std::string_view to_string(UdpDropReason r) noexcept;

struct UdpCounters {
  std::uint64_t rx_datagrams = 0;  // datagrams given to the layer by the interface
  std::uint64_t rx_delivered = 0;  // queued to a socket
  std::uint64_t rx_bytes = 0;      // payload bytes queued to sockets
  std::uint64_t rx_zero_copy = 0;  // of those, kept in the frame they arrived in
  std::uint64_t rx_copied = 0;     // of those, copied (reassembled datagrams)
  std::uint64_t tx_datagrams = 0;  // accepted by Interface::send
  std::uint64_t tx_bytes = 0;      // their payload bytes
  std::uint64_t tx_errors = 0;     // sends that returned an error (any cause)
  std::uint64_t port_unreachable_sent = 0;
  std::uint64_t icmp_errors_received = 0;  // handed to the layer by the interface
  std::uint64_t icmp_errors_reported = 0;  // made a socket's pending error
  std::array<std::uint64_t, kUdpDropReasonCount> drops{};

  void drop(UdpDropReason r) noexcept { ++drops[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped(UdpDropReason r) const noexcept { return drops[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped_total() const noexcept;
};

// "Udp:" then one "    12 datagrams received" line per counter, then one
// per non-zero drop reason, "    3 dropped: bad checksum" (all when `all`).
std::string format_counters(const UdpCounters& c, bool all = false);

struct UdpConfig {
  // RFC 6335 6: the dynamic (ephemeral) port range.
  std::uint16_t ephemeral_min = 49152;
  std::uint16_t ephemeral_max = 65535;
  // Seed of the ephemeral port choice (RFC 6056: ports an off-path attacker
  // cannot guess). The core reads no randomness: the caller passes a random
  // value; tests a fixed one.
  std::uint64_t ephemeral_seed = 1;
};

struct SocketOptions {
  std::size_t max_queue_datagrams = 64;
  std::size_t max_queue_bytes = std::size_t{256} * 1024;  // payload bytes
  // Sending to a broadcast address needs this, as SO_BROADCAST (else EACCES).
  bool allow_broadcast = false;
  std::uint8_t ttl = 0;  // 0: the interface default
  std::uint8_t dscp = 0;
};

// What recv_from() copied, and about the datagram.
struct RecvInfo {
  Endpoint from;
  wire::Ipv4Addr to;       // the destination address it was sent to
  std::size_t length = 0;  // the datagram's payload length
  std::size_t copied = 0;  // bytes written to the buffer: min(length, buffer size)
  bool truncated = false;  // length > copied (MSG_TRUNC)
  bool broadcast = false;  // sent to a broadcast address
  std::uint8_t ttl = 0;
  std::uint8_t dscp = 0;
  std::uint8_t ecn = 0;
};

class UdpLayer;
class UdpSocket;

// A received datagram handed over by UdpSocket::receive() (zero-copy).
// Move-only. The payload stays valid until release() or destruction, which
// give the pool buffer back. Must not outlive the pool.
class UdpDatagram {
 public:
  UdpDatagram() = default;
  UdpDatagram(UdpDatagram&& o) noexcept;
  UdpDatagram& operator=(UdpDatagram&& o) noexcept;
  UdpDatagram(const UdpDatagram&) = delete;
  UdpDatagram& operator=(const UdpDatagram&) = delete;
  ~UdpDatagram() { release(); }

  Endpoint from;
  wire::Ipv4Addr to;
  bool broadcast = false;
  std::uint8_t ttl = 0;
  std::uint8_t dscp = 0;
  std::uint8_t ecn = 0;

  std::span<const std::byte> payload() const noexcept { return payload_; }
  // The frame holding the payload (owned by the interface's pool owner),
  // nullopt for a copied (reassembled) datagram. The payload starts at
  // payload_offset() in pool.buffer(frame()->buffer).
  const std::optional<link::Frame>& frame() const noexcept { return frame_; }
  std::size_t payload_offset() const noexcept { return payload_offset_; }
  bool copied() const noexcept { return copied_; }
  // Gives the buffer back; the payload is then empty. Idempotent.
  void release() noexcept;

 private:
  friend class UdpSocket;
  friend class UdpLayer;
  mem::PacketPool* pool_ = nullptr;
  mem::OwnerId owner_{};
  std::optional<link::Frame> frame_;
  std::size_t payload_offset_ = 0;
  bool copied_ = false;
  std::vector<std::byte> copy_;
  std::span<const std::byte> payload_;
};

namespace detail {
// A socket's receive queue: a ring of datagrams that grows (doubling) when
// full and never shrinks, so a steady stream allocates nothing per
// datagram (a std::deque allocated and freed a block every few).
class DatagramQueue {
 public:
  DatagramQueue() = default;
  DatagramQueue(const DatagramQueue&) = delete;
  DatagramQueue& operator=(const DatagramQueue&) = delete;

  bool empty() const noexcept { return count_ == 0; }
  std::size_t size() const noexcept { return count_; }
  UdpDatagram& front() noexcept { return slots_[head_]; }
  void push_back(UdpDatagram&& d);
  // Releases the front datagram's buffer (unless it was moved out).
  void pop_front() noexcept;
  void clear() noexcept;

 private:
  std::vector<UdpDatagram> slots_;
  std::size_t head_ = 0, count_ = 0;
};
}  // namespace detail

class UdpSocket {
 public:
  ~UdpSocket();  // close()
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Port 0: an ephemeral port (RFC 6335, RFC 6056 3.3.1). Address
  // unspecified: any of the interface's. EINVAL: already bound;
  // EADDRNOTAVAIL: not one of our addresses; EADDRINUSE: the port is taken
  // on that address (or on any), or no ephemeral port is free.
  std::error_code bind(Endpoint local);
  // Sets the default destination and receives only from it; binds an
  // ephemeral port first if unbound. EINVAL: unspecified address or port 0;
  // ENETUNREACH: no route; EACCES: broadcast without allow_broadcast.
  // May be called again to change peer.
  std::error_code connect(Endpoint remote);
  // Back to unconnected (queued datagrams stay).
  void disconnect() noexcept;
  // Unbinds and frees the queue; the socket can be bound again.
  void close() noexcept;

  // Sends one datagram (binds an ephemeral port first if unbound).
  // EMSGSIZE: above kMaxPayload; EINVAL: port 0 or unspecified address;
  // EACCES: broadcast without allow_broadcast; ENETUNREACH: no route; else
  // Interface::send's errors (ENOBUFS, EHOSTUNREACH ...). A pending error is
  // returned first. On a connected socket `to` may be another peer (as Linux
  // allows).
  std::error_code send_to(std::span<const std::byte> payload, Endpoint to, Nanos now);
  // To the connected peer; EDESTADDRREQ when not connected.
  std::error_code send(std::span<const std::byte> payload, Nanos now);

  // Copying receive. EAGAIN (resource_unavailable_try_again) when nothing
  // is queued; a pending error is returned first.
  Expected<RecvInfo, std::error_code> recv_from(std::span<std::byte> buffer);
  // Zero-copy receive (see UdpDatagram). EAGAIN when nothing is queued.
  Expected<UdpDatagram, std::error_code> receive();

  // The pending error, cleared (SO_ERROR); empty if none.
  std::error_code take_error() noexcept;
  const std::error_code& pending_error() const noexcept { return error_; }

  bool bound() const noexcept { return bound_; }
  bool connected() const noexcept { return connected_; }
  Endpoint local() const noexcept { return local_; }
  Endpoint remote() const noexcept { return remote_; }
  std::size_t queued() const noexcept { return queue_.size(); }
  std::size_t queued_bytes() const noexcept { return queued_bytes_; }
  const SocketOptions& options() const noexcept { return options_; }

 private:
  friend class UdpLayer;
  UdpSocket(UdpLayer& layer, const SocketOptions& options) : layer_(&layer), options_(options) {}
  void free_queue() noexcept;

  UdpLayer* layer_;
  SocketOptions options_;
  bool bound_ = false;
  bool connected_ = false;
  Endpoint local_;
  Endpoint remote_;
  std::error_code error_;
  detail::DatagramQueue queue_;
  std::size_t queued_bytes_ = 0;
};

class UdpLayer {
 public:
  // Registers the layer with `iface` for protocol 17 (data and ICMP
  // errors). `pool` and `owner` are the interface's (the net API does not
  // expose them): frames taken for zero-copy receive are freed to them.
  // EINVAL: an empty or inverted ephemeral range.
  static Expected<std::unique_ptr<UdpLayer>, std::error_code> create(net::Interface& iface,
                                                                     mem::PacketPool& pool,
                                                                     mem::OwnerId owner,
                                                                     const UdpConfig& config = {});
  // Unregisters from the interface and detaches every socket (freeing
  // what they hold).
  ~UdpLayer();
  UdpLayer(const UdpLayer&) = delete;
  UdpLayer& operator=(const UdpLayer&) = delete;

  std::unique_ptr<UdpSocket> open(const SocketOptions& options = {});

  const UdpCounters& counters() const noexcept { return counters_; }
  std::string format_counters(bool all = false) const { return udp::format_counters(counters_, all); }
  std::size_t socket_count() const noexcept { return sockets_.size(); }
  net::Interface& interface() noexcept { return *iface_; }

 private:
  friend class UdpSocket;
  UdpLayer(net::Interface& iface, mem::PacketPool& pool, mem::OwnerId owner, const UdpConfig& config);

  void input(net::InboundDatagram& d, Nanos now);
  void icmp_error(const net::IcmpErrorInfo& e);
  // The socket a datagram to dst:port belongs to (exact address first,
  // then any); nullptr if none.
  UdpSocket* lookup(wire::Ipv4Addr dst, std::uint16_t port) const noexcept;
  bool is_broadcast(wire::Ipv4Addr a) const noexcept;
  bool port_in_use(wire::Ipv4Addr addr, std::uint16_t port, const UdpSocket* except) const noexcept;
  std::optional<std::uint16_t> pick_ephemeral(wire::Ipv4Addr addr) noexcept;
  std::error_code send(UdpSocket& s, std::span<const std::byte> payload, Endpoint to, Nanos now);
  void forget(UdpSocket* s) noexcept;

  net::Interface* iface_;
  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  UdpConfig config_;
  UdpCounters counters_;
  std::uint64_t rng_;
  std::vector<UdpSocket*> sockets_;  // every open socket, bound or not
  std::vector<std::byte> scratch_;   // one outgoing datagram
};

}  // namespace usnet::udp
