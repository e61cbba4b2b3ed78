#include "memif_proto.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace usnet::link::memif {
namespace {

// Host-order field access at a fixed offset (see the header for why).
template <class T>
T get(const std::byte* p, std::size_t off) noexcept {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
template <class T>
void put(std::byte* p, std::size_t off, T v) noexcept {
  std::memcpy(p + off, &v, sizeof v);
}

// A fixed, NUL-padded text field; longer text is cut.
void put_text(Msg& m, std::size_t off, std::size_t size, std::string_view s) noexcept {
  const std::size_t n = std::min(s.size(), size);
  std::memcpy(m.data() + off, s.data(), n);
}
// Up to the first NUL; bytes outside printable ASCII read as '?', since the
// text comes from the peer and may end up in a log.
std::string get_text(const Msg& m, std::size_t off, std::size_t size) {
  std::string s;
  for (std::size_t i = 0; i < size; ++i) {
    const auto c = static_cast<unsigned char>(m[off + i]);
    if (c == 0) break;
    s.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  return s;
}

Msg with_type(MsgType t) noexcept {
  Msg m{};
  put<std::uint16_t>(m.data(), 0, static_cast<std::uint16_t>(t));
  return m;
}

}  // namespace

MsgType type_of(const Msg& m) noexcept { return static_cast<MsgType>(get<std::uint16_t>(m.data(), 0)); }

Msg encode_ack() { return with_type(MsgType::kAck); }

Msg encode(const Hello& h) {
  Msg m = with_type(MsgType::kHello);
  put_text(m, 2, kNameSize, h.name);
  put(m.data(), 34, h.min_version);
  put(m.data(), 36, h.max_version);
  put(m.data(), 38, h.max_region);
  put(m.data(), 40, h.max_s2c_ring);
  put(m.data(), 42, h.max_c2s_ring);
  put(m.data(), 44, h.max_log2_ring_size);
  return m;
}

Msg encode(const Init& i) {
  Msg m = with_type(MsgType::kInit);
  put(m.data(), 2, i.version);
  put(m.data(), 4, i.id);
  put(m.data(), 8, i.mode);
  put_text(m, 9, kSecretSize, i.secret);
  put_text(m, 33, kNameSize, i.name);
  return m;
}

Msg encode(const AddRegion& r) {
  Msg m = with_type(MsgType::kAddRegion);
  put(m.data(), 2, r.index);
  put(m.data(), 4, r.size);
  return m;
}

Msg encode(const AddRing& r) {
  Msg m = with_type(MsgType::kAddRing);
  put(m.data(), 2, r.flags);
  put(m.data(), 4, r.index);
  put(m.data(), 6, r.region);
  put(m.data(), 8, r.offset);
  put(m.data(), 12, r.log2_ring_size);
  put(m.data(), 13, r.private_hdr_size);
  return m;
}

Msg encode_connect(std::string_view name) {
  Msg m = with_type(MsgType::kConnect);
  put_text(m, 2, kNameSize, name);
  return m;
}

Msg encode_connected(std::string_view name) {
  Msg m = with_type(MsgType::kConnected);
  put_text(m, 2, kNameSize, name);
  return m;
}

Msg encode(const Disconnect& d) {
  Msg m = with_type(MsgType::kDisconnect);
  put(m.data(), 2, d.code);
  put_text(m, 6, kReasonSize - 1, d.reason);  // keep a NUL for C peers
  return m;
}

Hello decode_hello(const Msg& m) {
  Hello h;
  h.name = get_text(m, 2, kNameSize);
  h.min_version = get<std::uint16_t>(m.data(), 34);
  h.max_version = get<std::uint16_t>(m.data(), 36);
  h.max_region = get<std::uint16_t>(m.data(), 38);
  h.max_s2c_ring = get<std::uint16_t>(m.data(), 40);
  h.max_c2s_ring = get<std::uint16_t>(m.data(), 42);
  h.max_log2_ring_size = get<std::uint8_t>(m.data(), 44);
  return h;
}

Init decode_init(const Msg& m) {
  Init i;
  i.version = get<std::uint16_t>(m.data(), 2);
  i.id = get<std::uint32_t>(m.data(), 4);
  i.mode = get<std::uint8_t>(m.data(), 8);
  // The secret is compared byte for byte, so keep it raw up to its NUL.
  for (std::size_t k = 0; k < kSecretSize; ++k) {
    const auto c = static_cast<char>(m[9 + k]);
    if (c == 0) break;
    i.secret.push_back(c);
  }
  i.name = get_text(m, 33, kNameSize);
  return i;
}

AddRegion decode_add_region(const Msg& m) {
  return {get<std::uint16_t>(m.data(), 2), get<std::uint64_t>(m.data(), 4)};
}

AddRing decode_add_ring(const Msg& m) {
  AddRing r;
  r.flags = get<std::uint16_t>(m.data(), 2);
  r.index = get<std::uint16_t>(m.data(), 4);
  r.region = get<std::uint16_t>(m.data(), 6);
  r.offset = get<std::uint32_t>(m.data(), 8);
  r.log2_ring_size = get<std::uint8_t>(m.data(), 12);
  r.private_hdr_size = get<std::uint16_t>(m.data(), 13);
  return r;
}

std::string decode_name(const Msg& m) { return get_text(m, 2, kNameSize); }

Disconnect decode_disconnect(const Msg& m) {
  return {get<std::uint32_t>(m.data(), 2), get_text(m, 6, kReasonSize)};
}

Desc read_desc(const std::byte* p) noexcept {
  return {get<std::uint16_t>(p, 0), get<std::uint16_t>(p, 2), get<std::uint32_t>(p, 4),
          get<std::uint32_t>(p, 8), get<std::uint32_t>(p, 12)};
}

void write_desc(std::byte* p, const Desc& d) noexcept {
  put(p, 0, d.flags);
  put(p, 2, d.region);
  put(p, 4, d.length);
  put(p, 8, d.offset);
  put(p, 12, d.metadata);
}

IoResult send_msg(int sock, const Msg& m, int fd) noexcept {
  msghdr mh{};
  iovec iov{const_cast<std::byte*>(m.data()), m.size()};  // sendmsg does not write through it
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (fd >= 0) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  const ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == static_cast<ssize_t>(m.size())) return IoResult::kOk;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IoResult::kAgain;
  return IoResult::kClosed;
}

IoResult recv_msg(int sock, Msg& m, int* fd) noexcept {
  *fd = -1;
  msghdr mh{};
  // One byte more than a message, so a longer record shows as too long
  // instead of being cut silently to the right size.
  std::array<std::byte, kMsgSize + 1> buf{};
  iovec iov{buf.data(), buf.size()};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  constexpr std::size_t kMaxFds = 4;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  const ssize_t n = ::recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return IoResult::kAgain;
    return IoResult::kClosed;
  }
  // Collect every descriptor the peer attached: the first is the caller's,
  // the rest are closed so a peer cannot make us leak descriptors.
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t k = 0; k < count; ++k) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + k * sizeof(int), sizeof f);
      if (*fd < 0) {
        *fd = f;
      } else {
        ::close(f);
      }
    }
  }
  if (n == 0) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
    return IoResult::kClosed;
  }
  if (n != static_cast<ssize_t>(kMsgSize) || (mh.msg_flags & MSG_TRUNC) != 0) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
    return IoResult::kBadSize;
  }
  std::memcpy(m.data(), buf.data(), kMsgSize);
  return IoResult::kOk;
}

}  // namespace usnet::link::memif
