// BufferChain: the pool-buffer byte queue behind TCP's send and receive
// buffers. Copying in and out across buffers, buffers appended without a
// copy, the collapse of small pieces and the bound it gives, the pool
// running dry, zero-copy pops, and every buffer back at the end.
#include "usnet/tcp/buffer_chain.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "net/net_test_util.hpp"

namespace usnet::tcp {
namespace {

using net::test::TestPool;
using Bytes = std::vector<std::byte>;

Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

Bytes gather(const BufferChain& c, std::size_t off, std::size_t len) {
  std::vector<std::span<const std::byte>> pieces(64);
  const std::size_t k = c.peek(off, len, pieces);
  Bytes out;
  for (std::size_t i = 0; i < k; ++i) out.insert(out.end(), pieces[i].begin(), pieces[i].end());
  return out;
}

// A pool buffer holding `data` at `offset`, as a received frame would.
mem::BufIndex filled(mem::PacketPool& pool, mem::OwnerId owner, std::span<const std::byte> data,
                     std::size_t offset) {
  auto b = pool.alloc(owner);
  EXPECT_TRUE(b);
  std::memcpy(pool.buffer(*b).data() + offset, data.data(), data.size());
  return *b;
}

struct Fixture : ::testing::Test {
  TestPool pool{8};  // 256 buffers of 2048 bytes
  mem::OwnerId owner = pool.add_owner();
  void TearDown() override { EXPECT_EQ(pool->in_use(owner), 0u) << "buffers left behind"; }
};

using BufferChainTest = Fixture;

TEST_F(BufferChainTest, CopiesInAcrossBuffersAndReadsAnyRangeBack) {
  BufferChain c(&*pool, owner, 100000, 1024);
  const Bytes data = pattern(10000, 1);
  EXPECT_EQ(c.push(std::span(data).first(3)), 3u);
  EXPECT_EQ(c.push(std::span(data).subspan(3)), data.size() - 3);
  EXPECT_EQ(c.size(), data.size());
  EXPECT_EQ(c.pieces(), 5u);  // 10,000 bytes fill five 2,048-byte buffers, the first one topped up
  EXPECT_EQ(pool->in_use(owner), 5u);
  EXPECT_EQ(gather(c, 0, data.size()), data);
  EXPECT_EQ(gather(c, 2040, 20), Bytes(data.begin() + 2040, data.begin() + 2060));  // across a boundary
  EXPECT_EQ(gather(c, 9990, 100), Bytes(data.begin() + 9990, data.end()));          // clamped
  EXPECT_TRUE(gather(c, 10000, 5).empty());
  // Reading backwards after forwards (the locate hint must not mislead).
  EXPECT_EQ(gather(c, 100, 10), Bytes(data.begin() + 100, data.begin() + 110));

  Bytes out(4000);
  EXPECT_EQ(c.pop(out), 4000u);
  EXPECT_EQ(out, Bytes(data.begin(), data.begin() + 4000));
  EXPECT_EQ(pool->in_use(owner), 4u);  // the first buffer went back
  c.consume(1000);
  EXPECT_EQ(gather(c, 0, 10), Bytes(data.begin() + 5000, data.begin() + 5010));
  c.clear();
  EXPECT_TRUE(c.empty());
}

TEST_F(BufferChainTest, CapacityBoundsWhatIsTaken) {
  BufferChain c(&*pool, owner, 3000, 1024);
  const Bytes data = pattern(5000, 2);
  EXPECT_EQ(c.push(data), 3000u);
  EXPECT_EQ(c.free_space(), 0u);
  EXPECT_EQ(c.push(data), 0u);
  const auto b = filled(*pool, owner, std::span(data).first(1500), 66);
  EXPECT_EQ(c.push_buffer(b, 66, 1500), 0u);  // no room: dropped, and the buffer freed
  EXPECT_EQ(pool->in_use(owner), 2u);
}

TEST_F(BufferChainTest, LargeBuffersAreKeptAndSmallOnesCollapsed) {
  BufferChain c(&*pool, owner, 100000, 1024);
  const Bytes data = pattern(1448 * 3 + 10, 3);
  Bytes expect;
  // A full-sized segment stays in its frame, at its offset.
  const auto f1 = filled(*pool, owner, std::span(data).first(1448), 66);
  EXPECT_EQ(c.push_buffer(f1, 66, 1448), 1448u);
  // Ten small ones are copied into one buffer of the chain's, and freed.
  for (std::size_t i = 0; i < 10; ++i) {
    const auto f = filled(*pool, owner, std::span(data).subspan(1448 + i, 1), 66);
    EXPECT_EQ(c.push_buffer(f, 66, 1), 1u);
  }
  EXPECT_EQ(c.pieces(), 2u);
  EXPECT_EQ(pool->in_use(owner), 2u);
  const auto f2 = filled(*pool, owner, std::span(data).subspan(1458, 1448), 0);
  EXPECT_EQ(c.push_buffer(f2, 0, 1448), 1448u);
  const auto f3 = filled(*pool, owner, std::span(data).subspan(1458 + 1448, 1448), 600);
  EXPECT_EQ(c.push_buffer(f3, 600, 1448), 1448u);
  EXPECT_EQ(c.pieces(), 4u);
  EXPECT_EQ(gather(c, 0, data.size()), data);

  auto p = c.pop_piece();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->buffer, f1);  // the frame itself: zero copy
  EXPECT_EQ(p->offset, 66u);
  EXPECT_EQ(p->len, 1448u);
  EXPECT_EQ(std::memcmp(pool->buffer(p->buffer).data() + p->offset, data.data(), 1448), 0);
  EXPECT_FALSE(pool->free(owner, p->buffer));  // the caller's to free
  p = c.pop_piece();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->offset, 0u);
  EXPECT_EQ(p->len, 10u);  // the collapsed ones
  EXPECT_FALSE(pool->free(owner, p->buffer));
  EXPECT_EQ(c.size(), 1448u * 2);
}

TEST_F(BufferChainTest, ASmallPieceIntoAnEmptyChainIsKeptAndWhatFollowsCollapsed) {
  BufferChain c(&*pool, owner, 100000, 1024);
  const Bytes data = pattern(64 * 3, 9);
  const auto f1 = filled(*pool, owner, std::span(data).first(64), 66);
  EXPECT_EQ(c.push_buffer(f1, 66, 64), 64u);
  const auto f2 = filled(*pool, owner, std::span(data).subspan(64, 64), 66);
  EXPECT_EQ(c.push_buffer(f2, 66, 64), 64u);
  const auto f3 = filled(*pool, owner, std::span(data).subspan(128, 64), 66);
  EXPECT_EQ(c.push_buffer(f3, 66, 64), 64u);
  EXPECT_EQ(c.pieces(), 2u);  // f1 as it came; f2 and f3 copied into one buffer and freed
  EXPECT_EQ(pool->in_use(owner), 2u);
  EXPECT_EQ(gather(c, 0, data.size()), data);
  auto p = c.pop_piece();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->buffer, f1);
  EXPECT_EQ(p->offset, 66u);
  EXPECT_FALSE(pool->free(owner, p->buffer));
  p = c.pop_piece();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->len, 128u);
  EXPECT_FALSE(pool->free(owner, p->buffer));
  // Empty again: the next small piece is kept as it came too.
  const auto f4 = filled(*pool, owner, std::span(data).first(10), 0);
  EXPECT_EQ(c.push_buffer(f4, 0, 10), 10u);
  EXPECT_EQ(c.pieces(), 1u);
  EXPECT_EQ(gather(c, 0, 10), Bytes(data.begin(), data.begin() + 10));
}

TEST_F(BufferChainTest, Robustness11OneBytePiecesPinFewBuffers) {
  // A peer sending one byte a segment: 20,000 frames, a few buffers held.
  BufferChain c(&*pool, owner, 65536, 1024);
  const Bytes data = pattern(20000, 4);
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto f = filled(*pool, owner, std::span(data).subspan(i, 1), 54);
    ASSERT_EQ(c.push_buffer(f, 54, 1), 1u) << i;
  }
  // The first byte is kept in its frame (the chain was empty), the other
  // 19,999 collapsed into ceil(19,999 / 2,048) = 10 buffers.
  EXPECT_EQ(c.pieces(), 11u);
  EXPECT_EQ(pool->in_use(owner), 11u);
  // Alternating kept and collapsed pieces stay within max_pieces().
  BufferChain d(&*pool, owner, 16384, 1024);
  std::size_t pushed = 0;
  for (int i = 0; i < 100 && d.free_space() > 0; ++i) {
    const std::size_t n = i % 2 == 0 ? 1 : 1024;
    const auto f = filled(*pool, owner, std::span(data).subspan(pushed, n), 0);
    pushed += d.push_buffer(f, 0, n);
    ASSERT_LE(d.pieces(), d.max_pieces());
  }
  EXPECT_EQ(d.size(), 16384u);
  EXPECT_EQ(gather(d, 0, pushed), Bytes(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(pushed)));
}

TEST_F(BufferChainTest, APoolRunningDryTakesLessAndLosesNothingTaken) {
  TestPool small(1);  // 32 buffers
  const auto o = small.add_owner(4);
  {
    BufferChain c(&*small, o, 100000, 1024);
    const Bytes data = pattern(10000, 5);
    EXPECT_EQ(c.push(data), 4u * 2048);  // the owner's ceiling: four buffers
    EXPECT_EQ(gather(c, 0, c.size()), Bytes(data.begin(), data.begin() + 4 * 2048));
    Bytes out(100);
    EXPECT_EQ(c.pop(out), 100u);
    EXPECT_EQ(c.push(std::span(data).subspan(8192)), 0u);  // the tail buffer is full; none to add
  }
  EXPECT_EQ(small->in_use(o), 0u);
}

TEST_F(BufferChainTest, ANewCapacityNeverDropsWhatIsHeld) {
  BufferChain c(&*pool, owner, 10000, 1024);
  const Bytes data = pattern(6000, 10);
  EXPECT_EQ(c.push(data), 6000u);
  c.set_capacity(4000);  // below what is held: the bytes stay, nothing more goes in
  EXPECT_EQ(c.capacity(), 6000u);
  EXPECT_EQ(c.free_space(), 0u);
  EXPECT_EQ(c.push(data), 0u);
  c.consume(3000);
  c.set_capacity(4000);
  EXPECT_EQ(c.capacity(), 4000u);
  EXPECT_EQ(c.free_space(), 1000u);
  EXPECT_EQ(gather(c, 0, 3000), Bytes(data.begin() + 3000, data.end()));
  c.set_capacity(20000);
  EXPECT_EQ(c.push(data), 6000u);
  EXPECT_EQ(c.size(), 9000u);
}

TEST_F(BufferChainTest, AppendRefusesWhatItCannotKeepAndLeavesTheBuffer) {
  BufferChain c(&*pool, owner, 4000, 1024);
  const Bytes data = pattern(3000, 6);
  const auto small = filled(*pool, owner, std::span(data).first(100), 0);
  EXPECT_FALSE(c.append(small, 0, 100));  // below collapse_below
  const auto big = filled(*pool, owner, std::span(data).first(2000), 0);
  EXPECT_TRUE(c.append(big, 0, 2000));
  const auto big2 = filled(*pool, owner, std::span(data).first(2048), 0);
  EXPECT_FALSE(c.append(big2, 0, 2048));   // past capacity
  EXPECT_FALSE(pool->free(owner, small));  // both refused ones are still ours
  EXPECT_FALSE(pool->free(owner, big2));
}

TEST_F(BufferChainTest, RandomOperationsMatchAPlainByteQueue) {
  BufferChain c(&*pool, owner, 50000, 1024);
  Bytes model;
  std::mt19937 rng(7);
  const Bytes data = pattern(4096, 8);
  for (int step = 0; step < 5000; ++step) {
    const unsigned op = rng() % 5;
    if (op == 0) {
      const std::size_t n = rng() % 3000;
      const std::size_t k = c.push(std::span(data).first(n));
      model.insert(model.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (op == 1) {
      const std::size_t n = 1 + rng() % 2000;
      const std::size_t off = rng() % 48;
      const auto b = filled(*pool, owner, std::span(data).first(n), off);
      const std::size_t k = c.push_buffer(b, off, n);
      model.insert(model.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (op == 2) {
      Bytes out(rng() % 3000);
      const std::size_t k = c.pop(out);
      ASSERT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k)),
                Bytes(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(k)));
      model.erase(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (op == 3) {
      if (auto p = c.pop_piece()) {
        ASSERT_EQ(Bytes(pool->buffer(p->buffer).begin() + p->offset,
                        pool->buffer(p->buffer).begin() + p->offset + p->len),
                  Bytes(model.begin(), model.begin() + p->len));
        model.erase(model.begin(), model.begin() + p->len);
        ASSERT_FALSE(pool->free(owner, p->buffer));
      }
    } else if (!model.empty()) {
      const std::size_t off = rng() % model.size();
      const std::size_t len = rng() % 3000;
      const std::size_t end = std::min(model.size(), off + len);
      ASSERT_EQ(gather(c, off, len), Bytes(model.begin() + static_cast<std::ptrdiff_t>(off),
                                           model.begin() + static_cast<std::ptrdiff_t>(end)));
    }
    ASSERT_EQ(c.size(), model.size());
    ASSERT_LE(c.pieces(), c.max_pieces());
  }
}

}  // namespace
}  // namespace usnet::tcp
