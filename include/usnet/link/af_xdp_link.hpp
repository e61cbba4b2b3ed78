// An AF_XDP socket on one receive queue of an existing interface, shared
// with the kernel's own stack: the zero-copy kernel path.
//
// Memory. The UMEM (the memory the device reads and writes frames in) is the
// packet pool's own memory: every pool buffer is a UMEM chunk, so a received
// frame is handed to the stack in the buffer the device wrote it into, and a
// frame to send goes to the device in the buffer the stack built it in. No
// copy on our side in either direction (in copy mode the kernel copies
// between its socket buffers and the UMEM; in zero-copy mode the NIC DMAs
// straight into it). Registration pins the pool's pages, so the link calls
// PacketPool::keep_segments(): a segment's pages must never go back to the
// system while the device may still write to them. The pool's buffer size
// must be a power of two from 2048 to the page size (the kernel's aligned
// chunk mode) and its segments a whole number of buffers.
//
// Rings. The fill ring is kept stocked with empty buffers (fill_target of
// them, allocated to the stack's owner: they are its receive buffers);
// rx_burst() takes received frames from the RX ring and tops the fill ring
// up. tx_burst() puts frames on the TX ring; buffers come back on the
// completion ring and are freed to the pool. need-wakeup is always on: the
// link makes a system call only when the kernel asks for one, except in
// copy mode, where the kernel sends in sendto() and takes at most 32 frames
// per call: there every tx_burst() and every rx_burst() kicks the socket
// while frames wait on the TX ring.
// With busy_poll_us > 0 the socket also gets SO_PREFER_BUSY_POLL,
// SO_BUSY_POLL and SO_BUSY_POLL_BUDGET, and rx_burst() drives the device
// with a non-blocking recvfrom() when it finds the RX ring empty.
//
// Sharing the interface. An XDP program (src/link/xdp/usnet_steer.bpf.c,
// compiled with clang at build time and carried inside the library) is
// attached to the interface through libxdp's dispatcher, so it runs beside
// other XDP programs. It sends to this socket only the stack's traffic, as
// described by the rules the stack gives steer(): ARP for the stack's
// addresses, ICMP and non-first fragments to them, and UDP/TCP to them on
// ports the stack serves (steer = served, the default), or every frame to
// the stack's addresses (steer = all). Every other frame goes to the
// kernel. The stack uses the interface's own MAC address and IPv4
// addresses of its own that the kernel must not also hold.
//
// Decisions:
//   - mode kAuto tries zero-copy and falls back to copy mode; kZeroCopy fails
//     with a clear error where the driver has no zero-copy support (veth).
//     The XDP program is attached in native (driver) mode, falling back to
//     generic (skb) mode where the driver has no native XDP.
//   - libxdp runs the program under its dispatcher (so other XDP programs
//     can share the interface) when the bpf filesystem is mounted at
//     /sys/fs/bpf and the kernel accepts the dispatcher; otherwise libxdp
//     attaches the program alone, which works as long as no other XDP
//     program holds the interface (shares_xdp_hook(), attach_notes()).
//     libbpf's and libxdp's messages go into the link's errors and notes,
//     not to stderr.
//   - A frame the kernel hands back that names no buffer the link lent it
//     (a corrupted descriptor) is counted (rx_bad_descriptors) and skipped,
//     never freed twice. A frame longer than its chunk cannot arrive (the
//     kernel refuses it).
//   - Frames shorter than 60 bytes are padded with zeros on transmit.
//   - Closing detaches the program and returns every buffer lent to the
//     kernel to the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"

namespace usnet::link {

struct AfXdpOptions {
  std::string interface;  // an existing interface in the caller's namespace
  std::uint32_t queue = 0;
  enum class Mode : std::uint8_t { kAuto, kZeroCopy, kCopy } mode = Mode::kAuto;
  std::uint32_t busy_poll_us = 0;  // 0: no busy polling
  bool steer_all = false;          // every frame to the stack's addresses, not only served ports
  // Descriptors in each of the four rings (a power of two, 64 .. 16384).
  std::uint32_t ring_size = 2048;
  // Empty buffers kept on the fill ring; 0 picks min(ring_size, a quarter
  // of the pool's buffers).
  std::uint32_t fill_target = 0;
};

// What the XDP program counted, summed over CPUs.
struct XdpSteerCounters {
  std::uint64_t redirected = 0;  // frames sent to the socket
  std::uint64_t passed = 0;      // frames left to the kernel
  // Frames usnet serves that arrived on a receive queue usnet has no
  // socket on; the kernel got them. Non-zero means the device spreads
  // usnet's traffic over more queues than the one the link reads.
  std::uint64_t wrong_queue = 0;
};

class AfXdpLink final : public Link {
 public:
  static constexpr std::size_t kMaxBurst = 64;

  // Errors (LinkError::code): ENODEV for no such interface; EPERM without
  // CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF; EOPNOTSUPP for zero-copy on a
  // driver without it; EINVAL for bad options or a pool whose buffers cannot
  // be UMEM chunks; EEXIST or EBUSY when another XDP program holds the
  // interface alone; others as the kernel gives them. `uri` is what info().name reports.
  static Expected<std::unique_ptr<AfXdpLink>, LinkError> open(const AfXdpOptions& options,
                                                              mem::PacketPool& pool, mem::OwnerId owner,
                                                              std::string uri = {});
  // From a parsed af_xdp: URI (queue, mode, busy_poll, steer).
  static Expected<std::unique_ptr<AfXdpLink>, LinkError> open(const LinkUri& uri, mem::PacketPool& pool,
                                                              mem::OwnerId owner, std::string text);

  ~AfXdpLink() override;
  AfXdpLink(const AfXdpLink&) = delete;
  AfXdpLink& operator=(const AfXdpLink&) = delete;

  const LinkInfo& info() const noexcept override { return info_; }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override;
  const LinkCounters& counters() const noexcept override { return counters_; }
  std::error_code steer(const SteerRule& rule, bool add) override;

  bool zero_copy() const noexcept { return zero_copy_; }
  // "native" or "generic": how the XDP program is attached.
  const char* xdp_mode() const noexcept;
  // True when the program runs under libxdp's dispatcher, beside other XDP
  // programs; false when libxdp attached it alone (no bpf filesystem, or a
  // kernel that refuses the dispatcher), so no other program can attach.
  bool shares_xdp_hook() const noexcept;
  // The warnings libbpf and libxdp gave while the link opened (why the
  // dispatcher was not used, say); empty if none.
  const std::string& attach_notes() const noexcept;
  // Receive queues the device has (from sysfs; 0 if unknown). The link
  // reads one: with more, the device may put usnet's traffic on a queue the
  // link does not read (XdpSteerCounters::wrong_queue counts it), unless
  // the device is set to one queue ("ethtool -L IF combined 1") or steers
  // usnet's flows to this queue.
  std::uint32_t device_rx_queues() const noexcept { return device_rx_queues_; }
  // Buffers now lent to the kernel (fill ring, RX not yet read, TX not yet
  // completed).
  std::size_t buffers_lent() const noexcept { return lent_count_; }
  std::uint64_t rx_bad_descriptors() const noexcept { return rx_bad_descriptors_; }
  // A system call per map entry and CPU: for reports, not the data path.
  XdpSteerCounters steer_counters() const noexcept;

 private:
  struct Impl;
  AfXdpLink(std::unique_ptr<Impl> impl, LinkInfo info, mem::PacketPool& pool, mem::OwnerId owner,
            const AfXdpOptions& options);

  void refill() noexcept;
  void reap_completions() noexcept;
  void kick_tx() noexcept;
  std::uint64_t chunk_address(mem::BufIndex index) const noexcept;
  // The buffer a descriptor address names, if the link lent it out.
  bool take_back(std::uint64_t address, mem::BufIndex& index, std::uint16_t& offset) noexcept;
  std::error_code update_steer_map(const SteerRule& rule, bool present);

  std::unique_ptr<Impl> impl_;
  LinkInfo info_;
  mem::PacketPool& pool_;
  mem::OwnerId owner_;
  LinkCounters counters_;
  std::byte* umem_base_ = nullptr;
  std::uint32_t chunk_shift_ = 11;
  std::uint32_t fill_target_ = 0;
  std::uint32_t busy_poll_us_ = 0;
  bool zero_copy_ = false;
  std::uint32_t device_rx_queues_ = 0;
  bool steer_all_ = false;
  std::vector<std::uint8_t> lent_;  // per buffer: 1 while the kernel holds it
  // Frames put on the TX ring since the last kick (copy mode sends in
  // batches of up to kKickBatch per sendto()).
  static constexpr std::size_t kKickBatch = 32;
  std::size_t unkicked_ = 0;
  std::size_t lent_count_ = 0;
  std::size_t fill_count_ = 0;  // of lent_count_: on the fill ring or received but not yet read
  std::uint64_t rx_bad_descriptors_ = 0;
  std::unordered_map<std::uint64_t, std::uint32_t> steer_refs_;  // rule key -> times added
};

}  // namespace usnet::link
