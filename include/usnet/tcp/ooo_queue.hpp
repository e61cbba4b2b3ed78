// The receiver's out-of-order queue: segments that arrived above RCV.NXT,
// held until the hole below them is filled (RFC 9293 3.10.7.4, "seventh,
// process the segment text"), and the SACK blocks that describe them
// (RFC 2018 4) with a D-SACK block for duplicates (RFC 2883).
//
// Zero copy. The payload stays in the packet-pool buffer it arrived in: an
// entry is {start, length, buffer, offset of the payload in the buffer}. The
// queue owns every buffer handed to insert() from then on, whatever the
// outcome: it frees the buffer to the pool (the pool and owner given at
// create()) when the segment is refused, a duplicate, trimmed to nothing,
// replaced, evicted, or at clear() / destruction. pop_in_order() hands
// ownership of the popped buffers to the caller.
//
// Overlaps (RFC 9293 3.10.7.4 lets a receiver keep any one copy of a byte;
// we follow Linux's tcp_data_queue_ofo):
//   - bytes below RCV.NXT are trimmed off (already delivered: a duplicate);
//   - where the new segment overlaps the edge of a queued entry, the queued
//     (old) bytes are kept and the new segment is trimmed;
//   - a queued entry that the new segment covers entirely is replaced by it
//     (freed), so a segment that fills k holes becomes one entry, not k;
//   - if that would add no byte the queue lacks (every byte of the new
//     segment is already queued or delivered), nothing changes: the old
//     entries stay and the new buffer is freed (a duplicate).
// So entries are disjoint, sorted by sequence, and every entry is one
// contiguous piece of one buffer. Any byte seen twice is reported in the
// D-SACK block (the lowest contiguous duplicate range, as Linux does).
//
// Limits (ROBUSTNESS.md items 10 and 11). A peer decides how many holes it
// leaves and how small its segments are, so both are bounded by the config:
// at most max_entries entries (each pins one pool buffer, whatever its
// payload: 1-byte segments pin max_entries whole buffers, no more) and at
// most max_bytes of payload. A segment that would pass a bound is refused
// (freed, counted, reported), except that, with evict_highest (the default),
// queued entries that lie wholly above the new segment are evicted from the
// top first when that makes room: data nearest RCV.NXT is what lets the
// application make progress, and the highest data is the cheapest for the
// peer to send again (Linux's tcp_prune_ofo_queue also prunes from the top).
// Evicting SACKed data is reneging (RFC 2018 8); senders must tolerate it,
// and our SACK blocks never report evicted data. A segment ending more than
// 2^30 past RCV.NXT (the largest window, RFC 7323 2.3) is refused: it cannot
// be in any window, and keeping every entry within 2^30 of RCV.NXT is what
// makes the sequence order below exact across the wrap.
//
// The peer's FIN (RFC 9293 3.10.7.4 seventh and eighth). A FIN that arrives
// above RCV.NXT (alone, or after out-of-order data) is held too, as its
// sequence number (hold_fin()), so that once the hole below it is filled
// the receiver takes it at once instead of waiting for the peer to send it
// again. It is validated like data: it must lie above RCV.NXT and within
// 2^30 of it (the caller has checked it is inside the receive window). A
// stream has one end, so the queue keeps what RFC processing in sequence
// order would keep: the lowest FIN wins. Data at or above the held FIN is
// never delivered (RFC 9293 3.10.7.4 seventh: text after the FIN is
// ignored), so insert() trims it off or refuses it (BeyondFin); a FIN
// above the held one is refused (BeyondFin); a FIN below it (only a broken
// or hostile peer moves its FIN) replaces it and frees or trims the queued
// data at or above the new one. So every entry always ends at or below the
// held FIN, and a peer cannot make the receiver take bytes past a FIN or
// two different ends of one stream.
//
// Cost. Entries live in a vector reserved at create() (no allocation
// afterwards). insert(): a binary search, O(log n), then an O(n) shift of
// 24-byte entries, n <= max_entries (default 256: at most ~6 KiB moved).
// pop_in_order(): O(popped + n). sack_blocks(): O(n * max) with max <= 4.
// Sequence order is computed as the forward distance from RCV.NXT, which is
// a total order on everything the queue holds, so wraparound at 2^32 needs
// no special case.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/seq.hpp"
#include "usnet/wire/tcp.hpp"

namespace usnet::tcp {

using wire::SeqNum;

struct OooConfig {
  // Entries, i.e. pool buffers pinned. Between 1 and OooQueue::kMaxEntries.
  std::uint32_t max_entries = 256;
  // Payload bytes held; > 0. Normally the receive buffer size: the queue can
  // never usefully hold more than the window advertised.
  std::uint32_t max_bytes = 1u << 20;
  // Evict entries above a new segment to make room for it (see the header).
  bool evict_highest = true;
};

// One contiguous run of payload in a pool buffer.
struct OooSegment {
  SeqNum seq;                // sequence number of the first payload byte
  std::uint32_t len = 0;     // payload bytes, > 0
  mem::BufIndex buffer = 0;  // the pool buffer holding them
  std::uint16_t offset = 0;  // where the payload starts in the buffer
  friend bool operator==(const OooSegment&, const OooSegment&) = default;
};

enum class OooResult : std::uint8_t {
  Queued,        // at least one new byte was queued (maybe trimmed, maybe with D-SACK)
  Duplicate,     // every byte already delivered or queued: buffer freed, D-SACK set
  NoEntries,     // refused: max_entries, even after eviction
  NoBytes,       // refused: max_bytes, even after eviction
  BeyondWindow,  // refused: ends more than 2^30 past RCV.NXT
  Invalid,       // refused: len 0, or the payload does not fit the buffer / a 16-bit offset
                 // (hold_fin(): a FIN not above RCV.NXT)
  BeyondFin,     // refused: data or a FIN at or above the FIN held (see the header)
};
const char* to_string(OooResult r) noexcept;

struct OooCounters {
  std::uint64_t queued = 0;           // inserts that queued new bytes
  std::uint64_t duplicates = 0;       // inserts with no new byte
  std::uint64_t refused_entries = 0;  // OooResult::NoEntries
  std::uint64_t refused_bytes = 0;    // OooResult::NoBytes
  std::uint64_t refused_window = 0;   // OooResult::BeyondWindow
  std::uint64_t invalid = 0;          // OooResult::Invalid
  std::uint64_t duplicate_bytes = 0;  // bytes received again (trimmed, replaced or whole duplicates)
  std::uint64_t replaced = 0;         // entries freed because a new segment covered them
  std::uint64_t evicted = 0;          // entries evicted from the top to make room (reneging)
  std::uint64_t evicted_bytes = 0;
  std::uint64_t popped = 0;  // entries handed over in order
  // The peer's FIN (see the header).
  std::uint64_t fins_held = 0;         // hold_fin() calls that held a FIN (or moved it down)
  std::uint64_t refused_fin = 0;       // inserts and FINs refused as OooResult::BeyondFin
  std::uint64_t beyond_fin_bytes = 0;  // bytes trimmed off or freed for lying past the held FIN
};

class OooQueue {
 public:
  static constexpr std::uint32_t kMaxEntries = 65536;
  static constexpr std::uint32_t kMaxSpan = 1u << 30;  // RFC 7323 2.3: the largest window

  // EINVAL for max_entries 0 or above kMaxEntries, max_bytes 0, or an owner
  // the pool does not know. Reserves the entries now.
  static Expected<OooQueue, std::error_code> create(const OooConfig& config, mem::PacketPool& pool,
                                                    mem::OwnerId owner);

  OooQueue(OooQueue&& other) noexcept;
  OooQueue& operator=(OooQueue&& other) noexcept;
  OooQueue(const OooQueue&) = delete;
  OooQueue& operator=(const OooQueue&) = delete;
  ~OooQueue();  // frees every buffer still queued

  // Queues payload [seq, seq + len) held in `buffer` at `offset`, given the
  // receiver's RCV.NXT. Takes the buffer in every case (see the header).
  // Entries already below rcv_nxt are dropped or trimmed first. The caller
  // has already checked the segment is acceptable (RFC 9293 3.10.7.4
  // first). A segment starting at rcv_nxt is queued like any other, and so
  // meets the bounds too: a caller normally hands in-order text to the user
  // itself and queues only what lies above RCV.NXT.
  OooResult insert(SeqNum seq, std::uint32_t len, mem::BufIndex buffer, std::uint16_t offset,
                   SeqNum rcv_nxt) noexcept;

  struct PopResult {
    std::size_t count = 0;  // segments written to the front of `out`
    SeqNum rcv_nxt;         // RCV.NXT after them
  };
  // After the caller advanced RCV.NXT with in-order data: frees entries now
  // wholly below rcv_nxt, trims one straddling it, then moves the entries
  // that continue the stream from rcv_nxt into `out`, in order, up to
  // out.size() of them (call again if it fills). Ownership of their buffers
  // passes to the caller.
  PopResult pop_in_order(SeqNum rcv_nxt, std::span<OooSegment> out) noexcept;

  // RFC 2018 4 / RFC 2883 4: writes up to min(max, out.size()) blocks: the
  // D-SACK block first if the last insert saw a duplicate byte (and
  // clear_dsack() was not called since), then the contiguous runs of queued
  // data, the run holding the most recently received segment first and the
  // others most recent first. Returns the count. The caller picks max
  // (4 without timestamps, 3 with: RFC 2018 3).
  std::size_t sack_blocks(std::span<wire::SackBlock> out, std::size_t max) const noexcept;

  // The D-SACK block of the last insert, if it saw a duplicate byte.
  std::optional<wire::SackBlock> dsack() const noexcept { return dsack_; }
  // RFC 2883 4: each duplicate is reported once: call after sending the ACK
  // that carried it.
  void clear_dsack() noexcept { dsack_.reset(); }

  // RFC 9293 3.10.7.4: holds the peer's FIN, which takes sequence number
  // `fin` (> rcv_nxt, inside the receive window: the caller checks the
  // window). Queued: held (or moved down to `fin`, freeing or trimming data
  // at or above it); Duplicate: that FIN is held already; BeyondFin: a
  // lower FIN is held; BeyondWindow: more than 2^30 past RCV.NXT; Invalid:
  // not above rcv_nxt (the caller takes a FIN at RCV.NXT itself).
  OooResult hold_fin(SeqNum fin, SeqNum rcv_nxt) noexcept;
  // The held FIN's sequence number. The caller takes it once RCV.NXT
  // reaches it (every entry lies below it), then calls clear().
  std::optional<SeqNum> fin() const noexcept { return fin_; }

  // Frees every queued buffer and forgets the FIN (an aborted connection,
  // or the FIN taken).
  void clear() noexcept;

  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  std::uint64_t bytes() const noexcept { return bytes_; }
  // The entries in sequence order (for inspection and tests).
  std::size_t copy_entries(std::span<OooSegment> out) const noexcept;
  const OooConfig& config() const noexcept { return config_; }
  const OooCounters& counters() const noexcept { return counters_; }

 private:
  struct Entry {
    OooSegment seg;
    std::uint64_t stamp = 0;  // insert count when last received: SACK block order
  };

  OooQueue(const OooConfig& config, mem::PacketPool& pool, mem::OwnerId owner);

  void free_buffer(mem::BufIndex b) noexcept;
  // Drops entries wholly below rcv_nxt, trims one that straddles it, and
  // forgets a FIN below it.
  void prune_below(SeqNum rcv_nxt) noexcept;
  // Frees entries at or above `fin`, trims one that straddles it.
  void cut_at(SeqNum fin, SeqNum rcv_nxt) noexcept;
  // Records duplicate bytes [from, from + len): the first range seen by an
  // insert sets the D-SACK block, later ones extend it only if contiguous.
  void note_duplicate(SeqNum from, std::uint32_t len) noexcept;

  OooConfig config_;
  mem::PacketPool* pool_ = nullptr;
  mem::OwnerId owner_;
  std::vector<Entry> entries_;  // disjoint, sorted by sequence; capacity max_entries
  std::uint64_t bytes_ = 0;
  std::uint64_t stamp_ = 0;
  std::optional<wire::SackBlock> dsack_;
  std::optional<SeqNum> fin_;  // the peer's FIN, held; every entry ends at or below it
  OooCounters counters_;
};

}  // namespace usnet::tcp
