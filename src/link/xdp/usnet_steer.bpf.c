// The XDP program of the AF_XDP link: it sends to usnet's socket only the
// frames usnet owns and passes every other frame to the kernel's stack, so
// the two share one interface (and one MAC address).
//
// A frame is usnet's when it is
//   - ARP whose target protocol address is one of usnet's addresses
//     (requests for usnet's address and the replies to usnet's requests);
//   - IPv4 to one of usnet's addresses, and either that address is marked
//     USNET_ADDR_ALL (every protocol and port is usnet's), or it is ICMP, or
//     a fragment other than the first (its ports are in the first), or UDP or
//     TCP to a port usnet serves (the ports map).
// Frames with one 802.1Q tag are looked at through the tag. Anything the
// program cannot parse is the kernel's. The verdict for usnet's frames is a
// redirect to the socket bound to the frame's receive queue; with no socket
// there the frame goes to the kernel (bpf_redirect_map's fallback action).
//
// The maps are filled by the link (src/link/af_xdp_link.cpp); the key and
// value layouts below are part of that contract.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define USNET_ADDR_ALL 1u  // usnet_addrs value bit: every frame to the address is usnet's

#define USNET_STAT_REDIRECTED 0
#define USNET_STAT_PASSED 1
#define USNET_STAT_NO_SOCKET 2  // usnet's, but on a queue with no usnet socket: passed
#define USNET_STAT_COUNT 3

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);    // receive queue
  __type(value, __u32);  // AF_XDP socket
} usnet_xsks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u32);    // IPv4 address, network byte order
  __type(value, __u32);  // USNET_ADDR_* bits
} usnet_addrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);   // protocol << 16 | port (host order)
  __type(value, __u32); // unused (1)
} usnet_ports SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, USNET_STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} usnet_stats SEC(".maps");

struct vlan_tag {
  __be16 tci;
  __be16 encapsulated_proto;
};

static __always_inline int count(__u32 which, int verdict) {
  __u64 *n = bpf_map_lookup_elem(&usnet_stats, &which);
  if (n) *n += 1;
  return verdict;
}

static __always_inline int to_usnet(struct xdp_md *ctx) {
  int verdict = bpf_redirect_map(&usnet_xsks, ctx->rx_queue_index, XDP_PASS);
  return count(verdict == XDP_REDIRECT ? USNET_STAT_REDIRECTED : USNET_STAT_NO_SOCKET, verdict);
}

static __always_inline int to_kernel(void) { return count(USNET_STAT_PASSED, XDP_PASS); }

SEC("xdp")
int usnet_steer(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;

  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return to_kernel();
  void *l3 = eth + 1;
  __be16 proto = eth->h_proto;
  if (proto == bpf_htons(ETH_P_8021Q)) {
    struct vlan_tag *tag = l3;
    if ((void *)(tag + 1) > end) return to_kernel();
    proto = tag->encapsulated_proto;
    l3 = tag + 1;
  }

  if (proto == bpf_htons(ETH_P_ARP)) {
    // RFC 826 for Ethernet and IPv4: 8 bytes of header, then sender MAC,
    // sender IP, target MAC, target IP; the target IP at offset 24.
    __u8 *arp = l3;
    if ((void *)(arp + 28) > end) return to_kernel();
    if (arp[0] != 0 || arp[1] != 1 || arp[2] != 0x08 || arp[3] != 0x00 || arp[4] != 6 || arp[5] != 4)
      return to_kernel();
    __u32 target;
    __builtin_memcpy(&target, arp + 24, 4);
    if (bpf_map_lookup_elem(&usnet_addrs, &target)) return to_usnet(ctx);
    return to_kernel();
  }

  if (proto != bpf_htons(ETH_P_IP)) return to_kernel();
  struct iphdr *ip = l3;
  if ((void *)(ip + 1) > end) return to_kernel();
  if (ip->version != 4 || ip->ihl < 5) return to_kernel();
  __u32 dst = ip->daddr;
  __u32 *flags = bpf_map_lookup_elem(&usnet_addrs, &dst);
  if (!flags) return to_kernel();
  if (*flags & USNET_ADDR_ALL) return to_usnet(ctx);
  if (ip->protocol == IPPROTO_ICMP) return to_usnet(ctx);
  // RFC 791: a fragment offset other than zero has no transport header.
  if ((bpf_ntohs(ip->frag_off) & 0x1fff) != 0) return to_usnet(ctx);
  if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP) return to_kernel();
  __u8 *l4 = (__u8 *)ip + ip->ihl * 4;
  if ((void *)(l4 + 4) > end) return to_kernel();
  __u32 key = ((__u32)ip->protocol << 16) | ((__u32)l4[2] << 8) | l4[3];
  if (bpf_map_lookup_elem(&usnet_ports, &key)) return to_usnet(ctx);
  return to_kernel();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
