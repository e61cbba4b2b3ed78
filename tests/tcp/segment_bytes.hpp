// For the test sinks: a segment's bytes laid out for TcpRepr::emit, header
// space first, then the payload pieces the connection handed over.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "usnet/tcp/connection.hpp"

namespace usnet::tcp::test_support {

inline std::size_t payload_size(Payload p) {
  std::size_t n = 0;
  for (const auto& piece : p) n += piece.size();
  return n;
}

inline std::vector<std::byte> segment_bytes(const wire::TcpRepr& h, Payload p) {
  std::vector<std::byte> out(h.buffer_len() + payload_size(p));
  std::size_t at = h.buffer_len();
  for (const auto& piece : p) {
    if (!piece.empty()) std::memcpy(out.data() + at, piece.data(), piece.size());
    at += piece.size();
  }
  return out;
}

}  // namespace usnet::tcp::test_support
