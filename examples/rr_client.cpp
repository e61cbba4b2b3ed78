// A request/response client on usnet: connects to SERVER:PORT (an echo
// server), sends COUNT 64-byte requests one at a time, waits for each
// answer, and prints the round-trip times.
//
//   rr_client 'memif:/tmp/echo.sock' 198.18.0.2/24 198.18.0.1:7000 [COUNT]
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
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: %s LINK ADDR/LEN SERVER:PORT [COUNT]\n", argv[0]);
    return 2;
  }
  const std::string server = argv[3];
  const auto colon = server.rfind(':');
  const auto addr = usnet::wire::Ipv4Addr::parse(server.substr(0, colon));
  const int port = colon == std::string::npos ? 0 : std::atoi(server.c_str() + colon + 1);
  const long count = argc == 5 ? std::atol(argv[4]) : 10000;
  if (!addr || port <= 0 || port > 65535 || count <= 0) {
    std::fprintf(stderr, "%s: expected SERVER:PORT like 198.18.0.1:7000 and a positive COUNT\n", argv[0]);
    return 2;
  }
  usnet::StackConfig config;
  config.link = argv[1];
  config.addresses = {argv[2]};
  auto stack = usnet::Stack::create(config);
  if (!stack) {
    std::fprintf(stderr, "%s: %s\n", argv[0], stack.error().message.c_str());
    return 1;
  }
  usnet::Stack& s = **stack;
  std::signal(SIGINT, on_signal);  // Ctrl-C: stop, report what was measured, clean up
  std::signal(SIGTERM, on_signal);
  const usnet::LoopConfig busy{usnet::LoopMode::kBusy};  // latency first
  std::vector<double> rtt_us;
  std::string failure;
  {
    auto stream = s.tcp().connect({*addr, static_cast<std::uint16_t>(port)}, usnet::Stack::now());
    if (!stream) {
      std::fprintf(stderr, "%s: connect: %s\n", argv[0], stream.error().message().c_str());
      return 1;
    }
    stream->set_no_delay(true, usnet::Stack::now());
    std::array<std::byte, 64> request{}, answer{};
    const auto deadline = usnet::Stack::now() + std::chrono::seconds(10) + std::chrono::milliseconds(count);
    for (long i = 0; i < count && failure.empty() && !g_stop; ++i) {
      std::memcpy(request.data(), &i, sizeof i);
      const auto start = usnet::Stack::now();
      std::size_t sent = 0, got = 0;
      while (got < answer.size()) {
        s.run_once(busy);
        const auto now = usnet::Stack::now();
        if (now > deadline) failure = "no answer in time";
        if (g_stop) failure = "interrupted";
        if (auto e = stream->connection().error()) failure = e.message();
        if (!failure.empty()) break;
        if (sent < request.size()) {
          if (auto n = stream->send(std::span(request).subspan(sent), now)) sent += *n;
        }
        if (auto n = stream->receive(std::span(answer).subspan(got), now)) got += *n;
      }
      if (failure.empty() && std::memcmp(request.data(), answer.data(), answer.size()) != 0)
        failure = "answer differs from the request";
      rtt_us.push_back(std::chrono::duration<double, std::micro>(usnet::Stack::now() - start).count());
    }
    stream->close(usnet::Stack::now());
    // Let the FIN go out and be answered.
    const auto end = usnet::Stack::now() + std::chrono::milliseconds(200);
    while (usnet::Stack::now() < end && s.buffers_in_use() > 0) s.run_once(busy);
  }
  if (failure.empty() && rtt_us.empty()) failure = "interrupted";
  if (!failure.empty()) {
    std::fprintf(stderr, "%s: round trip %zu: %s\n", argv[0], rtt_us.size(), failure.c_str());
    return 1;
  }
  std::sort(rtt_us.begin(), rtt_us.end());
  const auto at = [&](double q) {
    return rtt_us[static_cast<std::size_t>(q * static_cast<double>(rtt_us.size() - 1))];
  };
  std::printf("%zu round trips of 64 bytes: p50 %.2f us, p99 %.2f us, p99.9 %.2f us, max %.2f us\n",
              rtt_us.size(), at(0.5), at(0.99), at(0.999), rtt_us.back());
  const std::size_t leaked = s.shutdown();
  if (leaked != 0) std::fprintf(stderr, "%s: %zu packet buffers still in use\n", argv[0], leaked);
  return leaked == 0 ? 0 : 1;
}
