#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usnet/link/link.hpp"

namespace usnet::link {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

LinkUri ok(std::string_view uri) {
  auto r = parse_link_uri(uri);
  EXPECT_TRUE(r) << uri << ": " << (r ? "" : r.error().message);
  return r ? *r : LinkUri{};
}

// The message of the error parse_link_uri gives, checking it is EINVAL.
std::string error_of(std::string_view uri) {
  auto r = parse_link_uri(uri);
  EXPECT_FALSE(r) << uri << " was accepted";
  if (r) return {};
  EXPECT_EQ(r.error().code, std::errc::invalid_argument) << uri;
  return r.error().message;
}

TEST(LinkUri, TapAndAfPacketTakeAnInterfaceName) {
  auto tap = ok("tap:usnet0");
  EXPECT_EQ(tap.scheme, "tap");
  EXPECT_EQ(tap.target, "usnet0");
  EXPECT_TRUE(tap.params.empty());
  auto pkt = ok("af_packet:veth-a.10");
  EXPECT_EQ(pkt.scheme, "af_packet");
  EXPECT_EQ(pkt.target, "veth-a.10");
  EXPECT_EQ(ok("tap:x").target, "x");
  EXPECT_EQ(ok("tap:fifteen-chars").target, "fifteen-chars");
  EXPECT_EQ(ok("tap:abcdefghijklmno").target, "abcdefghijklmno");  // 15, the most Linux allows
  EXPECT_EQ(ok("tap:...").target, "...");                          // only "." and ".." are reserved
}

TEST(LinkUri, MemifTakesAnAbsolutePathAndARole) {
  auto plain = ok("memif:/run/usnet/memif.sock");
  EXPECT_EQ(plain.scheme, "memif");
  EXPECT_EQ(plain.target, "/run/usnet/memif.sock");
  EXPECT_EQ(plain.param("role", "client"), "client");  // the fallback
  EXPECT_EQ(ok("memif:/tmp/a.sock?role=server").params, (Params{{"role", "server"}}));
  EXPECT_EQ(ok("memif:/tmp/a.sock?role=client").param("role"), "client");
  EXPECT_EQ(ok("memif:/tmp/a.sock?mtu=68").param("mtu"), "68");
  EXPECT_EQ(ok("memif:/tmp/a.sock?role=server&mtu=65517").param("mtu"), "65517");
  EXPECT_EQ(ok("memif:/tmp/a.sock?checksums=off").param("checksums"), "off");
  EXPECT_EQ(ok("memif:/").target, "/");
  EXPECT_EQ(ok("memif:/" + std::string(106, 'p')).target.size(), 107u);
}

TEST(LinkUri, AfXdpTakesQueueAndMode) {
  auto x = ok("af_xdp:eth0?queue=3&mode=zc");
  EXPECT_EQ(x.scheme, "af_xdp");
  EXPECT_EQ(x.target, "eth0");
  EXPECT_EQ(x.params, (Params{{"queue", "3"}, {"mode", "zc"}}));
  EXPECT_EQ(x.param("queue"), "3");
  EXPECT_EQ(x.param("mode"), "zc");
  EXPECT_EQ(x.param("other", "dflt"), "dflt");
  EXPECT_EQ(ok("af_xdp:eth0").params.size(), 0u);
  EXPECT_EQ(ok("af_xdp:eth0?mode=copy").param("mode"), "copy");
  EXPECT_EQ(ok("af_packet:veth0?ring=frames").param("ring"), "frames");
  EXPECT_EQ(ok("af_packet:veth0?ring=blocks").param("ring"), "blocks");
  EXPECT_EQ(ok("af_xdp:eth0?mode=copy&queue=0").param("queue"), "0");  // any order
  EXPECT_EQ(ok("af_xdp:eth0?queue=65535").param("queue"), "65535");
  EXPECT_EQ(ok("af_xdp:eth0?queue=007").param("queue"), "007");
  EXPECT_EQ(ok("af_xdp:eth0?busy_poll=50&steer=all").param("busy_poll"), "50");
  EXPECT_EQ(ok("af_xdp:eth0?steer=served").param("steer"), "served");
  EXPECT_EQ(ok("af_xdp:eth0?busy_poll=1000000").param("busy_poll"), "1000000");
}

TEST(LinkUri, MemTakesAName) {
  auto m = ok("mem:left");
  EXPECT_EQ(m.scheme, "mem");
  EXPECT_EQ(m.target, "left");
  EXPECT_EQ(ok("mem:a/b:c").target, "a/b:c");
}

TEST(LinkUri, ParamOfAnEmptyUriFallsBack) {
  LinkUri u;
  EXPECT_EQ(u.param("queue"), "");
  EXPECT_EQ(u.param("queue", "0"), "0");
}

TEST(LinkUri, SchemeErrors) {
  EXPECT_EQ(error_of("eth0"),
            "\"eth0\": no scheme (expected tap:NAME, af_packet:IFNAME, memif:/path.sock, af_xdp:IFNAME or "
            "mem:NAME)");
  EXPECT_EQ(
      error_of(""),
      "\"\": no scheme (expected tap:NAME, af_packet:IFNAME, memif:/path.sock, af_xdp:IFNAME or mem:NAME)");
  EXPECT_EQ(error_of("xdp:eth0"),
            "\"xdp:eth0\": unknown scheme \"xdp\" (expected tap, af_packet, memif, af_xdp or mem)");
  EXPECT_EQ(error_of("TAP:x"),
            "\"TAP:x\": unknown scheme \"TAP\" (expected tap, af_packet, memif, af_xdp or mem)");
  EXPECT_EQ(error_of(":x"), "\":x\": unknown scheme \"\" (expected tap, af_packet, memif, af_xdp or mem)");
}

TEST(LinkUri, MissingTarget) {
  EXPECT_EQ(error_of("tap:"), "\"tap:\": missing interface name after \"tap:\"");
  EXPECT_EQ(error_of("af_xdp:?queue=1"), "\"af_xdp:?queue=1\": missing interface name after \"af_xdp:\"");
  EXPECT_EQ(error_of("memif:"), "\"memif:\": missing socket path after \"memif:\"");
  EXPECT_EQ(error_of("mem:"), "\"mem:\": missing name after \"mem:\"");
}

TEST(LinkUri, InterfaceNameErrors) {
  EXPECT_EQ(
      error_of("tap:abcdefghijklmnop"),
      "\"tap:abcdefghijklmnop\": interface name \"abcdefghijklmnop\" is 16 characters long (Linux allows at "
      "most 15)");
  EXPECT_EQ(error_of("af_packet:."), "\"af_packet:.\": interface name \".\" is not allowed");
  EXPECT_EQ(error_of("tap:.."), "\"tap:..\": interface name \"..\" is not allowed");
  EXPECT_EQ(error_of("tap:a/b"), "\"tap:a/b\": interface name \"a/b\" contains '/'");
  EXPECT_EQ(error_of("tap:a:b"), "\"tap:a:b\": interface name \"a:b\" contains ':'");
  EXPECT_EQ(error_of("tap:a b"), "\"tap:a b\": interface name \"a b\" contains whitespace");
  EXPECT_EQ(error_of("af_xdp:eth\t0"),
            "\"af_xdp:eth\\x090\": interface name \"eth\\x090\" contains whitespace");
  EXPECT_EQ(error_of(std::string_view("tap:a\0b", 7)),
            "\"tap:a\\x00b\": interface name \"a\\x00b\" contains a control character");
}

TEST(LinkUri, SocketPathErrors) {
  EXPECT_EQ(error_of("memif:run/x.sock"),
            "\"memif:run/x.sock\": socket path \"run/x.sock\" must be absolute (start with '/')");
  const std::string long_path = "/" + std::string(107, 'p');
  EXPECT_EQ(error_of("memif:" + long_path),
            "\"memif:" + long_path + "\": socket path \"" + long_path +
                "\" is 108 bytes long (a Unix socket path holds at most 107)");
  EXPECT_EQ(error_of("memif:/a\x01"),
            "\"memif:/a\\x01\": socket path \"/a\\x01\" contains a control character");
  EXPECT_EQ(error_of("mem:a b"), "\"mem:a b\": name \"a b\" contains whitespace or a control character");
}

TEST(LinkUri, ParameterShapeErrors) {
  EXPECT_EQ(error_of("af_xdp:eth0?"), "\"af_xdp:eth0?\": nothing after '?' (expected key=value parameters)");
  EXPECT_EQ(error_of("af_xdp:eth0?queue=1&"),
            "\"af_xdp:eth0?queue=1&\": empty parameter (parameters are key=value separated by '&')");
  EXPECT_EQ(error_of("af_xdp:eth0?queue=1&&mode=zc"),
            "\"af_xdp:eth0?queue=1&&mode=zc\": empty parameter (parameters are key=value separated by '&')");
  EXPECT_EQ(error_of("af_xdp:eth0?queue"),
            "\"af_xdp:eth0?queue\": parameter \"queue\" has no value (expected key=value)");
  EXPECT_EQ(error_of("af_xdp:eth0?=3"),
            "\"af_xdp:eth0?=3\": parameter \"=3\" has no name (expected key=value)");
  EXPECT_EQ(error_of("af_xdp:eth0?queue=1&queue=2"),
            "\"af_xdp:eth0?queue=1&queue=2\": parameter \"queue\" given twice");
}

TEST(LinkUri, UnknownParameters) {
  EXPECT_EQ(error_of("tap:x?mode=zc"),
            "\"tap:x?mode=zc\": unknown parameter \"mode\" (tap takes no parameters)");
  EXPECT_EQ(error_of("af_packet:x?queue=1"),
            "\"af_packet:x?queue=1\": unknown parameter \"queue\" (expected ring)");
  EXPECT_EQ(error_of("mem:x?a=b"), "\"mem:x?a=b\": unknown parameter \"a\" (mem takes no parameters)");
  EXPECT_EQ(error_of("memif:/s?mode=zc"),
            "\"memif:/s?mode=zc\": unknown parameter \"mode\" (expected role, id, secret, mtu or checksums)");
  EXPECT_EQ(
      error_of("af_xdp:eth0?role=server"),
      "\"af_xdp:eth0?role=server\": unknown parameter \"role\" (expected queue, mode, busy_poll or steer)");
  EXPECT_EQ(
      error_of("af_xdp:eth0?Queue=1"),
      "\"af_xdp:eth0?Queue=1\": unknown parameter \"Queue\" (expected queue, mode, busy_poll or steer)");
}

TEST(LinkUri, BadValues) {
  EXPECT_EQ(error_of("af_packet:eth0?ring=v2"),
            "\"af_packet:eth0?ring=v2\": unknown ring \"v2\" (expected blocks or frames)");
  EXPECT_EQ(error_of("af_xdp:eth0?mode=fast"),
            "\"af_xdp:eth0?mode=fast\": unknown mode \"fast\" (expected zc or copy)");
  EXPECT_EQ(error_of("af_xdp:eth0?mode="), "\"af_xdp:eth0?mode=\": unknown mode \"\" (expected zc or copy)");
  EXPECT_EQ(error_of("memif:/s?role=master"),
            "\"memif:/s?role=master\": unknown role \"master\" (expected server or client)");
  EXPECT_EQ(error_of("memif:/s?checksums=no"),
            "\"memif:/s?checksums=no\": checksums \"no\" is not on or off");
  for (const char* m : {"", "0", "67", "65518", "-1500", "9k", "99999999999999999999"}) {
    const std::string uri = std::string("memif:/s?mtu=") + m;
    EXPECT_EQ(error_of(uri), "\"" + uri + "\": mtu \"" + m + "\" is not a decimal number from 68 to 65517");
  }
  for (const char* q : {"", "-1", "+1", " 1", "1 ", "0x10", "65536", "99999999999999999999", "1e3", "1=2"}) {
    const std::string uri = std::string("af_xdp:eth0?queue=") + q;
    EXPECT_EQ(error_of(uri), "\"" + uri + "\": queue \"" + q + "\" is not a decimal number from 0 to 65535");
  }
  for (const char* b : {"", "-1", "1000001", "5us"}) {
    const std::string uri = std::string("af_xdp:eth0?busy_poll=") + b;
    EXPECT_EQ(error_of(uri),
              "\"" + uri + "\": busy_poll \"" + b + "\" is not a number of microseconds from 0 to 1000000");
  }
  EXPECT_EQ(error_of("af_xdp:eth0?steer=some"),
            "\"af_xdp:eth0?steer=some\": unknown steer \"some\" (expected served or all)");
  for (const char* id : {"", "-1", "4294967296", "12345678901", "1x"}) {
    const std::string uri = std::string("memif:/s?id=") + id;
    EXPECT_EQ(error_of(uri),
              "\"" + uri + "\": id \"" + id + "\" is not a decimal number from 0 to 4294967295");
  }
  EXPECT_EQ(error_of("memif:/s?secret="), "\"memif:/s?secret=\": secret \"\" must be 1 to 24 characters");
  EXPECT_EQ(
      error_of("memif:/s?secret=0123456789012345678901234"),
      "\"memif:/s?secret=0123456789012345678901234\": secret \"0123456789012345678901234\" must be 1 to 24 "
      "characters");
}

// memif's interface id and secret are what a DPDK or VPP peer matches on.
TEST(LinkUri, MemifIdAndSecret) {
  auto u = parse_link_uri("memif:/run/x.sock?role=server&id=4294967295&secret=s3cret");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->param("id"), "4294967295");
  EXPECT_EQ(u->param("secret"), "s3cret");
  EXPECT_EQ(u->param("role"), "server");
}

}  // namespace
}  // namespace usnet::link
