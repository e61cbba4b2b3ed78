// Link URIs: "scheme:target?key=value&key=value".
//
// Every problem is reported as EINVAL with a message that quotes the URI and
// says what is wrong and what was expected, so a user can fix what they typed.
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "usnet/link/link.hpp"
#include "usnet/link/memif_link.hpp"

namespace usnet::link {
namespace {

// Linux IFNAMSIZ is 16 including the terminating NUL.
constexpr std::size_t kMaxIfNameLen = 15;
// sockaddr_un::sun_path is 108 bytes on Linux including the terminating NUL.
constexpr std::size_t kMaxSocketPathLen = 107;

// The text quoted in messages: printable ASCII kept, anything else as \xNN so
// a hostile or mistyped URI cannot garble a terminal or a log line.
std::string quoted(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  out += '"';
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

struct Scheme {
  std::string_view name;
  std::string_view target_kind;          // "interface name", "socket path", "name"
  std::array<std::string_view, 5> keys;  // accepted parameter keys; empty ones unused
};

constexpr std::array<Scheme, 5> kSchemes = {{
    {"tap", "interface name", {}},
    {"af_packet", "interface name", {"ring"}},
    {"memif", "socket path", {"role", "id", "secret", "mtu", "checksums"}},
    {"af_xdp", "interface name", {"queue", "mode", "busy_poll", "steer"}},
    {"mem", "name", {}},
}};

const Scheme* find_scheme(std::string_view name) {
  for (const Scheme& s : kSchemes) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// Decimal digits only, at most `max`.
bool decimal_at_most(std::string_view value, std::uint32_t max) {
  if (value.empty()) return false;
  std::uint64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
    if (n > max) return false;
  }
  return true;
}

class Checker {
 public:
  explicit Checker(std::string_view uri) : uri_(uri) {}

  Unexpected<LinkError> fail(const std::string& problem) const {
    return unexpected(
        LinkError{std::make_error_code(std::errc::invalid_argument), quoted(uri_) + ": " + problem});
  }

  // Linux's dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or
  // whitespace. Control characters are refused too: a name must be typeable.
  std::string interface_name_problem(std::string_view name) const {
    if (name.size() > kMaxIfNameLen) {
      return "interface name " + quoted(name) + " is " + std::to_string(name.size()) +
             " characters long (Linux allows at most 15)";
    }
    if (name == "." || name == "..") return "interface name " + quoted(name) + " is not allowed";
    for (char c : name) {
      if (c == '/') return "interface name " + quoted(name) + " contains '/'";
      if (c == ':') return "interface name " + quoted(name) + " contains ':'";
      if (is_space(c)) return "interface name " + quoted(name) + " contains whitespace";
      if (is_control(c)) return "interface name " + quoted(name) + " contains a control character";
    }
    return {};
  }

  std::string socket_path_problem(std::string_view path) const {
    if (path.front() != '/') return "socket path " + quoted(path) + " must be absolute (start with '/')";
    if (path.size() > kMaxSocketPathLen) {
      return "socket path " + quoted(path) + " is " + std::to_string(path.size()) +
             " bytes long (a Unix socket path holds at most 107)";
    }
    for (char c : path) {
      if (is_control(c)) return "socket path " + quoted(path) + " contains a control character";
    }
    return {};
  }

  std::string mem_name_problem(std::string_view name) const {
    for (char c : name) {
      if (is_space(c) || is_control(c))
        return "name " + quoted(name) + " contains whitespace or a control character";
    }
    return {};
  }

  std::string value_problem(std::string_view key, std::string_view value) const {
    if (key == "role") {
      if (value == "server" || value == "client") return {};
      return "unknown role " + quoted(value) + " (expected server or client)";
    }
    if (key == "mode") {
      if (value == "zc" || value == "copy") return {};
      return "unknown mode " + quoted(value) + " (expected zc or copy)";
    }
    if (key == "id") {
      // memif interface id: the peer matches on it (32 bits).
      bool ok = !value.empty() && value.size() <= 10;
      std::uint64_t n = 0;
      for (char c : value) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (ok && n <= 0xffffffffu) return {};
      return "id " + quoted(value) + " is not a decimal number from 0 to 4294967295";
    }
    if (key == "secret") {
      // memif carries the secret in a 24-byte field.
      if (!value.empty() && value.size() <= 24) return {};
      return "secret " + quoted(value) + " must be 1 to 24 characters";
    }
    if (key == "mtu") {
      // memif: the largest IP packet; a ring buffer holds it plus an
      // Ethernet header with a VLAN tag, in at most 65535 bytes.
      if (decimal_at_most(value, kMemifMaxMtu) && !decimal_at_most(value, kMemifMinMtu - 1)) return {};
      return "mtu " + quoted(value) + " is not a decimal number from " + std::to_string(kMemifMinMtu) +
             " to " + std::to_string(kMemifMaxMtu);
    }
    if (key == "queue") {
      if (decimal_at_most(value, 65535)) return {};
      return "queue " + quoted(value) + " is not a decimal number from 0 to 65535";
    }
    if (key == "busy_poll") {
      // Microseconds the kernel may busy-poll the device (SO_BUSY_POLL).
      if (decimal_at_most(value, 1000000)) return {};
      return "busy_poll " + quoted(value) + " is not a number of microseconds from 0 to 1000000";
    }
    if (key == "checksums") {
      // memif between two usnet stacks: none computed or checked.
      if (value == "on" || value == "off") return {};
      return "checksums " + quoted(value) + " is not on or off";
    }
    if (key == "ring") {
      // af_packet: TPACKET_V3 blocks or TPACKET_V2 frame slots.
      if (value == "blocks" || value == "frames") return {};
      return "unknown ring " + quoted(value) + " (expected blocks or frames)";
    }
    if (key == "steer") {
      if (value == "served" || value == "all") return {};
      return "unknown steer " + quoted(value) + " (expected served or all)";
    }
    return {};
  }

 private:
  std::string_view uri_;
};

std::string expected_keys(const Scheme& s) {
  std::string out;
  std::size_t n = 0;
  for (auto k : s.keys) n += k.empty() ? 0 : 1;
  if (n == 0) return std::string(s.name) + " takes no parameters";
  std::size_t i = 0;
  for (auto k : s.keys) {
    if (k.empty()) continue;
    if (i > 0) out += (i + 1 == n) ? " or " : ", ";
    out += k;
    ++i;
  }
  return "expected " + out;
}

}  // namespace

std::string_view LinkUri::param(std::string_view key, std::string_view fallback) const {
  for (const auto& [k, v] : params) {
    if (k == key) return v;
  }
  return fallback;
}

Expected<LinkUri, LinkError> parse_link_uri(std::string_view uri) {
  const Checker check(uri);
  const std::size_t colon = uri.find(':');
  if (colon == std::string_view::npos) {
    return check.fail(
        "no scheme (expected tap:NAME, af_packet:IFNAME, memif:/path.sock, af_xdp:IFNAME or mem:NAME)");
  }
  const std::string_view scheme_name = uri.substr(0, colon);
  const Scheme* scheme = find_scheme(scheme_name);
  if (scheme == nullptr) {
    return check.fail("unknown scheme " + quoted(scheme_name) +
                      " (expected tap, af_packet, memif, af_xdp or mem)");
  }

  std::string_view rest = uri.substr(colon + 1);
  const std::size_t question = rest.find('?');
  const std::string_view target = rest.substr(0, question);
  if (target.empty()) {
    return check.fail("missing " + std::string(scheme->target_kind) + " after \"" +
                      std::string(scheme->name) + ":\"");
  }
  std::string problem;
  if (scheme->target_kind == "interface name") {
    problem = check.interface_name_problem(target);
  } else if (scheme->target_kind == "socket path") {
    problem = check.socket_path_problem(target);
  } else {
    problem = check.mem_name_problem(target);
  }
  if (!problem.empty()) return check.fail(problem);

  LinkUri out;
  out.scheme = std::string(scheme_name);
  out.target = std::string(target);
  if (question == std::string_view::npos) return out;

  std::string_view query = rest.substr(question + 1);
  if (query.empty()) return check.fail("nothing after '?' (expected key=value parameters)");
  while (true) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    if (item.empty()) return check.fail("empty parameter (parameters are key=value separated by '&')");
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return check.fail("parameter " + quoted(item) + " has no value (expected key=value)");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key.empty()) return check.fail("parameter " + quoted(item) + " has no name (expected key=value)");
    bool known = false;
    for (auto k : scheme->keys) known = known || (!k.empty() && k == key);
    if (!known) return check.fail("unknown parameter " + quoted(key) + " (" + expected_keys(*scheme) + ")");
    for (const auto& [k, v] : out.params) {
      if (k == key) return check.fail("parameter " + quoted(key) + " given twice");
    }
    problem = check.value_problem(key, value);
    if (!problem.empty()) return check.fail(problem);
    out.params.emplace_back(std::string(key), std::string(value));
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return out;
}

}  // namespace usnet::link
