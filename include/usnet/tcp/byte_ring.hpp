// A fixed-capacity ring of bytes: the copying send and receive buffers of a
// TCP connection. Bytes are appended at the tail and consumed from the head;
// any range of the held bytes can be read in place as at most two spans
// (the ring may wrap). Capacity is fixed at construction; the memory is
// allocated (uninitialized) by the first push, so a connection that never
// carries data (a half-open one in a SYN flood) costs none.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <utility>

namespace usnet::tcp {

class ByteRing {
 public:
  explicit ByteRing(std::size_t capacity) : capacity_(capacity) {}

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t free_space() const noexcept { return capacity_ - size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Appends as much of `in` as fits; returns how much.
  std::size_t push(std::span<const std::byte> in) {
    const std::size_t n = std::min(in.size(), free_space());
    if (n > 0 && !buf_) buf_.reset(new std::byte[capacity_]);  // NOLINT: uninitialized on purpose
    std::size_t tail = (head_ + size_) % cap();
    const std::size_t first = std::min(n, cap() - tail);
    if (first > 0) std::memcpy(buf_.get() + tail, in.data(), first);
    if (n > first) std::memcpy(buf_.get(), in.data() + first, n - first);
    size_ += n;
    return n;
  }

  // Bytes [offset, offset + len) of those held, clamped to what is held, as
  // one or two spans.
  std::pair<std::span<const std::byte>, std::span<const std::byte>> peek(std::size_t offset,
                                                                         std::size_t len) const noexcept {
    if (offset >= size_) return {};
    len = std::min(len, size_ - offset);
    const std::size_t start = (head_ + offset) % cap();
    const std::size_t first = std::min(len, cap() - start);
    return {std::span<const std::byte>(buf_.get() + start, first),
            std::span<const std::byte>(buf_.get(), len - first)};
  }

  // Copies up to out.size() bytes from the head into `out` and consumes them.
  std::size_t pop(std::span<std::byte> out) noexcept {
    auto [a, b] = peek(0, out.size());
    if (!a.empty()) std::memcpy(out.data(), a.data(), a.size());
    if (!b.empty()) std::memcpy(out.data() + a.size(), b.data(), b.size());
    consume(a.size() + b.size());
    return a.size() + b.size();
  }

  void consume(std::size_t n) noexcept {
    n = std::min(n, size_);
    if (cap() > 0) head_ = (head_ + n) % cap();
    size_ -= n;
    if (size_ == 0) head_ = 0;
  }

  void clear() noexcept {
    head_ = 0;
    size_ = 0;
  }

 private:
  std::size_t cap() const noexcept { return capacity_ == 0 ? 1 : capacity_; }
  std::size_t capacity_;
  std::unique_ptr<std::byte[]> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace usnet::tcp
