// Writes Ethernet frames to a file in the classic pcap format (not pcapng),
// nanosecond timestamps, LINKTYPE_ETHERNET, so that tcpdump, tshark and
// Wireshark read it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <system_error>

#include "usnet/util/expected.hpp"

namespace usnet::link {

class PcapWriter {
 public:
  static constexpr std::uint32_t kMagicNanoseconds = 0xa1b23c4d;
  static constexpr std::uint32_t kLinkTypeEthernet = 1;
  static constexpr std::uint32_t kDefaultSnapLen = 65535;

  // Creates (truncates) `path` and writes the file header.
  static Expected<PcapWriter, std::error_code> open(const std::string& path,
                                                    std::uint32_t snaplen = kDefaultSnapLen);

  PcapWriter(PcapWriter&& other) noexcept;
  PcapWriter& operator=(PcapWriter&& other) noexcept;
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;
  ~PcapWriter();

  // Appends one frame captured at `when` (time since the Unix epoch). Frames
  // longer than the snap length are cut, with their original length kept.
  // After a failed write the file is closed and every later call fails with
  // EBADF, so the file never holds a half-written record mid-stream.
  std::error_code write(std::span<const std::byte> frame, std::chrono::nanoseconds when);
  std::error_code flush();

  std::uint64_t frames_written() const noexcept { return frames_; }

 private:
  PcapWriter(std::FILE* f, std::uint32_t snaplen) : file_(f), snaplen_(snaplen) {}
  std::FILE* file_ = nullptr;
  std::uint32_t snaplen_ = kDefaultSnapLen;
  std::uint64_t frames_ = 0;
};

}  // namespace usnet::link
