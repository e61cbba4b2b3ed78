// The hierarchical timing wheel; the design is in the header.
#include "usnet/tcp/timer_wheel.hpp"

#include <cassert>
#include <limits>

namespace usnet::tcp {

namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

// Ticks in a non-negative duration, rounded down (for "now").
std::uint64_t floor_ticks(Nanos t, Nanos tick) noexcept {
  if (t.count() <= 0) return 0;
  return static_cast<std::uint64_t>(t.count() / tick.count());
}

}  // namespace

Expected<TimerWheel, std::error_code> TimerWheel::create(const TimerWheelConfig& config, Nanos now) {
  if (config.capacity == 0 || config.capacity > kMaxCapacity || config.tick.count() <= 0 ||
      config.levels == 0 || config.levels > kMaxLevels) {
    return unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  TimerWheel w;
  w.levels_ = config.levels;
  w.tick_ = config.tick;
  w.nodes_.resize(config.capacity);
  for (std::uint32_t i = 0; i < config.capacity; ++i)
    w.nodes_[i].next = i + 1 < config.capacity ? i + 1 : kNil;
  w.free_head_ = 0;
  w.heads_.assign(std::size_t{config.levels} * kSlots + 2, kNil);
  w.current_ = floor_ticks(now, config.tick);
  w.target_ = w.current_;
  w.next_cache_ = kNever;
  return w;
}

// A deadline rounded UP to a whole tick, so that nothing fires early.
std::uint64_t TimerWheel::to_tick(Nanos t) const noexcept {
  if (t.count() <= 0) return 0;
  const auto q = static_cast<std::uint64_t>(t.count() / tick_.count());
  return t.count() % tick_.count() != 0 ? q + 1 : q;
}

Nanos TimerWheel::range() const noexcept {
  const std::uint64_t ticks = std::uint64_t{1} << (kBits * levels_);
  const auto max_ticks = static_cast<std::uint64_t>(std::numeric_limits<Nanos::rep>::max() / tick_.count());
  if (ticks > max_ticks) return Nanos::max();
  return tick_ * static_cast<std::int64_t>(ticks);
}

bool TimerWheel::live(TimerId id) const noexcept {
  return id.index < nodes_.size() && nodes_[id.index].list != kFree &&
         nodes_[id.index].generation == id.generation;
}

bool TimerWheel::pending(TimerId id) const noexcept { return live(id); }

std::optional<std::uint64_t> TimerWheel::cookie(TimerId id) const noexcept {
  if (!live(id)) return std::nullopt;
  return nodes_[id.index].cookie;
}

// Lists are circular and doubly linked; the head's prev is the tail, so
// appending keeps schedule order within a bucket.
void TimerWheel::link(std::uint32_t i, std::uint16_t list) noexcept {
  Node& n = nodes_[i];
  const std::uint32_t h = heads_[list];
  if (h == kNil) {
    n.next = n.prev = i;
    heads_[list] = i;
  } else {
    const std::uint32_t t = nodes_[h].prev;
    n.prev = t;
    n.next = h;
    nodes_[t].next = i;
    nodes_[h].prev = i;
  }
  n.list = list;
  if (list < levels_ * kSlots) occupied_[list / kSlots] |= std::uint64_t{1} << (list % kSlots);
}

void TimerWheel::unlink(std::uint32_t i) noexcept {
  Node& n = nodes_[i];
  const std::uint16_t list = n.list;
  if (n.next == i) {
    heads_[list] = kNil;
    if (list < levels_ * kSlots) occupied_[list / kSlots] &= ~(std::uint64_t{1} << (list % kSlots));
  } else {
    nodes_[n.prev].next = n.next;
    nodes_[n.next].prev = n.prev;
    if (heads_[list] == i) heads_[list] = n.next;
  }
  n.next = n.prev = kNil;
  n.list = kFree;
}

// Puts an unlinked timer where it belongs relative to current_ (header:
// "Representation").
void TimerWheel::place(std::uint32_t i) noexcept {
  Node& n = nodes_[i];
  if (n.due <= current_) {
    link(i, due_list());
    return;
  }
  const std::uint64_t span = std::uint64_t{1} << (kBits * levels_);
  std::uint64_t at = n.due;
  if (at - current_ >= span) {
    // Beyond the range: as far out as the range allows; the cascade there
    // places it again with its true deadline.
    at = current_ + span - 1;
    ++counters_.clamped;
  }
  const std::uint64_t differ = (at ^ current_) | (kSlots - 1);
  std::uint32_t level = static_cast<std::uint32_t>(63 - __builtin_clzll(differ)) / kBits;
  // A deadline in the top level's next round differs from current_ above the
  // top digit; the top level is circular, so it goes there.
  if (level >= levels_) level = levels_ - 1;
  const auto slot = static_cast<std::uint32_t>((at >> (kBits * level)) & (kSlots - 1));
  link(i, static_cast<std::uint16_t>(level * kSlots + slot));
  // Keep the cache a lower bound without a search: pushing the RTO forward
  // on every ACK then leaves advance() on its O(1) path.
  if (next_cache_) {
    const std::uint64_t t = bucket_time(level, slot);
    if (t < *next_cache_) next_cache_ = t;
  }
}

// When the bucket's turn comes, seen from current_: the first tick of the
// bucket's span. Below the top level a bucket is always after the current
// digit; the top level is circular, and a bucket at or before the digit is
// next round's.
std::uint64_t TimerWheel::bucket_time(std::uint32_t level, std::uint32_t slot) const noexcept {
  const std::uint32_t shift = kBits * level;
  const std::uint32_t block_shift = shift + kBits;
  const std::uint64_t block = (current_ >> block_shift) << block_shift;
  std::uint64_t t = block + (std::uint64_t{slot} << shift);
  if (level + 1 == levels_ && slot <= ((current_ >> shift) & (kSlots - 1)))
    t += std::uint64_t{1} << block_shift;
  return t;
}

// The earliest bucket with work: the lowest non-empty level's first bucket
// after the current digit. Every bucket of level k is due before every bucket
// of level k+1: level k's buckets lie in current_'s block of 64^(k+1) ticks,
// level k+1's in later blocks.
std::optional<TimerWheel::Event> TimerWheel::next_event() const noexcept {
  for (std::uint32_t k = 0; k < levels_; ++k) {
    const std::uint64_t map = occupied_[k];
    if (map == 0) continue;
    const std::uint32_t digit = static_cast<std::uint32_t>((current_ >> (kBits * k)) & (kSlots - 1));
    const std::uint64_t after = digit == kSlots - 1 ? 0 : map & (~std::uint64_t{0} << (digit + 1));
    // Placement puts a timer only after the current digit below the top
    // level, and buckets are cascaded when the digit reaches them.
    assert(k + 1 == levels_ || after == map);
    // The top level is circular: with nothing after the digit, the first
    // bucket is next round's.
    const auto slot = static_cast<std::uint32_t>(__builtin_ctzll(after != 0 ? after : map));
    return Event{k, slot, bucket_time(k, slot)};
  }
  return std::nullopt;
}

Expected<TimerId, std::error_code> TimerWheel::schedule(Nanos deadline, std::uint64_t cookie) noexcept {
  if (free_head_ == kNil) {
    ++counters_.full;
    return unexpected(std::make_error_code(std::errc::no_buffer_space));
  }
  const std::uint32_t i = free_head_;
  Node& n = nodes_[i];
  free_head_ = n.next;
  n.due = to_tick(deadline);
  n.cookie = cookie;
  place(i);
  ++size_;
  ++counters_.scheduled;
  return TimerId{i, n.generation};
}

std::error_code TimerWheel::reschedule(TimerId id, Nanos deadline) noexcept {
  if (!live(id)) {
    ++counters_.stale;
    return std::make_error_code(std::errc::invalid_argument);
  }
  const std::uint64_t due = to_tick(deadline);
  Node& n = nodes_[id.index];
  // Pushing the RTO forward within the same tick (many ACKs per ms) is the
  // common case: nothing to move. Not for the due and firing lists, whose
  // meaning depends on when the timer got there.
  if (due == n.due && n.list < levels_ * kSlots) {
    ++counters_.rescheduled;
    return {};
  }
  unlink(id.index);
  n.due = due;
  place(id.index);
  ++counters_.rescheduled;
  return {};
}

std::error_code TimerWheel::arm(TimerId& id, Nanos deadline, std::uint64_t cookie) noexcept {
  if (live(id)) {
    nodes_[id.index].cookie = cookie;
    return reschedule(id, deadline);
  }
  auto r = schedule(deadline, cookie);
  if (!r) return r.error();
  id = *r;
  return {};
}

bool TimerWheel::cancel(TimerId id) noexcept {
  if (!live(id)) {
    ++counters_.stale;
    return false;
  }
  unlink(id.index);
  Node& n = nodes_[id.index];
  if (++n.generation == 0) n.generation = 1;
  n.next = free_head_;
  free_head_ = id.index;
  --size_;
  ++counters_.cancelled;
  return true;
}

std::optional<Nanos> TimerWheel::next_deadline() const noexcept {
  if (size_ == 0) return std::nullopt;
  if (heads_[due_list()] != kNil || heads_[firing_list()] != kNil) return now();
  if (!next_cache_) {
    const auto ev = next_event();
    next_cache_ = ev ? ev->at : kNever;
  }
  const std::uint64_t at = *next_cache_;
  if (at == kNever) return std::nullopt;  // not reached: size_ > 0 means a bucket is occupied
  const auto max_ticks = static_cast<std::uint64_t>(std::numeric_limits<Nanos::rep>::max() / tick_.count());
  if (at > max_ticks) return Nanos::max();
  return tick_ * static_cast<std::int64_t>(at);
}

// Timers already due (scheduled for a time passed) fire first; timers
// scheduled for the past from now on wait for the next call.
void TimerWheel::begin_advance(Nanos now) noexcept {
  const std::uint64_t t = floor_ticks(now, tick_);
  target_ = t > current_ ? t : current_;
  for (std::uint32_t i = heads_[due_list()]; i != kNil; i = heads_[due_list()]) {
    unlink(i);
    link(i, firing_list());
  }
}

bool TimerWheel::next_fired(Fired& out) noexcept {
  for (;;) {
    const std::uint32_t i = heads_[firing_list()];
    if (i != kNil) {
      unlink(i);
      Node& n = nodes_[i];
      out.id = TimerId{i, n.generation};
      out.cookie = n.cookie;
      // Free before the callback runs, so it can schedule into this slot.
      if (++n.generation == 0) n.generation = 1;
      n.next = free_head_;
      free_head_ = i;
      --size_;
      ++counters_.fired;
      return true;
    }
    if (!next_cache_) {
      const auto ev = next_event();
      next_cache_ = ev ? ev->at : kNever;
    }
    if (*next_cache_ > target_) {
      current_ = target_;
      return false;
    }
    const auto ev = next_event();
    if (!ev || ev->at > target_) {
      next_cache_ = ev ? ev->at : kNever;
      current_ = target_;
      return false;
    }
    // Jump straight to the bucket: the ticks in between hold nothing.
    current_ = ev->at;
    next_cache_ = ev->at;  // a lower bound until something is placed
    ++counters_.buckets;
    const auto bucket = static_cast<std::uint16_t>(ev->level * kSlots + ev->slot);
    for (std::uint32_t j = heads_[bucket]; j != kNil; j = heads_[bucket]) {
      unlink(j);
      if (nodes_[j].due <= current_) {
        link(j, firing_list());
      } else {
        // Lands on a lower level (or, clamped, back on the top one).
        place(j);
        ++counters_.cascaded;
      }
    }
  }
}

}  // namespace usnet::tcp
