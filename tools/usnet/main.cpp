// The usnet command: one binary, one subcommand per job.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>

#include "commands.hpp"
#include "stack_setup.hpp"

int main(int argc, char** argv) {
  CLI::App app{"usnet: a user-space network stack; tools to check, measure and inspect it"};
  app.require_subcommand(1);
  std::function<int()> run;
  usnet::tool::add_demo(app, run);
  usnet::tool::add_bench(app, run);
  usnet::tool::add_selfcheck(app, run);
  usnet::tool::add_ping(app, run);
  usnet::tool::add_up(app, run);
  usnet::tool::add_udp_echo(app, run);
  usnet::tool::add_http(app, run);
  usnet::tool::add_stat(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // prints help, or the error and a hint, and gives the status
  }
  return run ? run() : 2;
}
