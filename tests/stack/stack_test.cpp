// usnet::Stack: configuration errors, and two stacks over memif in one
// process exchanging TCP and UDP through the public API.
#include "usnet/stack.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

namespace usnet {
namespace {

using namespace std::chrono_literals;

std::string error_of(const StackConfig& c) {
  auto s = Stack::create(c);
  if (s) return "(created)";
  EXPECT_EQ(s.error().code, std::errc::invalid_argument) << s.error().message;
  return s.error().message;
}

StackConfig good_config(const std::string& link) {
  StackConfig c;
  c.link = link;
  c.addresses = {"198.18.0.1/24"};
  c.buffers = 256;
  return c;
}

TEST(StackConfig, EveryMistakeNamesItsSetting) {
  const std::string sock = "memif:/tmp/usnet-stack-test-" + std::to_string(getpid()) + ".sock?role=server";
  StackConfig c = good_config(sock);
  c.link = "";
  EXPECT_EQ(error_of(c), "link: no link URI given (like memif:/run/app.sock or af_xdp:eth0)");
  c.link = "eth0";
  EXPECT_NE(error_of(c).find("link: \"eth0\": no scheme"), std::string::npos) << error_of(c);
  c = good_config(sock);
  c.addresses.clear();
  EXPECT_EQ(error_of(c), "addresses: at least one address is needed, like 198.18.0.1/24");
  for (const char* bad :
       {"198.18.0.1/33", "198.18.0.256/24", "0.0.0.0/0", "x", "198.18.0.1/", "198.18.0.1/2a"}) {
    c.addresses = {"198.18.0.1/24", bad};
    EXPECT_EQ(error_of(c), std::string("addresses[1] \"") + bad +
                               "\": expected an IPv4 address and prefix length, like 198.18.0.1/24");
  }
  c = good_config(sock);
  c.gateway = "198.18.0.x";
  EXPECT_EQ(error_of(c), "gateway \"198.18.0.x\": not an IPv4 address");
  c = good_config(sock);
  c.routes = {"198.19.0.0/16"};
  EXPECT_EQ(error_of(c), "routes: \"198.19.0.0/16\": expected PREFIX/LEN,GATEWAY");
  c = good_config(sock);
  c.buffers = 10;
  EXPECT_EQ(error_of(c), "buffers: at least 64 packet buffers are needed");
  c = good_config(sock);
  c.buffer_size = 3000;
  EXPECT_EQ(error_of(c), "buffer_size 3000: must be a power of two from 256 to 65536 (or 0 to pick one)");
  c = good_config(sock);
  c.buffers = 1u << 30;
  EXPECT_NE(error_of(c).find("more packet memory than a pool holds"), std::string::npos);
  // Nothing was left behind by the refusals (no socket file, say).
  EXPECT_FALSE(std::filesystem::exists(sock.substr(6, sock.find('?') - 6)));
}

TEST(StackConfig, BufferSizeFollowsTheMemifMtu) {
  EXPECT_EQ(default_buffer_size("memif:/x.sock"), 2048u);
  EXPECT_EQ(default_buffer_size("memif:/x.sock?mtu=1500"), 2048u);
  EXPECT_EQ(default_buffer_size("memif:/x.sock?mtu=9000"), 16384u);
  EXPECT_EQ(default_buffer_size("memif:/x.sock?mtu=65517"), 65536u);
  EXPECT_EQ(default_buffer_size("af_xdp:eth0"), 2048u);
  EXPECT_EQ(default_buffer_size("nonsense"), 2048u);
}

TEST(StackConfig, ParseCidr) {
  EXPECT_EQ(parse_cidr("198.18.0.1")->prefix_len, 32);
  EXPECT_EQ(parse_cidr("198.18.0.1/0")->prefix_len, 0);
  EXPECT_EQ(parse_cidr("198.18.0.1/24")->addr, *wire::Ipv4Addr::parse("198.18.0.1"));
  EXPECT_FALSE(parse_cidr("198.18.0.1/-1"));
  EXPECT_FALSE(parse_cidr("/24"));
}

// Two stacks in this process joined by memif (no privileges needed).
class StackPair : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/usnet-stack-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void open(const std::string& params = "") {
    StackConfig s = good_config("memif:" + dir_ + "/m.sock?role=server" + params);
    StackConfig c = good_config("memif:" + dir_ + "/m.sock?role=client" + params);
    c.addresses = {"198.18.0.2/24"};
    auto a = Stack::create(s);
    ASSERT_TRUE(a) << a.error().message;
    auto b = Stack::create(c);
    ASSERT_TRUE(b) << b.error().message;
    server_ = std::move(*a);
    client_ = std::move(*b);
  }
  // Busy turns of both stacks until `done` (bounded: fails after 2 s).
  template <typename F>
  bool pump(F done) {
    const Nanos end = Stack::now() + 2s;
    const LoopConfig busy{LoopMode::kBusy};
    while (Stack::now() < end) {
      server_->run_once(busy);
      client_->run_once(busy);
      if (done()) return true;
    }
    return false;
  }
  std::string dir_;
  std::unique_ptr<Stack> server_, client_;
};

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + 7) % 251);
  return v;
}

TEST_F(StackPair, TcpEchoAndUdpThroughThePublicApi) {
  open("&mtu=9000");
  EXPECT_EQ(server_->config().buffer_size, 16384u);
  EXPECT_EQ(server_->interface().mtu(), 9000u);
  EXPECT_EQ(server_->config().tcp.connection.mss, 8960);  // MTU - 40, filled in
  EXPECT_NE(server_->config().tcp.seed, 0u);              // from getrandom
  const auto server_ip = *wire::Ipv4Addr::parse("198.18.0.1");
  {
    auto listener = server_->tcp().listen({{}, 7000});
    ASSERT_TRUE(listener) << listener.error().message();
    auto stream = client_->tcp().connect({server_ip, 7000}, Stack::now());
    ASSERT_TRUE(stream) << stream.error().message();
    std::optional<tcp::TcpStream> accepted;
    ASSERT_TRUE(pump([&] {
      if (!accepted) accepted = listener->accept();
      return accepted.has_value();
    }));
    // 200 KB there and back: the server echoes what it reads.
    const auto data = pattern(200'000);
    std::vector<std::byte> back, buf(65536);
    std::size_t sent = 0;
    ASSERT_TRUE(pump([&] {
      const Nanos t = Stack::now();
      if (sent < data.size()) {
        if (auto n = stream->send(std::span(data).subspan(sent), t)) sent += *n;
      }
      if (auto n = accepted->receive(buf, t); n && *n > 0) {
        std::size_t off = 0;
        while (off < *n) {
          auto m = accepted->send(std::span(buf).subspan(off, *n - off), t);
          if (!m) break;
          off += *m;
        }
        EXPECT_EQ(off, *n);  // the echo's send buffer (1 MiB) always has room here
      }
      if (auto n = stream->receive(buf, t); n) back.insert(back.end(), buf.begin(), buf.begin() + *n);
      return back.size() >= data.size();
    }));
    EXPECT_EQ(back, data);
    stream->close(Stack::now());
    accepted->close(Stack::now());
    listener->close();
  }
  {
    // UDP both ways.
    auto a = server_->udp().open();
    ASSERT_FALSE(a->bind({{}, 5000}));
    auto b = client_->udp().open();
    const auto msg = pattern(1000);
    ASSERT_FALSE(b->send_to(msg, {server_ip, 5000}, Stack::now()));
    std::vector<std::byte> got(2000);
    std::optional<udp::RecvInfo> info;
    ASSERT_TRUE(pump([&] {
      if (auto r = a->recv_from(got)) info = *r;
      return info.has_value();
    }));
    EXPECT_EQ(info->length, msg.size());
    EXPECT_TRUE(std::equal(msg.begin(), msg.end(), got.begin()));
  }
  // Every buffer back once the closes have gone through (FIN, ACK: the
  // client's side waits in TIME-WAIT, which holds no buffer).
  EXPECT_TRUE(pump([&] { return server_->buffers_in_use() == 0 && client_->buffers_in_use() == 0; }))
      << server_->buffers_in_use() << " / " << client_->buffers_in_use();
  EXPECT_GT(server_->loop_counters().busy_turns, 0u);
  EXPECT_EQ(server_->loop_counters().sleeps, 0u);  // busy mode never sleeps
  const std::string counters = server_->format_counters();
  EXPECT_NE(counters.find("frames received"), std::string::npos) << counters;
}

// Sends inside nested batches stay out of the peer's view until the
// outermost batch ends (the client's next_deadline() says "now" meanwhile),
// then all arrive in order; over a memif with checksums=off at both ends.
TEST_F(StackPair, BatchedSendsShowWhenTheOutermostBatchEnds) {
  open("&checksums=off");
  const auto server_ip = *wire::Ipv4Addr::parse("198.18.0.1");
  {
    auto a = server_->udp().open();
    ASSERT_FALSE(a->bind({{}, 5000}));
    auto b = client_->udp().open();
    std::array<std::byte, 64> got{};
    // The first datagram resolves the server's address.
    const auto first = pattern(40);
    ASSERT_FALSE(b->send_to(first, {server_ip, 5000}, Stack::now()));
    ASSERT_TRUE(pump([&] { return a->recv_from(got).has_value(); }));
    EXPECT_GT(client_->next_deadline(), Nanos{0});  // nothing held yet
    std::vector<std::vector<std::byte>> msgs;
    for (int i = 0; i < 5; ++i) {
      auto m = pattern(10 + static_cast<std::size_t>(i));
      m[0] = static_cast<std::byte>(i);
      msgs.push_back(m);
    }
    {
      auto outer = client_->batch();
      {
        auto inner = client_->batch();
        for (int i = 0; i < 3; ++i)
          ASSERT_FALSE(b->send_to(msgs[static_cast<std::size_t>(i)], {server_ip, 5000}, Stack::now()));
      }
      for (int i = 3; i < 5; ++i)
        ASSERT_FALSE(b->send_to(msgs[static_cast<std::size_t>(i)], {server_ip, 5000}, Stack::now()));
      EXPECT_EQ(client_->next_deadline(), Nanos{0});
      for (int turn = 0; turn < 10; ++turn) server_->poll(Stack::now());
      EXPECT_EQ(a->queued(), 0u);  // held, the inner batch's end notwithstanding
    }
    std::size_t n = 0;
    ASSERT_TRUE(pump([&] {
      while (auto r = a->recv_from(got)) {
        EXPECT_EQ(r->length, msgs[n].size());
        EXPECT_TRUE(std::equal(msgs[n].begin(), msgs[n].end(), got.begin())) << "datagram " << n;
        ++n;
      }
      return n == msgs.size();
    }));
  }
  EXPECT_TRUE(pump([&] { return server_->buffers_in_use() == 0 && client_->buffers_in_use() == 0; }))
      << server_->buffers_in_use() << " / " << client_->buffers_in_use();
}

// Adaptive mode on an idle stack: each turn past `spin` sleeps (here at
// most 1 ms, five turns: the only test here that sleeps, because sleeping is
// what it checks); busy mode on the same stack never does.
TEST_F(StackPair, AdaptiveLoopSleepsWhenIdleAndBusyLoopNever) {
  open();
  server_.reset();  // the client alone: nothing will arrive
  const LoopConfig adaptive{LoopMode::kAdaptive, 0ns, 1ms};
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(client_->run_once(adaptive));
  EXPECT_EQ(client_->loop_counters().turns, 5u);
  EXPECT_EQ(client_->loop_counters().sleeps, 5u);
  EXPECT_GT(client_->loop_counters().slept, 0ns);
  EXPECT_LE(client_->loop_counters().slept, 5 * 20ms);  // bounded by max_sleep (and the scheduler)
  const LoopConfig spin_long{LoopMode::kAdaptive, 10s, 1ms};
  for (int i = 0; i < 5; ++i) client_->run_once(spin_long);  // created less than `spin` ago: no sleep
  const LoopConfig busy{LoopMode::kBusy};
  for (int i = 0; i < 5; ++i) client_->run_once(busy);
  EXPECT_EQ(client_->loop_counters().sleeps, 5u);
  EXPECT_EQ(client_->loop_counters().turns, 15u);
}

}  // namespace
}  // namespace usnet
