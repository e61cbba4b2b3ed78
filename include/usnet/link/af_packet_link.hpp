// An AF_PACKET socket on an existing interface: usnet sends and receives
// whole Ethernet frames on it beside the kernel's own stack.
//
// Receive uses a memory-mapped ring, of one of two kinds (AfPacketRing):
//   - blocks (TPACKET_V3, the default): the kernel writes frames into blocks
//     and hands over a block at a time (when it is full or its timeout
//     passes), so one poll wake-up can deliver many frames with no system
//     call per frame; a frame can wait up to the block timeout (1 ms) in a
//     block that is not full, so a request/response exchange takes that long;
//   - frames (TPACKET_V2, URI parameter ring=frames): fixed-size slots, each
//     handed over as soon as the kernel has written it: no added latency,
//     one slot per frame however small (the slot fits the interface's MTU).
// Each frame is copied from the ring into a pool
// buffer: the ring is the kernel's memory, laid out in blocks we cannot
// choose, so the pool's buffers cannot be the ring's frames (AF_XDP is the
// zero-copy path). The block goes back to the kernel as soon as every frame
// in it has been copied.
//
// Transmit uses sendmmsg(): one system call per burst of up to kMaxTxBatch
// frames, with PACKET_QDISC_BYPASS so frames go straight to the driver. A
// PACKET_TX_RING would save nothing here (the frame is copied once either
// way, pool to ring or pool to kernel buffer) and would need a second socket,
// since a socket has one TPACKET version and V3's transmit ring is the least
// used path of all.
//
// Decisions:
//   - usnet's MAC address is its own (locally administered, derived from the
//     interface name unless code gives AfPacketOptions::mac; the URI takes
//     no parameters), not the interface's, and the interface is put in promiscuous mode
//     through PACKET_ADD_MEMBERSHIP (undone by the kernel when the socket
//     closes) so frames to that address arrive. The kernel's stack on the
//     interface then sees usnet's unicast frames as for another host and
//     drops them before IP, so it never answers or forwards for usnet; it
//     must simply have no address of usnet's on that interface.
//   - Frames the kernel reports as PACKET_OUTGOING (sent by the kernel or by
//     another socket on the interface) are ignored; PACKET_IGNORE_OUTGOING
//     asks the kernel not to queue them at all where it can.
//   - A VLAN tag the driver took out of the frame (TP_STATUS_VLAN_VALID) is
//     put back, so the stack sees the frame as it was on the wire.
//   - A frame the kernel sent with its checksum left to the device
//     (TP_STATUS_CSUMNOTREADY: traffic from the same host, e.g. over veth)
//     holds only the pseudo-header sum in its TCP/UDP checksum field. The
//     link finishes that checksum as the device would have (IPv4, and IPv6
//     without extension headers), so every consumer sees a correct frame,
//     and marks it FrameFlag::kChecksumsVerified: it never crossed a wire.
//     Frames the device verified (TP_STATUS_CSUM_VALID) are marked too.
//   - A frame longer than a pool buffer or cut short by the ring is dropped
//     (rx_too_long). AF_PACKET sees packets after GRO and, on a veth, as the
//     sending kernel built them: with TSO/GSO on the peer (or GRO on the
//     interface) TCP arrives in super-frames of up to 64 KiB that are
//     dropped here, so turn those offloads off (ethtool -K PEER tso off gso
//     off; ethtool -K IF gro off). AF_XDP does not have this problem. When the pool refuses a buffer the
//     frame stays in the ring (the kernel drops new frames once every block is full), rx_no_buffer counts it
//     and the burst stops.
//   - Frames shorter than 60 bytes are padded with zeros on transmit.
//     EAGAIN/ENOBUFS stop the burst (tx_full); any other refusal drops that
//     frame (tx_errors).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::link {

enum class AfPacketRing : std::uint8_t {
  kBlocks,  // TPACKET_V3: frames packed into blocks, a block handed over when full or timed out
  kFrames,  // TPACKET_V2: one slot per frame, each handed over at once
};

struct AfPacketOptions {
  std::string interface;  // an existing interface in the caller's namespace
  AfPacketRing ring = AfPacketRing::kBlocks;
  std::optional<wire::MacAddr> mac;  // usnet's address; default_mac(interface) when empty
  // The receive ring: block_count blocks of block_size bytes (a multiple of
  // the page size, at least 2048); a block is handed over when full or
  // after block_timeout_ms with frames in it (the receive latency bound).
  // Under sparse traffic a block may go over holding a single frame, so the
  // ring is sure to hold only block_count frames: a caller that reads less
  // often than every block_count * block_timeout_ms can lose frames
  // (rx_ring_drops()) although most of the ring is empty.
  // kFrames: the same memory, cut into slots of frame_size() bytes (none
  // crosses a block); block_timeout_ms is not used.
  std::uint32_t block_size = 1u << 16;
  std::uint32_t block_count = 32;
  std::uint32_t block_timeout_ms = 1;
  bool promiscuous = true;  // needed unless `mac` is the interface's own
};

class AfPacketLink final : public Link {
 public:
  static constexpr std::size_t kMaxTxBatch = 64;

  // Errors (LinkError::code): ENODEV for no such interface; EPERM/EACCES
  // without CAP_NET_RAW; EINVAL for bad options; others as the kernel gives
  // them. `uri` is what info().name reports ("af_packet:IFNAME" when empty).
  static Expected<std::unique_ptr<AfPacketLink>, LinkError> open(const AfPacketOptions& options,
                                                                 mem::PacketPool& pool, mem::OwnerId owner,
                                                                 std::string uri = {});

  // A locally administered unicast address derived from the interface name.
  static wire::MacAddr default_mac(std::string_view interface) noexcept;
  // kFrames: the slot size for an interface of this MTU (header, address,
  // a frame of the MTU with a VLAN tag), a multiple of TPACKET_ALIGNMENT.
  static std::uint32_t frame_size(std::uint32_t mtu) noexcept;

  ~AfPacketLink() override;
  AfPacketLink(const AfPacketLink&) = delete;
  AfPacketLink& operator=(const AfPacketLink&) = delete;

  const LinkInfo& info() const noexcept override { return info_; }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override { return fd_; }
  const LinkCounters& counters() const noexcept override { return counters_; }

  // Frames skipped because the kernel marked them PACKET_OUTGOING.
  std::uint64_t rx_outgoing_ignored() const noexcept { return rx_outgoing_; }
  // Frames the kernel dropped because every block of the ring was full. A
  // system call (PACKET_STATISTICS, which resets the kernel's count, so the
  // link keeps the sum): for reports, not for the data path.
  std::uint64_t rx_ring_drops() noexcept;

 private:
  AfPacketLink(int fd, std::byte* ring, const AfPacketOptions& options, LinkInfo info, mem::PacketPool& pool,
               mem::OwnerId owner);

  std::byte* block(std::uint32_t i) const noexcept { return ring_ + std::size_t{i} * block_size_; }
  void release_block() noexcept;
  std::size_t rx_blocks(std::span<Frame> out);
  std::size_t rx_frames(std::span<Frame> out);
  // One frame the kernel wrote (either ring), as the ring header gives it.
  struct Captured {
    const std::byte* data;  // tp_snaplen bytes, checked to lie in the ring
    std::uint32_t snaplen, len, status;
    std::uint16_t vlan_tci, vlan_tpid;
    std::uint8_t pkttype;
  };
  enum class Take : std::uint8_t { kTaken, kSkipped, kNoBuffer };
  // Copies `c` into a pool buffer as out (kTaken), skips it (counted), or
  // finds no buffer (the frame stays in the ring).
  Take take(const Captured& c, Frame& out);
  // Sends frames [0, count) of the staged batch; returns how many were taken
  // and sets `stop` when the device is full.
  std::size_t flush(std::span<const Frame> staged, bool& stop);

  int fd_ = -1;
  std::byte* ring_ = nullptr;
  AfPacketRing ring_kind_ = AfPacketRing::kBlocks;
  std::uint32_t block_size_ = 0;
  std::uint32_t block_count_ = 0;
  std::uint32_t frame_size_ = 0;  // kFrames: slot size, slots per block, slots in all
  std::uint32_t frames_per_block_ = 0;
  std::uint32_t frame_count_ = 0;
  LinkInfo info_;
  mem::PacketPool& pool_;
  mem::OwnerId owner_;
  LinkCounters counters_;
  std::uint64_t rx_outgoing_ = 0;
  std::uint64_t ring_drops_ = 0;

  // Receive cursor: the block being read, and where in it (kBlocks); the
  // next slot (kFrames).
  std::uint32_t cur_frame_ = 0;
  std::uint32_t cur_block_ = 0;
  bool in_block_ = false;
  std::uint32_t pkts_left_ = 0;
  std::size_t next_off_ = 0;

  // Transmit staging, reused by every burst (no allocation per burst).
  std::array<mmsghdr, kMaxTxBatch> msgs_{};
  std::array<iovec, kMaxTxBatch> iovs_{};
};

}  // namespace usnet::link
