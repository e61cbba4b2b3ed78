// AfXdpLink against the Linux kernel: a veth pair joins the root namespace,
// where usnet holds one end through an AF_XDP socket (copy mode: veth has no
// zero-copy) and its XDP program, to a peer namespace where the kernel holds
// 198.18.0.2/24 on the other end. usnet (198.18.0.1, on the interface's own
// MAC) talks to it through raw frames built with the wire types: receive,
// transmit, steering rules and errors, before any stack runs over the link.
//
// Every wait has a deadline: a kernel that does not answer fails the test,
// it never hangs it.
#include "usnet/link/af_xdp_link.hpp"

#include "interop/link_checks.hpp"

namespace usnet::link {
namespace {

using namespace interop;
using test::PeerNamespace;

const SteerRule kUsnetAddress{SteerRule::Kind::kIpv4Address, kUsnetIp, 0};

std::string xdp_line(const std::string& ifname) {
  return test::sh("ip -d link show " + ifname + " 2>&1 | grep -o 'prog/xdp id [0-9]*'").output;
}

class AfXdpLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(test::interop_blocker({"ping", "awk", "ethtool"}), "");
    auto p = PeerNamespace::with_veth();
    ASSERT_TRUE(p) << p.error();
    ns_.emplace(std::move(*p));
    ASSERT_EQ(test::prepare_af_xdp_peer(*ns_), "");
    AfXdpOptions options;
    options.interface = ns_->usnet_if();
    auto l = AfXdpLink::open(options, h_.pool(), h_.owner());
    ASSERT_TRUE(l) << l.error().message;
    link_ = std::move(*l);
    ASSERT_FALSE(link_->steer(kUsnetAddress, true));
  }
  void TearDown() override {
    if (link_) {
      const LinkCounters& c = link_->counters();
      EXPECT_GT(c.rx_frames, 0u);
      EXPECT_GT(c.tx_frames, 0u);
      EXPECT_EQ(c.tx_errors, 0u);
      EXPECT_EQ(c.rx_too_long, 0u);
      EXPECT_EQ(link_->rx_bad_descriptors(), 0u);
    }
    const std::string ifname = ns_ ? ns_->usnet_if() : std::string();
    link_.reset();
    // Closing took the program off the interface and gave every buffer back.
    if (!ifname.empty()) {
      EXPECT_EQ(xdp_line(ifname), "") << "an XDP program is left on " << ifname;
    }
    ns_.reset();
    EXPECT_EQ(h_.pool().in_use(), 0u);
  }

  PoolHarness h_;
  std::optional<PeerNamespace> ns_;
  std::unique_ptr<AfXdpLink> link_;  // declared last: closed before the veth goes
};

TEST_F(AfXdpLinkTest, UsesTheInterfacesOwnMacAndMtu) {
  EXPECT_EQ(link_->info().mac,
            wire::MacAddr::parse(
                test::sh("cat /sys/class/net/" + ns_->usnet_if() + "/address | tr -d '\\n'").output)
                .value_or(wire::MacAddr{}));
  EXPECT_EQ(link_->info().mtu, 1500u);
  EXPECT_FALSE(link_->zero_copy());  // veth has no zero-copy AF_XDP
  EXPECT_NE(xdp_line(ns_->usnet_if()), "");
  // The fill ring holds a quarter of the pool's buffers, lent to the kernel.
  EXPECT_EQ(link_->buffers_lent(), h_.pool().buffers_max() / 4);
  EXPECT_EQ(h_.pool().in_use(), link_->buffers_lent());
  EXPECT_TRUE(h_.pool().keeps_segments());
  // Some traffic, so that TearDown's counter checks hold.
  expect_kernel_answers_arp(*link_, h_, *ns_);
}

TEST_F(AfXdpLinkTest, UsnetResolvesKernelByArp) { expect_kernel_answers_arp(*link_, h_, *ns_); }

TEST_F(AfXdpLinkTest, KernelPingReachesUsnet) { expect_kernel_ping_succeeds(*link_, h_, *ns_); }

TEST_F(AfXdpLinkTest, MtuSizedFrameReachesKernel) { expect_kernel_counts_mtu_frame(*link_, h_, *ns_); }

// With transmit checksum offload off on the peer (prepare_af_xdp_peer), the
// kernel's datagrams arrive with complete checksums.
TEST_F(AfXdpLinkTest, KernelUdpChecksumVerifies) {
  ASSERT_FALSE(link_->steer({SteerRule::Kind::kUdpPort, {}, 7}, true));
  expect_kernel_udp_checksum_verifies(*link_, h_, *ns_, false);
}

// A burst longer than the ring's batch: every frame sent, every buffer back
// from the completion ring.
TEST_F(AfXdpLinkTest, BurstLongerThanOneBatchCompletes) {
  const std::uint64_t before = peer_rx_bytes(*ns_);
  const Bytes frame = mtu_frame(link_->info().mac, ns_->peer_mac());
  std::vector<Frame> frames;
  // The harness's owner may hold 256 buffers; the fill ring has 128.
  for (std::size_t i = 0; i < AfXdpLink::kMaxBurst + 5; ++i) {
    auto b = h_.pool().alloc(h_.owner());
    if (!b) {
      for (const Frame& f : frames) (void)h_.pool().free(h_.owner(), f.buffer);
      FAIL() << "the pool refused buffer " << i;
    }
    std::memcpy(h_.pool().buffer(*b).data(), frame.data(), frame.size());
    frames.push_back(Frame{*b, static_cast<std::uint32_t>(frame.size()), 0, 0});
  }
  std::size_t sent = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (sent < frames.size() && Clock::now() < deadline) {
    sent += link_->tx_burst(std::span(frames).subspan(sent), now());
  }
  ASSERT_EQ(sent, frames.size());
  const std::size_t fill = h_.pool().buffers_max() / 4;
  // Completions come back on later calls; wait for all of them.
  while (link_->buffers_lent() > fill && Clock::now() < deadline + std::chrono::seconds(2)) {
    (void)link_->tx_burst({}, now());
  }
  EXPECT_EQ(link_->buffers_lent(), fill);
  EXPECT_EQ(link_->counters().tx_frames, frames.size());
  // The kernel received them all (byte counter of the peer interface).
  std::uint64_t after = before;
  for (int i = 0; i < 100 && after < before + frames.size() * frame.size(); ++i) {
    after = peer_rx_bytes(*ns_);
    ::poll(nullptr, 0, 10);
  }
  EXPECT_GE(after - before, frames.size() * frame.size());
  expect_kernel_answers_arp(*link_, h_, *ns_);  // receive works too
}

// The program hands the socket only what the rules name; everything else is
// the kernel's (counted by the program as passed).
TEST_F(AfXdpLinkTest, OnlySteeredTrafficReachesTheSocket) {
  // ARP for another address is not usnet's: the kernel's ping to 198.18.0.9
  // (nobody) sends ARP requests that the program passes.
  const auto before = link_->steer_counters();
  (void)ns_->exec("ping -c 2 -i 0.2 -W 1 198.18.0.9", 5);
  const auto after = link_->steer_counters();
  EXPECT_GE(after.passed, before.passed + 2);
  std::size_t seen = 0;
  (void)receive_until(*link_, h_, std::chrono::milliseconds(300), [&](std::span<const std::byte> f) {
    if (auto a = as_arp(f); a && a->target_ip == wire::Ipv4Addr::from_octets(198, 18, 0, 9)) ++seen;
    return false;
  });
  EXPECT_EQ(seen, 0u) << "ARP for an address usnet does not hold reached the socket";

  // A UDP port rule: datagrams to 198.18.0.1:4000 arrive once the port is
  // served (steer = served: the address alone brings ARP and ICMP only).
  auto send_udp = [&] { (void)ns_->exec("echo hello | socat -u - UDP4-SENDTO:198.18.0.1:4000", 5); };
  auto count_udp = [&](std::chrono::milliseconds wait) {
    std::size_t n = 0;
    (void)receive_until(*link_, h_, wait, [&](std::span<const std::byte> f) {
      auto eth = wire::EthernetView::make(f);
      if (!eth || eth->ethertype() != wire::ethertype::kIpv4) return false;
      auto ip = wire::Ipv4View::make(eth->payload());
      if (ip && ip->protocol() == wire::ip_protocol::kUdp && ip->dst() == kUsnetIp) ++n;
      return n > 0;
    });
    return n;
  };
  // The kernel first resolves 198.18.0.1: answer it through the socket.
  expect_kernel_ping_succeeds(*link_, h_, *ns_);
  send_udp();
  EXPECT_EQ(count_udp(std::chrono::milliseconds(500)), 0u) << "an unserved port reached the socket";
  const SteerRule port{SteerRule::Kind::kUdpPort, {}, 4000};
  ASSERT_FALSE(link_->steer(port, true));
  ASSERT_FALSE(link_->steer(port, true));  // counted: two adds
  send_udp();
  EXPECT_EQ(count_udp(std::chrono::seconds(2)), 1u);
  ASSERT_FALSE(link_->steer(port, false));  // one add left: still served
  send_udp();
  EXPECT_EQ(count_udp(std::chrono::seconds(2)), 1u);
  ASSERT_FALSE(link_->steer(port, false));
  send_udp();
  EXPECT_EQ(count_udp(std::chrono::milliseconds(500)), 0u);
  // Taking back a rule never given is an error.
  EXPECT_EQ(link_->steer(port, false), std::make_error_code(std::errc::no_such_file_or_directory));
  EXPECT_GT(link_->steer_counters().redirected, 0u);
}

TEST(AfXdpLinkErrors, NoSuchInterface) {
  PoolHarness h;
  auto l = open_link("af_xdp:nosuchif0", h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, std::make_error_code(std::errc::no_such_device)) << l.error().message;
  EXPECT_NE(l.error().message.find("nosuchif0"), std::string::npos) << l.error().message;
  EXPECT_EQ(h.pool().in_use(), 0u);
}

TEST(AfXdpLinkErrors, ZeroCopyOnVethSaysToUseCopyMode) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  auto l = open_link("af_xdp:" + ns->usnet_if() + "?mode=zc", h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("use mode=copy"), std::string::npos) << l.error().message;
  // Nothing is left behind by the failed open: the program is gone and a
  // copy-mode link opens on the same interface.
  EXPECT_EQ(xdp_line(ns->usnet_if()), "");
  EXPECT_EQ(h.pool().in_use(), 0u);
  auto ok = open_link("af_xdp:" + ns->usnet_if() + "?mode=copy&busy_poll=20", h.pool(), h.owner());
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_NE(dynamic_cast<AfXdpLink*>(ok->get()), nullptr);
  EXPECT_EQ((*ok)->info().name, "af_xdp:" + ns->usnet_if() + "?mode=copy&busy_poll=20");
}

TEST(AfXdpLinkErrors, SecondLinkOnAHeldInterfaceIsRefusedClearly) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  PoolHarness h2;
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  auto first = open_link("af_xdp:" + ns->usnet_if(), h.pool(), h.owner());
  ASSERT_TRUE(first) << first.error().message;
  auto* x = dynamic_cast<AfXdpLink*>(first->get());
  ASSERT_NE(x, nullptr);
  auto second = open_link("af_xdp:" + ns->usnet_if(), h2.pool(), h2.owner());
  if (x->shares_xdp_hook()) {
    // Under libxdp's dispatcher a second program may join; then the queue
    // is what is taken.
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("queue 0"), std::string::npos) << second.error().message;
  } else {
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("another XDP program holds the interface"), std::string::npos)
        << second.error().message;
  }
  EXPECT_EQ(h2.pool().in_use(), 0u);
}

TEST(AfXdpLinkErrors, PoolBuffersThatCannotBeChunks) {
  // 1536-byte buffers are not a power of two: refused before anything is
  // attached.
  constexpr std::size_t kSegment = 64 * 1024;
  void* m = ::mmap(nullptr, kSegment, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  {
    auto pool = mem::PacketPool::create({1536, kSegment, 1, std::chrono::seconds(2)},
                                        {static_cast<std::byte*>(m), kSegment});
    ASSERT_TRUE(pool);
    auto owner = pool->add_owner({0, 16});
    ASSERT_TRUE(owner);
    auto l = open_link("af_xdp:lo", *pool, *owner);
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error().code, std::make_error_code(std::errc::invalid_argument));
    EXPECT_NE(l.error().message.find("cannot be UMEM chunks"), std::string::npos) << l.error().message;
  }
  ::munmap(m, kSegment);
}

TEST(AfXdpLinkErrors, BadRingSize) {
  PoolHarness h;
  AfXdpOptions o;
  o.interface = "lo";
  o.ring_size = 1000;
  auto l = AfXdpLink::open(o, h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, std::make_error_code(std::errc::invalid_argument));
  EXPECT_NE(l.error().message.find("power of two"), std::string::npos) << l.error().message;
}

}  // namespace
}  // namespace usnet::link
