// Moving bytes between two TcpStreams of a test network whose clock and
// polling a `Net` drives (now(), step()): byte-exact, bounded in turns.
// Shared by the TCP layer tests.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "usnet/tcp/tcp.hpp"

namespace usnet::tcp::test {

// Sends `data` from `from` and returns what `to` received, stopping when
// all of it arrived or after 100,000 turns of the network.
template <class Net>
std::vector<std::byte> transfer(Net& n, TcpStream& from, TcpStream& to, const std::vector<std::byte>& data) {
  std::vector<std::byte> got;
  std::size_t sent = 0;
  std::array<std::byte, 16384> buf{};
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    if (sent < data.size()) {
      auto r = from.send(std::span(data).subspan(sent), n.now());
      if (r) sent += *r;
    }
    n.step();
    for (;;) {
      auto r = to.receive(buf, n.now());
      if (!r || *r == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
  }
  return got;
}

}  // namespace usnet::tcp::test
