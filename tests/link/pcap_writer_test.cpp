#include "usnet/link/pcap_writer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/hex.hpp"

namespace usnet::link {
namespace {

const std::array<const char*, 10> kFrames = {"arp_request", "arp_reply", "icmp_echo", "udp_dns_port",
                                             "tcp_syn",     "tcp_data",  "vlan_udp",  "ipv6_ns",
                                             "ipv6_echo",   "ipv6_udp"};

std::string temp_path(const char* tag) {
  return "/tmp/usnet-pcap-" + std::to_string(::getpid()) + "-" + tag + ".pcap";
}

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = ::pclose(p);
    if (status != 0) out += "\n[exit status " + std::to_string(status) + "]";
  }
  return out;
}

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(PcapWriter, WritesClassicHeaderAndRecords) {
  auto path = temp_path("hdr");
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w) << w.error().message();
    auto frame = test::reference_packet("frames.txt", "icmp_echo");
    ASSERT_FALSE(w->write(frame, std::chrono::seconds(1700000000) + std::chrono::nanoseconds(123)));
    EXPECT_EQ(w->frames_written(), 1u);
  }
  auto bytes = read_file(path);
  ::unlink(path.c_str());
  auto frame = test::reference_packet("frames.txt", "icmp_echo");
  ASSERT_EQ(bytes.size(), 24u + 16u + frame.size());
  EXPECT_EQ(bytes[0], 0x4d);  // nanosecond magic, little-endian
  EXPECT_EQ(bytes[3], 0xa1);
  EXPECT_EQ(bytes[20], 1);                  // LINKTYPE_ETHERNET
  EXPECT_EQ(bytes[24 + 4], 123);            // ts_nsec
  EXPECT_EQ(bytes[24 + 8], frame.size());   // incl_len
  EXPECT_EQ(bytes[24 + 12], frame.size());  // orig_len
}

TEST(PcapWriter, SnapLengthCutsFramesButKeepsOriginalLength) {
  auto path = temp_path("snap");
  auto frame = test::reference_packet("frames.txt", "ipv6_udp");
  {
    auto w = PcapWriter::open(path, 32);
    ASSERT_TRUE(w);
    ASSERT_FALSE(w->write(frame, std::chrono::nanoseconds(0)));
  }
  auto bytes = read_file(path);
  ::unlink(path.c_str());
  ASSERT_EQ(bytes.size(), 24u + 16u + 32u);
  EXPECT_EQ(bytes[24 + 8], 32);
  EXPECT_EQ(bytes[24 + 12], frame.size());
}

TEST(PcapWriter, OpenReportsMissingDirectory) {
  auto w = PcapWriter::open("/nonexistent-dir/x.pcap");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), std::errc::no_such_file_or_directory);
}

// /dev/full fails every write with ENOSPC: the error is reported, and the
// writer refuses further frames rather than writing after a partial record.
TEST(PcapWriter, WriteErrorIsReportedAndFinal) {
  auto w = PcapWriter::open("/dev/full");
  ASSERT_TRUE(w) << "/dev/full: " << w.error().message();  // the header is buffered, so open succeeds
  std::vector<std::byte> frame(70000, std::byte{0x42});    // larger than stdio's buffer
  auto ec = w->write(frame, std::chrono::nanoseconds(0));
  EXPECT_EQ(ec, std::errc::no_space_on_device);
  EXPECT_EQ(w->write(frame, std::chrono::nanoseconds(0)), std::errc::bad_file_descriptor);
  EXPECT_EQ(w->frames_written(), 0u);
}

// The acceptance rule: tshark reads every frame we write with no
// malformed-packet warning.
TEST(PcapWriter, TsharkReadsEveryFrameWithoutMalformedPackets) {
  ASSERT_EQ(::access("/usr/bin/tshark", X_OK), 0) << "tshark is missing: run scripts/install-deps";
  auto path = temp_path("tshark");
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w);
    std::int64_t t = 1'700'000'000'000'000'000;
    for (const char* name : kFrames) {
      auto frame = test::reference_packet("frames.txt", name);
      ASSERT_FALSE(frame.empty());
      ASSERT_FALSE(w->write(frame, std::chrono::nanoseconds(t += 1000)));
    }
  }
  // One line per frame; -z expert lists any malformed or error-level finding.
  std::string summary = run("/usr/bin/tshark -n -r " + path + " 2>&1");
  std::string expert = run("/usr/bin/tshark -n -q -r " + path + " -z expert,error 2>&1");
  ::unlink(path.c_str());
  // Count frame lines ("    3 0.000002 ..."); tshark also warns on stderr when run as root.
  int lines = 0;
  std::size_t pos = 0;
  while (pos < summary.size()) {
    std::size_t end = summary.find('\n', pos);
    if (end == std::string::npos) end = summary.size();
    std::string_view line(summary.data() + pos, end - pos);
    std::size_t first = line.find_first_not_of(' ');
    if (first != std::string_view::npos && line[first] >= '1' && line[first] <= '9') ++lines;
    pos = end + 1;
  }
  EXPECT_EQ(lines, static_cast<int>(kFrames.size())) << summary;
  EXPECT_EQ(summary.find("Malformed"), std::string::npos) << summary;
  EXPECT_EQ(expert.find("Malformed"), std::string::npos) << expert;
  EXPECT_EQ(expert.find("Errors ("), std::string::npos) << expert;
  EXPECT_EQ(summary.find("[exit status"), std::string::npos) << summary;
}

}  // namespace
}  // namespace usnet::link
