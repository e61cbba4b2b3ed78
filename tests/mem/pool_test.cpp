#include "usnet/mem/pool.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <numeric>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "usnet/mem/accounting.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::mem {
namespace {

using namespace std::chrono_literals;

const std::size_t kPage = Arena::page_size();
// Eight buffers per segment whatever the page size, so the numbers below hold.
const std::size_t kSegmentBytes = std::max<std::size_t>(kPage, 16384);
const std::size_t kBufferSize = kSegmentBytes / 8;
constexpr std::uint32_t kPerSegment = 8;

PoolConfig config(std::uint32_t max_segments = 4) {
  PoolConfig c;
  c.buffer_size = kBufferSize;
  c.segment_bytes = kSegmentBytes;
  c.max_segments = max_segments;
  return c;
}

// A pool over an arena region, recording its hook calls.
class Harness {
 public:
  explicit Harness(const PoolConfig& c = config()) : arena_(make_arena(c.segment_bytes * c.max_segments)) {
    SegmentHooks hooks;
    hooks.on_setup = [this](std::uint32_t s, std::span<std::byte> m) {
      setups.push_back(s);
      EXPECT_EQ(m.data(), memory().data() + s * kSegmentBytes);
      EXPECT_EQ(m.size(), kSegmentBytes);
    };
    hooks.on_teardown = [this](std::uint32_t s, std::span<std::byte> m) {
      teardowns.push_back(s);
      EXPECT_EQ(m.data(), memory().data() + s * kSegmentBytes);
      EXPECT_EQ(m.size(), kSegmentBytes);
    };
    auto p = PacketPool::create(c, memory(), std::move(hooks));
    EXPECT_TRUE(p) << (p ? "" : p.error().message());
    pool.emplace(std::move(*p));
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  PacketPool& operator*() { return *pool; }
  PacketPool* operator->() { return &*pool; }
  std::span<std::byte> memory() const { return arena_.region(0); }

  OwnerId add_owner(std::uint32_t floor, std::uint32_t ceiling) {
    auto id = pool->add_owner({floor, ceiling});
    EXPECT_TRUE(id);
    return *id;
  }
  std::vector<BufIndex> alloc_n(OwnerId o, std::size_t n) {
    std::vector<BufIndex> out(n);
    EXPECT_EQ(pool->alloc_batch(o, out), n);
    return out;
  }
  void free_all(OwnerId o, const std::vector<BufIndex>& bufs) { EXPECT_FALSE(pool->free_batch(o, bufs)); }

  std::vector<std::uint32_t> setups, teardowns;

 private:
  static Arena make_arena(std::size_t bytes) {
    const RegionSpec spec{"buffers", bytes};
    auto a = Arena::create("pool_test", std::span(&spec, 1));
    EXPECT_TRUE(a);
    return std::move(*a);
  }
  Arena arena_;  // declared before the pool: outlives it

 public:
  std::optional<PacketPool> pool;
};

const std::error_code kEinval = std::make_error_code(std::errc::invalid_argument);
const std::error_code kEnobufs = std::make_error_code(std::errc::no_buffer_space);

// --- Creation and owners -------------------------------------------------

TEST(PacketPool, RejectsBadConfigs) {
  Harness h;  // for its memory
  auto m = h.memory();
  auto rejects = [&](PoolConfig c, std::span<std::byte> mem) {
    auto p = PacketPool::create(c, mem);
    return !p && p.error() == kEinval;
  };
  PoolConfig c = config();
  c.buffer_size = 0;
  EXPECT_TRUE(rejects(c, m));
  c = config();
  c.buffer_size = kSegmentBytes + 1;
  EXPECT_TRUE(rejects(c, m));
  c = config();
  c.segment_bytes = kSegmentBytes + 64;  // not whole pages
  EXPECT_TRUE(rejects(c, m));
  c.segment_bytes = 0;
  EXPECT_TRUE(rejects(c, m));
  c = config(0);
  EXPECT_TRUE(rejects(c, m));
  c = config(PacketPool::kMaxSegments + 1);
  EXPECT_TRUE(rejects(c, m));
  c = config();
  c.idle_period = 0ns;
  EXPECT_TRUE(rejects(c, m));
  c = config();
  c.buffer_size = 1;  // more buffers than a BufIndex can number
  c.segment_bytes = std::size_t{1} << 31;
  c.max_segments = 4;
  EXPECT_TRUE(rejects(c, m));
  EXPECT_TRUE(rejects(config(5), m));                     // memory too small for 5 segments
  EXPECT_TRUE(rejects(config(), m.first(m.size() - 1)));  // one byte short
  EXPECT_TRUE(rejects(config(1), m.subspan(64)));         // not page-aligned
  EXPECT_TRUE(rejects(config(), {}));
  // The memory may be larger than needed.
  auto ok = PacketPool::create(config(2), m);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->buffers_max(), 2 * kPerSegment);
  EXPECT_EQ(ok->buffers_per_segment(), kPerSegment);
  EXPECT_EQ(ok->segments_active(), 0u);  // nothing set up until needed
  EXPECT_EQ(ok->buffers_capacity(), 0u);
}

TEST(PacketPool, AddOwnerChecksItsConfig) {
  Harness h;  // 32 buffers
  auto bad = h->add_owner({0, 0});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), kEinval);
  bad = h->add_owner({9, 8});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), kEinval);
  auto a = h->add_owner({20, 32});
  ASSERT_TRUE(a);
  auto b = h->add_owner({13, 32});  // floors would exceed the 32 buffers
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), std::make_error_code(std::errc::no_space_on_device));
  b = h->add_owner({12, 32});
  ASSERT_TRUE(b);
  EXPECT_EQ(h->owner_count(), 2u);
  EXPECT_EQ(h->working_set(*a), 20u);
  EXPECT_FALSE(h->remove_owner(*a));
  EXPECT_FALSE(h->remove_owner(*b));
  EXPECT_EQ(h->owner_count(), 0u);
}

TEST(PacketPool, RemovedOwnerIdStaysInvalidAfterItsSlotIsReused) {
  Harness h;
  const OwnerId old = h.add_owner(0, 8);
  ASSERT_FALSE(h->remove_owner(old));
  EXPECT_FALSE(h->has_owner(old));
  const OwnerId fresh = h.add_owner(0, 8);  // takes the same slot
  EXPECT_NE(fresh, old);
  auto r = h->alloc(old);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kEinval);
  EXPECT_EQ(h->remove_owner(old), kEinval);
  auto buf = h->alloc(fresh);
  ASSERT_TRUE(buf);
  EXPECT_EQ(h->free(old, *buf), kEinval);
  EXPECT_EQ(h->in_use(old), 0u);
  EXPECT_EQ(h->in_use(fresh), 1u);
  EXPECT_EQ(h->alloc_batch(OwnerId{}, std::span<BufIndex>()), 0u);
  EXPECT_FALSE(h->free(fresh, *buf));
}

TEST(PacketPool, RemoveOwnerRefusedWhileItHoldsBuffers) {
  Harness h;
  const OwnerId a = h.add_owner(4, 16);
  auto bufs = h.alloc_n(a, 5);
  EXPECT_EQ(h->remove_owner(a), std::make_error_code(std::errc::device_or_resource_busy));
  EXPECT_TRUE(h->has_owner(a));
  EXPECT_EQ(h->release_all(a), 5u);
  EXPECT_EQ(h->in_use(), 0u);
  EXPECT_EQ(buffers_in_use_all_pools(), 0);
  EXPECT_FALSE(h->remove_owner(a));
}

// --- Segments and hooks --------------------------------------------------

TEST(PacketPool, SetUpHookRunsOncePerSegmentNotPerBuffer) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  auto first = h.alloc_n(a, kPerSegment);  // exactly one segment's worth
  EXPECT_EQ(h.setups, (std::vector<std::uint32_t>{0}));
  EXPECT_EQ(h->segments_active(), 1u);
  EXPECT_EQ(h->buffers_capacity(), kPerSegment);
  auto more = h.alloc_n(a, 1);  // the first segment is full: a second one
  EXPECT_EQ(h.setups, (std::vector<std::uint32_t>{0, 1}));
  auto rest = h.alloc_n(a, 2 * kPerSegment - 1);  // fills segments 1 and 2
  EXPECT_EQ(h.setups, (std::vector<std::uint32_t>{0, 1, 2}));
  EXPECT_EQ(h->segments_active(), 3u);
  EXPECT_EQ(h->segments_set_up(), 3u);
  EXPECT_TRUE(h.teardowns.empty());
  h.free_all(a, first);
  h.free_all(a, more);
  h.free_all(a, rest);
  // Freeing returns no segment by itself: only tick() does.
  EXPECT_EQ(h->segments_active(), 3u);
  auto again = h.alloc_n(a, 3 * kPerSegment);  // reuses the segments, no new set-up
  EXPECT_EQ(h.setups.size(), 3u);
  h.free_all(a, again);
  h.pool.reset();  // destruction tears down what is still in use
  EXPECT_EQ(h.teardowns, (std::vector<std::uint32_t>{0, 1, 2}));
}

TEST(PacketPool, AllocationPacksIntoTheLowestSegment) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  auto bufs = h.alloc_n(a, 2 * kPerSegment);
  EXPECT_EQ(bufs[0], 0u);  // lowest buffer first
  EXPECT_EQ(bufs[kPerSegment], kPerSegment);
  EXPECT_FALSE(h->free(a, bufs[3]));
  EXPECT_FALSE(h->free(a, bufs[kPerSegment + 3]));
  auto one = h->alloc(a);
  ASSERT_TRUE(one);
  EXPECT_EQ(*one / kPerSegment, 0u);  // segment 0 first, though 1 was freed into last
  EXPECT_FALSE(h->free(a, *one));
  bufs.erase(bufs.begin() + kPerSegment + 3);
  bufs.erase(bufs.begin() + 3);
  h.free_all(a, bufs);
}

TEST(PacketPool, EmptySegmentsAreReleasedAsWorkingSetsShrink) {
  Harness h;
  const OwnerId a = h.add_owner(8, 64);
  auto bufs = h.alloc_n(a, 24);  // W: 8 -> 12 -> 18 -> 27
  ASSERT_EQ(h->working_set(a), 27u);
  ASSERT_EQ(h->segments_active(), 3u);
  for (BufIndex b : bufs) std::ranges::fill(h->buffer(b), std::byte{0xab});
  h.free_all(a, bufs);

  // W shrinks by a quarter every 2 s; a segment goes once W no longer needs it.
  h->tick(0s);  // starts the idle period
  h->tick(2s);
  EXPECT_EQ(h->working_set(a), 21u);  // needs 3 segments still
  EXPECT_TRUE(h.teardowns.empty());
  h->tick(4s);
  EXPECT_EQ(h->working_set(a), 16u);  // 2 segments: the highest empty one goes
  EXPECT_EQ(h.teardowns, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(h->segments_active(), 2u);
  EXPECT_EQ(h->buffers_capacity(), 2 * kPerSegment);
  // Its pages went back to the system: the memfd reads zeros there now.
  for (std::byte b : h.memory().subspan(2 * kSegmentBytes, kSegmentBytes)) ASSERT_EQ(b, std::byte{0});
  EXPECT_EQ(h.memory()[0], std::byte{0xab});  // segment 0 kept its pages
  h->tick(6s);
  EXPECT_EQ(h->working_set(a), 12u);
  h->tick(8s);
  EXPECT_EQ(h->working_set(a), 9u);
  EXPECT_EQ(h->segments_active(), 2u);
  h->tick(10s);
  EXPECT_EQ(h->working_set(a), 8u);  // 9 - 2 = 7, held up by the floor
  EXPECT_EQ(h.teardowns, (std::vector<std::uint32_t>{2, 1}));
  h->tick(12s);
  h->tick(30s);
  EXPECT_EQ(h->segments_active(), 1u);  // the floor's segment stays
  EXPECT_EQ(h->segments_released(), 2u);

  // A released segment is set up again when needed.
  auto again = h.alloc_n(a, 9);
  EXPECT_EQ(h.setups, (std::vector<std::uint32_t>{0, 1, 2, 1}));
  h.free_all(a, again);
}

TEST(PacketPool, SegmentsInUseAreNeverReleased) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  auto bufs = h.alloc_n(a, 3 * kPerSegment);
  // Keep one buffer in the top segment, free the rest, and let W drop.
  const BufIndex kept = bufs.back();
  bufs.pop_back();
  h.free_all(a, bufs);
  for (int s = 0; s <= 40; s += 2) h->tick(std::chrono::seconds(s));
  EXPECT_EQ(h->working_set(a), 3u);  // 28 -> 21 -> ... -> 4 -> 3; 3 / 4 rounds to no shrink
  EXPECT_EQ(h->segments_active(), 1u);
  EXPECT_EQ(h.teardowns, (std::vector<std::uint32_t>{1, 0}));  // not segment 2
  EXPECT_EQ(h->owner_of(kept), a);
  EXPECT_FALSE(h->free(a, kept));
}

TEST(PacketPool, KeptSegmentsAreNeverReleasedButWorkingSetsStillShrink) {
  Harness h;
  const OwnerId a = h.add_owner(8, 64);
  auto bufs = h.alloc_n(a, 24);  // 3 segments
  for (BufIndex b : bufs) std::ranges::fill(h->buffer(b), std::byte{0xcd});
  h.free_all(a, bufs);
  h->keep_segments();  // as an AF_XDP link does once the UMEM is registered
  EXPECT_TRUE(h->keeps_segments());
  for (int s = 0; s <= 40; s += 2) h->tick(std::chrono::seconds(s));
  EXPECT_EQ(h->working_set(a), 8u);
  EXPECT_EQ(h->segments_active(), 3u);
  EXPECT_TRUE(h.teardowns.empty());
  EXPECT_EQ(h->segments_released(), 0u);
  // The pages stayed: the bytes written are still there.
  EXPECT_EQ(h.memory()[2 * kSegmentBytes], std::byte{0xcd});
  EXPECT_EQ(h->memory().data(), h.memory().data());
  EXPECT_EQ(h->segment_bytes(), kSegmentBytes);
}

// --- Ownership checks ----------------------------------------------------

TEST(PacketPool, ForeignFreeIsRefusedAndChangesNothing) {
  Harness h;
  const OwnerId a = h.add_owner(4, 16);
  const OwnerId b = h.add_owner(4, 16);
  auto x = h->alloc(a);
  ASSERT_TRUE(x);
  const auto frees = h->frees();
  EXPECT_EQ(h->free(b, *x), kEinval);
  EXPECT_EQ(h->in_use(), 1u);
  EXPECT_EQ(h->in_use(a), 1u);
  EXPECT_EQ(h->in_use(b), 0u);
  EXPECT_EQ(h->owner_of(*x), a);
  EXPECT_EQ(h->frees(), frees);
  EXPECT_EQ(h->invalid_requests(), 1u);
  EXPECT_EQ(buffers_in_use_all_pools(), 1);
  // The buffer was not put back: the next allocation gets another one.
  auto y = h->alloc(b);
  ASSERT_TRUE(y);
  EXPECT_NE(*y, *x);
  EXPECT_FALSE(h->free(a, *x));
  EXPECT_FALSE(h->free(b, *y));
}

TEST(PacketPool, DoubleFreeIsRefused) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  auto x = h->alloc(a);
  ASSERT_TRUE(x);
  EXPECT_FALSE(h->free(a, *x));
  EXPECT_EQ(h->free(a, *x), kEinval);
  EXPECT_EQ(h->in_use(), 0u);
  EXPECT_EQ(h->frees(), 1u);
  // The free list holds it once: allocating everything gives distinct buffers.
  auto all = h.alloc_n(a, 32);
  EXPECT_EQ(std::set<BufIndex>(all.begin(), all.end()).size(), 32u);
  EXPECT_FALSE(h->alloc(a));
  h.free_all(a, all);
}

TEST(PacketPool, OutOfRangeIndexIsRefused) {
  Harness h;
  const OwnerId a = h.add_owner(0, 8);
  auto x = h->alloc(a);
  ASSERT_TRUE(x);
  for (BufIndex bad : {BufIndex{32}, BufIndex{33}, BufIndex{0xffffffff}}) {
    EXPECT_EQ(h->free(a, bad), kEinval);
    EXPECT_EQ(h->transfer(a, a, bad), kEinval);
    EXPECT_TRUE(h->buffer(bad).empty());
    EXPECT_FALSE(h->owner_of(bad));
  }
  // In range but in a segment not yet in use: held by nobody.
  EXPECT_EQ(h->free(a, 31), kEinval);
  EXPECT_EQ(h->in_use(), 1u);
  EXPECT_FALSE(h->free(a, *x));
}

TEST(PacketPool, FreeBatchIsAllOrNothing) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  const OwnerId b = h.add_owner(0, 32);
  auto mine = h.alloc_n(a, 6);
  auto theirs = h.alloc_n(b, 1);
  const std::vector<std::vector<BufIndex>> bad = {
      {mine[0], mine[1], theirs[0]},  // a foreign buffer at the end
      {mine[0], mine[1], mine[0]},    // the same buffer twice
      {mine[2], 1000},                // out of range
  };
  for (const auto& batch : bad) {
    EXPECT_EQ(h->free_batch(a, batch), kEinval);
    EXPECT_EQ(h->in_use(a), 6u);
    for (BufIndex i : mine) EXPECT_EQ(h->owner_of(i), a);
    EXPECT_EQ(h->owner_of(theirs[0]), b);
  }
  EXPECT_FALSE(h->free_batch(a, std::span<const BufIndex>()));
  h.free_all(a, mine);
  h.free_all(b, theirs);
  EXPECT_EQ(h->in_use(), 0u);
  EXPECT_EQ(buffers_in_use_all_pools(), 0);
}

TEST(PacketPool, TransferHandsABufferToAnotherOwner) {
  Harness h;
  const OwnerId app = h.add_owner(2, 4);
  const OwnerId daemon = h.add_owner(2, 3);
  auto bufs = h.alloc_n(app, 4);
  EXPECT_FALSE(h->transfer(app, app, bufs[0]));  // to oneself, even at the ceiling: a no-op
  EXPECT_EQ(h->in_use(app), 4u);
  EXPECT_FALSE(h->transfer(app, daemon, bufs[0]));
  EXPECT_EQ(h->owner_of(bufs[0]), daemon);
  EXPECT_EQ(h->in_use(app), 3u);
  EXPECT_EQ(h->in_use(daemon), 1u);
  EXPECT_EQ(h->in_use(), 4u);
  EXPECT_EQ(h->free(app, bufs[0]), kEinval);              // no longer the app's
  EXPECT_EQ(h->transfer(app, daemon, bufs[0]), kEinval);  // nor can it give it again
  EXPECT_FALSE(h->transfer(app, daemon, bufs[1]));
  EXPECT_FALSE(h->transfer(app, daemon, bufs[2]));  // the daemon's W grows 2 -> 3
  EXPECT_EQ(h->working_set(daemon), 3u);
  EXPECT_EQ(h->transfer(app, daemon, bufs[3]), kEnobufs);  // at its ceiling
  EXPECT_EQ(h->owner_of(bufs[3]), app);
  EXPECT_EQ(h->refused(), 1u);
  EXPECT_FALSE(h->free(app, bufs[3]));
  EXPECT_EQ(h->release_all(daemon), 3u);
  EXPECT_EQ(h->in_use(), 0u);
}

// --- Working sets --------------------------------------------------------

TEST(PacketPool, WorkingSetGrowsByHalfWhenDryUpToTheCeiling) {
  Harness h(config(16));  // 128 buffers
  const OwnerId a = h.add_owner(8, 100);
  std::vector<BufIndex> held;
  auto alloc_until = [&](std::size_t n) {
    while (held.size() < n) {
      auto r = h->alloc(a);
      ASSERT_TRUE(r);
      held.push_back(*r);
    }
  };
  alloc_until(8);
  EXPECT_EQ(h->working_set(a), 8u);  // not dry until it asks for a ninth
  const std::vector<std::uint32_t> expected = {12, 18, 27, 40, 60, 90, 100};
  for (std::uint32_t w : expected) {
    alloc_until(held.size() + 1);
    EXPECT_EQ(h->working_set(a), w);
    alloc_until(w);
    EXPECT_EQ(h->working_set(a), w);
  }
  auto refused = h->alloc(a);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), kEnobufs);
  EXPECT_EQ(h->refused(), 1u);
  EXPECT_EQ(h->in_use(a), 100u);
  EXPECT_EQ(h->allocs(), 100u);
  h.free_all(a, held);
}

TEST(PacketPool, ExhaustedPoolRefusesWithoutInflatingTheWorkingSet) {
  Harness h(config(2));  // 16 buffers
  const OwnerId a = h.add_owner(16, 64);
  auto bufs = h.alloc_n(a, 16);
  std::array<BufIndex, 4> more{};
  EXPECT_EQ(h->alloc_batch(a, more), 0u);
  EXPECT_EQ(h->working_set(a), 16u);
  EXPECT_EQ(h->refused(), 1u);
  EXPECT_EQ(h->release_all(a), 16u);
  // And an owner at its ceiling is refused even when the pool has room.
  const OwnerId small = h.add_owner(0, 2);
  auto two = h.alloc_n(small, 2);
  auto r = h->alloc(small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kEnobufs);
  std::array<BufIndex, 3> batch{};
  EXPECT_EQ(h->alloc_batch(small, batch), 0u);
  h.free_all(small, two);
}

// Puts owner `a` (floor 8) at W = 27 holding `hold` buffers.
std::vector<BufIndex> grow_to_27(Harness& h, OwnerId a, std::size_t hold) {
  auto bufs = h.alloc_n(a, 19);  // 8 -> 12 -> 18 -> 27
  EXPECT_EQ(h->working_set(a), 27u);
  if (hold > bufs.size()) {
    auto extra = h.alloc_n(a, hold - bufs.size());
    bufs.insert(bufs.end(), extra.begin(), extra.end());
  }
  while (bufs.size() > hold) {
    EXPECT_FALSE(h->free(a, bufs.back()));
    bufs.pop_back();
  }
  return bufs;
}

TEST(PacketPool, WorkingSetShrinksByAQuarterAfterTwoIdleSeconds) {
  Harness h;
  const OwnerId a = h.add_owner(8, 32);
  auto bufs = grow_to_27(h, a, 20);  // 7 idle: 4 * 7 >= 27
  h->tick(0s);
  h->tick(1900ms);
  EXPECT_EQ(h->working_set(a), 27u);  // not before the period ends
  h->tick(2s);
  EXPECT_EQ(h->working_set(a), 21u);  // 27 - 27 / 4
  h->tick(3s);
  EXPECT_EQ(h->working_set(a), 21u);  // a new period started at 2 s
  h->tick(4s);                        // 21 - 20 = 1 idle: less than a quarter
  EXPECT_EQ(h->working_set(a), 21u);
  h.free_all(a, bufs);
}

TEST(PacketPool, WorkingSetKeptWhenLessThanAQuarterSatIdle) {
  Harness h;
  const OwnerId a = h.add_owner(8, 32);
  auto bufs = grow_to_27(h, a, 21);  // 6 idle: 4 * 6 < 27
  h->tick(0s);
  h->tick(2s);
  EXPECT_EQ(h->working_set(a), 27u);
  h.free_all(a, bufs);
}

TEST(PacketPool, WorkingSetKeptWhenAQuarterWasIdleOnlyPartOfThePeriod) {
  Harness h;
  const OwnerId a = h.add_owner(8, 32);
  auto bufs = grow_to_27(h, a, 20);  // 7 idle at both ends of the period...
  h->tick(0s);
  auto extra = h->alloc(a);  // ... but only 6 for a moment in between
  ASSERT_TRUE(extra);
  EXPECT_FALSE(h->free(a, *extra));
  h->tick(1s);
  h->tick(2s);
  EXPECT_EQ(h->working_set(a), 27u);  // the minimum over the period counts
  h->tick(4s);                        // this period stayed at 7 idle
  EXPECT_EQ(h->working_set(a), 21u);
  h.free_all(a, bufs);
}

TEST(PacketPool, WorkingSetNeverShrinksBelowTheFloor) {
  Harness h;
  const OwnerId a = h.add_owner(8, 32);
  const OwnerId b = h.add_owner(10, 32);
  auto bufs = h.alloc_n(a, 9);  // W 12
  h.free_all(a, bufs);
  for (int s = 0; s <= 20; s += 2) h->tick(std::chrono::seconds(s));
  EXPECT_EQ(h->working_set(a), 8u);  // 12 -> 9 -> 8 (not 7)
  EXPECT_EQ(h->working_set(b), 10u);
}

TEST(PacketPool, ALateTickEndsOnePeriodOnly) {
  Harness h;
  const OwnerId a = h.add_owner(8, 64);
  auto bufs = h.alloc_n(a, 19);  // W 27
  h.free_all(a, bufs);
  h->tick(0s);
  h->tick(60s);
  EXPECT_EQ(h->working_set(a), 21u);
}

TEST(PacketPool, IdlePeriodIsConfigurable) {
  PoolConfig c = config();
  c.idle_period = 500ms;
  Harness h(c);
  const OwnerId a = h.add_owner(8, 64);
  auto bufs = h.alloc_n(a, 19);
  h.free_all(a, bufs);
  h->tick(0s);
  h->tick(499ms);
  EXPECT_EQ(h->working_set(a), 27u);
  h->tick(500ms);
  EXPECT_EQ(h->working_set(a), 21u);
}

// --- Buffer memory -------------------------------------------------------

// Segments that buffers fill exactly: buffer i starts i buffers in, across
// segment boundaries, and index_of() finds it again.
TEST(PacketPool, DenseSegmentsPlaceBuffersEndToEnd) {
  Harness h(config(3));
  const OwnerId a = h.add_owner(0, 64);
  auto bufs = h.alloc_n(a, 3 * kPerSegment);
  for (BufIndex i : bufs) {
    auto s = h->buffer(i);
    ASSERT_EQ(s.size(), kBufferSize);
    EXPECT_EQ(s.data(), h.memory().data() + std::size_t{i} * kBufferSize);
    EXPECT_EQ(h->index_of(s.data() + kBufferSize - 1), i);
  }
  EXPECT_TRUE(h->buffer(static_cast<BufIndex>(3 * kPerSegment)).empty());  // past the last
  h.free_all(a, bufs);
}

TEST(PacketPool, BuffersAreDisjointAndInsideTheMemoryGiven) {
  PoolConfig c = config(3);
  c.buffer_size = kSegmentBytes / 5 + 8;  // 4 per segment and a tail left over
  Harness h(c);
  ASSERT_EQ(h->buffers_per_segment(), 4u);
  const OwnerId a = h.add_owner(0, 64);
  auto bufs = h.alloc_n(a, 12);
  EXPECT_FALSE(h->alloc(a));
  const std::byte* lo = h.memory().data();
  const std::byte* hi = lo + 3 * kSegmentBytes;
  std::vector<std::span<std::byte>> spans;
  for (BufIndex i : bufs) {
    auto s = h->buffer(i);
    ASSERT_EQ(s.size(), c.buffer_size);
    EXPECT_GE(s.data(), lo);
    EXPECT_LE(s.data() + s.size(), hi);
    // Within its own segment.
    EXPECT_EQ(static_cast<std::size_t>(s.data() - lo) / kSegmentBytes, i / 4);
    EXPECT_EQ(static_cast<std::size_t>(s.data() + s.size() - 1 - lo) / kSegmentBytes, i / 4);
    EXPECT_EQ(h->index_of(s.data()), i);
    EXPECT_EQ(h->index_of(s.data() + s.size() - 1), i);
    spans.push_back(s);
    std::ranges::fill(s, std::byte(static_cast<std::uint8_t>(i + 1)));
  }
  std::ranges::sort(spans, {}, [](auto s) { return s.data(); });
  for (std::size_t k = 1; k < spans.size(); ++k) {
    EXPECT_LE(spans[k - 1].data() + spans[k - 1].size(), spans[k].data());
  }
  for (BufIndex i : bufs) {  // nobody wrote over anybody
    for (std::byte b : h->buffer(i)) ASSERT_EQ(b, std::byte(static_cast<std::uint8_t>(i + 1)));
  }
  // Pointers outside every buffer: a segment's tail, before, and past the end.
  EXPECT_FALSE(h->index_of(lo + 4 * c.buffer_size));
  EXPECT_FALSE(h->index_of(lo + kSegmentBytes - 1));
  EXPECT_EQ(h->index_of(lo + kSegmentBytes), 4u);
  EXPECT_FALSE(h->index_of(hi));
  EXPECT_FALSE(h->index_of(lo - 1));
  h.free_all(a, bufs);
}

TEST(PacketPool, InUseReturnsToZero) {
  Harness h;
  const OwnerId a = h.add_owner(4, 32);
  const OwnerId b = h.add_owner(4, 32);
  for (int round = 0; round < 3; ++round) {
    auto x = h.alloc_n(a, 10);
    auto y = h.alloc_n(b, 7);
    EXPECT_EQ(h->in_use(), 17u);
    EXPECT_EQ(buffers_in_use_all_pools(), 17);
    h.free_all(a, x);
    EXPECT_EQ(h->in_use(a), 0u);
    EXPECT_EQ(h->in_use(), 7u);
    h.free_all(b, y);
  }
  EXPECT_EQ(h->in_use(), 0u);
  EXPECT_EQ(h->allocs(), h->frees());
  EXPECT_EQ(buffers_in_use_all_pools(), 0);
}

TEST(PacketPool, InUseOfAPoolOnAnotherThreadIsCounted) {
  // Each pool keeps its own count (no locked instruction per buffer);
  // buffers_in_use_all_pools() still sums every live pool of the process.
  const auto before = buffers_in_use_all_pools();
  std::promise<void> allocated, checked;
  auto checked_f = checked.get_future();
  std::thread t([&] {
    Harness h;
    const OwnerId a = h.add_owner(0, 8);
    auto bufs = h.alloc_n(a, 5);
    allocated.set_value();
    checked_f.wait();
    h.free_all(a, bufs);
  });
  allocated.get_future().wait();
  EXPECT_EQ(buffers_in_use_all_pools(), before + 5);
  checked.set_value();
  t.join();
  EXPECT_EQ(buffers_in_use_all_pools(), before);
}

TEST(PacketPool, MovedPoolKeepsItsStateAndTearsDownOnce) {
  Harness h;
  const OwnerId a = h.add_owner(0, 32);
  auto bufs = h.alloc_n(a, 9);
  const auto leaked_before = buffers_leaked_total();
  PacketPool moved(std::move(*h.pool));
  EXPECT_EQ(moved.in_use(a), 9u);
  EXPECT_EQ(moved.segments_active(), 2u);
  EXPECT_EQ(h->in_use(), 0u);  // the moved-from pool holds nothing
  EXPECT_FALSE(moved.free_batch(a, bufs));
  h.pool.reset();
  EXPECT_TRUE(h.teardowns.empty());
  EXPECT_EQ(buffers_leaked_total(), leaked_before);
  { PacketPool gone(std::move(moved)); }
  EXPECT_EQ(h.teardowns, (std::vector<std::uint32_t>{0, 1}));
}

TEST(PacketPool, DestroyedWithBuffersOutReportsThemLeaked) {
  // A deliberate leak would fail this program's leak check, so it happens in
  // a child, which reports what accounting saw through its exit status.
  const pid_t pid = fork();
  if (pid == 0) {
    const auto leaked_before = buffers_leaked_total();
    const auto in_use_before = buffers_in_use_all_pools();
    int rc = 0;
    {
      Harness h;
      auto a = h->add_owner({0, 8});
      std::array<BufIndex, 3> bufs{};
      if (!a || h->alloc_batch(*a, bufs) != 3) _exit(10);
      if (buffers_in_use_all_pools() != in_use_before + 3) rc = 11;
    }
    if (buffers_leaked_total() != leaked_before + 3) rc = 12;
    if (buffers_in_use_all_pools() != in_use_before) rc = 13;
    _exit(rc);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(PacketPool, PoolOverPrivateMemoryAlsoReleasesSegments) {
  // MADV_REMOVE does not apply to private memory; the pool falls back.
  const std::size_t bytes = 2 * kSegmentBytes;
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  {
    auto p = PacketPool::create(config(2), std::span(static_cast<std::byte*>(mem), bytes));
    ASSERT_TRUE(p);
    const OwnerId a = *p->add_owner({0, 16});
    std::array<BufIndex, 9> bufs{};
    ASSERT_EQ(p->alloc_batch(a, bufs), 9u);
    std::ranges::fill(p->buffer(8), std::byte{7});
    ASSERT_FALSE(p->free_batch(a, bufs));
    for (int s = 0; s <= 40; s += 2) p->tick(std::chrono::seconds(s));
    EXPECT_EQ(p->segments_active(), 1u);       // W settles at 3: one segment
    EXPECT_EQ(p->buffer(8)[0], std::byte{0});  // DONTNEED gives zero pages back
  }
  munmap(mem, bytes);
}

}  // namespace
}  // namespace usnet::mem
