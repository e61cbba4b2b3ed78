// The sender's SACK scoreboard and RFC 6675 loss recovery bookkeeping:
// which sent bytes the receiver holds above SND.UNA (RFC 2018), which
// unSACKed bytes are lost (IsLost), how much is still in the network
// (SetPipe) and what to send next (NextSeg); D-SACK detection (RFC 2883)
// for the caller's undo of spurious retransmissions.
//
// Conventions. All edges are half-open, as on the wire (SACK block [left,
// right)). RFC 6675 names points with inclusive octets; here:
//   high_ack()  = HighACK + 1 = SND.UNA: the first octet not cumulatively ACKed;
//   high_data() = HighData + 1 = SND.NXT as far as the scoreboard was told;
//   high_rxt()  = HighRxt + 1: every unSACKed octet below it has been
//                 retransmitted in this recovery (NextSeg only moves it up, so
//                 the RFC's single number is exact for what NextSeg hands out);
//   recovery_point() = RecoveryPoint + 1: recovery ends once SND.UNA reaches it.
//
// IsLost (RFC 6675 4). An unSACKed octet is lost when DupThresh or more
// discontiguous SACKed ranges lie above it, or more than (DupThresh - 1) *
// SMSS SACKed bytes do. "Discontiguous SACKed sequences" is read as ranges
// (gVisor and FreeBSD read it so too); the byte rule covers contiguous runs.
// A SACKed octet is never lost. Above a hole the count only shrinks, so the
// lost octets are exactly the unSACKed ones below one point (lost_end()),
// found in one walk over the ranges.
//
// SetPipe (RFC 6675 4) counts, over the unSACKed octets in [SND.UNA,
// SND.NXT), one for each octet not lost (the original still in flight) and
// one more for each octet below high_rxt() (its retransmission). The RFC's
// text walks every octet; SACKed octets have left the network and count
// nothing (that is what the RFC's prose says the rule is for). Computed per
// hole, not per octet.
//
// NextSeg (RFC 6675 4): rule 1 the lowest lost unSACKed octet at or above
// high_rxt() and below the highest SACKed octet; rule 2 new data if the
// caller can send some (it decides: window, unsent data); rule 3 the lowest
// unSACKed octet at or above high_rxt() below the highest SACKed octet;
// rule 4 (RescueRxt, if enabled) once per recovery the highest unSACKed
// octet. A retransmission runs from that octet up to SMSS, stopping at the
// next SACKed byte. next_seg() only answers; on_transmit() records what was
// sent (C.2: HighRxt, or RescueRxt for rule 4).
//
// D-SACK (RFC 2883 4, as Linux's tcp_check_dsack): the first block is a
// D-SACK if it starts below the segment's ACK, or lies inside the second
// block. It is reported in the update's result, never recorded as SACKed
// data below SND.UNA.
//
// Blocks are checked (RFC 2018 says a receiver can lie; ROBUSTNESS.md item
// 10): left >= right is malformed; a block ending above SND.NXT claims data
// never sent; a block ending at or below SND.UNA is old. Each is ignored and
// counted. A block straddling SND.UNA is clipped to it.
//
// Limits (ROBUSTNESS.md item 10, CVE-2019-11477/11478/11479: tiny MSS plus
// many SACK blocks). The scoreboard holds at most max_ranges disjoint ranges,
// preallocated; its memory does not depend on the MSS or on how much is in
// flight. When a new range would exceed the bound, the highest range is
// forgotten (or the new one, if it is the highest): forgetting SACK
// information is conservative (the data is sent again or waited for; RFC
// 2018 8 makes the sender keep the data until it is cumulatively ACKed
// anyway), while merging ranges across a gap would claim data SACKed that was
// not, which could lose data. Forgotten ranges are counted.
//
// Cost: update() O(blocks * n) with n <= max_ranges (a binary search and a
// shift per block, plus pruning below SND.UNA); is_lost(), lost_end(),
// set_pipe(), next_seg() O(n). update() counts its elementary steps (ranges
// compared, moved or merged) in the result, so tests can bound the work
// without timing it. No allocation after create().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "usnet/util/expected.hpp"
#include "usnet/wire/seq.hpp"
#include "usnet/wire/tcp.hpp"

namespace usnet::tcp {

using wire::SackBlock;
using wire::SeqNum;

struct SackScoreboardConfig {
  // Disjoint SACKed ranges kept; 1 .. SackScoreboard::kMaxRanges. Each hole
  // needs one, and a well-behaved receiver reports few (losses per window).
  std::uint32_t max_ranges = 64;
  std::uint32_t smss = 1460;          // sender MSS, > 0 (set_smss() when it changes)
  std::uint32_t dup_thresh = 3;       // RFC 6675 DupThresh, >= 1
  bool rescue_retransmission = true;  // RFC 6675 NextSeg rule 4
};

struct SackUpdateResult {
  std::optional<SackBlock> dsack;  // RFC 2883: the first block was a D-SACK
  std::uint32_t newly_sacked = 0;  // bytes newly marked SACKed (for DeliveredData)
  std::uint16_t blocks_recorded = 0;
  std::uint16_t blocks_malformed = 0;  // left >= right
  std::uint16_t blocks_old = 0;        // ending at or below SND.UNA (and not a D-SACK)
  std::uint16_t blocks_beyond = 0;     // ending above SND.NXT
  std::uint32_t ranges_forgotten = 0;  // ranges dropped at the max_ranges bound
  std::uint32_t work = 0;              // elementary steps taken (see the header)
};

struct SackCounters {
  std::uint64_t updates = 0;
  std::uint64_t blocks_recorded = 0;
  std::uint64_t blocks_malformed = 0;
  std::uint64_t blocks_old = 0;
  std::uint64_t blocks_beyond = 0;
  std::uint64_t dsacks = 0;
  std::uint64_t ranges_forgotten = 0;  // the max_ranges bound was hit
  std::uint64_t bytes_forgotten = 0;   // SACKed bytes forgotten with them
  std::uint64_t rescues = 0;           // rule 4 retransmissions recorded
};

enum class NextSegKind : std::uint8_t {
  None,            // nothing may be sent now
  Lost,            // rule 1: retransmit a lost segment
  NewData,         // rule 2: the caller sends up to SMSS of new data
  Unlost,          // rule 3: retransmit an unSACKed segment not yet deemed lost
  Rescue,          // rule 4: the rescue retransmission (HighRxt unchanged)
  FastRetransmit,  // RFC 6675 5 (4.3): the first retransmission of a recovery
};
const char* to_string(NextSegKind k) noexcept;

struct NextSeg {
  NextSegKind kind = NextSegKind::None;
  SeqNum seq;             // first octet (for NewData: high_data())
  std::uint32_t len = 0;  // <= SMSS; for NewData the caller decides (<= SMSS)
  friend bool operator==(const NextSeg&, const NextSeg&) = default;
};

class SackScoreboard {
 public:
  static constexpr std::uint32_t kMaxRanges = 4096;

  // EINVAL for max_ranges 0 or above kMaxRanges, smss 0, dup_thresh 0.
  // snd_una: the first unacknowledged octet (ISS + 1 after the handshake).
  static Expected<SackScoreboard, std::error_code> create(const SackScoreboardConfig& config, SeqNum snd_una);

  // Processes an acceptable ACK (the caller has run RFC 9293 / RFC 5961 ACK
  // checks): `ack` is its ACK field, snd_nxt the sender's SND.NXT, blocks its
  // SACK blocks in the order received (at most 4 fit an option; the work is
  // linear in their number). Moves SND.UNA up (never down), drops
  // state below it, records the valid blocks, ends a recovery whose point is
  // reached.
  SackUpdateResult update(SeqNum ack, SeqNum snd_nxt, std::span<const SackBlock> blocks) noexcept;
  // New data sent: SND.NXT moved to snd_nxt (HighData).
  void on_send(SeqNum snd_nxt) noexcept;

  // RFC 6675 4.
  bool is_sacked(SeqNum seq) const noexcept;
  bool is_lost(SeqNum seq) const noexcept;
  // Every unSACKed octet in [high_ack(), lost_end()) is lost; none above.
  SeqNum lost_end() const noexcept;
  std::uint32_t set_pipe() const noexcept;
  NextSeg next_seg(bool can_send_new_data) const noexcept;
  // Records a segment handed out by next_seg() or fast_retransmit() as sent.
  // A caller retransmitting on its own (after a timeout, from
  // next_unsacked()) reports it as Unlost, so that HighRxt and SetPipe see it.
  void on_transmit(const NextSeg& seg) noexcept;

  // RFC 6675 5 (4.1): RecoveryPoint = HighData; HighRxt = HighACK; a fresh
  // rescue. Then fast_retransmit() is the segment of (4.3).
  void enter_recovery() noexcept;
  // RFC 6675 5 (4.3): the segment at SND.UNA, up to SMSS, stopping at the
  // first SACKed byte (None if nothing is outstanding).
  NextSeg fast_retransmit() const noexcept;
  // RFC 6675 5.1: after a retransmission timeout RecoveryPoint = HighData
  // and recovery ends; recovery_allowed() is false until SND.UNA reaches it.
  // SACK information is kept (RFC 6675 5.1); clear() drops it if the caller
  // suspects reneging.
  void on_rto() noexcept;
  bool in_recovery() const noexcept { return in_recovery_; }
  bool recovery_allowed() const noexcept { return wire::seq_ge(high_ack_, recovery_point_); }

  // The first unSACKed range at or above `from` (clipped to [SND.UNA,
  // SND.NXT)), for a caller retransmitting after a timeout: {from, 0} if none.
  SackBlock next_unsacked(SeqNum from) const noexcept;

  void clear() noexcept;  // forget all SACK information
  void set_smss(std::uint32_t smss) noexcept;

  SeqNum high_ack() const noexcept { return high_ack_; }
  SeqNum high_data() const noexcept { return high_data_; }
  SeqNum high_rxt() const noexcept { return high_rxt_; }
  SeqNum recovery_point() const noexcept { return recovery_point_; }
  std::optional<SeqNum> rescue_rxt() const noexcept { return rescue_rxt_; }
  // One past the highest SACKed octet; high_ack() if nothing is SACKed.
  SeqNum high_sacked() const noexcept { return ranges_.empty() ? high_ack_ : ranges_.back().right; }
  std::uint64_t sacked_bytes() const noexcept { return sacked_bytes_; }
  std::size_t range_count() const noexcept { return ranges_.size(); }
  std::span<const SackBlock> ranges() const noexcept { return ranges_; }
  const SackScoreboardConfig& config() const noexcept { return config_; }
  const SackCounters& counters() const noexcept { return counters_; }

 private:
  SackScoreboard(const SackScoreboardConfig& config, SeqNum snd_una);

  std::uint32_t rel(SeqNum s) const noexcept { return distance(high_ack_, s); }
  void prune_below_ack(SackUpdateResult& r) noexcept;
  void insert_range(SeqNum left, SeqNum right, SackUpdateResult& r) noexcept;
  // The hole (unSACKed range within [SND.UNA, SND.NXT)) holding the first
  // unSACKed octet at or above `from`, and the index of the range above it.
  SackBlock hole_at_or_above(SeqNum from) const noexcept;

  SackScoreboardConfig config_;
  std::vector<SackBlock> ranges_;  // disjoint, not adjacent, sorted, within [high_ack_, high_data_]
  std::uint64_t sacked_bytes_ = 0;
  SeqNum high_ack_;
  SeqNum high_data_;
  SeqNum high_rxt_;
  SeqNum recovery_point_;
  std::optional<SeqNum> rescue_rxt_;
  bool in_recovery_ = false;
  SackCounters counters_;
};

}  // namespace usnet::tcp
