// Shared-memory SPSC ring between two processes: throughput (single items and
// batches of 32) and latency (one-way, stamped with CLOCK_MONOTONIC; and round
// trip through an echoing peer, timed on one clock).
//
// The benchmark process forks a peer for every run. The peer maps the arena
// again from its fd (Arena::attach), as a real second process would. When at
// least two CPUs are allowed, this process is pinned to the first and the
// peer to the second (normally cores 0 and 1) and both spin; on one CPU they
// run unpinned and yield at once when there is nothing to do, and the label
// says so. Everything checks what it receives; a peer that fails or dies
// makes the run an error instead of a number.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cpu_pinning.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/ring.hpp"

namespace {

using usnet::mem::Arena;
using usnet::mem::RegionSpec;
using usnet::mem::RingConsumer;
using usnet::mem::RingLimits;
using usnet::mem::RingMemory;
using usnet::mem::RingProducer;
using usnet::mem::RingSlot;

constexpr std::uint32_t kCapacity = 1024;
constexpr std::uint32_t kBufferCount = 4096;
constexpr std::uint32_t kBufferSize = 2048;
constexpr RingLimits kLimits{kCapacity, kBufferCount, kBufferSize};
constexpr std::uint16_t kStopFlag = 0x8000;  // "no more items": the peer exits

std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// ------------------------------------------------------------------ CPUs

using namespace usnet::bench;  // CpuPlan, plan_cpus, pin_to, ScopedPin

// Busy-waits while the peer has its own core; otherwise gives the core away.
class Spinner {
 public:
  explicit Spinner(bool own_core) : spins_before_yield_(own_core ? 1u << 14 : 0u) {}
  void wait() {
    if (++idle_ > spins_before_yield_) {
      sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  void reset() { idle_ = 0; }
  // True every 2^16 idle rounds: time to check the peer is still alive.
  bool check_due() const { return (idle_ & 0xffffu) == 0xffffu; }

 private:
  unsigned spins_before_yield_;
  unsigned idle_ = 0;
};

// ------------------------------------------------------------------ peer

struct Shared {
  Arena arena;
  std::span<std::byte> to_peer;    // ring: benchmark process -> peer
  std::span<std::byte> from_peer;  // ring: peer -> benchmark process
  std::span<std::byte> buffers;
};

bool map_regions(Shared& s) {
  s.to_peer = s.arena.region("to_peer");
  s.from_peer = s.arena.region("from_peer");
  s.buffers = s.arena.region("buffers");
  return !s.to_peer.empty() && !s.from_peer.empty() &&
         s.buffers.size() >= std::size_t{kBufferCount} * kBufferSize;
}

// The arena with both rings formatted, in the benchmark process.
std::optional<Shared> create_shared() {
  const std::vector<RegionSpec> specs{{"to_peer", RingMemory::bytes_needed(kCapacity)},
                                      {"from_peer", RingMemory::bytes_needed(kCapacity)},
                                      {"buffers", std::size_t{kBufferCount} * kBufferSize}};
  auto arena = Arena::create("ring_bench", specs);
  if (!arena) return std::nullopt;
  Shared s{std::move(arena).value(), {}, {}, {}};
  if (!map_regions(s) || !RingMemory::format(s.to_peer, kCapacity) ||
      !RingMemory::format(s.from_peer, kCapacity)) {
    return std::nullopt;
  }
  return s;
}

// In the peer: the arena mapped again from the fd.
std::optional<Shared> attach_shared(int fd) {
  auto arena = Arena::attach(fd);
  if (!arena) return std::nullopt;
  Shared s{std::move(arena).value(), {}, {}, {}};
  if (!map_regions(s)) return std::nullopt;
  return s;
}

std::byte* buffer_of(const Shared& s, const RingSlot& slot) {
  return s.buffers.data() + std::size_t{slot.buffer} * kBufferSize + slot.offset;
}

enum PeerExit : int { kPeerOk = 0, kPeerSetupFailed = 2, kPeerRingBroken = 3, kPeerOutOfOrder = 4 };

class Peer {
 public:
  Peer(const CpuPlan& plan, const std::function<int(Spinner&)>& body) {
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(kPeerSetupFailed);
      if (plan.pinned && !pin_to(plan.peer_cpu)) _exit(kPeerSetupFailed);
      Spinner spin(plan.pinned);
      _exit(body(spin));
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
  // Waits up to ~10 s for the peer to exit; true if it exited with 0.
  bool finished_ok() {
    for (int i = 0; i < 10000 && alive(); ++i) usleep(1000);
    if (alive()) return false;  // the destructor kills it
    return WIFEXITED(status_) && WEXITSTATUS(status_) == kPeerOk;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

const char* pin_label(const CpuPlan& plan) {
  return plan.pinned ? "pinned: this process cpu A, peer cpu B" : "one cpu: unpinned, peers time-share";
}

// Waits for `ready()` with the spinner; false (and the run marked as an
// error) if the peer died first.
template <class Ready>
bool wait_for_peer(benchmark::State& state, Peer& peer, Spinner& spin, Ready ready) {
  while (!ready()) {
    if (spin.check_due() && !peer.alive()) {
      state.SkipWithError("the peer process died");
      return false;
    }
    spin.wait();
  }
  spin.reset();
  return true;
}

// ------------------------------------------------------------------ throughput

// Peer: consumes until the stop item, checking the sequence in the cookie.
int consume_in_order(int fd, std::uint32_t batch, Spinner& spin) {
  std::optional<Shared> s = attach_shared(fd);
  if (!s) return kPeerSetupFailed;
  auto consumer = RingConsumer::attach(s->to_peer, kLimits);
  if (!consumer) return kPeerSetupFailed;
  std::array<RingSlot, 32> out{};
  std::uint32_t expected = 0;
  for (;;) {
    const std::size_t n = batch == 1 ? (consumer->try_dequeue(out[0]) ? 1 : 0)
                                     : consumer->dequeue_batch(std::span(out).first(batch));
    for (std::size_t i = 0; i < n; ++i) {
      if (out[i].flags & kStopFlag) return kPeerOk;
      if (out[i].cookie != expected++) return kPeerOutOfOrder;
    }
    if (n != 0) {
      spin.reset();
      continue;
    }
    if (consumer->broken()) return kPeerRingBroken;
    spin.wait();
  }
}

// Items per second from this process (producer) to the peer (consumer). Each
// benchmark iteration moves kChunk items and is timed until the peer has
// taken the last one (the consumer index catches up), not merely until the
// producer has written them.
void BM_RingCrossProcessThroughput(benchmark::State& state) {
  constexpr std::uint32_t kChunk = 1u << 16;
  const auto batch = static_cast<std::uint32_t>(state.range(0));
  const CpuPlan plan = plan_cpus();
  std::optional<Shared> s = create_shared();
  if (!s) {
    state.SkipWithError("arena or ring setup failed");
    return;
  }
  auto producer = RingProducer::attach(s->to_peer, kLimits);
  if (!producer) {
    state.SkipWithError("producer attach failed");
    return;
  }
  const int fd = s->arena.fd();
  Peer peer(plan, [fd, batch](Spinner& spin) { return consume_in_order(fd, batch, spin); });
  ScopedPin pin(plan);
  Spinner spin(plan.pinned);
  std::array<RingSlot, 32> slots{};
  std::uint32_t seq = 0;

  for (auto _ : state) {
    const std::uint64_t start = monotonic_ns();
    const std::uint32_t end = seq + kChunk;
    bool ok = true;
    while (ok && seq != end) {
      std::size_t placed = 0;
      if (batch == 1) {
        placed = producer->try_enqueue(RingSlot{seq % kBufferCount, 64, 0, 0, seq}) ? 1 : 0;
      } else {
        const std::uint32_t n = std::min(batch, end - seq);
        for (std::uint32_t i = 0; i < n; ++i)
          slots[i] = RingSlot{(seq + i) % kBufferCount, 64, 0, 0, seq + i};
        placed = producer->enqueue_batch(std::span(slots).first(n));
      }
      seq += static_cast<std::uint32_t>(placed);
      if (placed != 0) {
        spin.reset();
      } else {
        ok = !(spin.check_due() && !peer.alive());
        spin.wait();
      }
    }
    ok = ok && wait_for_peer(state, peer, spin, [&] { return producer->free_slots() == kCapacity; });
    if (!ok || producer->broken()) {
      if (!state.error_occurred()) state.SkipWithError("the peer process died or the ring broke");
      break;
    }
    state.SetIterationTime(static_cast<double>(monotonic_ns() - start) * 1e-9);
  }

  while (!producer->try_enqueue(RingSlot{0, 0, 0, kStopFlag, 0}) && peer.alive()) spin.wait();
  if (!peer.finished_ok() && !state.error_occurred())
    state.SkipWithError("the peer saw items lost or out of order");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kChunk);
  state.counters["batch"] = batch;
  state.SetLabel(pin_label(plan));
}
BENCHMARK(BM_RingCrossProcessThroughput)
    ->ArgName("batch")
    ->Arg(1)
    ->Arg(32)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ------------------------------------------------------------------ latency

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

void report(benchmark::State& state, std::vector<std::uint64_t>& samples, const CpuPlan& plan) {
  const Percentiles p = percentiles(samples);
  state.counters["p50_ns"] = p.p50;
  state.counters["p99_ns"] = p.p99;
  state.counters["p99.9_ns"] = p.p999;
  state.counters["min_ns"] = p.min;
  // The mean and max show the rare long stalls (the peer or this process
  // descheduled) that the percentiles leave out.
  state.counters["mean_ns"] = p.mean;
  state.counters["max_ns"] = p.max;
  state.counters["samples"] = static_cast<double>(samples.size());
  // What one clock read costs here, to judge the numbers above by.
  const std::uint64_t t0 = monotonic_ns();
  for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(monotonic_ns());
  state.counters["clock_read_ns"] = static_cast<double>(monotonic_ns() - t0) / 1000.0;
  state.SetLabel(pin_label(plan));
}

// Peer for the one-way test: sends one stamped item at a time into the
// benchmark process, each as soon as the previous one was taken, so every
// item meets an idle ring and a waiting consumer. The stamp (CLOCK_MONOTONIC
// ns) goes in the item's buffer, which the receiver reads. Stops when told on
// the reverse ring.
int send_stamped(int fd, Spinner& spin) {
  std::optional<Shared> s = attach_shared(fd);
  if (!s) return kPeerSetupFailed;
  auto producer = RingProducer::attach(s->to_peer, kLimits);
  auto control = RingConsumer::attach(s->from_peer, kLimits);
  if (!producer || !control) return kPeerSetupFailed;
  for (std::uint32_t seq = 0;; ++seq) {
    RingSlot stop;
    while (producer->free_slots() != kCapacity) {
      if (producer->broken()) return kPeerRingBroken;
      if (control->try_dequeue(stop)) return kPeerOk;  // the last item may never be taken
      spin.wait();
    }
    spin.reset();
    if (control->try_dequeue(stop)) return kPeerOk;
    // A few hot buffers, as a pool that hands back recently freed ones has.
    const RingSlot slot{seq % 64, 8, 0, 0, seq};
    const std::uint64_t stamp = monotonic_ns();
    std::memcpy(buffer_of(*s, slot), &stamp, sizeof stamp);
    if (!producer->try_enqueue(slot)) return kPeerRingBroken;
  }
}

// One-way latency from the peer's enqueue to this process holding the item
// and its buffer's first bytes, both ends reading CLOCK_MONOTONIC (one
// system-wide clock; each sample includes about one clock read). A sample
// where the receiver's clock reads earlier than the stamp is counted in
// clock_went_back and recorded as 0.
void BM_RingCrossProcessOneWayLatency_MonotonicStampInBuffer(benchmark::State& state) {
  const CpuPlan plan = plan_cpus();
  std::optional<Shared> s = create_shared();
  if (!s) {
    state.SkipWithError("arena or ring setup failed");
    return;
  }
  // Here the peer produces into `to_peer` and we consume it; `from_peer`
  // carries the stop signal the other way.
  auto consumer = RingConsumer::attach(s->to_peer, kLimits);
  auto control = RingProducer::attach(s->from_peer, kLimits);
  if (!consumer || !control) {
    state.SkipWithError("ring attach failed");
    return;
  }
  const int fd = s->arena.fd();
  Peer peer(plan, [fd](Spinner& spin) { return send_stamped(fd, spin); });
  ScopedPin pin(plan);
  Spinner spin(plan.pinned);
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  std::uint32_t expected = 0;
  std::uint64_t went_back = 0;

  for (auto _ : state) {
    RingSlot slot;
    if (!wait_for_peer(state, peer, spin, [&] { return consumer->try_dequeue(slot) || consumer->broken(); }))
      break;
    std::uint64_t stamp = 0;
    std::memcpy(&stamp, buffer_of(*s, slot), sizeof stamp);
    const std::uint64_t now = monotonic_ns();
    if (consumer->broken() || slot.cookie != expected++) {
      state.SkipWithError("ring broke or items out of order");
      break;
    }
    if (now < stamp) ++went_back;
    samples.push_back(now < stamp ? 0 : now - stamp);
  }

  (void)control->try_enqueue(RingSlot{0, 0, 0, kStopFlag, 0});
  if (!peer.finished_ok() && !state.error_occurred()) state.SkipWithError("the peer failed");
  report(state, samples, plan);
  state.counters["clock_went_back"] = static_cast<double>(went_back);
}
BENCHMARK(BM_RingCrossProcessOneWayLatency_MonotonicStampInBuffer)->Iterations(200'000)->UseRealTime();

// Peer for the round trip: echoes every item back unchanged.
int echo(int fd, Spinner& spin) {
  std::optional<Shared> s = attach_shared(fd);
  if (!s) return kPeerSetupFailed;
  auto in = RingConsumer::attach(s->to_peer, kLimits);
  auto out = RingProducer::attach(s->from_peer, kLimits);
  if (!in || !out) return kPeerSetupFailed;
  for (;;) {
    RingSlot slot;
    if (!in->try_dequeue(slot)) {
      if (in->broken()) return kPeerRingBroken;
      spin.wait();
      continue;
    }
    spin.reset();
    if (slot.flags & kStopFlag) return kPeerOk;
    // The reply ring cannot be full: one item is in flight at a time.
    if (!out->try_enqueue(slot)) return kPeerRingBroken;
  }
}

// Round trip: enqueue to the peer, the peer dequeues and enqueues the item
// back on a second ring, we dequeue it. Timed on this process's clock alone;
// one-way is roughly half of it.
void BM_RingCrossProcessRoundTripLatency_EchoPeer(benchmark::State& state) {
  const CpuPlan plan = plan_cpus();
  std::optional<Shared> s = create_shared();
  if (!s) {
    state.SkipWithError("arena or ring setup failed");
    return;
  }
  auto out = RingProducer::attach(s->to_peer, kLimits);
  auto in = RingConsumer::attach(s->from_peer, kLimits);
  if (!out || !in) {
    state.SkipWithError("ring attach failed");
    return;
  }
  const int fd = s->arena.fd();
  Peer peer(plan, [fd](Spinner& spin) { return echo(fd, spin); });
  ScopedPin pin(plan);
  Spinner spin(plan.pinned);
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  std::uint32_t seq = 0;

  for (auto _ : state) {
    const std::uint64_t start = monotonic_ns();
    if (!out->try_enqueue(RingSlot{seq % kBufferCount, 64, 0, 0, seq})) {
      state.SkipWithError("request ring full or broken");
      break;
    }
    RingSlot back;
    if (!wait_for_peer(state, peer, spin, [&] { return in->try_dequeue(back) || in->broken(); })) break;
    const std::uint64_t end = monotonic_ns();
    if (in->broken() || back.cookie != seq++) {
      state.SkipWithError("ring broke or reply out of order");
      break;
    }
    samples.push_back(end - start);
  }

  (void)out->try_enqueue(RingSlot{0, 0, 0, kStopFlag, 0});
  if (!peer.finished_ok() && !state.error_occurred()) state.SkipWithError("the peer failed");
  report(state, samples, plan);
}
BENCHMARK(BM_RingCrossProcessRoundTripLatency_EchoPeer)->Iterations(200'000)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
