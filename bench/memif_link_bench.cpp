// The memif link alone, no stack: a 130-byte frame (a 64-byte TCP request's
// size on the wire) sent by this process, the memif server, to a forked
// client that echoes every frame back; the round trip timed here. Beside it,
// the round trip of one cache line between the same two CPUs, measured just
// before and after each run (counters c2c_before_ns, c2c_after_ns): a
// busy-polled round trip over shared memory is a few such transfers, so the
// two are read together (on this project's VM the cache line's round trip
// moves between ~110 and ~550 ns as the host places the vCPUs).
#include <benchmark/benchmark.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cpu_pinning.hpp"
#include "usnet/link/memif_link.hpp"
#include "usnet/mem/pool.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using usnet::bench::CpuPlan;
using usnet::bench::pin_to;
using usnet::bench::plan_cpus;
using usnet::link::Frame;
using usnet::link::MemifConfig;
using usnet::link::MemifLink;
using usnet::link::MemifRole;
using usnet::link::Nanos;

constexpr std::uint32_t kFrame = 130;

// A pool of 2 KiB buffers in anonymous memory, for one process.
struct Pool {
  static constexpr std::size_t kBytes = 64 * 1024 * 4;
  std::byte* memory = nullptr;
  std::optional<usnet::mem::PacketPool> pool;
  usnet::mem::OwnerId owner{};
  bool ok = false;
  Pool() {
    void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    memory = static_cast<std::byte*>(p);
    usnet::mem::PoolConfig c;
    c.buffer_size = 2048;
    c.segment_bytes = 64 * 1024;
    c.max_segments = 4;
    auto made = usnet::mem::PacketPool::create(c, std::span(memory, kBytes));
    if (!made) return;
    pool.emplace(std::move(*made));
    auto o = pool->add_owner({0, 96});
    if (!o) return;
    owner = *o;
    ok = true;
  }
  ~Pool() {
    pool.reset();
    if (memory != nullptr) ::munmap(memory, kBytes);
  }
};

// The client: echoes every frame until it gets a 1-byte one, or 60 s pass.
[[noreturn]] void echo_client(const std::string& sock, int cpu) {
  if (cpu >= 0 && !pin_to(cpu)) ::_exit(3);
  Pool p;
  if (!p.ok) ::_exit(3);
  MemifConfig c;
  c.socket_path = sock;
  c.role = MemifRole::kClient;
  auto link = MemifLink::create(c, *p.pool, p.owner);
  if (!link) ::_exit(3);
  const auto deadline = Clock::now() + 60s;
  for (std::uint32_t turn = 0;; ++turn) {
    // The link's clock only paces its control socket: the real one.
    const Nanos now{Clock::now().time_since_epoch()};
    std::array<Frame, 8> in{};
    const std::size_t n = (*link)->rx_burst(in, now);
    bool stop = false;
    for (std::size_t k = 0; k < n; ++k) stop |= in[k].length == 1;
    for (std::size_t sent = 0; sent < n;)
      sent += (*link)->tx_burst(std::span(in).subspan(sent, n - sent), now);
    if (stop) ::_exit(0);
    if ((turn & 1023) == 0 && Clock::now() > deadline) ::_exit(2);
  }
}

void BM_MemifLinkRoundTrip_EchoPeer(benchmark::State& state) {
  const CpuPlan plan = plan_cpus();
  char tmpl[] = "/tmp/usnet-memif-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::string dir = tmpl, sock = dir + "/s.sock";
  Pool p;
  if (!p.ok) {
    state.SkipWithError("pool setup failed");
    std::filesystem::remove_all(dir);
    return;
  }
  MemifConfig c;
  c.socket_path = sock;
  c.role = MemifRole::kServer;
  auto link = MemifLink::create(c, *p.pool, p.owner);
  if (!link) {
    state.SkipWithError("memif server setup failed");
    std::filesystem::remove_all(dir);
    return;
  }
  const usnet::bench::ScopedPin pin(plan);  // this process's CPUs back as they were after the run
  const double c2c_before =
      plan.pinned ? usnet::bench::cache_line_round_trip_ns(plan.self_cpu, plan.peer_cpu) : 0;
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    echo_client(sock, plan.pinned ? plan.peer_cpu : -1);
  }
  const auto now = [] { return Nanos{Clock::now().time_since_epoch()}; };
  const auto connect_by = Clock::now() + 10s;
  while (!(*link)->connected() && Clock::now() < connect_by) (*link)->poll_control(now());
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  std::uint32_t seq = 0;
  for (auto _ : state) {
    if (!(*link)->connected()) {
      state.SkipWithError("the client did not connect or went away");
      break;
    }
    auto b = p.pool->alloc(p.owner);
    if (!b) {
      state.SkipWithError("pool empty");
      break;
    }
    const auto buf = p.pool->buffer(*b);
    if (buf.data() == nullptr || buf.size() < kFrame) {
      state.SkipWithError("pool buffer too small");
      break;
    }
    std::fill_n(buf.begin(), kFrame, std::byte{0x5a});
    std::memcpy(buf.data(), &seq, sizeof seq);
    const auto t0 = Clock::now();
    Frame f{*b, kFrame, 0, 0};
    while ((*link)->tx_burst({&f, 1}, now()) != 1) {
    }
    std::array<Frame, 8> in{};
    std::size_t n = 0;
    const auto give_up = t0 + 1s;
    while ((n = (*link)->rx_burst(in, now())) == 0 && Clock::now() < give_up) {
    }
    const auto t1 = Clock::now();
    std::uint32_t back = ~seq;
    if (n > 0) std::memcpy(&back, p.pool->buffer(in[0].buffer).data(), sizeof back);
    for (std::size_t k = 0; k < n; ++k) (void)p.pool->free(p.owner, in[k].buffer);
    if (n != 1 || back != seq++) {
      state.SkipWithError("no echo in 1 s, or the wrong one");
      break;
    }
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  auto stop = p.pool->alloc(p.owner);
  if (stop) {
    Frame f{*stop, 1, 0, 0};
    const auto give_up = Clock::now() + 1s;
    while ((*link)->tx_burst({&f, 1}, now()) != 1 && Clock::now() < give_up) {
    }
  }
  int status = 0;
  const auto reap_by = Clock::now() + 5s;
  while (::waitpid(child, &status, WNOHANG) == 0) {
    std::array<Frame, 8> in{};
    for (std::size_t k = 0, n = (*link)->rx_burst(in, now()); k < n; ++k)
      (void)p.pool->free(p.owner, in[k].buffer);
    if (Clock::now() > reap_by) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      if (!state.error_occurred()) state.SkipWithError("the client did not stop");
      break;
    }
  }
  link->reset();
  std::filesystem::remove_all(dir);
  if (state.error_occurred() || samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  state.counters["p50_ns"] = at(0.5);
  state.counters["p99_ns"] = at(0.99);
  state.counters["min_ns"] = samples.front();
  state.counters["c2c_before_ns"] = c2c_before;
  state.counters["c2c_after_ns"] =
      plan.pinned ? usnet::bench::cache_line_round_trip_ns(plan.self_cpu, plan.peer_cpu) : 0;
  state.SetLabel(plan.pinned ? "pinned to two CPUs" : "one CPU: unpinned (numbers meaningless)");
}
BENCHMARK(BM_MemifLinkRoundTrip_EchoPeer)->Iterations(200'000)->UseRealTime()->Repetitions(5);

}  // namespace

BENCHMARK_MAIN();
