// A hierarchical timing wheel for TCP's timers: retransmission, delayed
// ACK, persist, keep-alive, TIME-WAIT (issue 4: "timers in a timing wheel, so
// cost per packet stays flat with 100,000 connections").
//
// What. A fixed pool of timers, each a deadline and a 64-bit cookie (the
// caller's connection index and timer kind, say). schedule() takes a slot
// and returns a TimerId; reschedule() moves a pending timer (the common case:
// the RTO is pushed forward on every ACK); cancel() frees it. advance(now, f)
// calls f(id, cookie) for every timer that is due, and the slot is free
// again before f runs, so f may schedule, reschedule or cancel anything.
//
// Why a wheel. A heap costs O(log n) per reschedule and a sorted list O(n);
// with 100,000 connections each pushing its RTO forward on every ACK, that is
// the per-packet cost the issue forbids. Here schedule, reschedule and
// cancel are O(1): unlink from one doubly linked bucket, link into another
// (Varghese and Lauck's hierarchical wheel, scheme 7).
//
// Representation. Time is counted in ticks (config.tick, 1 ms by default)
// since time zero. There are `levels` wheels of 64 buckets; level k's buckets
// are 64^k ticks wide, so the range is 64^levels ticks (5 levels at 1 ms:
// 12.4 days; TIME-WAIT's 2MSL and keep-alive's 2 h fit easily). A timer due
// at tick d, seen from the current tick c, goes to the level of the highest
// base-64 digit in which d and c differ, in the bucket named by d's digit at
// that level. When c reaches the start of a bucket above level 0, the bucket
// is "cascaded": its timers are placed again relative to the new c, each
// lands on a lower level (or fires). A timer thus moves at most `levels`
// times in its life (plus once per range waited, if clamped), and a level-0
// bucket holds timers of exactly one tick.
// Each level keeps a 64-bit map of its non-empty buckets, so the next bucket
// with work is found with one count-trailing-zeros per level: advancing over
// an idle hour costs O(levels), not O(ticks elapsed). The top level is
// circular; a deadline past the range is placed as far out as the range
// allows and placed again when it gets there (clamped and re-cascaded,
// never lost, counted in `clamped`).
//
// Rounding. A deadline is rounded UP to a whole tick, and advance(now) fires
// the timers whose rounded deadline is <= now. So a timer never fires early
// and, if advance() is called at least once per tick, at most one tick late.
// Within one tick the firing order is unspecified (schedule order, mostly);
// across ticks it is deadline order. A timer scheduled for a time already
// passed fires on the next advance() call, before the others, in schedule
// order.
//
// Limits and cost. create() allocates everything once: 32 bytes per timer
// plus 4 bytes per bucket; schedule, reschedule, cancel and advance never
// allocate. schedule() with every slot taken fails with
// std::errc::no_buffer_space and bumps `full`. A TimerId carries a generation
// count, so an id kept after its timer fired or was cancelled is recognised
// as stale (cancel returns false, reschedule fails with
// std::errc::invalid_argument) even when the slot has been reused.
//
// Callbacks. advance() fires the timers that were due when it was called,
// and also those that come due up to `now` because a callback scheduled them
// meanwhile. A callback scheduling a timer for a time already passed sees it
// fire on the NEXT advance() (so a timer that re-arms itself for "now" cannot
// loop forever). Calling advance() from a callback does nothing and returns 0.
//
// Not thread-safe: one wheel per stack thread, like the rest of the core.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

#include "usnet/util/expected.hpp"

namespace usnet::tcp {

using Nanos = std::chrono::nanoseconds;

// Names one scheduled timer. The default value names no timer.
struct TimerId {
  std::uint32_t index = 0;
  std::uint32_t generation = 0;  // never 0 for an id schedule() returned
  explicit operator bool() const noexcept { return generation != 0; }
  friend bool operator==(const TimerId&, const TimerId&) = default;
};

struct TimerWheelConfig {
  std::uint32_t capacity = 65536;  // timers pending at once; at most 2^31
  Nanos tick = std::chrono::milliseconds(1);
  std::uint32_t levels = 5;  // range = tick * 64^levels; 1..10
};

struct TimerWheelCounters {
  std::uint64_t scheduled = 0;
  std::uint64_t rescheduled = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t fired = 0;
  std::uint64_t full = 0;      // schedule() refused: every slot taken
  std::uint64_t stale = 0;     // reschedule()/cancel() with an id no longer pending
  std::uint64_t clamped = 0;   // placements of a deadline beyond the range
  std::uint64_t cascaded = 0;  // timers moved down a level
  std::uint64_t buckets = 0;   // buckets emptied by advance (fired or cascaded)
};

class TimerWheel {
 public:
  static constexpr std::uint32_t kMaxLevels = 10;
  static constexpr std::uint32_t kMaxCapacity = 1u << 31;

  // Validates the config (std::errc::invalid_argument) and allocates every
  // slot. `now` is the current time: deadlines are counted from time zero
  // either way, but starting at `now` spares the first advance() a walk.
  static Expected<TimerWheel, std::error_code> create(const TimerWheelConfig& config, Nanos now = Nanos{0});

  // A timer firing at `deadline` (rounded up to the tick) with `cookie`
  // handed to the callback. O(1). std::errc::no_buffer_space when full.
  Expected<TimerId, std::error_code> schedule(Nanos deadline, std::uint64_t cookie) noexcept;
  // Moves a pending timer to a new deadline (earlier or later). O(1).
  // std::errc::invalid_argument (and `stale`) if `id` is not pending.
  std::error_code reschedule(TimerId id, Nanos deadline) noexcept;
  // Reschedules `id` if it is pending, otherwise schedules a new timer and
  // stores its id there: the one call a connection needs to (re)arm a timer
  // it keeps in a member.
  std::error_code arm(TimerId& id, Nanos deadline, std::uint64_t cookie) noexcept;
  // Stops a pending timer; false if it was not pending (already fired,
  // cancelled, or never scheduled). O(1).
  bool cancel(TimerId id) noexcept;
  bool pending(TimerId id) const noexcept;
  // The cookie of a pending timer.
  std::optional<std::uint64_t> cookie(TimerId id) const noexcept;

  // Fires every timer whose deadline, rounded up to the tick, is <= now:
  // on_fire(TimerId, std::uint64_t cookie) once each, in deadline order
  // across ticks. Returns how many fired. Time never goes back: an earlier
  // `now` than a previous call fires nothing. Cost: O(levels) per bucket
  // with work, plus O(1) per timer fired or moved down. A call with nothing
  // due costs O(1): the next bucket's time is cached as a lower bound, kept
  // by schedule and reschedule without a search.
  template <class F>
  std::size_t advance(Nanos now, F&& on_fire) {
    if (in_advance_) return 0;
    in_advance_ = true;
    begin_advance(now);
    std::size_t n = 0;
    Fired f;
    while (next_fired(f)) {
      ++n;
      on_fire(f.id, f.cookie);
    }
    in_advance_ = false;
    return n;
  }

  // The earliest time at which advance() may fire something: never later
  // than the moment the earliest pending timer becomes due (its deadline
  // rounded up to the tick), possibly earlier (a bucket above level 0 must
  // be cascaded first, which fires nothing). A time in the past means "call
  // advance() now". nullopt when no timer is pending.
  std::optional<Nanos> next_deadline() const noexcept;

  // The time advance() has processed up to (a whole number of ticks).
  Nanos now() const noexcept { return tick_ * static_cast<std::int64_t>(current_); }
  Nanos tick() const noexcept { return tick_; }
  // The longest delay placed exactly in one pass; longer ones are clamped
  // and placed again. Nanos::max() if tick * 64^levels overflows.
  Nanos range() const noexcept;
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return nodes_.size(); }
  const TimerWheelCounters& counters() const noexcept { return counters_; }

 private:
  static constexpr std::uint32_t kNil = 0xffffffffu;
  static constexpr std::uint16_t kFree = 0xffff;
  static constexpr std::uint32_t kBits = 6;
  static constexpr std::uint32_t kSlots = 1u << kBits;

  struct Node {
    std::uint64_t due = 0;  // deadline in ticks
    std::uint64_t cookie = 0;
    std::uint32_t next = kNil;
    std::uint32_t prev = kNil;
    std::uint32_t generation = 1;
    std::uint16_t list = kFree;  // a bucket, due_list(), firing_list() or kFree
  };
  struct Fired {
    TimerId id;
    std::uint64_t cookie = 0;
  };
  struct Event {
    std::uint32_t level = 0;
    std::uint32_t slot = 0;
    std::uint64_t at = 0;  // tick
  };

  TimerWheel() = default;

  std::uint16_t due_list() const noexcept { return static_cast<std::uint16_t>(levels_ * kSlots); }
  std::uint16_t firing_list() const noexcept { return static_cast<std::uint16_t>(levels_ * kSlots + 1); }
  std::uint64_t to_tick(Nanos t) const noexcept;
  bool live(TimerId id) const noexcept;
  void link(std::uint32_t i, std::uint16_t list) noexcept;
  void unlink(std::uint32_t i) noexcept;
  void place(std::uint32_t i) noexcept;
  std::optional<Event> next_event() const noexcept;
  std::uint64_t bucket_time(std::uint32_t level, std::uint32_t slot) const noexcept;
  void begin_advance(Nanos now) noexcept;
  bool next_fired(Fired& out) noexcept;

  std::vector<Node> nodes_;
  std::vector<std::uint32_t> heads_;  // one per bucket, then due and firing
  std::array<std::uint64_t, kMaxLevels> occupied_{};
  std::uint32_t free_head_ = kNil;
  std::uint32_t levels_ = 0;
  Nanos tick_{1};
  std::uint64_t current_ = 0;  // every timer due at or before this tick has fired
  std::uint64_t target_ = 0;   // the tick the running advance() goes to
  std::size_t size_ = 0;
  // A lower bound on the tick of every occupied bucket's turn, if known
  // (placing lowers it as needed; removing leaves it a valid lower bound).
  mutable std::optional<std::uint64_t> next_cache_;
  bool in_advance_ = false;
  TimerWheelCounters counters_;
};

}  // namespace usnet::tcp
