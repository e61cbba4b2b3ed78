// AfPacketLink against the Linux kernel: a veth pair joins the root
// namespace, where usnet holds one end through AF_PACKET, to a peer
// namespace where the kernel holds 198.18.0.2/24 on the other end. usnet
// (198.18.0.1) talks to it through raw frames built with the wire types.
// This proves receive, transmit and framing both ways before the IP layer
// exists.
//
// Every wait has a deadline: a kernel that does not answer fails the test,
// it never hangs it.
#include "usnet/link/af_packet_link.hpp"

#include "interop/link_checks.hpp"

namespace usnet::link {
namespace {

using namespace interop;
using test::PeerNamespace;

bool namespace_exists(const std::string& name) {
  return test::sh("ip netns list | grep -qw " + name).status == 0;
}

// Every case runs on both receive rings (blocks: TPACKET_V3, frames: V2).
class AfPacketLinkTest : public ::testing::TestWithParam<AfPacketRing> {
 protected:
  void SetUp() override {
    ASSERT_EQ(test::interop_blocker({"ping", "awk"}), "");
    auto p = PeerNamespace::with_veth();
    ASSERT_TRUE(p) << p.error();
    ns_.emplace(std::move(*p));
    ns_name_ = ns_->name();
    AfPacketOptions options;
    options.interface = ns_->usnet_if();
    options.ring = GetParam();
    auto l = AfPacketLink::open(options, h_.pool(), h_.owner());
    ASSERT_TRUE(l) << l.error().message;
    link_ = std::move(*l);
  }
  void TearDown() override {
    // Counters sane, every buffer back, the namespace and veth gone.
    if (link_) {
      const LinkCounters& c = link_->counters();
      EXPECT_GT(c.rx_frames, 0u);
      EXPECT_GT(c.tx_frames, 0u);
      EXPECT_EQ(c.tx_errors, 0u);
      EXPECT_EQ(c.rx_too_long, 0u);
      EXPECT_EQ(c.rx_no_buffer, 0u);
    }
    link_.reset();
    std::string usnet_if = ns_ ? ns_->usnet_if() : std::string();
    ns_.reset();
    EXPECT_EQ(h_.pool().in_use(), 0u);
    if (!ns_name_.empty()) {
      EXPECT_FALSE(namespace_exists(ns_name_)) << ns_name_ << " was not deleted";
    }
    if (!usnet_if.empty()) {
      EXPECT_NE(test::sh("ip link show " + usnet_if + " 2>/dev/null").status, 0) << usnet_if << " remains";
    }
  }

  PoolHarness h_;
  std::optional<PeerNamespace> ns_;
  std::unique_ptr<AfPacketLink> link_;  // declared last: closed before the veth goes
  std::string ns_name_;
};

TEST_P(AfPacketLinkTest, UsnetResolvesKernelByArp) { expect_kernel_answers_arp(*link_, h_, *ns_); }

TEST_P(AfPacketLinkTest, KernelPingReachesUsnet) { expect_kernel_ping_succeeds(*link_, h_, *ns_); }

TEST_P(AfPacketLinkTest, MtuSizedFrameReachesKernel) { expect_kernel_counts_mtu_frame(*link_, h_, *ns_); }

// More frames than one sendmmsg() batch, offered in one call: all taken, in
// order, and all counted by the kernel.
TEST_P(AfPacketLinkTest, BurstLongerThanOneBatch) {
  constexpr std::size_t kCount = AfPacketLink::kMaxTxBatch + 36;
  const wire::MacAddr peer = ns_->peer_mac();
  const std::uint64_t no_ports = udp_no_ports(*ns_);
  const Bytes frame = mtu_frame(link_->info().mac, peer);
  std::vector<Frame> frames;
  for (std::size_t i = 0; i < kCount; ++i) {
    auto buf = h_.pool().alloc(h_.owner());
    ASSERT_TRUE(buf);
    std::memcpy(h_.pool().buffer(*buf).data(), frame.data(), frame.size());
    frames.push_back(Frame{*buf, static_cast<std::uint32_t>(frame.size()), 0, 0});
  }
  std::size_t taken = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (taken < kCount && Clock::now() < deadline) {
    taken += link_->tx_burst(std::span(frames).subspan(taken), now());
  }
  for (std::size_t i = taken; i < kCount; ++i) (void)h_.pool().free(h_.owner(), frames[i].buffer);
  ASSERT_EQ(taken, kCount);
  EXPECT_EQ(link_->counters().tx_frames, kCount);
  const auto wait_until = Clock::now() + std::chrono::seconds(3);
  while (udp_no_ports(*ns_) < no_ports + kCount && Clock::now() < wait_until) ::usleep(10000);
  EXPECT_EQ(udp_no_ports(*ns_), no_ports + kCount);
  // The kernel's ARP requests and port unreachables come back: rx counters.
  receive_until(*link_, h_, std::chrono::milliseconds(200), [](auto) { return false; });
}

TEST_P(AfPacketLinkTest, InfoDescribesTheLink) {
  EXPECT_EQ(link_->info().name, "af_packet:" + ns_->usnet_if());
  EXPECT_EQ(link_->info().mac, AfPacketLink::default_mac(ns_->usnet_if()));
  EXPECT_TRUE(link_->info().mac.is_unicast());
  EXPECT_EQ(link_->info().mac.b[0] & 0x02, 0x02);  // locally administered
  EXPECT_EQ(link_->info().offloads, 0u);
  EXPECT_GE(link_->wait_fd(), 0);
  // Promiscuous while the link is open (PACKET_MR_PROMISC), so frames to
  // usnet's own MAC arrive.
  auto flags = test::sh("cat /sys/class/net/" + ns_->usnet_if() + "/flags");
  EXPECT_NE(std::strtoul(flags.output.c_str(), nullptr, 16) & 0x100u, 0u) << flags.output;  // IFF_PROMISC
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic
}

TEST_P(AfPacketLinkTest, VlanTagArrives) {
  expect_vlan_tag_arrives(*link_, h_, *ns_);
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic both ways
}

TEST_P(AfPacketLinkTest, KernelUdpChecksumVerifies) {
  expect_kernel_udp_checksum_verifies(*link_, h_, *ns_, true);
}

TEST_P(AfPacketLinkTest, SilenceEndsAtTheDeadline) {
  expect_silence_is_bounded(*link_, h_);
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic
}

INSTANTIATE_TEST_SUITE_P(Rings, AfPacketLinkTest,
                         ::testing::Values(AfPacketRing::kBlocks, AfPacketRing::kFrames),
                         [](const ::testing::TestParamInfo<AfPacketRing>& i) {
                           return i.param == AfPacketRing::kFrames ? "frames" : "blocks";
                         });

class AfPacketLinkPool : public ::testing::TestWithParam<AfPacketRing> {};

TEST_P(AfPacketLinkPool, FrameWaitsInTheRingWhenThePoolRefuses) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h(1);
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  AfPacketOptions options;
  options.interface = ns->usnet_if();
  options.ring = GetParam();
  auto l = AfPacketLink::open(options, h.pool(), h.owner());
  ASSERT_TRUE(l) << l.error().message;
  expect_frame_waits_for_a_buffer(**l, h);
}

// A ring of one 4 KiB block, held by usnet while the pool refuses: the
// kernel drops what does not fit and the link reports it; once a buffer is
// free the frames in the ring arrive and the ring takes new ones again.
// Blocks: at most four 1042-byte frames fit; frames: two 1500-MTU slots.
TEST_P(AfPacketLinkPool, FullRingDropsAreCounted) {
  ASSERT_EQ(test::interop_blocker({"/usr/bin/python3"}), "");
  const std::uint64_t fit = GetParam() == AfPacketRing::kFrames ? 2 : 4;
  PoolHarness h(1);
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  // Quiet the peer (no IPv6 router solicitations or MLD reports), so the one
  // block holds only what this test sends.
  ASSERT_EQ(ns->exec("sysctl -qw net.ipv6.conf." + ns->peer_if() + ".disable_ipv6=1").status, 0);
  AfPacketOptions options;
  options.interface = ns->usnet_if();
  options.block_size = 4096;
  options.block_count = 1;
  options.ring = GetParam();
  auto l = AfPacketLink::open(options, h.pool(), h.owner());
  ASSERT_TRUE(l) << l.error().message;
  AfPacketLink& link = **l;
  receive_until(link, h, std::chrono::milliseconds(100), [](auto) { return false; });
  auto udp_burst = [&](int payload, int count) {
    return ns->exec(
        "/usr/bin/python3 -c \"from scapy.all import Ether, IP, UDP, Raw, sendp; sendp(Ether(dst='" +
            link.info().mac.to_string() +
            "')/IP(src='198.18.0.2', dst='198.18.0.1')/UDP(dport=9)/Raw(b'x' * " + std::to_string(payload) +
            "), iface='" + ns->peer_if() + "', count=" + std::to_string(count) + ", verbose=0)\"",
        20);
  };
  auto count_udp = [&](std::size_t frame_len, std::size_t want) {
    std::size_t n = 0;
    receive_until(link, h, std::chrono::seconds(2), [&](std::span<const std::byte> f) {
      auto e = wire::EthernetView::make(f);
      if (e && e->ethertype() == wire::ethertype::kIpv4 && f.size() == frame_len) ++n;
      return n >= want;
    });
    return n;
  };

  auto held = h.pool().alloc(h.owner());
  ASSERT_TRUE(held);
  const auto r = udp_burst(1000, 20);
  if (r.status != 0) (void)h.pool().free(h.owner(), *held);
  ASSERT_EQ(r.status, 0) << r.output;
  Frame out[8];
  EXPECT_EQ(link.rx_burst(out, now()), 0u);
  EXPECT_GE(link.counters().rx_no_buffer, 1u);
  const std::uint64_t drops = link.rx_ring_drops();
  EXPECT_GE(drops, 20 - fit);
  EXPECT_LE(drops, 20u);
  ASSERT_FALSE(h.pool().free(h.owner(), *held));
  EXPECT_EQ(count_udp(1042, 20 - drops), 20 - drops);

  // The ring is the kernel's again: new frames arrive. (Not necessarily all
  // three: with one block, the block timeout can hand it over after the
  // first frame, and the kernel drops the next ones until it is returned;
  // two slots can fill before they are read.)
  const auto r2 = udp_burst(500, 3);
  ASSERT_EQ(r2.status, 0) << r2.output;
  EXPECT_GE(count_udp(542, 3), 1u);
  EXPECT_EQ(h.pool().in_use(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Rings, AfPacketLinkPool,
                         ::testing::Values(AfPacketRing::kBlocks, AfPacketRing::kFrames),
                         [](const ::testing::TestParamInfo<AfPacketRing>& i) {
                           return i.param == AfPacketRing::kFrames ? "frames" : "blocks";
                         });

TEST(AfPacketLinkErrors, NoSuchInterface) {
  PoolHarness h;
  auto l = open_link("af_packet:nosuchif0", h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, std::make_error_code(std::errc::no_such_device)) << l.error().message;
  EXPECT_NE(l.error().message.find("nosuchif0"), std::string::npos) << l.error().message;
  EXPECT_NE(l.error().message.find("no such"), std::string::npos) << l.error().message;
}

TEST(AfPacketLinkErrors, BadRingOptions) {
  PoolHarness h;
  AfPacketOptions o;
  o.interface = "lo";
  o.block_size = 1000;
  auto l = AfPacketLink::open(o, h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, std::make_error_code(std::errc::invalid_argument));
}

// Frame slots cannot cross blocks: loopback's 65536-byte MTU needs a slot
// larger than the default 64 KiB block.
TEST(AfPacketLinkErrors, FrameSlotLargerThanABlock) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  AfPacketOptions o;
  o.interface = "lo";
  o.ring = AfPacketRing::kFrames;
  auto l = AfPacketLink::open(o, h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, std::make_error_code(std::errc::invalid_argument)) << l.error().message;
  EXPECT_NE(l.error().message.find("a frame slot for MTU 65536 needs"), std::string::npos)
      << l.error().message;
}

TEST(OpenLink, AfPacketUriOpensAnAfPacketLink) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  auto ns = PeerNamespace::with_veth();
  ASSERT_TRUE(ns) << ns.error();
  auto l = open_link("af_packet:" + ns->usnet_if(), h.pool(), h.owner());
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ((*l)->info().name, "af_packet:" + ns->usnet_if());
  EXPECT_EQ((*l)->info().mtu, 1500u);
  EXPECT_NE(dynamic_cast<AfPacketLink*>(l->get()), nullptr);
  auto f = open_link("af_packet:" + ns->usnet_if() + "?ring=frames", h.pool(), h.owner());
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ((*f)->info().name, "af_packet:" + ns->usnet_if() + "?ring=frames");
}

// Without privileges the message names the one that is missing. The child
// drops to nobody/nogroup and reports through a pipe; the parent waits at
// most 5 s.
TEST(AfPacketLinkErrors, WithoutPrivilegeNamesCapNetRaw) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg = "privileges not dropped";
    if (::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0) {
      auto l = open_link("af_packet:lo", h.pool(), h.owner());
      msg = l ? std::string("opened") : l.error().message;
    }
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    msg.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_NE(msg.find("CAP_NET_RAW"), std::string::npos) << msg;
  EXPECT_NE(msg.find("af_packet:lo"), std::string::npos) << msg;
}

}  // namespace
}  // namespace usnet::link
