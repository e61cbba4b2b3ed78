#include "usnet/tcp/sack_scoreboard.hpp"

#include <algorithm>
#include <bit>

namespace usnet::tcp {

namespace {

std::uint32_t block_len(const SackBlock& b) noexcept { return distance(b.left, b.right); }

// Steps of a binary search over n elements, for the work count.
std::uint32_t search_steps(std::size_t n) noexcept {
  return static_cast<std::uint32_t>(std::bit_width(n)) + 1;
}

}  // namespace

const char* to_string(NextSegKind k) noexcept {
  switch (k) {
    case NextSegKind::None:
      return "none";
    case NextSegKind::Lost:
      return "lost";
    case NextSegKind::NewData:
      return "new-data";
    case NextSegKind::Unlost:
      return "unlost";
    case NextSegKind::Rescue:
      return "rescue";
    case NextSegKind::FastRetransmit:
      return "fast-retransmit";
  }
  return "?";
}

Expected<SackScoreboard, std::error_code> SackScoreboard::create(const SackScoreboardConfig& config,
                                                                 SeqNum snd_una) {
  if (config.max_ranges == 0 || config.max_ranges > kMaxRanges || config.smss == 0 ||
      config.dup_thresh == 0) {
    return unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  return SackScoreboard(config, snd_una);
}

SackScoreboard::SackScoreboard(const SackScoreboardConfig& config, SeqNum snd_una)
    : config_(config), high_ack_(snd_una), high_data_(snd_una), high_rxt_(snd_una), recovery_point_(snd_una) {
  // The only allocation: insert_range() never grows past max_ranges.
  ranges_.reserve(config.max_ranges);
}

void SackScoreboard::set_smss(std::uint32_t smss) noexcept {
  if (smss > 0) config_.smss = smss;
}

void SackScoreboard::clear() noexcept {
  ranges_.clear();
  sacked_bytes_ = 0;
}

void SackScoreboard::on_send(SeqNum snd_nxt) noexcept {
  if (wire::seq_gt(snd_nxt, high_data_)) high_data_ = snd_nxt;
}

void SackScoreboard::prune_below_ack(SackUpdateResult& r) noexcept {
  std::size_t k = 0;
  while (k < ranges_.size() && wire::seq_le(ranges_[k].right, high_ack_)) {
    sacked_bytes_ -= block_len(ranges_[k]);
    ++k;
  }
  r.work += static_cast<std::uint32_t>(k + (k > 0 ? ranges_.size() - k : 0));
  ranges_.erase(ranges_.begin(), ranges_.begin() + static_cast<std::ptrdiff_t>(k));
  // An ACK inside a SACKed range (the receiver kept only part of it).
  if (!ranges_.empty() && wire::seq_lt(ranges_.front().left, high_ack_)) {
    sacked_bytes_ -= distance(ranges_.front().left, high_ack_);
    ranges_.front().left = high_ack_;
  }
}

void SackScoreboard::insert_range(SeqNum left, SeqNum right, SackUpdateResult& r) noexcept {
  std::uint32_t a = rel(left);
  std::uint32_t b = rel(right);
  const std::size_t n = ranges_.size();
  // The first range touching or above [a, b): its right edge reaches a.
  const std::size_t i =
      static_cast<std::size_t>(std::partition_point(ranges_.begin(), ranges_.end(),
                                                    [&](const SackBlock& x) { return rel(x.right) < a; }) -
                               ranges_.begin());
  r.work += search_steps(n);
  std::size_t j = i;
  std::uint64_t old_bytes = 0;
  while (j < n && rel(ranges_[j].left) <= b) {
    a = std::min(a, rel(ranges_[j].left));
    b = std::max(b, rel(ranges_[j].right));
    old_bytes += block_len(ranges_[j]);
    ++j;
    ++r.work;
  }
  const SackBlock merged{high_ack_ + a, high_ack_ + b};
  if (j > i) {
    // Merging never adds a range, so never meets the bound.
    ranges_[i] = merged;
    ranges_.erase(ranges_.begin() + static_cast<std::ptrdiff_t>(i + 1),
                  ranges_.begin() + static_cast<std::ptrdiff_t>(j));
    r.work += static_cast<std::uint32_t>(n - j);
    const std::uint64_t added = (b - a) - old_bytes;
    sacked_bytes_ += added;
    r.newly_sacked += static_cast<std::uint32_t>(added);
    return;
  }
  if (n == config_.max_ranges) {
    // ROBUSTNESS.md item 10: forget the highest range, never merge across a
    // gap (that would claim unSACKed data SACKed).
    ++r.ranges_forgotten;
    ++counters_.ranges_forgotten;
    if (i == n) {
      counters_.bytes_forgotten += b - a;
      return;
    }
    counters_.bytes_forgotten += block_len(ranges_.back());
    sacked_bytes_ -= block_len(ranges_.back());
    ranges_.pop_back();
  }
  ranges_.insert(ranges_.begin() + static_cast<std::ptrdiff_t>(i), merged);  // capacity reserved
  r.work += static_cast<std::uint32_t>(ranges_.size() - i);
  sacked_bytes_ += b - a;
  r.newly_sacked += b - a;
}

SackUpdateResult SackScoreboard::update(SeqNum ack, SeqNum snd_nxt,
                                        std::span<const SackBlock> blocks) noexcept {
  SackUpdateResult r;
  ++counters_.updates;
  on_send(snd_nxt);
  if (wire::seq_gt(ack, high_ack_) && wire::seq_le(ack, high_data_)) {
    high_ack_ = ack;
    prune_below_ack(r);
  }
  if (wire::seq_lt(high_rxt_, high_ack_)) high_rxt_ = high_ack_;
  if (in_recovery_ && wire::seq_ge(high_ack_, recovery_point_)) in_recovery_ = false;

  const auto well_formed = [](const SackBlock& b) { return signed_distance(b.left, b.right) > 0; };
  // RFC 2883 4 / Linux tcp_check_dsack: the first block is a D-SACK if it
  // starts below this ACK, or lies within the second block.
  if (!blocks.empty() && well_formed(blocks[0]) && wire::seq_le(blocks[0].right, high_data_)) {
    const SackBlock& b0 = blocks[0];
    bool dsack = wire::seq_lt(b0.left, ack);
    if (!dsack && blocks.size() > 1 && well_formed(blocks[1])) {
      dsack = wire::seq_le(blocks[1].left, b0.left) && wire::seq_le(b0.right, blocks[1].right);
    }
    if (dsack) {
      r.dsack = b0;
      ++counters_.dsacks;
    }
  }

  const std::uint32_t in_flight = distance(high_ack_, high_data_);
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    const SackBlock& b = blocks[k];
    ++r.work;
    if (!well_formed(b)) {
      ++r.blocks_malformed;
      continue;
    }
    const std::int32_t right = signed_distance(high_ack_, b.right);
    if (right <= 0) {
      if (!(k == 0 && r.dsack)) ++r.blocks_old;
      continue;
    }
    if (static_cast<std::uint32_t>(right) > in_flight) {
      ++r.blocks_beyond;  // claims data never sent
      continue;
    }
    const SeqNum left = signed_distance(high_ack_, b.left) < 0 ? high_ack_ : b.left;
    insert_range(left, b.right, r);
    ++r.blocks_recorded;
  }
  counters_.blocks_recorded += r.blocks_recorded;
  counters_.blocks_malformed += r.blocks_malformed;
  counters_.blocks_old += r.blocks_old;
  counters_.blocks_beyond += r.blocks_beyond;
  return r;
}

bool SackScoreboard::is_sacked(SeqNum seq) const noexcept {
  if (!wire::seq_ge(seq, high_ack_)) return false;
  const std::uint32_t s = rel(seq);
  const auto it = std::partition_point(ranges_.begin(), ranges_.end(),
                                       [&](const SackBlock& x) { return rel(x.right) <= s; });
  return it != ranges_.end() && rel(it->left) <= s;
}

SeqNum SackScoreboard::lost_end() const noexcept {
  // RFC 6675 4 IsLost: walk down from the top; the first range at which
  // DupThresh ranges or more than (DupThresh - 1) * SMSS bytes lie at or
  // above it marks the highest lost hole (the one just below it).
  const std::uint64_t byte_limit = std::uint64_t{config_.dup_thresh - 1} * config_.smss;
  std::uint64_t bytes = 0;
  std::uint32_t count = 0;
  for (std::size_t k = ranges_.size(); k-- > 0;) {
    ++count;
    bytes += block_len(ranges_[k]);
    if (count >= config_.dup_thresh || bytes > byte_limit) return ranges_[k].left;
  }
  return high_ack_;
}

bool SackScoreboard::is_lost(SeqNum seq) const noexcept {
  if (!wire::seq_ge(seq, high_ack_) || !wire::seq_lt(seq, high_data_) || is_sacked(seq)) return false;
  return rel(seq) < rel(lost_end());
}

std::uint32_t SackScoreboard::set_pipe() const noexcept {
  const std::uint32_t lost = rel(lost_end());
  const std::uint32_t rxt = rel(high_rxt_);
  std::uint64_t pipe = 0;
  const auto add_hole = [&](std::uint32_t h0, std::uint32_t h1) {
    if (h1 <= h0) return;
    // (a) not lost: the original is still in the network.
    const std::uint32_t not_lost_from = std::max(h0, lost);
    if (h1 > not_lost_from) pipe += h1 - not_lost_from;
    // (b) below HighRxt: its retransmission is.
    const std::uint32_t rxt_to = std::min(h1, rxt);
    if (rxt_to > h0) pipe += rxt_to - h0;
  };
  std::uint32_t pos = 0;
  for (const SackBlock& b : ranges_) {
    add_hole(pos, rel(b.left));
    pos = rel(b.right);
  }
  add_hole(pos, rel(high_data_));
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(pipe, UINT32_MAX));
}

SackBlock SackScoreboard::hole_at_or_above(SeqNum from) const noexcept {
  std::uint32_t s = wire::seq_lt(from, high_ack_) ? 0 : rel(from);
  const std::uint32_t end = rel(high_data_);
  if (s >= end) return {high_data_, high_data_};
  auto it = std::partition_point(ranges_.begin(), ranges_.end(),
                                 [&](const SackBlock& x) { return rel(x.right) <= s; });
  if (it != ranges_.end() && rel(it->left) <= s) {
    s = rel(it->right);  // inside a SACKed range: the hole starts after it
    ++it;
  }
  const std::uint32_t hole_end = it != ranges_.end() ? rel(it->left) : end;
  if (s >= hole_end) return {high_ack_ + s, high_ack_ + s};
  return {high_ack_ + s, high_ack_ + hole_end};
}

SackBlock SackScoreboard::next_unsacked(SeqNum from) const noexcept { return hole_at_or_above(from); }

NextSeg SackScoreboard::next_seg(bool can_send_new_data) const noexcept {
  const SackBlock hole = hole_at_or_above(high_rxt_);
  const std::uint32_t hole_len = block_len(hole);
  const auto segment = [&](NextSegKind kind) {
    return NextSeg{kind, hole.left, std::min(config_.smss, hole_len)};
  };
  // Rule 1: lost (lost_end() never exceeds the highest SACKed octet).
  if (hole_len > 0 && rel(hole.left) < rel(lost_end())) return segment(NextSegKind::Lost);
  // Rule 2: new data, if the caller has some and the window allows.
  if (can_send_new_data) return NextSeg{NextSegKind::NewData, high_data_, config_.smss};
  // Rule 3: unSACKed below the highest SACKed octet, not yet deemed lost.
  if (hole_len > 0 && rel(hole.left) < rel(high_sacked())) return segment(NextSegKind::Unlost);
  // Rule 4: one rescue retransmission of the highest unSACKed octet per
  // recovery.
  if (config_.rescue_retransmission && in_recovery_ &&
      (!rescue_rxt_ || wire::seq_gt(high_ack_, *rescue_rxt_))) {
    std::uint32_t h0 = 0;
    std::uint32_t h1 = rel(high_data_);
    if (!ranges_.empty()) {
      const SackBlock& top = ranges_.back();
      if (rel(top.right) < h1) {
        h0 = rel(top.right);
      } else {
        h1 = rel(top.left);
        h0 = ranges_.size() > 1 ? rel(ranges_[ranges_.size() - 2].right) : 0;
      }
    }
    if (h1 > h0) {
      const std::uint32_t len = std::min(config_.smss, h1 - h0);
      return NextSeg{NextSegKind::Rescue, high_ack_ + (h1 - len), len};
    }
  }
  return {};
}

void SackScoreboard::on_transmit(const NextSeg& seg) noexcept {
  const SeqNum end = seg.seq + seg.len;
  switch (seg.kind) {
    case NextSegKind::None:
      break;
    case NextSegKind::NewData:
      on_send(end);
      break;
    case NextSegKind::FastRetransmit:
      // RFC 6675 5 (4.3): HighRxt and RescueRxt both to the segment's end,
      // so that the rescue waits until this retransmission is ACKed.
      rescue_rxt_ = end;
      [[fallthrough]];
    case NextSegKind::Lost:
    case NextSegKind::Unlost:
      // RFC 6675 5 (C.2).
      if (wire::seq_gt(end, high_rxt_)) high_rxt_ = end;
      break;
    case NextSegKind::Rescue:
      // RFC 6675 4 rule 4: RescueRxt = RecoveryPoint; HighRxt unchanged.
      rescue_rxt_ = recovery_point_;
      ++counters_.rescues;
      break;
  }
}

void SackScoreboard::enter_recovery() noexcept {
  recovery_point_ = high_data_;
  high_rxt_ = high_ack_;
  rescue_rxt_.reset();
  in_recovery_ = true;
}

NextSeg SackScoreboard::fast_retransmit() const noexcept {
  const SackBlock hole = hole_at_or_above(high_ack_);
  const std::uint32_t len = block_len(hole);
  if (len == 0) return {};
  return NextSeg{NextSegKind::FastRetransmit, hole.left, std::min(config_.smss, len)};
}

void SackScoreboard::on_rto() noexcept {
  recovery_point_ = high_data_;
  in_recovery_ = false;
  high_rxt_ = high_ack_;
  rescue_rxt_.reset();
}

}  // namespace usnet::tcp
