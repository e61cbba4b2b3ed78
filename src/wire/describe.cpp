#include "usnet/wire/describe.hpp"

#include <cstdarg>
#include <cstdio>
#include <string_view>

#include "usnet/wire/arp.hpp"
#include "usnet/wire/ethernet.hpp"
#include "usnet/wire/icmpv4.hpp"
#include "usnet/wire/icmpv6.hpp"
#include "usnet/wire/ipv4.hpp"
#include "usnet/wire/ipv6.hpp"
#include "usnet/wire/tcp.hpp"
#include "usnet/wire/udp.hpp"

namespace usnet::wire {

namespace {

// Appends printf-formatted text; lines are short, so a stack buffer is enough.
__attribute__((format(printf, 2, 3))) void put(std::string& s, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0)
    s.append(buf, static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n) : sizeof buf - 1);
}

void malformed(std::string& s, ParseError e) {
  s += "[malformed: ";
  s += to_string(e);
  s += ']';
}

void describe_tcp_options(std::string& s, std::span<const std::byte> raw) {
  if (raw.empty()) return;
  auto opts = TcpOptions::parse(raw);
  if (!opts) {
    s += " <";
    malformed(s, opts.error());
    s += '>';
    return;
  }
  std::string list;
  auto item = [&list](const std::string& text) {
    if (!list.empty()) list += ',';
    list += text;
  };
  if (opts->mss) item("mss " + std::to_string(*opts->mss));
  if (opts->sack_permitted) item("sackOK");
  if (opts->timestamps)
    item("TS " + std::to_string(opts->timestamps->tsval) + ":" + std::to_string(opts->timestamps->tsecr));
  if (opts->window_scale) item("wscale " + std::to_string(*opts->window_scale));
  for (const auto& b : opts->sacks()) {
    item("sack " + std::to_string(b.left.raw()) + "-" + std::to_string(b.right.raw()));
  }
  if (opts->unknown_count != 0) item(std::to_string(opts->unknown_count) + " unknown");
  if (!list.empty()) s += " <" + list + ">";
}

void describe_transport(std::string& s, std::uint8_t protocol, std::span<const std::byte> payload,
                        const std::string& src, const std::string& dst, bool v6) {
  switch (protocol) {
    case ip_protocol::kTcp: {
      auto v = TcpView::make(payload);
      if (!v) {
        s += src + " > " + dst + ": TCP ";
        return malformed(s, v.error());
      }
      put(s, "%s.%u > %s.%u: TCP %s seq %u", src.c_str(), v->src_port(), dst.c_str(), v->dst_port(),
          v->flags().to_tcpdump().c_str(), v->seq().raw());
      if (v->flags().ack()) put(s, " ack %u", v->ack().raw());
      put(s, " win %u", v->window());
      if (v->flags().urg()) put(s, " urg %u", v->urgent_pointer());
      describe_tcp_options(s, v->options());
      put(s, " len %zu", v->payload().size());
      return;
    }
    case ip_protocol::kUdp: {
      auto v = UdpView::make(payload);
      if (!v) {
        s += src + " > " + dst + ": UDP ";
        return malformed(s, v.error());
      }
      put(s, "%s.%u > %s.%u: UDP len %zu", src.c_str(), v->src_port(), dst.c_str(), v->dst_port(),
          v->payload().size());
      return;
    }
    default:
      break;
  }
  s += src + " > " + dst + ": ";
  if (!v6 && protocol == kIcmpv4Protocol) {
    auto v = Icmpv4View::make(payload);
    if (!v) return malformed(s, v.error());
    switch (v->type()) {
      case Icmpv4Type::EchoRequest:
      case Icmpv4Type::EchoReply:
        put(s, "ICMP echo %s id %u seq %u len %zu",
            v->type() == Icmpv4Type::EchoRequest ? "request" : "reply", v->ident(), v->seq(),
            v->data().size());
        return;
      case Icmpv4Type::DestUnreachable:
        put(s, "ICMP unreachable code %u", v->code());
        if (v->code() == Icmpv4UnreachCode::kFragNeeded) put(s, " mtu %u", v->next_hop_mtu());
        return;
      case Icmpv4Type::TimeExceeded:
        put(s, "ICMP time exceeded code %u", v->code());
        return;
      case Icmpv4Type::ParamProblem:
        put(s, "ICMP parameter problem pointer %u", v->pointer());
        return;
    }
    put(s, "ICMP type %u code %u", static_cast<unsigned>(v->type()), v->code());
    return;
  }
  if (v6 && protocol == Ipv6NextHeader::kIcmpv6) {
    auto v = Icmpv6View::make(payload);
    if (!v) return malformed(s, v.error());
    switch (v->type()) {
      case Icmpv6Type::EchoRequest:
      case Icmpv6Type::EchoReply:
        put(s, "ICMP6 echo %s id %u seq %u len %zu",
            v->type() == Icmpv6Type::EchoRequest ? "request" : "reply", v->ident(), v->seq(),
            v->data().size());
        return;
      case Icmpv6Type::DestUnreachable:
        put(s, "ICMP6 unreachable code %u", v->code());
        return;
      case Icmpv6Type::PacketTooBig:
        put(s, "ICMP6 packet too big mtu %u", v->mtu());
        return;
      case Icmpv6Type::TimeExceeded:
        put(s, "ICMP6 time exceeded code %u", v->code());
        return;
      case Icmpv6Type::ParamProblem:
        put(s, "ICMP6 parameter problem pointer %u", v->pointer());
        return;
      case Icmpv6Type::RouterSolicit:
        s += "ICMP6 router solicitation";
        return;
      case Icmpv6Type::RouterAdvert:
        put(s, "ICMP6 router advertisement lifetime %u", v->ra_router_lifetime());
        return;
      case Icmpv6Type::NeighborSolicit:
        s += "ICMP6 neighbor solicitation who-has " + v->target().to_string();
        return;
      case Icmpv6Type::NeighborAdvert:
        s += "ICMP6 neighbor advertisement tgt " + v->target().to_string();
        return;
      case Icmpv6Type::Redirect:
        s += "ICMP6 redirect " + v->redirect_destination().to_string() + " to " + v->target().to_string();
        return;
    }
    put(s, "ICMP6 type %u code %u", static_cast<unsigned>(v->type()), v->code());
    return;
  }
  put(s, "ip-proto %u len %zu", protocol, payload.size());
}

void describe_ipv4(std::string& s, std::span<const std::byte> bytes) {
  auto v = Ipv4View::make(bytes);
  s += "IPv4 ";
  if (!v) return malformed(s, v.error());
  if (v->dscp() != 0 || v->ecn() != 0) put(s, "tos dscp %u ecn %u ", v->dscp(), v->ecn());
  if (v->is_fragment()) {
    put(s, "frag id %u off %u%s ", v->ident(), v->frag_offset_bytes(), v->more_frags() ? "+" : "");
    if (v->frag_offset_units() != 0) {
      put(s, "%s > %s: proto %u len %zu", v->src().to_string().c_str(), v->dst().to_string().c_str(),
          v->protocol(), v->payload().size());
      return;
    }
  }
  describe_transport(s, v->protocol(), v->payload(), v->src().to_string(), v->dst().to_string(), false);
}

void describe_ipv6(std::string& s, std::span<const std::byte> bytes) {
  auto v = Ipv6View::make(bytes);
  s += "IPv6 ";
  if (!v) return malformed(s, v.error());
  auto walk = walk_extension_headers(*v);
  if (!walk) {
    s += v->src().to_string() + " > " + v->dst().to_string() + ": ";
    return malformed(s, walk.error());
  }
  if (walk->header_count != 0) put(s, "ext %u ", walk->header_count);
  if (walk->fragment) {
    put(s, "frag id %u off %u%s ", walk->fragment->identification, walk->fragment->offset * 8u,
        walk->fragment->more_fragments ? "+" : "");
    if (walk->is_non_first_fragment()) {
      s += v->src().to_string() + " > " + v->dst().to_string() + ": fragment";
      return;
    }
  }
  if (!walk->has_upper_layer()) {
    s += v->src().to_string() + " > " + v->dst().to_string() + ": no next header";
    return;
  }
  describe_transport(s, walk->upper_protocol, v->payload().subspan(walk->upper_offset), v->src().to_string(),
                     v->dst().to_string(), true);
}

void describe_arp(std::string& s, std::span<const std::byte> bytes) {
  auto v = ArpView::make(bytes);
  s += "ARP ";
  if (!v) return malformed(s, v.error());
  auto r = ArpRepr::parse(*v);
  if (!r) return malformed(s, r.error());
  if (r->operation == ArpOperation::Request) {
    s += "who-has " + r->target_ip.to_string() + " tell " + r->sender_ip.to_string();
  } else {
    s += r->sender_ip.to_string() + " is-at " + r->sender_mac.to_string();
  }
}

}  // namespace

std::string describe_frame(std::span<const std::byte> frame) {
  std::string s;
  s.reserve(160);
  auto eth = EthernetView::make(frame);
  if (!eth) {
    s = "ethernet ";
    malformed(s, eth.error());
    return s;
  }
  s += eth->src().to_string() + " > " + eth->dst().to_string();
  if (auto tag = eth->vlan()) put(s, " vlan %u pcp %u%s", tag->vid, tag->pcp, tag->dei ? " dei" : "");
  s += ", ";
  switch (eth->ethertype()) {
    case ethertype::kIpv4:
      describe_ipv4(s, eth->payload());
      break;
    case ethertype::kIpv6:
      describe_ipv6(s, eth->payload());
      break;
    case ethertype::kArp:
      describe_arp(s, eth->payload());
      break;
    default:
      put(s, "ethertype 0x%04x len %zu", eth->ethertype(), eth->payload().size());
      break;
  }
  return s;
}

}  // namespace usnet::wire
