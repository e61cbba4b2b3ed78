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
#include "usnet/stack.hpp"
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
  std::uint32_t buffers = 4096;        // pool buffers (2048 bytes, more for a memif mtu=N)
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

// A usnet::Stack made from the command line's options, with what the tools
// print about it.
class ToolStack {
 public:
  static Expected<std::unique_ptr<ToolStack>, std::string> open(const StackOptions& opt);
  ~ToolStack();
  // Closes the layers and the link, top down (every handle into them must
  // be gone by now), and returns how many packet buffers are still in use
  // afterwards: 0 unless something leaked. The stack is unusable after.
  std::size_t shutdown();

  Stack& stack() { return *stack_; }
  net::Interface& iface() { return stack_->interface(); }
  link::Link& link() { return stack_->link(); }
  udp::UdpLayer& udp() { return stack_->udp(); }
  tcp::TcpLayer& tcp() { return stack_->tcp(); }
  // The stack's counters, the fault injector's per direction when one is
  // in the path, and the AF_XDP program's when the link is AF_XDP.
  std::string format_counters() const;

  // Monotonic time for the stack (the core reads no clock of its own).
  static link::Nanos now() { return Stack::now(); }
  // Polls the stack, then sleeps on the link's fd until the next deadline,
  // `wake_at`, or at most 50 ms, whichever is first.
  void run_once(link::Nanos wake_at) {
    poll();
    wait(wake_at);
  }
  // The two halves, for loops that have work of their own between them
  // (and sleep only when neither the stack nor they made progress).
  void poll() { (void)stack_->poll(now()); }
  void wait(link::Nanos wake_at) { stack_->wait(wake_at); }

 private:
  ToolStack() = default;
  std::unique_ptr<Stack> stack_;
  const link::AfXdpLink* xdp_ = nullptr;  // the device, when it is AF_XDP (for its program's counters)
};

using usnet::parse_cidr;

// Subcommands.
void add_ping(CLI::App& app, std::function<int()>& run);
void add_up(CLI::App& app, std::function<int()>& run);
void add_udp_echo(CLI::App& app, std::function<int()>& run);
void add_http(CLI::App& app, std::function<int()>& run);
void add_stat(CLI::App& app, std::function<int()>& run);
void add_demo(CLI::App& app, std::function<int()>& run);
void add_bench(CLI::App& app, std::function<int()>& run);

}  // namespace usnet::tool
