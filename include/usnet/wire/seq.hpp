// TCP sequence numbers (RFC 9293 3.4): 32-bit counters that wrap. A strong
// type so that a sequence number is never compared with a plain integer, and
// never compared as an integer: 0xffffffff is *before* 0 here.
//
// Ordering is modular: a < b iff (int32_t)(a - b) < 0. It is only meaningful
// between numbers less than 2^31 apart, which TCP guarantees for every pair it
// compares (windows are at most 2^30 bytes, RFC 7323 2.3). It is NOT a total
// order: a < b and b < c does not give a < c when the three span more than
// 2^31, so never sort or key a map by SeqNum. Two numbers exactly 2^31 apart
// are unordered (operator<=> says std::partial_ordering::unordered; <, <=, >,
// >= are all false), so that a < b and b < a can never both hold.
#pragma once

#include <compare>
#include <cstdint>
#include <ostream>

namespace usnet::wire {

class SeqNum {
 public:
  constexpr SeqNum() noexcept = default;
  constexpr explicit SeqNum(std::uint32_t v) noexcept : v_(v) {}

  constexpr std::uint32_t raw() const noexcept { return v_; }

  // Moving along the sequence space wraps modulo 2^32 (RFC 9293 3.4).
  constexpr SeqNum operator+(std::uint32_t n) const noexcept { return SeqNum(v_ + n); }
  constexpr SeqNum operator-(std::uint32_t n) const noexcept { return SeqNum(v_ - n); }
  constexpr SeqNum& operator+=(std::uint32_t n) noexcept {
    v_ += n;
    return *this;
  }
  constexpr SeqNum& operator-=(std::uint32_t n) noexcept {
    v_ -= n;
    return *this;
  }

  // Bytes from `from` forward to `to`, modulo 2^32 (always the forward way
  // round: distance(1, 0) is 0xffffffff).
  friend constexpr std::uint32_t distance(SeqNum from, SeqNum to) noexcept { return to.v_ - from.v_; }
  // The same as a signed number: negative when `to` is before `from`.
  // Exactly 2^31 apart gives INT32_MIN.
  friend constexpr std::int32_t signed_distance(SeqNum from, SeqNum to) noexcept {
    return static_cast<std::int32_t>(to.v_ - from.v_);
  }

  friend constexpr bool operator==(SeqNum, SeqNum) noexcept = default;
  // RFC 9293 3.4: a < b iff (int32_t)(a - b) < 0, except that numbers exactly
  // 2^31 apart are unordered (see the file comment).
  friend constexpr std::partial_ordering operator<=>(SeqNum a, SeqNum b) noexcept {
    const auto d = static_cast<std::int32_t>(a.v_ - b.v_);
    if (d == 0) return std::partial_ordering::equivalent;
    if (d == INT32_MIN) return std::partial_ordering::unordered;
    return d < 0 ? std::partial_ordering::less : std::partial_ordering::greater;
  }

  friend std::ostream& operator<<(std::ostream& os, SeqNum s) { return os << s.v_; }

 private:
  std::uint32_t v_ = 0;
};

// Named forms of the comparisons, for code that reads better with words.
constexpr bool seq_lt(SeqNum a, SeqNum b) noexcept { return a < b; }
constexpr bool seq_le(SeqNum a, SeqNum b) noexcept { return a <= b; }
constexpr bool seq_gt(SeqNum a, SeqNum b) noexcept { return a > b; }
constexpr bool seq_ge(SeqNum a, SeqNum b) noexcept { return a >= b; }

// The later / earlier of two numbers in modular order. For unordered pairs
// (2^31 apart) these return `a`.
constexpr SeqNum seq_max(SeqNum a, SeqNum b) noexcept { return b > a ? b : a; }
constexpr SeqNum seq_min(SeqNum a, SeqNum b) noexcept { return b < a ? b : a; }

// RFC 9293 3.4 / 3.10.7.4: start <= seq < start + len, modulo 2^32. Counts
// forward from `start`, so it is exact for any len (a window that straddles
// the wrap works; len 0 contains nothing).
constexpr bool in_window(SeqNum seq, SeqNum start, std::uint32_t len) noexcept {
  return distance(start, seq) < len;
}

// Whether [a, a+a_len) and [b, b+b_len) share at least one number. Two
// non-empty ranges overlap iff one of them starts inside the other; an empty
// range overlaps nothing.
constexpr bool ranges_overlap(SeqNum a, std::uint32_t a_len, SeqNum b, std::uint32_t b_len) noexcept {
  if (a_len == 0 || b_len == 0) return false;
  return in_window(b, a, a_len) || in_window(a, b, b_len);
}

}  // namespace usnet::wire
