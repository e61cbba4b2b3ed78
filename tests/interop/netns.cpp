#include "netns.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <vector>

namespace usnet::test {

namespace {

std::mutex g_mu;
std::set<std::string>& live_namespaces() {
  static std::set<std::string> s;
  return s;
}
std::set<std::string>& live_links() {
  static std::set<std::string> s;
  return s;
}

void delete_everything() {
  // Called at exit and from signal handlers: best effort, no locks taken
  // twice (the handler path re-raises after this).
  for (const auto& l : live_links()) std::system(("ip link del " + l + " >/dev/null 2>&1").c_str());
  for (const auto& n : live_namespaces()) std::system(("ip netns del " + n + " >/dev/null 2>&1").c_str());
  live_links().clear();
  live_namespaces().clear();
}

void on_signal(int sig) {
  delete_everything();
  signal(sig, SIG_DFL);
  raise(sig);
}

// Namespaces named usnt-<pid>-<n> whose pid no longer runs were left by a
// crashed run: delete them before creating new ones.
void sweep_stale() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("usnt-", 0) != 0) continue;
    const auto dash = name.find('-', 5);
    if (dash == std::string::npos) continue;
    const long pid = std::strtol(name.substr(5, dash - 5).c_str(), nullptr, 10);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::system(("ip netns del " + name + " >/dev/null 2>&1").c_str());
    }
  }
}

void install_cleanup_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(delete_everything);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    sweep_stale();
  });
}

std::string unique_name() {
  static std::atomic<int> counter{0};
  return "usnt-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

bool cidr_allowed(std::string_view cidr) {
  // 198.18.0.0/15 is 198.18.x.x and 198.19.x.x; 2001:db8::/32.
  return cidr.empty() || cidr.rfind("198.18.", 0) == 0 || cidr.rfind("198.19.", 0) == 0 ||
         cidr.rfind("2001:db8:", 0) == 0;
}

}  // namespace

CmdResult run(const std::vector<std::string>& argv, int timeout_s) {
  CmdResult r;
  int fds[2];
  // Close-on-exec: a command another thread starts at the same moment
  // (a usnet server started with std::async while this one pings) must not
  // inherit this pipe's write end, or the read below waits for EOF until
  // that other command exits (a 5 s ping took as long as the server ran).
  // dup2() below gives the child its own copies without the flag.
  if (argv.empty() || pipe2(fds, O_CLOEXEC) != 0) return r;
  std::vector<std::string> full = {"/usr/bin/timeout", "-s", "KILL", std::to_string(timeout_s)};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (auto& a : full) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return r;
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.output.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CmdResult sh(const std::string& cmd, int timeout_s) { return run({"/bin/sh", "-c", cmd}, timeout_s); }

std::string interop_blocker(std::initializer_list<const char*> tools) {
  if (geteuid() != 0) return "interop tests need root (network namespaces, veth, TAP); run as root";
  if (sh("command -v ip").status != 0)
    return "the 'ip' command (iproute2) is missing: run scripts/install-deps";
  for (const char* t : tools) {
    if (sh(std::string("command -v ") + t).status != 0) {
      return std::string("'") + t + "' is missing: run scripts/install-deps";
    }
  }
  return {};
}

namespace {
Expected<PeerNamespace, std::string> fail(const std::string& what, const CmdResult& r) {
  return unexpected(what + " failed (status " + std::to_string(r.status) + "): " + r.output);
}
}  // namespace

Expected<PeerNamespace, std::string> PeerNamespace::with_veth(std::string_view peer_cidr,
                                                              std::string_view peer_cidr6, int mtu) {
  if (!cidr_allowed(peer_cidr) || !cidr_allowed(peer_cidr6)) {
    return unexpected(std::string("test addresses must be in 198.18.0.0/15 or 2001:db8::/32"));
  }
  install_cleanup_once();
  PeerNamespace p;
  const std::string base = unique_name();
  p.ns_ = base;
  // Interface names are at most 15 characters: "u<pid>x<n>a".
  const std::string short_id = base.substr(5);  // "<pid>-<n>"
  std::string id;
  for (char c : short_id) id += c == '-' ? 'x' : c;
  p.usnet_if_ = ("u" + id + "a").substr(0, 15);
  p.peer_if_ = ("u" + id + "b").substr(0, 15);
  {
    std::lock_guard lock(g_mu);
    live_namespaces().insert(p.ns_);
    live_links().insert(p.usnet_if_);
  }
  const std::string m = std::to_string(mtu);
  if (auto r = sh("ip netns add " + p.ns_); r.status != 0) return fail("ip netns add", r);
  // One queue each way: AF_XDP reads one receive queue, and a veth with
  // more (one per CPU by default) would put some flows on another.
  if (auto r = sh("ip link add " + p.usnet_if_ + " mtu " + m +
                  " numtxqueues 1 numrxqueues 1 type veth peer name " + p.peer_if_ + " mtu " + m +
                  " numtxqueues 1 numrxqueues 1 netns " + p.ns_);
      r.status != 0) {
    return fail("ip link add veth", r);
  }
  sh("sysctl -qw net.ipv6.conf." + p.usnet_if_ + ".disable_ipv6=1");
  if (auto r = sh("ip link set " + p.usnet_if_ + " up"); r.status != 0) return fail("ip link set up", r);
  if (auto err = p.configure_peer(peer_cidr, peer_cidr6, mtu); !err.empty()) return unexpected(err);
  return p;
}

Expected<PeerNamespace, std::string> PeerNamespace::with_tap(std::string_view tap_name,
                                                             std::string_view peer_cidr,
                                                             std::string_view peer_cidr6, int mtu) {
  if (!cidr_allowed(peer_cidr) || !cidr_allowed(peer_cidr6)) {
    return unexpected(std::string("test addresses must be in 198.18.0.0/15 or 2001:db8::/32"));
  }
  install_cleanup_once();
  PeerNamespace p;
  p.ns_ = unique_name();
  p.peer_if_ = std::string(tap_name);
  {
    std::lock_guard lock(g_mu);
    live_namespaces().insert(p.ns_);
  }
  if (auto r = sh("ip netns add " + p.ns_); r.status != 0) return fail("ip netns add", r);
  if (auto r = sh("ip link set " + p.peer_if_ + " netns " + p.ns_); r.status != 0)
    return fail("moving the TAP", r);
  if (auto err = p.configure_peer(peer_cidr, peer_cidr6, mtu); !err.empty()) return unexpected(err);
  return p;
}

Expected<PeerNamespace, std::string> PeerNamespace::with_persistent_tap(std::string_view peer_cidr,
                                                                        std::string_view peer_cidr6,
                                                                        int mtu) {
  if (!cidr_allowed(peer_cidr) || !cidr_allowed(peer_cidr6)) {
    return unexpected(std::string("test addresses must be in 198.18.0.0/15 or 2001:db8::/32"));
  }
  install_cleanup_once();
  PeerNamespace p;
  p.ns_ = unique_name();
  std::string id;
  for (char c : p.ns_.substr(5)) id += c == '-' ? 'x' : c;
  p.peer_if_ = ("t" + id).substr(0, 15);
  {
    std::lock_guard lock(g_mu);
    live_namespaces().insert(p.ns_);
  }
  if (auto r = sh("ip netns add " + p.ns_); r.status != 0) return fail("ip netns add", r);
  if (auto r = p.exec("ip tuntap add mode tap name " + p.peer_if_); r.status != 0)
    return fail("ip tuntap add", r);
  if (auto err = p.configure_peer(peer_cidr, peer_cidr6, mtu); !err.empty()) return unexpected(err);
  return p;
}

std::string PeerNamespace::configure_peer(std::string_view cidr, std::string_view cidr6, int mtu) const {
  if (auto r = exec("ip link set lo up && ip link set " + peer_if_ + " mtu " + std::to_string(mtu) +
                    " up && ip addr add " + std::string(cidr) + " dev " + peer_if_);
      r.status != 0) {
    return "configuring the peer namespace failed (status " + std::to_string(r.status) + "): " + r.output;
  }
  if (!cidr6.empty()) {
    if (auto r = exec("ip -6 addr add " + std::string(cidr6) + " dev " + peer_if_ + " nodad");
        r.status != 0) {
      return "adding the peer IPv6 address failed (status " + std::to_string(r.status) + "): " + r.output;
    }
  }
  return {};
}

PeerNamespace::PeerNamespace(PeerNamespace&& other) noexcept
    : ns_(std::move(other.ns_)), usnet_if_(std::move(other.usnet_if_)), peer_if_(std::move(other.peer_if_)) {
  other.ns_.clear();
  other.usnet_if_.clear();
  other.peer_if_.clear();
}

PeerNamespace::~PeerNamespace() {
  if (!usnet_if_.empty()) {
    sh("ip link del " + usnet_if_ + " >/dev/null 2>&1");
    std::lock_guard lock(g_mu);
    live_links().erase(usnet_if_);
  }
  if (!ns_.empty()) {
    sh("ip netns del " + ns_ + " >/dev/null 2>&1");
    std::lock_guard lock(g_mu);
    live_namespaces().erase(ns_);
  }
}

wire::MacAddr PeerNamespace::peer_mac() const {
  auto r = exec("cat /sys/class/net/" + peer_if_ + "/address");
  std::string s = r.output.substr(0, 17);
  return wire::MacAddr::parse(s).value_or(wire::MacAddr{});
}

CmdResult PeerNamespace::exec(const std::string& cmd, int timeout_s) const {
  return run({"/usr/sbin/ip", "netns", "exec", ns_, "/bin/sh", "-c", cmd}, timeout_s);
}

std::string PeerNamespace::wait_for_answer(std::string_view addr, int tries) const {
  CmdResult r;
  std::string attempts;  // status and duration of each try, for the failure message
  for (int i = 0; i < tries; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    r = exec("ping -c 1 -W 1 " + std::string(addr), 5);
    if (r.status == 0) return {};
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    attempts += " " + std::to_string(r.status) + "/" + std::to_string(ms) + "ms";
  }
  return std::string(addr) + " never answered ping (" + std::to_string(tries) +
         " tries, status/time:" + attempts + "): " + r.output + diagnose();
}

std::string PeerNamespace::diagnose() const {
  std::string out = "\n--- links in " + ns_ + ":\n" + exec("ip -s -d link show", 5).output;
  out += "--- neighbours and routes in " + ns_ + ":\n" + exec("ip neigh show; ip -4 route show", 5).output;
  if (!usnet_if_.empty()) out += "--- " + usnet_if_ + ":\n" + sh("ip -s -d link show " + usnet_if_, 5).output;
  out += "--- TUN/TAP devices in the root namespace:\n" + sh("ip -d link show type tun", 5).output;
  out +=
      "--- usnet processes:\n" + sh("ps -eo pid,stat,etimes,pcpu,wchan:20,args | grep '[u]snet '", 5).output;
  out += "--- kernel messages:\n" + sh("dmesg 2>/dev/null | tail -n 15", 5).output;
  return out;
}

std::string prepare_af_xdp_peer(const PeerNamespace& ns) {
  // TSO/GSO off too: veth hands a frame to the receiving end's XDP program
  // only when it may aggregate it (veth_skb_is_eligible_for_gro), which a
  // sender with TSO on can make false; such frames would bypass usnet's
  // program and go straight to the kernel.
  const std::string cmd = "ethtool -K " + ns.peer_if() + " tx off tso off gso off";
  const auto r = ns.exec(cmd, 10);
  if (r.status != 0) return cmd + " failed: " + r.output;
  return {};
}

std::string prepare_af_packet_peer(const PeerNamespace& ns) {
  const auto r = ns.exec("ethtool -K " + ns.peer_if() + " tso off gso off", 10);
  if (r.status != 0) return "ethtool -K " + ns.peer_if() + " tso off gso off failed: " + r.output;
  return {};
}

}  // namespace usnet::test
