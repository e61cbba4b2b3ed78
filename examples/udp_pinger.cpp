// UDP ping on usnet: "echo PORT" answers every datagram with itself;
// "ping SERVER:PORT COUNT" sends COUNT datagrams one at a time and prints
// the round-trip times and the losses (a datagram unanswered for 100 ms is
// lost; the first may take 2 s, while the link comes up).
//
//   udp_pinger 'memif:/tmp/ping.sock?role=server' 198.18.0.1/24 echo 5000 [SECONDS]
//   udp_pinger 'memif:/tmp/ping.sock' 198.18.0.2/24 ping 198.18.0.1:5000 1000
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "usnet/stack.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int usage(const char* self) {
  std::fprintf(
      stderr, "usage: %s LINK ADDR/LEN echo PORT [SECONDS]\n       %s LINK ADDR/LEN ping SERVER:PORT COUNT\n",
      self, self);
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return usage(argv[0]);
  const std::string mode = argv[3];
  usnet::StackConfig config;
  config.link = argv[1];
  config.addresses = {argv[2]};
  if (mode == "echo" && (argc == 5 || argc == 6)) {
    const int port = std::atoi(argv[4]);
    const double seconds = argc == 6 ? std::atof(argv[5]) : 1e9;
    if (port <= 0 || port > 65535 || seconds <= 0) return usage(argv[0]);
    auto stack = usnet::Stack::create(config);
    if (!stack) {
      std::fprintf(stderr, "%s: %s\n", argv[0], stack.error().message.c_str());
      return 1;
    }
    usnet::Stack& s = **stack;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::size_t answered = 0;
    {
      auto sock = s.udp().open();
      if (auto e = sock->bind({{}, static_cast<std::uint16_t>(port)})) {
        std::fprintf(stderr, "%s: bind port %d: %s\n", argv[0], port, e.message().c_str());
        return 1;
      }
      std::printf("answering on %s port %d\n", argv[2], port);
      std::fflush(stdout);
      std::vector<std::byte> buf(65536);
      const auto end = usnet::Stack::now() +
                       std::chrono::duration_cast<usnet::Nanos>(std::chrono::duration<double>(seconds));
      while (!g_stop && usnet::Stack::now() < end) {
        s.run_once();
        while (auto r = sock->recv_from(buf)) {
          if (!sock->send_to(std::span(buf).first(r->copied), r->from, usnet::Stack::now())) ++answered;
        }
      }
    }
    std::printf("answered %zu datagrams\n", answered);
    return s.shutdown() == 0 ? 0 : 1;
  }
  if (mode != "ping" || argc != 6) return usage(argv[0]);
  const std::string server = argv[4];
  const auto colon = server.rfind(':');
  const auto addr = usnet::wire::Ipv4Addr::parse(server.substr(0, colon));
  const int port = colon == std::string::npos ? 0 : std::atoi(server.c_str() + colon + 1);
  const long count = std::atol(argv[5]);
  if (!addr || port <= 0 || port > 65535 || count <= 0) return usage(argv[0]);
  auto stack = usnet::Stack::create(config);
  if (!stack) {
    std::fprintf(stderr, "%s: %s\n", argv[0], stack.error().message.c_str());
    return 1;
  }
  usnet::Stack& s = **stack;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const usnet::LoopConfig busy{usnet::LoopMode::kBusy};
  std::vector<double> rtt_us;
  long lost = 0;
  {
    auto sock = s.udp().open();
    const usnet::udp::Endpoint to{*addr, static_cast<std::uint16_t>(port)};
    std::array<std::byte, 64> ping{}, pong{};
    for (long i = 0; i < count && !g_stop; ++i) {
      std::memcpy(ping.data(), &i, sizeof i);
      const auto start = usnet::Stack::now();
      bool answered = false;
      if (auto e = sock->send_to(ping, to, start); e && e != std::errc::no_buffer_space) {
        std::fprintf(stderr, "%s: send: %s\n", argv[0], e.message().c_str());
        return 1;
      }
      // The first ping also waits for the link to come up and ARP.
      const auto patience = std::chrono::milliseconds(i == 0 ? 2000 : 100);
      while (!answered && usnet::Stack::now() - start < patience) {
        s.run_once(busy);
        while (auto r = sock->recv_from(pong)) {
          if (r->copied == pong.size() && std::memcmp(ping.data(), pong.data(), pong.size()) == 0)
            answered = true;
        }
      }
      if (answered) {
        rtt_us.push_back(std::chrono::duration<double, std::micro>(usnet::Stack::now() - start).count());
      } else {
        ++lost;
      }
    }
  }
  const long sent = static_cast<long>(rtt_us.size()) + lost;
  std::printf("%ld sent, %zu answered, %ld lost", sent, rtt_us.size(), lost);
  if (!rtt_us.empty()) {
    std::sort(rtt_us.begin(), rtt_us.end());
    std::printf(": p50 %.2f us, p99 %.2f us, max %.2f us", rtt_us[rtt_us.size() / 2],
                rtt_us[(rtt_us.size() - 1) * 99 / 100], rtt_us.back());
  }
  std::printf("\n");
  return s.shutdown() == 0 && lost == 0 ? 0 : 1;
}
