// ICMP through the interface (RFC 792, RFC 1122 3.2.2, RFC 5927).
#include <gtest/gtest.h>

#include "net_test_util.hpp"
#include "support/hex.hpp"

namespace usnet::net::test {
namespace {

std::optional<wire::Icmpv4View> icmp_of(const std::vector<std::byte>& f, wire::Ipv4Addr* dst = nullptr) {
  auto e = wire::EthernetView::make(f);
  if (!e) return std::nullopt;
  auto ip = wire::Ipv4View::make(e->payload());
  if (!ip || ip->protocol() != 1) return std::nullopt;
  if (dst) *dst = ip->dst();
  auto v = wire::Icmpv4View::make(ip->payload());
  if (!v) return std::nullopt;
  return *v;
}

// RFC 792 echo: same identifier, sequence and data. The expected frame was
// computed by hand (Python struct, RFC 1071 sums) from the scapy request in
// tests/data/frames.txt: IP ident 1 (our first), TTL 64, no DF.
TEST(Icmp, EchoReplyIsByteExact) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  ASSERT_TRUE(h.link.inject_rx(usnet::test::reference_packet("frames.txt", "icmp_echo")));
  h.poll();
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(
      usnet::test::to_hex(out[0]),
      usnet::test::to_hex(usnet::test::from_hex(
          "020000000001020000000002080045000026000100004001eeaec6120002c61200010000b6f31234000175736e65742d70"
          "696e67")));
  EXPECT_EQ(h->counters().icmp_echo_replies_sent, 1u);
}

TEST(Icmp, EchoToBroadcastIsIgnoredAndBadChecksumDropped) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  wire::Icmpv4Repr req;
  req.type = wire::Icmpv4Type::EchoRequest;
  req.ident = 1;
  req.seq = 2;
  IpParams p;
  p.protocol = 1;
  p.eth_dst = MacAddr::broadcast();
  p.dst = Ipv4Addr::from_octets(198, 18, 0, 255);
  h.link.inject_rx(ip_frame(p, icmp_message(req, pattern(16))));
  IpParams q;
  q.protocol = 1;
  auto m = icmp_message(req, pattern(16));
  m[2] ^= std::byte{0x10};
  h.link.inject_rx(ip_frame(q, m));
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h.drops(DropReason::IcmpEchoToBroadcast), 1u);
  EXPECT_EQ(h.drops(DropReason::IcmpBadChecksum), 1u);
}

// A destination unreachable quoting a UDP datagram from `quoted_src`.
std::vector<std::byte> unreachable(std::uint8_t code, Ipv4Addr quoted_src, std::uint8_t proto = 17,
                                   std::uint16_t mtu = 0) {
  std::vector<std::byte> quoted(28);
  wire::Ipv4Repr ip;
  ip.src = quoted_src;
  ip.dst = kPeerIp;
  ip.protocol = proto;
  ip.payload_len = 100;  // the original was longer than what is quoted
  (void)ip.emit(quoted);
  store_be16(quoted.data() + 20, 5000);
  store_be16(quoted.data() + 22, 9999);
  wire::Icmpv4Repr r;
  r.type = wire::Icmpv4Type::DestUnreachable;
  r.code = code;
  r.next_hop_mtu = mtu;
  IpParams p;
  p.protocol = 1;
  return ip_frame(p, icmp_message(r, quoted));
}

// RFC 5927: an error reaches the upper layer only if it quotes a datagram
// we sent; it carries what the handler needs to find its socket.
TEST(Icmp, ErrorDeliveredOnlyWhenTheQuotedHeaderIsOurs) {
  TestPool pool;
  Host h(pool);
  std::vector<IcmpErrorInfo> errors;
  h->set_error_handler(17, [&](const IcmpErrorInfo& e, Nanos) { errors.push_back(e); });
  h.link.inject_rx(unreachable(3, kOurIp));
  h.link.inject_rx(unreachable(4, kOurIp, 17, 1400));
  h.link.inject_rx(unreachable(3, Ipv4Addr::from_octets(198, 18, 0, 66)));  // not ours
  h.link.inject_rx(unreachable(3, kOurIp, 6));                              // nobody for TCP
  h.poll();
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].type, 3);
  EXPECT_EQ(errors[0].code, 3);
  EXPECT_EQ(errors[0].protocol, 17);
  EXPECT_EQ(errors[0].from, kPeerIp);
  EXPECT_EQ(errors[0].quoted_src, kOurIp);
  EXPECT_EQ(errors[0].quoted_dst, kPeerIp);
  EXPECT_TRUE(errors[0].has_ports);
  EXPECT_EQ(errors[0].src_port, 5000);
  EXPECT_EQ(errors[0].dst_port, 9999);
  EXPECT_EQ(errors[0].quoted_payload.size(), 8u);
  EXPECT_EQ(errors[1].code, 4);
  EXPECT_EQ(errors[1].mtu, 1400);  // RFC 1191
  EXPECT_EQ(h.drops(DropReason::IcmpErrorNotOurs), 1u);
  EXPECT_EQ(h.drops(DropReason::IcmpErrorNoHandler), 1u);
  EXPECT_TRUE(h.sent().empty());  // never an error about an error
  EXPECT_EQ(h->counters().icmp_errors_delivered, 2u);
}

TEST(Icmp, TruncatedQuoteIsMalformed) {
  TestPool pool;
  Host h(pool);
  h->set_error_handler(17, [](const IcmpErrorInfo&, Nanos) { ADD_FAILURE(); });
  wire::Icmpv4Repr r;
  r.type = wire::Icmpv4Type::TimeExceeded;
  IpParams p;
  p.protocol = 1;
  h.link.inject_rx(ip_frame(p, icmp_message(r, pattern(12))));
  h.poll();
  EXPECT_EQ(h.drops(DropReason::IcmpMalformed), 1u);
}

// RFC 1122 3.2.2: no error about an ICMP error, a broadcast, or a
// non-initial fragment.
TEST(Icmp, NeverAnErrorAboutAnErrorOrABroadcast) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  InboundDatagram d;
  d.ip.src = kPeerIp;
  d.ip.dst = kOurIp;
  d.ip.protocol = 1;
  auto about_error = unreachable(3, kPeerIp);
  d.quote = std::span<const std::byte>(about_error).subspan(14, 28);
  EXPECT_FALSE(h->send_icmp_error(d, 3, 3, h.now));
  auto udp = ip_frame({}, pattern(20));
  d.ip.protocol = 17;
  d.quote = std::span<const std::byte>(udp).subspan(14, 28);
  d.ip.link_broadcast = true;
  EXPECT_FALSE(h->send_icmp_error(d, 3, 3, h.now));
  d.ip.link_broadcast = false;
  IpParams later;
  later.offset = 8;
  auto frag = ip_frame(later, pattern(20));
  d.quote = std::span<const std::byte>(frag).subspan(14, 28);
  EXPECT_FALSE(h->send_icmp_error(d, 3, 3, h.now));
  d.quote = std::span<const std::byte>(udp).subspan(14, 28);
  EXPECT_TRUE(h->send_icmp_error(d, 3, 3, h.now));
  EXPECT_EQ(h.sent().size(), 1u);
}

// Port unreachable from the UDP layer, rate-limited by the token bucket
// (burst 10, 100 per second by default).
TEST(Icmp, PortUnreachableIsRateLimited) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  ASSERT_FALSE(
      h->set_protocol_handler(17, [&h](InboundDatagram& d, Nanos now) { h->send_icmp_error(d, 3, 3, now); }));
  for (int i = 0; i < 20; ++i) h.link.inject_rx(ip_frame({}, pattern(20)));
  h.poll();
  auto out = h.sent();
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(h.drops(DropReason::RateLimited), 10u);
  auto icmp = icmp_of(out[0]);
  ASSERT_TRUE(icmp);
  EXPECT_EQ(icmp->type(), wire::Icmpv4Type::DestUnreachable);
  EXPECT_EQ(icmp->code(), 3);
  // 50 ms later five tokens are back.
  h.now += 50ms;
  for (int i = 0; i < 20; ++i) h.link.inject_rx(ip_frame({}, pattern(20)));
  h.poll();
  EXPECT_EQ(h.sent().size(), 5u);
  EXPECT_EQ(h.drops(DropReason::RateLimited), 25u);
}

TEST(TokenBucketTest, RefillsAtItsRateUpToTheBurst) {
  TokenBucket b(10, 3);
  Nanos t{5s};
  EXPECT_TRUE(b.take(t));
  EXPECT_TRUE(b.take(t));
  EXPECT_TRUE(b.take(t));
  EXPECT_FALSE(b.take(t));
  EXPECT_FALSE(b.take(t + 99ms));
  EXPECT_TRUE(b.take(t + 100ms));
  EXPECT_FALSE(b.take(t + 150ms));
  EXPECT_TRUE(b.take(t + 200ms));
  t += 100s;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(t));
  EXPECT_FALSE(b.take(t));
}

// RFC 792 / RFC 1122 3.3.2: reassembly timeout frees the memory and sends
// time exceeded (code 1) when fragment zero had arrived, and only then.
TEST(Icmp, ReassemblyTimeoutSendsTimeExceeded) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  IpParams first;
  first.mf = true;
  first.ident = 500;
  const auto f0 = ip_frame(first, pattern(64));
  h.link.inject_rx(f0);
  IpParams later;
  later.mf = true;
  later.offset = 64;
  later.ident = 501;
  h.link.inject_rx(ip_frame(later, pattern(64)));
  h.poll();
  EXPECT_EQ(h->reassembler().datagrams(), 2u);
  EXPECT_GT(h->reassembler().memory_used(), 0u);
  EXPECT_EQ(h->next_deadline(), h.now + 30s);
  h.now += 30s;
  h.poll();
  EXPECT_EQ(h->reassembler().memory_used(), 0u);
  EXPECT_EQ(h.drops(DropReason::ReasmTimeout), 2u);
  // The peer's entry went stale meanwhile: an ARP refresh goes out too.
  std::vector<std::vector<std::byte>> out;
  for (auto& f : h.sent()) {
    if (icmp_of(f)) out.push_back(f);
  }
  ASSERT_EQ(out.size(), 1u);
  Ipv4Addr dst;
  auto icmp = icmp_of(out[0], &dst);
  ASSERT_TRUE(icmp);
  EXPECT_EQ(dst, kPeerIp);
  EXPECT_EQ(icmp->type(), wire::Icmpv4Type::TimeExceeded);
  EXPECT_EQ(icmp->code(), 1);
  ASSERT_EQ(icmp->data().size(), 28u);
  EXPECT_TRUE(std::equal(icmp->data().begin(), icmp->data().end(), f0.begin() + 14));
}

// The ping client: request out, reply back, RTT from the time in the data.
TEST(Icmp, PingClientGetsRepliesWithRtt) {
  TestPool pool;
  Host a(pool, default_config(kPeerIp), kPeerMac);
  Host b(pool);
  link::MemoryLink::connect(a.link, b.link);
  std::vector<EchoReply> replies;
  a->set_ping_handler([&](const EchoReply& r, Nanos) { replies.push_back(r); });
  const Nanos t0 = a.now;
  ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 1, 56, t0));  // waits for ARP
  b.now = t0 + 1ms;
  b.poll();  // answers ARP
  a.now = t0 + 2ms;
  a.poll();  // ARP reply: the request goes
  b.now = t0 + 3ms;
  b.poll();  // echo reply (b already learned a from its request)
  a.now = t0 + 4ms;
  a.poll();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].from, kOurIp);
  EXPECT_EQ(replies[0].ident, 0x77);
  EXPECT_EQ(replies[0].seq, 1);
  EXPECT_EQ(replies[0].data_len, 56u);
  ASSERT_TRUE(replies[0].rtt);
  EXPECT_EQ(*replies[0].rtt, 4ms);
  EXPECT_EQ(b->counters().icmp_echo_replies_sent, 1u);

  // A second one, resolved now: a large one (fragmented both ways).
  ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 2, 4000, a.now));
  b.poll();
  a.now += 1ms;
  a.poll();
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].seq, 2);
  EXPECT_EQ(replies[1].data_len, 4000u);
  EXPECT_EQ(*replies[1].rtt, 1ms);
}

// A handler runs inside poll(); a poll() from it receives nothing (the
// burst's frames belong to the outer call), and the outer call goes on.
TEST(Icmp, PollFromAPingHandlerReceivesNothingAndTheBurstGoesOn) {
  TestPool pool;
  Host a(pool, default_config(kPeerIp), kPeerMac);
  Host b(pool);
  link::MemoryLink::connect(a.link, b.link);
  std::vector<std::uint16_t> seqs;
  std::vector<std::size_t> nested;
  bool burst = false;
  a->set_ping_handler([&](const EchoReply& r, Nanos now) {
    seqs.push_back(r.seq);
    if (burst && r.seq == 1) {
      // One more reply waiting on the link while the burst is handled.
      ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 4, 8, now));
      b.poll();
    }
    nested.push_back(a->poll(now));
  });
  ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 1, 8, a.now));  // waits for ARP
  b.poll();                                               // answers ARP
  a.poll();                                               // the request goes
  b.poll();                                               // the reply comes
  ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 2, 8, a.now));
  ASSERT_FALSE(a->send_ping(kOurIp, 0x77, 3, 8, a.now));
  b.poll();  // two more replies: with the first, one burst of three
  burst = true;
  EXPECT_EQ(a->poll(a.now), 3u);
  EXPECT_EQ(seqs, (std::vector<std::uint16_t>{1, 2, 3}));
  EXPECT_EQ(nested, (std::vector<std::size_t>{0, 0, 0}));
  EXPECT_EQ(a->poll(a.now), 1u);  // the fourth, with the next poll
  EXPECT_EQ(seqs, (std::vector<std::uint16_t>{1, 2, 3, 4}));
}

TEST(Icmp, EchoReplyWithoutPingClientIsCounted) {
  TestPool pool;
  Host h(pool);
  wire::Icmpv4Repr r;
  r.type = wire::Icmpv4Type::EchoReply;
  IpParams p;
  p.protocol = 1;
  h.link.inject_rx(ip_frame(p, icmp_message(r, pattern(8))));
  wire::Icmpv4Repr ts;
  ts.type = static_cast<wire::Icmpv4Type>(13);  // timestamp: not acted on
  h.link.inject_rx(ip_frame(p, icmp_message(ts, pattern(12))));
  h.poll();
  EXPECT_EQ(h.drops(DropReason::IcmpNoPingHandler), 1u);
  EXPECT_EQ(h.drops(DropReason::IcmpUnknownType), 1u);
}

}  // namespace
}  // namespace usnet::net::test

namespace usnet::net {
namespace {

// A configured rate above 10^9 per second made the token interval 0 ns and
// the refill divide by zero; it is now taken as one token per nanosecond.
TEST(TokenBucket, RateAboveOnePerNanosecondIsClamped) {
  TokenBucket b(2'000'000'000u, 2);
  EXPECT_TRUE(b.take(Nanos{1000}));
  EXPECT_TRUE(b.take(Nanos{1000}));
  EXPECT_FALSE(b.take(Nanos{1000}));
  EXPECT_TRUE(b.take(Nanos{1001}));  // one nanosecond later: one token
}

}  // namespace
}  // namespace usnet::net
