// What every usnet tool that runs a stack needs: options to describe it
// (link URI, address, routes, pcap), and the stack itself: a packet pool in
// a shared-memory arena, the link, an optional pcap tap, the IPv4 interface,
// and a loop that polls it and sleeps on the link until there is work.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "usnet/link/af_xdp_link.hpp"
#include "usnet/link/fault_injector.hpp"
#include "usnet/link/link.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/util/expected.hpp"

namespace usnet::tool {

struct StackOptions {
  std::string link;                    // URI
  std::string addr = "198.18.0.1/24";  // address/prefix
  std::string gateway;                 // default gateway, optional
  std::vector<std::string> routes;     // "PREFIX/LEN,GATEWAY"
  std::string pcap;                    // capture file, optional
  std::uint32_t buffers = 4096;        // pool buffers of 2048 bytes
  std::string ecn = "accept";          // TCP ECN: off, accept (a peer's request) or on (ask too)
  // Faults injected on receive (seeded, so a run can be replayed).
  double fault_drop = 0, fault_corrupt = 0, fault_duplicate = 0, fault_reorder = 0;
  std::uint64_t fault_seed = 1;
  bool fault_tx = false;  // the same faults on transmitted frames too (seed + 1)
};

void add_stack_options(CLI::App* cmd, StackOptions& opt);

// Set by SIGINT/SIGTERM (see install_stop_signals); loops check it.
extern std::atomic<bool> g_stop;
void install_stop_signals();

class ToolStack {
 public:
  static Expected<std::unique_ptr<ToolStack>, std::string> open(const StackOptions& opt);
  ~ToolStack();
  // Closes the layers and the link, top down (every handle into them must
  // be gone by now), and returns how many packet buffers are still in use
  // afterwards: 0 unless something leaked. The stack is unusable after.
  std::size_t shutdown();

  net::Interface& iface() { return *iface_; }
  link::Link& link() { return *link_; }
  // The UDP layer over the interface, created on first use.
  udp::UdpLayer& udp();
  // The TCP layer over the interface, created on first use.
  tcp::TcpLayer& tcp();
  // The interface's counters, the UDP layer's if it exists, and the fault
  // injector's when one is in the path.
  std::string format_counters() const;

  // Monotonic time for the stack (the core reads no clock of its own).
  static link::Nanos now();
  // Polls the interface (and the TCP timers), then sleeps on the link's fd
  // until the next deadline, `wake_at`, or at most 50 ms, whichever is
  // first.
  void run_once(link::Nanos wake_at) {
    poll();
    wait(wake_at);
  }
  // The two halves, for loops that have work of their own between them
  // (and sleep only when neither the stack nor they made progress).
  void poll();
  void wait(link::Nanos wake_at);

 private:
  ToolStack() = default;
  std::optional<mem::Arena> arena_;
  std::unique_ptr<mem::PacketPool> pool_;
  mem::OwnerId owner_;
  std::unique_ptr<link::Link> link_;
  std::unique_ptr<net::Interface> iface_;
  std::unique_ptr<udp::UdpLayer> udp_;
  std::unique_ptr<tcp::TcpLayer> tcp_;
  std::string ecn_ = "accept";  // StackOptions::ecn, for the TCP layer made on first use
  const link::FaultInjector* faults_ = nullptr;
  const link::AfXdpLink* xdp_ = nullptr;  // the link, when it is AF_XDP (for its program's counters)
};

// "198.18.0.1/24" -> address and prefix length.
std::optional<net::InterfaceAddress> parse_cidr(const std::string& s);

// Subcommands.
void add_ping(CLI::App& app, std::function<int()>& run);
void add_up(CLI::App& app, std::function<int()>& run);
void add_udp_echo(CLI::App& app, std::function<int()>& run);
void add_http(CLI::App& app, std::function<int()>& run);

}  // namespace usnet::tool
