#include "usnet/mem/arena.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "usnet/util/bytes.hpp"

namespace usnet::mem {

namespace {

// The header format (documented in arena.hpp).
constexpr std::array<char, 8> kMagic = {'U', 'S', 'N', 'A', 'R', 'E', 'N', 'A'};
constexpr std::uint32_t kVersion = 1;
struct HeaderOff {
  static constexpr std::size_t kMagic = 0, kVersion = 8, kCount = 12, kFileSize = 16, kPageSize = 24,
                               kTable = 32;
};
struct EntryOff {
  static constexpr std::size_t kName = 0, kOffset = 24, kBytes = 32;
};
constexpr std::size_t kNameField = Arena::kMaxRegionName + 1;
constexpr std::size_t kEntryLen = 40;
constexpr std::size_t kHeaderLen = HeaderOff::kTable + Arena::kMaxRegions * kEntryLen;
static_assert(EntryOff::kName + kNameField == EntryOff::kOffset);
static_assert(kHeaderLen <= 4096, "the header must fit in the smallest page");

constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::error_code errno_code() noexcept { return {errno, std::system_category()}; }
std::error_code bad_spec() noexcept { return std::make_error_code(std::errc::invalid_argument); }
std::error_code bad_header() noexcept { return std::make_error_code(std::errc::bad_message); }

// The largest size an off_t (and so ftruncate/mmap offsets) can describe.
constexpr std::size_t kMaxFileSize = static_cast<std::size_t>(std::numeric_limits<off_t>::max());

// Rounds `n` up to whole pages; false on overflow.
bool round_to_pages(std::size_t n, std::size_t page, std::size_t& out) noexcept {
  const std::size_t rem = n % page;
  if (rem == 0) {
    out = n;
    return true;
  }
  return !__builtin_add_overflow(n, page - rem, &out);
}

bool valid_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= Arena::kMaxRegionName && name.find('\0') == std::string_view::npos;
}

bool has_duplicate_name(const std::vector<RegionInfo>& regions) noexcept {
  for (std::size_t i = 0; i < regions.size(); ++i) {
    for (std::size_t j = i + 1; j < regions.size(); ++j) {
      if (regions[i].name == regions[j].name) return true;
    }
  }
  return false;
}

std::array<std::byte, kHeaderLen> encode_header(const std::vector<RegionInfo>& regions, std::size_t file_size,
                                                std::size_t page) noexcept {
  std::array<std::byte, kHeaderLen> h{};
  std::memcpy(h.data() + HeaderOff::kMagic, kMagic.data(), kMagic.size());
  store_be32(h.data() + HeaderOff::kVersion, kVersion);
  store_be32(h.data() + HeaderOff::kCount, static_cast<std::uint32_t>(regions.size()));
  store_be64(h.data() + HeaderOff::kFileSize, file_size);
  store_be64(h.data() + HeaderOff::kPageSize, page);
  for (std::size_t i = 0; i < regions.size(); ++i) {
    std::byte* e = h.data() + HeaderOff::kTable + i * kEntryLen;
    std::memcpy(e + EntryOff::kName, regions[i].name.data(), regions[i].name.size());  // rest stays NUL
    store_be64(e + EntryOff::kOffset, regions[i].offset);
    store_be64(e + EntryOff::kBytes, regions[i].bytes);
  }
  return h;
}

// The header comes from another process: every field is checked before any
// of it is used, and the result is built in private memory.
bool decode_header(const std::array<std::byte, kHeaderLen>& h, std::size_t file_size, std::size_t page,
                   std::vector<RegionInfo>& out) {
  if (std::memcmp(h.data() + HeaderOff::kMagic, kMagic.data(), kMagic.size()) != 0) return false;
  if (load_be32(h.data() + HeaderOff::kVersion) != kVersion) return false;
  if (load_be64(h.data() + HeaderOff::kFileSize) != file_size) return false;
  if (load_be64(h.data() + HeaderOff::kPageSize) != page) return false;
  const std::uint32_t count = load_be32(h.data() + HeaderOff::kCount);
  if (count == 0 || count > Arena::kMaxRegions) return false;
  if (file_size % page != 0) return false;

  std::vector<RegionInfo> regions;
  regions.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::byte* e = h.data() + HeaderOff::kTable + i * kEntryLen;
    std::array<char, kNameField> name{};
    std::memcpy(name.data(), e + EntryOff::kName, kNameField);
    const std::size_t name_len = strnlen(name.data(), kNameField);
    if (name_len == 0 || name_len == kNameField) return false;  // empty or not NUL-terminated
    const std::uint64_t offset = load_be64(e + EntryOff::kOffset);
    const std::uint64_t bytes = load_be64(e + EntryOff::kBytes);
    if (offset % page != 0 || bytes % page != 0 || bytes == 0) return false;
    // Header page, then a guard page, before any region.
    if (offset < 2 * page || offset > file_size) return false;
    // Region and its trailing guard page inside the file (written so that
    // nothing can overflow: offset <= file_size was checked above).
    if (bytes > file_size - offset || page > file_size - offset - bytes) return false;
    regions.push_back(RegionInfo{std::string(name.data(), name_len), offset, bytes});
  }
  // No two regions may overlap, and a guard page must separate any two.
  for (std::size_t i = 0; i < regions.size(); ++i) {
    for (std::size_t j = i + 1; j < regions.size(); ++j) {
      const RegionInfo& a = regions[i];
      const RegionInfo& b = regions[j];
      const bool a_first = a.offset + a.bytes + page <= b.offset;  // all terms <= file_size + page
      const bool b_first = b.offset + b.bytes + page <= a.offset;
      if (!a_first && !b_first) return false;
    }
  }
  if (has_duplicate_name(regions)) return false;
  out = std::move(regions);
  return true;
}

// Reserves the whole file's range without access, then maps each region
// over its part, so guard pages and the header stay PROT_NONE.
Expected<std::byte*, std::error_code> map_regions(int fd, std::size_t file_size,
                                                  const std::vector<RegionInfo>& regions) noexcept {
  void* base = mmap(nullptr, file_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return unexpected(errno_code());
  auto* bytes = static_cast<std::byte*>(base);
  for (const RegionInfo& r : regions) {
    void* p = mmap(bytes + r.offset, r.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                   static_cast<off_t>(r.offset));
    if (p == MAP_FAILED) {
      const std::error_code ec = errno_code();
      munmap(base, file_size);
      return unexpected(ec);
    }
  }
  return bytes;
}

}  // namespace

std::size_t Arena::page_size() noexcept {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

Expected<Arena, std::error_code> Arena::create(std::string_view name, std::span<const RegionSpec> specs) {
  const std::size_t page = page_size();
  if (specs.empty() || specs.size() > kMaxRegions) return unexpected(bad_spec());

  // Lay out: header page, guard, region, guard, region, ..., guard.
  std::vector<RegionInfo> regions;
  regions.reserve(specs.size());
  std::size_t end = 2 * page;  // just past the first guard page
  for (const RegionSpec& s : specs) {
    std::size_t bytes = 0;
    if (!valid_name(s.name) || s.bytes == 0 || !round_to_pages(s.bytes, page, bytes)) {
      return unexpected(bad_spec());
    }
    regions.push_back(RegionInfo{s.name, end, bytes});
    std::size_t next = 0;
    if (__builtin_add_overflow(end, bytes, &next) || __builtin_add_overflow(next, page, &next)) {
      return unexpected(bad_spec());
    }
    end = next;
  }
  if (end > kMaxFileSize || has_duplicate_name(regions)) return unexpected(bad_spec());
  const std::size_t file_size = end;

  Arena a;
  const std::string fd_name = "usnet:" + std::string(name.substr(0, 200));
  a.fd_ = memfd_create(fd_name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (a.fd_ < 0) return unexpected(errno_code());
  if (ftruncate(a.fd_, static_cast<off_t>(file_size)) != 0) return unexpected(errno_code());
  const auto header = encode_header(regions, file_size, page);
  const ssize_t written = pwrite(a.fd_, header.data(), header.size(), 0);
  if (written < 0) return unexpected(errno_code());
  if (static_cast<std::size_t>(written) != header.size())
    return unexpected(std::make_error_code(std::errc::io_error));
  if (fcntl(a.fd_, F_ADD_SEALS, kSeals) != 0) return unexpected(errno_code());

  auto base = map_regions(a.fd_, file_size, regions);
  if (!base) return unexpected(base.error());
  a.base_ = *base;
  a.map_len_ = file_size;
  a.regions_ = std::move(regions);
  return a;
}

Expected<Arena, std::error_code> Arena::attach(int fd) {
  const std::size_t page = page_size();
  // Without F_SEAL_SHRINK the other side could truncate the file under our
  // mapping and turn our accesses into SIGBUS. The seal is checked before
  // the size: once on, the file cannot shrink below what fstat says.
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (static_cast<unsigned>(seals) & F_SEAL_SHRINK) == 0) {
    struct stat probe {};
    if (fstat(fd, &probe) != 0) return unexpected(errno_code());  // EBADF for a bad fd, as before
    return unexpected(bad_header());
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) return unexpected(errno_code());
  if (!S_ISREG(st.st_mode) || st.st_size < 0) return unexpected(bad_header());
  const auto file_size = static_cast<std::size_t>(st.st_size);
  if (file_size < 2 * page) return unexpected(bad_header());

  // pread rather than a mapping of the header: a copy in private memory that
  // the other side cannot change between our checks and our use.
  std::array<std::byte, kHeaderLen> header{};
  const ssize_t got = pread(fd, header.data(), header.size(), 0);
  if (got < 0) return unexpected(errno_code());
  if (static_cast<std::size_t>(got) != header.size()) return unexpected(bad_header());

  std::vector<RegionInfo> regions;
  if (!decode_header(header, file_size, page, regions)) return unexpected(bad_header());

  Arena a;
  a.fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (a.fd_ < 0) return unexpected(errno_code());
  auto base = map_regions(a.fd_, file_size, regions);
  if (!base) return unexpected(base.error());
  a.base_ = *base;
  a.map_len_ = file_size;
  a.regions_ = std::move(regions);
  return a;
}

Arena::Arena(Arena&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      map_len_(std::exchange(other.map_len_, 0)),
      regions_(std::move(other.regions_)) {
  other.regions_.clear();
}

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    Arena old(std::move(*this));  // released at the end of this scope
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    map_len_ = std::exchange(other.map_len_, 0);
    regions_ = std::move(other.regions_);
    other.regions_.clear();
  }
  return *this;
}

Arena::~Arena() {
  if (base_ != nullptr) munmap(base_, map_len_);
  if (fd_ >= 0) close(fd_);
}

std::span<std::byte> Arena::region(std::size_t i) const noexcept {
  if (i >= regions_.size()) return {};
  return {base_ + regions_[i].offset, regions_[i].bytes};
}

std::span<std::byte> Arena::region(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < regions_.size(); ++i) {
    if (regions_[i].name == name) return region(i);
  }
  return {};
}

}  // namespace usnet::mem
