// The engine behind `usnet demo` and `usnet bench`: runs one workload
// (request/response, a stream of small messages, or bulk transfer) between
// a server process and a client process over one system (usnet TCP or UDP
// on a link, the kernel's TCP or UDP, or ZeroMQ over kernel TCP), each
// process forked for the run, pinned to its own core and, for the
// cross-namespace links, placed in its own network namespace.
//
// Who measures what:
//   - rr: the client sends a request of `size` bytes on each connection,
//     waits for the whole answer (the same bytes echoed, checked), and
//     times each round trip on its steady clock. After a warm-up (a tenth
//     of the run, at most 0.3 s) every round trip is kept; the client
//     reports p50/p99/p99.9/max and round trips per second.
//   - stream and bulk: the client sends messages of `size` bytes (each
//     starts with its sequence number) one way for the run's duration; the
//     server receives them, checks the sequence numbers at every message
//     boundary, and reports how many arrived and in how long (first byte to
//     last). Messages per second and Gbit/s are the receiver's.
// Every wait is bounded: a run that cannot finish reports an error, never
// hangs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace usnet::tool::bench {

enum class System { kUsnet, kKernel, kZmq };
enum class Proto { kTcp, kUdp };
enum class Workload { kRr, kStream, kBulk };
enum class KernelWait { kBlocking, kBusy };

const char* name(System s);
const char* name(Proto p);
const char* name(Workload w);

// Where the two ends run.
struct Placement {
  std::string link_kind = "memif";  // memif, af_xdp, af_packet, tap
  std::string server_link;          // usnet link URIs
  std::string client_link;
  std::string server_ns, client_ns;  // network namespaces (empty: this one)
  std::string usnet_server = "198.18.0.1";
  std::string usnet_client = "198.18.0.2";
  int usnet_prefix = 24;
  std::string kernel_server = "127.0.0.1";  // the kernel's and ZeroMQ's server address
  std::string kernel_path = "loopback";     // how the kernel's path is named in reports
  int server_cpu = -1, client_cpu = -1;     // -1: not pinned
};

struct RunSpec {
  System system = System::kUsnet;
  Proto proto = Proto::kTcp;
  Workload workload = Workload::kRr;
  std::size_t size = 64;  // bytes per message (at least 8)
  double seconds = 2;     // how long the client sends
  int connections = 1;    // TCP request/response only
  KernelWait kernel_wait = KernelWait::kBlocking;
  std::uint16_t port = 7100;
};

struct RunResult {
  RunSpec spec;
  std::string error;  // empty: it ran
  // rr (client)
  std::uint64_t round_trips = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0, mean_us = 0;
  std::vector<std::pair<double, double>> cdf;  // (fraction, microseconds), for the plot
  // stream/bulk (server)
  std::uint64_t messages = 0, bytes = 0, lost = 0;
  double seconds = 0;     // the measured interval
  double msgs_per_s = 0;  // rr: round trips per second
  double gbit_per_s = 0;  // payload bits per second / 1e9
  std::string notes;      // e.g. what a usnet process leaked, retransmissions
  // How far apart the two CPUs were: a cache line's round trip between
  // them (ns, bench/cpu_pinning.hpp), just before and just after the run;
  // 0 when not measured.
  double core_to_core_before_ns = 0, core_to_core_after_ns = 0;
};

// Runs one workload; `progress` is printed before it starts (to stderr).
RunResult run(const RunSpec& spec, const Placement& where);

// Stops the run in progress (children killed, their files removed): for the
// command's SIGINT/SIGTERM handler.
void request_stop();
bool stop_requested();

}  // namespace usnet::tool::bench
