#include "usnet/mem/accounting.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

namespace usnet::mem {

namespace {

// The live tallies. Pools are made and destroyed rarely (set-up and
// teardown), so a mutex and a vector suffice.
struct Registry {
  std::mutex mu;
  std::vector<const detail::InUseTally*> tallies;
  std::int64_t leaked = 0;
};

Registry& registry() {
  // Never destroyed: a pool in a static object (made before or after the
  // first tally) may leave the list during static destruction.
  static auto* r = new Registry;
  return *r;
}

}  // namespace

std::int64_t buffers_in_use_all_pools() noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::int64_t sum = 0;
  for (const auto* t : r.tallies) sum += static_cast<std::int64_t>(t->get());
  return sum;
}

std::int64_t buffers_leaked_total() noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.leaked;
}

namespace detail {

InUseTally::InUseTally() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.tallies.push_back(this);
}

InUseTally::InUseTally(InUseTally&& other) noexcept : InUseTally() {
  v_.store(other.v_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
}

InUseTally::~InUseTally() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.leaked += static_cast<std::int64_t>(get());
  r.tallies.erase(std::remove(r.tallies.begin(), r.tallies.end(), this), r.tallies.end());
}

}  // namespace detail

}  // namespace usnet::mem
