// RFC 6528 ISNs and SYN cookies; the design is in the header.
#include "usnet/tcp/isn.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "usnet/tcp/conn_table.hpp"

namespace usnet::tcp {

namespace {

std::uint64_t load_le64(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The message F and the cookie functions hash: a domain tag (so that the
// ISN, the cookie's hiding value and its MAC are unrelated functions even
// under one key), the address length (so IPv4 and IPv6 tuples never
// collide), the tuple, then the extra words each use needs.
class Message {
 public:
  Message(std::uint8_t tag, const TupleBytes& t) noexcept {
    put8(tag);
    const std::size_t alen = t.addr_len == 16 ? 16 : 4;
    put8(static_cast<std::uint8_t>(alen));
    std::memcpy(buf_.data() + len_, t.local_addr.data(), alen);
    len_ += alen;
    put16(t.local_port);
    std::memcpy(buf_.data() + len_, t.remote_addr.data(), alen);
    len_ += alen;
    put16(t.remote_port);
  }
  void put8(std::uint8_t v) noexcept { buf_[len_++] = std::byte{v}; }
  void put16(std::uint16_t v) noexcept {
    put8(static_cast<std::uint8_t>(v >> 8));
    put8(static_cast<std::uint8_t>(v));
  }
  void put32(std::uint32_t v) noexcept {
    put16(static_cast<std::uint16_t>(v >> 16));
    put16(static_cast<std::uint16_t>(v));
  }
  void put64(std::uint64_t v) noexcept {
    put32(static_cast<std::uint32_t>(v >> 32));
    put32(static_cast<std::uint32_t>(v));
  }
  std::span<const std::byte> bytes() const noexcept { return {buf_.data(), len_}; }

 private:
  std::array<std::byte, 64> buf_{};  // at most 1 + 1 + 2 * (16 + 2) + 4 + 8 + 1 = 51
  std::size_t len_ = 0;
};

constexpr std::uint8_t kTagIsn = 'i';
constexpr std::uint8_t kTagHide = 'h';
constexpr std::uint8_t kTagMac = 'm';

constexpr std::uint32_t fold(std::uint64_t h) noexcept { return static_cast<std::uint32_t>(h ^ (h >> 32)); }

// Cookie layout (header): count 5 bits | MAC 24 bits | MSS index 3 bits.
constexpr std::uint32_t kCountBits = 5;
constexpr std::uint32_t kMacBits = 24;
constexpr std::uint32_t kIndexBits = 3;
constexpr std::uint32_t kCountMask = (1u << kCountBits) - 1;
constexpr std::uint32_t kMacMask = (1u << kMacBits) - 1;
constexpr std::uint32_t kIndexMask = (1u << kIndexBits) - 1;
static_assert(kCountBits + kMacBits + kIndexBits == 32);

}  // namespace

std::uint64_t siphash24(const SipKey& key, std::span<const std::byte> message) noexcept {
  // One SipHash in the tree (conn_table's), with the paper's c = 2, d = 4
  // rounds; the key's bytes are read little-endian as the paper's k0, k1.
  return siphash(HashKey{load_le64(key.bytes.data()), load_le64(key.bytes.data() + 8)}, message, 2, 4);
}

Expected<SipKey, std::error_code> random_sip_key() noexcept {
  SipKey k;
  std::size_t got = 0;
  while (got < k.bytes.size()) {
    const ssize_t r = ::getrandom(k.bytes.data() + got, k.bytes.size() - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return unexpected(std::error_code(errno, std::system_category()));
    }
    got += static_cast<std::size_t>(r);
  }
  return k;
}

TupleBytes TupleBytes::v4(wire::Ipv4Addr local, std::uint16_t lport, wire::Ipv4Addr remote,
                          std::uint16_t rport) noexcept {
  TupleBytes t;
  t.addr_len = 4;
  for (int i = 0; i < 4; ++i) {
    t.local_addr[i] = static_cast<std::uint8_t>(local.v >> (24 - 8 * i));
    t.remote_addr[i] = static_cast<std::uint8_t>(remote.v >> (24 - 8 * i));
  }
  t.local_port = lport;
  t.remote_port = rport;
  return t;
}

TupleBytes TupleBytes::v6(const wire::Ipv6Addr& local, std::uint16_t lport, const wire::Ipv6Addr& remote,
                          std::uint16_t rport) noexcept {
  TupleBytes t;
  t.addr_len = 16;
  t.local_addr = local.b;
  t.remote_addr = remote.b;
  t.local_port = lport;
  t.remote_port = rport;
  return t;
}

// RFC 6528 3: M is a 4-microsecond timer.
std::uint32_t IsnGenerator::clock(Nanos now) noexcept {
  const std::int64_t ns = now.count() < 0 ? 0 : now.count();
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(ns / 4000));
}

std::uint32_t IsnGenerator::offset(const TupleBytes& tuple) const noexcept {
  return fold(siphash24(key_, Message(kTagIsn, tuple).bytes()));
}

// RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey).
wire::SeqNum IsnGenerator::isn(const TupleBytes& tuple, Nanos now) const noexcept {
  return wire::SeqNum(offset(tuple)) + clock(now);
}

Expected<SynCookies, std::error_code> SynCookies::create(const SynCookieConfig& config, const SipKey& key) {
  bool ok = config.period.count() > 0 && config.max_age <= kCountMask && config.mss_table[0] != 0;
  for (std::size_t i = 1; i < config.mss_table.size(); ++i)
    ok = ok && config.mss_table[i - 1] < config.mss_table[i];
  if (!ok) return unexpected(std::make_error_code(std::errc::invalid_argument));
  return SynCookies(config, key);
}

std::uint64_t SynCookies::count(Nanos now) const noexcept {
  return now.count() <= 0 ? 0 : static_cast<std::uint64_t>(now.count() / config_.period.count());
}

std::uint32_t SynCookies::hide(const TupleBytes& tuple, wire::SeqNum client_isn) const noexcept {
  Message m(kTagHide, tuple);
  m.put32(client_isn.raw());
  return fold(siphash24(key_, m.bytes()));
}

std::uint32_t SynCookies::mac(const TupleBytes& tuple, wire::SeqNum client_isn, std::uint64_t c,
                              std::uint32_t index) const noexcept {
  Message m(kTagMac, tuple);
  m.put32(client_isn.raw());
  m.put64(c);
  m.put8(static_cast<std::uint8_t>(index));
  return static_cast<std::uint32_t>(siphash24(key_, m.bytes())) & kMacMask;
}

SynCookies::Cookie SynCookies::make(const TupleBytes& tuple, wire::SeqNum client_isn,
                                    std::uint16_t client_mss, Nanos now) noexcept {
  // The largest table entry the client can take; the smallest if none.
  std::uint32_t index = 0;
  for (std::uint32_t i = static_cast<std::uint32_t>(config_.mss_table.size()); i-- > 0;) {
    if (config_.mss_table[i] <= client_mss) {
      index = i;
      break;
    }
  }
  const std::uint64_t c = count(now);
  const std::uint32_t payload = (static_cast<std::uint32_t>(c & kCountMask) << (kMacBits + kIndexBits)) |
                                (mac(tuple, client_isn, c, index) << kIndexBits) | index;
  ++counters_.sent;
  return Cookie{wire::SeqNum(hide(tuple, client_isn)) + payload, config_.mss_table[index]};
}

std::optional<std::uint16_t> SynCookies::check(wire::SeqNum cookie, const TupleBytes& tuple,
                                               wire::SeqNum client_isn, Nanos now) noexcept {
  const std::uint32_t payload = distance(wire::SeqNum(hide(tuple, client_isn)), cookie);
  const std::uint32_t low = payload >> (kMacBits + kIndexBits);
  const std::uint64_t c_now = count(now);
  // The most recent count whose low bits are `low`: modular arithmetic on
  // the 5-bit field, so it works across the field's wrap.
  const std::uint64_t age = (c_now - low) & kCountMask;
  if (age > config_.max_age || age > c_now) {
    ++counters_.expired;
    return std::nullopt;
  }
  const std::uint32_t index = payload & kIndexMask;
  if (((payload >> kIndexBits) & kMacMask) != mac(tuple, client_isn, c_now - age, index)) {
    ++counters_.bad_mac;
    return std::nullopt;
  }
  ++counters_.accepted;
  return config_.mss_table[index];
}

}  // namespace usnet::tcp
