#include "usnet/tcp/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;

TimerWheel make(TimerWheelConfig c = {}, Nanos now = 0ns) {
  auto w = TimerWheel::create(c, now);
  EXPECT_TRUE(w.has_value());
  return std::move(*w);
}

std::uint64_t ceil_ticks(Nanos d, Nanos tick) {
  if (d.count() <= 0) return 0;
  return static_cast<std::uint64_t>((d.count() + tick.count() - 1) / tick.count());
}

struct Fire {
  TimerId id;
  std::uint64_t cookie;
  Nanos at;
};

TEST(TimerWheel, CreateRejectsBadConfig) {
  EXPECT_FALSE(TimerWheel::create({.capacity = 0}).has_value());
  EXPECT_FALSE(TimerWheel::create({.tick = 0ns}).has_value());
  EXPECT_FALSE(TimerWheel::create({.tick = -1ms}).has_value());
  EXPECT_FALSE(TimerWheel::create({.levels = 0}).has_value());
  EXPECT_FALSE(TimerWheel::create({.levels = 11}).has_value());
  auto w = TimerWheel::create({.capacity = 8, .tick = 1ms, .levels = 5});
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->capacity(), 8u);
  EXPECT_EQ(w->range(), 1ms * (std::int64_t{1} << 30));  // 64^5 ticks, 12.4 days
  EXPECT_FALSE(w->next_deadline().has_value());
}

TEST(TimerWheel, FiresInDeadlineOrderAcrossLevels) {
  auto w = make();
  // Deadlines spread over every level, scheduled out of order.
  const std::vector<Nanos> deadlines = {7s, 3ms, 2h, 1ms, 64ms, 65ms, 4096ms, 5s, 60s, 4095ms, 262144ms, 2ms};
  for (std::size_t i = 0; i < deadlines.size(); ++i) ASSERT_TRUE(w.schedule(deadlines[i], i).has_value());
  std::vector<Nanos> fired;
  w.advance(3h, [&](TimerId, std::uint64_t c) { fired.push_back(deadlines[c]); });
  auto sorted = deadlines;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(fired, sorted);
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.counters().fired, deadlines.size());
}

TEST(TimerWheel, NeverEarlyAtMostOneTickLate) {
  auto w = make();
  ASSERT_TRUE(w.schedule(10'500'000ns, 1).has_value());  // 10.5 ms: rounds up to tick 11
  int n = 0;
  EXPECT_EQ(w.advance(10ms, [&](TimerId, std::uint64_t) { ++n; }), 0u);
  EXPECT_EQ(w.advance(10'500'000ns, [&](TimerId, std::uint64_t) { ++n; }), 0u);  // due, but mid-tick
  EXPECT_EQ(w.next_deadline(), 11ms);
  EXPECT_EQ(w.advance(10'999'999ns, [&](TimerId, std::uint64_t) { ++n; }), 0u);
  EXPECT_EQ(w.advance(11ms, [&](TimerId, std::uint64_t) { ++n; }), 1u);
  EXPECT_EQ(n, 1);
  // Exactly on a tick fires exactly then.
  ASSERT_TRUE(w.schedule(20ms, 2).has_value());
  EXPECT_EQ(w.advance(19'999'999ns, [&](TimerId, std::uint64_t) { ++n; }), 0u);
  EXPECT_EQ(w.advance(20ms, [&](TimerId, std::uint64_t) { ++n; }), 1u);
}

TEST(TimerWheel, PastDeadlineFiresOnNextAdvance) {
  auto w = make({}, 100ms);
  ASSERT_TRUE(w.schedule(5ms, 7).has_value());
  ASSERT_TRUE(w.schedule(-1s, 8).has_value());
  ASSERT_EQ(w.next_deadline(), 100ms);  // in the past or now: "call advance now"
  std::vector<std::uint64_t> got;
  EXPECT_EQ(w.advance(100ms, [&](TimerId, std::uint64_t c) { got.push_back(c); }), 2u);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{7, 8}));
}

TEST(TimerWheel, StaleIdsAreRefusedEvenAfterSlotReuse) {
  auto w = make({.capacity = 1});
  auto a = w.schedule(5ms, 1);
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(w.pending(*a));
  EXPECT_EQ(w.cookie(*a), 1u);
  w.advance(5ms, [](TimerId, std::uint64_t) {});
  EXPECT_FALSE(w.pending(*a));
  auto b = w.schedule(9ms, 2);  // same slot, new generation
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->index, b->index);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(w.cancel(*a));
  EXPECT_EQ(w.reschedule(*a, 1s), std::errc::invalid_argument);
  EXPECT_FALSE(w.cancel(TimerId{}));
  EXPECT_FALSE(w.cancel(TimerId{12345, 1}));
  EXPECT_EQ(w.counters().stale, 4u);
  EXPECT_TRUE(w.pending(*b));
  EXPECT_TRUE(w.cancel(*b));
  EXPECT_FALSE(w.cancel(*b));
  EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, CapacityLimitIsCountedAndRecovers) {
  auto w = make({.capacity = 4});
  std::vector<TimerId> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(*w.schedule(1ms * (i + 1), i));
  auto full = w.schedule(1s, 99);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), std::errc::no_buffer_space);
  EXPECT_EQ(w.counters().full, 1u);
  TimerId armed;
  EXPECT_EQ(w.arm(armed, 1s, 99), std::errc::no_buffer_space);
  EXPECT_EQ(w.counters().full, 2u);
  EXPECT_TRUE(w.cancel(ids[2]));
  EXPECT_TRUE(w.schedule(1s, 99).has_value());
  EXPECT_EQ(w.advance(1ms, [](TimerId, std::uint64_t) {}), 1u);
  EXPECT_TRUE(w.schedule(2s, 100).has_value());
  EXPECT_EQ(w.size(), 4u);
}

// The retransmission timer pattern: pushed forward on every ACK, it never
// fires while ACKs keep coming, then fires once, RTO after the last one.
TEST(TimerWheel, RescheduleForwardOnEveryAckThenFireOnce) {
  auto w = make();
  TimerId rto;
  ASSERT_FALSE(w.arm(rto, 200ms, 42));
  int fired = 0;
  Nanos now = 0ns;
  for (int ack = 0; ack < 10'000; ++ack) {
    now += 50us;
    ASSERT_FALSE(w.arm(rto, now + 200ms, 42));
    w.advance(now, [&](TimerId, std::uint64_t) { ++fired; });
  }
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(w.size(), 1u);
  const Nanos last = now + 200ms;
  while (fired == 0) {
    now += 1ms;
    w.advance(now, [&](TimerId id, std::uint64_t c) {
      EXPECT_EQ(id, rto);
      EXPECT_EQ(c, 42u);
      ++fired;
    });
  }
  EXPECT_GE(now, last);
  EXPECT_LT(now - last, 1ms);
  EXPECT_EQ(w.counters().scheduled, 1u);
  EXPECT_EQ(w.counters().rescheduled, 10'000u);
}

TEST(TimerWheel, RescheduleEarlierAndLater) {
  auto w = make();
  auto a = *w.schedule(1h, 1);
  auto b = *w.schedule(10ms, 2);
  ASSERT_FALSE(w.reschedule(a, 5ms));  // from level 3 down to level 0
  ASSERT_FALSE(w.reschedule(b, 90s));  // from level 0 up
  std::vector<std::pair<std::uint64_t, Nanos>> got;
  Nanos now = 0ns;
  while (w.size() > 0 && now < 2h) {
    now += 1ms;
    w.advance(now, [&](TimerId, std::uint64_t c) { got.emplace_back(c, now); });
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], std::make_pair(std::uint64_t{1}, Nanos{5ms}));
  EXPECT_EQ(got[1], std::make_pair(std::uint64_t{2}, Nanos{90s}));
}

TEST(TimerWheel, CancelAndRescheduleFromCallback) {
  auto w = make();
  const TimerId a = *w.schedule(5ms, 1);
  const TimerId b = *w.schedule(5ms, 2);  // same tick as a: cancelled by a's callback
  const TimerId c = *w.schedule(5ms, 3);  // same tick: pushed to 8 ms by a's callback
  const TimerId d = *w.schedule(6ms, 4);  // a later bucket: cancelled by a's callback
  std::vector<std::pair<std::uint64_t, Nanos>> got;
  auto on_fire = [&](Nanos now) {
    return [&, now](TimerId id, std::uint64_t cookie) {
      got.emplace_back(cookie, now);
      if (cookie == 1) {
        EXPECT_EQ(id, a);
        EXPECT_FALSE(w.pending(a));  // freed before the callback
        EXPECT_FALSE(w.cancel(a));
        EXPECT_TRUE(w.cancel(b));
        EXPECT_FALSE(w.reschedule(c, 8ms));
        EXPECT_TRUE(w.cancel(d));
      }
    };
  };
  EXPECT_EQ(w.advance(7ms, on_fire(7ms)), 1u);
  EXPECT_EQ(w.advance(8ms, on_fire(8ms)), 1u);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 1u);
  EXPECT_EQ(got[1], std::make_pair(std::uint64_t{3}, Nanos{8ms}));
  EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, CallbackSchedulesNewTimers) {
  auto w = make();
  ASSERT_TRUE(w.schedule(1ms, 0).has_value());
  std::vector<std::uint64_t> got;
  // Each callback schedules the next 1 ms later: all within this advance's
  // reach fire in this call, in order; one re-armed for the past waits.
  const std::size_t n = w.advance(10ms, [&](TimerId, std::uint64_t c) {
    got.push_back(c);
    if (c < 20) {
      ASSERT_TRUE(w.schedule(1ms * static_cast<std::int64_t>(c + 2), c + 1).has_value());
    }
    if (c == 3) {
      ASSERT_TRUE(w.schedule(0ms, 1000).has_value());  // past: next advance
    }
  });
  EXPECT_EQ(n, 10u);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(w.size(), 2u);  // 10 (due at 11 ms) and 1000
  got.clear();
  EXPECT_EQ(w.advance(10ms, [&](TimerId, std::uint64_t c) { got.push_back(c); }), 1u);
  EXPECT_EQ(got, std::vector<std::uint64_t>{1000});
}

TEST(TimerWheel, AdvanceFromCallbackIsRefused) {
  auto w = make();
  ASSERT_TRUE(w.schedule(1ms, 0).has_value());
  ASSERT_TRUE(w.schedule(2ms, 1).has_value());
  std::size_t inner = 99;
  EXPECT_EQ(
      w.advance(1ms, [&](TimerId, std::uint64_t) { inner = w.advance(5ms, [](TimerId, std::uint64_t) {}); }),
      1u);
  EXPECT_EQ(inner, 0u);
  EXPECT_EQ(w.size(), 1u);
}

// An idle hour, or days, must not cost a walk over every tick: advance
// jumps from one non-empty bucket to the next.
TEST(TimerWheel, BigTimeJumpsSkipEmptyBuckets) {
  auto w = make();
  w.advance(1h, [](TimerId, std::uint64_t) { ADD_FAILURE(); });
  w.advance(240h, [](TimerId, std::uint64_t) { ADD_FAILURE(); });
  EXPECT_EQ(w.counters().buckets, 0u);
  EXPECT_EQ(w.now(), 240h);

  // Keep-alive (2 h) and TIME-WAIT (2MSL = 60 s) from here, advanced an hour
  // at a time: each fires once, on its tick, after at most `levels` moves.
  const Nanos t0 = w.now();
  ASSERT_TRUE(w.schedule(t0 + 2h, 1).has_value());
  ASSERT_TRUE(w.schedule(t0 + 60s, 2).has_value());
  EXPECT_EQ(w.next_deadline().value() <= t0 + 60s, true);
  std::vector<std::uint64_t> got;
  for (int h = 1; h <= 3; ++h) {
    w.advance(t0 + 1h * h, [&](TimerId, std::uint64_t c) { got.push_back(c); });
  }
  EXPECT_EQ(got, (std::vector<std::uint64_t>{2, 1}));
  EXPECT_LE(w.counters().buckets, 2u * 5u);
  EXPECT_LE(w.counters().cascaded, 2u * 4u);

  // Exactness after a jump: 2 h to the nanosecond tick.
  const Nanos t1 = w.now();
  ASSERT_TRUE(w.schedule(t1 + 2h, 3).has_value());
  EXPECT_EQ(w.advance(t1 + 2h - 1ns, [](TimerId, std::uint64_t) {}), 0u);
  EXPECT_EQ(w.advance(t1 + 2h, [](TimerId, std::uint64_t) {}), 1u);
}

TEST(TimerWheel, DeadlinesBeyondRangeAreClampedNotLost) {
  // Two levels of 1 ms ticks: range 4.096 s.
  auto w = make({.capacity = 16, .tick = 1ms, .levels = 2});
  ASSERT_EQ(w.range(), 4096ms);
  ASSERT_TRUE(w.schedule(1h, 1).has_value());
  ASSERT_TRUE(w.schedule(4096ms, 2).has_value());
  ASSERT_TRUE(w.schedule(4095ms, 3).has_value());
  ASSERT_TRUE(w.schedule(10s + 500us, 4).has_value());
  EXPECT_GE(w.counters().clamped, 2u);
  std::vector<std::pair<std::uint64_t, Nanos>> got;
  // Strides of a second, or to next_deadline() when sooner (which may be a
  // cascade, firing nothing): each timer fires exactly on its tick.
  Nanos now = 0ns;
  for (int steps = 0; steps < 20000 && w.size() > 0; ++steps) {
    const auto nd = w.next_deadline();
    ASSERT_TRUE(nd.has_value());
    now = std::min(*nd, now + 1s);
    w.advance(now, [&](TimerId, std::uint64_t c) { got.emplace_back(c, now); });
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], std::make_pair(std::uint64_t{3}, Nanos{4095ms}));
  EXPECT_EQ(got[1], std::make_pair(std::uint64_t{2}, Nanos{4096ms}));
  EXPECT_EQ(got[2], std::make_pair(std::uint64_t{4}, Nanos{10001ms}));
  EXPECT_EQ(got[3], std::make_pair(std::uint64_t{1}, Nanos{1h}));
}

TEST(TimerWheel, NextDeadlineIsNeverLaterThanTheEarliest) {
  auto w = make();
  EXPECT_FALSE(w.next_deadline().has_value());
  const TimerId a = *w.schedule(3h + 7ms, 1);
  ASSERT_TRUE(w.next_deadline().has_value());
  EXPECT_LE(*w.next_deadline(), 3h + 7ms);
  const TimerId b = *w.schedule(250ms, 2);
  EXPECT_LE(*w.next_deadline(), 250ms);
  // Following next_deadline() alone reaches each timer on its tick.
  std::vector<Nanos> fired_at;
  for (int steps = 0; steps < 100 && w.size() > 0; ++steps) {
    const Nanos nd = *w.next_deadline();
    w.advance(nd, [&](TimerId, std::uint64_t) { fired_at.push_back(nd); });
  }
  EXPECT_EQ(fired_at, (std::vector<Nanos>{250ms, 3h + 7ms}));
  EXPECT_FALSE(w.next_deadline().has_value());
  EXPECT_FALSE(w.pending(a));
  EXPECT_FALSE(w.pending(b));
}

// The top level is circular: crossing its wrap (64^levels ticks) works.
TEST(TimerWheel, CrossingTheTopLevelWrap) {
  const TimerWheelConfig c{.capacity = 64, .tick = 1ms, .levels = 2};
  const Nanos wrap = 4096ms * 5;
  auto w = make(c, wrap - 3ms);
  ASSERT_TRUE(w.schedule(wrap - 1ms, 1).has_value());
  ASSERT_TRUE(w.schedule(wrap, 2).has_value());
  ASSERT_TRUE(w.schedule(wrap + 1ms, 3).has_value());
  ASSERT_TRUE(w.schedule(wrap + 4092ms, 4).has_value());  // range - 1 ahead of now: exact
  ASSERT_TRUE(w.schedule(wrap + 100ms, 5).has_value());
  std::vector<std::pair<std::uint64_t, Nanos>> got;
  for (Nanos now = wrap - 3ms; now <= wrap + 5s; now += 1ms) {
    w.advance(now, [&](TimerId, std::uint64_t k) { got.emplace_back(k, now); });
  }
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0], std::make_pair(std::uint64_t{1}, wrap - 1ms));
  EXPECT_EQ(got[1], std::make_pair(std::uint64_t{2}, wrap));
  EXPECT_EQ(got[2], std::make_pair(std::uint64_t{3}, wrap + 1ms));
  EXPECT_EQ(got[3], std::make_pair(std::uint64_t{5}, wrap + 100ms));
  EXPECT_EQ(got[4], std::make_pair(std::uint64_t{4}, wrap + 4092ms));
}

// Randomized against a reference model with a fixed seed: thousands of
// schedule / cancel / reschedule / advance operations, callbacks that
// cancel, reschedule and schedule. Checks, for every timer: fires exactly
// once unless cancelled; never before its deadline; in the first advance()
// whose `now` has reached its deadline rounded up to the tick (so at most
// one tick late); in deadline order; next_deadline() never later than the
// earliest.
struct ModelTimer {
  TimerId id;
  Nanos deadline;
  std::uint64_t tick;
};

class Model {
 public:
  Model(TimerWheelConfig c, Nanos start, std::uint64_t seed, Nanos max_delay)
      : cfg_(c), w_(make(c, start)), rng_(seed), now_(start), max_delay_(max_delay) {
    processed_ = static_cast<std::uint64_t>(start.count() / c.tick.count());
  }

  void run(int ops) {
    for (int op = 0; op < ops; ++op) {
      const auto r = pick(100);
      if (r < 35) {
        schedule(false, 0);
      } else if (r < 45) {
        cancel_random();
      } else if (r < 60) {
        reschedule_random(false, 0);
      } else if (r < 62) {
        stale_ops();
      } else {
        advance();
      }
      ASSERT_EQ(w_.size(), live_.size());
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Drain.
    for (int i = 0; i < 100000 && !live_.empty(); ++i) {
      now_ += max_delay_ / 16 + 1ns;
      advance_to(now_);
      if (::testing::Test::HasFatalFailure()) return;
    }
    EXPECT_TRUE(live_.empty());
  }

  std::uint64_t fired() const { return fired_; }
  const TimerWheel& wheel() const { return w_; }

 private:
  std::uint64_t pick(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_); }

  Nanos random_deadline(Nanos base) {
    // Mostly near (sub-tick offsets, a few ticks), sometimes far (past the
    // range when max_delay says so), sometimes in the past.
    const auto tick = cfg_.tick.count();
    switch (pick(4)) {
      case 0:
        return base + Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(tick) * 5))};
      case 1:
        return base - Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(tick) * 3))};
      default:
        return base + Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(max_delay_.count())))};
    }
  }

  // `cur` is the wheel's current tick as seen by the caller: the last
  // processed tick outside advance(), the firing tick inside a callback.
  // A deadline at or before it fires on the next advance() (deferred).
  void note_placement(std::uint64_t key, bool in_callback, std::uint64_t cur) {
    if (in_callback && live_[key].tick <= cur) deferred_.push_back(key);
  }

  void schedule(bool in_callback, std::uint64_t cur) {
    const Nanos d = random_deadline(now_);
    const std::uint64_t key = next_key_++;
    auto id = w_.schedule(d, key);
    if (live_.size() >= cfg_.capacity) {
      ASSERT_FALSE(id.has_value());
      return;
    }
    ASSERT_TRUE(id.has_value());
    live_[key] = ModelTimer{*id, d, ceil_ticks(d, cfg_.tick)};
    keys_.push_back(key);
    note_placement(key, in_callback, cur);
  }

  // A random live key (lazy deletion from keys_).
  std::optional<std::uint64_t> random_live() {
    while (!keys_.empty()) {
      const std::size_t i = pick(keys_.size());
      const std::uint64_t k = keys_[i];
      if (live_.contains(k)) return k;
      keys_[i] = keys_.back();
      keys_.pop_back();
    }
    return std::nullopt;
  }

  void cancel_random() {
    auto k = random_live();
    if (!k) return;
    ASSERT_TRUE(w_.cancel(live_[*k].id));
    live_.erase(*k);
  }

  void reschedule_random(bool in_callback, std::uint64_t cur) {
    auto k = random_live();
    if (!k) return;
    const Nanos d = random_deadline(now_);
    ASSERT_FALSE(w_.reschedule(live_[*k].id, d));
    live_[*k].deadline = d;
    live_[*k].tick = ceil_ticks(d, cfg_.tick);
    note_placement(*k, in_callback, cur);
  }

  void stale_ops() {
    if (dead_.empty()) return;
    const TimerId id = dead_[pick(dead_.size())];
    EXPECT_FALSE(w_.cancel(id));
    EXPECT_TRUE(w_.reschedule(id, now_ + 1s));
    EXPECT_FALSE(w_.pending(id));
  }

  void advance() {
    Nanos step;
    switch (pick(128)) {
      case 0:
        step = -Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(cfg_.tick.count()) * 3))};
        break;  // time going back: nothing fires
      case 1:
        step = Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(max_delay_.count()) * 2))};
        break;  // a big jump
      default:
        step = Nanos{static_cast<std::int64_t>(pick(static_cast<std::uint64_t>(cfg_.tick.count()) * 40))};
    }
    advance_to(now_ + step);
  }

  void advance_to(Nanos to) {
    // next_deadline(): never later than the earliest pending timer.
    const auto nd = w_.next_deadline();
    if (live_.empty()) {
      EXPECT_FALSE(nd.has_value());
    } else {
      ASSERT_TRUE(nd.has_value());
      std::uint64_t earliest = UINT64_MAX;
      for (const auto& [k, t] : live_) earliest = std::min(earliest, t.tick);
      EXPECT_LE(*nd, cfg_.tick * static_cast<std::int64_t>(std::max(earliest, processed_)));
    }
    if (to > now_) now_ = to;
    const std::uint64_t target = std::max(
        processed_, to.count() <= 0 ? 0 : static_cast<std::uint64_t>(to.count() / cfg_.tick.count()));
    deferred_.clear();
    std::uint64_t last_order = 0;
    w_.advance(to, [&](TimerId id, std::uint64_t key) {
      ++fired_;
      auto it = live_.find(key);
      ASSERT_NE(it, live_.end()) << "fired twice, or after cancel";
      ASSERT_EQ(it->second.id, id);
      const std::uint64_t t = it->second.tick;
      EXPECT_LE(t, target) << "fired early";
      EXPECT_GE(now_, it->second.deadline) << "fired before its deadline";  // now_: the latest time seen
      // Deadline order; a timer already due when placed counts as due at the
      // tick processed then.
      const std::uint64_t order = std::max(t, processed_);
      EXPECT_GE(order, last_order) << "out of order";
      last_order = order;
      dead_.push_back(id);
      if (dead_.size() > 64) dead_.erase(dead_.begin());
      live_.erase(it);
      // The wheel sits at this tick while the callback runs.
      const std::uint64_t cur = order;
      switch (pick(10)) {
        case 0:
          cancel_random();
          break;
        case 1:
          reschedule_random(true, cur);
          break;
        case 2:
          schedule(true, cur);
          break;
        case 3:
          EXPECT_FALSE(w_.cancel(id));
          EXPECT_TRUE(w_.reschedule(id, now_));
          break;
        default:
          break;
      }
    });
    processed_ = target;
    EXPECT_EQ(w_.now(), cfg_.tick * static_cast<std::int64_t>(processed_));
    // Everything due has fired, except what a callback placed at or before
    // the tick it ran at: that waits for the next advance().
    std::vector<std::uint64_t> deferred = deferred_;
    std::sort(deferred.begin(), deferred.end());
    for (const auto& [k, t] : live_) {
      if (t.tick <= target) {
        EXPECT_TRUE(std::binary_search(deferred.begin(), deferred.end(), k))
            << "timer due at tick " << t.tick << " still pending at tick " << target;
      }
    }
  }

  TimerWheelConfig cfg_;
  TimerWheel w_;
  std::mt19937_64 rng_;
  Nanos now_;
  Nanos max_delay_;
  std::uint64_t processed_ = 0;
  std::uint64_t next_key_ = 1;
  std::uint64_t fired_ = 0;
  std::unordered_map<std::uint64_t, ModelTimer> live_;
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint64_t> deferred_;
  std::vector<TimerId> dead_;
};

TEST(TimerWheel, RandomizedAgainstReferenceModel) {
  struct Case {
    TimerWheelConfig cfg;
    Nanos start;
    Nanos max_delay;
    bool fills_up = false;
  };
  const std::vector<Case> cases = {
      // Defaults, RTO-like to keep-alive-like delays.
      {{.capacity = 4096, .tick = 1ms, .levels = 5}, 0ns, 10s},
      // Three levels (262 s range) with delays past it: clamping.
      {{.capacity = 4096, .tick = 1ms, .levels = 3}, 12345678ns, 600s},
      // Two levels and a start just before the top level's wrap.
      {{.capacity = 512, .tick = 1ms, .levels = 2}, 4096ms * 3 - 2ms, 20s},
      // One level: everything is the circular top level.
      {{.capacity = 256, .tick = 1ms, .levels = 1}, 0ns, 300ms},
      // An odd tick, and a tight capacity so that schedule() fails sometimes.
      {{.capacity = 16, .tick = 7ns, .levels = 4}, 1000ns, 20us, true},
  };
  std::uint64_t seed = 0x5eed'0001;
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "levels " << c.cfg.levels << " tick " << c.cfg.tick.count());
    Model m(c.cfg, c.start, seed++, c.max_delay);
    m.run(6000);
    if (HasFatalFailure()) return;
    EXPECT_GT(m.fired(), 500u);
    EXPECT_EQ(m.wheel().counters().fired, m.fired());
    EXPECT_GT(m.wheel().counters().cascaded, 0u);
    if (c.fills_up) {
      EXPECT_GT(m.wheel().counters().full, 0u);
    }
  }
}

TEST(TimerWheel, HundredThousandTimers) {
  constexpr std::uint32_t kN = 100'000;
  auto w = make({.capacity = kN, .tick = 1ms, .levels = 5});
  std::mt19937_64 rng(0x100000);
  std::uniform_int_distribution<std::int64_t> delay(1'000'000, 600'000'000'000);  // 1 ms .. 10 min
  std::vector<Nanos> deadline(kN);
  std::vector<TimerId> ids(kN);
  for (std::uint32_t i = 0; i < kN; ++i) {
    deadline[i] = Nanos{delay(rng)};
    auto id = w.schedule(deadline[i], i);
    ASSERT_TRUE(id.has_value());
    ids[i] = *id;
  }
  EXPECT_FALSE(w.schedule(1s, kN).has_value());
  // Every connection's RTO pushed forward once more (the ACK path), a tenth
  // of them cancelled.
  for (std::uint32_t i = 0; i < kN; ++i) {
    if (i % 10 == 0) {
      ASSERT_TRUE(w.cancel(ids[i]));
    } else {
      deadline[i] += 100ms;
      ASSERT_FALSE(w.reschedule(ids[i], deadline[i]));
    }
  }
  std::vector<std::uint8_t> fired(kN, 0);
  std::uniform_int_distribution<std::int64_t> step(0, 50'000'000);
  Nanos now = 0ns;
  Nanos last_deadline_tick = 0ns;
  std::size_t count = 0;
  while (w.size() > 0) {
    now += Nanos{step(rng)};
    w.advance(now, [&](TimerId, std::uint64_t i) {
      ASSERT_LT(i, kN);
      ASSERT_EQ(fired[i], 0) << "fired twice";
      ASSERT_NE(i % 10, 0u) << "cancelled timer fired";
      fired[i] = 1;
      ++count;
      ASSERT_GE(now, deadline[i]);
      const Nanos tick_of = 1ms * static_cast<std::int64_t>(ceil_ticks(deadline[i], 1ms));
      ASSERT_GE(tick_of, last_deadline_tick) << "out of order";
      last_deadline_tick = tick_of;
    });
    ASSERT_LT(now, 700s);
  }
  EXPECT_EQ(count, kN - kN / 10);
  EXPECT_EQ(w.counters().fired, count);
}

}  // namespace
}  // namespace usnet::tcp
