// One TCP connection (RFC 9293): the transmission control block, the state
// machine and the segment arrival rules, with the RFC 5961 defences, RFC 7323
// window scaling, timestamps and PAWS, the RFC 6298 retransmission timer and
// NewReno loss recovery (RFC 5681, RFC 6582) driven by a congestion
// controller (congestion.hpp).
//
// The connection does no I/O and reads no clock. Segments arrive through
// on_segment() (already demultiplexed to it by its 4-tuple and checksum-
// verified by the layer), time through on_timer(now) at or after
// next_deadline(), and every segment it sends goes to the SegmentSink it
// was given, as a header (wire::TcpRepr) and its payload in pieces.
//
// Buffers. The send and receive buffers are BufferChains of pool buffers
// (buffer_chain.hpp) of configured sizes in bytes: the pool given to
// create(), or without one a private pool of the connection's own. A
// segment that arrives in order stays in the buffer it came in (the frame
// offered as InboundBuffer), unless it is small enough to be collapsed into
// the chain's own buffer (a copy); the application reads the pieces in
// place (receive_piece(), zero copy) or copies them out (receive()). It
// sends from buffers it filled (send_buffer(), no copy in) or copies
// (send()); each segment is copied from the send chain into a frame, so
// the chain keeps the bytes until acknowledged. Data that arrives out of
// order stays in the pool buffer it came in (an OooQueue, when the
// connection was given the pool) and moves to the receive chain without a
// copy once the hole before it is filled;
// the ACKs meanwhile carry SACK blocks (RFC 2018) and D-SACK (RFC 2883) when
// the peer allowed SACK. Without a pool, out-of-order data is dropped and
// answered with a duplicate ACK. A FIN above RCV.NXT (alone or after
// out-of-order data) is ACKed at once and held in the same queue, so that
// RCV.NXT moves over it as soon as the hole before it is filled; the lowest
// FIN a peer sends wins and nothing past it is delivered (OooQueue). With
// SACK the sender recovers by RFC 6675 (a scoreboard of what the peer
// SACKed: only the holes are sent again, as the pipe allows; after a
// timeout too); without it by NewReno (RFC 6582).
//
// Segment arrival follows RFC 9293 3.10.7 step by step; the code names the
// steps. Deviations, each a later RFC's rule:
//   - RFC 5961 3: an RST in the window but not at RCV.NXT, and (4) a SYN in
//     any synchronized state, get a challenge ACK; (5) an ACK below
//     SND.UNA - MAX.SND.WND or above SND.NXT is dropped and ACKed. Challenge
//     ACKs are limited per connection to challenge_ack_limit per second plus
//     a random part of up to half that, drawn again each second, so an
//     attacker cannot count them to learn the window (RFC 5961 7, CVE-2016-5696).
//   - RFC 7323 5: PAWS drops a non-RST segment whose timestamp is older than
//     TS.Recent (and ACKs it); TS.Recent is updated only from segments that
//     cover RCV.NXT (5.3 rule R3). A non-RST segment without timestamps
//     once they are agreed is processed and counted, not dropped as RFC
//     7323 3.2 advises (a SHOULD; see drop_missing_timestamps).
//   - RFC 1122 4.2.3.3 / RFC 9293 3.8.6.2: receiver silly window avoidance;
//     sender: Nagle (unless no_delay) and the RFC 9293 3.8.6.2.1 rules.
//   - The urgent mechanism is not supported: URG is ignored and the data is
//     delivered in line (RFC 6093 advises against new uses); an urgent
//     pointer past the payload is harmless (ROBUSTNESS 9).
//
// ECN (RFC 3168 6.1), when both sides agree in the handshake (see EcnMode):
// new data segments go out with ECT(0) in the IP header (never SYNs, pure
// ACKs, retransmissions, resets or probes: 6.1.1, 6.1.4-6.1.6); a data
// segment that arrives with CE makes every ACK carry ECE until a segment
// with CWR arrives (6.1.3); an ACK with ECE reduces the congestion window
// as a loss would, at most once per window, and the next new data segment
// after any window reduction carries CWR (6.1.2). The IP ECN field of a
// received segment comes in as on_segment()'s `ecn`. A connection without
// ECN ignores ECE, CWR and CE and marks nothing.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "usnet/mem/pool.hpp"
#include "usnet/tcp/buffer_chain.hpp"
#include "usnet/tcp/congestion.hpp"
#include "usnet/tcp/ooo_queue.hpp"
#include "usnet/tcp/sack_scoreboard.hpp"
#include "usnet/util/expected.hpp"
#include "usnet/wire/addr.hpp"
#include "usnet/wire/seq.hpp"
#include "usnet/wire/tcp.hpp"

namespace usnet::tcp {

using wire::SeqNum;

enum class State : std::uint8_t {
  kClosed,
  kListen,
  kSynSent,
  kSynReceived,
  kEstablished,
  kFinWait1,
  kFinWait2,
  kCloseWait,
  kClosing,
  kLastAck,
  kTimeWait,
};
const char* to_string(State s) noexcept;

// RFC 3168 5: the two-bit ECN field of the IP header.
enum class IpEcn : std::uint8_t { kNotEct = 0, kEct1 = 1, kEct0 = 2, kCe = 3 };

// When a connection uses ECN (RFC 3168 6.1.1): both sides must agree in
// the handshake.
enum class EcnMode : std::uint8_t {
  kOff,     // never: our SYNs do not ask, a peer's request is declined
  kAccept,  // passive: agree when the peer's SYN asks (ECE and CWR both set);
            // our own SYNs do not ask (Linux's net.ipv4.tcp_ecn = 2, its default)
  kOn,      // also ask in our SYNs (tcp_ecn = 1); a SYN sent again after a
            // timeout no longer asks (RFC 3168 6.1.1.1: a middlebox may drop
            // ECN-setup SYNs), as Linux's tcp_ecn_fallback
};
const char* to_string(EcnMode m) noexcept;

struct ConnectionConfig {
  std::size_t send_buffer = std::size_t{256} * 1024;
  std::size_t recv_buffer = std::size_t{256} * 1024;
  // The MSS this side announces: what fits the local MTU (1500 - 40).
  std::uint16_t mss = 1460;
  // Below this the peer's MSS is raised to it (a peer cannot make us send
  // 1-byte segments: ROBUSTNESS 10). RFC 9293 3.7.1: 536 is the default
  // when the peer sends none.
  std::uint16_t min_mss = 88;
  // RFC 6298: initial RTO 1 s, lower bound (RFC 6298 says 1 s; a low
  // latency network recovers faster with less, as Linux's 200 ms), upper 60 s+.
  Nanos initial_rto = std::chrono::seconds(1);
  Nanos min_rto = std::chrono::milliseconds(200);
  Nanos max_rto = std::chrono::seconds(120);
  // RFC 9293 3.8.3: R2, retransmissions of one segment after which the
  // connection is given up (ETIMEDOUT); SYNs have their own (Linux 6).
  std::uint32_t max_retransmits = 15;
  std::uint32_t max_syn_retransmits = 6;
  // TIME-WAIT lasts 2 * msl (RFC 9293 3.4.2 suggests MSL = 2 min; Linux
  // holds TIME-WAIT 60 s).
  Nanos msl = std::chrono::seconds(30);
  // A connection the application closed that sits in FIN-WAIT-2 (the peer
  // never sends its FIN) is dropped after this (Linux: tcp_fin_timeout).
  Nanos fin_wait2_timeout = std::chrono::seconds(60);
  // Delayed ACK (RFC 1122 4.2.3.2, RFC 9293 3.8.6.3): at most this late,
  // and at least every second full-sized segment is ACKed at once.
  Nanos delayed_ack = std::chrono::milliseconds(40);
  // Segments ACKed at once at the start of the connection (quick ACK, as
  // Linux: the peer's slow start is not held back by delayed ACKs).
  std::uint32_t quick_acks = 16;
  bool no_delay = false;  // disables Nagle (TCP_NODELAY)
  // Keep-alive (RFC 1122 4.2.3.6: off by default; idle at least 2 hours):
  // after keepalive_idle without a segment from the peer and with nothing
  // outstanding, a probe every keepalive_interval; keepalive_probes
  // unanswered ones end the connection with ETIMEDOUT.
  bool keepalive = false;
  Nanos keepalive_idle = std::chrono::hours(2);
  Nanos keepalive_interval = std::chrono::seconds(75);
  std::uint32_t keepalive_probes = 9;
  bool window_scaling = true;
  bool timestamps = true;
  // RFC 7323 3.2: once timestamps are agreed, "If a non-<RST> segment is
  // received without a TSopt, a TCP SHOULD silently drop the segment." A
  // SHOULD that deployed stacks do not follow: several widely used ones
  // agree to timestamps and then leave them off some segments (keep-alives,
  // or all of them after the handshake), so FreeBSD tolerates them by
  // default (net.inet.tcp.tolerate_missing_ts = 1 since 2021) and Linux
  // processes them. The default does the same: the segment is processed
  // (PAWS and TS.Recent skip it) and counted (ts_missing); true drops it,
  // counted as SegmentDrop::kNoTimestamps. An RST is never dropped for it.
  bool drop_missing_timestamps = false;
  bool sack = true;  // offer SACK-permitted and send SACK blocks (RFC 2018)
                     // Out-of-order segments held (pool buffers pinned); their bytes are
                     // bounded by recv_buffer (ROBUSTNESS 11).
  std::uint32_t ooo_max_segments = 256;
  // SACKed ranges the sender's scoreboard keeps (ROBUSTNESS 10).
  std::uint32_t sack_max_ranges = 64;
  std::uint8_t window_shift = 7;           // the shift we announce (RFC 7323 2.2), <= 14
  std::uint32_t challenge_ack_limit = 10;  // per second, plus up to half again at random
  CongestionAlgorithm congestion = kDefaultCongestionAlgorithm;
  // ECN (RFC 3168). Accept only, by default, as Linux: a peer that asks
  // gets it, active opens do not ask. Asking costs nothing against a
  // compliant peer, but paths with middleboxes that drop ECN-setup SYNs or
  // ECT packets still exist, and the only fallback here is the SYN
  // retransmission one (nothing detects a path that drops ECT data); so
  // an application turns on kOn where it knows its paths.
  EcnMode ecn = EcnMode::kAccept;
};

struct Endpoints {
  wire::Ipv4Addr local_addr;
  std::uint16_t local_port = 0;
  wire::Ipv4Addr remote_addr;
  std::uint16_t remote_port = 0;
  friend bool operator==(const Endpoints&, const Endpoints&) = default;
};

// A segment's payload: consecutive byte ranges, in order.
using Payload = std::span<const std::span<const std::byte>>;

// Where the connection's segments go.
class SegmentSink {
 public:
  virtual ~SegmentSink() = default;
  // A segment: the header (payload_len set) and its payload, in pieces
  // (consecutive ranges of the send buffer). The sink adds the IP header, computes the checksum and sends.
  // False if it could not (the link is full, no buffer): the connection
  // then tries again shortly instead of counting the segment as sent.
  virtual bool send_segment(const Endpoints& endpoints, const wire::TcpRepr& header, Payload payload,
                            Nanos now) = 0;
  // The same with the ECN field for the IP header (RFC 3168 5): ECT(0) on
  // the new data segments of an ECN-capable connection, not-ECT on every
  // other segment. The connection sends through this one only. The default
  // drops the codepoint and calls send_segment(), for sinks that have no
  // IP header to put it in.
  virtual bool send_segment_ecn(const Endpoints& endpoints, const wire::TcpRepr& header, Payload payload,
                                IpEcn ecn, Nanos now) {
    (void)ecn;
    return send_segment(endpoints, header, payload, now);
  }
};

// Why a segment was dropped, for counters.
enum class SegmentDrop : std::uint8_t {
  kNotAcceptable,    // RFC 9293 3.10.7.4 first: outside the receive window
  kPaws,             // RFC 7323 5: timestamp older than TS.Recent
  kRstOutOfWindow,   // RST outside the window: ignored
  kRstChallenged,    // RST in the window but not exact: challenge ACK
  kSynChallenged,    // SYN in a synchronized state: challenge ACK
  kAckUnacceptable,  // RFC 5961 5.2: ACK outside [SND.UNA - MAX.SND.WND, SND.NXT]
  kNoAck,            // no ACK bit in a synchronized state
  kOutOfOrder,       // data beyond RCV.NXT that could not be queued (no pool, or a queue bound)
  kBadSynSentAck,    // SYN-SENT: an ACK for something we never sent
  kClosed,           // the connection is closed
  kZeroWindow,       // RFC 9293 3.10.7.4 first: text into a zero receive window (its ACK
                     // field taken, answered with an ACK: RFC 1122 4.2.2.17)
  kBeyondFin,        // text or a FIN past a FIN the peer sent earlier, which ends its
                     // stream (never delivered; see OooQueue)
  kNoTimestamps,     // RFC 7323 3.2: no TSopt once agreed (only with drop_missing_timestamps)
  kNoBuffer,         // in-order text the pool had no buffer for (a copy into the
                     // receive chain); not acknowledged, so the peer sends it again
  kCount
};
inline constexpr std::size_t kSegmentDropCount = static_cast<std::size_t>(SegmentDrop::kCount);
const char* to_string(SegmentDrop d) noexcept;

struct ConnectionCounters {
  std::uint64_t segments_in = 0, segments_out = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;  // payload, in order / first transmissions
  std::uint64_t retransmits = 0;              // segments sent again (timeout or fast retransmit)
  std::uint64_t retransmitted_bytes = 0;
  std::uint64_t timeouts = 0;          // RTO expiries
  std::uint64_t fast_retransmits = 0;  // recoveries entered on three duplicate ACKs
  std::uint64_t dup_acks = 0;
  std::uint64_t challenge_acks = 0;          // sent
  std::uint64_t challenge_acks_limited = 0;  // withheld by the rate limit
  std::uint64_t window_probes = 0;
  std::uint64_t keepalive_probes = 0;
  std::uint64_t send_refused = 0;  // data segments the interface could not take (tried again)  // keep-alive
                                   // probes sent           // zero-window probes sent
  std::uint64_t delayed_acks = 0;  // ACKs sent by the delayed-ACK timer
  std::uint64_t ooo_queued = 0;    // segments kept in the out-of-order queue
  std::uint64_t ts_missing = 0;    // non-RST segments without TSopt once agreed (RFC 7323 3.2)
  std::uint64_t pmtu_updates = 0;  // segment size lowered by "fragmentation needed"
  std::uint64_t pmtu_ignored = 0;  // such messages ignored (sequence not ours, MTU not lower)
  std::uint64_t sack_recoveries = 0;  // RFC 6675 recoveries (also counted in fast_retransmits)
  std::uint64_t dsacks_received = 0;  // D-SACK blocks the peer sent (RFC 2883)
  // ECN (RFC 3168).
  std::uint64_t ecn_negotiated = 0;       // 1 once the connection is established with ECN
  std::uint64_t ect_sent = 0;             // data segments sent with ECT(0)
  std::uint64_t ce_received = 0;          // data segments that arrived with CE
  std::uint64_t ece_sent = 0;             // segments sent with ECE (echoing CE)
  std::uint64_t ece_received = 0;         // acceptable ACKs with ECE
  std::uint64_t cwr_sent = 0;             // data segments sent with CWR
  std::uint64_t cwr_received = 0;         // segments with CWR that ended our ECE
  std::uint64_t ecn_cwnd_reductions = 0;  // congestion window reductions for ECE
  std::array<std::uint64_t, kSegmentDropCount> drops{};
  void drop(SegmentDrop d) noexcept { ++drops[static_cast<std::size_t>(d)]; }
  std::uint64_t dropped(SegmentDrop d) const noexcept { return drops[static_cast<std::size_t>(d)]; }
};

class Connection {
 public:
  // `random` seeds the challenge-ACK randomness and the timestamp offset
  // (the caller draws it from a random source; tests fix it).
  // With `pool`, out-of-order segments are kept in their buffers (owned by
  // `owner`, the owner of the buffers segments arrive in).
  static Expected<std::unique_ptr<Connection>, std::error_code> create(
      const ConnectionConfig& config, const Endpoints& endpoints, SegmentSink& sink, std::uint64_t random,
      mem::PacketPool* pool = nullptr, mem::OwnerId owner = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The pool buffer a segment's payload is in, offered to the connection:
  // it sets `taken` when it keeps the buffer (an out-of-order segment);
  // otherwise the caller still owns and frees it.
  struct InboundBuffer {
    mem::BufIndex buffer = 0;
    std::uint16_t payload_offset = 0;  // where the payload starts in the buffer
    bool taken = false;
  };

  // Active open (RFC 9293 3.10.1): sends the SYN; SYN-SENT. EISCONN unless CLOSED.
  std::error_code connect(SeqNum iss, Nanos now);
  // Passive open: the layer found `syn` for a listener and made this
  // connection for it: SYN-RECEIVED, the SYN,ACK sent (RFC 9293 3.10.7.2).
  std::error_code accept_syn(const wire::TcpRepr& syn, SeqNum iss, Nanos now);
  // Passive open completed by a SYN cookie (RFC 4987 3.6): the layer
  // answered the SYN statelessly with ISN `iss` and has now checked the
  // cookie in `ack`, the third segment: ESTABLISHED at once, with the MSS the
  // cookie carried and no window scaling, timestamps or SACK (the cookie
  // does not remember them), nor ECN (its SYN,ACK did not agree to it).
  // Then `ack` is processed like any segment.
  std::error_code accept_cookie(const wire::TcpRepr& ack, std::span<const std::byte> payload, SeqNum iss,
                                std::uint16_t mss, Nanos now, InboundBuffer* buffer = nullptr);

  // A segment for this connection (checksum verified). RFC 9293 3.10.7.
  // `ecn`: the ECN field of the IP header it came in (RFC 3168 6.1.3).
  void on_segment(const wire::TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                  InboundBuffer* buffer = nullptr, IpEcn ecn = IpEcn::kNotEct);
  // ICMP "fragmentation needed" (RFC 1191) naming next-hop MTU `mtu`, about
  // a segment of ours whose sequence number the ICMP message quotes. Taken
  // only if that number is in [SND.UNA, SND.NXT) (RFC 5927 4.1: an attacker
  // off the path cannot know it) and the MTU shrinks the segment size; then
  // the unacknowledged data is sent again in smaller segments. Returns
  // whether it was taken.
  bool on_path_mtu(std::uint32_t mtu, SeqNum quoted_seq, Nanos now);
  // Runs the timers due at `now` (retransmission, persist, delayed ACK,
  // TIME-WAIT).
  void on_timer(Nanos now);
  Nanos next_deadline() const noexcept;

  // Application. send(): copies what fits into the send buffer and sends
  // what the windows allow; EPIPE after shutdown_write() or close,
  // ENOTCONN before the connection is established (no data in SYNs), the
  // connection's error once it failed.
  Expected<std::size_t, std::error_code> send(std::span<const std::byte> data, Nanos now);
  // Copies received bytes out; 0 bytes with eof() at the end of the stream.
  Expected<std::size_t, std::error_code> receive(std::span<std::byte> out, Nanos now);
  // Zero copy. receive_piece(): the next received bytes as the pool buffer
  // holding them (buffer_pool()'s, owned by buffer_owner()), which is the
  // caller's from then on; nullopt when nothing is readable (then see eof()
  // and error()). send_buffer(): appends [offset, offset + len) of `buffer`
  // (held by buffer_owner()) to the send buffer as it is, when it is at
  // least collapse_below() bytes, else by copying; returns the bytes taken:
  // len, and the buffer is the connection's; fewer (the pool refused a
  // buffer for a copy), and the buffer stays the caller's with the rest;
  // EAGAIN (nothing taken) when fewer than len bytes of room are free.
  // Errors as send().
  std::optional<BufferChain::Piece> receive_piece(Nanos now);
  Expected<std::size_t, std::error_code> send_buffer(mem::BufIndex buffer, std::size_t offset,
                                                     std::size_t len, Nanos now);
  mem::PacketPool& buffer_pool() const noexcept { return *chain_pool_; }
  mem::OwnerId buffer_owner() const noexcept { return chain_owner_; }
  // Pool buffers the send and receive chains hold now.
  std::size_t buffers_held() const noexcept { return send_.pieces() + recv_.pieces(); }
  // Sends FIN after the queued data (SHUT_WR).
  std::error_code shutdown_write(Nanos now);
  // close(): shutdown_write(), and received data is discarded from now on;
  // if unread data was pending, RST instead (RFC 9293 3.10.4, as Linux).
  void close(Nanos now);
  // RFC 9293 3.10.5: sends RST in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2
  // and CLOSE-WAIT (not in SYN-SENT, CLOSING, LAST-ACK or TIME-WAIT) and
  // goes to CLOSED at once; `why`, if given, becomes error() (the layer
  // aborts with ECONNREFUSED on an ICMP unreachable during SYN-SENT).
  void abort(Nanos now, std::error_code why = {});

  // Options that may change on an open connection.
  void set_no_delay(bool on, Nanos now);
  void set_keepalive(bool on, Nanos now);
  // SO_SNDBUF and SO_RCVBUF: the send and receive buffers' sizes in bytes,
  // each 1 .. 2^30 (EINVAL otherwise). A buffer holding more keeps its
  // bytes and takes no more until it is below the new size; the receive
  // buffer stays large enough for the window already offered (a window is
  // never taken back, RFC 9293 3.8.6.2.2), and the window shrinks to the
  // new size as data arrives. A larger window than the scale agreed in the
  // handshake allows is not offered.
  std::error_code set_buffer_sizes(std::size_t send, std::size_t recv, Nanos now);
  // 1 .. 2^30: a window above 2^30 cannot be told apart from old segments
  // (RFC 7323 2.3).
  static bool valid_buffer_size(std::size_t n) noexcept { return n > 0 && n <= (std::size_t{1} << 30); }
  std::size_t send_buffer_size() const noexcept { return send_.capacity(); }
  std::size_t recv_buffer_size() const noexcept { return recv_.capacity(); }

  State state() const noexcept { return state_; }
  bool established() const noexcept;
  // True once the peer's FIN has been received and every byte read.
  bool eof() const noexcept { return fin_received_ && recv_.empty(); }
  std::size_t readable() const noexcept { return recv_.size(); }
  std::size_t writable() const noexcept { return shut_wr_ ? 0 : send_.free_space(); }
  // Bytes in the send buffer: not yet sent, or sent and not yet acknowledged.
  std::size_t send_queued() const noexcept { return send_.size(); }
  // The error that ended the connection (ECONNRESET, ECONNREFUSED,
  // ETIMEDOUT), or none.
  std::error_code error() const noexcept { return error_; }
  const Endpoints& endpoints() const noexcept { return ep_; }
  const ConnectionCounters& counters() const noexcept { return counters_; }
  const CongestionControl& congestion() const noexcept { return *cc_; }

  // For tests and reports.
  SeqNum snd_una() const noexcept { return snd_una_; }
  SeqNum snd_nxt() const noexcept { return snd_nxt_; }
  SeqNum rcv_nxt() const noexcept { return rcv_nxt_; }
  std::uint32_t snd_wnd() const noexcept { return snd_wnd_; }
  // The payload bytes a full segment carries: the peer's MSS, bounded by
  // ours and min_mss, less the timestamps option when it is on.
  std::uint16_t peer_mss() const noexcept { return snd_mss_; }
  Nanos rto() const noexcept { return rto_; }
  Nanos srtt() const noexcept { return srtt_; }
  bool timestamps_on() const noexcept { return ts_on_; }
  bool sack_on() const noexcept { return sack_on_; }
  // Both sides agreed to ECN in the handshake (RFC 3168 6.1.1).
  bool ecn_on() const noexcept { return ecn_on_; }
  // Out-of-order segments held now.
  std::size_t ooo_segments() const noexcept { return ooo_ ? ooo_->size() : 0; }
  std::uint8_t snd_shift() const noexcept { return snd_shift_; }
  std::uint8_t rcv_shift() const noexcept { return rcv_shift_; }

 private:
  struct OwnPool;  // a private pool for a connection created without one
  Connection(const ConnectionConfig& config, const Endpoints& endpoints, SegmentSink& sink,
             std::uint64_t random, std::unique_ptr<CongestionControl> cc, std::optional<OooQueue> ooo,
             mem::PacketPool* pool, mem::OwnerId owner, std::unique_ptr<OwnPool> own_pool);
  // The checks common to send() and send_buffer().
  std::error_code can_send() const noexcept;
  // After the application took bytes out of recv_: a window update when
  // that opened the window by enough to matter.
  void after_read(std::uint32_t window_before, Nanos now);
  // The receive buffer toward config_.recv_buffer, never below what it holds
  // plus the window `offered` (never taken back).
  void fit_recv_capacity(std::uint32_t offered);

  // Segment arrival, by state (RFC 9293 3.10.7.3 and 3.10.7.4).
  void on_segment_syn_sent(const wire::TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                           IpEcn ecn);
  void on_segment_synchronized(const wire::TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                               InboundBuffer* buffer, IpEcn ecn = IpEcn::kNotEct);
  // RFC 9293 3.10.7.4 sixth to eighth, for a segment that passed the steps
  // before (or a SYN,ACK's text: 3.10.7.3 fourth): text, held FIN, FIN;
  // then an ACK (at once with `ack_now` or when the steps call for one,
  // else delayed) and output. `zero_window_text`: step one refused the
  // text (a zero window) and the ACK answers it.
  void receive_text(const wire::TcpRepr& seg, std::span<const std::byte> payload, Nanos now,
                    InboundBuffer* buffer, IpEcn ecn, bool zero_window_text, bool ack_now);
  // Moves out-of-order data that now continues the stream into recv_.
  void drain_ooo();
  // Bytes the SACK option of the next segment takes (0 without blocks).
  std::size_t sack_option_len() const noexcept;
  // RFC 6675 sender side: the scoreboard, made once the SYN is acknowledged
  // on a connection with SACK; false without SACK.
  bool ensure_scoreboard();
  // Retransmits the range NextSeg named and records it.
  bool send_range(const NextSeg& ns, Nanos now);
  // Sends during a SACK recovery while the pipe allows (RFC 6675 5 (C)).
  void sack_send(Nanos now);
  bool acceptable(const wire::TcpRepr& seg, std::uint32_t seg_len) const noexcept;
  // Step five for an acceptable ACK; false if the segment is to be dropped.
  bool process_ack(const wire::TcpRepr& seg, Nanos now);
  void take_peer_options(const wire::TcpRepr& syn);
  // RFC 3168 6.1.2-6.1.3 for a segment that passed the acceptability,
  // RST, SYN and ACK checks; true if an ACK should go at once.
  bool ecn_on_receive(const wire::TcpRepr& seg, std::size_t payload_len, IpEcn ecn);
  // RFC 3168 6.1.2: an ECN-Echo on an acceptable ACK (before the ACK moves SND.UNA).
  void ecn_on_echo(const wire::TcpRepr& seg, Nanos now);
  // Any window reduction (ECN, fast retransmit, timeout): CWR on the next
  // new data segment, and ECN-Echo for data sent before now is the same event.
  void ecn_window_reduced() noexcept;

  // Output.
  void output(Nanos now);
  void send_syn(bool with_ack, Nanos now);
  void send_ack(Nanos now);
  void send_challenge_ack(Nanos now);
  void send_rst(SeqNum seq, Nanos now);
  // False if the sink refused it (nothing about the segment is recorded).
  bool send_data(SeqNum seq, std::size_t len, bool fin, Nanos now);
  wire::TcpRepr header(SeqNum seq, std::uint8_t flags, Nanos now) const;
  // Every segment goes out here (counts ECE and CWR sent).
  bool transmit(const wire::TcpRepr& h, Payload payload, IpEcn ecn, Nanos now);
  std::uint16_t window_to_advertise();
  void retransmit_head(Nanos now);

  // Timers.
  void arm_rto(Nanos now);
  void on_rto(Nanos now);
  void update_rtt(Nanos sample) noexcept;
  std::uint32_t ts_now(Nanos now) const noexcept;

  void enter_time_wait(Nanos now);
  void set_closed(std::error_code error);
  std::uint64_t next_random() noexcept;
  std::uint32_t flight_size() const noexcept;

  ConnectionConfig config_;
  Endpoints ep_;
  SegmentSink* sink_;
  std::unique_ptr<CongestionControl> cc_;
  State state_ = State::kClosed;
  std::error_code error_;
  ConnectionCounters counters_;

  // Send sequence variables (RFC 9293 3.3.1).
  SeqNum iss_, snd_una_, snd_nxt_, snd_wl1_, snd_wl2_;
  SeqNum snd_max_;                 // highest sequence sent + 1 (SND.NXT before a go-back)
  std::uint32_t snd_wnd_ = 0;      // scaled
  std::uint32_t max_snd_wnd_ = 0;  // largest window the peer offered (RFC 5961 5.2)
  std::uint16_t snd_mss_ = 536;
  // Receive sequence variables.
  SeqNum irs_, rcv_nxt_;
  SeqNum rcv_adv_;  // RCV.NXT + the window last advertised: never shrunk (RFC 9293 3.8.6.2.2)

  // Options negotiated in the handshake.
  std::uint8_t snd_shift_ = 0;  // applied to windows the peer sends
  std::uint8_t rcv_shift_ = 0;  // applied to windows we send
  bool ts_on_ = false;
  bool sack_on_ = false;
  // ECN (RFC 3168).
  bool ecn_on_ = false;         // negotiated
  bool ecn_syn_asked_ = false;  // our last SYN was an ECN-setup SYN (ECE and CWR)
  bool ece_pending_ = false;    // receiver: CE arrived, ECE on every ACK until CWR (6.1.3)
  bool cwr_pending_ = false;    // sender: the window was reduced, CWR on the next new data (6.1.2)
  // Sender: ECN-Echo on ACKs up to and including ecn_recover_ (SND.NXT at the
  // last window reduction) echoes marks on data sent before that reduction,
  // which it already answered; lifted once SND.UNA passes it.
  bool ecn_guard_ = false;
  SeqNum ecn_recover_;
  std::optional<OooQueue> ooo_;
  std::optional<SackScoreboard> sb_;
  mem::PacketPool* pool_ = nullptr;
  mem::OwnerId owner_;
  std::uint32_t ts_recent_ = 0;
  std::uint32_t ts_offset_ = 0;

  std::unique_ptr<OwnPool> own_pool_;  // before the chains: they free into it
  mem::PacketPool* chain_pool_;        // the pool of send_ and recv_ (pool_ or own_pool_'s)
  mem::OwnerId chain_owner_;
  BufferChain send_;  // bytes from SND.UNA (the head) on: unacknowledged, then unsent
  BufferChain recv_;  // in-order bytes the application has not read
  std::vector<std::span<const std::byte>> gather_;  // a segment's payload pieces (send_data)
  bool shut_wr_ = false;                            // the application will send no more: FIN after send_
  bool fin_sent_ = false;                           // our FIN has a sequence number (snd_max_ covers it)
  bool fin_received_ = false;
  bool closed_by_app_ = false;

  // Retransmission (RFC 6298) and recovery.
  Nanos rto_;
  Nanos srtt_{0};
  Nanos rttvar_{0};
  bool have_rtt_ = false;
  Nanos rto_deadline_ = Nanos::max();
  std::uint32_t retransmits_ = 0;  // consecutive timeouts of the head
  bool rtt_timing_ = false;        // Karn: one segment timed at a time without timestamps
  SeqNum rtt_seq_;
  Nanos rtt_start_{0};
  std::uint32_t dup_acks_ = 0;
  bool in_recovery_ = false;
  SeqNum recover_;  // RFC 6582: SND.NXT when recovery started

  // Zero-window probing (RFC 9293 3.8.6.1).
  Nanos persist_deadline_ = Nanos::max();
  std::uint32_t persist_backoff_ = 0;

  // Delayed ACK.
  Nanos delack_deadline_ = Nanos::max();
  std::uint32_t unacked_segments_ = 0;
  std::uint32_t quick_acks_left_ = 0;

  Nanos time_wait_deadline_ = Nanos::max();
  Nanos retry_deadline_ = Nanos::max();  // output again after the sink refused a segment

  // Keep-alive.
  Nanos keepalive_deadline_ = Nanos::max();
  std::uint32_t keepalive_sent_ = 0;
  void arm_keepalive(Nanos now) noexcept;

  // Challenge ACK rate limit (RFC 5961 7).
  Nanos challenge_window_start_{0};
  std::uint32_t challenge_allowance_ = 0;
  std::uint64_t rng_;
};

}  // namespace usnet::tcp
