// TCP over IPv4: a TcpLayer registered with one net::Interface for protocol
// 6, the connections it demultiplexes to (connection.hpp), listeners, and
// the handles the application holds (TcpStream, TcpListener).
//
// Like the interface, the layer does no I/O and reads no clock: segments
// arrive while the application calls Interface::poll(now) (the layer's
// handler runs inside it); timers run in poll_timers(now), due at
// next_deadline(); every segment goes out through Interface::send().
//
// Lifetime. The layer owns every connection. A TcpStream is the
// application's handle to one: destroying it (or close()) closes the
// connection, which then finishes its closing handshake and TIME-WAIT
// inside the layer and is freed when it reaches CLOSED. A connection that
// ends (reset, timeout) while the application still holds its handle keeps
// its slot until the handle goes, so the application can read the error.
// The layer must outlive its handles' use (calls on a handle whose layer is
// gone are not allowed) and must die before the interface.
//
// Demultiplexing. Connections are found by their 4-tuple in O(1) (a keyed
// hash table, conn_table.hpp); a SYN for no connection goes to the listener
// of its address and port (exact address before the wildcard). Timers of
// all connections are in one timing wheel (timer_wheel.hpp), so cost per
// segment and per timer stays flat with many connections.
//
// A segment for no connection and no listener is answered with a reset
// (RFC 9293 3.10.7.1), rate-limited; segments to broadcast or multicast
// addresses are dropped. Listener backlogs bound half-open connections
// (SYN-RECEIVED) and established connections not yet accepted; a SYN
// beyond the half-open bound is dropped and counted.
//
// ECN (RFC 3168): the IP ECN field of each segment goes to its connection,
// and the codepoint a connection chooses goes into the IP header of what it
// sends (connection.hpp). TcpConfig::connection.ecn says whether
// connections ask for ECN or only accept it. Connections made from SYN
// cookies have no ECN: the stateless SYN,ACK does not agree to it, since
// the cookie could not remember that it did.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "usnet/net/interface.hpp"
#include "usnet/tcp/conn_table.hpp"
#include "usnet/tcp/connection.hpp"
#include "usnet/tcp/isn.hpp"
#include "usnet/tcp/timer_wheel.hpp"
#include "usnet/util/expected.hpp"

namespace usnet::tcp {

struct Endpoint {
  wire::Ipv4Addr addr;  // unspecified: any (listen)
  std::uint16_t port = 0;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  std::string to_string() const;  // "198.18.0.2:80"
};

struct TcpConfig {
  ConnectionConfig connection;
  std::uint32_t max_connections = 4096;
  // Memory for connection buffers in total: each connection commits its
  // send_buffer + recv_buffer (ConnectionConfig) while it exists, and a
  // connection that would go past this bound is not made (a SYN is answered
  // with a cookie or dropped, connect() fails with ENOBUFS). With
  // max_connections it bounds what peers can make the layer hold; the
  // buffers themselves are allocated on first use.
  std::size_t max_buffer_memory = std::size_t{1} << 30;
  std::uint32_t max_listeners = 64;
  // RFC 6335 6: the dynamic (ephemeral) port range.
  std::uint16_t ephemeral_min = 49152;
  std::uint16_t ephemeral_max = 65535;
  // Resets sent for segments nobody owns, per second (and burst).
  std::uint32_t reset_rate = 1000;
  // SYN cookies (RFC 4987 3.6): when a listener's half-open connections
  // reach its backlog, further SYNs are answered statelessly and the
  // connection is made when the cookie comes back, so a SYN flood cannot
  // keep legitimate clients out (ROBUSTNESS 14). Off: such SYNs are dropped.
  bool syn_cookies = true;
  // Random: the secret of initial sequence numbers (RFC 6528), the hash
  // keys, the ephemeral port start and each connection's randomness. The
  // core reads no randomness: the caller passes a random value (from
  // getrandom); tests a fixed one.
  std::uint64_t seed = 1;
};

enum class TcpDropReason : std::uint8_t {
  kMalformed,     // header too short or a bad data offset
  kBadChecksum,   // RFC 9293 3.1
  kBadOptions,    // an option with a bad length
  kBroadcast,     // to a broadcast or multicast address (RFC 1122 4.2.3.10)
  kNoConnection,  // nobody owns it (a reset is sent unless it was one)
  kBacklogFull,   // a SYN beyond the listener's half-open bound
  kNoSlot,        // a SYN when max_connections are open
  kNoMemory,      // a connection would pass max_buffer_memory
  kResetLimited,  // a reset that the rate limit withheld
  kBadCookie,     // an ACK for a listener whose cookie did not check out (a reset is sent)
  kNoSynNoAck,    // to a listener with none of SYN, ACK, RST: no reset (RFC 9293 3.10.7.2 fourth)
  kCount
};
inline constexpr std::size_t kTcpDropReasonCount = static_cast<std::size_t>(TcpDropReason::kCount);
std::string_view to_string(TcpDropReason r) noexcept;

struct TcpCounters {
  std::uint64_t rx_segments = 0;
  std::uint64_t tx_segments = 0;
  std::uint64_t active_opens = 0;
  std::uint64_t passive_opens = 0;  // SYNs that made a connection
  std::uint64_t accepted = 0;       // handed to the application by accept()
  std::uint64_t resets_sent = 0;    // for segments nobody owns
  std::uint64_t connections_freed = 0;
  std::uint64_t icmp_errors = 0;           // ICMP errors about our segments
  std::uint64_t syn_cookies_sent = 0;      // SYN,ACKs answered statelessly
  std::uint64_t syn_cookies_accepted = 0;  // connections made from a returning cookie
  std::uint64_t tx_errors = 0;             // Interface::send refused a segment
  std::array<std::uint64_t, kTcpDropReasonCount> drops{};
  void drop(TcpDropReason r) noexcept { ++drops[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped(TcpDropReason r) const noexcept { return drops[static_cast<std::size_t>(r)]; }
};

class TcpLayer;

// A pool buffer holding part of a byte stream, for the zero-copy calls:
// one received (TcpStream::receive_buffer(): the bytes the stream's data
// arrived in, read in place), or one to fill and send
// (TcpStream::alloc_buffer(), then send_buffer()). It gives the buffer back
// to the pool when destroyed or released. Movable, not copyable.
class TcpBuffer {
 public:
  TcpBuffer() = default;
  TcpBuffer(TcpBuffer&& o) noexcept { *this = std::move(o); }
  TcpBuffer& operator=(TcpBuffer&& o) noexcept;
  TcpBuffer(const TcpBuffer&) = delete;
  TcpBuffer& operator=(const TcpBuffer&) = delete;
  ~TcpBuffer() { release(); }

  bool valid() const noexcept { return pool_ != nullptr; }
  // The bytes: those received, or those written so far (size()).
  std::span<std::byte> data() const noexcept;
  std::size_t size() const noexcept { return len_; }
  // The most bytes the buffer can hold from where its data starts.
  std::size_t capacity() const noexcept;
  // For a buffer to send: the whole space to write into (capacity()
  // bytes); then resize() to the number written. Clamped to capacity().
  std::span<std::byte> space() const noexcept;
  void resize(std::size_t n) noexcept;
  // Gives the buffer back now; the buffer is then empty and not valid. Idempotent.
  void release() noexcept;

 private:
  friend class TcpStream;
  TcpBuffer(mem::PacketPool* pool, mem::OwnerId owner, mem::BufIndex index, std::size_t offset,
            std::size_t len)
      : pool_(pool), owner_(owner), index_(index), offset_(offset), len_(len) {}
  mem::PacketPool* pool_ = nullptr;
  mem::OwnerId owner_{};
  mem::BufIndex index_ = 0;
  std::size_t offset_ = 0;
  std::size_t len_ = 0;
};

// The application's handle to one connection. Movable; destroying it
// closes the connection (which goes on closing inside the layer).
class TcpStream {
 public:
  TcpStream() = default;
  TcpStream(TcpStream&& o) noexcept;
  TcpStream& operator=(TcpStream&& o) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();

  bool valid() const noexcept { return layer_ != nullptr; }
  Expected<std::size_t, std::error_code> send(std::span<const std::byte> data, Nanos now);
  Expected<std::size_t, std::error_code> receive(std::span<std::byte> out, Nanos now);
  // Zero copy (see TcpBuffer). receive_buffer(): the next received bytes in
  // the pool buffer holding them; an invalid TcpBuffer when nothing is
  // readable (then connection().eof() or the error says why; the error is
  // returned once nothing is left). A full-sized segment arrives, stays and
  // is read in the buffer it came in; small ones are collapsed into shared
  // buffers on arrival. alloc_buffer(): an empty pool buffer to fill;
  // ENOBUFS when the pool has none. send_buffer(): queues the buffer's
  // bytes; the buffer is the stream's when all were taken (it is then
  // invalid); EAGAIN when the send buffer has less room than that (nothing
  // taken: try again when connection().writable() allows); fewer taken
  // only when a small buffer's bytes had to be copied and the pool ran out
  // (the buffer keeps the rest). Errors as send().
  Expected<TcpBuffer, std::error_code> receive_buffer(Nanos now);
  Expected<TcpBuffer, std::error_code> alloc_buffer();
  Expected<std::size_t, std::error_code> send_buffer(TcpBuffer& buffer, Nanos now);
  std::error_code shutdown_write(Nanos now);
  // Closes (FIN after the queued data, or RST if unread data is pending)
  // and lets go of the connection.
  void close(Nanos now);
  void abort(Nanos now);
  // TCP_NODELAY and SO_KEEPALIVE. Buffer sizes start as the layer's
  // TcpConfig::connection says (set_buffer_sizes() below changes them for
  // one connection); the keep-alive timing is the layer's; SO_LINGER with a zero timeout
  // is abort(); SO_REUSEADDR's effect is always on (a listener may bind a
  // port with connections in TIME-WAIT; a 4-tuple in use is refused).
  void set_no_delay(bool on, Nanos now);
  void set_keepalive(bool on, Nanos now);
  // SO_SNDBUF and SO_RCVBUF for this connection (Connection::set_buffer_sizes):
  // EINVAL for a size of 0 or above 2^30; ENOBUFS if the layer's
  // max_buffer_memory would be passed (nothing changes then).
  std::error_code set_buffer_sizes(std::size_t send, std::size_t recv, Nanos now);
  // The connection (state, counters, error ...); valid while the handle is.
  const Connection& connection() const;

 private:
  friend class TcpLayer;
  TcpStream(TcpLayer* layer, std::uint32_t slot, std::uint32_t generation)
      : layer_(layer), slot_(slot), generation_(generation) {}
  Connection& conn() const;
  TcpLayer* layer_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint32_t generation_ = 0;
};

class TcpListener {
 public:
  TcpListener() = default;
  TcpListener(TcpListener&& o) noexcept;
  TcpListener& operator=(TcpListener&& o) noexcept;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener();

  bool valid() const noexcept { return layer_ != nullptr; }
  // An established connection, if one is waiting.
  std::optional<TcpStream> accept();
  // Established connections waiting for accept().
  std::size_t pending() const;
  // Stops listening; connections not yet accepted are reset.
  void close();

 private:
  friend class TcpLayer;
  TcpListener(TcpLayer* layer, std::uint32_t index, std::uint32_t generation)
      : layer_(layer), index_(index), generation_(generation) {}
  TcpLayer* layer_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t generation_ = 0;
};

class TcpLayer : private SegmentSink {
 public:
  // EINVAL for a bad configuration (connection config, empty ephemeral
  // range, zero limits); EEXIST if protocol 6 already has a handler.
  // `pool` and `owner` are the interface's: out-of-order segments stay in
  // the buffers they arrived in.
  static Expected<std::unique_ptr<TcpLayer>, std::error_code> create(net::Interface& iface,
                                                                     mem::PacketPool& pool,
                                                                     mem::OwnerId owner,
                                                                     const TcpConfig& config);
  ~TcpLayer() override;
  TcpLayer(const TcpLayer&) = delete;
  TcpLayer& operator=(const TcpLayer&) = delete;

  // Active open to `remote` from an ephemeral port (or `local_port`).
  // ENETUNREACH: no route; EADDRINUSE: no free port or the 4-tuple is
  // taken; ENOBUFS: max_connections or max_buffer_memory reached.
  Expected<TcpStream, std::error_code> connect(Endpoint remote, Nanos now, std::uint16_t local_port = 0);
  // Passive open on `local` (address any, or one of the interface's).
  // EADDRINUSE: already listening there; EADDRNOTAVAIL: not our address;
  // EINVAL: port 0 or backlog 0; ENOBUFS: max_listeners reached.
  Expected<TcpListener, std::error_code> listen(Endpoint local, std::uint32_t backlog = 128);

  // Runs the connections' timers that are due.
  void poll_timers(Nanos now);
  // When poll_timers() next has work; Nanos::max() if none.
  Nanos next_deadline() const noexcept;

  const TcpCounters& counters() const noexcept { return counters_; }
  // Connections in the layer (any state but the freed).
  std::size_t connection_count() const noexcept { return live_; }
  // Calls `f` for every live connection (for statistics), in slot order.
  template <typename F>
  void for_each_connection(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.conn) f(*s.conn);
    }
  }
  // Buffer memory the connections now commit (see max_buffer_memory).
  std::size_t buffer_memory_committed() const noexcept { return buffer_committed_; }
  // Connections that still have data or a FIN of ours to deliver (or, not
  // yet established, a handshake to finish): the ones a program that stops
  // should wait for. TIME-WAIT and FIN-WAIT-2 (everything sent was
  // acknowledged) are not counted.
  std::size_t connections_delivering() const noexcept;
  // The connections' own counters summed over every connection the layer
  // has had (freed ones included).
  ConnectionCounters connection_totals() const noexcept;
  // "Tcp:" and one line per counter, per non-zero drop reason, and the
  // connections' own counters summed.
  std::string format_counters(bool all = false) const;

 private:
  friend class TcpStream;
  friend class TcpListener;

  struct Slot {
    std::unique_ptr<Connection> conn;
    std::uint32_t generation = 0;
    bool has_handle = false;     // the application holds a TcpStream
    bool in_table = false;       // its 4-tuple is in table_
    bool steered = false;        // its local port was given to steer_port (active open)
    std::int32_t listener = -1;  // not yet accepted from this listener
    bool queued = false;         // in the listener's accept queue
    TimerId timer;
    Nanos armed = Nanos::max();  // the deadline `timer` holds (max: none), so settle() re-arms only on change
    FourTuple key;
    std::size_t committed = 0;  // its send and receive buffer sizes, counted in buffer_committed_
  };
  struct Listener {
    bool open = false;
    std::uint32_t generation = 0;
    Endpoint local;
    std::uint32_t backlog = 0;
    std::uint32_t half_open = 0;
    std::deque<std::uint32_t> accept_queue;
  };

  TcpLayer(net::Interface& iface, mem::PacketPool& pool, mem::OwnerId owner, const TcpConfig& config,
           ConnTable table, ListenerTable listeners, TimerWheel wheel);

  void on_datagram(net::InboundDatagram& d, Nanos now);
  void on_icmp_error(const net::IcmpErrorInfo& e, Nanos now);
  bool send_segment(const Endpoints& ep, const wire::TcpRepr& header, Payload payload, Nanos now) override;
  // `ecn` goes into the IP header (RFC 3168 5; SendOptions::ecn).
  bool send_segment_ecn(const Endpoints& ep, const wire::TcpRepr& header, Payload payload, IpEcn ecn,
                        Nanos now) override;
  void send_reset_for(const net::InboundDatagram& d, const wire::TcpRepr& seg, Nanos now);
  void send_cookie(const net::InboundDatagram& d, const wire::TcpRepr& syn, Nanos now);
  // The ACK of a cookie exchange for listener `li`: a connection if the
  // cookie checks out. True if the segment was handled.
  bool accept_cookie(std::uint32_t li, net::InboundDatagram& d, const wire::TcpRepr& seg,
                     std::span<const std::byte> payload, Nanos now);

  std::optional<std::uint32_t> new_slot(const Endpoints& ep, Nanos now);
  // After anything happened to a connection: accept queue, table, timer, reaping.
  void settle(std::uint32_t slot, Nanos now);
  void free_slot(std::uint32_t slot);
  bool slot_ok(std::uint32_t slot, std::uint32_t generation) const noexcept;
  SeqNum initial_sequence(const FourTuple& t, Nanos now) const noexcept;
  std::optional<std::uint16_t> pick_port(wire::Ipv4Addr local, const Endpoint& remote);

  // Handle operations.
  void release_stream(std::uint32_t slot, std::uint32_t generation);
  std::optional<TcpStream> accept_from(std::uint32_t listener, std::uint32_t generation);
  void close_listener(std::uint32_t listener, std::uint32_t generation);

  net::Interface* iface_;
  mem::PacketPool* pool_;
  mem::OwnerId owner_;
  TcpConfig config_;
  ConnTable table_;
  ListenerTable listeners_table_;
  TimerWheel wheel_;
  net::TokenBucket resets_;
  IsnGenerator isn_{SipKey{}};  // RFC 6528, keyed from the seed
  std::optional<SynCookies> cookies_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<Listener> listeners_;
  std::size_t live_ = 0;
  std::size_t buffer_committed_ = 0;      // the live connections' Slot::committed
  std::uint32_t last_slot_ = UINT32_MAX;  // the connection of the last segment received (a hint)
  std::size_t per_connection_buffers() const noexcept {
    return config_.connection.send_buffer + config_.connection.recv_buffer;
  }
  // Why there is no room for one more connection (kNoSlot: max_connections;
  // kNoMemory: max_buffer_memory), or nullopt if there is.
  std::optional<TcpDropReason> no_room() const noexcept {
    if (live_ >= config_.max_connections) return TcpDropReason::kNoSlot;
    if (buffer_committed_ + per_connection_buffers() > config_.max_buffer_memory)
      return TcpDropReason::kNoMemory;
    return std::nullopt;
  }
  TcpCounters counters_;
  ConnectionCounters freed_totals_;  // counters of connections already freed
  std::uint64_t rng_;
  Nanos last_now_{0};
};

}  // namespace usnet::tcp
