#include "usnet/link/pcap_writer.hpp"

#include <cerrno>
#include <utility>

#include "usnet/util/bytes.hpp"

namespace usnet::link {

Expected<PcapWriter, std::error_code> PcapWriter::open(const std::string& path, std::uint32_t snaplen) {
  if (snaplen == 0) return unexpected(std::make_error_code(std::errc::invalid_argument));
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return unexpected(std::error_code(errno, std::generic_category()));
  // pcap file header: magic, version 2.4, thiszone 0, sigfigs 0, snaplen, linktype.
  std::byte hdr[24];
  store_le32(hdr, kMagicNanoseconds);
  store_le16(hdr + 4, 2);
  store_le16(hdr + 6, 4);
  store_le32(hdr + 8, 0);
  store_le32(hdr + 12, 0);
  store_le32(hdr + 16, snaplen);
  store_le32(hdr + 20, kLinkTypeEthernet);
  if (std::fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr) {
    int e = errno;
    std::fclose(f);
    return unexpected(std::error_code(e, std::generic_category()));
  }
  return PcapWriter(f, snaplen);
}

PcapWriter::PcapWriter(PcapWriter&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)), snaplen_(other.snaplen_), frames_(other.frames_) {}

PcapWriter& PcapWriter::operator=(PcapWriter&& other) noexcept {
  if (this != &other) {
    if (file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    snaplen_ = other.snaplen_;
    frames_ = other.frames_;
  }
  return *this;
}

PcapWriter::~PcapWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

std::error_code PcapWriter::write(std::span<const std::byte> frame, std::chrono::nanoseconds when) {
  if (file_ == nullptr) return std::make_error_code(std::errc::bad_file_descriptor);
  errno = 0;
  if (when.count() < 0) when = std::chrono::nanoseconds(0);
  const auto ns = static_cast<std::uint64_t>(when.count());
  const auto captured = static_cast<std::uint32_t>(frame.size() < snaplen_ ? frame.size() : snaplen_);
  std::byte rec[16];
  store_le32(rec, static_cast<std::uint32_t>(ns / 1'000'000'000u));
  store_le32(rec + 4, static_cast<std::uint32_t>(ns % 1'000'000'000u));
  store_le32(rec + 8, captured);
  store_le32(rec + 12, static_cast<std::uint32_t>(frame.size()));
  if (std::fwrite(rec, 1, sizeof rec, file_) != sizeof rec ||
      std::fwrite(frame.data(), 1, captured, file_) != captured) {
    // A half-written record would misframe every record after it: stop
    // writing for good. errno may be stale or zero after a short fwrite.
    const int e = errno != 0 ? errno : EIO;
    std::fclose(file_);
    file_ = nullptr;
    return std::error_code(e, std::generic_category());
  }
  ++frames_;
  return {};
}

std::error_code PcapWriter::flush() {
  if (file_ == nullptr) return std::make_error_code(std::errc::bad_file_descriptor);
  if (std::fflush(file_) != 0) return std::error_code(errno, std::generic_category());
  return {};
}

}  // namespace usnet::link
