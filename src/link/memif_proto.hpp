// memif protocol 2.0: control messages, ring and descriptor layout, and the
// control socket's send and receive with file-descriptor passing.
//
// Every integer is in the host's byte order (the protocol is between
// processes on one host and defines no wire order); fields are read and
// written with memcpy at fixed offsets, never by casting a struct over the
// bytes. Layout, from the public protocol description:
//   message (128 bytes): type u16 at 0, then the body at 2, packed
//     HELLO       name[32] 2, min_version u16 34, max_version u16 36,
//                 max_region u16 38, max_m2s_ring u16 40, max_s2m_ring u16 42,
//                 max_log2_ring_size u8 44
//     INIT        version u16 2, id u32 4, mode u8 8, secret[24] 9, name[32] 33
//     ADD_REGION  index u16 2, size u64 4
//     ADD_RING    flags u16 2 (bit 0: client to server), index u16 4,
//                 region u16 6, offset u32 8, log2_ring_size u8 12,
//                 private_hdr_size u16 13
//     CONNECT, CONNECTED  name[32] 2
//     DISCONNECT  code u32 2, reason[96] 6
//   ring: cookie u32 0, flags u16 4, head u16 6 (cache line 0), tail u16 64
//     (cache line 1), descriptors from 128 (cache line 2)
//   descriptor (16 bytes): flags u16 0 (bit 0: next), region u16 2,
//     length u32 4, offset u32 8, metadata u32 12
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace usnet::link::memif {

inline constexpr std::uint32_t kCookie = 0x3E31F20;
inline constexpr std::uint16_t kVersion = 0x0200;  // 2.0: major << 8 | minor
inline constexpr std::size_t kMsgSize = 128;
inline constexpr std::size_t kNameSize = 32;
inline constexpr std::size_t kSecretSize = 24;
inline constexpr std::size_t kReasonSize = 96;
inline constexpr std::uint8_t kModeEthernet = 0;
inline constexpr std::uint8_t kMaxLog2RingSize = 14;

enum class MsgType : std::uint16_t {
  kNone = 0,
  kAck = 1,
  kHello = 2,
  kInit = 3,
  kAddRegion = 4,
  kAddRing = 5,
  kConnect = 6,
  kConnected = 7,
  kDisconnect = 8,
};

using Msg = std::array<std::byte, kMsgSize>;

struct Hello {
  std::string name;
  std::uint16_t min_version = kVersion;
  std::uint16_t max_version = kVersion;
  std::uint16_t max_region = 0;    // highest region index accepted
  std::uint16_t max_s2c_ring = 0;  // highest ring index, server to client ("m2s")
  std::uint16_t max_c2s_ring = 0;  // client to server ("s2m")
  std::uint8_t max_log2_ring_size = kMaxLog2RingSize;
};

struct Init {
  std::uint16_t version = kVersion;
  std::uint32_t id = 0;
  std::uint8_t mode = kModeEthernet;
  std::string secret;
  std::string name;
};

struct AddRegion {
  std::uint16_t index = 0;
  std::uint64_t size = 0;
};

struct AddRing {
  static constexpr std::uint16_t kFlagC2S = 1;
  std::uint16_t flags = 0;
  std::uint16_t index = 0;
  std::uint16_t region = 0;
  std::uint32_t offset = 0;
  std::uint8_t log2_ring_size = 0;
  std::uint16_t private_hdr_size = 0;
};

struct Disconnect {
  std::uint32_t code = 0;
  std::string reason;
};

MsgType type_of(const Msg& m) noexcept;

Msg encode_ack();
Msg encode(const Hello& h);
Msg encode(const Init& i);
Msg encode(const AddRegion& r);
Msg encode(const AddRing& r);
Msg encode_connect(std::string_view name);
Msg encode_connected(std::string_view name);
Msg encode(const Disconnect& d);

Hello decode_hello(const Msg& m);
Init decode_init(const Msg& m);
AddRegion decode_add_region(const Msg& m);
AddRing decode_add_ring(const Msg& m);
std::string decode_name(const Msg& m);  // CONNECT, CONNECTED
Disconnect decode_disconnect(const Msg& m);

// Ring layout.
inline constexpr std::size_t kRingCookie = 0;
inline constexpr std::size_t kRingFlags = 4;
inline constexpr std::size_t kRingHead = 6;
inline constexpr std::size_t kRingTail = 64;
inline constexpr std::size_t kRingDescs = 128;
inline constexpr std::size_t kDescSize = 16;
inline constexpr std::uint16_t kRingFlagMaskInterrupts = 1;
inline constexpr std::uint16_t kDescFlagNext = 1;

constexpr std::size_t ring_bytes(std::uint8_t log2_size) noexcept {
  return kRingDescs + (std::size_t{1} << log2_size) * kDescSize;
}

struct Desc {
  std::uint16_t flags = 0;
  std::uint16_t region = 0;
  std::uint32_t length = 0;
  std::uint32_t offset = 0;
  std::uint32_t metadata = 0;
};
Desc read_desc(const std::byte* p) noexcept;
void write_desc(std::byte* p, const Desc& d) noexcept;

// Control socket I/O (non-blocking, SOCK_SEQPACKET).
enum class IoResult : std::uint8_t { kOk, kAgain, kClosed, kBadSize };
// Sends one message, with `fd` attached if >= 0. Never raises SIGPIPE.
IoResult send_msg(int sock, const Msg& m, int fd = -1) noexcept;
// Receives one message; `fd` gets the first descriptor attached (close-on-
// exec) or -1; any further ones are closed. The caller owns *fd.
IoResult recv_msg(int sock, Msg& m, int* fd) noexcept;

}  // namespace usnet::link::memif
