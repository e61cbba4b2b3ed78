// `usnet udp-server` echoes every UDP datagram back to its sender;
// `usnet udp-client` sends numbered datagrams with a known pattern and checks
// that each comes back byte for byte. Over any link, optionally with faults.
#include <fmt/core.h>

#include <charconv>
#include <vector>

#include "stack_setup.hpp"

namespace usnet::tool {

namespace {

struct ServerOptions {
  StackOptions stack;
  std::uint16_t port = 7;
  double duration_s = 0;
};

struct ClientOptions {
  StackOptions stack;
  std::string dest;  // ADDR:PORT
  std::uint32_t count = 10;
  std::uint32_t size = 64;
  double interval_s = 0.01;
  double wait_s = 2.0;
  double max_loss_pct = 0;
  double warmup_s = 5.0;
};

int run_server(const ServerOptions& opt) {
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet udp-server: {}\n", stack.error());
    return 2;
  }
  install_stop_signals();
  auto sock = (*stack)->udp().open();
  if (auto ec = sock->bind({wire::Ipv4Addr{}, opt.port})) {
    fmt::print(stderr, "usnet udp-server: port {}: {}\n", opt.port, ec.message());
    return 2;
  }
  fmt::print("usnet udp-server: echoing on {}:{} over {}\n", opt.stack.addr, opt.port,
             (*stack)->link().info().name);
  std::fflush(stdout);
  const auto end = opt.duration_s > 0 ? ToolStack::now() + std::chrono::duration_cast<link::Nanos>(
                                                               std::chrono::duration<double>(opt.duration_s))
                                      : link::Nanos::max();
  std::uint64_t echoed = 0, send_errors = 0;
  while (!g_stop.load() && ToolStack::now() < end) {
    (*stack)->poll();
    // Zero-copy receive: the payload is read in the pool buffer it arrived in.
    bool busy = false;
    while (auto d = sock->receive()) {
      busy = true;
      if (auto ec = sock->send_to(d->payload(), d->from, ToolStack::now())) {
        ++send_errors;
      } else {
        ++echoed;
      }
    }
    if (!busy) (*stack)->wait(end);
  }
  fmt::print("echoed {} datagrams, {} send errors\n{}", echoed, send_errors, (*stack)->format_counters());
  return 0;
}

void fill(std::vector<std::byte>& buf, std::uint32_t seq) {
  store_be32(buf.data(), seq);
  for (std::size_t j = 4; j < buf.size(); ++j)
    buf[j] = std::byte(static_cast<std::uint8_t>(seq * 31 + j * 7));
}

int run_client(const ClientOptions& opt) {
  const auto colon = opt.dest.rfind(':');
  std::optional<wire::Ipv4Addr> addr;
  std::uint16_t port = 0;
  if (colon != std::string::npos) {
    addr = wire::Ipv4Addr::parse(opt.dest.substr(0, colon));
    const char* first = opt.dest.data() + colon + 1;
    const char* last = opt.dest.data() + opt.dest.size();
    auto [p, ec] = std::from_chars(first, last, port);
    if (ec != std::errc{} || p != last || port == 0) addr.reset();
  }
  if (!addr) {
    fmt::print(stderr, "usnet udp-client: {}: expected ADDRESS:PORT, like 198.18.0.2:7\n", opt.dest);
    return 2;
  }
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet udp-client: {}\n", stack.error());
    return 2;
  }
  install_stop_signals();
  auto sock = (*stack)->udp().open({.max_queue_datagrams = 1024, .max_queue_bytes = 16u << 20});
  if (auto ec = sock->connect({*addr, port})) {
    fmt::print(stderr, "usnet udp-client: {}: {}\n", opt.dest, ec.message());
    return 2;
  }
  // Warm-up: ping the destination until it answers, so that address
  // resolution is done before the counted run (a lost ARP reply would
  // otherwise hold the first second of datagrams behind a retransmit).
  if (opt.warmup_s > 0) {
    bool answered = false;
    auto& iface = (*stack)->iface();
    iface.set_ping_handler(
        [&](const net::EchoReply& r, link::Nanos) { answered = answered || r.from == *addr; });
    const auto start = ToolStack::now();
    const auto give_up =
        start + std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.warmup_s));
    std::uint16_t seq = 0;
    for (auto next = start; !answered && !g_stop.load() && ToolStack::now() < give_up;) {
      if (ToolStack::now() >= next) {
        (void)iface.send_ping(*addr, 0xfffe, ++seq, 8, ToolStack::now());
        next = ToolStack::now() + std::chrono::milliseconds(100);
      }
      (*stack)->run_once(std::min(next, give_up));
    }
    iface.set_ping_handler(nullptr);
    if (answered) {
      fmt::print("warm-up: {} answered after {:.0f} ms\n", addr->to_string(),
                 std::chrono::duration<double, std::milli>(ToolStack::now() - start).count());
    } else {
      fmt::print("warm-up: {} did not answer a ping within {} s; starting anyway\n", addr->to_string(),
                 opt.warmup_s);
    }
  }
  const auto interval =
      std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.interval_s));
  const auto wait = std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.wait_s));
  std::vector<std::byte> out(opt.size), in(opt.size + 1), want(opt.size);
  std::vector<bool> seen(opt.count, false);
  std::uint32_t sent = 0, received = 0, corrupted = 0, duplicates = 0, send_errors = 0, other_errors = 0;
  link::Nanos next = ToolStack::now(), last = next;
  while (!g_stop.load()) {
    const auto now = ToolStack::now();
    if (sent < opt.count && now >= next) {
      fill(out, sent);
      if (auto ec = sock->send(out, now)) {
        ++send_errors;
        if (send_errors <= 5) fmt::print(stderr, "usnet udp-client: datagram {}: {}\n", sent, ec.message());
      }
      ++sent;
      last = now;
      next = now + interval;
    }
    if (received == opt.count || (sent == opt.count && now >= last + wait)) break;
    (*stack)->run_once(sent < opt.count ? next : last + wait);
    for (;;) {
      auto r = sock->recv_from(in);
      if (!r) {
        if (r.error() == std::errc::resource_unavailable_try_again) break;
        ++other_errors;  // a pending ICMP error (port unreachable ...)
        if (other_errors <= 5) fmt::print(stderr, "usnet udp-client: {}\n", r.error().message());
        continue;
      }
      const std::uint32_t seq = r->length >= 4 ? load_be32(in.data()) : ~0u;
      if (r->length != opt.size || seq >= opt.count) {
        ++corrupted;
        continue;
      }
      fill(want, seq);
      if (!std::equal(want.begin(), want.end(), in.begin())) {
        ++corrupted;
      } else if (seen[seq]) {
        ++duplicates;
      } else {
        seen[seq] = true;
        ++received;
      }
    }
  }
  const double loss = sent == 0 ? 0.0 : 100.0 * (sent - received) / sent;
  fmt::print("sent {}, received {} ({:.1f}% loss), corrupted {}, duplicates {}, send errors {}\n", sent,
             received, loss, corrupted, duplicates, send_errors);
  fmt::print("{}", (*stack)->format_counters());
  if (g_stop.load() && sent < opt.count) return 130;
  const bool ok = sent == opt.count && corrupted == 0 && loss <= opt.max_loss_pct + 1e-9;
  return ok ? 0 : 1;
}

}  // namespace

void add_udp_echo(CLI::App& app, std::function<int()>& run) {
  static ServerOptions server;
  auto* s =
      app.add_subcommand("udp-server",
                         "Echo every UDP datagram back to its sender over usnet, until the duration ends or "
                         "Ctrl-C; then print the counters");
  add_stack_options(s, server.stack);
  s->add_option("-p,--port", server.port, "UDP port to echo on")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  s->add_option("-d,--duration", server.duration_s, "Seconds to run (0: until Ctrl-C)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  s->callback([&run] { run = [] { return run_server(server); }; });

  static ClientOptions client;
  auto* c =
      app.add_subcommand("udp-client",
                         "Send numbered UDP datagrams to an echo server over usnet and check that each comes "
                         "back byte for byte. Exit status: 0 if all came back (or the loss is within "
                         "--max-loss) and none was corrupted, 1 otherwise, 2 on an error.");
  add_stack_options(c, client.stack);
  c->add_option("destination", client.dest, "Echo server ADDRESS:PORT")->required();
  c->add_option("-c,--count", client.count, "Datagrams to send")
      ->check(CLI::Range(1u, 10000000u))
      ->capture_default_str();
  c->add_option("-s,--size", client.size, "Bytes per datagram (4 to 65507)")
      ->check(CLI::Range(4u, 65507u))
      ->capture_default_str();
  c->add_option("-i,--interval", client.interval_s, "Seconds between datagrams")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  c->add_option("-W,--wait", client.wait_s, "Seconds to wait for echoes after the last datagram")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  c->add_option("--max-loss", client.max_loss_pct, "Percent of datagrams that may be lost without failing")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  c->add_option(
       "--warmup", client.warmup_s,
       "Seconds to wait, before the counted run, for the destination to answer a ping (0: no warm-up)")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  c->callback([&run] { run = [] { return run_client(client); }; });
}

}  // namespace usnet::tool
