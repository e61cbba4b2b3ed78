#include "usnet/link/fault_injector.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace usnet::link {
namespace {

double clamp_rate(double p) {
  if (std::isnan(p) || p <= 0) return 0;
  return p >= 1 ? 1 : p;
}

FaultConfig normalized(FaultConfig c) {
  c.drop = clamp_rate(c.drop);
  c.duplicate = clamp_rate(c.duplicate);
  c.reorder = clamp_rate(c.reorder);
  c.corrupt = clamp_rate(c.corrupt);
  c.delay_rate = clamp_rate(c.delay_rate);
  c.delay_min = std::max(c.delay_min, Nanos{0});
  c.delay_max = std::max(c.delay_max, c.delay_min);
  c.reorder_timeout = std::max(c.reorder_timeout, Nanos{0});
  return c;
}

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

bool in_buffer(const mem::PacketPool& pool, const Frame& f) {
  const auto buf = pool.buffer(f.buffer);
  return !buf.empty() && std::size_t{f.offset} + f.length <= buf.size();
}

}  // namespace

// ---- one direction ----

FaultInjector::Path::Path(const FaultConfig& config, mem::PacketPool& pool, mem::OwnerId owner)
    : config_(normalized(config)), pool_(&pool), owner_(owner) {
  std::uint64_t x = config_.seed;
  for (auto& s : s_) s = splitmix64(x);  // never all zero
}

// xoshiro256** (Blackman and Vigna): small, fast, and the same on every
// platform, which std::uniform_*_distribution is not.
std::uint64_t FaultInjector::Path::next() noexcept {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// One draw per decision whatever the rate, so a frame's faults depend only on
// the seed and the frames before it.
bool FaultInjector::Path::chance(double p) noexcept {
  const double u = static_cast<double>(next() >> 11) * 0x1.0p-53;  // [0, 1)
  return u < p;
}

std::uint64_t FaultInjector::Path::below(std::uint64_t n) noexcept { return n == 0 ? 0 : next() % n; }

void FaultInjector::Path::admit(const Frame& in, Nanos now) {
  Frame f = in;
  ++counters_.frames_in;
  if (!in_buffer(*pool_, f)) {
    ready.push_back(f);
    return;
  }
  if (chance(config_.drop)) {
    ++counters_.dropped;
    (void)pool_->free(owner_, f.buffer);
    return;
  }
  if (chance(config_.corrupt) && f.length > 0) {
    auto bytes = pool_->buffer(f.buffer).subspan(f.offset, f.length);
    const auto at = below(f.length);
    const auto bit = static_cast<unsigned>(below(8));
    bytes[at] ^= static_cast<std::byte>(1u << bit);
    // The corruption stands for damage on the wire: whatever the device
    // vouched for no longer holds, so the stack must check the checksums.
    f.flags = static_cast<std::uint16_t>(f.flags & ~FrameFlag::kChecksumsVerified);
    ++counters_.corrupted;
  }
  std::optional<Frame> copy;
  if (chance(config_.duplicate)) {
    if (auto index = pool_->alloc(owner_)) {
      auto src = pool_->buffer(f.buffer).subspan(f.offset, f.length);
      auto dst = pool_->buffer(*index).subspan(f.offset, f.length);  // same size buffers: fits
      if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
      copy = f;
      copy->buffer = *index;
      ++counters_.duplicated;
    } else {
      ++counters_.duplicate_no_buffer;
    }
  }
  route(f, now);
  if (copy) route(*copy, now);
}

void FaultInjector::Path::route(const Frame& f, Nanos now) {
  if (chance(config_.delay_rate)) {
    if (held() < kMaxHeld) {
      const auto span = static_cast<std::uint64_t>((config_.delay_max - config_.delay_min).count());
      const Nanos release = now + config_.delay_min + Nanos(static_cast<Nanos::rep>(below(span + 1)));
      delayed_.emplace(std::make_pair(release, arrivals_++), f);
      ++counters_.delayed;
      return;
    }
    ++counters_.hold_full;
  }
  go_out(f, now);
}

void FaultInjector::Path::go_out(const Frame& f, Nanos now) {
  if (!reorder_slot_ && chance(config_.reorder)) {
    reorder_slot_ = f;
    reorder_deadline_ = now + config_.reorder_timeout;
    ++counters_.reordered;
    return;
  }
  ready.push_back(f);
  if (reorder_slot_) {
    ready.push_back(*reorder_slot_);
    reorder_slot_.reset();
  }
}

void FaultInjector::Path::release_due(Nanos now) {
  while (!delayed_.empty() && delayed_.begin()->first.first <= now) {
    ready.push_back(delayed_.begin()->second);
    delayed_.erase(delayed_.begin());
  }
  if (reorder_slot_ && now >= reorder_deadline_) {
    ready.push_back(*reorder_slot_);
    reorder_slot_.reset();
  }
}

Nanos FaultInjector::Path::next_release() const noexcept {
  Nanos t = Nanos::max();
  if (!delayed_.empty()) t = delayed_.begin()->first.first;
  if (reorder_slot_) t = std::min(t, reorder_deadline_);
  return t;
}

void FaultInjector::Path::free_all() noexcept {
  for (const Frame& f : ready) (void)pool_->free(owner_, f.buffer);
  ready.clear();
  for (const auto& [key, f] : delayed_) (void)pool_->free(owner_, f.buffer);
  delayed_.clear();
  if (reorder_slot_) (void)pool_->free(owner_, reorder_slot_->buffer);
  reorder_slot_.reset();
}

std::string FaultInjector::Path::describe() const {
  char line[256];
  std::snprintf(line, sizeof line,
                "{drop=%g duplicate=%g reorder=%g corrupt=%g delay=%g [%" PRId64 "ns,%" PRId64
                "ns] seed=%" PRIu64 "}",
                config_.drop, config_.duplicate, config_.reorder, config_.corrupt, config_.delay_rate,
                static_cast<std::int64_t>(config_.delay_min.count()),
                static_cast<std::int64_t>(config_.delay_max.count()), config_.seed);
  return line;
}

// ---- the link ----

FaultInjector::FaultInjector(std::unique_ptr<Link> inner, mem::PacketPool& pool, mem::OwnerId owner,
                             const FaultConfig& rx, const FaultConfig& tx)
    : inner_(std::move(inner)), rx_(rx, pool, owner), tx_(tx, pool, owner) {}

FaultInjector::~FaultInjector() {
  rx_.free_all();
  tx_.free_all();
}

std::size_t FaultInjector::rx_burst(std::span<Frame> out, Nanos now) {
  last_now_ = now;
  // Held transmit frames whose time has come go out on any call.
  tx_.release_due(now);
  flush_tx(now);

  rx_.release_due(now);
  if (rx_.ready.size() < out.size()) {
    scratch_.resize(out.size() - rx_.ready.size());
    const std::size_t n = inner_->rx_burst(scratch_, now);
    for (std::size_t i = 0; i < n; ++i) rx_.admit(scratch_[i], now);
  }
  const std::size_t give = std::min(out.size(), rx_.ready.size());
  for (std::size_t i = 0; i < give; ++i) {
    out[i] = rx_.ready.front();
    rx_.ready.pop_front();
  }
  rx_.counters().frames_out += give;
  return give;
}

std::size_t FaultInjector::tx_burst(std::span<const Frame> frames, Nanos now) {
  last_now_ = now;
  tx_.release_due(now);
  flush_tx(now);
  std::size_t taken = 0;
  for (const Frame& f : frames) {
    // A duplicate makes two held frames of one: leave room for it.
    if (tx_.held() + 2 > kMaxHeld) {
      ++tx_.counters().hold_full;
      break;
    }
    tx_.admit(f, now);
    ++taken;
  }
  flush_tx(now);
  return taken;
}

void FaultInjector::flush_tx(Nanos now) {
  if (tx_.ready.empty()) return;
  scratch_.assign(tx_.ready.begin(), tx_.ready.end());
  const std::size_t n = inner_->tx_burst(scratch_, now);
  tx_.ready.erase(tx_.ready.begin(), tx_.ready.begin() + static_cast<std::ptrdiff_t>(n));
  tx_.counters().frames_out += n;
}

Nanos FaultInjector::next_deadline() const noexcept {
  Nanos t = std::min({inner_->next_deadline(), rx_.next_release(), tx_.next_release()});
  // Frames ready but not yet handed on (a small rx_burst, a full device):
  // there is work now.
  if (!rx_.ready.empty() || !tx_.ready.empty()) t = std::min(t, last_now_);
  return t;
}

std::string FaultInjector::describe() const { return "faults rx" + rx_.describe() + " tx" + tx_.describe(); }

}  // namespace usnet::link
