// TCP benchmarks against the kernel, each usnet figure beside the kernel's
// on the same path and in the same run (issue 4):
//   - request/response with 64-byte requests and responses on one
//     connection between two processes: usnet at both ends over memif
//     against kernel TCP on 127.0.0.1, and usnet at both ends on AF_XDP
//     links across a veth pair between two namespaces this program creates
//     against kernel TCP across the same veth pair;
//   - bulk throughput in one direction on the same paths;
//   - a single-process transfer between two usnet stacks over in-memory
//     links with a fake clock, for instruction counts with callgrind
//     (instructions per segment sent and received, per round trip).
//
// The benchmark process forks a peer (the server). For request/response,
// each iteration writes 64 bytes (a sequence number and a pattern derived
// from it) and waits for the 64-byte answer, the same bytes echoed, checking
// every byte; the round trip is timed on this process's steady clock. For
// bulk, each iteration asks the peer for kBulkBytes and receives them,
// checking every byte against the pattern the peer sends from (usnet with
// 4 MiB, 1 MiB and 512 KiB buffers; the peer, the sender, reports its
// retransmissions and the segments its link refused as peer_* counters).
// When at
// least two CPUs are allowed, this process runs on the first and the peer
// on the second (normally cores 0 and 1).
//
// Under callgrind, the in-memory benchmarks zero the counts before their
// timed loop and dump them after it (valgrind/callgrind.h, when present),
// so the dump ending in ".1" holds the timed loop alone:
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out
//       tcp_rr_bench --benchmark_filter='InMemoryRR64/'
//   callgrind_annotate --inclusive=yes /tmp/cg.out.1
//
// How each side waits, which is part of what is measured:
//   - usnet: both processes busy-poll (Interface::poll(now), TCP timers when
//     due, the stream's receive/send; no sleeping).
//   - kernel, blocking: both processes block in recv()/send() (the usual
//     way to use sockets); each round trip wakes two sleeping processes.
//   - kernel, busy-poll: both spin on recv(MSG_DONTWAIT): the kernel's stack
//     and system calls without the wake-ups.
//   Both kernel sockets have TCP_NODELAY; usnet's connections no_delay.
// Every wait has a deadline: a lost byte or a dead peer makes the run an
// error (SkipWithError) instead of a hang or a number.
//
// The veth benchmarks (network safety): two namespaces named
// uxt-<pid>-a / uxt-<pid>-b, created on first use and deleted at exit, on
// SIGINT/SIGTERM too (namespaces of dead runs with that name pattern are
// deleted first); one veth pair between them; addresses only in
// 198.18.0.0/15 (usnet 198.18.0.1 and .2 held by the stacks, the kernel
// 198.18.1.1/24 and .2/24 on the veth ends); no default route; IPv6 off on
// the veth ends. The peer enters namespace a with setns(2) before opening
// its link; this process enters namespace b for the run and returns to its
// own afterwards.
//
// The namespace plumbing is bench/veth_topology.hpp, shared with
// bench/udp_rr_bench.cpp.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define USNET_CALLGRIND_ZERO() CALLGRIND_ZERO_STATS
#define USNET_CALLGRIND_DUMP(what) CALLGRIND_DUMP_STATS_AT(what)
#else
#define USNET_CALLGRIND_ZERO()
#define USNET_CALLGRIND_DUMP(what)
#endif

#include "cpu_pinning.hpp"
#include "usnet/link/af_xdp_link.hpp"
#include "usnet/link/link.hpp"
#include "usnet/link/memif_link.hpp"
#include "usnet/link/memory_link.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/stack.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/util/bytes.hpp"
#include "veth_topology.hpp"

namespace {

using namespace std::chrono_literals;
using usnet::link::Nanos;

constexpr std::size_t kPayload = 64;
constexpr std::uint16_t kPort = 5001;
constexpr std::uint64_t kWarmupBit = std::uint64_t{1} << 63;
constexpr Nanos kRoundTripDeadline = 1s;  // one answer; far above any real round trip
constexpr Nanos kConnectDeadline = 20s;   // memif handshake / XDP attach + ARP + SYN retransmits
constexpr Nanos kBulkDeadline = 60s;      // one bulk transfer
constexpr int kWarmupRoundTrips = 10'000;
constexpr int kTimedRoundTrips = 100'000;
// Bulk: bytes per timed transfer, transfers per benchmark (one untimed
// transfer of kBulkWarmupBytes first, on the same connection).
constexpr std::uint64_t kBulkBytes = std::uint64_t{64} << 20;
constexpr int kBulkTransfers = 4;
constexpr std::uint64_t kBulkWarmupBytes = std::uint64_t{16} << 20;
constexpr std::size_t kChunk = 256 * 1024;  // most bytes per send()/recv() call
constexpr Nanos kPeerLifetime = 10min;

Nanos now() { return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch()); }

using namespace usnet::bench;  // CpuPlan, plan_cpus, pin_to, ScopedPin

std::string pin_label(const CpuPlan& plan) {
  if (!plan.pinned) return "one cpu: unpinned, busy-pollers yield when idle";
  return "pinned: this process cpu " + std::to_string(plan.self_cpu) + ", peer cpu " +
         std::to_string(plan.peer_cpu);
}

// ------------------------------------------------------------------ data

// RR: sequence number (8 bytes, big-endian) then a pattern derived from it.
void fill(std::span<std::byte, kPayload> buf, std::uint64_t seq) {
  usnet::store_be32(buf.data(), static_cast<std::uint32_t>(seq >> 32));
  usnet::store_be32(buf.data() + 4, static_cast<std::uint32_t>(seq));
  for (std::size_t j = 8; j < kPayload; ++j) buf[j] = std::byte(static_cast<std::uint8_t>(seq * 31 + j * 7));
}

// Bulk: the stream's byte at offset i is pattern[i % kPeriod]; the period
// is prime, so a byte delivered at the wrong offset is caught. The buffer
// holds kPeriod + kChunk bytes: any chunk of the stream is one slice.
constexpr std::size_t kPeriod = 65'521;
const std::vector<std::byte>& pattern() {
  static const std::vector<std::byte> p = [] {
    std::vector<std::byte> v(kPeriod + kChunk);
    std::uint32_t x = 0x12345678u;
    for (std::size_t i = 0; i < kPeriod; ++i) {
      x = x * 1'664'525u + 1'013'904'223u;
      v[i] = std::byte(static_cast<std::uint8_t>(x >> 24));
    }
    for (std::size_t i = kPeriod; i < v.size(); ++i) v[i] = v[i - kPeriod];
    return v;
  }();
  return p;
}
std::span<const std::byte> pattern_at(std::uint64_t offset, std::size_t len) {
  return std::span<const std::byte>(pattern()).subspan(offset % kPeriod, std::min(len, kChunk));
}

// ------------------------------------------------------------------ peer

volatile sig_atomic_t g_peer_stop = 0;
void on_peer_term(int) { g_peer_stop = 1; }

int peer_fail(int report, const std::string& why) {
  if (report >= 0) (void)!::write(report, why.data(), why.size());
  return 3;
}

class Peer {
 public:
  // Forks; the child pins itself and exits with body(report_fd)'s result.
  // It dies with this process and stops on SIGTERM (g_peer_stop).
  Peer(const CpuPlan& plan, const std::function<int(int)>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      ::close(fds[0]);
      struct sigaction sa {};
      sa.sa_handler = on_peer_term;  // no SA_RESTART: a blocking call returns EINTR
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
  ~Peer() { stop(); }
  // Asks the peer to stop (SIGTERM), waits up to 5 s for it to close its
  // stack, then kills it. Returns everything it wrote to its report pipe.
  std::string stop() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGTERM);
      const Nanos give_up = now() + Nanos(5s);
      while (alive() && now() < give_up) std::this_thread::sleep_for(1ms);
      if (!reaped_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        reaped_ = true;
      }
    }
    if (pid_ > 0) g_peer_pid.store(-1);
    std::string out = why();
    if (report_ >= 0) ::close(report_);
    report_ = -1;
    return out;
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool started() const { return pid_ > 0; }
  bool alive() {
    if (!reaped_ && waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }
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
  std::string died() {
    const std::string w = why();
    return "the peer died" + (w.empty() ? std::string() : ": " + w);
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  int report_ = -1;
  bool reaped_ = false;
};

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

void report_rr(benchmark::State& state, std::vector<std::uint64_t>& samples, const CpuPlan& plan,
               const std::string& extra) {
  const Percentiles p = percentiles(samples);
  state.counters["p50_ns"] = p.p50;
  state.counters["p99_ns"] = p.p99;
  state.counters["p99.9_ns"] = p.p999;
  state.counters["min_ns"] = p.min;
  state.counters["mean_ns"] = p.mean;
  state.counters["max_ns"] = p.max;
  state.counters["samples"] = static_cast<double>(samples.size());
  state.counters["over_100us"] = static_cast<double>(
      samples.end() - std::upper_bound(samples.begin(), samples.end(), std::uint64_t{100'000}));
  state.counters["over_1ms"] = static_cast<double>(
      samples.end() - std::upper_bound(samples.begin(), samples.end(), std::uint64_t{1'000'000}));
  state.SetLabel(pin_label(plan) + extra);
}

// Bulk: Gbit/s over the timed transfers (manual time) and the bytes.
void report_bulk(benchmark::State& state, std::uint64_t bytes, Nanos elapsed, const CpuPlan& plan,
                 const std::string& extra) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["Gbit_s"] =
      elapsed.count() > 0 ? static_cast<double>(bytes) * 8.0 / static_cast<double>(elapsed.count()) : 0.0;
  state.counters["MiB"] = static_cast<double>(bytes) / (1 << 20);
  state.SetLabel(pin_label(plan) + extra);
}

// ------------------------------------------------------------------ commands and namespaces

// bench/veth_topology.hpp: Command, the veth topology, ScopedNetns, enter_netns.
using namespace usnet::bench;

// ------------------------------------------------------------------ usnet stack

constexpr std::size_t kBufferSize = 2048;  // a power of two: AF_XDP UMEM chunks
constexpr std::size_t kSegmentBytes = 64 * 1024;
constexpr std::uint32_t kBuffers = 8192;

enum class Workload : std::uint8_t { kRequestResponse, kBulk };

// The TCP knobs the benchmarks use: no_delay for request/response (Nagle
// would hold nothing back here, but an application that wants latency sets
// it); 4 MiB buffers for bulk so the window is never the limit on these
// paths; the MSS from the link's MTU.
// The bulk benchmarks' send and receive buffer (the benchmark's argument,
// in KiB), set before the peer is forked so both ends use it.
std::size_t g_bulk_buffer = std::size_t{4} << 20;

usnet::tcp::TcpConfig tcp_config(Workload w, std::uint32_t mtu) {
  usnet::tcp::TcpConfig c;
  c.seed = static_cast<std::uint64_t>(now().count()) * 0x9e3779b97f4a7c15ull;
  c.connection.no_delay = true;
  c.connection.mss = static_cast<std::uint16_t>(std::min<std::uint32_t>(mtu - 40, 65495));
  if (w == Workload::kBulk) {
    c.connection.send_buffer = g_bulk_buffer;
    c.connection.recv_buffer = g_bulk_buffer;
  }
  return c;
}

struct UsnetStack {
  std::optional<usnet::mem::Arena> arena;
  std::unique_ptr<usnet::mem::PacketPool> pool;
  usnet::mem::OwnerId owner;
  std::unique_ptr<usnet::link::Link> link;
  std::unique_ptr<usnet::net::Interface> iface;
  std::unique_ptr<usnet::tcp::TcpLayer> tcp;

  UsnetStack() = default;
  UsnetStack(const UsnetStack&) = delete;
  UsnetStack& operator=(const UsnetStack&) = delete;
  ~UsnetStack() {
    tcp.reset();
    iface.reset();
    link.reset();
    if (pool) (void)pool->remove_owner(owner);
  }
  // One turn of the stack: receive (the TCP layer's handler runs inside),
  // then the TCP timers when one is due.
  void pump(Nanos t) {
    iface->poll(t);
    if (t >= tcp->next_deadline()) tcp->poll_timers(t);
  }
};

// The pool and the link (the link-rate benchmark stops there).
std::string open_raw_link(UsnetStack& s, const std::string& uri) {
  // 2048 (kBufferSize), or for a memif URI with mtu=N a buffer that holds
  // its frames: what a usnet::Stack would pick.
  const std::size_t buffer_size = usnet::default_buffer_size(uri);
  // At least 16 buffers a segment (the pool has at most 4096 segments).
  const std::size_t segment_bytes = std::max(kSegmentBytes, 16 * buffer_size);
  const auto segments =
      static_cast<std::uint32_t>((std::size_t{kBuffers} * buffer_size + segment_bytes - 1) / segment_bytes);
  const std::vector<usnet::mem::RegionSpec> spec{{"buffers", std::size_t{segments} * segment_bytes}};
  auto arena = usnet::mem::Arena::create("tcp_rr_bench", spec);
  if (!arena) return "arena: " + arena.error().message();
  s.arena.emplace(std::move(*arena));
  auto pool =
      usnet::mem::PacketPool::create({buffer_size, segment_bytes, segments}, s.arena->region("buffers"));
  if (!pool) return "pool: " + pool.error().message();
  s.pool = std::make_unique<usnet::mem::PacketPool>(std::move(*pool));
  auto owner = s.pool->add_owner({64, kBuffers});
  if (!owner) return "pool owner: " + owner.error().message();
  s.owner = *owner;
  auto link = usnet::link::open_link(uri, *s.pool, s.owner);
  if (!link) return uri + ": " + link.error().message;
  s.link = std::move(*link);
  return {};
}

std::string open_stack(UsnetStack& s, const std::string& uri, usnet::wire::Ipv4Addr addr, Workload w) {
  if (auto e = open_raw_link(s, uri); !e.empty()) return e;
  usnet::net::InterfaceConfig ic;
  ic.addresses.push_back({addr, 24});
  ic.first_ident = static_cast<std::uint16_t>(now().count());
  auto iface = usnet::net::Interface::create(*s.link, *s.pool, s.owner, ic);
  if (!iface) return "interface: " + iface.error().message();
  s.iface = std::move(*iface);

  auto tcp = usnet::tcp::TcpLayer::create(*s.iface, *s.pool, s.owner, tcp_config(w, s.iface->mtu()));
  if (!tcp) return "tcp: " + tcp.error().message();
  s.tcp = std::move(*tcp);
  return {};
}

const usnet::wire::Ipv4Addr kServerAddr = *usnet::wire::Ipv4Addr::parse("198.18.0.1");
const usnet::wire::Ipv4Addr kClientAddr = *usnet::wire::Ipv4Addr::parse("198.18.0.2");

std::string conn_error(const usnet::tcp::TcpStream& st) {
  const auto& c = st.connection();
  return "connection " + std::string(usnet::tcp::to_string(c.state())) +
         (c.error() ? ": " + c.error().message() : std::string());
}

// The connection's sequence state and counters, for a run that failed.
std::string describe(const usnet::tcp::TcpStream& st) {
  const auto& c = st.connection();
  const auto& k = c.counters();
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "%s snd_una=%u snd_nxt=%u snd_wnd=%u rcv_nxt=%u readable=%zu writable=%zu rto_ms=%lld "
      "retransmits=%llu timeouts=%llu fast_retransmits=%llu dup_acks=%llu ooo_queued=%llu "
      "window_probes=%llu segments_in=%llu segments_out=%llu",
      usnet::tcp::to_string(c.state()), c.snd_una().raw(), c.snd_nxt().raw(), c.snd_wnd(), c.rcv_nxt().raw(),
      c.readable(), c.writable(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(c.rto()).count()),
      static_cast<unsigned long long>(k.retransmits), static_cast<unsigned long long>(k.timeouts),
      static_cast<unsigned long long>(k.fast_retransmits), static_cast<unsigned long long>(k.dup_acks),
      static_cast<unsigned long long>(k.ooo_queued), static_cast<unsigned long long>(k.window_probes),
      static_cast<unsigned long long>(k.segments_in), static_cast<unsigned long long>(k.segments_out));
  return buf;
}

// The stack's counters (interface, TCP, link, pool), for a run that failed.
std::string stack_report(const UsnetStack& s) {
  const auto& l = s.link->counters();
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "Link: rx_frames=%llu tx_frames=%llu rx_no_buffer=%llu rx_too_long=%llu tx_full=%llu "
                "tx_errors=%llu\nPool: %zu buffers in use by the stack\n",
                static_cast<unsigned long long>(l.rx_frames), static_cast<unsigned long long>(l.tx_frames),
                static_cast<unsigned long long>(l.rx_no_buffer),
                static_cast<unsigned long long>(l.rx_too_long), static_cast<unsigned long long>(l.tx_full),
                static_cast<unsigned long long>(l.tx_errors), s.pool->in_use(s.owner));
  return s.iface->format_counters() + s.tcp->format_counters() + buf;
}

// Peer: a usnet stack at 198.18.0.1 on `uri` listening on kPort, one
// connection at a time. Request/response: answers every 64 bytes with the
// same 64 bytes. Bulk: reads an 8-byte big-endian count, sends that many
// pattern bytes, repeats. Busy-polls until SIGTERM or kPeerLifetime.
int usnet_server(const std::string& uri, Workload w, bool own_core, int report_fd) {
  UsnetStack s;
  if (auto e = open_stack(s, uri, kServerAddr, w); !e.empty()) return peer_fail(report_fd, e);
  auto listener = s.tcp->listen({{}, kPort});
  if (!listener) return peer_fail(report_fd, "listen: " + listener.error().message());
  std::optional<usnet::tcp::TcpStream> st;
  std::array<std::byte, kPayload> req{};
  std::size_t have = 0;         // bytes of the current request read
  std::uint64_t remaining = 0;  // bulk bytes still to send
  std::uint64_t offset = 0;     // bulk stream offset
  const Nanos end = now() + kPeerLifetime;
  for (;;) {
    const Nanos t = now();
    if (g_peer_stop != 0 || t > end) {
      // The sender's side of the story, for the report (parsed by
      // usnet_bench): the layer's totals over every connection it had.
      const auto k = s.tcp->connection_totals();
      char line[256];
      const int n = std::snprintf(line, sizeof line, "counters: %llu %llu %llu %llu %llu\n",
                                  static_cast<unsigned long long>(k.retransmits),
                                  static_cast<unsigned long long>(k.timeouts),
                                  static_cast<unsigned long long>(k.fast_retransmits),
                                  static_cast<unsigned long long>(s.tcp->counters().tx_errors),
                                  static_cast<unsigned long long>(s.link->counters().tx_full));
      if (report_fd >= 0 && n > 0) (void)!::write(report_fd, line, static_cast<std::size_t>(n));
      if (st && remaining > 0) {
        std::fprintf(stderr, "tcp_rr_bench peer: stopped with %llu bytes unsent: %s\n%s",
                     static_cast<unsigned long long>(remaining), describe(*st).c_str(),
                     stack_report(s).c_str());
      }
      return 0;
    }
    s.pump(t);
    bool progress = false;
    if (!st) {
      if (auto a = listener->accept()) {
        st.emplace(std::move(*a));
        have = 0;
        remaining = 0;
        offset = 0;
      }
    } else if (w == Workload::kRequestResponse || remaining == 0) {
      const std::size_t want = w == Workload::kRequestResponse ? kPayload : 8;
      auto r = st->receive(std::span(req).first(want).subspan(have), t);
      if (!r) return peer_fail(report_fd, "receive: " + conn_error(*st));
      have += *r;
      progress = *r > 0;
      if (have == want) {
        have = 0;
        if (w == Workload::kRequestResponse) {
          auto sent = st->send(req, t);
          if (!sent || *sent != kPayload) return peer_fail(report_fd, "send: " + conn_error(*st));
        } else {
          remaining = (std::uint64_t{usnet::load_be32(req.data())} << 32) | usnet::load_be32(req.data() + 4);
        }
      } else if (*r == 0 && st->connection().eof()) {
        st->close(t);  // the client is done: FIN back, TIME-WAIT on the client's side
        st.reset();
      }
    } else {
      auto sent = st->send(
          pattern_at(offset, static_cast<std::size_t>(std::min<std::uint64_t>(remaining, kChunk))), t);
      if (!sent) return peer_fail(report_fd, "send: " + conn_error(*st));
      offset += *sent;
      remaining -= *sent;
      progress = *sent > 0;
    }
    if (!progress && !own_core) sched_yield();
  }
}

// The client side: a stack at 198.18.0.2 with one connection to the peer.
class UsnetClient {
 public:
  UsnetClient(Peer& peer, bool own_core) : peer_(peer), own_core_(own_core) {}

  // Opens the stack and connects, retrying (the peer may not be listening
  // yet, the memif handshake and ARP take a while) until kConnectDeadline.
  std::string open(const std::string& uri, Workload w) {
    if (auto e = open_stack(s_, uri, kClientAddr, w); !e.empty()) return e;
    const Nanos give_up = now() + kConnectDeadline;
    while (now() < give_up) {
      auto c = s_.tcp->connect({kServerAddr, kPort}, now());
      if (!c) return "connect: " + c.error().message();
      st_.emplace(std::move(*c));
      for (std::uint64_t spins = 0;; ++spins) {
        const Nanos t = now();
        s_.pump(t);
        const auto state = st_->connection().state();
        if (state == usnet::tcp::State::kEstablished) return {};
        if (state == usnet::tcp::State::kClosed || t > give_up) break;
        if ((spins & 0xffffu) == 0 && !peer_.alive()) return peer_.died();
        if (!own_core_) sched_yield();
      }
      st_->abort(now());
      st_.reset();
      // Refused (the peer was not listening yet): try again a little later.
      const Nanos again = now() + Nanos(20ms);
      while (now() < again) s_.pump(now());
    }
    std::string e = "no connection within the deadline";
    if (const auto* m = dynamic_cast<const usnet::link::MemifLink*>(s_.link.get())) {
      e += std::string(" (memif connected: ") + (m->connected() ? "yes" : "no") + ")";
    }
    if (const std::string why = peer_.why(); !why.empty()) e += "; the peer said: " + why;
    return e;
  }

  std::string write_all(std::span<const std::byte> data, Nanos deadline) {
    for (std::uint64_t spins = 0;; ++spins) {
      const Nanos t = now();
      auto r = st_->send(data, t);
      if (!r) return "send: " + conn_error(*st_);
      data = data.subspan(*r);
      if (data.empty()) return {};
      s_.pump(t);
      if (t > deadline) return "send: no room within the deadline";
      if ((spins & 0xffffu) == 0 && !peer_.alive()) return peer_.died();
    }
  }

  // Reads exactly out.size() bytes.
  std::string read_exact(std::span<std::byte> out, Nanos deadline) {
    std::size_t got = 0;
    for (std::uint64_t spins = 0;; ++spins) {
      const Nanos t = now();
      s_.pump(t);
      auto r = st_->receive(out.subspan(got), t);
      if (!r) return "receive: " + conn_error(*st_);
      got += *r;
      if (got == out.size()) return {};
      if (*r == 0 && st_->connection().eof()) return "the peer closed the connection";
      if (t > deadline) return "no answer within the deadline";
      if ((spins & 0xffffu) == 0 && !peer_.alive()) return peer_.died();
      if (*r == 0 && !own_core_) sched_yield();
    }
  }

  // Receives `bytes` of the pattern from stream offset `offset`, checking
  // every byte.
  std::string read_pattern(std::uint64_t offset, std::uint64_t bytes, Nanos deadline) {
    buf_.resize(kChunk);
    for (std::uint64_t spins = 0; bytes > 0; ++spins) {
      const Nanos t = now();
      s_.pump(t);
      auto r = st_->receive(
          std::span(buf_).first(static_cast<std::size_t>(std::min<std::uint64_t>(bytes, kChunk))), t);
      if (!r) return "receive: " + conn_error(*st_);
      if (*r > 0) {
        if (std::memcmp(buf_.data(), pattern_at(offset, *r).data(), *r) != 0)
          return "wrong bytes at stream offset " + std::to_string(offset);
        offset += *r;
        bytes -= *r;
        continue;
      }
      if (st_->connection().eof()) return "the peer closed the connection";
      if (t > deadline) {
        std::fprintf(stderr, "tcp_rr_bench client: bulk transfer stalled:\n%s", stack_report(s_).c_str());
        return "bulk transfer not done within the deadline, " + std::to_string(bytes) +
               " bytes missing; this side: " + describe(*st_);
      }
      if ((spins & 0xffffu) == 0 && !peer_.alive()) return peer_.died();
      if (!own_core_) sched_yield();
    }
    return {};
  }

  // The connection's and the link's counters, for the report.
  void counters(benchmark::State& state) const {
    const auto& c = st_->connection().counters();
    state.counters["retransmits"] = static_cast<double>(c.retransmits);
    state.counters["rto_timeouts"] = static_cast<double>(c.timeouts);
    state.counters["segments_in"] = static_cast<double>(c.segments_in);
    state.counters["segments_out"] = static_cast<double>(c.segments_out);
    state.counters["link_tx_errors"] = static_cast<double>(s_.link->counters().tx_errors);
  }
  std::string link_label() const {
    if (const auto* x = dynamic_cast<const usnet::link::AfXdpLink*>(s_.link.get())) {
      return std::string("; af_xdp ") + (x->zero_copy() ? "zero-copy" : "copy mode") + ", xdp " +
             x->xdp_mode();
    }
    return {};
  }
  // Closes the connection and lets the FIN exchange run for a moment (the
  // peer sees the end of the stream).
  void close() {
    if (!st_) return;
    st_->close(now());
    const Nanos until = now() + Nanos(50ms);
    while (now() < until) s_.pump(now());
    st_.reset();
  }

 private:
  Peer& peer_;
  bool own_core_;
  UsnetStack s_;
  std::optional<usnet::tcp::TcpStream> st_;
  std::vector<std::byte> buf_;
};

// One round trip: 64 bytes out, the same 64 back. "" or why not.
template <typename Client>
std::string round_trip(Client& c, std::uint64_t seq) {
  std::array<std::byte, kPayload> out{};
  std::array<std::byte, kPayload> in{};
  fill(out, seq);
  const Nanos deadline = now() + kRoundTripDeadline;
  if (auto e = c.write_all(out, deadline); !e.empty()) return e;
  if (auto e = c.read_exact(in, deadline); !e.empty()) return e;
  if (in != out) return "the answer differs from the request";
  return {};
}

// Warm-up then kTimedRoundTrips timed round trips (the benchmark's
// iterations), for any client with write_all/read_exact.
template <typename Client>
void run_rr(benchmark::State& state, Client& c, std::vector<std::uint64_t>& samples) {
  std::string error;
  for (int i = 0; i < kWarmupRoundTrips && error.empty(); ++i) {
    error = round_trip(c, kWarmupBit | static_cast<std::uint64_t>(i));
    if (!error.empty()) error = "warm-up: " + error;
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::uint64_t seq = 0;
  for (auto _ : state) {
    const Nanos start = now();
    error = round_trip(c, seq);
    const Nanos end = now();
    if (!error.empty()) {
      error = "round trip " + std::to_string(seq) + ": " + error;
      state.SkipWithError(error.c_str());
      break;
    }
    samples.push_back(static_cast<std::uint64_t>((end - start).count()));
    ++seq;
  }
}

// Bulk: one untimed transfer, then one timed transfer per iteration (manual
// time). Returns the timed bytes and time.
template <typename Client>
std::pair<std::uint64_t, Nanos> run_bulk(benchmark::State& state, Client& c) {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
  Nanos elapsed{0};
  auto transfer = [&](std::uint64_t n) -> std::string {
    std::array<std::byte, 8> req{};
    usnet::store_be32(req.data(), static_cast<std::uint32_t>(n >> 32));
    usnet::store_be32(req.data() + 4, static_cast<std::uint32_t>(n));
    const Nanos deadline = now() + kBulkDeadline;
    if (auto e = c.write_all(req, deadline); !e.empty()) return e;
    auto e = c.read_pattern(offset, n, deadline);
    offset += n;
    return e;
  };
  if (auto e = transfer(kBulkWarmupBytes); !e.empty()) {
    state.SkipWithError(("warm-up: " + e).c_str());
    return {0, Nanos{0}};
  }
  for (auto _ : state) {
    const Nanos start = now();
    const std::string e = transfer(kBulkBytes);
    const Nanos took = now() - start;
    if (!e.empty()) {
      state.SkipWithError(e.c_str());
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(took).count());
    bytes += kBulkBytes;
    elapsed += took;
  }
  return {bytes, elapsed};
}

// A usnet benchmark: the peer (server) on `peer_uri`, entering `peer_ns`
// first if set; this process's stack on `uri`, in `ns` if set.
void usnet_bench(benchmark::State& state, Workload w, const std::string& peer_uri, const std::string& uri,
                 const std::string& peer_ns, const std::string& ns) {
  const CpuPlan plan = plan_cpus();
  std::vector<std::uint64_t> samples;
  samples.reserve(kTimedRoundTrips);
  std::string label = "; both sides busy-poll";
  std::pair<std::uint64_t, Nanos> bulk{0, Nanos{0}};
  {
    Peer peer(plan, [&](int report_fd) {
      if (!peer_ns.empty()) {
        if (auto e = enter_netns(peer_ns); !e.empty()) return peer_fail(report_fd, e);
      }
      return usnet_server(peer_uri, w, plan.pinned, report_fd);
    });
    if (!peer.started()) {
      state.SkipWithError("fork failed");
      return;
    }
    std::optional<ScopedNetns> in_ns;
    if (!ns.empty()) {
      in_ns.emplace(ns);
      if (!in_ns->error().empty()) {
        state.SkipWithError(in_ns->error().c_str());
        return;
      }
    }
    ScopedPin pin(plan);
    UsnetClient client(peer, plan.pinned);
    if (auto e = client.open(uri, w); !e.empty()) {
      state.SkipWithError(e.c_str());
      return;
    }
    if (w == Workload::kRequestResponse) {
      run_rr(state, client, samples);
    } else {
      bulk = run_bulk(state, client);
    }
    client.counters(state);
    label += client.link_label();
    client.close();
    // The peer's counters (for bulk, the sender's): retransmissions,
    // timeouts, fast retransmits, segments its interface refused, frames
    // its link could not take (a full ring).
    const std::string said = peer.stop();
    unsigned long long v[5] = {};
    if (const auto at = said.find("counters: ");
        at != std::string::npos && std::sscanf(said.c_str() + at, "counters: %llu %llu %llu %llu %llu", &v[0],
                                               &v[1], &v[2], &v[3], &v[4]) == 5) {
      state.counters["peer_retransmits"] = static_cast<double>(v[0]);
      state.counters["peer_rto_timeouts"] = static_cast<double>(v[1]);
      state.counters["peer_fast_retransmits"] = static_cast<double>(v[2]);
      state.counters["peer_tx_refused"] = static_cast<double>(v[3]);
      state.counters["peer_link_tx_full"] = static_cast<double>(v[4]);
    }
  }
  if (w == Workload::kRequestResponse) {
    report_rr(state, samples, plan, label);
  } else {
    report_bulk(state, bulk.first, bulk.second, plan, label);
  }
}

void usnet_memif(benchmark::State& state, Workload w, std::uint32_t mtu = 1500) {
  const std::string path = "/tmp/usnet-tcp-rr-" + std::to_string(getpid()) + ".sock";
  const std::string m = "&mtu=" + std::to_string(mtu);
  ::unlink(path.c_str());
  usnet_bench(state, w, "memif:" + path + "?role=server" + m, "memif:" + path + "?role=client" + m, {}, {});
  ::unlink(path.c_str());
}

void usnet_veth(benchmark::State& state, Workload w) {
  std::string error;
  const VethTopology* t = topology("uxt", error);
  if (t == nullptr) {
    state.SkipWithError(("veth benchmark not run: " + error).c_str());
    return;
  }
  usnet_bench(state, w, "af_xdp:" + t->if_a, "af_xdp:" + t->if_b, t->ns_a, t->ns_b);
  // The peer took its XDP program off when it closed its link; should it
  // have been killed, take it off here so the kernel runs see a bare veth.
  const std::string ip = find_ip();
  (void)Command({ip, "-n", t->ns_a, "link", "set", "dev", t->if_a, "xdp", "off"}).run();
  (void)Command({ip, "-n", t->ns_b, "link", "set", "dev", t->if_b, "xdp", "off"}).run();
}

// ------------------------------------------------------------------ kernel

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
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

// The kernel peer: on the connected socket it inherited, answers 64-byte
// requests, or bulk requests (an 8-byte count) with pattern bytes.
// Blocking (1 s receive timeout, so the lifetime is checked) or spinning on
// MSG_DONTWAIT.
int kernel_server(int fd, Workload w, bool busy_poll, bool own_core) {
  std::array<std::byte, kPayload> req{};
  std::size_t have = 0;
  std::uint64_t offset = 0;
  const timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const std::size_t want = w == Workload::kRequestResponse ? kPayload : 8;
  const Nanos end = now() + kPeerLifetime;
  for (std::uint64_t spins = 0;;) {
    if (g_peer_stop != 0) return 0;
    const ssize_t n = ::recv(fd, req.data() + have, want - have, busy_poll ? MSG_DONTWAIT : 0);
    if (n == 0) return 0;  // the client closed
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if ((!busy_poll || (++spins & 0xffffu) == 0) && now() > end) return 0;
        if (busy_poll && !own_core) sched_yield();
        continue;
      }
      return 3;
    }
    have += static_cast<std::size_t>(n);
    if (have < want) continue;
    have = 0;
    if (w == Workload::kRequestResponse) {
      if (::send(fd, req.data(), kPayload, MSG_NOSIGNAL) != static_cast<ssize_t>(kPayload)) return 3;
      continue;
    }
    std::uint64_t remaining =
        (std::uint64_t{usnet::load_be32(req.data())} << 32) | usnet::load_be32(req.data() + 4);
    while (remaining > 0) {
      if (g_peer_stop != 0) return 0;
      const auto chunk =
          pattern_at(offset, static_cast<std::size_t>(std::min<std::uint64_t>(remaining, kChunk)));
      const ssize_t s = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (s < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (s <= 0) return 3;
      offset += static_cast<std::uint64_t>(s);
      remaining -= static_cast<std::uint64_t>(s);
    }
  }
}

// The client's side of a kernel benchmark.
class KernelClient {
 public:
  KernelClient(int fd, Peer& peer, bool busy_poll, bool own_core)
      : fd_(fd), peer_(peer), busy_poll_(busy_poll), own_core_(own_core) {}

  std::string write_all(std::span<const std::byte> data, Nanos deadline) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN && now() < deadline) continue;
      if (n <= 0) return std::string("send: ") + std::strerror(errno);
      data = data.subspan(static_cast<std::size_t>(n));
    }
    return {};
  }
  std::string read_exact(std::span<std::byte> out, Nanos deadline) {
    std::size_t got = 0;
    for (std::uint64_t spins = 0; got < out.size();) {
      const ssize_t n = ::recv(fd_, out.data() + got, out.size() - got, busy_poll_ ? MSG_DONTWAIT : 0);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
        continue;
      }
      if (n == 0) return "the peer closed the connection";
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return std::string("recv: ") + std::strerror(errno);
      if (now() > deadline) return "no answer within the deadline";
      if ((++spins & 0xffffu) == 0 && !peer_.alive()) return peer_.died();
      if (busy_poll_ && !own_core_) sched_yield();
    }
    return {};
  }
  std::string read_pattern(std::uint64_t offset, std::uint64_t bytes, Nanos deadline) {
    buf_.resize(kChunk);
    while (bytes > 0) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, kChunk));
      const ssize_t n = ::recv(fd_, buf_.data(), want, 0);
      if (n > 0) {
        const auto got = static_cast<std::size_t>(n);
        if (std::memcmp(buf_.data(), pattern_at(offset, got).data(), got) != 0)
          return "wrong bytes at stream offset " + std::to_string(offset);
        offset += got;
        bytes -= got;
        continue;
      }
      if (n == 0) return "the peer closed the connection";
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return std::string("recv: ") + std::strerror(errno);
      if (now() > deadline) return "bulk transfer not done within the deadline";
      if (!peer_.alive()) return peer_.died();
    }
    return {};
  }

 private:
  int fd_;
  Peer& peer_;
  bool busy_poll_;
  bool own_core_;
  std::vector<std::byte> buf_;
};

struct KernelPath {
  std::uint32_t server_addr;  // host order
  std::string server_ns;      // empty: this process's namespace
  std::string client_ns;
};

int tcp_socket_in(const std::string& ns, std::string& error) {
  std::optional<ScopedNetns> in;
  if (!ns.empty()) {
    in.emplace(ns);
    if (!in->error().empty()) {
      error = in->error();
      return -1;
    }
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) error = std::string("socket: ") + std::strerror(errno);
  return fd;
}

void kernel_bench(benchmark::State& state, Workload w, bool busy_poll, const KernelPath& path) {
  const CpuPlan plan = plan_cpus();
  std::vector<std::uint64_t> samples;
  samples.reserve(kTimedRoundTrips);

  // The listening socket and the client are made here; the connection is
  // accepted here too, and the accepted socket is inherited by the peer
  // (this process closes its copy).
  std::string error;
  Fd listener(tcp_socket_in(path.server_ns, error));
  Fd client(error.empty() ? tcp_socket_in(path.client_ns, error) : -1);
  if (!error.empty()) {
    state.SkipWithError(("kernel socket setup failed: " + error).c_str());
    return;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(path.server_addr);
  socklen_t alen = sizeof addr;
  const timeval tv{5, 0};
  ::setsockopt(listener.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);  // accept's deadline
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);    // connect's deadline
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &alen) != 0 ||
      ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    state.SkipWithError((std::string("kernel socket setup failed: ") + std::strerror(errno)).c_str());
    return;
  }
  Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  listener.reset();
  if (server.get() < 0) {
    state.SkipWithError((std::string("accept: ") + std::strerror(errno)).c_str());
    return;
  }
  const int one = 1;
  ::setsockopt(server.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const timeval rtv{1, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof rtv);

  const int sfd = server.get();
  std::string label;
  {
    Peer peer(plan,
              [sfd, w, busy_poll, &plan](int) { return kernel_server(sfd, w, busy_poll, plan.pinned); });
    server.reset();
    if (!peer.started()) {
      state.SkipWithError("fork failed");
      return;
    }
    ScopedPin pin(plan);
    KernelClient c(client.get(), peer, busy_poll, plan.pinned);
    if (w == Workload::kRequestResponse) {
      run_rr(state, c, samples);
      label = busy_poll ? "; both sides spin on MSG_DONTWAIT recv" : "; both sides block in recv";
    } else {
      const auto bulk = run_bulk(state, c);
      report_bulk(state, bulk.first, bulk.second, plan, "; blocking send/recv");
    }
    ::shutdown(client.get(), SHUT_WR);  // the peer sees the end and exits
  }
  if (w == Workload::kRequestResponse) report_rr(state, samples, plan, label);
}

const KernelPath kLoopback{INADDR_LOOPBACK, {}, {}};

// `no_offloads`: transmit checksum offload, TSO, GSO and GRO switched off on
// both veth ends first, so the kernel moves 1500-byte frames with checksums
// computed in software, as usnet does (with them on, the kernel sends
// 64 KiB segments across the veth and computes no checksum at all). The
// benchmark that asks for it runs last: the veth keeps those settings until
// it is deleted at exit.
void kernel_veth(benchmark::State& state, Workload w, bool busy_poll, bool no_offloads = false) {
  std::string error;
  const VethTopology* t = topology("uxt", error);
  if (t == nullptr) {
    state.SkipWithError(("veth benchmark not run: " + error).c_str());
    return;
  }
  if (no_offloads) {
    const std::string ip = find_ip();
    for (const auto& [ns, dev] : {std::pair{t->ns_a, t->if_a}, std::pair{t->ns_b, t->if_b}}) {
      const Command c({ip, "netns", "exec", ns, "/usr/sbin/ethtool", "-K", dev, "tx", "off", "tso", "off",
                       "gso", "off", "gro", "off"});
      if (const int status = c.run(); status != 0) {
        state.SkipWithError(("'" + c.text() + "' failed (status " + std::to_string(status) + ")").c_str());
        return;
      }
    }
  }
  kernel_bench(state, w, busy_poll, KernelPath{0xc6120101u /* 198.18.1.1 */, t->ns_a, t->ns_b});
}

// ------------------------------------------------------------------ benchmarks

constexpr auto kRR = Workload::kRequestResponse;
constexpr auto kBulk = Workload::kBulk;

void BM_TcpRR64_UsnetMemif(benchmark::State& s) { usnet_memif(s, kRR); }
void BM_TcpRR64_KernelLoopback(benchmark::State& s) { kernel_bench(s, kRR, false, kLoopback); }
void BM_TcpRR64_KernelLoopbackBusyPoll(benchmark::State& s) { kernel_bench(s, kRR, true, kLoopback); }
void BM_TcpRR64_UsnetAfXdpVeth(benchmark::State& s) { usnet_veth(s, kRR); }
void BM_TcpRR64_KernelVeth(benchmark::State& s) { kernel_veth(s, kRR, false); }
void BM_TcpRR64_KernelVethBusyPoll(benchmark::State& s) { kernel_veth(s, kRR, true); }
void BM_TcpBulk_UsnetMemif(benchmark::State& s) {
  g_bulk_buffer = static_cast<std::size_t>(s.range(0)) << 10;
  usnet_memif(s, kBulk, static_cast<std::uint32_t>(s.range(1)));
}
void BM_TcpBulk_KernelLoopback(benchmark::State& s) { kernel_bench(s, kBulk, false, kLoopback); }
void BM_TcpBulk_UsnetAfXdpVeth(benchmark::State& s) {
  g_bulk_buffer = static_cast<std::size_t>(s.range(0)) << 10;
  usnet_veth(s, kBulk);
}
void BM_TcpBulk_KernelVeth(benchmark::State& s) { kernel_veth(s, kBulk, false); }
void BM_TcpBulk_KernelVethNoOffloads(benchmark::State& s) { kernel_veth(s, kBulk, false, true); }

// ------------------------------------------------------------ link ceiling

// The most full-sized frames copy-mode AF_XDP carries across this veth a
// second, with no stack above it: one end sends 1,514-byte frames as fast
// as its link takes them for kLinkRateSeconds, the other receives and frees
// them and reports how many arrived between its first and last frame. The
// rate times 1,448 bytes of TCP payload a frame bounds bulk TCP over the
// same link, whatever the stack does.
constexpr auto kLinkRateSeconds = 3s;

int link_rate_receiver(const std::string& uri, int report_fd) {
  UsnetStack s;
  if (auto e = open_raw_link(s, uri); !e.empty()) return peer_fail(report_fd, e);
  // With steer=all, every frame to this address comes to the socket.
  if (auto ec = s.link->steer({usnet::link::SteerRule::Kind::kIpv4Address, kServerAddr, 0}, true)) {
    return peer_fail(report_fd, "steer: " + ec.message());
  }
  std::array<usnet::link::Frame, 64> frames{};
  std::array<usnet::mem::BufIndex, 64> bufs{};
  std::uint64_t count = 0;
  std::uint64_t bytes = 0;
  Nanos first{0}, last{0};
  const Nanos end = now() + kLinkRateSeconds + 10s;
  while (g_peer_stop == 0 && now() < end) {
    const Nanos t = now();
    const std::size_t n = s.link->rx_burst(frames, t);
    if (n == 0) continue;
    if (count == 0) first = t;
    last = t;
    count += n;
    for (std::size_t i = 0; i < n; ++i) {
      bytes += frames[i].length;
      bufs[i] = frames[i].buffer;
    }
    (void)s.pool->free_batch(s.owner, std::span(bufs).first(n));
  }
  const std::string r = "received " + std::to_string(count) + " " + std::to_string(bytes) + " " +
                        std::to_string((last - first).count()) + "\n";
  (void)!::write(report_fd, r.data(), r.size());
  return 0;
}

void BM_LinkRate_AfXdpVeth(benchmark::State& state) {
  std::string error;
  const VethTopology* t = topology("uxt", error);
  if (t == nullptr) {
    state.SkipWithError(("veth benchmark not run: " + error).c_str());
    return;
  }
  const CpuPlan plan = plan_cpus();
  for (auto _ : state) {
    Peer peer(plan, [&](int report_fd) {
      if (auto e = enter_netns(t->ns_a); !e.empty()) return peer_fail(report_fd, e);
      return link_rate_receiver("af_xdp:" + t->if_a + "?steer=all", report_fd);
    });
    if (!peer.started()) {
      state.SkipWithError("fork failed");
      return;
    }
    ScopedNetns in_ns(t->ns_b);
    if (!in_ns.error().empty()) {
      state.SkipWithError(in_ns.error().c_str());
      return;
    }
    ScopedPin pin(plan);
    UsnetStack s;
    if (auto e = open_raw_link(s, "af_xdp:" + t->if_b + "?steer=all"); !e.empty()) {
      state.SkipWithError(e.c_str());
      return;
    }
    std::this_thread::sleep_for(500ms);  // the receiver's link up
    constexpr std::size_t kFrameLen = 1514;
    // One template: Ethernet (broadcast), IPv4 to the receiver's address, UDP.
    std::array<std::byte, 42> head{};
    {
      std::memset(head.data(), 0xff, 6);
      std::memset(head.data() + 6, 0x02, 6);
      head[12] = std::byte{0x08};
      usnet::wire::Ipv4Repr ip;
      ip.src = kClientAddr;
      ip.dst = kServerAddr;
      ip.protocol = 17;
      ip.ttl = 64;
      ip.payload_len = kFrameLen - 34;
      (void)ip.emit(std::span(head).subspan(14), usnet::wire::ChecksumMode::Verify);
      usnet::store_be16(head.data() + 34, 9);  // source port
      usnet::store_be16(head.data() + 36, 9);  // destination port (discard)
      usnet::store_be16(head.data() + 38, kFrameLen - 34);
    }
    std::array<usnet::link::Frame, 32> burst{};
    std::array<usnet::mem::BufIndex, 32> spare{};
    std::size_t ready = 0;  // frames in `burst` not yet taken
    std::uint64_t sent = 0;
    const Nanos start = now();
    const Nanos end = start + kLinkRateSeconds;
    while (now() < end) {
      while (ready < burst.size()) {
        auto b = s.pool->alloc(s.owner);
        if (!b) break;
        std::memcpy(s.pool->buffer(*b).data(), head.data(), head.size());
        burst[ready++] = {*b, kFrameLen, 0, 0};
      }
      std::array<usnet::link::Frame, 1> none{};
      const std::size_t took = s.link->tx_burst(std::span(burst).first(ready), now());
      sent += took;
      std::copy(burst.begin() + static_cast<std::ptrdiff_t>(took),
                burst.begin() + static_cast<std::ptrdiff_t>(ready), burst.begin());
      ready -= took;
      // Reap completions (and flush what the link holds back).
      const std::size_t got = s.link->rx_burst(std::span(none).first(0), now());
      (void)got;
    }
    (void)s.link->tx_burst({}, now());
    for (std::size_t i = 0; i < ready; ++i) spare[i] = burst[i].buffer;
    (void)s.pool->free_batch(s.owner, std::span(spare).first(ready));
    const Nanos sending = now() - start;
    std::this_thread::sleep_for(200ms);
    const std::string said = peer.stop();
    unsigned long long count = 0, bytes = 0, ns = 0;
    const auto at = said.find("received ");
    if (at == std::string::npos ||
        std::sscanf(said.c_str() + at, "received %llu %llu %llu", &count, &bytes, &ns) != 3 || ns == 0) {
      state.SkipWithError(("the receiver did not report: " + said).c_str());
      return;
    }
    state.SetIterationTime(std::chrono::duration<double>(Nanos(ns)).count());
    state.counters["frames_sent"] = static_cast<double>(sent);
    state.counters["frames_received"] = static_cast<double>(count);
    state.counters["sent_per_s"] = static_cast<double>(sent) / std::chrono::duration<double>(sending).count();
    state.counters["received_per_s"] = static_cast<double>(count) / (static_cast<double>(ns) / 1e9);
    state.counters["tcp_payload_Gbit_s"] = static_cast<double>(count) * 1448 * 8 / static_cast<double>(ns);
  }
  state.SetLabel("raw 1514-byte frames, copy mode, one sender; tcp_payload: 1448 bytes a frame");
  const std::string ip = find_ip();
  (void)Command({ip, "-n", t->ns_a, "link", "set", "dev", t->if_a, "xdp", "off"}).run();
  (void)Command({ip, "-n", t->ns_b, "link", "set", "dev", t->if_b, "xdp", "off"}).run();
}
BENCHMARK(BM_LinkRate_AfXdpVeth)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

#define RR_BENCH(f) BENCHMARK(f)->Iterations(kTimedRoundTrips)->UseRealTime()->Unit(benchmark::kMillisecond)
#define BULK_BENCH(f) BENCHMARK(f)->Iterations(kBulkTransfers)->UseManualTime()->Unit(benchmark::kMillisecond)
RR_BENCH(BM_TcpRR64_UsnetMemif);
RR_BENCH(BM_TcpRR64_KernelLoopback);
RR_BENCH(BM_TcpRR64_KernelLoopbackBusyPoll);
RR_BENCH(BM_TcpRR64_UsnetAfXdpVeth);
RR_BENCH(BM_TcpRR64_KernelVeth);
RR_BENCH(BM_TcpRR64_KernelVethBusyPoll);
// usnet's buffers: 4 MiB, and 1 MiB and 512 KiB, whose windows (at most
// 724 and 362 full segments) fit the memif ring (1024 slots) and the AF_XDP
// rings (2048), so the sender cannot overrun them.
// Over memif also with jumbo frames (MTU 9000) and with frames as large as
// a memif buffer takes (MTU 65517; kernel loopback's MTU is 65536).
BULK_BENCH(BM_TcpBulk_UsnetMemif)
    ->ArgNames({"buffer_kib", "mtu"})
    ->Args({4096, 1500})
    ->Args({1024, 1500})
    ->Args({512, 1500})
    ->Args({4096, 9000})
    ->Args({4096, 65517});
BULK_BENCH(BM_TcpBulk_KernelLoopback);
BULK_BENCH(BM_TcpBulk_UsnetAfXdpVeth)->ArgName("buffer_kib")->Arg(4096)->Arg(1024)->Arg(512);
BULK_BENCH(BM_TcpBulk_KernelVeth);
BULK_BENCH(BM_TcpBulk_KernelVethNoOffloads);  // the last veth one: it changes the offloads

// ------------------------------------------------------------------ in memory (callgrind)

// Two stacks in this process over MemoryLinks joined back to back, one pool
// (two owners), a fake clock that moves 1 us per turn: deterministic, so
// callgrind's instruction counts repeat exactly. The links carry no
// checksum offload (the checksums are computed and verified in software,
// as over memif).
struct MemoryPair {
  static constexpr std::uint32_t kPairBuffers = 8192;
  std::optional<usnet::mem::Arena> arena;
  std::unique_ptr<usnet::mem::PacketPool> pool;
  usnet::mem::OwnerId oa, ob;
  std::unique_ptr<usnet::link::MemoryLink> la, lb;
  std::unique_ptr<usnet::net::Interface> ia, ib;
  std::unique_ptr<usnet::tcp::TcpLayer> ta, tb;  // a: client 198.18.0.2, b: server 198.18.0.1
  Nanos t{std::chrono::seconds(1000)};
  std::string error;

  explicit MemoryPair(Workload w, std::size_t queue_limit = 2048) {
    constexpr std::uint32_t segments = static_cast<std::uint32_t>(
        (std::size_t{kPairBuffers} * kBufferSize + kSegmentBytes - 1) / kSegmentBytes);
    const std::vector<usnet::mem::RegionSpec> spec{{"buffers", std::size_t{segments} * kSegmentBytes}};
    auto ar = usnet::mem::Arena::create("tcp_mem_bench", spec);
    if (!ar) {
      error = "arena";
      return;
    }
    arena.emplace(std::move(*ar));
    auto p = usnet::mem::PacketPool::create({kBufferSize, kSegmentBytes, segments}, arena->region("buffers"));
    if (!p) {
      error = "pool";
      return;
    }
    pool = std::make_unique<usnet::mem::PacketPool>(std::move(*p));
    oa = *pool->add_owner({64, kPairBuffers / 2});
    ob = *pool->add_owner({64, kPairBuffers / 2});
    auto info = [](std::uint8_t last) {
      usnet::link::LinkInfo i;
      i.name = "mem:" + std::to_string(last);
      i.mac = usnet::wire::MacAddr{{0x02, 0, 0, 0, 0, last}};
      i.mtu = 1500;
      return i;
    };
    la = std::make_unique<usnet::link::MemoryLink>(*pool, oa, info(2), queue_limit);
    lb = std::make_unique<usnet::link::MemoryLink>(*pool, ob, info(1), queue_limit);
    usnet::link::MemoryLink::connect(*la, *lb);
    auto make_iface = [&](usnet::link::MemoryLink& l, usnet::mem::OwnerId o, usnet::wire::Ipv4Addr addr) {
      usnet::net::InterfaceConfig ic;
      ic.addresses.push_back({addr, 24});
      return std::move(*usnet::net::Interface::create(l, *pool, o, ic));
    };
    ia = make_iface(*la, oa, kClientAddr);
    ib = make_iface(*lb, ob, kServerAddr);
    auto ca = tcp_config(w, 1500);
    auto cb = ca;
    ca.seed = 1;
    cb.seed = 2;
    ta = std::move(*usnet::tcp::TcpLayer::create(*ia, *pool, oa, ca));
    tb = std::move(*usnet::tcp::TcpLayer::create(*ib, *pool, ob, cb));
  }
  ~MemoryPair() {
    ta.reset();
    tb.reset();
    ia.reset();
    ib.reset();
    la.reset();
    lb.reset();
    if (pool) {
      (void)pool->remove_owner(oa);
      (void)pool->remove_owner(ob);
    }
  }
  MemoryPair(const MemoryPair&) = delete;
  MemoryPair& operator=(const MemoryPair&) = delete;

  // a (the client, the bulk receiver) runs one turn in `a_every`: a slow
  // receiver, whose link queue overflows when the sender outruns it.
  std::uint32_t a_every = 1;
  std::uint64_t turn = 0;

  void step() {
    t += Nanos(1us);
    if (++turn % a_every == 0) {
      ia->poll(t);
      if (t >= ta->next_deadline()) ta->poll_timers(t);
    }
    ib->poll(t);
    if (t >= tb->next_deadline()) tb->poll_timers(t);
  }

  // Connects a to b; the two streams, or error set.
  std::pair<std::optional<usnet::tcp::TcpStream>, std::optional<usnet::tcp::TcpStream>> connect() {
    auto l = tb->listen({{}, kPort});
    auto c = ta->connect({kServerAddr, kPort}, t);
    if (!l || !c) {
      error = "listen/connect";
      return {};
    }
    std::optional<usnet::tcp::TcpStream> server;
    for (int i = 0; i < 1000 && !server; ++i) {
      step();
      if (auto a = l->accept()) server.emplace(std::move(*a));
    }
    if (!server) error = "no connection";
    return {std::move(*c), std::move(server)};
  }

  void counters(benchmark::State& state, std::uint64_t base_segments) const {
    const std::uint64_t segs = ta->counters().tx_segments + tb->counters().tx_segments - base_segments;
    state.counters["segments"] = static_cast<double>(segs);
    state.counters["segments_per_iter"] =
        benchmark::Counter(static_cast<double>(segs), benchmark::Counter::kAvgIterations);
    const auto a = ta->connection_totals();
    const auto b = tb->connection_totals();
    state.counters["retransmits"] = static_cast<double>(a.retransmits + b.retransmits);
  }
  std::uint64_t segments() const { return ta->counters().tx_segments + tb->counters().tx_segments; }
};

// Bytes moved, 0 on an error (the loops that use it check the outcome).
std::size_t or0(const usnet::Expected<std::size_t, std::error_code>& r) { return r ? *r : 0; }

// 64-byte request/response between the two stacks: one iteration is one
// round trip (the client's request and the server's answer, ACKs riding on
// them).
void BM_TcpInMemoryRR64(benchmark::State& state) {
  MemoryPair m(kRR);
  auto streams = m.connect();  // not a structured binding: clang 14 cannot capture those
  auto& client = streams.first;
  auto& server = streams.second;
  if (!m.error.empty() || !client || !server) {
    state.SkipWithError(("in-memory pair: " + m.error).c_str());
    return;
  }
  std::array<std::byte, kPayload> out{};
  std::array<std::byte, kPayload> in{};
  std::uint64_t seq = 0;
  auto one = [&]() -> bool {
    fill(out, seq++);
    if (!client->send(out, m.t)) return false;
    std::size_t have = 0;
    for (int i = 0; i < 100 && have < kPayload; ++i) {
      m.step();
      have += or0(server->receive(std::span(in).subspan(have), m.t));
    }
    if (have != kPayload || !server->send(in, m.t)) return false;
    have = 0;
    for (int i = 0; i < 100 && have < kPayload; ++i) {
      m.step();
      have += or0(client->receive(std::span(in).subspan(have), m.t));
    }
    return have == kPayload && in == out;
  };
  for (int i = 0; i < 1000; ++i) (void)one();  // warm-up
  const std::uint64_t base = m.segments();
  USNET_CALLGRIND_ZERO();  // under callgrind, the timed loop alone is dumped
  for (auto _ : state) {
    if (!one()) {
      state.SkipWithError("round trip failed");
      break;
    }
  }
  USNET_CALLGRIND_DUMP("BM_TcpInMemoryRR64 timed loop");
  m.counters(state, base);
  client->close(m.t);
  server->close(m.t);
  for (int i = 0; i < 100; ++i) m.step();
}
BENCHMARK(BM_TcpInMemoryRR64)->Iterations(20'000);

// Bulk from b (server) to a (client), 1 MiB per iteration, every byte
// checked by the receiver.
void in_memory_bulk(benchmark::State& state, std::size_t queue_limit, std::uint32_t receiver_every = 1) {
  MemoryPair m(kBulk, queue_limit);
  m.a_every = receiver_every;
  auto streams = m.connect();  // not a structured binding: clang 14 cannot capture those
  auto& client = streams.first;
  auto& server = streams.second;
  if (!m.error.empty() || !client || !server) {
    state.SkipWithError(("in-memory pair: " + m.error).c_str());
    return;
  }
  constexpr std::uint64_t kPerIteration = std::uint64_t{1} << 20;
  std::vector<std::byte> buf(kChunk);
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  auto transfer = [&](std::uint64_t n) -> bool {
    const std::uint64_t target = received + n;
    for (int i = 0; i < 1'000'000 && received < target; ++i) {
      if (sent < target) {
        sent += or0(server->send(pattern_at(sent, static_cast<std::size_t>(target - sent)), m.t));
      }
      m.step();
      for (;;) {
        const std::size_t got = or0(client->receive(buf, m.t));
        if (got == 0) break;
        if (std::memcmp(buf.data(), pattern_at(received, got).data(), got) != 0) return false;
        received += got;
      }
    }
    return received == target;
  };
  if (!transfer(std::uint64_t{8} << 20)) {  // warm-up: slow start done
    const std::string e = "warm-up transfer failed: " + std::to_string(received) +
                          " bytes received; sender " + describe(*server) + "; receiver " + describe(*client);
    state.SkipWithError(e.c_str());
    return;
  }
  const std::uint64_t base = m.segments();
  USNET_CALLGRIND_ZERO();
  for (auto _ : state) {
    if (!transfer(kPerIteration)) {
      const std::string e = "transfer failed: " + std::to_string(received) + " bytes received; sender " +
                            describe(*server) + "; receiver " + describe(*client);
      state.SkipWithError(e.c_str());
      break;
    }
  }
  USNET_CALLGRIND_DUMP("in_memory_bulk timed loop");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kPerIteration));
  m.counters(state, base);
  client->close(m.t);
  server->close(m.t);
  for (int i = 0; i < 100; ++i) m.step();
}
void BM_TcpInMemoryBulk(benchmark::State& state) { in_memory_bulk(state, 2048); }
BENCHMARK(BM_TcpInMemoryBulk)->Iterations(32);

// The same with 64-frame link queues that drop what does not fit (as a
// memif ring of 1024 slots does when the sender outruns the receiver, in
// fewer segments): loss and recovery at every window growth.
void BM_TcpInMemoryBulkTailDrop64(benchmark::State& state) { in_memory_bulk(state, 64); }
BENCHMARK(BM_TcpInMemoryBulkTailDrop64)->Iterations(32);

// A receiver that runs one turn in range(1) behind a link queue of
// range(0) frames: the sender's window outgrows what the queue absorbs
// between the receiver's turns, and bursts of segments are lost, as over
// memif with 4 MiB buffers.
void BM_TcpInMemoryBulkSlowReceiver(benchmark::State& state) {
  in_memory_bulk(state, static_cast<std::size_t>(state.range(0)), static_cast<std::uint32_t>(state.range(1)));
}
BENCHMARK(BM_TcpInMemoryBulkSlowReceiver)
    ->ArgNames({"queue", "receiver_every"})
    ->Args({1024, 2})
    ->Args({1024, 4})
    ->Args({1024, 8})
    ->Args({256, 4})
    ->Iterations(32);

}  // namespace

BENCHMARK_MAIN();
