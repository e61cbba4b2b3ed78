// A byte queue made of packet-pool buffers: a TCP connection's send and
// receive buffers. Bytes go in at the tail and leave from the head; any
// range of the held bytes can be read in place as a list of pieces.
//
// Pieces. The chain is a sequence of pieces, each one contiguous range of
// one pool buffer. Bytes come in two ways:
//   - push() copies: into the chain's own open tail buffer while it has room,
//     then into newly allocated buffers, filled to the end;
//   - push_buffer() appends a buffer someone filled (a received frame, an
//     application's send buffer) as a piece without a copy. The chain owns
//     the buffer from then on whatever the outcome: a piece smaller than
//     `collapse_below` is copied into the open tail instead and the buffer
//     freed, so a peer (or an application) sending one byte per segment pins
//     a few buffers, not one 2 KiB buffer per byte (ROBUSTNESS.md 11).
//     Except into an empty chain: there a small piece is kept as it is
//     (nothing to collapse it into yet; the usual request or answer then
//     costs no copy and no allocation), and what follows it is collapsed.
// So every piece except the open tails and one small piece at the head
// holds at least collapse_below bytes, and a full chain holds at most
// max_pieces() pieces: 2 * capacity / collapse_below + 4 (an open tail may
// sit between two kept buffers).
//
// Capacity counts bytes (what TCP advertises and accepts); the pool is the
// other bound: push() and a collapsing push_buffer() take less, or nothing,
// when the pool refuses a buffer (ENOBUFS), and say so in what they return.
//
// Zero copy out. pop_piece() hands the head piece's buffer to the caller
// (who frees it to the pool with the chain's owner when done); pop() copies.
//
// Cost. Pieces live in a ring allocated at the first push, grown by
// doubling up to max_pieces(); locating an offset walks from a remembered
// position, so a sender reading the chain front to back pays O(1) a read.
// Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "usnet/mem/pool.hpp"

namespace usnet::tcp {

class BufferChain {
 public:
  struct Piece {
    mem::BufIndex buffer = 0;
    std::uint32_t offset = 0;  // where the bytes start in the buffer
    std::uint32_t len = 0;
  };

  // `pool` may be null only with capacity 0 (a chain that holds nothing).
  // collapse_below is clamped to [1, the pool's buffer size].
  BufferChain(mem::PacketPool* pool, mem::OwnerId owner, std::size_t capacity, std::size_t collapse_below);
  ~BufferChain() { clear(); }
  BufferChain(const BufferChain&) = delete;
  BufferChain& operator=(const BufferChain&) = delete;

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t free_space() const noexcept { return capacity_ - size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t pieces() const noexcept { return count_; }
  std::size_t max_pieces() const noexcept { return max_pieces_; }
  std::size_t collapse_below() const noexcept { return collapse_below_; }

  // Copies as much of `in` as capacity and the pool allow; returns how much.
  std::size_t push(std::span<const std::byte> in);
  // Appends [offset, offset + len) of `buffer` (held by the chain's owner),
  // kept or copied as above; the buffer is the chain's either way. Returns
  // the bytes taken: len, or less when capacity or the pool ran out (the
  // rest is dropped).
  std::size_t push_buffer(mem::BufIndex buffer, std::size_t offset, std::size_t len);
  // Appends the whole range as a piece, without a copy, if it is at least
  // collapse_below bytes and fits; then the buffer is the chain's. False
  // (and the buffer stays the caller's) otherwise.
  bool append(mem::BufIndex buffer, std::size_t offset, std::size_t len);

  // Bytes [offset, offset + len) of those held, clamped to what is held, as
  // pieces written to the front of `out`; returns how many. Stops early
  // when `out` is full (the bytes returned are then fewer than asked).
  std::size_t peek(std::size_t offset, std::size_t len, std::span<std::span<const std::byte>> out) const;

  // Copies up to out.size() bytes from the head and consumes them.
  std::size_t pop(std::span<std::byte> out);
  // Drops n bytes from the head (buffers emptied go back to the pool).
  void consume(std::size_t n);
  // The head piece leaves the chain: its buffer is the caller's.
  std::optional<Piece> pop_piece();
  // Frees every buffer.
  void clear() noexcept;
  // A new capacity in bytes, never below what is held (a chain holding more
  // keeps its bytes and takes no more until it is below the new size).
  void set_capacity(std::size_t capacity) noexcept;

 private:
  struct Entry {
    Piece piece;
    std::uint64_t start = 0;  // stream position of the piece's first byte
    bool open = false;        // the chain's own buffer: push() may append behind it
  };
  Entry& at(std::size_t i) noexcept { return ring_[(head_ + i) & (ring_.size() - 1)]; }
  const Entry& at(std::size_t i) const noexcept { return ring_[(head_ + i) & (ring_.size() - 1)]; }
  bool add_entry(const Entry& e);
  // Appends the range as a piece as it is, if it is not empty and fits.
  bool add_piece(mem::BufIndex buffer, std::size_t offset, std::size_t len);
  void drop_head() noexcept;
  // Index of the piece holding stream position `pos` (pos < end).
  std::size_t locate(std::uint64_t pos) const noexcept;

  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  std::size_t capacity_;
  std::size_t collapse_below_;
  std::size_t max_pieces_;
  std::size_t buffer_size_;
  std::vector<Entry> ring_;  // size 0 or a power of two
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t size_ = 0;
  std::uint64_t consumed_ = 0;      // stream position of the head byte
  std::uint64_t dropped_ = 0;       // pieces that have left the head, ever
  mutable std::uint64_t hint_ = 0;  // locate()'s memory: the piece found last (dropped_ + index)
};

}  // namespace usnet::tcp
