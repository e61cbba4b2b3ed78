// The statistics region (see usnet/stats.hpp): written by a Stack, read by
// `usnet stat`.
#include "usnet/stats.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

namespace usnet {
namespace {

constexpr char kMagic[8] = {'U', 'S', 'N', 'E', 'T', 'S', 'T', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kOffVersion = 8, kOffHeaderBytes = 12, kOffCapacity = 16, kOffPid = 20, kOffSeq = 24,
                      kOffUpdated = 32, kOffTextLen = 40, kOffName = 44, kNameBytes = 20;
constexpr std::size_t kCapacity = kStatsRegionBytes - kStatsHeaderBytes;

template <typename T>
T load(std::span<const std::byte> b, std::size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

template <typename T>
void store(std::byte* base, std::size_t off, T v) {
  std::memcpy(base + off, &v, sizeof v);
}

std::atomic_ref<std::uint64_t> seq_of(std::byte* base) {
  // The region is page-aligned, so the sequence at offset 24 is 8-aligned.
  return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + kOffSeq));
}

bool pid_alive(std::uint32_t pid) {
  return pid != 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

std::error_code errno_code() { return {errno, std::generic_category()}; }

}  // namespace

Expected<StatsWriter, std::error_code> StatsWriter::create(std::string_view name) {
  const auto pid = static_cast<std::uint32_t>(::getpid());
  // Regions left by processes that are gone (killed, crashed) are removed
  // here, so they do not pile up. A region is only ever visible complete
  // (made under a temporary name, then linked into place), so a pid read
  // from it is the writer's.
  for (const auto& f : list_stats_files()) {
    if (auto old = read_stats(f); old && old->pid != 0 && !old->process_alive) ::unlink(f.c_str());
  }
  static std::atomic<std::uint32_t> made{0};
  const std::string tmp = std::string(kStatsDir) + "/.usnet-stats-tmp." + std::to_string(pid) + "." +
                          std::to_string(made.fetch_add(1, std::memory_order_relaxed));
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return unexpected(errno_code());
  void* p = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(kStatsRegionBytes)) == 0) {
    p = ::mmap(nullptr, kStatsRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  const auto ec = errno_code();
  ::close(fd);
  if (p == MAP_FAILED) {
    ::unlink(tmp.c_str());
    return unexpected(ec);
  }
  StatsWriter w;
  w.base_ = static_cast<std::byte*>(p);
  std::memcpy(w.base_, kMagic, sizeof kMagic);
  store<std::uint32_t>(w.base_, kOffVersion, kVersion);
  store<std::uint32_t>(w.base_, kOffHeaderBytes, kStatsHeaderBytes);
  store<std::uint32_t>(w.base_, kOffCapacity, static_cast<std::uint32_t>(kCapacity));
  store<std::uint32_t>(w.base_, kOffPid, pid);
  std::memcpy(w.base_ + kOffName, name.data(), std::min(name.size(), kNameBytes));
  // The first free name: link() fails with EEXIST on a taken one, so two
  // stacks (threads or processes) never share or replace a region.
  for (int n = 0; n < 1000; ++n) {
    const std::string path =
        std::string(kStatsDir) + "/" + kStatsPrefix + std::to_string(pid) + "." + std::to_string(n);
    if (::link(tmp.c_str(), path.c_str()) == 0) {
      ::unlink(tmp.c_str());
      w.path_ = path;
      return w;
    }
    if (errno != EEXIST) {
      const auto e = errno_code();
      ::unlink(tmp.c_str());
      return unexpected(e);
    }
  }
  ::unlink(tmp.c_str());
  return unexpected(std::make_error_code(std::errc::file_exists));
}

StatsWriter::StatsWriter(StatsWriter&& o) noexcept
    : path_(std::exchange(o.path_, std::string())), base_(std::exchange(o.base_, nullptr)) {}

StatsWriter& StatsWriter::operator=(StatsWriter&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::exchange(o.path_, std::string());
    base_ = std::exchange(o.base_, nullptr);
  }
  return *this;
}

StatsWriter::~StatsWriter() { reset(); }

void StatsWriter::reset() noexcept {
  if (base_ != nullptr) ::munmap(base_, kStatsRegionBytes);
  base_ = nullptr;
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void StatsWriter::publish(std::string_view text, link::Nanos now) noexcept {
  if (base_ == nullptr) return;
  if (text.size() > kCapacity) {
    text = text.substr(0, kCapacity);
    if (const auto nl = text.rfind('\n'); nl != std::string_view::npos) text = text.substr(0, nl + 1);
  }
  auto seq = seq_of(base_);
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s + 1, std::memory_order_relaxed);  // odd: writing
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(base_ + kStatsHeaderBytes, text.data(), text.size());
  store<std::uint64_t>(base_, kOffUpdated, static_cast<std::uint64_t>(now.count()));
  store<std::uint32_t>(base_, kOffTextLen, static_cast<std::uint32_t>(text.size()));
  seq.store(s + 2, std::memory_order_release);  // even: done
}

Expected<StatsSnapshot, std::error_code> parse_stats(std::span<const std::byte> b, std::string* why) {
  const auto bad = [why](const char* what) {
    if (why != nullptr) *why = what;
    return unexpected(std::make_error_code(std::errc::invalid_argument));
  };
  if (b.size() < kStatsHeaderBytes) return bad("shorter than its header");
  if (std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
    return bad("not a usnet statistics region (bad magic)");
  if (load<std::uint32_t>(b, kOffVersion) != kVersion) return bad("unknown version");
  if (load<std::uint32_t>(b, kOffHeaderBytes) != kStatsHeaderBytes) return bad("bad header size");
  const std::uint64_t capacity = load<std::uint32_t>(b, kOffCapacity);
  if (capacity > b.size() - kStatsHeaderBytes) return bad("text capacity past the end of the region");
  if (load<std::uint64_t>(b, kOffSeq) % 2 != 0)
    return unexpected(std::make_error_code(std::errc::resource_unavailable_try_again));
  StatsSnapshot s;
  s.pid = load<std::uint32_t>(b, kOffPid);
  s.updated = link::Nanos(static_cast<std::int64_t>(load<std::uint64_t>(b, kOffUpdated) & INT64_MAX));
  const std::uint64_t len = load<std::uint32_t>(b, kOffTextLen);
  if (len > capacity) return bad("text length past its capacity");
  for (std::size_t i = 0; i < kNameBytes; ++i) {
    const auto c = static_cast<char>(b[kOffName + i]);
    if (c == '\0') break;
    s.name += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  s.text.resize(len);
  for (std::size_t i = 0; i < len; ++i) {
    const auto c = static_cast<char>(b[kStatsHeaderBytes + i]);
    s.text[i] = (c == '\n' || (c >= 0x20 && c < 0x7f)) ? c : '?';
  }
  return s;
}

Expected<StatsSnapshot, std::string> read_stats(const std::string& path) {
  // O_NONBLOCK: a FIFO planted under a region's name must not hang us.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return unexpected(path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected(path + ": not a regular file");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size != kStatsRegionBytes) {
    ::close(fd);
    return unexpected(path + ": " + std::to_string(size) + " bytes is not the size of a statistics region");
  }
  // Read through a copy (pread), not a mapping: a file shrunk under a
  // mapping would fault. The copy is whole when the sequence it holds is
  // even and still the file's after the copy (seqlock).
  std::vector<std::byte> copy(size);
  std::string why;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const ssize_t n = ::pread(fd, copy.data(), size, 0);
    std::uint64_t seq_after = 0;
    if (n < 0 || ::pread(fd, &seq_after, sizeof seq_after, kOffSeq) < 0) {
      const std::string e = std::strerror(errno);
      ::close(fd);
      return unexpected(path + ": " + e);
    }
    auto s = parse_stats(std::span(copy).first(static_cast<std::size_t>(n)), &why);
    if (s && static_cast<std::size_t>(n) >= kOffSeq + 8 && load<std::uint64_t>(copy, kOffSeq) != seq_after) {
      s = unexpected(std::make_error_code(std::errc::resource_unavailable_try_again));
    }
    if (s) {
      ::close(fd);
      s->process_alive = pid_alive(s->pid);
      return *s;
    }
    if (s.error() != std::errc::resource_unavailable_try_again) {
      ::close(fd);
      return unexpected(path + ": " + why);
    }
    std::this_thread::yield();
  }
  ::close(fd);
  return unexpected(path + ": the writer kept changing it (tried 100 times)");
}

std::vector<std::string> list_stats_files() {
  std::vector<std::string> out;
  DIR* d = ::opendir(kStatsDir);
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    if (n.starts_with(kStatsPrefix)) out.push_back(std::string(kStatsDir) + "/" + std::string(n));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> stats_values(const StatsSnapshot& s) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view t = s.text;
  while (!t.empty()) {
    const auto nl = t.find('\n');
    const std::string_view line = t.substr(0, nl);
    t = nl == std::string_view::npos ? std::string_view{} : t.substr(nl + 1);
    if (line == "--") break;
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0) continue;
    out.emplace_back(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)));
  }
  return out;
}

}  // namespace usnet
