// `usnet ping`: ICMP echo over usnet on any link, printed like ping(8).
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "stack_setup.hpp"

namespace usnet::tool {

namespace {

struct PingOptions {
  StackOptions stack;
  std::string dest;
  std::uint32_t count = 4;
  double interval_s = 1.0;
  std::uint32_t size = 56;
  double wait_s = 2.0;
  bool quiet = false;
  bool stats = false;
};

int run_ping(const PingOptions& opt) {
  const auto dest = wire::Ipv4Addr::parse(opt.dest);
  if (!dest) {
    fmt::print(stderr, "usnet ping: {}: not an IPv4 address\n", opt.dest);
    return 2;
  }
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet ping: {}\n", stack.error());
    return 2;
  }
  install_stop_signals();
  auto& iface = (*stack)->iface();
  const auto ident = static_cast<std::uint16_t>(::getpid());
  std::vector<bool> seen(opt.count, false);
  std::uint32_t received = 0, duplicates = 0;
  std::vector<double> rtts_ms;
  iface.set_ping_handler([&](const net::EchoReply& r, link::Nanos) {
    if (r.ident != ident || r.from != *dest || r.seq == 0 || r.seq > opt.count) return;
    if (seen[r.seq - 1]) {
      ++duplicates;
      return;
    }
    seen[r.seq - 1] = true;
    ++received;
    const double ms = r.rtt ? std::chrono::duration<double, std::milli>(*r.rtt).count() : NAN;
    if (r.rtt) rtts_ms.push_back(ms);
    if (!opt.quiet) {
      fmt::print("{} bytes from {}: icmp_seq={} ttl={} time={:.3f} ms\n", r.data_len + 8, r.from.to_string(),
                 r.seq, r.ttl, ms);
      std::fflush(stdout);
    }
  });

  fmt::print("PING {} ({}) {}({}) bytes of data, over {}\n", opt.dest, opt.dest, opt.size, opt.size + 28,
             (*stack)->link().info().name);
  const auto interval =
      std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.interval_s));
  const auto wait = std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.wait_s));
  const auto start = ToolStack::now();
  std::uint32_t sent = 0, send_errors = 0;
  link::Nanos next_send = start, last_send = start;
  while (!g_stop.load()) {
    const auto now = ToolStack::now();
    if (sent < opt.count && now >= next_send) {
      ++sent;
      if (auto ec = iface.send_ping(*dest, ident, static_cast<std::uint16_t>(sent), opt.size, now)) {
        ++send_errors;
        fmt::print(stderr, "usnet ping: icmp_seq={}: {}\n", sent, ec.message());
      }
      last_send = now;
      next_send = now + interval;
    }
    if (received == opt.count) break;
    if (sent == opt.count && now >= last_send + wait) break;
    (*stack)->run_once(sent < opt.count ? next_send : last_send + wait);
  }

  const double elapsed_ms = std::chrono::duration<double, std::milli>(ToolStack::now() - start).count();
  const double loss = sent == 0 ? 0.0 : 100.0 * (sent - received) / sent;
  fmt::print("\n--- {} ping statistics ---\n", opt.dest);
  fmt::print("{} packets transmitted, {} received, {}{:.0f}% packet loss, time {:.0f}ms\n", sent, received,
             duplicates != 0 ? fmt::format("+{} duplicates, ", duplicates) : "", loss, elapsed_ms);
  if (!rtts_ms.empty()) {
    const double mn = *std::min_element(rtts_ms.begin(), rtts_ms.end());
    const double mx = *std::max_element(rtts_ms.begin(), rtts_ms.end());
    double sum = 0;
    for (double v : rtts_ms) sum += v;
    fmt::print("rtt min/avg/max = {:.3f}/{:.3f}/{:.3f} ms\n", mn, sum / static_cast<double>(rtts_ms.size()),
               mx);
  }
  if (opt.stats) fmt::print("\n{}", iface.format_counters());
  if (g_stop.load() && sent < opt.count) return 130;
  return received == sent && send_errors == 0 && sent > 0 ? 0 : 1;
}

}  // namespace

void add_ping(CLI::App& app, std::function<int()>& run) {
  static PingOptions opt;
  auto* cmd =
      app.add_subcommand("ping",
                         "Send ICMP echo requests over usnet and print the replies, like ping(8). "
                         "Exit status: 0 if every request was answered, 1 if any was lost, 2 on an error.");
  add_stack_options(cmd, opt.stack);
  cmd->add_option("destination", opt.dest, "IPv4 address to ping")->required();
  cmd->add_option("-c,--count", opt.count, "Echo requests to send")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  cmd->add_option("-i,--interval", opt.interval_s, "Seconds between requests")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  cmd->add_option("-s,--size", opt.size, "Bytes of echo data")
      ->check(CLI::Range(8u, 65507u))
      ->capture_default_str();
  cmd->add_option("-W,--wait", opt.wait_s, "Seconds to wait for replies after the last request")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", opt.quiet, "Print only the summary");
  cmd->add_flag("--stats", opt.stats, "Print the stack's counters at the end");
  cmd->callback([&run] { run = [] { return run_ping(opt); }; });
}

}  // namespace usnet::tool
