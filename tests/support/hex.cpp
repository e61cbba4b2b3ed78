#include "support/hex.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace usnet::test {

namespace {
int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::vector<std::byte> from_hex(std::string_view hex) {
  std::vector<std::byte> out;
  int hi = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n' || c == '\t' || c == ':') continue;
    int v = nibble(c);
    if (v < 0) {
      std::fprintf(stderr, "from_hex: bad character '%c'\n", c);
      std::abort();
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(std::byte(hi * 16 + v));
      hi = -1;
    }
  }
  if (hi >= 0) {
    std::fprintf(stderr, "from_hex: odd number of digits\n");
    std::abort();
  }
  return out;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    auto v = std::to_integer<unsigned>(b);
    s.push_back(digits[v >> 4]);
    s.push_back(digits[v & 15]);
  }
  return s;
}

std::vector<std::byte> reference_packet(std::string_view file, std::string_view name) {
  std::string path = std::string(USNET_TEST_DATA_DIR) + "/" + std::string(file);
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open reference data " << path;
    return {};
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (std::string_view(line).substr(0, colon) == name)
      return from_hex(std::string_view(line).substr(colon + 1));
  }
  ADD_FAILURE() << "no reference packet '" << name << "' in " << path;
  return {};
}

}  // namespace usnet::test
