#include "usnet/link/af_xdp_link.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "link/xdp/steer_object.hpp"

namespace usnet::link {

namespace {

constexpr std::size_t kMinFrame = 60;            // Ethernet minimum without the FCS
constexpr std::uint32_t kEthernetOverhead = 18;  // header and one 802.1Q tag
constexpr std::uint32_t kAddrAll = 1;            // usnet_addrs value bit (usnet_steer.bpf.c)
#ifndef SO_PREFER_BUSY_POLL
constexpr int SO_PREFER_BUSY_POLL = 69;
#endif
#ifndef SO_BUSY_POLL_BUDGET
constexpr int SO_BUSY_POLL_BUDGET = 70;
#endif

std::error_code errno_code(int e) { return {e, std::generic_category()}; }

LinkError error(const std::string& uri, int e, const std::string& what) {
  return LinkError{errno_code(e), uri + ": " + what};
}

std::string describe_errno(int e) { return std::strerror(e); }

// The device's receive queues, from /sys/class/net/IF/queues/rx-N (this
// network namespace's sysfs); 0 if they cannot be read.
std::uint32_t count_rx_queues(const std::string& ifname) {
  std::error_code ec;
  std::uint32_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net/" + ifname + "/queues", ec)) {
    if (std::string_view(e.path().filename().native()).starts_with("rx-")) ++n;
  }
  return ec ? 0 : n;
}

std::string privilege_hint(int e) {
  if (e == EPERM || e == EACCES) return " (needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF: run as root)";
  return {};
}

// libbpf and libxdp print their warnings to stderr; while the link opens,
// they are collected here instead, and the link reports them in its errors
// (and in attach_notes()) so a tool's output stays its own.
std::string* g_xdp_log = nullptr;

[[gnu::format(printf, 1, 0)]] void collect(const char* format, va_list ap) {
  if (g_xdp_log == nullptr || g_xdp_log->size() > 4096) return;
  std::array<char, 512> line{};
  const int n = std::vsnprintf(line.data(), line.size(), format, ap);
  if (n > 0)
    g_xdp_log->append(line.data(), std::min<std::size_t>(static_cast<std::size_t>(n), line.size() - 1));
}
[[gnu::format(printf, 2, 0)]] int collect_libbpf(libbpf_print_level level, const char* format, va_list ap) {
  if (level == LIBBPF_WARN) collect(format, ap);
  return 0;
}
[[gnu::format(printf, 2, 0)]] int collect_libxdp(libxdp_print_level level, const char* format, va_list ap) {
  if (level == LIBXDP_WARN) collect(format, ap);
  return 0;
}

// Redirects the libraries' messages into `log` for its lifetime.
class LogCapture {
 public:
  explicit LogCapture(std::string& log)
      : bpf_(libbpf_set_print(collect_libbpf)), xdp_(libxdp_set_print(collect_libxdp)) {
    g_xdp_log = &log;
  }
  ~LogCapture() {
    g_xdp_log = nullptr;
    libbpf_set_print(bpf_);
    libxdp_set_print(xdp_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

 private:
  libbpf_print_fn_t bpf_;
  libxdp_print_fn_t xdp_;
};

// The libraries' messages, one per line with a prefix, for an error text.
std::string with_log(std::string what, const std::string& log) {
  if (log.empty()) return what;
  std::string out = std::move(what) + " [libbpf/libxdp said:";
  std::size_t start = 0;
  while (start < log.size()) {
    std::size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    if (end > start) {
      out += ' ';
      out.append(log, start, end - start);
      out += ';';
    }
    start = end + 1;
  }
  out.back() = ']';
  return out;
}

// The steer rule's key in the link's reference counts: kind and value.
std::uint64_t rule_key(const SteerRule& r) {
  const std::uint64_t kind = static_cast<std::uint64_t>(r.kind) << 32;
  return kind | (r.kind == SteerRule::Kind::kIpv4Address ? r.address.v : r.port);
}

}  // namespace

struct AfXdpLink::Impl {
  std::string uri;
  int ifindex = 0;
  xsk_umem* umem = nullptr;
  xsk_socket* xsk = nullptr;
  xsk_ring_prod fill{};
  xsk_ring_cons comp{};
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
  bpf_object* obj = nullptr;
  xdp_program* prog = nullptr;
  xdp_attach_mode attach_mode = XDP_MODE_NATIVE;
  bool attached = false;
  bool dispatcher = false;  // through libxdp's dispatcher (shared with other XDP programs)
  std::string notes;        // what libbpf and libxdp said while the link opened
  int xsks_fd = -1, addrs_fd = -1, ports_fd = -1, stats_fd = -1;

  ~Impl() {
    // The socket goes first (the kernel stops using the UMEM), then the
    // UMEM, then the program.
    if (xsk != nullptr) xsk_socket__delete(xsk);
    if (umem != nullptr) (void)xsk_umem__delete(umem);
    if (prog != nullptr) {
      if (attached) (void)xdp_program__detach(prog, ifindex, attach_mode, 0);
      xdp_program__close(prog);
    }
    if (obj != nullptr) bpf_object__close(obj);
  }
};

Expected<std::unique_ptr<AfXdpLink>, LinkError> AfXdpLink::open(const LinkUri& uri, mem::PacketPool& pool,
                                                                mem::OwnerId owner, std::string text) {
  AfXdpOptions o;
  o.interface = uri.target;
  // parse_link_uri() checked the values' shapes.
  const std::string queue(uri.param("queue", "0"));
  o.queue = static_cast<std::uint32_t>(std::stoul(queue));
  const std::string_view mode = uri.param("mode");
  o.mode = mode == "zc" ? AfXdpOptions::Mode::kZeroCopy
                        : (mode == "copy" ? AfXdpOptions::Mode::kCopy : AfXdpOptions::Mode::kAuto);
  o.busy_poll_us = static_cast<std::uint32_t>(std::stoul(std::string(uri.param("busy_poll", "0"))));
  o.steer_all = uri.param("steer") == "all";
  return open(o, pool, owner, std::move(text));
}

Expected<std::unique_ptr<AfXdpLink>, LinkError> AfXdpLink::open(const AfXdpOptions& options,
                                                                mem::PacketPool& pool, mem::OwnerId owner,
                                                                std::string uri) {
  const std::string& name = options.interface;
  if (uri.empty()) uri = "af_xdp:" + name;
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return unexpected(error(uri, EINVAL, "bad interface name '" + name + "'"));
  }
  const std::uint32_t ring = options.ring_size;
  if (ring < 64 || ring > 16384 || !std::has_single_bit(ring)) {
    return unexpected(
        error(uri, EINVAL, "ring size " + std::to_string(ring) + " is not a power of two from 64 to 16384"));
  }
  const std::size_t chunk = pool.buffer_size();
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  if (!std::has_single_bit(chunk) || chunk < 2048 || chunk > page || pool.segment_bytes() % chunk != 0) {
    return unexpected(error(uri, EINVAL,
                            "the packet pool's " + std::to_string(chunk) +
                                "-byte buffers cannot be UMEM chunks (need a power of two from 2048 to " +
                                std::to_string(page) + " that divides the segment size)"));
  }
  const std::span<std::byte> memory = pool.memory();
  if (memory.size() < std::size_t{pool.max_segments()} * pool.segment_bytes()) {
    return unexpected(error(uri, EINVAL, "the packet pool's memory is smaller than its segments"));
  }

  auto impl = std::make_unique<Impl>();
  impl->uri = uri;
  impl->ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (impl->ifindex == 0) {
    const int e = errno;
    return unexpected(error(uri, e == ENODEV || e == ENXIO ? ENODEV : e,
                            "no interface named '" + name + "' in this network namespace"));
  }

  LinkInfo info;
  info.name = uri;
  {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return unexpected(error(uri, errno, "socket: " + describe_errno(errno)));
    ifreq req{};
    std::memcpy(req.ifr_name, name.data(), name.size());
    const bool got_mtu = ::ioctl(fd, SIOCGIFMTU, &req) == 0;
    const int mtu = req.ifr_mtu;
    const bool got_mac = ::ioctl(fd, SIOCGIFHWADDR, &req) == 0;
    const int e = errno;
    ::close(fd);
    if (!got_mtu || !got_mac)
      return unexpected(error(uri, e, "cannot read MTU and MAC: " + describe_errno(e)));
    for (std::size_t i = 0; i < info.mac.b.size(); ++i)
      info.mac.b[i] = static_cast<std::uint8_t>(req.ifr_hwaddr.sa_data[i]);
    info.mtu = static_cast<std::uint32_t>(mtu);
  }
  if (info.mtu + kEthernetOverhead > chunk - XDP_PACKET_HEADROOM) {
    return unexpected(error(uri, EINVAL,
                            "MTU " + std::to_string(info.mtu) + " does not fit a " + std::to_string(chunk) +
                                "-byte UMEM chunk (at most " +
                                std::to_string(chunk - XDP_PACKET_HEADROOM - kEthernetOverhead) + ")"));
  }

  // The XDP program, from the object compiled into the library.
  std::string log;
  const LogCapture capture(log);
  const auto fail = [&](int e, const std::string& what) {
    return unexpected(error(uri, e, with_log(what, log)));
  };
  {
    // (libbpf's LIBBPF_OPTS macro is C: the options are filled by hand.)
    bpf_object_open_opts open_opts{};
    open_opts.sz = sizeof open_opts;
    open_opts.object_name = "usnet_steer";
    impl->obj = bpf_object__open_mem(xdp::steer_object().data(), xdp::steer_object().size(), &open_opts);
    if (impl->obj == nullptr) {
      const int e = errno;
      return fail(e, "cannot open the XDP program: " + describe_errno(e));
    }
    xdp_program_opts prog_opts{};
    prog_opts.sz = sizeof prog_opts;
    prog_opts.obj = impl->obj;
    prog_opts.prog_name = "usnet_steer";
    impl->prog = xdp_program__create(&prog_opts);
    if (const long e = libxdp_get_error(impl->prog); e != 0) {
      impl->prog = nullptr;
      return fail(static_cast<int>(-e),
                  "cannot create the XDP program: " + describe_errno(static_cast<int>(-e)));
    }
  }
  int rc = xdp_program__attach(impl->prog, impl->ifindex, XDP_MODE_NATIVE, 0);
  if (rc != 0 && rc != -EPERM && rc != -EACCES) {
    impl->attach_mode = XDP_MODE_SKB;
    rc = xdp_program__attach(impl->prog, impl->ifindex, XDP_MODE_SKB, 0);
  }
  if (rc != 0) {
    std::string hint = privilege_hint(-rc);
    if (rc == -EBUSY || rc == -EEXIST)
      hint = " (another XDP program holds the interface and cannot share it)";
    return fail(-rc, "cannot attach the XDP program to " + name + ": " + describe_errno(-rc) + hint);
  }
  impl->attached = true;
  if (xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(impl->ifindex); libxdp_get_error(mp) == 0) {
    impl->dispatcher = mp != nullptr && !xdp_multiprog__is_legacy(mp);
    xdp_multiprog__close(mp);
  }
  impl->xsks_fd = bpf_object__find_map_fd_by_name(impl->obj, "usnet_xsks");
  impl->addrs_fd = bpf_object__find_map_fd_by_name(impl->obj, "usnet_addrs");
  impl->ports_fd = bpf_object__find_map_fd_by_name(impl->obj, "usnet_ports");
  impl->stats_fd = bpf_object__find_map_fd_by_name(impl->obj, "usnet_stats");
  if (impl->xsks_fd < 0 || impl->addrs_fd < 0 || impl->ports_fd < 0 || impl->stats_fd < 0) {
    return fail(EINVAL, "the XDP program lacks one of its maps");
  }

  // The UMEM: the pool's whole memory, one chunk per buffer.
  xsk_umem_config ucfg{};
  ucfg.fill_size = ring;
  ucfg.comp_size = ring;
  ucfg.frame_size = static_cast<std::uint32_t>(chunk);
  ucfg.frame_headroom = 0;
  ucfg.flags = 0;
  rc = xsk_umem__create(&impl->umem, memory.data(), std::size_t{pool.max_segments()} * pool.segment_bytes(),
                        &impl->fill, &impl->comp, &ucfg);
  if (rc != 0) {
    impl->umem = nullptr;
    return fail(-rc, "cannot register the packet pool as UMEM: " + describe_errno(-rc) + privilege_hint(-rc));
  }
  pool.keep_segments();

  const auto make_socket = [&](std::uint16_t copy_flag) {
    xsk_socket_config scfg{};
    scfg.rx_size = ring;
    scfg.tx_size = ring;
    scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    scfg.xdp_flags = 0;
    scfg.bind_flags = static_cast<std::uint16_t>(XDP_USE_NEED_WAKEUP | copy_flag);
    return xsk_socket__create(&impl->xsk, name.c_str(), options.queue, impl->umem, &impl->rx, &impl->tx,
                              &scfg);
  };
  bool zero_copy = options.mode != AfXdpOptions::Mode::kCopy;
  rc = make_socket(zero_copy ? XDP_ZEROCOPY : XDP_COPY);
  if (rc != 0 && options.mode == AfXdpOptions::Mode::kAuto) {
    impl->xsk = nullptr;
    zero_copy = false;
    rc = make_socket(XDP_COPY);
  }
  if (rc != 0) {
    impl->xsk = nullptr;
    std::string what = "cannot bind an AF_XDP socket to queue " + std::to_string(options.queue) + " of " +
                       name + ": " + describe_errno(-rc) + privilege_hint(-rc);
    if (options.mode == AfXdpOptions::Mode::kZeroCopy && (rc == -EOPNOTSUPP || rc == -EINVAL)) {
      what += " (the driver has no zero-copy AF_XDP: use mode=copy)";
    }
    return unexpected(error(uri, -rc, what));
  }
  const int fd = xsk_socket__fd(impl->xsk);
  if (options.busy_poll_us > 0) {
    const int one = 1;
    const int usecs = static_cast<int>(options.busy_poll_us);
    const int budget = static_cast<int>(kMaxBurst);
    if (::setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof one) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof usecs) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof budget) != 0) {
      const int e = errno;
      return unexpected(
          error(uri, e, "cannot enable busy polling: " + describe_errno(e) + privilege_hint(e)));
    }
  }
  rc = xsk_socket__update_xskmap(impl->xsk, impl->xsks_fd);
  if (rc != 0) {
    return fail(-rc, "cannot add the socket to the XDP program's map: " + describe_errno(-rc));
  }

  std::unique_ptr<AfXdpLink> link(new AfXdpLink(std::move(impl), std::move(info), pool, owner, options));
  link->zero_copy_ = zero_copy;
  link->device_rx_queues_ = count_rx_queues(name);
  link->impl_->notes = std::move(log);
  link->refill();
  return link;
}

AfXdpLink::AfXdpLink(std::unique_ptr<Impl> impl, LinkInfo info, mem::PacketPool& pool, mem::OwnerId owner,
                     const AfXdpOptions& options)
    : impl_(std::move(impl)),
      info_(std::move(info)),
      pool_(pool),
      owner_(owner),
      umem_base_(pool.memory().data()),
      chunk_shift_(static_cast<std::uint32_t>(std::countr_zero(pool.buffer_size()))),
      busy_poll_us_(options.busy_poll_us),
      steer_all_(options.steer_all),
      lent_(pool.buffers_max(), 0) {
  const std::size_t quarter = std::max<std::size_t>(pool.buffers_max() / 4, 1);
  fill_target_ = options.fill_target != 0
                     ? std::min(options.fill_target, options.ring_size)
                     : static_cast<std::uint32_t>(std::min<std::size_t>(options.ring_size, quarter));
}

AfXdpLink::~AfXdpLink() {
  // Closing the socket and the UMEM ends the kernel's use of every buffer;
  // then each one lent is the stack's again, and goes back to the pool.
  impl_.reset();
  for (std::size_t i = 0; i < lent_.size() && lent_count_ > 0; ++i) {
    if (lent_[i] == 0) continue;
    (void)pool_.free(owner_, static_cast<mem::BufIndex>(i));
    lent_[i] = 0;
    --lent_count_;
  }
}

int AfXdpLink::wait_fd() const noexcept { return xsk_socket__fd(impl_->xsk); }

bool AfXdpLink::shares_xdp_hook() const noexcept { return impl_->dispatcher; }
const std::string& AfXdpLink::attach_notes() const noexcept { return impl_->notes; }

const char* AfXdpLink::xdp_mode() const noexcept {
  return impl_->attach_mode == XDP_MODE_NATIVE ? "native" : "generic";
}

std::uint64_t AfXdpLink::chunk_address(mem::BufIndex index) const noexcept {
  return static_cast<std::uint64_t>(pool_.buffer(index).data() - umem_base_);
}

bool AfXdpLink::take_back(std::uint64_t address, mem::BufIndex& index, std::uint16_t& offset) noexcept {
  const std::uint64_t chunk_index = address >> chunk_shift_;
  const std::uint64_t chunk_base = chunk_index << chunk_shift_;
  // Chunks are laid out as the pool's buffers; map the chunk back through
  // the pool (segments may leave a tail of unused bytes).
  const std::size_t memory_size = std::size_t{pool_.max_segments()} * pool_.segment_bytes();
  if (chunk_base >= memory_size) return false;
  const auto found = pool_.index_of(umem_base_ + chunk_base);
  if (!found || *found >= lent_.size() || lent_[*found] == 0) return false;
  index = *found;
  offset = static_cast<std::uint16_t>(address - chunk_base);
  lent_[index] = 0;
  --lent_count_;
  return true;
}

void AfXdpLink::refill() noexcept {
  if (fill_count_ >= fill_target_) return;
  std::array<mem::BufIndex, kMaxBurst> bufs{};
  while (fill_count_ < fill_target_) {
    const std::size_t want = std::min<std::size_t>(bufs.size(), fill_target_ - fill_count_);
    const std::size_t got = pool_.alloc_batch(owner_, std::span(bufs.data(), want));
    if (got == 0) return;
    std::uint32_t idx = 0;
    const auto reserved = xsk_ring_prod__reserve(&impl_->fill, static_cast<std::uint32_t>(got), &idx);
    for (std::size_t i = reserved; i < got; ++i) (void)pool_.free(owner_, bufs[i]);
    for (std::uint32_t i = 0; i < reserved; ++i) {
      *xsk_ring_prod__fill_addr(&impl_->fill, idx + i) = chunk_address(bufs[i]);
      lent_[bufs[i]] = 1;
    }
    xsk_ring_prod__submit(&impl_->fill, reserved);
    lent_count_ += reserved;
    fill_count_ += reserved;
    if (reserved < got) return;
  }
}

std::size_t AfXdpLink::rx_burst(std::span<Frame> out, Nanos now) {
  (void)now;
  // Frames tx_burst() held back go first: an answer may be waiting on them.
  // Copy mode has sent them when sendto() returns: taking the completions
  // now spares the kick at the end a second, empty sendto().
  if (unkicked_ > 0) {
    kick_tx();
    reap_completions();
  }
  std::uint32_t idx = 0;
  const auto max = static_cast<std::uint32_t>(std::min(out.size(), kMaxBurst));
  std::uint32_t n = xsk_ring_cons__peek(&impl_->rx, max, &idx);
  if (n == 0 && (busy_poll_us_ > 0 || xsk_ring_prod__needs_wakeup(&impl_->fill))) {
    // Busy polling, or the kernel waits for a kick to use the fill ring:
    // let it run the device's receive path now.
    (void)::recvfrom(xsk_socket__fd(impl_->xsk), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
    n = xsk_ring_cons__peek(&impl_->rx, max, &idx);
  }
  std::size_t delivered = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    const xdp_desc* d = xsk_ring_cons__rx_desc(&impl_->rx, idx + i);
    mem::BufIndex buffer = 0;
    std::uint16_t offset = 0;
    if (!take_back(d->addr, buffer, offset)) {
      ++rx_bad_descriptors_;
      continue;
    }
    --fill_count_;
    if (std::size_t{offset} + d->len > pool_.buffer_size()) {
      ++counters_.rx_too_long;
      (void)pool_.free(owner_, buffer);
      continue;
    }
    ++counters_.rx_frames;
    counters_.rx_bytes += d->len;
    out[delivered++] = Frame{buffer, d->len, offset, 0};
  }
  if (n > 0) xsk_ring_cons__release(&impl_->rx, n);
  refill();
  if (lent_count_ != fill_count_) {
    kick_tx();
    reap_completions();
  }
  return delivered;
}

void AfXdpLink::reap_completions() noexcept {
  std::uint32_t idx = 0;
  const std::uint32_t n = xsk_ring_cons__peek(&impl_->comp, impl_->comp.size, &idx);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t address = *xsk_ring_cons__comp_addr(&impl_->comp, idx + i);
    mem::BufIndex buffer = 0;
    std::uint16_t offset = 0;
    if (!take_back(address, buffer, offset)) {
      ++rx_bad_descriptors_;
      continue;
    }
    (void)pool_.free(owner_, buffer);
  }
  if (n > 0) xsk_ring_cons__release(&impl_->comp, n);
}

std::size_t AfXdpLink::tx_burst(std::span<const Frame> frames, Nanos now) {
  (void)now;
  reap_completions();
  std::size_t taken = 0;
  std::size_t put_total = 0;
  while (taken < frames.size()) {
    const auto want = static_cast<std::uint32_t>(std::min(frames.size() - taken, kMaxBurst));
    std::uint32_t idx = 0;
    const std::uint32_t reserved = xsk_ring_prod__reserve(&impl_->tx, want, &idx);
    if (reserved == 0) {
      ++counters_.tx_full;
      break;
    }
    std::uint32_t put = 0;
    for (std::uint32_t i = 0; i < reserved; ++i) {
      const Frame& f = frames[taken + i];
      const std::span<std::byte> buf = pool_.buffer(f.buffer);
      std::uint32_t len = f.length;
      if (buf.empty() || std::size_t{f.offset} + len > buf.size()) {
        // Not a frame the pool could hold: refused, freed as taken.
        ++counters_.tx_errors;
        (void)pool_.free(owner_, f.buffer);
        continue;
      }
      if (len < kMinFrame && std::size_t{f.offset} + kMinFrame <= buf.size()) {
        std::fill(buf.begin() + f.offset + len, buf.begin() + f.offset + kMinFrame, std::byte{0});
        len = kMinFrame;
      }
      xdp_desc* d = xsk_ring_prod__tx_desc(&impl_->tx, idx + put);
      d->addr = chunk_address(f.buffer) + f.offset;
      d->len = len;
      d->options = 0;
      lent_[f.buffer] = 1;
      ++lent_count_;
      ++put;
      ++counters_.tx_frames;
      counters_.tx_bytes += len;
    }
    // Descriptors reserved for refused frames are given back by submitting
    // only those filled (the ring's producer moves by `put`).
    if (put < reserved) impl_->tx.cached_prod -= reserved - put;
    xsk_ring_prod__submit(&impl_->tx, put);
    put_total += put;
    taken += reserved;
    if (reserved < want) {
      ++counters_.tx_full;
      break;
    }
  }
  // Copy mode sends inside sendto(), up to a kernel batch per call: one
  // call per batch rather than per frame (a stack hands over one segment
  // at a time). Fewer wait for the next rx_burst() (which kicks while
  // frames are outstanding), the next tx_burst(), or a poll on the fd
  // (which drives copy-mode transmission too): see Link::tx_burst.
  unkicked_ += put_total;
  if (frames.empty() || taken < frames.size() || unkicked_ >= kKickBatch || zero_copy_) kick_tx();
  reap_completions();
  return taken;
}

void AfXdpLink::kick_tx() noexcept {
  // Frames on the TX ring not yet completed. Copy mode sends them inside
  // sendto() (at most a kernel batch, 32 frames, per call, so this runs on
  // every burst and every receive poll until the ring is drained);
  // zero-copy needs the call only when the kernel asks for it.
  unkicked_ = 0;
  if (lent_count_ == fill_count_) return;
  if (zero_copy_ && !xsk_ring_prod__needs_wakeup(&impl_->tx)) return;
  if (::sendto(xsk_socket__fd(impl_->xsk), nullptr, 0, MSG_DONTWAIT, nullptr, 0) < 0) {
    const int e = errno;
    if (e != EAGAIN && e != EBUSY && e != ENOBUFS && e != ENETDOWN) ++counters_.tx_errors;
  }
}

std::error_code AfXdpLink::update_steer_map(const SteerRule& rule, bool present) {
  int rc = 0;
  if (rule.kind == SteerRule::Kind::kIpv4Address) {
    const std::uint32_t key = htonl(rule.address.v);
    const std::uint32_t flags = steer_all_ ? kAddrAll : 0;
    rc = present ? bpf_map_update_elem(impl_->addrs_fd, &key, &flags, BPF_ANY)
                 : bpf_map_delete_elem(impl_->addrs_fd, &key);
  } else {
    const std::uint32_t proto = rule.kind == SteerRule::Kind::kUdpPort ? IPPROTO_UDP : IPPROTO_TCP;
    const std::uint32_t key = proto << 16 | rule.port;
    const std::uint32_t one = 1;
    rc = present ? bpf_map_update_elem(impl_->ports_fd, &key, &one, BPF_ANY)
                 : bpf_map_delete_elem(impl_->ports_fd, &key);
  }
  if (rc != 0) return errno_code(rc < 0 ? -rc : errno);
  return {};
}

std::error_code AfXdpLink::steer(const SteerRule& rule, bool add) {
  const std::uint64_t key = rule_key(rule);
  auto it = steer_refs_.find(key);
  if (add) {
    if (it != steer_refs_.end()) {
      ++it->second;
      return {};
    }
    if (auto ec = update_steer_map(rule, true)) return ec;
    steer_refs_.emplace(key, 1);
    return {};
  }
  if (it == steer_refs_.end()) return errno_code(ENOENT);
  if (--it->second > 0) return {};
  steer_refs_.erase(it);
  return update_steer_map(rule, false);
}

XdpSteerCounters AfXdpLink::steer_counters() const noexcept {
  XdpSteerCounters c;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return c;
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus));
  std::uint64_t* const out[] = {&c.redirected, &c.passed, &c.wrong_queue};
  for (std::uint32_t key = 0; key < std::size(out); ++key) {
    if (bpf_map_lookup_elem(impl_->stats_fd, &key, values.data()) != 0) continue;
    std::uint64_t sum = 0;
    for (std::uint64_t v : values) sum += v;
    *out[key] = sum;
  }
  return c;
}

}  // namespace usnet::link
