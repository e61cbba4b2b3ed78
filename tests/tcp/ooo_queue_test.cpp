// The out-of-order queue against a byte-array reference model, with real
// pool buffers (the test main checks every buffer is back after each test).
#include "usnet/tcp/ooo_queue.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

namespace usnet::tcp {
namespace {

using wire::SackBlock;

// A pool of 16 * 32 buffers of 2048 bytes over anonymous memory.
class TestPool {
 public:
  static constexpr std::size_t kSegmentBytes = 64 * 1024;
  static constexpr std::uint32_t kSegments = 16;
  TestPool() {
    void* p = ::mmap(nullptr, kSegmentBytes * kSegments, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (p == MAP_FAILED) std::abort();
    mem_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = 2048;
    c.segment_bytes = kSegmentBytes;
    c.max_segments = kSegments;
    auto pool = mem::PacketPool::create(c, {mem_, kSegmentBytes * kSegments});
    if (!pool) std::abort();
    pool_.emplace(std::move(*pool));
    auto o = pool_->add_owner({0, 100000});
    if (!o) std::abort();
    owner = *o;
  }
  ~TestPool() {
    pool_.reset();
    ::munmap(mem_, kSegmentBytes * kSegments);
  }
  TestPool(const TestPool&) = delete;
  TestPool& operator=(const TestPool&) = delete;
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }
  mem::OwnerId owner;

 private:
  std::byte* mem_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

constexpr std::uint16_t kHeader = 54;  // payload offset in each buffer, as after Eth+IP+TCP

// One receiver: the queue, a stream of known bytes starting at `base`, and
// what was delivered so far.
class Receiver {
 public:
  explicit Receiver(TestPool& pool, SeqNum base, OooConfig config = {}, std::size_t stream_len = 1 << 16)
      : pool_(pool), base_(base), rcv_nxt(base), stream_(stream_len) {
    std::mt19937 rng(1234);
    for (auto& b : stream_) b = static_cast<std::uint8_t>(rng());
    auto q = OooQueue::create(config, *pool, pool.owner);
    EXPECT_TRUE(q);
    queue.emplace(std::move(*q));
  }

  // Sends stream bytes [off, off + len) (offsets from base), with every
  // payload byte xor'ed with `tamper` (to tell copies apart).
  OooResult put(std::uint32_t off, std::uint32_t len, std::uint8_t tamper = 0) {
    auto b = pool_->alloc(pool_.owner);
    EXPECT_TRUE(b);
    auto bytes = pool_->buffer(*b);
    for (std::uint32_t k = 0; k < len; ++k) {
      bytes[kHeader + k] = static_cast<std::byte>(stream_[off + k] ^ tamper);
    }
    return queue->insert(base_ + off, len, *b, kHeader, rcv_nxt);
  }

  // The caller taking a segment that covers RCV.NXT itself, without the
  // queue (RFC 9293 3.10.7.4 "seventh": in-order text goes to the user).
  void take_in_order(std::uint32_t off, std::uint32_t len) {
    for (std::uint32_t k = rcv_off() - off; k < len; ++k) {
      delivered.push_back(stream_[off + k]);
    }
    rcv_nxt = base_ + off + len;
  }

  // The caller's side of RFC 9293 3.10.7.4 "seventh": in-order data moves
  // RCV.NXT, then the queue hands over what now follows. Checks every
  // delivered byte against the stream and frees the buffers.
  void deliver_in_order() {
    std::array<OooSegment, 3> out{};  // small, so that refills are exercised
    for (;;) {
      const auto r = queue->pop_in_order(rcv_nxt, out);
      for (std::size_t k = 0; k < r.count; ++k) {
        const OooSegment& s = out[k];
        EXPECT_EQ(s.seq, rcv_nxt);
        const auto bytes = pool_->buffer(s.buffer);
        const std::uint32_t off = distance(base_, s.seq);
        for (std::uint32_t i = 0; i < s.len; ++i) {
          delivered.push_back(static_cast<std::uint8_t>(bytes[s.offset + i]));
          if (delivered.back() != stream_[off + i]) ++wrong_bytes;
        }
        rcv_nxt += s.len;
        EXPECT_FALSE(pool_->free(pool_.owner, s.buffer));
      }
      EXPECT_EQ(r.rcv_nxt, rcv_nxt);
      if (r.count < out.size()) break;
    }
  }

  std::vector<OooSegment> entries() const {
    std::vector<OooSegment> v(queue->size());
    queue->copy_entries(v);
    return v;
  }

  // Entries disjoint, sorted, above RCV.NXT, inside the buffer, bytes()
  // their sum, and their payload the stream's bytes.
  void check_invariants() {
    const auto v = entries();
    std::uint64_t sum = 0;
    for (std::size_t k = 0; k < v.size(); ++k) {
      ASSERT_GT(v[k].len, 0u);
      ASSERT_LE(v[k].offset + v[k].len, pool_->buffer_size());
      ASSERT_TRUE(wire::seq_ge(v[k].seq, rcv_nxt));
      if (k > 0) {
        ASSERT_TRUE(wire::seq_le(v[k - 1].seq + v[k - 1].len, v[k].seq)) << k;
      }
      sum += v[k].len;
      const auto bytes = pool_->buffer(v[k].buffer);
      const std::uint32_t off = distance(base_, v[k].seq);
      for (std::uint32_t i = 0; i < v[k].len; ++i) {
        ASSERT_EQ(static_cast<std::uint8_t>(bytes[v[k].offset + i]), stream_[off + i]);
      }
    }
    ASSERT_EQ(sum, queue->bytes());
    ASSERT_LE(v.size(), queue->config().max_entries);
    ASSERT_LE(sum, queue->config().max_bytes);
  }

  std::vector<SackBlock> sacks(std::size_t max = 4) const {
    std::vector<SackBlock> v(4);
    v.resize(queue->sack_blocks(v, max));
    return v;
  }
  SackBlock block(std::uint32_t from, std::uint32_t to) const { return {base_ + from, base_ + to}; }
  std::uint32_t rcv_off() const { return distance(base_, rcv_nxt); }
  const std::vector<std::uint8_t>& stream() const { return stream_; }

  TestPool& pool_;
  SeqNum base_;
  SeqNum rcv_nxt;
  std::optional<OooQueue> queue;
  std::vector<std::uint8_t> delivered;
  std::size_t wrong_bytes = 0;

 private:
  std::vector<std::uint8_t> stream_;
};

class OooQueueTest : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  TestPool pool;
  SeqNum base() const { return SeqNum(GetParam()); }
};

// Bases: plain, and either side of the 2^32 wrap so that segments straddle it.
INSTANTIATE_TEST_SUITE_P(Bases, OooQueueTest,
                         ::testing::Values(1000u, 0xffffff00u, 0xfffff000u, 0x7fffff00u));

TEST_P(OooQueueTest, InOrderSegmentsPopAtOnce) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(0, 100), OooResult::Queued);
  EXPECT_EQ(r.put(100, 100), OooResult::Queued);
  EXPECT_EQ(r.put(200, 1000), OooResult::Queued);
  EXPECT_EQ(r.queue->size(), 3u);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_off(), 1200u);
  EXPECT_EQ(r.delivered.size(), 1200u);
  EXPECT_EQ(r.wrong_bytes, 0u);
  EXPECT_TRUE(r.queue->empty());
  EXPECT_EQ(r.queue->bytes(), 0u);
}

// RFC 9293 3.10.7.4: segments held until the hole at RCV.NXT is filled.
TEST_P(OooQueueTest, ReverseOrderDeliveredWhenHoleFills) {
  Receiver r(pool, base());
  for (int k = 9; k >= 1; --k) {
    EXPECT_EQ(r.put(static_cast<std::uint32_t>(k) * 500, 500), OooResult::Queued);
    r.deliver_in_order();
    EXPECT_EQ(r.rcv_off(), 0u);
  }
  EXPECT_EQ(r.queue->size(), 9u);
  // One run: a single SACK block [500, 5000).
  EXPECT_EQ(r.sacks(), std::vector<SackBlock>{r.block(500, 5000)});
  EXPECT_EQ(r.put(0, 500), OooResult::Queued);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_off(), 5000u);
  EXPECT_EQ(r.wrong_bytes, 0u);
  EXPECT_TRUE(r.queue->empty());
}

// Random segments with overlaps, in random order, against the reference
// stream: what is popped equals the stream exactly, and what is queued is
// exactly the set of bytes received above RCV.NXT (no limit is hit here).
TEST_P(OooQueueTest, RandomOrderMatchesReferenceModel) {
  for (std::uint32_t seed = 1; seed <= 6; ++seed) {
    std::mt19937 rng(seed);
    OooConfig config;
    config.max_entries = 1000;
    config.max_bytes = 1u << 20;
    const std::uint32_t total = 20000;
    Receiver r(pool, base(), config, total + 20000);
    std::vector<bool> have(total + 20000, false);
    int steps = 0;
    while (r.rcv_off() < total && steps < 100000) {
      ++steps;
      const std::uint32_t rcv = r.rcv_off();
      // Mostly out of order within 16 KB above RCV.NXT, some at or below it.
      std::uint32_t off;
      if (rng() % 8 == 0) {
        off = rcv >= 200 ? rcv - static_cast<std::uint32_t>(rng() % 200) : rcv;
      } else {
        off = rcv + static_cast<std::uint32_t>(rng() % 16000);
      }
      const std::uint32_t len = 1 + static_cast<std::uint32_t>(rng() % 1460);
      bool any_new = false, any_old = false;
      std::uint32_t first_old = 0, old_run_end = 0;  // the lowest run of old bytes
      for (std::uint32_t k = off; k < off + len; ++k) {
        const bool old = k < rcv || have[k];
        any_new = any_new || !old;
        if (old && !any_old) first_old = old_run_end = k;
        if (old && old_run_end == k) old_run_end = k + 1;
        any_old = any_old || old;
      }
      const auto res = r.put(off, len);
      ASSERT_TRUE(res == OooResult::Queued || res == OooResult::Duplicate) << to_string(res);
      for (std::uint32_t k = off; k < off + len; ++k) have[k] = true;
      // Queued iff some byte was new; a D-SACK iff some byte was seen before.
      ASSERT_EQ(res == OooResult::Queued, any_new);
      ASSERT_EQ(r.queue->dsack().has_value(), any_old);
      if (any_old) {
        // RFC 2883 4: the lowest contiguous run of duplicate bytes.
        ASSERT_EQ(r.queue->dsack()->left, r.base_ + first_old);
        ASSERT_EQ(r.queue->dsack()->right, r.base_ + old_run_end);
      }
      // RFC 2018 4: after the D-SACK block (if any) the first block holds
      // this segment, and every block is a maximal run of queued bytes.
      const auto blocks = r.sacks(4);
      const std::size_t first_run = any_old ? 1 : 0;
      // (RFC 2883 4.2: for a duplicate of queued data, the block holding it.)
      const std::uint32_t above = std::max(off, rcv);
      if (above < off + len) {
        ASSERT_GT(blocks.size(), first_run);
        const std::uint32_t b0 = distance(r.base_, blocks[first_run].left);
        const std::uint32_t b1 = distance(r.base_, blocks[first_run].right);
        ASSERT_TRUE(b0 < off + len && above < b1) << b0 << " " << b1 << " " << off << " " << len;
      }
      for (std::size_t k = first_run; k < blocks.size(); ++k) {
        const std::uint32_t b0 = distance(r.base_, blocks[k].left);
        const std::uint32_t b1 = distance(r.base_, blocks[k].right);
        ASSERT_TRUE(b0 >= rcv && b0 < b1);
        ASSERT_TRUE(b0 == rcv || !have[b0 - 1]);
        ASSERT_FALSE(have[b1]);
        for (std::uint32_t x = b0; x < b1; ++x) ASSERT_TRUE(have[x]);
      }
      r.deliver_in_order();
      ASSERT_NO_FATAL_FAILURE(r.check_invariants());
      // Queue coverage == received bytes above RCV.NXT.
      const auto v = r.entries();
      std::vector<bool> queued(have.size(), false);
      for (const auto& s : v) {
        const std::uint32_t o = distance(r.base_, s.seq);
        for (std::uint32_t k = 0; k < s.len; ++k) queued[o + k] = true;
      }
      const std::uint32_t window_end = std::min<std::uint32_t>(r.rcv_off() + 17500, have.size());
      for (std::uint32_t k = r.rcv_off(); k < window_end; ++k) ASSERT_EQ(queued[k], have[k]) << k;
      ASSERT_FALSE(r.rcv_off() < have.size() && have[r.rcv_off()]);
    }
    ASSERT_GE(r.rcv_off(), total);
    ASSERT_EQ(r.wrong_bytes, 0u);
    ASSERT_EQ(r.delivered.size(), r.rcv_off());
    EXPECT_GT(r.queue->counters().duplicate_bytes, 0u);
  }
}

// ROBUSTNESS.md item 11: with tight bounds the queue refuses or evicts, never
// holds more than its bounds, and the stream still arrives byte-exactly once
// the sender repeats itself.
TEST_P(OooQueueTest, Robustness11RandomOrderUnderTightLimits) {
  for (std::uint32_t seed = 1; seed <= 10; ++seed) {
    std::mt19937 rng(seed);
    OooConfig config;
    config.max_entries = 6;
    config.max_bytes = 5000;
    config.evict_highest = (seed % 2) == 0;
    const std::uint32_t total = 30000;
    Receiver r(pool, base(), config, total + 20000);
    int steps = 0;
    while (r.rcv_off() < total && steps < 20000) {
      ++steps;
      // A quarter are the sender filling the hole at RCV.NXT (some with a
      // little old data in front), which the caller takes in order itself.
      const std::uint32_t rcv = r.rcv_off();
      const bool fill = rng() % 4 == 0;
      const std::uint32_t back = std::min<std::uint32_t>(rcv, static_cast<std::uint32_t>(rng() % 100));
      const std::uint32_t off = fill ? rcv - back : rcv + static_cast<std::uint32_t>(rng() % 8000);
      const std::uint32_t len = back + 1 + static_cast<std::uint32_t>(rng() % 1000);
      if (fill) {
        r.take_in_order(off, len);
      } else {
        (void)r.put(off, len);
      }
      r.deliver_in_order();
      ASSERT_NO_FATAL_FAILURE(r.check_invariants());
    }
    ASSERT_GE(r.rcv_off(), total);
    ASSERT_EQ(r.wrong_bytes, 0u);
    const auto& c = r.queue->counters();
    EXPECT_GT(c.refused_entries + c.refused_bytes, 0u);
    if (config.evict_highest) {
      EXPECT_GT(c.evicted, 0u);
    } else {
      EXPECT_EQ(c.evicted, 0u);
    }
  }
}

// Overlap at an edge keeps the old bytes (tampered copies would show).
TEST_P(OooQueueTest, PartialOverlapKeepsOldBytes) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(1000, 1000), OooResult::Queued);
  EXPECT_EQ(r.put(1500, 1000, 0xff), OooResult::Queued);  // overlaps the end: [1500, 2000) old
  EXPECT_EQ(r.queue->dsack(), r.block(1500, 2000));
  EXPECT_EQ(r.put(500, 1000, 0xff), OooResult::Queued);  // overlaps the start: [1000, 1500) old
  EXPECT_EQ(r.queue->dsack(), r.block(1000, 1500));
  const auto v = r.entries();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].seq, r.base_ + 500);
  EXPECT_EQ(v[0].len, 500u);
  EXPECT_EQ(v[0].offset, kHeader);
  EXPECT_EQ(v[1].seq, r.base_ + 1000);
  EXPECT_EQ(v[1].len, 1000u);
  EXPECT_EQ(v[2].seq, r.base_ + 2000);
  EXPECT_EQ(v[2].len, 500u);
  EXPECT_EQ(v[2].offset, kHeader + 500);
  // The old entry's bytes are the untampered stream.
  const auto bytes = pool->buffer(v[1].buffer);
  for (std::uint32_t k = 0; k < 1000; ++k) {
    ASSERT_EQ(static_cast<std::uint8_t>(bytes[v[1].offset + k]), r.stream()[1000 + k]);
  }
  EXPECT_EQ(r.queue->bytes(), 2000u);
  EXPECT_EQ(r.queue->counters().duplicate_bytes, 1000u);
}

// A segment covering whole entries and the holes between them replaces them
// (as Linux does): one entry, not several; the covered range is the D-SACK.
TEST_P(OooQueueTest, CoveringSegmentReplacesEntries) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(1000, 100), OooResult::Queued);
  EXPECT_EQ(r.put(1200, 100), OooResult::Queued);
  EXPECT_EQ(r.put(1400, 100), OooResult::Queued);
  EXPECT_EQ(r.put(1000, 450), OooResult::Queued);  // covers two, overlaps the third's start
  const auto v = r.entries();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].seq, r.base_ + 1000);
  EXPECT_EQ(v[0].len, 400u);
  EXPECT_EQ(v[1].seq, r.base_ + 1400);
  EXPECT_EQ(v[1].len, 100u);
  EXPECT_EQ(r.queue->counters().replaced, 2u);
  EXPECT_EQ(r.queue->dsack(), r.block(1000, 1100));  // the first duplicate range
  EXPECT_EQ(r.queue->bytes(), 500u);
  ASSERT_NO_FATAL_FAILURE(r.check_invariants());
}

// The caller took in-order data that covers part of a queued entry and
// moved RCV.NXT without popping: the next insert or pop trims the entry.
TEST_P(OooQueueTest, EntriesBelowAdvancedRcvNxtAreTrimmed) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(1000, 500), OooResult::Queued);
  EXPECT_EQ(r.put(1600, 100), OooResult::Queued);
  r.take_in_order(0, 1200);
  EXPECT_EQ(r.put(2000, 100), OooResult::Queued);
  auto v = r.entries();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].seq, r.base_ + 1200);
  EXPECT_EQ(v[0].len, 300u);
  EXPECT_EQ(v[0].offset, kHeader + 200);
  EXPECT_EQ(r.queue->bytes(), 500u);
  r.take_in_order(1200, 500);  // past the second entry as well
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_off(), 1700u);
  EXPECT_EQ(r.queue->size(), 1u);
  EXPECT_EQ(r.put(1700, 300), OooResult::Queued);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_off(), 2100u);
  EXPECT_EQ(r.wrong_bytes, 0u);
  EXPECT_EQ(r.delivered.size(), 2100u);
}

// RFC 2883 4.1.1 / 4.2.1: a duplicate below RCV.NXT or inside queued data
// is reported first, followed by the block that holds it.
TEST_P(OooQueueTest, DuplicateSetsDsack) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(0, 500), OooResult::Queued);
  r.deliver_in_order();
  EXPECT_EQ(r.put(1000, 500), OooResult::Queued);
  EXPECT_EQ(r.put(2000, 500), OooResult::Queued);
  EXPECT_EQ(r.queue->dsack(), std::nullopt);

  // Wholly below RCV.NXT (RFC 2883 4.1.1).
  EXPECT_EQ(r.put(100, 300), OooResult::Duplicate);
  EXPECT_EQ(r.sacks(), (std::vector<SackBlock>{r.block(100, 400), r.block(2000, 2500), r.block(1000, 1500)}));
  // Inside a queued entry: D-SACK, then the block containing it (4.2.1).
  EXPECT_EQ(r.put(1100, 200), OooResult::Duplicate);
  EXPECT_EQ(r.sacks(),
            (std::vector<SackBlock>{r.block(1100, 1300), r.block(1000, 1500), r.block(2000, 2500)}));
  // Reported once: cleared after the ACK went out.
  r.queue->clear_dsack();
  EXPECT_EQ(r.sacks(), (std::vector<SackBlock>{r.block(1000, 1500), r.block(2000, 2500)}));
  // Straddling RCV.NXT: new bytes queued, the old part reported.
  EXPECT_EQ(r.put(400, 200), OooResult::Queued);
  EXPECT_EQ(r.queue->dsack(), r.block(400, 500));
  // Spanning two adjacent entries exactly: a duplicate.
  EXPECT_EQ(r.put(1500, 500), OooResult::Queued);
  EXPECT_EQ(r.put(1200, 1000), OooResult::Duplicate);
  EXPECT_EQ(r.queue->dsack(), r.block(1200, 2200));
  EXPECT_EQ(r.queue->counters().duplicates, 3u);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_off(), 600u);
  EXPECT_EQ(r.wrong_bytes, 0u);
}

// RFC 2018 4: the block with the latest segment first, then by recency;
// at most `max`, counting the D-SACK block.
TEST_P(OooQueueTest, SackBlockOrder) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(100, 100), OooResult::Queued);  // A
  EXPECT_EQ(r.put(300, 100), OooResult::Queued);  // B
  EXPECT_EQ(r.put(500, 100), OooResult::Queued);  // C
  EXPECT_EQ(r.put(700, 100), OooResult::Queued);  // D
  EXPECT_EQ(r.put(900, 100), OooResult::Queued);  // E
  EXPECT_EQ(r.sacks(4), (std::vector<SackBlock>{r.block(900, 1000), r.block(700, 800), r.block(500, 600),
                                                r.block(300, 400)}));
  EXPECT_EQ(r.sacks(3), (std::vector<SackBlock>{r.block(900, 1000), r.block(700, 800), r.block(500, 600)}));
  // Extending A makes its run the most recent.
  EXPECT_EQ(r.put(200, 50), OooResult::Queued);
  EXPECT_EQ(r.sacks(3), (std::vector<SackBlock>{r.block(100, 250), r.block(900, 1000), r.block(700, 800)}));
  // Joining B and C into one run.
  EXPECT_EQ(r.put(400, 100), OooResult::Queued);
  EXPECT_EQ(r.sacks(4), (std::vector<SackBlock>{r.block(300, 600), r.block(100, 250), r.block(900, 1000),
                                                r.block(700, 800)}));
  // A duplicate in D: D-SACK first, then D, within max 3.
  EXPECT_EQ(r.put(720, 10), OooResult::Duplicate);
  EXPECT_EQ(r.sacks(3), (std::vector<SackBlock>{r.block(720, 730), r.block(700, 800), r.block(300, 600)}));
  EXPECT_EQ(r.sacks(1), (std::vector<SackBlock>{r.block(720, 730)}));
  EXPECT_EQ(r.sacks(0), std::vector<SackBlock>{});
}

TEST_P(OooQueueTest, Robustness11EntryLimitRefusesOrEvictsHighest) {
  OooConfig config;
  config.max_entries = 4;
  Receiver r(pool, base(), config);
  for (std::uint32_t k = 1; k <= 4; ++k) EXPECT_EQ(r.put(k * 1000, 100), OooResult::Queued);
  // Above everything: refused, nothing evicted.
  EXPECT_EQ(r.put(9000, 100), OooResult::NoEntries);
  EXPECT_EQ(r.queue->counters().refused_entries, 1u);
  EXPECT_EQ(r.queue->dsack(), std::nullopt);
  // Nearer RCV.NXT: the highest entry makes room.
  EXPECT_EQ(r.put(500, 100), OooResult::Queued);
  EXPECT_EQ(r.queue->counters().evicted, 1u);
  EXPECT_EQ(r.queue->counters().evicted_bytes, 100u);
  auto v = r.entries();
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v.back().seq, r.base_ + 3000);
  // Growing an entry needs no new one.
  EXPECT_EQ(r.put(1100, 100), OooResult::Queued);
  EXPECT_EQ(r.queue->size(), 4u);
  ASSERT_NO_FATAL_FAILURE(r.check_invariants());

  OooConfig strict = config;
  strict.evict_highest = false;
  Receiver s(pool, base(), strict);
  for (std::uint32_t k = 1; k <= 4; ++k) EXPECT_EQ(s.put(k * 1000, 100), OooResult::Queued);
  EXPECT_EQ(s.put(500, 100), OooResult::NoEntries);
  EXPECT_EQ(s.queue->counters().evicted, 0u);
  EXPECT_EQ(s.queue->size(), 4u);
}

TEST_P(OooQueueTest, Robustness11ByteLimitRefusesOrEvictsHighest) {
  OooConfig config;
  config.max_bytes = 2500;
  Receiver r(pool, base(), config);
  EXPECT_EQ(r.put(1000, 1000), OooResult::Queued);
  EXPECT_EQ(r.put(3000, 1000), OooResult::Queued);
  EXPECT_EQ(r.put(5000, 1000), OooResult::NoBytes);  // above: refused
  EXPECT_EQ(r.queue->counters().refused_bytes, 1u);
  EXPECT_EQ(r.put(100, 800), OooResult::Queued);  // below: evicts [3000, 4000)
  EXPECT_EQ(r.queue->bytes(), 1800u);
  EXPECT_EQ(r.queue->counters().evicted, 1u);
  // Evicted data is no longer reported as SACKed (reneging, RFC 2018 8).
  EXPECT_EQ(r.sacks(), (std::vector<SackBlock>{r.block(100, 900), r.block(1000, 2000)}));
  ASSERT_NO_FATAL_FAILURE(r.check_invariants());
}

TEST_P(OooQueueTest, InvalidAndBeyondWindowRefused) {
  Receiver r(pool, base());
  auto b = pool->alloc(pool.owner);
  ASSERT_TRUE(b);
  EXPECT_EQ(r.queue->insert(r.base_ + 10, 0, *b, 0, r.rcv_nxt), OooResult::Invalid);
  b = pool->alloc(pool.owner);
  ASSERT_TRUE(b);
  EXPECT_EQ(r.queue->insert(r.base_ + 10, 2000, *b, 100, r.rcv_nxt), OooResult::Invalid);  // past 2048
  b = pool->alloc(pool.owner);
  ASSERT_TRUE(b);
  EXPECT_EQ(r.queue->insert(r.rcv_nxt + OooQueue::kMaxSpan, 1, *b, 0, r.rcv_nxt), OooResult::BeyondWindow);
  b = pool->alloc(pool.owner);
  ASSERT_TRUE(b);
  EXPECT_EQ(r.queue->insert(r.rcv_nxt + 0x80000000u, 10, *b, 0, r.rcv_nxt), OooResult::BeyondWindow);
  b = pool->alloc(pool.owner);
  ASSERT_TRUE(b);
  EXPECT_EQ(r.queue->insert(r.rcv_nxt + (OooQueue::kMaxSpan - 1), 1, *b, 0, r.rcv_nxt), OooResult::Queued);
  EXPECT_EQ(r.queue->counters().invalid, 2u);
  EXPECT_EQ(r.queue->counters().refused_window, 2u);
  EXPECT_EQ(r.queue->size(), 1u);
}

// Explicit values across the wrap: 2^32 - 100 .. 100.
// RFC 9293 3.10.7.4: a FIN above RCV.NXT is held as its sequence number
// and taken by the caller once RCV.NXT reaches it; nothing past it is kept.
TEST_P(OooQueueTest, FinHeldAndDataPastItRefusedOrTrimmed) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(100, 100), OooResult::Queued);
  EXPECT_EQ(r.queue->hold_fin(r.base_ + 200, r.rcv_nxt), OooResult::Queued);
  EXPECT_EQ(r.queue->fin(), r.base_ + 200);
  EXPECT_EQ(r.queue->hold_fin(r.base_ + 200, r.rcv_nxt), OooResult::Duplicate);  // sent again
  // Data at or past the FIN is never delivered.
  EXPECT_EQ(r.put(200, 50), OooResult::BeyondFin);
  EXPECT_EQ(r.put(300, 50), OooResult::BeyondFin);
  // Data straddling it is trimmed to it.
  EXPECT_EQ(r.put(50, 200), OooResult::Queued);
  EXPECT_EQ(r.entries().back().seq + r.entries().back().len, r.base_ + 200);
  ASSERT_NO_FATAL_FAILURE(r.check_invariants());
  EXPECT_EQ(r.queue->counters().refused_fin, 2u);
  EXPECT_EQ(r.queue->counters().beyond_fin_bytes, 150u);
  r.take_in_order(0, 50);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_nxt, r.base_ + 200);  // the caller now takes the FIN
  EXPECT_EQ(r.queue->fin(), r.base_ + 200);
  EXPECT_EQ(r.wrong_bytes, 0u);
  r.queue->clear();
  EXPECT_FALSE(r.queue->fin());
}

// A later FIN at another place (a broken or hostile peer): the lowest wins,
// as processing the segments in sequence order would decide; a FIN below
// the held one frees and trims the data at or past it.
TEST_P(OooQueueTest, LowestFinWinsAndCutsTheQueue) {
  Receiver r(pool, base());
  EXPECT_EQ(r.put(100, 100), OooResult::Queued);
  EXPECT_EQ(r.put(300, 100), OooResult::Queued);
  EXPECT_EQ(r.put(500, 100), OooResult::Queued);
  EXPECT_EQ(r.queue->hold_fin(r.base_ + 600, r.rcv_nxt), OooResult::Queued);
  EXPECT_EQ(r.queue->hold_fin(r.base_ + 700, r.rcv_nxt), OooResult::BeyondFin);
  EXPECT_EQ(r.queue->fin(), r.base_ + 600);
  EXPECT_EQ(r.queue->hold_fin(r.base_ + 350, r.rcv_nxt), OooResult::Queued);
  EXPECT_EQ(r.queue->fin(), r.base_ + 350);
  ASSERT_EQ(r.entries().size(), 2u);
  EXPECT_EQ(r.entries()[1].seq, r.base_ + 300);
  EXPECT_EQ(r.entries()[1].len, 50u);
  EXPECT_EQ(r.queue->bytes(), 150u);
  EXPECT_EQ(r.queue->counters().beyond_fin_bytes, 150u);
  ASSERT_NO_FATAL_FAILURE(r.check_invariants());
  EXPECT_EQ(r.sacks(), (std::vector<SackBlock>{r.block(300, 350), r.block(100, 200)}));
}

TEST_P(OooQueueTest, FinOutsideTheQueuesSpanRefused) {
  Receiver r(pool, base());
  EXPECT_EQ(r.queue->hold_fin(r.rcv_nxt, r.rcv_nxt), OooResult::Invalid);  // the caller's own
  EXPECT_EQ(r.queue->hold_fin(r.rcv_nxt - 1, r.rcv_nxt), OooResult::Invalid);
  EXPECT_EQ(r.queue->hold_fin(r.rcv_nxt + OooQueue::kMaxSpan, r.rcv_nxt), OooResult::BeyondWindow);
  EXPECT_EQ(r.queue->hold_fin(r.rcv_nxt + (OooQueue::kMaxSpan - 1), r.rcv_nxt), OooResult::Queued);
  // RCV.NXT moved past it (the caller did not take it): forgotten.
  r.rcv_nxt = r.rcv_nxt + OooQueue::kMaxSpan;
  r.deliver_in_order();
  EXPECT_FALSE(r.queue->fin());
}

TEST(OooQueueWrap, SegmentsAcrossTwoToThe32) {
  TestPool pool;
  Receiver r(pool, SeqNum(0xffffff00u));
  EXPECT_EQ(r.put(200, 100), OooResult::Queued);  // [0xffffffc8, 0x2c): straddles the wrap
  EXPECT_EQ(r.put(100, 100), OooResult::Queued);  // [0xffffff64, 0xffffffc8)
  EXPECT_EQ(r.sacks(), (std::vector<SackBlock>{{SeqNum(0xffffff64u), SeqNum(0x2cu)}}));
  EXPECT_EQ(r.put(0, 100), OooResult::Queued);
  r.deliver_in_order();
  EXPECT_EQ(r.rcv_nxt, SeqNum(0x2cu));
  EXPECT_EQ(r.wrong_bytes, 0u);
  EXPECT_TRUE(r.queue->empty());
  // Wholly below RCV.NXT, itself straddling the wrap.
  EXPECT_EQ(r.put(250, 10), OooResult::Duplicate);
  EXPECT_EQ(r.queue->dsack(), (SackBlock{SeqNum(0xfffffffau), SeqNum(0x4u)}));
}

// Buffers left in the queue go back to the pool at clear() and destruction
// (the test main fails any test that leaves one out).
TEST(OooQueueOwnership, ClearDestroyAndMoveFreeBuffers) {
  TestPool pool;
  {
    Receiver r(pool, SeqNum(5));
    for (std::uint32_t k = 1; k <= 10; ++k) EXPECT_EQ(r.put(k * 200, 100), OooResult::Queued);
    EXPECT_EQ(pool->in_use(pool.owner), 10u);
    r.queue->clear();
    EXPECT_EQ(pool->in_use(pool.owner), 0u);
    EXPECT_TRUE(r.queue->empty());
    for (std::uint32_t k = 1; k <= 5; ++k) EXPECT_EQ(r.put(k * 200, 100), OooResult::Queued);
    OooQueue moved(std::move(*r.queue));
    r.queue.reset();
    EXPECT_EQ(moved.size(), 5u);
    EXPECT_EQ(pool->in_use(pool.owner), 5u);
  }
  EXPECT_EQ(pool->in_use(pool.owner), 0u);
}

TEST(OooQueueConfig, BadConfigRefused) {
  TestPool pool;
  OooConfig c;
  c.max_entries = 0;
  EXPECT_FALSE(OooQueue::create(c, *pool, pool.owner));
  c.max_entries = OooQueue::kMaxEntries + 1;
  EXPECT_FALSE(OooQueue::create(c, *pool, pool.owner));
  c = {};
  c.max_bytes = 0;
  EXPECT_FALSE(OooQueue::create(c, *pool, pool.owner));
  EXPECT_FALSE(OooQueue::create({}, *pool, mem::OwnerId{12345}));
  EXPECT_TRUE(OooQueue::create({}, *pool, pool.owner));
}

}  // namespace
}  // namespace usnet::tcp
