// Ethernet II frames (IEEE 802.3 clause 3.2.6 type field) with at most one
// IEEE 802.1Q VLAN tag.
//
// Layout, untagged:  dst(6) src(6) ethertype(2)                 payload
//         tagged:    dst(6) src(6) 0x8100(2) TCI(2) ethertype(2) payload
// where TCI = PCP(3 bits) DEI(1 bit) VID(12 bits).
//
// What the wire type does not do:
//   - Minimum-frame padding (60 bytes before the FCS): the link adds it on
//     send; on receive the padding stays in payload() and the next layer's
//     own length field (IPv4 total length, ARP's fixed size) excludes it.
//   - The FCS: links hand us frames without it.
//   - Stacked tags (802.1ad QinQ, TPID 0x88a8, or a second 0x8100). Only the
//     first tag is read. For 0x8100 + 0x8100 the view reports the outer tag
//     and ethertype() == ethertype::kVlan; for an outer 0x88a8 it reports no
//     tag and ethertype() == ethertype::kQinQ. Either way the caller sees an
//     ethertype it does not handle and drops the frame as an unknown
//     protocol; nothing in the inner tag is interpreted.
//   - 802.3 length/LLC frames (type field < 0x0600) are not told apart: the
//     value is reported as the ethertype and dropped as unknown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "usnet/util/bytes.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/error.hpp"

namespace usnet::wire {

namespace ethertype {
inline constexpr std::uint16_t kIpv4 = 0x0800;
inline constexpr std::uint16_t kArp = 0x0806;
inline constexpr std::uint16_t kIpv6 = 0x86dd;
inline constexpr std::uint16_t kVlan = 0x8100;  // IEEE 802.1Q C-tag TPID
inline constexpr std::uint16_t kQinQ = 0x88a8;  // IEEE 802.1ad S-tag TPID (not supported)
}  // namespace ethertype

// The 802.1Q tag control information.
struct VlanTag {
  static constexpr std::uint16_t kMaxVid = 0xffe;  // 0xfff is reserved (IEEE 802.1Q 9.6, Table 9-2)
  static constexpr std::uint16_t kReservedVid = 0xfff;
  std::uint8_t pcp = 0;   // priority code point, 0..7
  bool dei = false;       // drop eligible indicator
  std::uint16_t vid = 0;  // 0 = priority-tagged only, no VLAN membership

  bool valid() const noexcept { return pcp <= 7 && vid <= kMaxVid; }
  std::uint16_t tci() const noexcept {
    return static_cast<std::uint16_t>((pcp << 13) | (dei ? 0x1000 : 0) | (vid & 0x0fff));
  }
  static VlanTag from_tci(std::uint16_t tci) noexcept {
    return {static_cast<std::uint8_t>(tci >> 13), (tci & 0x1000) != 0,
            static_cast<std::uint16_t>(tci & 0x0fff)};
  }
  friend bool operator==(const VlanTag&, const VlanTag&) = default;
};

class EthernetView {
 public:
  static constexpr std::size_t kHeaderLen = 14;
  static constexpr std::size_t kTagLen = 4;
  static constexpr std::size_t kTaggedHeaderLen = kHeaderLen + kTagLen;
  struct Off {  // field offsets
    static constexpr std::size_t kDst = 0, kSrc = 6, kType = 12;
    // Only in a tagged frame, where kType holds the TPID 0x8100.
    static constexpr std::size_t kTci = 14, kInnerType = 16;
  };

  // Checks: at least 14 bytes; if the type is 0x8100, at least 18 bytes and
  // a VID other than the reserved 0xfff (BadField). The view covers all the
  // bytes given (link padding included, see the file comment).
  static ParseResult<EthernetView> make(std::span<const std::byte> bytes) noexcept;

  MacAddr dst() const noexcept { return MacAddr::read(b_.data() + Off::kDst); }
  MacAddr src() const noexcept { return MacAddr::read(b_.data() + Off::kSrc); }
  bool has_vlan() const noexcept { return load_be16(b_.data() + Off::kType) == ethertype::kVlan; }
  std::optional<VlanTag> vlan() const noexcept {
    if (!has_vlan()) return std::nullopt;
    return VlanTag::from_tci(load_be16(b_.data() + Off::kTci));
  }
  // The type of the payload: after the tag when there is one.
  std::uint16_t ethertype() const noexcept {
    return load_be16(b_.data() + (has_vlan() ? Off::kInnerType : Off::kType));
  }
  std::size_t header_len() const noexcept { return has_vlan() ? kTaggedHeaderLen : kHeaderLen; }
  std::span<const std::byte> payload() const noexcept { return b_.subspan(header_len()); }
  std::span<const std::byte> bytes() const noexcept { return b_; }

 private:
  explicit EthernetView(std::span<const std::byte> b) : b_(b) {}
  std::span<const std::byte> b_;
};

struct EthernetRepr {
  MacAddr dst;
  MacAddr src;
  std::uint16_t ethertype = 0;  // of the payload (inner type when tagged)
  std::optional<VlanTag> vlan;

  static ParseResult<EthernetRepr> parse(const EthernetView& v) noexcept;
  std::size_t buffer_len() const noexcept {
    return vlan ? EthernetView::kTaggedHeaderLen : EthernetView::kHeaderLen;
  }
  // Writes the header into out[0..buffer_len()) and returns its length.
  // NoSpace if out is shorter; BadField for a tag that is not valid() or an
  // untagged frame whose ethertype is 0x8100 (it would read back as tagged).
  ParseResult<std::size_t> emit(std::span<std::byte> out) const noexcept;

  friend bool operator==(const EthernetRepr&, const EthernetRepr&) = default;
};

}  // namespace usnet::wire
