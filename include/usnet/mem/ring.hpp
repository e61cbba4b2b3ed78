// Lock-free single-producer single-consumer rings in shared memory, safe
// between two processes that do not trust each other.
//
// A ring is a header and a power-of-two array of slots. A slot names a
// buffer by index (never a pointer: the two processes map the memory at
// different addresses) with a length, a headroom offset, flags and an opaque
// cookie that is carried as-is.
//
// Shared layout (host byte order: both ends run on the same machine):
//
//   offset   0  info line      magic, version, capacity, slot bytes (set by
//                              format(), checked once by attach)
//   offset 128  producer index std::atomic<uint32_t>, written by the producer
//   offset 256  consumer index std::atomic<uint32_t>, written by the consumer
//   offset 384  slots          capacity x 16 bytes (two 64-bit words each)
//
// The two indices sit 128 bytes apart, not just on separate 64-byte lines,
// because many x86 cores prefetch lines in adjacent pairs: a 64-byte gap would
// still let the producer's and the consumer's writes fight over one pair.
//
// Indices are free-running u32 counters; slot i lives at i & (capacity - 1).
// producer_index - consumer_index (mod 2^32) is the number of filled slots
// and is at most capacity, which is why capacity may be at most 2^31.
//
// Protocol: the producer writes slots, then stores its index with release;
// the consumer loads that index with acquire, copies the slots out, then
// stores its own index with release; the producer loads it with acquire
// before reusing those slots. Each side keeps its own index and the capacity
// in private memory and never re-reads them from the shared header. The
// other side's index is cached privately and re-read only when the cache
// says the ring is full (producer) or empty (consumer).
//
// Trust: the shared memory may be written at any time by a hostile peer.
// Every value read from it is checked before use, and a slot is copied out
// of shared memory exactly once (two relaxed atomic loads) and only the
// private copy is checked and delivered. Any violation is a fatal error of
// the channel (CHANNELS.md, "Rings and sync"): the endpoint becomes broken,
// remembers why in fault(), and every later call returns 0/false without
// touching the shared memory again. A broken endpoint never reads out of
// bounds (slot positions are masked with the private capacity) and never
// delivers a bad slot.
//
// The producer does not check the slots it is given: they come from its own
// process, and the consumer has to check them anyway.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "usnet/util/expected.hpp"

namespace usnet::mem {

struct RingSlot {
  std::uint32_t buffer = 0;  // index into the buffer pool, < buffer_count
  std::uint32_t length = 0;  // bytes of data after `offset`
  std::uint16_t offset = 0;  // headroom before the data; offset + length <= buffer_size
  std::uint16_t flags = 0;   // meaning is up to the channel; carried as-is
  std::uint32_t cookie = 0;  // opaque to the ring; carried as-is

  friend bool operator==(const RingSlot&, const RingSlot&) = default;
};
static_assert(sizeof(RingSlot) == 16);
static_assert(std::is_trivially_copyable_v<RingSlot>);

// What an endpoint checks against. Held privately by each endpoint: a peer
// cannot change them by writing the shared header.
struct RingLimits {
  std::uint32_t capacity = 0;      // slots: a power of two in [1, 2^31]
  std::uint32_t buffer_count = 0;  // valid buffer indices are [0, buffer_count)
  std::uint32_t buffer_size = 0;   // bytes per buffer
};

// Why an endpoint broke. Each is a violation by the peer.
enum class RingFault : std::uint8_t {
  None,
  ProducerIndexBackwards,     // consumer saw the producer index move back
  ProducerIndexTooFarAhead,   // consumer saw more than `capacity` filled slots
  ConsumerIndexBackwards,     // producer saw the consumer index move back
  ConsumerIndexPastProducer,  // producer saw the consumer take slots never filled
  BadBufferIndex,             // consumer read a slot with buffer >= buffer_count
  BadLength,                  // consumer read a slot with offset + length > buffer_size
};

constexpr std::string_view to_string(RingFault f) noexcept {
  switch (f) {
    case RingFault::None:
      return "none";
    case RingFault::ProducerIndexBackwards:
      return "producer index moved backwards";
    case RingFault::ProducerIndexTooFarAhead:
      return "producer index more than capacity ahead";
    case RingFault::ConsumerIndexBackwards:
      return "consumer index moved backwards";
    case RingFault::ConsumerIndexPastProducer:
      return "consumer index past producer index";
    case RingFault::BadBufferIndex:
      return "bad buffer index";
    case RingFault::BadLength:
      return "offset + length past the buffer";
  }
  return "unknown";
}

// The shared header. Every field is atomic because the peer may write any of
// them at any moment; the info fields are only read once, at attach.
struct RingSharedHeader {
  static constexpr std::size_t kLine = 128;  // see "two indices sit 128 bytes apart" above
  alignas(kLine) std::atomic<std::uint32_t> magic;
  std::atomic<std::uint32_t> version;
  std::atomic<std::uint32_t> capacity;
  std::atomic<std::uint32_t> slot_bytes;
  alignas(kLine) std::atomic<std::uint32_t> producer_index;
  alignas(kLine) std::atomic<std::uint32_t> consumer_index;
};

// A slot as stored in shared memory: two words, each written and read with a
// single relaxed atomic access, so reading a slot the peer is scribbling on
// is still a well-defined copy (of garbage, which is then checked).
struct alignas(16) RingSharedSlot {
  std::atomic<std::uint64_t> words[2];
};

static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "ring indices must be lock-free");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "ring slot words must be lock-free");
static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && sizeof(std::atomic<std::uint64_t>) == 8);
static_assert(std::is_standard_layout_v<RingSharedHeader>);
static_assert(offsetof(RingSharedHeader, magic) == 0);
static_assert(offsetof(RingSharedHeader, producer_index) == 128);
static_assert(offsetof(RingSharedHeader, consumer_index) == 256);
static_assert(sizeof(RingSharedHeader) == 384);
static_assert(sizeof(RingSharedSlot) == 16 && alignof(RingSharedSlot) == 16);
static_assert(std::is_trivially_destructible_v<RingSharedHeader> &&
              std::is_trivially_destructible_v<RingSharedSlot>);

// Typed access to a ring's shared memory, with no checks beyond the layout.
// The endpoints are built on it; tests and hostile-peer simulations use it to
// write whatever they like into a ring.
//
// The header and slots are std::atomic objects created in the memory by
// format() with placement new. view() reaches them through std::launder over
// the bytes (in another process: over its own mapping of the same memory),
// which is the one place the ring turns raw bytes into typed objects; atomics
// cannot be reached through memcpy.
class RingMemory {
 public:
  static constexpr std::uint32_t kMagic = 0x55'52'4e'47;  // "URNG"
  static constexpr std::uint32_t kVersion = 1;
  static constexpr std::size_t kAlignment = RingSharedHeader::kLine;
  static constexpr std::size_t kSlotsOffset = sizeof(RingSharedHeader);
  static constexpr std::uint32_t kMaxCapacity = 1u << 31;

  static constexpr bool valid_capacity(std::uint32_t capacity) noexcept {
    return capacity != 0 && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0;
  }
  // Bytes a ring of `capacity` slots occupies; 0 if the capacity is invalid.
  static constexpr std::size_t bytes_needed(std::uint32_t capacity) noexcept {
    return valid_capacity(capacity) ? kSlotsOffset + std::size_t{capacity} * sizeof(RingSharedSlot) : 0;
  }

  // For the creator: lays out an empty ring in `memory` with both indices at
  // `initial_index` (tests start near 2^32 to cross the wrap) and zeroed
  // slots. EINVAL: bad capacity, memory too small or not kAlignment-aligned.
  static Expected<RingMemory, std::error_code> format(std::span<std::byte> memory, std::uint32_t capacity,
                                                      std::uint32_t initial_index = 0) noexcept;

  // Views a ring formatted by someone else (maybe another process). Checks
  // the memory like format() and the info line once against `capacity`
  // (EBADMSG if the magic, version, capacity or slot size differ). The
  // capacity used afterwards is the caller's, not the header's.
  static Expected<RingMemory, std::error_code> view(std::span<std::byte> memory,
                                                    std::uint32_t capacity) noexcept;

  std::atomic<std::uint32_t>& producer_index() const noexcept { return header_->producer_index; }
  std::atomic<std::uint32_t>& consumer_index() const noexcept { return header_->consumer_index; }
  RingSharedHeader& header() const noexcept { return *header_; }

  // `index` is a free-running ring index; it is masked here, so no index can
  // reach outside the slot array.
  void store_slot(std::uint32_t index, const RingSlot& s) const noexcept {
    RingSharedSlot& slot = slots_[index & mask_];
    slot.words[0].store(std::uint64_t{s.buffer} | std::uint64_t{s.length} << 32, std::memory_order_relaxed);
    slot.words[1].store(
        std::uint64_t{s.offset} | std::uint64_t{s.flags} << 16 | std::uint64_t{s.cookie} << 32,
        std::memory_order_relaxed);
  }
  RingSlot load_slot(std::uint32_t index) const noexcept {
    const RingSharedSlot& slot = slots_[index & mask_];
    const std::uint64_t w0 = slot.words[0].load(std::memory_order_relaxed);
    const std::uint64_t w1 = slot.words[1].load(std::memory_order_relaxed);
    return RingSlot{static_cast<std::uint32_t>(w0), static_cast<std::uint32_t>(w0 >> 32),
                    static_cast<std::uint16_t>(w1), static_cast<std::uint16_t>(w1 >> 16),
                    static_cast<std::uint32_t>(w1 >> 32)};
  }

  std::uint32_t capacity() const noexcept { return mask_ + 1; }

 private:
  RingMemory(std::byte* base, std::uint32_t capacity) noexcept;
  RingSharedHeader* header_ = nullptr;
  RingSharedSlot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
};

struct RingProducerStats {
  std::uint64_t enqueued = 0;
  std::uint64_t full_events = 0;           // calls that could not place every slot offered
  std::uint64_t consumer_index_loads = 0;  // acquire loads of the peer's index
};

struct RingConsumerStats {
  std::uint64_t dequeued = 0;
  std::uint64_t empty_events = 0;          // calls that found nothing to take
  std::uint64_t producer_index_loads = 0;  // acquire loads of the peer's index
};

class RingProducer {
 public:
  // Attaches to a ring formatted with limits.capacity slots. Reads both
  // indices once to start from (EBADMSG if they are more than capacity
  // apart); EINVAL if the limits or the memory are unusable.
  static Expected<RingProducer, std::error_code> attach(std::span<std::byte> memory,
                                                        const RingLimits& limits) noexcept;

  // False if the ring is full or the endpoint is broken.
  bool try_enqueue(const RingSlot& slot) noexcept {
    if (broken()) return false;
    if (producer_index_ - consumer_cached_ == limits_.capacity && reload_consumer_index() == 0) {
      if (!broken()) ++stats_.full_events;
      return false;
    }
    ring_.store_slot(producer_index_, slot);
    ++producer_index_;
    ring_.producer_index().store(producer_index_, std::memory_order_release);
    ++stats_.enqueued;
    return true;
  }

  // Places as many leading slots as fit (0 when full or broken), with one
  // release store of the producer index for the whole batch.
  std::size_t enqueue_batch(std::span<const RingSlot> slots) noexcept {
    if (broken() || slots.empty()) return 0;
    std::uint32_t free = limits_.capacity - (producer_index_ - consumer_cached_);
    if (free == 0) free = reload_consumer_index();
    const std::uint32_t n = slots.size() < free ? static_cast<std::uint32_t>(slots.size()) : free;
    if (n < slots.size() && !broken()) ++stats_.full_events;
    if (n == 0) return 0;
    for (std::uint32_t i = 0; i < n; ++i) ring_.store_slot(producer_index_ + i, slots[i]);
    producer_index_ += n;
    ring_.producer_index().store(producer_index_, std::memory_order_release);
    stats_.enqueued += n;
    return n;
  }

  // Free slots now: re-reads (and checks) the consumer index. 0 if broken.
  std::uint32_t free_slots() noexcept { return broken() ? 0 : reload_consumer_index(); }

  bool broken() const noexcept { return fault_ != RingFault::None; }
  RingFault fault() const noexcept { return fault_; }
  const RingProducerStats& stats() const noexcept { return stats_; }
  const RingLimits& limits() const noexcept { return limits_; }

 private:
  RingProducer(const RingMemory& ring, const RingLimits& limits, std::uint32_t producer_index,
               std::uint32_t consumer_index) noexcept
      : ring_(ring), limits_(limits), producer_index_(producer_index), consumer_cached_(consumer_index) {}
  // Loads the consumer index (acquire), checks it and returns the free slots;
  // breaks the endpoint and returns 0 on a violation.
  std::uint32_t reload_consumer_index() noexcept;

  RingMemory ring_;
  RingLimits limits_;
  std::uint32_t producer_index_;  // ours: never re-read from shared memory
  std::uint32_t consumer_cached_;
  RingFault fault_ = RingFault::None;
  RingProducerStats stats_;
};

class RingConsumer {
 public:
  // As RingProducer::attach.
  static Expected<RingConsumer, std::error_code> attach(std::span<std::byte> memory,
                                                        const RingLimits& limits) noexcept;

  // False if the ring is empty or the endpoint is broken (check broken()).
  bool try_dequeue(RingSlot& out) noexcept {
    if (broken()) return false;
    if (producer_cached_ == consumer_index_ && reload_producer_index() == 0) {
      if (!broken()) ++stats_.empty_events;
      return false;
    }
    const RingSlot slot = ring_.load_slot(consumer_index_);
    if (!slot_ok(slot)) return false;
    out = slot;
    ++consumer_index_;
    ring_.consumer_index().store(consumer_index_, std::memory_order_release);
    ++stats_.dequeued;
    return true;
  }

  // Takes up to out.size() slots, with at most one acquire load of the
  // producer index and one release store of ours. If a bad slot turns up,
  // the good slots before it are delivered (and returned), the bad one is
  // not, and the endpoint is broken.
  std::size_t dequeue_batch(std::span<RingSlot> out) noexcept {
    if (broken() || out.empty()) return 0;
    std::uint32_t ready = producer_cached_ - consumer_index_;
    if (ready == 0) ready = reload_producer_index();
    std::uint32_t n = out.size() < ready ? static_cast<std::uint32_t>(out.size()) : ready;
    if (n == 0) {
      if (!broken()) ++stats_.empty_events;
      return 0;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      const RingSlot slot = ring_.load_slot(consumer_index_ + i);
      if (!slot_ok(slot)) {
        n = i;
        break;
      }
      out[i] = slot;
    }
    if (n == 0) return 0;
    consumer_index_ += n;
    ring_.consumer_index().store(consumer_index_, std::memory_order_release);
    stats_.dequeued += n;
    return n;
  }

  // Filled slots now: re-reads (and checks) the producer index. 0 if broken.
  std::uint32_t available() noexcept { return broken() ? 0 : reload_producer_index(); }

  bool broken() const noexcept { return fault_ != RingFault::None; }
  RingFault fault() const noexcept { return fault_; }
  const RingConsumerStats& stats() const noexcept { return stats_; }
  const RingLimits& limits() const noexcept { return limits_; }

 private:
  RingConsumer(const RingMemory& ring, const RingLimits& limits, std::uint32_t producer_index,
               std::uint32_t consumer_index) noexcept
      : ring_(ring), limits_(limits), consumer_index_(consumer_index), producer_cached_(producer_index) {}
  // Loads the producer index (acquire), checks it and returns the filled
  // slots; breaks the endpoint and returns 0 on a violation.
  std::uint32_t reload_producer_index() noexcept;

  // Checks the private copy of a slot; breaks the endpoint if it is bad.
  bool slot_ok(const RingSlot& slot) noexcept {
    if (slot.buffer >= limits_.buffer_count) {
      fault_ = RingFault::BadBufferIndex;
      return false;
    }
    // In 64 bits: a u16 plus a u32 cannot overflow there.
    if (std::uint64_t{slot.offset} + slot.length > limits_.buffer_size) {
      fault_ = RingFault::BadLength;
      return false;
    }
    return true;
  }

  RingMemory ring_;
  RingLimits limits_;
  std::uint32_t consumer_index_;  // ours: never re-read from shared memory
  std::uint32_t producer_cached_;
  RingFault fault_ = RingFault::None;
  RingConsumerStats stats_;
};

}  // namespace usnet::mem
