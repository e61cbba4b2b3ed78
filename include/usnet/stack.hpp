// usnet::Stack: the front door. One object that owns everything a
// user-space stack needs (the packet memory, the link, the IPv4 interface,
// the UDP and TCP layers) built from one StackConfig, and the loop that
// drives it.
//
//   usnet::StackConfig c;
//   c.link = "memif:/run/app.sock?role=server";
//   c.addresses = {"198.18.0.1/24"};
//   auto stack = usnet::Stack::create(c);
//   if (!stack) { fprintf(stderr, "%s\n", stack.error().message.c_str()); ... }
//   auto listener = (*stack)->tcp().listen({{}, 7000});
//   while (running) {
//     (*stack)->run_once();          // receive, timers, and sleep when idle
//     ... accept, receive, send ...
//   }
//
// Threading: one stack per thread; nothing in it is shared or locked, and
// every call on a stack and on the sockets and streams it made must come
// from the thread that drives it.
//
// Loop modes (LoopConfig): busy polling never sleeps (lowest latency, a
// whole core); adaptive spins for `spin` after the last frame (or the
// start), then sleeps on the link's wake-up fd until a frame, a timer or
// `max_sleep`; or the program runs its own loop (epoll, asio, libuv) with wait_fd(), poll(now)
// and next_deadline().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "usnet/link/fault_injector.hpp"
#include "usnet/link/link.hpp"
#include "usnet/mem/arena.hpp"
#include "usnet/mem/pool.hpp"
#include "usnet/net/interface.hpp"
#include "usnet/stats.hpp"
#include "usnet/tcp/tcp.hpp"
#include "usnet/udp/udp.hpp"
#include "usnet/util/expected.hpp"

namespace usnet {

using Nanos = link::Nanos;

// What went wrong, for a person: `code` for a program to branch on,
// `message` names the setting and the problem ("addresses[0] \"10.0.0.1/33\":
// expected an IPv4 address and prefix length, like 198.18.0.1/24").
struct StackError {
  std::error_code code;
  std::string message;
};

struct StackConfig {
  // The link URI (link::open_link): tap:NAME, af_packet:IFNAME,
  // af_xdp:IFNAME[?...], memif:/path.sock[?role=...&mtu=N].
  std::string link;
  // Our IPv4 addresses with prefix lengths ("198.18.0.1/24"); at least one.
  // The first is the source of anything the routes do not say otherwise.
  std::vector<std::string> addresses;
  std::string gateway;              // default gateway, optional
  std::vector<std::string> routes;  // static routes "PREFIX/LEN,GATEWAY"

  // Packet memory: `buffers` pool buffers of `buffer_size` bytes. 0 picks
  // the size: 2048, or for a memif URI with mtu=N the power of two that
  // holds a frame of that MTU.
  std::uint32_t buffers = 4096;
  std::uint32_t buffer_size = 0;
  std::string name = "usnet";  // names the shared memory (/proc/PID/maps)

  // The layers (default_tcp(): the library's defaults with 1 MiB buffers).
  // The seeds (TCP's keys and ISNs, UDP's ephemeral ports) are filled from
  // getrandom() when 0, as default_tcp()/default_udp() leave them; TCP's
  // MSS from the interface's MTU (MTU - 40) when 0, as default_tcp() leaves
  // it, and capped there otherwise.
  tcp::TcpConfig tcp = default_tcp();
  udp::UdpConfig udp = default_udp();

  // Debugging aids: a pcap capture of every frame, and seeded faults
  // (drop, corrupt, duplicate, reorder) on received and sent frames.
  std::string pcap;
  link::FaultConfig rx_faults{}, tx_faults{};

  // The statistics region `usnet stat` reads (usnet/stats.hpp): republished
  // this often from poll(); 0: none.
  Nanos stats_interval = std::chrono::seconds(1);

  static tcp::TcpConfig default_tcp();
  static udp::UdpConfig default_udp();
};

enum class LoopMode : std::uint8_t {
  kBusy,      // never sleep
  kAdaptive,  // spin for `spin` after the last frame, then sleep on wait_fd()
};

struct LoopConfig {
  LoopMode mode = LoopMode::kAdaptive;
  Nanos spin = std::chrono::microseconds(200);
  // The longest sleep, so a program that checks a flag between turns sees
  // it in time.
  Nanos max_sleep = std::chrono::milliseconds(50);
};

// How many turns of the loop found work and how long it slept.
struct LoopCounters {
  std::uint64_t turns = 0;
  std::uint64_t busy_turns = 0;  // a frame arrived or a timer ran
  std::uint64_t sleeps = 0;
  std::uint64_t wakeups_by_fd = 0;  // sleeps a frame (or control event) ended
  Nanos slept{0};
};

class Stack {
 public:
  class TxBatch;

  static Expected<std::unique_ptr<Stack>, StackError> create(const StackConfig& config);
  // Closes everything top down. Sockets and streams made by this stack
  // must be gone first.
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  tcp::TcpLayer& tcp() noexcept { return *tcp_; }
  udp::UdpLayer& udp() noexcept { return *udp_; }
  net::Interface& interface() noexcept { return *iface_; }
  // The link the stack sends through (a pcap or fault wrapper when those
  // are configured), and the device link beneath any wrapper.
  link::Link& link() noexcept { return *link_; }
  link::Link& device() noexcept { return *device_; }
  // The fault injector when faults are configured, else null.
  const link::FaultInjector* faults() const noexcept { return faults_; }
  mem::PacketPool& pool() noexcept { return *pool_; }
  mem::OwnerId pool_owner() const noexcept { return owner_; }
  const StackConfig& config() const noexcept { return config_; }

  // The monotonic clock the stack runs on.
  static Nanos now() noexcept;

  // One turn at `now`: frames received and handled, due timers run.
  // Returns whether there was work (a frame, or a timer that fired).
  bool poll(Nanos now);
  // When poll() next has timer work; Nanos::max() if none.
  Nanos next_deadline() const noexcept;
  // An fd that becomes readable when the link has frames (or control
  // work), for epoll/asio/libuv; -1 when the link has none (the in-memory
  // link): such a program must call poll() at least every ms. Around its
  // own sleep on the fd a program calls arm_wakeup() (false: frames are
  // waiting, poll instead of sleeping) and disarm_wakeup() after: a memif
  // peer signals the fd only in between.
  int wait_fd() const noexcept { return link_->wait_fd(); }
  bool arm_wakeup() { return link_->arm_wakeup(); }
  void disarm_wakeup() { link_->disarm_wakeup(); }
  // Sleeps until wait_fd() is readable, `until`, or next_deadline(),
  // whichever is first (at most `max_sleep`; 1 ms when there is no fd).
  void wait(Nanos until, Nanos max_sleep = std::chrono::milliseconds(50));

  // Sends made while the returned TxBatch lives may reach the peer as one
  // burst (see TxBatch). Batches nest; the outermost one's end counts. A
  // batch must end before shutdown() and the stack's destruction.
  [[nodiscard]] TxBatch batch();

  // The built-in loop's turn: poll(), then in adaptive mode sleep when
  // nothing has arrived for `loop.spin`. Returns poll()'s answer.
  bool run_once(const LoopConfig& loop = {});
  const LoopCounters& loop_counters() const noexcept { return loop_counters_; }

  // Closes the layers and the link, top down (every socket and stream must
  // be gone by now), and returns how many packet buffers are still in use
  // afterwards: 0 unless something leaked. Only destruction may follow.
  std::size_t shutdown();

  // Every layer's counters as text (netstat -s style).
  std::string format_counters() const;
  // What the statistics region holds: "key value" lines (pool, link,
  // connections), "--", then format_counters().
  std::string format_stats() const;
  // The statistics region's file, empty when there is none.
  std::string stats_path() const { return stats_ ? stats_->path() : std::string(); }
  // Why there is no statistics region although stats_interval asked for one
  // (it could not be created: the stack works without it); empty otherwise.
  const std::string& stats_error() const noexcept { return stats_error_; }
  // Buffers the stack holds now.
  std::size_t buffers_in_use() const noexcept { return pool_->in_use(owner_); }

 private:
  Stack() = default;
  StackConfig config_;
  std::optional<mem::Arena> arena_;
  std::unique_ptr<mem::PacketPool> pool_;
  mem::OwnerId owner_{};
  std::unique_ptr<link::Link> link_;
  link::Link* device_ = nullptr;
  const link::FaultInjector* faults_ = nullptr;
  std::unique_ptr<net::Interface> iface_;
  std::unique_ptr<udp::UdpLayer> udp_;
  std::unique_ptr<tcp::TcpLayer> tcp_;
  LoopCounters loop_counters_;
  Nanos last_work_{0};
  std::optional<StatsWriter> stats_;
  std::string stats_error_;
  Nanos next_stats_ = Nanos::max();
  int batch_depth_ = 0;
};

// A burst of sends, for streams of small messages. While one lives, the
// link may keep the frames it takes from its peer's view and show them
// together: memif stores its ring's index and looks at the peer's wake-up
// flag once per burst (at most 32 frames) instead of once per frame, so the
// two cores trade those cache lines less often. Each send still returns at
// once with its own result (a full link is ENOBUFS as always); only when
// the peer sees the frames changes: at the batch's end, every 32 frames, a
// full ring, or the next poll(), whichever is first. A request/response
// gains nothing from it: the answer is awaited right after the send.
//
//   {
//     auto burst = stack->batch();
//     for (const auto& m : messages) sock->send_to(m, to, now);
//   }  // the peer sees them here
class [[nodiscard]] Stack::TxBatch {
 public:
  explicit TxBatch(Stack& s) : stack_(&s) {
    if (stack_->batch_depth_++ == 0) stack_->link_->set_tx_hold(true);
  }
  ~TxBatch() {
    if (--stack_->batch_depth_ == 0 && stack_->link_) stack_->link_->set_tx_hold(false);
  }
  TxBatch(const TxBatch&) = delete;
  TxBatch& operator=(const TxBatch&) = delete;

 private:
  Stack* stack_;
};

inline Stack::TxBatch Stack::batch() { return TxBatch(*this); }

// "198.18.0.1/24" -> address and prefix length (no "/LEN": /32).
std::optional<net::InterfaceAddress> parse_cidr(std::string_view s);

// The pool buffer size StackConfig::buffer_size = 0 picks for `link_uri`.
std::uint32_t default_buffer_size(std::string_view link_uri);

}  // namespace usnet
