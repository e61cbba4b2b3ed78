// ARP through the interface (RFC 826, RFC 1122 2.3.2, RFC 5227) and the
// cache's bounds on its own.
#include <gtest/gtest.h>

#include "net_test_util.hpp"
#include "support/hex.hpp"
#include "usnet/net/arp_cache.hpp"

namespace usnet::net::test {
namespace {

using wire::ArpOperation;

std::optional<wire::ArpRepr> as_arp(const std::vector<std::byte>& f, MacAddr* eth_dst = nullptr) {
  auto e = wire::EthernetView::make(f);
  if (!e || e->ethertype() != wire::ethertype::kArp) return std::nullopt;
  if (eth_dst) *eth_dst = e->dst();
  auto v = wire::ArpView::make(e->payload());
  if (!v) return std::nullopt;
  auto r = wire::ArpRepr::parse(*v);
  if (!r) return std::nullopt;
  return *r;
}

// RFC 826: a request for our address is answered; the reply is byte for
// byte the scapy reference (tests/data/frames.txt arp_reply).
TEST(Arp, RepliesToRequestForOurAddressByteExact) {
  TestPool pool;
  Host h(pool);
  ASSERT_TRUE(h.link.inject_rx(usnet::test::reference_packet("frames.txt", "arp_request")));
  h.poll();
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(usnet::test::to_hex(out[0]),
            usnet::test::to_hex(usnet::test::reference_packet("frames.txt", "arp_reply")));
  // RFC 826 merge: we were the target, so the sender was learned.
  EXPECT_EQ(h->arp().state(kPeerIp), ArpState::Reachable);
  EXPECT_EQ(h->arp().lookup(kPeerIp), kPeerMac);
  EXPECT_EQ(h->counters().arp_replies_sent, 1u);
}

TEST(Arp, RequestForAnotherAddressTeachesNothing) {
  TestPool pool;
  Host h(pool);
  h.link.inject_rx(
      arp_frame(ArpOperation::Request, kPeerMac, kPeerIp, {}, Ipv4Addr::from_octets(198, 18, 0, 9)));
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h.drops(DropReason::ArpNotForUs), 1u);
  EXPECT_EQ(h->arp().size(), 0u);
}

TEST(Arp, MalformedAndBadSenderAreCounted) {
  TestPool pool;
  Host h(pool);
  auto f = arp_frame(ArpOperation::Request, kPeerMac, kPeerIp, {}, kOurIp);
  f[14 + 7] = std::byte{9};  // operation 9
  h.link.inject_rx(f);
  h.link.inject_rx(arp_frame(ArpOperation::Request, MacAddr::broadcast(), kPeerIp, {}, kOurIp));
  h.link.inject_rx(arp_frame(ArpOperation::Request, kPeerMac, kOurIp, {}, kOurIp));  // conflict (RFC 5227)
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h.drops(DropReason::ArpMalformed), 1u);
  EXPECT_EQ(h.drops(DropReason::ArpBadSender), 2u);
  EXPECT_EQ(h->arp().size(), 0u);
}

// Sending resolves first: a request goes out, the datagram waits, the reply
// releases it to the right MAC.
TEST(Arp, QueuesWhileResolvingThenFlushes) {
  TestPool pool;
  Host h(pool);
  const auto payload = pattern(100);
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 1u);  // one request only: the second send found it pending
  MacAddr dst;
  auto req = as_arp(out[0], &dst);
  ASSERT_TRUE(req);
  EXPECT_EQ(dst, MacAddr::broadcast());
  EXPECT_EQ(req->operation, ArpOperation::Request);
  EXPECT_EQ(req->sender_ip, kOurIp);
  EXPECT_EQ(req->sender_mac, kOurMac);
  EXPECT_EQ(req->target_ip, kPeerIp);
  EXPECT_EQ(h->arp().queued_total(), 2u);

  h.link.inject_rx(arp_frame(ArpOperation::Reply, kPeerMac, kPeerIp, kOurMac, kOurIp, kOurMac));
  h.poll();
  out = h.sent();
  ASSERT_EQ(out.size(), 2u);
  for (const auto& f : out) {
    auto e = wire::EthernetView::make(f);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->dst(), kPeerMac);
    EXPECT_EQ(e->src(), kOurMac);
    auto ip = wire::Ipv4View::make(e->payload());
    ASSERT_TRUE(ip);
    EXPECT_TRUE(ip->checksum_ok());
    EXPECT_EQ(ip->dst(), kPeerIp);
  }
  EXPECT_EQ(h->arp().queued_total(), 0u);
  // Resolved: the next send goes straight out.
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  EXPECT_EQ(h.sent().size(), 1u);
}

// RFC 1122 2.3.2.1: retransmit at most once per second, give up after
// max_probes; the waiting datagrams are dropped and counted; no flooding
// while the failure is held.
TEST(Arp, RetransmitsThenFailsAndDropsQueued) {
  TestPool pool;
  Host h(pool);
  const auto payload = pattern(10);
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  EXPECT_EQ(h.sent().size(), 1u);
  EXPECT_EQ(h->next_deadline(), h.now + 1s);
  h.now += 500ms;
  h.poll();
  EXPECT_TRUE(h.sent().empty());  // not yet
  h.now += 500ms;
  h.poll();
  EXPECT_EQ(h.sent().size(), 1u);  // probe 2
  h.now += 1s;
  h.poll();
  EXPECT_EQ(h.sent().size(), 1u);  // probe 3 (max_probes)
  h.now += 1s;
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h->arp().state(kPeerIp), ArpState::Failed);
  EXPECT_EQ(h.drops(DropReason::ArpResolveFailed), 1u);
  EXPECT_EQ(h->counters().arp_requests_sent, 3u);
  // Held failed: sends fail at once, no request.
  EXPECT_EQ(h->send(kPeerIp, 17, payload, {}, h.now), std::errc::host_unreachable);
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h.drops(DropReason::ArpResolveFailed), 2u);
  // After the hold the entry goes and resolution starts over.
  h.now += h->arp().config().failed_hold;
  h.poll();
  EXPECT_FALSE(h->arp().state(kPeerIp));
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  EXPECT_EQ(h.sent().size(), 1u);
}

// A request the link refuses (a memif still connecting, a full ring) never
// left: it is retried after refused_retry (10 ms), not a whole retransmit
// interval later, and does not use up one of the max_probes.
TEST(Arp, RequestRefusedByTheLinkIsRetriedSoonWithoutUsingAProbe) {
  TestPool pool;
  const auto owner = pool.add_owner();
  link::MemoryLink link(*pool, owner, link_info(kOurMac), /*queue_limit=*/1);
  auto iface = Interface::create(link, *pool, owner, default_config());
  ASSERT_TRUE(iface);
  Nanos now{std::chrono::seconds(1000)};
  const auto payload = pattern(10);
  // Fill the link's one slot with a broadcast so the next frame is refused.
  ASSERT_FALSE((*iface)->send(Ipv4Addr{0xffffffffu}, 17, payload, {}, now));
  ASSERT_EQ(link.tx_pending(), 1u);
  ASSERT_FALSE((*iface)->send(kPeerIp, 17, payload, {}, now));
  EXPECT_EQ((*iface)->counters().arp_requests_sent, 0u);
  EXPECT_EQ((*iface)->counters().dropped(DropReason::LinkFull), 1u);
  EXPECT_EQ((*iface)->next_deadline(), now + 10ms);
  ASSERT_TRUE(link.pop_tx());  // the link has room again
  now += 10ms;
  (*iface)->poll(now);
  auto request = link.pop_tx();
  ASSERT_TRUE(request);
  EXPECT_EQ((*iface)->counters().arp_requests_sent, 1u);
  // The refused attempt did not count: all max_probes (3) requests remain.
  for (int i = 0; i < 2; ++i) {
    now += 1s;
    (*iface)->poll(now);
    EXPECT_TRUE(link.pop_tx()) << "probe " << i + 2;
  }
  EXPECT_EQ((*iface)->counters().arp_requests_sent, 3u);
  // The answer lets the queued datagram go.
  ASSERT_TRUE(
      link.inject_rx(arp_frame(wire::ArpOperation::Reply, kPeerMac, kPeerIp, kOurMac, kOurIp, kOurMac)));
  (*iface)->poll(now);
  EXPECT_TRUE(link.pop_tx());
  iface->reset();
  while (link.pop_tx()) {
  }
}

TEST(Arp, StaleEntryIsUsedAndRefreshedAtMostOncePerInterval) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  h.now += h->arp().config().reachable_time;
  h.poll();
  EXPECT_EQ(h->arp().state(kPeerIp), ArpState::Stale);
  const auto payload = pattern(10);
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  auto out = h.sent();
  ASSERT_EQ(out.size(), 6u);  // one refresh request, five datagrams
  EXPECT_TRUE(as_arp(out[0]));
  h.now += 1s;
  ASSERT_FALSE(h->send(kPeerIp, 17, payload, {}, h.now));
  EXPECT_EQ(h.sent().size(), 2u);  // a second refresh a second later
}

// An attacker sending requests from many addresses cannot grow the cache.
TEST(Arp, EntryCountIsBounded) {
  TestPool pool;
  auto cfg = default_config();
  cfg.arp.max_entries = 8;
  Host h(pool, cfg);
  for (std::uint32_t i = 0; i < 200; ++i) {
    MacAddr m{{0x02, 0, 0, 1, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}};
    h.link.inject_rx(arp_frame(ArpOperation::Request, m, Ipv4Addr{kPeerIp.v + 100 + i}, {}, kOurIp));
    h.poll();
    ASSERT_LE(h->arp().size(), 8u);
  }
  EXPECT_EQ(h.sent().size(), 200u);  // every request answered
}

TEST(Arp, GratuitousAnnouncementsAtStart) {
  TestPool pool;
  auto cfg = default_config();
  cfg.arp.announce_count = 2;
  cfg.addresses.push_back({Ipv4Addr::from_octets(198, 18, 1, 2), 24});
  Host h(pool, cfg);
  EXPECT_EQ(h->next_deadline(), Nanos{0});
  h.poll();
  auto out = h.sent();
  ASSERT_EQ(out.size(), 2u);  // one per address
  for (std::size_t i = 0; i < 2; ++i) {
    MacAddr dst;
    auto a = as_arp(out[i], &dst);
    ASSERT_TRUE(a);
    EXPECT_EQ(dst, MacAddr::broadcast());
    // RFC 5227 2.3: an ARP request with sender and target both our address.
    EXPECT_EQ(a->operation, ArpOperation::Request);
    EXPECT_EQ(a->sender_ip, cfg.addresses[i].addr);
    EXPECT_EQ(a->target_ip, cfg.addresses[i].addr);
    EXPECT_EQ(a->target_mac, MacAddr{});
  }
  EXPECT_EQ(h->next_deadline(), h.now + 2s);
  h.now += 1s;
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  h.now += 1s;
  h.poll();
  EXPECT_EQ(h.sent().size(), 2u);
  h.now += 10s;
  h.poll();
  EXPECT_TRUE(h.sent().empty());
  EXPECT_EQ(h->counters().arp_announcements_sent, 4u);
  EXPECT_EQ(h->next_deadline(), Nanos::max());
}

// A gratuitous ARP from a known host updates its entry (RFC 826 merge) but
// one from an unknown host creates nothing.
TEST(Arp, GratuitousFromOthersUpdatesOnlyKnownEntries) {
  TestPool pool;
  Host h(pool);
  learn_peer(h);
  const MacAddr moved{{0x02, 0, 0, 0, 0, 0x77}};
  h.link.inject_rx(arp_frame(ArpOperation::Request, moved, kPeerIp, {}, kPeerIp));
  const Ipv4Addr other = Ipv4Addr::from_octets(198, 18, 0, 50);
  h.link.inject_rx(arp_frame(ArpOperation::Request, moved, other, {}, other));
  h.poll();
  EXPECT_EQ(h->arp().lookup(kPeerIp), moved);
  EXPECT_FALSE(h->arp().state(other));
}

// The queue bounds on the cache itself: per entry the oldest goes, in total
// the newest is refused.
TEST(ArpCacheBounds, PerEntryDropsOldestTotalDropsNewest) {
  TestPool pool;
  const auto owner = pool.add_owner();
  NetCounters c;
  ArpConfig cfg;
  cfg.max_queue_per_entry = 2;
  cfg.max_queue_total = 3;
  std::vector<link::Frame> ready;
  {
    ArpCache cache(cfg, *pool, owner, c);
    auto frame = [&](std::uint32_t tag) {
      link::Frame f;
      f.buffer = *pool->alloc(owner);
      f.length = tag;
      return f;
    };
    const Ipv4Addr a = Ipv4Addr::from_octets(198, 18, 0, 10), b = Ipv4Addr::from_octets(198, 18, 0, 11);
    EXPECT_TRUE(cache.resolve(a, frame(1), 0s).send_request);
    EXPECT_FALSE(cache.resolve(a, frame(2), 0s).send_request);
    EXPECT_EQ(cache.resolve(a, frame(3), 0s).kind, ArpCache::Resolution::Kind::Queued);  // 1 dropped
    EXPECT_EQ(c.dropped(DropReason::ArpQueueFull), 1u);
    EXPECT_EQ(cache.resolve(b, frame(4), 0s).kind, ArpCache::Resolution::Kind::Queued);
    EXPECT_EQ(cache.resolve(b, frame(5), 0s).kind, ArpCache::Resolution::Kind::Dropped);  // total
    EXPECT_EQ(c.dropped(DropReason::ArpQueueFull), 2u);
    EXPECT_EQ(cache.queued_total(), 3u);
    cache.learn(a, kPeerMac, false, 0s, ready);
    ASSERT_EQ(ready.size(), 2u);
    EXPECT_EQ(ready[0].length, 2u);
    EXPECT_EQ(ready[1].length, 3u);
    EXPECT_EQ(pool->in_use(owner), 3u);  // two ready, one still queued for b
  }                                      // the cache frees what it still holds
  EXPECT_EQ(pool->in_use(owner), 2u);
  for (const auto& f : ready) EXPECT_FALSE(pool->free(owner, f.buffer));
}

}  // namespace
}  // namespace usnet::net::test
