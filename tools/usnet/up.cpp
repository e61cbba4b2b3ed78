// `usnet up`: brings a stack up on a link and keeps it up: it answers ARP
// and ICMP echo (so the kernel's ping can reach it) until the duration ends
// or Ctrl-C, then prints its counters.
#include <fmt/core.h>

#include "stack_setup.hpp"

namespace usnet::tool {

namespace {

struct UpOptions {
  StackOptions stack;
  double duration_s = 0;  // 0: until Ctrl-C
};

int run_up(const UpOptions& opt) {
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet up: {}\n", stack.error());
    return 2;
  }
  install_stop_signals();
  fmt::print("usnet up: {} on {}{}\n", opt.stack.addr, (*stack)->link().info().name,
             opt.duration_s > 0 ? fmt::format(" for {} s", opt.duration_s) : ", Ctrl-C to stop");
  std::fflush(stdout);
  const auto end = opt.duration_s > 0 ? ToolStack::now() + std::chrono::duration_cast<link::Nanos>(
                                                               std::chrono::duration<double>(opt.duration_s))
                                      : link::Nanos::max();
  while (!g_stop.load() && ToolStack::now() < end) (*stack)->run_once(end);
  fmt::print("{}", (*stack)->iface().format_counters());
  return 0;
}

}  // namespace

void add_up(CLI::App& app, std::function<int()>& run) {
  static UpOptions opt;
  auto* cmd = app.add_subcommand("up",
                                 "Bring a usnet stack up on a link: it answers ARP and ICMP echo until the "
                                 "duration ends or Ctrl-C, then prints its counters");
  add_stack_options(cmd, opt.stack);
  cmd->add_option("-d,--duration", opt.duration_s, "Seconds to stay up (0: until Ctrl-C)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->callback([&run] { run = [] { return run_up(opt); }; });
}

}  // namespace usnet::tool
