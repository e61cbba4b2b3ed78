// Counters printed as netstat -s prints them: "    12 frames received".
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace usnet {

inline void append_counter_line(std::string& out, std::uint64_t value, std::string_view what) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "    %llu ", static_cast<unsigned long long>(value));
  out += buf;
  out += what;
  out += '\n';
}

}  // namespace usnet
