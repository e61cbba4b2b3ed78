#include "usnet/tcp/ooo_queue.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <utility>

namespace usnet::tcp {

const char* to_string(OooResult r) noexcept {
  switch (r) {
    case OooResult::Queued:
      return "queued";
    case OooResult::Duplicate:
      return "duplicate";
    case OooResult::NoEntries:
      return "no-entries";
    case OooResult::NoBytes:
      return "no-bytes";
    case OooResult::BeyondWindow:
      return "beyond-window";
    case OooResult::Invalid:
      return "invalid";
    case OooResult::BeyondFin:
      return "beyond-fin";
  }
  return "?";
}

Expected<OooQueue, std::error_code> OooQueue::create(const OooConfig& config, mem::PacketPool& pool,
                                                     mem::OwnerId owner) {
  if (config.max_entries == 0 || config.max_entries > kMaxEntries || config.max_bytes == 0 ||
      !pool.has_owner(owner)) {
    return unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  return OooQueue(config, pool, owner);
}

OooQueue::OooQueue(const OooConfig& config, mem::PacketPool& pool, mem::OwnerId owner)
    : config_(config), pool_(&pool), owner_(owner) {
  // The only allocation: insert() never grows past max_entries.
  entries_.reserve(config.max_entries);
}

OooQueue::OooQueue(OooQueue&& other) noexcept
    : config_(other.config_),
      pool_(std::exchange(other.pool_, nullptr)),
      owner_(other.owner_),
      entries_(std::move(other.entries_)),
      bytes_(std::exchange(other.bytes_, 0)),
      stamp_(other.stamp_),
      dsack_(other.dsack_),
      fin_(std::exchange(other.fin_, std::nullopt)),
      counters_(other.counters_) {
  other.entries_.clear();
}

OooQueue& OooQueue::operator=(OooQueue&& other) noexcept {
  if (this != &other) {
    clear();
    config_ = other.config_;
    pool_ = std::exchange(other.pool_, nullptr);
    owner_ = other.owner_;
    entries_ = std::move(other.entries_);
    other.entries_.clear();
    bytes_ = std::exchange(other.bytes_, 0);
    stamp_ = other.stamp_;
    dsack_ = other.dsack_;
    fin_ = std::exchange(other.fin_, std::nullopt);
    counters_ = other.counters_;
  }
  return *this;
}

OooQueue::~OooQueue() { clear(); }

void OooQueue::free_buffer(mem::BufIndex b) noexcept {
  // A refusal here means the caller handed us a buffer its owner does not
  // hold; the pool counts it (invalid_requests) and there is nothing to undo.
  (void)pool_->free(owner_, b);
}

void OooQueue::clear() noexcept {
  if (pool_ != nullptr) {
    for (const Entry& e : entries_) free_buffer(e.seg.buffer);
  }
  entries_.clear();
  bytes_ = 0;
  dsack_.reset();
  fin_.reset();
}

void OooQueue::prune_below(SeqNum rcv_nxt) noexcept {
  std::size_t k = 0;
  while (k < entries_.size() && wire::seq_le(entries_[k].seg.seq + entries_[k].seg.len, rcv_nxt)) {
    bytes_ -= entries_[k].seg.len;
    free_buffer(entries_[k].seg.buffer);
    ++k;
  }
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(k));
  if (!entries_.empty() && wire::seq_lt(entries_.front().seg.seq, rcv_nxt)) {
    OooSegment& s = entries_.front().seg;
    const std::uint32_t cut = distance(s.seq, rcv_nxt);
    s.seq = rcv_nxt;
    s.len -= cut;
    // Fits: offset + len fitted 16 bits at insert and the end is unchanged.
    s.offset = static_cast<std::uint16_t>(s.offset + cut);
    bytes_ -= cut;
  }
  // The caller never moves RCV.NXT past a held FIN (it takes the FIN
  // there); should it, the FIN is stale.
  if (fin_ && wire::seq_lt(*fin_, rcv_nxt)) fin_.reset();
}

void OooQueue::cut_at(SeqNum fin, SeqNum rcv_nxt) noexcept {
  const auto rel = [rcv_nxt](SeqNum x) { return distance(rcv_nxt, x); };
  const std::uint32_t f = rel(fin);
  std::size_t keep = entries_.size();
  while (keep > 0 && rel(entries_[keep - 1].seg.seq) >= f) {
    --keep;
    counters_.beyond_fin_bytes += entries_[keep].seg.len;
    bytes_ -= entries_[keep].seg.len;
    free_buffer(entries_[keep].seg.buffer);
  }
  entries_.resize(keep);
  if (keep > 0) {
    OooSegment& s = entries_[keep - 1].seg;
    const std::uint32_t end = rel(s.seq + s.len);
    if (end > f) {
      // Straddles the FIN: its start and offset stay, its end moves down.
      counters_.beyond_fin_bytes += end - f;
      bytes_ -= end - f;
      s.len -= end - f;
    }
  }
}

OooResult OooQueue::hold_fin(SeqNum fin, SeqNum rcv_nxt) noexcept {
  prune_below(rcv_nxt);
  if (!wire::seq_lt(rcv_nxt, fin)) {
    ++counters_.invalid;
    return OooResult::Invalid;
  }
  // The FIN takes one sequence number, which must lie in [RCV.NXT,
  // RCV.NXT + 2^30) like every byte the queue holds.
  if (distance(rcv_nxt, fin) >= kMaxSpan) {
    ++counters_.refused_window;
    return OooResult::BeyondWindow;
  }
  if (fin_) {
    if (*fin_ == fin) return OooResult::Duplicate;
    if (wire::seq_lt(*fin_, fin)) {
      ++counters_.refused_fin;  // the lowest FIN wins: this one lies past the end
      return OooResult::BeyondFin;
    }
  }
  cut_at(fin, rcv_nxt);
  fin_ = fin;
  ++counters_.fins_held;
  return OooResult::Queued;
}

void OooQueue::note_duplicate(SeqNum from, std::uint32_t len) noexcept {
  if (len == 0) return;
  counters_.duplicate_bytes += len;
  // RFC 2883 4: one D-SACK block per ACK; Linux reports the first duplicate
  // range and extends it only with contiguous ones (tcp_dsack_extend).
  if (!dsack_) {
    dsack_ = wire::SackBlock{from, from + len};
  } else if (dsack_->right == from) {
    dsack_->right = from + len;
  }
}

OooResult OooQueue::insert(SeqNum seq, std::uint32_t len, mem::BufIndex buffer, std::uint16_t offset,
                           SeqNum rcv_nxt) noexcept {
  dsack_.reset();
  const std::size_t limit = std::min<std::size_t>(pool_->buffer_size(), std::size_t{1} << 16);
  if (len == 0 || std::size_t{offset} + len > limit) {
    ++counters_.invalid;
    free_buffer(buffer);
    return OooResult::Invalid;
  }
  const std::uint64_t stamp = ++stamp_;
  prune_below(rcv_nxt);

  const SeqNum end = seq + len;
  // RFC 9293 3.10.7.4: data below RCV.NXT was delivered already; all of it
  // old is a duplicate to report (RFC 2883 4.1.1), not an error.
  if (wire::seq_lt(seq, rcv_nxt) && wire::seq_le(end, rcv_nxt)) {
    note_duplicate(seq, len);
    ++counters_.duplicates;
    free_buffer(buffer);
    return OooResult::Duplicate;
  }
  // Forward distance from RCV.NXT: after the checks around here every entry
  // and both ends of the segment lie in [rcv_nxt, rcv_nxt + 2^30], where
  // this is a total order.
  const auto rel = [rcv_nxt](SeqNum x) { return distance(rcv_nxt, x); };
  if (rel(end) > kMaxSpan) {
    ++counters_.refused_window;
    free_buffer(buffer);
    return OooResult::BeyondWindow;
  }
  std::uint32_t a = 0;
  if (wire::seq_lt(seq, rcv_nxt)) {
    note_duplicate(seq, distance(seq, rcv_nxt));
  } else {
    a = rel(seq);
  }
  std::uint32_t b = rel(end);
  if (fin_) {
    // Nothing past the peer's FIN is ever delivered (see the header).
    const std::uint32_t f = rel(*fin_);
    if (a >= f) {
      counters_.beyond_fin_bytes += b - a;
      ++counters_.refused_fin;
      dsack_.reset();
      free_buffer(buffer);
      return OooResult::BeyondFin;
    }
    if (b > f) {
      counters_.beyond_fin_bytes += b - f;
      b = f;
    }
  }

  const auto start_of = [&](std::size_t k) { return rel(entries_[k].seg.seq); };
  const auto end_of = [&](std::size_t k) { return rel(entries_[k].seg.seq + entries_[k].seg.len); };
  const std::size_t n = entries_.size();
  // The first entry ending after a: the only one that can start at or
  // before a and overlap the segment (entries are disjoint and sorted).
  std::size_t i = static_cast<std::size_t>(
      std::partition_point(entries_.begin(), entries_.end(),
                           [&](const Entry& x) { return rel(x.seg.seq + x.seg.len) <= a; }) -
      entries_.begin());
  const std::size_t first_touched = i;
  if (i < n && start_of(i) < a) {
    // Overlaps the end of an older entry: keep the old bytes.
    const std::uint32_t old_end = std::min(end_of(i), b);
    note_duplicate(rcv_nxt + a, old_end - a);
    a = old_end;
    ++i;
  }
  // Entries [i, j) lie wholly inside [a, b): replaced by the new segment.
  std::size_t j = i;
  std::uint64_t covered = 0;
  while (j < n && end_of(j) <= b) {
    covered += entries_[j].seg.len;
    ++j;
  }
  // Entry j, if it starts before b, overlaps the segment's end: keep its bytes.
  const std::uint32_t new_end = (j < n && start_of(j) < b) ? start_of(j) : b;
  const std::uint32_t new_len = new_end > a ? new_end - a : 0;

  if (new_len == covered) {
    // Not one new byte: keep the old entries, drop the new buffer. The run
    // it fell in becomes the most recent for SACK (RFC 2883 4.2: the D-SACK
    // block is followed by the block containing it).
    if (b > a) note_duplicate(rcv_nxt + a, b - a);
    const std::size_t last = std::min(j + 1, n);
    for (std::size_t k = first_touched; k < last; ++k) {
      if (start_of(k) < b) entries_[k].stamp = stamp;
    }
    ++counters_.duplicates;
    free_buffer(buffer);
    return OooResult::Duplicate;
  }

  // Bounds, counted as if the insert were done.
  std::size_t count_after = n - (j - i) + 1;
  std::uint64_t bytes_after = bytes_ - covered + new_len;
  std::size_t keep = n;  // entries [j, keep) stay; [keep, n) would be evicted
  const auto over = [&] { return count_after > config_.max_entries || bytes_after > config_.max_bytes; };
  if (over() && config_.evict_highest) {
    // Only entries wholly above the new data (index >= j) may go: never
    // trade data nearer RCV.NXT for data further away.
    while (over() && keep > j) {
      --keep;
      --count_after;
      bytes_after -= entries_[keep].seg.len;
    }
  }
  if (over()) {
    dsack_.reset();  // nothing was received after all
    OooResult r;
    if (count_after > config_.max_entries) {
      ++counters_.refused_entries;
      r = OooResult::NoEntries;
    } else {
      ++counters_.refused_bytes;
      r = OooResult::NoBytes;
    }
    free_buffer(buffer);
    return r;
  }

  // Commit: duplicate ranges in ascending order for the D-SACK block.
  for (std::size_t k = i; k < j; ++k) {
    note_duplicate(entries_[k].seg.seq, entries_[k].seg.len);
    free_buffer(entries_[k].seg.buffer);
    ++counters_.replaced;
  }
  if (new_end < b) note_duplicate(rcv_nxt + new_end, b - new_end);
  std::uint64_t evicted_bytes = 0;
  for (std::size_t k = keep; k < n; ++k) {
    free_buffer(entries_[k].seg.buffer);
    evicted_bytes += entries_[k].seg.len;
  }
  counters_.evicted += n - keep;
  counters_.evicted_bytes += evicted_bytes;
  entries_.resize(keep);

  const SeqNum start = rcv_nxt + a;
  Entry e;
  e.seg.seq = start;
  e.seg.len = new_len;
  e.seg.buffer = buffer;
  // Fits 16 bits: offset + len <= 2^16 was checked and start < end.
  e.seg.offset = static_cast<std::uint16_t>(offset + distance(seq, start));
  e.stamp = stamp;
  const auto at = entries_.begin() + static_cast<std::ptrdiff_t>(i);
  if (j > i) {
    *at = e;
    entries_.erase(at + 1, entries_.begin() + static_cast<std::ptrdiff_t>(j));
  } else {
    entries_.insert(at, e);  // capacity reserved: no allocation
  }
  bytes_ = bytes_ - covered - evicted_bytes + new_len;
  ++counters_.queued;
  return OooResult::Queued;
}

OooQueue::PopResult OooQueue::pop_in_order(SeqNum rcv_nxt, std::span<OooSegment> out) noexcept {
  prune_below(rcv_nxt);
  PopResult r;
  r.rcv_nxt = rcv_nxt;
  std::size_t k = 0;
  while (k < entries_.size() && r.count < out.size() && entries_[k].seg.seq == r.rcv_nxt) {
    out[r.count++] = entries_[k].seg;
    r.rcv_nxt += entries_[k].seg.len;
    bytes_ -= entries_[k].seg.len;
    ++k;
  }
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(k));
  counters_.popped += k;
  return r;
}

std::size_t OooQueue::sack_blocks(std::span<wire::SackBlock> out, std::size_t max) const noexcept {
  const std::size_t limit = std::min(max, out.size());
  std::size_t count = 0;
  if (count < limit && dsack_) out[count++] = *dsack_;  // RFC 2883 4: first
  // RFC 2018 4: runs of contiguous entries, most recently received first.
  // Each run's recency is the newest stamp among its entries; stamps are
  // unique per run (one insert touches one run), so "below the previous
  // pick" walks the runs in strictly decreasing recency.
  std::uint64_t below = std::numeric_limits<std::uint64_t>::max();
  while (count < limit) {
    std::uint64_t best = 0;
    wire::SackBlock best_block{};
    std::size_t k = 0;
    while (k < entries_.size()) {
      const SeqNum left = entries_[k].seg.seq;
      SeqNum right = left + entries_[k].seg.len;
      std::uint64_t newest = entries_[k].stamp;
      ++k;
      while (k < entries_.size() && entries_[k].seg.seq == right) {
        right += entries_[k].seg.len;
        newest = std::max(newest, entries_[k].stamp);
        ++k;
      }
      if (newest < below && newest > best) {
        best = newest;
        best_block = {left, right};
      }
    }
    if (best == 0) break;
    out[count++] = best_block;
    below = best;
  }
  return count;
}

std::size_t OooQueue::copy_entries(std::span<OooSegment> out) const noexcept {
  const std::size_t n = std::min(out.size(), entries_.size());
  for (std::size_t k = 0; k < n; ++k) out[k] = entries_[k].seg;
  return n;
}

}  // namespace usnet::tcp
