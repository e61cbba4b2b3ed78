// Internet checksum throughput: usnet's 64-bit-word sum against the plain
// RFC 1071 16-bit loop, over the same buffers, in the same run.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "usnet/wire/checksum.hpp"

namespace {

// The RFC 1071 loop once more, with GCC's auto-vectorizer switched off: the
// one-16-bit-word-per-step loop that "naive" usually means. ones_sum_naive
// is the same source compiled normally, and GCC -O2 vectorizes it.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
std::uint16_t
naive16_scalar(std::span<const std::byte> data) noexcept {
  std::uint32_t sum = 0;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) {
    sum += (std::to_integer<std::uint32_t>(data[i]) << 8) | std::to_integer<std::uint32_t>(data[i + 1]);
  }
  if (i < data.size()) sum += std::to_integer<std::uint32_t>(data[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

std::vector<std::byte> random_bytes(std::size_t n) {
  std::mt19937 rng(42);
  std::vector<std::byte> v(n + 1);
  for (auto& b : v) b = std::byte(rng());
  return v;
}

template <std::uint16_t (*Sum)(std::span<const std::byte>) noexcept>
void BM_Checksum(benchmark::State& state) {
  const auto len = static_cast<std::size_t>(state.range(0));
  auto buf = random_bytes(len);
  // Offset by one byte so the fast path is measured on unaligned data too,
  // as packet payloads after a 14-byte Ethernet header are.
  std::span<const std::byte> data(buf.data() + 1, len);
  for (auto _ : state) {
    benchmark::DoNotOptimize(data.data());
    benchmark::DoNotOptimize(Sum(data));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(len));
}

void BM_ChecksumFast(benchmark::State& s) { BM_Checksum<usnet::wire::ones_sum>(s); }
void BM_ChecksumNaive16(benchmark::State& s) { BM_Checksum<usnet::wire::ones_sum_naive>(s); }
void BM_ChecksumNaive16Scalar(benchmark::State& s) { BM_Checksum<naive16_scalar>(s); }

BENCHMARK(BM_ChecksumFast)->Arg(20)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65536);
BENCHMARK(BM_ChecksumNaive16)->Arg(20)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65536);
BENCHMARK(BM_ChecksumNaive16Scalar)->Arg(20)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65536);

}  // namespace

BENCHMARK_MAIN();
