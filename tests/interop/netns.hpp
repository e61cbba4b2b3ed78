// Test hosts for interop tests: network namespaces joined to usnet by veth
// pairs or TAP devices, created and deleted by the test itself.
//
// Safety rules (never broken): names are unique per run
// ("usnt-<pid>-<n>"); addresses only from 198.18.0.0/15 and 2001:db8::/32;
// no default route; everything is deleted when the object goes, at exit, on
// SIGINT/SIGTERM, and namespaces left by a crashed earlier run (whose pid is
// gone) are swept away when the next one starts.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::test {

struct CmdResult {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr
};

// Runs argv[0] with its arguments (no shell), bounded by `timeout_s`
// (killed after it), and returns its status and output.
CmdResult run(const std::vector<std::string>& argv, int timeout_s = 30);
// Runs `cmd` with /bin/sh -c, bounded the same way.
CmdResult sh(const std::string& cmd, int timeout_s = 30);

// Why an interop test cannot run here (not root, a tool missing), or empty.
std::string interop_blocker(std::initializer_list<const char*> tools = {});

class PeerNamespace;
// Makes the kernel end of a veth pair send frames an AF_XDP link can check:
// the kernel leaves the TCP/UDP checksum of local traffic to the "device"
// (CHECKSUM_PARTIAL), veth never fills it in, and XDP sees the frame before
// anything could; so transmit checksum offload is turned off on the peer
// (and TSO/GSO, see netns.cpp).
// Returns why it failed, or empty.
std::string prepare_af_xdp_peer(const PeerNamespace& ns);
// Makes the kernel end of a veth pair send MTU-sized frames to an AF_PACKET
// link: with TSO/GSO on, veth hands over unsegmented super-frames (up to
// 64 KiB) that no packet buffer holds. Returns why it failed, or empty.
std::string prepare_af_packet_peer(const PeerNamespace& ns);

// A namespace holding the kernel peer, joined to the root namespace by a
// veth pair. The peer end is inside the namespace with `peer_cidr` (and
// `peer_cidr6` if given); the usnet end stays in the root namespace, up,
// with no address and IPv6 disabled, so the kernel there never answers for
// it: usnet owns that end through AF_PACKET or AF_XDP.
class PeerNamespace {
 public:
  static Expected<PeerNamespace, std::string> with_veth(std::string_view peer_cidr = "198.18.0.2/24",
                                                        std::string_view peer_cidr6 = {}, int mtu = 1500);
  // The TAP device `tap_name` (already opened by usnet) is moved into a new
  // namespace and given the peer address there.
  static Expected<PeerNamespace, std::string> with_tap(std::string_view tap_name,
                                                       std::string_view peer_cidr = "198.18.0.2/24",
                                                       std::string_view peer_cidr6 = {}, int mtu = 1500);

  // A persistent TAP device created inside a new namespace, with the peer
  // address on its kernel side. usnet opens it by running inside the
  // namespace (exec()), so the kernel side is ready before usnet starts.
  static Expected<PeerNamespace, std::string> with_persistent_tap(
      std::string_view peer_cidr = "198.18.0.2/24", std::string_view peer_cidr6 = {}, int mtu = 1500);

  PeerNamespace(PeerNamespace&& other) noexcept;
  PeerNamespace& operator=(PeerNamespace&&) = delete;
  PeerNamespace(const PeerNamespace&) = delete;
  ~PeerNamespace();

  const std::string& name() const { return ns_; }
  const std::string& usnet_if() const { return usnet_if_; }  // root-namespace end (veth only)
  const std::string& peer_if() const { return peer_if_; }    // end inside the namespace
  wire::MacAddr peer_mac() const;

  // Runs `cmd` inside the namespace.
  CmdResult exec(const std::string& cmd, int timeout_s = 30) const;

  // Pings `addr` from inside the namespace until it answers, at most
  // `tries` times, one second each. Empty once it answered; otherwise what
  // ping said and diagnose().
  std::string wait_for_answer(std::string_view addr = "198.18.0.1", int tries = 20) const;
  // For a failure message: the links in the namespace with their counters,
  // TUN/TAP devices in the root namespace, the usnet processes running and
  // the kernel's last messages.
  std::string diagnose() const;

 private:
  PeerNamespace() = default;
  // Brings the peer end up with its MTU and addresses; an error text or empty.
  std::string configure_peer(std::string_view cidr, std::string_view cidr6, int mtu) const;
  std::string ns_, usnet_if_, peer_if_;
};

}  // namespace usnet::test
