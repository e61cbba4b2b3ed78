// A link wrapper that records every frame received and transmitted through
// the link it wraps to a pcap file, and otherwise changes nothing: frames,
// info, wait_fd, next_deadline and counters are the inner link's.
//
// Timestamps are the `now` given to rx_burst/tx_burst plus an epoch offset,
// so a monotonic (or fake) clock becomes Unix time in the capture: pass
// system_clock now - steady_clock now to line the capture up with the wall
// clock, or 0 for a replayable capture.
//
// A transmitted frame is copied before the inner link takes it (after that
// its buffer is the device's, possibly already reused by a peer) and written
// only if it was taken. A pcap write failure never breaks the link: it is
// counted, the writer is closed, and capture stops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/link/pcap_writer.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/util/expected.hpp"

namespace usnet::link {

class PcapTap final : public Link {
 public:
  // `pool` is the pool the inner link's frames live in.
  PcapTap(std::unique_ptr<Link> inner, mem::PacketPool& pool, PcapWriter writer,
          Nanos epoch_offset = Nanos{0});
  // Opens (truncates) `path` for the capture.
  static Expected<std::unique_ptr<PcapTap>, std::error_code> open(std::unique_ptr<Link> inner,
                                                                  mem::PacketPool& pool,
                                                                  const std::string& path,
                                                                  Nanos epoch_offset = Nanos{0});

  const LinkInfo& info() const noexcept override { return inner_->info(); }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override { return inner_->wait_fd(); }
  bool arm_wakeup() override { return inner_->arm_wakeup(); }
  void disarm_wakeup() override { inner_->disarm_wakeup(); }
  void set_tx_hold(bool hold) override { inner_->set_tx_hold(hold); }
  Nanos next_deadline() const noexcept override { return inner_->next_deadline(); }
  const LinkCounters& counters() const noexcept override { return inner_->counters(); }
  std::error_code steer(const SteerRule& rule, bool add) override { return inner_->steer(rule, add); }

  Link& inner() noexcept { return *inner_; }
  // Pushes buffered records to the file (so a reader sees them now).
  std::error_code flush();
  // Stops capturing and closes the file; the link keeps working.
  void close() noexcept { writer_.reset(); }
  bool capturing() const noexcept { return writer_.has_value(); }

  std::uint64_t frames_written() const noexcept { return frames_written_; }
  // Write failures (at most one: capture stops at the first) and the error.
  std::uint64_t write_errors() const noexcept { return write_errors_; }
  std::error_code last_error() const noexcept { return last_error_; }
  // Frames not captured because their bytes lie outside their buffer (a
  // caller bug the inner link will count too).
  std::uint64_t frames_skipped() const noexcept { return frames_skipped_; }

 private:
  // The frame's bytes, or empty (and counted) if they lie outside the buffer.
  std::span<const std::byte> bytes_of(const Frame& f) noexcept;
  void write(std::span<const std::byte> bytes, Nanos now);

  std::unique_ptr<Link> inner_;
  mem::PacketPool* pool_;
  std::optional<PcapWriter> writer_;
  Nanos epoch_offset_;
  std::vector<std::byte> tx_copy_;       // transmitted frames, back to back
  std::vector<std::size_t> tx_lengths_;  // their lengths; SIZE_MAX when skipped
  std::uint64_t frames_written_ = 0, write_errors_ = 0, frames_skipped_ = 0;
  std::error_code last_error_;
};

}  // namespace usnet::link
