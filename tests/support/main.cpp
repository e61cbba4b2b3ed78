#include <gtest/gtest.h>

#include <cstdio>

#include "support/pool_leak_check.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  usnet::test::install_pool_leak_check();
  int rc = RUN_ALL_TESTS();
  if (int leaks = usnet::test::pool_leak_failures(); leaks != 0) {
    std::fprintf(stderr, "%d test(s) left packet buffers in use\n", leaks);
    return 1;
  }
  return rc;
}
