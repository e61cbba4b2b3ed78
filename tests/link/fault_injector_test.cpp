#include "usnet/link/fault_injector.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "usnet/link/memory_link.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::link {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;

// A pool over private page-aligned memory: 4 segments of 8 buffers.
class TestPool {
 public:
  explicit TestPool(std::uint32_t ceiling = 32) {
    segment_ = std::max<std::size_t>(mem::Arena::page_size(), 16384);
    bytes_ = segment_ * 4;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    memory_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = segment_ / 8;
    c.segment_bytes = segment_;
    c.max_segments = 4;
    auto pool = mem::PacketPool::create(c, std::span(memory_, bytes_));
    EXPECT_TRUE(pool);
    pool_.emplace(std::move(*pool));
    owner = *pool_->add_owner({0, ceiling});
  }
  ~TestPool() {
    pool_.reset();
    ::munmap(memory_, bytes_);
  }
  TestPool(const TestPool&) = delete;
  TestPool& operator=(const TestPool&) = delete;
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }

  mem::OwnerId owner;

 private:
  std::size_t segment_ = 0, bytes_ = 0;
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

// Frame number `i`: 64 bytes, the number in the first two, a pattern after.
Bytes numbered(int i) {
  Bytes b(64);
  b[0] = static_cast<std::byte>(i >> 8);
  b[1] = static_cast<std::byte>(i);
  for (std::size_t k = 2; k < b.size(); ++k) b[k] = static_cast<std::byte>(k * 7 + i);
  return b;
}
int number_of(const Bytes& b) { return (std::to_integer<int>(b[0]) << 8) | std::to_integer<int>(b[1]); }

// An injector over a MemoryLink, with the test's view of both.
struct Rig {
  Rig(TestPool& p, const FaultConfig& rx, const FaultConfig& tx, std::size_t limit = 64) : pool(p) {
    LinkInfo info;
    info.name = "mem:faulty";
    info.mtu = 1500;
    auto inner = std::make_unique<MemoryLink>(*pool, pool.owner, info, limit);
    mem = inner.get();
    link = std::make_unique<FaultInjector>(std::move(inner), *pool, pool.owner, rx, tx);
  }

  // Receives everything ready at `now`, copied out, buffers freed.
  std::vector<Bytes> receive(Nanos now) {
    std::vector<Bytes> got;
    std::array<Frame, 4> out{};
    while (std::size_t n = link->rx_burst(out, now)) {
      for (std::size_t i = 0; i < n; ++i) {
        auto b = pool->buffer(out[i].buffer).subspan(out[i].offset, out[i].length);
        got.emplace_back(b.begin(), b.end());
        EXPECT_FALSE(pool->free(pool.owner, out[i].buffer));
      }
    }
    return got;
  }

  // Sends `bytes` (all of it taken, or the test fails).
  void send(const Bytes& bytes, Nanos now) {
    auto index = pool->alloc(pool.owner);
    ASSERT_TRUE(index);
    std::copy(bytes.begin(), bytes.end(), pool->buffer(*index).begin());
    Frame f{*index, static_cast<std::uint32_t>(bytes.size()), 0, 0};
    ASSERT_EQ(link->tx_burst(std::span(&f, 1), now), 1u);
  }

  std::vector<Bytes> sent() {
    std::vector<Bytes> got;
    while (auto b = mem->pop_tx()) got.push_back(std::move(*b));
    return got;
  }

  TestPool& pool;
  MemoryLink* mem = nullptr;
  std::unique_ptr<FaultInjector> link;
};

FaultConfig everything(std::uint64_t seed) {
  FaultConfig c;
  c.drop = 0.1;
  c.duplicate = 0.1;
  c.reorder = 0.1;
  c.corrupt = 0.1;
  c.delay_rate = 0.2;
  c.delay_min = 1us;
  c.delay_max = 50us;
  c.seed = seed;
  return c;
}

TEST(FaultInjector, AtRateZeroNothingChanges) {
  TestPool pool;
  Rig rig(pool, FaultConfig{}, FaultConfig{});
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
    auto got = rig.receive(Nanos(i));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], numbered(i));
    rig.send(numbered(i), Nanos(i));
    auto out = rig.sent();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], numbered(i));
  }
  for (const FaultCounters* c : {&rig.link->rx_faults(), &rig.link->tx_faults()}) {
    EXPECT_EQ(c->frames_in, 100u);
    EXPECT_EQ(c->frames_out, 100u);
    EXPECT_EQ(c->dropped + c->duplicated + c->reordered + c->corrupted + c->delayed, 0u);
  }
  EXPECT_EQ(rig.link->next_deadline(), Nanos::max());
  EXPECT_EQ(rig.link->wait_fd(), -1);
  EXPECT_EQ(&rig.link->counters(), &rig.mem->counters());
  EXPECT_EQ(&rig.link->info(), &rig.mem->info());
}

TEST(FaultInjector, AtDropOneNothingPasses) {
  TestPool pool;
  FaultConfig all;
  all.drop = 1.0;
  Rig rig(pool, all, all);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
    EXPECT_TRUE(rig.receive(Nanos(i)).empty());
    rig.send(numbered(i), Nanos(i));
    EXPECT_TRUE(rig.sent().empty());
  }
  EXPECT_EQ(rig.link->rx_faults().dropped, 50u);
  EXPECT_EQ(rig.link->tx_faults().dropped, 50u);
  EXPECT_EQ(pool->in_use(), 0u);  // dropped buffers were freed
}

// 10,000 frames at p = 0.1: mean 1000, standard deviation 30. Five standard
// deviations either side fails a correct generator about once in 1.7 million
// runs, and the seed is fixed anyway.
TEST(FaultInjector, TenPercentDropIsWithinABinomialBound) {
  TestPool pool;
  FaultConfig rx, tx;
  rx.drop = tx.drop = 0.1;
  rx.seed = 12345;
  tx.seed = 67890;
  Rig rig(pool, rx, tx);
  int received = 0, sent = 0;
  constexpr int kFrames = 10'000;
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
    received += static_cast<int>(rig.receive(Nanos(i)).size());
    rig.send(numbered(i), Nanos(i));
    sent += static_cast<int>(rig.sent().size());
  }
  for (int passed : {received, sent}) {
    const int lost = kFrames - passed;
    EXPECT_GE(lost, 1000 - 150);
    EXPECT_LE(lost, 1000 + 150);
  }
  EXPECT_EQ(rig.link->rx_faults().dropped, static_cast<std::uint64_t>(kFrames - received));
  EXPECT_EQ(rig.link->tx_faults().dropped, static_cast<std::uint64_t>(kFrames - sent));
}

// Everything the rig delivers, in order, with the time it came out: the same
// frames at the same times must give exactly the same result.
std::vector<std::pair<Nanos, Bytes>> scenario(std::uint64_t seed, FaultCounters* rx_out = nullptr) {
  TestPool pool;
  Rig rig(pool, everything(seed), everything(seed + 1000));
  std::vector<std::pair<Nanos, Bytes>> log;
  Nanos now = 0ns;
  for (int i = 0; i < 500; ++i) {
    now += 10us;
    EXPECT_TRUE(rig.mem->inject_rx(numbered(i)));
    for (auto& b : rig.receive(now)) log.emplace_back(now, std::move(b));
    rig.send(numbered(10000 + i), now);
    for (auto& b : rig.sent()) log.emplace_back(-now, std::move(b));
  }
  // Drain: follow next_deadline until nothing is held.
  for (int guard = 0; rig.link->next_deadline() != Nanos::max() && guard < 1000; ++guard) {
    now = std::max(now, rig.link->next_deadline());
    for (auto& b : rig.receive(now)) log.emplace_back(now, std::move(b));
    EXPECT_EQ(rig.link->tx_burst({}, now), 0u);
    for (auto& b : rig.sent()) log.emplace_back(-now, std::move(b));
  }
  EXPECT_EQ(rig.link->next_deadline(), Nanos::max());
  if (rx_out) *rx_out = rig.link->rx_faults();
  // Every frame is accounted for: in = out + dropped - duplicated.
  for (const FaultCounters* c : {&rig.link->rx_faults(), &rig.link->tx_faults()}) {
    EXPECT_EQ(c->frames_in + c->duplicated, c->frames_out + c->dropped);
  }
  return log;
}

TEST(FaultInjector, SameSeedGivesTheSameFaults) {
  FaultCounters counters;
  auto a = scenario(7, &counters);
  auto b = scenario(7);
  EXPECT_EQ(a, b);
  // The scenario really exercised every fault.
  EXPECT_GT(counters.dropped, 0u);
  EXPECT_GT(counters.duplicated, 0u);
  EXPECT_GT(counters.reordered, 0u);
  EXPECT_GT(counters.corrupted, 0u);
  EXPECT_GT(counters.delayed, 0u);
}

TEST(FaultInjector, DifferentSeedGivesDifferentFaults) { EXPECT_NE(scenario(7), scenario(8)); }

int differing_bits(const Bytes& a, const Bytes& b) {
  int bits = 0;
  for (std::size_t i = 0; i < a.size(); ++i) bits += std::popcount(std::to_integer<unsigned>(a[i] ^ b[i]));
  return bits;
}

TEST(FaultInjector, CorruptFlipsExactlyOneBit) {
  TestPool pool;
  FaultConfig c;
  c.corrupt = 1.0;
  c.seed = 99;
  Rig rig(pool, c, c);
  std::vector<int> positions(64);
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
    auto got = rig.receive(Nanos(i));
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].size(), 64u);
    EXPECT_EQ(differing_bits(got[0], numbered(i)), 1) << i;
    for (std::size_t k = 0; k < 64; ++k) positions[k] += got[0][k] != numbered(i)[k];

    rig.send(numbered(i), Nanos(i));
    auto out = rig.sent();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(differing_bits(out[0], numbered(i)), 1) << i;
  }
  EXPECT_EQ(rig.link->rx_faults().corrupted, 300u);
  EXPECT_EQ(rig.link->tx_faults().corrupted, 300u);
  // The byte is random: over 300 frames most of the 64 positions were hit.
  EXPECT_GT(std::count_if(positions.begin(), positions.end(), [](int n) { return n > 0; }), 48);
}

// A link may vouch for a frame's checksums (FrameFlag::kChecksumsVerified).
// Corruption injected after it stands for damage on the wire, so the flag
// must go and the stack must check; frames left intact keep it.
TEST(FaultInjector, CorruptionClearsTheChecksumsVerifiedFlag) {
  TestPool pool;
  LinkInfo trusted;
  trusted.name = "mem:trusted";
  trusted.mtu = 1500;
  trusted.offloads = Offload::kNoChecksums;  // frames from it arrive marked verified
  MemoryLink sender(*pool, pool.owner, trusted);
  for (double rate : {0.0, 1.0}) {
    SCOPED_TRACE(rate);
    FaultConfig c;
    c.corrupt = rate;
    c.seed = 5;
    auto inner = std::make_unique<MemoryLink>(*pool, pool.owner, trusted);
    MemoryLink::connect(sender, *inner);
    FaultInjector faulty(std::move(inner), *pool, pool.owner, c, FaultConfig{});
    auto b = pool->alloc(pool.owner);
    ASSERT_TRUE(b);
    const auto frame = numbered(1);
    std::memcpy(pool->buffer(*b).data(), frame.data(), frame.size());
    const Frame f{*b, static_cast<std::uint32_t>(frame.size()), 0, 0};
    ASSERT_EQ(sender.tx_burst(std::span(&f, 1), Nanos(0)), 1u);
    std::array<Frame, 2> out{};
    ASSERT_EQ(faulty.rx_burst(out, Nanos(0)), 1u);
    const bool verified = (out[0].flags & FrameFlag::kChecksumsVerified) != 0;
    EXPECT_EQ(verified, rate == 0.0);
    EXPECT_FALSE(pool->free(pool.owner, out[0].buffer));
  }
}

TEST(FaultInjector, CorruptLeavesAnEmptyFrameAlone) {
  TestPool pool;
  FaultConfig c;
  c.corrupt = 1.0;
  Rig rig(pool, c, FaultConfig{});
  ASSERT_TRUE(rig.mem->inject_rx(Bytes{}));
  auto got = rig.receive(0ns);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].empty());
  EXPECT_EQ(rig.link->rx_faults().corrupted, 0u);
}

TEST(FaultInjector, DuplicatesArriveTwiceInTheirOwnBuffers) {
  TestPool pool;
  FaultConfig c;
  c.duplicate = 1.0;
  Rig rig(pool, c, c);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
  std::vector<int> order;
  std::array<Frame, 8> out{};
  while (std::size_t n = rig.link->rx_burst(out, 0ns)) {
    for (std::size_t k = 0; k < n; ++k) {
      auto b = pool->buffer(out[k].buffer).first(out[k].length);
      order.push_back(number_of(Bytes(b.begin(), b.end())));
      EXPECT_EQ(Bytes(b.begin(), b.end()), numbered(order.back()));
    }
    for (std::size_t k = 0; k + 1 < n; k += 2) EXPECT_NE(out[k].buffer, out[k + 1].buffer);
    for (std::size_t k = 0; k < n; ++k) EXPECT_FALSE(pool->free(pool.owner, out[k].buffer));
  }
  ASSERT_EQ(order.size(), 40u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(order[2 * i], i);
    EXPECT_EQ(order[2 * i + 1], i);
  }
  EXPECT_EQ(rig.link->rx_faults().duplicated, 20u);

  rig.send(numbered(5), 0ns);
  EXPECT_EQ(rig.sent(), (std::vector<Bytes>{numbered(5), numbered(5)}));
  EXPECT_EQ(rig.link->tx_faults().duplicated, 1u);
}

TEST(FaultInjector, DuplicateIsSkippedAndCountedWhenThePoolRefuses) {
  TestPool pool(/*ceiling=*/1);
  FaultConfig c;
  c.duplicate = 1.0;
  Rig rig(pool, c, FaultConfig{});
  ASSERT_TRUE(rig.mem->inject_rx(numbered(1)));  // the owner's only buffer
  auto got = rig.receive(0ns);
  EXPECT_EQ(got, std::vector<Bytes>{numbered(1)});
  EXPECT_EQ(rig.link->rx_faults().duplicated, 0u);
  EXPECT_EQ(rig.link->rx_faults().duplicate_no_buffer, 1u);
}

TEST(FaultInjector, ReorderSwapsNeighbours) {
  TestPool pool;
  FaultConfig c;
  c.reorder = 1.0;
  Rig rig(pool, c, c);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
  auto got = rig.receive(0ns);
  EXPECT_EQ(got, (std::vector<Bytes>{numbered(1), numbered(0), numbered(3), numbered(2)}));
  EXPECT_EQ(rig.link->rx_faults().reordered, 2u);

  for (int i = 0; i < 4; ++i) rig.send(numbered(i), 0ns);
  EXPECT_EQ(rig.sent(), (std::vector<Bytes>{numbered(1), numbered(0), numbered(3), numbered(2)}));
}

// With no frame following, a held frame goes out after reorder_timeout.
TEST(FaultInjector, ReorderedFrameWithNoSuccessorGoesOutAfterTheTimeout) {
  TestPool pool;
  FaultConfig c;
  c.reorder = 1.0;
  c.reorder_timeout = 300us;
  Rig rig(pool, c, c);
  ASSERT_TRUE(rig.mem->inject_rx(numbered(1)));
  EXPECT_TRUE(rig.receive(100us).empty());
  EXPECT_EQ(rig.link->next_deadline(), 400us);
  EXPECT_TRUE(rig.receive(399us).empty());
  EXPECT_EQ(rig.receive(400us), std::vector<Bytes>{numbered(1)});

  rig.send(numbered(2), 500us);
  EXPECT_TRUE(rig.sent().empty());
  EXPECT_EQ(rig.link->next_deadline(), 800us);
  EXPECT_EQ(rig.link->tx_burst({}, 800us), 0u);
  EXPECT_EQ(rig.sent(), std::vector<Bytes>{numbered(2)});
  EXPECT_EQ(rig.link->next_deadline(), Nanos::max());
}

TEST(FaultInjector, DelayReleasesAtTheRightFakeTimes) {
  TestPool pool;
  FaultConfig c;
  c.delay_rate = 1.0;
  c.delay_min = c.delay_max = 5us;
  Rig rig(pool, c, c);
  ASSERT_TRUE(rig.mem->inject_rx(numbered(0)));
  EXPECT_TRUE(rig.receive(0us).empty());
  ASSERT_TRUE(rig.mem->inject_rx(numbered(1)));
  EXPECT_TRUE(rig.receive(2us).empty());
  EXPECT_EQ(rig.link->next_deadline(), 5us);
  EXPECT_TRUE(rig.receive(5us - 1ns).empty());
  EXPECT_EQ(rig.receive(5us), std::vector<Bytes>{numbered(0)});
  EXPECT_EQ(rig.link->next_deadline(), 7us);
  EXPECT_EQ(rig.receive(7us), std::vector<Bytes>{numbered(1)});
  EXPECT_EQ(rig.link->next_deadline(), Nanos::max());
  EXPECT_EQ(rig.link->rx_faults().delayed, 2u);

  // Transmit: held, then sent by the first call at or after its time.
  rig.send(numbered(2), 10us);
  EXPECT_TRUE(rig.sent().empty());
  EXPECT_EQ(rig.link->next_deadline(), 15us);
  EXPECT_TRUE(rig.receive(14us).empty());
  EXPECT_TRUE(rig.sent().empty());
  EXPECT_TRUE(rig.receive(15us).empty());  // an rx_burst call sends it
  EXPECT_EQ(rig.sent(), std::vector<Bytes>{numbered(2)});
}

TEST(FaultInjector, DelaysAreDrawnWithinTheirBounds) {
  TestPool pool;
  FaultConfig c;
  c.delay_rate = 1.0;
  c.delay_min = 10us;
  c.delay_max = 20us;
  c.seed = 3;
  Rig rig(pool, c, FaultConfig{});
  std::vector<Nanos> released;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));  // all arrive at t = 0
    EXPECT_TRUE(rig.receive(0ns).empty());
  }
  Nanos now = 0ns;
  while (rig.link->next_deadline() != Nanos::max()) {
    now = rig.link->next_deadline();
    auto got = rig.receive(now);
    ASSERT_FALSE(got.empty()) << now.count();
    for (std::size_t k = 0; k < got.size(); ++k) released.push_back(now);
  }
  ASSERT_EQ(released.size(), 20u);
  for (Nanos t : released) {
    EXPECT_GE(t, 10us);
    EXPECT_LE(t, 20us);
  }
  EXPECT_NE(released.front(), released.back());  // not all the same delay
}

TEST(FaultInjector, TxFramesTheDeviceRefusesAreHeldAndSentLater) {
  TestPool pool;
  Rig rig(pool, FaultConfig{}, FaultConfig{}, /*limit=*/2);
  std::array<Frame, 3> frames{};
  for (int i = 0; i < 3; ++i) {
    auto index = pool->alloc(pool.owner);
    ASSERT_TRUE(index);
    auto b = numbered(i);
    std::copy(b.begin(), b.end(), pool->buffer(*index).begin());
    frames[i] = Frame{*index, 64, 0, 0};
  }
  ASSERT_EQ(rig.link->tx_burst(frames, 1us), 3u);
  EXPECT_EQ(rig.mem->tx_pending(), 2u);
  EXPECT_EQ(rig.link->next_deadline(), 1us);  // work to do now
  EXPECT_EQ(rig.sent(), (std::vector<Bytes>{numbered(0), numbered(1)}));
  EXPECT_EQ(rig.link->tx_burst({}, 2us), 0u);
  EXPECT_EQ(rig.sent(), std::vector<Bytes>{numbered(2)});
  EXPECT_EQ(rig.link->next_deadline(), Nanos::max());
}

TEST(FaultInjector, DestroyingItFreesEveryHeldBuffer) {
  TestPool pool;
  FaultConfig delay;
  delay.delay_rate = 1.0;
  delay.delay_min = delay.delay_max = 1s;
  FaultConfig reorder;
  reorder.reorder = 1.0;
  {
    Rig rig(pool, delay, reorder);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(rig.mem->inject_rx(numbered(i)));
    EXPECT_TRUE(rig.receive(0ns).empty());
    rig.send(numbered(9), 0ns);  // held for reordering
    EXPECT_TRUE(rig.sent().empty());
    EXPECT_EQ(pool->in_use(), 6u);
  }
  EXPECT_EQ(pool->in_use(), 0u);
}

TEST(FaultInjector, RatesOutsideZeroToOneAreClamped) {
  TestPool pool;
  FaultConfig c;
  c.drop = -3;
  c.duplicate = std::nan("");
  c.corrupt = 7;
  Rig rig(pool, c, FaultConfig{});
  ASSERT_TRUE(rig.mem->inject_rx(numbered(1)));
  auto got = rig.receive(0ns);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(differing_bits(got[0], numbered(1)), 1);
  EXPECT_EQ(rig.link->rx_faults().duplicated, 0u);
}

TEST(FaultInjector, DescribeNamesEveryRateAndTheSeeds) {
  TestPool pool;
  FaultConfig tx;
  tx.delay_rate = 0.5;
  tx.delay_min = 1ms;
  tx.delay_max = 3ms;
  tx.seed = 18446744073709551615ull;
  Rig rig(pool, everything(42), tx);
  EXPECT_EQ(
      rig.link->describe(),
      "faults rx{drop=0.1 duplicate=0.1 reorder=0.1 corrupt=0.1 delay=0.2 [1000ns,50000ns] seed=42} "
      "tx{drop=0 duplicate=0 reorder=0 corrupt=0 delay=0.5 [1000000ns,3000000ns] seed=18446744073709551615}");
}

}  // namespace
}  // namespace usnet::link
