// Fuzz parse_link_uri on arbitrary strings. Oracles: a rejected URI gives
// EINVAL and a message naming it; an accepted one satisfies the documented
// rules, and rendered back to text it parses to the same value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "usnet/link/link.hpp"

using usnet::link::LinkUri;
using usnet::link::parse_link_uri;

namespace {

std::string render(const LinkUri& u) {
  std::string s = u.scheme + ":" + u.target;
  char sep = '?';
  for (const auto& [k, v] : u.params) {
    s += sep;
    s += k;
    s += '=';
    s += v;
    sep = '&';
  }
  return s;
}

bool is_interface_scheme(const std::string& s) { return s == "tap" || s == "af_packet" || s == "af_xdp"; }

void check_accepted(const LinkUri& u) {
  if (u.target.empty()) __builtin_trap();
  if (u.scheme != "tap" && u.scheme != "af_packet" && u.scheme != "af_xdp" && u.scheme != "memif" &&
      u.scheme != "mem") {
    __builtin_trap();
  }
  if (is_interface_scheme(u.scheme)) {
    if (u.target.size() > 15 || u.target == "." || u.target == "..") __builtin_trap();
    for (char c : u.target) {
      if (c == '/' || c == ' ' || c == '\0') __builtin_trap();
    }
  }
  if (u.scheme == "memif" && u.target[0] != '/') __builtin_trap();
  if (u.target.find('?') != std::string::npos) __builtin_trap();
  for (std::size_t i = 0; i < u.params.size(); ++i) {
    const auto& [k, v] = u.params[i];
    if (u.param(k,
                "\x01"
                "absent") != v)
      __builtin_trap();  // first match is this one: no duplicates
    if (k == "role" && u.scheme == "memif") {
      if (v != "server" && v != "client") __builtin_trap();
    } else if (k == "id" && u.scheme == "memif") {
      // A 32-bit interface id, decimal digits only.
      if (v.empty() || v.size() > 10) __builtin_trap();
      unsigned long long n = 0;
      for (char c : v) {
        if (c < '0' || c > '9') __builtin_trap();
        n = n * 10 + static_cast<unsigned long long>(c - '0');
      }
      if (n > 0xffffffffull) __builtin_trap();
    } else if (k == "secret" && u.scheme == "memif") {
      if (v.empty() || v.size() > 24) __builtin_trap();  // memif's 24-byte field
    } else if (k == "mtu" && u.scheme == "memif") {
      // 68 .. 65517 (a frame with a VLAN tag in a 16-bit ring buffer).
      if (v.empty()) __builtin_trap();
      unsigned long n = 0;
      for (char c : v) {
        if (c < '0' || c > '9') __builtin_trap();
        n = n * 10 + static_cast<unsigned long>(c - '0');
        if (n > 65517) __builtin_trap();
      }
      if (n < 68) __builtin_trap();
    } else if (k == "mode" && u.scheme == "af_xdp") {
      if (v != "zc" && v != "copy") __builtin_trap();
    } else if ((k == "queue" || k == "busy_poll") && u.scheme == "af_xdp") {
      if (v.empty()) __builtin_trap();
      const unsigned long max = k == "queue" ? 65535 : 1000000;
      unsigned long n = 0;
      for (char c : v) {
        if (c < '0' || c > '9') __builtin_trap();
        n = n * 10 + static_cast<unsigned long>(c - '0');
        if (n > max) __builtin_trap();
      }
    } else if (k == "steer" && u.scheme == "af_xdp") {
      if (v != "served" && v != "all") __builtin_trap();
    } else {
      __builtin_trap();  // a key the scheme does not take
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (u.params[j].first == k) __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_link_uri(input);
  if (!parsed) {
    if (parsed.error().code != std::errc::invalid_argument) __builtin_trap();
    if (parsed.error().message.empty() || parsed.error().message[0] != '"') __builtin_trap();
    return 0;
  }
  check_accepted(*parsed);
  const std::string text = render(*parsed);
  if (text != input) __builtin_trap();  // nothing is normalised away
  auto again = parse_link_uri(text);
  if (!again) __builtin_trap();
  if (again->scheme != parsed->scheme || again->target != parsed->target || again->params != parsed->params) {
    __builtin_trap();
  }
  return 0;
}
