#include "usnet/mem/ring.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <new>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace usnet::mem {
namespace {

constexpr std::uint32_t kBufferCount = 64;
constexpr std::uint32_t kBufferSize = 2048;

// Heap memory aligned as a ring needs (a mapping is page-aligned anyway).
class AlignedBytes {
 public:
  explicit AlignedBytes(std::size_t n)
      : size_(n), p_(static_cast<std::byte*>(::operator new (n, std::align_val_t{RingMemory::kAlignment}))) {
    std::memset(p_, 0xa5, n);  // garbage, so format() must write everything it relies on
  }
  ~AlignedBytes() { ::operator delete (p_, std::align_val_t{RingMemory::kAlignment}); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  std::span<std::byte> span() const { return {p_, size_}; }

 private:
  std::size_t size_;
  std::byte* p_;
};

RingLimits limits_for(std::uint32_t capacity) { return {capacity, kBufferCount, kBufferSize}; }

// A slot whose every field follows from `seq`, so order and content can both
// be checked from the cookie alone.
RingSlot slot_for(std::uint32_t seq) {
  return RingSlot{seq % kBufferCount, (seq * 7) % 1000, static_cast<std::uint16_t>(seq % 64),
                  static_cast<std::uint16_t>(seq ^ 0x5a5a), seq};
}

// One ring in private memory with both endpoints attached, as two processes
// would have it.
struct TestRing {
  explicit TestRing(std::uint32_t capacity, std::uint32_t initial_index = 0)
      : bytes(RingMemory::bytes_needed(capacity)),
        memory(*RingMemory::format(bytes.span(), capacity, initial_index)),
        producer(*RingProducer::attach(bytes.span(), limits_for(capacity))),
        consumer(*RingConsumer::attach(bytes.span(), limits_for(capacity))) {}

  AlignedBytes bytes;
  RingMemory memory;  // the hostile peer's view: writes anything anywhere
  RingProducer producer;
  RingConsumer consumer;
};

// ---------------------------------------------------------------- layout

TEST(RingLayout, BytesNeededIsHeaderPlusSixteenBytesPerSlot) {
  EXPECT_EQ(RingMemory::bytes_needed(1), 384u + 16u);
  EXPECT_EQ(RingMemory::bytes_needed(1024), 384u + 16u * 1024u);
  EXPECT_EQ(RingMemory::bytes_needed(1u << 31), 384u + 16ull * (1ull << 31));
  EXPECT_EQ(RingMemory::bytes_needed(0), 0u);
  EXPECT_EQ(RingMemory::bytes_needed(3), 0u);
  EXPECT_EQ(RingMemory::bytes_needed(1000), 0u);
  EXPECT_EQ(RingMemory::bytes_needed(0xffffffffu), 0u);
}

TEST(RingLayout, FormatRejectsBadCapacitySmallOrMisalignedMemory) {
  AlignedBytes bytes(RingMemory::bytes_needed(8) + 256);
  EXPECT_EQ(RingMemory::format(bytes.span(), 0).error(), std::errc::invalid_argument);
  EXPECT_EQ(RingMemory::format(bytes.span(), 6).error(), std::errc::invalid_argument);
  EXPECT_EQ(RingMemory::format(bytes.span().first(RingMemory::bytes_needed(8) - 1), 8).error(),
            std::errc::invalid_argument);
  EXPECT_EQ(RingMemory::format(bytes.span().subspan(16), 8).error(), std::errc::invalid_argument);
  EXPECT_EQ(RingMemory::format(bytes.span().subspan(64), 8).error(), std::errc::invalid_argument);
  EXPECT_TRUE(RingMemory::format(bytes.span().subspan(128), 8));
  EXPECT_TRUE(RingMemory::format(bytes.span().first(RingMemory::bytes_needed(8)), 8));
}

TEST(RingLayout, FormatWritesHeaderIndicesAndZeroSlots) {
  AlignedBytes bytes(RingMemory::bytes_needed(4));
  auto ring = RingMemory::format(bytes.span(), 4, 77);
  ASSERT_TRUE(ring);
  EXPECT_EQ(ring->header().magic.load(), RingMemory::kMagic);
  EXPECT_EQ(ring->header().capacity.load(), 4u);
  EXPECT_EQ(ring->producer_index().load(), 77u);
  EXPECT_EQ(ring->consumer_index().load(), 77u);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(ring->load_slot(i), RingSlot{});
  // The indices are at the documented offsets, so another implementation
  // (or another build) agrees on the layout.
  std::uint32_t at128 = 0, at256 = 0;
  std::memcpy(&at128, bytes.span().data() + 128, 4);
  std::memcpy(&at256, bytes.span().data() + 256, 4);
  EXPECT_EQ(at128, 77u);
  EXPECT_EQ(at256, 77u);
}

TEST(RingLayout, SlotRoundTripsThroughSharedWordsAndIndexIsMasked) {
  AlignedBytes bytes(RingMemory::bytes_needed(4));
  auto ring = RingMemory::format(bytes.span(), 4);
  ASSERT_TRUE(ring);
  const RingSlot s{0xdeadbeef, 0xfffffffe, 0xfffe, 0x8001, 0x12345678};
  ring->store_slot(0xfffffff6u, s);  // & 3 == 2
  EXPECT_EQ(ring->load_slot(2), s);
  EXPECT_EQ(ring->load_slot(6), s);
  EXPECT_EQ(ring->load_slot(1), RingSlot{});
}

TEST(RingLayout, ViewAndAttachCheckTheHeaderAgainstPrivateCapacity) {
  AlignedBytes bytes(RingMemory::bytes_needed(16));
  ASSERT_TRUE(RingMemory::format(bytes.span(), 16));
  EXPECT_TRUE(RingMemory::view(bytes.span(), 16));
  EXPECT_EQ(RingMemory::view(bytes.span(), 8).error(), std::errc::bad_message);
  EXPECT_EQ(RingProducer::attach(bytes.span(), limits_for(32)).error(),
            std::errc::invalid_argument);  // too small
  EXPECT_EQ(RingConsumer::attach(bytes.span(), limits_for(8)).error(), std::errc::bad_message);
  EXPECT_EQ(RingConsumer::attach(bytes.span(), limits_for(12)).error(), std::errc::invalid_argument);

  auto ring = RingMemory::view(bytes.span(), 16);
  ring->header().magic.store(0);
  EXPECT_EQ(RingProducer::attach(bytes.span(), limits_for(16)).error(), std::errc::bad_message);
}

TEST(RingLayout, AttachRejectsIndicesMoreThanCapacityApart) {
  AlignedBytes bytes(RingMemory::bytes_needed(16));
  auto ring = RingMemory::format(bytes.span(), 16, 100);
  ASSERT_TRUE(ring);
  ring->producer_index().store(116);  // exactly full: fine
  EXPECT_TRUE(RingConsumer::attach(bytes.span(), limits_for(16)));
  EXPECT_TRUE(RingProducer::attach(bytes.span(), limits_for(16)));
  ring->producer_index().store(117);
  EXPECT_EQ(RingConsumer::attach(bytes.span(), limits_for(16)).error(), std::errc::bad_message);
  EXPECT_EQ(RingProducer::attach(bytes.span(), limits_for(16)).error(), std::errc::bad_message);
  ring->producer_index().store(99);  // behind the consumer
  EXPECT_EQ(RingConsumer::attach(bytes.span(), limits_for(16)).error(), std::errc::bad_message);
}

// ---------------------------------------------------------------- behaviour

TEST(Ring, FifoOrderAndContentSingleItems) {
  TestRing r(16);
  for (std::uint32_t round = 0; round < 5; ++round) {
    for (std::uint32_t i = 0; i < 16; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(round * 16 + i)));
    for (std::uint32_t i = 0; i < 16; ++i) {
      RingSlot got;
      ASSERT_TRUE(r.consumer.try_dequeue(got));
      EXPECT_EQ(got, slot_for(round * 16 + i));
    }
  }
  EXPECT_EQ(r.producer.stats().enqueued, 80u);
  EXPECT_EQ(r.consumer.stats().dequeued, 80u);
  EXPECT_FALSE(r.producer.broken());
  EXPECT_FALSE(r.consumer.broken());
}

TEST(Ring, EmptyAndFullEdges) {
  TestRing r(8);
  RingSlot got;
  EXPECT_FALSE(r.consumer.try_dequeue(got));
  EXPECT_EQ(r.consumer.stats().empty_events, 1u);
  EXPECT_EQ(r.consumer.available(), 0u);
  EXPECT_EQ(r.producer.free_slots(), 8u);

  for (std::uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  EXPECT_EQ(r.producer.free_slots(), 0u);
  EXPECT_EQ(r.consumer.available(), 8u);
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(8)));
  EXPECT_EQ(r.producer.stats().full_events, 1u);

  ASSERT_TRUE(r.consumer.try_dequeue(got));
  EXPECT_EQ(got, slot_for(0));
  EXPECT_EQ(r.producer.free_slots(), 1u);
  EXPECT_TRUE(r.producer.try_enqueue(slot_for(8)));
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(9)));
  EXPECT_EQ(r.producer.stats().full_events, 2u);

  for (std::uint32_t i = 1; i <= 8; ++i) {
    ASSERT_TRUE(r.consumer.try_dequeue(got));
    EXPECT_EQ(got, slot_for(i));
  }
  EXPECT_FALSE(r.consumer.try_dequeue(got));
  EXPECT_EQ(r.consumer.stats().empty_events, 2u);
  EXPECT_EQ(r.producer.free_slots(), 8u);
}

TEST(Ring, CapacityOneAlternates) {
  TestRing r(1);
  RingSlot got;
  for (std::uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
    EXPECT_FALSE(r.producer.try_enqueue(slot_for(99)));
    ASSERT_TRUE(r.consumer.try_dequeue(got));
    EXPECT_EQ(got, slot_for(i));
    EXPECT_FALSE(r.consumer.try_dequeue(got));
  }
}

TEST(Ring, BatchPartialFillWhenNearlyFull) {
  TestRing r(8);
  std::vector<RingSlot> in;
  for (std::uint32_t i = 0; i < 20; ++i) in.push_back(slot_for(i));

  EXPECT_EQ(r.producer.enqueue_batch(std::span(in).first(5)), 5u);
  EXPECT_EQ(r.producer.enqueue_batch(std::span(in).subspan(5, 6)), 3u);  // 3 free of 6 asked
  EXPECT_EQ(r.producer.stats().full_events, 1u);
  EXPECT_EQ(r.producer.enqueue_batch(std::span(in).subspan(8, 1)), 0u);
  EXPECT_EQ(r.producer.stats().full_events, 2u);

  std::array<RingSlot, 3> small{};
  EXPECT_EQ(r.consumer.dequeue_batch(small), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(small[i], slot_for(i));

  // The producer's cache still says full: it re-reads and finds 3 free.
  EXPECT_EQ(r.producer.enqueue_batch(std::span(in).subspan(8, 12)), 3u);

  // The consumer first takes the 5 its cache knows of without re-reading
  // the producer index, then re-reads and finds the 3 new ones.
  std::array<RingSlot, 32> big{};
  EXPECT_EQ(r.consumer.dequeue_batch(big), 5u);
  for (std::uint32_t i = 0; i < 5; ++i) EXPECT_EQ(big[i], slot_for(3 + i));
  EXPECT_EQ(r.consumer.dequeue_batch(big), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(big[i], slot_for(8 + i));
  EXPECT_EQ(r.consumer.stats().empty_events, 0u);
  EXPECT_EQ(r.consumer.dequeue_batch(big), 0u);
  EXPECT_EQ(r.consumer.stats().empty_events, 1u);
  EXPECT_EQ(r.producer.enqueue_batch({}), 0u);
  EXPECT_EQ(r.consumer.dequeue_batch({}), 0u);
  EXPECT_EQ(r.producer.stats().enqueued, 11u);
  EXPECT_EQ(r.consumer.stats().dequeued, 11u);
}

TEST(Ring, PeerIndexIsReadOnlyWhenTheCacheSaysFullOrEmpty) {
  TestRing r(16);
  std::vector<RingSlot> in;
  for (std::uint32_t i = 0; i < 16; ++i) in.push_back(slot_for(i));
  // The producer starts knowing 16 slots are free: no load until full.
  for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(r.producer.try_enqueue(in[i]));
  EXPECT_EQ(r.producer.enqueue_batch(std::span(in).subspan(10)), 6u);
  EXPECT_EQ(r.producer.stats().consumer_index_loads, 0u);

  // One load shows 16 ready; the next 16 takes need no more loads.
  std::array<RingSlot, 4> out{};
  RingSlot got;
  ASSERT_TRUE(r.consumer.try_dequeue(got));
  EXPECT_EQ(r.consumer.stats().producer_index_loads, 1u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.consumer.dequeue_batch(out), 4u);
  EXPECT_EQ(r.consumer.dequeue_batch(out), 3u);
  EXPECT_EQ(r.consumer.stats().producer_index_loads, 1u);
  // Each batch published its progress with one store.
  EXPECT_EQ(r.memory.consumer_index().load(), 16u);
}

TEST(Ring, FreeRunningIndicesWrapAround2To32) {
  for (std::uint32_t start : {0xfffffff0u, 0xfffffffdu, 0xffffffffu, 0x7ffffffau}) {
    SCOPED_TRACE(start);
    TestRing r(8, start);
    std::uint32_t sent = 0, received = 0;
    std::array<RingSlot, 5> out{};
    std::vector<RingSlot> batch;
    while (received < 1000) {
      // Alternate single and batched operations on both sides.
      if (sent % 3 == 0) {
        if (r.producer.try_enqueue(slot_for(sent))) ++sent;
      } else {
        batch.clear();
        for (std::uint32_t i = 0; i < 3; ++i) batch.push_back(slot_for(sent + i));
        sent += static_cast<std::uint32_t>(r.producer.enqueue_batch(batch));
      }
      if (received % 2 == 0) {
        RingSlot got;
        if (r.consumer.try_dequeue(got)) {
          ASSERT_EQ(got, slot_for(received));
          ++received;
        }
      } else {
        const std::size_t n = r.consumer.dequeue_batch(out);
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], slot_for(received++));
      }
      ASSERT_FALSE(r.producer.broken()) << to_string(r.producer.fault());
      ASSERT_FALSE(r.consumer.broken()) << to_string(r.consumer.fault());
    }
    EXPECT_EQ(r.memory.consumer_index().load(), start + received);
    if (start > 0xffffffffu - 1000) {
      EXPECT_LT(r.memory.consumer_index().load(), start);  // it did wrap
    }
  }
}

TEST(Ring, FullRingAcrossTheWrapIsStillFull) {
  TestRing r(4, 0xfffffffeu);
  for (std::uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  EXPECT_EQ(r.memory.producer_index().load(), 2u);
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(4)));
  EXPECT_EQ(r.consumer.available(), 4u);
  EXPECT_FALSE(r.producer.broken());
}

TEST(Ring, TwoThreadsMillionItems) {
  TestRing r(256);
  constexpr std::uint32_t kItems = 1'000'000;
  // Set when the consumer gives up, so a producer facing a full ring stops
  // instead of spinning forever and turning a failure into a hang.
  std::atomic<bool> consumer_done{false};
  std::thread producer([&] {
    std::array<RingSlot, 16> batch{};
    std::uint32_t seq = 0;
    while (seq < kItems && !consumer_done.load(std::memory_order_relaxed)) {
      if (seq % 5 == 0) {
        if (r.producer.try_enqueue(slot_for(seq))) {
          ++seq;
        } else {
          std::this_thread::yield();
        }
      } else {
        const std::uint32_t n = std::min<std::uint32_t>(kItems - seq, 1 + seq % 16);
        for (std::uint32_t i = 0; i < n; ++i) batch[i] = slot_for(seq + i);
        const auto placed = static_cast<std::uint32_t>(r.producer.enqueue_batch(std::span(batch).first(n)));
        // Yield when full: the two cores may be shared with other work.
        if (placed == 0) std::this_thread::yield();
        seq += placed;
      }
      if (r.producer.broken()) return;
    }
  });
  std::array<RingSlot, 32> out{};
  std::uint32_t received = 0;
  bool in_order = true;
  while (received < kItems && in_order && !r.consumer.broken()) {
    const std::size_t n = r.consumer.dequeue_batch(std::span(out).first(1 + received % 32));
    if (n == 0) std::this_thread::yield();
    for (std::size_t i = 0; i < n; ++i) in_order = in_order && out[i] == slot_for(received++);
  }
  consumer_done.store(true, std::memory_order_relaxed);
  producer.join();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(received, kItems);
  EXPECT_FALSE(r.producer.broken());
  EXPECT_FALSE(r.consumer.broken());
}

// ---------------------------------------------------------------- faults

TEST(RingFaults, ProducerIndexTooFarAhead) {
  TestRing r(8, 1000);
  r.memory.producer_index().store(1008);  // exactly full is legal
  EXPECT_EQ(r.consumer.available(), 8u);
  EXPECT_FALSE(r.consumer.broken());

  TestRing r2(8, 1000);
  r2.memory.producer_index().store(1009);
  RingSlot got{};
  EXPECT_FALSE(r2.consumer.try_dequeue(got));
  EXPECT_TRUE(r2.consumer.broken());
  EXPECT_EQ(r2.consumer.fault(), RingFault::ProducerIndexTooFarAhead);
  EXPECT_EQ(got, RingSlot{});

  TestRing r3(8, 0xfffffffcu);
  r3.memory.producer_index().store(0x00100000u);  // far ahead, across the wrap
  std::array<RingSlot, 4> out{};
  EXPECT_EQ(r3.consumer.dequeue_batch(out), 0u);
  EXPECT_EQ(r3.consumer.fault(), RingFault::ProducerIndexTooFarAhead);
}

TEST(RingFaults, ProducerIndexBackwards) {
  // Behind the consumer: it would read as ~2^32 filled slots.
  TestRing r(8, 5);
  r.memory.producer_index().store(4);
  RingSlot got;
  EXPECT_FALSE(r.consumer.try_dequeue(got));
  EXPECT_EQ(r.consumer.fault(), RingFault::ProducerIndexBackwards);

  // Behind what the consumer already saw, but not behind the consumer.
  TestRing r2(8, 0xfffffffeu);
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(r2.producer.try_enqueue(slot_for(i)));
  ASSERT_TRUE(r2.consumer.try_dequeue(got));
  r2.memory.producer_index().store(0u);  // was 1 (across the wrap): one back
  EXPECT_EQ(r2.consumer.available(), 0u);
  EXPECT_EQ(r2.consumer.fault(), RingFault::ProducerIndexBackwards);

  // Consumed everything, then the index drops.
  TestRing r3(8);
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(r3.producer.try_enqueue(slot_for(i)));
  std::array<RingSlot, 8> out{};
  ASSERT_EQ(r3.consumer.dequeue_batch(out), 3u);
  r3.memory.producer_index().store(1);
  EXPECT_EQ(r3.consumer.dequeue_batch(out), 0u);
  EXPECT_EQ(r3.consumer.fault(), RingFault::ProducerIndexBackwards);
}

TEST(RingFaults, ConsumerIndexPastProducer) {
  TestRing r(8, 40);
  ASSERT_TRUE(r.producer.try_enqueue(slot_for(0)));
  ASSERT_TRUE(r.producer.try_enqueue(slot_for(1)));
  r.memory.consumer_index().store(42);  // took both: fine
  EXPECT_EQ(r.producer.free_slots(), 8u);
  r.memory.consumer_index().store(43);  // took one never filled
  EXPECT_EQ(r.producer.free_slots(), 0u);
  EXPECT_EQ(r.producer.fault(), RingFault::ConsumerIndexPastProducer);

  // Seen on the enqueue path: the ring is full, the reload finds the lie.
  TestRing r2(4);
  for (std::uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(r2.producer.try_enqueue(slot_for(i)));
  r2.memory.consumer_index().store(1000);
  EXPECT_FALSE(r2.producer.try_enqueue(slot_for(4)));
  EXPECT_EQ(r2.producer.fault(), RingFault::ConsumerIndexPastProducer);
  EXPECT_EQ(r2.producer.stats().full_events, 0u);  // a fault, not a full ring
}

TEST(RingFaults, ConsumerIndexBackwards) {
  TestRing r(4, 0xfffffffeu);
  for (std::uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  std::array<RingSlot, 3> out{};
  ASSERT_EQ(r.consumer.dequeue_batch(out), 3u);  // consumer index now 1 (wrapped)
  std::vector<RingSlot> more{slot_for(4), slot_for(5), slot_for(6), slot_for(7)};
  ASSERT_EQ(r.producer.enqueue_batch(more), 3u);  // the producer accepted index 1
  r.memory.consumer_index().store(0xffffffffu);   // two back, across the wrap
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(7)));
  EXPECT_EQ(r.producer.fault(), RingFault::ConsumerIndexBackwards);
}

TEST(RingFaults, BadBufferIndex) {
  TestRing r(8);
  RingSlot last_ok = slot_for(1);
  last_ok.buffer = kBufferCount - 1;
  RingSlot bad = slot_for(2);
  bad.buffer = kBufferCount;
  ASSERT_TRUE(r.producer.try_enqueue(last_ok));
  ASSERT_TRUE(r.producer.try_enqueue(bad));
  RingSlot got;
  ASSERT_TRUE(r.consumer.try_dequeue(got));
  EXPECT_EQ(got, last_ok);
  RingSlot untouched{1, 2, 3, 4, 5};
  EXPECT_FALSE(r.consumer.try_dequeue(untouched));
  EXPECT_EQ(untouched, (RingSlot{1, 2, 3, 4, 5}));  // the bad slot was not delivered
  EXPECT_EQ(r.consumer.fault(), RingFault::BadBufferIndex);
  EXPECT_EQ(r.consumer.stats().dequeued, 1u);
  EXPECT_EQ(r.memory.consumer_index().load(), 1u);  // not moved past the bad slot
}

TEST(RingFaults, BadLengthIncludingOverflow) {
  struct Case {
    std::uint16_t offset;
    std::uint32_t length;
    bool ok;
  };
  for (const Case& c :
       {Case{0, kBufferSize, true}, Case{100, kBufferSize - 100, true}, Case{0, kBufferSize + 1, false},
        Case{1, kBufferSize, false}, Case{kBufferSize, 1, false}, Case{0xffff, 0, false},
        Case{0xffff, 0xffffffffu, false}, Case{1, 0xffffffffu, false}, Case{0, 0xffffffffu, false}}) {
    SCOPED_TRACE(testing::Message() << "offset " << c.offset << " length " << c.length);
    TestRing r(8);
    // Written by hand, as a hostile producer would, then published.
    r.memory.store_slot(0, RingSlot{3, c.length, c.offset, 0, 9});
    r.memory.producer_index().store(1, std::memory_order_release);
    RingSlot got;
    EXPECT_EQ(r.consumer.try_dequeue(got), c.ok);
    EXPECT_EQ(r.consumer.fault(), c.ok ? RingFault::None : RingFault::BadLength);
  }
}

TEST(RingFaults, BadSlotInBatchDeliversOnlyTheGoodPrefix) {
  TestRing r(16);
  std::vector<RingSlot> in;
  for (std::uint32_t i = 0; i < 10; ++i) in.push_back(slot_for(i));
  in[6].buffer = 0xffffffffu;
  ASSERT_EQ(r.producer.enqueue_batch(in), 10u);
  std::array<RingSlot, 10> out;
  out.fill(RingSlot{7, 7, 7, 7, 7});
  EXPECT_EQ(r.consumer.dequeue_batch(out), 6u);
  for (std::uint32_t i = 0; i < 6; ++i) EXPECT_EQ(out[i], slot_for(i));
  for (std::uint32_t i = 6; i < 10; ++i) EXPECT_EQ(out[i], (RingSlot{7, 7, 7, 7, 7}));
  EXPECT_EQ(r.consumer.fault(), RingFault::BadBufferIndex);
  EXPECT_EQ(r.memory.consumer_index().load(), 6u);
  EXPECT_EQ(r.consumer.stats().dequeued, 6u);
}

TEST(RingFaults, BrokenStateIsStickyAndLeavesSharedMemoryAlone) {
  TestRing r(8);
  for (std::uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  r.memory.producer_index().store(100);
  RingSlot got;
  EXPECT_FALSE(r.consumer.try_dequeue(got));
  ASSERT_EQ(r.consumer.fault(), RingFault::ProducerIndexTooFarAhead);

  // The peer "repairs" the ring: the consumer stays broken.
  r.memory.producer_index().store(4);
  const auto stats_before = r.consumer.stats();
  std::array<RingSlot, 8> out{};
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(r.consumer.try_dequeue(got));
    EXPECT_EQ(r.consumer.dequeue_batch(out), 0u);
    EXPECT_EQ(r.consumer.available(), 0u);
    EXPECT_TRUE(r.consumer.broken());
    EXPECT_EQ(r.consumer.fault(), RingFault::ProducerIndexTooFarAhead);
  }
  EXPECT_EQ(r.consumer.stats().dequeued, stats_before.dequeued);
  EXPECT_EQ(r.consumer.stats().producer_index_loads, stats_before.producer_index_loads);
  EXPECT_EQ(r.consumer.stats().empty_events, stats_before.empty_events);
  EXPECT_EQ(r.memory.consumer_index().load(), 0u);

  // Same for the producer.
  for (std::uint32_t i = 4; i < 8; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  r.memory.consumer_index().store(0xfffffff0u);
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(8)));
  ASSERT_EQ(r.producer.fault(), RingFault::ConsumerIndexBackwards);
  r.memory.consumer_index().store(8);  // everything "consumed": still broken
  std::vector<RingSlot> batch{slot_for(8), slot_for(9)};
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(r.producer.try_enqueue(slot_for(8)));
    EXPECT_EQ(r.producer.enqueue_batch(batch), 0u);
    EXPECT_EQ(r.producer.free_slots(), 0u);
    EXPECT_EQ(r.producer.fault(), RingFault::ConsumerIndexBackwards);
  }
  EXPECT_EQ(r.memory.producer_index().load(), 8u);
  EXPECT_EQ(r.producer.stats().enqueued, 8u);
}

TEST(RingFaults, HeaderScribbledAfterAttachChangesNothing) {
  TestRing r(8);
  r.memory.header().capacity.store(0xffffffffu);
  r.memory.header().magic.store(0);
  r.memory.header().slot_bytes.store(1);
  for (std::uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(r.producer.try_enqueue(slot_for(i)));
  EXPECT_FALSE(r.producer.try_enqueue(slot_for(8)));  // the private capacity rules
  std::array<RingSlot, 16> out{};
  EXPECT_EQ(r.consumer.dequeue_batch(out), 8u);
  EXPECT_FALSE(r.consumer.broken());
}

TEST(RingFaults, FaultNamesAreDistinct) {
  std::set<std::string> names;
  for (RingFault f : {RingFault::None, RingFault::ProducerIndexBackwards, RingFault::ProducerIndexTooFarAhead,
                      RingFault::ConsumerIndexBackwards, RingFault::ConsumerIndexPastProducer,
                      RingFault::BadBufferIndex, RingFault::BadLength}) {
    names.insert(std::string(to_string(f)));
  }
  EXPECT_EQ(names.size(), 7u);
  EXPECT_EQ(names.count("unknown"), 0u);
}

// A peer writing random values between our calls: whatever happens, every
// slot delivered is within the limits, and a broken endpoint stays broken.
TEST(RingFaults, RandomScribblingNeverDeliversABadSlot) {
  std::mt19937 rng(20240601);
  std::uint64_t delivered = 0, broke = 0;
  for (int trial = 0; trial < 200; ++trial) {
    TestRing r(16, static_cast<std::uint32_t>(rng()));
    std::array<RingSlot, 8> out{};
    for (int step = 0; step < 200 && !r.consumer.broken(); ++step) {
      switch (rng() % 6) {
        case 0:  // a plausible producer index
          r.memory.producer_index().store(r.memory.consumer_index().load() + rng() % 20);
          break;
        case 1:  // any producer index
          r.memory.producer_index().store(static_cast<std::uint32_t>(rng()));
          break;
        case 2:  // a random slot, mostly near the limits
          r.memory.store_slot(static_cast<std::uint32_t>(rng()),
                              RingSlot{static_cast<std::uint32_t>(rng() % (kBufferCount + 2)),
                                       static_cast<std::uint32_t>(rng() % (kBufferSize + 2)),
                                       static_cast<std::uint16_t>(rng() % 4 == 0 ? rng() : 0),
                                       static_cast<std::uint16_t>(rng()), static_cast<std::uint32_t>(rng())});
          break;
        case 3:  // the consumer's own index, which it must never re-read
          r.memory.consumer_index().store(static_cast<std::uint32_t>(rng()));
          break;
        default: {
          const std::size_t n = r.consumer.dequeue_batch(std::span(out).first(1 + rng() % 8));
          for (std::size_t i = 0; i < n; ++i) {
            ASSERT_LT(out[i].buffer, kBufferCount);
            ASSERT_LE(std::uint64_t{out[i].offset} + out[i].length, kBufferSize);
          }
          delivered += n;
        }
      }
    }
    if (r.consumer.broken()) {
      ++broke;
      EXPECT_NE(r.consumer.fault(), RingFault::None);
      RingSlot got;
      EXPECT_FALSE(r.consumer.try_dequeue(got));
    }
  }
  // The walk must have exercised both outcomes to mean anything.
  EXPECT_GT(delivered, 100u);
  EXPECT_GT(broke, 100u);
}

}  // namespace
}  // namespace usnet::mem
