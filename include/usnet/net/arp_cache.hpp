// The ARP cache (RFC 826, RFC 1122 2.3.2): IPv4 address -> MAC, with states,
// timeouts, a bounded queue of frames waiting for resolution, and a bound on
// the number of entries. Pure state: it sends nothing itself; it tells the
// caller which requests to send and which queued frames are ready.
//
// States (after Linux's neighbour states, simplified):
//   Incomplete  a request is out; frames queue; retransmitted every
//               retransmit_interval, up to max_probes requests in all.
//   Reachable   confirmed by a reply or a request from it; used as is
//               until reachable_time has passed since confirmation.
//   Stale       past reachable_time: still used to send (RFC 1122 2.3.2.1
//               prefers this over flushing), and a send refreshes it with a
//               request at most once per retransmit_interval; the entry is
//               removed stale_time after it went stale if nothing confirmed it.
//   Failed      max_probes went unanswered: the frames waiting were dropped
//               (ArpResolveFailed) and new sends are dropped at once until
//               failed_hold passes, so a dead host is not flooded with
//               requests (RFC 1122 2.3.2.1: "MUST prevent ARP flooding").
//
// Rate limit: at most one request per destination per retransmit_interval,
// whatever the state.
//
// Queue policy: each Incomplete entry queues at most max_queue_per_entry
// frames, all entries together max_queue_total. When an entry's queue is
// full its OLDEST frame is dropped (the newest is the most useful: a
// retransmission supersedes what it repeats, as Linux does); when the total
// is reached the NEW frame is dropped (taking another destination's frame
// would let one busy destination starve the others). Both count ArpQueueFull.
//
// Entry bound: at most max_entries. A new entry evicts the least recently
// updated entry that has no frames queued (Stale or Failed first, then
// Reachable); if every entry has frames queued the new one is refused
// (ArpTableFull). An attacker on the LAN can so churn the cache but never
// grow it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/drop_reason.hpp"
#include "usnet/wire/addr.hpp"

namespace usnet::net {

using Nanos = std::chrono::nanoseconds;

struct ArpConfig {
  Nanos reachable_time = std::chrono::seconds(30);      // Linux base_reachable_time
  Nanos stale_time = std::chrono::seconds(60);          // unused stale entries go after this
  Nanos retransmit_interval = std::chrono::seconds(1);  // RFC 1122 2.3.2.1: at most 1 per second
  std::uint32_t max_probes = 3;
  // A request the link refused (not connected yet, ring full) was never
  // sent: it is tried again after this, without counting as a probe.
  Nanos refused_retry = std::chrono::milliseconds(10);
  Nanos failed_hold = std::chrono::seconds(20);
  std::size_t max_entries = 256;
  // 48 frames hold one 65535-byte datagram fragmented at MTU 1500 (45
  // fragments), so a first send of a large datagram is not cut short.
  std::size_t max_queue_per_entry = 48;
  std::size_t max_queue_total = 128;
  // RFC 5227 2.3: ANNOUNCE_NUM announcements ANNOUNCE_INTERVAL apart at start.
  std::uint32_t announce_count = 2;
  Nanos announce_interval = std::chrono::seconds(2);
};

enum class ArpState : std::uint8_t { Incomplete, Reachable, Stale, Failed };
std::string_view to_string(ArpState s) noexcept;

class ArpCache {
 public:
  // Queued frames are buffers of `owner` in `pool`; the cache frees those it
  // drops and, in its destructor, those still queued.
  ArpCache(const ArpConfig& config, mem::PacketPool& pool, mem::OwnerId owner, NetCounters& counters);
  ~ArpCache();
  ArpCache(const ArpCache&) = delete;
  ArpCache& operator=(const ArpCache&) = delete;

  struct Resolution {
    enum class Kind : std::uint8_t { Send, Queued, Dropped } kind;
    wire::MacAddr mac;          // Send: the destination MAC
    bool send_request = false;  // a request for the address should go out now (broadcast)
    // The cache's state changed (an entry, a queue, a state), so its next
    // deadline may have moved; false for a plain send to a Reachable entry.
    bool changed = true;
  };
  // A frame is to be sent to next hop `ip`. Send: the caller sends it to
  // `mac` (and keeps the frame). Queued: the cache took the frame. Dropped:
  // the cache took and freed it (the reason is counted).
  Resolution resolve(wire::Ipv4Addr ip, const link::Frame& frame, Nanos now);
  // A lookup with nothing to queue (no side effects but the refresh request).
  std::optional<wire::MacAddr> lookup(wire::Ipv4Addr ip) const;

  // RFC 826 "merge": an ARP packet from (ip, mac) arrived. An existing entry
  // is updated (and confirmed); a new one is made only when `create` (the
  // packet was addressed to us). Frames that were waiting on it are appended
  // to `ready` (ownership passes to the caller, which fills in `mac`).
  void learn(wire::Ipv4Addr ip, wire::MacAddr mac, bool create, Nanos now, std::vector<link::Frame>& ready);

  // The request just made for `ip` did not leave (the link refused it):
  // retry after refused_retry, and do not count it against max_probes.
  void request_refused(wire::Ipv4Addr ip, Nanos now);
  // Timers: retransmits (appended to `probe`), failure, expiry.
  void poll(Nanos now, std::vector<wire::Ipv4Addr>& probe);
  Nanos next_deadline() const noexcept;

  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t queued_total() const noexcept { return queued_total_; }
  std::optional<ArpState> state(wire::Ipv4Addr ip) const;
  const ArpConfig& config() const noexcept { return config_; }

 private:
  struct Entry {
    ArpState state = ArpState::Incomplete;
    wire::MacAddr mac;
    Nanos updated{0};       // entered its state / last confirmed
    Nanos last_request{0};  // last request sent for it
    bool requested = false;
    std::uint32_t probes = 0;
    std::deque<link::Frame> queue;
  };

  Entry* make_entry(wire::Ipv4Addr ip, Nanos now);
  void drop_queue(Entry& e, DropReason why);
  void free_frame(const link::Frame& f);
  bool may_request(const Entry& e, Nanos now) const noexcept {
    return !e.requested || now - e.last_request >= config_.retransmit_interval;
  }

  ArpConfig config_;
  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  NetCounters* counters_;
  std::unordered_map<std::uint32_t, Entry> entries_;
  std::size_t queued_total_ = 0;
};

}  // namespace usnet::net
