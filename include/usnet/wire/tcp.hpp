// TCP segments (RFC 9293 3.1) and their options (RFC 9293 3.2, RFC 7323
// window scale and timestamps, RFC 2018 SACK). Same two levels as udp.hpp:
// TcpView checks the lengths once, TcpRepr is the validated value.
//
// The wire layer only checks the format. What an option means in a given
// state (MSS or window scale outside a SYN, an urgent pointer past the data,
// SACK blocks outside the window) is the TCP layer's business.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/checksum.hpp"
#include "usnet/wire/error.hpp"
#include "usnet/wire/seq.hpp"
#include "usnet/wire/udp.hpp"  // PseudoHeader

namespace usnet::wire {

// The eight control bits (RFC 9293 3.1; ECE and CWR from RFC 3168 6.1).
struct TcpFlags {
  static constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20,
                                kEce = 0x40, kCwr = 0x80;
  std::uint8_t bits = 0;

  constexpr bool fin() const noexcept { return (bits & kFin) != 0; }
  constexpr bool syn() const noexcept { return (bits & kSyn) != 0; }
  constexpr bool rst() const noexcept { return (bits & kRst) != 0; }
  constexpr bool psh() const noexcept { return (bits & kPsh) != 0; }
  constexpr bool ack() const noexcept { return (bits & kAck) != 0; }
  constexpr bool urg() const noexcept { return (bits & kUrg) != 0; }
  constexpr bool ece() const noexcept { return (bits & kEce) != 0; }
  constexpr bool cwr() const noexcept { return (bits & kCwr) != 0; }
  // True if every bit of `mask` is set.
  constexpr bool has(std::uint8_t mask) const noexcept { return (bits & mask) == mask; }

  friend constexpr TcpFlags operator|(TcpFlags a, TcpFlags b) noexcept {
    return {static_cast<std::uint8_t>(a.bits | b.bits)};
  }
  friend constexpr bool operator==(TcpFlags, TcpFlags) noexcept = default;

  // Letters in bit order, as scapy prints them: SYN+ACK is "SA", none is "".
  std::string to_string() const;
  // tcpdump's form: SYN+ACK is "[S.]", PSH+ACK "[P.]", none "[none]".
  std::string to_tcpdump() const;
};

class TcpView {
 public:
  static constexpr std::size_t kHeaderLen = 20;      // without options
  static constexpr std::size_t kMaxHeaderLen = 60;   // data offset 15
  static constexpr std::size_t kMaxOptionsLen = 40;  // kMaxHeaderLen - kHeaderLen
  static constexpr std::uint8_t kMinDataOffset = 5;  // in 32-bit words
  static constexpr std::uint8_t kProtocol = 6;
  struct Off {  // field offsets
    static constexpr std::size_t kSrcPort = 0, kDstPort = 2, kSeq = 4, kAck = 8, kDataOffset = 12,
                                 kFlags = 13, kWindow = 14, kChecksum = 16, kUrgent = 18, kOptions = 20;
  };

  // Checks: at least 20 bytes (Truncated); data offset >= 5 and data offset
  // * 4 <= the bytes given (BadDataOffset). TCP has no length field: the
  // segment is all of `bytes` (the IP layer has already cut it to size).
  static ParseResult<TcpView> make(std::span<const std::byte> bytes) noexcept;

  std::uint16_t src_port() const noexcept { return load_be16(b_.data() + Off::kSrcPort); }
  std::uint16_t dst_port() const noexcept { return load_be16(b_.data() + Off::kDstPort); }
  SeqNum seq() const noexcept { return SeqNum(load_be32(b_.data() + Off::kSeq)); }
  SeqNum ack() const noexcept { return SeqNum(load_be32(b_.data() + Off::kAck)); }
  // Header length in 32-bit words (5..15).
  std::uint8_t data_offset() const noexcept { return load_u8(b_.data() + Off::kDataOffset) >> 4; }
  std::size_t header_len() const noexcept { return std::size_t{data_offset()} * 4; }
  // The four bits between data offset and the flags (reserved, RFC 9293 3.1;
  // the lowest was RFC 3540's NS, now historic). Not kept in TcpRepr.
  std::uint8_t reserved() const noexcept { return load_u8(b_.data() + Off::kDataOffset) & 0x0f; }
  TcpFlags flags() const noexcept { return {load_u8(b_.data() + Off::kFlags)}; }
  std::uint16_t window() const noexcept { return load_be16(b_.data() + Off::kWindow); }
  std::uint16_t checksum() const noexcept { return load_be16(b_.data() + Off::kChecksum); }
  std::uint16_t urgent_pointer() const noexcept { return load_be16(b_.data() + Off::kUrgent); }
  std::span<const std::byte> options() const noexcept {
    return b_.subspan(Off::kOptions, header_len() - kHeaderLen);
  }
  std::span<const std::byte> payload() const noexcept { return b_.subspan(header_len()); }
  std::span<const std::byte> bytes() const noexcept { return b_; }
  // RFC 9293 3.1: the checksum over the pseudo-header and the whole segment.
  // Inline, with one ones_sum() over the segment: this runs per segment and
  // the Checksum accumulator's calls cost more than a short sum.
  bool checksum_ok(const PseudoHeader& ph) const noexcept {
    return ones_add(ph.sum(kProtocol, static_cast<std::uint32_t>(b_.size())), ones_sum(b_)) == 0xffff;
  }

 private:
  explicit TcpView(std::span<const std::byte> b) : b_(b) {}
  std::span<const std::byte> b_;
};

struct TcpTimestamps {  // RFC 7323 3.2
  std::uint32_t tsval = 0;
  std::uint32_t tsecr = 0;
  friend bool operator==(const TcpTimestamps&, const TcpTimestamps&) = default;
};

struct SackBlock {  // RFC 2018 3: [left, right)
  SeqNum left;
  SeqNum right;
  friend bool operator==(const SackBlock&, const SackBlock&) = default;
};

// Option kinds (IANA "TCP Option Kind Numbers").
namespace tcp_option {
inline constexpr std::uint8_t kEnd = 0, kNop = 1, kMss = 2, kWindowScale = 3, kSackPermitted = 4, kSack = 5,
                              kTimestamps = 8;
inline constexpr std::uint8_t kMssLen = 4, kWindowScaleLen = 3, kSackPermittedLen = 2, kTimestampsLen = 10,
                              kSackBaseLen = 2, kSackBlockLen = 8;
}  // namespace tcp_option

// The options TCP understands, decoded. Parsing (RFC 9293 3.2):
//   - EOL ends the list; the rest of the options area is ignored.
//   - NOP is one byte. Every other option has a length byte counting kind
//     and length: below 2, or running past the area -> BadOptionLength.
//   - A known option with the wrong length -> BadOption (MSS 4, WS 3,
//     SACK-permitted 2, timestamps 10, SACK 2 + 8n with 1 <= n <= 4).
//   - Unknown kinds with a valid length are skipped and counted.
//   - A repeated option replaces the earlier one (as Linux does).
//   - RFC 7323 2.3: a window scale above 14 is used as 14; the value sent is
//     kept in window_scale_over_limit.
// Emitting writes the options in the order and padding Linux uses, each
// group on a 32-bit boundary:
//   MSS | SACK-perm TS (or NOP NOP TS) | NOP NOP SACK-perm (if no TS)
//   | NOP WS | NOP NOP SACK blocks
// so a Linux SYN is "MSS, SACK-perm, TS, NOP, WS" (without timestamps "MSS,
// NOP, NOP, SACK-perm, NOP, WS"), a data segment "NOP NOP TS" and a SACK
// "NOP NOP TS NOP NOP SACK". Unknown options are not written.
struct TcpOptions {
  static constexpr std::size_t kMaxSackBlocks = 4;
  static constexpr std::uint8_t kMaxWindowScale = 14;  // RFC 7323 2.3

  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> window_scale;  // shift count, <= 14
  bool sack_permitted = false;
  std::optional<TcpTimestamps> timestamps;
  std::array<SackBlock, kMaxSackBlocks> sack_blocks{};  // the first sack_count are used
  std::uint8_t sack_count = 0;

  // Facts about the parsed list that emit() does not reproduce; both are 0
  // in anything parsed from emit()'s output.
  std::uint8_t unknown_count = 0;            // unknown options skipped
  std::uint8_t window_scale_over_limit = 0;  // the shift sent when > 14 (then window_scale is 14), else 0

  // The blocks in use. sack_count is a public field, so a caller can set it
  // past the array: the span is clamped to kMaxSackBlocks (emit() refuses
  // such a count; nothing reads beyond the array).
  std::span<const SackBlock> sacks() const noexcept {
    return std::span<const SackBlock>(sack_blocks)
        .first(sack_count < kMaxSackBlocks ? sack_count : kMaxSackBlocks);
  }
  // Appends a SACK block; false if kMaxSackBlocks are already held.
  bool add_sack(SackBlock b) noexcept;

  // Parses an options area (TcpView::options()).
  static ParseResult<TcpOptions> parse(std::span<const std::byte> area) noexcept;
  // Bytes emit() writes: a multiple of 4. May exceed kMaxOptionsLen, in
  // which case emit() refuses.
  std::size_t buffer_len() const noexcept;
  // Writes the options into out[0..buffer_len()). BadOption if they do not
  // fit in 40 bytes (e.g. timestamps + 4 SACK blocks), if sack_count > 4 or
  // window_scale > 14; NoSpace if `out` is too small.
  ParseResult<std::size_t> emit(std::span<std::byte> out) const noexcept;

  // Compares only the SACK blocks in use.
  friend bool operator==(const TcpOptions& a, const TcpOptions& b) noexcept;
};

struct TcpRepr {
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  SeqNum seq;
  SeqNum ack;  // kept as sent even without the ACK flag
  TcpFlags flags;
  std::uint16_t window = 0;  // unscaled, unsigned (RFC 9293 3.1)
  // Kept as sent: a pointer past the payload is legal on the wire and is
  // for the TCP layer to judge (RFC 9293 3.8.5).
  std::uint16_t urgent = 0;
  TcpOptions options;
  std::uint32_t payload_len = 0;

  // Parses the options (their errors pass through) and verifies the
  // checksum when mode == Verify (BadChecksum).
  static ParseResult<TcpRepr> parse(const TcpView& v, const PseudoHeader& ph,
                                    ChecksumMode mode = ChecksumMode::Verify) noexcept;
  // Header bytes emit() writes: 20 + options.buffer_len().
  std::size_t buffer_len() const noexcept { return TcpView::kHeaderLen + options.buffer_len(); }
  // Writes the header and options into out[0..buffer_len()) and returns that
  // length. The payload must already be in out[buffer_len()..+payload_len)
  // when the checksum is computed (mode == Verify); with Ignore the checksum
  // field is left zero. Errors: options as TcpOptions::emit; NoSpace if
  // `out` is too small; BadLength if the segment is too long for an IPv4
  // pseudo-header (65535 bytes).
  ParseResult<std::size_t> emit(std::span<std::byte> out, const PseudoHeader& ph,
                                ChecksumMode mode = ChecksumMode::Verify) const noexcept;

  friend bool operator==(const TcpRepr&, const TcpRepr&) = default;
};

}  // namespace usnet::wire
