// A shared-memory arena: one memfd holding a header page and a set of named
// regions, each page-aligned and with an unmapped guard page before and after
// it, so a stray access past a region faults instead of corrupting a
// neighbour. A second process maps the same arena from the fd (inherited
// across fork or passed over a Unix socket) with Arena::attach().
//
// Layout of the memfd (and of the mapping, which mirrors it byte for byte):
//   page 0        header (below); never mapped by an Arena
//   page 1        guard
//   region 0      whole pages
//   guard page    shared by the region before and the region after it
//   region 1 ...  and so on; the file ends with the last region's guard page
// The whole range is first reserved PROT_NONE, then each region is mapped
// MAP_SHARED|MAP_FIXED over its part, so the header and guard pages are never
// accessible through the mapping.
//
// Header (page 0, integers big-endian like the rest of usnet's formats):
//   0  magic "USNARENA" (8)     8  version u32 (1)     12 region count u32
//   16 file size u64            24 page size u64
//   32 table of kMaxRegions entries of 40 bytes each:
//        +0 name, NUL-padded, at most kMaxRegionName bytes then a NUL (24)
//        +24 offset u64         +32 size in bytes u64
//
// The fd: created with MFD_CLOEXEC, so it is inherited by a forked child and
// can be passed over a Unix socket (SCM_RIGHTS), but does not leak into
// programs the process execs; a caller that execs a helper which should keep
// it clears FD_CLOEXEC on a dup on purpose. The memfd is sealed against
// shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) once
// sized, so no process sharing it can truncate it under another's mapping
// (which would turn its accesses into SIGBUS); attach() refuses an fd that
// is not sealed against shrinking.
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
  // nothing is mapped; so does an fd not sealed against shrinking, or one
  // whose file size or page size differs from the header's. The fd is
  // duplicated (close-on-exec); the caller keeps its own. Errno of a failed
  // syscall otherwise (EBADF for a bad fd).
  static Expected<Arena, std::error_code> attach(int fd);

  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();  // unmaps and closes the fd

  int fd() const noexcept { return fd_; }
  std::size_t region_count() const noexcept { return regions_.size(); }
  const RegionInfo& region_info(std::size_t i) const { return regions_.at(i); }
  // Empty span if i >= region_count().
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
