// IPv4 input checks, delivery, output and fragmentation through the interface.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "net_test_util.hpp"

namespace usnet::net::test {
namespace {

struct Received {
  Ipv4Info ip;
  std::vector<std::byte> payload;
};

void record_udp(Host& h, std::vector<Received>& got) {
  ASSERT_FALSE(h->set_protocol_handler(17, [&got](InboundDatagram& d, Nanos) {
    got.push_back({d.ip, std::vector<std::byte>(d.payload.begin(), d.payload.end())});
  }));
}

TEST(Ipv4Input, DeliversToTheProtocolHandler) {
  TestPool pool;
  Host h(pool);
  std::vector<Received> got;
  record_udp(h, got);
  const auto payload = pattern(64);
  h.link.inject_rx(ip_frame({}, payload));
  h.poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, payload);
  EXPECT_EQ(got[0].ip.src, kPeerIp);
  EXPECT_EQ(got[0].ip.dst, kOurIp);
  EXPECT_EQ(got[0].ip.ident, 99);
  EXPECT_FALSE(got[0].ip.reassembled);
  EXPECT_FALSE(got[0].ip.checksums_verified);
  EXPECT_EQ(h->counters().rx_ipv4, 1u);
  EXPECT_EQ(h->counters().rx_delivered, 1u);
}

// RFC 1122 3.2.1.7: a host does not check TTL on receive.
TEST(Ipv4Input, TtlZeroOrOneIsStillDelivered) {
  TestPool pool;
  Host h(pool);
  std::vector<Received> got;
  record_udp(h, got);
  IpParams p;
  p.ttl = 0;
  h.link.inject_rx(ip_frame(p, pattern(8)));
  p.ttl = 1;
  h.link.inject_rx(ip_frame(p, pattern(8)));
  h.poll();
  EXPECT_EQ(got.size(), 2u);
}

TEST(Ipv4Input, HandlerMayTakeTheFrame) {
  TestPool pool;
  Host h(pool);
  std::optional<link::Frame> kept;
  std::size_t offset = 0;
  ASSERT_FALSE(h->set_protocol_handler(17, [&](InboundDatagram& d, Nanos) {
    kept = d.take_frame();
    auto buf = pool->buffer(kept->buffer);
    offset = static_cast<std::size_t>(d.payload.data() - buf.data());
  }));
  h.link.inject_rx(ip_frame({}, pattern(32)));
  h.poll();
  ASSERT_TRUE(kept);
  EXPECT_EQ(offset, 34u);
  EXPECT_EQ(pool->in_use(h.owner), 1u);  // ours now, not freed by the interface
  EXPECT_FALSE(pool->free(h.owner, kept->buffer));
}

TEST(Ipv4Input, EachCheckCountsItsReason) {
  TestPool pool;
  Host h(pool);
  std::vector<Received> got;
  record_udp(h, got);

  auto bad_sum = ip_frame({}, pattern(20));
  bad_sum[14 + 10] ^= std::byte{0x01};
  h.link.inject_rx(bad_sum);

  IpParams other;
  other.dst = Ipv4Addr::from_octets(198, 18, 0, 3);
  h.link.inject_rx(ip_frame(other, pattern(20)));

  auto truncated = ip_frame({}, pattern(20));
  truncated.resize(truncated.size() - 5);  // total length now past the frame
  h.link.inject_rx(truncated);

  auto bad_version = ip_frame({}, pattern(20));
  bad_version[14] = std::byte{0x65};
  h.link.inject_rx(bad_version);

  IpParams mcast;
  mcast.dst = Ipv4Addr::from_octets(224, 0, 0, 251);
  mcast.eth_dst = MacAddr{{0x01, 0x00, 0x5e, 0, 0, 0xfb}};
  h.link.inject_rx(ip_frame(mcast, pattern(20)));

  IpParams bcast_src;
  bcast_src.src = Ipv4Addr::from_octets(255, 255, 255, 255);
  h.link.inject_rx(ip_frame(bcast_src, pattern(20)));

  IpParams own_src;  // our own address coming in: spoofed
  own_src.src = kOurIp;
  h.link.inject_rx(ip_frame(own_src, pattern(20)));

  IpParams wrong_mac;
  wrong_mac.eth_dst = MacAddr{{0x02, 0, 0, 0, 0, 0x33}};
  h.link.inject_rx(ip_frame(wrong_mac, pattern(20)));

  h.link.inject_rx(std::vector<std::byte>(10));  // shorter than Ethernet

  auto v6 = eth_frame(kOurMac, kPeerMac, wire::ethertype::kIpv6, pattern(40));
  h.link.inject_rx(v6);

  h.poll();
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(h.drops(DropReason::IpBadChecksum), 1u);
  EXPECT_EQ(h.drops(DropReason::IpNotForUs), 1u);
  EXPECT_EQ(h.drops(DropReason::IpTruncated), 1u);
  EXPECT_EQ(h.drops(DropReason::IpBadHeader), 1u);
  EXPECT_EQ(h.drops(DropReason::IpMulticastNotJoined), 1u);
  EXPECT_EQ(h.drops(DropReason::IpBadSource), 2u);
  EXPECT_EQ(h.drops(DropReason::EthNotForUs), 1u);
  EXPECT_EQ(h.drops(DropReason::EthTruncated), 1u);
  EXPECT_EQ(h.drops(DropReason::EthUnknownType), 1u);
  EXPECT_EQ(h->counters().dropped_total(), 10u);
  EXPECT_TRUE(h.sent().empty());  // no ICMP about any of these
  const auto text = h->format_counters();
  EXPECT_NE(text.find("1 dropped: ip bad checksum"), std::string::npos) << text;
  EXPECT_NE(text.find("10 frames received"), std::string::npos) << text;
  EXPECT_NE(text.find("0 bytes held by reassembly (bound 4194304)"), std::string::npos) << text;
}

// A link between two usnet stacks (Offload::kNoChecksums) promises intact
// frames: nothing is verified on receive, nothing computed on send.
TEST(Ipv4Input, NoChecksumsLinkSkipsVerifyAndCompute) {
  TestPool pool;
  Host h(pool, default_config(), kOurMac, 1500, link::Offload::kNoChecksums);
  std::vector<Received> got;
  record_udp(h, got);
  auto f = ip_frame({}, pattern(20));
  f[14 + 10] ^= std::byte{0x01};
  h.link.inject_rx(f);
  h.poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].ip.checksums_verified);
  learn_peer(h);
  ASSERT_FALSE(h->send(kPeerIp, 17, pattern(20), {}, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto ip = wire::Ipv4View::make(wire::EthernetView::make(out[0])->payload());
  EXPECT_EQ(ip->checksum(), 0);
}

TEST(Ipv4Input, BroadcastsAreAccepted) {
  TestPool pool;
  Host h(pool);
  std::vector<Received> got;
  record_udp(h, got);
  IpParams p;
  p.eth_dst = MacAddr::broadcast();
  p.dst = Ipv4Addr::from_octets(255, 255, 255, 255);
  h.link.inject_rx(ip_frame(p, pattern(8)));
  p.dst = Ipv4Addr::from_octets(198, 18, 0, 255);  // directed broadcast of our /24
  h.link.inject_rx(ip_frame(p, pattern(8)));
  h.poll();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].ip.ip_broadcast && got[0].ip.link_broadcast);
  EXPECT_TRUE(got[1].ip.ip_broadcast);
}

// RFC 1122 3.2.2.1: protocol unreachable for a protocol nobody handles,
// never for a broadcast.
TEST(Ipv4Input, UnknownProtocolGetsProtocolUnreachable) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  IpParams p;
  p.protocol = 99;
  const auto sent_frame = ip_frame(p, pattern(30));
  h.link.inject_rx(sent_frame);
  h.poll();
  EXPECT_EQ(h.drops(DropReason::IpUnknownProtocol), 1u);
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto e = wire::EthernetView::make(out[0]);
  auto ip = wire::Ipv4View::make(e->payload());
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->src(), kOurIp);
  EXPECT_EQ(ip->dst(), kPeerIp);
  EXPECT_EQ(ip->protocol(), 1);
  auto icmp = wire::Icmpv4View::make(ip->payload());
  ASSERT_TRUE(icmp);
  EXPECT_TRUE(icmp->checksum_ok());
  EXPECT_EQ(icmp->type(), wire::Icmpv4Type::DestUnreachable);
  EXPECT_EQ(icmp->code(), 2);
  // It quotes the IP header and the first 8 bytes of the payload.
  ASSERT_EQ(icmp->data().size(), 28u);
  EXPECT_TRUE(std::equal(icmp->data().begin(), icmp->data().end(), sent_frame.begin() + 14));

  p.eth_dst = MacAddr::broadcast();
  p.dst = Ipv4Addr::from_octets(198, 18, 0, 255);
  h.link.inject_rx(ip_frame(p, pattern(30)));
  h.poll();
  EXPECT_TRUE(h.sent().empty());
}

TEST(Ipv4Output, HeaderFieldsAndOptions) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  SendOptions o;
  o.ttl = 7;
  o.dscp = 46;
  o.ecn = 1;
  o.dont_frag = true;
  const auto payload = pattern(100);
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, o, h.now));
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 2u);
  auto ip0 = wire::Ipv4View::make(wire::EthernetView::make(out[0])->payload());
  auto ip1 = wire::Ipv4View::make(wire::EthernetView::make(out[1])->payload());
  ASSERT_TRUE(ip0 && ip1);
  EXPECT_TRUE(ip0->checksum_ok());
  EXPECT_EQ(ip0->ttl(), 7);
  EXPECT_EQ(ip0->dscp(), 46);
  EXPECT_EQ(ip0->ecn(), 1);
  EXPECT_TRUE(ip0->dont_frag());
  EXPECT_EQ(ip1->ttl(), 64);
  EXPECT_EQ(ip1->ident(), static_cast<std::uint16_t>(ip0->ident() + 1));  // one ident per datagram
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), ip0->payload().begin()));
}

TEST(Ipv4Output, NoRouteAndTooBig) {
  TestPool pool;
  Host h(pool);
  const auto far = Ipv4Addr::from_octets(203, 0, 113, 9);
  EXPECT_EQ(h->send(far, 17, pattern(10), {}, h.now), std::errc::network_unreachable);
  EXPECT_EQ(h.drops(DropReason::NoRoute), 1u);
  SendOptions df;
  df.dont_frag = true;
  EXPECT_EQ(h->send(kPeerIp, 17, pattern(1481), df, h.now), std::errc::message_size);
  EXPECT_EQ(h->send(kPeerIp, 17, pattern(65516), {}, h.now), std::errc::message_size);
  EXPECT_EQ(h.drops(DropReason::TooBig), 2u);
  EXPECT_TRUE(h.sent().empty());

  // Through a default gateway: ARP asks for the gateway, not the destination.
  ASSERT_FALSE(h->routes().set_default_gateway(kPeerIp));
  ASSERT_FALSE(h->send(far, 17, pattern(10), {}, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto arp = wire::ArpView::make(wire::EthernetView::make(out[0])->payload());
  ASSERT_TRUE(arp);
  EXPECT_EQ(arp->target_ip(), kPeerIp);
  h.link.inject_rx(arp_frame(wire::ArpOperation::Reply, kPeerMac, kPeerIp, kOurMac, kOurIp, kOurMac));
  h.poll();
  out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  auto e = wire::EthernetView::make(out[0]);
  EXPECT_EQ(e->dst(), kPeerMac);
  EXPECT_EQ(wire::Ipv4View::make(e->payload())->dst(), far);
}

// RFC 791 3.2: 8000 bytes at MTU 1500 are six fragments of 1480 bytes (the
// last 600), offsets in 8-byte units, MF on all but the last, one ident.
TEST(Ipv4Output, FragmentsAn8000ByteDatagramAndReassemblesItInAnyOrder) {
  TestPool pool;
  Host a(pool);
  learn_peer(a);
  const auto payload = pattern(8000, 42);
  ASSERT_FALSE(a->send(kPeerIp, 17, payload, {}, a.now));
  auto frags = a.sent();
  ASSERT_EQ(frags.size(), 6u);
  EXPECT_EQ(a->counters().tx_fragments, 6u);
  std::uint16_t ident = 0;
  for (std::size_t i = 0; i < frags.size(); ++i) {
    auto ip = wire::Ipv4View::make(wire::EthernetView::make(frags[i])->payload());
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->checksum_ok());
    EXPECT_EQ(ip->frag_offset_bytes(), i * 1480);
    EXPECT_EQ(ip->more_frags(), i + 1 < frags.size());
    EXPECT_EQ(ip->payload().size(), i + 1 < frags.size() ? 1480u : 600u);
    EXPECT_LE(ip->total_len(), 1500);
    if (i == 0) ident = ip->ident();
    EXPECT_EQ(ip->ident(), ident);
    EXPECT_TRUE(std::equal(ip->payload().begin(), ip->payload().end(), payload.begin() + i * 1480));
  }

  // The peer side: the same fragments, addressed back to us, in many orders.
  std::mt19937 rng(3);
  for (int round = 0; round < 10; ++round) {
    Host b(pool);
    std::vector<Received> got;
    record_udp(b, got);
    std::vector<std::vector<std::byte>> in;
    for (const auto& f : frags) {
      auto ip = wire::Ipv4View::make(wire::EthernetView::make(f)->payload());
      IpParams p;
      p.ident = static_cast<std::uint16_t>(ip->ident() + round);
      p.mf = ip->more_frags();
      p.offset = ip->frag_offset_bytes();
      in.push_back(ip_frame(p, ip->payload()));
    }
    if (round > 0) std::shuffle(in.begin(), in.end(), rng);
    for (const auto& f : in) ASSERT_TRUE(b.link.inject_rx(f));
    b.poll();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].payload, payload);
    EXPECT_TRUE(got[0].ip.reassembled);
    EXPECT_EQ(b->reassembler().memory_used(), 0u);
    EXPECT_EQ(b->counters().reassembled, 1u);
  }
}

// The largest datagram waits behind ARP whole: 45 fragments fit the queue.
TEST(Ipv4Output, LargestDatagramQueuedWhileResolving) {
  TestPool pool;
  Host a(pool);
  std::vector<Received> got;
  const auto payload = pattern(65515, 5);
  ASSERT_FALSE(a->send(kPeerIp, 17, payload, {}, a.now));
  EXPECT_EQ(a->arp().queued_total(), 45u);
  EXPECT_EQ(a.sent().size(), 1u);  // the ARP request
  a.link.inject_rx(arp_frame(wire::ArpOperation::Reply, kPeerMac, kPeerIp, kOurMac, kOurIp, kOurMac));
  a.poll();
  auto frags = a.sent();
  ASSERT_EQ(frags.size(), 45u);
  Host b(pool);
  record_udp(b, got);
  for (const auto& f : frags) {
    auto ip = wire::Ipv4View::make(wire::EthernetView::make(f)->payload());
    IpParams p;
    p.mf = ip->more_frags();
    p.offset = ip->frag_offset_bytes();
    ASSERT_TRUE(b.link.inject_rx(ip_frame(p, ip->payload())));
    b.poll();
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, payload);
}

TEST(Ipv4Output, SourceForFollowsTheRoutes) {
  TestPool pool;
  auto cfg = default_config();
  cfg.addresses.push_back({Ipv4Addr::from_octets(198, 19, 0, 2), 24});
  Host h(pool, cfg);
  EXPECT_EQ(h->source_for(kPeerIp), kOurIp);
  EXPECT_EQ(h->source_for(Ipv4Addr::from_octets(198, 19, 0, 1)), Ipv4Addr::from_octets(198, 19, 0, 2));
  EXPECT_FALSE(h->source_for(Ipv4Addr::from_octets(203, 0, 113, 1)));
  ASSERT_FALSE(h->routes().set_default_gateway(Ipv4Addr::from_octets(198, 19, 0, 1)));
  EXPECT_EQ(h->source_for(Ipv4Addr::from_octets(203, 0, 113, 1)), Ipv4Addr::from_octets(198, 19, 0, 2));
}

TEST(Ipv4Output, SmallMtuFragmentsOnEightByteBoundaries) {
  TestPool pool;
  Host a(pool, default_config(), kOurMac, 101);  // 81 bytes of payload room -> 80 per fragment
  learn_peer(a);
  ASSERT_FALSE(a->send(kPeerIp, 17, pattern(200), {}, a.now));
  auto frags = a.sent();
  ASSERT_EQ(frags.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    auto ip = wire::Ipv4View::make(wire::EthernetView::make(frags[i])->payload());
    EXPECT_EQ(ip->frag_offset_bytes(), i * 80);
    EXPECT_EQ(ip->payload().size(), i < 2 ? 80u : 40u);
  }
}

TEST(Ipv4Output, PoolExhaustionIsAnErrorNotALeak) {
  TestPool pool(1);  // 32 buffers
  Host a(pool);
  learn_peer(a);
  std::vector<link::Frame> hog;
  while (auto b = pool->alloc(a.owner)) hog.push_back(link::Frame{*b, 0, 0, 0});
  EXPECT_EQ(a->send(kPeerIp, 17, pattern(8000), {}, a.now), std::errc::no_buffer_space);
  EXPECT_GE(a.drops(DropReason::NoBuffer), 1u);
  for (const auto& f : hog) EXPECT_FALSE(pool->free(a.owner, f.buffer));
  EXPECT_TRUE(a.sent().empty());
}

// reserve() builds the same frame send() would, in place: headers written,
// the caller's bytes where it wrote them; release() gives the frame back;
// the errors are send()'s, and EMSGSIZE for anything past one frame.
TEST(Ipv4Output, ReserveBuildsTheDatagramInItsFrame) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  SendOptions o;
  o.ttl = 9;
  o.dont_frag = true;
  const auto payload = pattern(1480);
  auto d = h->reserve(kPeerIp, 17, payload.size(), o);
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_EQ(d->payload().size(), payload.size());
  std::copy(payload.begin(), payload.end(), d->payload().begin());
  EXPECT_EQ(pool->in_use(h.owner), 1u);
  ASSERT_FALSE(h->transmit(*d, h.now));
  EXPECT_EQ(h->transmit(*d, h.now), std::errc::invalid_argument);  // once only
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, o, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 2u);
  auto e0 = wire::EthernetView::make(out[0]);
  auto ip0 = wire::Ipv4View::make(e0->payload());
  auto ip1 = wire::Ipv4View::make(wire::EthernetView::make(out[1])->payload());
  ASSERT_TRUE(ip0 && ip1);
  EXPECT_EQ(e0->dst(), kPeerMac);
  EXPECT_TRUE(ip0->checksum_ok());
  EXPECT_EQ(ip0->ttl(), 9);
  EXPECT_TRUE(ip0->dont_frag());
  EXPECT_EQ(ip0->src(), kOurIp);
  EXPECT_EQ(ip1->ident(), static_cast<std::uint16_t>(ip0->ident() + 1));
  // Apart from the ident (and so the header checksum) the frames are equal.
  EXPECT_EQ(out[0].size(), out[1].size());
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), ip0->payload().begin(), ip0->payload().end()));
  EXPECT_EQ(h->counters().tx_datagrams, 2u);

  auto r = h->reserve(kPeerIp, 17, 10, {});
  ASSERT_TRUE(r);
  h->release(*r);
  h->release(*r);  // a second release is a no-op
  EXPECT_EQ(pool->in_use(h.owner), 0u);
  EXPECT_TRUE(h.sent().empty());

  EXPECT_EQ(h->reserve(kPeerIp, 17, 1481, {}).error(), std::errc::message_size);  // no fragments
  EXPECT_EQ(h->reserve(Ipv4Addr::from_octets(203, 0, 113, 9), 17, 10, {}).error(),
            std::errc::network_unreachable);
  EXPECT_EQ(h.drops(DropReason::TooBig), 1u);
  EXPECT_EQ(h.drops(DropReason::NoRoute), 1u);
  std::vector<link::Frame> hog;
  while (auto b = pool->alloc(h.owner)) hog.push_back(link::Frame{*b, 0, 0, 0});
  EXPECT_EQ(h->reserve(kPeerIp, 17, 10, {}).error(), std::errc::no_buffer_space);
  for (const auto& f : hog) EXPECT_FALSE(pool->free(h.owner, f.buffer));
  EXPECT_EQ(pool->in_use(h.owner), 0u);
}

TEST(Ipv4Output, TwoInterfacesBackToBack) {
  TestPool pool;
  Host a(pool, default_config(kPeerIp), kPeerMac);
  Host b(pool);
  link::MemoryLink::connect(a.link, b.link);
  std::vector<Received> got;
  record_udp(b, got);
  const auto payload = pattern(5000, 9);
  ASSERT_FALSE(a->send(kOurIp, 17, payload, {}, a.now));  // ARP request to b
  for (int i = 0; i < 3; ++i) {
    b.poll();
    a.poll();
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, payload);
}

}  // namespace
}  // namespace usnet::net::test
