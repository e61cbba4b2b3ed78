#include "usnet/mem/pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <utility>

#include "usnet/mem/accounting.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::mem {

namespace {
std::error_code einval() noexcept { return std::make_error_code(std::errc::invalid_argument); }
std::error_code enobufs() noexcept { return std::make_error_code(std::errc::no_buffer_space); }
}  // namespace

// --- SegmentSet -------------------------------------------------------------

void PacketPool::SegmentSet::insert(std::uint32_t s) noexcept {
  words_[s / 64] |= std::uint64_t{1} << (s % 64);
  summary_ |= std::uint64_t{1} << (s / 64);
}

void PacketPool::SegmentSet::erase(std::uint32_t s) noexcept {
  words_[s / 64] &= ~(std::uint64_t{1} << (s % 64));
  if (words_[s / 64] == 0) summary_ &= ~(std::uint64_t{1} << (s / 64));
}

std::uint32_t PacketPool::SegmentSet::lowest() const noexcept {
  const auto word = static_cast<std::uint32_t>(std::countr_zero(summary_));
  return word * 64 + static_cast<std::uint32_t>(std::countr_zero(words_[word]));
}

// --- Creation ---------------------------------------------------------------

Expected<PacketPool, std::error_code> PacketPool::create(const PoolConfig& config,
                                                         std::span<std::byte> memory, SegmentHooks hooks) {
  const std::size_t page = Arena::page_size();
  if (config.buffer_size == 0 || config.segment_bytes == 0 || config.segment_bytes % page != 0 ||
      config.buffer_size > config.segment_bytes) {
    return unexpected(einval());
  }
  if (config.max_segments == 0 || config.max_segments > kMaxSegments) return unexpected(einval());
  if (config.idle_period <= std::chrono::nanoseconds::zero()) return unexpected(einval());
  const std::size_t per_segment = config.segment_bytes / config.buffer_size;
  std::size_t buffers = 0;
  std::size_t total_bytes = 0;
  if (__builtin_mul_overflow(per_segment, std::size_t{config.max_segments}, &buffers) ||
      buffers > kMaxBuffers) {
    return unexpected(einval());
  }
  if (__builtin_mul_overflow(config.segment_bytes, std::size_t{config.max_segments}, &total_bytes)) {
    return unexpected(einval());
  }
  // Page-aligned so that whole segments can be given back with madvise.
  if (memory.data() == nullptr || memory.size() < total_bytes ||
      std::bit_cast<std::uintptr_t>(memory.data()) % page != 0) {
    return unexpected(einval());
  }
  return PacketPool(config, memory.first(total_bytes), std::move(hooks),
                    static_cast<std::uint32_t>(per_segment));
}

PacketPool::PacketPool(const PoolConfig& config, std::span<std::byte> memory, SegmentHooks hooks,
                       std::uint32_t per_segment)
    : config_(config),
      memory_(memory),
      hooks_(std::move(hooks)),
      per_segment_(per_segment),
      dense_(std::size_t{per_segment} * config.buffer_size == config.segment_bytes),
      owner_of_(std::size_t{per_segment} * config.max_segments, kNoOwner),
      free_stack_(owner_of_.size()),
      free_count_(config.max_segments, 0),
      segment_active_(config.max_segments, 0) {
  for (std::uint32_t s = 0; s < config.max_segments; ++s) inactive_.insert(s);
}

PacketPool::PacketPool(PacketPool&& other) noexcept
    : config_(other.config_),
      memory_(std::exchange(other.memory_, {})),
      hooks_(std::move(other.hooks_)),
      per_segment_(other.per_segment_),
      dense_(other.dense_),
      owner_of_(std::move(other.owner_of_)),
      free_stack_(std::move(other.free_stack_)),
      free_count_(std::move(other.free_count_)),
      segment_active_(std::move(other.segment_active_)),
      with_free_(other.with_free_),
      inactive_(other.inactive_),
      owners_(std::move(other.owners_)),
      free_slots_(std::move(other.free_slots_)),
      segments_active_(std::exchange(other.segments_active_, 0)),
      keep_segments_(other.keep_segments_),
      in_use_(std::move(other.in_use_)),
      owner_count_(std::exchange(other.owner_count_, 0)),
      floors_total_(std::exchange(other.floors_total_, 0)),
      allocs_(other.allocs_),
      frees_(other.frees_),
      refused_(other.refused_),
      invalid_(other.invalid_),
      segments_set_up_(other.segments_set_up_),
      segments_released_(other.segments_released_) {
  // The moved-from pool owns nothing: its destructor neither tears down
  // segments (its per-segment vector is empty) nor reports leaks.
  other.owner_of_.clear();
  other.segment_active_.clear();
  other.owners_.clear();
  other.with_free_ = {};
  other.inactive_ = {};
}

PacketPool::~PacketPool() {
  for (std::uint32_t s = 0; s < segment_active_.size(); ++s) {
    if (segment_active_[s] != 0 && hooks_.on_teardown) hooks_.on_teardown(s, segment_memory(s));
  }
}

// --- Owners -----------------------------------------------------------------

Expected<OwnerId, std::error_code> PacketPool::add_owner(const OwnerConfig& config) {
  if (config.ceiling == 0 || config.floor > config.ceiling) return unexpected(einval());
  if (owner_count_ >= kMaxOwners || floors_total_ + config.floor > buffers_max()) {
    return unexpected(std::make_error_code(std::errc::no_space_on_device));
  }
  std::uint16_t slot = 0;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint16_t>(owners_.size());
    owners_.emplace_back();
  }
  Owner& o = owners_[slot];
  o.active = true;
  o.period_started = false;
  o.floor = config.floor;
  o.ceiling = config.ceiling;
  o.working_set = config.floor;
  o.held = 0;
  o.min_idle = config.floor;
  ++owner_count_;
  floors_total_ += config.floor;
  return OwnerId{std::uint32_t{o.generation} << 16 | slot};
}

std::error_code PacketPool::remove_owner(OwnerId owner) {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner) {
    ++invalid_;
    return einval();
  }
  Owner& o = owners_[slot];
  if (o.held > 0) return std::make_error_code(std::errc::device_or_resource_busy);
  o.active = false;
  ++o.generation;  // stale ids of this owner no longer match the slot
  --owner_count_;
  floors_total_ -= o.floor;
  free_slots_.push_back(slot);
  return {};
}

std::size_t PacketPool::in_use(OwnerId owner) const noexcept {
  const std::uint16_t slot = slot_of(owner);
  return slot == kNoOwner ? 0 : owners_[slot].held;
}

std::uint32_t PacketPool::working_set(OwnerId owner) const noexcept {
  const std::uint16_t slot = slot_of(owner);
  return slot == kNoOwner ? 0 : owners_[slot].working_set;
}

// CHANNELS.md "Dynamic sizing": grows by half when dry, up to the ceiling.
bool PacketPool::admit_one(Owner& o) noexcept {
  if (o.held < o.working_set) return true;
  if (o.working_set >= o.ceiling) return false;
  const std::uint32_t growth = std::max<std::uint32_t>(1, o.working_set / 2);
  o.working_set = o.ceiling - o.working_set < growth ? o.ceiling : o.working_set + growth;
  return true;
}

void PacketPool::note_usage(Owner& o) noexcept { o.min_idle = std::min(o.min_idle, o.working_set - o.held); }

// --- Buffers ----------------------------------------------------------------

std::span<std::byte> PacketPool::segment_memory(std::uint32_t segment) const noexcept {
  return memory_.subspan(std::size_t{segment} * config_.segment_bytes, config_.segment_bytes);
}

void PacketPool::activate_segment(std::uint32_t segment) noexcept {
  if (hooks_.on_setup) hooks_.on_setup(segment, segment_memory(segment));
  // Stacked so that the lowest buffer is handed out first.
  BufIndex* stack = free_stack_.data() + std::size_t{segment} * per_segment_;
  const BufIndex first = segment * per_segment_;
  for (std::uint32_t k = 0; k < per_segment_; ++k) stack[k] = first + per_segment_ - 1 - k;
  free_count_[segment] = per_segment_;
  segment_active_[segment] = 1;
  inactive_.erase(segment);
  with_free_.insert(segment);
  ++segments_active_;
  ++segments_set_up_;
}

void PacketPool::release_segment(std::uint32_t segment) noexcept {
  const auto mem = segment_memory(segment);
  if (hooks_.on_teardown) hooks_.on_teardown(segment, mem);
  // MADV_REMOVE frees the pages of shared memory (a memfd arena), where
  // MADV_DONTNEED would only unmap them from this process; private memory
  // does not support it and takes MADV_DONTNEED. A failure only means the
  // pages stay resident, so it is not an error of the pool.
  if (madvise(mem.data(), mem.size(), MADV_REMOVE) != 0) madvise(mem.data(), mem.size(), MADV_DONTNEED);
  segment_active_[segment] = 0;
  free_count_[segment] = 0;
  with_free_.erase(segment);
  inactive_.insert(segment);
  --segments_active_;
  ++segments_released_;
}

BufIndex PacketPool::take_buffer() noexcept {
  if (with_free_.empty()) {
    if (inactive_.empty()) return kNoBuffer;
    activate_segment(inactive_.lowest());
  }
  const std::uint32_t s = with_free_.lowest();
  const BufIndex index = free_stack_[std::size_t{s} * per_segment_ + --free_count_[s]];
  if (free_count_[s] == 0) with_free_.erase(s);
  return index;
}

void PacketPool::put_buffer(BufIndex index) noexcept {
  const std::uint32_t s = index / per_segment_;
  free_stack_[std::size_t{s} * per_segment_ + free_count_[s]++] = index;
  if (free_count_[s] == 1) with_free_.insert(s);
}

BufIndex PacketPool::alloc_one(std::uint16_t slot) noexcept {
  Owner& o = owners_[slot];
  const std::uint32_t working_set_before = o.working_set;
  if (!admit_one(o)) {
    ++refused_;
    return kNoBuffer;
  }
  const BufIndex index = take_buffer();
  if (index == kNoBuffer) {
    o.working_set = working_set_before;  // the pool, not the owner, ran out
    ++refused_;
    return kNoBuffer;
  }
  owner_of_[index] = slot;
  ++o.held;
  note_usage(o);
  in_use_.add(1);
  ++allocs_;
  return index;
}

void PacketPool::free_one(std::uint16_t slot, BufIndex index) noexcept {
  owner_of_[index] = kNoOwner;
  put_buffer(index);
  --owners_[slot].held;
  in_use_.sub(1);
  ++frees_;
}

Expected<BufIndex, std::error_code> PacketPool::alloc(OwnerId owner) noexcept {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner) {
    ++invalid_;
    return unexpected(einval());
  }
  const BufIndex index = alloc_one(slot);
  if (index == kNoBuffer) return unexpected(enobufs());
  return index;
}

std::size_t PacketPool::alloc_batch(OwnerId owner, std::span<BufIndex> out) noexcept {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner) {
    ++invalid_;
    return 0;
  }
  std::size_t n = 0;
  for (; n < out.size(); ++n) {
    const BufIndex index = alloc_one(slot);
    if (index == kNoBuffer) break;
    out[n] = index;
  }
  return n;
}

std::error_code PacketPool::free(OwnerId owner, BufIndex index) noexcept {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner || !valid_index(index) || owner_of_[index] != slot) {
    ++invalid_;
    return einval();
  }
  free_one(slot, index);
  return {};
}

std::error_code PacketPool::free_batch(OwnerId owner, std::span<const BufIndex> indices) noexcept {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner) {
    ++invalid_;
    return einval();
  }
  // First pass: check each index and mark it, so an index listed twice finds
  // its own mark; on a refusal, undo the marks and change nothing.
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const BufIndex index = indices[i];
    if (!valid_index(index) || owner_of_[index] != slot) {
      for (std::size_t j = 0; j < i; ++j) owner_of_[indices[j]] = slot;
      ++invalid_;
      return einval();
    }
    owner_of_[index] = kPendingFree;
  }
  for (const BufIndex index : indices) free_one(slot, index);
  return {};
}

std::error_code PacketPool::transfer(OwnerId from, OwnerId to, BufIndex index) noexcept {
  const std::uint16_t from_slot = slot_of(from);
  const std::uint16_t to_slot = slot_of(to);
  if (from_slot == kNoOwner || to_slot == kNoOwner || !valid_index(index) || owner_of_[index] != from_slot) {
    ++invalid_;
    return einval();
  }
  if (from_slot == to_slot) return {};
  Owner& receiver = owners_[to_slot];
  if (!admit_one(receiver)) {
    ++refused_;
    return enobufs();
  }
  owner_of_[index] = to_slot;
  --owners_[from_slot].held;
  ++receiver.held;
  note_usage(receiver);
  return {};
}

std::size_t PacketPool::release_all(OwnerId owner) noexcept {
  const std::uint16_t slot = slot_of(owner);
  if (slot == kNoOwner) return 0;
  std::size_t n = 0;
  for (BufIndex index = 0; index < owner_of_.size() && owners_[slot].held > 0; ++index) {
    if (owner_of_[index] == slot) {
      free_one(slot, index);
      ++n;
    }
  }
  return n;
}

// --- Sizing -----------------------------------------------------------------

void PacketPool::tick(std::chrono::nanoseconds now) {
  std::uint64_t needed_buffers = 0;
  for (Owner& o : owners_) {
    if (!o.active) continue;
    if (!o.period_started) {
      o.period_started = true;
      o.period_start = now;
      o.min_idle = o.working_set - o.held;
    } else if (now - o.period_start >= config_.idle_period) {
      // CHANNELS.md "Dynamic sizing": a quarter sat unused for the whole
      // period, so give a quarter back.
      if (std::uint64_t{o.min_idle} * 4 >= o.working_set) {
        o.working_set = std::max(o.floor, o.working_set - o.working_set / 4);
      }
      o.period_start = now;
      o.min_idle = o.working_set - o.held;
    }
    needed_buffers += o.working_set;
  }
  if (keep_segments_) return;
  const std::uint64_t needed_segments = (needed_buffers + per_segment_ - 1) / per_segment_;
  for (std::uint32_t s = config_.max_segments; s-- > 0 && segments_active_ > needed_segments;) {
    if (segment_active_[s] != 0 && free_count_[s] == per_segment_) release_segment(s);
  }
}

// --- Lookups ----------------------------------------------------------------

std::optional<BufIndex> PacketPool::index_of(const std::byte* p) const noexcept {
  const std::less<const std::byte*> before;
  const std::byte* begin = memory_.data();
  if (before(p, begin) || !before(p, begin + memory_.size())) return std::nullopt;
  const auto offset = static_cast<std::size_t>(p - begin);
  const std::size_t i = offset % config_.segment_bytes / config_.buffer_size;
  if (i >= per_segment_) return std::nullopt;  // in a segment's unused tail
  return static_cast<BufIndex>(offset / config_.segment_bytes * per_segment_ + i);
}

std::optional<OwnerId> PacketPool::owner_of(BufIndex index) const noexcept {
  if (!valid_index(index)) return std::nullopt;
  const std::uint16_t slot = owner_of_[index];
  if (slot >= kPendingFree) return std::nullopt;
  return OwnerId{std::uint32_t{owners_[slot].generation} << 16 | slot};
}

}  // namespace usnet::mem
