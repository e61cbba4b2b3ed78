// The TCP layer: two interfaces back to back over MemoryLinks with a fake
// clock, each with a TcpLayer. Listen, connect, accept, transfer, close,
// resets for closed ports, backlogs, many connections at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "net/net_test_util.hpp"
#include "tcp/stream_transfer.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/wire/checksum.hpp"

namespace usnet::tcp {
namespace {

using namespace std::chrono_literals;
using net::test::Host;
using net::test::kOurIp;
using net::test::kPeerIp;
using net::test::kPeerMac;
using net::test::TestPool;
using Bytes = std::vector<std::byte>;

TcpConfig config(std::uint64_t seed) {
  TcpConfig c;
  c.seed = seed;
  c.connection.msl = 1s;
  c.connection.send_buffer = 64 * 1024;
  c.connection.recv_buffer = 64 * 1024;
  c.max_connections = 2048;
  return c;
}

Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

// a = 198.18.0.1 (client side), b = 198.18.0.2 (server side).
struct Net {
  TestPool pool{64};
  Host a{pool, net::test::default_config(kPeerIp), kPeerMac};
  Host b{pool};
  std::unique_ptr<TcpLayer> ta;
  std::unique_ptr<TcpLayer> tb;
  explicit Net(TcpConfig ca = config(11), TcpConfig cb = config(22)) {
    link::MemoryLink::connect(a.link, b.link);
    ta = std::move(*TcpLayer::create(*a.iface, *pool, a.owner, ca));
    tb = std::move(*TcpLayer::create(*b.iface, *pool, b.owner, cb));
  }
  ~Net() {
    ta.reset();
    tb.reset();
  }
  Nanos now() const { return a.now; }
  void step(Nanos d = 1ms) {
    a.now += d;
    b.now += d;
    a.poll();
    b.poll();
    ta->poll_timers(a.now);
    tb->poll_timers(b.now);
  }
  void run(Nanos total, Nanos d = 1ms) {
    for (Nanos t{0}; t < total; t += d) step(d);
  }
};

using test::transfer;  // tcp/stream_transfer.hpp

TEST(TcpLayer, ConnectAcceptTransferClose) {
  Net n;
  auto listener = n.tb->listen({{}, 80});
  ASSERT_TRUE(listener);
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->connection().state(), State::kSynSent);
  n.run(10ms);  // ARP, then the handshake
  ASSERT_EQ(client->connection().state(), State::kEstablished);
  ASSERT_EQ(listener->pending(), 1u);
  auto server = listener->accept();
  ASSERT_TRUE(server);
  EXPECT_EQ(server->connection().endpoints().remote_addr, kPeerIp);
  EXPECT_EQ(server->connection().endpoints().remote_port, client->connection().endpoints().local_port);
  EXPECT_GE(client->connection().endpoints().local_port, 49152);

  const Bytes up = pattern(500000, 1);
  const Bytes down = pattern(300000, 2);
  EXPECT_EQ(transfer(n, *client, *server, up), up);
  EXPECT_EQ(transfer(n, *server, *client, down), down);

  client->close(n.now());
  n.run(5ms);
  std::array<std::byte, 16> buf{};
  auto r = server->receive(buf, n.now());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0u);
  EXPECT_TRUE(server->connection().eof());
  server->close(n.now());
  n.run(5ms);
  EXPECT_EQ(n.tb->connection_count(), 0u);  // LAST-ACK -> CLOSED, freed
  EXPECT_EQ(n.ta->connection_count(), 1u);  // TIME-WAIT
  n.run(2100ms, 10ms);                      // 2 MSL
  EXPECT_EQ(n.ta->connection_count(), 0u);
  EXPECT_EQ(n.ta->counters().active_opens, 1u);
  EXPECT_EQ(n.tb->counters().passive_opens, 1u);
  EXPECT_EQ(n.tb->counters().accepted, 1u);
}

TEST(TcpLayer, ClosedPortAnswersWithResetAndConnectIsRefused) {
  Net n;
  auto client = n.ta->connect({kOurIp, 81}, n.now());
  ASSERT_TRUE(client);
  n.run(10ms);
  EXPECT_EQ(client->connection().state(), State::kClosed);
  EXPECT_EQ(client->connection().error(), std::make_error_code(std::errc::connection_refused));
  EXPECT_EQ(n.tb->counters().resets_sent, 1u);
  EXPECT_EQ(n.tb->counters().dropped(TcpDropReason::kNoConnection), 1u);
  std::array<std::byte, 4> buf{};
  EXPECT_EQ(client->receive(buf, n.now()).error(), std::make_error_code(std::errc::connection_refused));
}

TEST(TcpLayer, BacklogBoundsHalfOpenAndUnacceptedConnections) {
  TcpConfig cb = config(22);
  cb.syn_cookies = false;  // SYNs beyond the backlog are dropped, not answered
  Net n(config(11), cb);
  auto listener = n.tb->listen({{}, 80}, 2);
  ASSERT_TRUE(listener);
  std::vector<TcpStream> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(*n.ta->connect({kOurIp, 80}, n.now()));
  n.run(20ms);
  EXPECT_EQ(listener->pending(), 2u);
  EXPECT_GE(n.tb->counters().dropped(TcpDropReason::kBacklogFull), 2u);
  // Accepting makes room; the others' SYN retransmissions get in.
  auto s1 = listener->accept();
  auto s2 = listener->accept();
  ASSERT_TRUE(s1 && s2);
  n.run(3s, 10ms);
  EXPECT_EQ(listener->pending(), 2u);
  for (auto& c : clients) EXPECT_EQ(c.connection().state(), State::kEstablished);
}

// A SYN for B's listener from `src`:`port`, as an attacker would forge it.
std::vector<std::byte> forged_syn(wire::Ipv4Addr src, std::uint16_t port, std::uint32_t isn) {
  wire::TcpRepr syn;
  syn.src_port = port;
  syn.dst_port = 80;
  syn.seq = SeqNum(isn);
  syn.flags = wire::TcpFlags{wire::TcpFlags::kSyn};
  syn.window = 1024;
  syn.options.mss = 1460;
  std::vector<std::byte> seg(syn.buffer_len());
  EXPECT_TRUE(syn.emit(seg, wire::PseudoHeader::v4(src, kOurIp)));
  net::test::IpParams ip;
  ip.src = src;
  ip.protocol = 6;
  return net::test::ip_frame(ip, seg);
}

TEST(TcpLayer, Robustness14SynFloodDoesNotKeepALegitimateClientOut) {
  Net n;
  auto listener = n.tb->listen({{}, 80}, 16);
  ASSERT_TRUE(listener);
  std::mt19937 rng(5);
  auto flood = [&](int count) {
    for (int i = 0; i < count; ++i) {
      const auto src = wire::Ipv4Addr::from_octets(198, 18, 0, static_cast<std::uint8_t>(100 + rng() % 100));
      (void)n.b.link.inject_rx(forged_syn(src, static_cast<std::uint16_t>(1024 + rng() % 60000), rng()));
      if (i % 50 == 49) n.step();
    }
  };
  flood(5000);
  // A legitimate client during the flood.
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  ASSERT_TRUE(client);
  flood(5000);
  for (int i = 0; i < 200 && client->connection().state() != State::kEstablished; ++i) n.step();
  ASSERT_EQ(client->connection().state(), State::kEstablished);
  std::optional<TcpStream> server;
  for (int i = 0; i < 100 && !server; ++i) {
    n.step();
    server = listener->accept();
  }
  ASSERT_TRUE(server);
  const Bytes data = pattern(100000, 9);
  EXPECT_EQ(transfer(n, *client, *server, data), data);
  // The flood was answered statelessly: B holds no more connections than
  // its backlog of half-open ones plus the real one.
  EXPECT_GT(n.tb->counters().syn_cookies_sent, 9000u);
  EXPECT_EQ(n.tb->counters().syn_cookies_accepted, 1u);
  EXPECT_LE(n.tb->connection_count(), 16u + 1u);
  // The client's connection came from a cookie: no options beyond the MSS.
  EXPECT_FALSE(client->connection().timestamps_on());
}

TEST(TcpLayer, Robustness8MalformedOptionsAndDataOffsetsAreDroppedWithAReason) {
  Net n;
  auto listener = n.tb->listen({{}, 80});
  // A valid SYN, then broken in each way (checksums recomputed, so only the
  // header is wrong).
  const auto make = [](auto&& breaker) {
    wire::TcpRepr syn;
    syn.src_port = 7777;
    syn.dst_port = 80;
    syn.seq = SeqNum(1);
    syn.flags = wire::TcpFlags{wire::TcpFlags::kSyn};
    syn.window = 1024;
    syn.options.mss = 1460;  // 4 bytes of options: offset 6
    std::vector<std::byte> seg(syn.buffer_len() + 4);
    EXPECT_TRUE(syn.emit(std::span(seg).first(syn.buffer_len()), wire::PseudoHeader::v4(kPeerIp, kOurIp)));
    breaker(seg);
    seg[16] = seg[17] = std::byte{0};  // checksum again, over the broken header
    wire::Checksum c;
    c.add_sum(wire::PseudoHeader::v4(kPeerIp, kOurIp).sum(6, static_cast<std::uint32_t>(seg.size())));
    c.add(seg);
    const std::uint16_t sum = c.finish();
    seg[16] = std::byte(sum >> 8);
    seg[17] = std::byte(sum & 0xff);
    net::test::IpParams ip;
    ip.protocol = 6;
    return net::test::ip_frame(ip, seg);
  };
  // Option lengths 0 and 1, and one running past the header.
  for (std::uint8_t len : {0, 1, 9}) {
    (void)n.b.link.inject_rx(make([len](std::vector<std::byte>& s) { s[21] = std::byte{len}; }));
  }
  // Data offset below 5, and past the end of the segment.
  for (std::uint8_t off : {2, 4, 15}) {
    (void)n.b.link.inject_rx(make([off](std::vector<std::byte>& s) { s[12] = std::byte(off << 4); }));
  }
  n.step();
  EXPECT_EQ(n.tb->counters().dropped(TcpDropReason::kBadOptions), 3u);
  EXPECT_EQ(n.tb->counters().dropped(TcpDropReason::kMalformed), 3u);
  EXPECT_EQ(n.tb->counters().resets_sent, 0u);  // dropped, not answered
  EXPECT_EQ(n.tb->connection_count(), 0u);
  // The listener still works.
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  n.run(10ms);
  EXPECT_EQ(client->connection().state(), State::kEstablished);
}

TEST(TcpLayer, ForgedCookieAckIsRefused) {
  Net n;
  auto listener = n.tb->listen({{}, 80}, 1);
  wire::TcpRepr ack;
  ack.src_port = 5555;
  ack.dst_port = 80;
  ack.seq = SeqNum(1000);
  ack.ack = SeqNum(123456789);
  ack.flags = wire::TcpFlags{wire::TcpFlags::kAck};
  std::vector<std::byte> seg(ack.buffer_len());
  ASSERT_TRUE(ack.emit(seg, wire::PseudoHeader::v4(kPeerIp, kOurIp)));
  net::test::IpParams ip;
  ip.protocol = 6;
  (void)n.b.link.inject_rx(net::test::ip_frame(ip, seg));
  n.step();
  EXPECT_EQ(n.tb->counters().dropped(TcpDropReason::kBadCookie), 1u);
  EXPECT_EQ(n.tb->connection_count(), 0u);
  EXPECT_EQ(listener->pending(), 0u);
  EXPECT_EQ(n.tb->counters().resets_sent, 1u);
}

TEST(TcpLayer, ClosingTheListenerResetsUnacceptedConnections) {
  Net n;
  auto listener = n.tb->listen({{}, 80});
  auto client = n.ta->connect({kOurIp, 80}, n.now());
  n.run(10ms);
  ASSERT_EQ(listener->pending(), 1u);
  listener->close();
  n.run(10ms);
  EXPECT_EQ(client->connection().state(), State::kClosed);
  EXPECT_EQ(client->connection().error(), std::make_error_code(std::errc::connection_reset));
  EXPECT_EQ(n.tb->connection_count(), 0u);
}

TEST(TcpLayer, ListenErrors) {
  Net n;
  auto l = n.tb->listen({{}, 80});
  ASSERT_TRUE(l);
  EXPECT_EQ(n.tb->listen({{}, 80}).error(), std::make_error_code(std::errc::address_in_use));
  EXPECT_EQ(n.tb->listen({kPeerIp, 81}).error(), std::make_error_code(std::errc::address_not_available));
  EXPECT_EQ(n.tb->listen({{}, 0}).error(), std::make_error_code(std::errc::invalid_argument));
  l->close();
  EXPECT_TRUE(n.tb->listen({{}, 80}));  // free again
  EXPECT_EQ(n.ta->connect({wire::Ipv4Addr::from_octets(203, 0, 113, 1), 80}, n.now()).error(),
            std::make_error_code(std::errc::network_unreachable));
}

TEST(TcpLayer, AThousandConcurrentConnectionsOpenExchangeAndClose) {
  Net n;
  auto listener = n.tb->listen({{}, 80}, 2000);
  ASSERT_TRUE(listener);
  constexpr int kConns = 1000;
  std::vector<TcpStream> clients;
  for (int i = 0; i < kConns; ++i) {
    auto c = n.ta->connect({kOurIp, 80}, n.now());
    ASSERT_TRUE(c) << i;
    clients.push_back(std::move(*c));
    if (i % 50 == 0) n.step();
  }
  std::vector<TcpStream> servers;
  // A few SYNs may wait for ARP beyond its queue bound and be dropped;
  // their retransmission (after the 1 s initial RTO) gets them in.
  for (int i = 0; i < 3000 && servers.size() < kConns; ++i) {
    n.step();
    while (auto s = listener->accept()) servers.push_back(std::move(*s));
  }
  ASSERT_EQ(servers.size(), static_cast<std::size_t>(kConns))
      << n.ta->format_counters() << n.a->format_counters() << n.tb->format_counters()
      << n.b->format_counters() << "a link dropped " << n.a.link.counters().tx_full << " b link "
      << n.b.link.counters().tx_full;
  // Each client sends its index; each server echoes it back.
  for (int i = 0; i < kConns; ++i) {
    const auto v = static_cast<std::uint32_t>(i);
    const std::array<std::byte, 4> msg{std::byte(v), std::byte(v >> 8), std::byte(v >> 16),
                                       std::byte(v >> 24)};
    ASSERT_EQ(clients[static_cast<std::size_t>(i)].send(msg, n.now()).value(), 4u);
  }
  // 1000 segments at once overflow the link's queue (256 frames): the lost
  // ones come again after their retransmission timeout.
  auto all_readable = [](std::vector<TcpStream>& v) {
    return std::all_of(v.begin(), v.end(), [](TcpStream& t) { return t.connection().readable() >= 4; });
  };
  for (int i = 0; i < 5000 && !all_readable(servers); ++i) n.step();
  for (auto& s : servers) {
    std::array<std::byte, 4> buf{};
    ASSERT_EQ(s.receive(buf, n.now()).value(), 4u);
    ASSERT_EQ(s.send(buf, n.now()).value(), 4u);
  }
  for (int i = 0; i < 5000 && !all_readable(clients); ++i) n.step();
  for (int i = 0; i < kConns; ++i) {
    std::array<std::byte, 4> buf{};
    ASSERT_EQ(clients[static_cast<std::size_t>(i)].receive(buf, n.now()).value(), 4u);
    const std::uint32_t v =
        std::to_integer<std::uint32_t>(buf[0]) | std::to_integer<std::uint32_t>(buf[1]) << 8 |
        std::to_integer<std::uint32_t>(buf[2]) << 16 | std::to_integer<std::uint32_t>(buf[3]) << 24;
    ASSERT_EQ(v, static_cast<std::uint32_t>(i));
  }
  for (auto& c : clients) c.close(n.now());
  n.run(20ms);
  for (auto& s : servers) s.close(n.now());
  // FINs lost to the link's queue bound are retransmitted; then TIME-WAIT.
  for (int i = 0; i < 3000 && n.ta->connection_count() + n.tb->connection_count() > 0; ++i) n.step(10ms);
  EXPECT_EQ(n.ta->connection_count(), 0u) << n.ta->format_counters() << n.a->format_counters();
  EXPECT_EQ(n.tb->connection_count(), 0u) << n.tb->format_counters() << n.b->format_counters();
  EXPECT_EQ(n.ta->counters().connections_freed, static_cast<std::uint64_t>(kConns));
  EXPECT_EQ(n.tb->counters().connections_freed, static_cast<std::uint64_t>(kConns));
}

// Memory in total (issue 4's limits): every connection commits its send and
// receive buffers; past max_buffer_memory no connection is made, whoever
// asks, and closing one makes room again.
TEST(TcpLayer, ConnectionsPastTheBufferMemoryBoundAreRefused) {
  constexpr std::size_t kPer = 2 * 64 * 1024;  // config(): 64 KiB each way
  TcpConfig ca = config(11);
  ca.max_buffer_memory = 3 * kPer;
  TcpConfig cb = config(22);
  cb.max_buffer_memory = 2 * kPer;
  cb.syn_cookies = false;  // refused SYNs are dropped, not answered statelessly
  Net n(ca, cb);
  auto listener = n.tb->listen({{}, 80}, 8);
  ASSERT_TRUE(listener);
  std::vector<TcpStream> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(*n.ta->connect({kOurIp, 80}, n.now()));
  // The client's own bound: a fourth connection is refused at once.
  const auto fourth = n.ta->connect({kOurIp, 80}, n.now());
  ASSERT_FALSE(fourth);
  EXPECT_EQ(fourth.error(), std::errc::no_buffer_space);
  EXPECT_EQ(n.ta->buffer_memory_committed(), 3 * kPer);
  n.run(20ms);
  // The server's bound: two are made, the third SYN is dropped for memory.
  EXPECT_EQ(n.tb->connection_count(), 2u);
  EXPECT_EQ(n.tb->buffer_memory_committed(), 2 * kPer);
  EXPECT_GE(n.tb->counters().dropped(TcpDropReason::kNoMemory), 1u);
  EXPECT_NE(n.tb->format_counters().find("connection past the buffer memory bound"), std::string::npos);
  // One closes and goes away: the third client's retransmitted SYN gets in.
  auto s1 = listener->accept();
  ASSERT_TRUE(s1);
  s1->abort(n.now());
  n.run(3s, 10ms);
  EXPECT_EQ(n.tb->connection_count(), 2u);
  std::size_t established = 0;
  for (auto& c : clients) established += c.connection().state() == State::kEstablished ? 1 : 0;
  EXPECT_EQ(established, 2u);  // the aborted one was reset, the third is in
  // Buffers far larger than a private pool reaches are a valid configuration
  // (the layer's connections use the interface's pool).
  TcpConfig large = config(34);
  large.connection.send_buffer = std::size_t{256} << 20;
  large.connection.recv_buffer = std::size_t{256} << 20;
  large.max_buffer_memory = std::size_t{1} << 30;
  large.connection.window_shift = 14;
  {
    Host h{n.pool};
    EXPECT_TRUE(TcpLayer::create(*h.iface, *n.pool, h.owner, large));
  }
  // A bound smaller than one connection's buffers is a configuration error.
  TcpConfig bad = config(33);
  bad.max_buffer_memory = kPer - 1;
  EXPECT_EQ(TcpLayer::create(*n.a.iface, *n.pool, n.a.owner, bad).error(), std::errc::invalid_argument);
}

// A connected pair from Net: client on a, server on b.
struct Connected {
  Net n;
  TcpListener listener;
  TcpStream client;
  TcpStream server;
  explicit Connected(TcpConfig ca = config(11), TcpConfig cb = config(22)) : n(ca, cb) {
    listener = std::move(*n.tb->listen({{}, 80}));
    client = std::move(*n.ta->connect({kOurIp, 80}, n.now()));
    n.run(10ms);
    auto s = listener.accept();
    if (s) server = std::move(*s);
  }
};

TEST(TcpLayer, ZeroCopyReceiveReadsFullSegmentsInTheFramesTheyArrivedIn) {
  Connected c;
  ASSERT_TRUE(c.server.valid());
  const std::size_t in_use_before = c.n.pool->in_use();
  const Bytes data = pattern(200000, 3);
  Bytes got;
  std::size_t sent = 0;
  std::size_t pieces = 0;
  std::size_t in_frames = 0;  // pieces that are a whole segment's payload where it arrived
  const std::size_t mss = c.client.connection().peer_mss();
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    if (sent < data.size()) {
      auto r = c.client.send(std::span(data).subspan(sent), c.n.now());
      if (r) sent += *r;
    }
    c.n.step();
    for (;;) {
      auto b = c.server.receive_buffer(c.n.now());
      ASSERT_TRUE(b);
      if (!b->valid()) break;
      ++pieces;
      const auto bytes = b->data();
      // The payload sits behind the Ethernet, IPv4 and TCP headers of its frame.
      const auto at = static_cast<std::size_t>(bytes.data() - c.n.pool->buffer(0).data());
      if (bytes.size() == mss && at % 2048 >= 54) ++in_frames;
      got.insert(got.end(), bytes.begin(), bytes.end());
    }  // each TcpBuffer goes back to the pool here
  }
  EXPECT_EQ(got, data);
  EXPECT_GE(in_frames * 10, pieces * 9) << in_frames << " of " << pieces << " pieces were whole frames";
  EXPECT_EQ(c.server.connection().buffers_held(), 0u);
  c.n.run(300ms);  // delayed ACKs out, the client's send buffer acknowledged
  EXPECT_EQ(c.n.pool->in_use(), in_use_before);
}

TEST(TcpLayer, Robustness11SmallSegmentsAreCollapsedNotPinnedAFrameEach) {
  Connected c;
  ASSERT_TRUE(c.server.valid());
  c.client.set_no_delay(true, c.n.now());
  const Bytes data = pattern(3000, 4);
  for (std::size_t i = 0; i < data.size(); ++i) {
    ASSERT_EQ(*c.client.send(std::span(data).subspan(i, 1), c.n.now()), 1u);
    c.n.step(100us);  // each byte leaves as its own segment
  }
  c.n.run(20ms);
  ASSERT_EQ(c.server.connection().readable(), data.size());
  EXPECT_GE(c.server.connection().counters().segments_in, 1000u);
  EXPECT_LE(c.server.connection().buffers_held(), 3u);  // 3,000 bytes in two buffers (and one spare)
  Bytes got;
  for (;;) {
    auto b = c.server.receive_buffer(c.n.now());
    ASSERT_TRUE(b);
    if (!b->valid()) break;
    got.insert(got.end(), b->data().begin(), b->data().end());
  }
  EXPECT_EQ(got, data);
}

TEST(TcpLayer, ZeroCopySendSendsTheBuffersTheApplicationFilled) {
  Connected c;
  ASSERT_TRUE(c.server.valid());
  const std::size_t in_use_before = c.n.pool->in_use();
  const Bytes data = pattern(300000, 5);
  Bytes got;
  std::size_t sent = 0;
  std::size_t eagain = 0;
  TcpBuffer pending;
  std::array<std::byte, 16384> buf{};
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    while (sent < data.size()) {
      if (!pending.valid()) {
        auto b = c.client.alloc_buffer();
        ASSERT_TRUE(b);
        pending = std::move(*b);
        const std::size_t n = std::min<std::size_t>({1400, pending.capacity(), data.size() - sent});
        std::memcpy(pending.space().data(), data.data() + sent, n);
        pending.resize(n);
      }
      const std::size_t n = pending.size();
      auto r = c.client.send_buffer(pending, c.n.now());
      if (!r) {
        ASSERT_EQ(r.error(), std::errc::resource_unavailable_try_again);
        ASSERT_TRUE(pending.valid());  // nothing taken: still ours
        ++eagain;
        break;
      }
      ASSERT_EQ(*r, n);
      EXPECT_FALSE(pending.valid());  // the stream's now
      sent += n;
    }
    c.n.step();
    for (;;) {
      auto r = c.server.receive(buf, c.n.now());
      if (!r || *r == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
  }
  EXPECT_EQ(got, data);
  EXPECT_GT(eagain, 0u);  // the 64 KiB send buffer filled up on the way
  // A buffer of another stream's owner (the server's side) is refused.
  auto other = c.server.alloc_buffer();
  ASSERT_TRUE(other);
  other->resize(10);
  EXPECT_EQ(c.client.send_buffer(*other, c.n.now()).error(), std::errc::invalid_argument);
  EXPECT_TRUE(other->valid());
  other->release();
  // Small buffers are copied (collapsed) and freed.
  auto small = c.client.alloc_buffer();
  ASSERT_TRUE(small);
  small->resize(5);
  std::memcpy(small->data().data(), "hello", 5);
  EXPECT_EQ(*c.client.send_buffer(*small, c.n.now()), 5u);
  EXPECT_FALSE(small->valid());
  c.n.run(50ms);
  auto r = c.server.receive(buf, c.n.now());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 5u);
  c.n.run(300ms);
  EXPECT_EQ(c.n.pool->in_use(), in_use_before);
}

TEST(TcpLayer, BufferSizesPerConnection) {
  TcpConfig cb = config(22);
  cb.max_buffer_memory = 4 * 128 * 1024;  // four connections' worth of config() buffers
  Connected c(config(11), cb);
  ASSERT_TRUE(c.server.valid());
  EXPECT_EQ(c.n.tb->buffer_memory_committed(), 128u * 1024);
  // Errors change nothing.
  EXPECT_EQ(c.server.set_buffer_sizes(0, 8192, c.n.now()), std::errc::invalid_argument);
  EXPECT_EQ(c.server.set_buffer_sizes(8192, (std::size_t{1} << 30) + 1, c.n.now()),
            std::errc::invalid_argument);
  EXPECT_EQ(c.server.set_buffer_sizes(256 * 1024, 512 * 1024, c.n.now()), std::errc::no_buffer_space);
  EXPECT_EQ(c.n.tb->buffer_memory_committed(), 128u * 1024);
  EXPECT_EQ(c.server.connection().recv_buffer_size(), 64u * 1024);

  // A smaller receive buffer: the window the client sees comes down to it
  // once the window already offered is used up, and the stream stays exact.
  ASSERT_FALSE(c.server.set_buffer_sizes(64 * 1024, 8192, c.n.now()));
  EXPECT_EQ(c.n.tb->buffer_memory_committed(), 64u * 1024 + 8192);
  const Bytes data = pattern(300000, 6);
  EXPECT_EQ(transfer(c.n, c.client, c.server, data), data);
  c.n.run(50ms);
  EXPECT_EQ(c.server.connection().recv_buffer_size(), 8192u);
  EXPECT_LE(c.client.connection().snd_wnd(), 8192u);

  // A larger send buffer takes more at once.
  ASSERT_FALSE(c.client.set_buffer_sizes(256 * 1024, 64 * 1024, c.n.now()));
  EXPECT_EQ(c.client.connection().writable(), 256u * 1024);
  const Bytes big = pattern(256 * 1024, 7);
  EXPECT_EQ(*c.client.send(big, c.n.now()), big.size());
  Bytes got;
  std::array<std::byte, 16384> buf{};
  for (int i = 0; i < 20000 && got.size() < big.size(); ++i) {
    c.n.step();
    for (;;) {
      auto r = c.server.receive(buf, c.n.now());
      if (!r || *r == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    }
  }
  EXPECT_EQ(got, big);
  // A larger receive buffer opens the window again.
  ASSERT_FALSE(c.server.set_buffer_sizes(64 * 1024, 128 * 1024, c.n.now()));
  c.n.run(10ms);
  EXPECT_GT(c.client.connection().snd_wnd(), 64u * 1024);
  EXPECT_EQ(c.n.tb->buffer_memory_committed(), 192u * 1024);
  // Freed with the connection.
  c.client.abort(c.n.now());
  c.n.run(20ms);
  c.server = TcpStream{};
  c.n.run(20ms);
  EXPECT_EQ(c.n.tb->connection_count(), 0u);
  EXPECT_EQ(c.n.tb->buffer_memory_committed(), 0u);
}

}  // namespace
}  // namespace usnet::tcp
