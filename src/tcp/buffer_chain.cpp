#include "usnet/tcp/buffer_chain.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace usnet::tcp {

BufferChain::BufferChain(mem::PacketPool* pool, mem::OwnerId owner, std::size_t capacity,
                         std::size_t collapse_below)
    : pool_(pool),
      owner_(owner),
      capacity_(pool != nullptr ? capacity : 0),
      buffer_size_(pool != nullptr ? pool->buffer_size() : 1) {
  collapse_below_ = std::clamp<std::size_t>(collapse_below, 1, buffer_size_);
  max_pieces_ = 2 * (capacity_ / collapse_below_) + 4;
}

bool BufferChain::add_entry(const Entry& e) {
  if (count_ >= max_pieces_) return false;
  if (count_ == ring_.size()) {
    const std::size_t grown = std::max<std::size_t>(8, ring_.size() * 2);
    std::vector<Entry> next(std::min(grown, std::bit_ceil(max_pieces_)));
    for (std::size_t i = 0; i < count_; ++i) next[i] = at(i);
    ring_ = std::move(next);
    head_ = 0;
  }
  ring_[(head_ + count_) & (ring_.size() - 1)] = e;
  ++count_;
  return true;
}

void BufferChain::drop_head() noexcept {
  head_ = (head_ + 1) & (ring_.size() - 1);
  --count_;
  ++dropped_;
}

std::size_t BufferChain::push(std::span<const std::byte> in) {
  std::size_t total = 0;
  while (!in.empty() && free_space() > 0) {
    Entry* tail = count_ > 0 ? &at(count_ - 1) : nullptr;
    const std::size_t end = tail != nullptr ? tail->piece.offset + tail->piece.len : buffer_size_;
    if (tail == nullptr || !tail->open || end >= buffer_size_) {
      auto b = pool_->alloc(owner_);
      if (!b) break;
      if (!add_entry(Entry{Piece{*b, 0, 0}, consumed_ + size_, true})) {
        (void)pool_->free(owner_, *b);
        break;
      }
      continue;
    }
    const std::size_t n = std::min({in.size(), buffer_size_ - end, free_space()});
    std::memcpy(pool_->buffer(tail->piece.buffer).data() + end, in.data(), n);
    tail->piece.len += static_cast<std::uint32_t>(n);
    size_ += n;
    total += n;
    in = in.subspan(n);
  }
  return total;
}

bool BufferChain::add_piece(mem::BufIndex buffer, std::size_t offset, std::size_t len) {
  if (len == 0 || len > free_space() ||
      !add_entry(Entry{Piece{buffer, static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(len)},
                       consumed_ + size_, false})) {
    return false;
  }
  size_ += len;
  return true;
}

bool BufferChain::append(mem::BufIndex buffer, std::size_t offset, std::size_t len) {
  return len >= collapse_below_ && add_piece(buffer, offset, len);
}

std::size_t BufferChain::push_buffer(mem::BufIndex buffer, std::size_t offset, std::size_t len) {
  const std::size_t take = std::min(len, free_space());
  // A small piece into an empty chain is kept as it is too: nothing to
  // collapse it into yet (a request, an answer: no copy, no allocation).
  // What comes behind it is collapsed, so there is at most one such piece.
  if ((take >= collapse_below_ || count_ == 0) && add_piece(buffer, offset, take)) return take;
  const std::size_t n = take > 0 ? push(pool_->buffer(buffer).subspan(offset, take)) : 0;
  (void)pool_->free(owner_, buffer);
  return n;
}

std::size_t BufferChain::locate(std::uint64_t pos) const noexcept {
  std::size_t i = 0;
  if (hint_ >= dropped_ && hint_ - dropped_ < count_ && at(hint_ - dropped_).start <= pos)
    i = hint_ - dropped_;
  while (i + 1 < count_ && at(i).start + at(i).piece.len <= pos) ++i;
  hint_ = dropped_ + i;
  return i;
}

std::size_t BufferChain::peek(std::size_t offset, std::size_t len,
                              std::span<std::span<const std::byte>> out) const {
  if (offset >= size_ || out.empty()) return 0;
  len = std::min(len, size_ - offset);
  std::uint64_t pos = consumed_ + offset;
  std::size_t i = locate(pos);
  std::size_t k = 0;
  while (len > 0 && k < out.size() && i < count_) {
    const Entry& e = at(i);
    const std::size_t skip = pos - e.start;
    const std::size_t n = std::min<std::size_t>(len, e.piece.len - skip);
    out[k++] = std::span<const std::byte>(pool_->buffer(e.piece.buffer).data() + e.piece.offset + skip, n);
    pos += n;
    len -= n;
    ++i;
  }
  return k;
}

std::size_t BufferChain::pop(std::span<std::byte> out) {
  std::size_t total = 0;
  while (total < out.size() && count_ > 0) {
    const Entry& e = at(0);
    const std::size_t n = std::min<std::size_t>(out.size() - total, e.piece.len);
    std::memcpy(out.data() + total, pool_->buffer(e.piece.buffer).data() + e.piece.offset, n);
    total += n;
    consume(n);
  }
  return total;
}

void BufferChain::consume(std::size_t n) {
  n = std::min(n, size_);
  while (n > 0) {
    Entry& e = at(0);
    const std::size_t k = std::min<std::size_t>(n, e.piece.len);
    e.piece.offset += static_cast<std::uint32_t>(k);
    e.piece.len -= static_cast<std::uint32_t>(k);
    e.start += k;
    size_ -= k;
    consumed_ += k;
    n -= k;
    if (e.piece.len == 0) {
      (void)pool_->free(owner_, e.piece.buffer);
      drop_head();
    }
  }
}

std::optional<BufferChain::Piece> BufferChain::pop_piece() {
  if (count_ == 0) return std::nullopt;
  const Piece p = at(0).piece;
  size_ -= p.len;
  consumed_ += p.len;
  drop_head();
  return p;
}

void BufferChain::set_capacity(std::size_t capacity) noexcept {
  if (pool_ == nullptr) return;
  capacity_ = std::max(capacity, size_);
  max_pieces_ = 2 * (capacity_ / collapse_below_) + 4;
}

void BufferChain::clear() noexcept {
  while (count_ > 0) {
    (void)pool_->free(owner_, at(0).piece.buffer);
    consumed_ += at(0).piece.len;
    drop_head();
  }
  size_ = 0;
}

}  // namespace usnet::tcp
