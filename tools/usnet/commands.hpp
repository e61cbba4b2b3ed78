// Subcommands of the `usnet` tool. Each registers itself on the CLI11 app and
// returns the process exit status when run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace usnet::tool {

// Registers `selfcheck`; `run` is set to the function to call when chosen.
void add_selfcheck(CLI::App& app, std::function<int()>& run);

}  // namespace usnet::tool
