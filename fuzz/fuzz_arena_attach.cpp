// Arena::attach reads a header written by another process: untrusted input.
// Input: byte 0 picks the file size (2 + byte0 % 32 pages), the rest is the
// start of the header page. The memfd is sealed as a real arena's is. If
// attach accepts it, every region must lie inside the file, be page-aligned,
// not overlap another, and be fully writable (a wrong mapping would fault).
// Seeds: headers of real arenas (one region of 1 page; regions of 1, 2 and
// 3 pages), input byte 0 = file pages - 2.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "usnet/mem/arena.hpp"

using usnet::mem::Arena;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t page = Arena::page_size();
  const std::size_t file_size = (2 + data[0] % 32) * page;
  const int fd = memfd_create("fuzz-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return 0;
  const std::size_t header_len = std::min(size - 1, page);
  if (ftruncate(fd, static_cast<off_t>(file_size)) != 0 ||
      pwrite(fd, data + 1, header_len, 0) != static_cast<ssize_t>(header_len) ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    close(fd);
    return 0;
  }
  if (auto arena = Arena::attach(fd)) {
    if (arena->mapped_bytes() != file_size) __builtin_trap();
    for (std::size_t i = 0; i < arena->region_count(); ++i) {
      const auto& info = arena->region_info(i);
      if (info.bytes == 0 || info.offset % page != 0 || info.bytes % page != 0) __builtin_trap();
      if (info.offset < 2 * page || info.offset + info.bytes + page > file_size) __builtin_trap();
      for (std::size_t j = 0; j < i; ++j) {
        const auto& other = arena->region_info(j);
        if (info.offset < other.offset + other.bytes && other.offset < info.offset + info.bytes)
          __builtin_trap();
      }
      auto mem = arena->region(i);
      if (mem.size() != info.bytes) __builtin_trap();
      std::memset(mem.data(), 0xa5, mem.size());
    }
  }
  close(fd);
  return 0;
}
