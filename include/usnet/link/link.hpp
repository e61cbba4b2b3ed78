// The link interface: how the stack receives and transmits Ethernet frames.
//
// Frames live in packet-pool buffers and are named by index, never copied
// between the stack and a zero-copy link. A link is given the pool and the
// owner its buffers are accounted to (the stack's): buffers it receives into
// are allocated to that owner and handed to the caller by rx_burst(); buffers
// given to tx_burst() belong to the link from then on, and it returns them to
// the pool when the device is done with them.
//
// Links do I/O but read no clock: time is passed in, so wrappers such as the
// fault injector (delays) replay exactly under a fake clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::link {

using Nanos = std::chrono::nanoseconds;

// One frame in a pool buffer: bytes [offset, offset + length) of `buffer`.
struct Frame {
  mem::BufIndex buffer = 0;
  std::uint32_t length = 0;
  std::uint16_t offset = 0;
  std::uint16_t flags = 0;  // FrameFlag bits
};

struct FrameFlag {
  // Receive: the device (or a trusted peer) verified every checksum in the
  // frame; the stack need not. Transmit: checksums are left to the device.
  static constexpr std::uint16_t kChecksumsVerified = 1u << 0;
};

// What a link can do, so the stack can skip work (see LinkInfo::offloads).
struct Offload {
  // Frames arrive intact and need no checksum computed on transmit: a
  // shared-memory link between two usnet stacks.
  static constexpr std::uint32_t kNoChecksums = 1u << 0;
};

struct LinkInfo {
  std::string name;       // the URI it was opened from
  wire::MacAddr mac;      // the address frames are sent from
  std::uint32_t mtu = 0;  // largest IP packet (Ethernet payload) it carries
  std::uint32_t offloads = 0;
};

struct LinkCounters {
  std::uint64_t rx_frames = 0, rx_bytes = 0;
  std::uint64_t tx_frames = 0, tx_bytes = 0;
  std::uint64_t rx_no_buffer = 0;  // a frame was waiting but the pool refused a buffer
  std::uint64_t rx_too_long = 0;   // a frame longer than a buffer, dropped
  std::uint64_t tx_full = 0;       // tx_burst could not take every frame offered
  std::uint64_t tx_errors = 0;     // the device refused a frame
  std::uint64_t rx_errors = 0;     // reading from the device failed (not "nothing to read")
};

// Traffic that is the stack's, for a link that shares its device with the
// kernel's own stack (AF_XDP): the link sends the stack these frames and
// leaves every other frame to the kernel. Links that hand the stack every
// frame (TAP, memif, AF_PACKET with its own MAC) need no rules.
struct SteerRule {
  enum class Kind : std::uint8_t {
    kIpv4Address,  // ARP for the address, ICMP and fragments to it
    kUdpPort,      // UDP to the stack's addresses on this port
    kTcpPort,      // TCP likewise
  };
  Kind kind = Kind::kIpv4Address;
  wire::Ipv4Addr address;  // kIpv4Address
  std::uint16_t port = 0;  // kUdpPort, kTcpPort
  friend bool operator==(const SteerRule&, const SteerRule&) = default;
};

// A problem opening a link, said so that a user can act on it:
// "tap:usnet0: cannot open /dev/net/tun: Operation not permitted (needs CAP_NET_ADMIN: run as root)".
struct LinkError {
  std::error_code code;
  std::string message;
};

class Link {
 public:
  virtual ~Link() = default;

  virtual const LinkInfo& info() const noexcept = 0;

  // Up to out.size() received frames, each in a buffer now held by the
  // caller's owner. Never blocks.
  virtual std::size_t rx_burst(std::span<Frame> out, Nanos now) = 0;

  // Takes frames to send, in order; returns how many it took (a prefix of
  // `frames`). Buffers of taken frames belong to the link; the caller keeps
  // the rest. Never blocks. A link may hold taken frames back to send them
  // as a batch: the next rx_burst() sends them at the latest, and so do an
  // empty tx_burst() and a poll on wait_fd(); a caller that polls the link,
  // as a stack does, never leaves a frame behind.
  virtual std::size_t tx_burst(std::span<const Frame> frames, Nanos now) = 0;

  // A file descriptor that polls readable when rx_burst() may have frames,
  // for sleeping instead of spinning; -1 if the link has none.
  virtual int wait_fd() const noexcept = 0;

  // Around a sleep on wait_fd(): arm_wakeup() asks the link to make the fd
  // readable when a frame arrives (a link may keep its wake-ups off while
  // the stack polls: memif then spares its peer an eventfd write per
  // burst), and returns false when frames are already waiting (poll, do not
  // sleep); disarm_wakeup() after the sleep turns them off again.
  virtual bool arm_wakeup() { return true; }
  virtual void disarm_wakeup() {}

  // A hint from a sender with more frames to come (Stack::TxBatch): while
  // held, a link may keep frames it took from its peer's view, to show them
  // all at once (memif: one store of the ring's index for many frames). It
  // shows them when the hold ends at the latest, and meanwhile at the next
  // rx_burst(), empty tx_burst() or arm_wakeup(); its next_deadline() is
  // then "now", so a loop on wait_fd() polls rather than sleeps. Taking a
  // frame and refusing one work as without the hold.
  virtual void set_tx_hold(bool hold) { (void)hold; }

  // The earliest time at which the link has work of its own (a delayed
  // frame to release), or Nanos::max() if none.
  virtual Nanos next_deadline() const noexcept { return Nanos::max(); }

  virtual const LinkCounters& counters() const noexcept = 0;

  // Adds (add = true) or takes back a rule for what the stack receives (see
  // SteerRule). Rules are counted: a rule added twice stays until taken back
  // twice. An error (e.g. ENOSPC when the device's table is full) means the
  // traffic would not reach the stack. The default, for links that need no
  // rules, accepts every rule and does nothing.
  virtual std::error_code steer(const SteerRule& rule, bool add) {
    (void)rule;
    (void)add;
    return {};
  }
};

// A link URI taken apart: "scheme:target?key=value&key=value".
struct LinkUri {
  std::string scheme;  // memif, tap, af_packet, af_xdp, mem
  std::string target;  // socket path or interface name
  std::vector<std::pair<std::string, std::string>> params;

  // The value of `key`, or `fallback` when absent.
  std::string_view param(std::string_view key, std::string_view fallback = {}) const;
};

// Parses and checks the URI's shape (known scheme, non-empty target, well-
// formed parameters, no unknown parameter for the scheme).
Expected<LinkUri, LinkError> parse_link_uri(std::string_view uri);

// Opens a link from a URI a user typed:
//   tap:NAME                       a TAP device (created if absent; needs root)
//   af_packet:IFNAME               AF_PACKET socket on an existing interface
//   memif:/path.sock[?role=server|client&id=N&secret=S&mtu=N]  (client; mtu 1500 by default)
//   af_xdp:IFNAME[?queue=N&mode=zc|copy]
// A bad URI, a missing device or a missing privilege gives a LinkError that
// names the problem.
Expected<std::unique_ptr<Link>, LinkError> open_link(std::string_view uri, mem::PacketPool& pool,
                                                     mem::OwnerId owner);

}  // namespace usnet::link
