// A shared-memory arena: one memfd holding a header page and a set of named
// regions, each page-aligned and with an unmapped guard page before and after
// it, so a stray access past a region faults instead of corrupting a
// neighbour. A second process maps the same arena from the fd (inherited
// across fork or passed over a Unix socket) with Arena::attach().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "usnet/util/expected.hpp"

namespace usnet::mem {

struct RegionSpec {
  std::string name;   // at most kMaxRegionName bytes
  std::size_t bytes;  // rounded up to whole pages; must be > 0
};

struct RegionInfo {
  std::string name;
  std::size_t offset;  // from the start of the mapping (and of the memfd)
  std::size_t bytes;   // whole pages
};

class Arena {
 public:
  static constexpr std::size_t kMaxRegions = 32;
  static constexpr std::size_t kMaxRegionName = 23;

  // Creates the memfd, sizes it and maps every region read-write.
  // Errors: EINVAL for a bad spec (no regions, too many, empty or duplicate
  // or over-long name, zero size, total overflow); errno of a failed syscall.
  static Expected<Arena, std::error_code> create(std::string_view name, std::span<const RegionSpec> regions);

  // Maps an arena created by another process. The header is untrusted input:
  // any inconsistency (magic, version, region count, offsets or sizes not
  // page-aligned, overlapping, or past the memfd's size) gives EBADMSG and
  // nothing is mapped. The fd is duplicated; the caller keeps its own.
  static Expected<Arena, std::error_code> attach(int fd);

  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();  // unmaps and closes the fd

  int fd() const noexcept { return fd_; }
  std::size_t region_count() const noexcept { return regions_.size(); }
  const RegionInfo& region_info(std::size_t i) const { return regions_.at(i); }
  std::span<std::byte> region(std::size_t i) const noexcept;
  // Empty span if there is no region called `name`.
  std::span<std::byte> region(std::string_view name) const noexcept;
  std::size_t mapped_bytes() const noexcept { return map_len_; }

  static std::size_t page_size() noexcept;

 private:
  Arena() = default;
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t map_len_ = 0;
  std::vector<RegionInfo> regions_;
};

}  // namespace usnet::mem
