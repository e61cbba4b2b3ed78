// The benchmark engine (bench_engine.hpp): the server and client of every
// system and workload, and the parent that forks, places and times them.
#include "bench_engine.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <optional>
#include <sstream>

#include "cpu_pinning.hpp"  // bench/: cache_line_round_trip_ns
#include "usnet/stack.hpp"
#include "veth_topology.hpp"  // bench/: enter_netns

namespace usnet::tool::bench {

const char* name(System s) {
  switch (s) {
    case System::kUsnet:
      return "usnet";
    case System::kKernel:
      return "kernel";
    case System::kZmq:
      return "zeromq";
  }
  return "?";
}
const char* name(Proto p) { return p == Proto::kTcp ? "tcp" : "udp"; }
const char* name(Workload w) {
  switch (w) {
    case Workload::kRr:
      return "rr";
    case Workload::kStream:
      return "stream";
    case Workload::kBulk:
      return "bulk";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- in the children -------------------------------------------------------

volatile std::sig_atomic_t g_child_stop = 0;
void on_child_stop(int) { g_child_stop = 1; }

// What a child tells the parent: "key value" lines on a pipe.
class Report {
 public:
  explicit Report(int fd) : fd_(fd) {}
  void line(const std::string& s) {
    const std::string l = s + "\n";
    std::size_t off = 0;
    while (off < l.size()) {
      const ssize_t n = ::write(fd_, l.data() + off, l.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }
  void kv(const std::string& k, double v) {
    std::ostringstream o;
    o.precision(12);
    o << k << ' ' << v;
    line(o.str());
  }
  int fail(const std::string& why) {
    std::string w = why;
    std::replace(w.begin(), w.end(), '\n', ' ');
    line("error " + w);
    return 1;
  }

 private:
  int fd_;
};

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Round-trip times, kept after the warm-up.
class Rtts {
 public:
  explicit Rtts(double seconds) : warm_(std::min(0.3, seconds / 10)) { samples_.reserve(1 << 20); }
  void start(Clock::time_point t) { begin_ = t; }
  bool warm(Clock::time_point now) const { return seconds_between(begin_, now) >= warm_; }
  void add(Clock::time_point sent, Clock::time_point now) {
    if (!warm(sent)) return;
    if (!measuring_) {
      measuring_ = true;
      first_ = sent;
    }
    last_ = now;
    samples_.push_back(std::chrono::duration<double, std::micro>(now - sent).count());
  }
  void report(Report& r, int connections) {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    const auto at = [&](double q) {
      return samples_[static_cast<std::size_t>(std::floor(q * static_cast<double>(samples_.size() - 1)))];
    };
    double sum = 0;
    for (double s : samples_) sum += s;
    const double secs = seconds_between(first_, last_);
    r.kv("round_trips", static_cast<double>(samples_.size()));
    r.kv("seconds", secs);
    r.kv("p50_us", at(0.5));
    r.kv("p99_us", at(0.99));
    r.kv("p999_us", at(0.999));
    r.kv("max_us", samples_.back());
    r.kv("mean_us", sum / static_cast<double>(samples_.size()));
    r.kv("connections", connections);
    for (int i = 0; i <= 200; ++i) cdf(r, i / 200.0, at(i / 200.0));
    for (double q : {0.995, 0.999, 0.9995, 0.9999}) cdf(r, q, at(q));
  }

 private:
  static void cdf(Report& r, double q, double us) {
    std::ostringstream o;
    o.precision(9);
    o << "cdf " << q << ' ' << us;
    r.line(o.str());
  }
  double warm_;
  Clock::time_point begin_{}, first_{}, last_{};
  bool measuring_ = false;
  std::vector<double> samples_;
};

// A message of `size` bytes: its number in the first 8 bytes
// (number_message), then a pattern, the same for every message (only the
// numbers are checked by receivers, every byte by request/response). The
// pattern is written once per buffer, not per message: a sender's cost per
// message is then the transport's, not the pattern's (which, computed per
// 64-byte message, took a fifth of usnet's TCP stream sender).
std::vector<std::byte> make_message(std::size_t size) {
  std::vector<std::byte> m(size);
  for (std::size_t k = 8; k < size; ++k) m[k] = static_cast<std::byte>((k * 7 + 3) & 0xff);
  return m;
}

void number_message(std::vector<std::byte>& m, std::uint64_t i) { std::memcpy(m.data(), &i, 8); }

// The receiving end of a byte stream of numbered messages: checks each
// message's number at its boundary, counts messages and bytes.
class StreamSink {
 public:
  explicit StreamSink(std::size_t size) : size_(size) {}
  // False on a wrong message number (data lost, reordered or corrupted).
  bool consume(const std::byte* d, std::size_t n, Clock::time_point now) {
    if (n == 0) return true;
    if (bytes_ == 0) first_ = now;
    last_ = now;
    std::size_t i = 0;
    while (i < n) {
      const std::size_t in_msg = static_cast<std::size_t>(bytes_ % size_);
      if (in_msg < 8) {
        const std::size_t take = std::min<std::size_t>(8 - in_msg, n - i);
        std::memcpy(header_.data() + in_msg, d + i, take);
        i += take;
        bytes_ += take;
        if (in_msg + take == 8) {
          std::uint64_t got = 0;
          std::memcpy(&got, header_.data(), 8);
          if (got != messages_) return false;
          ++messages_;
        }
        continue;
      }
      const std::size_t skip = std::min<std::size_t>(size_ - in_msg, n - i);
      i += skip;
      bytes_ += skip;
    }
    return true;
  }
  void report(Report& r) const {
    const double secs = seconds_between(first_, last_);
    r.kv("messages", static_cast<double>(bytes_ / size_));
    r.kv("bytes", static_cast<double>(bytes_));
    r.kv("seconds", secs);
  }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t expected() const { return messages_; }

 private:
  std::size_t size_;
  std::uint64_t bytes_ = 0, messages_ = 0;
  std::array<std::byte, 8> header_{};
  Clock::time_point first_{}, last_{};
};

// The receiving end of numbered datagrams: counts them and the gaps.
class DatagramSink {
 public:
  void consume(const std::byte* d, std::size_t n, Clock::time_point now) {
    if (n < 8) return;
    std::uint64_t seq = 0;
    std::memcpy(&seq, d, 8);
    if (messages_ == 0) first_ = now;
    last_ = now;
    ++messages_;
    bytes_ += n;
    if (seq >= next_) {
      lost_ += seq - next_;
      next_ = seq + 1;
    }
  }
  void report(Report& r) const {
    r.kv("messages", static_cast<double>(messages_));
    r.kv("bytes", static_cast<double>(bytes_));
    r.kv("seconds", seconds_between(first_, last_));
    r.kv("lost", static_cast<double>(lost_));
  }
  std::uint64_t messages() const { return messages_; }

 private:
  std::uint64_t messages_ = 0, bytes_ = 0, lost_ = 0, next_ = 0;
  Clock::time_point first_{}, last_{};
};

constexpr std::size_t kEndMarker = 1;  // a datagram this short ends a UDP stream

// ---- usnet ------------------------------------------------------------------

Expected<std::unique_ptr<Stack>, std::string> usnet_stack(const std::string& link, const std::string& addr,
                                                          int prefix, const char* name, Workload w) {
  StackConfig c;
  if (w == Workload::kBulk) {
    // Bulk: 4 MiB buffers each way (the kernel's autotuning goes to 4-6 MiB).
    c.tcp.connection.send_buffer = c.tcp.connection.recv_buffer = std::size_t{4} << 20;
  }
  c.link = link;
  c.addresses = {addr + "/" + std::to_string(prefix)};
  c.name = name;
  auto s = Stack::create(c);
  if (!s) return unexpected(s.error().message);
  return std::move(*s);
}

// The steady clock's time point for a stack time (both are steady_clock):
// the busy loops read the clock once per turn.
Clock::time_point at(Nanos t) { return Clock::time_point(std::chrono::duration_cast<Clock::duration>(t)); }

// Drives the stack until `done` or the deadline; false on the deadline.
template <typename Done>
bool drive(Stack& s, Clock::duration limit, Done done) {
  const LoopConfig busy{LoopMode::kBusy};
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end || g_child_stop) return false;
    s.run_once(busy);
  }
  return true;
}

int finish_usnet(Stack& s, Report& r) {
  const std::size_t leaked = s.shutdown();
  if (leaked != 0) return r.fail(std::to_string(leaked) + " packet buffers still in use after the run");
  return 0;
}

int usnet_tcp_server(const RunSpec& spec, const Placement& where, Report& r) {
  auto sp = usnet_stack(where.server_link, where.usnet_server, where.usnet_prefix, "usnet-bench-server",
                        spec.workload);
  if (!sp) return r.fail("usnet server stack: " + sp.error());
  Stack& s = **sp;
  std::string failure;
  {
    auto listener = s.tcp().listen({{}, spec.port});
    if (!listener) return r.fail("listen: " + listener.error().message());
    r.line("ready");
    struct Conn {
      tcp::TcpStream stream;
      std::vector<std::byte> pending;  // echo bytes not yet taken by send()
      bool done = false;
    };
    std::vector<Conn> conns;
    std::vector<std::byte> buf(std::max<std::size_t>(spec.size, 256 * 1024));
    StreamSink sink(spec.size);
    const bool echo = spec.workload == Workload::kRr;
    const auto hard_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(spec.seconds + 20));
    std::size_t finished = 0;
    std::uint64_t retransmits = 0;
    while (!g_child_stop && failure.empty()) {
      const auto now = Stack::now();
      if (at(now) > hard_end) failure = "the run did not end in time";
      s.poll(now);  // busy polling
      while (auto st = listener->accept()) {
        st->set_no_delay(true, now);
        conns.push_back({std::move(*st), {}, false});
      }
      for (auto& c : conns) {
        if (c.done) continue;
        if (!c.pending.empty()) {
          auto n = c.stream.send(c.pending, now);
          if (n) c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(*n));
        }
        for (;;) {
          auto n = c.stream.receive(buf, now);
          if (!n || *n == 0) break;
          if (echo) {
            std::size_t sent = 0;
            if (c.pending.empty()) {
              if (auto m = c.stream.send(std::span(buf).first(*n), now)) sent = *m;
            }
            c.pending.insert(c.pending.end(), buf.begin() + static_cast<std::ptrdiff_t>(sent),
                             buf.begin() + static_cast<std::ptrdiff_t>(*n));
          } else if (!sink.consume(buf.data(), *n, Clock::now())) {
            failure = "message " + std::to_string(sink.expected()) + " arrived out of place";
          }
        }
        if (c.stream.connection().eof() || c.stream.connection().error()) {
          retransmits += c.stream.connection().counters().retransmits;
          c.stream.close(now);
          c.done = true;
          ++finished;
        }
      }
      if (!conns.empty() && finished == conns.size() && static_cast<int>(conns.size()) >= spec.connections)
        break;
    }
    if (!echo) sink.report(r);
    r.kv("tcp_retransmissions", static_cast<double>(retransmits));
    // Let the last FINs and ACKs go out.
    drive(s, 200ms, [&] { return s.tcp().connection_count() == 0; });
  }
  if (!failure.empty()) return r.fail(failure);
  return finish_usnet(s, r);
}

int usnet_tcp_client(const RunSpec& spec, const Placement& where, Report& r) {
  auto sp = usnet_stack(where.client_link, where.usnet_client, where.usnet_prefix, "usnet-bench-client",
                        spec.workload);
  if (!sp) return r.fail("usnet client stack: " + sp.error());
  Stack& s = **sp;
  const auto server = wire::Ipv4Addr::parse(where.usnet_server);
  if (!server) return r.fail("bad server address " + where.usnet_server);
  std::string failure;
  {
    struct Conn {
      tcp::TcpStream stream;
      std::vector<std::byte> req, answer;
      std::size_t sent = 0, got = 0;
      std::uint64_t seq = 0;
      Clock::time_point start{};
    };
    std::vector<Conn> conns;
    const int n_conns = spec.workload == Workload::kRr ? spec.connections : 1;
    for (int i = 0; i < n_conns; ++i) {
      auto st = s.tcp().connect({*server, spec.port}, Stack::now());
      if (!st) return r.fail("connect: " + st.error().message());
      // Request/response without Nagle's delay; streams with it (small
      // messages travel together), as the kernel's are set.
      st->set_no_delay(spec.workload == Workload::kRr, Stack::now());
      conns.push_back({std::move(*st), make_message(spec.size), std::vector<std::byte>(spec.size)});
    }
    const bool up = drive(s, 5s, [&] {
      return std::all_of(conns.begin(), conns.end(), [](Conn& c) {
        return c.stream.connection().established() || c.stream.connection().error();
      });
    });
    for (auto& c : conns) {
      if (auto e = c.stream.connection().error()) return r.fail("connect: " + e.message());
    }
    if (!up) return r.fail("no connection in 5 s");

    const LoopConfig busy{LoopMode::kBusy};
    const auto begin = Clock::now();
    const auto end =
        begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds));
    if (spec.workload == Workload::kRr) {
      Rtts rtts(spec.seconds);
      rtts.start(begin);
      for (auto& c : conns) {
        number_message(c.req, c.seq);
        c.start = Clock::now();
      }
      Clock::time_point now = begin;
      while (now < end && failure.empty()) {
        const auto tnow = Stack::now();
        s.poll(tnow);  // busy polling
        now = at(tnow);
        if (g_child_stop) failure = "interrupted";
        for (auto& c : conns) {
          if (auto e = c.stream.connection().error()) failure = e.message();
          if (c.sent < spec.size) {
            if (auto n = c.stream.send(std::span(c.req).subspan(c.sent), tnow)) c.sent += *n;
          }
          if (auto n = c.stream.receive(std::span(c.answer).subspan(c.got), tnow)) c.got += *n;
          if (c.got == spec.size) {
            const auto t = Clock::now();
            if (std::memcmp(c.req.data(), c.answer.data(), spec.size) != 0)
              failure = "an answer differs from its request";
            rtts.add(c.start, t);
            number_message(c.req, ++c.seq);
            c.sent = c.got = 0;
            c.start = t;
            if (auto n = c.stream.send(c.req, tnow)) c.sent += *n;
          } else if (now - c.start > 5s) {
            failure = "no answer in 5 s";
          }
        }
      }
      if (failure.empty()) rtts.report(r, n_conns);
    } else {
      // One connection sends numbered messages of spec.size bytes, one
      // send() each, until the end, then closes.
      Conn& c = conns.front();
      std::uint64_t seq = 0;
      std::size_t off = spec.size;  // of the current message taken by send()
      while (failure.empty()) {
        s.run_once(busy);
        const auto tnow = Stack::now();
        if (g_child_stop) failure = "interrupted";
        if (auto e = c.stream.connection().error()) failure = e.message();
        const bool more = Clock::now() < end;  // another message may start
        if (!more && off == spec.size) break;
        while (c.stream.connection().writable() > 0) {
          if (off == spec.size) {
            if (!more) break;
            number_message(c.req, seq++);
            off = 0;
          }
          auto n = c.stream.send(std::span(c.req).subspan(off), tnow);
          if (!n || *n == 0) break;
          off += *n;
          if (off < spec.size) break;
        }
      }
      r.kv("sent_messages", static_cast<double>(seq));
    }
    for (auto& c : conns) c.stream.shutdown_write(Stack::now());
    // Everything queued goes out and is acknowledged, and the server closes
    // (answers still on their way are read and dropped).
    if (failure.empty() && !drive(s, 10s, [&] {
          return std::all_of(conns.begin(), conns.end(), [&](Conn& c) {
            while (true) {
              auto n = c.stream.receive(c.answer, Stack::now());
              if (!n || *n == 0) break;
            }
            return c.stream.connection().eof() || c.stream.connection().error();
          });
        })) {
      failure = "the server did not close in 10 s";
    }
    std::uint64_t retransmits = 0;
    for (auto& c : conns) {
      retransmits += c.stream.connection().counters().retransmits;
      c.stream.close(Stack::now());
    }
    drive(s, 500ms, [&] { return s.tcp().connection_count() == 0; });
    r.kv("tcp_retransmissions", static_cast<double>(retransmits));
  }
  if (!failure.empty()) return r.fail(failure);
  return finish_usnet(s, r);
}

int usnet_udp_server(const RunSpec& spec, const Placement& where, Report& r) {
  auto sp = usnet_stack(where.server_link, where.usnet_server, where.usnet_prefix, "usnet-bench-server",
                        spec.workload);
  if (!sp) return r.fail("usnet server stack: " + sp.error());
  Stack& s = **sp;
  std::string failure;
  {
    // A receive queue like the kernel server's 4 MiB SO_RCVBUF (the default,
    // 64 datagrams, is less than one poll can deliver).
    udp::SocketOptions so;
    so.max_queue_datagrams = 1024;
    so.max_queue_bytes = std::size_t{4} << 20;
    auto sock = s.udp().open(so);
    if (auto e = sock->bind({{}, spec.port})) return r.fail("bind: " + e.message());
    r.line("ready");
    const bool echo = spec.workload == Workload::kRr;
    DatagramSink sink;
    const auto hard_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(spec.seconds + 20));
    bool ended = false;
    std::vector<std::byte> buf(65536);
    while (!g_child_stop && !ended) {
      const auto now = Stack::now();
      if (at(now) > hard_end) {
        failure = "the run did not end in time";
        break;
      }
      s.poll(now);  // busy polling
      for (;;) {
        auto d = sock->receive();
        if (!d) break;
        const auto p = d->payload();
        if (echo) {
          // The answer goes out as soon as the link takes it.
          for (int tries = 0; tries < 1000; ++tries) {
            const auto e = sock->send_to(p, d->from, now);
            if (!e) break;
            if (e != std::errc::no_buffer_space) {
              failure = "send: " + e.message();
              break;
            }
            s.poll(Stack::now());
          }
        } else if (p.size() <= kEndMarker) {
          ended = true;
        } else {
          sink.consume(p.data(), p.size(), at(now));  // the turn's time: no clock read per datagram
        }
      }
    }
    if (!echo) sink.report(r);
  }
  if (!failure.empty()) return r.fail(failure);
  return finish_usnet(s, r);
}

int usnet_udp_client(const RunSpec& spec, const Placement& where, Report& r) {
  auto sp = usnet_stack(where.client_link, where.usnet_client, where.usnet_prefix, "usnet-bench-client",
                        spec.workload);
  if (!sp) return r.fail("usnet client stack: " + sp.error());
  Stack& s = **sp;
  const auto server_addr = wire::Ipv4Addr::parse(where.usnet_server);
  if (!server_addr) return r.fail("bad server address " + where.usnet_server);
  const udp::Endpoint server{*server_addr, spec.port};
  std::string failure;
  {
    auto sock = s.udp().open();
    std::vector<std::byte> msg = make_message(spec.size), answer(65536);
    const auto begin = Clock::now();
    const auto end =
        begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds));
    // Sends, polling while the link is full (ENOBUFS), for at most 1 s.
    const auto send = [&](std::span<const std::byte> p) {
      const auto limit = Clock::now() + 1s;
      for (;;) {
        const auto e = sock->send_to(p, server, Stack::now());
        if (!e) return true;
        if (e != std::errc::no_buffer_space || Clock::now() > limit) {
          failure = "send: " + e.message();
          return false;
        }
        s.poll(Stack::now());
      }
    };
    if (spec.workload == Workload::kRr) {
      Rtts rtts(spec.seconds);
      rtts.start(begin);
      std::uint64_t seq = 0, resent = 0;
      while (Clock::now() < end && failure.empty() && !g_child_stop) {
        number_message(msg, seq);
        auto start = Clock::now();
        if (!send(msg)) break;
        for (;;) {
          const auto tnow = Stack::now();
          s.poll(tnow);  // busy polling
          auto got = sock->recv_from(answer);
          const auto now = at(tnow);
          if (got && got->copied == spec.size && std::memcmp(answer.data(), msg.data(), spec.size) == 0) {
            rtts.add(start, Clock::now());
            break;
          }
          if (got) continue;         // an answer to an earlier, resent request
          if (now - start > 20ms) {  // lost (ARP on the first one): again
            if (++resent > 1000) failure = "more than 1,000 requests unanswered";
            if (!failure.empty() || !send(msg)) break;
            start = Clock::now();
          }
          if (g_child_stop) break;
        }
        ++seq;
      }
      if (failure.empty()) rtts.report(r, 1);
      r.kv("resent", static_cast<double>(resent));
    } else {
      // The first message resolves the server's address; the rest wait for
      // that (queued behind ARP, they would be dropped past its bound).
      std::uint64_t seq = 0;
      number_message(msg, seq++);
      if (send(msg) && !drive(s, 2s, [&] {
            return s.interface().arp().state(*server_addr) == net::ArpState::Reachable;
          })) {
        failure = "the server's address did not resolve in 2 s";
      }
      // The clock is read (and the stack polled) every 16 messages: a
      // stream's sender has no reason to look at it more often. The 16 are
      // sent as one batch (Stack::batch): each is its own send and frame,
      // and the link shows them to the server together.
      Nanos tnow = Stack::now();
      std::optional<Stack::TxBatch> burst;
      while (failure.empty() && !g_child_stop) {
        if (!burst) burst.emplace(s);
        number_message(msg, seq);
        const auto e = sock->send_to(msg, server, tnow);
        if (e == std::errc::no_buffer_space) {
          if (!send(msg)) break;  // polls until the link takes it
        } else if (e) {
          failure = "send: " + e.message();
          break;
        }
        if ((++seq & 15) == 0) {
          burst.reset();
          tnow = Stack::now();
          s.poll(tnow);
          if (Clock::now() >= end) break;
        }
      }
      burst.reset();
      r.kv("sent_messages", static_cast<double>(seq));
      // The end, several times over (a marker could be lost); the server
      // may be gone after the first, so these may fail.
      const std::array<std::byte, kEndMarker> marker{};
      for (int i = 0; i < 5 && failure.empty(); ++i) {
        (void)sock->send_to(marker, server, Stack::now());
        drive(s, 2ms, [] { return false; });
      }
    }
    drive(s, 20ms, [] { return false; });  // what is queued leaves
  }
  if (!failure.empty()) return r.fail(failure);
  return finish_usnet(s, r);
}

// ---- the kernel -------------------------------------------------------------

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

sockaddr_in kernel_addr(const std::string& ip, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// recv() of exactly n bytes (TCP); false on EOF, error, or a stop.
bool recv_all(int fd, std::byte* p, std::size_t n, bool busy) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t m = ::recv(fd, p + got, n - got, busy ? MSG_DONTWAIT : 0);
    if (m > 0) {
      got += static_cast<std::size_t>(m);
    } else if (m == 0) {
      return false;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (g_child_stop) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool send_all(int fd, const std::byte* p, std::size_t n) {
  std::size_t sent = 0;
  while (sent < n) {
    const ssize_t m = ::send(fd, p + sent, n - sent, MSG_NOSIGNAL);
    if (m > 0) {
      sent += static_cast<std::size_t>(m);
    } else if (m < 0 && (errno == EINTR || errno == EAGAIN) && !g_child_stop) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

int kernel_tcp_server(const RunSpec& spec, const Placement& where, Report& r) {
  const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const auto a = kernel_addr(where.kernel_server, spec.port);
  if (::bind(ls, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return r.fail(errno_text("bind"));
  if (::listen(ls, 1024) != 0) return r.fail(errno_text("listen"));
  r.line("ready");
  set_timeouts(ls, 1000ms);
  const bool echo = spec.workload == Workload::kRr;
  const bool busy = spec.kernel_wait == KernelWait::kBusy;
  std::vector<int> fds;
  const auto accept_deadline = Clock::now() + 10s;
  const int want = echo ? spec.connections : 1;
  while (static_cast<int>(fds.size()) < want) {
    const int fd = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      set_timeouts(fd, 1000ms);
      fds.push_back(fd);
    } else if (g_child_stop || Clock::now() > accept_deadline) {
      return r.fail("no connection");
    }
  }
  ::close(ls);
  std::vector<std::byte> buf(std::max<std::size_t>(spec.size, 256 * 1024));
  std::string failure;
  if (!echo) {
    StreamSink sink(spec.size);
    for (;;) {
      const ssize_t n = ::recv(fds[0], buf.data(), buf.size(), 0);
      if (n > 0) {
        if (!sink.consume(buf.data(), static_cast<std::size_t>(n), Clock::now())) {
          failure = "message " + std::to_string(sink.expected()) + " arrived out of place";
          break;
        }
      } else if (n == 0 || g_child_stop || (errno != EAGAIN && errno != EINTR)) {
        break;
      }
    }
    sink.report(r);
  } else if (fds.size() == 1) {
    while (!g_child_stop) {
      if (!recv_all(fds[0], buf.data(), spec.size, busy)) break;
      if (!send_all(fds[0], buf.data(), spec.size)) break;
    }
  } else {
    // Many connections: epoll, each connection's request answered whole.
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    std::size_t open = fds.size();
    std::array<epoll_event, 64> evs{};
    while (!g_child_stop && open > 0) {
      const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), busy ? 0 : 1000);
      for (int k = 0; k < n; ++k) {
        const int fd = fds[evs[static_cast<std::size_t>(k)].data.u64];
        if (!recv_all(fd, buf.data(), spec.size, false) || !send_all(fd, buf.data(), spec.size)) {
          ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
          --open;
        }
      }
    }
    ::close(ep);
  }
  for (int fd : fds) ::close(fd);
  if (!failure.empty()) return r.fail(failure);
  return 0;
}

int kernel_connect(const Placement& where, std::uint16_t port, bool no_delay, std::string& failure) {
  const auto a = kernel_addr(where.kernel_server, port);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
      const int on = no_delay ? 1 : 0;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      set_timeouts(fd, 2000ms);
      return fd;
    }
    failure = errno_text("connect");
    ::close(fd);
    ::usleep(20000);
  }
  return -1;
}

int kernel_tcp_client(const RunSpec& spec, const Placement& where, Report& r) {
  std::string failure;
  const int n_conns = spec.workload == Workload::kRr ? spec.connections : 1;
  std::vector<int> fds;
  for (int i = 0; i < n_conns; ++i) {
    const int fd = kernel_connect(where, spec.port, spec.workload == Workload::kRr, failure);
    if (fd < 0) return r.fail(failure);
    fds.push_back(fd);
  }
  const bool busy = spec.kernel_wait == KernelWait::kBusy;
  const auto begin = Clock::now();
  const auto end =
      begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds));
  std::vector<std::byte> req = make_message(spec.size), answer(spec.size);
  if (spec.workload == Workload::kRr) {
    Rtts rtts(spec.seconds);
    rtts.start(begin);
    if (n_conns == 1) {
      for (std::uint64_t seq = 0; Clock::now() < end && failure.empty() && !g_child_stop; ++seq) {
        number_message(req, seq);
        const auto start = Clock::now();
        if (!send_all(fds[0], req.data(), spec.size) || !recv_all(fds[0], answer.data(), spec.size, busy)) {
          failure = g_child_stop ? "interrupted" : "no answer (" + std::string(std::strerror(errno)) + ")";
          break;
        }
        if (std::memcmp(req.data(), answer.data(), spec.size) != 0)
          failure = "an answer differs from its request";
        rtts.add(start, Clock::now());
      }
    } else {
      // One request in flight per connection; epoll says which answered.
      const int ep = ::epoll_create1(EPOLL_CLOEXEC);
      std::vector<Clock::time_point> started(fds.size());
      std::vector<std::uint64_t> seqs(fds.size());
      std::vector<std::vector<std::byte>> reqs(fds.size(), make_message(spec.size));
      for (std::size_t i = 0; i < fds.size(); ++i) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        number_message(reqs[i], 0);
        started[i] = Clock::now();
        if (!send_all(fds[i], reqs[i].data(), spec.size)) failure = errno_text("send");
      }
      std::array<epoll_event, 64> evs{};
      while (Clock::now() < end && failure.empty() && !g_child_stop) {
        const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), busy ? 0 : 2000);
        if (n == 0 && !busy) failure = "no answer in 2 s";
        for (int k = 0; k < n && failure.empty(); ++k) {
          const std::size_t i = evs[static_cast<std::size_t>(k)].data.u64;
          if (!recv_all(fds[i], answer.data(), spec.size, false)) {
            failure = "no answer";
            break;
          }
          const auto t = Clock::now();
          if (std::memcmp(reqs[i].data(), answer.data(), spec.size) != 0)
            failure = "an answer differs from its request";
          rtts.add(started[i], t);
          number_message(reqs[i], ++seqs[i]);
          started[i] = t;
          if (!send_all(fds[i], reqs[i].data(), spec.size)) failure = errno_text("send");
        }
      }
      ::close(ep);
    }
    if (failure.empty()) rtts.report(r, n_conns);
  } else {
    std::uint64_t seq = 0;
    while (!g_child_stop) {  // the clock every 16 messages, as usnet's sender
      number_message(req, seq);
      if (!send_all(fds[0], req.data(), spec.size)) {
        failure = errno_text("send");
        break;
      }
      if ((++seq & 15) == 0 && Clock::now() >= end) break;
    }
    r.kv("sent_messages", static_cast<double>(seq));
    ::shutdown(fds[0], SHUT_WR);
    // The server closes once it has read everything.
    std::array<std::byte, 64> sink{};
    while (::recv(fds[0], sink.data(), sink.size(), 0) > 0) {
    }
  }
  for (int fd : fds) ::close(fd);
  if (!failure.empty()) return r.fail(failure);
  return 0;
}

int kernel_udp_server(const RunSpec& spec, const Placement& where, Report& r) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const auto a = kernel_addr(where.kernel_server, spec.port);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return r.fail(errno_text("bind"));
  const int rcvbuf = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  set_timeouts(fd, 1000ms);
  r.line("ready");
  const bool echo = spec.workload == Workload::kRr;
  const bool busy = spec.kernel_wait == KernelWait::kBusy;
  std::vector<std::byte> buf(65536);
  DatagramSink sink;
  const auto hard_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(spec.seconds + 20));
  while (!g_child_stop && Clock::now() < hard_end) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), busy && echo ? MSG_DONTWAIT : 0,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) continue;  // timeout, EAGAIN or a signal: the loop's checks decide
    if (echo) {
      ::sendto(fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<const sockaddr*>(&from), len);
    } else if (static_cast<std::size_t>(n) <= kEndMarker) {
      break;
    } else {
      sink.consume(buf.data(), static_cast<std::size_t>(n), Clock::now());
    }
  }
  if (!echo) sink.report(r);
  ::close(fd);
  return 0;
}

int kernel_udp_client(const RunSpec& spec, const Placement& where, Report& r) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const auto a = kernel_addr(where.kernel_server, spec.port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    return r.fail(errno_text("connect"));
  set_timeouts(fd, 20ms);
  const bool busy = spec.kernel_wait == KernelWait::kBusy;
  std::vector<std::byte> msg = make_message(spec.size), answer(65536);
  const auto begin = Clock::now();
  const auto end =
      begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds));
  std::string failure;
  if (spec.workload == Workload::kRr) {
    Rtts rtts(spec.seconds);
    rtts.start(begin);
    std::uint64_t resent = 0;
    for (std::uint64_t seq = 0; Clock::now() < end && failure.empty() && !g_child_stop; ++seq) {
      number_message(msg, seq);
      auto start = Clock::now();
      ::send(fd, msg.data(), spec.size, 0);
      for (;;) {
        const ssize_t n = ::recv(fd, answer.data(), answer.size(), busy ? MSG_DONTWAIT : 0);
        const auto now = Clock::now();
        if (n == static_cast<ssize_t>(spec.size) && std::memcmp(answer.data(), msg.data(), spec.size) == 0) {
          rtts.add(start, now);
          break;
        }
        if (n >= 0) continue;  // an answer to a resent request
        if (g_child_stop) break;
        if (now - start > 20ms) {
          if (++resent > 1000) {
            failure = "more than 1,000 requests unanswered";
            break;
          }
          ::send(fd, msg.data(), spec.size, 0);
          start = Clock::now();
        }
      }
    }
    if (failure.empty()) rtts.report(r, 1);
    r.kv("resent", static_cast<double>(resent));
  } else {
    // Sixteen messages per sendmmsg(): the kernel's way of handing a burst
    // over at once, as usnet's sender does with Stack::batch(). Each is
    // still its own datagram. (Measured on loopback: ~4% more than a send()
    // each; recvmmsg() in the receiver gained nothing.)
    std::uint64_t seq = 0;
    std::vector<std::vector<std::byte>> msgs(16, make_message(spec.size));
    std::array<iovec, 16> iov{};
    std::array<mmsghdr, 16> hdr{};
    for (std::size_t i = 0; i < 16; ++i) {
      iov[i] = {msgs[i].data(), spec.size};
      hdr[i].msg_hdr.msg_iov = &iov[i];
      hdr[i].msg_hdr.msg_iovlen = 1;
    }
    while (!g_child_stop) {
      for (std::size_t i = 0; i < 16; ++i) number_message(msgs[i], seq + i);
      const int n = ::sendmmsg(fd, hdr.data(), 16, 0);
      if (n < 0 && errno != ENOBUFS && errno != EAGAIN) {
        failure = errno_text("sendmmsg");
        break;
      }
      // Those sent keep their numbers; after a partial send the rest are
      // numbered again in the next call. A call that sent none (ENOBUFS)
      // loses its first message, as a send() would, and its number.
      seq += n > 0 ? static_cast<std::uint64_t>(n) : 1;
      if (Clock::now() >= end) break;
    }
    r.kv("sent_messages", static_cast<double>(seq));
    const std::array<std::byte, kEndMarker> marker{};
    for (int i = 0; i < 5; ++i) {
      ::send(fd, marker.data(), marker.size(), 0);
      ::usleep(2000);
    }
  }
  ::close(fd);
  if (!failure.empty()) return r.fail(failure);
  return 0;
}

// ---- ZeroMQ -----------------------------------------------------------------

std::string zmq_text(const char* what) { return std::string(what) + ": " + zmq_strerror(zmq_errno()); }

struct ZmqContext {
  void* ctx = zmq_ctx_new();
  void* sock = nullptr;
  ~ZmqContext() {
    if (sock != nullptr) zmq_close(sock);
    zmq_ctx_term(ctx);
  }
};

std::string zmq_endpoint(const Placement& where, std::uint16_t port) {
  return "tcp://" + where.kernel_server + ":" + std::to_string(port);
}

int zmq_server(const RunSpec& spec, const Placement& where, Report& r) {
  ZmqContext z;
  const bool echo = spec.workload == Workload::kRr;
  z.sock = zmq_socket(z.ctx, echo ? ZMQ_REP : ZMQ_PULL);
  const int timeout = 1000, linger = 0;
  zmq_setsockopt(z.sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  zmq_setsockopt(z.sock, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(z.sock, zmq_endpoint(where, spec.port).c_str()) != 0) return r.fail(zmq_text("zmq_bind"));
  r.line("ready");
  std::vector<std::byte> buf(std::max<std::size_t>(spec.size, 65536));
  StreamSink sink(spec.size);
  std::string failure;
  const auto hard_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(spec.seconds + 20));
  while (!g_child_stop && Clock::now() < hard_end) {
    const int n = zmq_recv(z.sock, buf.data(), buf.size(), 0);
    if (n < 0) continue;  // timeout or a signal
    if (echo) {
      zmq_send(z.sock, buf.data(), static_cast<std::size_t>(n), 0);
    } else if (static_cast<std::size_t>(n) <= kEndMarker) {
      break;
    } else if (!sink.consume(buf.data(), static_cast<std::size_t>(n), Clock::now())) {
      failure = "message " + std::to_string(sink.expected()) + " arrived out of place";
      break;
    }
  }
  if (!echo) sink.report(r);
  if (!failure.empty()) return r.fail(failure);
  return 0;
}

int zmq_client(const RunSpec& spec, const Placement& where, Report& r) {
  ZmqContext z;
  const bool rr = spec.workload == Workload::kRr;
  z.sock = zmq_socket(z.ctx, rr ? ZMQ_REQ : ZMQ_PUSH);
  const int timeout = 2000, linger = 5000;
  zmq_setsockopt(z.sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  zmq_setsockopt(z.sock, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
  zmq_setsockopt(z.sock, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_connect(z.sock, zmq_endpoint(where, spec.port).c_str()) != 0)
    return r.fail(zmq_text("zmq_connect"));
  std::vector<std::byte> msg = make_message(spec.size), answer(spec.size);
  const auto begin = Clock::now();
  const auto end =
      begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds));
  std::string failure;
  if (rr) {
    Rtts rtts(spec.seconds);
    rtts.start(begin);
    for (std::uint64_t seq = 0; Clock::now() < end && !g_child_stop; ++seq) {
      number_message(msg, seq);
      const auto start = Clock::now();
      if (zmq_send(z.sock, msg.data(), spec.size, 0) < 0) {
        failure = zmq_text("zmq_send");
        break;
      }
      const int n = zmq_recv(z.sock, answer.data(), answer.size(), 0);
      if (n != static_cast<int>(spec.size) || std::memcmp(answer.data(), msg.data(), spec.size) != 0) {
        failure = n < 0 ? zmq_text("zmq_recv") : "an answer differs from its request";
        break;
      }
      rtts.add(start, Clock::now());
    }
    if (failure.empty()) rtts.report(r, 1);
  } else {
    std::uint64_t seq = 0;
    while (!g_child_stop) {  // the clock every 16 messages, as usnet's sender
      number_message(msg, seq);
      if (zmq_send(z.sock, msg.data(), spec.size, 0) < 0) {
        failure = zmq_text("zmq_send");
        break;
      }
      if ((++seq & 15) == 0 && Clock::now() >= end) break;
    }
    r.kv("sent_messages", static_cast<double>(seq));
    const std::array<std::byte, kEndMarker> marker{};
    zmq_send(z.sock, marker.data(), marker.size(), 0);
  }
  if (g_child_stop && failure.empty()) failure = "interrupted";
  if (!failure.empty()) return r.fail(failure);
  return 0;
}

// ---- placing a child ------------------------------------------------------

std::string pin(int cpu) {
  if (cpu < 0) return {};
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0)
    return "cannot pin to CPU " + std::to_string(cpu) + ": " + std::strerror(errno);
  return {};
}

int child_main(bool server, const RunSpec& spec, const Placement& where, int fd) {
  struct sigaction sa {};
  sa.sa_handler = on_child_stop;  // no SA_RESTART: blocking calls return EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  Report r(fd);
  if (const auto& ns = server ? where.server_ns : where.client_ns; !ns.empty()) {
    if (auto e = ::usnet::bench::enter_netns(ns); !e.empty()) return r.fail(e);
  }
  if (auto e = pin(server ? where.server_cpu : where.client_cpu); !e.empty()) return r.fail(e);
  switch (spec.system) {
    case System::kUsnet:
      if (spec.proto == Proto::kTcp)
        return server ? usnet_tcp_server(spec, where, r) : usnet_tcp_client(spec, where, r);
      return server ? usnet_udp_server(spec, where, r) : usnet_udp_client(spec, where, r);
    case System::kKernel:
      if (spec.proto == Proto::kTcp)
        return server ? kernel_tcp_server(spec, where, r) : kernel_tcp_client(spec, where, r);
      return server ? kernel_udp_server(spec, where, r) : kernel_udp_client(spec, where, r);
    case System::kZmq:
      return server ? zmq_server(spec, where, r) : zmq_client(spec, where, r);
  }
  return r.fail("unknown system");
}

// ---- the parent -----------------------------------------------------------

std::atomic<bool> g_stop{false};

struct Child {
  pid_t pid = -1;
  int fd = -1;  // read end of its report pipe
  std::string out;
  int status = -1;

  bool start(bool server, const RunSpec& spec, const Placement& where) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return false;
    std::fflush(nullptr);
    pid = ::fork();
    if (pid < 0) {
      ::close(p[0]);
      ::close(p[1]);
      return false;
    }
    if (pid == 0) {
      ::close(p[0]);
      ::_exit(child_main(server, spec, where, p[1]));
    }
    ::close(p[1]);
    fd = p[0];
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    return true;
  }
  void drain() {
    if (fd < 0) return;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
      } else {
        if (n == 0) {
          ::close(fd);
          fd = -1;
        }
        return;
      }
    }
  }
  // Waits up to `limit` for the child to exit (or, if `stoppable`, until a
  // stop is requested); false if it has not.
  bool wait(Clock::duration limit, bool stoppable = true) {
    if (pid < 0) return true;
    const auto end = Clock::now() + limit;
    for (;;) {
      drain();
      int st = 0;
      const pid_t r = ::waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        status = st;
        pid = -1;
        drain();
        return true;
      }
      if (Clock::now() > end || (stoppable && g_stop)) return false;
      pollfd pf{fd, POLLIN, 0};
      ::poll(&pf, fd >= 0 ? 1 : 0, 5);
    }
  }
  void stop() {
    if (pid < 0) return;
    ::kill(pid, SIGTERM);  // it stops, frees its stack and reports
    if (!wait(2s, false)) {
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
      status = st;
      pid = -1;
      drain();
    }
  }
  ~Child() {
    stop();
    if (fd >= 0) ::close(fd);
  }
  std::string error() const {
    const auto at = out.find("error ");
    if (at != std::string::npos && (at == 0 || out[at - 1] == '\n')) {
      return out.substr(at + 6, out.find('\n', at) - at - 6);
    }
    if (status >= 0 && WIFSIGNALED(status))
      return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0)
      return "exited with status " + std::to_string(WEXITSTATUS(status));
    return {};
  }
};

void parse(const std::string& out, RunResult& res, bool from_client) {
  std::istringstream in(out);
  std::string key;
  while (in >> key) {
    if (key == "ready") continue;
    if (key == "error") {
      std::string rest;
      std::getline(in, rest);
      continue;
    }
    if (key == "cdf") {
      double q = 0, us = 0;
      in >> q >> us;
      res.cdf.emplace_back(q, us);
      continue;
    }
    double v = 0;
    in >> v;
    if (key == "round_trips")
      res.round_trips = static_cast<std::uint64_t>(v);
    else if (key == "p50_us")
      res.p50_us = v;
    else if (key == "p99_us")
      res.p99_us = v;
    else if (key == "p999_us")
      res.p999_us = v;
    else if (key == "max_us")
      res.max_us = v;
    else if (key == "mean_us")
      res.mean_us = v;
    else if (key == "messages")
      res.messages = static_cast<std::uint64_t>(v);
    else if (key == "bytes")
      res.bytes = static_cast<std::uint64_t>(v);
    else if (key == "lost")
      res.lost = static_cast<std::uint64_t>(v);
    else if (key == "seconds" && (from_client == (res.spec.workload == Workload::kRr)))
      res.seconds = v;
    else if (key == "tcp_retransmissions" && v > 0) {
      res.notes += std::string(res.notes.empty() ? "" : "; ") + (from_client ? "client" : "server") +
                   " retransmitted " + std::to_string(static_cast<std::uint64_t>(v));
    } else if (key == "resent" && v > 0) {
      res.notes += std::string(res.notes.empty() ? "" : "; ") + "resent " +
                   std::to_string(static_cast<std::uint64_t>(v));
    } else if (key == "sent_messages" && !from_client) {
      // only the client says it
    }
  }
}

}  // namespace

void request_stop() { g_stop = true; }
bool stop_requested() { return g_stop; }

RunResult run(const RunSpec& spec, const Placement& where) {
  RunResult res;
  res.spec = spec;
  res.core_to_core_before_ns = ::usnet::bench::cache_line_round_trip_ns(where.server_cpu, where.client_cpu);
  Child server, client;
  if (!server.start(true, spec, where)) {
    res.error = errno_text("fork");
    return res;
  }
  // The server says "ready" once it listens.
  const auto ready_by = Clock::now() + 10s;
  while (server.out.find("ready\n") == std::string::npos) {
    if (server.wait(20ms) || Clock::now() > ready_by || g_stop) {
      server.stop();
      res.error = "server: " + (server.error().empty() ? std::string("not ready in 10 s") : server.error());
      if (g_stop) res.error = "interrupted";
      return res;
    }
  }
  if (!client.start(false, spec, where)) {
    res.error = errno_text("fork");
    return res;
  }
  const auto limit =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.seconds + 30));
  if (!client.wait(limit)) client.stop();
  // A receiving server ends by itself once the stream ends; an echo server
  // is told to.
  if (!server.wait(spec.workload == Workload::kRr ? 50ms : 3s)) server.stop();
  parse(client.out, res, true);
  parse(server.out, res, false);
  res.core_to_core_after_ns = ::usnet::bench::cache_line_round_trip_ns(where.server_cpu, where.client_cpu);
  if (g_stop) {
    res.error = "interrupted";
  } else {
    const std::string ce = client.error(), se = server.error();
    if (!ce.empty()) res.error = "client: " + ce;
    if (!se.empty()) res.error += (res.error.empty() ? "" : "; ") + std::string("server: ") + se;
  }
  if (res.error.empty()) {
    if (spec.workload == Workload::kRr) {
      if (res.round_trips == 0 || res.seconds <= 0)
        res.error = "no round trips measured";
      else
        res.msgs_per_s = static_cast<double>(res.round_trips) / res.seconds;
    } else {
      if (res.messages == 0 || res.seconds <= 0)
        res.error = "no messages arrived";
      else {
        res.msgs_per_s = static_cast<double>(res.messages) / res.seconds;
        res.gbit_per_s = static_cast<double>(res.bytes) * 8 / res.seconds / 1e9;
      }
      if (res.lost > 0) {
        res.notes += std::string(res.notes.empty() ? "" : "; ") + std::to_string(res.lost) + " lost";
      }
    }
  }
  return res;
}

}  // namespace usnet::tool::bench
