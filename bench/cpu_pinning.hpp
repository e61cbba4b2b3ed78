// CPU placement for benchmarks with two processes (this one and a forked
// peer): each gets its own CPU when at least two are allowed.
#pragma once

#include <sched.h>

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

}  // namespace usnet::bench
