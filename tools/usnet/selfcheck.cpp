// `usnet selfcheck`: checks on this machine that the foundation works and
// prints what it verified: packet pool, shared-memory rings between two
// processes (also against a peer writing garbage), wire formats, and the
// checksum's speed against the plain RFC 1071 loop.
#include <fmt/core.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "commands.hpp"
#include "usnet/mem/accounting.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/mem/ring.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/describe.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/tcp.hpp"

namespace usnet::tool {

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  bool quick = false;
  std::uint64_t ring_items = 5'000'000;
};

int g_failures = 0;

void report(bool ok, const std::string& what) {
  fmt::print("  [{}] {}\n", ok ? " ok " : "FAIL", what);
  if (!ok) ++g_failures;
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof set, &set);  // best effort: a 1-core machine still works
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// --- packet pool -----------------------------------------------------------

void check_pool() {
  fmt::print("packet pool\n");
  constexpr std::size_t kSegBytes = 64 * 1024, kBuf = 2048;
  constexpr std::uint32_t kSegs = 8;
  std::vector<mem::RegionSpec> spec{{"buffers", kSegBytes * kSegs}};
  auto arena = mem::Arena::create("usnet-selfcheck-pool", spec);
  if (!arena) return report(false, "arena: " + arena.error().message());

  int setups = 0, teardowns = 0;
  mem::SegmentHooks hooks{[&](std::uint32_t, std::span<std::byte>) { ++setups; },
                          [&](std::uint32_t, std::span<std::byte>) { ++teardowns; }};
  {
    auto pool = mem::PacketPool::create({kBuf, kSegBytes, kSegs}, arena->region("buffers"), hooks);
    if (!pool) return report(false, "pool: " + pool.error().message());
    auto app = pool->add_owner({8, 96});
    auto other = pool->add_owner({8, 96});
    if (!app || !other) return report(false, "owners refused");

    std::vector<mem::BufIndex> held;
    while (auto b = pool->alloc(*app)) held.push_back(*b);
    const std::uint32_t per_seg = kSegBytes / kBuf;
    const auto segs_needed = static_cast<int>((held.size() + per_seg - 1) / per_seg);
    report(held.size() == 96,
           fmt::format("one owner holds up to its ceiling: {} buffers, then ENOBUFS", held.size()));
    report(setups == segs_needed,
           fmt::format("segment set-up hook ran {} times for {} segments of {} buffers (once per segment)",
                       setups, segs_needed, per_seg));
    report(pool->working_set(*app) == 96,
           fmt::format("working set grew 8 -> 12 -> 18 -> ... -> {} (by half when dry)",
                       pool->working_set(*app)));
    auto ec = pool->free(*other, held.front());
    report(ec == std::errc::invalid_argument, "free of another owner's buffer refused: " + ec.message());
    for (auto b : held) (void)pool->free(*app, b);
    report(pool->in_use() == 0 && mem::buffers_in_use_all_pools() == 0, "every buffer back: 0 in use");
    // Idle for two periods of 2 s (time is passed in: no waiting here).
    pool->tick(std::chrono::seconds(0));
    pool->tick(std::chrono::seconds(2));
    const auto w1 = pool->working_set(*app);
    pool->tick(std::chrono::seconds(4));
    report(w1 == 72 && pool->working_set(*app) == 54,
           fmt::format("idle working set shrank by a quarter per 2 s: 96 -> {} -> {}", w1,
                       pool->working_set(*app)));
    report(teardowns > 0, fmt::format("empty segments returned to the system: {} torn down", teardowns));
  }
}

// --- rings across two processes --------------------------------------------

constexpr std::uint32_t kRingCap = 1024, kBufCount = 4096, kBufSize = 2048;

mem::RingSlot slot_for(std::uint64_t i) {
  return {static_cast<std::uint32_t>(i % kBufCount), static_cast<std::uint32_t>(i % 1500), 64,
          static_cast<std::uint16_t>(i >> 32), static_cast<std::uint32_t>(i)};
}

// Child: attaches to the arena by its fd (not through the inherited mapping)
// and produces `items` slots; or, when `garbage`, writes nonsense instead.
[[noreturn]] void ring_child(int fd, std::uint64_t items, bool garbage) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  pin_to_cpu(1);
  auto arena = mem::Arena::attach(fd);
  if (!arena) ::_exit(10);
  auto ring_mem = arena->region("ring");
  if (garbage) {
    auto view = mem::RingMemory::view(ring_mem, kRingCap);
    if (!view) ::_exit(11);
    view->store_slot(0, {kBufCount + 7, 10, 0, 0, 0});           // a buffer index past the pool
    view->producer_index().store(1, std::memory_order_release);  // publish it
    ::_exit(0);
  }
  auto prod = mem::RingProducer::attach(ring_mem, {kRingCap, kBufCount, kBufSize});
  if (!prod) ::_exit(12);
  std::uint64_t next = 0;
  mem::RingSlot batch[32];
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (next < items) {
    std::size_t n = 0;
    for (; n < 32 && next + n < items; ++n) batch[n] = slot_for(next + n);
    next += prod->enqueue_batch(std::span(batch, n));
    if (prod->broken() || Clock::now() > deadline) ::_exit(13);
  }
  ::_exit(0);
}

int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void check_rings(const Options& opt) {
  fmt::print("shared-memory rings between two processes\n");
  std::vector<mem::RegionSpec> spec{{"ring", mem::RingMemory::bytes_needed(kRingCap)}};
  auto arena = mem::Arena::create("usnet-selfcheck-ring", spec);
  if (!arena) return report(false, "arena: " + arena.error().message());
  auto ring_mem = arena->region("ring");
  if (!mem::RingMemory::format(ring_mem, kRingCap)) return report(false, "ring format failed");
  auto cons = mem::RingConsumer::attach(ring_mem, {kRingCap, kBufCount, kBufSize});
  if (!cons) return report(false, "ring attach: " + cons.error().message());

  const std::uint64_t items = opt.ring_items;
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) return report(false, "fork failed");
  if (pid == 0) ring_child(arena->fd(), items, false);
  pin_to_cpu(0);

  std::uint64_t expect = 0, bad = 0;
  mem::RingSlot got[64];
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::seconds(60);
  while (expect < items && !cons->broken() && Clock::now() < deadline) {
    std::size_t n = cons->dequeue_batch(got);
    for (std::size_t i = 0; i < n; ++i, ++expect) {
      const auto want = slot_for(expect);
      if (std::memcmp(&got[i], &want, sizeof want) != 0) ++bad;
    }
  }
  const double secs = seconds_since(t0);
  const int rc = wait_child(pid);
  report(expect == items && bad == 0 && rc == 0 && !cons->broken(),
         fmt::format("{} items from a child process that attached by fd: none lost, duplicated, reordered or "
                     "changed ({:.1f} M items/s, batches of 32)",
                     expect, static_cast<double>(expect) / secs / 1e6));

  // A hostile producer: the consumer must mark the ring broken, not crash.
  if (!mem::RingMemory::format(ring_mem, kRingCap)) return report(false, "ring re-format failed");
  auto victim = mem::RingConsumer::attach(ring_mem, {kRingCap, kBufCount, kBufSize});
  if (!victim) return report(false, "ring attach failed");
  std::fflush(stdout);
  pid = ::fork();
  if (pid < 0) return report(false, "fork failed");
  if (pid == 0) ring_child(arena->fd(), 0, true);
  const int rc2 = wait_child(pid);
  mem::RingSlot s{};
  const bool delivered = victim->try_dequeue(s);
  report(rc2 == 0 && !delivered && victim->broken() && victim->fault() == mem::RingFault::BadBufferIndex,
         fmt::format("peer wrote a buffer index past the pool: ring reported broken ({}), slot not delivered",
                     mem::to_string(victim->fault())));
}

// --- wire formats ----------------------------------------------------------

void check_wire() {
  fmt::print("wire formats\n");
  using namespace wire;
  std::byte frame[128] = {};
  const auto src = Ipv4Addr::from_octets(198, 18, 0, 1), dst = Ipv4Addr::from_octets(198, 18, 0, 2);
  TcpRepr tcp{};
  tcp.src_port = 40001;
  tcp.dst_port = 80;
  tcp.seq = SeqNum(0xfffffff0u);
  tcp.flags = TcpFlags{TcpFlags::kSyn};
  tcp.window = 64240;
  tcp.options.mss = 1460;
  tcp.options.sack_permitted = true;
  tcp.options.timestamps = TcpTimestamps{1, 0};
  tcp.options.window_scale = 7;
  const EthernetRepr eth{*MacAddr::parse("02:00:00:00:00:02"), *MacAddr::parse("02:00:00:00:00:01"),
                         ethertype::kIpv4, VlanTag{5, false, 42}};
  Ipv4Repr ip{};
  ip.src = src;
  ip.dst = dst;
  ip.protocol = ip_protocol::kTcp;
  ip.dont_frag = true;
  ip.payload_len = static_cast<std::uint16_t>(tcp.buffer_len());
  const std::size_t l2 = eth.buffer_len(), l3 = ip.buffer_len();
  const auto ph = PseudoHeader::v4(src, dst);
  const bool emitted = eth.emit(frame) && ip.emit(std::span(frame).subspan(l2)) &&
                       tcp.emit(std::span(frame).subspan(l2 + l3), ph);
  const auto total = l2 + l3 + tcp.buffer_len();
  auto frame_bytes = std::span<const std::byte>(frame, total);

  bool round_trip = false;
  if (auto e = EthernetView::make(frame_bytes)) {
    if (auto i = Ipv4View::make(e->payload()); i && Ipv4Repr::parse(*i)) {
      if (auto t = TcpView::make(i->payload())) {
        auto back = TcpRepr::parse(*t, ph);
        round_trip = back && *back == tcp;
      }
    }
  }
  report(emitted && round_trip,
         "TCP SYN in IPv4 in a VLAN-tagged frame: emitted, parsed back equal, checksums verified");
  fmt::print("         {}\n", describe_frame(frame_bytes));
  std::byte cut[20];
  std::memcpy(cut, frame, sizeof cut);
  report(describe_frame(cut).find("[malformed: truncated]") != std::string::npos,
         "a frame cut short is named, not read past: " + describe_frame(cut));
}

// --- checksum speed --------------------------------------------------------

void check_checksum(const Options& opt) {
  fmt::print("internet checksum (RFC 1071), 1500-byte packets\n");
  std::vector<std::byte> buf(1501);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = std::byte(i * 131 + 7);
  std::span<const std::byte> data(buf.data() + 1, 1500);  // unaligned, like a payload after Ethernet
  const bool same = wire::ones_sum(data) == wire::ones_sum_naive(data);

  auto rate = [&](auto fn) {
    const auto budget = std::chrono::milliseconds(opt.quick ? 50 : 300);
    std::uint64_t n = 0;
    volatile std::uint16_t sink = 0;
    const auto t0 = Clock::now();
    do {
      for (int i = 0; i < 1000; ++i) sink = static_cast<std::uint16_t>(sink + fn(data));
      n += 1000;
    } while (Clock::now() - t0 < budget);
    return static_cast<double>(n) * 1500 / seconds_since(t0) / 1e9;
  };
  const double fast = rate([](std::span<const std::byte> d) { return wire::ones_sum(d); });
  const double naive = rate([](std::span<const std::byte> d) { return wire::ones_sum_naive(d); });
  report(same, "fast sum equals the RFC 1071 loop on the same data");
  // A speed is a measurement, not a check: print it, never fail on it (a
  // loaded machine or a sanitizer build would make that flaky).
  fmt::print("  [info] {:.1f} GB/s against {:.1f} GB/s for the 16-bit loop: {:.1f}x{}\n", fast, naive,
             fast / naive, opt.quick ? " (short timing)" : "");
}

int run_selfcheck(const Options& opt) {
  fmt::print("usnet selfcheck{}\n\n", opt.quick ? " (quick)" : "");
  check_pool();
  check_rings(opt);
  check_wire();
  check_checksum(opt);
  fmt::print("\n{}\n", g_failures == 0 ? "all checks passed" : fmt::format("{} check(s) FAILED", g_failures));
  return g_failures == 0 ? 0 : 1;
}

}  // namespace

void add_selfcheck(CLI::App& app, std::function<int()>& run) {
  static Options opt;
  auto* cmd =
      app.add_subcommand("selfcheck",
                         "Check the packet pool, cross-process rings, wire formats and checksum speed on "
                         "this machine, and print what was verified");
  cmd->add_flag("--quick", opt.quick, "Fewer ring items and shorter timings (for tests)");
  cmd->add_option("--ring-items", opt.ring_items, "Items to pass through the cross-process ring")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  cmd->callback([&run] {
    if (opt.quick && opt.ring_items == 5'000'000) opt.ring_items = 200'000;
    run = [] { return run_selfcheck(opt); };
  });
}

}  // namespace usnet::tool
