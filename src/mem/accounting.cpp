#include "usnet/mem/accounting.hpp"

#include <atomic>

namespace usnet::mem {

namespace {
std::atomic<std::int64_t> g_in_use{0};
std::atomic<std::int64_t> g_leaked{0};
}  // namespace

std::int64_t buffers_in_use_all_pools() noexcept { return g_in_use.load(std::memory_order_relaxed); }
std::int64_t buffers_leaked_total() noexcept { return g_leaked.load(std::memory_order_relaxed); }

namespace detail {
void account_acquired(std::int64_t n) noexcept { g_in_use.fetch_add(n, std::memory_order_relaxed); }
void account_released(std::int64_t n) noexcept { g_in_use.fetch_sub(n, std::memory_order_relaxed); }
void account_leaked(std::int64_t n) noexcept {
  g_in_use.fetch_sub(n, std::memory_order_relaxed);
  g_leaked.fetch_add(n, std::memory_order_relaxed);
}
}  // namespace detail

}  // namespace usnet::mem
