// Initial sequence numbers (RFC 6528) and SYN cookies (RFC 4987 3.6).
//
// ISN. RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport,
// secretkey), M a timer that ticks every 4 microseconds (250,000 per second,
// RFC 9293 3.4.1's clock), F a keyed pseudo-random function. F here is
// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
// 2012; written from the paper's description) under a 128-bit secret drawn
// once per stack (random_sip_key() reads getrandom). Why: an off-path
// attacker who cannot guess the ISN cannot inject data or resets into a
// connection, or spoof one (ROBUSTNESS.md item 13); the per-tuple offset
// keeps ISNs of one tuple increasing with time, so a new incarnation of a
// connection starts above the old one's sequence numbers (RFC 6528 3, RFC
// 9293 3.4.1). F is SipHash's 64-bit output folded to 32 bits. Cost: one
// SipHash over at most 38 bytes (tens of nanoseconds).
//
// SYN cookies. Under a SYN flood a listener cannot keep state per SYN; it
// answers with a SYN-ACK whose ISN encodes what it must remember and keeps
// nothing (RFC 4987 3.6). The ISN ("cookie") is 32 bits:
//
//     cookie = H(key, tuple, client ISN) + payload            (mod 2^32)
//     payload = count mod 32 (5 bits) | MAC (24 bits) | MSS index (3 bits)
//
// count = now / period (64 s by default), MAC = 24 bits of
// SipHash(key, tuple, client ISN, full count, MSS index): the index is
// authenticated too, so a peer holding a valid cookie cannot turn it into
// one carrying another MSS (Linux's cookies allow that). When the final ACK arrives,
// check(ack - 1, tuple, seq - 1, now) subtracts H, reads the 5-bit count,
// takes the most recent full count with those low bits (at most 31 periods
// ago), refuses it if older than max_age periods, recomputes the MAC over
// that full count and compares. Adding H hides the count and the index from
// observers and makes cookies look like any other ISN, as Linux does. The
// full count in the MAC means a cookie 32 periods old is not taken for a
// fresh one when the 5-bit field wraps. The MSS index names one of 8 values
// in a table (the largest <= the client's MSS, or the smallest when none
// is); the MSS is all a cookie carries. Window scaling and SACK-permitted
// are NOT carried (Linux hides them in the timestamp when the peer sends
// timestamps; that option is not implemented here): a connection opened
// from a cookie runs without them.
//
// Strength: a forged cookie passes only if its MAC matches, 1 chance in 2^24
// per guess (the age window, max_age + 1 of 32 counts, lowers it further),
// and the SipHash key is never exposed. A valid cookie can be replayed for
// the same tuple and client ISN until it expires, as with every cookie
// scheme; the state machine must still check that the 4-tuple has no
// connection yet.
//
// Addresses are generic: TupleBytes holds an IPv4 or an IPv6 address pair.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>

#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/seq.hpp"

namespace usnet::tcp {

using Nanos = std::chrono::nanoseconds;

// A 128-bit SipHash key: k0 is bytes 0..7 and k1 bytes 8..15, little-endian,
// as in the paper.
struct SipKey {
  std::array<std::uint8_t, 16> bytes{};
  friend bool operator==(const SipKey&, const SipKey&) = default;
};

// SipHash-2-4 of `message` under `key`.
std::uint64_t siphash24(const SipKey& key, std::span<const std::byte> message) noexcept;

// A key from getrandom(2) (retried on EINTR; blocks only before the kernel's
// pool is first initialised, early at boot).
Expected<SipKey, std::error_code> random_sip_key() noexcept;

// A connection's 4-tuple as the ISN function and cookies see it. Both
// addresses are of one family: 4 bytes for IPv4, 16 for IPv6, network order.
struct TupleBytes {
  std::array<std::uint8_t, 16> local_addr{};
  std::array<std::uint8_t, 16> remote_addr{};
  std::uint8_t addr_len = 4;  // 4 or 16
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;

  static TupleBytes v4(wire::Ipv4Addr local, std::uint16_t local_port, wire::Ipv4Addr remote,
                       std::uint16_t remote_port) noexcept;
  static TupleBytes v6(const wire::Ipv6Addr& local, std::uint16_t local_port, const wire::Ipv6Addr& remote,
                       std::uint16_t remote_port) noexcept;
  friend bool operator==(const TupleBytes&, const TupleBytes&) = default;
};

// RFC 6528 ISNs.
class IsnGenerator {
 public:
  explicit IsnGenerator(const SipKey& key) noexcept : key_(key) {}

  // RFC 6528 3: M + F(tuple, key).
  wire::SeqNum isn(const TupleBytes& tuple, Nanos now) const noexcept;
  // M: now in units of 4 microseconds, modulo 2^32 (wraps every 4.77 hours).
  static std::uint32_t clock(Nanos now) noexcept;
  // F alone.
  std::uint32_t offset(const TupleBytes& tuple) const noexcept;

 private:
  SipKey key_;
};

struct SynCookieConfig {
  Nanos period = std::chrono::seconds(64);  // one count of the time counter
  // A cookie is accepted while the counter is at most this many counts past
  // the one it was made in: 2 gives 128 to 192 s, as Linux. Below 32.
  std::uint32_t max_age = 2;
  // MSS values a cookie can carry, ascending: 536 (the IPv4 default, RFC
  // 9293 3.7.1), 1220 (IPv6's minimum MTU), 1280 and 1300 (tunnels), 1440,
  // 1452 (PPPoE), 1460 (Ethernet), 8960 (9000-byte jumbo frames).
  std::array<std::uint16_t, 8> mss_table = {536, 1220, 1280, 1300, 1440, 1452, 1460, 8960};
};

struct SynCookieCounters {
  std::uint64_t sent = 0;      // cookies made
  std::uint64_t accepted = 0;  // check() passed
  std::uint64_t expired = 0;   // count field older than max_age (most forgeries land here too)
  std::uint64_t bad_mac = 0;   // in the age window but the MAC does not match
};

class SynCookies {
 public:
  // std::errc::invalid_argument: period <= 0, max_age >= 32, or a table not
  // strictly ascending or holding 0.
  static Expected<SynCookies, std::error_code> create(const SynCookieConfig& config, const SipKey& key);

  struct Cookie {
    wire::SeqNum isn;   // the ISN to send in the SYN-ACK
    std::uint16_t mss;  // the MSS the cookie carries: use it for the connection
  };
  // The cookie for a SYN from `tuple` with sequence number `client_isn`
  // and MSS option `client_mss` (536 if it had none, RFC 9293 3.7.1).
  Cookie make(const TupleBytes& tuple, wire::SeqNum client_isn, std::uint16_t client_mss, Nanos now) noexcept;
  // For the ACK completing the handshake: `cookie` = SEG.ACK - 1 and
  // `client_isn` = SEG.SEQ - 1. The MSS if the cookie is ours, for this tuple
  // and client ISN, and at most max_age counts old; nullopt otherwise.
  std::optional<std::uint16_t> check(wire::SeqNum cookie, const TupleBytes& tuple, wire::SeqNum client_isn,
                                     Nanos now) noexcept;

  const SynCookieCounters& counters() const noexcept { return counters_; }
  const SynCookieConfig& config() const noexcept { return config_; }

 private:
  SynCookies(const SynCookieConfig& config, const SipKey& key) : config_(config), key_(key) {}
  std::uint64_t count(Nanos now) const noexcept;
  std::uint32_t hide(const TupleBytes& tuple, wire::SeqNum client_isn) const noexcept;
  std::uint32_t mac(const TupleBytes& tuple, wire::SeqNum client_isn, std::uint64_t count,
                    std::uint32_t index) const noexcept;

  SynCookieConfig config_;
  SipKey key_;
  SynCookieCounters counters_;
};

}  // namespace usnet::tcp
