// usnet TCP against the Linux kernel's, over TAP, AF_PACKET and AF_XDP, with
// real HTTP tools: curl downloads a 100 MiB file from `usnet http-server`
// and uploads one to it (SHA-256 compared both ways); `usnet http-get`
// downloads 100 MiB from a kernel-side server (python3 -m http.server);
// and the same transfers complete byte-exactly with the fault injector
// dropping, reordering and duplicating frames on the usnet side, the
// counters showing the recovery at work. Every command is bounded in time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <regex>
#include <string>
#include <thread>

#include "interop/link_kind.hpp"
#include "interop/netns.hpp"

#ifndef USNET_CLI
#error "USNET_CLI must name the usnet binary"
#endif

namespace usnet::test {
namespace {

const std::string kCli = USNET_CLI;

using Kind = LinkKind;

class TcpHttp : public testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    ASSERT_EQ(interop_blocker({"curl", "ping", "ethtool", "sha256sum", "/usr/bin/python3"}), "");
    auto ns = peer_for(GetParam());
    ASSERT_TRUE(ns) << ns.error();
    ns_.emplace(std::move(*ns));
    dir_ = "/tmp/usnet-http-" + std::to_string(::getpid()) + "-" + ns_->name();
    ASSERT_EQ(sh("mkdir -p " + dir_ + "/www").status, 0);
  }
  void TearDown() override { (void)sh("rm -rf " + dir_); }

  std::string link_uri() const { return usnet::test::link_uri(GetParam(), *ns_); }
  CmdResult usnet(const std::string& args, int timeout_s) const {
    return run_usnet(GetParam(), *ns_, kCli, args, timeout_s);
  }
  // A file of random bytes under www/; returns its SHA-256.
  std::string make_file(const std::string& name, std::size_t mib) const {
    const std::string path = dir_ + "/www/" + name;
    EXPECT_EQ(sh("head -c " + std::to_string(mib * 1024 * 1024) + " /dev/urandom > " + path).status, 0);
    return sha256(path);
  }
  static std::string sha256(const std::string& path) {
    return sh("sha256sum " + path + " | cut -c1-64").output;
  }
  // Waits until usnet answers ping (it is up), bounded.
  void wait_for_usnet() const { ASSERT_EQ(ns_->wait_for_answer(), ""); }
  // Stops the usnet command started by this test (it reports its counters
  // as it goes).
  void stop_usnet() const { (void)sh("pkill -INT -f -- '--root " + dir_ + "/www'", 5); }
  // curl GET of `name` into `out`, then curl PUT of it back; checks both
  // digests against `sum`.
  void curl_both_ways(const std::string& name, const std::string& sum) const {
    const std::string got = dir_ + "/got-" + name;
    auto r = ns_->exec("curl -sS --max-time 120 -o " + got + " http://198.18.0.1/" + name, 130);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(sha256(got), sum) << "download of " << name << " differs";
    r = ns_->exec("curl -sS --max-time 120 -T " + dir_ + "/www/" + name + " http://198.18.0.1/upload", 130);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output, "sha256 " + sum.substr(0, 64) + " bytes " +
                            std::to_string(std::stoull(sh("stat -c %s " + dir_ + "/www/" + name).output)) +
                            "\n")
        << "upload of " << name;
  }

  std::optional<PeerNamespace> ns_;
  std::string dir_;
};

TEST_P(TcpHttp, CurlDownloadsAndUploads100MiBByteExact) {
  const std::string sum = make_file("big", 100);
  auto server = std::async(std::launch::async, [this] {
    return usnet("http-server --link " + link_uri() + " --addr 198.18.0.1/24 --root " + dir_ +
                     "/www --max-requests 2 --duration 200",
                 220);
  });
  wait_for_usnet();
  if (HasFatalFailure()) {
    stop_usnet();
    FAIL() << "usnet's report: " << server.get().output;
  }
  curl_both_ways("big", sum);
  const auto s = server.get();
  EXPECT_EQ(s.status, 0) << s.output;
  EXPECT_NE(s.output.find("2 responses"), std::string::npos) << s.output;
}

TEST_P(TcpHttp, UsnetClientDownloads100MiBFromTheKernel) {
  const std::string sum = make_file("big", 100);
  auto server = std::async(std::launch::async, [this] {
    return ns_->exec(
        "cd " + dir_ + "/www && timeout 150 /usr/bin/python3 -m http.server 8080 --bind 198.18.0.2", 160);
  });
  // The kernel side is up when its port answers (bounded).
  for (int i = 0; i < 50 && ns_->exec("curl -s -o /dev/null http://198.18.0.2:8080/", 5).status != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string got = dir_ + "/got-from-kernel";
  const auto r = usnet("http-get --link " + link_uri() + " --addr 198.18.0.1/24 -t 120 -o " + got +
                           " http://198.18.0.2:8080/big",
                       140);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(sha256(got), sum);
  EXPECT_NE(r.output.find("sha256 " + sum.substr(0, 64)), std::string::npos) << r.output;
  (void)ns_->exec("pkill -f 'http.server 8080' || true", 5);
  (void)server.get();
}

// RFC 3168 against Linux: usnet's SYN asks for ECN (--ecn on), the kernel
// (net.ipv4.tcp_ecn = 2, its default: accept) agrees, usnet marks its data
// ECT(0) and the download is byte-exact.
TEST_P(TcpHttp, UsnetClientNegotiatesEcnWithTheKernel) {
  const std::string sum = make_file("ecn", 4);
  auto server = std::async(std::launch::async, [this] {
    return ns_->exec(
        "cd " + dir_ + "/www && timeout 60 /usr/bin/python3 -m http.server 8081 --bind 198.18.0.2", 70);
  });
  for (int i = 0; i < 50 && ns_->exec("curl -s -o /dev/null http://198.18.0.2:8081/", 5).status != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string got = dir_ + "/got-ecn";
  const auto r = usnet("http-get --ecn on --link " + link_uri() + " --addr 198.18.0.1/24 -t 60 -o " + got +
                           " http://198.18.0.2:8081/ecn",
                       70);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(sha256(got), sum);
  EXPECT_EQ(counter(r.output, "connections with ecn"), 1u) << r.output;
  EXPECT_GT(counter(r.output, "data segments sent ect\\(0\\)"), 0u) << r.output;
  (void)ns_->exec("pkill -f 'http.server 8081' || true", 5);
  (void)server.get();
}

// Faults on every frame usnet receives and sends (seeded): 1% and then 5%
// dropped, 1% reordered, 1% duplicated. Both directions complete
// byte-exactly; usnet's counters show its retransmissions and the
// out-of-order data it held (and SACKed), and the kernel's that it
// recovered with SACK.
TEST_P(TcpHttp, TransfersSurviveLossReorderingAndDuplication) {
  const std::string sum = make_file("mid", 4);
  for (const char* drop : {"0.01", "0.05"}) {
    SCOPED_TRACE(drop);
    auto server = std::async(std::launch::async, [this, drop] {
      return usnet("http-server --link " + link_uri() + " --addr 198.18.0.1/24 --root " + dir_ +
                       "/www --max-requests 2 --duration 250 --fault-drop " + drop +
                       " --fault-reorder 0.01 --fault-duplicate 0.01 --fault-seed 7 --fault-tx",
                   270);
    });
    const auto kernel_sack_recoveries = [this] {
      return counter(ns_->exec("nstat -az TcpExtTCPSackRecovery", 5).output, "");
    };
    wait_for_usnet();
    if (HasFatalFailure()) {
      stop_usnet();
      FAIL() << "usnet's report: " << server.get().output;
    }
    const std::uint64_t recoveries_before = kernel_sack_recoveries();
    curl_both_ways("mid", sum);
    const auto s = server.get();
    EXPECT_EQ(s.status, 0) << s.output;
    EXPECT_NE(s.output.find("fault injection"), std::string::npos) << s.output;
    // usnet's own data was lost on the way out: it retransmitted.
    EXPECT_GT(counter(s.output, "segments retransmitted"), 0u) << s.output;
    // The kernel's data was lost on the way in: usnet held what came after
    // each hole and SACKed it; the kernel recovered with SACK.
    EXPECT_GT(counter(s.output, "out-of-order segments queued \\(sacked\\)"), 0u) << s.output;
    EXPECT_GT(kernel_sack_recoveries(), recoveries_before);
  }
}

INSTANTIATE_TEST_SUITE_P(Links, TcpHttp, testing::Values(Kind::Tap, Kind::AfPacket, Kind::AfXdp),
                         link_kind_name);

}  // namespace
}  // namespace usnet::test
