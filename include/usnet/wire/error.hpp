// Why a packet was rejected by a parser. Every parser returns one of these
// instead of reading past the bytes it was given; callers count them.
#pragma once

#include <cstdint>
#include <string_view>

#include "usnet/util/expected.hpp"

namespace usnet::wire {

enum class ParseError : std::uint8_t {
  Truncated,          // fewer bytes than the header (or a length field) needs
  BadVersion,         // IP version field does not match the header type
  BadHeaderLength,    // header length field too small or past the data
  BadTotalLength,     // total/payload length field inconsistent with the data
  BadLength,          // a length field (UDP, ARP, ICMP) is out of range
  BadChecksum,        // checksum verification failed
  BadDataOffset,      // TCP data offset below 5 or past the segment
  BadOptionLength,    // an option's length is 0, 1 or runs past the header
  BadOption,          // a known option with an invalid value
  TooManyExtHeaders,  // IPv6 extension header chain exceeds the walk bound
  BadExtHeader,       // malformed IPv6 extension header
  BadHardwareType,    // ARP hardware type/length not Ethernet
  BadProtocolType,    // ARP protocol type/length not IPv4
  BadOperation,       // ARP operation not request/reply
  BadType,            // unknown or unsupported message type/code
  BadField,           // a field holds a value the format forbids
  NoSpace,            // emit: output buffer too small
};

constexpr std::string_view to_string(ParseError e) noexcept {
  switch (e) {
    case ParseError::Truncated:
      return "truncated";
    case ParseError::BadVersion:
      return "bad version";
    case ParseError::BadHeaderLength:
      return "bad header length";
    case ParseError::BadTotalLength:
      return "bad total length";
    case ParseError::BadLength:
      return "bad length";
    case ParseError::BadChecksum:
      return "bad checksum";
    case ParseError::BadDataOffset:
      return "bad data offset";
    case ParseError::BadOptionLength:
      return "bad option length";
    case ParseError::BadOption:
      return "bad option";
    case ParseError::TooManyExtHeaders:
      return "too many extension headers";
    case ParseError::BadExtHeader:
      return "bad extension header";
    case ParseError::BadHardwareType:
      return "bad hardware type";
    case ParseError::BadProtocolType:
      return "bad protocol type";
    case ParseError::BadOperation:
      return "bad operation";
    case ParseError::BadType:
      return "bad type";
    case ParseError::BadField:
      return "bad field";
    case ParseError::NoSpace:
      return "no space";
  }
  return "unknown";
}

template <class T>
using ParseResult = Expected<T, ParseError>;

// Whether parse() verifies checksums, and emit() fills them in. Links that
// promise intact frames (shared memory between two usnet stacks) skip both.
enum class ChecksumMode : std::uint8_t { Verify, Ignore };

}  // namespace usnet::wire
