#include "usnet/link/tap_link.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace usnet::link {

namespace {

constexpr const char* kTunPath = "/dev/net/tun";
constexpr std::size_t kMinFrame = 60;  // Ethernet minimum without the FCS (IEEE 802.3 4.2.3.3)

std::error_code errno_code(int e) { return {e, std::generic_category()}; }

LinkError error(const std::string& uri, int e, const std::string& what) {
  return LinkError{errno_code(e), uri + ": " + what};
}

std::string privilege_hint(int e) {
  if (e == EPERM || e == EACCES) return " (needs CAP_NET_ADMIN: run as root)";
  return {};
}

// The kernel's dev_valid_name() rules, plus no '%' (which would ask the
// kernel to pick a name, and then the link would not know its device).
bool valid_device_name(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || c == '%' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f' || c == '\0';
  });
}

// Brings the device up and reads its MTU, through an ordinary socket in the
// caller's network namespace (where the device was just created).
Expected<std::uint32_t, int> bring_up(const std::string& device) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return unexpected(errno);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, device.data(), device.size());
  int err = 0;
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    err = errno;
  } else if ((ifr.ifr_flags & IFF_UP) == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) err = errno;
  }
  // The kernel starts passing frames to the device (its queueing
  // discipline) only once it has processed the carrier that TUNSETIFF
  // turned on, asynchronously (linkwatch); until then what it sends to
  // usnet, its first ARP reply say, is dropped. IFF_RUNNING shows that
  // moment: wait for it, bounded (a device that does not get there still
  // opens; the first frames may be lost).
  for (int i = 0; err == 0 && i < 1500; ++i) {
    if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
      err = errno;
    } else if ((ifr.ifr_flags & IFF_RUNNING) != 0) {
      break;
    } else {
      timespec ts{0, 2'000'000};
      ::nanosleep(&ts, nullptr);
    }
  }
  std::uint32_t mtu = 0;
  if (err == 0) {
    if (::ioctl(s, SIOCGIFMTU, &ifr) != 0) {
      err = errno;
    } else {
      mtu = static_cast<std::uint32_t>(ifr.ifr_mtu);
    }
  }
  ::close(s);
  if (err != 0) return unexpected(err);
  return mtu;
}

}  // namespace

wire::MacAddr TapLink::default_mac(std::string_view name) noexcept {
  // FNV-1a over a prefix and the name: stable across runs, different for
  // different names, and different from the AF_PACKET link's for the same
  // interface name.
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ull;
    }
  };
  mix("usnet-tap:");
  mix(name);
  wire::MacAddr m;
  for (std::size_t i = 0; i < m.b.size(); ++i) m.b[i] = static_cast<std::uint8_t>(h >> (8 * i));
  // IEEE 802: bit 1 of the first octet set = locally administered, bit 0
  // clear = unicast.
  m.b[0] = static_cast<std::uint8_t>((m.b[0] & 0xfc) | 0x02);
  return m;
}

Expected<std::unique_ptr<TapLink>, LinkError> TapLink::open(const TapOptions& options, mem::PacketPool& pool,
                                                            mem::OwnerId owner, std::string uri) {
  if (uri.empty()) uri = "tap:" + options.name;
  if (!valid_device_name(options.name)) {
    return unexpected(error(uri, EINVAL,
                            "bad device name '" + options.name +
                                "': want 1 to 15 characters, none of '/', ':', '%' or white space"));
  }
  const wire::MacAddr mac = options.mac.value_or(default_mac(options.name));
  if (!mac.is_unicast() || mac == wire::MacAddr{}) {
    return unexpected(error(uri, EINVAL, "MAC address " + mac.to_string() + " is not a unicast address"));
  }
  if (!pool.has_owner(owner)) return unexpected(error(uri, EINVAL, "the pool does not know the owner given"));

  const int fd = ::open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO) {
      return unexpected(error(uri, e,
                              std::string("cannot open ") + kTunPath + ": " + std::strerror(e) +
                                  " (no TUN/TAP support: load the tun module with 'modprobe tun', or create "
                                  "the node with 'mknod /dev/net/tun c 10 200')"));
    }
    return unexpected(
        error(uri, e, std::string("cannot open ") + kTunPath + ": " + std::strerror(e) + privilege_hint(e)));
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, options.name.data(), options.name.size());
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    const int e = errno;
    ::close(fd);
    std::string why =
        std::string("cannot create or attach TAP device '") + options.name + "': " + std::strerror(e);
    if (e == EPERM || e == EACCES) {
      why += privilege_hint(e);
    } else if (e == EBUSY) {
      why += " (another process holds the device)";
    } else if (e == EINVAL) {
      why += " (a device of that name exists and is not a free TAP device, or the name is refused)";
    }
    return unexpected(error(uri, e, why));
  }
  const std::string device(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  auto mtu = bring_up(device);
  if (!mtu) {
    ::close(fd);
    return unexpected(error(uri, mtu.error(),
                            "cannot bring up '" + device + "' or read its MTU: " +
                                std::strerror(mtu.error()) + privilege_hint(mtu.error())));
  }
  LinkInfo info{uri, mac, *mtu, 0};
  return std::unique_ptr<TapLink>(new TapLink(fd, device, std::move(info), pool, owner));
}

TapLink::TapLink(int fd, std::string device, LinkInfo info, mem::PacketPool& pool, mem::OwnerId owner)
    : fd_(fd), device_(std::move(device)), info_(std::move(info)), pool_(pool), owner_(owner) {}

TapLink::~TapLink() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t TapLink::rx_burst(std::span<Frame> out, Nanos /*now*/) {
  std::size_t n = 0;
  // Bounded: every pass either fills a slot of `out`, drops one frame the
  // kernel handed over, or stops. The drop passes are capped too, so a
  // flood of oversized frames cannot hold the caller here.
  std::size_t dropped = 0;
  while (n < out.size() && dropped < out.size() + 64) {
    auto buf = pool_.alloc(owner_);
    if (!buf) {
      // Leave the frame queued in the kernel; count it only if one waits.
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0) ++counters_.rx_no_buffer;
      break;
    }
    std::span<std::byte> mem = pool_.buffer(*buf);
    // One byte past the buffer shows a frame that did not fit, whatever the
    // kernel returns for a truncated read.
    std::byte spill[1];
    iovec iov[2] = {{mem.data(), mem.size()}, {spill, sizeof spill}};
    const ssize_t r = ::readv(fd_, iov, 2);
    if (r <= 0) {
      const int e = r < 0 ? errno : EAGAIN;
      (void)pool_.free(owner_, *buf);
      if (e == EINTR) continue;
      // EAGAIN: drained. Anything else (EBADF, EIO: the device is gone or
      // detached) is counted, so a link that stops receiving says why.
      if (e != EAGAIN && e != EWOULDBLOCK) ++counters_.rx_errors;
      break;
    }
    const auto len = static_cast<std::size_t>(r);
    if (len > mem.size()) {
      (void)pool_.free(owner_, *buf);
      ++counters_.rx_too_long;
      ++dropped;
      continue;
    }
    out[n++] = Frame{*buf, static_cast<std::uint32_t>(len), 0, 0};
    ++counters_.rx_frames;
    counters_.rx_bytes += len;
  }
  return n;
}

std::size_t TapLink::tx_burst(std::span<const Frame> frames, Nanos /*now*/) {
  std::size_t taken = 0;
  for (const Frame& f : frames) {
    std::span<std::byte> mem = pool_.buffer(f.buffer);
    const std::size_t end = std::size_t{f.offset} + f.length;
    if (mem.empty() || f.length == 0 || end > mem.size()) {
      // Not a frame this link can send: taken and dropped.
      ++counters_.tx_errors;
      (void)pool_.free(owner_, f.buffer);
      ++taken;
      continue;
    }
    std::size_t len = f.length;
    if (len < kMinFrame && f.offset + kMinFrame <= mem.size()) {
      std::fill(mem.begin() + static_cast<std::ptrdiff_t>(end), mem.begin() + f.offset + kMinFrame,
                std::byte{0});
      len = kMinFrame;
    }
    ssize_t r;
    int tries = 0;
    do {
      r = ::write(fd_, mem.data() + f.offset, len);
    } while (r < 0 && errno == EINTR && ++tries < 3);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++counters_.tx_full;
      break;  // the caller keeps this frame and the rest
    }
    if (r < 0 || static_cast<std::size_t>(r) != len) {
      ++counters_.tx_errors;
    } else {
      ++counters_.tx_frames;
      counters_.tx_bytes += len;
    }
    (void)pool_.free(owner_, f.buffer);
    ++taken;
  }
  return taken;
}

}  // namespace usnet::link
