// open_link(): from a URI a user typed to a link, or an error that says what
// to do.
#include <cerrno>
#include <memory>
#include <string>
#include <system_error>

#include "usnet/link/af_packet_link.hpp"
#include "usnet/link/af_xdp_link.hpp"
#include "usnet/link/link.hpp"
#include "usnet/link/memif_link.hpp"
#include "usnet/link/tap_link.hpp"

namespace usnet::link {

Expected<std::unique_ptr<Link>, LinkError> open_link(std::string_view uri, mem::PacketPool& pool,
                                                     mem::OwnerId owner) {
  auto parsed = parse_link_uri(uri);
  if (!parsed) return unexpected(parsed.error());
  const LinkUri& u = *parsed;
  const std::string text(uri);

  if (u.scheme == "tap") {
    auto link = TapLink::open(TapOptions{u.target, {}}, pool, owner, text);
    if (!link) return unexpected(link.error());
    return std::unique_ptr<Link>(std::move(*link));
  }
  if (u.scheme == "af_packet") {
    AfPacketOptions options;
    options.interface = u.target;
    if (u.param("ring") == "frames") options.ring = AfPacketRing::kFrames;  // checked by the parser
    auto link = AfPacketLink::open(options, pool, owner, text);
    if (!link) return unexpected(link.error());
    return std::unique_ptr<Link>(std::move(*link));
  }
  if (u.scheme == "memif") {
    auto link = open_memif(u, pool, owner);
    if (!link) return unexpected(link.error());
    return std::move(*link);
  }
  if (u.scheme == "af_xdp") {
    auto link = AfXdpLink::open(u, pool, owner, text);
    if (!link) return unexpected(link.error());
    return std::unique_ptr<Link>(std::move(*link));
  }
  if (u.scheme == "mem") {
    return unexpected(LinkError{std::make_error_code(std::errc::invalid_argument),
                                text + ": in-memory links are created in code (MemoryLink), not from a URI"});
  }
  // parse_link_uri() accepts only the schemes above.
  return unexpected(LinkError{std::make_error_code(std::errc::invalid_argument),
                              text + ": unknown link scheme '" + u.scheme + "'"});
}

}  // namespace usnet::link
