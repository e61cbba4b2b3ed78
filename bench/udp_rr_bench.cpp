// UDP request/response with 64-byte payloads between two processes, in the
// same run so the paths can be compared:
//   - over a memif link with a usnet stack at each end, against kernel UDP
//     sockets on 127.0.0.1;
//   - across a veth pair between two network namespaces this program
//     creates: a usnet stack at each end on an AF_XDP link (copy mode: veth
//     has no zero-copy), against kernel UDP sockets on the same veth pair.
//
// The benchmark process forks a peer that echoes every datagram back. Each
// iteration sends one datagram carrying a sequence number and waits for its
// echo, checking every byte; the round trip is timed on this process's steady
// clock. When at least two CPUs are allowed, this process runs on the first
// and the peer on the second (normally cores 0 and 1).
//
// How each side waits differs and is part of what is measured:
//   - usnet: both processes busy-poll (Interface::poll(now) in a tight loop,
//     no sleeping): that is how a usnet stack is meant to run on a core of
//     its own. The AF_XDP variants differ only in the link's busy_poll=
//     parameter (the socket's SO_PREFER_BUSY_POLL/SO_BUSY_POLL, and a
//     non-blocking recvfrom() that drives the device when the RX ring is
//     empty); both spin on rx_burst either way.
//   - kernel, blocking: both processes block in recv()/recvfrom() (the usual
//     way to use kernel sockets); each round trip includes two wake-ups of a
//     sleeping process.
//   - kernel, busy-poll: both processes spin on non-blocking
//     recv()/recvfrom() (MSG_DONTWAIT): the kernel's stack and system calls
//     without the wake-ups, the fairer match for usnet's busy polling.
// Every wait has a deadline: a lost datagram or a dead peer makes the run an
// error (SkipWithError) instead of a hang or a number. A benchmark that
// cannot run (the veth ones need root) says why and reports no number.
//
// The veth benchmarks (network safety): two namespaces named
// uxb-<pid>-a / uxb-<pid>-b, created on first use and deleted at exit, on
// SIGINT/SIGTERM too (namespaces of dead runs with that name pattern are
// deleted first); one veth pair between them; addresses only in
// 198.18.0.0/15 (usnet 198.18.0.1 and .2 held by the stacks, the kernel
// 198.18.1.1/24 and .2/24 on the veth ends); no default route; IPv6 off on
// the veth ends. The peer enters namespace a with setns(2) before opening
// its link; this process enters namespace b for the run and returns to its
// own afterwards.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cpu_pinning.hpp"
#include "usnet/link/af_xdp_link.hpp"
#include "usnet/link/link.hpp"
#include "usnet/link/memif_link.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/util/bytes.hpp"
#include "veth_topology.hpp"

namespace {

using namespace std::chrono_literals;
using usnet::link::Nanos;

constexpr std::size_t kPayload = 64;
constexpr std::uint16_t kEchoPort = 7;
// Sequence numbers of warm-up datagrams carry this bit, so a late warm-up
// echo is recognised (and ignored) during the timed run.
constexpr std::uint64_t kWarmupBit = std::uint64_t{1} << 63;
constexpr Nanos kRoundTripDeadline = 1s;   // one echo; far above any real round trip
constexpr Nanos kConnectDeadline = 15s;    // memif handshake / XDP attach + ARP + first echo
constexpr int kWarmupRoundTrips = 10'000;  // untimed, after the first echo came back
// An echo peer ends by itself after this long, should nobody stop it.
constexpr Nanos kPeerLifetime = 10min;

Nanos now() { return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch()); }

// ------------------------------------------------------------------ CPUs

using namespace usnet::bench;  // CpuPlan, plan_cpus, pin_to, ScopedPin

std::string pin_label(const CpuPlan& plan) {
  if (!plan.pinned) return "one cpu: unpinned, busy-pollers yield when idle";
  return "pinned: this process cpu " + std::to_string(plan.self_cpu) + ", peer cpu " +
         std::to_string(plan.peer_cpu);
}

// ------------------------------------------------------------------ peer

// The running peer, for the signal handler (which kills it before deleting
// the namespaces it may sit in).

// Set in the peer by SIGTERM: the echo loops return, so the peer closes its
// link (an AF_XDP link takes its XDP program off the interface) and exits.
volatile sig_atomic_t g_peer_stop = 0;
void on_peer_term(int) { g_peer_stop = 1; }

// Writes why the peer failed to `report` (read by Peer::why()) and returns
// the peer's exit status.
int peer_fail(int report, const std::string& why) {
  if (report >= 0) (void)!::write(report, why.data(), why.size());
  return 3;
}

class Peer {
 public:
  // Forks; the child pins itself and exits with body(report_fd)'s result.
  // It dies with this process (PR_SET_PDEATHSIG) and stops on SIGTERM
  // (g_peer_stop).
  Peer(const CpuPlan& plan, const std::function<int(int)>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      ::close(fds[0]);
      struct sigaction sa {};
      sa.sa_handler = on_peer_term;  // no SA_RESTART: a blocking recv returns EINTR
      sigaction(SIGTERM, &sa, nullptr);
      signal(SIGINT, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(2);
      if (plan.pinned && !pin_to(plan.peer_cpu)) _exit(peer_fail(fds[1], "could not pin the peer"));
      _exit(body(fds[1]));
    }
    ::close(fds[1]);
    report_ = fds[0];
    if (pid_ > 0) g_peer_pid.store(pid_);
  }
  // Asks the peer to stop (SIGTERM) and waits up to 5 s for it to close its
  // stack, then kills it.
  ~Peer() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGTERM);
      const Nanos give_up = now() + Nanos(5s);
      while (alive() && now() < give_up) std::this_thread::sleep_for(1ms);
      if (!reaped_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (pid_ > 0) g_peer_pid.store(-1);
    if (report_ >= 0) ::close(report_);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool started() const { return pid_ > 0; }
  bool alive() {
    if (!reaped_ && waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }
  // What the peer reported before it failed (empty if nothing yet).
  std::string why() {
    std::string out;
    if (report_ < 0) return out;
    const int flags = fcntl(report_, F_GETFL);
    fcntl(report_, F_SETFL, flags | O_NONBLOCK);
    char buf[512];
    ssize_t n;
    while ((n = ::read(report_, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  int report_ = -1;
  bool reaped_ = false;
};

// ------------------------------------------------------------------ payload

// Sequence number (8 bytes, big-endian) then a pattern derived from it, so
// an echo that is wrong anywhere is caught.
void fill(std::span<std::byte, kPayload> buf, std::uint64_t seq) {
  usnet::store_be32(buf.data(), static_cast<std::uint32_t>(seq >> 32));
  usnet::store_be32(buf.data() + 4, static_cast<std::uint32_t>(seq));
  for (std::size_t j = 8; j < kPayload; ++j) buf[j] = std::byte(static_cast<std::uint8_t>(seq * 31 + j * 7));
}

std::uint64_t seq_of(std::span<const std::byte> p) {
  return (std::uint64_t{usnet::load_be32(p.data())} << 32) | usnet::load_be32(p.data() + 4);
}

// ------------------------------------------------------------------ results

struct Percentiles {
  double p50, p99, p999, min, max, mean;
};

Percentiles percentiles(std::vector<std::uint64_t>& ns) {
  if (ns.empty()) return {0, 0, 0, 0, 0, 0};
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return static_cast<double>(ns[static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1))]);
  };
  double sum = 0;
  for (std::uint64_t v : ns) sum += static_cast<double>(v);
  return {at(0.50),
          at(0.99),
          at(0.999),
          static_cast<double>(ns.front()),
          static_cast<double>(ns.back()),
          sum / static_cast<double>(ns.size())};
}

void report(benchmark::State& state, std::vector<std::uint64_t>& samples, const CpuPlan& plan,
            const std::string& extra) {
  const Percentiles p = percentiles(samples);
  state.counters["p50_ns"] = p.p50;
  state.counters["p99_ns"] = p.p99;
  state.counters["p99.9_ns"] = p.p999;
  state.counters["min_ns"] = p.min;
  state.counters["mean_ns"] = p.mean;
  state.counters["max_ns"] = p.max;
  state.counters["samples"] = static_cast<double>(samples.size());
  // How many round trips stalled (the tail's shape: a few long stalls or
  // many moderate ones). The samples are sorted by percentiles().
  state.counters["over_100us"] = static_cast<double>(
      samples.end() - std::upper_bound(samples.begin(), samples.end(), std::uint64_t{100'000}));
  state.counters["over_1ms"] = static_cast<double>(
      samples.end() - std::upper_bound(samples.begin(), samples.end(), std::uint64_t{1'000'000}));
  // Round trips per second over the whole timed loop (SetItemsProcessed
  // would also count the setup when the loop ends early on an error).
  state.counters["round_trips"] =
      benchmark::Counter(static_cast<double>(samples.size()), benchmark::Counter::kIsRate);
  state.SetLabel(pin_label(plan) + extra);
}

// ------------------------------------------------------------------ commands and namespaces

// bench/veth_topology.hpp: Command, the veth topology, ScopedNetns, enter_netns.
using namespace usnet::bench;

// ------------------------------------------------------------------ usnet stack

constexpr std::size_t kBufferSize = 2048;  // a power of two: AF_XDP UMEM chunks
constexpr std::size_t kSegmentBytes = 64 * 1024;
constexpr std::uint32_t kBuffers = 4096;

// Arena, pool, link, interface and UDP layer, torn down in reverse.
struct UsnetStack {
  std::optional<usnet::mem::Arena> arena;
  std::unique_ptr<usnet::mem::PacketPool> pool;
  usnet::mem::OwnerId owner;
  std::unique_ptr<usnet::link::Link> link;
  std::unique_ptr<usnet::net::Interface> iface;
  std::unique_ptr<usnet::udp::UdpLayer> udp;

  UsnetStack() = default;
  UsnetStack(const UsnetStack&) = delete;
  UsnetStack& operator=(const UsnetStack&) = delete;
  ~UsnetStack() {
    udp.reset();
    iface.reset();
    link.reset();
    if (pool) (void)pool->remove_owner(owner);
  }
};

// Opens the stack on the link `uri` names. Empty string on success, else
// what failed.
std::string open_stack(UsnetStack& s, const std::string& uri, usnet::wire::Ipv4Addr addr) {
  constexpr std::uint32_t segments =
      static_cast<std::uint32_t>((std::size_t{kBuffers} * kBufferSize + kSegmentBytes - 1) / kSegmentBytes);
  const std::vector<usnet::mem::RegionSpec> spec{{"buffers", std::size_t{segments} * kSegmentBytes}};
  auto arena = usnet::mem::Arena::create("udp_rr_bench", spec);
  if (!arena) return "arena: " + arena.error().message();
  s.arena.emplace(std::move(*arena));
  auto pool =
      usnet::mem::PacketPool::create({kBufferSize, kSegmentBytes, segments}, s.arena->region("buffers"));
  if (!pool) return "pool: " + pool.error().message();
  s.pool = std::make_unique<usnet::mem::PacketPool>(std::move(*pool));
  auto owner = s.pool->add_owner({64, kBuffers});
  if (!owner) return "pool owner: " + owner.error().message();
  s.owner = *owner;

  auto link = usnet::link::open_link(uri, *s.pool, s.owner);
  if (!link) return uri + ": " + link.error().message;
  s.link = std::move(*link);

  usnet::net::InterfaceConfig ic;
  ic.addresses.push_back({addr, 24});
  ic.first_ident = static_cast<std::uint16_t>(now().count());
  auto iface = usnet::net::Interface::create(*s.link, *s.pool, s.owner, ic);
  if (!iface) return "interface: " + iface.error().message();
  s.iface = std::move(*iface);

  usnet::udp::UdpConfig uc;
  uc.ephemeral_seed = static_cast<std::uint64_t>(now().count());
  auto udp = usnet::udp::UdpLayer::create(*s.iface, *s.pool, s.owner, uc);
  if (!udp) return "udp: " + udp.error().message();
  s.udp = std::move(*udp);
  return {};
}

const usnet::wire::Ipv4Addr kServerAddr = *usnet::wire::Ipv4Addr::parse("198.18.0.1");
const usnet::wire::Ipv4Addr kClientAddr = *usnet::wire::Ipv4Addr::parse("198.18.0.2");

// Peer: usnet stack at 198.18.0.1 on `uri`, echoing every datagram on port
// 7 from the buffer it arrived in. Busy-polls until told to stop (SIGTERM)
// or kPeerLifetime has passed; yields when it shares the CPU with the
// benchmark process.
int usnet_echo_server(const std::string& uri, bool own_core, int report_fd) {
  UsnetStack s;
  if (auto e = open_stack(s, uri, kServerAddr); !e.empty()) return peer_fail(report_fd, e);
  auto sock = s.udp->open({.max_queue_datagrams = 1024, .max_queue_bytes = 1u << 20});
  if (auto ec = sock->bind({usnet::wire::Ipv4Addr{}, kEchoPort}))
    return peer_fail(report_fd, "bind: " + ec.message());
  const Nanos end = now() + kPeerLifetime;
  for (;;) {
    const Nanos t = now();
    if (g_peer_stop != 0 || t > end) return 0;  // the stack closes on the way out
    s.iface->poll(t);
    bool any = false;
    while (auto d = sock->receive()) {
      (void)sock->send_to(d->payload(), d->from, t);
      any = true;
    }
    if (!any && !own_core) sched_yield();
  }
}

// The client side's wait: busy-polls the client stack until the echo
// arrives.
struct Waiter {
  UsnetStack& s;
  usnet::udp::UdpSocket& sock;
  Peer& peer;
  bool own_core;
  std::uint64_t stale = 0;  // late warm-up echoes skipped in the timed run
  std::uint64_t spins = 0;

  // Waits for the echo of `seq`, checking every byte. Echoes of warm-up
  // datagrams (kWarmupBit) other than `seq` are skipped and counted.
  std::string wait_echo(std::uint64_t seq, Nanos deadline) {
    std::array<std::byte, kPayload> want{};
    fill(want, seq);
    for (;;) {
      const Nanos t = now();
      s.iface->poll(t);
      bool got = false;
      while (auto d = sock.receive()) {
        const auto p = d->payload();
        if (p.size() != kPayload) return "echo of the wrong length";
        if (std::memcmp(p.data(), want.data(), kPayload) == 0) {
          got = true;
          continue;  // drain anything else queued; there should be nothing
        }
        if ((seq_of(p) & kWarmupBit) != 0) {
          ++stale;
          continue;
        }
        return "echo with the wrong sequence number or payload";
      }
      if (got) return {};
      if (t > deadline) return "no echo within the deadline";
      if ((++spins & 0xffffu) == 0 && !peer.alive()) {
        const std::string why = peer.why();
        return "the echo peer died" + (why.empty() ? std::string() : ": " + why);
      }
      if (!own_core) sched_yield();
    }
  }
};

// What the link adds to the label (AF_XDP: copy or zero-copy, XDP mode).
std::string link_label(const usnet::link::Link& link) {
  if (const auto* x = dynamic_cast<const usnet::link::AfXdpLink*>(&link)) {
    return std::string("; af_xdp ") + (x->zero_copy() ? "zero-copy" : "copy mode") + ", xdp " + x->xdp_mode();
  }
  return {};
}

// The measuring side of the usnet benchmarks: a stack at 198.18.0.2 on
// `uri`, against an echo peer already started; 100,000 timed round trips
// after the warm-up.
void usnet_client_rr(benchmark::State& state, const CpuPlan& plan, Peer& peer, const std::string& uri,
                     const std::string& label) {
  ScopedPin pin(plan);
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  std::string error;
  std::string extra;
  {
    UsnetStack s;
    error = open_stack(s, uri, kClientAddr);
    std::unique_ptr<usnet::udp::UdpSocket> sock;
    if (error.empty()) {
      sock = s.udp->open({.max_queue_datagrams = 1024, .max_queue_bytes = 1u << 20});
      if (auto ec = sock->connect({kServerAddr, kEchoPort})) error = "connect: " + ec.message();
    }
    std::optional<Waiter> w;
    if (error.empty()) w.emplace(Waiter{s, *sock, peer, plan.pinned});

    // Warm-up: the server may not listen yet, the handshake and ARP take a
    // while, and early sends may be refused or lost; retry every 20 ms
    // until one echo comes back, then run untimed round trips.
    if (error.empty()) {
      const Nanos give_up = now() + kConnectDeadline;
      std::array<std::byte, kPayload> out{};
      bool answered = false;
      for (std::uint64_t seq = kWarmupBit; !answered && error.empty(); ++seq) {
        if (now() > give_up) {
          error = "no echo during warm-up";
          if (const auto* m = dynamic_cast<const usnet::link::MemifLink*>(s.link.get())) {
            error += std::string(" (memif connected: ") + (m->connected() ? "yes" : "no") + ")";
          }
          if (const std::string why = peer.why(); !why.empty()) error += "; the peer said: " + why;
          break;
        }
        fill(out, seq);
        (void)sock->send(out, now());
        const std::string e = w->wait_echo(seq, std::min(give_up, now() + Nanos(20ms)));
        if (e.empty()) {
          answered = true;
        } else if (e != "no echo within the deadline") {
          error = "warm-up: " + e;
        }
      }
      for (int i = 0; i < kWarmupRoundTrips && error.empty(); ++i) {
        const std::uint64_t seq = kWarmupBit | (std::uint64_t{1} << 62) | static_cast<std::uint64_t>(i);
        fill(out, seq);
        if (auto ec = sock->send(out, now())) {
          error = "warm-up send: " + ec.message();
        } else if (auto e = w->wait_echo(seq, now() + kRoundTripDeadline); !e.empty()) {
          error = "warm-up: " + e;
        }
      }
    }

    if (!error.empty()) {
      state.SkipWithError(error.c_str());
    } else {
      std::array<std::byte, kPayload> out{};
      std::uint64_t seq = 0;
      for (auto _ : state) {
        fill(out, seq);
        const Nanos start = now();
        if (auto ec = sock->send(out, start)) {
          error = "send: " + ec.message();
        } else {
          error = w->wait_echo(seq, start + kRoundTripDeadline);
        }
        const Nanos end = now();
        if (!error.empty()) {
          error = "datagram " + std::to_string(seq) + ": " + error;
          state.SkipWithError(error.c_str());
          break;
        }
        samples.push_back(static_cast<std::uint64_t>((end - start).count()));
        ++seq;
      }
      state.counters["stale_warmup_echoes"] = static_cast<double>(w->stale);
      state.counters["udp_rx_dropped"] = static_cast<double>(s.udp->counters().dropped_total());
      state.counters["link_tx_errors"] = static_cast<double>(s.link->counters().tx_errors);
      extra = link_label(*s.link);
    }
    // The client stack goes first (the server sees it hang up), then the peer.
  }
  report(state, samples, plan, label + extra);
}

void BM_UdpRR64_UsnetMemif(benchmark::State& state) {
  const CpuPlan plan = plan_cpus();
  const std::string path = "/tmp/usnet-udp-rr-" + std::to_string(getpid()) + ".sock";
  ::unlink(path.c_str());
  // The peer builds its own stack after the fork: nothing of this process's
  // stack is shared but the memif socket path.
  {
    Peer peer(plan, [&path, &plan](int report_fd) {
      return usnet_echo_server("memif:" + path + "?role=server", plan.pinned, report_fd);
    });
    if (!peer.started()) {
      state.SkipWithError("fork failed");
    } else {
      usnet_client_rr(state, plan, peer, "memif:" + path + "?role=client", "; both sides busy-poll");
    }
  }
  ::unlink(path.c_str());
}
BENCHMARK(BM_UdpRR64_UsnetMemif)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

// usnet at both ends of the veth pair on AF_XDP links: the peer in
// namespace a, this process in namespace b. `busy_poll_us` goes into both
// link URIs (0: left out).
void usnet_af_xdp_rr(benchmark::State& state, std::uint32_t busy_poll_us) {
  std::string error;
  const VethTopology* t = topology("uxb", error);
  if (t == nullptr) {
    state.SkipWithError(("veth benchmark not run: " + error).c_str());
    return;
  }
  const CpuPlan plan = plan_cpus();
  const std::string params = busy_poll_us > 0 ? "?busy_poll=" + std::to_string(busy_poll_us) : "";
  const std::string ns_a = t->ns_a;
  const std::string uri_a = "af_xdp:" + t->if_a + params;
  {
    Peer peer(plan, [&ns_a, &uri_a, &plan](int report_fd) {
      if (auto e = enter_netns(ns_a); !e.empty()) return peer_fail(report_fd, e);
      return usnet_echo_server(uri_a, plan.pinned, report_fd);
    });
    if (!peer.started()) {
      state.SkipWithError("fork failed");
      return;
    }
    const ScopedNetns in_b(t->ns_b);
    if (!in_b.error().empty()) {
      state.SkipWithError(in_b.error().c_str());
      return;
    }
    usnet_client_rr(state, plan, peer, "af_xdp:" + t->if_b + params,
                    busy_poll_us > 0 ? "; both sides busy-poll, busy_poll=" + std::to_string(busy_poll_us)
                                     : "; both sides busy-poll, no busy_poll= on the link");
  }
  // The peer closed its link (taking its XDP program off the interface)
  // when asked to stop; should it have been killed instead, take the
  // program off here, so the kernel benchmarks see a bare veth.
  const std::string ip = find_ip();
  (void)Command({ip, "-n", t->ns_a, "link", "set", "dev", t->if_a, "xdp", "off"}).run();
  (void)Command({ip, "-n", t->ns_b, "link", "set", "dev", t->if_b, "xdp", "off"}).run();
}

void BM_UdpRR64_UsnetAfXdpVeth(benchmark::State& state) { usnet_af_xdp_rr(state, 0); }
BENCHMARK(BM_UdpRR64_UsnetAfXdpVeth)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_UdpRR64_UsnetAfXdpVethBusyPoll50us(benchmark::State& state) { usnet_af_xdp_rr(state, 50); }
BENCHMARK(BM_UdpRR64_UsnetAfXdpVethBusyPoll50us)
    ->Iterations(100'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ------------------------------------------------------------------ kernel

// Peer: recvfrom/sendto echo on the socket it inherited; blocking, or
// spinning on MSG_DONTWAIT (yielding when it shares the CPU). Returns on
// SIGTERM or after kPeerLifetime (the blocking receive has a 1 s timeout,
// so the lifetime is checked).
int kernel_echo_server(int fd, bool busy_poll, bool own_core) {
  std::array<std::byte, 2048> buf{};
  const int flags = busy_poll ? MSG_DONTWAIT : 0;
  const timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const Nanos end = now() + kPeerLifetime;
  for (std::uint64_t spins = 0;;) {
    if (g_peer_stop != 0) return 0;
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), flags, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if ((!busy_poll || (++spins & 0xffffu) == 0) && now() > end) return 0;
        if (busy_poll && !own_core) sched_yield();
        continue;
      }
      return 3;
    }
    if (::sendto(fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len) !=
        n)
      return 3;
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Where the kernel benchmark's two sockets live: loopback in this process's
// namespace, or the server on the veth end in namespace a and the client on
// the one in namespace b.
struct KernelPath {
  std::uint32_t server_addr;  // host order
  std::string server_ns;      // empty: this process's namespace
  std::string client_ns;
};

// A UDP socket made in namespace `ns` (sockets stay in the namespace they
// were made in).
int udp_socket_in(const std::string& ns, std::string& error) {
  std::optional<ScopedNetns> in;
  if (!ns.empty()) {
    in.emplace(ns);
    if (!in->error().empty()) {
      error = in->error();
      return -1;
    }
  }
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) error = std::string("socket: ") + std::strerror(errno);
  return fd;
}

void kernel_rr(benchmark::State& state, bool busy_poll, const KernelPath& path) {
  const CpuPlan plan = plan_cpus();
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));

  // The server socket is made here (port chosen by the kernel) and
  // inherited by the peer; this process closes its copy.
  std::string error;
  Fd server(udp_socket_in(path.server_ns, error));
  Fd client(error.empty() ? udp_socket_in(path.client_ns, error) : -1);
  if (!error.empty()) {
    state.SkipWithError(("kernel socket setup failed: " + error).c_str());
    return;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(path.server_addr);
  socklen_t alen = sizeof addr;
  if (::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(server.get(), reinterpret_cast<sockaddr*>(&addr), &alen) != 0 ||
      ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    state.SkipWithError((std::string("kernel socket setup failed: ") + std::strerror(errno)).c_str());
    return;
  }
  // Every receive has a deadline.
  const timeval tv{1, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  const int sfd = server.get();
  Peer peer(plan, [sfd, busy_poll, &plan](int) { return kernel_echo_server(sfd, busy_poll, plan.pinned); });
  server.reset();
  if (!peer.started()) {
    state.SkipWithError("fork failed");
    return;
  }
  ScopedPin pin(plan);

  std::array<std::byte, kPayload> out{};
  std::array<std::byte, kPayload + 1> in{};
  std::uint64_t stale = 0;
  // Sends `seq` and waits for its echo; "" or why it failed.
  auto round_trip = [&](std::uint64_t seq) -> std::string {
    fill(std::span<std::byte, kPayload>(out), seq);
    if (::send(client.get(), out.data(), out.size(), 0) != static_cast<ssize_t>(out.size()))
      return "send failed";
    const Nanos deadline = now() + kRoundTripDeadline;
    for (std::uint64_t spins = 0;;) {
      const ssize_t n = ::recv(client.get(), in.data(), in.size(), busy_poll ? MSG_DONTWAIT : 0);
      if (n < 0 && busy_poll && errno == EAGAIN) {
        if (now() > deadline) return "no echo within the deadline";
        if ((++spins & 0xffffu) == 0 && !peer.alive()) return "the echo peer died";
        if (!plan.pinned) sched_yield();
        continue;
      }
      if (n < 0) return errno == EAGAIN ? "no echo within the deadline" : "recv failed";
      if (n != static_cast<ssize_t>(kPayload)) return "echo of the wrong length";
      if (std::memcmp(in.data(), out.data(), kPayload) == 0) return {};
      if ((seq_of(std::span<const std::byte>(in.data(), kPayload)) & kWarmupBit) != 0) {
        ++stale;
        continue;
      }
      return "echo with the wrong sequence number or payload";
    }
  };

  for (int i = 0; i < kWarmupRoundTrips && error.empty(); ++i) {
    error = round_trip(kWarmupBit | static_cast<std::uint64_t>(i));
    if (!error.empty()) error = "warm-up: " + error;
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
  } else {
    std::uint64_t seq = 0;
    for (auto _ : state) {
      const Nanos start = now();
      error = round_trip(seq);
      const Nanos end = now();
      if (!error.empty()) {
        error = "datagram " + std::to_string(seq) + ": " + error;
        state.SkipWithError(error.c_str());
        break;
      }
      samples.push_back(static_cast<std::uint64_t>((end - start).count()));
      ++seq;
    }
    state.counters["stale_warmup_echoes"] = static_cast<double>(stale);
  }
  report(state, samples, plan,
         busy_poll ? "; both sides spin on MSG_DONTWAIT recv" : "; both sides block in recv");
}

const KernelPath kLoopback{INADDR_LOOPBACK, {}, {}};

void BM_UdpRR64_KernelLoopback(benchmark::State& state) { kernel_rr(state, false, kLoopback); }
BENCHMARK(BM_UdpRR64_KernelLoopback)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_UdpRR64_KernelLoopbackBusyPoll(benchmark::State& state) { kernel_rr(state, true, kLoopback); }
BENCHMARK(BM_UdpRR64_KernelLoopbackBusyPoll)
    ->Iterations(100'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Kernel UDP across the veth pair: server socket 198.18.1.1 in namespace a,
// client 198.18.1.2 in namespace b. No XDP program is on the veth then (the
// usnet runs take theirs off when they close).
void kernel_veth_rr(benchmark::State& state, bool busy_poll) {
  std::string error;
  const VethTopology* t = topology("uxb", error);
  if (t == nullptr) {
    state.SkipWithError(("veth benchmark not run: " + error).c_str());
    return;
  }
  kernel_rr(state, busy_poll, KernelPath{0xc6120101u /* 198.18.1.1 */, t->ns_a, t->ns_b});
}

void BM_UdpRR64_KernelVeth(benchmark::State& state) { kernel_veth_rr(state, false); }
BENCHMARK(BM_UdpRR64_KernelVeth)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_UdpRR64_KernelVethBusyPoll(benchmark::State& state) { kernel_veth_rr(state, true); }
BENCHMARK(BM_UdpRR64_KernelVethBusyPoll)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
