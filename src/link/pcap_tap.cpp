#include "usnet/link/pcap_tap.hpp"

#include <cstdint>
#include <utility>

namespace usnet::link {

namespace {
constexpr std::size_t kSkipped = SIZE_MAX;
}

PcapTap::PcapTap(std::unique_ptr<Link> inner, mem::PacketPool& pool, PcapWriter writer, Nanos epoch_offset)
    : inner_(std::move(inner)), pool_(&pool), writer_(std::move(writer)), epoch_offset_(epoch_offset) {}

Expected<std::unique_ptr<PcapTap>, std::error_code> PcapTap::open(std::unique_ptr<Link> inner,
                                                                  mem::PacketPool& pool,
                                                                  const std::string& path,
                                                                  Nanos epoch_offset) {
  auto w = PcapWriter::open(path);
  if (!w) return unexpected(w.error());
  return std::make_unique<PcapTap>(std::move(inner), pool, std::move(*w), epoch_offset);
}

std::span<const std::byte> PcapTap::bytes_of(const Frame& f) noexcept {
  const auto buf = pool_->buffer(f.buffer);
  if (buf.empty() || std::size_t{f.offset} + f.length > buf.size()) {
    ++frames_skipped_;
    return {};
  }
  return buf.subspan(f.offset, f.length);
}

void PcapTap::write(std::span<const std::byte> bytes, Nanos now) {
  if (!writer_) return;
  if (auto ec = writer_->write(bytes, now + epoch_offset_)) {
    // The link matters more than the capture: stop capturing, keep going.
    ++write_errors_;
    last_error_ = ec;
    writer_.reset();
    return;
  }
  ++frames_written_;
}

std::size_t PcapTap::rx_burst(std::span<Frame> out, Nanos now) {
  const std::size_t n = inner_->rx_burst(out, now);
  for (std::size_t i = 0; i < n && writer_; ++i) {
    auto bytes = bytes_of(out[i]);
    if (!bytes.empty() || out[i].length == 0) write(bytes, now);
  }
  return n;
}

std::size_t PcapTap::tx_burst(std::span<const Frame> frames, Nanos now) {
  if (!writer_) return inner_->tx_burst(frames, now);
  tx_copy_.clear();
  tx_lengths_.clear();
  for (const Frame& f : frames) {
    auto bytes = bytes_of(f);
    if (bytes.empty() && f.length != 0) {
      tx_lengths_.push_back(kSkipped);
      continue;
    }
    tx_copy_.insert(tx_copy_.end(), bytes.begin(), bytes.end());
    tx_lengths_.push_back(bytes.size());
  }
  const std::size_t taken = inner_->tx_burst(frames, now);
  std::size_t pos = 0;
  for (std::size_t i = 0; i < taken && i < tx_lengths_.size(); ++i) {
    if (tx_lengths_[i] == kSkipped) continue;
    write(std::span<const std::byte>(tx_copy_).subspan(pos, tx_lengths_[i]), now);
    pos += tx_lengths_[i];
  }
  return taken;
}

std::error_code PcapTap::flush() {
  if (!writer_) return last_error_ ? last_error_ : std::make_error_code(std::errc::bad_file_descriptor);
  if (auto ec = writer_->flush()) {
    ++write_errors_;
    last_error_ = ec;
    writer_.reset();
    return ec;
  }
  return {};
}

}  // namespace usnet::link
