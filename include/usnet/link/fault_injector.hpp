// A link wrapper that damages traffic on purpose: on the receive path and
// the transmit path separately it drops, duplicates, reorders, corrupts and
// delays frames at configured rates, from a seed. The same seed, the same
// frames and the same `now` values give exactly the same faults, so a run
// that failed can be replayed from the seed printed by describe().
//
// Each frame entering a path meets the faults in this order, each drawn from
// the path's own generator (xoshiro256** seeded through splitmix64):
//   1. drop      (rate `drop`): the buffer is freed.
//   2. corrupt   (rate `corrupt`): one random bit of one random byte flips,
//                in the buffer itself (it is ours: received for the caller,
//                or given to the link for sending).
//   3. duplicate (rate `duplicate`): a copy in a new pool buffer of the same
//                owner follows the frame; if the pool refuses, no copy
//                (counted as duplicate_no_buffer).
//   4. delay     (rate `delay_rate`): the frame (and its copy, each drawn
//                separately) is held until now >= now + a delay uniform in
//                [delay_min, delay_max]; next_deadline() reports the earliest
//                release.
//   5. reorder   (rate `reorder`): the frame is held back and goes out right
//                after the next frame, so neighbours swap; if no frame
//                follows within reorder_timeout it goes out then.
// Frames whose bytes lie outside their buffer pass through untouched (the
// inner link will count them). Held frames are bounded (kMaxHeld per path;
// beyond that a frame is not delayed, and tx_burst takes no more frames).
//
// Receive: frames come from the inner link and reach the caller after the
// faults. Transmit: taken frames go to the inner link after the faults; held
// ones (delayed, reordered, or refused by a full inner link) are sent by the
// first rx_burst or tx_burst call at or after their time, which the stack's
// poll loop makes when next_deadline() comes.
//
// counters() are the inner link's (what the device saw); what the injector
// did is in rx_faults() and tx_faults(). Every held buffer is freed when the
// injector is destroyed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "usnet/link/link.hpp"
#include "usnet/mem/pool.hpp"

namespace usnet::link {

struct FaultConfig {
  // Probabilities in [0, 1]; values outside are clamped, NaN is 0.
  double drop = 0, duplicate = 0, reorder = 0, corrupt = 0;
  // Delay uniform in [delay_min, delay_max] for a fraction delay_rate of
  // frames. A negative bound counts as 0; delay_max below delay_min as
  // delay_min.
  Nanos delay_min{0}, delay_max{0};
  double delay_rate = 0;
  std::uint64_t seed = 0;
  // The longest a frame held for reordering waits for a frame to follow it.
  Nanos reorder_timeout = std::chrono::milliseconds(1);
};

struct FaultCounters {
  std::uint64_t frames_in = 0;   // frames that entered this path
  std::uint64_t frames_out = 0;  // frames it let out (duplicates included)
  std::uint64_t dropped = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t duplicate_no_buffer = 0;  // a duplicate skipped: the pool refused a buffer
  std::uint64_t reordered = 0;
  std::uint64_t corrupted = 0;
  std::uint64_t delayed = 0;
  std::uint64_t hold_full = 0;  // a frame not delayed, or not taken, because kMaxHeld were held
};

class FaultInjector final : public Link {
 public:
  static constexpr std::size_t kMaxHeld = 4096;

  // `pool` and `owner` are those the inner link was opened with: received
  // and transmitted buffers are held by `owner`, and duplicates are
  // allocated to it.
  FaultInjector(std::unique_ptr<Link> inner, mem::PacketPool& pool, mem::OwnerId owner, const FaultConfig& rx,
                const FaultConfig& tx);
  ~FaultInjector() override;
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  const LinkInfo& info() const noexcept override { return inner_->info(); }
  std::size_t rx_burst(std::span<Frame> out, Nanos now) override;
  std::size_t tx_burst(std::span<const Frame> frames, Nanos now) override;
  int wait_fd() const noexcept override { return inner_->wait_fd(); }
  bool arm_wakeup() override { return inner_->arm_wakeup(); }
  void disarm_wakeup() override { inner_->disarm_wakeup(); }
  void set_tx_hold(bool hold) override { inner_->set_tx_hold(hold); }
  Nanos next_deadline() const noexcept override;
  const LinkCounters& counters() const noexcept override { return inner_->counters(); }
  std::error_code steer(const SteerRule& rule, bool add) override { return inner_->steer(rule, add); }

  const FaultCounters& rx_faults() const noexcept { return rx_.counters(); }
  const FaultCounters& tx_faults() const noexcept { return tx_.counters(); }
  // One line for logs with both configurations and their seeds, e.g.
  // "faults rx{drop=0.1 duplicate=0 reorder=0 corrupt=0 delay=0 [0ns,0ns] seed=42} tx{...}".
  std::string describe() const;
  Link& inner() noexcept { return *inner_; }

 private:
  // One direction's faults, generator and held frames.
  class Path {
   public:
    Path(const FaultConfig& config, mem::PacketPool& pool, mem::OwnerId owner);
    Path(const Path&) = delete;
    Path& operator=(const Path&) = delete;
    // Runs one frame through the faults; what may go out is appended to ready.
    void admit(const Frame& f, Nanos now);
    // Moves held frames whose time has come to ready.
    void release_due(Nanos now);
    Nanos next_release() const noexcept;
    std::size_t held() const noexcept { return delayed_.size() + (reorder_slot_ ? 1 : 0) + ready.size(); }
    void free_all() noexcept;
    const FaultConfig& config() const noexcept { return config_; }
    const FaultCounters& counters() const noexcept { return counters_; }
    FaultCounters& counters() noexcept { return counters_; }
    std::string describe() const;

    std::deque<Frame> ready;  // in the order they go out

   private:
    std::uint64_t next() noexcept;
    bool chance(double p) noexcept;
    std::uint64_t below(std::uint64_t n) noexcept;  // uniform in [0, n)
    void route(const Frame& f, Nanos now);
    void go_out(const Frame& f, Nanos now);

    FaultConfig config_;
    mem::PacketPool* pool_;
    mem::OwnerId owner_;
    std::uint64_t s_[4] = {};
    // Keyed by (release time, arrival number): equal times keep arrival order.
    std::map<std::pair<Nanos, std::uint64_t>, Frame> delayed_;
    std::uint64_t arrivals_ = 0;
    std::optional<Frame> reorder_slot_;
    Nanos reorder_deadline_{0};
    FaultCounters counters_;
  };

  void flush_tx(Nanos now);

  std::unique_ptr<Link> inner_;
  Path rx_;
  Path tx_;
  std::vector<Frame> scratch_;
  Nanos last_now_{0};
};

}  // namespace usnet::link
