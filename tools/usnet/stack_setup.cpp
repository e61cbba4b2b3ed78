#include "stack_setup.hpp"

#include <fmt/core.h>
#include <signal.h>

#include <string_view>
#include <utility>

#include "usnet/link/af_xdp_link.hpp"

namespace usnet::tool {

std::atomic<bool> g_stop{false};

namespace {
void on_stop_signal(int) { g_stop.store(true); }

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
                  "Link URI: tap:NAME, af_packet:IFNAME[?ring=blocks|frames], "
                  "af_xdp:IFNAME[?queue=N&mode=zc|copy&busy_poll=US&steer=served|all], "
                  "memif:/path.sock[?role=server|client&id=N&secret=S&mtu=N&checksums=on|off]")
      ->required();
  cmd->add_option("-a,--addr", opt.addr, "usnet's IPv4 address and prefix length")->capture_default_str();
  cmd->add_option("-g,--gateway", opt.gateway, "Default gateway (on a connected network)");
  cmd->add_option("-r,--route", opt.routes, "Static route PREFIX/LEN,GATEWAY (repeatable)");
  cmd->add_option("--pcap", opt.pcap, "Write every frame sent and received to this pcap file");
  cmd->add_option("--buffers", opt.buffers,
                  "Packet buffers in the pool (2048 bytes each; for memif with mtu=N, the power of two that "
                  "holds a frame)")
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

Expected<std::unique_ptr<ToolStack>, std::string> ToolStack::open(const StackOptions& opt) {
  StackConfig c;
  c.name = "usnet-tool";
  c.link = opt.link;
  c.addresses = {opt.addr};
  c.gateway = opt.gateway;
  c.routes = opt.routes;
  c.buffers = opt.buffers;
  c.pcap = opt.pcap;
  // 2,048 connections' worth of buffers: allocated on first use, and only
  // the pages data passes through become resident.
  c.tcp.max_buffer_memory = std::size_t{4} << 30;
  c.tcp.connection.ecn = opt.ecn == "on"    ? tcp::EcnMode::kOn
                         : opt.ecn == "off" ? tcp::EcnMode::kOff
                                            : tcp::EcnMode::kAccept;
  if (opt.fault_drop > 0 || opt.fault_corrupt > 0 || opt.fault_duplicate > 0 || opt.fault_reorder > 0) {
    c.rx_faults.drop = opt.fault_drop;
    c.rx_faults.corrupt = opt.fault_corrupt;
    c.rx_faults.duplicate = opt.fault_duplicate;
    c.rx_faults.reorder = opt.fault_reorder;
    c.rx_faults.seed = opt.fault_seed;
    if (opt.fault_tx) {
      c.tx_faults = c.rx_faults;
      c.tx_faults.seed = opt.fault_seed + 1;
    }
  }
  auto stack = Stack::create(c);
  if (!stack) {
    // The tools' names for the settings.
    std::string m = stack.error().message;
    for (const auto& [from, to] : {std::pair<std::string_view, std::string_view>{"addresses[0] ", "--addr "},
                                   {"gateway ", "--gateway "},
                                   {"routes: ", "--route "},
                                   {"buffers: ", "--buffers: "},
                                   {"pcap ", "--pcap "}}) {
      if (m.starts_with(from)) m = std::string(to) + m.substr(from.size());
    }
    if (m.starts_with("link: ")) m = m.substr(6);
    return unexpected(m);
  }
  std::unique_ptr<ToolStack> s(new ToolStack);
  s->stack_ = std::move(*stack);
  if (auto* xdp = dynamic_cast<link::AfXdpLink*>(&s->stack_->device())) {
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
  if (const auto* f = s->stack_->faults()) fmt::print("fault injection: {}\n", f->describe());
  if (!s->stack_->stats_error().empty())
    fmt::print(stderr, "usnet: warning: {} (usnet stat cannot see this stack)\n", s->stack_->stats_error());
  return s;
}

std::string ToolStack::format_counters() const {
  std::string out = stack_->format_counters();
  if (xdp_ != nullptr) {
    const auto c = xdp_->steer_counters();
    out += fmt::format(
        "Af_xdp:\n    {} frames steered to usnet\n    {} frames passed to the kernel\n"
        "    {} frames for usnet on a receive queue it does not read (passed to the kernel)\n",
        c.redirected, c.passed, c.wrong_queue);
  }
  if (const auto* faults = stack_->faults()) {
    for (const bool rx : {true, false}) {
      const auto& f = rx ? faults->rx_faults() : faults->tx_faults();
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
  if (!stack_) return 0;
  xdp_ = nullptr;
  const std::size_t left = stack_->shutdown();
  stack_.reset();
  return left;
}

}  // namespace usnet::tool
