// The statistics region: a small shared-memory file each Stack publishes
// (read-only for everyone else) so that `usnet stat` can show a running
// process's counters, drops by reason, connections and pool use, as
// netstat -s and ss do for the kernel.
//
// File: /dev/shm/usnet-stats.PID.N (N: the process's Nth stack), mode 0644,
// removed when the stack goes. A killed process leaves it behind: readers
// see its pid is gone and say so, and the next stack made on the machine
// removes every region whose process is gone.
//
// Layout (host byte order, version 1):
//   0   magic "USNETST1"          (8 bytes)
//   8   version (1)               u32
//   12  header bytes (64)         u32
//   16  text capacity             u32   bytes available after the header
//   20  pid                       u32
//   24  sequence                  u64   odd while the writer is writing
//   32  updated, ns (CLOCK_MONOTONIC) u64
//   40  text length               u32   <= capacity
//   44  name                      20 bytes, NUL-padded (StackConfig::name)
//   64  text                      "key value" lines, then the counters as
//                                 netstat -s prints them (see below)
//
// The text: first the lines a program reads, one "key value" each:
//   pool.buffers N / pool.buffer_size N / pool.in_use N
//   tcp.connections N / link NAME
//   conn LOCAL REMOTE STATE rx=BYTES tx=BYTES retrans=N srtt_us=N
// then a line "--" and the stack's format_counters() text.
//
// A reader trusts nothing in the file: the sizes are checked against the
// file's real size, a sequence that moves while it copies means it copies
// again (a few times, then it says the writer is too busy), and bytes that
// are not printable ASCII are shown as '?'.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/util/expected.hpp"

namespace usnet {

inline constexpr char kStatsDir[] = "/dev/shm";
inline constexpr char kStatsPrefix[] = "usnet-stats.";
inline constexpr std::size_t kStatsHeaderBytes = 64;
inline constexpr std::size_t kStatsRegionBytes = 256 * 1024;

// The writer side, owned by a Stack.
class StatsWriter {
 public:
  // Creates /dev/shm/usnet-stats.PID.N for the first free N.
  static Expected<StatsWriter, std::error_code> create(std::string_view name);
  StatsWriter(StatsWriter&& o) noexcept;
  StatsWriter& operator=(StatsWriter&& o) noexcept;
  StatsWriter(const StatsWriter&) = delete;
  StatsWriter& operator=(const StatsWriter&) = delete;
  ~StatsWriter();  // unmaps and removes the file

  // Publishes `text` (cut at the capacity, at a line's end).
  void publish(std::string_view text, link::Nanos now) noexcept;
  const std::string& path() const noexcept { return path_; }

 private:
  StatsWriter() = default;
  void reset() noexcept;
  std::string path_;
  std::byte* base_ = nullptr;
};

// One snapshot read from a region.
struct StatsSnapshot {
  std::uint32_t pid = 0;
  std::string name;
  link::Nanos updated{0};
  bool process_alive = false;
  std::string text;  // printable ASCII and '\n' only
};

// Parses a region's bytes (a copy, or the mapping itself): the sizes,
// the sequence check and the text's characters. `bytes` is untrusted.
// EINVAL with `why` filled for anything malformed; EAGAIN when the writer
// was mid-write (odd sequence).
Expected<StatsSnapshot, std::error_code> parse_stats(std::span<const std::byte> bytes,
                                                     std::string* why = nullptr);

// Opens and reads one region file (read-only mapping, retried while the
// writer is mid-write). Errors carry a message for a person.
Expected<StatsSnapshot, std::string> read_stats(const std::string& path);

// The region files present now, sorted.
std::vector<std::string> list_stats_files();

// The "key value" lines of a snapshot's text (those before "--").
std::vector<std::pair<std::string, std::string>> stats_values(const StatsSnapshot& s);

}  // namespace usnet
