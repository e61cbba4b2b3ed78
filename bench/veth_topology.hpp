// The veth benchmarks' plumbing, shared by udp_rr_bench and tcp_rr_bench:
// commands run under a timeout (async-signal-safe, for the cleanup from a
// signal handler), two network namespaces joined by a veth pair with one
// queue each way (198.18.1.1/24 and .2/24, IPv6 off, no default route),
// deleted at exit, on SIGINT/SIGTERM (after killing the forked peer named
// by g_peer_pid) and, after a SIGKILL, at the next start; and entering a
// namespace for a scope or for good.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace usnet::bench {

// The forked peer process, if one runs: killed by the signal handler.
inline std::atomic<pid_t> g_peer_pid{-1};

// The command (absolute path) under /usr/bin/timeout -s KILL, output
// discarded. Only async-signal-safe calls: the signal handler uses it with
// argument vectors built beforehand.
inline int run_argv(char* const* argv) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// An argument vector that owns its strings: "/usr/bin/timeout -s KILL 10
// <argv...>".
class Command {
 public:
  explicit Command(const std::vector<std::string>& argv) : text_{"/usr/bin/timeout", "-s", "KILL", "10"} {
    text_.insert(text_.end(), argv.begin(), argv.end());
    for (auto& s : text_) ptrs_.push_back(s.data());
    ptrs_.push_back(nullptr);
  }
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;
  int run() const { return run_argv(ptrs_.data()); }
  std::string text() const {
    std::string t;
    for (std::size_t i = 4; i < text_.size(); ++i) t += (i > 4 ? " " : "") + text_[i];
    return t;
  }

 private:
  std::vector<std::string> text_;
  std::vector<char*> ptrs_;
};

inline std::string find_ip() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

// Two namespaces joined by a veth pair, for the whole run (created on first
// use, deleted by the destructor at exit and by the SIGINT/SIGTERM handler).
struct VethTopology {
  std::string ns_a, ns_b, if_a, if_b;
  // Cleanup, in order: the veth (deleting one end deletes both), then the
  // namespaces. Built before anything is created.
  std::vector<std::unique_ptr<Command>> cleanup;

  void remove() const {
    for (const auto& c : cleanup) (void)c->run();
  }
};

// Deliberately leaked: the signal handler may run at any time, even during
// static destruction.
inline VethTopology* g_topology = nullptr;
inline std::atomic<bool> g_topology_live{false};

inline void remove_topology_now() {
  if (g_topology_live.exchange(false)) g_topology->remove();
}

inline void on_fatal_signal(int sig) {
  const pid_t peer = g_peer_pid.load();
  if (peer > 0) {
    kill(peer, SIGKILL);
    waitpid(peer, nullptr, 0);
  }
  remove_topology_now();
  signal(sig, SIG_DFL);
  raise(sig);
}

// At normal exit (Google Benchmark's main returns).
struct TopologyAtExit {
  ~TopologyAtExit() { remove_topology_now(); }
};
inline TopologyAtExit g_topology_at_exit;

// Namespaces <prefix>-<pid>-a/b left by a run that died without cleaning
// up (SIGKILL): delete them.
inline void sweep_stale(const std::string& ip, const std::string& prefix) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    const std::size_t start = prefix.size() + 1;
    if (name.rfind(prefix + "-", 0) != 0) continue;
    const auto dash = name.find('-', start);
    if (dash == std::string::npos) continue;
    const long pid = std::strtol(name.substr(start, dash - start).c_str(), nullptr, 10);
    if (pid > 0 && pid != getpid() && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      (void)Command({ip, "netns", "del", name}).run();
    }
  }
}

// Why the veth benchmarks cannot run here, or empty.
inline std::string veth_blocker() {
  if (geteuid() != 0) return "needs root (network namespaces, veth, AF_XDP): run as root";
  if (find_ip().empty()) return "the 'ip' command (iproute2) is missing: run scripts/install-deps";
  if (::access("/usr/bin/timeout", X_OK) != 0) return "/usr/bin/timeout (coreutils) is missing";
  return {};
}

// The topology, created on first call, its names made from `prefix` (three
// characters: "uxb" gives namespaces uxb-<pid>-a/b and interfaces
// uxb<pid>a/b); nullptr and `error` set if it could not be.
inline const VethTopology* topology(const std::string& prefix, std::string& error) {
  static std::string failed;
  if (g_topology_live.load()) return g_topology;
  if (!failed.empty()) {
    error = failed;
    return nullptr;
  }
  if (error = veth_blocker(); !error.empty()) return nullptr;
  const std::string ip = find_ip();
  sweep_stale(ip, prefix);
  const std::string pid = std::to_string(getpid());
  auto* t = new VethTopology;
  t->ns_a = prefix + "-" + pid + "-a";
  t->ns_b = prefix + "-" + pid + "-b";
  t->if_a = prefix + pid + "a";  // at most 15 characters: pids have at most 7 digits
  t->if_b = prefix + pid + "b";
  t->cleanup.push_back(std::make_unique<Command>(std::vector<std::string>{ip, "link", "del", t->if_a}));
  t->cleanup.push_back(
      std::make_unique<Command>(std::vector<std::string>{ip, "-n", t->ns_a, "link", "del", t->if_a}));
  t->cleanup.push_back(
      std::make_unique<Command>(std::vector<std::string>{ip, "-n", t->ns_b, "link", "del", t->if_b}));
  t->cleanup.push_back(std::make_unique<Command>(std::vector<std::string>{ip, "netns", "del", t->ns_a}));
  t->cleanup.push_back(std::make_unique<Command>(std::vector<std::string>{ip, "netns", "del", t->ns_b}));
  g_topology = t;
  g_topology_live.store(true);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  auto in = [&](const std::string& ns, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {ip, "netns", "exec", ns});
    return argv;
  };
  const std::vector<std::vector<std::string>> steps = {
      {ip, "netns", "add", t->ns_a},
      {ip, "netns", "add", t->ns_b},
      // IPv6 off for devices that arrive in the namespaces: no router
      // solicitations or DAD on the veth during the runs.
      in(t->ns_a, {"/usr/sbin/sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"}),
      in(t->ns_b, {"/usr/sbin/sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"}),
      // Made in this namespace and moved: the ends keep distinct ifindexes.
      {ip, "link", "add", t->if_a, "numtxqueues", "1", "numrxqueues", "1", "type", "veth", "peer", "name",
       t->if_b, "numtxqueues", "1", "numrxqueues", "1"},
      {ip, "link", "set", t->if_a, "netns", t->ns_a},
      {ip, "link", "set", t->if_b, "netns", t->ns_b},
      {ip, "-n", t->ns_a, "addr", "add", "198.18.1.1/24", "dev", t->if_a},
      {ip, "-n", t->ns_b, "addr", "add", "198.18.1.2/24", "dev", t->if_b},
      {ip, "-n", t->ns_a, "link", "set", t->if_a, "up"},
      {ip, "-n", t->ns_b, "link", "set", t->if_b, "up"},
  };
  for (const auto& step : steps) {
    const Command c(step);
    if (const int status = c.run(); status != 0) {
      failed = "'" + c.text() + "' failed (status " + std::to_string(status) + ")";
      remove_topology_now();
      error = failed;
      return nullptr;
    }
  }
  return t;
}

// This process (thread) in network namespace `ns` for a scope; back in the
// one it was in afterwards.
class ScopedNetns {
 public:
  explicit ScopedNetns(const std::string& ns) {
    self_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (self_ < 0 || fd < 0) {
      error_ = "cannot open namespace " + ns + ": " + std::strerror(errno);
    } else if (::setns(fd, CLONE_NEWNET) != 0) {
      error_ = "setns into " + ns + ": " + std::strerror(errno);
    } else {
      entered_ = true;
    }
    if (fd >= 0) ::close(fd);
  }
  ~ScopedNetns() {
    if (entered_ && ::setns(self_, CLONE_NEWNET) != 0) {
      // Later benchmarks would run in the wrong namespace: stop here.
      std::fprintf(stderr, "cannot return to the original network namespace\n");
      std::abort();
    }
    if (self_ >= 0) ::close(self_);
  }
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;
  const std::string& error() const { return error_; }

 private:
  int self_ = -1;
  bool entered_ = false;
  std::string error_;
};

// For the peer: enters `ns` for good. Empty or why not.
inline std::string enter_netns(const std::string& ns) {
  const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open namespace " + ns + ": " + std::strerror(errno);
  const int r = ::setns(fd, CLONE_NEWNET);
  const int e = errno;
  ::close(fd);
  if (r != 0) return "setns into " + ns + ": " + std::strerror(e);
  return {};
}

}  // namespace usnet::bench
