// The memif link: the shared-memory packet interface of VPP and DPDK
// (libmemif, DPDK's net_memif PMD), protocol version 2.0.
//
// Two processes on one host exchange Ethernet frames through rings in shared
// memory, with no privileges. A Unix SOCK_SEQPACKET socket carries the
// control messages (fixed 128-byte records; file descriptors ride along with
// SCM_RIGHTS); the server listens on the socket path, the client connects.
// The client creates the shared memory (one memfd: the rings and the packet
// buffers) and hands it and the rings' interrupt eventfds to the server:
//
//   server -> client  HELLO        versions and limits the server accepts
//   client -> server  INIT         version, interface id, mode, secret
//   client -> server  ADD_REGION   region index and size, memfd attached
//   client -> server  ADD_RING     direction, index, region, offset, log2 size, eventfd attached
//   client -> server  CONNECT
//   server -> client  CONNECTED
//   either            DISCONNECT   code and reason text; the socket closes
// and the server answers INIT, ADD_REGION and ADD_RING with ACK.
//
// Rings. One ring per direction: C2S (client to server, "S2M" in older
// terms) and S2C. The client fills C2S descriptors and advances its head;
// the server consumes them and advances its tail. On S2C the client offers
// empty buffers by advancing head, the server fills them and advances tail.
// head and tail are free-running 16-bit counters, masked by ring size - 1.
//
// Trust. Everything the peer writes (messages, the region it sends, ring
// indices, descriptors) is untrusted: a bad value disconnects the peer with a
// counted MemifDrop reason and is never followed out of bounds. As client,
// usnet keeps its own record of which buffer each slot uses and reads only
// lengths from the ring; as server it checks every descriptor against the
// region the client declared and the memfd's real size (which must be sealed
// against shrinking, so the client cannot make our accesses fault).
//
// Mode. usnet polls: the rings it receives on carry the "mask interrupts"
// flag, so the peer writes no eventfd, except between arm_wakeup() and
// disarm_wakeup() (a stack about to sleep), or always when
// MemifConfig::interrupts is set. wait_fd() is an epoll fd that becomes
// readable on the receive ring's eventfd or a control message. The control
// socket is serviced on every call while not connected; once connected (it
// carries nothing then but a DISCONNECT or the peer going away) every
// kControlInterval of the clock the caller passes, or every kControlEvery
// calls when that clock does not move, and on poll_control(). Each look is
// two system calls, which on every call would be most of a busy-polling
// round trip.
//
// Copies. Frames received are copied from the ring buffers into pool buffers
// of the owner, and frames sent are copied into the ring's buffers; one burst
// per call. (Zero copy between the memif region and the packet pool is a
// later optimisation: the pool would have to live in the memif region.)
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::link {

enum class MemifRole : std::uint8_t { kServer, kClient };

// The MTU a memif link may be given (the URI's mtu=N): a frame of it with an
// Ethernet header and a VLAN tag must fit one ring buffer (at most 65535
// bytes; chained descriptors are accepted on receive but not made).
inline constexpr std::uint32_t kMemifMinMtu = 68;
inline constexpr std::uint32_t kMemifMaxMtu = 65535 - 18;

// The ring buffer size a client offers for `mtu`: 2048 (DPDK's and libmemif's
// default) or the frame of that MTU with a VLAN tag, whichever is larger.
constexpr std::uint32_t memif_buffer_size_for(std::uint32_t mtu) { return mtu + 18 > 2048 ? mtu + 18 : 2048; }

struct MemifConfig {
  std::string socket_path;  // at most 107 bytes (sockaddr_un)
  MemifRole role = MemifRole::kClient;
  std::uint32_t interface_id = 0;  // must match on both ends
  std::string secret;              // at most 24 bytes; empty: none required
  // Client: ring size it asks for (the server's HELLO may lower it); server:
  // largest it accepts. 1..14.
  std::uint8_t log2_ring_size = 10;
  // Client: bytes of each ring buffer (64..65535); frames longer than this or
  // than a pool buffer are not sent.
  std::uint32_t buffer_size = 2048;
  wire::MacAddr mac{};  // all zero: a locally administered address is made up
  // Both ends must agree (a frame longer than the buffer the peer offers is
  // not sent); the URI's mtu=N sets it and buffer_size together.
  std::uint32_t mtu = 1500;
  bool interrupts = false;  // see "Mode" above
  // false: no checksums computed on transmit nor checked on receive (IPv4
  // header, ICMP, UDP, TCP: Offload::kNoChecksums), as the kernel's
  // loopback skips UDP's and TCP's: bytes in shared memory are not
  // corrupted on the way. Only between two usnet stacks that both set it (a
  // peer that checks would drop every frame). The URI's checksums=off.
  bool checksums = true;
  std::string name;  // LinkInfo::name; the socket path if empty
};

// Why a connection ended or a peer was refused.
enum class MemifDrop : std::uint8_t {
  kPeerClosed,        // the control socket closed or failed
  kPeerDisconnect,    // the peer sent DISCONNECT
  kBadMessage,        // wrong size, unknown type, or out of order
  kBadVersion,        // no common protocol version
  kBadInit,           // unknown interface id, mode or wrong secret
  kBadRegion,         // region fd missing, not a sealed file, size or index wrong
  kBadRing,           // ring fd missing, index, size, or ring outside its region
  kBadRingIndex,      // a head or tail moved further than the ring allows
  kBadDescriptor,     // a descriptor's region, offset or length out of bounds
  kHandshakeTimeout,  // the handshake took longer than kHandshakeTimeout
  kAlreadyConnected,  // a second client while one is connected
  kLocalError,        // a syscall failed here (memfd, eventfd, mmap)
  kCount
};
std::string_view to_string(MemifDrop reason) noexcept;

struct MemifStats {
  std::uint64_t connects = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(MemifDrop::kCount)> drops{};
  std::string last_drop;       // "bad descriptor: offset past region" (ours) or the peer's text
  std::uint64_t rx_empty = 0;  // zero-length frames received, dropped
  // Frames written into the ring but still held (set_tx_hold) when the
  // connection ended: counted as sent in tx_frames, never seen by the peer.
  std::uint64_t tx_held_lost = 0;

  std::uint64_t drop_count(MemifDrop r) const noexcept { return drops[static_cast<std::size_t>(r)]; }
};

class MemifLink final : public Link {
 public:
  static constexpr Nanos kControlInterval = std::chrono::milliseconds(1);
  static constexpr std::uint32_t kControlEvery = 65536;
  // How long a server waits for a client to finish the handshake, and a
  // client for a server (longer: a DPDK server still initialising accepts
  // late, and gains nothing from a client that hangs up and comes back).
  static constexpr Nanos kHandshakeTimeout = std::chrono::seconds(2);
  static constexpr Nanos kClientHandshakeTimeout = std::chrono::seconds(10);

  // Server: binds and listens on the path (a stale socket file left by a
  // dead server is replaced). Client: connects on the first rx_burst,
  // tx_burst or poll_control, and keeps retrying on later calls while no
  // server is there. Errors name the path and the cause.
  static Expected<std::unique_ptr<MemifLink>, LinkError> create(const MemifConfig& config,
                                                                mem::PacketPool& pool, mem::OwnerId owner);

  MemifLink(const MemifLink&) = delete;
  MemifLink& operator=(const MemifLink&) = delete;
  ~MemifLink() override;

  const LinkInfo& info() const noexcept override;
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override;
  bool arm_wakeup() override;
  void disarm_wakeup() override;
  // While held, frames are written into the ring but made visible to the
  // peer (one store of the ring's index, one look at its wake-up flag) once
  // per 32, or when the ring fills, and at the latest at the next
  // rx_burst(), empty tx_burst(), arm_wakeup() or set_tx_hold(false). Held
  // frames are lost if the connection ends first (stats().tx_held_lost).
  void set_tx_hold(bool hold) override;
  // 0 while frames are held (a loop must not sleep on them), else none.
  Nanos next_deadline() const noexcept override;
  const LinkCounters& counters() const noexcept override;

  // Services the control socket now: accepts, advances the handshake, sees
  // a peer go away.
  void poll_control(Nanos now);
  bool connected() const noexcept;
  const MemifStats& stats() const noexcept;
  // The peer's name from HELLO or INIT ("DPDK 22.11.1", "usnet").
  const std::string& peer_name() const noexcept;

  struct Impl;

 private:
  explicit MemifLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// memif:/path.sock[?role=server|client] (client if no role is given).
Expected<std::unique_ptr<Link>, LinkError> open_memif(const LinkUri& uri, mem::PacketPool& pool,
                                                      mem::OwnerId owner);

}  // namespace usnet::link
