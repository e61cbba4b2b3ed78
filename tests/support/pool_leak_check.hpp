#pragma once

namespace usnet::test {
// Adds a GoogleTest listener that checks, after every test, that no packet
// buffer is still in use and no pool was destroyed with buffers handed out.
void install_pool_leak_check();
// Number of tests that broke that rule; main() fails the run when non-zero.
int pool_leak_failures();
}  // namespace usnet::test
