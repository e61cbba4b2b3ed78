#include "usnet/wire/tcp.hpp"

#include <algorithm>

namespace usnet::wire {

namespace {

struct FlagName {
  std::uint8_t bit;
  char scapy;
  char tcpdump;
};

// Bit order for scapy's letters; tcpdump walks the same order but prints
// ACK as '.' and CWR as 'W'.
constexpr std::array<FlagName, 8> kFlagNames{{
    {TcpFlags::kFin, 'F', 'F'},
    {TcpFlags::kSyn, 'S', 'S'},
    {TcpFlags::kRst, 'R', 'R'},
    {TcpFlags::kPsh, 'P', 'P'},
    {TcpFlags::kAck, 'A', '.'},
    {TcpFlags::kUrg, 'U', 'U'},
    {TcpFlags::kEce, 'E', 'E'},
    {TcpFlags::kCwr, 'C', 'W'},
}};

// Sizes of the option groups emit() writes, each padded to 32 bits.
constexpr std::size_t kMssGroup = 4;          // MSS
constexpr std::size_t kTimestampsGroup = 12;  // SACK-perm TS, or NOP NOP TS
constexpr std::size_t kSackPermGroup = 4;     // NOP NOP SACK-perm
constexpr std::size_t kWindowScaleGroup = 4;  // NOP WS
constexpr std::size_t kSackGroupBase = 4;     // NOP NOP kind len, then 8 per block

}  // namespace

std::string TcpFlags::to_string() const {
  std::string s;
  for (const auto& f : kFlagNames) {
    if ((bits & f.bit) != 0) s += f.scapy;
  }
  return s;
}

std::string TcpFlags::to_tcpdump() const {
  if (bits == 0) return "[none]";
  std::string s = "[";
  for (const auto& f : kFlagNames) {
    if ((bits & f.bit) != 0) s += f.tcpdump;
  }
  return s + "]";
}

ParseResult<TcpView> TcpView::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  const std::uint8_t offset = load_u8(bytes.data() + Off::kDataOffset) >> 4;
  // RFC 9293 3.1: the header is at least 5 words and must fit in the segment.
  if (offset < kMinDataOffset) return unexpected(ParseError::BadDataOffset);
  if (std::size_t{offset} * 4 > bytes.size()) return unexpected(ParseError::BadDataOffset);
  return TcpView(bytes);
}

bool TcpOptions::add_sack(SackBlock b) noexcept {
  if (sack_count >= kMaxSackBlocks) return false;
  sack_blocks[sack_count++] = b;
  return true;
}

namespace {

// The body of TcpOptions::parse, writing into `o` (default-constructed) so
// that TcpRepr::parse can fill its own options in place instead of building
// a TcpOptions and copying it twice (into the result, then into the repr).
ParseResult<void> parse_options_into(std::span<const std::byte> area, TcpOptions& o) noexcept {
  using namespace tcp_option;
  // Nearly every data segment from Linux (and most stacks) carries exactly
  // NOP NOP TS (RFC 7323 appendix A layout): recognise it in one compare, as
  // Linux's tcp_parse_aligned_timestamp() does. The result is the one the
  // loop below gives for those 12 bytes.
  constexpr std::uint32_t kNopNopTimestamps = (std::uint32_t{kNop} << 24) | (std::uint32_t{kNop} << 16) |
                                              (std::uint32_t{kTimestamps} << 8) | kTimestampsLen;
  constexpr std::size_t kNopNopTimestampsLen = 2 + kTimestampsLen;
  if (area.size() == kNopNopTimestampsLen && load_be32(area.data()) == kNopNopTimestamps) {
    o.timestamps = TcpTimestamps{load_be32(area.data() + 4), load_be32(area.data() + 8)};
    return {};
  }
  std::size_t i = 0;
  while (i < area.size()) {
    const std::uint8_t kind = load_u8(area.data() + i);
    if (kind == kEnd) break;  // RFC 9293 3.2: the rest is padding
    if (kind == kNop) {
      ++i;
      continue;
    }
    // Every other kind carries a length counting the kind and length bytes.
    if (area.size() - i < 2) return unexpected(ParseError::BadOptionLength);
    const std::uint8_t len = load_u8(area.data() + i + 1);
    if (len < 2 || len > area.size() - i) return unexpected(ParseError::BadOptionLength);
    const std::byte* body = area.data() + i + 2;
    switch (kind) {
      case kMss:  // RFC 9293 3.2
        if (len != kMssLen) return unexpected(ParseError::BadOption);
        o.mss = load_be16(body);
        break;
      case kWindowScale: {  // RFC 7323 2.2
        if (len != kWindowScaleLen) return unexpected(ParseError::BadOption);
        const std::uint8_t shift = load_u8(body);
        // RFC 7323 2.3: a shift above 14 is used as 14 (and may be logged).
        o.window_scale = std::min(shift, TcpOptions::kMaxWindowScale);
        o.window_scale_over_limit = shift > TcpOptions::kMaxWindowScale ? shift : 0;
        break;
      }
      case kSackPermitted:  // RFC 2018 2
        if (len != kSackPermittedLen) return unexpected(ParseError::BadOption);
        o.sack_permitted = true;
        break;
      case kSack: {  // RFC 2018 3
        const std::size_t blocks = (len - kSackBaseLen) / kSackBlockLen;
        if ((len - kSackBaseLen) % kSackBlockLen != 0 || blocks < 1 || blocks > TcpOptions::kMaxSackBlocks) {
          return unexpected(ParseError::BadOption);
        }
        o.sack_blocks = {};
        o.sack_count = 0;
        for (std::size_t b = 0; b < blocks; ++b) {
          const std::byte* p = body + b * kSackBlockLen;
          o.add_sack({SeqNum(load_be32(p)), SeqNum(load_be32(p + 4))});
        }
        break;
      }
      case kTimestamps:  // RFC 7323 3.2
        if (len != kTimestampsLen) return unexpected(ParseError::BadOption);
        o.timestamps = TcpTimestamps{load_be32(body), load_be32(body + 4)};
        break;
      default:
        // RFC 9293 3.2, MUST-6: unknown options are skipped by their length.
        if (o.unknown_count < 0xff) ++o.unknown_count;
        break;
    }
    i += len;
  }
  return {};
}

}  // namespace

ParseResult<TcpOptions> TcpOptions::parse(std::span<const std::byte> area) noexcept {
  TcpOptions o;
  if (auto ok = parse_options_into(area, o); !ok) return unexpected(ok.error());
  return o;
}

std::size_t TcpOptions::buffer_len() const noexcept {
  std::size_t n = 0;
  if (mss) n += kMssGroup;
  if (timestamps) n += kTimestampsGroup;  // carries SACK-perm too when both are set
  if (sack_permitted && !timestamps) n += kSackPermGroup;
  if (window_scale) n += kWindowScaleGroup;
  if (sack_count > 0) n += kSackGroupBase + std::size_t{sack_count} * tcp_option::kSackBlockLen;
  return n;
}

ParseResult<std::size_t> TcpOptions::emit(std::span<std::byte> out) const noexcept {
  using namespace tcp_option;
  if (sack_count > kMaxSackBlocks) return unexpected(ParseError::BadOption);
  if (window_scale && *window_scale > kMaxWindowScale) return unexpected(ParseError::BadOption);
  const std::size_t len = buffer_len();
  // RFC 9293 3.1: data offset is 4 bits, so at most 40 bytes of options.
  if (len > TcpView::kMaxOptionsLen) return unexpected(ParseError::BadOption);
  if (out.size() < len) return unexpected(ParseError::NoSpace);

  std::byte* p = out.data();
  auto put8 = [&p](std::uint8_t v) { store_u8(p++, v); };
  if (mss) {
    put8(kMss);
    put8(kMssLen);
    store_be16(p, *mss);
    p += 2;
  }
  if (timestamps) {
    // SACK-perm fills the two bytes that would otherwise be NOP padding.
    if (sack_permitted) {
      put8(kSackPermitted);
      put8(kSackPermittedLen);
    } else {
      put8(kNop);
      put8(kNop);
    }
    put8(kTimestamps);
    put8(kTimestampsLen);
    store_be32(p, timestamps->tsval);
    store_be32(p + 4, timestamps->tsecr);
    p += 8;
  }
  if (sack_permitted && !timestamps) {
    put8(kNop);
    put8(kNop);
    put8(kSackPermitted);
    put8(kSackPermittedLen);
  }
  if (window_scale) {
    put8(kNop);
    put8(kWindowScale);
    put8(kWindowScaleLen);
    put8(*window_scale);
  }
  if (sack_count > 0) {
    put8(kNop);
    put8(kNop);
    put8(kSack);
    put8(static_cast<std::uint8_t>(kSackBaseLen + sack_count * kSackBlockLen));
    for (const SackBlock& b : sacks()) {
      store_be32(p, b.left.raw());
      store_be32(p + 4, b.right.raw());
      p += 8;
    }
  }
  return len;
}

bool operator==(const TcpOptions& a, const TcpOptions& b) noexcept {
  return a.mss == b.mss && a.window_scale == b.window_scale && a.sack_permitted == b.sack_permitted &&
         a.timestamps == b.timestamps && a.sack_count == b.sack_count &&
         std::equal(a.sacks().begin(), a.sacks().end(), b.sacks().begin()) &&
         a.unknown_count == b.unknown_count && a.window_scale_over_limit == b.window_scale_over_limit;
}

ParseResult<TcpRepr> TcpRepr::parse(const TcpView& v, const PseudoHeader& ph, ChecksumMode mode) noexcept {
  if (mode == ChecksumMode::Verify && !v.checksum_ok(ph)) return unexpected(ParseError::BadChecksum);
  TcpRepr r;
  if (auto ok = parse_options_into(v.options(), r.options); !ok) return unexpected(ok.error());
  r.src_port = v.src_port();
  r.dst_port = v.dst_port();
  r.seq = v.seq();
  r.ack = v.ack();
  r.flags = v.flags();
  r.window = v.window();
  r.urgent = v.urgent_pointer();
  r.payload_len = static_cast<std::uint32_t>(v.payload().size());
  return r;
}

ParseResult<std::size_t> TcpRepr::emit(std::span<std::byte> out, const PseudoHeader& ph,
                                       ChecksumMode mode) const noexcept {
  const std::size_t header_len = buffer_len();
  const std::size_t total = header_len + std::size_t{payload_len};
  // The IPv4 pseudo-header carries a 16-bit length (RFC 9293 3.1).
  if (ph.family == PseudoHeader::Family::V4 && total > 0xffff) return unexpected(ParseError::BadLength);
  if (total > 0xffffffff) return unexpected(ParseError::BadLength);
  auto written = options.emit(out.size() >= TcpView::kHeaderLen ? out.subspan(TcpView::kHeaderLen)
                                                                : std::span<std::byte>{});
  if (!written) return unexpected(written.error());
  if (out.size() < header_len || (mode == ChecksumMode::Verify && out.size() < total)) {
    return unexpected(ParseError::NoSpace);
  }
  std::byte* p = out.data();
  store_be16(p + TcpView::Off::kSrcPort, src_port);
  store_be16(p + TcpView::Off::kDstPort, dst_port);
  store_be32(p + TcpView::Off::kSeq, seq.raw());
  store_be32(p + TcpView::Off::kAck, ack.raw());
  store_u8(p + TcpView::Off::kDataOffset, static_cast<std::uint8_t>((header_len / 4) << 4));
  store_u8(p + TcpView::Off::kFlags, flags.bits);
  store_be16(p + TcpView::Off::kWindow, window);
  store_be16(p + TcpView::Off::kChecksum, 0);
  store_be16(p + TcpView::Off::kUrgent, urgent);
  if (mode == ChecksumMode::Verify) {
    Checksum c;
    c.add_sum(ph.sum(TcpView::kProtocol, static_cast<std::uint32_t>(total)));
    c.add(out.first(total));
    store_be16(p + TcpView::Off::kChecksum, c.finish());
  }
  return header_len;
}

}  // namespace usnet::wire
