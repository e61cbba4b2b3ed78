// A TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI): Ethernet frames between
// usnet and the kernel's network stack on the same host.
//
// The kernel sees a network interface; usnet holds the other end. Every
// frame the kernel transmits on the interface is read by usnet, every frame
// usnet writes is received by the kernel on it. Frames are copied (read()
// and write() system calls): a TAP cannot share memory with the pool.
//
// Decisions:
//   - The device is created if absent (not persistent: it goes when the link
//     is closed) and attached to if it exists and is a free TAP device. It is
//     brought up at open; the MTU is read then (a later change by the kernel
//     side is not seen).
//   - usnet's MAC address is its own, not the kernel interface's: the kernel
//     end is another host on the segment. By default it is derived from the
//     device name (a hash, made locally administered and unicast, so the same
//     name gives the same address on every run). Code can choose it with
//     TapOptions::mac; the URI (tap:NAME) takes no parameters.
//   - Receive: a frame longer than a pool buffer is read and dropped
//     (rx_too_long). When the pool refuses a buffer the frame is left in the
//     kernel's queue (bounded by the device's txqueuelen; the kernel drops
//     and counts beyond that), rx_no_buffer counts it, and the burst stops;
//     wait_fd() stays readable while it waits.
//   - Transmit: one write() per frame (a TAP has no batched write). Frames
//     shorter than the Ethernet minimum of 60 bytes are padded with zeros
//     (the wire formats leave padding to the link). EAGAIN (the kernel's
//     receive backlog is full) stops the burst and counts tx_full; any other
//     refusal drops that frame and counts tx_errors.
//   - Offloads: none. The kernel computes every checksum before a frame
//     reaches a TAP without IFF_VNET_HDR, so received frames are complete.
#pragma once

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

struct TapOptions {
  std::string name;                  // device name: 1..15 characters, no '/', ':', '%' or white space
  std::optional<wire::MacAddr> mac;  // usnet's address; default_mac(name) when empty
};

class TapLink final : public Link {
 public:
  // Errors (LinkError::code): EINVAL for a bad name or MAC; ENOENT when
  // /dev/net/tun is missing; EPERM/EACCES without CAP_NET_ADMIN; EBUSY when
  // the device is held by another process; ENOTSUP-like kernel refusals as
  // the kernel gives them. `uri` is what info().name reports ("tap:NAME"
  // when empty).
  static Expected<std::unique_ptr<TapLink>, LinkError> open(const TapOptions& options, mem::PacketPool& pool,
                                                            mem::OwnerId owner, std::string uri = {});

  // A locally administered unicast address derived from the device name.
  static wire::MacAddr default_mac(std::string_view name) noexcept;

  ~TapLink() override;
  TapLink(const TapLink&) = delete;
  TapLink& operator=(const TapLink&) = delete;

  const LinkInfo& info() const noexcept override { return info_; }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override { return fd_; }
  const LinkCounters& counters() const noexcept override { return counters_; }

  const std::string& device() const noexcept { return device_; }

 private:
  TapLink(int fd, std::string device, LinkInfo info, mem::PacketPool& pool, mem::OwnerId owner);

  int fd_ = -1;
  std::string device_;
  LinkInfo info_;
  mem::PacketPool& pool_;
  mem::OwnerId owner_;
  LinkCounters counters_;
};

}  // namespace usnet::link
