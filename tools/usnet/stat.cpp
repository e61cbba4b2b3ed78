// `usnet stat`: reads the statistics region a running usnet stack publishes
// (usnet/stats.hpp) and prints its pool use, connections (like ss) and
// counters with drops by reason (like netstat -s), once or every interval.
#include <fmt/core.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <thread>

#include "stack_setup.hpp"
#include "usnet/stats.hpp"

namespace usnet::tool {

namespace {

struct StatOptions {
  std::string target;     // a pid or a region file; empty: the only live stack
  double interval_s = 0;  // 0: once
  int count = 0;          // with an interval: how many times (0: until Ctrl-C)
  bool list = false;
};

std::string describe_age(const StatsSnapshot& s) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.updated).count();
  return age < 0 ? "just now" : fmt::format("{} ms ago", age);
}

// The region to read, from what the user typed.
Expected<std::string, std::string> find_region(const std::string& target) {
  const auto files = list_stats_files();
  if (!target.empty() && target.find('/') != std::string::npos) return target;
  if (!target.empty()) {
    unsigned pid = 0;
    const auto [p, ec] = std::from_chars(target.data(), target.data() + target.size(), pid);
    if (ec != std::errc{} || p != target.data() + target.size() || pid == 0)
      return unexpected("'" + target + "' is neither a process id nor a region file (a path with '/')");
    const std::string prefix = std::string(kStatsDir) + "/" + kStatsPrefix + std::to_string(pid) + ".";
    for (const auto& f : files) {
      if (f.starts_with(prefix)) return f;
    }
    return unexpected(
        fmt::format("no usnet stack in process {} (no {}*; `usnet stat --list` shows them)", pid, prefix));
  }
  std::vector<std::string> live;
  for (const auto& f : files) {
    if (auto s = read_stats(f); s && s->process_alive) live.push_back(f);
  }
  if (live.size() == 1) return live.front();
  if (live.empty())
    return unexpected(std::string("no running usnet stack publishes statistics (none in ") + kStatsDir + ")");
  return unexpected(
      fmt::format("{} usnet stacks are running: name one by process id (`usnet stat --list`)", live.size()));
}

int list_regions() {
  const auto files = list_stats_files();
  fmt::print("{:<8} {:<20} {:<8} {}\n", "PID", "NAME", "STATE", "REGION");
  for (const auto& f : files) {
    auto s = read_stats(f);
    if (!s) {
      fmt::print("{:<8} {:<20} {:<8} {} ({})\n", "-", "-", "bad", f, s.error());
      continue;
    }
    fmt::print("{:<8} {:<20} {:<8} {}\n", s->pid, s->name, s->process_alive ? "running" : "gone", f);
  }
  return 0;
}

void print_snapshot(const StatsSnapshot& s) {
  fmt::print("usnet stack '{}', process {}{}, updated {}\n", s.name, s.pid,
             s.process_alive ? "" : " (gone: what it last published)", describe_age(s));
  std::string conns;
  std::size_t nconn = 0;
  for (const auto& [key, value] : stats_values(s)) {
    if (key == "conn") {
      conns += "  " + value + "\n";
      ++nconn;
    } else {
      fmt::print("{:<20} {}\n", key, value);
    }
  }
  if (nconn > 0) fmt::print("Connections (local remote state bytes):\n{}", conns);
  if (const auto sep = s.text.find("\n--\n"); sep != std::string::npos)
    fmt::print("{}", s.text.substr(sep + 4));
}

int run_stat(const StatOptions& opt) {
  if (opt.list) return list_regions();
  const auto path = find_region(opt.target);
  if (!path) {
    fmt::print(stderr, "usnet stat: {}\n", path.error());
    return 1;
  }
  install_stop_signals();
  for (int i = 0;; ++i) {
    auto s = read_stats(*path);
    if (!s && i > 0 && ::access(path->c_str(), F_OK) != 0) {
      fmt::print("\nusnet stat: the stack has closed (its region is gone)\n");
      return 0;
    }
    if (!s) {
      fmt::print(stderr, "usnet stat: {}\n", s.error());
      return 1;
    }
    if (i > 0) fmt::print("\n");
    print_snapshot(*s);
    std::fflush(stdout);
    if (opt.interval_s <= 0 || (opt.count > 0 && i + 1 >= opt.count) || !s->process_alive) break;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(opt.interval_s);
    while (!g_stop.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (g_stop.load()) break;
  }
  return 0;
}

}  // namespace

void add_stat(CLI::App& app, std::function<int()>& run) {
  static StatOptions opt;
  auto* cmd = app.add_subcommand(
      "stat",
      "Show a running usnet stack's counters, drops by reason, connections and pool use, read from the "
      "statistics region it publishes (no effect on the stack)");
  cmd->add_option("target", opt.target,
                  "Process id of the stack, or its region file; default: the only running usnet stack");
  cmd->add_option("-i,--interval", opt.interval_s, "Print again every this many seconds (0: once)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("-c,--count", opt.count, "With --interval: stop after this many prints (0: until Ctrl-C)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_flag("-l,--list", opt.list, "List the statistics regions present and whose they are");
  cmd->callback([&run] { run = [] { return run_stat(opt); }; });
}

}  // namespace usnet::tool
