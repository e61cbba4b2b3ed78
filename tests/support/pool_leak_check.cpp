#include "support/pool_leak_check.hpp"

#include <gtest/gtest.h>

#include <cstdio>

#include "usnet/mem/accounting.hpp"

namespace usnet::test {

namespace {

int g_failures = 0;

class PoolLeakCheck : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override {
    in_use_at_start_ = mem::buffers_in_use_all_pools();
    leaked_at_start_ = mem::buffers_leaked_total();
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    const auto in_use = mem::buffers_in_use_all_pools();
    const auto leaked = mem::buffers_leaked_total() - leaked_at_start_;
    if (in_use != 0 || leaked != 0) {
      ++g_failures;
      std::fprintf(stderr,
                   "[POOL LEAK] %s.%s: %lld buffers in use after the test (%lld at its start), "
                   "%lld leaked by destroyed pools\n",
                   info.test_suite_name(), info.name(), static_cast<long long>(in_use),
                   static_cast<long long>(in_use_at_start_), static_cast<long long>(leaked));
    }
  }

  std::int64_t in_use_at_start_ = 0;
  std::int64_t leaked_at_start_ = 0;
};

}  // namespace

void install_pool_leak_check() {
  // GoogleTest owns listeners once appended.
  ::testing::UnitTest::GetInstance()->listeners().Append(new PoolLeakCheck);
}

int pool_leak_failures() { return g_failures; }

}  // namespace usnet::test
