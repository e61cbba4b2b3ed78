// Cost of parsing one received frame, layer by layer, as the receive path
// will: the views only (length checks and field access), then the full value
// types with every checksum verified. Frames are the scapy references of
// tests/data/frames.txt.
#include <benchmark/benchmark.h>

#include <string_view>
#include <vector>

#include "usnet/wire/describe.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/ipv6.hpp"
#include "usnet/wire/tcp.hpp"
#include "usnet/wire/udp.hpp"

namespace {

using namespace usnet::wire;

std::vector<std::byte> hex(std::string_view s) {
  auto nib = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::vector<std::byte> v;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) v.push_back(std::byte(nib(s[i]) * 16 + nib(s[i + 1])));
  return v;
}

// tcp_data: Ethernet / IPv4 / TCP (NOP NOP TS) / 19 bytes: an 85-byte frame.
const auto kTcpFrame =
    hex("020000000001020000000002080045000047000a40004006ae7fc6120002c612000100509c4100001388000003e9801801f6"
        "6a4a0000"
        "0101080a0000006400000001485454502f312e3120323030204f4b0d0a0d0a");
// ipv6_udp: Ethernet / IPv6 / UDP / 40 bytes: a 102-byte frame.
const auto kUdp6Frame =
    hex("02000000000202000000000186dd600000000030114020010db800000000000000000000000120010db80000000000000000"
        "000000020"
        "4d2162e00300b88000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627");

// Every step is checked, as the receive path must; on the reference frames
// the checks always pass, and a failure stops the benchmark with an error
// instead of dereferencing a failed result.
#define USNET_BENCH_CHECK(x)                                   \
  if (!(x)) {                                                  \
    state.SkipWithError("reference frame did not parse: " #x); \
    break;                                                     \
  }

void BM_ParseViews_EthIpv4Tcp(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(kTcpFrame.data());
    auto e = EthernetView::make(kTcpFrame);
    USNET_BENCH_CHECK(e);
    auto i = Ipv4View::make(e->payload());
    USNET_BENCH_CHECK(i);
    auto t = TcpView::make(i->payload());
    USNET_BENCH_CHECK(t);
    benchmark::DoNotOptimize(t->seq());
    benchmark::DoNotOptimize(t->payload().size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_ParseReprsVerified_EthIpv4Tcp(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(kTcpFrame.data());
    auto e = EthernetView::make(kTcpFrame);
    USNET_BENCH_CHECK(e);
    auto er = EthernetRepr::parse(*e);
    USNET_BENCH_CHECK(er);
    auto i = Ipv4View::make(e->payload());
    USNET_BENCH_CHECK(i);
    auto ir = Ipv4Repr::parse(*i, ChecksumMode::Verify);
    USNET_BENCH_CHECK(ir);
    auto t = TcpView::make(i->payload());
    USNET_BENCH_CHECK(t);
    auto tr = TcpRepr::parse(*t, PseudoHeader::v4(ir->src, ir->dst), ChecksumMode::Verify);
    USNET_BENCH_CHECK(tr);
    benchmark::DoNotOptimize(tr->options.timestamps);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_ParseReprsVerified_EthIpv6Udp(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(kUdp6Frame.data());
    auto e = EthernetView::make(kUdp6Frame);
    USNET_BENCH_CHECK(e);
    auto i = Ipv6View::make(e->payload());
    USNET_BENCH_CHECK(i);
    auto ir = Ipv6Repr::parse(*i);
    USNET_BENCH_CHECK(ir);
    auto w = walk_extension_headers(*i);
    USNET_BENCH_CHECK(w && w->has_upper_layer());
    auto u = UdpView::make(i->payload().subspan(w->upper_offset));
    USNET_BENCH_CHECK(u);
    auto ur = UdpRepr::parse(*u, PseudoHeader::v6(ir->src, ir->dst), ChecksumMode::Verify);
    USNET_BENCH_CHECK(ur);
    benchmark::DoNotOptimize(ur->payload_len);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// For scale: the one-line printer allocates and formats; it is for logs,
// never for the data path.
void BM_DescribeFrame_EthIpv4Tcp(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(describe_frame(kTcpFrame));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

BENCHMARK(BM_ParseViews_EthIpv4Tcp);
BENCHMARK(BM_ParseReprsVerified_EthIpv4Tcp);
BENCHMARK(BM_ParseReprsVerified_EthIpv6Udp);
BENCHMARK(BM_DescribeFrame_EthIpv4Tcp);

}  // namespace

BENCHMARK_MAIN();
