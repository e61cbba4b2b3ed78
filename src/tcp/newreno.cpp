// NewReno's two algorithm hooks (RFC 5681 3.1, RFC 6582); the recovery
// arithmetic they plug into is in congestion.cpp.
#include <algorithm>

#include "usnet/tcp/congestion.hpp"

namespace usnet::tcp {

std::uint64_t NewReno::on_congestion_event(Cause /*cause*/, std::uint64_t /*cwnd*/, std::uint64_t flight_size,
                                           Nanos /*now*/) noexcept {
  bytes_acked_ = 0;
  // RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS), for a loss, a
  // timeout and an ECN-Echo alike (RFC 3168 6.1.2 halves the window too).
  return std::max<std::uint64_t>(flight_size / 2, 2ull * smss());
}

std::uint64_t NewReno::grow_congestion_avoidance(std::uint64_t bytes, Nanos /*now*/) noexcept {
  // RFC 5681 3.1 (byte counting, RFC 3465 2.1): when the bytes acknowledged
  // reach cwnd, add one SMSS: one segment per round trip.
  const std::uint64_t cwnd_now = cwnd();
  bytes_acked_ += std::min(bytes, cwnd_now);
  if (bytes_acked_ < cwnd_now) return cwnd_now;
  bytes_acked_ -= cwnd_now;
  return cwnd_now + smss();
}

}  // namespace usnet::tcp
