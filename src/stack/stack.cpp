// usnet::Stack: builds the pool, link, interface and layers from a
// StackConfig, and drives them.
#include "usnet/stack.hpp"

#include <poll.h>
#include <sys/random.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <string>

#include "usnet/link/memif_link.hpp"
#include "usnet/link/pcap_tap.hpp"

namespace usnet {
namespace {

constexpr std::uint32_t kDefaultBufferSize = 2048;
constexpr std::size_t kMinSegmentBytes = 64 * 1024;

Unexpected<StackError> fail(int code, std::string message) {
  return unexpected(StackError{std::error_code(code, std::generic_category()), std::move(message)});
}

std::uint64_t random_seed() {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r) || r == 0) {
    r = static_cast<std::uint64_t>(Stack::now().count()) * 0x9e3779b97f4a7c15ull | 1;
  }
  return r;
}

bool faults_on(const link::FaultConfig& f) {
  return f.drop > 0 || f.duplicate > 0 || f.reorder > 0 || f.corrupt > 0 || f.delay_rate > 0;
}

}  // namespace

tcp::TcpConfig StackConfig::default_tcp() {
  tcp::TcpConfig c;
  c.seed = 0;
  c.connection.mss = 0;
  c.connection.send_buffer = std::size_t{1} << 20;
  c.connection.recv_buffer = std::size_t{1} << 20;
  return c;
}

udp::UdpConfig StackConfig::default_udp() {
  udp::UdpConfig c;
  c.ephemeral_seed = 0;
  return c;
}

std::optional<net::InterfaceAddress> parse_cidr(std::string_view s) {
  const auto slash = s.find('/');
  const auto addr = wire::Ipv4Addr::parse(s.substr(0, slash));
  if (!addr) return std::nullopt;
  if (slash == std::string_view::npos) return net::InterfaceAddress{*addr, 32};
  unsigned len = 0;
  const char* first = s.data() + slash + 1;
  const char* last = s.data() + s.size();
  auto [p, ec] = std::from_chars(first, last, len);
  if (ec != std::errc{} || p != last || first == last || len > 32) return std::nullopt;
  return net::InterfaceAddress{*addr, static_cast<std::uint8_t>(len)};
}

std::uint32_t default_buffer_size(std::string_view link_uri) {
  const auto u = link::parse_link_uri(link_uri);
  if (!u || u->scheme != "memif") return kDefaultBufferSize;
  const std::string_view mtu = u->param("mtu", "");
  std::uint32_t n = 0;
  if (mtu.empty() || std::from_chars(mtu.data(), mtu.data() + mtu.size(), n).ec != std::errc{})
    return kDefaultBufferSize;
  return std::max(kDefaultBufferSize, std::bit_ceil(link::memif_buffer_size_for(n)));
}

Nanos Stack::now() noexcept {
  return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

Expected<std::unique_ptr<Stack>, StackError> Stack::create(const StackConfig& config) {
  std::unique_ptr<Stack> s(new Stack);
  s->config_ = config;
  StackConfig& c = s->config_;

  // Everything that can be checked before any resource is taken.
  if (c.link.empty())
    return fail(EINVAL, "link: no link URI given (like memif:/run/app.sock or af_xdp:eth0)");
  if (auto u = link::parse_link_uri(c.link); !u) return fail(EINVAL, "link: " + u.error().message);
  if (c.addresses.empty())
    return fail(EINVAL, "addresses: at least one address is needed, like 198.18.0.1/24");
  net::InterfaceConfig ic;
  for (std::size_t i = 0; i < c.addresses.size(); ++i) {
    const auto a = parse_cidr(c.addresses[i]);
    if (!a || a->addr.is_unspecified()) {
      return fail(EINVAL, "addresses[" + std::to_string(i) + "] \"" + c.addresses[i] +
                              "\": expected an IPv4 address and prefix length, like 198.18.0.1/24");
    }
    ic.addresses.push_back(*a);
  }
  std::optional<wire::Ipv4Addr> gateway;
  if (!c.gateway.empty()) {
    gateway = wire::Ipv4Addr::parse(c.gateway);
    if (!gateway) return fail(EINVAL, "gateway \"" + c.gateway + "\": not an IPv4 address");
  }
  std::vector<std::pair<net::InterfaceAddress, wire::Ipv4Addr>> routes;
  for (const auto& r : c.routes) {
    const auto comma = r.find(',');
    const auto prefix = parse_cidr(std::string_view(r).substr(0, comma));
    const auto gw = comma == std::string::npos ? std::nullopt : wire::Ipv4Addr::parse(r.substr(comma + 1));
    if (!prefix || !gw) return fail(EINVAL, "routes: \"" + r + "\": expected PREFIX/LEN,GATEWAY");
    routes.emplace_back(*prefix, *gw);
  }
  if (c.buffers < 64) return fail(EINVAL, "buffers: at least 64 packet buffers are needed");
  if (c.buffer_size == 0) c.buffer_size = default_buffer_size(c.link);
  if (c.buffer_size < 256 || c.buffer_size > 65536 || !std::has_single_bit(c.buffer_size)) {
    return fail(EINVAL, "buffer_size " + std::to_string(c.buffer_size) +
                            ": must be a power of two from 256 to 65536 (or 0 to pick one)");
  }

  // Packet memory: a shared-memory arena (so a stack daemon or `usnet
  // stat` could map it), segments of at least 16 buffers.
  const std::size_t segment_bytes = std::max(kMinSegmentBytes, std::size_t{16} * c.buffer_size);
  const std::size_t bytes = std::size_t{c.buffers} * c.buffer_size;
  const auto segments = static_cast<std::uint32_t>((bytes + segment_bytes - 1) / segment_bytes);
  if (segments > mem::PacketPool::kMaxSegments) {
    return fail(EINVAL, "buffers: " + std::to_string(c.buffers) + " buffers of " +
                            std::to_string(c.buffer_size) + " bytes is more packet memory than a pool holds");
  }
  const mem::RegionSpec region[] = {{"buffers", std::size_t{segments} * segment_bytes}};
  auto arena = mem::Arena::create(c.name, region);
  if (!arena) return fail(arena.error().value(), "packet memory: " + arena.error().message());
  s->arena_.emplace(std::move(*arena));
  auto pool = mem::PacketPool::create({c.buffer_size, segment_bytes, segments}, s->arena_->region("buffers"));
  if (!pool) return fail(pool.error().value(), "packet pool: " + pool.error().message());
  s->pool_ = std::make_unique<mem::PacketPool>(std::move(*pool));
  auto owner = s->pool_->add_owner({64, c.buffers});
  if (!owner) return fail(owner.error().value(), "packet pool: " + owner.error().message());
  s->owner_ = *owner;

  auto l = link::open_link(c.link, *s->pool_, s->owner_);
  if (!l) return fail(l.error().code.value(), l.error().message);
  s->link_ = std::move(*l);
  s->device_ = s->link_.get();
  if (!c.pcap.empty()) {
    // pcap wants wall-clock times; the stack runs on the monotonic clock.
    const auto epoch =
        std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch()) - now();
    auto tap = link::PcapTap::open(std::move(s->link_), *s->pool_, c.pcap, epoch);
    if (!tap) return fail(tap.error().value(), "pcap " + c.pcap + ": " + tap.error().message());
    s->link_ = std::move(*tap);
  }
  if (faults_on(c.rx_faults) || faults_on(c.tx_faults)) {
    auto f = std::make_unique<link::FaultInjector>(std::move(s->link_), *s->pool_, s->owner_, c.rx_faults,
                                                   c.tx_faults);
    s->faults_ = f.get();
    s->link_ = std::move(f);
  }

  ic.first_ident = static_cast<std::uint16_t>(random_seed());
  auto iface = net::Interface::create(*s->link_, *s->pool_, s->owner_, ic);
  if (!iface) return fail(iface.error().value(), "interface: " + iface.error().message());
  s->iface_ = std::move(*iface);
  if (gateway) {
    if (auto ec = s->iface_->routes().set_default_gateway(*gateway))
      return fail(ec.value(), "gateway " + c.gateway + ": " + ec.message());
  }
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& [prefix, gw] = routes[i];
    if (auto ec = s->iface_->routes().add_static({prefix.addr, prefix.prefix_len}, gw))
      return fail(ec.value(), "routes: \"" + c.routes[i] + "\": " + ec.message());
  }

  if (c.udp.ephemeral_seed == 0) c.udp.ephemeral_seed = random_seed();
  auto udp = udp::UdpLayer::create(*s->iface_, *s->pool_, s->owner_, c.udp);
  if (!udp) return fail(udp.error().value(), "udp: " + udp.error().message());
  s->udp_ = std::move(*udp);

  if (c.tcp.seed == 0) c.tcp.seed = random_seed();
  const auto mtu_mss = static_cast<std::uint16_t>(std::min<std::uint32_t>(s->iface_->mtu() - 40, 65495));
  if (c.tcp.connection.mss == 0 || c.tcp.connection.mss > mtu_mss) c.tcp.connection.mss = mtu_mss;
  auto tcp = tcp::TcpLayer::create(*s->iface_, *s->pool_, s->owner_, c.tcp);
  if (!tcp) return fail(tcp.error().value(), "tcp: " + tcp.error().message());
  s->tcp_ = std::move(*tcp);
  if (c.stats_interval > Nanos{0}) {
    // Without it the stack still works; the reason is kept for the user.
    auto w = StatsWriter::create(c.name);
    if (w) {
      s->stats_.emplace(std::move(*w));
      s->next_stats_ = Nanos{0};  // at the first poll
    } else {
      s->stats_error_ = std::string("no statistics region in ") + kStatsDir + ": " + w.error().message();
    }
  }
  s->last_work_ = now();  // an adaptive loop spins for its `spin` from the start too
  return s;
}

Stack::~Stack() {
  (void)shutdown();
  if (pool_) (void)pool_->remove_owner(owner_);
}

std::size_t Stack::shutdown() {
  stats_.reset();  // the region goes first: nothing is left to read
  next_stats_ = Nanos::max();
  // Top down: each layer gives its buffers back before the one below goes.
  tcp_.reset();
  udp_.reset();
  iface_.reset();
  faults_ = nullptr;
  device_ = nullptr;
  link_.reset();
  return pool_ ? pool_->in_use(owner_) : 0;
}

bool Stack::poll(Nanos t) {
  bool work = iface_->poll(t) > 0;
  if (t >= tcp_->next_deadline()) {
    tcp_->poll_timers(t);
    work = true;
  }
  if (t >= next_stats_) {
    stats_->publish(format_stats(), t);
    next_stats_ = t + config_.stats_interval;
  }
  return work;
}

Nanos Stack::next_deadline() const noexcept {
  return std::min({iface_->next_deadline(), tcp_->next_deadline(), next_stats_});
}

void Stack::wait(Nanos until, Nanos max_sleep) {
  const Nanos t = now();
  until = std::min({until, next_deadline(), t + max_sleep});
  if (until <= t) return;
  const int fd = link_->wait_fd();
  // poll() sleeps in whole ms: round up, and at most 1 ms with no fd to
  // wake on.
  auto ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(until - t).count());
  if (fd < 0) ms = std::min(ms, 1);
  if (fd >= 0 && !link_->arm_wakeup()) return;  // frames already waiting
  pollfd p{fd, POLLIN, 0};
  const int r = ::poll(&p, fd < 0 ? 0 : 1, ms);
  if (fd >= 0) link_->disarm_wakeup();
  ++loop_counters_.sleeps;
  if (r > 0) ++loop_counters_.wakeups_by_fd;
  loop_counters_.slept += now() - t;
}

bool Stack::run_once(const LoopConfig& loop) {
  const Nanos t = now();
  const bool work = poll(t);
  ++loop_counters_.turns;
  if (work) {
    ++loop_counters_.busy_turns;
    last_work_ = t;
  } else if (loop.mode == LoopMode::kAdaptive && t - last_work_ >= loop.spin) {
    wait(Nanos::max(), loop.max_sleep);
  }
  return work;
}

std::string Stack::format_stats() const {
  std::string out;
  const auto line = [&out](std::string_view key, const std::string& value) {
    out += key;
    out += ' ';
    out += value;
    out += '\n';
  };
  line("pool.buffers", std::to_string(config_.buffers));
  line("pool.buffer_size", std::to_string(config_.buffer_size));
  line("pool.in_use", std::to_string(pool_->in_use(owner_)));
  line("link", link_->info().name);
  line("link.mtu", std::to_string(iface_->mtu()));
  line("tcp.connections", std::to_string(tcp_->connection_count()));
  constexpr std::size_t kMaxListed = 1000;
  std::size_t listed = 0;
  tcp_->for_each_connection([&](const tcp::Connection& c) {
    if (listed++ >= kMaxListed) return;
    const auto& e = c.endpoints();
    const auto& k = c.counters();
    line("conn", e.local_addr.to_string() + ":" + std::to_string(e.local_port) + " " +
                     e.remote_addr.to_string() + ":" + std::to_string(e.remote_port) + " " +
                     tcp::to_string(c.state()) + " rx=" + std::to_string(k.bytes_in) + " tx=" +
                     std::to_string(k.bytes_out) + " retrans=" + std::to_string(k.retransmits) + " srtt_us=" +
                     std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(c.srtt()).count()) +
                     " unread=" + std::to_string(c.readable()));
  });
  if (listed > kMaxListed) line("conn.not_listed", std::to_string(listed - kMaxListed));
  out += "--\n";
  out += format_counters();
  return out;
}

std::string Stack::format_counters() const {
  std::string out = iface_->format_counters() + udp_->format_counters() + tcp_->format_counters();
  const link::LinkCounters& l = link_->counters();
  out += "Link (" + link_->info().name + "):\n";
  const std::pair<const char*, std::uint64_t> lines[] = {
      {"frames received", l.rx_frames},
      {"frames sent", l.tx_frames},
      {"receive errors", l.rx_errors},
      {"send errors", l.tx_errors},
      {"times the link's transmit queue was full", l.tx_full},
      {"frames waiting while no buffer was free", l.rx_no_buffer},
      {"frames too long, dropped", l.rx_too_long},
  };
  for (const auto& [what, n] : lines) out += "    " + std::to_string(n) + " " + what + "\n";
  if (faults_ != nullptr) out += "Faults: " + faults_->describe() + "\n";
  return out;
}

}  // namespace usnet
