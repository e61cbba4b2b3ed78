// The TCP attack bench (ROBUSTNESS.md, issue 4): crafted segments from a
// peer namespace against live connections to `usnet http-server`, each
// attack its own test that fails when usnet's behaviour is wrong.
//
// Setup per test: a new namespace with a TAP device (usnet runs in the
// namespace on it, 198.18.0.1; the kernel has 198.18.0.2 on the TAP's other
// side), or with USNET_ATTACK_LINK=af_packet a veth pair with usnet on the
// root end through AF_PACKET; files to serve; and `usnet http-server`
// bounded by --duration and --max-requests (it prints its counters at
// exit). In the namespace, tests/interop/tcp_attack.py (python3 with
// Debian's scapy) is the TCP peer itself: it speaks from 198.18.0.3 and a
// MAC nobody in the namespace owns, through an AF_PACKET socket on the
// namespace's interface, so the namespace's kernel never takes those
// segments as its own and sends no resets for them (no firewall rule
// needed), and the script knows every sequence number and timestamp. It
// prints what it observed as `key value` lines; the checks are here, on
// those and on usnet's counters.
//
// Network safety: everything happens inside the namespace each test
// creates (deleted at the end, at exit and on signals), addresses only in
// 198.18.0.0/15, no default route; every command is bounded in time and
// the script's loops in count and time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "interop/netns.hpp"

#ifndef USNET_CLI
#error "USNET_CLI must name the usnet binary"
#endif

namespace usnet::test {
namespace {

const std::string kCli = USNET_CLI;
const std::string kScript = std::string(USNET_TEST_DATA_DIR) + "/../interop/tcp_attack.py";

// The counter printed as "    <n> <name>" in the tool's report; 0 when the
// line is absent (the layer prints drop reasons only when they are not 0).
std::uint64_t counter(const std::string& report, const std::string& name) {
  std::istringstream in(report);
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    const auto space = line.find(' ', first);
    if (space == std::string::npos || line.compare(space + 1, std::string::npos, name) != 0) continue;
    try {
      return std::stoull(line.substr(first, space - first));
    } catch (const std::exception&) {
      continue;
    }
  }
  return 0;
}

// What the script observed: its `key value` lines.
struct Observed {
  std::map<std::string, std::string> values;
  std::string output;
  int status = -1;
  std::string str(const std::string& key) const {
    const auto it = values.find(key);
    return it == values.end() ? "<missing>" : it->second;
  }
  double num(const std::string& key) const {
    const auto it = values.find(key);
    if (it == values.end()) return -1;
    try {
      return std::stod(it->second);
    } catch (const std::exception&) {
      return -1;
    }
  }
};

// The link usnet runs on: a TAP device in the namespace (usnet runs there
// too), or with USNET_ATTACK_LINK=af_packet the root end of a veth pair
// through AF_PACKET. TAP is the default because AF_PACKET receive now and
// then stops delivering frames that reach the veth (about one test in ten
// here, before any attack: usnet no longer answers ARP or ping); the switch
// is there to reproduce that and to run the bench over AF_PACKET once it
// is fixed.
bool af_packet() {
  const char* e = std::getenv("USNET_ATTACK_LINK");
  return e != nullptr && std::string(e) == "af_packet";
}

class TcpAttack : public testing::Test {
 protected:
  std::string link_uri() const {
    return af_packet() ? "af_packet:" + ns_->usnet_if() : "tap:" + ns_->peer_if();
  }
  void SetUp() override {
    ASSERT_EQ(interop_blocker({"ping", "ethtool", "/usr/bin/python3"}), "");
    const auto scapy = sh("/usr/bin/python3 -c 'import scapy.all'", 30);
    ASSERT_EQ(scapy.status, 0) << "python3-scapy is missing (run scripts/install-deps): " << scapy.output;
    ASSERT_EQ(access(kScript.c_str(), R_OK), 0) << kScript << " is missing";
    auto ns = af_packet() ? PeerNamespace::with_veth() : PeerNamespace::with_persistent_tap();
    ASSERT_TRUE(ns) << ns.error();
    ns_.emplace(std::move(*ns));
    if (af_packet()) {
      ASSERT_EQ(prepare_af_packet_peer(*ns_), "");
    }
    dir_ = "/tmp/usnet-attack-" + std::to_string(::getpid()) + "-" + ns_->name();
    ASSERT_EQ(sh("mkdir -p " + dir_ + "/www && head -c 3000 /dev/urandom > " + dir_ +
                 "/www/small && head -c 262144 /dev/urandom > " + dir_ + "/www/big")
                  .status,
              0);
  }
  void TearDown() override {
    // A server still running ends by its own --duration (and the timeout
    // around it); wait for it so nothing outlives the namespace.
    if (server_.valid()) (void)server_.get();
    if (HasFailure()) {
      // What usnet's link saw, kept for a look with tshark/wireshark.
      const std::string keep = "/tmp/usnet-attack-" +
                               std::string(testing::UnitTest::GetInstance()->current_test_info()->name()) +
                               ".pcap";
      if (sh("cp " + dir_ + "/usnet.pcap " + keep).status == 0)
        std::cout << "usnet's capture: " << keep << "\n";
    }
    (void)sh("rm -rf " + dir_);
  }

  // Starts `usnet http-server` (its pid goes to dir_/pid) and waits until
  // it answers ping.
  void start_server(int max_requests, int duration_s) {
    const std::string cmd = "echo $$ > " + dir_ + "/pid; exec " + kCli + " http-server --link " + link_uri() +
                            " --pcap " + dir_ + "/usnet.pcap --addr 198.18.0.1/24 --root " + dir_ +
                            "/www --max-requests " + std::to_string(max_requests) + " --duration " +
                            std::to_string(duration_s);
    server_ = std::async(std::launch::async, [this, cmd, duration_s] {
      return af_packet() ? sh(cmd, duration_s + 15) : ns_->exec(cmd, duration_s + 15);
    });
    if (const std::string why = ns_->wait_for_answer(); !why.empty()) {
      (void)sh("kill -INT " + server_pid(), 5);
      FAIL() << why << "\nusnet's report: " << server_report().output;
    }
  }
  std::string server_pid() const { return sh("tr -d '\\n' < " + dir_ + "/pid").output; }
  // The server's output (counters) once it has stopped; printed too with
  // USNET_ATTACK_VERBOSE set.
  CmdResult server_report() {
    if (server_.valid()) {
      report_ = server_.get();
      if (std::getenv("USNET_ATTACK_VERBOSE") != nullptr) std::cout << report_.output;
    }
    return report_;
  }

  // Runs one scenario of the script in the namespace.
  Observed attack(const std::string& scenario, const std::string& extra = "", int timeout_s = 30) const {
    Observed o;
    const auto r = ns_->exec("/usr/bin/python3 " + kScript + " --iface " + ns_->peer_if() + " --www " + dir_ +
                                 "/www --scenario " + scenario + " " + extra,
                             timeout_s);
    o.status = r.status;
    o.output = r.output;
    if (std::getenv("USNET_ATTACK_VERBOSE") != nullptr) std::cout << r.output;
    if (r.status != 0) {
      // Is usnet still there? (Tells a deaf stack from a script error.)
      const bool answers = ns_->exec("ping -c 1 -W 1 198.18.0.1", 5).status == 0;
      o.output += std::string("after the script failed, usnet ") + (answers ? "answers" : "does not answer") +
                  " ping; usnet's link:\n" +
                  (af_packet() ? sh("ip -s link show " + ns_->usnet_if())
                               : ns_->exec("ip -s link show " + ns_->peer_if()))
                      .output;
    }
    std::istringstream in(r.output);
    std::string line;
    while (std::getline(in, line)) {
      const auto space = line.find(' ');
      if (space == std::string::npos || line.empty() || line[0] == '#') continue;
      o.values[line.substr(0, space)] = line.substr(space + 1);
    }
    return o;
  }

  std::optional<PeerNamespace> ns_;
  std::string dir_;
  std::future<CmdResult> server_;
  CmdResult report_;  // the server's, once it has stopped
};

// ROBUSTNESS 3, RFC 5961 3.2: an RST inside the window but not at RCV.NXT
// (at RCV.NXT+1, +1000 and the window's last byte) is answered with a
// challenge ACK and dropped; the connection goes on serving.
TEST_F(TcpAttack, InWindowRstGetsAChallengeAckAndTheConnectionLives) {
  start_server(2, 20);
  const auto o = attack("rst_in_window");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_GE(o.num("challenge_acks_seen"), 1) << o.output;
  EXPECT_EQ(o.str("rst_seen"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_GE(counter(s.output, "challenge acks sent"), 1u) << s.output;
  EXPECT_EQ(counter(s.output, "segments dropped: rst in the window, not at rcv.nxt (challenged)"), 3u)
      << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 1, RFC 5961 3.2: an RST one below RCV.NXT, one at
// RCV.NXT+RCV.WND (one past each edge of the window) and one far below is
// dropped silently: nothing comes back, the connection lives.
TEST_F(TcpAttack, RstOutsideTheWindowIsDroppedSilently) {
  start_server(2, 20);
  const auto o = attack("rst_out_of_window");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_EQ(o.str("replies_seen"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_EQ(counter(s.output, "segments dropped: rst outside the window"), 3u) << s.output;
  EXPECT_EQ(counter(s.output, "challenge acks sent"), 0u) << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 6, RFC 5961 7 (CVE-2016-5696): 100 in-window RSTs within a few
// milliseconds get a few challenge ACKs, not 100: the per-connection limit
// (10 a second plus up to half again at random; the burst may straddle two
// seconds) holds; every RST is counted; the connection lives.
TEST_F(TcpAttack, ChallengeAcksAreRateLimitedPerConnection) {
  start_server(2, 20);
  const auto o = attack("challenge_ack_limit", "--burst 100");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_GE(o.num("challenge_acks_seen"), 1) << o.output;
  EXPECT_LE(o.num("challenge_acks_seen"), 30) << o.output;
  EXPECT_EQ(o.str("rst_seen"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_LE(counter(s.output, "challenge acks sent"), 30u) << s.output;
  EXPECT_EQ(counter(s.output, "segments dropped: rst in the window, not at rcv.nxt (challenged)"), 100u)
      << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 2, RFC 9293 3.10.7.4 second / RFC 5961 3.2: an RST at exactly
// RCV.NXT resets the connection: a request sent on it afterwards is never
// answered (a reset comes back, or nothing), and a new connection works.
TEST_F(TcpAttack, ExactRstResetsTheConnection) {
  start_server(2, 20);
  const auto o = attack("rst_exact");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  const std::string probe = o.str("probe_reply");
  EXPECT_TRUE(probe == "rst" || probe == "none") << "a request on a reset connection got: " << probe << "\n"
                                                 << o.output;
  if (probe == "rst") {
    EXPECT_GE(counter(s.output, "resets sent for segments nobody owns"), 1u) << s.output;
  }
  EXPECT_EQ(o.str("new_connection_get"), "1") << o.output;
  EXPECT_NE(s.output.find("2 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 4, RFC 5961 4.2: a SYN on an established connection (one in
// the window, one a copy of the first SYN) gets a challenge ACK, never a
// reset and never a SYN,ACK; the connection lives.
TEST_F(TcpAttack, SynOnAnEstablishedConnectionGetsAChallengeAckNeverAReset) {
  start_server(2, 20);
  const auto o = attack("syn_established");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_GE(o.num("challenge_acks_seen"), 1) << o.output;
  EXPECT_EQ(o.str("rst_seen"), "0") << o.output;
  EXPECT_EQ(o.str("synack_seen"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_GE(counter(s.output, "segments dropped: syn on a synchronized connection (challenged)"), 1u)
      << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 5, RFC 5961 5.2: segments whose ACK is beyond SND.NXT (with a
// request as payload, and a pure ACK) or below SND.UNA - MAX.SND.WND (with
// a request) are dropped, payload and all, and answered with an ACK.
TEST_F(TcpAttack, AckForDataNeverSentIsDroppedAndAcked) {
  start_server(2, 20);
  const auto o = attack("ack_unsent");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_GE(o.num("acks_seen"), 1) << o.output;
  EXPECT_EQ(o.str("data_accepted"), "0") << o.output;
  EXPECT_EQ(o.str("rst_seen"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_EQ(counter(s.output, "segments dropped: ack outside the send window"), 3u) << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 7, RFC 7323 5.3: a request whose timestamp is older than
// TS.Recent is dropped (PAWS) and ACKed; a fresh one is served.
TEST_F(TcpAttack, StaleTimestampOnDataIsDroppedByPaws) {
  start_server(2, 20);
  const auto o = attack("paws");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  ASSERT_EQ(o.str("timestamps"), "1") << "usnet did not agree to timestamps\n" << o.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_GE(o.num("acks_seen"), 1) << o.output;
  EXPECT_EQ(o.str("data_accepted"), "0") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_EQ(counter(s.output, "segments dropped: old timestamp (PAWS)"), 1u) << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 8, RFC 9293 3.1: option lengths 0 and 1, an option (and a SACK
// option) running past the header, data offsets 4 and 15 on segments
// shorter than that: each dropped by the layer with its reason and none
// delivered; an unknown option, unaligned, is ignored and its segment
// served; the connection lives.
TEST_F(TcpAttack, MalformedOptionsAndDataOffsetsAreDroppedWithAReason) {
  start_server(3, 20);
  const auto o = attack("bad_options");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("first_get"), "1") << o.output;
  EXPECT_EQ(o.str("data_accepted"), "0") << o.output;
  EXPECT_EQ(o.str("rst_seen"), "0") << o.output;
  EXPECT_EQ(o.str("unknown_option_get"), "1") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_EQ(counter(s.output, "dropped: bad options"), 4u) << s.output;
  EXPECT_EQ(counter(s.output, "dropped: malformed header"), 3u) << s.output;
  EXPECT_NE(s.output.find("1 connections accepted, 3 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 9: requests with URG set and the urgent pointer past the
// payload (0xffff, and one past) are served like any other data.
TEST_F(TcpAttack, UrgentPointerPastThePayloadIsHarmless) {
  start_server(3, 20);
  const auto o = attack("urgent");
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("urgent_get"), "1") << o.output;
  EXPECT_EQ(o.str("urgent_get2"), "1") << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_NE(s.output.find("1 connections accepted, 3 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 14: 10,000 SYNs from spoofed sources in 198.18.128.0/17 (which
// usnet has no route back to: its answers go nowhere) at 4,000 a second;
// after 3,000 (the listener's backlog of 1,024 long full), a kernel client
// in the namespace connects and fetches a file, and must be done before
// the flood is; a second client fetches after the flood. usnet must take
// in most of the flood (at least half: 4,000 SYNs a second is little) and
// its memory must stay bounded while it does (half-open connections must
// not cost their full buffers).
TEST_F(TcpAttack, SynFloodOfTenThousandLeavesRoomForALegitimateClient) {
  start_server(2, 15);
  const std::string pid = server_pid();
  ASSERT_FALSE(pid.empty());
  const auto o = attack("syn_flood", "--pid " + pid, 45);
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("flood_sent"), "10000") << o.output;
  EXPECT_EQ(o.str("legit_ok"), "1") << "the legitimate client was shut out during the flood\n" << o.output;
  EXPECT_LT(o.num("flood_sent_at_done"), 10000) << "the fetch finished only after the flood\n" << o.output;
  EXPECT_EQ(o.str("after_flood_ok"), "1") << "the listener did not recover after the flood\n" << o.output;
  EXPECT_GE(counter(s.output, "segments received"), 5000u) << "usnet fell behind the flood\n" << s.output;
  EXPECT_LT(o.num("rss_growth_kib"), 256 * 1024) << "the flood grew usnet's memory\n" << o.output;
  EXPECT_NE(s.output.find("2 responses"), std::string::npos) << s.output;
}

// ROBUSTNESS 10 (CVE-2019-11477/11478/11479): MSS 48 in the SYN (usnet
// raises it to its minimum), a 256 KiB download, and once 48 KiB are in,
// 4,000 duplicate ACKs with 4 SACK blocks each (every other segment in
// flight, so none touch; every 16th ACK with bogus blocks beyond SND.NXT,
// below SND.UNA and inverted). usnet's resident memory and CPU time stay
// bounded, the download completes byte-exactly and the connection serves
// another request.
TEST_F(TcpAttack, TinyMssAndSackBarrageStayBoundedInMemoryAndTime) {
  start_server(2, 60);
  const std::string pid = server_pid();
  ASSERT_FALSE(pid.empty());
  const auto o = attack("sack_abuse", "--pid " + pid + " --sack-acks 4000", 60);
  const auto s = server_report();
  ASSERT_EQ(o.status, 0) << o.output << "usnet:\n" << s.output;
  EXPECT_EQ(o.str("body_ok"), "1") << o.output;
  EXPECT_EQ(o.str("sack_acks_sent"), "4000") << o.output;
  EXPECT_GT(o.num("segments_held"), 300) << "too little in flight to cut up\n" << o.output;
  // Most of the barrage reached usnet (the TAP queue may drop some).
  EXPECT_GE(counter(s.output, "duplicate acks received"), 2000u) << s.output;
  EXPECT_LE(o.num("max_segment_payload"), 1460) << o.output;
  // Bounds: the pool is preallocated, so growth is pages of it touched
  // for the first time plus what the (sanitizer) allocator holds; time is
  // per segment, not per block pair.
  EXPECT_LT(o.num("rss_growth_kib"), 64 * 1024) << o.output;
  EXPECT_LT(o.num("cpu_seconds"), 10) << o.output;
  EXPECT_LT(o.num("total_seconds"), 40) << o.output;
  EXPECT_EQ(o.str("alive"), "1") << o.output;
  EXPECT_NE(s.output.find("1 connections accepted, 2 responses"), std::string::npos) << s.output;
}

}  // namespace
}  // namespace usnet::test
