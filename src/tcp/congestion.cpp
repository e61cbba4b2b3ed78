// The part of congestion control every algorithm shares: slow start, fast
// recovery window arithmetic, RTO collapse, ECN once per window, undo, and
// the factory (see congestion.hpp).
#include "usnet/tcp/congestion.hpp"

#include <algorithm>

namespace usnet::tcp {

namespace {

constexpr std::uint32_t kMaxSmss = 65535;
constexpr std::uint32_t kMaxInitialSegments = 100;
constexpr std::uint64_t kMaxCwndLimit = std::uint64_t{1} << 40;
constexpr std::uint32_t kMaxCubicCMilli = 10000;

bool valid(const CongestionConfig& c) noexcept {
  return c.smss >= 1 && c.smss <= kMaxSmss && c.initial_window_segments >= 1 &&
         c.initial_window_segments <= kMaxInitialSegments && c.slow_start_ack_limit_segments >= 1 &&
         c.slow_start_ack_limit_segments <= 2 && c.max_cwnd >= 4ull * c.smss && c.max_cwnd <= kMaxCwndLimit &&
         c.cubic_c_milli >= 1 && c.cubic_c_milli <= kMaxCubicCMilli;
}

// Direct construction (tests, embedders) gets the same ranges by clamping.
CongestionConfig sanitize(CongestionConfig c) noexcept {
  c.smss = std::clamp<std::uint32_t>(c.smss, 1, kMaxSmss);
  c.initial_window_segments = std::clamp<std::uint32_t>(c.initial_window_segments, 1, kMaxInitialSegments);
  c.slow_start_ack_limit_segments = std::clamp<std::uint32_t>(c.slow_start_ack_limit_segments, 1, 2);
  c.max_cwnd = std::clamp<std::uint64_t>(c.max_cwnd, 4ull * c.smss, kMaxCwndLimit);
  c.cubic_c_milli = std::clamp<std::uint32_t>(c.cubic_c_milli, 1, kMaxCubicCMilli);
  return c;
}

}  // namespace

std::string_view to_string(CongestionAlgorithm a) noexcept {
  switch (a) {
    case CongestionAlgorithm::kNewReno:
      return "newreno";
    case CongestionAlgorithm::kCubic:
      return "cubic";
  }
  return "unknown";
}

std::uint64_t initial_window(const CongestionConfig& config) noexcept {
  const std::uint64_t smss = std::max<std::uint32_t>(config.smss, 1);
  const std::uint64_t n = std::max<std::uint32_t>(config.initial_window_segments, 1);
  // RFC 6928 2: min(10*MSS, max(2*MSS, 14600)); 14600 = 10 * 1460.
  const std::uint64_t iw = std::min(n * smss, std::max(2 * smss, n * 1460));
  return std::max(iw, smss);
}

CongestionControl::CongestionControl(const CongestionConfig& config) noexcept
    : config_(sanitize(config)), smss_(config_.smss) {
  cwnd_ = std::min(initial_window(config_), config_.max_cwnd);
  // RFC 5681 3.1: the initial ssthresh SHOULD be arbitrarily high; here the
  // cap, so slow start hands over to congestion avoidance at the cap at most.
  ssthresh_ = config_.max_cwnd;
  hs_.active = config_.hystart;
}

std::uint64_t CongestionControl::clamp_cwnd(std::uint64_t w) noexcept {
  if (w > config_.max_cwnd) {
    ++stats_.cwnd_capped;
    return config_.max_cwnd;
  }
  return std::max<std::uint64_t>(w, smss_);
}

void CongestionControl::on_ack(const AckEvent& ev) noexcept {
  if (ev.rtt > Nanos::zero()) {
    // RFC 6298 2.3 weights (alpha = 1/8); only CUBIC's target uses it.
    srtt_ = srtt_ == Nanos::zero() ? ev.rtt : (srtt_ * 7 + ev.rtt) / 8;
  }
  if (in_recovery_) {
    if (recovery_style_ == RecoveryStyle::kNewReno) {
      // RFC 6582 3.2 step 5: partial ACK. Deflate by the new data acked;
      // add back one SMSS if at least one SMSS was acked, so roughly
      // cwnd - ssthresh segments stay in flight while holes are repaired.
      std::uint64_t w = cwnd_ > ev.bytes_acked ? cwnd_ - ev.bytes_acked : 0;
      if (ev.bytes_acked >= smss_) w += smss_;
      cwnd_ = clamp_cwnd(w);
    }
    // RFC 6675: cwnd stays at ssthresh; the sender's pipe does the work.
    return;
  }
  if (skip_next_growth_) {
    skip_next_growth_ = false;  // RFC 3168 6.1.2: the ECN-Echo ACK grows nothing
    return;
  }
  if (ev.app_limited || ev.bytes_acked == 0) return;

  std::uint64_t bytes = ev.bytes_acked;
  if (cwnd_ < ssthresh_) {
    // RFC 5681 3.1 eq. 2 with RFC 3465's limit L.
    std::uint64_t inc =
        std::min<std::uint64_t>(bytes, std::uint64_t{config_.slow_start_ack_limit_segments} * smss_);
    if (hs_.active) {
      inc = hystart_on_ack(ev, inc);
      if (cwnd_ >= ssthresh_) return;  // CSS just ended: this ACK's growth is spent
    }
    const std::uint64_t grown = cwnd_ + inc;
    if (grown <= ssthresh_) {
      cwnd_ = clamp_cwnd(grown);
      return;
    }
    // Crossing ssthresh: the growth past it counts as congestion avoidance.
    bytes = grown - ssthresh_;
    cwnd_ = clamp_cwnd(ssthresh_);
  }
  cwnd_ = clamp_cwnd(grow_congestion_avoidance(bytes, ev.now));
}

// RFC 9406 4.2, constants from 4.3.
std::uint64_t CongestionControl::hystart_on_ack(const AckEvent& ev, std::uint64_t increase) noexcept {
  constexpr Nanos kMinRttThresh = std::chrono::milliseconds(4);
  constexpr Nanos kMaxRttThresh = std::chrono::milliseconds(16);
  constexpr int kMinRttDivisor = 8;
  constexpr std::uint32_t kNRttSample = 8;
  constexpr std::uint64_t kCssGrowthDivisor = 4;
  constexpr std::uint32_t kCssRounds = 5;

  // A round ends when the data outstanding at its start is acknowledged.
  if (!hs_.round_started || ev.ack >= hs_.window_end) {
    if (hs_.round_started && hs_.in_css && ++hs_.css_round_count >= kCssRounds) {
      // CSS ran its course: congestion avoidance from here, no loss needed.
      ssthresh_ = std::max<std::uint64_t>(cwnd_, 2ull * smss_);
      hs_ = HyStart{};
      ++stats_.hystart_exits;
      return 0;
    }
    hs_.round_started = true;
    hs_.window_end = ev.snd_nxt;
    hs_.last_round_min_rtt = hs_.current_round_min_rtt;
    hs_.current_round_min_rtt = Nanos::max();
    hs_.rtt_sample_count = 0;
  }
  if (ev.rtt > Nanos::zero()) {
    hs_.current_round_min_rtt = std::min(hs_.current_round_min_rtt, ev.rtt);
    ++hs_.rtt_sample_count;
  }
  const bool enough = hs_.rtt_sample_count >= kNRttSample && hs_.current_round_min_rtt != Nanos::max();
  if (!hs_.in_css) {
    if (enough && hs_.last_round_min_rtt != Nanos::max()) {
      const Nanos thresh = std::clamp(hs_.last_round_min_rtt / kMinRttDivisor, kMinRttThresh, kMaxRttThresh);
      if (hs_.current_round_min_rtt >= hs_.last_round_min_rtt + thresh) {
        hs_.css_baseline_min_rtt = hs_.current_round_min_rtt;
        hs_.in_css = true;
        hs_.css_round_count = 0;
        ++stats_.hystart_css_entries;
      }
    }
  } else if (enough && hs_.current_round_min_rtt < hs_.css_baseline_min_rtt) {
    // The RTT rise was not lasting (RFC 9406 4.2): back to slow start.
    hs_.css_baseline_min_rtt = Nanos::max();
    hs_.in_css = false;
    ++stats_.hystart_css_resumed;
  }
  return hs_.in_css ? increase / kCssGrowthDivisor : increase;
}

void CongestionControl::on_dup_ack() noexcept {
  if (!in_recovery_ || recovery_style_ != RecoveryStyle::kNewReno) return;
  // RFC 6582 3.2 step 4, bounded: never more inflation than was in flight.
  if (inflation_ + smss_ > recovery_flight_) {
    ++stats_.dupack_inflation_capped;
    return;
  }
  inflation_ += smss_;
  cwnd_ = clamp_cwnd(cwnd_ + smss_);
}

void CongestionControl::reduce(Cause cause, std::uint64_t flight_size, Nanos now) noexcept {
  have_undo_ = true;
  undo_cwnd_ = cwnd_;
  undo_ssthresh_ = ssthresh_;
  save_undo_state();
  const std::uint64_t ss = on_congestion_event(cause, cwnd_, flight_size, now);
  // RFC 5681 eq. 4 and RFC 9438 4.6: never below two segments.
  ssthresh_ = std::clamp<std::uint64_t>(ss, 2ull * smss_, config_.max_cwnd);
  // RFC 5681 3.1: after a timeout, the loss window of one segment; after a
  // loss or ECN-Echo, ssthresh (recovery adds its own inflation).
  cwnd_ = cause == Cause::kRto ? std::uint64_t{smss_} : clamp_cwnd(ssthresh_);
  skip_next_growth_ = false;
  hs_ = HyStart{};  // any congestion event ends the initial slow start for good
}

bool CongestionControl::enter_recovery(const LossEvent& ev) noexcept {
  if (in_recovery_) return false;
  // SND.UNA is about SND.NXT - FlightSize (FlightSize < 2^31: windows are
  // at most 2^30 bytes, RFC 7323 2.3).
  const wire::SeqNum una =
      ev.snd_nxt - static_cast<std::uint32_t>(std::min<std::uint64_t>(ev.flight_size, 1u << 31));
  if (ecn_guard_ && ecn_guard_from_ecn_ &&
      wire::in_window(una, ecn_window_start_, distance(ecn_window_start_, ecn_recover_))) {
    // RFC 3168 6.1.2: the ECN-Echo already reduced for this window; the
    // loss is the same congestion. Recovery from the window it left.
    ++stats_.losses_after_ecn;
    cwnd_ = clamp_cwnd(std::min(cwnd_, ssthresh_));
    skip_next_growth_ = false;
  } else {
    reduce(Cause::kLoss, ev.flight_size, ev.now);
    ++stats_.loss_events;
  }
  in_recovery_ = true;
  recovery_style_ = ev.style;
  recovery_flight_ = ev.flight_size;
  inflation_ = 0;
  if (ev.style == RecoveryStyle::kNewReno) {
    // RFC 6582 3.2 step 3 (RFC 5681 3.2 step 4): cwnd = ssthresh + 3*SMSS for
    // the three segments the duplicate ACKs say have left the network.
    inflation_ = std::min<std::uint64_t>(3ull * smss_, recovery_flight_);
    cwnd_ = clamp_cwnd(cwnd_ + inflation_);
  }
  // A loss is the congestion signal for this window; an ECN-Echo for the
  // same data must not reduce again (RFC 3168 6.1.2).
  ecn_guard_ = true;
  ecn_guard_from_ecn_ = false;
  ecn_recover_ = ev.snd_nxt;
  ecn_window_start_ = una;
  return true;
}

void CongestionControl::on_recovery_exit(std::uint64_t flight_size, Nanos /*now*/) noexcept {
  if (!in_recovery_) return;
  in_recovery_ = false;
  if (recovery_style_ == RecoveryStyle::kNewReno) {
    // RFC 6582 3.2 step 3, option (1): avoids a burst when little is in flight.
    const std::uint64_t floor = std::max<std::uint64_t>(flight_size, smss_) + smss_;
    cwnd_ = clamp_cwnd(std::min(ssthresh_, floor));
  } else {
    cwnd_ = clamp_cwnd(ssthresh_);
  }
  inflation_ = 0;
}

void CongestionControl::on_rto(const RtoEvent& ev) noexcept {
  ++stats_.rto_events;
  // A timeout during fast recovery: ssthresh was already reduced for this
  // window (as Linux does); a repeated timeout keeps the first one's
  // ssthresh (RFC 5681 3.1). Either way cwnd collapses to the loss window.
  if (ev.first && !in_recovery_) {
    reduce(Cause::kRto, ev.flight_size, ev.now);
  } else {
    cwnd_ = smss_;
  }
  in_recovery_ = false;
  inflation_ = 0;
  skip_next_growth_ = false;
  hs_ = HyStart{};
  on_timeout();
}

bool CongestionControl::on_ecn_ce(const EcnEvent& ev) noexcept {
  if (in_recovery_ ||
      (ecn_guard_ && wire::in_window(ev.ack, ecn_window_start_, distance(ecn_window_start_, ecn_recover_)))) {
    ++stats_.ecn_ignored;
    return false;
  }
  reduce(Cause::kEcn, ev.flight_size, ev.now);
  ++stats_.ecn_reductions;
  ecn_guard_ = true;
  ecn_guard_from_ecn_ = true;
  ecn_window_start_ = ev.ack;
  ecn_recover_ = ev.snd_nxt;
  skip_next_growth_ = true;
  return true;
}

bool CongestionControl::undo_last_reduction() noexcept {
  if (!have_undo_) return false;
  have_undo_ = false;
  cwnd_ = clamp_cwnd(undo_cwnd_);
  ssthresh_ = undo_ssthresh_;
  in_recovery_ = false;
  inflation_ = 0;
  restore_undo_state();
  ++stats_.undos;
  return true;
}

void CongestionControl::set_smss(std::uint32_t smss) noexcept {
  smss = std::clamp<std::uint32_t>(smss, 1, kMaxSmss);
  if (smss == smss_) return;
  const std::uint32_t old = smss_;
  auto scale = [&](std::uint64_t v) { return v / old * smss + v % old * smss / old; };
  cwnd_ = scale(cwnd_);
  if (ssthresh_ < config_.max_cwnd) ssthresh_ = scale(ssthresh_);
  recovery_flight_ = scale(recovery_flight_);
  inflation_ = scale(inflation_);
  undo_cwnd_ = scale(undo_cwnd_);
  if (undo_ssthresh_ < config_.max_cwnd) undo_ssthresh_ = scale(undo_ssthresh_);
  smss_ = smss;
  config_.smss = smss;
  config_.max_cwnd = std::max<std::uint64_t>(config_.max_cwnd, 4ull * smss);
  ssthresh_ = std::clamp<std::uint64_t>(ssthresh_, 2ull * smss, config_.max_cwnd);
  cwnd_ = clamp_cwnd(cwnd_);
  rescale(old, smss);
}

Expected<std::unique_ptr<CongestionControl>, std::error_code> make_congestion_control(
    CongestionAlgorithm algorithm, const CongestionConfig& config) {
  if (!valid(config)) return unexpected(std::make_error_code(std::errc::invalid_argument));
  switch (algorithm) {
    case CongestionAlgorithm::kNewReno:
      return std::unique_ptr<CongestionControl>(std::make_unique<NewReno>(config));
    case CongestionAlgorithm::kCubic:
      return std::unique_ptr<CongestionControl>(std::make_unique<Cubic>(config));
  }
  return unexpected(std::make_error_code(std::errc::invalid_argument));
}

}  // namespace usnet::tcp
