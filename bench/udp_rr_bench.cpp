// UDP request/response with 64-byte payloads between two processes: over a
// memif link with a usnet stack at each end, and over kernel UDP sockets on
// 127.0.0.1, in the same run so the two can be compared.
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
//     its own.
//   - kernel, BM_UdpRR64_KernelLoopback: both processes block in
//     recv()/recvfrom() (the usual way to use kernel sockets); each round
//     trip includes two wake-ups of a sleeping process.
//   - kernel, BM_UdpRR64_KernelLoopbackBusyPoll: both processes spin on
//     non-blocking recv()/recvfrom() (MSG_DONTWAIT): the kernel's stack and
//     system calls without the wake-ups, the fairer match for usnet's
//     busy polling.
// Every wait has a deadline: a lost datagram or a dead peer makes the run an
// error (SkipWithError) instead of a hang or a number.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cpu_pinning.hpp"
#include "usnet/link/memif_link.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/util/bytes.hpp"

namespace {

using namespace std::chrono_literals;
using usnet::link::Nanos;

constexpr std::size_t kPayload = 64;
constexpr std::uint16_t kEchoPort = 7;
// Sequence numbers of warm-up datagrams carry this bit, so a late warm-up
// echo is recognised (and ignored) during the timed run.
constexpr std::uint64_t kWarmupBit = std::uint64_t{1} << 63;
constexpr Nanos kRoundTripDeadline = 1s;   // one echo; far above any real round trip
constexpr Nanos kConnectDeadline = 15s;    // memif handshake + ARP + first echo
constexpr int kWarmupRoundTrips = 10'000;  // untimed, after the first echo came back

Nanos now() { return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch()); }

// ------------------------------------------------------------------ CPUs

using namespace usnet::bench;  // CpuPlan, plan_cpus, pin_to, ScopedPin

std::string pin_label(const CpuPlan& plan) {
  if (!plan.pinned) return "one cpu: unpinned, busy-pollers yield when idle";
  return "pinned: this process cpu " + std::to_string(plan.self_cpu) + ", peer cpu " +
         std::to_string(plan.peer_cpu);
}

// ------------------------------------------------------------------ peer

class Peer {
 public:
  // Forks; the child pins itself and exits with body()'s result. It dies
  // with this process (PR_SET_PDEATHSIG).
  Peer(const CpuPlan& plan, const std::function<int()>& body) {
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(2);
      if (plan.pinned && !pin_to(plan.peer_cpu)) _exit(2);
      _exit(body());
    }
  }
  ~Peer() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool started() const { return pid_ > 0; }
  bool alive() {
    if (!reaped_ && waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
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
  // Round trips per second over the whole timed loop (SetItemsProcessed
  // would also count the setup when the loop ends early on an error).
  state.counters["round_trips"] =
      benchmark::Counter(static_cast<double>(samples.size()), benchmark::Counter::kIsRate);
  state.SetLabel(pin_label(plan) + extra);
}

// ------------------------------------------------------------------ usnet stack

constexpr std::size_t kBufferSize = 2048;
constexpr std::size_t kSegmentBytes = 64 * 1024;
constexpr std::uint32_t kBuffers = 4096;

// Arena, pool, memif link, interface and UDP layer, torn down in reverse.
struct UsnetStack {
  std::optional<usnet::mem::Arena> arena;
  std::unique_ptr<usnet::mem::PacketPool> pool;
  usnet::mem::OwnerId owner;
  std::unique_ptr<usnet::link::MemifLink> link;
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

// Empty string on success, else what failed.
std::string open_stack(UsnetStack& s, const std::string& socket_path, usnet::link::MemifRole role,
                       usnet::wire::Ipv4Addr addr) {
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

  usnet::link::MemifConfig mc;
  mc.socket_path = socket_path;
  mc.role = role;
  auto link = usnet::link::MemifLink::create(mc, *s.pool, s.owner);
  if (!link) return "memif: " + link.error().message;
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

// Peer: memif server at 198.18.0.1, echoing every datagram on port 7 from
// the buffer it arrived in. Busy-polls until killed (yields when it shares
// the CPU with the benchmark process).
int usnet_echo_server(const std::string& path, bool own_core) {
  UsnetStack s;
  if (!open_stack(s, path, usnet::link::MemifRole::kServer, kServerAddr).empty()) return 3;
  auto sock = s.udp->open({.max_queue_datagrams = 1024, .max_queue_bytes = 1u << 20});
  if (sock->bind({usnet::wire::Ipv4Addr{}, kEchoPort})) return 3;
  for (;;) {
    const Nanos t = now();
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
      if ((++spins & 0xffffu) == 0 && !peer.alive()) return "the echo peer died";
      if (!own_core) sched_yield();
    }
  }
};

void BM_UdpRR64_UsnetMemif(benchmark::State& state) {
  const CpuPlan plan = plan_cpus();
  const std::string path = "/tmp/usnet-udp-rr-" + std::to_string(getpid()) + ".sock";
  ::unlink(path.c_str());
  // The peer builds its own stack after the fork: nothing of this process's
  // stack is shared but the memif socket path.
  Peer peer(plan, [&path, &plan] { return usnet_echo_server(path, plan.pinned); });
  if (!peer.started()) {
    state.SkipWithError("fork failed");
    return;
  }
  ScopedPin pin(plan);
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  std::string error;
  {
    UsnetStack s;
    error = open_stack(s, path, usnet::link::MemifRole::kClient, kClientAddr);
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
          error =
              "no echo during warm-up (memif connected: " + std::string(s.link->connected() ? "yes" : "no") +
              ")";
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
    }
    // The client stack goes first (the server sees it hang up), then the peer.
  }
  ::unlink(path.c_str());
  report(state, samples, plan, "; both sides busy-poll");
}
BENCHMARK(BM_UdpRR64_UsnetMemif)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

// ------------------------------------------------------------------ kernel

// Peer: recvfrom/sendto echo on the socket it inherited; blocking, or
// spinning on MSG_DONTWAIT (yielding when it shares the CPU).
int kernel_echo_server(int fd, bool busy_poll, bool own_core) {
  std::array<std::byte, 2048> buf{};
  const int flags = busy_poll ? MSG_DONTWAIT : 0;
  for (;;) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), flags, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && busy_poll) {
        if (!own_core) sched_yield();
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
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

void kernel_rr(benchmark::State& state, bool busy_poll) {
  const CpuPlan plan = plan_cpus();
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));

  // The server socket is made here (port chosen by the kernel) and
  // inherited by the peer; this process closes its copy.
  Fd server(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  Fd client(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (server.get() < 0 || client.get() < 0 ||
      ::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(server.get(), reinterpret_cast<sockaddr*>(&addr), &alen) != 0 ||
      ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    state.SkipWithError("kernel socket setup failed");
    return;
  }
  // Every receive has a deadline.
  const timeval tv{1, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  const int sfd = server.get();
  Peer peer(plan, [sfd, busy_poll, &plan] { return kernel_echo_server(sfd, busy_poll, plan.pinned); });
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

  std::string error;
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

void BM_UdpRR64_KernelLoopback(benchmark::State& state) { kernel_rr(state, false); }
BENCHMARK(BM_UdpRR64_KernelLoopback)->Iterations(100'000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_UdpRR64_KernelLoopbackBusyPoll(benchmark::State& state) { kernel_rr(state, true); }
BENCHMARK(BM_UdpRR64_KernelLoopbackBusyPoll)
    ->Iterations(100'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
