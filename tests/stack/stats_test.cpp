// The statistics region: what a writer publishes a reader reads back, and a
// reader refuses a malformed region with a reason instead of trusting it.
#include "usnet/stats.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace usnet {
namespace {

std::vector<std::byte> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

TEST(Stats, WhatIsPublishedIsRead) {
  auto w = StatsWriter::create("unit-test");
  ASSERT_TRUE(w) << w.error().message();
  const std::string path = w->path();
  EXPECT_TRUE(path.starts_with(std::string(kStatsDir) + "/" + kStatsPrefix + std::to_string(getpid()) + "."));
  // Before the first publish: an empty text.
  auto s = read_stats(path);
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->text, "");
  w->publish("pool.in_use 3\nconn a b ESTABLISHED\nlink memif:/x\n--\nNet:\n    1 frames\n", link::Nanos(42));
  s = read_stats(path);
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(s->name, "unit-test");
  EXPECT_EQ(s->updated, link::Nanos(42));
  EXPECT_TRUE(s->process_alive);
  const auto v = stats_values(*s);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], (std::pair<std::string, std::string>{"pool.in_use", "3"}));
  EXPECT_EQ(v[1], (std::pair<std::string, std::string>{"conn", "a b ESTABLISHED"}));
  EXPECT_EQ(v[2].first, "link");
  // A second writer in this process gets the next file; both are listed.
  auto w2 = StatsWriter::create("second");
  ASSERT_TRUE(w2);
  EXPECT_NE(w2->path(), path);
  const auto files = list_stats_files();
  EXPECT_NE(std::find(files.begin(), files.end(), path), files.end());
  EXPECT_NE(std::find(files.begin(), files.end(), w2->path()), files.end());
  // Text past the capacity is cut at a line's end.
  std::string big;
  while (big.size() < kStatsRegionBytes) big += "k 0123456789\n";
  w->publish(big, link::Nanos(1));
  s = read_stats(path);
  ASSERT_TRUE(s);
  EXPECT_LE(s->text.size(), kStatsRegionBytes - kStatsHeaderBytes);
  EXPECT_EQ(s->text.back(), '\n');
  // Moves hand the region on; it goes with its last owner.
  StatsWriter moved(std::move(*w));
  EXPECT_EQ(moved.path(), path);
  moved = std::move(*w2);  // the first region goes, the second moves in
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::exists(moved.path()));
  const std::string second = moved.path();
  { StatsWriter gone(std::move(moved)); }
  EXPECT_FALSE(std::filesystem::exists(second));
}

TEST(Stats, MalformedRegionsAreRefusedWithAReason) {
  auto w = StatsWriter::create("hostile");
  ASSERT_TRUE(w);
  w->publish("a 1\n", link::Nanos(5));
  const auto good = file_bytes(w->path());
  ASSERT_TRUE(parse_stats(good));
  const auto why_of = [](std::vector<std::byte> b) {
    std::string why;
    auto s = parse_stats(b, &why);
    EXPECT_FALSE(s);
    return s ? std::string("(parsed)") : why;
  };
  auto b = good;
  EXPECT_EQ(why_of(std::vector<std::byte>(good.begin(), good.begin() + 63)), "shorter than its header");
  b[0] = std::byte{'X'};
  EXPECT_EQ(why_of(b), "not a usnet statistics region (bad magic)");
  b = good;
  b[8] = std::byte{2};
  EXPECT_EQ(why_of(b), "unknown version");
  b = good;
  b[12] = std::byte{65};
  EXPECT_EQ(why_of(b), "bad header size");
  b = good;
  const std::uint32_t huge = 0xffffffffu;
  std::memcpy(b.data() + 16, &huge, 4);
  EXPECT_EQ(why_of(b), "text capacity past the end of the region");
  b = good;
  std::memcpy(b.data() + 40, &huge, 4);
  EXPECT_EQ(why_of(b), "text length past its capacity");
  // Mid-write (odd sequence): try again, not an error about the format.
  b = good;
  b[24] = static_cast<std::byte>(static_cast<unsigned>(b[24]) | 1u);
  EXPECT_EQ(parse_stats(b).error(), std::errc::resource_unavailable_try_again);
  // Control bytes and a terminal escape in the text are shown as '?'.
  b = good;
  b[64] = std::byte{0x1b};
  auto s = parse_stats(b);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->text, "? 1\n");

  // Through read_stats: a file that is not a region says so, with its path.
  const std::string junk = std::string(kStatsDir) + "/" + kStatsPrefix + "junk-" + std::to_string(getpid());
  std::ofstream(junk) << "not a region at all";
  auto r = read_stats(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), junk + ": 19 bytes is not the size of a statistics region");
  std::filesystem::resize_file(junk, kStatsRegionBytes);
  r = read_stats(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), junk + ": not a usnet statistics region (bad magic)");
  // A FIFO under a region's name is refused at once, not waited on.
  std::filesystem::remove(junk);
  ASSERT_EQ(::mkfifo(junk.c_str(), 0600), 0);
  r = read_stats(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), junk + ": not a regular file");
  std::filesystem::remove(junk);
  r = read_stats(junk);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("No such file"), std::string::npos) << r.error();
}

// A region whose process is gone (killed before it could remove it) is
// shown as gone, and removed by the next writer made.
TEST(Stats, RegionsOfGoneProcessesAreSweptAway) {
  std::string stale;
  {
    auto w = StatsWriter::create("doomed");
    ASSERT_TRUE(w);
    w->publish("a 1\n", link::Nanos(1));
    auto bytes = file_bytes(w->path());
    const std::uint32_t gone_pid = 0x7ffffff0;  // above pid_max: no such process
    std::memcpy(bytes.data() + 20, &gone_pid, 4);
    stale = std::string(kStatsDir) + "/" + kStatsPrefix + std::to_string(gone_pid) + ".0";
    std::ofstream(stale, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  // Another test process's stack may sweep it first; if not, it reads as gone.
  if (auto r = read_stats(stale); r) {
    EXPECT_FALSE(r->process_alive);
  } else {
    EXPECT_FALSE(std::filesystem::exists(stale)) << r.error();
  }
  auto w = StatsWriter::create("sweeper");
  ASSERT_TRUE(w);
  EXPECT_FALSE(std::filesystem::exists(stale));
}

}  // namespace
}  // namespace usnet
