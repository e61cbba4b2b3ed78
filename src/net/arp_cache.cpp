#include "usnet/net/arp_cache.hpp"

#include <algorithm>

namespace usnet::net {

std::string_view to_string(ArpState s) noexcept {
  switch (s) {
    case ArpState::Incomplete:
      return "incomplete";
    case ArpState::Reachable:
      return "reachable";
    case ArpState::Stale:
      return "stale";
    case ArpState::Failed:
      return "failed";
  }
  return "unknown";
}

ArpCache::ArpCache(const ArpConfig& config, mem::PacketPool& pool, mem::OwnerId owner, NetCounters& counters)
    : config_(config), pool_(&pool), owner_(owner), counters_(&counters) {
  if (config_.max_entries == 0) config_.max_entries = 1;
  if (config_.max_probes == 0) config_.max_probes = 1;
  if (config_.max_queue_per_entry == 0) config_.max_queue_per_entry = 1;
  entries_.reserve(config_.max_entries);
}

ArpCache::~ArpCache() {
  for (auto& [ip, e] : entries_) {
    for (const auto& f : e.queue) free_frame(f);
  }
}

void ArpCache::free_frame(const link::Frame& f) { (void)pool_->free(owner_, f.buffer); }

void ArpCache::drop_queue(Entry& e, DropReason why) {
  for (const auto& f : e.queue) {
    free_frame(f);
    counters_->drop(why);
  }
  queued_total_ -= e.queue.size();
  e.queue.clear();
}

ArpCache::Entry* ArpCache::make_entry(wire::Ipv4Addr ip, Nanos now) {
  if (entries_.size() >= config_.max_entries) {
    // Evict the least recently updated entry with nothing queued, preferring
    // entries not in use (Stale, Failed) over Reachable ones.
    auto victim = entries_.end();
    auto rank = [](ArpState s) { return s == ArpState::Stale || s == ArpState::Failed ? 0 : 1; };
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!it->second.queue.empty()) continue;
      if (victim == entries_.end() || rank(it->second.state) < rank(victim->second.state) ||
          (rank(it->second.state) == rank(victim->second.state) &&
           it->second.updated < victim->second.updated)) {
        victim = it;
      }
    }
    if (victim == entries_.end()) return nullptr;
    entries_.erase(victim);
  }
  Entry& e = entries_[ip.v];
  e.updated = now;
  return &e;
}

ArpCache::Resolution ArpCache::resolve(wire::Ipv4Addr ip, const link::Frame& frame, Nanos now) {
  Resolution res{Resolution::Kind::Queued, {}, false};
  auto it = entries_.find(ip.v);
  Entry* e = it == entries_.end() ? nullptr : &it->second;
  if (e != nullptr && e->state == ArpState::Reachable && now - e->updated < config_.reachable_time) {
    res.kind = Resolution::Kind::Send;  // the common case: nothing changes
    res.mac = e->mac;
    res.changed = false;
    return res;
  }

  if (e != nullptr && e->state == ArpState::Failed) {
    if (now - e->updated < config_.failed_hold) {
      free_frame(frame);
      counters_->drop(DropReason::ArpResolveFailed);
      res.kind = Resolution::Kind::Dropped;
      return res;
    }
    e->state = ArpState::Incomplete;  // the hold is over: try again
    e->probes = 0;
    e->requested = false;
    e->updated = now;
  }
  if (e != nullptr && e->state == ArpState::Reachable && now - e->updated >= config_.reachable_time) {
    e->state = ArpState::Stale;
    e->updated = now;
  }
  if (e != nullptr && (e->state == ArpState::Reachable || e->state == ArpState::Stale)) {
    res.kind = Resolution::Kind::Send;
    res.mac = e->mac;
    if (e->state == ArpState::Stale && may_request(*e, now)) {
      e->requested = true;
      e->last_request = now;
      res.send_request = true;
    }
    return res;
  }
  if (e == nullptr) {
    if (queued_total_ >= config_.max_queue_total) {
      free_frame(frame);
      counters_->drop(DropReason::ArpQueueFull);
      res.kind = Resolution::Kind::Dropped;
      return res;
    }
    e = make_entry(ip, now);
    if (e == nullptr) {
      free_frame(frame);
      counters_->drop(DropReason::ArpTableFull);
      res.kind = Resolution::Kind::Dropped;
      return res;
    }
    e->state = ArpState::Incomplete;
  }
  // Incomplete: queue under both bounds.
  if (e->queue.size() >= config_.max_queue_per_entry) {
    free_frame(e->queue.front());
    e->queue.pop_front();
    --queued_total_;
    counters_->drop(DropReason::ArpQueueFull);
  } else if (queued_total_ >= config_.max_queue_total) {
    free_frame(frame);
    counters_->drop(DropReason::ArpQueueFull);
    res.kind = Resolution::Kind::Dropped;
    return res;
  }
  e->queue.push_back(frame);
  ++queued_total_;
  if (e->probes == 0) {  // a fresh resolution: the first request goes now
    e->probes = 1;
    e->requested = true;
    e->last_request = now;
    res.send_request = true;
  }
  return res;
}

std::optional<wire::MacAddr> ArpCache::lookup(wire::Ipv4Addr ip) const {
  auto it = entries_.find(ip.v);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.state != ArpState::Reachable && it->second.state != ArpState::Stale) return std::nullopt;
  return it->second.mac;
}

std::optional<ArpState> ArpCache::state(wire::Ipv4Addr ip) const {
  auto it = entries_.find(ip.v);
  if (it == entries_.end()) return std::nullopt;
  return it->second.state;
}

void ArpCache::learn(wire::Ipv4Addr ip, wire::MacAddr mac, bool create, Nanos now,
                     std::vector<link::Frame>& ready) {
  auto it = entries_.find(ip.v);
  Entry* e = nullptr;
  if (it != entries_.end()) {
    e = &it->second;
  } else if (create) {
    e = make_entry(ip, now);
    if (e == nullptr) {
      counters_->drop(DropReason::ArpTableFull);
      return;
    }
  } else {
    return;
  }
  e->state = ArpState::Reachable;
  e->mac = mac;
  e->updated = now;
  e->probes = 0;
  for (const auto& f : e->queue) ready.push_back(f);
  queued_total_ -= e->queue.size();
  e->queue.clear();
}

void ArpCache::request_refused(wire::Ipv4Addr ip, Nanos now) {
  auto it = entries_.find(ip.v);
  if (it == entries_.end() || it->second.state != ArpState::Incomplete) return;
  Entry& e = it->second;
  if (e.probes > 0) --e.probes;
  // poll() sends the next request once retransmit_interval has passed
  // since last_request: set it so that this happens refused_retry from now.
  const Nanos wait = std::min(config_.refused_retry, config_.retransmit_interval);
  e.last_request = now - config_.retransmit_interval + wait;
}

void ArpCache::poll(Nanos now, std::vector<wire::Ipv4Addr>& probe) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    bool erase = false;
    switch (e.state) {
      case ArpState::Incomplete:
        if (now - e.last_request >= config_.retransmit_interval) {
          if (e.probes >= config_.max_probes) {
            drop_queue(e, DropReason::ArpResolveFailed);
            e.state = ArpState::Failed;
            e.updated = now;
          } else {
            ++e.probes;
            e.last_request = now;
            e.requested = true;
            probe.push_back(wire::Ipv4Addr{it->first});
          }
        }
        break;
      case ArpState::Reachable:
        if (now - e.updated >= config_.reachable_time) {
          e.state = ArpState::Stale;
          e.updated = now;
        }
        break;
      case ArpState::Stale:
        erase = now - e.updated >= config_.stale_time;
        break;
      case ArpState::Failed:
        erase = now - e.updated >= config_.failed_hold;
        break;
    }
    if (erase) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

Nanos ArpCache::next_deadline() const noexcept {
  Nanos next = Nanos::max();
  for (const auto& [ip, e] : entries_) {
    Nanos t = Nanos::max();
    switch (e.state) {
      case ArpState::Incomplete:
        t = e.last_request + config_.retransmit_interval;
        break;
      case ArpState::Reachable:
        t = e.updated + config_.reachable_time;
        break;
      case ArpState::Stale:
        t = e.updated + config_.stale_time;
        break;
      case ArpState::Failed:
        t = e.updated + config_.failed_hold;
        break;
    }
    next = std::min(next, t);
  }
  return next;
}

}  // namespace usnet::net
