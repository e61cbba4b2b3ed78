// An in-memory link for unit tests of the stack: deterministic, no file
// descriptor, no thread, no clock.
//
// A test drives it from the outside: inject_rx() copies a frame into a new
// pool buffer and queues it as received; pop_tx() takes out the oldest frame
// the stack sent. Or connect() joins two links back to back, so that what one
// sends the other receives: the buffer itself moves from one owner to the
// other with PacketPool::transfer, never copied, as on a shared-memory link.
//
// Queues are bounded (queue_limit frames each way): a full receive queue
// drops an injected frame (rx_no_buffer, as a NIC with no free descriptor),
// a full transmit queue, or the peer's full receive queue, makes tx_burst
// take fewer frames than offered (tx_full).
//
// Frames delivered to a connected peer carry FrameFlag::kChecksumsVerified
// when the sending link's info has Offload::kNoChecksums, and no flag
// otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"

namespace usnet::link {

class MemoryLink final : public Link {
 public:
  static constexpr std::size_t kDefaultQueueLimit = 256;

  // Buffers are allocated to (and expected from the stack as held by)
  // `owner`. `queue_limit` bounds each queue; 0 is taken as 1.
  MemoryLink(mem::PacketPool& pool, mem::OwnerId owner, LinkInfo info,
             std::size_t queue_limit = kDefaultQueueLimit);
  // Frees every buffer still queued and disconnects the peer.
  ~MemoryLink() override;
  MemoryLink(const MemoryLink&) = delete;
  MemoryLink& operator=(const MemoryLink&) = delete;

  // Joins two links back to back. Both must use the same pool (checked:
  // aborts otherwise, a test bug). Either may already be connected; its old
  // peer is disconnected. Frames already in a transmit queue stay there for
  // pop_tx().
  static void connect(MemoryLink& a, MemoryLink& b);
  void disconnect() noexcept;
  bool connected() const noexcept { return peer_ != nullptr; }

  // Test side. Copies `frame` into a new buffer of this link's owner and
  // queues it as received. False (and nothing queued) when the frame does
  // not fit a buffer (rx_too_long), or the queue is full or the pool refuses
  // (rx_no_buffer).
  bool inject_rx(std::span<const std::byte> frame);
  // The oldest frame the stack sent while not connected, copied out; its
  // buffer is freed.
  std::optional<std::vector<std::byte>> pop_tx();
  std::size_t tx_pending() const noexcept { return tx_.size(); }
  std::size_t rx_pending() const noexcept { return rx_.size(); }
  std::size_t queue_limit() const noexcept { return limit_; }
  mem::OwnerId owner() const noexcept { return owner_; }
  mem::PacketPool& pool() const noexcept { return *pool_; }

  // Link.
  const LinkInfo& info() const noexcept override { return info_; }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  // A frame whose bytes lie outside its buffer is taken, freed (if this
  // owner holds it) and counted in tx_errors; it is never delivered.
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override { return -1; }
  const LinkCounters& counters() const noexcept override { return counters_; }

 private:
  // Hands a frame this link holds to the peer's receive queue. Returns
  // false, having kept the frame, when that queue is full.
  bool deliver_to_peer(const Frame& f);
  void free_frame(const Frame& f) noexcept;
  void free_queue(std::deque<Frame>& q) noexcept;

  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  LinkInfo info_;
  std::size_t limit_;
  MemoryLink* peer_ = nullptr;
  std::deque<Frame> rx_;
  std::deque<Frame> tx_;
  LinkCounters counters_;
};

}  // namespace usnet::link
