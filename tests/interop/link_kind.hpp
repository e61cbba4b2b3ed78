// What the tool-level interop tests share: the link kinds they run over
// (TAP, AF_PACKET and AF_XDP against the kernel in a peer namespace), the
// URI and the place (inside the namespace for TAP, the root namespace for
// the veth end) to run the usnet command for each, and reading a counter
// from the command's report.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <regex>
#include <string>

#include "interop/netns.hpp"

namespace usnet::test {

enum class LinkKind { Tap, AfPacket, AfXdp };

inline std::string link_kind_name(const testing::TestParamInfo<LinkKind>& i) {
  switch (i.param) {
    case LinkKind::Tap:
      return "Tap";
    case LinkKind::AfPacket:
      return "AfPacket";
    case LinkKind::AfXdp:
      return "AfXdp";
  }
  return "?";
}

// The kernel peer: a namespace behind a TAP (usnet runs inside it) or a
// veth pair (usnet runs on the root-namespace end), with the kernel's end
// set up for the link kind (prepare_af_xdp_peer, prepare_af_packet_peer).
inline Expected<PeerNamespace, std::string> peer_for(LinkKind k) {
  auto ns = k == LinkKind::Tap ? PeerNamespace::with_persistent_tap() : PeerNamespace::with_veth();
  if (!ns) return ns;
  const std::string err = k == LinkKind::AfXdp      ? prepare_af_xdp_peer(*ns)
                          : k == LinkKind::AfPacket ? prepare_af_packet_peer(*ns)
                                                    : std::string();
  if (!err.empty()) return unexpected(err);
  return ns;
}

inline std::string link_uri(LinkKind k, const PeerNamespace& ns) {
  if (k == LinkKind::Tap) return "tap:" + ns.peer_if();
  return (k == LinkKind::AfPacket ? "af_packet:" : "af_xdp:") + ns.usnet_if();
}

// Runs `cli args` where it can reach its link.
inline CmdResult run_usnet(LinkKind k, const PeerNamespace& ns, const std::string& cli,
                           const std::string& args, int timeout_s) {
  const std::string cmd = cli + " " + args;
  return k == LinkKind::Tap ? ns.exec(cmd, timeout_s) : sh(cmd, timeout_s);
}

// N from the first "N <name>" line of a report (name is a regex); 0 if none.
inline std::uint64_t counter(const std::string& out, const std::string& name) {
  std::smatch m;
  const std::regex re("(\\d+) " + name);
  if (!std::regex_search(out, m, re)) return 0;
  return std::stoull(m[1]);
}

}  // namespace usnet::test
