#include "usnet/link/af_packet_link.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/ipv6.hpp"

namespace usnet::link {

namespace {

constexpr std::size_t kMinFrame = 60;           // Ethernet minimum without the FCS (IEEE 802.3 4.2.3.3)
constexpr std::uint32_t kRingFrameSize = 2048;  // tp_frame_size: V3 packs frames, this only sizes frame_nr
constexpr std::size_t kMacPairLen = 12;         // destination and source addresses
constexpr std::uint16_t kVlanTpid = 0x8100;     // IEEE 802.1Q

// Offsets into the kernel's ring ABI (linux/if_packet.h). The ring is read
// through memcpy at these offsets; only the block status word, which the
// kernel and we hand back and forth, is accessed atomically in place.
constexpr std::size_t kBlockStatusOff =
    offsetof(tpacket_block_desc, hdr) + offsetof(tpacket_hdr_v1, block_status);
constexpr std::size_t kTpacketAlign = TPACKET_ALIGNMENT;
constexpr std::size_t align_up(std::size_t x) { return (x + kTpacketAlign - 1) & ~(kTpacketAlign - 1); }
// The sockaddr_ll the kernel writes after each frame header.
constexpr std::size_t kSllOff = align_up(sizeof(tpacket3_hdr));
constexpr std::size_t kSll2Off = align_up(sizeof(tpacket2_hdr));  // TPACKET_V2 slots
constexpr std::size_t kFrameStatusOff = offsetof(tpacket2_hdr, tp_status);

std::error_code errno_code(int e) { return {e, std::generic_category()}; }

LinkError error(const std::string& uri, int e, const std::string& what) {
  return LinkError{errno_code(e), uri + ": " + what};
}

std::string privilege_hint(int e) {
  if (e == EPERM || e == EACCES) return " (needs CAP_NET_RAW: run as root)";
  return {};
}

template <class T>
T read_at(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The kernel's ABI puts a 32-bit status word at the start of each V3 block
// header and each V2 slot (4-byte aligned: blocks are page-aligned, slots
// TPACKET_ALIGNMENT-sized), which both sides read and write in place.
std::atomic_ref<std::uint32_t> status_word(std::byte* p) noexcept {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast)
  return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(p));
}
std::atomic_ref<std::uint32_t> block_status(std::byte* block) noexcept {
  return status_word(block + kBlockStatusOff);
}

// A frame the kernel sent with CHECKSUM_PARTIAL (TP_STATUS_CSUMNOTREADY)
// carries in its TCP or UDP checksum field only the folded pseudo-header
// sum, the value a device starts from. Finishes it as the device would:
// the sum over the transport segment (field included), complemented, so the
// frame the stack, a pcap file or a forwarder sees is a correct one. IPv4
// (not fragments) and IPv6 without extension headers; anything else is left
// as it is (and still flagged as verified: it never crossed a wire).
void finish_partial_checksum(std::span<std::byte> frame) noexcept {
  auto eth = wire::EthernetView::make(frame);
  if (!eth) return;
  const std::size_t l3 = eth->header_len();
  std::size_t l4 = 0;
  std::size_t l4_len = 0;
  std::uint8_t proto = 0;
  if (eth->ethertype() == wire::ethertype::kIpv4) {
    auto ip = wire::Ipv4View::make(eth->payload());
    if (!ip || ip->is_fragment()) return;
    l4 = l3 + ip->header_len();
    l4_len = ip->total_len() - ip->header_len();
    proto = ip->protocol();
  } else if (eth->ethertype() == wire::ethertype::kIpv6) {
    auto ip = wire::Ipv6View::make(eth->payload());
    if (!ip) return;
    l4 = l3 + wire::Ipv6View::kHeaderLen;
    l4_len = ip->payload_len();
    proto = ip->next_header();
  } else {
    return;
  }
  std::size_t field = 0;
  if (proto == wire::ip_protocol::kTcp) {
    field = 16;  // RFC 9293 3.1
  } else if (proto == wire::ip_protocol::kUdp) {
    field = 6;  // RFC 768
  } else {
    return;
  }
  if (l4 + l4_len > frame.size() || field + 2 > l4_len) return;
  const std::span<std::byte> segment = frame.subspan(l4, l4_len);
  std::uint16_t sum = wire::internet_checksum(segment);
  if (proto == wire::ip_protocol::kUdp && sum == 0) sum = 0xffff;  // RFC 768: zero means "none"
  store_be16(segment.data() + field, sum);
}

}  // namespace

wire::MacAddr AfPacketLink::default_mac(std::string_view interface) noexcept {
  // FNV-1a over a prefix and the name (see TapLink::default_mac).
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ull;
    }
  };
  mix("usnet-af_packet:");
  mix(interface);
  wire::MacAddr m;
  for (std::size_t i = 0; i < m.b.size(); ++i) m.b[i] = static_cast<std::uint8_t>(h >> (8 * i));
  m.b[0] = static_cast<std::uint8_t>((m.b[0] & 0xfc) | 0x02);  // locally administered, unicast
  return m;
}

std::uint32_t AfPacketLink::frame_size(std::uint32_t mtu) noexcept {
  // The kernel puts the frame where its network header lands aligned after
  // the V2 header, the address and at least 16 bytes for the link header
  // (tpacket_rcv: netoff = TPACKET_ALIGN(tp_hdrlen + max(maclen, 16))).
  // Room for an 18-byte link header (a VLAN tag left in the frame) and the
  // MTU after it.
  constexpr std::size_t kV2HdrLen = kSll2Off + sizeof(sockaddr_ll);
  return static_cast<std::uint32_t>(align_up(align_up(kV2HdrLen + 18) + mtu));
}

Expected<std::unique_ptr<AfPacketLink>, LinkError> AfPacketLink::open(const AfPacketOptions& options,
                                                                      mem::PacketPool& pool,
                                                                      mem::OwnerId owner, std::string uri) {
  const std::string& name = options.interface;
  if (uri.empty()) uri = "af_packet:" + name;
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return unexpected(error(uri, EINVAL, "bad interface name '" + name + "'"));
  }
  const wire::MacAddr mac = options.mac.value_or(default_mac(name));
  if (!mac.is_unicast() || mac == wire::MacAddr{}) {
    return unexpected(error(uri, EINVAL, "MAC address " + mac.to_string() + " is not a unicast address"));
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  if (options.block_size < kRingFrameSize || page <= 0 ||
      options.block_size % static_cast<std::uint32_t>(page) != 0 || options.block_count == 0 ||
      options.block_count > 4096 || options.block_timeout_ms == 0) {
    return unexpected(
        error(uri, EINVAL,
              "bad ring options: block_size must be a multiple of the page size, blocks 1..4096, "
              "timeout > 0"));
  }
  if (!pool.has_owner(owner)) return unexpected(error(uri, EINVAL, "the pool does not know the owner given"));

  const unsigned ifindex = ::if_nametoindex(name.c_str());
  if (ifindex == 0) {
    const int e = errno;
    if (e == ENODEV || e == ENXIO) {
      return unexpected(error(uri, ENODEV, "no such interface '" + name + "' in this network namespace"));
    }
    return unexpected(error(uri, e, "cannot look up interface '" + name + "': " + std::strerror(e)));
  }

  // Protocol 0 until bind(): no frame from any other interface is queued in
  // the meantime.
  const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int e = errno;
    return unexpected(error(
        uri, e, std::string("cannot open an AF_PACKET socket: ") + std::strerror(e) + privilege_hint(e)));
  }
  auto fail = [&](const std::string& what, void* ring = nullptr, std::size_t ring_len = 0) {
    const int e = errno;
    if (ring != nullptr) ::munmap(ring, ring_len);
    ::close(fd);
    return unexpected(error(uri, e, what + ": " + std::strerror(e) + privilege_hint(e)));
  };

  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd, SIOCGIFMTU, &ifr) != 0) return fail("cannot read the MTU of '" + name + "'");
  const auto mtu = static_cast<std::uint32_t>(ifr.ifr_mtu);
  const bool frames = options.ring == AfPacketRing::kFrames;
  if (frames && frame_size(mtu) > options.block_size) {
    ::close(fd);
    return unexpected(error(uri, EINVAL,
                            "bad ring options: a frame slot for MTU " + std::to_string(mtu) + " needs " +
                                std::to_string(frame_size(mtu)) + " bytes, more than block_size"));
  }

  int v = frames ? TPACKET_V2 : TPACKET_V3;
  if (::setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) != 0)
    return fail(frames ? "cannot select TPACKET_V2" : "cannot select TPACKET_V3");
  int one = 1;
  if (::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) {
    return fail("cannot set PACKET_QDISC_BYPASS");
  }
  // Best effort (Linux 4.20+): the rx path filters PACKET_OUTGOING anyway.
  (void)::setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);

  tpacket_req3 req{};  // V2 reads the first four fields (tpacket_req)
  req.tp_block_size = options.block_size;
  req.tp_block_nr = options.block_count;
  req.tp_frame_size = frames ? frame_size(mtu) : kRingFrameSize;
  req.tp_frame_nr = options.block_size / req.tp_frame_size * options.block_count;
  if (!frames) req.tp_retire_blk_tov = options.block_timeout_ms;
  const socklen_t req_len = frames ? sizeof(tpacket_req) : sizeof req;
  if (::setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, req_len) != 0) {
    return fail(frames ? "cannot set up the TPACKET_V2 receive ring"
                       : "cannot set up the TPACKET_V3 receive ring");
  }
  const std::size_t ring_len = std::size_t{options.block_size} * options.block_count;
  void* ring = ::mmap(nullptr, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (ring == MAP_FAILED) return fail("cannot map the receive ring");

  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  // The sockets API takes every address family through sockaddr*.
  if (::bind(fd,
             reinterpret_cast<const sockaddr*>(&sll),  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
             sizeof sll) != 0) {
    return fail("cannot bind to interface '" + name + "'", ring, ring_len);
  }
  if (options.promiscuous) {
    packet_mreq mr{};
    mr.mr_ifindex = static_cast<int>(ifindex);
    mr.mr_type = PACKET_MR_PROMISC;
    if (::setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) != 0) {
      return fail("cannot put '" + name + "' in promiscuous mode", ring, ring_len);
    }
  }
  LinkInfo info{uri, mac, mtu, 0};
  return std::unique_ptr<AfPacketLink>(
      new AfPacketLink(fd, static_cast<std::byte*>(ring), options, std::move(info), pool, owner));
}

AfPacketLink::AfPacketLink(int fd, std::byte* ring, const AfPacketOptions& options, LinkInfo info,
                           mem::PacketPool& pool, mem::OwnerId owner)
    : fd_(fd),
      ring_(ring),
      ring_kind_(options.ring),
      block_size_(options.block_size),
      block_count_(options.block_count),
      info_(std::move(info)),
      pool_(pool),
      owner_(owner) {
  if (ring_kind_ == AfPacketRing::kFrames) {
    frame_size_ = frame_size(info_.mtu);
    frames_per_block_ = block_size_ / frame_size_;
    frame_count_ = frames_per_block_ * block_count_;
  }
}

AfPacketLink::~AfPacketLink() {
  if (ring_ != nullptr) ::munmap(ring_, std::size_t{block_size_} * block_count_);
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t AfPacketLink::rx_ring_drops() noexcept {
  tpacket_stats_v3 st{};
  socklen_t len = sizeof st;
  if (::getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) ring_drops_ += st.tp_drops;
  return ring_drops_;
}

void AfPacketLink::release_block() noexcept {
  block_status(block(cur_block_)).store(TP_STATUS_KERNEL, std::memory_order_release);
  cur_block_ = (cur_block_ + 1) % block_count_;
  in_block_ = false;
  pkts_left_ = 0;
}

AfPacketLink::Take AfPacketLink::take(const Captured& c, Frame& out) {
  const bool vlan = (c.status & TP_STATUS_VLAN_VALID) != 0;
  const std::size_t len = c.snaplen + (vlan ? 4u : 0u);
  if (c.pkttype == PACKET_OUTGOING) {
    ++rx_outgoing_;
    return Take::kSkipped;
  }
  if (c.snaplen < c.len || len > pool_.buffer_size() || (vlan && c.snaplen < kMacPairLen)) {
    ++counters_.rx_too_long;
    return Take::kSkipped;
  }
  auto buf = pool_.alloc(owner_);
  if (!buf) {
    ++counters_.rx_no_buffer;  // the frame stays in the ring for the next burst
    return Take::kNoBuffer;
  }
  std::byte* dst = pool_.buffer(*buf).data();
  if (vlan) {
    // Put back the tag the driver took out (IEEE 802.1Q: after the
    // addresses, TPID then TCI).
    const std::uint16_t tpid = (c.status & TP_STATUS_VLAN_TPID_VALID) != 0 ? c.vlan_tpid : kVlanTpid;
    std::memcpy(dst, c.data, kMacPairLen);
    store_be16(dst + kMacPairLen, tpid);
    store_be16(dst + kMacPairLen + 2, c.vlan_tci);
    std::memcpy(dst + kMacPairLen + 4, c.data + kMacPairLen, c.snaplen - kMacPairLen);
  } else {
    std::memcpy(dst, c.data, c.snaplen);
  }
  std::uint16_t flags = 0;
  if ((c.status & TP_STATUS_CSUMNOTREADY) != 0) finish_partial_checksum({dst, len});
  if ((c.status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)) != 0)
    flags |= FrameFlag::kChecksumsVerified;
  out = Frame{*buf, static_cast<std::uint32_t>(len), 0, flags};
  ++counters_.rx_frames;
  counters_.rx_bytes += len;
  return Take::kTaken;
}

std::size_t AfPacketLink::rx_burst(std::span<Frame> out, Nanos /*now*/) {
  return ring_kind_ == AfPacketRing::kFrames ? rx_frames(out) : rx_blocks(out);
}

std::size_t AfPacketLink::rx_frames(std::span<Frame> out) {
  std::size_t n = 0;
  // Bounded: at most one lap of the slots per burst.
  for (std::uint32_t done = 0; n < out.size() && done < frame_count_; ++done) {
    std::byte* slot =
        block(cur_frame_ / frames_per_block_) + std::size_t{cur_frame_ % frames_per_block_} * frame_size_;
    auto status = status_word(slot + kFrameStatusOff);
    const std::uint32_t st = status.load(std::memory_order_acquire);
    if ((st & TP_STATUS_USER) == 0) break;
    tpacket2_hdr hdr;
    std::memcpy(&hdr, slot, sizeof hdr);
    // The kernel is trusted, but a bad offset must still not read outside
    // the slot: such a slot goes back, counted as a frame cut short.
    if (hdr.tp_mac < kSll2Off + sizeof(sockaddr_ll) ||
        std::size_t{hdr.tp_mac} + hdr.tp_snaplen > frame_size_) {
      ++counters_.rx_too_long;
    } else {
      const Captured c{slot + hdr.tp_mac,
                       hdr.tp_snaplen,
                       hdr.tp_len,
                       st,
                       hdr.tp_vlan_tci,
                       hdr.tp_vlan_tpid,
                       read_at<std::uint8_t>(slot + kSll2Off + offsetof(sockaddr_ll, sll_pkttype))};
      const Take t = take(c, out[n]);
      if (t == Take::kNoBuffer) break;
      if (t == Take::kTaken) ++n;
    }
    status.store(TP_STATUS_KERNEL, std::memory_order_release);
    cur_frame_ = (cur_frame_ + 1) % frame_count_;
  }
  return n;
}

std::size_t AfPacketLink::rx_blocks(std::span<Frame> out) {
  std::size_t n = 0;
  // Bounded: every pass takes or skips one frame, or returns a block; at most
  // one lap of the ring's blocks per burst.
  std::uint32_t blocks_done = 0;
  while (n < out.size()) {
    std::byte* blk = block(cur_block_);
    if (!in_block_) {
      if (blocks_done >= block_count_) break;
      if ((block_status(blk).load(std::memory_order_acquire) & TP_STATUS_USER) == 0) break;
      const std::byte* h1 = blk + offsetof(tpacket_block_desc, hdr);
      pkts_left_ = read_at<std::uint32_t>(h1 + offsetof(tpacket_hdr_v1, num_pkts));
      next_off_ = read_at<std::uint32_t>(h1 + offsetof(tpacket_hdr_v1, offset_to_first_pkt));
      in_block_ = true;
    }
    // The kernel is trusted, but a bad offset must still not read outside
    // the block: give the block back and go on.
    if (pkts_left_ == 0 || next_off_ + kSllOff + sizeof(sockaddr_ll) > block_size_) {
      release_block();
      ++blocks_done;
      continue;
    }
    const std::byte* ph = blk + next_off_;
    tpacket3_hdr hdr;
    std::memcpy(&hdr, ph, sizeof hdr);
    const std::size_t data_off = next_off_ + hdr.tp_mac;
    if (data_off + hdr.tp_snaplen > block_size_ || hdr.tp_mac < kSllOff) {
      release_block();  // nothing after a bad header can be trusted
      ++blocks_done;
      continue;
    }
    const Captured c{blk + data_off,
                     hdr.tp_snaplen,
                     hdr.tp_len,
                     hdr.tp_status,
                     static_cast<std::uint16_t>(hdr.hv1.tp_vlan_tci),
                     static_cast<std::uint16_t>(hdr.hv1.tp_vlan_tpid),
                     read_at<std::uint8_t>(ph + kSllOff + offsetof(sockaddr_ll, sll_pkttype))};
    const Take t = take(c, out[n]);
    if (t == Take::kNoBuffer) break;
    if (t == Take::kTaken) ++n;
    // Next frame in the block, or the block back to the kernel (also when
    // the kernel says there are more frames but gives no offset to them).
    --pkts_left_;
    if (pkts_left_ == 0 || hdr.tp_next_offset == 0) {
      release_block();
      ++blocks_done;
    } else {
      next_off_ += hdr.tp_next_offset;
    }
  }
  return n;
}

std::size_t AfPacketLink::flush(std::span<const Frame> staged, bool& stop) {
  std::size_t done = 0;
  int interrupted = 0;
  while (done < staged.size()) {
    const int r =
        ::sendmmsg(fd_, msgs_.data() + done, static_cast<unsigned>(staged.size() - done), MSG_DONTWAIT);
    if (r > 0) {
      for (std::size_t i = done; i < done + static_cast<std::size_t>(r); ++i) {
        ++counters_.tx_frames;
        counters_.tx_bytes += iovs_[i].iov_len;
        (void)pool_.free(owner_, staged[i].buffer);
      }
      done += static_cast<std::size_t>(r);
      continue;  // a short count: the next call reports why the rest failed
    }
    const int e = r < 0 ? errno : EAGAIN;
    if (e == EINTR && ++interrupted < 3) continue;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      ++counters_.tx_full;
      stop = true;
      return done;
    }
    // The device refused this one frame (too long, interface down ...):
    // drop it and go on with the rest.
    ++counters_.tx_errors;
    (void)pool_.free(owner_, staged[done].buffer);
    ++done;
  }
  return done;
}

std::size_t AfPacketLink::tx_burst(std::span<const Frame> frames, Nanos /*now*/) {
  std::size_t taken = 0;
  bool stop = false;
  while (taken < frames.size() && !stop) {
    // Stage up to kMaxTxBatch valid frames; an invalid one ends the batch.
    std::size_t staged = 0;
    while (staged < kMaxTxBatch && taken + staged < frames.size()) {
      const Frame& f = frames[taken + staged];
      std::span<std::byte> mem = pool_.buffer(f.buffer);
      const std::size_t end = std::size_t{f.offset} + f.length;
      if (mem.empty() || f.length == 0 || end > mem.size()) break;
      std::size_t len = f.length;
      if (len < kMinFrame && f.offset + kMinFrame <= mem.size()) {
        std::fill(mem.begin() + static_cast<std::ptrdiff_t>(end), mem.begin() + f.offset + kMinFrame,
                  std::byte{0});
        len = kMinFrame;
      }
      iovs_[staged] = iovec{mem.data() + f.offset, len};
      msgs_[staged] = mmsghdr{};
      msgs_[staged].msg_hdr.msg_iov = &iovs_[staged];
      msgs_[staged].msg_hdr.msg_iovlen = 1;
      ++staged;
    }
    if (staged > 0) {
      const std::size_t sent = flush(frames.subspan(taken, staged), stop);
      taken += sent;
      continue;
    }
    // frames[taken] is not a frame this link can send: taken and dropped.
    ++counters_.tx_errors;
    (void)pool_.free(owner_, frames[taken].buffer);
    ++taken;
  }
  return taken;
}

}  // namespace usnet::link
