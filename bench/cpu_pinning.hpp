// CPU placement for benchmarks with two processes (this one and a forked
// peer): each gets its own CPU when at least two are allowed.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace usnet::bench {

struct CpuPlan {
  bool pinned = false;
  int self_cpu = -1;
  int peer_cpu = -1;
};

inline CpuPlan plan_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  CpuPlan plan;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return plan;
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (cpus.size() < 2) return plan;
  return CpuPlan{true, cpus[0], cpus[1]};
}

inline bool pin_to(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0;
}

// Pins this process for one run and restores its CPU set afterwards.
class ScopedPin {
 public:
  explicit ScopedPin(const CpuPlan& plan) {
    CPU_ZERO(&saved_);
    saved_ok_ = sched_getaffinity(0, sizeof saved_, &saved_) == 0;
    if (plan.pinned) pinned_ = pin_to(plan.self_cpu);
  }
  ~ScopedPin() {
    if (saved_ok_) sched_setaffinity(0, sizeof saved_, &saved_);
  }
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;
  bool pinned() const { return pinned_; }

 private:
  cpu_set_t saved_;
  bool saved_ok_ = false;
  bool pinned_ = false;
};

// The round trip of one cache line between two CPUs (ns): a thread on each,
// bouncing a counter, 20,000 times or for at most 50 ms. It tells how far
// apart the two cores are at the moment (one chiplet, another, another
// socket; a VM's vCPUs can move between those), which a busy-polled round
// trip over shared memory follows. 0 if the threads cannot be pinned. The
// calling thread's CPU set is restored.
inline double cache_line_round_trip_ns(int cpu_a, int cpu_b) {
  if (cpu_a < 0 || cpu_b < 0 || cpu_a == cpu_b) return 0;
  struct alignas(64) Line {
    std::atomic<std::uint64_t> v{0};
  };
  Line ping, pong;
  std::atomic<bool> quit{false}, pinned{false}, failed{false};
  constexpr std::uint64_t kRounds = 20'000;
  std::thread peer([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu_b, &one);
    if (::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) != 0) {
      failed = true;
      return;
    }
    pinned = true;
    std::uint64_t seen = 0;
    while (!quit.load(std::memory_order_relaxed)) {
      const std::uint64_t v = ping.v.load(std::memory_order_acquire);
      if (v != seen) {
        seen = v;
        pong.v.store(v, std::memory_order_release);
      }
    }
  });
  double result = 0;
  cpu_set_t saved, one;
  CPU_ZERO(&one);
  CPU_SET(cpu_a, &one);
  const bool have_saved = ::pthread_getaffinity_np(::pthread_self(), sizeof saved, &saved) == 0;
  if (have_saved && ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) == 0) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    while (!pinned && !failed && std::chrono::steady_clock::now() < give_up) {
    }
    if (pinned) {
      std::uint64_t done = 0;
      const auto begin = std::chrono::steady_clock::now();
      auto t = begin;
      bool late = false;
      while (done < kRounds && t < give_up && !late) {
        ping.v.store(done + 1, std::memory_order_release);
        for (std::uint32_t spins = 1; pong.v.load(std::memory_order_acquire) != done + 1; ++spins) {
          if ((spins & 4095) == 0 && std::chrono::steady_clock::now() >= give_up) {
            late = true;  // the peer thread is not running: stop here
            break;
          }
        }
        if (!late) ++done;
        if ((done & 255) == 0) t = std::chrono::steady_clock::now();
      }
      t = std::chrono::steady_clock::now();
      if (done > 0)
        result = std::chrono::duration<double, std::nano>(t - begin).count() / static_cast<double>(done);
    }
    (void)::pthread_setaffinity_np(::pthread_self(), sizeof saved, &saved);
  }
  quit = true;
  peer.join();
  return result;
}

}  // namespace usnet::bench
