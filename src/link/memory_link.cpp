#include "usnet/link/memory_link.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace usnet::link {

MemoryLink::MemoryLink(mem::PacketPool& pool, mem::OwnerId owner, LinkInfo info, std::size_t queue_limit)
    : pool_(&pool), owner_(owner), info_(std::move(info)), limit_(std::max<std::size_t>(queue_limit, 1)) {}

MemoryLink::~MemoryLink() {
  disconnect();
  free_queue(rx_);
  free_queue(tx_);
}

void MemoryLink::connect(MemoryLink& a, MemoryLink& b) {
  // Buffers move between owners of one pool; two pools cannot share an index.
  if (a.pool_ != b.pool_ || &a == &b) {
    std::fprintf(stderr, "MemoryLink::connect: %s\n",
                 &a == &b ? "a link cannot be connected to itself" : "the two links use different pools");
    std::abort();
  }
  a.disconnect();
  b.disconnect();
  a.peer_ = &b;
  b.peer_ = &a;
}

void MemoryLink::disconnect() noexcept {
  if (peer_ != nullptr) {
    peer_->peer_ = nullptr;
    peer_ = nullptr;
  }
}

bool MemoryLink::inject_rx(std::span<const std::byte> frame) {
  if (frame.size() > pool_->buffer_size()) {
    ++counters_.rx_too_long;
    return false;
  }
  if (rx_.size() >= limit_) {
    ++counters_.rx_no_buffer;  // no free receive descriptor
    return false;
  }
  auto index = pool_->alloc(owner_);
  if (!index) {
    ++counters_.rx_no_buffer;
    return false;
  }
  if (!frame.empty()) std::memcpy(pool_->buffer(*index).data(), frame.data(), frame.size());
  rx_.push_back(Frame{*index, static_cast<std::uint32_t>(frame.size()), 0, 0});
  return true;
}

std::optional<std::vector<std::byte>> MemoryLink::pop_tx() {
  if (tx_.empty()) return std::nullopt;
  const Frame f = tx_.front();
  tx_.pop_front();
  auto bytes = pool_->buffer(f.buffer).subspan(f.offset, f.length);  // checked in tx_burst
  std::vector<std::byte> out(bytes.begin(), bytes.end());
  free_frame(f);
  return out;
}

std::size_t MemoryLink::rx_burst(std::span<Frame> out, Nanos /*now*/) {
  std::size_t n = 0;
  while (n < out.size() && !rx_.empty()) {
    out[n] = rx_.front();
    rx_.pop_front();
    ++counters_.rx_frames;
    counters_.rx_bytes += out[n].length;
    ++n;
  }
  return n;
}

std::size_t MemoryLink::tx_burst(std::span<const Frame> frames, Nanos /*now*/) {
  std::size_t taken = 0;
  for (const Frame& f : frames) {
    const auto buf = pool_->buffer(f.buffer);
    if (buf.empty() || std::size_t{f.offset} + f.length > buf.size()) {
      // A stack bug, not a full queue: take it so the caller does not retry forever.
      ++counters_.tx_errors;
      free_frame(f);
      ++taken;
      continue;
    }
    if (peer_ != nullptr) {
      if (!deliver_to_peer(f)) break;
    } else {
      if (tx_.size() >= limit_) break;
      tx_.push_back(f);
    }
    ++counters_.tx_frames;
    counters_.tx_bytes += f.length;
    ++taken;
  }
  if (taken < frames.size()) ++counters_.tx_full;
  return taken;
}

bool MemoryLink::deliver_to_peer(const Frame& f) {
  if (peer_->rx_.size() >= peer_->limit_) return false;
  if (pool_->transfer(owner_, peer_->owner_, f.buffer)) {
    // The peer's owner is at its ceiling: the frame was sent but the peer
    // had no buffer to receive it into.
    ++peer_->counters_.rx_no_buffer;
    free_frame(f);
    return true;
  }
  Frame received = f;
  // A link that offloads checksums (two usnet stacks trusting each other)
  // tells the receiver they need no check; otherwise the receiver checks.
  received.flags = (info_.offloads & Offload::kNoChecksums) != 0 ? FrameFlag::kChecksumsVerified : 0;
  peer_->rx_.push_back(received);
  return true;
}

void MemoryLink::free_frame(const Frame& f) noexcept { (void)pool_->free(owner_, f.buffer); }

void MemoryLink::free_queue(std::deque<Frame>& q) noexcept {
  for (const Frame& f : q) free_frame(f);
  q.clear();
}

}  // namespace usnet::link
