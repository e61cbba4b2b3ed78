// Connection and listener tables: Robin Hood linear probing with
// backward-shift deletion under a SipHash-1-3 key (see conn_table.hpp).
#include "usnet/tcp/conn_table.hpp"

#include <bit>
#include <cstring>
#include <utility>

namespace usnet::tcp {

namespace {

std::uint64_t load_le64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

struct SipState {
  std::uint64_t v0, v1, v2, v3;

  void round() noexcept {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }
  void absorb(std::uint64_t m, int rounds) noexcept {
    v3 ^= m;
    for (int i = 0; i < rounds; ++i) round();
    v0 ^= m;
  }
};

std::error_code err(std::errc e) { return std::make_error_code(e); }

constexpr std::uint32_t kMaxEntries = 1u << 30;
constexpr std::uint32_t kMaxListeners = 1u << 20;

}  // namespace

std::uint64_t siphash(const HashKey& key, std::span<const std::byte> data, int compression_rounds,
                      int finalization_rounds) noexcept {
  // The four initialisation constants spell "somepseudorandomlygeneratedbytes".
  SipState s{key.k0 ^ 0x736f6d6570736575ull, key.k1 ^ 0x646f72616e646f6dull, key.k0 ^ 0x6c7967656e657261ull,
             key.k1 ^ 0x7465646279746573ull};
  const std::size_t whole = data.size() & ~std::size_t{7};
  for (std::size_t i = 0; i < whole; i += 8) s.absorb(load_le64(data.data() + i), compression_rounds);
  // Last block: the remaining 0..7 bytes, with the length (mod 256) in the top byte.
  std::uint64_t last = std::uint64_t{data.size() & 0xff} << 56;
  for (std::size_t i = whole; i < data.size(); ++i)
    last |= std::to_integer<std::uint64_t>(data[i]) << (8 * (i - whole));
  s.absorb(last, compression_rounds);
  s.v2 ^= 0xff;
  for (int i = 0; i < finalization_rounds; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

// ---------------------------------------------------------------------------
// ConnTable

Expected<ConnTable, std::error_code> ConnTable::create(const ConnTableConfig& config) {
  if (config.max_entries == 0 || config.max_entries > kMaxEntries)
    return unexpected(err(std::errc::invalid_argument));
  // Load factor <= 0.5: expected probe lengths stay near 1 and Robin Hood
  // keeps the longest one O(log n) with high probability.
  const std::uint32_t slots = std::bit_ceil(config.max_entries * 2u);
  ConnTable t;
  t.meta_.assign(slots, Meta{});
  t.keys_.assign(slots, FourTuple{});
  t.key_ = config.key;
  t.mask_ = slots - 1;
  t.max_entries_ = config.max_entries;
  return t;
}

std::uint64_t ConnTable::hash(const FourTuple& key) const noexcept {
  // A fixed serialisation, so padding inside FourTuple never reaches the hash.
  std::array<std::byte, 37> buf{};
  std::memcpy(buf.data(), key.local.bytes.data(), 16);
  std::memcpy(buf.data() + 16, key.remote.bytes.data(), 16);
  buf[32] = static_cast<std::byte>(key.local_port >> 8);
  buf[33] = static_cast<std::byte>(key.local_port & 0xff);
  buf[34] = static_cast<std::byte>(key.remote_port >> 8);
  buf[35] = static_cast<std::byte>(key.remote_port & 0xff);
  buf[36] = static_cast<std::byte>(static_cast<std::uint8_t>(key.local.family) |
                                   (static_cast<std::uint8_t>(key.remote.family) << 4));
  return siphash(key_, buf);
}

std::optional<std::uint32_t> ConnTable::locate(const FourTuple& key, std::uint32_t h) const noexcept {
  std::uint32_t slot = home(h);
  for (std::uint32_t dist = 0;; ++dist, slot = (slot + 1) & mask_) {
    const Meta& m = meta_[slot];
    // Robin Hood invariant: had the key been inserted, it would sit no
    // further from home than an entry we pass here.
    if (!m.used || distance(slot) < dist) return std::nullopt;
    if (m.hash == h && keys_[slot] == key) return slot;
  }
}

Expected<void, std::error_code> ConnTable::insert(const FourTuple& key, Value value) noexcept {
  const auto h = static_cast<std::uint32_t>(hash(key));
  if (locate(key, h)) {
    ++insert_exists_;
    return unexpected(err(std::errc::file_exists));
  }
  if (size_ >= max_entries_) {
    ++insert_full_;
    return unexpected(err(std::errc::no_buffer_space));
  }
  Meta cur_meta{h, value, 1};
  FourTuple cur_key = key;
  std::uint32_t slot = home(cur_meta.hash);
  for (std::uint32_t dist = 0;; ++dist, slot = (slot + 1) & mask_) {
    Meta& m = meta_[slot];
    if (!m.used) {
      m = cur_meta;
      keys_[slot] = cur_key;
      probe_len_sum_ += dist + 1;
      if (dist + 1 > max_probe_len_) max_probe_len_ = dist + 1;
      break;
    }
    const std::uint32_t d = distance(slot);
    if (d < dist) {
      // The resident is richer (nearer its home): it gives up the slot and
      // travels on in our place.
      probe_len_sum_ += dist + 1;
      probe_len_sum_ -= d + 1;
      if (dist + 1 > max_probe_len_) max_probe_len_ = dist + 1;
      std::swap(m, cur_meta);
      std::swap(keys_[slot], cur_key);
      dist = d;
    }
  }
  ++size_;
  return {};
}

std::optional<ConnTable::Value> ConnTable::find(const FourTuple& key) const noexcept {
  if (auto slot = locate(key, static_cast<std::uint32_t>(hash(key)))) return meta_[*slot].value;
  return std::nullopt;
}

bool ConnTable::update(const FourTuple& key, Value value) noexcept {
  auto slot = locate(key, static_cast<std::uint32_t>(hash(key)));
  if (!slot) return false;
  meta_[*slot].value = value;
  return true;
}

std::optional<ConnTable::Value> ConnTable::erase(const FourTuple& key) noexcept {
  auto found = locate(key, static_cast<std::uint32_t>(hash(key)));
  if (!found) return std::nullopt;
  std::uint32_t hole = *found;
  const Value value = meta_[hole].value;
  probe_len_sum_ -= distance(hole) + 1;
  // Backward shift: pull each following displaced entry one slot nearer its
  // home until an empty slot or an entry already at home ends the run.
  for (;;) {
    const std::uint32_t next = (hole + 1) & mask_;
    if (!meta_[next].used || distance(next) == 0) break;
    meta_[hole] = meta_[next];
    keys_[hole] = keys_[next];
    --probe_len_sum_;
    hole = next;
  }
  meta_[hole] = Meta{};
  keys_[hole] = FourTuple{};
  --size_;
  return value;
}

ConnTableStats ConnTable::stats() const noexcept {
  ConnTableStats s;
  s.size = size_;
  s.slots = mask_ + 1;
  s.max_probe_len = max_probe_len_;
  s.probe_len_sum = probe_len_sum_;
  s.insert_full = insert_full_;
  s.insert_exists = insert_exists_;
  return s;
}

std::uint32_t ConnTable::current_max_probe_len() const noexcept {
  std::uint32_t longest = 0;
  for (std::uint32_t i = 0; i <= mask_; ++i)
    if (meta_[i].used && distance(i) + 1 > longest) longest = distance(i) + 1;
  return longest;
}

// ---------------------------------------------------------------------------
// ListenerTable

Expected<ListenerTable, std::error_code> ListenerTable::create(const ListenerTableConfig& config) {
  if (config.max_listeners == 0 || config.max_listeners > kMaxListeners)
    return unexpected(err(std::errc::invalid_argument));
  auto t = ConnTable::create(ConnTableConfig{config.max_listeners, config.key});
  if (!t) return unexpected(t.error());
  return ListenerTable(std::move(*t));
}

FourTuple ListenerTable::key_of(const IpAddr& local, std::uint16_t port) noexcept {
  FourTuple k;
  k.local = local;
  k.remote = IpAddr::any(local.family);
  k.local_port = port;
  return k;
}

Expected<void, std::error_code> ListenerTable::insert(const IpAddr& local, std::uint16_t port,
                                                      Value value) noexcept {
  auto r = table_.insert(key_of(local, port), value);
  if (!r && r.error() == std::errc::file_exists) return unexpected(err(std::errc::address_in_use));
  return r;
}

std::optional<ListenerTable::Value> ListenerTable::erase(const IpAddr& local, std::uint16_t port) noexcept {
  return table_.erase(key_of(local, port));
}

std::optional<ListenerTable::Value> ListenerTable::find_exact(const IpAddr& local,
                                                              std::uint16_t port) const noexcept {
  return table_.find(key_of(local, port));
}

std::optional<ListenerTable::Value> ListenerTable::lookup(const IpAddr& local, std::uint16_t port) noexcept {
  if (auto v = table_.find(key_of(local, port))) {
    ++exact_hits_;
    return v;
  }
  if (!local.is_unspecified()) {
    if (auto v = table_.find(key_of(IpAddr::any(local.family), port))) {
      ++wildcard_hits_;
      return v;
    }
  }
  ++misses_;
  return std::nullopt;
}

ListenerTableStats ListenerTable::stats() const noexcept {
  const ConnTableStats t = table_.stats();
  ListenerTableStats s;
  s.size = t.size;
  s.insert_full = t.insert_full;
  s.insert_exists = t.insert_exists;
  s.exact_hits = exact_hits_;
  s.wildcard_hits = wildcard_hits_;
  s.misses = misses_;
  return s;
}

}  // namespace usnet::tcp
