// Process-wide count of packet buffers held, across every pool. Tests check
// it is zero after each case; `usnet stat` will report it.
#pragma once

#include <cstdint>

namespace usnet::mem {

// Buffers currently handed out by all live pools of this process.
std::int64_t buffers_in_use_all_pools() noexcept;
// Buffers that were still handed out when their pool was destroyed.
std::int64_t buffers_leaked_total() noexcept;

namespace detail {
// Called by PacketPool only.
void account_acquired(std::int64_t n) noexcept;
void account_released(std::int64_t n) noexcept;
void account_leaked(std::int64_t n) noexcept;
}  // namespace detail

}  // namespace usnet::mem
