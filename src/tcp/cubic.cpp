// CUBIC (RFC 9438) in integers: the algorithm hooks; the shared slow start
// and recovery code is in congestion.cpp.
#include <algorithm>
#include <bit>
#include <limits>

#include "usnet/tcp/congestion.hpp"

namespace usnet::tcp {

namespace {

__extension__ typedef unsigned __int128 U128;  // GCC and clang on 64-bit targets

constexpr U128 kPicoPerMicroCubedUnit = static_cast<U128>(1000000000000000000ull);  // (10^6 us/s)^3
// beta_cubic = 7/10 (RFC 9438 4.6); (1 + beta) / 2 = 17/20 (4.7);
// alpha_cubic = 3 (1 - beta) / (1 + beta) = 9/17 (4.3).
constexpr std::uint64_t kBetaNum = 7, kBetaDen = 10;
constexpr std::uint64_t kFastConvNum = 17, kFastConvDen = 20;
constexpr std::uint64_t kAlphaNum = 9, kAlphaDen = 17;
// |t - K| beyond this (about 71 minutes) saturates; W_cubic is far past any
// cap by then and the target is clamped to 1.5 * cwnd anyway.
constexpr std::uint64_t kMaxOffsetMicros = std::uint64_t{1} << 32;
constexpr std::uint64_t kSaturated = std::uint64_t{1} << 62;

unsigned bit_width128(U128 x) noexcept {
  const auto hi = static_cast<std::uint64_t>(x >> 64);
  return hi != 0 ? 64 + static_cast<unsigned>(std::bit_width(hi))
                 : static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(x)));
}

// floor(cbrt(x)) for x < 2^120, by bisection: run once per congestion
// event, not per ACK, so simplicity beats speed.
std::uint64_t integer_cbrt(U128 x) noexcept {
  std::uint64_t lo = 0;
  std::uint64_t hi = std::uint64_t{1} << ((bit_width128(x) + 2) / 3);  // hi^3 >= 2^bits > x
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo + 1) / 2;
    const U128 cube = static_cast<U128>(mid) * mid * mid;
    if (cube <= x) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

}  // namespace

std::uint64_t Cubic::w_cubic(Nanos t) const noexcept {
  // W_cubic(t) = C (t - K)^3 + W_max (RFC 9438 eq. 1), in bytes:
  // C * SMSS * (dt_us)^3 / 10^18 with C = c_milli / 1000.
  const std::int64_t dt_us = (t - k_).count() / 1000;
  const bool before_k = dt_us < 0;
  const std::uint64_t mag = std::min<std::uint64_t>(
      before_k ? 0 - static_cast<std::uint64_t>(dt_us) : static_cast<std::uint64_t>(dt_us), kMaxOffsetMicros);
  // mag^3 < 2^96, times c_milli (< 2^14) and SMSS (< 2^16): < 2^126.
  const U128 scaled = static_cast<U128>(mag) * mag * mag * config().cubic_c_milli * smss();
  const U128 delta128 = scaled / (kPicoPerMicroCubedUnit * 1000);
  const std::uint64_t delta = delta128 > kSaturated ? kSaturated : static_cast<std::uint64_t>(delta128);
  if (before_k) return w_max_ > delta ? w_max_ - delta : 0;
  return std::min(w_max_ + delta, kSaturated);
}

std::uint64_t Cubic::on_congestion_event(Cause cause, std::uint64_t cwnd_before,
                                         std::uint64_t /*flight_size*/, Nanos /*now*/) noexcept {
  epoch_started_ = false;
  if (cause == Cause::kRto) {
    // RFC 9438 4.8: the next congestion-avoidance stage starts with K = 0
    // and W_max = the cwnd it starts with (set in start_epoch).
    after_rto_ = true;
  } else {
    after_rto_ = false;
    // RFC 9438 4.7 fast convergence: a flow whose window peaks lower than
    // last time releases bandwidth to newer flows.
    if (config().cubic_fast_convergence && cwnd_before < w_max_) {
      w_max_ = cwnd_before / kFastConvDen * kFastConvNum +
               cwnd_before % kFastConvDen * kFastConvNum / kFastConvDen;
    } else {
      w_max_ = cwnd_before;
    }
  }
  cwnd_prior_ = cwnd_before;
  // RFC 9438 4.6: ssthresh = beta_cubic * cwnd. From cwnd rather than
  // FlightSize, as the RFC allows when cwnd cannot grow while the flow is
  // application-limited (AckEvent::app_limited stops growth).
  return cwnd_before / kBetaDen * kBetaNum + cwnd_before % kBetaDen * kBetaNum / kBetaDen;
}

void Cubic::on_timeout() noexcept {
  after_rto_ = true;
  epoch_started_ = false;
}

void Cubic::start_epoch(Nanos now) noexcept {
  const std::uint64_t cwnd_epoch = cwnd();
  epoch_started_ = true;
  epoch_start_ = now;
  w_est_ = cwnd_epoch;  // RFC 9438 4.3
  w_est_frac_ = 0;
  cwnd_frac_ = 0;
  if (cwnd_prior_ == 0) cwnd_prior_ = cwnd_epoch;  // no congestion event yet (4.10)
  if (after_rto_ || w_max_ <= cwnd_epoch) {
    // After a timeout (4.8) or with no earlier peak above us (slow start
    // ended without loss, 4.10): the curve starts at its inflection point.
    after_rto_ = false;
    w_max_ = cwnd_epoch;
    k_ = Nanos::zero();
    return;
  }
  // K = cbrt((W_max - cwnd_epoch) / C) seconds (RFC 9438 eq. 2), in
  // microseconds: cbrt(diff_bytes / SMSS * 1000 / c_milli * 10^18).
  // diff < 2^40, times 10^21 (< 2^70): < 2^110.
  const U128 diff = w_max_ - cwnd_epoch;
  const U128 k_cubed_us = diff * (kPicoPerMicroCubedUnit * 1000) / (U128{config().cubic_c_milli} * smss());
  k_ = std::chrono::microseconds(integer_cbrt(k_cubed_us));
}

std::uint64_t Cubic::grow_congestion_avoidance(std::uint64_t bytes, Nanos now) noexcept {
  if (!epoch_started_) start_epoch(now);
  const std::uint64_t cw = cwnd();
  const std::uint64_t smss_bytes = smss();
  // One ACK cannot stand for more than a window (a big cumulative ACK after
  // recovery); this also keeps the products below within 64 bits.
  bytes = std::min(bytes, cw);
  const Nanos t = now > epoch_start_ ? now - epoch_start_ : Nanos::zero();
  const std::uint64_t w_t = w_cubic(t);

  if (config().cubic_reno_friendly) {
    // RFC 9438 4.3: W_est += alpha_cubic * segments_acked / cwnd (segments),
    // in bytes: alpha * SMSS * bytes / cwnd; alpha is 1 once W_est reaches
    // cwnd_prior. Fractions carry over in w_est_frac_ (units of 1/(17*cwnd)).
    const std::uint64_t alpha_num = w_est_ >= cwnd_prior_ ? kAlphaDen : kAlphaNum;
    const std::uint64_t den = kAlphaDen * cw;
    w_est_frac_ += alpha_num * smss_bytes * bytes;  // < 2^5 * 2^16 * 2^40
    w_est_ = std::min(w_est_ + w_est_frac_ / den, kSaturated);
    w_est_frac_ %= den;
    if (w_t < w_est_) {
      // Reno-friendly region: follow W_est (never shrinking cwnd here).
      cwnd_frac_ = 0;
      return std::max(cw, w_est_);
    }
  }

  // RFC 9438 4.4 / 4.5: target = W_cubic(t + RTT) clamped to [cwnd, 1.5 cwnd];
  // cwnd += (target - cwnd) / cwnd per SMSS acknowledged.
  std::uint64_t target = w_cubic(t + srtt());
  target = std::clamp(target, cw, cw + cw / 2);
  // (target - cw) * bytes can reach cw/2 * cw, 2^79: take it in 128 bits.
  const U128 num = static_cast<U128>(target - cw) * bytes + cwnd_frac_;
  cwnd_frac_ = static_cast<std::uint64_t>(num % cw);
  return cw + static_cast<std::uint64_t>(num / cw);  // <= cw + cw/2 + 1
}

void Cubic::save_undo_state() noexcept {
  undo_.w_max = w_max_;
  undo_.cwnd_prior = cwnd_prior_;
  undo_.after_rto = after_rto_;
}

void Cubic::restore_undo_state() noexcept {
  // RFC 9438 4.9: back to the state before the spurious event; the epoch
  // restarts from the restored window.
  w_max_ = undo_.w_max;
  cwnd_prior_ = undo_.cwnd_prior;
  after_rto_ = undo_.after_rto;
  epoch_started_ = false;
}

void Cubic::rescale(std::uint32_t old_smss, std::uint32_t new_smss) noexcept {
  auto scale = [&](std::uint64_t v) { return v / old_smss * new_smss + v % old_smss * new_smss / old_smss; };
  w_max_ = scale(w_max_);
  cwnd_prior_ = scale(cwnd_prior_);
  w_est_ = scale(w_est_);
  undo_.w_max = scale(undo_.w_max);
  undo_.cwnd_prior = scale(undo_.cwnd_prior);
  epoch_started_ = false;  // K is recomputed from the rescaled W_max
}

}  // namespace usnet::tcp
