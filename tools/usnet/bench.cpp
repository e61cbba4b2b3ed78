// `usnet demo` and `usnet bench`: usnet beside the kernel and ZeroMQ in the
// same run (bench_engine.hpp does the runs); one table, JSON, and a plot of
// the round-trip distributions.
#include <fmt/core.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bench_engine.hpp"
#include "stack_setup.hpp"
#include "veth_topology.hpp"  // bench/: the namespaces and veth pair of the cross-namespace runs

namespace usnet::tool {

namespace {

using bench::Placement;
using bench::Proto;
using bench::RunResult;
using bench::RunSpec;
using bench::System;
using bench::Workload;

struct BenchOptions {
  std::string link = "memif";
  bool netns = false;
  std::vector<std::string> protos{"tcp", "udp"};
  std::vector<std::string> workloads{"rr", "stream", "bulk"};
  std::vector<std::string> systems{"usnet", "kernel", "zeromq"};
  std::size_t size = 64;
  std::size_t bulk_size = 0;  // 0: 64 KiB per TCP send, the largest datagram that fits one frame for UDP
  int connections = 1;
  double duration = 2;
  std::vector<int> cores;  // server, client
  int mtu = 9000;
  std::string kernel_wait = "blocking";
  std::string format = "table";
  std::string out;  // directory for JSON and the plot
  bool quick = false;
  bool demo = false;
};

void on_stop(int) { bench::request_stop(); }

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string label(System s, Proto p, const Placement& where) {
  switch (s) {
    case System::kUsnet:
      return fmt::format("usnet {} ({})", p == Proto::kTcp ? "TCP" : "UDP", where.link_kind);
    case System::kKernel:
      return fmt::format("kernel {} ({})", p == Proto::kTcp ? "TCP" : "UDP", where.kernel_path);
    case System::kZmq:
      return fmt::format("ZeroMQ (kernel TCP, {})", where.kernel_path);
  }
  return "?";
}

std::string group(const std::string& n) {
  // 1234567 -> 1,234,567
  std::string out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (i != 0 && (n.size() - i) % 3 == 0) out += ',';
    out += n[i];
  }
  return out;
}
std::string count(double v) {
  return v > 0 ? group(std::to_string(static_cast<std::uint64_t>(std::llround(v)))) : "-";
}
std::string us(double v) { return v > 0 ? fmt::format("{:.2f}", v) : "-"; }
std::string gbit(double v) { return v > 0 ? fmt::format("{:.2f}", v) : "-"; }
std::string ratio(double a, double b) { return a > 0 && b > 0 ? fmt::format("{:.1f}x", a / b) : "-"; }

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20)
      o += fmt::format("\\u{:04x}", static_cast<int>(c));
    else
      o += c;
  }
  return o + "\"";
}
std::string num(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "null"; }

// One row of the table: a system and protocol, its three workloads.
struct Row {
  System system;
  Proto proto;
  const RunResult* rr = nullptr;
  const RunResult* stream = nullptr;
  const RunResult* bulk = nullptr;
};

struct Ratio {
  std::string what;
  const Row* usnet;
  const Row* peer;
};

struct Report {
  std::vector<RunResult> runs;
  std::vector<Row> rows;
  std::vector<Ratio> ratios;
};

void build_rows(Report& rep) {
  for (const auto& r : rep.runs) {
    auto it = std::find_if(rep.rows.begin(), rep.rows.end(), [&](const Row& row) {
      return row.system == r.spec.system && row.proto == r.spec.proto;
    });
    if (it == rep.rows.end()) {
      rep.rows.push_back({r.spec.system, r.spec.proto});
      it = rep.rows.end() - 1;
    }
    const RunResult** slot = r.spec.workload == Workload::kRr       ? &it->rr
                             : r.spec.workload == Workload::kStream ? &it->stream
                                                                    : &it->bulk;
    *slot = &r;
  }
  const auto find = [&](System s, Proto p) -> const Row* {
    for (const auto& row : rep.rows)
      if (row.system == s && row.proto == p) return &row;
    return nullptr;
  };
  for (Proto p : {Proto::kTcp, Proto::kUdp}) {
    const Row* u = find(System::kUsnet, p);
    if (u == nullptr) continue;
    const char* pn = p == Proto::kTcp ? "TCP" : "UDP";
    if (const Row* k = find(System::kKernel, p))
      rep.ratios.push_back({fmt::format("usnet {} vs kernel {}", pn, pn), u, k});
    if (const Row* z = find(System::kZmq, Proto::kTcp))
      rep.ratios.push_back({fmt::format("usnet {} vs ZeroMQ", pn), u, z});
  }
}

// A cache line's round trip between two cores of one chiplet is ~100 ns on
// current x86 servers; past this the cores are further apart.
constexpr double kFarCoresNs = 300;

double p50(const RunResult* r) { return r != nullptr && r->error.empty() ? r->p50_us : 0; }
double p99(const RunResult* r) { return r != nullptr && r->error.empty() ? r->p99_us : 0; }
double p999(const RunResult* r) { return r != nullptr && r->error.empty() ? r->p999_us : 0; }
double rate(const RunResult* r) { return r != nullptr && r->error.empty() ? r->msgs_per_s : 0; }
double gbps(const RunResult* r) { return r != nullptr && r->error.empty() ? r->gbit_per_s : 0; }

// The cache-line round trip between the two CPUs around each usnet round-trip
// run, and what it means when it is long.
std::string core_to_core_note(const Report& rep, const Placement& where) {
  std::string runs;
  double worst = 0;
  for (const auto& r : rep.runs) {
    if (r.spec.system != System::kUsnet || r.spec.workload != Workload::kRr) continue;
    if (r.core_to_core_before_ns <= 0 || r.core_to_core_after_ns <= 0) continue;
    runs += fmt::format("{}{} {:.0f}/{:.0f} ns", runs.empty() ? "" : ", ", name(r.spec.proto),
                        r.core_to_core_before_ns, r.core_to_core_after_ns);
    worst = std::max({worst, r.core_to_core_before_ns, r.core_to_core_after_ns});
  }
  if (runs.empty()) return {};
  std::string t = fmt::format(
      "\nCPU {} <-> CPU {}: a cache line's round trip, before/after each usnet round-trip run: {}.\n",
      where.server_cpu, where.client_cpu, runs);
  if (worst > kFarCoresNs) {
    t += fmt::format(
        "Over {:.0f} ns: the two cores sat far apart (another chiplet or socket; a VM's vCPUs can move there "
        "and back).\nEach usnet round trip carries a few such transfers, so it grows with them; the "
        "kernel's is mostly its wake-ups.\n",
        kFarCoresNs);
  }
  return t;
}

std::string table(const Report& rep, const BenchOptions& opt, const Placement& where, std::size_t bulk_tcp,
                  std::size_t bulk_udp) {
  std::string t;
  t += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>8}\n", "", "p50 us", "p99 us", "p99.9 us",
                   "round trips/s", "msgs/s", "Gbit/s");
  t += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>8}\n", "",
                   fmt::format("({} B round trip)", opt.size), "", "", "",
                   fmt::format("({} B stream)", opt.size), "(bulk)");
  for (const auto& row : rep.rows) {
    t += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>8}\n", label(row.system, row.proto, where),
                     us(p50(row.rr)), us(p99(row.rr)), us(p999(row.rr)), count(rate(row.rr)),
                     count(rate(row.stream)), gbit(gbps(row.bulk)));
  }
  if (!rep.ratios.empty()) {
    t += fmt::format(
        "\nusnet's ratio to each peer (round trip: peer's time / usnet's; rates: usnet's / peer's)\n");
    t += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>8}\n", "", "p50", "p99", "p99.9",
                     "round trips/s", "msgs/s", "Gbit/s");
    for (const auto& r : rep.ratios) {
      t += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>8}\n", r.what,
                       ratio(p50(r.peer->rr), p50(r.usnet->rr)), ratio(p99(r.peer->rr), p99(r.usnet->rr)),
                       ratio(p999(r.peer->rr), p999(r.usnet->rr)), ratio(rate(r.usnet->rr), rate(r.peer->rr)),
                       ratio(rate(r.usnet->stream), rate(r.peer->stream)),
                       ratio(gbps(r.usnet->bulk), gbps(r.peer->bulk)));
    }
  }
  std::string notes;
  for (const auto& r : rep.runs) {
    if (!r.error.empty() || !r.notes.empty()) {
      notes += fmt::format("  {} {}: {}\n", label(r.spec.system, r.spec.proto, where), name(r.spec.workload),
                           r.error.empty() ? r.notes : "FAILED: " + r.error);
    }
  }
  if (!notes.empty()) t += "\nNotes:\n" + notes;
  t += core_to_core_note(rep, where);
  t += fmt::format(
      "\nround trip: one request of {} B in flight per connection ({} connection{}), answered whole; "
      "msgs/s: one-way {} B messages, one send each, counted by the receiver (UDP: each its own datagram, "
      "sent in bursts of 16: usnet's in a Stack::batch(), the kernel's by sendmmsg()); bulk: {} B per TCP "
      "send, {} B UDP datagrams.\n",
      opt.size, opt.connections, opt.connections == 1 ? "" : "s", opt.size, bulk_tcp, bulk_udp);
  if (opt.link == "memif") {
    t += "usnet's two stacks share memory: their memif carries no checksums (checksums=off); the kernel's "
         "loopback computes no UDP/TCP checksums either (it does the IPv4 header's).\n";
  }
  return t;
}

std::string to_json(const Report& rep, const BenchOptions& opt, const Placement& where) {
  std::string j = "{\n";
  j += fmt::format("  \"tool\": {},\n", json_string(opt.demo ? "usnet demo" : "usnet bench"));
  j += fmt::format(
      "  \"setup\": {{\"link\": {}, \"mtu\": {}, \"kernel_path\": {}, \"server_cpu\": {}, \"client_cpu\": "
      "{}, "
      "\"duration_s\": {}, \"size\": {}, \"connections\": {}, \"kernel_wait\": {}}},\n",
      json_string(where.link_kind), opt.mtu, json_string(where.kernel_path), where.server_cpu,
      where.client_cpu, num(opt.duration), opt.size, opt.connections, json_string(opt.kernel_wait));
  j += "  \"runs\": [\n";
  for (std::size_t i = 0; i < rep.runs.size(); ++i) {
    const auto& r = rep.runs[i];
    j += fmt::format(
        "    {{\"system\": {}, \"proto\": {}, \"workload\": {}, \"label\": {}, \"size\": {}, \"ok\": {}, "
        "\"error\": {}, "
        "\"notes\": {}, \"seconds\": {}, \"msgs_per_s\": {}, \"gbit_per_s\": {}",
        json_string(name(r.spec.system)), json_string(name(r.spec.proto)), json_string(name(r.spec.workload)),
        json_string(label(r.spec.system, r.spec.proto, where)), r.spec.size,
        r.error.empty() ? "true" : "false", json_string(r.error), json_string(r.notes), num(r.seconds),
        num(r.msgs_per_s), num(r.gbit_per_s));
    j += fmt::format(", \"core_to_core_ns\": [{}, {}]", num(r.core_to_core_before_ns),
                     num(r.core_to_core_after_ns));
    if (r.spec.workload == Workload::kRr) {
      j += fmt::format(
          ", \"round_trips\": {}, \"connections\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, "
          "\"max_us\": {}, "
          "\"mean_us\": {}, \"cdf\": [",
          r.round_trips, r.spec.connections, num(r.p50_us), num(r.p99_us), num(r.p999_us), num(r.max_us),
          num(r.mean_us));
      for (std::size_t k = 0; k < r.cdf.size(); ++k)
        j += fmt::format("{}[{}, {}]", k == 0 ? "" : ", ", num(r.cdf[k].first), num(r.cdf[k].second));
      j += "]";
    } else {
      j += fmt::format(", \"messages\": {}, \"bytes\": {}, \"lost\": {}", r.messages, r.bytes, r.lost);
    }
    j += i + 1 < rep.runs.size() ? "},\n" : "}\n";
  }
  j += "  ],\n  \"ratios\": [\n";
  for (std::size_t i = 0; i < rep.ratios.size(); ++i) {
    const auto& r = rep.ratios[i];
    const auto q = [](double a, double b) { return a > 0 && b > 0 ? num(a / b) : std::string("null"); };
    j += fmt::format(
        "    {{\"what\": {}, \"rtt_p50\": {}, \"rtt_p99\": {}, \"rtt_p999\": {}, \"round_trips_per_s\": {}, "
        "\"msgs_per_s\": {}, \"gbit_per_s\": {}}}{}\n",
        json_string(r.what), q(p50(r.peer->rr), p50(r.usnet->rr)), q(p99(r.peer->rr), p99(r.usnet->rr)),
        q(p999(r.peer->rr), p999(r.usnet->rr)), q(rate(r.usnet->rr), rate(r.peer->rr)),
        q(rate(r.usnet->stream), rate(r.peer->stream)), q(gbps(r.usnet->bulk), gbps(r.peer->bulk)),
        i + 1 < rep.ratios.size() ? "," : "");
  }
  j += "  ]\n}\n";
  return j;
}

// The round-trip distributions as CDFs (data file and gnuplot script), and
// the PNG drawn from them. Empty or why not.
std::string write_plot(const Report& rep, const Placement& where, const std::filesystem::path& dir,
                       std::filesystem::path& png) {
  std::ofstream dat(dir / "rtt-cdf.dat");
  std::vector<std::string> titles;
  for (const auto& r : rep.runs) {
    if (r.spec.workload != Workload::kRr || !r.error.empty() || r.cdf.empty()) continue;
    dat << "# " << label(r.spec.system, r.spec.proto, where) << "\n";
    for (const auto& [q, v] : r.cdf) dat << v << ' ' << q * 100 << '\n';
    dat << "\n\n";
    titles.push_back(label(r.spec.system, r.spec.proto, where));
  }
  dat.close();
  if (titles.empty()) return "no round-trip runs to plot";
  png = dir / "rtt-cdf.png";
  std::ofstream gp(dir / "rtt-cdf.gp");
  gp << "set terminal pngcairo size 1100,650 font ',11'\n"
     << "set output '" << png.string() << "'\n"
     << "set title 'Round-trip time distribution (usnet vs kernel vs ZeroMQ)'\n"
     << "set xlabel 'round trip (microseconds, log scale)'\nset ylabel 'percentile'\n"
     << "set logscale x\nset grid\nset key bottom right\nset yrange [0:100]\n"
     << "plot ";
  for (std::size_t i = 0; i < titles.size(); ++i) {
    gp << (i ? ", " : "") << "'" << (dir / "rtt-cdf.dat").string() << "' index " << i
       << " using 1:2 with lines lw 2 title '" << titles[i] << "'";
  }
  gp << "\n";
  gp.close();
  const std::string script = (dir / "rtt-cdf.gp").string();
  if (::access("/usr/bin/gnuplot", X_OK) != 0)
    return "gnuplot is not installed (scripts/install-deps installs it)";
  const pid_t pid = ::fork();
  if (pid == 0) {
    execl("/usr/bin/timeout", "timeout", "-s", "KILL", "30", "/usr/bin/gnuplot", script.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int st = 0;
  if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return "gnuplot failed on " + script;
  return {};
}

// The namespaces and veth pair (and for TAP the bridges and TAP devices) of
// a cross-namespace run; the placement of both ends. Empty or why not.
std::string set_up_namespaces(const BenchOptions& opt, Placement& where) {
  std::string error;
  const auto* t = usnet::bench::topology("uxd", error);
  if (t == nullptr) return error;
  install_handlers();  // ours again: a Ctrl-C ends the run and the topology goes at exit
  where.server_ns = t->ns_a;
  where.client_ns = t->ns_b;
  where.kernel_server = "198.18.1.1";
  where.kernel_path = "veth";
  if (opt.link == "af_xdp" || opt.link == "af_packet") {
    // AF_PACKET: the frame-slot ring (TPACKET_V2), which hands each frame
    // over at once; the block ring holds a lone frame for its 1 ms timeout.
    const std::string params = opt.link == "af_packet" ? "?ring=frames" : "";
    where.server_link = opt.link + ":" + t->if_a + params;
    where.client_link = opt.link + ":" + t->if_b + params;
    return {};
  }
  // TAP: in each namespace a bridge joins the veth end and a TAP device the
  // usnet stack opens; the kernel's address moves to the bridge.
  const std::string ip = usnet::bench::find_ip();
  const std::string pid = std::to_string(::getpid());
  const std::string tap_a = "uxd" + pid + "ta", tap_b = "uxd" + pid + "tb";
  for (const auto& [ns, dev, tap, addr] :
       {std::tuple{t->ns_a, t->if_a, tap_a, std::string("198.18.1.1/24")},
        std::tuple{t->ns_b, t->if_b, tap_b, std::string("198.18.1.2/24")}}) {
    const std::vector<std::vector<std::string>> steps = {
        {ip, "-n", ns, "link", "add", "br0", "type", "bridge"},
        {ip, "-n", ns, "addr", "del", addr, "dev", dev},
        {ip, "-n", ns, "link", "set", dev, "master", "br0"},
        {ip, "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"},
        {ip, "-n", ns, "link", "set", tap, "master", "br0"},
        {ip, "-n", ns, "link", "set", tap, "up"},
        {ip, "-n", ns, "addr", "add", addr, "dev", "br0"},
        {ip, "-n", ns, "link", "set", "br0", "up"},
    };
    for (const auto& step : steps) {
      const usnet::bench::Command c(step);
      if (const int st = c.run(); st != 0)
        return "'" + c.text() + "' failed (status " + std::to_string(st) + ")";
    }
  }
  where.server_link = "tap:" + tap_a;
  where.client_link = "tap:" + tap_b;
  return {};
}

int run_bench(BenchOptions opt) {
  const char* me = opt.demo ? "usnet demo" : "usnet bench";
  if (opt.quick) opt.duration = std::min(opt.duration, 0.4);
  Placement where;
  where.link_kind = opt.link;
  if (opt.size < 8 || opt.size > 65000) {
    fmt::print(stderr, "{}: --size must be 8..65000 bytes (each message carries an 8-byte sequence number)\n",
               me);
    return 2;
  }
  if (opt.connections > 1 &&
      (opt.workloads != std::vector<std::string>{"rr"} || opt.protos != std::vector<std::string>{"tcp"})) {
    fmt::print(stderr,
               "{}: --connections above 1 is for TCP request/response: add --proto tcp --workload rr\n", me);
    return 2;
  }
  if (opt.connections > 1 &&
      std::find(opt.systems.begin(), opt.systems.end(), "zeromq") != opt.systems.end()) {
    fmt::print(stderr,
               "{}: --connections above 1 is measured for usnet and the kernel: add --peers usnet,kernel\n",
               me);
    return 2;
  }
  // Cores: the first two this process may use, unless given.
  if (opt.cores.empty()) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
      for (int c = 0; c < CPU_SETSIZE && opt.cores.size() < 2; ++c)
        if (CPU_ISSET(c, &allowed)) opt.cores.push_back(c);
    }
  }
  if (opt.cores.size() >= 2) {
    where.server_cpu = opt.cores[0];
    where.client_cpu = opt.cores[1];
  } else if (opt.cores.size() == 1) {
    where.server_cpu = where.client_cpu = opt.cores[0];
  }
  const long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (int c : opt.cores) {
    if (c < 0 || c >= ncpu) {
      fmt::print(stderr, "{}: --cores: CPU {} does not exist (this machine has {})\n", me, c, ncpu);
      return 2;
    }
  }
  install_handlers();
  std::filesystem::path tmp;
  if (opt.link == "memif") {
    if (opt.netns) {
      fmt::print(stderr,
                 "{}: --netns is for the af_xdp, af_packet and tap links (memif needs no namespaces)\n", me);
      return 2;
    }
    char tmpl[] = "/tmp/usnet-bench.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      fmt::print(stderr, "{}: cannot make a directory in /tmp: {}\n", me, std::strerror(errno));
      return 1;
    }
    tmp = tmpl;
    // Two usnet stacks: no checksums (the kernel's loopback computes no UDP
    // or TCP ones).
    where.server_link =
        fmt::format("memif:{}/link.sock?role=server&mtu={}&checksums=off", tmp.string(), opt.mtu);
    where.client_link = fmt::format("memif:{}/link.sock?mtu={}&checksums=off", tmp.string(), opt.mtu);
    where.kernel_server = "127.0.0.1";
    where.kernel_path = "loopback";
    where.link_kind = opt.mtu == 1500 ? "memif" : fmt::format("memif, MTU {}", opt.mtu);
  } else {
    if (!opt.netns) {
      fmt::print(
          stderr,
          "{}: the {} link runs across two network namespaces joined by a veth pair: add --netns to have "
          "them made (and removed) for the run (needs root)\n",
          me, opt.link);
      return 2;
    }
    if (auto e = set_up_namespaces(opt, where); !e.empty()) {
      fmt::print(stderr, "{}: cannot set up the namespaces: {}\n", me, e);
      return 1;
    }
    opt.mtu = 1500;
  }
  const std::size_t bulk_tcp = opt.bulk_size ? opt.bulk_size : 65536;
  const std::size_t bulk_udp = opt.bulk_size ? opt.bulk_size : std::min<std::size_t>(8192, opt.mtu - 28);

  std::vector<RunSpec> plan;
  std::uint16_t port = 7100;
  const auto has = [](const std::vector<std::string>& v, const char* x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  for (const char* p : {"tcp", "udp"}) {
    if (!has(opt.protos, p)) continue;
    for (const char* s : {"usnet", "kernel", "zeromq"}) {
      if (!has(opt.systems, s)) continue;
      if (std::string(s) == "zeromq" && std::string(p) == "udp") continue;  // ZeroMQ runs over TCP only
      for (const char* w : {"rr", "stream", "bulk"}) {
        if (!has(opt.workloads, w)) continue;
        RunSpec r;
        r.system = std::string(s) == "usnet"    ? System::kUsnet
                   : std::string(s) == "kernel" ? System::kKernel
                                                : System::kZmq;
        r.proto = std::string(p) == "tcp" ? Proto::kTcp : Proto::kUdp;
        r.workload = std::string(w) == "rr"       ? Workload::kRr
                     : std::string(w) == "stream" ? Workload::kStream
                                                  : Workload::kBulk;
        r.size = r.workload == Workload::kBulk ? (r.proto == Proto::kTcp ? bulk_tcp : bulk_udp) : opt.size;
        r.seconds = r.workload == Workload::kRr ? opt.duration : opt.duration * 0.75;
        r.connections = r.workload == Workload::kRr ? opt.connections : 1;
        r.kernel_wait = opt.kernel_wait == "busy" ? bench::KernelWait::kBusy : bench::KernelWait::kBlocking;
        r.port = port++;
        plan.push_back(r);
      }
    }
  }
  if (plan.empty()) {
    fmt::print(stderr, "{}: nothing to run (--proto, --peers and --workload leave no run)\n", me);
    return 2;
  }
  double total = 0;
  for (const auto& r : plan) total += r.seconds;
  fmt::print(stderr,
             "{}: {} runs, about {:.0f} s: usnet over {} against the kernel over {}{}; server on CPU {}, "
             "client on CPU {}\n",
             me, plan.size(), total + 0.3 * static_cast<double>(plan.size()), where.link_kind,
             where.kernel_path, has(opt.systems, "zeromq") ? " and ZeroMQ" : "", where.server_cpu,
             where.client_cpu);
  Report rep;
  int failed = 0;
  for (std::size_t i = 0; i < plan.size() && !bench::stop_requested(); ++i) {
    const auto& spec = plan[i];
    fmt::print(stderr, "  [{:>2}/{}] {:<32} {:<6} ", i + 1, plan.size(),
               label(spec.system, spec.proto, where), name(spec.workload));
    std::fflush(stderr);
    rep.runs.push_back(bench::run(spec, where));
    const auto& r = rep.runs.back();
    if (!r.error.empty()) {
      ++failed;
      fmt::print(stderr, "FAILED: {}\n", r.error);
    } else if (spec.workload == Workload::kRr) {
      fmt::print(stderr, "p50 {} us, {} round trips/s\n", us(r.p50_us), count(r.msgs_per_s));
    } else {
      fmt::print(stderr, "{} msgs/s, {} Gbit/s\n", count(r.msgs_per_s), gbit(r.gbit_per_s));
    }
    if (opt.link == "af_xdp" && spec.system == System::kUsnet) {
      // The XDP program goes with the link; make sure before the kernel's runs.
      const std::string ip = usnet::bench::find_ip();
      (void)usnet::bench::Command(
          {ip, "-n", where.server_ns, "link", "set", "dev", where.server_link.substr(7), "xdp", "off"})
          .run();
      (void)usnet::bench::Command(
          {ip, "-n", where.client_ns, "link", "set", "dev", where.client_link.substr(7), "xdp", "off"})
          .run();
    }
  }
  if (!tmp.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
  }
  if (bench::stop_requested()) {
    fmt::print(stderr, "{}: interrupted; nothing is left behind\n", me);
    return 130;
  }
  build_rows(rep);
  const std::string json = to_json(rep, opt, where);
  if (opt.format == "json") {
    fmt::print("{}", json);
  } else if (opt.format == "csv") {
    fmt::print(
        "system,proto,workload,size,ok,p50_us,p99_us,p999_us,round_trips,msgs_per_s,gbit_per_s,error\n");
    for (const auto& r : rep.runs) {
      fmt::print("{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n", name(r.spec.system), name(r.spec.proto),
                 name(r.spec.workload), r.spec.size, r.error.empty() ? 1 : 0, r.p50_us, r.p99_us, r.p999_us,
                 r.round_trips, r.msgs_per_s, r.gbit_per_s, r.error);
    }
  } else {
    fmt::print("\n{}", table(rep, opt, where, bulk_tcp, bulk_udp));
    std::fflush(stdout);
  }
  if (!opt.out.empty()) {
    std::error_code ec;
    const std::filesystem::path dir = opt.out;
    std::filesystem::create_directories(dir, ec);
    std::ofstream(dir / "results.json") << json;
    if (!std::filesystem::exists(dir / "results.json")) {
      fmt::print(stderr, "{}: cannot write {}\n", me, (dir / "results.json").string());
      return 1;
    }
    std::filesystem::path png;
    const std::string plot_error = write_plot(rep, where, dir, png);
    fmt::print(stderr, "\nResults: {}\n", std::filesystem::absolute(dir / "results.json").string());
    if (plot_error.empty()) {
      fmt::print(stderr, "Plot:    {}\n", std::filesystem::absolute(png).string());
    } else {
      fmt::print(stderr, "{}: no plot: {}\n", me, plot_error);
      ++failed;
    }
  }
  return failed == 0 ? 0 : 1;
}

void add_common(CLI::App* cmd, BenchOptions& opt) {
  cmd->add_option("-o,--out", opt.out, "Directory for results.json and the round-trip plot (rtt-cdf.png)");
  cmd->add_flag("--quick", opt.quick, "Short runs (0.4 s each), for a quick look or a test");
  cmd->add_option("--cores", opt.cores, "CPUs for the server and the client (default: the first two allowed)")
      ->expected(1, 2)
      ->delimiter(',');
}

}  // namespace

void add_demo(CLI::App& app, std::function<int()>& run) {
  static BenchOptions opt;
  opt.demo = true;
  opt.out = "usnet-demo";
  auto* cmd = app.add_subcommand(
      "demo",
      "Show what usnet is for, in under a minute and without privileges: a usnet server and client process "
      "joined by a memif link (MTU 9000), each pinned to its own core, run 64-byte request/response, a "
      "stream "
      "of 64-byte messages and bulk transfer over usnet TCP and UDP; then the same over the kernel's TCP and "
      "UDP on loopback and over ZeroMQ. Prints one table with usnet's ratio to each, and writes results.json "
      "and a plot of the round-trip distributions (rtt-cdf.png)");
  add_common(cmd, opt);
  cmd->callback([&run] { run = [] { return run_bench(opt); }; });
}

void add_bench(CLI::App& app, std::function<int()>& run) {
  static BenchOptions opt;
  auto* cmd = app.add_subcommand(
      "bench",
      "Measure usnet beside the kernel and ZeroMQ: request/response round trips (p50/p99/p99.9), small "
      "messages per second and bulk Gbit/s, between two processes on their own cores. memif runs without "
      "privileges against the kernel on loopback; af_xdp, af_packet and tap run across two network "
      "namespaces joined by a veth pair (--netns makes and removes them; root) against the kernel over the "
      "same veth pair");
  cmd->add_option("-l,--link", opt.link, "Link between the two usnet stacks")
      ->check(CLI::IsMember({"memif", "af_xdp", "af_packet", "tap"}))
      ->capture_default_str();
  cmd->add_flag(
      "--netns", opt.netns,
      "Create two network namespaces and a veth pair (198.18.0.0/15 only) for the run and remove them "
      "after (af_xdp, af_packet, tap)");
  cmd->add_option("-p,--proto", opt.protos, "Protocols")
      ->delimiter(',')
      ->check(CLI::IsMember({"tcp", "udp"}))
      ->capture_default_str();
  cmd->add_option("-w,--workload", opt.workloads,
                  "rr (request/response round trips), stream (one-way small messages), bulk (throughput)")
      ->delimiter(',')
      ->check(CLI::IsMember({"rr", "stream", "bulk"}))
      ->capture_default_str();
  cmd->add_option("--peers", opt.systems, "Systems to run: usnet, kernel, zeromq (ZeroMQ over kernel TCP)")
      ->delimiter(',')
      ->check(CLI::IsMember({"usnet", "kernel", "zeromq"}))
      ->capture_default_str();
  cmd->add_option("-s,--size", opt.size, "Message size in bytes for rr and stream (8..65000)")
      ->capture_default_str();
  cmd->add_option(
         "--bulk-size", opt.bulk_size,
         "Bytes per send for bulk (default: 65536 for TCP; for UDP the largest datagram up to 8192 that "
         "fits one frame)")
      ->check(CLI::Range(8, 65000));
  cmd->add_option("-c,--connections", opt.connections,
                  "TCP connections for rr, one request in flight on each")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("-d,--duration", opt.duration,
                  "Seconds per request/response run (stream and bulk: 3/4 of it)")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  cmd->add_option("--mtu", opt.mtu, "MTU of the memif link (576..65517)")
      ->check(CLI::Range(576, 65517))
      ->capture_default_str();
  cmd->add_option(
         "--kernel-wait", opt.kernel_wait,
         "How the kernel's request/response processes wait: blocking (recv() sleeps, as most programs "
         "do) or busy (recv(MSG_DONTWAIT) spins)")
      ->check(CLI::IsMember({"blocking", "busy"}))
      ->capture_default_str();
  cmd->add_option("-f,--format", opt.format, "Output on stdout: table, json or csv")
      ->check(CLI::IsMember({"table", "json", "csv"}))
      ->capture_default_str();
  add_common(cmd, opt);
  cmd->callback([&run] { run = [] { return run_bench(opt); }; });
}

}  // namespace usnet::tool
