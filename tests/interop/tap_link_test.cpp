// TapLink against the Linux kernel: the TAP device is moved into a peer
// namespace where the kernel holds 198.18.0.2/24, and usnet (198.18.0.1)
// talks to it through raw frames built with the wire types. This proves
// receive, transmit and framing both ways before the IP layer exists.
//
// Every wait has a deadline: a kernel that does not answer fails the test,
// it never hangs it.
#include "usnet/link/tap_link.hpp"

#include "interop/link_checks.hpp"

namespace usnet::link {
namespace {

using namespace interop;
using test::PeerNamespace;

bool namespace_exists(const std::string& name) {
  return test::sh("ip netns list | grep -qw " + name).status == 0;
}

// The TAP device name: unique per process and test, 15 characters at most.
std::string tap_name() {
  static std::atomic<int> n{0};
  return "ust" + std::to_string(::getpid()) + "x" + std::to_string(n++);
}

class TapLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(test::interop_blocker({"ping", "awk"}), "");
    auto l = TapLink::open(TapOptions{tap_name(), {}}, h_.pool(), h_.owner());
    ASSERT_TRUE(l) << l.error().message;
    link_ = std::move(*l);
    auto p = PeerNamespace::with_tap(link_->device());
    ASSERT_TRUE(p) << p.error();
    ns_.emplace(std::move(*p));
    ns_name_ = ns_->name();
  }
  void TearDown() override {
    // Counters sane, every buffer back, the namespace gone.
    if (link_) {
      const LinkCounters& c = link_->counters();
      EXPECT_GT(c.rx_frames, 0u);
      EXPECT_GT(c.tx_frames, 0u);
      EXPECT_EQ(c.tx_errors, 0u);
      EXPECT_EQ(c.rx_too_long, 0u);
      EXPECT_EQ(c.rx_no_buffer, 0u);
    }
    link_.reset();
    ns_.reset();
    EXPECT_EQ(h_.pool().in_use(), 0u);
    if (!ns_name_.empty()) {
      EXPECT_FALSE(namespace_exists(ns_name_)) << ns_name_ << " was not deleted";
    }
  }

  PoolHarness h_;
  std::optional<PeerNamespace> ns_;  // declared first: deleted after the link
  std::unique_ptr<TapLink> link_;
  std::string ns_name_;
};

TEST_F(TapLinkTest, UsnetResolvesKernelByArp) { expect_kernel_answers_arp(*link_, h_, *ns_); }

TEST_F(TapLinkTest, KernelPingReachesUsnet) { expect_kernel_ping_succeeds(*link_, h_, *ns_); }

TEST_F(TapLinkTest, MtuSizedFrameReachesKernel) { expect_kernel_counts_mtu_frame(*link_, h_, *ns_); }

TEST_F(TapLinkTest, InfoDescribesTheLink) {
  EXPECT_EQ(link_->info().name, "tap:" + link_->device());
  EXPECT_EQ(link_->info().mac, TapLink::default_mac(link_->device()));
  EXPECT_TRUE(link_->info().mac.is_unicast());
  EXPECT_EQ(link_->info().mac.b[0] & 0x02, 0x02);  // locally administered
  EXPECT_EQ(link_->info().offloads, 0u);
  EXPECT_GE(link_->wait_fd(), 0);
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic
}

TEST_F(TapLinkTest, VlanTagArrives) {
  expect_vlan_tag_arrives(*link_, h_, *ns_);
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic both ways
}

TEST_F(TapLinkTest, KernelUdpChecksumVerifies) {
  expect_kernel_udp_checksum_verifies(*link_, h_, *ns_, false);
}

TEST_F(TapLinkTest, SilenceEndsAtTheDeadline) {
  expect_silence_is_bounded(*link_, h_);
  expect_kernel_answers_arp(*link_, h_, *ns_);  // counters in TearDown want traffic
}

TEST(TapLinkPool, FrameWaitsInTheKernelWhenThePoolRefuses) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h(1);
  auto l = TapLink::open(TapOptions{tap_name(), {}}, h.pool(), h.owner());
  ASSERT_TRUE(l) << l.error().message;
  std::unique_ptr<TapLink> link = std::move(*l);
  auto ns = PeerNamespace::with_tap(link->device());
  ASSERT_TRUE(ns) << ns.error();
  expect_frame_waits_for_a_buffer(*link, h);
  link.reset();  // before the namespace goes
}

// Errors a user can act on.
TEST(TapLinkErrors, UriAndNameProblems) {
  PoolHarness h;
  auto empty = open_link("tap:", h.pool(), h.owner());
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, std::make_error_code(std::errc::invalid_argument)) << empty.error().message;

  auto bad = TapLink::open(TapOptions{"a/b", {}}, h.pool(), h.owner());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, std::make_error_code(std::errc::invalid_argument));
  EXPECT_NE(bad.error().message.find("a/b"), std::string::npos) << bad.error().message;

  auto multicast = TapLink::open(TapOptions{"ustm", wire::MacAddr::broadcast()}, h.pool(), h.owner());
  ASSERT_FALSE(multicast);
  EXPECT_EQ(multicast.error().code, std::make_error_code(std::errc::invalid_argument));
}

// A device of that name that is not a TAP (here the loopback) is refused
// with the reason, never taken over.
TEST(TapLinkErrors, ExistingDeviceThatIsNotATap) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  auto l = open_link("tap:lo", h.pool(), h.owner());
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("tap:lo"), std::string::npos) << l.error().message;
  EXPECT_NE(l.error().message.find("not a free TAP device"), std::string::npos) << l.error().message;
}

TEST(OpenLink, EachSchemeOpensOrSaysWhy) {
  PoolHarness h;
  {
    // AF_XDP is built in: a missing interface is named (never a real one
    // here: opening it would attach the XDP program).
    auto l = open_link("af_xdp:nosuchif0", h.pool(), h.owner());
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error().code, std::make_error_code(std::errc::no_such_device));
    EXPECT_NE(l.error().message.find("nosuchif0"), std::string::npos) << l.error().message;
  }
  {
    // memif is built in: a client link opens and connects when a server appears.
    const std::string uri = "memif:/tmp/usnet-open-link-" + std::to_string(::getpid()) + ".sock";
    auto l = open_link(uri, h.pool(), h.owner());
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_EQ((*l)->info().name, uri);
  }
  auto mem = open_link("mem:a", h.pool(), h.owner());
  ASSERT_FALSE(mem);
  EXPECT_EQ(mem.error().code, std::make_error_code(std::errc::invalid_argument));
  EXPECT_NE(mem.error().message.find("in code"), std::string::npos) << mem.error().message;
}

TEST(OpenLink, TapUriOpensATapLink) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  const std::string name = tap_name();
  auto l = open_link("tap:" + name, h.pool(), h.owner());
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ((*l)->info().name, "tap:" + name);
  EXPECT_NE(dynamic_cast<TapLink*>(l->get()), nullptr);
  EXPECT_EQ(test::sh("ip link show " + name).status, 0);
  l->reset();
  // Not persistent: the device goes with the link.
  EXPECT_NE(test::sh("ip link show " + name + " 2>/dev/null").status, 0);
}

// Without privileges the message names the one that is missing. The child
// drops to nobody/nogroup and reports through a pipe; the parent waits at
// most 5 s.
TEST(TapLinkErrors, WithoutPrivilegeNamesCapNetAdmin) {
  ASSERT_EQ(test::interop_blocker(), "");
  PoolHarness h;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string name = tap_name();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg = "privileges not dropped";
    if (::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0) {
      auto l = open_link("tap:" + name, h.pool(), h.owner());
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
  EXPECT_NE(msg.find("CAP_NET_ADMIN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tap:" + name), std::string::npos) << msg;
}

}  // namespace
}  // namespace usnet::link
