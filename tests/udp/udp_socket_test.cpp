// UDP sockets over net::Interface (RFC 768, RFC 1122 4.1, RFC 6056, RFC 6335):
// MemoryLink, fake clock, small pool; every test gives every buffer back.
#include <gtest/gtest.h>

#include <set>

#include "net/net_test_util.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::udp {
namespace {

using namespace std::chrono_literals;
using net::test::Host;
using net::test::IpParams;
using net::test::kOurIp;
using net::test::kOurMac;
using net::test::kPeerIp;
using net::test::kPeerMac;
using net::test::pattern;
using net::test::TestPool;
using wire::Ipv4Addr;

std::unique_ptr<UdpLayer> make_layer(Host& h, UdpConfig config = {}) {
  auto l = UdpLayer::create(*h.iface, **h.pool_, h.owner, config);
  EXPECT_TRUE(l);
  return std::move(*l);
}

enum class Sum { Good, Bad, Zero };

// A UDP datagram from the peer (kPeerIp) to us, in an Ethernet frame.
std::vector<std::byte> udp_frame(std::uint16_t sport, std::uint16_t dport, std::span<const std::byte> payload,
                                 Sum sum = Sum::Good, IpParams p = {}) {
  std::vector<std::byte> u(8 + payload.size());
  if (!payload.empty()) std::memcpy(u.data() + 8, payload.data(), payload.size());
  wire::UdpRepr r{sport, dport, static_cast<std::uint16_t>(payload.size())};
  (void)r.emit(u, wire::PseudoHeader::v4(p.src, p.dst),
               sum == Sum::Zero ? wire::ChecksumMode::Ignore : wire::ChecksumMode::Verify);
  if (sum == Sum::Bad) u[6] ^= std::byte{0x01};
  p.protocol = 17;
  return net::test::ip_frame(p, u);
}

std::vector<std::byte> bytes_of(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

// Two hosts back to back: a = 198.18.0.1, b = 198.18.0.2.
struct Pair {
  TestPool pool;
  Host a{pool, net::test::default_config(kPeerIp), kPeerMac};
  Host b{pool};
  std::unique_ptr<UdpLayer> ua = make_layer(a, {.ephemeral_seed = 11});
  std::unique_ptr<UdpLayer> ub = make_layer(b, {.ephemeral_seed = 22});
  Pair() { link::MemoryLink::connect(a.link, b.link); }
  void pump(int rounds = 4) {
    for (int i = 0; i < rounds; ++i) {
      a.now += 1ms;
      b.now += 1ms;
      a.poll();
      b.poll();
    }
  }
};

// Both ways, byte-exact, with the copying receive on one side and the
// zero-copy one on the other; then 8000 bytes over MTU 1500 (RFC 791
// fragmentation and reassembly by the net layer).
TEST(Udp, TwoInterfacesExchangeDatagramsBothWays) {
  Pair p;
  auto server = p.ub->open();
  auto client = p.ua->open();
  ASSERT_FALSE(server->bind({{}, 7}));
  for (std::size_t size : {0u, 1u, 100u, 1472u, 1473u, 8000u}) {
    SCOPED_TRACE(size);
    const auto request = pattern(size, static_cast<std::uint32_t>(size) + 1);
    ASSERT_FALSE(client->send_to(request, {kOurIp, 7}, p.a.now));
    p.pump();
    std::vector<std::byte> buf(9000);
    auto got = server->recv_from(buf);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->from, (Endpoint{kPeerIp, client->local().port}));
    EXPECT_EQ(got->to, kOurIp);
    EXPECT_EQ(got->length, size);
    EXPECT_FALSE(got->truncated);
    EXPECT_EQ(std::vector<std::byte>(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got->copied)),
              request);

    const auto reply = pattern(size, static_cast<std::uint32_t>(size) + 2);
    ASSERT_FALSE(server->send_to(reply, got->from, p.b.now));
    p.pump();
    auto back = client->receive();
    ASSERT_TRUE(back);
    EXPECT_EQ(back->from, (Endpoint{kOurIp, 7}));
    EXPECT_EQ(bytes_of(back->payload()), reply);
    EXPECT_EQ(back->copied(), size > 1472);  // reassembled datagrams are copied
    EXPECT_EQ(back->frame().has_value(), size <= 1472);
  }
  EXPECT_EQ(p.ua->counters().tx_datagrams, 6u);
  EXPECT_EQ(p.ub->counters().rx_delivered, 6u);
  EXPECT_EQ(p.ub->counters().rx_copied, 2u);
  EXPECT_EQ(p.ub->counters().rx_zero_copy, 4u);
  EXPECT_EQ(p.ub->counters().dropped_total(), 0u);
  EXPECT_EQ(p.b->counters().reassembled, 2u);
}

TEST(Udp, BindConflicts) {
  TestPool pool;
  auto cfg = net::test::default_config();
  cfg.addresses.push_back({Ipv4Addr::from_octets(198, 18, 1, 2), 24});
  Host h(pool, cfg);
  auto l = make_layer(h);
  const auto second = Ipv4Addr::from_octets(198, 18, 1, 2);
  auto s1 = l->open();
  auto s2 = l->open();
  auto s3 = l->open();
  ASSERT_FALSE(s1->bind({kOurIp, 53}));
  EXPECT_EQ(s1->bind({kOurIp, 54}), std::errc::invalid_argument);  // already bound
  EXPECT_EQ(s2->bind({kOurIp, 53}), std::errc::address_in_use);
  EXPECT_EQ(s2->bind({{}, 53}), std::errc::address_in_use);  // any overlaps the specific one
  EXPECT_EQ(s2->bind({kPeerIp, 60}), std::errc::address_not_available);
  EXPECT_FALSE(s2->bind({second, 53}));  // another address, same port
  EXPECT_FALSE(s3->bind({{}, 80}));
  auto s4 = l->open();
  EXPECT_EQ(s4->bind({kOurIp, 80}), std::errc::address_in_use);  // specific overlaps any
  s3->close();
  EXPECT_FALSE(s4->bind({kOurIp, 80}));  // closed: the port is free again
  EXPECT_FALSE(s3->bind({{}, 81}));      // a closed socket binds again
  s1.reset();                            // destroying closes
  auto s5 = l->open();
  EXPECT_FALSE(s5->bind({kOurIp, 53}));
  EXPECT_EQ(l->socket_count(), 4u);
}

// RFC 6335 6 range, RFC 6056 3.3.1 random start; exhaustion is EADDRINUSE.
TEST(Udp, EphemeralPorts) {
  TestPool pool;
  Host h(pool);
  std::vector<std::uint16_t> first;
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    auto l = make_layer(h, {.ephemeral_seed = seed});
    std::vector<std::unique_ptr<UdpSocket>> socks;
    std::set<std::uint16_t> ports;
    for (int i = 0; i < 50; ++i) {
      socks.push_back(l->open());
      ASSERT_FALSE(socks.back()->bind({}));
      const auto port = socks.back()->local().port;
      EXPECT_GE(port, 49152);
      ports.insert(port);
    }
    EXPECT_EQ(ports.size(), 50u);
    first.push_back(socks.front()->local().port);
  }
  EXPECT_EQ(std::set<std::uint16_t>(first.begin(), first.end()).size(), 3u);  // seeds matter

  auto small = make_layer(h, {.ephemeral_min = 50000, .ephemeral_max = 50003, .ephemeral_seed = 5});
  std::vector<std::unique_ptr<UdpSocket>> socks;
  for (int i = 0; i < 4; ++i) {
    socks.push_back(small->open());
    ASSERT_FALSE(socks.back()->bind({}));
  }
  auto extra = small->open();
  EXPECT_EQ(extra->bind({}), std::errc::address_in_use);
  EXPECT_EQ(extra->send_to(pattern(4), {kPeerIp, 9}, h.now), std::errc::address_in_use);  // implicit bind
  const auto freed = socks[2]->local().port;
  socks[2]->close();
  EXPECT_FALSE(extra->bind({}));
  EXPECT_EQ(extra->local().port, freed);  // the only one free

  EXPECT_FALSE(UdpLayer::create(*h.iface, *pool, h.owner, {.ephemeral_min = 2000, .ephemeral_max = 1000}));
}

// connect() sets the default destination and filters what is received;
// others get port unreachable, as on Linux.
TEST(Udp, ConnectFiltersByPeer) {
  TestPool pool;
  Host h(pool);
  net::test::learn_peer(h);
  auto l = make_layer(h);
  auto s = l->open();
  EXPECT_EQ(s->send(pattern(4), h.now), std::errc::destination_address_required);
  EXPECT_EQ(s->connect({kPeerIp, 0}), std::errc::invalid_argument);
  EXPECT_EQ(s->connect({Ipv4Addr::from_octets(203, 0, 113, 1), 9}), std::errc::network_unreachable);
  ASSERT_FALSE(s->connect({kPeerIp, 5000}));
  EXPECT_TRUE(s->bound());  // connect binds an ephemeral port
  const auto port = s->local().port;
  h.link.inject_rx(udp_frame(5001, port, pattern(10, 1)));  // other port of the peer
  IpParams other;
  other.src = Ipv4Addr::from_octets(198, 18, 0, 9);
  h.link.inject_rx(udp_frame(5000, port, pattern(10, 2), Sum::Good, other));  // other host
  h.link.inject_rx(udp_frame(5000, port, pattern(10, 3)));                    // the peer
  h.poll();
  EXPECT_EQ(s->queued(), 1u);
  auto d = s->receive();
  ASSERT_TRUE(d);
  EXPECT_EQ(bytes_of(d->payload()), pattern(10, 3));
  EXPECT_EQ(l->counters().dropped(UdpDropReason::NotFromPeer), 2u);
  EXPECT_EQ(l->counters().port_unreachable_sent, 2u);  // the other host's waits for ARP
  d->release();

  // Connected send goes to the peer from our address and port.
  (void)h.sent();
  ASSERT_FALSE(s->send(pattern(3), h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto ip = wire::Ipv4View::make(std::span<const std::byte>(out[0]).subspan(14));
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->dst(), kPeerIp);
  EXPECT_EQ(ip->src(), kOurIp);
  auto u = wire::UdpView::make(ip->payload());
  ASSERT_TRUE(u);
  EXPECT_EQ(u->src_port(), port);
  EXPECT_EQ(u->dst_port(), 5000);
  EXPECT_TRUE(u->checksum_ok(wire::PseudoHeader::v4(kOurIp, kPeerIp)));
  EXPECT_NE(u->checksum(), 0);

  s->disconnect();
  h.link.inject_rx(udp_frame(5001, port, pattern(10, 4)));
  h.poll();
  EXPECT_EQ(s->queued(), 1u);
}

// The zero-copy receive hands over the pool buffer the frame arrived in.
TEST(Udp, ZeroCopyReceiveHandsTheBufferAndReleaseFreesIt) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open();
  ASSERT_FALSE(s->bind({{}, 9000}));
  const auto payload = pattern(300, 7);
  h.link.inject_rx(udp_frame(1234, 9000, payload));
  h.poll();
  EXPECT_EQ(pool->in_use(h.owner), 1u);  // held in the socket's queue
  auto d = s->receive();
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->frame());
  EXPECT_FALSE(d->copied());
  const auto buf = pool->buffer(d->frame()->buffer);
  EXPECT_EQ(d->payload().data(), buf.data() + d->payload_offset());  // no copy: the same bytes
  EXPECT_EQ(bytes_of(buf.subspan(d->payload_offset(), payload.size())), payload);
  EXPECT_EQ(d->payload_offset(), d->frame()->offset + 14u + 20u + 8u);
  EXPECT_EQ(d->from, (Endpoint{kPeerIp, 1234}));
  EXPECT_EQ(d->to, kOurIp);
  EXPECT_EQ(d->ttl, 64);
  EXPECT_EQ(pool->in_use(h.owner), 1u);
  UdpDatagram moved = std::move(*d);
  EXPECT_TRUE(d->payload().empty());
  EXPECT_EQ(bytes_of(moved.payload()), payload);
  moved.release();
  EXPECT_EQ(pool->in_use(h.owner), 0u);
  moved.release();  // idempotent
  EXPECT_EQ(s->receive().error(), std::errc::resource_unavailable_try_again);

  // Destroying an unreleased datagram gives the buffer back too.
  h.link.inject_rx(udp_frame(1234, 9000, payload));
  h.poll();
  { auto e = s->receive(); }
  EXPECT_EQ(pool->in_use(h.owner), 0u);
}

TEST(Udp, CopyingReceiveReportsTruncation) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open();
  ASSERT_FALSE(s->bind({kOurIp, 9000}));
  const auto payload = pattern(100, 3);
  h.link.inject_rx(udp_frame(1234, 9000, payload));
  h.link.inject_rx(udp_frame(1234, 9000, pattern(5, 4)));
  h.poll();
  EXPECT_EQ(s->queued_bytes(), 105u);
  std::array<std::byte, 40> buf{};
  auto r = s->recv_from(buf);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->truncated);  // MSG_TRUNC: the rest of the datagram is gone
  EXPECT_EQ(r->length, 100u);
  EXPECT_EQ(r->copied, 40u);
  EXPECT_EQ(bytes_of(buf), std::vector<std::byte>(payload.begin(), payload.begin() + 40));
  auto r2 = s->recv_from(buf);
  ASSERT_TRUE(r2);
  EXPECT_FALSE(r2->truncated);
  EXPECT_EQ(r2->copied, 5u);
  EXPECT_EQ(s->recv_from(buf).error(), std::errc::resource_unavailable_try_again);
  EXPECT_EQ(pool->in_use(h.owner), 0u);
  EXPECT_EQ(s->queued_bytes(), 0u);
}

// Limits on what a peer can grow: each socket's queue, in datagrams and bytes.
TEST(Udp, ReceiveQueueIsBounded) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open({.max_queue_datagrams = 3, .max_queue_bytes = 250});
  ASSERT_FALSE(s->bind({{}, 9000}));
  for (int i = 0; i < 5; ++i) h.link.inject_rx(udp_frame(1, 9000, pattern(10)));
  h.poll();
  EXPECT_EQ(s->queued(), 3u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::QueueFull), 2u);
  EXPECT_EQ(pool->in_use(h.owner), 3u);
  while (s->receive()) {
  }
  h.link.inject_rx(udp_frame(1, 9000, pattern(200)));
  h.link.inject_rx(udp_frame(1, 9000, pattern(100)));  // 300 > 250
  h.link.inject_rx(udp_frame(1, 9000, pattern(50)));   // 250 fits exactly
  h.poll();
  EXPECT_EQ(s->queued(), 2u);
  EXPECT_EQ(s->queued_bytes(), 250u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::QueueBytes), 1u);
  s->close();  // frees what is queued
  EXPECT_EQ(pool->in_use(h.owner), 0u);
}

// The queue is a ring that grows: datagrams come out in the order they
// came in across its wrap and its growth (8 slots, then 16, 32, 64), each
// with its own bytes, through both receives, and every buffer goes back.
TEST(Udp, ReceiveQueueKeepsOrderAcrossWrapAndGrowth) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open({.max_queue_datagrams = 64});
  ASSERT_FALSE(s->bind({{}, 9000}));
  std::uint32_t in = 0, out = 0;
  const auto arrive = [&](int n) {
    for (int i = 0; i < n; ++i, ++in) h.link.inject_rx(udp_frame(1, 9000, pattern(20 + in % 7, in)));
    h.poll();
  };
  const auto take = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const auto want = pattern(20 + out % 7, out);
      ++out;
      if (out % 2 == 0) {
        auto d = s->receive();
        ASSERT_TRUE(d);
        EXPECT_EQ(bytes_of(d->payload()), want) << "datagram " << out - 1;
      } else {
        std::array<std::byte, 64> buf{};
        auto r = s->recv_from(buf);
        ASSERT_TRUE(r);
        EXPECT_EQ(bytes_of(std::span(buf).first(r->copied)), want) << "datagram " << out - 1;
      }
    }
  };
  arrive(6);
  take(5);    // the front moves on: the next arrivals wrap around slot 7
  arrive(6);  // 7 queued, wrapped
  arrive(4);  // 11: grows while wrapped
  EXPECT_EQ(s->queued(), 11u);
  take(3);
  arrive(25);  // 33: grows again
  EXPECT_EQ(s->queued(), 33u);
  take(33);
  EXPECT_EQ(s->queued(), 0u);
  EXPECT_EQ(s->receive().error(), std::errc::resource_unavailable_try_again);
  EXPECT_EQ(pool->in_use(h.owner), 0u);
  arrive(3);
  s->close();  // what is queued gives its buffers back
  EXPECT_EQ(pool->in_use(h.owner), 0u);
}

// RFC 1122 4.1.3.4: a bad checksum is dropped, unless the link verified
// it; RFC 768: zero means none was computed (IPv4).
TEST(Udp, ChecksumsVerifiedUnlessTheLinkDid) {
  TestPool pool;
  {
    Host h(pool);
    auto l = make_layer(h);
    auto s = l->open();
    ASSERT_FALSE(s->bind({{}, 9000}));
    h.link.inject_rx(udp_frame(1, 9000, pattern(33), Sum::Bad));
    h.link.inject_rx(udp_frame(1, 9000, pattern(33), Sum::Zero));
    h.link.inject_rx(udp_frame(1, 9001, pattern(33), Sum::Bad));  // no reply for a corrupt one
    h.poll();
    EXPECT_EQ(l->counters().dropped(UdpDropReason::BadChecksum), 2u);
    EXPECT_EQ(l->counters().port_unreachable_sent, 0u);
    EXPECT_EQ(s->queued(), 1u);
    s->close();
  }
  {
    Host h(pool, net::test::default_config(), kOurMac, 1500, link::Offload::kNoChecksums);
    auto l = make_layer(h);
    auto s = l->open();
    ASSERT_FALSE(s->bind({{}, 9000}));
    h.link.inject_rx(udp_frame(1, 9000, pattern(33), Sum::Bad));
    h.poll();
    EXPECT_EQ(l->counters().dropped(UdpDropReason::BadChecksum), 0u);
    EXPECT_EQ(s->queued(), 1u);
    // And it sends without computing one.
    net::test::learn_peer(h);
    ASSERT_FALSE(s->send_to(pattern(5), {kPeerIp, 1}, h.now));
    auto out = h.sent();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0][14 + 20 + 6], std::byte{0});
    EXPECT_EQ(out[0][14 + 20 + 7], std::byte{0});
  }
}

TEST(Udp, MalformedDatagramsAreCounted) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  IpParams p;
  h.link.inject_rx(net::test::ip_frame(p, pattern(5)));  // shorter than the header
  auto u = udp_frame(1, 9000, pattern(20));
  usnet::store_be16(u.data() + 14 + 20 + 4, 200);  // length past the IP payload
  h.link.inject_rx(u);
  auto v = udp_frame(1, 9000, pattern(20));
  usnet::store_be16(v.data() + 14 + 20 + 4, 4);  // below 8
  h.link.inject_rx(v);
  h.link.inject_rx(udp_frame(1, 0, pattern(20)));  // port 0
  h.poll();
  EXPECT_EQ(l->counters().dropped(UdpDropReason::Truncated), 1u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::BadLength), 2u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::BadPort), 1u);
  EXPECT_EQ(l->counters().rx_datagrams, 4u);
  EXPECT_TRUE(h.sent().empty());
}

// RFC 1122 4.1.3.1: port unreachable for a port nobody is bound to; never
// for a broadcast (3.2.2).
TEST(Udp, PortUnreachableForAnUnboundPort) {
  TestPool pool;
  Host h(pool);
  net::test::learn_peer(h);
  auto l = make_layer(h);
  const auto sent_frame = udp_frame(4444, 9999, pattern(12));
  h.link.inject_rx(sent_frame);
  IpParams bcast;
  bcast.dst = Ipv4Addr::from_octets(198, 18, 0, 255);
  bcast.eth_dst = wire::MacAddr::broadcast();
  h.link.inject_rx(udp_frame(4444, 9999, pattern(12), Sum::Good, bcast));
  h.poll();
  EXPECT_EQ(l->counters().dropped(UdpDropReason::NoPort), 2u);
  EXPECT_EQ(l->counters().port_unreachable_sent, 1u);
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto ip = wire::Ipv4View::make(std::span<const std::byte>(out[0]).subspan(14));
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->protocol(), 1);
  EXPECT_EQ(ip->dst(), kPeerIp);
  auto icmp = wire::Icmpv4View::make(ip->payload());
  ASSERT_TRUE(icmp);
  EXPECT_EQ(icmp->type(), wire::Icmpv4Type::DestUnreachable);
  EXPECT_EQ(icmp->code(), 3);
  // It quotes our datagram's IP header and first 8 bytes (RFC 792).
  const auto quoted = ip->payload().subspan(8);
  ASSERT_EQ(quoted.size(), 28u);
  EXPECT_EQ(bytes_of(quoted), bytes_of(std::span<const std::byte>(sent_frame).subspan(14, 28)));
}

// The other side's port unreachable becomes ECONNREFUSED on the connected
// sender's next call (Linux semantics), once; an unconnected sender ignores it.
TEST(Udp, PortUnreachableIsConnectionRefusedForAConnectedSender) {
  Pair p;
  auto c = p.ua->open();
  ASSERT_FALSE(c->connect({kOurIp, 9}));
  ASSERT_FALSE(c->send(pattern(20), p.a.now));
  p.pump();
  EXPECT_EQ(p.ub->counters().port_unreachable_sent, 1u);
  EXPECT_EQ(p.ua->counters().icmp_errors_reported, 1u);
  EXPECT_EQ(c->pending_error(), std::errc::connection_refused);
  std::array<std::byte, 8> buf{};
  EXPECT_EQ(c->recv_from(buf).error(), std::errc::connection_refused);
  EXPECT_EQ(c->recv_from(buf).error(), std::errc::resource_unavailable_try_again);  // reported once

  ASSERT_FALSE(c->send(pattern(20), p.a.now));
  p.pump();
  EXPECT_EQ(c->send(pattern(20), p.a.now), std::errc::connection_refused);  // the send after
  EXPECT_FALSE(c->take_error());

  auto u = p.ua->open();
  ASSERT_FALSE(u->send_to(pattern(20), {kOurIp, 9}, p.a.now));
  p.b.now += 1s;  // a fresh token for the rate limit
  p.pump();
  EXPECT_FALSE(u->pending_error());
  EXPECT_EQ(p.ua->counters().dropped(UdpDropReason::IcmpIgnored), 1u);
  EXPECT_EQ(p.ua->counters().icmp_errors_received, 3u);
}

// An ICMP error from the peer quoting a UDP datagram kOurIp:sport -> dst:dport.
std::vector<std::byte> icmp_error(wire::Icmpv4Type type, std::uint8_t code, std::uint16_t sport, Ipv4Addr dst,
                                  std::uint16_t dport) {
  std::vector<std::byte> quoted(28);
  wire::Ipv4Repr ip;
  ip.src = kOurIp;
  ip.dst = dst;
  ip.protocol = 17;
  ip.payload_len = 50;
  (void)ip.emit(quoted);
  usnet::store_be16(quoted.data() + 20, sport);
  usnet::store_be16(quoted.data() + 22, dport);
  usnet::store_be16(quoted.data() + 24, 58);
  wire::Icmpv4Repr r;
  r.type = type;
  r.code = code;
  IpParams p;
  p.protocol = 1;
  return net::test::ip_frame(p, net::test::icmp_message(r, quoted));
}

// RFC 1122 4.1.3.3: ICMP errors reach the application, mapped as Linux
// maps them; only for the connected socket whose 4-tuple is quoted.
TEST(Udp, IcmpErrorsBecomeTheConnectedSocketsError) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open();
  ASSERT_FALSE(s->bind({{}, 4000}));
  ASSERT_FALSE(s->connect({kPeerIp, 53}));
  auto other = l->open();
  ASSERT_FALSE(other->bind({{}, 4001}));  // unconnected
  using T = wire::Icmpv4Type;
  struct Case {
    T type;
    std::uint8_t code;
    std::error_code want;
  };
  const Case cases[] = {
      {T::DestUnreachable, 0, std::make_error_code(std::errc::network_unreachable)},
      {T::DestUnreachable, 1, std::make_error_code(std::errc::host_unreachable)},
      {T::DestUnreachable, 2, std::make_error_code(std::errc::no_protocol_option)},
      {T::DestUnreachable, 3, std::make_error_code(std::errc::connection_refused)},
      {T::DestUnreachable, 4, {}},  // fragmentation needed: we never set DF
      {T::DestUnreachable, 13, std::make_error_code(std::errc::host_unreachable)},
      {T::TimeExceeded, 0, {}},  // transient
      {T::ParamProblem, 0, std::make_error_code(std::errc::protocol_error)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(int(c.code));
    h.link.inject_rx(icmp_error(c.type, c.code, 4000, kPeerIp, 53));
    h.poll();
    EXPECT_EQ(s->take_error(), c.want);
  }
  // Another peer, another port, an unconnected socket, nobody: not reported.
  h.link.inject_rx(icmp_error(T::DestUnreachable, 3, 4000, kPeerIp, 54));
  h.link.inject_rx(icmp_error(T::DestUnreachable, 3, 4000, Ipv4Addr::from_octets(198, 18, 0, 7), 53));
  h.link.inject_rx(icmp_error(T::DestUnreachable, 3, 4001, kPeerIp, 53));
  h.link.inject_rx(icmp_error(T::DestUnreachable, 3, 4002, kPeerIp, 53));
  h.poll();
  EXPECT_FALSE(s->pending_error());
  EXPECT_FALSE(other->pending_error());
  EXPECT_EQ(l->counters().icmp_errors_received, 12u);
  EXPECT_EQ(l->counters().icmp_errors_reported, 6u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::IcmpIgnored), 5u);
  EXPECT_EQ(l->counters().dropped(UdpDropReason::IcmpNoSocket), 1u);
}

TEST(Udp, SendErrors) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open();
  std::vector<std::byte> big(kMaxPayload + 1);
  EXPECT_EQ(s->send_to(big, {kPeerIp, 9}, h.now), std::errc::message_size);
  EXPECT_EQ(s->send_to(pattern(1), {kPeerIp, 0}, h.now), std::errc::invalid_argument);
  EXPECT_EQ(s->send_to(pattern(1), {{}, 9}, h.now), std::errc::invalid_argument);
  EXPECT_EQ(s->send_to(pattern(1), {Ipv4Addr::from_octets(255, 255, 255, 255), 9}, h.now),
            std::errc::permission_denied);
  EXPECT_EQ(s->send_to(pattern(1), {Ipv4Addr::from_octets(198, 18, 0, 255), 9}, h.now),
            std::errc::permission_denied);
  EXPECT_EQ(s->send_to(pattern(1), {Ipv4Addr::from_octets(203, 0, 113, 1), 9}, h.now),
            std::errc::network_unreachable);
  EXPECT_EQ(l->counters().tx_errors, 6u);
  auto b = l->open({.allow_broadcast = true});
  EXPECT_FALSE(b->send_to(pattern(1), {Ipv4Addr::from_octets(255, 255, 255, 255), 9}, h.now));
  // The largest datagram goes out: 65515 bytes of IP payload in 44
  // fragments of 1480 bytes and one of 395.
  std::vector<std::byte> largest(kMaxPayload);
  net::test::learn_peer(h);
  EXPECT_FALSE(s->send_to(largest, {kPeerIp, 9}, h.now));
  EXPECT_EQ(h.sent().size(), 45u);
  EXPECT_EQ(l->counters().tx_datagrams, 2u);
}

TEST(Udp, CountersPrint) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  h.link.inject_rx(udp_frame(1, 9000, pattern(33), Sum::Bad));
  h.poll();
  const auto text = l->format_counters();
  EXPECT_NE(text.find("Udp:\n"), std::string::npos);
  EXPECT_NE(text.find("    1 datagrams received\n"), std::string::npos);
  EXPECT_NE(text.find("    1 dropped: bad checksum\n"), std::string::npos);
  EXPECT_EQ(text.find("queue full"), std::string::npos);
  EXPECT_NE(l->format_counters(true).find("    0 dropped: receive queue full (datagrams)\n"),
            std::string::npos);
  for (std::size_t i = 0; i < kUdpDropReasonCount; ++i) {
    EXPECT_NE(to_string(static_cast<UdpDropReason>(i)), "unknown");
  }
}

// The layer may go first: its sockets are detached and their queues freed.
TEST(Udp, SocketsOutliveTheLayer) {
  TestPool pool;
  Host h(pool);
  auto l = make_layer(h);
  auto s = l->open();
  ASSERT_FALSE(s->bind({{}, 9000}));
  h.link.inject_rx(udp_frame(1, 9000, pattern(33)));
  h.poll();
  auto held = s->receive();  // a datagram in the application's hands stays valid
  h.link.inject_rx(udp_frame(1, 9000, pattern(33)));
  h.poll();
  EXPECT_EQ(pool->in_use(h.owner), 2u);
  l.reset();
  EXPECT_EQ(pool->in_use(h.owner), 1u);
  EXPECT_EQ(s->bind({{}, 1}), std::errc::bad_file_descriptor);
  EXPECT_EQ(s->send_to(pattern(1), {kPeerIp, 9}, h.now), std::errc::bad_file_descriptor);
  ASSERT_TRUE(held);
  EXPECT_EQ(bytes_of(held->payload()), pattern(33));
  held->release();
  // Unregistered: the interface drops UDP as an unknown protocol.
  h.link.inject_rx(udp_frame(1, 9000, pattern(33)));
  h.poll();
  EXPECT_EQ(h.drops(net::DropReason::IpUnknownProtocol), 1u);
}

}  // namespace
}  // namespace usnet::udp
