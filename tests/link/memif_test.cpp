// memif link: a usnet server and a usnet client in one process, and hostile
// hand-written peers that speak the protocol from the test's own encoder (so
// the layout is checked against a second, independent writing of it).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "usnet/link/memif_link.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::link {
namespace {

using namespace std::chrono_literals;

constexpr Nanos kNow{0};

class TestPool {
 public:
  explicit TestPool(std::size_t buffer_size = 2048) {
    bytes_ = 64 * 1024 * 4;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    memory_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = buffer_size;
    c.segment_bytes = 64 * 1024;
    c.max_segments = 4;
    auto pool = mem::PacketPool::create(c, std::span(memory_, bytes_));
    EXPECT_TRUE(pool);
    pool_.emplace(std::move(*pool));
  }
  ~TestPool() {
    pool_.reset();
    ::munmap(memory_, bytes_);
  }
  TestPool(const TestPool&) = delete;
  TestPool& operator=(const TestPool&) = delete;
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }

 private:
  std::size_t bytes_ = 0;
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/usnet-memif-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string sock(const char* name = "s.sock") const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1103515245u + 12345u;
    b = static_cast<std::byte>(x >> 16);
  }
  return v;
}

class MemifTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_owner_ = *pool_->add_owner({0, 96});
    client_owner_ = *pool_->add_owner({0, 96});
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    EXPECT_EQ(pool_->in_use(), 0u);
  }

  MemifConfig config(MemifRole role, std::uint8_t log2 = 3) {
    MemifConfig c;
    c.socket_path = dir_.sock();
    c.role = role;
    c.log2_ring_size = log2;
    return c;
  }
  void make_server(std::uint8_t log2 = 3) {
    auto s = MemifLink::create(config(MemifRole::kServer, log2), *pool_, server_owner_);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  void make_client(std::uint8_t log2 = 3) {
    auto c = MemifLink::create(config(MemifRole::kClient, log2), *pool_, client_owner_);
    ASSERT_TRUE(c) << c.error().message;
    client_ = std::move(*c);
  }
  // Drives both ends' control channels until both are connected (bounded).
  bool pump() {
    for (int i = 0; i < 64; ++i) {
      if (server_) server_->poll_control(kNow);
      if (client_) client_->poll_control(kNow);
      if (server_ && client_ && server_->connected() && client_->connected()) return true;
    }
    return false;
  }

  Frame frame(mem::OwnerId owner, const std::vector<std::byte>& bytes) {
    auto b = pool_->alloc(owner);
    EXPECT_TRUE(b);
    std::memcpy(pool_->buffer(*b).data(), bytes.data(), bytes.size());
    return Frame{*b, static_cast<std::uint32_t>(bytes.size()), 0, 0};
  }
  std::vector<std::byte> take(mem::OwnerId owner, const Frame& f) {
    auto s = pool_->buffer(f.buffer).subspan(f.offset, f.length);
    std::vector<std::byte> v(s.begin(), s.end());
    EXPECT_FALSE(pool_->free(owner, f.buffer));
    return v;
  }

  // Sends `count` frames from one end and checks each arrives byte-exact at
  // the other, in bursts of at most `burst`.
  void exchange(MemifLink& from, mem::OwnerId from_owner, MemifLink& to, mem::OwnerId to_owner, int count,
                std::size_t burst, std::uint32_t seed) {
    int sent = 0, received = 0;
    for (int round = 0; round < 10 * count + 10 && received < count; ++round) {
      std::vector<Frame> out;
      std::vector<int> numbers;
      for (std::size_t k = 0; k < burst && sent + static_cast<int>(k) < count; ++k) {
        const int i = sent + static_cast<int>(k);
        out.push_back(frame(from_owner, pattern(60 + (i * 37) % 1455, seed + static_cast<std::uint32_t>(i))));
      }
      const std::size_t took = from.tx_burst(out, kNow);
      for (std::size_t k = took; k < out.size(); ++k) ASSERT_FALSE(pool_->free(from_owner, out[k].buffer));
      sent += static_cast<int>(took);
      std::array<Frame, 16> in{};
      const std::size_t n = to.rx_burst(in, kNow);
      for (std::size_t k = 0; k < n; ++k) {
        const int i = received++;
        EXPECT_EQ(take(to_owner, in[k]), pattern(60 + (i * 37) % 1455, seed + static_cast<std::uint32_t>(i)))
            << "frame " << i;
      }
    }
    EXPECT_EQ(sent, count);
    EXPECT_EQ(received, count);
  }

  TestPool pool_;
  TempDir dir_;
  mem::OwnerId server_owner_, client_owner_;
  std::unique_ptr<MemifLink> server_, client_;
};

TEST_F(MemifTest, HandshakeConnectsBothEnds) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  EXPECT_EQ(server_->peer_name(), "usnet");
  EXPECT_EQ(client_->peer_name(), "usnet");
  EXPECT_EQ(server_->stats().connects, 1u);
  EXPECT_EQ(client_->stats().connects, 1u);
  EXPECT_GE(server_->wait_fd(), 0);  // an epoll fd, quiet while polling (below)
}

TEST_F(MemifTest, ClientStartedBeforeServerConnectsLater) {
  make_client();
  EXPECT_FALSE(client_->connected());
  make_server();
  ASSERT_TRUE(pump());
}

TEST_F(MemifTest, FramesBothWaysByteExact) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  exchange(*client_, client_owner_, *server_, server_owner_, 3, 3, 1);
  exchange(*server_, server_owner_, *client_, client_owner_, 3, 3, 2);
  EXPECT_EQ(client_->counters().tx_frames, 3u);
  EXPECT_EQ(server_->counters().rx_frames, 3u);
  EXPECT_EQ(server_->counters().tx_frames, 3u);
  EXPECT_EQ(client_->counters().rx_frames, 3u);
}

TEST_F(MemifTest, SmallestAndLargestFrames) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  for (std::size_t len : {std::size_t{1}, std::size_t{2048}}) {
    Frame f = frame(client_owner_, pattern(len, 7));
    ASSERT_EQ(client_->tx_burst({&f, 1}, kNow), 1u);
    Frame in{};
    ASSERT_EQ(server_->rx_burst({&in, 1}, kNow), 1u);
    EXPECT_EQ(take(server_owner_, in), pattern(len, 7));
  }
}

// More frames than the ring holds, both ways, so the 16-bit counters and
// the slot masks wrap many times (ring of 8, 300 frames).
TEST_F(MemifTest, RingWrapsAround) {
  make_server(3);
  make_client(3);
  ASSERT_TRUE(pump());
  exchange(*client_, client_owner_, *server_, server_owner_, 300, 5, 10);
  exchange(*server_, server_owner_, *client_, client_owner_, 300, 7, 20);
}

TEST_F(MemifTest, FullRingTakesAPrefixAndCountsIt) {
  make_server(3);
  make_client(3);
  ASSERT_TRUE(pump());
  for (auto* link : {client_.get(), server_.get()}) {
    const auto owner = link == client_.get() ? client_owner_ : server_owner_;
    std::vector<Frame> out;
    for (int i = 0; i < 12; ++i) out.push_back(frame(owner, pattern(100, static_cast<std::uint32_t>(i))));
    EXPECT_EQ(link->tx_burst(out, kNow), 8u);
    EXPECT_EQ(link->counters().tx_full, 1u);
    for (std::size_t k = 8; k < out.size(); ++k) ASSERT_FALSE(pool_->free(owner, out[k].buffer));
  }
  // Drain both ends.
  for (auto* link : {server_.get(), client_.get()}) {
    const auto owner = link == client_.get() ? client_owner_ : server_owner_;
    std::array<Frame, 16> in{};
    const std::size_t n = link->rx_burst(in, kNow);
    EXPECT_EQ(n, 8u);
    for (std::size_t k = 0; k < n; ++k) take(owner, in[k]);
  }
}

TEST_F(MemifTest, ServerSeesClientLeaveAndAcceptsANewOne) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  client_.reset();
  server_->poll_control(kNow);
  EXPECT_FALSE(server_->connected());
  EXPECT_EQ(server_->stats().drop_count(MemifDrop::kPeerDisconnect), 1u);
  make_client();
  ASSERT_TRUE(pump());
  EXPECT_EQ(server_->stats().connects, 2u);
  exchange(*client_, client_owner_, *server_, server_owner_, 20, 4, 3);
}

TEST_F(MemifTest, ClientSeesServerLeaveAndReconnects) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  server_.reset();
  Frame in{};
  EXPECT_EQ(client_->rx_burst({&in, 1}, kNow), 0u);
  client_->poll_control(kNow);
  EXPECT_FALSE(client_->connected());
  make_server();
  ASSERT_TRUE(pump());
  exchange(*server_, server_owner_, *client_, client_owner_, 20, 4, 4);
}

TEST_F(MemifTest, SecondClientIsRefused) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  auto other = MemifLink::create(config(MemifRole::kClient), *pool_, client_owner_);
  ASSERT_TRUE(other);
  for (int i = 0; i < 4; ++i) {
    server_->poll_control(kNow);
    (*other)->poll_control(kNow);
  }
  EXPECT_FALSE((*other)->connected());
  EXPECT_GE(server_->stats().drop_count(MemifDrop::kAlreadyConnected), 1u);
  EXPECT_TRUE(server_->connected());
}

TEST_F(MemifTest, BadConfigIsAClearError) {
  MemifConfig c = config(MemifRole::kServer);
  c.socket_path = std::string(200, 'x');
  auto r = MemifLink::create(c, *pool_, server_owner_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("socket path"), std::string::npos) << r.error().message;
  c = config(MemifRole::kServer);
  c.socket_path = "/nonexistent-dir/x.sock";
  r = MemifLink::create(c, *pool_, server_owner_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent-dir/x.sock"), std::string::npos) << r.error().message;
}

TEST_F(MemifTest, OpenFromUri) {
  LinkUri uri{"memif", dir_.sock(), {{"role", "server"}}};
  auto s = open_memif(uri, *pool_, server_owner_);
  ASSERT_TRUE(s) << s.error().message;
  LinkUri bad{"memif", dir_.sock("b.sock"), {{"role", "master"}}};
  auto b = open_memif(bad, *pool_, server_owner_);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("role=master"), std::string::npos) << b.error().message;
  EXPECT_EQ((*s)->info().offloads & Offload::kNoChecksums, 0u);  // checked by default
  LinkUri off{"memif", dir_.sock("c.sock"), {{"role", "server"}, {"checksums", "off"}}};
  auto o = open_memif(off, *pool_, server_owner_);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_NE((*o)->info().offloads & Offload::kNoChecksums, 0u);
  LinkUri maybe{"memif", dir_.sock("d.sock"), {{"checksums", "maybe"}}};
  auto m = open_memif(maybe, *pool_, server_owner_);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("checksums=on|off"), std::string::npos) << m.error().message;
}

// mtu=N in the URI sets the MTU and the ring buffers the client offers, so
// jumbo frames pass; a client left at 1500 offers 2048-byte buffers, and a
// longer frame from the server is counted as a transmit error, not cut.
TEST(MemifMtu, JumboFramesFromTheUri) {
  TestPool pool(16384);
  TempDir dir;
  const auto so = *pool->add_owner({0, 8});
  const auto co = *pool->add_owner({0, 8});
  const auto send_one = [&](Link& from, mem::OwnerId fo, Link& to, mem::OwnerId to_owner, std::size_t len) {
    auto b = pool->alloc(fo);
    EXPECT_TRUE(b);
    const auto bytes = pattern(len, static_cast<std::uint32_t>(len));
    std::memcpy(pool->buffer(*b).data(), bytes.data(), len);
    Frame f{*b, static_cast<std::uint32_t>(len), 0, 0};
    EXPECT_EQ(from.tx_burst({&f, 1}, kNow), 1u);
    Frame in{};
    if (to.rx_burst({&in, 1}, kNow) != 1) return false;
    const auto got = pool->buffer(in.buffer).subspan(in.offset, in.length);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes.begin(), bytes.end())) << len << " bytes";
    EXPECT_FALSE(pool->free(to_owner, in.buffer));
    return true;
  };
  for (const char* client_mtu : {"9000", "1500"}) {
    SCOPED_TRACE(client_mtu);
    auto s = open_memif({"memif", dir.sock(), {{"role", "server"}, {"mtu", "9000"}}}, *pool, so);
    ASSERT_TRUE(s) << s.error().message;
    auto c = open_memif({"memif", dir.sock(), {{"mtu", client_mtu}}}, *pool, co);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ((*s)->info().mtu, 9000u);
    EXPECT_EQ((*c)->info().mtu, std::string(client_mtu) == "9000" ? 9000u : 1500u);
    auto& server = static_cast<MemifLink&>(**s);
    auto& client = static_cast<MemifLink&>(**c);
    for (int i = 0; i < 64 && !(server.connected() && client.connected()); ++i) {
      server.poll_control(kNow);
      client.poll_control(kNow);
    }
    ASSERT_TRUE(server.connected() && client.connected());
    const std::size_t jumbo = 9000 + 18;
    if (std::string(client_mtu) == "9000") {
      EXPECT_TRUE(send_one(client, co, server, so, jumbo));
      EXPECT_TRUE(send_one(server, so, client, co, jumbo));
      EXPECT_EQ(server.counters().tx_errors, 0u);
    } else {
      EXPECT_TRUE(send_one(server, so, client, co, 2048));
      EXPECT_FALSE(send_one(server, so, client, co, 2049));
      EXPECT_EQ(server.counters().tx_errors, 1u);
    }
    s->reset();
    c->reset();
    EXPECT_EQ(pool->in_use(), 0u);
  }
  auto bad = open_memif({"memif", dir.sock(), {{"mtu", "65518"}}}, *pool, so);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("mtu must be a number from 68 to 65517"), std::string::npos)
      << bad.error().message;
}

// Two processes: the forked child is a client that echoes every frame back;
// the parent serves and checks the echoes byte for byte. The child works on
// its copy of the pool (fork copies the private memory) and exits without
// running the test framework's teardown.
TEST_F(MemifTest, TwoProcessesEcho) {
  make_server(4);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 1;
    {
      auto c = MemifLink::create(config(MemifRole::kClient, 4), *pool_, client_owner_);
      if (c) {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        bool done = false;
        while (!done && std::chrono::steady_clock::now() < deadline) {
          std::array<Frame, 8> in{};
          const std::size_t n = (*c)->rx_burst(in, kNow);
          for (std::size_t k = 0; k < n; ++k) {
            if (in[k].length == 1) done = true;  // the stop frame
          }
          std::size_t sent = 0;
          while (sent < n && std::chrono::steady_clock::now() < deadline) {
            sent += (*c)->tx_burst(std::span(in).subspan(sent, n - sent), kNow);
          }
        }
        code = done ? 0 : 2;
      }
    }
    ::_exit(code);
  }
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!server_->connected() && std::chrono::steady_clock::now() < deadline) {
    server_->poll_control(kNow);
    std::this_thread::sleep_for(50us);
  }
  ASSERT_TRUE(server_->connected());
  constexpr int kCount = 500;
  int sent = 0, received = 0;
  while (received < kCount && std::chrono::steady_clock::now() < deadline) {
    if (sent < kCount && sent - received < 8) {
      Frame f = frame(server_owner_, pattern(60 + (sent * 31) % 1400, static_cast<std::uint32_t>(sent)));
      if (server_->tx_burst({&f, 1}, kNow) == 1) {
        ++sent;
      } else {
        ASSERT_FALSE(pool_->free(server_owner_, f.buffer));
      }
    }
    std::array<Frame, 8> in{};
    const std::size_t n = server_->rx_burst(in, kNow);
    for (std::size_t k = 0; k < n; ++k) {
      const int i = received++;
      EXPECT_EQ(take(server_owner_, in[k]), pattern(60 + (i * 31) % 1400, static_cast<std::uint32_t>(i)));
    }
  }
  EXPECT_EQ(received, kCount);
  Frame stop = frame(server_owner_, std::vector<std::byte>(1));
  while (server_->tx_burst({&stop, 1}, kNow) != 1 && std::chrono::steady_clock::now() < deadline) {
  }
  int status = 0;
  while (::waitpid(child, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::array<Frame, 8> in{};
    const std::size_t n = server_->rx_burst(in, kNow);  // the echoed stop frame
    for (std::size_t k = 0; k < n; ++k) take(server_owner_, in[k]);
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  server_->poll_control(kNow);
  EXPECT_FALSE(server_->connected());
  std::array<Frame, 8> in{};
  for (std::size_t k = 0, n = server_->rx_burst(in, kNow); k < n; ++k) take(server_owner_, in[k]);
}

// Interrupt mode: wait_fd() wakes when a frame is published, and is quiet
// again once rx_burst has drained the ring.
TEST_F(MemifTest, InterruptModeWakesTheReceiver) {
  MemifConfig sc = config(MemifRole::kServer);
  sc.interrupts = true;
  MemifConfig cc = config(MemifRole::kClient);
  cc.interrupts = true;
  server_ = std::move(*MemifLink::create(sc, *pool_, server_owner_));
  client_ = std::move(*MemifLink::create(cc, *pool_, client_owner_));
  ASSERT_TRUE(pump());
  for (auto [from, from_owner, to, to_owner] :
       {std::tuple{client_.get(), client_owner_, server_.get(), server_owner_},
        std::tuple{server_.get(), server_owner_, client_.get(), client_owner_}}) {
    ASSERT_GE(to->wait_fd(), 0);
    pollfd p{to->wait_fd(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    Frame f = frame(from_owner, pattern(80, 5));
    ASSERT_EQ(from->tx_burst({&f, 1}, kNow), 1u);
    EXPECT_EQ(::poll(&p, 1, 1000), 1);
    Frame in{};
    ASSERT_EQ(to->rx_burst({&in, 1}, kNow), 1u);
    EXPECT_EQ(take(to_owner, in), pattern(80, 5));
    EXPECT_EQ(to->rx_burst({&in, 1}, kNow), 0u);  // drains the eventfd
    EXPECT_EQ(::poll(&p, 1, 0), 0);
  }
}

// Polling mode (the default): a frame sent while the receiver polls writes
// no eventfd, so wait_fd() stays quiet; between arm_wakeup() and
// disarm_wakeup() it wakes; arm_wakeup() says false when a frame is
// already waiting.
TEST_F(MemifTest, PollingModeWakesOnlyWhileArmed) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  for (auto [from, from_owner, to, to_owner] :
       {std::tuple{client_.get(), client_owner_, server_.get(), server_owner_},
        std::tuple{server_.get(), server_owner_, client_.get(), client_owner_}}) {
    pollfd p{to->wait_fd(), POLLIN, 0};
    Frame in{};
    // Not armed: a frame arrives without a wake-up.
    Frame f = frame(from_owner, pattern(70, 1));
    ASSERT_EQ(from->tx_burst({&f, 1}, kNow), 1u);
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    // Armed with that frame waiting: false, no sleep.
    EXPECT_FALSE(to->arm_wakeup());
    ASSERT_EQ(to->rx_burst({&in, 1}, kNow), 1u);
    EXPECT_EQ(take(to_owner, in), pattern(70, 1));
    // Armed on an empty ring: the next frame wakes the fd.
    EXPECT_TRUE(to->arm_wakeup());
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    f = frame(from_owner, pattern(90, 2));
    ASSERT_EQ(from->tx_burst({&f, 1}, kNow), 1u);
    EXPECT_EQ(::poll(&p, 1, 1000), 1);
    to->disarm_wakeup();
    ASSERT_EQ(to->rx_burst({&in, 1}, kNow), 1u);
    EXPECT_EQ(take(to_owner, in), pattern(90, 2));
    // Disarmed again: quiet. (The eventfd's count is cleared by the next
    // arm_wakeup(); the sleep that follows it starts quiet.)
    f = frame(from_owner, pattern(60, 3));
    ASSERT_EQ(from->tx_burst({&f, 1}, kNow), 1u);
    EXPECT_FALSE(to->arm_wakeup());  // the frame is there
    ASSERT_EQ(to->rx_burst({&in, 1}, kNow), 1u);
    EXPECT_EQ(take(to_owner, in), pattern(60, 3));
    EXPECT_TRUE(to->arm_wakeup());
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    to->disarm_wakeup();
  }
}

// set_tx_hold: frames taken while held stay out of the peer's view until
// the hold ends, the sender's next rx_burst(), an empty tx_burst(), a sleep
// (arm_wakeup), 32 of them, or a full ring; next_deadline() says "now"
// meanwhile; a sleeping peer is woken when they show. Both directions.
TEST_F(MemifTest, HeldFramesShowAtTheEndOfTheHold) {
  make_server(6);  // 64 slots
  make_client(6);
  ASSERT_TRUE(pump());
  for (auto [from, from_owner, to, to_owner] :
       {std::tuple{client_.get(), client_owner_, server_.get(), server_owner_},
        std::tuple{server_.get(), server_owner_, client_.get(), client_owner_}}) {
    std::array<Frame, 64> in{};
    std::uint32_t seed = 0;
    const auto send = [&, from = from, from_owner = from_owner](int n) {
      for (int i = 0; i < n; ++i) {
        Frame f = frame(from_owner, pattern(80, seed++));
        ASSERT_EQ(from->tx_burst({&f, 1}, kNow), 1u);
      }
    };
    std::uint32_t next = 0;
    const auto receive = [&, to = to, to_owner = to_owner](std::size_t want) {
      const std::size_t n = to->rx_burst(in, kNow);
      EXPECT_EQ(n, want);
      for (std::size_t k = 0; k < n; ++k) EXPECT_EQ(take(to_owner, in[k]), pattern(80, next++));
    };
    EXPECT_EQ(from->next_deadline(), Nanos::max());
    // The end of the hold.
    from->set_tx_hold(true);
    send(3);
    EXPECT_EQ(from->next_deadline(), Nanos{0});
    receive(0);
    from->set_tx_hold(false);
    EXPECT_EQ(from->next_deadline(), Nanos::max());
    receive(3);
    // The sender's next turn (rx_burst), and an empty tx_burst.
    from->set_tx_hold(true);
    send(2);
    receive(0);
    EXPECT_EQ(from->rx_burst(in, kNow), 0u);
    receive(2);
    send(1);
    receive(0);
    EXPECT_EQ(from->tx_burst({}, kNow), 0u);
    receive(1);
    // 32 held: shown without waiting for the end.
    send(31);
    receive(0);
    send(1);
    receive(32);
    // A sleeping peer is woken when the hold ends, not before.
    pollfd p{to->wait_fd(), POLLIN, 0};
    EXPECT_TRUE(to->arm_wakeup());
    send(1);
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    from->set_tx_hold(false);
    EXPECT_EQ(::poll(&p, 1, 1000), 1);
    to->disarm_wakeup();
    receive(1);
    // The sender going to sleep shows what it held first.
    from->set_tx_hold(true);
    send(2);
    EXPECT_TRUE(from->arm_wakeup());
    from->disarm_wakeup();
    receive(2);
    from->set_tx_hold(false);
  }
}

// Frames held when the connection ends are counted as lost; the next
// connection starts with none held.
TEST_F(MemifTest, HeldFramesLostWithTheConnectionAreCounted) {
  make_server();
  make_client();
  ASSERT_TRUE(pump());
  client_->set_tx_hold(true);
  for (int i = 0; i < 2; ++i) {
    Frame f = frame(client_owner_, pattern(70, static_cast<std::uint32_t>(i)));
    ASSERT_EQ(client_->tx_burst({&f, 1}, kNow), 1u);
  }
  EXPECT_EQ(client_->next_deadline(), Nanos{0});
  server_.reset();
  client_->poll_control(kNow);  // sees the server gone (no publish on the way)
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(client_->stats().tx_held_lost, 2u);
  EXPECT_EQ(client_->next_deadline(), Nanos::max());
  client_->set_tx_hold(false);
  make_server();
  ASSERT_TRUE(pump());
  exchange(*client_, client_owner_, *server_, server_owner_, 5, 2, 9);
}

// A full ring is shown at once, held or not (the peer must free slots), and
// what does not fit is refused as without the hold.
TEST_F(MemifTest, HeldFullRingIsShownAndTheRestRefused) {
  make_server(3);  // 8 slots
  make_client(3);
  ASSERT_TRUE(pump());
  client_->set_tx_hold(true);
  std::vector<Frame> out;
  for (int i = 0; i < 10; ++i)
    out.push_back(frame(client_owner_, pattern(100, static_cast<std::uint32_t>(i))));
  EXPECT_EQ(client_->tx_burst(out, kNow), 8u);
  for (std::size_t k = 8; k < out.size(); ++k) ASSERT_FALSE(pool_->free(client_owner_, out[k].buffer));
  std::array<Frame, 16> in{};
  const std::size_t n = server_->rx_burst(in, kNow);
  EXPECT_EQ(n, 8u);
  for (std::size_t k = 0; k < n; ++k)
    EXPECT_EQ(take(server_owner_, in[k]), pattern(100, static_cast<std::uint32_t>(k)));
  client_->set_tx_hold(false);
}

// Nothing a peer does leaks a descriptor: every fd it sent is closed when it
// is dropped, and the server's own when it goes.
TEST_F(MemifTest, NoDescriptorLeaks) {
  auto count_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                         std::filesystem::directory_iterator{});
  };
  const auto before = count_fds();
  make_server();
  for (int round = 0; round < 3; ++round) {
    make_client();
    ASSERT_TRUE(pump());
    exchange(*client_, client_owner_, *server_, server_owner_, 10, 4, 1);
    client_.reset();
    server_->poll_control(kNow);
  }
  server_.reset();
  EXPECT_EQ(count_fds(), before);
}

// --- hostile peers ----------------------------------------------------------

// The test's own writing of the message layout (see memif_proto.hpp).
using RawMsg = std::array<std::byte, 128>;
template <class T>
void put(RawMsg& m, std::size_t off, T v) {
  std::memcpy(m.data() + off, &v, sizeof v);
}
template <class T>
T get(const RawMsg& m, std::size_t off) {
  T v;
  std::memcpy(&v, m.data() + off, sizeof v);
  return v;
}
RawMsg raw(std::uint16_t type) {
  RawMsg m{};
  put(m, 0, type);
  return m;
}
constexpr std::uint16_t kAck = 1, kHello = 2, kInit = 3, kAddRegion = 4, kAddRing = 5, kConnect = 6,
                        kConnected = 7, kDisconnect = 8;

// A client written by hand: one memfd with two rings of 8 (C2S at 0, S2C at
// 4096) and 16 buffers of 2048 from 8192.
class RawClient {
 public:
  static constexpr std::size_t kBytes = 8192 + 16 * 2048;
  static constexpr std::uint32_t kC2S = 0, kS2C = 4096, kBuffers = 8192;

  explicit RawClient(const std::string& path) {
    sock_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    EXPECT_EQ(::connect(sock_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    memfd_ = ::memfd_create("raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_EQ(::ftruncate(memfd_, kBytes), 0);
    EXPECT_EQ(::fcntl(memfd_, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    mem_ = static_cast<std::byte*>(::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0));
    for (std::uint32_t off : {kC2S, kS2C}) {
      const std::uint32_t cookie = 0x3E31F20;
      std::memcpy(mem_ + off, &cookie, 4);
    }
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~RawClient() {
    ::munmap(mem_, kBytes);
    ::close(memfd_);
    ::close(efd_);
    if (sock_ >= 0) ::close(sock_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const RawMsg& m, int fd = -1) {
    msghdr mh{};
    iovec iov{const_cast<std::byte*>(m.data()), m.size()};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    EXPECT_EQ(::sendmsg(sock_, &mh, MSG_NOSIGNAL), 128);
  }
  void send_bytes(std::size_t n) {
    std::vector<std::byte> b(n);
    EXPECT_EQ(::send(sock_, b.data(), n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
  }
  // The next message the server sent (it answers synchronously, so it is
  // already there); type 0 if none.
  RawMsg recv() {
    RawMsg m{};
    pollfd p{sock_, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0) {
      if (::recv(sock_, m.data(), m.size(), MSG_DONTWAIT) != 128) m = RawMsg{};
    }
    return m;
  }
  void close_socket() {
    ::close(sock_);
    sock_ = -1;
  }

  static RawMsg add_region(std::uint16_t index, std::uint64_t size) {
    RawMsg m = raw(kAddRegion);
    put(m, 2, index);
    put(m, 4, size);
    return m;
  }
  static RawMsg add_ring(bool c2s, std::uint16_t index, std::uint32_t offset, std::uint8_t log2 = 3) {
    RawMsg m = raw(kAddRing);
    put<std::uint16_t>(m, 2, c2s ? 1 : 0);
    put(m, 4, index);
    put<std::uint16_t>(m, 6, 0);
    put(m, 8, offset);
    put(m, 12, log2);
    return m;
  }
  static RawMsg init() {
    RawMsg m = raw(kInit);
    put<std::uint16_t>(m, 2, 0x0200);
    put<std::uint32_t>(m, 4, 0);
    std::memcpy(m.data() + 33, "raw", 3);
    return m;
  }

  std::byte* mem() { return mem_; }
  int memfd() const { return memfd_; }
  int efd() const { return efd_; }
  void set_u16(std::uint32_t off, std::uint16_t v) { std::memcpy(mem_ + off, &v, 2); }
  void set_desc(std::uint32_t ring, std::uint16_t slot, std::uint16_t flags, std::uint16_t region,
                std::uint32_t length, std::uint32_t offset) {
    std::byte* d = mem_ + ring + 128 + (slot & 7) * 16;
    std::memcpy(d, &flags, 2);
    std::memcpy(d + 2, &region, 2);
    std::memcpy(d + 4, &length, 4);
    std::memcpy(d + 8, &offset, 4);
  }

 private:
  int sock_ = -1, memfd_ = -1, efd_ = -1;
  std::byte* mem_ = nullptr;
};

class MemifHostileTest : public MemifTest {
 protected:
  // Sends `m` and lets the server answer; returns the answer's type.
  std::uint16_t step(RawClient& c, const RawMsg& m, int fd = -1) {
    c.send(m, fd);
    server_->poll_control(kNow);
    last_ = c.recv();
    return get<std::uint16_t>(last_, 0);
  }
  std::string reason() const {
    return std::string(reinterpret_cast<const char*>(last_.data() + 6),
                       strnlen(reinterpret_cast<const char*>(last_.data() + 6), 96));
  }
  // Connects a raw client through the whole handshake.
  void handshake(RawClient& c) {
    server_->poll_control(kNow);
    ASSERT_EQ(get<std::uint16_t>(c.recv(), 0), kHello);
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    ASSERT_EQ(step(c, RawClient::add_region(0, RawClient::kBytes), c.memfd()), kAck);
    ASSERT_EQ(step(c, RawClient::add_ring(true, 0, RawClient::kC2S), c.efd()), kAck);
    ASSERT_EQ(step(c, RawClient::add_ring(false, 0, RawClient::kS2C), c.efd()), kAck);
    ASSERT_EQ(step(c, raw(kConnect)), kConnected);
    ASSERT_TRUE(server_->connected());
  }
  void expect_dropped(MemifDrop why) {
    EXPECT_FALSE(server_->connected());
    EXPECT_EQ(server_->stats().drop_count(why), 1u) << server_->stats().last_drop;
  }
  RawMsg last_{};
};

TEST_F(MemifHostileTest, HelloLayoutAsSent) {
  make_server(5);
  RawClient c(dir_.sock());
  server_->poll_control(kNow);
  const RawMsg h = c.recv();
  EXPECT_EQ(get<std::uint16_t>(h, 0), kHello);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h.data() + 2)), "usnet");
  EXPECT_EQ(get<std::uint16_t>(h, 34), 0x0200);  // min version
  EXPECT_EQ(get<std::uint16_t>(h, 36), 0x0200);  // max version
  EXPECT_EQ(get<std::uint8_t>(h, 44), 5);        // max log2 ring size
}

TEST_F(MemifHostileTest, FullHandshakeThenFramesFromARawClient) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  // One frame on C2S slot 0.
  const auto bytes = pattern(300, 9);
  std::memcpy(c.mem() + RawClient::kBuffers, bytes.data(), bytes.size());
  c.set_desc(RawClient::kC2S, 0, 0, 0, 300, RawClient::kBuffers);
  c.set_u16(RawClient::kC2S + 6, 1);  // head
  Frame in{};
  ASSERT_EQ(server_->rx_burst({&in, 1}, kNow), 1u);
  EXPECT_EQ(take(server_owner_, in), bytes);
  std::uint16_t tail;
  std::memcpy(&tail, c.mem() + RawClient::kC2S + 64, 2);
  EXPECT_EQ(tail, 1);
}

// A peer that makes the shared eventfd blocking is dropped, also when that
// is found while arming the wake-up (no ring is read after the drop).
TEST_F(MemifHostileTest, BlockingEventfdFoundWhileArmingDisconnects) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  ASSERT_TRUE(server_->connected());
  ASSERT_EQ(::fcntl(c.efd(), F_SETFL, 0), 0);
  EXPECT_TRUE(server_->arm_wakeup());
  EXPECT_FALSE(server_->connected());
  server_->disarm_wakeup();  // harmless once disconnected
}

TEST_F(MemifHostileTest, MessageBeforeInitIsRefused) {
  make_server();
  RawClient c(dir_.sock());
  server_->poll_control(kNow);
  (void)c.recv();
  EXPECT_EQ(step(c, RawClient::add_region(0, RawClient::kBytes), c.memfd()), kDisconnect);
  expect_dropped(MemifDrop::kBadMessage);
}

TEST_F(MemifHostileTest, WrongSizeMessage) {
  make_server();
  RawClient c(dir_.sock());
  server_->poll_control(kNow);
  (void)c.recv();
  c.send_bytes(40);
  server_->poll_control(kNow);
  expect_dropped(MemifDrop::kBadMessage);
}

TEST_F(MemifHostileTest, BadVersionAndBadId) {
  make_server();
  {
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    (void)c.recv();
    RawMsg m = RawClient::init();
    put<std::uint16_t>(m, 2, 0x0100);
    EXPECT_EQ(step(c, m), kDisconnect);
    EXPECT_EQ(reason(), "bad version: incompatible memif version");
    expect_dropped(MemifDrop::kBadVersion);
  }
  RawClient c(dir_.sock());
  server_->poll_control(kNow);
  (void)c.recv();
  RawMsg m = RawClient::init();
  put<std::uint32_t>(m, 4, 7);
  EXPECT_EQ(step(c, m), kDisconnect);
  expect_dropped(MemifDrop::kBadInit);
}

TEST_F(MemifHostileTest, BadAddRegionIsRefused) {
  make_server();
  // 0: no fd, 1: size past the file, 2: unsealed memfd, 3: index 1 first, 4: a pipe
  for (int which = 0; which < 5; ++which) {
    SCOPED_TRACE(which);
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    ASSERT_EQ(get<std::uint16_t>(c.recv(), 0), kHello);
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    int fds[2] = {-1, -1};
    int unsealed = -1;
    RawMsg m = RawClient::add_region(0, RawClient::kBytes);
    int fd = c.memfd();
    if (which == 0) fd = -1;
    if (which == 1) put<std::uint64_t>(m, 4, RawClient::kBytes + 4096);
    if (which == 2) {
      unsealed = ::memfd_create("unsealed", MFD_CLOEXEC);
      ASSERT_EQ(::ftruncate(unsealed, RawClient::kBytes), 0);
      fd = unsealed;
    }
    if (which == 3) put<std::uint16_t>(m, 2, 1);
    if (which == 4) {
      ASSERT_EQ(::pipe(fds), 0);
      fd = fds[0];
    }
    EXPECT_EQ(step(c, m, fd), kDisconnect);
    EXPECT_EQ(server_->stats().drop_count(MemifDrop::kBadRegion), static_cast<std::uint64_t>(which + 1))
        << server_->stats().last_drop;
    if (unsealed >= 0) ::close(unsealed);
    if (fds[0] >= 0) {
      ::close(fds[0]);
      ::close(fds[1]);
    }
  }
  EXPECT_FALSE(server_->connected());
}

TEST_F(MemifHostileTest, BadAddRingIsRefused) {
  make_server();
  const RawMsg cases[] = {
      RawClient::add_ring(true, 1, RawClient::kC2S),         // index beyond what HELLO allowed
      RawClient::add_ring(true, 0, RawClient::kBytes - 64),  // ring runs past the region
      RawClient::add_ring(true, 0, RawClient::kC2S, 9),      // larger than HELLO allowed
      RawClient::add_ring(true, 0, 0xfffffff8u),             // offset far outside
      RawClient::add_ring(true, 0, RawClient::kC2S + 2),     // misaligned head and tail
  };
  std::uint64_t expected = 0;
  for (const RawMsg& bad : cases) {
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    ASSERT_EQ(get<std::uint16_t>(c.recv(), 0), kHello);
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    ASSERT_EQ(step(c, RawClient::add_region(0, RawClient::kBytes), c.memfd()), kAck);
    EXPECT_EQ(step(c, bad, c.efd()), kDisconnect);
    EXPECT_EQ(server_->stats().drop_count(MemifDrop::kBadRing), ++expected) << server_->stats().last_drop;
  }
  // A ring with no eventfd, and CONNECT with one ring missing.
  {
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    (void)c.recv();
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    ASSERT_EQ(step(c, RawClient::add_region(0, RawClient::kBytes), c.memfd()), kAck);
    EXPECT_EQ(step(c, RawClient::add_ring(true, 0, RawClient::kC2S)), kDisconnect);
  }
  {
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    (void)c.recv();
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    ASSERT_EQ(step(c, RawClient::add_region(0, RawClient::kBytes), c.memfd()), kAck);
    ASSERT_EQ(step(c, RawClient::add_ring(true, 0, RawClient::kC2S), c.efd()), kAck);
    EXPECT_EQ(step(c, raw(kConnect)), kDisconnect);
  }
  EXPECT_EQ(server_->stats().drop_count(MemifDrop::kBadRing), expected + 2);
}

TEST_F(MemifHostileTest, HeadPastTheRingDisconnects) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  c.set_u16(RawClient::kC2S + 6, 100);  // ring of 8
  std::array<Frame, 4> in{};
  EXPECT_EQ(server_->rx_burst(in, kNow), 0u);
  expect_dropped(MemifDrop::kBadRingIndex);
  EXPECT_EQ(get<std::uint16_t>(c.recv(), 0), kDisconnect);
}

TEST_F(MemifHostileTest, DescriptorOutsideTheRegionDisconnects) {
  make_server();
  struct Bad {
    std::uint16_t region;
    std::uint32_t length, offset;
  };
  const Bad cases[] = {
      {0, 100, RawClient::kBytes - 50}, {0, 0xffffffffu, 0}, {1, 100, 0}, {0, 100, 0xffffff00u}};
  std::uint64_t expected = 0;
  for (const Bad& b : cases) {
    RawClient c(dir_.sock());
    handshake(c);
    // A good frame first: it must arrive intact before the bad one ends it.
    c.set_desc(RawClient::kC2S, 0, 0, 0, 60, RawClient::kBuffers);
    c.set_desc(RawClient::kC2S, 1, 0, b.region, b.length, b.offset);
    c.set_u16(RawClient::kC2S + 6, 2);
    std::array<Frame, 4> in{};
    const std::size_t n = server_->rx_burst(in, kNow);
    EXPECT_EQ(n, 1u);
    for (std::size_t k = 0; k < n; ++k) take(server_owner_, in[k]);
    EXPECT_FALSE(server_->connected());
    EXPECT_EQ(server_->stats().drop_count(MemifDrop::kBadDescriptor), ++expected)
        << server_->stats().last_drop;
  }
}

TEST_F(MemifHostileTest, EndlessChainDisconnects) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  for (std::uint16_t s = 0; s < 8; ++s) c.set_desc(RawClient::kC2S, s, 1, 0, 64, RawClient::kBuffers);
  c.set_u16(RawClient::kC2S + 6, 8);
  std::array<Frame, 4> in{};
  EXPECT_EQ(server_->rx_burst(in, kNow), 0u);
  expect_dropped(MemifDrop::kBadDescriptor);
}

TEST_F(MemifHostileTest, BadTransmitBufferDisconnects) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  // The client offers S2C buffers; one of them points outside its region.
  c.set_desc(RawClient::kS2C, 0, 0, 0, 2048, RawClient::kBuffers);
  c.set_desc(RawClient::kS2C, 1, 0, 0, 2048, RawClient::kBytes - 1024);
  c.set_u16(RawClient::kS2C + 6, 2);
  std::vector<Frame> out = {frame(server_owner_, pattern(100, 1)), frame(server_owner_, pattern(100, 2))};
  EXPECT_EQ(server_->tx_burst(out, kNow), 1u);
  ASSERT_FALSE(pool_->free(server_owner_, out[1].buffer));
  expect_dropped(MemifDrop::kBadDescriptor);
  EXPECT_EQ(std::memcmp(c.mem() + RawClient::kBuffers, pattern(100, 1).data(), 100), 0);
}

TEST_F(MemifHostileTest, TransmitHeadPastTheRingDisconnects) {
  make_server();
  RawClient c(dir_.sock());
  handshake(c);
  c.set_u16(RawClient::kS2C + 6, 0x8000);
  Frame f = frame(server_owner_, pattern(100, 1));
  EXPECT_EQ(server_->tx_burst({&f, 1}, kNow), 0u);
  ASSERT_FALSE(pool_->free(server_owner_, f.buffer));
  expect_dropped(MemifDrop::kBadRingIndex);
}

TEST_F(MemifHostileTest, SilentClientTimesOut) {
  make_server();
  RawClient c(dir_.sock());
  server_->poll_control(kNow);
  server_->poll_control(MemifLink::kHandshakeTimeout - 1ns);
  EXPECT_EQ(server_->stats().drop_count(MemifDrop::kHandshakeTimeout), 0u);
  server_->poll_control(MemifLink::kHandshakeTimeout);
  expect_dropped(MemifDrop::kHandshakeTimeout);
  // And the server takes the next client.
  make_client();
  ASSERT_TRUE(pump());
}

TEST_F(MemifHostileTest, ConnectedClientKilledMidTransfer) {
  make_server();
  {
    RawClient c(dir_.sock());
    handshake(c);
    c.set_desc(RawClient::kC2S, 0, 0, 0, 60, RawClient::kBuffers);
    c.set_u16(RawClient::kC2S + 6, 1);
    c.close_socket();  // as if the process died: no DISCONNECT
  }                    // and its memory is gone from its side
  std::array<Frame, 4> in{};
  for (int i = 0; i < 2 * static_cast<int>(MemifLink::kControlEvery); ++i) {
    for (std::size_t k = 0, n = server_->rx_burst(in, kNow); k < n; ++k) take(server_owner_, in[k]);
  }
  expect_dropped(MemifDrop::kPeerClosed);
  make_client();
  ASSERT_TRUE(pump());
}

// Connected, the control socket is looked at by the clock the caller passes
// (each look is two system calls), not on every call.
TEST_F(MemifHostileTest, VanishedClientSeenAfterTheControlInterval) {
  make_server();
  {
    RawClient c(dir_.sock());
    handshake(c);
    c.close_socket();
  }
  std::array<Frame, 4> in{};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(server_->rx_burst(in, kNow), 0u);
  EXPECT_TRUE(server_->connected()) << "looked at the control socket before the interval passed";
  EXPECT_EQ(server_->rx_burst(in, kNow + MemifLink::kControlInterval), 0u);
  expect_dropped(MemifDrop::kPeerClosed);
  make_client();
  ASSERT_TRUE(pump());
}

TEST_F(MemifHostileTest, ClientThatVanishesMidHandshake) {
  make_server();
  {
    RawClient c(dir_.sock());
    server_->poll_control(kNow);
    ASSERT_EQ(get<std::uint16_t>(c.recv(), 0), kHello);
    ASSERT_EQ(step(c, RawClient::init()), kAck);
    c.close_socket();
  }
  server_->poll_control(kNow);
  expect_dropped(MemifDrop::kPeerClosed);
}

// A hand-written server against the usnet client: a HELLO with no common
// version, and a server that moves the S2C tail past what the client offered.
class RawServer {
 public:
  explicit RawServer(const std::string& path) {
    listen_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_, 1), 0);
  }
  ~RawServer() {
    if (conn_ >= 0) ::close(conn_);
    ::close(listen_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;
  bool accept() {
    conn_ = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return conn_ >= 0;
  }
  void send(const RawMsg& m) { EXPECT_EQ(::send(conn_, m.data(), m.size(), MSG_NOSIGNAL), 128); }
  // Next message, and the fd attached to it (the caller closes it).
  RawMsg recv(int* fd) {
    RawMsg m{};
    *fd = -1;
    msghdr mh{};
    iovec iov{m.data(), m.size()};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    if (::recvmsg(conn_, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 128) return RawMsg{};
    if (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
    }
    return m;
  }

 private:
  int listen_ = -1, conn_ = -1;
};

RawMsg hello(std::uint16_t min_version, std::uint16_t max_version) {
  RawMsg m = raw(kHello);
  put(m, 34, min_version);
  put(m, 36, max_version);
  put<std::uint8_t>(m, 44, 3);
  return m;
}

TEST_F(MemifHostileTest, ClientRefusesServerWithoutCommonVersion) {
  RawServer s(dir_.sock());
  make_client();
  client_->poll_control(kNow);  // connects
  ASSERT_TRUE(s.accept());
  s.send(hello(0x0300, 0x0300));
  client_->poll_control(kNow);
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(client_->stats().drop_count(MemifDrop::kBadVersion), 1u);
  int fd;
  EXPECT_EQ(get<std::uint16_t>(s.recv(&fd), 0), kDisconnect);
}

// The usnet client ignores the offsets a server writes into S2C
// descriptors, but must check the lengths.
TEST_F(MemifHostileTest, ClientDropsServerWithOverlongLength) {
  RawServer s(dir_.sock());
  make_client();
  client_->poll_control(kNow);
  ASSERT_TRUE(s.accept());
  s.send(hello(0x0200, 0x0200));
  client_->poll_control(kNow);
  int region_fd = -1;
  std::uint64_t region_size = 0;
  std::uint32_t s2c_offset = 0;
  for (int i = 0; i < 5; ++i) {
    int fd = -1;
    const RawMsg m = s.recv(&fd);
    const auto type = get<std::uint16_t>(m, 0);
    if (type == kAddRegion) {
      region_fd = fd;
      region_size = get<std::uint64_t>(m, 4);
    } else {
      if (type == kAddRing && (get<std::uint16_t>(m, 2) & 1) == 0) s2c_offset = get<std::uint32_t>(m, 8);
      if (fd >= 0) ::close(fd);
    }
    s.send(raw(type == kConnect ? kConnected : kAck));
    client_->poll_control(kNow);
  }
  ASSERT_TRUE(client_->connected());
  auto* mem =
      static_cast<std::byte*>(::mmap(nullptr, region_size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0));
  ASSERT_NE(mem, MAP_FAILED);
  // Slot 0: a length past the client's 2048-byte buffer, and an offset far
  // outside the region that must never be followed.
  const std::uint32_t length = 100000, offset = 0xfffff000u;
  std::memcpy(mem + s2c_offset + 128 + 4, &length, 4);
  std::memcpy(mem + s2c_offset + 128 + 8, &offset, 4);
  const std::uint16_t tail = 1;
  std::memcpy(mem + s2c_offset + 64, &tail, 2);
  std::array<Frame, 4> in{};
  EXPECT_EQ(client_->rx_burst(in, kNow), 0u);
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(client_->stats().drop_count(MemifDrop::kBadDescriptor), 1u);
  ::munmap(mem, region_size);
  ::close(region_fd);
}

TEST_F(MemifHostileTest, ClientDropsServerThatMovesTailPastHead) {
  RawServer s(dir_.sock());
  make_client();
  client_->poll_control(kNow);  // connects
  ASSERT_TRUE(s.accept());
  s.send(hello(0x0200, 0x0200));
  client_->poll_control(kNow);
  // The client's handshake, answered by hand; keep the region it sends.
  int region_fd = -1;
  std::uint64_t region_size = 0;
  std::uint32_t s2c_offset = 0;
  for (int i = 0; i < 5; ++i) {
    int fd = -1;
    const RawMsg m = s.recv(&fd);
    const auto type = get<std::uint16_t>(m, 0);
    if (type == kAddRegion) {
      region_fd = fd;
      region_size = get<std::uint64_t>(m, 4);
    } else {
      if (type == kAddRing && (get<std::uint16_t>(m, 2) & 1) == 0) s2c_offset = get<std::uint32_t>(m, 8);
      if (fd >= 0) ::close(fd);
    }
    s.send(raw(type == kConnect ? kConnected : kAck));
    client_->poll_control(kNow);
  }
  ASSERT_TRUE(client_->connected());
  ASSERT_GE(region_fd, 0);
  auto* mem =
      static_cast<std::byte*>(::mmap(nullptr, region_size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0));
  ASSERT_NE(mem, MAP_FAILED);
  // The client offered 8 buffers (head 8); claim 9 were filled.
  std::uint16_t head;
  std::memcpy(&head, mem + s2c_offset + 6, 2);
  EXPECT_EQ(head, 8);
  const std::uint16_t tail = 9;
  std::memcpy(mem + s2c_offset + 64, &tail, 2);
  std::array<Frame, 4> in{};
  EXPECT_EQ(client_->rx_burst(in, kNow), 0u);
  EXPECT_FALSE(client_->connected());
  EXPECT_EQ(client_->stats().drop_count(MemifDrop::kBadRingIndex), 1u);
  ::munmap(mem, region_size);
  ::close(region_fd);
}

}  // namespace
}  // namespace usnet::link
