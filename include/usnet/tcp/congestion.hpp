// TCP congestion control behind one small interface (issue 4): NewReno
// (RFC 5681, RFC 6582) and CUBIC (RFC 9438, the default).
//
// What. A CongestionControl owns the congestion window (cwnd) and the slow
// start threshold (ssthresh) of one connection, in bytes. The connection
// drives it with events (an ACK advanced SND.UNA, a loss was detected, the
// retransmission timer fired, an ECN-Echo arrived) and reads cwnd() before
// sending: it may have at most cwnd() bytes in flight (RFC 5681 2; with SACK,
// RFC 6675's pipe <= cwnd). Time is passed in; nothing here reads a clock,
// allocates after construction, or does I/O.
//
// Split of duties. Deciding *that* a loss happened (three duplicate ACKs,
// RFC 6675's IsLost, RACK), the RFC 6582 `recover` point (whether an ACK is
// partial or full, and not re-entering recovery for losses of the same
// window) and which segment to retransmit belong to the connection. This
// object decides *how much* may be sent: the window reductions and growth,
// and the fast-recovery window arithmetic. The slow start, fast recovery,
// RTO and ECN code is shared (class CongestionControl); an algorithm
// supplies only its multiplicative decrease and its congestion-avoidance
// growth (two private hooks), as Linux's tcp_congestion_ops does.
//
// How a connection drives it (per event, in this order):
//   - ACK that advances SND.UNA outside recovery, or a partial ACK inside
//     it: on_ack({bytes newly acked, RTT sample, now, app_limited,
//     SEG.ACK, SND.NXT}).
//     If the ACK carries ECE, call on_ecn_ce() first (see there).
//   - Duplicate ACK during NewReno (non-SACK) recovery: on_dup_ack().
//   - Loss detected (3rd duplicate ACK or RFC 6675 loss) when not already in
//     recovery: enter_recovery({FlightSize, now, style, SND.NXT}); then
//     retransmit.
//   - Full ACK (covers RFC 6582 `recover`): on_recovery_exit(FlightSize after
//     the ACK, now) instead of on_ack: that ACK does not grow the window
//     (RFC 6582 3.2 step 3).
//   - Retransmission timeout: on_rto({FlightSize, now, first}).
//   - Loss or timeout found spurious (D-SACK, Eifel, F-RTO):
//     undo_last_reduction() puts back the window from before it.
//
// Units. Bytes throughout (SMSS bytes = one segment), uint64, saturating:
// cwnd always lies in [SMSS, max_cwnd] and a peer cannot push it past
// max_cwnd however it ACKs (capped growth is counted).
//
// Byte counting. Growth counts bytes acknowledged, not ACKs (RFC 3465,
// allowed by RFC 5681 3.1), so a receiver splitting ACKs ("ACK division")
// gains nothing. Slow start adds min(bytes acked, L * SMSS) per ACK with
// L = slow_start_ack_limit_segments (RFC 3465: L = 2 makes slow start
// double per RTT under delayed ACKs; set 1 for RFC 5681's min(N, SMSS)).
// Duplicate-ACK window inflation in NewReno recovery is capped at the
// FlightSize when recovery began: each genuine duplicate ACK stands for a
// segment that left the network, so a peer forging duplicate ACKs (ACK
// spoofing) inflates the window at most by what was really in flight.
//
// HyStart++ (RFC 9406, on by default, both algorithms): during the first
// slow start, a rise of the per-round minimum RTT by max(4 ms, min(RTT/8,
// 16 ms)) (8 samples at least) moves to Conservative Slow Start (growth / 4);
// if the RTT falls back below the baseline, slow start resumes; after 5 CSS
// rounds, ssthresh = cwnd and congestion avoidance begins. It needs the
// ACK's SEG.ACK and SND.NXT in AckEvent to find round ends (RFC 9406 4.2);
// a caller leaving them zero gets plain RFC 5681 slow start. Slow starts
// after a timeout or loss are standard (RFC 9406 4.3: HyStart++ SHOULD be
// used only for the initial slow start).
//
// Not implemented: congestion window validation after idle or
// application-limited periods (RFC 7661) beyond not growing while
// app_limited; PRR (RFC 6937). Limits: one object per connection; the
// factory allocates once, when the connection is created.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <system_error>

#include "usnet/util/expected.hpp"
#include "usnet/wire/seq.hpp"

namespace usnet::tcp {

using Nanos = std::chrono::nanoseconds;

enum class CongestionAlgorithm : std::uint8_t { kNewReno, kCubic };
// Issue 4: CUBIC is the default.
inline constexpr CongestionAlgorithm kDefaultCongestionAlgorithm = CongestionAlgorithm::kCubic;
std::string_view to_string(CongestionAlgorithm a) noexcept;

struct CongestionConfig {
  std::uint32_t smss = 1460;                        // sender maximum segment size, bytes (1..65535)
  std::uint32_t initial_window_segments = 10;       // RFC 6928 (IW10); see initial_window()
  std::uint32_t slow_start_ack_limit_segments = 2;  // RFC 3465 L (1 or 2)
  std::uint64_t max_cwnd = std::uint64_t{1} << 30;  // bytes; at most 2^40
  // CUBIC (RFC 9438). C in units of 1/1000 segment per second^3 (RFC 9438
  // 5: C = 0.4); beta_cubic is the RFC's 0.7, fixed.
  std::uint32_t cubic_c_milli = 400;   // 1..10000
  bool cubic_fast_convergence = true;  // RFC 9438 4.7
  bool cubic_reno_friendly = true;     // RFC 9438 4.3
  bool hystart = true;                 // HyStart++ (RFC 9406) in the initial slow start
};

// RFC 6928 2: IW = min(10*SMSS, max(2*SMSS, 14600)), generalised to N
// segments as min(N*SMSS, max(2*SMSS, N*1460)); at least one SMSS.
std::uint64_t initial_window(const CongestionConfig& config) noexcept;

// How the connection recovers from this loss, which decides the window
// arithmetic during recovery.
enum class RecoveryStyle : std::uint8_t {
  // RFC 6582 (NewReno, no SACK): cwnd = ssthresh + 3*SMSS, +SMSS per further
  // duplicate ACK, deflated by partial ACKs.
  kNewReno,
  // RFC 6675 (SACK): cwnd = ssthresh; the sender limits pipe, not cwnd
  // inflation, so duplicate ACKs and partial ACKs leave cwnd alone.
  kSack,
};

struct AckEvent {
  std::uint64_t bytes_acked = 0;  // bytes newly acknowledged by the cumulative ACK (SND.UNA advance)
  Nanos rtt{0};                   // RTT sample from this ACK (Karn/timestamps), 0 if none
  Nanos now{0};
  // The sender had less than cwnd in flight and nothing more to send before
  // this ACK (application-limited): the window does not grow, so an idle
  // connection cannot build up a window it never used (RFC 9438 4.6's
  // condition for computing ssthresh from cwnd; RFC 7661's intent).
  bool app_limited = false;
  // For HyStart++ round tracking only: SEG.ACK of this ACK and SND.NXT now.
  wire::SeqNum ack{};
  wire::SeqNum snd_nxt{};
};

struct LossEvent {
  std::uint64_t flight_size = 0;  // FlightSize when the loss was detected (RFC 5681 eq. 4)
  Nanos now{0};
  RecoveryStyle style = RecoveryStyle::kSack;
  // SND.NXT at detection: ECN-Echo for data sent before it is the same
  // congestion event and is ignored (RFC 3168 6.1.2).
  wire::SeqNum snd_nxt{};
};

struct RtoEvent {
  std::uint64_t flight_size = 0;  // FlightSize when the timer fired
  Nanos now{0};
  // False for a repeated timeout of the same segment (backoff): RFC 5681 eq.
  // 4 then leaves ssthresh as the first timeout set it.
  bool first = true;
};

struct EcnEvent {
  wire::SeqNum ack{};      // the ACK's acknowledgment number (SEG.ACK)
  wire::SeqNum snd_nxt{};  // SND.NXT when the ECN-Echo arrived
  std::uint64_t flight_size = 0;
  Nanos now{0};
};

struct CongestionStats {
  std::uint64_t loss_events = 0;              // enter_recovery calls that reduced the window
  std::uint64_t rto_events = 0;               // on_rto calls
  std::uint64_t ecn_reductions = 0;           // ECN-Echo that reduced the window
  std::uint64_t ecn_ignored = 0;              // ECN-Echo within a window already reduced, or in recovery
  std::uint64_t losses_after_ecn = 0;         // recoveries an ECN reduction had paid for (no second one)
  std::uint64_t undos = 0;                    // undo_last_reduction calls that restored state
  std::uint64_t cwnd_capped = 0;              // growth stopped at max_cwnd
  std::uint64_t dupack_inflation_capped = 0;  // duplicate ACKs beyond FlightSize, not inflating cwnd
  std::uint64_t hystart_css_entries = 0;      // RFC 9406: RTT rise seen, Conservative Slow Start entered
  std::uint64_t hystart_css_resumed = 0;      // RTT fell back: slow start resumed (spurious CSS entry)
  std::uint64_t hystart_exits = 0;            // CSS completed: congestion avoidance without a loss
};

class CongestionControl {
 public:
  virtual ~CongestionControl() = default;
  CongestionControl(const CongestionControl&) = delete;
  CongestionControl& operator=(const CongestionControl&) = delete;

  virtual CongestionAlgorithm algorithm() const noexcept = 0;

  // An ACK advanced SND.UNA by ev.bytes_acked (outside recovery: growth,
  // slow start below ssthresh, congestion avoidance above; in NewReno
  // recovery, a partial ACK: RFC 6582 3.2 step 5 deflation; in SACK recovery:
  // no change). Also feeds the RTT sample to the smoothed RTT CUBIC uses.
  void on_ack(const AckEvent& ev) noexcept;

  // A duplicate ACK during NewReno recovery: cwnd += SMSS (RFC 6582 3.2
  // step 4), at most FlightSize-at-loss in total. Ignored otherwise.
  void on_dup_ack() noexcept;

  // Fast retransmit / loss detected: the algorithm's multiplicative decrease
  // (NewReno: ssthresh = max(FlightSize/2, 2*SMSS), RFC 5681 eq. 4; CUBIC:
  // ssthresh = 0.7*cwnd, W_max with fast convergence, RFC 9438 4.6-4.7),
  // then cwnd per ev.style. Ignored (returns false) when already in
  // recovery: the connection's `recover` check should prevent that. A loss
  // of data sent before an ECN reduction (SND.UNA = ev.snd_nxt -
  // FlightSize inside that reduction's window) enters recovery without a
  // second decrease: RFC 3168 6.1.2, ssthresh "SHOULD NOT" be decreased
  // again within the round trip (as Linux, entering Recovery from CWR).
  bool enter_recovery(const LossEvent& ev) noexcept;

  // The full ACK ending recovery: RFC 6582 3.2 step 3 option 1,
  // cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS) for NewReno style;
  // cwnd = ssthresh for SACK style.
  void on_recovery_exit(std::uint64_t flight_size, Nanos now) noexcept;

  // Retransmission timeout: ssthresh from the algorithm (first timeout
  // only), cwnd = loss window = 1 SMSS (RFC 5681 3.1), recovery abandoned.
  void on_rto(const RtoEvent& ev) noexcept;

  // ECN-Echo (RFC 3168 6.1.2): reduce as for a loss (without retransmitting),
  // at most once per window of data: after a reduction, ECN-Echo for ACKs
  // from SND.UNA up to the SND.NXT of that reduction is ignored, as is ECN-Echo during
  // loss recovery. Returns true if the window was reduced: the connection
  // then sets CWR on its next new segment. Call it before on_ack for the
  // same ACK; that ACK then grows nothing (RFC 3168: "SHOULD NOT increase
  // the congestion window in response to" it).
  bool on_ecn_ce(const EcnEvent& ev) noexcept;

  // The last loss, timeout or ECN reduction turned out spurious: restore
  // cwnd, ssthresh and the algorithm's state from just before it (RFC 9438
  // 4.9). Returns false if there is nothing to undo (one level only).
  bool undo_last_reduction() noexcept;

  // Path MTU or MSS changed: windows keep their size in segments (cwnd,
  // ssthresh and the algorithm's state rescale by new/old).
  void set_smss(std::uint32_t smss) noexcept;

  std::uint64_t cwnd() const noexcept { return cwnd_; }
  std::uint64_t ssthresh() const noexcept { return ssthresh_; }
  std::uint32_t smss() const noexcept { return smss_; }
  bool in_slow_start() const noexcept { return cwnd_ < ssthresh_; }
  // HyStart++'s Conservative Slow Start (RFC 9406 4.2); in_slow_start() too.
  bool in_css() const noexcept { return hs_.in_css; }
  bool in_recovery() const noexcept { return in_recovery_; }
  Nanos srtt() const noexcept { return srtt_; }
  const CongestionStats& stats() const noexcept { return stats_; }
  const CongestionConfig& config() const noexcept { return config_; }

 protected:
  enum class Cause : std::uint8_t { kLoss, kEcn, kRto };

  explicit CongestionControl(const CongestionConfig& config) noexcept;

  // Clamp to [SMSS, max_cwnd], counting hits of the cap.
  std::uint64_t clamp_cwnd(std::uint64_t w) noexcept;
  std::uint64_t max_cwnd() const noexcept { return config_.max_cwnd; }

 private:
  // New ssthresh for a congestion event (and the algorithm's own bookkeeping:
  // CUBIC's W_max, epoch). `cwnd` is the window before the reduction.
  virtual std::uint64_t on_congestion_event(Cause cause, std::uint64_t cwnd, std::uint64_t flight_size,
                                            Nanos now) noexcept = 0;
  // Congestion avoidance growth for `bytes` acknowledged above ssthresh;
  // returns the new cwnd (the base clamps it).
  virtual std::uint64_t grow_congestion_avoidance(std::uint64_t bytes, Nanos now) noexcept = 0;
  // Window restored after undo, or rescaled for a new SMSS.
  virtual void save_undo_state() noexcept = 0;
  virtual void restore_undo_state() noexcept = 0;
  virtual void rescale(std::uint32_t old_smss, std::uint32_t new_smss) noexcept = 0;
  // Every timeout, including repeats that do not reduce ssthresh again.
  virtual void on_timeout() noexcept {}

  void reduce(Cause cause, std::uint64_t flight_size, Nanos now) noexcept;
  // RFC 9406 per-ACK bookkeeping; returns the slow start increase to apply.
  std::uint64_t hystart_on_ack(const AckEvent& ev, std::uint64_t increase) noexcept;

  struct HyStart {
    bool active = false;  // initial slow start, not yet ended
    bool round_started = false;
    bool in_css = false;
    wire::SeqNum window_end{};
    Nanos last_round_min_rtt = Nanos::max();
    Nanos current_round_min_rtt = Nanos::max();
    Nanos css_baseline_min_rtt = Nanos::max();
    std::uint32_t rtt_sample_count = 0;
    std::uint32_t css_round_count = 0;
  };

  CongestionConfig config_;
  std::uint64_t cwnd_ = 0;
  std::uint64_t ssthresh_ = 0;
  std::uint32_t smss_ = 0;
  Nanos srtt_{0};
  bool in_recovery_ = false;
  RecoveryStyle recovery_style_ = RecoveryStyle::kSack;
  std::uint64_t recovery_flight_ = 0;  // FlightSize when recovery began: inflation budget
  std::uint64_t inflation_ = 0;        // bytes added by duplicate ACKs in this recovery
                                 // The window of data an ECN or loss reduction already answered: ECN-Echo
  // with SEG.ACK in [ecn_window_start_, ecn_recover_) is ignored. A range,
  // not "SEG.ACK < ecn_recover_", so that a guard left standing while 2^31
  // more bytes are acknowledged cannot swallow later signals (modular
  // comparison would call those ACKs "before" ecn_recover_ again).
  bool ecn_guard_ = false;
  bool ecn_guard_from_ecn_ = false;  // set by an ECN reduction (not by a loss)
  wire::SeqNum ecn_window_start_{};
  wire::SeqNum ecn_recover_{};
  bool skip_next_growth_ = false;  // the ACK that carried the ECN-Echo
  bool have_undo_ = false;
  std::uint64_t undo_cwnd_ = 0;
  std::uint64_t undo_ssthresh_ = 0;
  HyStart hs_;
  CongestionStats stats_;
};

// RFC 5681 + RFC 6582. Congestion avoidance adds one SMSS per cwnd bytes
// acknowledged (RFC 5681 3.1, byte counting): one segment per RTT.
class NewReno final : public CongestionControl {
 public:
  explicit NewReno(const CongestionConfig& config) noexcept : CongestionControl(config) {}
  CongestionAlgorithm algorithm() const noexcept override { return CongestionAlgorithm::kNewReno; }

 private:
  std::uint64_t on_congestion_event(Cause cause, std::uint64_t cwnd, std::uint64_t flight_size,
                                    Nanos now) noexcept override;
  std::uint64_t grow_congestion_avoidance(std::uint64_t bytes, Nanos now) noexcept override;
  void save_undo_state() noexcept override {}
  void restore_undo_state() noexcept override { bytes_acked_ = 0; }
  void rescale(std::uint32_t, std::uint32_t) noexcept override { bytes_acked_ = 0; }

  std::uint64_t bytes_acked_ = 0;  // acknowledged bytes toward the next +SMSS
};

// RFC 9438. Window in congestion avoidance:
//   W_cubic(t) = C*(t - K)^3 + W_max        (segments, t and K in seconds)
//   K = cbrt((W_max - cwnd_epoch) / C)      (RFC 9438 eq. 2)
// where t runs from the start of the congestion-avoidance epoch. Per ACK of
// N bytes, cwnd grows by (target - cwnd) * N / cwnd, target = W_cubic(t +
// SRTT) clamped to [cwnd, 1.5*cwnd] (concave below W_max, convex above);
// in the Reno-friendly region (W_cubic(t) < W_est, W_est growing by
// alpha_cubic = 3(1-beta)/(1+beta) = 9/17 segment per RTT, 1 once past
// cwnd_prior) cwnd follows W_est. beta_cubic = 0.7.
//
// Integer arithmetic only: the cube of (t-K) in microseconds is taken in
// 128 bits, K comes from an exact integer cube root; no floating point on
// the data path. Fractions of a byte of growth carry over between ACKs.
// After a timeout, or when the epoch starts above W_max (no loss yet), K = 0
// and W_max = cwnd_epoch (RFC 9438 4.8, 4.10).
class Cubic final : public CongestionControl {
 public:
  explicit Cubic(const CongestionConfig& config) noexcept : CongestionControl(config) {}
  CongestionAlgorithm algorithm() const noexcept override { return CongestionAlgorithm::kCubic; }

  // State, for tests and diagnostics. k() and w_max() describe the current
  // epoch once it has started (first ACK in congestion avoidance after an
  // event).
  std::uint64_t w_max() const noexcept { return w_max_; }
  std::uint64_t cwnd_prior() const noexcept { return cwnd_prior_; }
  std::uint64_t w_est() const noexcept { return w_est_; }
  Nanos k() const noexcept { return k_; }
  bool epoch_started() const noexcept { return epoch_started_; }
  // W_cubic(t) in bytes for the current epoch, t from the epoch start.
  std::uint64_t w_cubic(Nanos t) const noexcept;

 private:
  std::uint64_t on_congestion_event(Cause cause, std::uint64_t cwnd, std::uint64_t flight_size,
                                    Nanos now) noexcept override;
  std::uint64_t grow_congestion_avoidance(std::uint64_t bytes, Nanos now) noexcept override;
  void save_undo_state() noexcept override;
  void restore_undo_state() noexcept override;
  void rescale(std::uint32_t old_smss, std::uint32_t new_smss) noexcept override;
  void on_timeout() noexcept override;
  void start_epoch(Nanos now) noexcept;

  std::uint64_t w_max_ = 0;       // window before the last reduction (0: none yet)
  std::uint64_t cwnd_prior_ = 0;  // cwnd before the last reduction (for alpha_cubic)
  bool after_rto_ = false;        // next epoch: K = 0, W_max = cwnd_epoch (RFC 9438 4.8)
  bool epoch_started_ = false;
  Nanos epoch_start_{0};
  Nanos k_{0};
  std::uint64_t w_est_ = 0;
  std::uint64_t w_est_frac_ = 0;  // remainder of W_est growth, in 1/(17*cwnd) bytes
  std::uint64_t cwnd_frac_ = 0;   // remainder of cwnd growth, in 1/cwnd bytes
  struct Saved {
    std::uint64_t w_max = 0, cwnd_prior = 0;
    bool after_rto = false;
  } undo_;
};

// The factory. std::errc::invalid_argument for a config outside the ranges
// documented on CongestionConfig.
Expected<std::unique_ptr<CongestionControl>, std::error_code> make_congestion_control(
    CongestionAlgorithm algorithm, const CongestionConfig& config = {});

}  // namespace usnet::tcp
