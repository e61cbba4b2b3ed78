#include "stack_setup.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>

#include <algorithm>
#include <charconv>

#include "usnet/link/af_xdp_link.hpp"
#include "usnet/link/pcap_tap.hpp"

namespace usnet::tool {

std::atomic<bool> g_stop{false};

namespace {
void on_stop_signal(int) { g_stop.store(true); }

constexpr std::size_t kBufferSize = 2048;
constexpr std::size_t kSegmentBytes = 64 * 1024;
}  // namespace

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void add_stack_options(CLI::App* cmd, StackOptions& opt) {
  cmd->add_option("-l,--link", opt.link,
                  "Link URI: tap:NAME, af_packet:IFNAME, "
                  "af_xdp:IFNAME[?queue=N&mode=zc|copy&busy_poll=US&steer=served|all], "
                  "memif:/path.sock[?role=server|client]")
      ->required();
  cmd->add_option("-a,--addr", opt.addr, "usnet's IPv4 address and prefix length")->capture_default_str();
  cmd->add_option("-g,--gateway", opt.gateway, "Default gateway (on a connected network)");
  cmd->add_option("-r,--route", opt.routes, "Static route PREFIX/LEN,GATEWAY (repeatable)");
  cmd->add_option("--pcap", opt.pcap, "Write every frame sent and received to this pcap file");
  cmd->add_option("--buffers", opt.buffers, "Packet buffers (2048 bytes each) in the pool")
      ->check(CLI::Range(64u, 1u << 20))
      ->capture_default_str();
  cmd->add_option("--ecn", opt.ecn,
                  "TCP ECN (RFC 3168): off, accept (when the peer's SYN asks) or on (our SYNs ask too)")
      ->check(CLI::IsMember({"off", "accept", "on"}))
      ->capture_default_str();
  auto* g = cmd->add_option_group("Fault injection", "Faults applied to received frames, replayable by seed");
  g->add_option("--fault-drop", opt.fault_drop, "Probability a received frame is dropped")
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--fault-corrupt", opt.fault_corrupt, "Probability one bit of a received frame is flipped")
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--fault-duplicate", opt.fault_duplicate, "Probability a received frame arrives twice")
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--fault-reorder", opt.fault_reorder, "Probability a received frame is swapped with the next")
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--fault-seed", opt.fault_seed, "Seed of the fault generator")->capture_default_str();
  g->add_flag("--fault-tx", opt.fault_tx, "Apply the same faults to transmitted frames too (seed + 1)");
}

std::optional<net::InterfaceAddress> parse_cidr(const std::string& s) {
  const auto slash = s.find('/');
  const auto addr = wire::Ipv4Addr::parse(s.substr(0, slash));
  if (!addr) return std::nullopt;
  if (slash == std::string::npos) return net::InterfaceAddress{*addr, 32};
  unsigned len = 0;
  const char* first = s.data() + slash + 1;
  const char* last = s.data() + s.size();
  auto [p, ec] = std::from_chars(first, last, len);
  if (ec != std::errc{} || p != last || first == last || len > 32) return std::nullopt;
  return net::InterfaceAddress{*addr, static_cast<std::uint8_t>(len)};
}

link::Nanos ToolStack::now() {
  return std::chrono::duration_cast<link::Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

Expected<std::unique_ptr<ToolStack>, std::string> ToolStack::open(const StackOptions& opt) {
  std::unique_ptr<ToolStack> s(new ToolStack);
  s->ecn_ = opt.ecn;
  const auto address = parse_cidr(opt.addr);
  if (!address)
    return unexpected("--addr " + opt.addr + ": expected an IPv4 address and prefix, like 198.18.0.1/24");

  const std::uint32_t segments = static_cast<std::uint32_t>(
      (std::size_t{opt.buffers} * kBufferSize + kSegmentBytes - 1) / kSegmentBytes);
  std::vector<mem::RegionSpec> spec{{"buffers", std::size_t{segments} * kSegmentBytes}};
  auto arena = mem::Arena::create("usnet-tool", spec);
  if (!arena) return unexpected("packet memory: " + arena.error().message());
  s->arena_.emplace(std::move(*arena));
  auto pool = mem::PacketPool::create({kBufferSize, kSegmentBytes, segments}, s->arena_->region("buffers"));
  if (!pool) return unexpected("packet pool: " + pool.error().message());
  s->pool_ = std::make_unique<mem::PacketPool>(std::move(*pool));
  auto owner = s->pool_->add_owner({64, opt.buffers});
  if (!owner) return unexpected("packet pool owner: " + owner.error().message());
  s->owner_ = *owner;

  auto link = link::open_link(opt.link, *s->pool_, s->owner_);
  if (!link) return unexpected(link.error().message);
  s->link_ = std::move(*link);
  if (auto* xdp = dynamic_cast<link::AfXdpLink*>(s->link_.get())) {
    s->xdp_ = xdp;
    fmt::print("af_xdp: {} mode, XDP program attached in {} mode{}\n",
               xdp->zero_copy() ? "zero-copy" : "copy", xdp->xdp_mode(),
               xdp->shares_xdp_hook() ? " through libxdp's dispatcher" : " alone");
    if (xdp->device_rx_queues() > 1) {
      std::string ifname = opt.link.substr(opt.link.find(':') + 1);
      ifname = ifname.substr(0, ifname.find('?'));
      fmt::print(stderr,
                 "usnet: warning: {} has {} receive queues and usnet reads one: frames the device puts on "
                 "another queue go to the kernel (set one queue with 'ethtool -L {} combined 1', or steer "
                 "usnet's flows to its queue)\n",
                 ifname, xdp->device_rx_queues(), ifname);
    }
  }
  if (!opt.pcap.empty()) {
    // pcap wants wall-clock times; the stack runs on the monotonic clock.
    const auto epoch =
        std::chrono::duration_cast<link::Nanos>(std::chrono::system_clock::now().time_since_epoch()) - now();
    auto tap = link::PcapTap::open(std::move(s->link_), *s->pool_, opt.pcap, epoch);
    if (!tap) return unexpected("--pcap " + opt.pcap + ": " + tap.error().message());
    s->link_ = std::move(*tap);
  }

  if (opt.fault_drop > 0 || opt.fault_corrupt > 0 || opt.fault_duplicate > 0 || opt.fault_reorder > 0) {
    link::FaultConfig rx;
    rx.drop = opt.fault_drop;
    rx.corrupt = opt.fault_corrupt;
    rx.duplicate = opt.fault_duplicate;
    rx.reorder = opt.fault_reorder;
    rx.seed = opt.fault_seed;
    link::FaultConfig tx;
    if (opt.fault_tx) {
      tx = rx;
      tx.seed = opt.fault_seed + 1;
    }
    auto faults = std::make_unique<link::FaultInjector>(std::move(s->link_), *s->pool_, s->owner_, rx, tx);
    s->faults_ = faults.get();
    fmt::print("fault injection: {}\n", faults->describe());
    s->link_ = std::move(faults);
  }

  net::InterfaceConfig config;
  config.addresses.push_back(*address);
  config.first_ident = static_cast<std::uint16_t>(now().count() ^ (now().count() >> 16));
  auto iface = net::Interface::create(*s->link_, *s->pool_, s->owner_, config);
  if (!iface) return unexpected("interface: " + iface.error().message());
  s->iface_ = std::move(*iface);

  if (!opt.gateway.empty()) {
    const auto gw = wire::Ipv4Addr::parse(opt.gateway);
    if (!gw) return unexpected("--gateway " + opt.gateway + ": not an IPv4 address");
    if (auto ec = s->iface_->routes().set_default_gateway(*gw))
      return unexpected("--gateway: " + ec.message());
  }
  for (const auto& r : opt.routes) {
    const auto comma = r.find(',');
    const auto prefix = parse_cidr(r.substr(0, comma));
    const auto gw = comma == std::string::npos ? std::nullopt : wire::Ipv4Addr::parse(r.substr(comma + 1));
    if (!prefix || !gw) return unexpected("--route " + r + ": expected PREFIX/LEN,GATEWAY");
    if (auto ec = s->iface_->routes().add_static({prefix->addr, prefix->prefix_len}, *gw)) {
      return unexpected("--route " + r + ": " + ec.message());
    }
  }
  return s;
}

udp::UdpLayer& ToolStack::udp() {
  if (!udp_) {
    udp::UdpConfig config;
    config.ephemeral_seed = static_cast<std::uint64_t>(now().count());
    auto layer = udp::UdpLayer::create(*iface_, *pool_, owner_, config);
    // The default port range is valid, so create() cannot refuse it.
    udp_ = std::move(*layer);
  }
  return *udp_;
}

tcp::TcpLayer& ToolStack::tcp() {
  if (!tcp_) {
    tcp::TcpConfig config;
    config.seed = static_cast<std::uint64_t>(now().count()) ^ 0x7463700000000000ull;
    std::uint64_t r = 0;
    if (::getrandom(&r, sizeof r, 0) == static_cast<ssize_t>(sizeof r)) config.seed ^= r;
    config.connection.send_buffer = std::size_t{1} << 20;
    config.connection.recv_buffer = std::size_t{1} << 20;
    // 2,048 connections' worth: the rings are allocated on first use, and
    // only the pages data passes through become resident.
    config.max_buffer_memory = std::size_t{4} << 30;
    config.connection.ecn = ecn_ == "on"    ? tcp::EcnMode::kOn
                            : ecn_ == "off" ? tcp::EcnMode::kOff
                                            : tcp::EcnMode::kAccept;
    config.connection.mss = static_cast<std::uint16_t>(std::min<std::uint32_t>(iface_->mtu() - 40, 65495));
    auto layer = tcp::TcpLayer::create(*iface_, *pool_, owner_, config);
    // The configuration above is valid, so create() cannot refuse it.
    tcp_ = std::move(*layer);
  }
  return *tcp_;
}

std::string ToolStack::format_counters() const {
  std::string out = iface_->format_counters();
  if (udp_) out += udp_->format_counters();
  if (tcp_) out += tcp_->format_counters();
  const link::LinkCounters& l = link_->counters();
  out += fmt::format(
      "Link ({}):\n    {} frames received\n    {} frames sent\n    {} receive errors\n    {} send errors\n"
      "    {} times the link's transmit queue was full\n    {} frames waiting while no buffer was free\n"
      "    {} frames too long, dropped\n",
      link_->info().name, l.rx_frames, l.tx_frames, l.rx_errors, l.tx_errors, l.tx_full, l.rx_no_buffer,
      l.rx_too_long);
  if (xdp_ != nullptr) {
    const auto c = xdp_->steer_counters();
    out += fmt::format(
        "Af_xdp:\n    {} frames steered to usnet\n    {} frames passed to the kernel\n"
        "    {} frames for usnet on a receive queue it does not read (passed to the kernel)\n",
        c.redirected, c.passed, c.wrong_queue);
  }
  if (faults_ != nullptr) {
    for (const bool rx : {true, false}) {
      const auto& f = rx ? faults_->rx_faults() : faults_->tx_faults();
      if (!rx && f.frames_in == f.frames_out) continue;  // no transmit faults configured
      out += fmt::format(
          "Faults ({}):\n    {} frames in\n    {} dropped\n    {} corrupted\n    {} duplicated\n"
          "    {} reordered\n",
          rx ? "receive" : "transmit", f.frames_in, f.dropped, f.corrupted, f.duplicated, f.reordered);
    }
  }
  return out;
}

ToolStack::~ToolStack() { (void)shutdown(); }

std::size_t ToolStack::shutdown() {
  // Layers above give their buffers back before the pool goes.
  faults_ = nullptr;
  xdp_ = nullptr;
  tcp_.reset();
  udp_.reset();
  iface_.reset();
  link_.reset();
  if (!pool_) return 0;
  const std::size_t left = pool_->in_use();
  (void)pool_->remove_owner(owner_);
  return left;
}

void ToolStack::poll() {
  const auto t = now();
  iface_->poll(t);
  if (tcp_) tcp_->poll_timers(t);
}

void ToolStack::wait(link::Nanos wake_at) {
  const auto t = now();
  link::Nanos until = std::min({iface_->next_deadline(), wake_at, t + std::chrono::milliseconds(50)});
  if (tcp_) until = std::min(until, tcp_->next_deadline());
  if (until <= t) return;
  const int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(until - t).count());
  if (const int fd = link_->wait_fd(); fd >= 0) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, ms);
  } else {
    ::poll(nullptr, 0, std::min(ms, 1));
  }
}

}  // namespace usnet::tool
