// A TCP echo server on usnet: accepts connections on PORT and sends back
// every byte it receives, until SECONDS have passed or SIGINT/SIGTERM.
//
//   tcp_echo_server 'memif:/tmp/echo.sock?role=server' 198.18.0.1/24 7000 [SECONDS [busy]]
//
// The loop is adaptive (spin briefly after traffic, then sleep), or with
// "busy" it never sleeps.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "usnet/stack.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6 || (argc == 6 && std::string(argv[5]) != "busy")) {
    std::fprintf(stderr, "usage: %s LINK ADDR/LEN PORT [SECONDS [busy]]\n", argv[0]);
    return 2;
  }
  const int port = std::atoi(argv[3]);
  const double seconds = argc >= 5 ? std::atof(argv[4]) : 1e9;
  if (port <= 0 || port > 65535 || seconds <= 0) {
    std::fprintf(stderr, "%s: PORT must be 1..65535 and SECONDS positive\n", argv[0]);
    return 2;
  }
  const usnet::LoopConfig loop{argc == 6 ? usnet::LoopMode::kBusy : usnet::LoopMode::kAdaptive};
  usnet::StackConfig config;
  config.link = argv[1];
  config.addresses = {argv[2]};
  auto stack = usnet::Stack::create(config);
  if (!stack) {
    std::fprintf(stderr, "%s: %s\n", argv[0], stack.error().message.c_str());
    return 1;
  }
  usnet::Stack& s = **stack;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::size_t echoed = 0, connections = 0;
  {
    auto listener = s.tcp().listen({{}, static_cast<std::uint16_t>(port)});
    if (!listener) {
      std::fprintf(stderr, "%s: listen on port %d: %s\n", argv[0], port, listener.error().message().c_str());
      return 1;
    }
    std::printf("listening on %s port %d\n", argv[2], port);
    std::fflush(stdout);
    std::vector<usnet::tcp::TcpStream> streams;
    std::vector<std::byte> buf(64 * 1024);
    const auto end = usnet::Stack::now() +
                     std::chrono::duration_cast<usnet::Nanos>(std::chrono::duration<double>(seconds));
    while (!g_stop && usnet::Stack::now() < end) {
      s.run_once(loop);
      const auto now = usnet::Stack::now();
      while (auto st = listener->accept()) {
        st->set_no_delay(true, now);
        streams.push_back(std::move(*st));
        ++connections;
      }
      for (auto& st : streams) {
        // Echo what fits in the send buffer; the rest waits in the
        // receive buffer (the window closes, the peer slows down).
        const std::size_t room = std::min(buf.size(), st.connection().writable());
        if (room == 0) continue;
        auto n = st.receive(std::span(buf).first(room), now);
        if (n && *n > 0) {
          auto m = st.send(std::span(buf).first(*n), now);
          echoed += m ? *m : 0;
        }
      }
      // Closed by the peer and all echoed, or reset: close our side too.
      std::erase_if(streams, [&](usnet::tcp::TcpStream& st) {
        const bool done = st.connection().eof() && st.connection().readable() == 0;
        if (!done && !st.connection().error()) return false;
        st.close(now);
        return true;
      });
    }
  }
  std::printf("echoed %zu bytes on %zu connections\n", echoed, connections);
  const std::size_t leaked = s.shutdown();
  if (leaked != 0) std::fprintf(stderr, "%s: %zu packet buffers still in use\n", argv[0], leaked);
  return leaked == 0 ? 0 : 1;
}
