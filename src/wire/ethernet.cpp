#include "usnet/wire/ethernet.hpp"

namespace usnet::wire {

ParseResult<EthernetView> EthernetView::make(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderLen) return unexpected(ParseError::Truncated);
  if (load_be16(bytes.data() + Off::kType) == ethertype::kVlan) {
    if (bytes.size() < kTaggedHeaderLen) return unexpected(ParseError::Truncated);
    // IEEE 802.1Q 9.6, Table 9-2: VID 0xfff is reserved and never sent.
    if (VlanTag::from_tci(load_be16(bytes.data() + Off::kTci)).vid == VlanTag::kReservedVid) {
      return unexpected(ParseError::BadField);
    }
  }
  return EthernetView(bytes);
}

ParseResult<EthernetRepr> EthernetRepr::parse(const EthernetView& v) noexcept {
  // make() has checked everything there is to check.
  return EthernetRepr{v.dst(), v.src(), v.ethertype(), v.vlan()};
}

ParseResult<std::size_t> EthernetRepr::emit(std::span<std::byte> out) const noexcept {
  if (vlan && !vlan->valid()) return unexpected(ParseError::BadField);
  // An untagged frame of type 0x8100 would parse back as a tagged one.
  if (!vlan && ethertype == ethertype::kVlan) return unexpected(ParseError::BadField);
  const std::size_t len = buffer_len();
  if (out.size() < len) return unexpected(ParseError::NoSpace);
  std::byte* p = out.data();
  dst.write(p + EthernetView::Off::kDst);
  src.write(p + EthernetView::Off::kSrc);
  if (vlan) {
    store_be16(p + EthernetView::Off::kType, ethertype::kVlan);
    store_be16(p + EthernetView::Off::kTci, vlan->tci());
    store_be16(p + EthernetView::Off::kInnerType, ethertype);
  } else {
    store_be16(p + EthernetView::Off::kType, ethertype);
  }
  return len;
}

}  // namespace usnet::wire
