// Process-wide count of packet buffers held, across every pool. Tests check
// it is zero after each case; `usnet stat` will report it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace usnet::mem {

// Buffers currently handed out by all live pools of this process.
std::int64_t buffers_in_use_all_pools() noexcept;
// Buffers that were still handed out when their pool was destroyed.
std::int64_t buffers_leaked_total() noexcept;

namespace detail {

// One pool's count of buffers handed out, listed where
// buffers_in_use_all_pools() finds it. Only the pool's own thread changes
// it, with a plain load and store: no locked instruction per buffer on the
// data path (a locked add also waits for every earlier store, such as a
// frame written into a peer's ring, to reach the cache). Any thread may
// read it. Used by PacketPool only.
class InUseTally {
 public:
  InUseTally();
  // The new tally takes over the count; the old one is left at zero.
  InUseTally(InUseTally&& other) noexcept;
  InUseTally(const InUseTally&) = delete;
  InUseTally& operator=(const InUseTally&) = delete;
  InUseTally& operator=(InUseTally&&) = delete;
  // Leaves the list; buffers still counted are added to the leaked total.
  ~InUseTally();

  void add(std::size_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::size_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::size_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> v_{0};
};

}  // namespace detail

}  // namespace usnet::mem
