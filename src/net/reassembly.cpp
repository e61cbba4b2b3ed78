#include "usnet/net/reassembly.hpp"

#include <algorithm>
#include <cstring>

namespace usnet::net {

QuotedHeader QuotedHeader::of(const wire::Ipv4View& v) noexcept {
  QuotedHeader q;
  const auto bytes = v.bytes();
  q.len = std::min(bytes.size(), v.header_len() + 8);
  std::memcpy(q.bytes.data(), bytes.data(), q.len);
  return q;
}

Reassembler::Reassembler(const ReassemblyConfig& config, NetCounters& counters)
    : config_(config), counters_(&counters) {
  if (config_.max_fragments == 0) config_.max_fragments = 1;
}

std::size_t Reassembler::charge_of(const InProgress& d) const noexcept {
  return kDatagramOverhead + d.data.capacity() + d.ranges.capacity() * sizeof(Range);
}

bool Reassembler::recharge(InProgress& d) noexcept {
  const std::size_t now_charged = charge_of(d);
  memory_ = memory_ - d.charged + now_charged;
  d.charged = now_charged;
  return memory_ <= config_.max_memory;
}

void Reassembler::remove(std::size_t i) noexcept {
  memory_ -= slots_[i].charged;
  if (i + 1 != slots_.size()) slots_[i] = std::move(slots_.back());
  slots_.pop_back();
}

void Reassembler::drop(std::size_t i, DropReason why) noexcept {
  counters_->drop(why);
  remove(i);
}

std::optional<ReassembledDatagram> Reassembler::add(const wire::Ipv4View& v, Nanos now) {
  const FragmentKey key{v.src(), v.dst(), v.protocol(), v.ident()};
  const auto payload = v.payload();
  const std::uint32_t off = v.frag_offset_bytes();
  const auto len = static_cast<std::uint32_t>(payload.size());
  const std::uint32_t end = off + len;
  const bool mf = v.more_frags();

  auto it = std::find_if(slots_.begin(), slots_.end(), [&](const InProgress& d) { return d.key == key; });
  std::size_t i = static_cast<std::size_t>(it - slots_.begin());
  const bool exists = it != slots_.end();

  // RFC 791 3.2: every fragment but the last carries a multiple of 8 bytes.
  if (mf && (len == 0 || len % 8 != 0)) {
    if (exists) {
      drop(i, DropReason::ReasmInconsistent);
    } else {
      counters_->drop(DropReason::ReasmInconsistent);
    }
    return std::nullopt;
  }
  if (v.header_len() + end > 0xffff) {
    if (exists) {
      drop(i, DropReason::ReasmTooLong);
    } else {
      counters_->drop(DropReason::ReasmTooLong);
    }
    return std::nullopt;
  }
  if (!exists) {
    if (slots_.size() >= config_.max_datagrams) {
      counters_->drop(DropReason::ReasmTooManyDatagrams);
      return std::nullopt;
    }
    if (memory_ + kDatagramOverhead > config_.max_memory) {
      counters_->drop(DropReason::ReasmMemory);
      return std::nullopt;
    }
    slots_.emplace_back();
    i = slots_.size() - 1;
    slots_[i].key = key;
    slots_[i].started = now;
    recharge(slots_[i]);
  }
  InProgress& d = slots_[i];

  // The last fragment fixes the length; nothing may contradict it.
  if (!mf) {
    const bool data_past = !d.ranges.empty() && d.ranges.back().end > end;
    if ((d.have_last && d.total != end) || data_past) {
      drop(i, DropReason::ReasmInconsistent);
      return std::nullopt;
    }
  } else if (d.have_last && end >= d.total) {
    drop(i, DropReason::ReasmInconsistent);
    return std::nullopt;
  }

  // Overlap with a neighbour in the sorted range list.
  auto pos = std::lower_bound(d.ranges.begin(), d.ranges.end(), off,
                              [](const Range& r, std::uint32_t s) { return r.start < s; });
  auto same = [&](const Range& r) { return r.start == off && r.end == end; };
  const Range* clash = nullptr;
  if (pos != d.ranges.end() && pos->start < end) clash = &*pos;
  if (clash == nullptr && pos != d.ranges.begin() && std::prev(pos)->end > off) clash = &*std::prev(pos);
  if (clash != nullptr) {
    if (same(*clash) && len != 0 && std::memcmp(d.data.data() + off, payload.data(), len) == 0) {
      counters_->drop(DropReason::ReasmDuplicate);
      return std::nullopt;
    }
    drop(i, DropReason::ReasmOverlap);
    return std::nullopt;
  }
  const auto pos_index = pos - d.ranges.begin();  // reserve() below invalidates pos
  if (d.ranges.size() >= config_.max_fragments) {
    drop(i, DropReason::ReasmTooManyFragments);
    return std::nullopt;
  }

  // Grow the buffers, checking the bound before allocating.
  const std::uint32_t want_total = mf ? 0 : end;
  std::size_t data_cap = d.data.capacity();
  if (end > data_cap) {
    if (want_total != 0 || d.have_last) {
      data_cap = d.have_last ? d.total : want_total;
    } else {
      data_cap = std::min<std::size_t>(0xffff, std::max<std::size_t>(end, data_cap * 2));
    }
  }
  std::size_t range_cap = d.ranges.capacity();
  if (d.ranges.size() == range_cap) {
    range_cap = std::min(config_.max_fragments, std::max<std::size_t>(4, range_cap * 2));
  }
  const std::size_t prospective = kDatagramOverhead + data_cap + range_cap * sizeof(Range);
  if (memory_ - d.charged + prospective > config_.max_memory) {
    drop(i, DropReason::ReasmMemory);
    return std::nullopt;
  }
  d.data.reserve(data_cap);
  d.ranges.reserve(range_cap);
  if (d.data.size() < end) d.data.resize(end);
  if (!recharge(d)) {  // reserve gave more than asked for: still bounded
    drop(i, DropReason::ReasmMemory);
    return std::nullopt;
  }

  if (len != 0) std::memcpy(d.data.data() + off, payload.data(), len);
  d.ranges.insert(d.ranges.begin() + pos_index, Range{off, end});
  d.received += len;
  if (!mf) {
    d.have_last = true;
    d.total = end;
  }
  if (off == 0) {
    d.have_first = true;
    d.ttl = v.ttl();
    d.dscp = v.dscp();
    d.ecn = v.ecn();
    d.first = QuotedHeader::of(v);
  }
  ++counters_->rx_fragments;

  if (!d.have_last || d.received != d.total) return std::nullopt;
  ReassembledDatagram out;
  out.key = d.key;
  out.ttl = d.ttl;
  out.dscp = d.dscp;
  out.ecn = d.ecn;
  out.first = d.first;
  d.data.resize(d.total);
  out.payload = std::move(d.data);
  remove(i);
  ++counters_->reassembled;
  return out;
}

void Reassembler::poll(Nanos now, std::vector<ExpiredDatagram>& expired) {
  for (std::size_t i = 0; i < slots_.size();) {
    if (now - slots_[i].started >= config_.timeout) {
      expired.push_back({slots_[i].key, slots_[i].have_first, slots_[i].first});
      drop(i, DropReason::ReasmTimeout);
    } else {
      ++i;
    }
  }
}

Nanos Reassembler::next_deadline() const noexcept {
  Nanos next = Nanos::max();
  for (const auto& d : slots_) next = std::min(next, d.started + config_.timeout);
  return next;
}

}  // namespace usnet::net
