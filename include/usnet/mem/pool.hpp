// The packet pool: fixed-size buffers carved from segments of whole pages,
// handed to owners (channels, the daemon) by index.
//
// Memory. The pool does not allocate packet memory: it is given a span (an
// arena region, typically) of at least max_segments * segment_bytes bytes,
// page-aligned. Segment s covers [s * segment_bytes, (s + 1) * segment_bytes);
// it holds buffers_per_segment = segment_bytes / buffer_size buffers back to
// back from its start (any remainder is unused). Buffer index
// s * buffers_per_segment + i names buffer i of segment s.
//
// Segments. A segment is the unit of set-up: it is brought into use lazily,
// when an allocation finds no free buffer in the segments already in use,
// and the set-up hook runs once for it then (where a driver would pin it and
// look up its I/O address). tick() releases segments whose buffers are all
// free, beyond what the owners' working sets need: the tear-down hook runs,
// then the pages go back to the system (madvise MADV_REMOVE, which frees the
// pages of shared memory such as a memfd, or MADV_DONTNEED for private
// memory). The destructor runs the tear-down hook of every segment still in
// use but leaves the memory, which the caller owns, alone. Allocation takes
// the lowest-numbered segment that has a free buffer, so buffers pack into
// low segments and high segments drain and can be released.
//
// Owners and accounting. Every buffer handed out is recorded with its owner.
// free() and transfer() of a buffer the owner does not hold (never given,
// someone else's, already freed) fail with EINVAL and change nothing. Every
// allocation and free is reported to the process-wide counters of
// accounting.hpp; a pool destroyed with buffers out reports them as leaked.
//
// Working sets (CHANNELS.md "Dynamic sizing"). Each owner has a working set
// W, starting at its floor and always within [floor, ceiling]:
//   - Growth: an owner that asks for a buffer (alloc, or receiving one by
//     transfer) while it holds W or more "runs dry": W += max(1, W / 2),
//     capped at the ceiling, then the request proceeds. If W is already at
//     the ceiling the request fails with ENOBUFS. So an owner never holds
//     more than its ceiling, and never more than W.
//   - Shrinking, driven by tick(now) with time supplied by the caller (the
//     pool reads no clock). An owner's idle period starts at the first tick
//     after it was added, and again at every tick that ends a period. Over
//     the period the pool tracks the minimum of W - held. When a tick finds
//     that at least idle_period has passed since the period started: if that
//     minimum was at least a quarter of W (4 * min >= W), W -= W / 4, but not
//     below the floor; either way a new period starts at this tick with the
//     minimum reset to the current W - held. A late tick ends one period,
//     not several. Shrinking never takes W below what the owner holds (it
//     held at most 3/4 W the whole period).
//   - Release: then, while more segments are in use than
//     ceil(sum of W over owners / buffers_per_segment), the highest-numbered
//     segment whose buffers are all free is released.
//
// Cost. alloc, free and transfer are O(1): index arithmetic, a per-segment
// free stack, a compact owner-per-buffer array and a two-level bitmap of
// segments with free buffers; no heap allocation and no syscall (bringing a
// segment into use, O(buffers_per_segment) once, and the hooks are the only
// extra work). tick is O(owners + segments) and may make syscalls.
// The pool is not thread-safe: one thread (the daemon's) drives it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "usnet/mem/accounting.hpp"
#include "usnet/util/expected.hpp"

namespace usnet::mem {

using BufIndex = std::uint32_t;

// Identifies an owner; ids of removed owners are never confused with later
// ones (a generation count guards the slot, wrapping after 65536 reuses).
struct OwnerId {
  std::uint32_t value = 0xffffffff;
  friend bool operator==(const OwnerId&, const OwnerId&) = default;
};

struct PoolConfig {
  std::size_t buffer_size = 2048;  // bytes per buffer; > 0 and <= segment_bytes
  std::size_t segment_bytes = 0;   // > 0, a whole number of pages
  std::uint32_t max_segments = 0;  // 1 .. PacketPool::kMaxSegments
  std::chrono::nanoseconds idle_period = std::chrono::seconds(2);  // > 0
};

struct OwnerConfig {
  std::uint32_t floor = 0;    // working set never shrinks below this
  std::uint32_t ceiling = 0;  // > 0 and >= floor: most buffers the owner may hold
};

// Called with the segment's index and its whole memory (segment_bytes).
// Hooks must not throw and must not call back into the pool.
struct SegmentHooks {
  std::function<void(std::uint32_t segment, std::span<std::byte> memory)> on_setup;
  std::function<void(std::uint32_t segment, std::span<std::byte> memory)> on_teardown;
};

class PacketPool {
 public:
  static constexpr std::uint32_t kMaxSegments = 64 * 64;   // the two-level bitmap's reach
  static constexpr std::size_t kMaxBuffers = 0xffffffffu;  // every index fits a BufIndex
  static constexpr std::size_t kMaxOwners = 0xfffd;        // two owner codes are reserved

  // EINVAL if: buffer_size is 0 or larger than a segment; segment_bytes is 0
  // or not a multiple of the page size; max_segments is 0 or above
  // kMaxSegments; the buffer count exceeds kMaxBuffers; idle_period <= 0;
  // `memory` is not page-aligned or smaller than max_segments * segment_bytes.
  // `memory` must outlive the pool.
  static Expected<PacketPool, std::error_code> create(const PoolConfig& config, std::span<std::byte> memory,
                                                      SegmentHooks hooks = {});

  PacketPool(PacketPool&& other) noexcept;
  PacketPool& operator=(PacketPool&&) = delete;
  PacketPool(const PacketPool&) = delete;
  PacketPool& operator=(const PacketPool&) = delete;
  // Runs the tear-down hook of every segment in use; buffers still out are
  // reported to accounting as leaked.
  ~PacketPool();

  // EINVAL for a bad config (ceiling 0 or below floor); ENOSPC when the
  // floors of all owners would exceed the pool's buffers, or there are
  // kMaxOwners owners already.
  Expected<OwnerId, std::error_code> add_owner(const OwnerConfig& config);
  // EINVAL for an unknown owner; EBUSY while it holds buffers.
  std::error_code remove_owner(OwnerId owner);
  bool has_owner(OwnerId owner) const noexcept { return slot_of(owner) != kNoOwner; }

  // ENOBUFS when the owner is at its ceiling or every buffer is in use;
  // EINVAL for an unknown owner.
  Expected<BufIndex, std::error_code> alloc(OwnerId owner) noexcept;
  // Allocates up to out.size() buffers, stopping at the first refusal; returns
  // how many were written to the front of `out`.
  std::size_t alloc_batch(OwnerId owner, std::span<BufIndex> out) noexcept;
  // EINVAL (and nothing changes) for an unknown owner, an index out of range,
  // or a buffer this owner does not hold.
  std::error_code free(OwnerId owner, BufIndex index) noexcept;
  // All or nothing: EINVAL, and nothing is freed, if any index would be
  // refused by free() (including one listed twice).
  std::error_code free_batch(OwnerId owner, std::span<const BufIndex> indices) noexcept;
  // Hands a buffer held by `from` to `to`, which grows its working set as for
  // an allocation. EINVAL as for free(); ENOBUFS if `to` is at its ceiling.
  std::error_code transfer(OwnerId from, OwnerId to, BufIndex index) noexcept;
  // Frees every buffer the owner holds (a closed or defunct channel); returns
  // how many. O(buffers). 0 for an unknown owner.
  std::size_t release_all(OwnerId owner) noexcept;

  // Ends idle periods, shrinks working sets and releases segments (see the
  // rules at the top). `now` is any monotonic clock's time.
  void tick(std::chrono::nanoseconds now);

  // From now on tick() releases no segment: a device has registered the
  // pool's memory (an AF_XDP UMEM pins its pages) and would keep using the
  // old pages if a segment's pages went back to the system. Working sets
  // still shrink and grow. There is no undoing it: a registration outlives
  // the code that asked for it only as long as the pool, which is enough.
  void keep_segments() noexcept { keep_segments_ = true; }
  bool keeps_segments() const noexcept { return keep_segments_; }

  // The memory given at create(): buffer i of segment s at byte offset
  // s * segment_bytes + i * buffer_size.
  std::span<std::byte> memory() const noexcept { return memory_; }
  std::size_t segment_bytes() const noexcept { return config_.segment_bytes; }

  // The buffer's bytes; empty if the index is out of range.
  std::span<std::byte> buffer(BufIndex index) const noexcept {  // inline: on every packet's path
    if (!valid_index(index)) return {};
    // Segments without an unused tail (the usual sizes): no division.
    if (dense_) return memory_.subspan(std::size_t{index} * config_.buffer_size, config_.buffer_size);
    const std::size_t s = index / per_segment_;
    const std::size_t i = index % per_segment_;
    return memory_.subspan(s * config_.segment_bytes + i * config_.buffer_size, config_.buffer_size);
  }
  // The index of the buffer containing `p`, if `p` points into one.
  std::optional<BufIndex> index_of(const std::byte* p) const noexcept;
  // The owner holding the buffer, if any.
  std::optional<OwnerId> owner_of(BufIndex index) const noexcept;

  std::size_t buffer_size() const noexcept { return config_.buffer_size; }
  std::uint32_t buffers_per_segment() const noexcept { return per_segment_; }
  std::uint32_t max_segments() const noexcept { return config_.max_segments; }
  std::size_t buffers_max() const noexcept { return owner_of_.size(); }
  // Buffers in segments now in use (free or not).
  std::size_t buffers_capacity() const noexcept { return std::size_t{segments_active_} * per_segment_; }
  std::uint32_t segments_active() const noexcept { return segments_active_; }
  std::size_t in_use() const noexcept { return in_use_.get(); }
  // 0 for an unknown owner.
  std::size_t in_use(OwnerId owner) const noexcept;
  // The owner's working set W; 0 for an unknown owner.
  std::uint32_t working_set(OwnerId owner) const noexcept;
  std::size_t owner_count() const noexcept { return owner_count_; }

  std::uint64_t allocs() const noexcept { return allocs_; }
  std::uint64_t frees() const noexcept { return frees_; }
  // Allocations and transfers refused for lack of buffers (ENOBUFS).
  std::uint64_t refused() const noexcept { return refused_; }
  // Frees, transfers and removals refused as invalid (EINVAL), e.g. a
  // foreign or double free: the signs of a misbehaving owner.
  std::uint64_t invalid_requests() const noexcept { return invalid_; }
  std::uint64_t segments_set_up() const noexcept { return segments_set_up_; }
  std::uint64_t segments_released() const noexcept { return segments_released_; }

 private:
  static constexpr std::uint16_t kNoOwner = 0xffff;
  static constexpr std::uint16_t kPendingFree = 0xfffe;  // marks a buffer during free_batch

  // A set of segment numbers below kMaxSegments with O(1) insert, erase and
  // lowest(): 64 words of 64 bits, and a summary word of non-empty words.
  class SegmentSet {
   public:
    void insert(std::uint32_t s) noexcept;
    void erase(std::uint32_t s) noexcept;
    bool empty() const noexcept { return summary_ == 0; }
    std::uint32_t lowest() const noexcept;  // precondition: !empty()

   private:
    std::uint64_t summary_ = 0;
    std::uint64_t words_[kMaxSegments / 64] = {};
  };

  struct Owner {
    std::uint16_t generation = 0;
    bool active = false;
    bool period_started = false;
    std::uint32_t floor = 0;
    std::uint32_t ceiling = 0;
    std::uint32_t working_set = 0;
    std::uint32_t held = 0;
    std::uint32_t min_idle = 0;  // min of working_set - held this period
    std::chrono::nanoseconds period_start{0};
  };

  PacketPool(const PoolConfig& config, std::span<std::byte> memory, SegmentHooks hooks,
             std::uint32_t per_segment);

  std::uint16_t slot_of(OwnerId owner) const noexcept {  // inline: every alloc, free and transfer
    const std::uint32_t slot = owner.value & 0xffff;
    const std::uint32_t generation = owner.value >> 16;
    if (slot >= owners_.size()) return kNoOwner;
    const Owner& o = owners_[slot];
    return o.active && o.generation == generation ? static_cast<std::uint16_t>(slot) : kNoOwner;
  }
  bool valid_index(BufIndex index) const noexcept { return index < owner_of_.size(); }
  // Makes room for one more buffer held by `o`: grows W if it is dry.
  // False (nothing changed) if the owner is at its ceiling.
  bool admit_one(Owner& o) noexcept;
  // "No buffer" from the two below. Not an optional: GCC returns an
  // optional<uint32_t> built by two stores and read back by one load, a
  // failed store forward that waits for every older store to drain (on a
  // send path, stores into a peer's cache lines).
  static constexpr BufIndex kNoBuffer = 0xffffffffu;
  // Pops a free buffer, bringing a segment into use if needed; kNoBuffer.
  BufIndex take_buffer() noexcept;
  void put_buffer(BufIndex index) noexcept;
  // One allocation for the owner in `slot`, without the process-wide count;
  // kNoBuffer if refused.
  BufIndex alloc_one(std::uint16_t slot) noexcept;
  // Frees a buffer known to be held by the owner in `slot`, likewise.
  void free_one(std::uint16_t slot, BufIndex index) noexcept;
  void activate_segment(std::uint32_t segment) noexcept;
  void release_segment(std::uint32_t segment) noexcept;
  std::span<std::byte> segment_memory(std::uint32_t segment) const noexcept;
  static void note_usage(Owner& o) noexcept;

  PoolConfig config_;
  std::span<std::byte> memory_;
  SegmentHooks hooks_;
  std::uint32_t per_segment_ = 0;
  bool dense_ = false;  // segment_bytes == per_segment_ * buffer_size

  std::vector<std::uint16_t> owner_of_;       // per buffer: owner slot, kNoOwner if free
  std::vector<BufIndex> free_stack_;          // per segment, a slice of per_segment_ entries
  std::vector<std::uint32_t> free_count_;     // per segment: entries on its stack
  std::vector<std::uint8_t> segment_active_;  // per segment
  SegmentSet with_free_;                      // active segments with a free buffer
  SegmentSet inactive_;                       // segments not in use
  std::vector<Owner> owners_;
  std::vector<std::uint16_t> free_slots_;

  std::uint32_t segments_active_ = 0;
  bool keep_segments_ = false;
  detail::InUseTally in_use_;  // buffers handed out, seen by buffers_in_use_all_pools()
  std::size_t owner_count_ = 0;
  std::uint64_t floors_total_ = 0;
  std::uint64_t allocs_ = 0, frees_ = 0, refused_ = 0, invalid_ = 0;
  std::uint64_t segments_set_up_ = 0, segments_released_ = 0;
};

}  // namespace usnet::mem
