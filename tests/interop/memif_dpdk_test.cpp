// memif against DPDK: two usnet memif clients joined through dpdk-testpmd,
// whose two net_memif ports are servers forwarding to each other (io mode).
// A frame sent on one usnet link must arrive byte-exact on the other.
//
// testpmd runs with --no-huge (no hugepages, no PCI, a small mbuf pool), its
// own file prefix, sockets in a private temp dir, output in a log file that
// a failure prints; it is killed (process group, TERM then KILL) when the
// test ends, also on failure. Every wait is bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "interop/netns.hpp"
#include "usnet/link/memif_link.hpp"

namespace usnet::link {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

Nanos now() { return std::chrono::duration_cast<Nanos>(Clock::now().time_since_epoch()); }

class TestPmd {
 public:
  TestPmd() {
    // testpmd's memif driver can crash; a command written to its pipe after
    // that must fail the test with a message, not kill it with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/usnet-memif-dpdk-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    prefix_ = "usnet-memif-" + std::to_string(::getpid());
  }
  ~TestPmd() {
    stop();
    std::filesystem::remove_all(dir_);
    std::error_code ec;
    std::filesystem::remove_all("/var/run/dpdk/" + prefix_, ec);
  }
  TestPmd(const TestPmd&) = delete;
  TestPmd& operator=(const TestPmd&) = delete;

  std::string sock(int port) const { return dir_ + "/memif" + std::to_string(port) + ".sock"; }
  std::string log() const {
    std::ifstream f(dir_ + "/testpmd.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  // Starts testpmd interactive, commands on a pipe, and waits for its
  // prompt. Forwarding starts only on command: DPDK's memif PMD sets up and
  // tears down a connection in its interrupt thread while the forwarding
  // core may be polling the same queues, and testpmd 22.11 was seen to crash
  // in that window (a ring read through an unmapped region); so links
  // connect before "start" and disconnect after "stop".
  // `role`: that of testpmd's memif ports; `ports`: how many (one port
  // forwards to itself).
  bool start(const std::string& role = "server", int ports = 2) {
    std::vector<std::string> args = {// Line-buffered, so the log shows each answer as it is printed.
                                     "stdbuf",
                                     "-oL",
                                     "dpdk-testpmd",
                                     "--no-huge",
                                     "-m",
                                     "256",
                                     "--no-pci",
                                     "--log-level=pmd.net.memif:debug",
                                     "--file-prefix",
                                     prefix_,
                                     "-l",
                                     "0,1"};
    for (int p = 0; p < ports; ++p) {
      args.push_back("--vdev=net_memif" + std::to_string(p) + ",role=" + role +
                     ",socket-abstract=no,socket=" + sock(p));
    }
    args.insert(args.end(), {"--",
                             // A small mbuf pool fits in 256 MB of ordinary pages.
                             "-i", "--forward-mode=io", "--total-num-mbufs=4096",
                             // "start" prints its answer and then empties the receive queues:
                             // frames sent just after the answer would be thrown away.
                             "--no-flush-rx"});
    const std::string logfile = dir_ + "/testpmd.log";
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return false;
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::setpgid(0, 0);
      // Dies with the test, even if the test is killed before its cleanup.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::FILE* out = std::freopen(logfile.c_str(), "w", stdout);
      if (out == nullptr) ::_exit(126);
      ::dup2(STDOUT_FILENO, STDERR_FILENO);
      ::dup2(in[0], STDIN_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    commands_ = in[1];
    ::setpgid(pid_, pid_);
    return wait_for("testpmd> ", 30s);
  }

  // Sends a command and waits for `answer` to appear in the log after it.
  bool command(const std::string& cmd, const std::string& answer) {
    const std::size_t from = log().size();
    const std::string line = cmd + "\n";
    if (commands_ < 0 || ::write(commands_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return false;
    }
    return wait_for(answer, 10s, from);
  }

  bool wait_for(const std::string& text, Nanos limit, std::size_t from = 0) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      const std::string l = log();
      if (l.size() > from && l.find(text, from) != std::string::npos) return true;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // "quit" first: testpmd 22.11 was seen to crash in its SIGTERM path.
  void stop() {
    if (commands_ >= 0) {
      const std::string quit = "quit\n";
      (void)!::write(commands_, quit.data(), quit.size());
      ::close(commands_);
      commands_ = -1;
      const auto quit_deadline = Clock::now() + 5s;
      int status;
      while (pid_ > 0 && Clock::now() < quit_deadline) {
        if (::waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
        std::this_thread::sleep_for(10ms);
      }
    }
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGTERM);
    const auto deadline = Clock::now() + 5s;
    int status;
    while (Clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  std::string dir_, prefix_;
  pid_t pid_ = -1;
  int commands_ = -1;
};

class PrivatePool {
 public:
  PrivatePool() {
    void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    memory_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = 2048;
    c.segment_bytes = 64 * 1024;
    c.max_segments = 8;
    auto pool = mem::PacketPool::create(c, std::span(memory_, kBytes));
    EXPECT_TRUE(pool);
    pool_.emplace(std::move(*pool));
  }
  ~PrivatePool() {
    pool_.reset();
    ::munmap(memory_, kBytes);
  }
  PrivatePool(const PrivatePool&) = delete;
  PrivatePool& operator=(const PrivatePool&) = delete;
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }

 private:
  static constexpr std::size_t kBytes = 8 * 64 * 1024;
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

// An Ethernet frame numbered `i`: locally administered addresses, an
// experimental EtherType (0x88b5), and a pattern payload.
std::vector<std::byte> frame_bytes(int i, std::size_t len) {
  std::vector<std::byte> v(len);
  const std::uint8_t hdr[14] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5};
  std::memcpy(v.data(), hdr, sizeof hdr);
  std::uint32_t x = static_cast<std::uint32_t>(i) * 2654435761u + 7;
  for (std::size_t k = sizeof hdr; k < len; ++k) {
    x = x * 1103515245u + 12345u;
    v[k] = static_cast<std::byte>(x >> 16);
  }
  std::memcpy(v.data() + 14, &i, sizeof i);
  return v;
}

TEST(MemifDpdk, TwoUsnetClientsThroughTestpmd) {
  ASSERT_EQ(test::interop_blocker({"dpdk-testpmd", "stdbuf"}), "");
  TestPmd pmd;
  ASSERT_TRUE(pmd.start()) << "dpdk-testpmd did not start:\n" << pmd.log();

  PrivatePool pool;
  const auto owner_a = *pool->add_owner({0, 128});
  const auto owner_b = *pool->add_owner({0, 128});
  {
    MemifConfig ca;
    ca.socket_path = pmd.sock(0);
    ca.log2_ring_size = 8;
    MemifConfig cb = ca;
    cb.socket_path = pmd.sock(1);
    auto a = MemifLink::create(ca, *pool, owner_a);
    auto b = MemifLink::create(cb, *pool, owner_b);
    ASSERT_TRUE(a) << a.error().message;
    ASSERT_TRUE(b) << b.error().message;
    MemifLink& la = **a;
    MemifLink& lb = **b;

    const auto connect_deadline = Clock::now() + 15s;
    while (Clock::now() < connect_deadline && !(la.connected() && lb.connected())) {
      la.poll_control(now());
      lb.poll_control(now());
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(la.connected() && lb.connected())
        << "a: " << la.stats().drop_count(MemifDrop::kHandshakeTimeout) << " timeouts, "
        << la.stats().last_drop << "\nb: " << lb.stats().last_drop << "\n"
        << pmd.log();
    EXPECT_NE(la.peer_name().find("DPDK"), std::string::npos) << la.peer_name();
    ASSERT_TRUE(pmd.command("start", "forwards packets on 2 streams")) << pmd.log();

    // Sends `count` frames from one link and checks they arrive in order,
    // byte-exact, at the other (bounded in time; frames in bursts of 8).
    auto one_way = [&](MemifLink& from, mem::OwnerId from_owner, MemifLink& to, mem::OwnerId to_owner,
                       int count, int first) {
      int sent = 0, received = 0;
      const auto deadline = Clock::now() + 10s;
      while (received < count && Clock::now() < deadline) {
        // testpmd's io mode drops what the far ring cannot take (no retry),
        // so keep at most half a ring in flight: a late testpmd moving a
        // full C2S ring at once must find room on the other side.
        std::vector<Frame> out;
        for (int k = 0; k < 8 && sent + k < count && sent + k - received < 128; ++k) {
          const int i = first + sent + k;
          const auto bytes = frame_bytes(i, 60 + static_cast<std::size_t>(i * 53) % 1455);
          auto buf = pool->alloc(from_owner);
          ASSERT_TRUE(buf);
          std::memcpy(pool->buffer(*buf).data(), bytes.data(), bytes.size());
          out.push_back(Frame{*buf, static_cast<std::uint32_t>(bytes.size()), 0, 0});
        }
        const std::size_t took = from.tx_burst(out, now());
        for (std::size_t k = took; k < out.size(); ++k) ASSERT_FALSE(pool->free(from_owner, out[k].buffer));
        sent += static_cast<int>(took);
        std::array<Frame, 32> in{};
        const std::size_t n = to.rx_burst(in, now());
        for (std::size_t k = 0; k < n; ++k) {
          const int i = first + received++;
          const auto want = frame_bytes(i, 60 + static_cast<std::size_t>(i * 53) % 1455);
          const auto got = pool->buffer(in[k].buffer).subspan(in[k].offset, in[k].length);
          EXPECT_TRUE(got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size()) == 0)
              << "frame " << i << " differs (length " << got.size() << ", want " << want.size() << ")";
          ASSERT_FALSE(pool->free(to_owner, in[k].buffer));
        }
        if (n == 0) std::this_thread::sleep_for(100us);
      }
      EXPECT_EQ(sent, count);
      EXPECT_EQ(received, count) << "to: rx_frames " << to.counters().rx_frames << " no_buffer "
                                 << to.counters().rx_no_buffer << " connects " << to.stats().connects
                                 << " last drop '" << to.stats().last_drop << "'"
                                 << " from last drop '" << from.stats().last_drop << "'"
                                 << "\nfrom: tx_frames " << from.counters().tx_frames << " tx_full "
                                 << from.counters().tx_full << "\n"
                                 << pmd.log();
    };
    // More frames than a ring holds (256), each way.
    one_way(la, owner_a, lb, owner_b, 1000, 0);
    one_way(lb, owner_b, la, owner_a, 1000, 5000);
    EXPECT_TRUE(la.connected() && lb.connected()) << la.stats().last_drop << " / " << lb.stats().last_drop;
    EXPECT_EQ(la.counters().tx_errors + lb.counters().tx_errors, 0u);
    EXPECT_EQ(la.counters().rx_too_long + lb.counters().rx_too_long, 0u);
    EXPECT_TRUE(pmd.command("stop", "Done.")) << pmd.log();
  }  // the links disconnect here, with testpmd no longer forwarding
  pmd.stop();
  EXPECT_EQ(pool->in_use(), 0u);
}

}  // namespace
}  // namespace usnet::link

namespace usnet::link {
namespace {

// The other role: a usnet memif server, and testpmd's single memif port as
// the client (it creates the shared memory); io forwarding on one port sends
// every frame back, so what usnet sends must come back byte-exact.
TEST(MemifDpdk, UsnetServerDpdkClientEchoes) {
  ASSERT_EQ(test::interop_blocker({"dpdk-testpmd", "stdbuf"}), "");
  TestPmd pmd;
  PrivatePool pool;
  const auto owner = *pool->add_owner({0, 128});
  {
    MemifConfig c;
    c.socket_path = pmd.sock(0);
    c.role = MemifRole::kServer;
    auto made = MemifLink::create(c, *pool, owner);
    ASSERT_TRUE(made) << made.error().message;
    MemifLink& link = **made;
    ASSERT_TRUE(pmd.start("client", 1)) << "dpdk-testpmd did not start:\n" << pmd.log();
    const auto connect_deadline = Clock::now() + 15s;
    while (Clock::now() < connect_deadline && !link.connected()) {
      link.poll_control(now());
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(link.connected()) << link.stats().last_drop << "\n" << pmd.log();
    EXPECT_NE(link.peer_name().find("DPDK"), std::string::npos) << link.peer_name();
    ASSERT_TRUE(pmd.command("start", "forwards packets on 1 streams")) << pmd.log();

    constexpr int kCount = 1000;
    int sent = 0, received = 0;
    const auto deadline = Clock::now() + 10s;
    while (received < kCount && Clock::now() < deadline) {
      std::vector<Frame> out;
      for (int k = 0; k < 8 && sent + k < kCount && sent + k - received < 64; ++k) {
        const int i = sent + k;
        const auto bytes = frame_bytes(i, 60 + static_cast<std::size_t>(i * 53) % 1455);
        auto buf = pool->alloc(owner);
        ASSERT_TRUE(buf);
        std::memcpy(pool->buffer(*buf).data(), bytes.data(), bytes.size());
        out.push_back(Frame{*buf, static_cast<std::uint32_t>(bytes.size()), 0, 0});
      }
      const std::size_t took = link.tx_burst(out, now());
      for (std::size_t k = took; k < out.size(); ++k) ASSERT_FALSE(pool->free(owner, out[k].buffer));
      sent += static_cast<int>(took);
      std::array<Frame, 32> in{};
      const std::size_t n = link.rx_burst(in, now());
      for (std::size_t k = 0; k < n; ++k) {
        const int i = received++;
        const auto want = frame_bytes(i, 60 + static_cast<std::size_t>(i * 53) % 1455);
        const auto got = pool->buffer(in[k].buffer).subspan(in[k].offset, in[k].length);
        EXPECT_TRUE(got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size()) == 0)
            << "frame " << i << " differs (length " << got.size() << ", want " << want.size() << ")";
        ASSERT_FALSE(pool->free(owner, in[k].buffer));
      }
      if (n == 0) std::this_thread::sleep_for(100us);
    }
    EXPECT_EQ(sent, kCount);
    EXPECT_EQ(received, kCount) << "last drop '" << link.stats().last_drop << "'\n" << pmd.log();
    EXPECT_TRUE(link.connected()) << link.stats().last_drop;
    EXPECT_TRUE(pmd.command("stop", "Done.")) << pmd.log();
  }
  pmd.stop();
  EXPECT_EQ(pool->in_use(), 0u);
}

}  // namespace
}  // namespace usnet::link
