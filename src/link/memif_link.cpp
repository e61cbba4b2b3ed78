// The memif link (see include/usnet/link/memif_link.hpp for the protocol and
// the trust rules; src/link/memif_proto.hpp for the byte layout).
#include "usnet/link/memif_link.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "memif_proto.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::link {

namespace mp = memif;

std::string_view to_string(MemifDrop reason) noexcept {
  switch (reason) {
    case MemifDrop::kPeerClosed:
      return "peer closed";
    case MemifDrop::kPeerDisconnect:
      return "peer disconnected";
    case MemifDrop::kBadMessage:
      return "bad message";
    case MemifDrop::kBadVersion:
      return "bad version";
    case MemifDrop::kBadInit:
      return "bad init";
    case MemifDrop::kBadRegion:
      return "bad region";
    case MemifDrop::kBadRing:
      return "bad ring";
    case MemifDrop::kBadRingIndex:
      return "bad ring index";
    case MemifDrop::kBadDescriptor:
      return "bad descriptor";
    case MemifDrop::kHandshakeTimeout:
      return "handshake timeout";
    case MemifDrop::kAlreadyConnected:
      return "already connected";
    case MemifDrop::kLocalError:
      return "local error";
    case MemifDrop::kCount:
      break;
  }
  return "?";
}

namespace {

constexpr std::size_t kMaxRegions = 4;                             // we announce max_region = 3
constexpr std::uint64_t kMaxRegionBytes = std::uint64_t{1} << 30;  // offsets are 32-bit anyway
constexpr int kMaxMessagesPerPoll = 16;
constexpr char kOurName[] = "usnet";

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A region the peer sent, mapped here (server side).
struct Mapping {
  std::byte* base = nullptr;
  std::size_t size = 0;
  Mapping() = default;
  Mapping(std::byte* b, std::size_t s) : base(b), size(s) {}
  Mapping(Mapping&& o) noexcept : base(std::exchange(o.base, nullptr)), size(std::exchange(o.size, 0)) {}
  Mapping& operator=(Mapping&&) = delete;
  Mapping(const Mapping&) = delete;
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
};

// A ring in shared memory whose header and descriptors are known to lie
// inside a mapping. head and tail are shared with the peer process, so they
// are read and written atomically (acquire/release pair with the peer's
// accesses to the descriptors and buffers they cover).
struct Ring {
  std::byte* base = nullptr;
  std::uint16_t size = 0;  // a power of two, at most 2^14

  bool valid() const noexcept { return base != nullptr; }
  std::uint16_t mask() const noexcept { return static_cast<std::uint16_t>(size - 1); }
  std::atomic_ref<std::uint16_t> u16(std::size_t off) const noexcept {
    return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(base + off));
  }
  std::atomic_ref<std::uint16_t> head() const noexcept { return u16(mp::kRingHead); }
  std::atomic_ref<std::uint16_t> tail() const noexcept { return u16(mp::kRingTail); }
  std::atomic_ref<std::uint16_t> flags() const noexcept { return u16(mp::kRingFlags); }
  std::byte* desc(std::uint16_t slot) const noexcept {
    return base + mp::kRingDescs + std::size_t{static_cast<std::uint16_t>(slot & mask())} * mp::kDescSize;
  }
  std::uint32_t cookie() const noexcept {
    std::uint32_t c;
    std::memcpy(&c, base + mp::kRingCookie, sizeof c);
    return c;
  }
};

enum class State : std::uint8_t { kIdle, kHandshake, kConnected };

bool is_eventfd(int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  char target[64] = {};
  const ssize_t n = ::readlink(path, target, sizeof target - 1);
  if (n < 0) return true;  // no /proc: cannot tell; O_NONBLOCK keeps writes safe
  return std::string_view(target, static_cast<std::size_t>(n)) == "anon_inode:[eventfd]";
}

wire::MacAddr made_up_mac() {
  static std::atomic<std::uint16_t> counter{0};
  const auto pid = static_cast<std::uint32_t>(::getpid());
  const std::uint16_t c = counter.fetch_add(1);
  return {{0x02, static_cast<std::uint8_t>(pid >> 16), static_cast<std::uint8_t>(pid >> 8),
           static_cast<std::uint8_t>(pid), static_cast<std::uint8_t>(c >> 8), static_cast<std::uint8_t>(c)}};
}

LinkError link_error(const MemifConfig& c, int err, std::string_view what) {
  return {std::error_code(err, std::system_category()),
          "memif:" + c.socket_path + ": " + std::string(what) + ": " + std::strerror(err)};
}

}  // namespace

struct MemifLink::Impl {
  MemifConfig config;
  mem::PacketPool& pool;
  mem::OwnerId owner;
  LinkInfo info;
  LinkCounters counters;
  MemifStats stats;
  std::string peer_name;

  Fd listener;  // server
  Fd control;   // the connection
  Fd epoll;     // wait_fd(): the control socket and the receive ring's eventfd
  State state = State::kIdle;
  Nanos handshake_deadline{0};
  std::uint32_t calls = 0;
  Nanos next_service{0};  // connected: when rx_burst looks at the control socket again

  // Shared memory. Client: our arena (the memif region 0 is the whole memfd,
  // so ring and buffer offsets are file offsets). Server: the peer's regions.
  std::optional<mem::Arena> arena;
  std::byte* client_base = nullptr;
  std::size_t client_bytes = 0;
  std::uint32_t buffers_offset = 0;  // client: first ring buffer
  std::vector<Mapping> regions;

  // Rings and their eventfds, by direction.
  Ring c2s, s2c;
  Fd c2s_efd, s2c_efd;
  std::uint8_t log2_ring = 0;

  // Local positions. rx_pos: next slot to read on the receive ring; tx_pos:
  // next slot to fill on the transmit ring; refill_pos (client): the S2C
  // head we have published.
  std::uint16_t rx_pos = 0, tx_pos = 0, refill_pos = 0;
  // The peer's index on the transmit ring when we last read it (server: the
  // S2C head the client has offered up to; client: the C2S tail the server
  // has consumed up to). It lies in a cache line the peer writes, so every
  // read of it is a transfer between cores; it is read again only when the
  // slots it leaves free seem too few. A stale value errs on the safe side.
  std::uint16_t tx_peer = 0;
  // Server: where each slot's buffer was the last time we used it (the
  // client chooses them; ours never moves them), to start fetching a
  // frame's bytes before its descriptor arrives, and to take the next
  // transmit buffer's cache lines while idle. Hints only: a prefetch never
  // faults and changes nothing but where cache lines are.
  std::vector<const std::byte*> rx_seen, tx_seen;
  std::uint16_t tx_warm = 0;  // warm_tx_ahead: slots before this one are warmed
  // set_tx_hold: while tx_hold, frames written into the transmit ring are
  // published (the index the peer reads stored, its wake-up flag looked at)
  // only every kMaxHeld frames; tx_held of them are written, not yet
  // published. publish() makes them visible.
  static constexpr std::uint16_t kMaxHeld = 32;
  bool tx_hold = false;
  std::uint16_t tx_held = 0;

  // Client handshake: messages to send, one per ACK.
  std::vector<std::pair<mp::Msg, int>> pending;
  std::size_t next_pending = 0;
  bool got_init = false;  // server

  Impl(const MemifConfig& c, mem::PacketPool& p, mem::OwnerId o) : config(c), pool(p), owner(o) {}

  bool is_server() const noexcept { return config.role == MemifRole::kServer; }
  Ring& rx_ring() noexcept { return is_server() ? c2s : s2c; }
  Ring& tx_ring() noexcept { return is_server() ? s2c : c2s; }
  int rx_efd() const noexcept { return is_server() ? c2s_efd.get() : s2c_efd.get(); }
  int tx_efd() const noexcept { return is_server() ? s2c_efd.get() : c2s_efd.get(); }

  // Client: the fixed buffer of each slot, so nothing the server writes into
  // a descriptor's offset or region is ever followed.
  std::uint32_t client_buffer(bool c2s_ring, std::uint16_t slot) const noexcept {
    const std::uint32_t n = std::uint32_t{1} << log2_ring;
    const std::uint32_t index = (c2s_ring ? 0 : n) + (slot & (n - 1));
    return buffers_offset + index * config.buffer_size;
  }

  // --- connection teardown -------------------------------------------------

  void epoll_set(int fd, bool add) {
    if (!epoll.valid() || fd < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
  }

  void close_connection() {
    if (control.valid()) epoll_set(control.get(), false);
    if (state == State::kConnected) epoll_set(rx_efd(), false);
    control.reset();
    c2s = {};
    s2c = {};
    c2s_efd.reset();
    s2c_efd.reset();
    regions.clear();
    rx_seen.clear();
    tx_seen.clear();
    arena.reset();
    client_base = nullptr;
    client_bytes = 0;
    pending.clear();
    next_pending = 0;
    got_init = false;
    state = State::kIdle;
    rx_pos = tx_pos = refill_pos = tx_peer = 0;
    stats.tx_held_lost += tx_held;
    tx_held = 0;
  }

  // Ends the connection for `reason`, telling the peer why when it is still
  // there to hear it.
  // The ring eventfds are shared with the peer, file status flags included:
  // a hostile peer can clear O_NONBLOCK and fill the counter so that our
  // next read or write blocks for ever. Checked right before each use; a
  // peer that did it is disconnected. (A peer racing between this check and
  // the syscall can still stall us; closing that needs I/O that cannot block
  // whatever the fd's flags, left for later.)
  bool still_nonblocking(int fd) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK) != 0) return true;
    drop(MemifDrop::kBadRing, "peer cleared O_NONBLOCK on a ring eventfd");
    return false;
  }

  void drop(MemifDrop reason, std::string_view detail, bool tell_peer = true) {
    ++stats.drops[static_cast<std::size_t>(reason)];
    stats.last_drop = std::string(to_string(reason));
    if (!detail.empty()) stats.last_drop += ": " + std::string(detail);
    if (tell_peer && control.valid()) {
      (void)mp::send_msg(control.get(), mp::encode(mp::Disconnect{0, stats.last_drop}));
    }
    close_connection();
  }

  bool send(const mp::Msg& m, int fd = -1) {
    const auto r = mp::send_msg(control.get(), m, fd);
    if (r == mp::IoResult::kOk) return true;
    // A SOCK_SEQPACKET peer that reads nothing fills our send buffer only
    // after many messages; the handshake is lock-step, so this is a failure.
    drop(MemifDrop::kPeerClosed, "cannot send a control message", false);
    return false;
  }

  // --- control channel -----------------------------------------------------

  void service(Nanos now) {
    next_service = now + MemifLink::kControlInterval;
    if (is_server()) {
      accept_clients(now);
    } else if (!control.valid()) {
      try_connect(now);
    }
    if (state == State::kHandshake && now >= handshake_deadline) {
      drop(MemifDrop::kHandshakeTimeout, {});
      return;
    }
    for (int i = 0; i < kMaxMessagesPerPoll && control.valid(); ++i) {
      mp::Msg m;
      int fd = -1;
      const auto r = mp::recv_msg(control.get(), m, &fd);
      if (r == mp::IoResult::kAgain) break;
      if (r == mp::IoResult::kClosed) {
        drop(MemifDrop::kPeerClosed, {}, false);
        break;
      }
      if (r == mp::IoResult::kBadSize) {
        drop(MemifDrop::kBadMessage, "not a 128-byte message");
        break;
      }
      Fd attached(fd);
      if (is_server()) {
        on_server_message(m, std::move(attached));
      } else {
        on_client_message(m);
      }
    }
  }

  void accept_clients(Nanos now) {
    for (int i = 0; i < 4; ++i) {
      Fd c(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!c.valid()) return;
      if (control.valid()) {
        ++stats.drops[static_cast<std::size_t>(MemifDrop::kAlreadyConnected)];
        (void)mp::send_msg(c.get(), mp::encode(mp::Disconnect{0, "already connected"}));
        continue;
      }
      control = std::move(c);
      epoll_set(control.get(), true);
      state = State::kHandshake;
      handshake_deadline = now + kHandshakeTimeout;
      mp::Hello h;
      h.name = kOurName;
      h.max_region = kMaxRegions - 1;
      h.max_c2s_ring = 0;
      h.max_s2c_ring = 0;
      h.max_log2_ring_size = config.log2_ring_size;
      if (!send(mp::encode(h))) return;
    }
  }

  void try_connect(Nanos now) {
    Fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s.valid()) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, config.socket_path.data(), config.socket_path.size());
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
      return;  // retried later
    control = std::move(s);
    epoll_set(control.get(), true);
    state = State::kHandshake;
    handshake_deadline = now + kClientHandshakeTimeout;
  }

  // Server side of the handshake. Order: INIT, then regions and rings in any
  // order, then CONNECT; after that only DISCONNECT.
  void on_server_message(const mp::Msg& m, Fd fd) {
    const auto type = mp::type_of(m);
    if (type == mp::MsgType::kDisconnect) {
      drop(MemifDrop::kPeerDisconnect, mp::decode_disconnect(m).reason, false);
      return;
    }
    if (state != State::kHandshake || (!got_init && type != mp::MsgType::kInit)) {
      drop(MemifDrop::kBadMessage, "unexpected message");
      return;
    }
    switch (type) {
      case mp::MsgType::kInit: {
        if (got_init) return drop(MemifDrop::kBadMessage, "second INIT");
        const auto i = mp::decode_init(m);
        if (i.version != mp::kVersion) return drop(MemifDrop::kBadVersion, "incompatible memif version");
        if (i.id != config.interface_id) return drop(MemifDrop::kBadInit, "interface id not found");
        if (i.mode != mp::kModeEthernet) return drop(MemifDrop::kBadInit, "only ethernet mode supported");
        if (!config.secret.empty() && i.secret != config.secret)
          return drop(MemifDrop::kBadInit, "incorrect secret");
        peer_name = i.name;
        got_init = true;
        send(mp::encode_ack());
        return;
      }
      case mp::MsgType::kAddRegion:
        return on_add_region(mp::decode_add_region(m), std::move(fd));
      case mp::MsgType::kAddRing:
        return on_add_ring(mp::decode_add_ring(m), std::move(fd));
      case mp::MsgType::kConnect:
        return on_connect();
      default:
        return drop(MemifDrop::kBadMessage, "unexpected message");
    }
  }

  void on_add_region(const mp::AddRegion& r, Fd fd) {
    if (!fd.valid()) return drop(MemifDrop::kBadRegion, "missing region fd");
    if (r.index != regions.size() || r.index >= kMaxRegions)
      return drop(MemifDrop::kBadRegion, "invalid region index");
    if (r.size == 0 || r.size > kMaxRegionBytes) return drop(MemifDrop::kBadRegion, "invalid region size");
    // Unsealed, the client could truncate the file under our mapping and turn
    // our next access into SIGBUS. The seal is checked BEFORE the size: once
    // it is on, the file can no longer shrink below what fstat reports (the
    // other order lets the client truncate, then seal, in between).
    const int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
      return drop(MemifDrop::kBadRegion, "region not sealed against shrinking");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return drop(MemifDrop::kBadRegion, "region is not a file");
    if (static_cast<std::uint64_t>(st.st_size) < r.size)
      return drop(MemifDrop::kBadRegion, "region larger than its file");
    void* p = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) return drop(MemifDrop::kBadRegion, "cannot map region");
    regions.emplace_back(static_cast<std::byte*>(p), static_cast<std::size_t>(r.size));
    send(mp::encode_ack());
  }

  void on_add_ring(const mp::AddRing& r, Fd fd) {
    if (!fd.valid()) return drop(MemifDrop::kBadRing, "missing interrupt fd");
    if (!is_eventfd(fd.get())) return drop(MemifDrop::kBadRing, "interrupt fd is not an eventfd");
    const bool to_server = (r.flags & mp::AddRing::kFlagC2S) != 0;
    Ring& ring = to_server ? c2s : s2c;
    if (r.index != 0 || ring.valid()) return drop(MemifDrop::kBadRing, "invalid ring index");
    if (r.region >= regions.size()) return drop(MemifDrop::kBadRing, "ring in an unknown region");
    if (r.log2_ring_size < 1 || r.log2_ring_size > config.log2_ring_size ||
        r.log2_ring_size > mp::kMaxLog2RingSize) {
      return drop(MemifDrop::kBadRing, "invalid ring size");
    }
    if (r.private_hdr_size != 0) return drop(MemifDrop::kBadRing, "private header not supported");
    const Mapping& reg = regions[r.region];
    // 8-aligned so head and tail are aligned for atomic access.
    if (r.offset % 8 != 0 || std::uint64_t{r.offset} + mp::ring_bytes(r.log2_ring_size) > reg.size) {
      return drop(MemifDrop::kBadRing, "ring outside its region");
    }
    // Our kicks must never block on an eventfd whose counter the peer filled.
    const int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0)
      return drop(MemifDrop::kLocalError, "fcntl");
    ring.base = reg.base + r.offset;
    ring.size = static_cast<std::uint16_t>(1u << r.log2_ring_size);
    (to_server ? c2s_efd : s2c_efd) = std::move(fd);
    send(mp::encode_ack());
  }

  void on_connect() {
    if (!c2s.valid() || !s2c.valid()) return drop(MemifDrop::kBadRing, "CONNECT before both rings");
    if (c2s.cookie() != mp::kCookie || s2c.cookie() != mp::kCookie)
      return drop(MemifDrop::kBadRing, "bad ring cookie");
    // We consume C2S from where its tail stands, and fill S2C from its tail.
    rx_pos = c2s.tail().load(std::memory_order_acquire);
    tx_pos = s2c.tail().load(std::memory_order_acquire);
    tx_peer = tx_pos;  // no slot known free: the head is read at the first send
    tx_held = 0;
    rx_seen.assign(c2s.size, nullptr);
    tx_seen.assign(s2c.size, nullptr);
    c2s.flags().store(config.interrupts ? 0 : mp::kRingFlagMaskInterrupts, std::memory_order_relaxed);
    if (!send(mp::encode_connected(kOurName))) return;
    become_connected();
  }

  void become_connected() {
    state = State::kConnected;
    ++stats.connects;
    epoll_set(rx_efd(), true);
  }

  // Client side: HELLO -> build the memory, then INIT, ADD_REGION, ADD_RING
  // (two), CONNECT, each sent after the ACK of the one before.
  void on_client_message(const mp::Msg& m) {
    const auto type = mp::type_of(m);
    if (type == mp::MsgType::kDisconnect) {
      drop(MemifDrop::kPeerDisconnect, mp::decode_disconnect(m).reason, false);
      return;
    }
    if (state != State::kHandshake) return drop(MemifDrop::kBadMessage, "unexpected message");
    switch (type) {
      case mp::MsgType::kHello: {
        if (!pending.empty()) return drop(MemifDrop::kBadMessage, "second HELLO");
        const auto h = mp::decode_hello(m);
        if (h.min_version > mp::kVersion || h.max_version < mp::kVersion) {
          return drop(MemifDrop::kBadVersion, "incompatible memif version");
        }
        peer_name = h.name;
        log2_ring = std::min({config.log2_ring_size, h.max_log2_ring_size, mp::kMaxLog2RingSize});
        if (log2_ring < 1) return drop(MemifDrop::kBadMessage, "server allows no ring");
        if (!build_client_memory()) return;
        send(pending[0].first, pending[0].second);
        next_pending = 1;
        return;
      }
      case mp::MsgType::kAck: {
        if (next_pending == 0 || next_pending >= pending.size())
          return drop(MemifDrop::kBadMessage, "unexpected ACK");
        const auto& [msg, fd] = pending[next_pending++];
        send(msg, fd);
        return;
      }
      case mp::MsgType::kConnected: {
        if (pending.empty() || next_pending != pending.size())
          return drop(MemifDrop::kBadMessage, "early CONNECTED");
        // A DPDK server zeroes head and tail when it takes the rings, which
        // would withdraw the S2C buffers offered before CONNECT: offer them
        // again, or the server drops what it has for us until our first rx.
        refill();
        become_connected();
        return;
      }
      default:
        return drop(MemifDrop::kBadMessage, "unexpected message");
    }
  }

  bool build_client_memory() {
    const std::size_t n = std::size_t{1} << log2_ring;
    const std::size_t rb = mp::ring_bytes(log2_ring);
    const mem::RegionSpec specs[] = {{"memif-rings", 2 * rb}, {"memif-buffers", 2 * n * config.buffer_size}};
    auto a = mem::Arena::create("usnet-memif", specs);
    if (!a) {
      drop(MemifDrop::kLocalError, "cannot create the shared memory: " + a.error().message());
      return false;
    }
    arena.emplace(std::move(*a));
    struct stat st {};
    if (::fstat(arena->fd(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) > 0xffffffffu) {
      drop(MemifDrop::kLocalError, "shared memory too large for 32-bit offsets");
      return false;
    }
    client_bytes = static_cast<std::size_t>(st.st_size);
    client_base = arena->region(0).data() - arena->region_info(0).offset;
    const auto rings_off = static_cast<std::uint32_t>(arena->region_info(0).offset);
    buffers_offset = static_cast<std::uint32_t>(arena->region_info(1).offset);

    c2s_efd.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    s2c_efd.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!c2s_efd.valid() || !s2c_efd.valid()) {
      drop(MemifDrop::kLocalError, "cannot create eventfds");
      return false;
    }
    const auto size = static_cast<std::uint16_t>(n);
    c2s = {client_base + rings_off, size};
    s2c = {client_base + rings_off + rb, size};
    for (Ring* r : {&c2s, &s2c}) {
      std::memcpy(r->base + mp::kRingCookie, &mp::kCookie, sizeof mp::kCookie);
      r->head().store(0, std::memory_order_relaxed);
      r->tail().store(0, std::memory_order_relaxed);
    }
    c2s.flags().store(0, std::memory_order_relaxed);
    s2c.flags().store(config.interrupts ? 0 : mp::kRingFlagMaskInterrupts, std::memory_order_relaxed);
    for (std::uint16_t i = 0; i < size; ++i) {
      mp::write_desc(c2s.desc(i), {0, 0, config.buffer_size, client_buffer(true, i), 0});
    }
    rx_pos = tx_pos = refill_pos = tx_peer = tx_held = 0;
    refill();  // offer every S2C buffer to the server up front

    mp::Init init;
    init.id = config.interface_id;
    init.secret = config.secret;
    init.name = kOurName;
    pending.emplace_back(mp::encode(init), -1);
    pending.emplace_back(mp::encode(mp::AddRegion{0, client_bytes}), arena->fd());
    pending.emplace_back(mp::encode(mp::AddRing{mp::AddRing::kFlagC2S, 0, 0, rings_off, log2_ring, 0}),
                         c2s_efd.get());
    pending.emplace_back(
        mp::encode(mp::AddRing{0, 0, 0, static_cast<std::uint32_t>(rings_off + rb), log2_ring, 0}),
        s2c_efd.get());
    pending.emplace_back(mp::encode_connect(kOurName), -1);
    return true;
  }

  // Client: give the server every S2C slot we have read back.
  void refill() {
    const std::uint16_t size = s2c.size;
    while (static_cast<std::uint16_t>(refill_pos - rx_pos) < size) {
      mp::write_desc(s2c.desc(refill_pos), {0, 0, config.buffer_size, client_buffer(false, refill_pos), 0});
      ++refill_pos;
    }
    s2c.head().store(refill_pos, std::memory_order_release);
  }

  // Where descriptor `d` of the receive or transmit ring points, checked; an
  // empty result means out of bounds. `capacity`: the buffer's whole length
  // (transmit) rather than the frame's.
  std::span<std::byte> resolve(const mp::Desc& d, bool c2s_ring, std::uint16_t slot, std::uint32_t length) {
    if (!is_server()) {
      // Ours: only the length comes from the ring.
      if (length > config.buffer_size) return {};
      return {client_base + client_buffer(c2s_ring, slot), length};
    }
    if (d.region >= regions.size()) return {};
    const Mapping& r = regions[d.region];
    if (std::uint64_t{d.offset} + length > r.size) return {};
    return {r.base + d.offset, length};
  }

  // --- data path -----------------------------------------------------------

  // Cache-line hints for the first bytes of a frame (headers and a small
  // payload): read ones for a frame about to be copied out, write ones for
  // a buffer about to be filled.
  static constexpr int kHintLines = 4;
  // Transmit buffers taken ahead of the sends (warm_tx_ahead): how many
  // slots, and how many of each buffer's first lines (a small frame's
  // headers and payload).
  static constexpr std::uint16_t kWarmAhead = 8;
  static constexpr int kAheadLines = 2;
  static constexpr std::uint16_t kReadAhead = 4;
  static void hint_read(const std::byte* p) noexcept {
    for (int i = 0; i < kHintLines; ++i) __builtin_prefetch(p + i * 64, 0, 3);
  }
  // Takes a line to write it: owned, the other core's copy invalidated, so
  // the stores that follow drain at once. __builtin_prefetch(p, 1) is a
  // plain read prefetch on x86-64 unless the target has PRFCHW (not in the
  // baseline), which leaves the line shared and every store to it waiting
  // for an upgrade; PREFETCHW itself runs as a NOP on processors without it.
  static void prefetch_write(const std::byte* p) noexcept {
#if defined(__x86_64__)
    asm volatile("prefetchw %0" : : "m"(*p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
  }
  static void hint_write(const std::byte* p) noexcept {
    for (int i = 0; i < kHintLines; ++i) prefetch_write(p + i * 64);
  }

  // Nothing to read: bring in what the next send will touch, so that its
  // cache misses are not on the way of a frame (client: our next C2S buffer;
  // server: the client's next S2C descriptor and the buffer that slot had).
  // Only a slot known to be free (by tx_peer, which lags): on a full ring
  // the next slot is the one the peer reads next, and taking its lines
  // would slow the reader down.
  void warm_next_tx() noexcept {
    if (!is_server()) {
      if (static_cast<std::uint16_t>(tx_pos - tx_peer) < c2s.size)
        hint_write(client_base + client_buffer(true, tx_pos));
      return;
    }
    if (tx_peer == tx_pos) return;  // no buffer offered that we know of
    __builtin_prefetch(s2c.desc(tx_pos), 0, 3);
    if (const std::byte* b = tx_seen[tx_pos & s2c.mask()]) hint_write(b);
  }

  std::size_t rx(std::span<Frame> out) {
    Ring& ring = rx_ring();
    const bool c2s_ring = is_server();
    // How far the peer says it has gone, and the most it may have gone.
    const std::uint16_t limit = is_server() ? ring.head().load(std::memory_order_acquire)
                                            : ring.tail().load(std::memory_order_acquire);
    const auto avail = static_cast<std::uint16_t>(limit - rx_pos);
    const std::uint16_t allowed = is_server() ? ring.size : static_cast<std::uint16_t>(refill_pos - rx_pos);
    if (avail > allowed) {
      drop(MemifDrop::kBadRingIndex, is_server() ? "C2S head past the ring" : "S2C tail past our head");
      return 0;
    }
    if (avail == 0) {
      warm_next_tx();
      return 0;
    }
    // Fetch the first frame's bytes while its descriptor is read (the
    // copy needs both; one after the other they are two transfers).
    if (!is_server()) {
      hint_read(client_base + client_buffer(false, rx_pos));
    } else if (const std::byte* b = rx_seen[rx_pos & ring.mask()]) {
      hint_read(b);
    }
    const std::size_t bufsize = pool.buffer_size();
    std::size_t n = 0;
    std::uint16_t pos = rx_pos;
    while (n < out.size() && pos != limit) {
      auto buf = pool.alloc(owner);
      if (!buf) {
        ++counters.rx_no_buffer;
        break;
      }
      std::byte* dst = pool.buffer(*buf).data();
      std::uint64_t total = 0;
      std::uint16_t s = pos;
      bool complete = false;
      while (s != limit) {
        // A few frames ahead, when published: their bytes (the reader is
        // behind the writer, a burst is waiting).
        const auto ahead = static_cast<std::uint16_t>(s + kReadAhead);
        if (static_cast<std::uint16_t>(limit - s) > kReadAhead) {
          if (!is_server()) {
            hint_read(client_base + client_buffer(false, ahead));
          } else if (const std::byte* b = rx_seen[ahead & ring.mask()]) {
            hint_read(b);
          }
        }
        const mp::Desc d = mp::read_desc(ring.desc(s));
        const auto src = resolve(d, c2s_ring, s, d.length);
        if (src.data() == nullptr) {
          (void)pool.free(owner, *buf);
          drop(MemifDrop::kBadDescriptor, "buffer outside the region");
          return n;  // frames already handed out stay valid: they are copies
        }
        if (c2s_ring) rx_seen[s & ring.mask()] = src.data();
        if (total + src.size() <= bufsize) std::memcpy(dst + total, src.data(), src.size());
        total += src.size();
        ++s;
        if ((d.flags & mp::kDescFlagNext) == 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        (void)pool.free(owner, *buf);
        if (avail == ring.size) {
          drop(MemifDrop::kBadDescriptor, "descriptor chain longer than the ring");
          return n;
        }
        break;  // the rest of the chain is not published yet
      }
      pos = s;
      if (total > bufsize || total == 0) {
        (void)pool.free(owner, *buf);
        if (total == 0) {
          ++stats.rx_empty;
        } else {
          ++counters.rx_too_long;
        }
        continue;
      }
      out[n++] = Frame{*buf, static_cast<std::uint32_t>(total), 0, 0};
      ++counters.rx_frames;
      counters.rx_bytes += total;
    }
    if (pos == rx_pos) return n;  // nothing consumed: the peer's lines stay where they are
    rx_pos = pos;
    if (is_server()) {
      ring.tail().store(rx_pos, std::memory_order_release);
    } else {
      refill();
    }
    return n;
  }

  // Takes the first lines of the buffers the next sends fill, up to
  // kWarmAhead slots ahead (the reader had them last; the stores of a send
  // would otherwise wait for them one frame at a time, and the fence after
  // publishing waits for those stores). Only slots known free: `free`, by
  // tx_peer. Each slot once: tx_warm is where the warmed run ends.
  void warm_tx_ahead(const Ring& ring, std::uint16_t free) noexcept {
    const auto end = static_cast<std::uint16_t>(tx_pos + std::min<std::uint16_t>(free, kWarmAhead));
    if (static_cast<std::uint16_t>(tx_warm - tx_pos) > kWarmAhead) tx_warm = tx_pos;  // behind, or a new ring
    for (; tx_warm != end && static_cast<std::uint16_t>(tx_warm - tx_pos) < kWarmAhead; ++tx_warm) {
      const std::byte* b =
          is_server() ? tx_seen[tx_warm & ring.mask()] : client_base + client_buffer(true, tx_warm);
      if (b == nullptr) continue;
      for (int i = 0; i < kAheadLines; ++i) prefetch_write(b + i * 64);
    }
  }

  // Makes the frames written into the transmit ring visible to the peer,
  // and wakes it if it sleeps. False when the connection was dropped (the
  // peer made its eventfd blocking).
  bool publish() {
    if (tx_held == 0 || state != State::kConnected) {
      tx_held = 0;
      return state == State::kConnected;
    }
    tx_held = 0;
    Ring& ring = tx_ring();
    if (is_server()) {
      ring.tail().store(tx_pos, std::memory_order_release);
    } else {
      ring.head().store(tx_pos, std::memory_order_release);
    }
    // Against a receiver that unmasks and then looks at the ring
    // (arm_wakeup): publish, then read the flag, never the other way round.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if ((ring.flags().load(std::memory_order_relaxed) & mp::kRingFlagMaskInterrupts) == 0) {
      if (!still_nonblocking(tx_efd())) return false;
      const std::uint64_t one = 1;
      (void)!::write(tx_efd(), &one, sizeof one);
    }
    return true;
  }

  std::size_t tx(std::span<const Frame> frames) {
    Ring& ring = tx_ring();
    const bool c2s_ring = !is_server();
    // Server: the client offers buffers up to head; we fill from our tail.
    // Client: the server has consumed up to tail.
    auto free_after = [&](std::uint16_t peer) {
      return is_server() ? static_cast<std::uint16_t>(peer - tx_pos)
                         : static_cast<std::uint16_t>(ring.size - static_cast<std::uint16_t>(tx_pos - peer));
    };
    std::uint16_t free_slots = free_after(tx_peer);
    if (free_slots < frames.size()) {
      const std::uint16_t peer = is_server() ? ring.head().load(std::memory_order_acquire)
                                             : ring.tail().load(std::memory_order_acquire);
      const auto ahead = static_cast<std::uint16_t>(is_server() ? peer - tx_pos : tx_pos - peer);
      if (ahead > ring.size) {
        drop(MemifDrop::kBadRingIndex, is_server() ? "S2C head past the ring" : "C2S tail past our head");
        return 0;
      }
      tx_peer = peer;
      free_slots = free_after(peer);
    }
    std::size_t taken = 0;
    std::size_t sent = 0;
    for (; taken < frames.size(); ++taken) {
      const Frame& f = frames[taken];
      const auto buf = pool.buffer(f.buffer);
      const bool fits_pool = std::size_t{f.offset} + f.length <= buf.size();
      if (!fits_pool || f.length == 0 || (!is_server() && f.length > config.buffer_size)) {
        ++counters.tx_errors;
        (void)pool.free(owner, f.buffer);
        continue;
      }
      if (free_slots == 0) break;
      mp::Desc d = mp::read_desc(ring.desc(tx_pos));
      if (is_server()) {
        // The client's buffer: its declared capacity must lie in its region.
        if (resolve(d, c2s_ring, tx_pos, d.length).data() == nullptr) {
          drop(MemifDrop::kBadDescriptor, "S2C buffer outside the region");
          break;
        }
        if (f.length > d.length) {  // no chaining on transmit yet
          ++counters.tx_errors;
          (void)pool.free(owner, f.buffer);
          continue;
        }
      } else {
        d = {0, 0, 0, client_buffer(true, tx_pos), 0};
      }
      const auto dst = resolve(d, c2s_ring, tx_pos, f.length);
      if (!c2s_ring) tx_seen[tx_pos & ring.mask()] = dst.data();
      std::memcpy(dst.data(), buf.data() + f.offset, f.length);
      d.length = f.length;
      d.flags = 0;
      mp::write_desc(ring.desc(tx_pos), d);
      ++tx_pos;
      --free_slots;
      if (taken + 1 < frames.size()) warm_tx_ahead(ring, free_slots);  // for the rest of this burst
      ++sent;
      ++counters.tx_frames;
      counters.tx_bytes += f.length;
      (void)pool.free(owner, f.buffer);
    }
    if (state != State::kConnected) return taken;  // dropped mid-burst
    tx_held = static_cast<std::uint16_t>(tx_held + sent);
    // Held back only while there is room: a full ring is published at once
    // (the peer must see it to free slots).
    if (tx_held > 0 && (!tx_hold || tx_held >= kMaxHeld || free_slots == 0) && !publish()) {
      if (taken < frames.size()) ++counters.tx_full;
      return taken;
    }
    // For the next sends, after this burst's stores (before them, the
    // requests for those lines would compete with the ones for the lines
    // just written, which the reader is waiting for).
    warm_tx_ahead(ring, free_slots);
    if (taken < frames.size()) ++counters.tx_full;
    return taken;
  }
};

MemifLink::MemifLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MemifLink::~MemifLink() {
  if (impl_->control.valid()) {
    (void)mp::send_msg(impl_->control.get(), mp::encode(mp::Disconnect{0, "interface closed"}));
  }
  impl_->close_connection();
  if (impl_->listener.valid()) ::unlink(impl_->config.socket_path.c_str());
}

Expected<std::unique_ptr<MemifLink>, LinkError> MemifLink::create(const MemifConfig& config,
                                                                  mem::PacketPool& pool, mem::OwnerId owner) {
  sockaddr_un addr{};
  if (config.socket_path.empty() || config.socket_path.size() >= sizeof addr.sun_path ||
      config.socket_path.find('\0') != std::string::npos) {
    return unexpected(link_error(config, config.socket_path.empty() ? EINVAL : ENAMETOOLONG,
                                 "socket path must be 1..107 bytes"));
  }
  if (config.secret.size() > mp::kSecretSize)
    return unexpected(link_error(config, EINVAL, "secret longer than 24 bytes"));
  if (config.log2_ring_size < 1 || config.log2_ring_size > mp::kMaxLog2RingSize) {
    return unexpected(link_error(config, EINVAL, "log2 ring size must be 1..14"));
  }
  if (config.buffer_size < 64 || config.buffer_size > 65535) {
    return unexpected(link_error(config, EINVAL, "buffer size must be 64..65535"));
  }
  if (!pool.has_owner(owner)) return unexpected(link_error(config, EINVAL, "unknown pool owner"));

  auto impl = std::make_unique<Impl>(config, pool, owner);
  impl->info.name = config.name.empty() ? "memif:" + config.socket_path : config.name;
  impl->info.mac = config.mac == wire::MacAddr{} ? made_up_mac() : config.mac;
  impl->info.mtu = config.mtu;
  if (!config.checksums) impl->info.offloads |= Offload::kNoChecksums;
  impl->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!impl->epoll.valid()) return unexpected(link_error(config, errno, "epoll_create1"));
  if (config.role == MemifRole::kServer) {
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, config.socket_path.data(), config.socket_path.size());
    Fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s.valid()) return unexpected(link_error(config, errno, "socket"));
    const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
    if (::bind(s.get(), sa, sizeof addr) != 0) {
      if (errno != EADDRINUSE) return unexpected(link_error(config, errno, "cannot bind"));
      // A socket file is there: replace it only if no server answers on it.
      Fd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      if (probe.valid() && ::connect(probe.get(), sa, sizeof addr) == 0) {
        return unexpected(link_error(config, EADDRINUSE, "another server listens there"));
      }
      ::unlink(config.socket_path.c_str());
      if (::bind(s.get(), sa, sizeof addr) != 0) return unexpected(link_error(config, errno, "cannot bind"));
    }
    if (::listen(s.get(), 8) != 0) return unexpected(link_error(config, errno, "listen"));
    impl->listener = std::move(s);
    impl->epoll_set(impl->listener.get(), true);
  }
  // No connection attempt here: the first call that services the control
  // channel makes it, with that call's time for the handshake deadline.
  return std::unique_ptr<MemifLink>(new MemifLink(std::move(impl)));
}

const LinkInfo& MemifLink::info() const noexcept { return impl_->info; }
int MemifLink::wait_fd() const noexcept { return impl_->epoll.valid() ? impl_->epoll.get() : -1; }
const LinkCounters& MemifLink::counters() const noexcept { return impl_->counters; }
bool MemifLink::connected() const noexcept { return impl_->state == State::kConnected; }
const MemifStats& MemifLink::stats() const noexcept { return impl_->stats; }
const std::string& MemifLink::peer_name() const noexcept { return impl_->peer_name; }

void MemifLink::poll_control(Nanos now) { impl_->service(now); }

std::size_t MemifLink::rx_burst(std::span<Frame> out, Nanos now) {
  Impl& m = *impl_;
  if (m.state != State::kConnected || now >= m.next_service || (++m.calls % kControlEvery) == 0) {
    m.service(now);
  }
  if (m.state != State::kConnected || out.empty()) return 0;
  if (m.tx_held > 0) (void)m.publish();  // a turn of the stack: what was held goes out
  if (m.state != State::kConnected) return 0;
  std::size_t n = m.rx(out);
  if (n == 0 && m.config.interrupts && m.state == State::kConnected) {
    // Clear the eventfd, then look again so a frame published in between is
    // not left waiting for the next kick.
    if (!m.still_nonblocking(m.rx_efd())) return 0;
    std::uint64_t v;
    (void)!::read(m.rx_efd(), &v, sizeof v);
    n = m.rx(out);
  }
  return n;
}

bool MemifLink::arm_wakeup() {
  Impl& m = *impl_;
  // Not connected: the epoll fd wakes on the control socket.
  if (m.state != State::kConnected) return true;
  if (m.tx_held > 0 && !m.publish()) return true;  // nothing held through a sleep
  Ring& ring = m.rx_ring();
  ring.flags().store(0, std::memory_order_relaxed);
  // Unmask, then look at the ring (the peer publishes, then reads the flag):
  // a frame published before the peer saw the flag unmasked is seen here.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // A peer that made the eventfd blocking is dropped (still_nonblocking),
  // which takes the rings away: nothing more to look at then.
  if (!m.still_nonblocking(m.rx_efd())) return true;
  std::uint64_t v;
  (void)!::read(m.rx_efd(), &v, sizeof v);  // a kick from before this sleep
  const std::uint16_t limit = m.is_server() ? ring.head().load(std::memory_order_acquire)
                                            : ring.tail().load(std::memory_order_acquire);
  if (limit != m.rx_pos) {
    disarm_wakeup();
    return false;
  }
  return true;
}

void MemifLink::disarm_wakeup() {
  Impl& m = *impl_;
  if (m.state != State::kConnected || m.config.interrupts) return;
  m.rx_ring().flags().store(mp::kRingFlagMaskInterrupts, std::memory_order_relaxed);
}

std::size_t MemifLink::tx_burst(std::span<const Frame> frames, Nanos now) {
  Impl& m = *impl_;
  if (m.state != State::kConnected) m.service(now);
  if (frames.empty()) {
    (void)m.publish();
    return 0;
  }
  if (m.state != State::kConnected) {
    ++m.counters.tx_full;
    return 0;
  }
  return m.tx(frames);
}

void MemifLink::set_tx_hold(bool hold) {
  Impl& m = *impl_;
  m.tx_hold = hold;
  if (!hold) (void)m.publish();
}

Nanos MemifLink::next_deadline() const noexcept { return impl_->tx_held > 0 ? Nanos{0} : Nanos::max(); }

Expected<std::unique_ptr<Link>, LinkError> open_memif(const LinkUri& uri, mem::PacketPool& pool,
                                                      mem::OwnerId owner) {
  MemifConfig c;
  c.socket_path = uri.target;
  c.name = "memif:" + uri.target;
  for (const auto& [key, value] : uri.params) {
    if (key == "role" && value == "server") {
      c.role = MemifRole::kServer;
    } else if (key == "role" && value == "client") {
      c.role = MemifRole::kClient;
    } else if (key == "id") {
      const auto r = std::from_chars(value.data(), value.data() + value.size(), c.interface_id);
      if (r.ec != std::errc{} || r.ptr != value.data() + value.size()) {
        return unexpected(link_error(c, EINVAL, "id must be a number"));
      }
    } else if (key == "secret") {
      c.secret = value;
    } else if (key == "mtu") {
      const auto r = std::from_chars(value.data(), value.data() + value.size(), c.mtu);
      if (r.ec != std::errc{} || r.ptr != value.data() + value.size() || c.mtu < kMemifMinMtu ||
          c.mtu > kMemifMaxMtu) {
        return unexpected(link_error(c, EINVAL,
                                     "mtu must be a number from " + std::to_string(kMemifMinMtu) + " to " +
                                         std::to_string(kMemifMaxMtu)));
      }
      c.buffer_size = memif_buffer_size_for(c.mtu);
    } else if (key == "checksums" && (value == "on" || value == "off")) {
      c.checksums = value == "on";
    } else {
      return unexpected(LinkError{std::make_error_code(std::errc::invalid_argument),
                                  "memif:" + uri.target + ": unknown parameter or value '" + key + "=" +
                                      value +
                                      "' (role=server|client, id=N, secret=S, mtu=N, checksums=on|off)"});
    }
  }
  auto link = MemifLink::create(c, pool, owner);
  if (!link) return unexpected(link.error());
  return std::unique_ptr<Link>(std::move(*link));
}

}  // namespace usnet::link
