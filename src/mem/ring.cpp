#include "usnet/mem/ring.hpp"

#include <memory>

namespace usnet::mem {

namespace {

std::error_code invalid() { return std::make_error_code(std::errc::invalid_argument); }
std::error_code bad_message() { return std::make_error_code(std::errc::bad_message); }

bool aligned(std::byte* p, std::size_t alignment) noexcept {
  // std::align moves the pointer only if it is misaligned; no integer casts.
  void* moved = p;
  std::size_t space = alignment;
  return std::align(alignment, 1, moved, space) == static_cast<void*>(p);
}

bool memory_fits(std::span<std::byte> memory, std::uint32_t capacity) noexcept {
  return RingMemory::valid_capacity(capacity) && memory.data() != nullptr &&
         memory.size() >= RingMemory::bytes_needed(capacity) &&
         aligned(memory.data(), RingMemory::kAlignment);
}

}  // namespace

RingMemory::RingMemory(std::byte* base, std::uint32_t capacity) noexcept
    : header_(std::launder(static_cast<RingSharedHeader*>(static_cast<void*>(base)))),
      slots_(std::launder(static_cast<RingSharedSlot*>(static_cast<void*>(base + kSlotsOffset)))),
      mask_(capacity - 1) {}

Expected<RingMemory, std::error_code> RingMemory::format(std::span<std::byte> memory, std::uint32_t capacity,
                                                         std::uint32_t initial_index) noexcept {
  if (!memory_fits(memory, capacity)) return unexpected(invalid());
  std::byte* base = memory.data();
  // Placement new starts the atomics' lifetimes (value-initialized to 0).
  auto* header = new (base) RingSharedHeader;
  for (std::uint32_t i = 0; i < capacity; ++i)
    new (base + kSlotsOffset + std::size_t{i} * sizeof(RingSharedSlot)) RingSharedSlot;
  header->version.store(kVersion, std::memory_order_relaxed);
  header->capacity.store(capacity, std::memory_order_relaxed);
  header->slot_bytes.store(sizeof(RingSharedSlot), std::memory_order_relaxed);
  header->producer_index.store(initial_index, std::memory_order_relaxed);
  header->consumer_index.store(initial_index, std::memory_order_relaxed);
  // The magic last, with release: a viewer that sees it sees the rest.
  header->magic.store(kMagic, std::memory_order_release);
  return RingMemory(base, capacity);
}

Expected<RingMemory, std::error_code> RingMemory::view(std::span<std::byte> memory,
                                                       std::uint32_t capacity) noexcept {
  if (!memory_fits(memory, capacity)) return unexpected(invalid());
  RingMemory ring(memory.data(), capacity);
  // Read once and only compared: nothing below depends on these values.
  const RingSharedHeader& h = ring.header();
  if (h.magic.load(std::memory_order_acquire) != kMagic ||
      h.version.load(std::memory_order_relaxed) != kVersion ||
      h.capacity.load(std::memory_order_relaxed) != capacity ||
      h.slot_bytes.load(std::memory_order_relaxed) != sizeof(RingSharedSlot)) {
    return unexpected(bad_message());
  }
  return ring;
}

namespace {

// Both endpoints start from the indices found in the ring, checked once.
struct StartIndices {
  std::uint32_t producer;
  std::uint32_t consumer;
};

Expected<StartIndices, std::error_code> start_indices(const RingMemory& ring,
                                                      std::uint32_t capacity) noexcept {
  const std::uint32_t producer = ring.producer_index().load(std::memory_order_acquire);
  const std::uint32_t consumer = ring.consumer_index().load(std::memory_order_acquire);
  if (producer - consumer > capacity) return unexpected(bad_message());
  return StartIndices{producer, consumer};
}

}  // namespace

Expected<RingProducer, std::error_code> RingProducer::attach(std::span<std::byte> memory,
                                                             const RingLimits& limits) noexcept {
  auto ring = RingMemory::view(memory, limits.capacity);
  if (!ring) return unexpected(ring.error());
  auto start = start_indices(*ring, limits.capacity);
  if (!start) return unexpected(start.error());
  return RingProducer(*ring, limits, start->producer, start->consumer);
}

std::uint32_t RingProducer::reload_consumer_index() noexcept {
  const std::uint32_t seen = ring_.consumer_index().load(std::memory_order_acquire);
  ++stats_.consumer_index_loads;
  // Measured from the last consumer index we accepted, the consumer may have
  // taken at most what we had filled.
  const std::uint32_t progress = seen - consumer_cached_;
  const std::uint32_t filled = producer_index_ - consumer_cached_;
  if (progress > filled) {
    fault_ = static_cast<std::int32_t>(progress) < 0 ? RingFault::ConsumerIndexBackwards
                                                     : RingFault::ConsumerIndexPastProducer;
    return 0;
  }
  consumer_cached_ = seen;
  return limits_.capacity - (producer_index_ - seen);
}

Expected<RingConsumer, std::error_code> RingConsumer::attach(std::span<std::byte> memory,
                                                             const RingLimits& limits) noexcept {
  auto ring = RingMemory::view(memory, limits.capacity);
  if (!ring) return unexpected(ring.error());
  auto start = start_indices(*ring, limits.capacity);
  if (!start) return unexpected(start.error());
  return RingConsumer(*ring, limits, start->producer, start->consumer);
}

std::uint32_t RingConsumer::reload_producer_index() noexcept {
  const std::uint32_t seen = ring_.producer_index().load(std::memory_order_acquire);
  ++stats_.producer_index_loads;
  // The producer index only grows, and never past capacity filled slots.
  const std::uint32_t ready = seen - consumer_index_;
  const std::uint32_t ready_before = producer_cached_ - consumer_index_;
  if (ready > limits_.capacity || ready < ready_before) {
    // Which way it went, judged from the last value we accepted (a jump of
    // 2^31 or more either way is ambiguous and reads as backwards).
    fault_ = static_cast<std::int32_t>(seen - producer_cached_) < 0 ? RingFault::ProducerIndexBackwards
                                                                    : RingFault::ProducerIndexTooFarAhead;
    return 0;
  }
  producer_cached_ = seen;
  return ready;
}

}  // namespace usnet::mem
