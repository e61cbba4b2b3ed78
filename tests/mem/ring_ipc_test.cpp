// Rings between two processes: a forked child maps the arena again from its
// fd (Arena::attach), so the ring is shared through the memfd, not merely
// inherited, and talks to the parent through it. One child is an honest
// producer of 10 million items; the others are hostile peers that write bad
// indices and slots, and the parent's endpoint must notice and break cleanly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "usnet/mem/arena.hpp"
#include "usnet/mem/ring.hpp"

namespace usnet::mem {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint32_t kCapacity = 1024;
constexpr std::uint32_t kBufferCount = 4096;  // > 2 x capacity: see slot_for()
constexpr std::uint32_t kBufferSize = 2048;
constexpr RingLimits kLimits{kCapacity, kBufferCount, kBufferSize};

// Child exit codes, one per way a child can fail, so the parent can say which.
enum ChildExit : int {
  kChildOk = 0,
  kChildAttachArenaFailed = 10,
  kChildMappingNotFresh = 11,
  kChildAttachRingFailed = 12,
  kChildRingBroken = 13,
  kChildTimedOut = 14,
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// A forked child running `body`. It never returns into GoogleTest (it
// leaves with _exit), dies with the parent (PR_SET_PDEATHSIG), and is killed
// by the destructor if a test fails while it still runs.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(kChildTimedOut);  // the parent died before prctl
      _exit(body());
    }
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  // True once the child has ended (its status is then in status()).
  bool ended() {
    if (!reaped_ && waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return reaped_;
  }
  // Waits for the child until `deadline`; kills it if it is still running.
  int wait_until(Clock::time_point deadline) {
    while (!ended()) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        reaped_ = true;
        killed_ = true;
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    return status_;
  }
  bool killed() const { return killed_; }
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  bool killed_ = false;
};

// Spinning peers share two cores with everything else on the machine: spin
// a little, then give the core away.
struct Backoff {
  unsigned idle = 0;
  void pause() {
    if (++idle > 64) sched_yield();
  }
  void reset() { idle = 0; }
};

// Each field follows from the sequence number. Buffer i carries an 8-byte
// stamp of its sequence number at its offset; a buffer is reused only
// kBufferCount items later, which is more than the producer can be ahead of
// the consumer (capacity, plus one batch written before it knows it fits)
// plus the batch the consumer checks after taking it.
RingSlot slot_for(std::uint32_t seq) {
  return RingSlot{seq % kBufferCount, 8 + (seq * 7) % 1000, static_cast<std::uint16_t>(seq % 64),
                  static_cast<std::uint16_t>(seq >> 8), seq};
}

std::byte* stamp_at(std::span<std::byte> buffers, const RingSlot& s) {
  return buffers.data() + std::size_t{s.buffer} * kBufferSize + s.offset;
}

struct SharedRing {
  Arena arena;
  std::span<std::byte> ring;
  std::span<std::byte> buffers;
};

SharedRing make_shared_ring(std::uint32_t initial_index = 0) {
  const std::vector<RegionSpec> specs{{"ring", RingMemory::bytes_needed(kCapacity)},
                                      {"buffers", std::size_t{kBufferCount} * kBufferSize}};
  auto arena = Arena::create("ring_ipc_test", specs);
  if (!arena) {
    ADD_FAILURE() << "Arena::create: " << arena.error().message();
    std::abort();
  }
  SharedRing s{std::move(arena).value(), {}, {}};
  s.ring = s.arena.region("ring");
  s.buffers = s.arena.region("buffers");
  auto formatted = RingMemory::format(s.ring, kCapacity, initial_index);
  EXPECT_TRUE(formatted);
  return s;
}

// In the child: maps the arena again from the fd and checks the ring region
// is a new mapping, not the one inherited over fork().
struct ChildView {
  Arena arena;
  std::span<std::byte> ring;
  std::span<std::byte> buffers;
};
Expected<ChildView, int> child_attach(int fd, const std::byte* inherited_ring) {
  auto arena = Arena::attach(fd);
  if (!arena) return unexpected(int{kChildAttachArenaFailed});
  ChildView v{std::move(arena).value(), {}, {}};
  v.ring = v.arena.region("ring");
  v.buffers = v.arena.region("buffers");
  if (v.ring.size() < RingMemory::bytes_needed(kCapacity) || v.ring.data() == inherited_ring) {
    return unexpected(int{kChildMappingNotFresh});
  }
  return v;
}

// ------------------------------------------------------- 10 million items

constexpr std::uint32_t kItems = 10'000'000;
constexpr auto kTransferWatchdog = 120s;

int produce_items(int fd, const std::byte* inherited_ring) {
  auto view = child_attach(fd, inherited_ring);
  if (!view) return view.error();
  auto producer = RingProducer::attach(view->ring, kLimits);
  if (!producer) return kChildAttachRingFailed;
  const auto deadline = Clock::now() + kTransferWatchdog;
  std::array<RingSlot, 32> batch{};
  Backoff backoff;
  std::uint32_t seq = 0;
  while (seq < kItems) {
    // Runs of single enqueues alternate with runs of batches of 1..32.
    const bool single = (seq / 4096) % 3 == 0;
    const std::uint32_t want = single ? 1 : std::min<std::uint32_t>(kItems - seq, 1 + seq % 32);
    for (std::uint32_t i = 0; i < want; ++i) {
      batch[i] = slot_for(seq + i);
      const std::uint64_t stamp = seq + i;
      std::memcpy(stamp_at(view->buffers, batch[i]), &stamp, sizeof stamp);
    }
    const std::size_t placed = single ? (producer->try_enqueue(batch[0]) ? 1 : 0)
                                      : producer->enqueue_batch(std::span(batch).first(want));
    seq += static_cast<std::uint32_t>(placed);
    if (placed != 0) {
      backoff.reset();
      continue;
    }
    if (producer->broken()) return kChildRingBroken;
    if ((backoff.idle & 1023) == 0 && Clock::now() > deadline) return kChildTimedOut;
    backoff.pause();
  }
  return kChildOk;
}

TEST(RingIpc, TenMillionItemsFromAChildProcessArriveInOrder) {
  SharedRing shared = make_shared_ring(0xffff0000u);  // crosses 2^32 along the way
  auto consumer = RingConsumer::attach(shared.ring, kLimits);
  ASSERT_TRUE(consumer);

  const auto start = Clock::now();
  const auto deadline = start + kTransferWatchdog;
  Child child([&] { return produce_items(shared.arena.fd(), shared.ring.data()); });
  ASSERT_TRUE(child.started());

  std::array<RingSlot, 64> out{};
  std::uint32_t expected = 0;
  std::string mismatch;
  Backoff backoff;
  bool timed_out = false, child_ended_early = false;
  while (expected < kItems && mismatch.empty()) {
    std::size_t n = 0;
    if (expected % 8 == 0) {
      n = consumer->try_dequeue(out[0]) ? 1 : 0;
    } else {
      n = consumer->dequeue_batch(std::span(out).first(1 + expected % 64));
    }
    for (std::size_t i = 0; i < n; ++i, ++expected) {
      std::uint64_t stamp = 0;
      std::memcpy(&stamp, stamp_at(shared.buffers, out[i]), sizeof stamp);
      if (out[i] != slot_for(expected) || stamp != expected) {
        mismatch = "item " + std::to_string(expected) + ": got cookie " + std::to_string(out[i].cookie) +
                   " buffer " + std::to_string(out[i].buffer) + " length " + std::to_string(out[i].length) +
                   " stamp " + std::to_string(stamp);
        break;
      }
    }
    if (n != 0) {
      backoff.reset();
      continue;
    }
    if (consumer->broken()) break;
    if ((backoff.idle & 1023) == 0) {
      if (Clock::now() > deadline) {
        timed_out = true;
        break;
      }
      // An ended child with the ring empty will send nothing more.
      if (child.ended() && consumer->available() == 0) {
        child_ended_early = true;
        break;
      }
    }
    backoff.pause();
  }
  const auto transfer_end = Clock::now();

  EXPECT_EQ(mismatch, "");
  EXPECT_FALSE(timed_out) << "watchdog: only " << expected << " items in " << kTransferWatchdog.count()
                          << " s";
  EXPECT_FALSE(child_ended_early) << "child ended after " << expected
                                  << " items: " << describe_status(child.status());
  EXPECT_FALSE(consumer->broken()) << to_string(consumer->fault());
  EXPECT_EQ(expected, kItems);
  const int status = child.wait_until(deadline);
  EXPECT_FALSE(child.killed());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildOk) << describe_status(status);
  // Nothing beyond the 10 million: no duplicate at the end.
  EXPECT_EQ(consumer->available(), 0u);
  EXPECT_EQ(consumer->stats().dequeued, kItems);

  const double seconds = std::chrono::duration<double>(transfer_end - start).count();
  std::printf("[ ring ipc ] %u items in %.2f s (%.1f M items/s), %llu empty polls, %llu index loads\n",
              kItems, seconds, kItems / seconds / 1e6,
              static_cast<unsigned long long>(consumer->stats().empty_events),
              static_cast<unsigned long long>(consumer->stats().producer_index_loads));
  RecordProperty("seconds", std::to_string(seconds));
}

// ------------------------------------------------------- hostile peers

constexpr auto kHostileWatchdog = 20s;
constexpr std::uint32_t kStart = 0xfffffff0u;  // every hostile run crosses the wrap

// Child helper: waits until `done()` or the deadline.
template <class Done>
bool child_wait_for(Done done, Clock::time_point deadline) {
  Backoff backoff;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    backoff.pause();
  }
  return true;
}

// Parent side of a hostile producer: consume (checking every slot against
// the limits and the honest sequence) until the consumer breaks.
struct ConsumeResult {
  std::uint32_t good = 0;
  bool bad_slot_delivered = false;
  bool out_of_sequence = false;
  bool timed_out = false;
};
ConsumeResult consume_until_broken(RingConsumer& consumer, Clock::time_point deadline) {
  ConsumeResult r;
  std::array<RingSlot, 16> out{};
  Backoff backoff;
  while (!consumer.broken()) {
    const std::size_t n = consumer.dequeue_batch(out);
    for (std::size_t i = 0; i < n; ++i) {
      if (out[i].buffer >= kBufferCount || std::uint64_t{out[i].offset} + out[i].length > kBufferSize) {
        r.bad_slot_delivered = true;
      }
      if (out[i] != slot_for(r.good)) r.out_of_sequence = true;
      ++r.good;
    }
    if (n != 0) {
      backoff.reset();
      continue;
    }
    if (Clock::now() > deadline) {
      r.timed_out = true;
      break;
    }
    backoff.pause();
  }
  return r;
}

// The hostile producers: each produces `honest` good items with a real
// RingProducer, then misbehaves through RingMemory.
enum class ProducerAttack { FarAhead, GarbageBufferIndex, GarbageLength, Backwards };

int hostile_producer(int fd, const std::byte* inherited_ring, ProducerAttack attack, std::uint32_t honest) {
  auto view = child_attach(fd, inherited_ring);
  if (!view) return view.error();
  auto producer = RingProducer::attach(view->ring, kLimits);
  auto raw = RingMemory::view(view->ring, kCapacity);
  if (!producer || !raw) return kChildAttachRingFailed;
  const auto deadline = Clock::now() + kHostileWatchdog;
  for (std::uint32_t seq = 0; seq < honest; ++seq) {
    if (!child_wait_for([&] { return producer->try_enqueue(slot_for(seq)); }, deadline))
      return kChildTimedOut;
  }
  const std::uint32_t next = kStart + honest;
  std::mt19937 rng(honest);
  switch (attack) {
    case ProducerAttack::FarAhead:
      // After the parent took the honest items (a consumer that had not yet
      // looked would see only the lie).
      if (!child_wait_for([&] { return raw->consumer_index().load(std::memory_order_acquire) == next; },
                          deadline)) {
        return kChildTimedOut;
      }
      raw->producer_index().store(next + kCapacity + 1 + rng() % 100000, std::memory_order_release);
      break;
    case ProducerAttack::GarbageBufferIndex:
    case ProducerAttack::GarbageLength:
      // A run of random slots, the first of the attack's kind, then published.
      for (std::uint32_t i = 0; i < 32; ++i) {
        RingSlot garbage{static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()),
                         static_cast<std::uint16_t>(rng()), static_cast<std::uint16_t>(rng()),
                         static_cast<std::uint32_t>(rng())};
        if (i == 0 && attack == ProducerAttack::GarbageBufferIndex) garbage.buffer |= 0x80000000u;
        if (i == 0 && attack == ProducerAttack::GarbageLength) {
          garbage.buffer %= kBufferCount;
          garbage.length = kBufferSize - garbage.offset % kBufferSize + 1 + rng() % 0x10000;
        }
        raw->store_slot(next + i, garbage);
      }
      raw->producer_index().store(next + 32, std::memory_order_release);
      break;
    case ProducerAttack::Backwards:
      // Wait for the parent to take the honest items, so it has seen the
      // index at `next`; then move it back.
      if (!child_wait_for([&] { return raw->consumer_index().load(std::memory_order_acquire) == next; },
                          deadline)) {
        return kChildTimedOut;
      }
      raw->producer_index().store(next - 3, std::memory_order_release);
      break;
  }
  return kChildOk;
}

struct ProducerAttackCase {
  ProducerAttack attack;
  std::uint32_t honest;
  RingFault fault;
};

class RingIpcHostileProducer : public testing::TestWithParam<ProducerAttackCase> {};

TEST_P(RingIpcHostileProducer, ConsumerBreaksWithTheRightFault) {
  const ProducerAttackCase c = GetParam();
  SharedRing shared = make_shared_ring(kStart);
  auto consumer = RingConsumer::attach(shared.ring, kLimits);
  ASSERT_TRUE(consumer);
  const auto deadline = Clock::now() + kHostileWatchdog;
  Child child([&] { return hostile_producer(shared.arena.fd(), shared.ring.data(), c.attack, c.honest); });
  ASSERT_TRUE(child.started());

  const ConsumeResult r = consume_until_broken(*consumer, deadline);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.bad_slot_delivered);
  EXPECT_FALSE(r.out_of_sequence);
  EXPECT_EQ(r.good, c.honest);  // every honest item, and nothing else
  EXPECT_TRUE(consumer->broken());
  EXPECT_EQ(consumer->fault(), c.fault) << to_string(consumer->fault());
  const int status = child.wait_until(deadline);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildOk) << describe_status(status);
  // Sticky, whatever the peer does next.
  RingSlot slot;
  EXPECT_FALSE(consumer->try_dequeue(slot));
  EXPECT_EQ(consumer->available(), 0u);
}

std::string producer_attack_name(const testing::TestParamInfo<ProducerAttackCase>& param_info) {
  static constexpr std::array<const char*, 4> kNames{"FarAhead", "GarbageBufferIndex", "GarbageLength",
                                                     "Backwards"};
  return std::string(kNames[static_cast<std::size_t>(param_info.param.attack)]) + "After" +
         std::to_string(param_info.param.honest);
}

INSTANTIATE_TEST_SUITE_P(
    Attacks, RingIpcHostileProducer,
    testing::Values(ProducerAttackCase{ProducerAttack::FarAhead, 0, RingFault::ProducerIndexTooFarAhead},
                    ProducerAttackCase{ProducerAttack::FarAhead, 100, RingFault::ProducerIndexTooFarAhead},
                    ProducerAttackCase{ProducerAttack::GarbageBufferIndex, 100, RingFault::BadBufferIndex},
                    ProducerAttackCase{ProducerAttack::GarbageLength, 100, RingFault::BadLength},
                    ProducerAttackCase{ProducerAttack::Backwards, 10, RingFault::ProducerIndexBackwards}),
    producer_attack_name);

// The hostile consumers: wait until the parent has filled the ring, then
// lie about how far they got.
enum class ConsumerAttack { PastProducer, Backwards };

int hostile_consumer(int fd, const std::byte* inherited_ring, ConsumerAttack attack) {
  auto view = child_attach(fd, inherited_ring);
  if (!view) return view.error();
  auto consumer = RingConsumer::attach(view->ring, kLimits);
  auto raw = RingMemory::view(view->ring, kCapacity);
  if (!consumer || !raw) return kChildAttachRingFailed;
  const auto deadline = Clock::now() + kHostileWatchdog;
  auto producer_at = [&](std::uint32_t index) {
    return [&raw, index] { return raw->producer_index().load(std::memory_order_acquire) == index; };
  };
  if (!child_wait_for(producer_at(kStart + kCapacity), deadline)) return kChildTimedOut;
  switch (attack) {
    case ConsumerAttack::PastProducer:
      raw->consumer_index().store(kStart + kCapacity + 7, std::memory_order_release);
      break;
    case ConsumerAttack::Backwards: {
      // Take ten honestly, let the parent refill them, then step back.
      std::array<RingSlot, 10> out{};
      if (consumer->dequeue_batch(out) != out.size()) return kChildRingBroken;
      if (!child_wait_for(producer_at(kStart + kCapacity + 10), deadline)) return kChildTimedOut;
      raw->consumer_index().store(kStart + 3, std::memory_order_release);
      break;
    }
  }
  return kChildOk;
}

class RingIpcHostileConsumer : public testing::TestWithParam<std::pair<ConsumerAttack, RingFault>> {};

TEST_P(RingIpcHostileConsumer, ProducerBreaksWithTheRightFault) {
  const ConsumerAttack attack = GetParam().first;
  const RingFault fault = GetParam().second;
  SharedRing shared = make_shared_ring(kStart);
  auto producer = RingProducer::attach(shared.ring, kLimits);
  ASSERT_TRUE(producer);
  const auto deadline = Clock::now() + kHostileWatchdog;
  Child child([&] { return hostile_consumer(shared.arena.fd(), shared.ring.data(), attack); });
  ASSERT_TRUE(child.started());

  std::uint32_t seq = 0;
  bool timed_out = false;
  Backoff backoff;
  while (!producer->broken()) {
    if (producer->try_enqueue(slot_for(seq))) {
      ++seq;
      backoff.reset();
      continue;
    }
    if (Clock::now() > deadline) {
      timed_out = true;
      break;
    }
    backoff.pause();
  }
  EXPECT_FALSE(timed_out);
  EXPECT_EQ(producer->fault(), fault) << to_string(producer->fault());
  EXPECT_EQ(seq, attack == ConsumerAttack::Backwards ? kCapacity + 10 : kCapacity);
  const int status = child.wait_until(deadline);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildOk) << describe_status(status);
  EXPECT_FALSE(producer->try_enqueue(slot_for(seq)));
  EXPECT_EQ(producer->free_slots(), 0u);
}

std::string consumer_attack_name(
    const testing::TestParamInfo<std::pair<ConsumerAttack, RingFault>>& param_info) {
  return param_info.param.first == ConsumerAttack::PastProducer ? "PastProducer" : "Backwards";
}

INSTANTIATE_TEST_SUITE_P(
    Attacks, RingIpcHostileConsumer,
    testing::Values(std::pair{ConsumerAttack::PastProducer, RingFault::ConsumerIndexPastProducer},
                    std::pair{ConsumerAttack::Backwards, RingFault::ConsumerIndexBackwards}),
    consumer_attack_name);

// A child writing random values over the whole ring (indices, info line and
// slots) while the parent keeps consuming: the parent never crashes, never
// delivers a slot outside the limits, and ends up broken.
TEST(RingIpc, RandomScribblingChildNeverGetsABadSlotDelivered) {
  SharedRing shared = make_shared_ring(kStart);
  auto consumer = RingConsumer::attach(shared.ring, kLimits);
  ASSERT_TRUE(consumer);
  const auto deadline = Clock::now() + kHostileWatchdog;
  Child child([&]() -> int {
    auto view = child_attach(shared.arena.fd(), shared.ring.data());
    if (!view) return view.error();
    auto raw = RingMemory::view(view->ring, kCapacity);
    if (!raw) return kChildAttachRingFailed;
    std::mt19937 rng(7);
    std::uint32_t plausible = kStart;
    const auto stop = Clock::now() + 300ms;
    while (Clock::now() < stop) {
      for (int i = 0; i < 64; ++i) {
        // Mostly a producer index that only grows and stays within
        // capacity, over slots that are now and then out of bounds; rarely
        // a wild index or a scribbled header.
        const std::uint32_t what = rng() % 4096;
        if (what == 0) {
          raw->producer_index().store(static_cast<std::uint32_t>(rng()), std::memory_order_release);
        } else if (what == 1) {
          raw->consumer_index().store(static_cast<std::uint32_t>(rng()));
        } else if (what == 2) {
          raw->header().capacity.store(static_cast<std::uint32_t>(rng()));
        } else if (what < 1024) {
          const std::uint32_t consumed = raw->consumer_index().load(std::memory_order_acquire);
          if (plausible - consumed > kCapacity) plausible = consumed;
          plausible = std::min<std::uint32_t>(plausible + static_cast<std::uint32_t>(rng() % 8),
                                              consumed + kCapacity);
          raw->producer_index().store(plausible, std::memory_order_release);
        } else {
          raw->store_slot(static_cast<std::uint32_t>(rng()),
                          RingSlot{static_cast<std::uint32_t>(rng() % (kBufferCount + 8)),
                                   static_cast<std::uint32_t>(rng() % (kBufferSize + 8)), 0,
                                   static_cast<std::uint16_t>(rng()), static_cast<std::uint32_t>(rng())});
        }
      }
      sched_yield();
    }
    // Last, a lie no consumer can miss, so the parent surely ends broken.
    raw->producer_index().store(raw->consumer_index().load() + kCapacity + 1, std::memory_order_release);
    return kChildOk;
  });
  ASSERT_TRUE(child.started());

  std::array<RingSlot, 16> out{};
  std::uint64_t delivered = 0;
  bool bad_delivered = false;
  while (!consumer->broken() && Clock::now() < deadline) {
    const std::size_t n = consumer->dequeue_batch(out);
    for (std::size_t i = 0; i < n; ++i) {
      bad_delivered |=
          out[i].buffer >= kBufferCount || std::uint64_t{out[i].offset} + out[i].length > kBufferSize;
    }
    delivered += n;
    if (n == 0) sched_yield();
  }
  const int status = child.wait_until(deadline);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildOk) << describe_status(status);
  EXPECT_FALSE(bad_delivered);
  EXPECT_TRUE(consumer->broken()) << "delivered " << delivered;
  std::printf("[ ring ipc ] scribbled ring: %llu slots delivered, then \"%s\"\n",
              static_cast<unsigned long long>(delivered), std::string(to_string(consumer->fault())).c_str());
}

}  // namespace
}  // namespace usnet::mem
