#include "usnet/link/memory_link.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include "usnet/mem/arena.hpp"

namespace usnet::link {
namespace {

using namespace std::chrono_literals;

// A small pool over private page-aligned memory: 2 segments of 8 buffers.
class TestPool {
 public:
  explicit TestPool(std::uint32_t max_segments = 2) {
    const std::size_t page = mem::Arena::page_size();
    segment_ = std::max<std::size_t>(page, 16384);
    bytes_ = segment_ * max_segments;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    memory_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = segment_ / 8;
    c.segment_bytes = segment_;
    c.max_segments = max_segments;
    auto pool = mem::PacketPool::create(c, std::span(memory_, bytes_));
    EXPECT_TRUE(pool);
    pool_.emplace(std::move(*pool));
  }
  ~TestPool() {
    pool_.reset();
    ::munmap(memory_, bytes_);
  }
  TestPool(const TestPool&) = delete;
  TestPool& operator=(const TestPool&) = delete;

  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }
  mem::OwnerId owner(std::uint32_t ceiling = 16) {
    auto id = pool_->add_owner({0, ceiling});
    EXPECT_TRUE(id);
    return *id;
  }

 private:
  std::size_t segment_ = 0, bytes_ = 0;
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

LinkInfo info(const char* name, std::uint32_t offloads = 0) {
  LinkInfo i;
  i.name = name;
  i.mac = wire::MacAddr{{0x02, 0, 0, 0, 0, 1}};
  i.mtu = 1500;
  i.offloads = offloads;
  return i;
}

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

// Allocates a buffer for `owner` holding `data` at `offset`.
Frame make_frame(mem::PacketPool& pool, mem::OwnerId owner, const std::vector<std::byte>& data,
                 std::uint16_t offset = 0) {
  auto index = pool.alloc(owner);
  EXPECT_TRUE(index);
  std::copy(data.begin(), data.end(), pool.buffer(*index).begin() + offset);
  return Frame{*index, static_cast<std::uint32_t>(data.size()), offset, 0};
}

std::vector<std::byte> frame_bytes(mem::PacketPool& pool, const Frame& f) {
  auto b = pool.buffer(f.buffer).subspan(f.offset, f.length);
  return {b.begin(), b.end()};
}

TEST(MemoryLink, HasNoFdAndReportsItsInfo) {
  TestPool pool;
  MemoryLink link(*pool, pool.owner(), info("mem:a", Offload::kNoChecksums), 4);
  EXPECT_EQ(link.wait_fd(), -1);
  EXPECT_EQ(link.next_deadline(), Nanos::max());
  EXPECT_EQ(link.info().name, "mem:a");
  EXPECT_EQ(link.info().mtu, 1500u);
  EXPECT_EQ(link.info().offloads, Offload::kNoChecksums);
  EXPECT_EQ(link.queue_limit(), 4u);
}

TEST(MemoryLink, InjectedFramesArriveInOrderInBuffersOfTheOwner) {
  TestPool pool;
  auto owner = pool.owner();
  MemoryLink link(*pool, owner, info("mem:a"), 8);
  ASSERT_TRUE(link.inject_rx(bytes({1, 2, 3})));
  ASSERT_TRUE(link.inject_rx(bytes({4, 5})));
  EXPECT_EQ(link.rx_pending(), 2u);
  EXPECT_EQ(pool->in_use(owner), 2u);

  std::array<Frame, 4> out{};
  ASSERT_EQ(link.rx_burst(out, 0ns), 2u);
  EXPECT_EQ(frame_bytes(*pool, out[0]), bytes({1, 2, 3}));
  EXPECT_EQ(frame_bytes(*pool, out[1]), bytes({4, 5}));
  EXPECT_EQ(pool->owner_of(out[0].buffer), owner);
  EXPECT_EQ(link.counters().rx_frames, 2u);
  EXPECT_EQ(link.counters().rx_bytes, 5u);
  EXPECT_EQ(link.rx_burst(out, 0ns), 0u);
  EXPECT_FALSE(pool->free(owner, out[0].buffer));
  EXPECT_FALSE(pool->free(owner, out[1].buffer));
}

TEST(MemoryLink, RxBurstStopsAtTheSpanSize) {
  TestPool pool;
  auto owner = pool.owner();
  MemoryLink link(*pool, owner, info("mem:a"), 8);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(link.inject_rx(bytes({i})));
  std::array<Frame, 2> out{};
  ASSERT_EQ(link.rx_burst(out, 0ns), 2u);
  EXPECT_EQ(frame_bytes(*pool, out[1]), bytes({1}));
  for (auto& f : out) EXPECT_FALSE(pool->free(owner, f.buffer));
  ASSERT_EQ(link.rx_burst(out, 0ns), 1u);
  EXPECT_EQ(frame_bytes(*pool, out[0]), bytes({2}));
  EXPECT_FALSE(pool->free(owner, out[0].buffer));
}

TEST(MemoryLink, InjectRefusesWhenQueueFullPoolRefusesOrFrameTooLong) {
  TestPool pool;
  auto owner = pool.owner(/*ceiling=*/3);
  MemoryLink link(*pool, owner, info("mem:a"), 2);
  EXPECT_TRUE(link.inject_rx(bytes({1})));
  EXPECT_TRUE(link.inject_rx(bytes({2})));
  EXPECT_FALSE(link.inject_rx(bytes({3})));  // queue full
  EXPECT_EQ(link.counters().rx_no_buffer, 1u);
  EXPECT_EQ(pool->in_use(owner), 2u);

  // The owner's ceiling of 3 refuses the pool's fourth buffer.
  auto held = pool->alloc(owner);
  ASSERT_TRUE(held);
  std::array<Frame, 1> out{};
  ASSERT_EQ(link.rx_burst(out, 0ns), 1u);  // room in the queue again, but not in the pool
  EXPECT_FALSE(link.inject_rx(bytes({4})));
  EXPECT_EQ(link.counters().rx_no_buffer, 2u);
  EXPECT_FALSE(pool->free(owner, *held));
  EXPECT_FALSE(pool->free(owner, out[0].buffer));

  std::vector<std::byte> huge(pool->buffer_size() + 1);
  EXPECT_FALSE(link.inject_rx(huge));
  EXPECT_EQ(link.counters().rx_too_long, 1u);
  std::vector<std::byte> exact(pool->buffer_size(), std::byte{7});
  EXPECT_TRUE(link.inject_rx(exact));
}  // the queued frames are freed by the destructor: the leak check passes

TEST(MemoryLink, TransmittedFramesArePoppedInOrderAndFreed) {
  TestPool pool;
  auto owner = pool.owner();
  MemoryLink link(*pool, owner, info("mem:a"), 8);
  std::array<Frame, 2> frames = {make_frame(*pool, owner, bytes({9, 8, 7}), 14),
                                 make_frame(*pool, owner, bytes({6}))};
  ASSERT_EQ(link.tx_burst(frames, 0ns), 2u);
  EXPECT_EQ(link.tx_pending(), 2u);
  EXPECT_EQ(link.counters().tx_frames, 2u);
  EXPECT_EQ(link.counters().tx_bytes, 4u);
  EXPECT_EQ(link.pop_tx(), bytes({9, 8, 7}));  // only [offset, offset + length)
  EXPECT_EQ(pool->in_use(owner), 1u);
  EXPECT_EQ(link.pop_tx(), bytes({6}));
  EXPECT_EQ(link.pop_tx(), std::nullopt);
  EXPECT_EQ(link.tx_pending(), 0u);
  EXPECT_EQ(pool->in_use(owner), 0u);
}

TEST(MemoryLink, TxBurstTakesUpToTheQueueLimit) {
  TestPool pool;
  auto owner = pool.owner();
  MemoryLink link(*pool, owner, info("mem:a"), 2);
  std::array<Frame, 3> frames = {make_frame(*pool, owner, bytes({1})), make_frame(*pool, owner, bytes({2})),
                                 make_frame(*pool, owner, bytes({3}))};
  ASSERT_EQ(link.tx_burst(frames, 0ns), 2u);  // a prefix
  EXPECT_EQ(link.counters().tx_full, 1u);
  EXPECT_EQ(link.counters().tx_frames, 2u);
  EXPECT_EQ(pool->owner_of(frames[2].buffer), owner);  // still the caller's
  EXPECT_EQ(link.tx_burst(std::span(frames).subspan(2), 0ns), 0u);
  EXPECT_EQ(link.counters().tx_full, 2u);
  EXPECT_EQ(link.pop_tx(), bytes({1}));
  ASSERT_EQ(link.tx_burst(std::span(frames).subspan(2), 0ns), 1u);
  EXPECT_EQ(link.pop_tx(), bytes({2}));
  EXPECT_EQ(link.pop_tx(), bytes({3}));
}

TEST(MemoryLink, FrameOutsideItsBufferIsTakenFreedAndCounted) {
  TestPool pool;
  auto owner = pool.owner();
  MemoryLink link(*pool, owner, info("mem:a"), 4);
  Frame bad = make_frame(*pool, owner, bytes({1}));
  bad.offset = 10;
  bad.length = static_cast<std::uint32_t>(pool->buffer_size());
  ASSERT_EQ(link.tx_burst(std::span(&bad, 1), 0ns), 1u);
  EXPECT_EQ(link.counters().tx_errors, 1u);
  EXPECT_EQ(link.counters().tx_frames, 0u);
  EXPECT_EQ(link.tx_pending(), 0u);
  EXPECT_EQ(pool->in_use(owner), 0u);
}

TEST(MemoryLink, DestructorFreesQueuedBuffers) {
  TestPool pool;
  auto owner = pool.owner();
  {
    MemoryLink link(*pool, owner, info("mem:a"), 8);
    ASSERT_TRUE(link.inject_rx(bytes({1})));
    Frame f = make_frame(*pool, owner, bytes({2}));
    ASSERT_EQ(link.tx_burst(std::span(&f, 1), 0ns), 1u);
    EXPECT_EQ(pool->in_use(owner), 2u);
  }
  EXPECT_EQ(pool->in_use(owner), 0u);
}

TEST(MemoryLink, ConnectedLinksMoveTheBufferItselfBetweenOwners) {
  TestPool pool;
  auto oa = pool.owner(), ob = pool.owner();
  MemoryLink a(*pool, oa, info("mem:a"), 8), b(*pool, ob, info("mem:b"), 8);
  MemoryLink::connect(a, b);
  EXPECT_TRUE(a.connected());
  EXPECT_TRUE(b.connected());

  Frame f = make_frame(*pool, oa, bytes({0xde, 0xad}), 2);
  const std::byte* where = pool->buffer(f.buffer).data();
  ASSERT_EQ(a.tx_burst(std::span(&f, 1), 0ns), 1u);
  EXPECT_EQ(a.tx_pending(), 0u);
  EXPECT_EQ(a.counters().tx_frames, 1u);
  EXPECT_EQ(pool->owner_of(f.buffer), ob);

  std::array<Frame, 4> out{};
  ASSERT_EQ(b.rx_burst(out, 0ns), 1u);
  EXPECT_EQ(out[0].buffer, f.buffer);  // zero copy: the same buffer
  EXPECT_EQ(pool->buffer(out[0].buffer).data(), where);
  EXPECT_EQ(out[0].offset, 2u);
  EXPECT_EQ(out[0].flags, 0u);
  EXPECT_EQ(frame_bytes(*pool, out[0]), bytes({0xde, 0xad}));
  EXPECT_EQ(b.counters().rx_frames, 1u);
  EXPECT_EQ(b.counters().rx_bytes, 2u);

  // And back the other way.
  ASSERT_EQ(b.tx_burst(std::span(out.data(), 1), 0ns), 1u);
  ASSERT_EQ(a.rx_burst(out, 0ns), 1u);
  EXPECT_EQ(out[0].buffer, f.buffer);
  EXPECT_EQ(pool->owner_of(f.buffer), oa);
  EXPECT_FALSE(pool->free(oa, out[0].buffer));
  EXPECT_EQ(pool->allocs(), 1u);  // one buffer did the whole round trip
}

TEST(MemoryLink, NoChecksumOffloadMarksReceivedFramesVerified) {
  TestPool pool;
  auto oa = pool.owner(), ob = pool.owner();
  MemoryLink a(*pool, oa, info("mem:a", Offload::kNoChecksums), 8), b(*pool, ob, info("mem:b"), 8);
  MemoryLink::connect(a, b);
  Frame f = make_frame(*pool, oa, bytes({1}));
  ASSERT_EQ(a.tx_burst(std::span(&f, 1), 0ns), 1u);
  std::array<Frame, 1> out{};
  ASSERT_EQ(b.rx_burst(out, 0ns), 1u);
  EXPECT_EQ(out[0].flags, FrameFlag::kChecksumsVerified);
  EXPECT_FALSE(pool->free(ob, out[0].buffer));
}

TEST(MemoryLink, FullPeerQueueLimitsTxBurst) {
  TestPool pool;
  auto oa = pool.owner(), ob = pool.owner();
  MemoryLink a(*pool, oa, info("mem:a"), 8), b(*pool, ob, info("mem:b"), 2);
  MemoryLink::connect(a, b);
  std::array<Frame, 3> frames = {make_frame(*pool, oa, bytes({1})), make_frame(*pool, oa, bytes({2})),
                                 make_frame(*pool, oa, bytes({3}))};
  ASSERT_EQ(a.tx_burst(frames, 0ns), 2u);
  EXPECT_EQ(a.counters().tx_full, 1u);
  EXPECT_EQ(b.rx_pending(), 2u);
  EXPECT_EQ(pool->owner_of(frames[2].buffer), oa);
  EXPECT_FALSE(pool->free(oa, frames[2].buffer));
}  // b's queued frames are freed as b's

TEST(MemoryLink, PeerAtItsCeilingCountsNoBufferAndTheFrameIsFreed) {
  TestPool pool;
  auto oa = pool.owner(), ob = pool.owner(/*ceiling=*/1);
  MemoryLink a(*pool, oa, info("mem:a"), 8), b(*pool, ob, info("mem:b"), 8);
  MemoryLink::connect(a, b);
  std::array<Frame, 2> frames = {make_frame(*pool, oa, bytes({1})), make_frame(*pool, oa, bytes({2}))};
  ASSERT_EQ(a.tx_burst(frames, 0ns), 2u);  // both sent ...
  EXPECT_EQ(a.counters().tx_frames, 2u);
  EXPECT_EQ(b.rx_pending(), 1u);  // ... one lost on arrival
  EXPECT_EQ(b.counters().rx_no_buffer, 1u);
  EXPECT_EQ(pool->in_use(oa), 0u);
}

TEST(MemoryLink, DestroyingOnePeerDisconnectsTheOther) {
  TestPool pool;
  auto oa = pool.owner(), ob = pool.owner();
  MemoryLink a(*pool, oa, info("mem:a"), 8);
  {
    MemoryLink b(*pool, ob, info("mem:b"), 8);
    MemoryLink::connect(a, b);
    Frame f = make_frame(*pool, oa, bytes({1}));
    ASSERT_EQ(a.tx_burst(std::span(&f, 1), 0ns), 1u);
  }  // b frees the frame it had received
  EXPECT_FALSE(a.connected());
  EXPECT_EQ(pool->in_use(ob), 0u);
  Frame f = make_frame(*pool, oa, bytes({5}));
  ASSERT_EQ(a.tx_burst(std::span(&f, 1), 0ns), 1u);  // now queued for pop_tx
  EXPECT_EQ(a.pop_tx(), bytes({5}));
}

TEST(MemoryLink, ReconnectingDropsTheOldPeer) {
  TestPool pool;
  MemoryLink a(*pool, pool.owner(), info("mem:a")), b(*pool, pool.owner(), info("mem:b")),
      c(*pool, pool.owner(), info("mem:c"));
  MemoryLink::connect(a, b);
  MemoryLink::connect(a, c);
  EXPECT_FALSE(b.connected());
  EXPECT_TRUE(c.connected());
  a.disconnect();
  EXPECT_FALSE(a.connected());
  EXPECT_FALSE(c.connected());
}

TEST(MemoryLinkDeathTest, ConnectingLinksOfDifferentPoolsAborts) {
  TestPool p1, p2;
  MemoryLink a(*p1, p1.owner(), info("mem:a")), b(*p2, p2.owner(), info("mem:b"));
  EXPECT_DEATH(MemoryLink::connect(a, b), "different pools");
}

}  // namespace
}  // namespace usnet::link
