#include "usnet/link/pcap_tap.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/hex.hpp"
#include "usnet/link/memory_link.hpp"
#include "usnet/mem/arena.hpp"

namespace usnet::link {
namespace {

using namespace std::chrono_literals;

// A small pool over private page-aligned memory: 2 segments of 8 buffers.
class TestPool {
 public:
  TestPool() {
    segment_ = std::max<std::size_t>(mem::Arena::page_size(), 16384);
    bytes_ = segment_ * 2;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    memory_ = static_cast<std::byte*>(p);
    mem::PoolConfig c;
    c.buffer_size = segment_ / 8;
    c.segment_bytes = segment_;
    c.max_segments = 2;
    auto pool = mem::PacketPool::create(c, std::span(memory_, bytes_));
    EXPECT_TRUE(pool);
    pool_.emplace(std::move(*pool));
    owner = *pool_->add_owner({0, 16});
  }
  ~TestPool() {
    pool_.reset();
    ::munmap(memory_, bytes_);
  }
  TestPool(const TestPool&) = delete;
  TestPool& operator=(const TestPool&) = delete;
  mem::PacketPool& operator*() { return *pool_; }
  mem::PacketPool* operator->() { return &*pool_; }

  mem::OwnerId owner;

 private:
  std::size_t segment_ = 0, bytes_ = 0;
  std::byte* memory_ = nullptr;
  std::optional<mem::PacketPool> pool_;
};

const std::array<const char*, 6> kFrames = {"arp_request",  "arp_reply", "icmp_echo",
                                            "udp_dns_port", "tcp_syn",   "ipv6_echo"};

std::string temp_path(const char* tag) {
  return "/tmp/usnet-pcaptap-" + std::to_string(::getpid()) + "-" + tag + ".pcap";
}

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    if (::pclose(p) != 0) out += "\n[exit status]";
  }
  return out;
}

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint32_t le32(const std::vector<unsigned char>& b, std::size_t at) {
  return b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (static_cast<std::uint32_t>(b[at + 3]) << 24);
}

LinkInfo info() {
  LinkInfo i;
  i.name = "mem:tap";
  i.mtu = 1500;
  i.offloads = Offload::kNoChecksums;
  return i;
}

Frame make_frame(TestPool& pool, const std::vector<std::byte>& data, std::uint16_t offset = 0) {
  auto index = pool->alloc(pool.owner);
  EXPECT_TRUE(index);
  std::copy(data.begin(), data.end(), pool->buffer(*index).begin() + offset);
  return Frame{*index, static_cast<std::uint32_t>(data.size()), offset, 0};
}

struct Tapped {
  MemoryLink* mem;
  std::unique_ptr<PcapTap> tap;
};

Tapped make_tap(TestPool& pool, const std::string& path, Nanos epoch = 0ns, std::size_t limit = 8) {
  auto inner = std::make_unique<MemoryLink>(*pool, pool.owner, info(), limit);
  MemoryLink* raw = inner.get();
  auto tap = PcapTap::open(std::move(inner), *pool, path, epoch);
  EXPECT_TRUE(tap) << path;
  return {raw, tap ? std::move(*tap) : nullptr};
}

TEST(PcapTap, PassesTheInnerLinkThroughUnchanged) {
  TestPool pool;
  auto path = temp_path("pass");
  auto [mem, tap] = make_tap(pool, path);
  ::unlink(path.c_str());
  EXPECT_EQ(&tap->info(), &mem->info());
  EXPECT_EQ(&tap->counters(), &mem->counters());
  EXPECT_EQ(&tap->inner(), mem);
  EXPECT_EQ(tap->wait_fd(), -1);
  EXPECT_EQ(tap->next_deadline(), Nanos::max());

  ASSERT_TRUE(mem->inject_rx(test::from_hex("01 02 03")));
  std::array<Frame, 4> out{};
  ASSERT_EQ(tap->rx_burst(out, 5ns), 1u);
  auto b = pool->buffer(out[0].buffer).first(3);
  EXPECT_EQ(std::vector<std::byte>(b.begin(), b.end()), test::from_hex("01 02 03"));
  EXPECT_FALSE(pool->free(pool.owner, out[0].buffer));

  Frame f = make_frame(pool, test::from_hex("aa bb"), 6);
  ASSERT_EQ(tap->tx_burst(std::span(&f, 1), 6ns), 1u);
  EXPECT_EQ(mem->pop_tx(), test::from_hex("aa bb"));
  EXPECT_EQ(tap->counters().rx_frames, 1u);
  EXPECT_EQ(tap->counters().tx_frames, 1u);
  EXPECT_EQ(tap->frames_written(), 2u);
}

TEST(PcapTap, RecordsBothDirectionsWithOffsetTimestamps) {
  TestPool pool;
  auto path = temp_path("ts");
  {
    auto [mem, tap] = make_tap(pool, path, 1'700'000'000s);
    ASSERT_TRUE(mem->inject_rx(test::from_hex("11 22 33 44")));
    std::array<Frame, 1> out{};
    ASSERT_EQ(tap->rx_burst(out, 2s + 7ns), 1u);
    EXPECT_FALSE(pool->free(pool.owner, out[0].buffer));
    Frame f = make_frame(pool, test::from_hex("55 66"), 3);
    ASSERT_EQ(tap->tx_burst(std::span(&f, 1), 3s + 9ns), 1u);
    EXPECT_FALSE(tap->flush());
  }
  auto bytes = read_file(path);
  ::unlink(path.c_str());
  ASSERT_EQ(bytes.size(), 24u + 16u + 4u + 16u + 2u);
  EXPECT_EQ(le32(bytes, 24), 1'700'000'002u);  // seconds
  EXPECT_EQ(le32(bytes, 28), 7u);              // nanoseconds
  EXPECT_EQ(le32(bytes, 32), 4u);
  EXPECT_EQ(bytes[40], 0x11);
  EXPECT_EQ(le32(bytes, 44), 1'700'000'003u);
  EXPECT_EQ(le32(bytes, 48), 9u);
  EXPECT_EQ(le32(bytes, 52), 2u);
  EXPECT_EQ(bytes[60], 0x55);  // the frame's bytes, from its offset
  EXPECT_EQ(bytes[61], 0x66);
}

// Frames the inner link does not take stay the caller's and are not recorded;
// when the caller sends them again they are recorded once.
TEST(PcapTap, RecordsOnlyFramesTheInnerLinkTook) {
  TestPool pool;
  auto path = temp_path("taken");
  {
    auto [mem, tap] = make_tap(pool, path, 0ns, /*limit=*/2);
    std::array<Frame, 3> frames = {make_frame(pool, test::from_hex("01")),
                                   make_frame(pool, test::from_hex("02")),
                                   make_frame(pool, test::from_hex("03"))};
    ASSERT_EQ(tap->tx_burst(frames, 0ns), 2u);
    EXPECT_EQ(tap->frames_written(), 2u);
    EXPECT_EQ(mem->pop_tx(), test::from_hex("01"));
    ASSERT_EQ(tap->tx_burst(std::span(frames).subspan(2), 1ns), 1u);
    EXPECT_EQ(tap->frames_written(), 3u);
  }
  auto bytes = read_file(path);
  ::unlink(path.c_str());
  ASSERT_EQ(bytes.size(), 24u + 3 * 17u);
  EXPECT_EQ(bytes[40], 0x01);
  EXPECT_EQ(bytes[57], 0x02);
  EXPECT_EQ(bytes[74], 0x03);
}

// A capture that cannot be written must not break the link: /dev/full fails
// the first write that reaches the file; capture stops, traffic does not.
TEST(PcapTap, WriteFailureIsCountedAndCaptureStops) {
  TestPool pool;
  auto [mem, tap] = make_tap(pool, "/dev/full");
  ASSERT_TRUE(tap);
  std::vector<std::byte> frame(pool->buffer_size(), std::byte{0x42});
  std::array<Frame, 1> out{};
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(mem->inject_rx(frame));
    ASSERT_EQ(tap->rx_burst(out, Nanos(i)), 1u) << i;
    EXPECT_FALSE(pool->free(pool.owner, out[0].buffer));
    Frame f = make_frame(pool, frame);
    ASSERT_EQ(tap->tx_burst(std::span(&f, 1), Nanos(i)), 1u) << i;
    ASSERT_TRUE(mem->pop_tx());
  }
  EXPECT_EQ(tap->write_errors(), 1u);
  EXPECT_FALSE(tap->capturing());
  EXPECT_EQ(tap->last_error(), std::errc::no_space_on_device);
  EXPECT_LT(tap->frames_written(), 64u);
  EXPECT_EQ(tap->counters().rx_frames, 64u);
  EXPECT_EQ(tap->counters().tx_frames, 64u);
  EXPECT_TRUE(tap->flush());  // reports the error, never crashes
}

TEST(PcapTap, ClosedCaptureStillPassesFrames) {
  TestPool pool;
  auto path = temp_path("closed");
  auto [mem, tap] = make_tap(pool, path);
  tap->close();
  ::unlink(path.c_str());
  Frame f = make_frame(pool, test::from_hex("01"));
  ASSERT_EQ(tap->tx_burst(std::span(&f, 1), 0ns), 1u);
  EXPECT_EQ(mem->pop_tx(), test::from_hex("01"));
  EXPECT_EQ(tap->frames_written(), 0u);
  EXPECT_EQ(tap->write_errors(), 0u);
}

TEST(PcapTap, OpenReportsABadPath) {
  TestPool pool;
  auto tap = PcapTap::open(std::make_unique<MemoryLink>(*pool, pool.owner, info()), *pool,
                           "/nonexistent-dir/x.pcap");
  ASSERT_FALSE(tap);
  EXPECT_EQ(tap.error(), std::errc::no_such_file_or_directory);
}

// The rule: tshark reads the capture, every frame, none malformed.
TEST(PcapTap, TsharkReadsEveryFrameOfBothDirections) {
  ASSERT_EQ(::access("/usr/bin/tshark", X_OK), 0) << "tshark is missing: run scripts/install-deps";
  TestPool pool;
  auto path = temp_path("tshark");
  {
    auto [mem, tap] = make_tap(pool, path, 1'700'000'000s);
    std::array<Frame, 1> out{};
    Nanos now = 0ns;
    for (const char* name : kFrames) {
      auto bytes = test::reference_packet("frames.txt", name);
      ASSERT_FALSE(bytes.empty()) << name;
      ASSERT_TRUE(mem->inject_rx(bytes));
      ASSERT_EQ(tap->rx_burst(out, now += 1us), 1u);
      // Echo it back out: received frames and transmitted ones both land.
      ASSERT_EQ(tap->tx_burst(out, now += 1us), 1u);
      EXPECT_EQ(mem->pop_tx(), bytes);
    }
    EXPECT_EQ(tap->frames_written(), 2 * kFrames.size());
  }
  const std::string numbers = run("/usr/bin/tshark -n -r " + path + " -T fields -e frame.number 2>/dev/null");
  const std::string summary = run("/usr/bin/tshark -n -r " + path + " 2>&1");
  ::unlink(path.c_str());
  EXPECT_EQ(std::count(numbers.begin(), numbers.end(), '\n'), static_cast<long>(2 * kFrames.size()))
      << numbers;
  EXPECT_EQ(numbers.find("[exit status]"), std::string::npos) << numbers;
  EXPECT_EQ(summary.find("Malformed"), std::string::npos) << summary;
}

}  // namespace
}  // namespace usnet::link
