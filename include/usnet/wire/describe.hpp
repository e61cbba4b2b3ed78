// One line per frame, in the manner of `tcpdump -e -n`, for logs, test
// failure messages and `usnet` tools. It never fails: a layer that does not
// parse is shown as "[malformed: <reason>]" and the line ends there.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace usnet::wire {

// Describes an Ethernet frame, e.g.
//   02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 198.18.0.1.40001 > 198.18.0.2.80:
//   TCP [S] seq 1000 win 64240 <mss 1460,sackOK,TS 1:0,nop,wscale 7> len 0
// Checksums are not verified (a log line should show what arrived).
std::string describe_frame(std::span<const std::byte> frame);

}  // namespace usnet::wire
