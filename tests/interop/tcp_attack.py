#!/usr/bin/python3
"""The TCP attack bench (ROBUSTNESS.md): crafted segments against a live usnet
connection, sent from inside a peer namespace.

Run by tests/interop/tcp_attack_test.cpp inside the namespace it creates
(never elsewhere): `tcp_attack.py --iface IF --scenario NAME --www DIR ...`.
It prints what it observed as `key value` lines; the C++ test decides
whether that is right (together with usnet's own counters).

How the connection is driven. The script is the TCP peer itself: it sends
and receives Ethernet frames on the namespace's interface through one
AF_PACKET socket, from an address and MAC that belong to nobody in the
namespace (198.18.0.3, 02:00:00:00:00:03 by default; it answers usnet's ARP
for that address itself). So the namespace's kernel never takes part: the
frames usnet sends to that MAC are "other host" frames the kernel's IP
layer discards, so it sends no reset for a connection it has no socket for
(Debian's image has no iptables or nft to stop those resets with a rule),
and the script knows every sequence number and timestamp without sniffing.

scapy builds the ARP frames (request for usnet's MAC, answers to usnet's
requests) and the first frame of each connection, and decodes frames for
--verbose. TCP headers are written byte by byte here: the malformed ones are
the point (scapy would repair a wrong data offset or option length), and
building each frame with scapy (~0.4 ms) would make the 10,000-SYN flood
and the SACK barrage too slow. Frames are checked against scapy's decoding
once at start (self_check).

Safety: frames go out only on --iface (inside the namespace); addresses
must be in 198.18.0.0/15; every loop is bounded in count and in time.
"""

import argparse
import hashlib
import os
import random
import socket
import struct
import sys
import threading
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def out(key, value):
    print(f"{key} {value}", flush=True)


def in_test_range(addr):
    a = socket.inet_aton(addr)
    return a[0] == 198 and a[1] in (18, 19)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


# --- TCP options, written out (RFC 9293 3.1, RFC 7323, RFC 2018) -----------

def opt_mss(v):
    return struct.pack("!BBH", 2, 4, v)


def opt_wscale(s):
    return bytes([1, 3, 3, s])


def opt_sack_perm():
    return bytes([1, 1, 4, 2])


def opt_ts(val, ecr):
    return bytes([1, 1, 8, 10]) + struct.pack("!II", val & 0xFFFFFFFF, ecr & 0xFFFFFFFF)


def opt_sack(blocks):
    body = b"".join(struct.pack("!II", a & 0xFFFFFFFF, b & 0xFFFFFFFF) for a, b in blocks)
    return bytes([1, 1, 5, 2 + len(body)]) + body


def pad4(opts):
    return opts + b"\0" * (-len(opts) % 4)


def tcp_segment(src_ip, dst_ip, sport, dport, seq, ack, flags, window, options=b"", payload=b"",
                urg=0, doff=None):
    """A TCP segment with a correct checksum. `doff` (in 32-bit words)
    overrides the data offset, for malformed headers; `options` go in as
    given (pad them with pad4 for a well-formed header)."""
    if doff is None:
        assert len(options) % 4 == 0 and len(options) <= 40
        doff = 5 + len(options) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (doff & 0xF) << 4, flags, window, 0, urg)
    seg = hdr + options + payload
    pseudo = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv4_frame(dst_mac, src_mac, src_ip, dst_ip, l4, ident=0, proto=6):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64, proto, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + l4


class Seg:
    """A TCP segment usnet sent, decoded."""
    __slots__ = ("sport", "dport", "seq", "ack", "flags", "window", "payload", "tsval", "tsecr",
                 "sack", "mss", "t")

    def __init__(self):
        self.tsval = None
        self.tsecr = None
        self.sack = []
        self.mss = None

    def __repr__(self):
        f = "".join(n for b, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "A"))
                    if self.flags & b)
        return f"<{f} seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}>"


def parse_tcp(ip_payload):
    if len(ip_payload) < 20:
        return None
    s = Seg()
    (s.sport, s.dport, s.seq, s.ack, off, s.flags, s.window, _c, _u) = struct.unpack(
        "!HHIIBBHHH", ip_payload[:20])
    doff = (off >> 4) * 4
    if doff < 20 or doff > len(ip_payload):
        return None
    opts = ip_payload[20:doff]
    s.payload = ip_payload[doff:]
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            break
        ln = opts[i + 1]
        body = opts[i + 2:i + ln]
        if kind == 2 and ln == 4:
            s.mss = struct.unpack("!H", body)[0]
        elif kind == 8 and ln == 10:
            s.tsval, s.tsecr = struct.unpack("!II", body)
        elif kind == 5 and (ln - 2) % 8 == 0:
            s.sack = [struct.unpack("!II", body[j:j + 8]) for j in range(0, ln - 2, 8)]
        i += ln
    return s


def seq_lt(a, b):
    return ((a - b) & 0xFFFFFFFF) > 0x7FFFFFFF


class Link:
    """The AF_PACKET socket on the namespace's interface. Answers usnet's ARP
    requests for our address; hands TCP segments from usnet to us up."""

    def __init__(self, args):
        self.iface = args.iface
        self.my_ip, self.usnet_ip = args.my_ip, args.usnet_ip
        for a in (self.my_ip, self.usnet_ip):
            if not in_test_range(a):
                raise SystemExit(f"refusing address {a}: outside 198.18.0.0/15")
        self.my_mac_s = args.my_mac
        self.my_mac = mac_bytes(args.my_mac)
        self.verbose = args.verbose
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind((self.iface, 0))
        self.usnet_mac = None
        self.ident = random.randrange(1 << 16)
        self.arp_answers = 0
        self.seen = {"frames": 0, "arp": 0, "arp_replies": 0, "ip": 0}

    def send_raw(self, frame):
        self.sock.send(frame)

    def send_tcp(self, seg_bytes):
        self.ident += 1
        self.sock.send(ipv4_frame(self.usnet_mac, self.my_mac, self.my_ip, self.usnet_ip, seg_bytes,
                                  self.ident))

    def _arp_reply(self, frame):
        # scapy writes the answer (RFC 826): we are my_ip at my_mac.
        req = Ether(frame)
        rep = Ether(dst=req.src, src=self.my_mac_s) / ARP(
            op=2, hwsrc=self.my_mac_s, psrc=self.my_ip, hwdst=req[ARP].hwsrc, pdst=req[ARP].psrc)
        self.sock.send(bytes(rep))
        self.arp_answers += 1

    def recv(self, deadline):
        """The next TCP segment from usnet to my_ip, or None at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                frame, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                return None
            if addr[2] == PACKET_OUTGOING or len(frame) < 34:
                continue
            self.seen["frames"] += 1
            etype = struct.unpack("!H", frame[12:14])[0]
            if etype == ETH_P_ARP and len(frame) >= 42:
                op = struct.unpack("!H", frame[20:22])[0]
                self.seen["arp"] += 1
                self.seen["arp_replies"] += op == 2
                if op == 1 and frame[38:42] == socket.inet_aton(self.my_ip):
                    self._arp_reply(frame)
                elif op == 2 and frame[28:32] == socket.inet_aton(self.usnet_ip) and self.usnet_mac is None:
                    self.usnet_mac = frame[22:28]
                continue
            if etype != ETH_P_IP or frame[0:6] != self.my_mac:
                continue
            self.seen["ip"] += 1
            ihl = (frame[14] & 0xF) * 4
            total = struct.unpack("!H", frame[16:18])[0]
            if frame[23] != 6 or frame[26:30] != socket.inet_aton(self.usnet_ip) or \
                    frame[30:34] != socket.inet_aton(self.my_ip):
                continue
            seg = parse_tcp(frame[14 + ihl:14 + total])
            if seg is None:
                continue
            seg.t = time.monotonic()
            if self.verbose:
                print(f"# rx {seg} tsval={seg.tsval} sack={seg.sack}", file=sys.stderr)
            return seg

    def resolve(self, timeout=5.0):
        """usnet's MAC, asked for with an ARP request scapy builds."""
        req = Ether(dst="ff:ff:ff:ff:ff:ff", src=self.my_mac_s) / ARP(
            op=1, hwsrc=self.my_mac_s, psrc=self.my_ip, pdst=self.usnet_ip)
        end = time.monotonic() + timeout
        while self.usnet_mac is None and time.monotonic() < end:
            self.sock.send(bytes(req))
            self.recv(min(end, time.monotonic() + 0.5))
        if self.usnet_mac is None:
            raise SystemExit(f"usnet did not answer ARP for {self.usnet_ip} within {timeout} s "
                             f"(frames seen on {self.iface}: {self.seen})")


def self_check(link):
    """Our hand-written frames decode in scapy with the fields and checksums
    we meant (so a failure below is usnet's, not the writer's)."""
    seg = tcp_segment(link.my_ip, link.usnet_ip, 1234, 80, 1000, 2000, PSH | ACK, 512,
                      pad4(opt_ts(5, 6) + opt_sack([(1, 2)])), b"hello")
    f = Ether(ipv4_frame(link.usnet_mac or b"\2" * 6, link.my_mac, link.my_ip, link.usnet_ip, seg, 7))
    t = f[TCP]
    ok = (t.seq == 1000 and t.ack == 2000 and bytes(t.payload) == b"hello" and t.window == 512)
    chk_ip, chk_tcp = f[IP].chksum, t.chksum
    del f[IP].chksum
    del f[TCP].chksum
    f2 = Ether(bytes(f))
    ok = ok and f2[IP].chksum == chk_ip and f2[TCP].chksum == chk_tcp
    if not ok:
        raise SystemExit("self check failed: the frame writer disagrees with scapy")


class Conn:
    """One TCP connection to usnet driven by the script (RFC 9293 from the
    peer's side, only as much as the tests need)."""

    def __init__(self, link, port, ts=True, sack=True, mss=1460, wscale=None, window=65535):
        self.link = link
        self.sport = random.randrange(20000, 60000)
        self.dport = port
        self.use_ts, self.use_sack, self.mss, self.wscale = ts, sack, mss, wscale
        self.window = window
        self.iss = random.randrange(1 << 32)
        self.snd_nxt = self.iss
        self.snd_una = self.iss
        self.rcv_nxt = 0
        self.ts_base = random.randrange(1 << 31)
        self.t0 = time.monotonic()
        self.ts_recent = 0
        self.peer_ts = False
        self.rx = bytearray()
        self.ooo = {}  # seq -> payload beyond RCV.NXT (kept only when keep_ooo)
        self.keep_ooo = False
        self.peer_window = 0
        self.max_payload = 0
        self.fin = False
        self.rst = False
        self.log = []  # every segment usnet sent us, in order

    def tsval(self):
        return self.ts_base + int((time.monotonic() - self.t0) * 1000)

    def options(self, extra=b""):
        o = extra
        if self.peer_ts:
            o += opt_ts(self.tsval(), self.ts_recent)
        return pad4(o)

    def send(self, flags, payload=b"", seq=None, ack=None, options=None, window=None, urg=0,
             doff=None, raw_options=False):
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt
        if options is None:
            options = self.options()
        elif not raw_options:
            options = pad4(options)
        self.link.send_tcp(tcp_segment(self.link.my_ip, self.link.usnet_ip, self.sport, self.dport, seq,
                                       ack, flags, self.window if window is None else window, options,
                                       payload, urg, doff))

    def recv(self, deadline):
        while True:
            s = self.link.recv(deadline)
            if s is None:
                return None
            if s.sport == self.dport and s.dport == self.sport:
                self.log.append(s)
                return s

    def handshake(self, timeout=5.0):
        opts = opt_mss(self.mss)
        if self.use_sack:
            opts += opt_sack_perm()
        if self.wscale is not None:
            opts += opt_wscale(self.wscale)
        if self.use_ts:
            opts += opt_ts(self.tsval(), 0)
        end = time.monotonic() + timeout
        for _ in range(5):
            self.send(SYN, seq=self.iss, ack=0, options=opts)
            s = self.recv(min(end, time.monotonic() + 1.0))
            while s is not None and not (s.flags & SYN and s.flags & ACK):
                s = self.recv(min(end, time.monotonic() + 1.0))
            if s is not None:
                break
            if time.monotonic() >= end:
                break
        if s is None or s.ack != (self.iss + 1) & 0xFFFFFFFF:
            raise SystemExit(f"no SYN,ACK from usnet (got {s})")
        self.synack = s
        self.snd_nxt = self.snd_una = (self.iss + 1) & 0xFFFFFFFF
        self.rcv_nxt = (s.seq + 1) & 0xFFFFFFFF
        self.peer_ts = self.use_ts and s.tsval is not None
        if self.peer_ts:
            self.ts_recent = s.tsval
        self.send(ACK)

    def on_segment(self, s, ack_data=True):
        """Takes in what usnet sent: ACKs, in-order data, FIN, RST."""
        if s.flags & RST:
            self.rst = True
            return
        if s.flags & ACK and not seq_lt(self.snd_nxt, s.ack) and seq_lt(self.snd_una, s.ack):
            self.snd_una = s.ack
        self.peer_window = s.window
        if s.tsval is not None and s.seq == self.rcv_nxt:
            self.ts_recent = s.tsval
        if s.payload or s.flags & FIN:
            self.max_payload = max(self.max_payload, len(s.payload))
            self.take(s.seq, s.payload, bool(s.flags & FIN))
            if ack_data:
                self.send(ACK)

    def take(self, seq, payload, fin=False):
        """In-order data goes to rx (overlaps trimmed); data beyond RCV.NXT
        waits in ooo when keep_ooo is set, else it is left for usnet to send
        again."""
        end = (seq + len(payload)) & 0xFFFFFFFF
        if seq_lt(self.rcv_nxt, seq):
            if self.keep_ooo and payload:
                self.ooo[seq] = payload
            return
        if seq_lt(self.rcv_nxt, end):
            self.rx += payload[(self.rcv_nxt - seq) & 0xFFFFFFFF:]
            self.rcv_nxt = end
        if fin and self.rcv_nxt == end:
            self.fin = True
            self.rcv_nxt = (self.rcv_nxt + 1) & 0xFFFFFFFF
        # Whatever waited and now touches RCV.NXT follows (bounded: each
        # pass removes at least one entry).
        while self.ooo:
            nxt = None
            for k in list(self.ooo):
                e = (k + len(self.ooo[k])) & 0xFFFFFFFF
                if not seq_lt(self.rcv_nxt, e):
                    del self.ooo[k]  # wholly old
                elif not seq_lt(self.rcv_nxt, k):
                    nxt = k
                    break
            if nxt is None:
                break
            p = self.ooo.pop(nxt)
            self.rx += p[(self.rcv_nxt - nxt) & 0xFFFFFFFF:]
            self.rcv_nxt = (nxt + len(p)) & 0xFFFFFFFF

    def pump(self, seconds, until=lambda: False):
        """Handles what arrives for `seconds` or until `until()` holds."""
        end = time.monotonic() + seconds
        while not until():
            s = self.recv(end)
            if s is None:
                return until()
            self.on_segment(s)
        return True

    def send_data(self, data, flags=PSH | ACK, **kw):
        self.send(flags, data, **kw)
        self.snd_nxt = (self.snd_nxt + len(data)) & 0xFFFFFFFF

    def http_get(self, path, timeout=10.0, send=True, start=None):
        """GET over the connection (keep-alive); the body, or None. The
        response starts at rx[start] (default: what arrives next)."""
        if start is None:
            start = len(self.rx)
        req = f"GET {path} HTTP/1.1\r\nHost: {self.link.usnet_ip}\r\n\r\n".encode()
        if send:
            self.send_data(req)
        end = time.monotonic() + timeout
        body = None
        sent_at = time.monotonic()
        while time.monotonic() < end and not self.rst:
            head_end = self.rx.find(b"\r\n\r\n", start)
            if head_end >= 0:
                head = bytes(self.rx[start:head_end]).decode(errors="replace")
                length = 0
                for line in head.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                if len(self.rx) - (head_end + 4) >= length:
                    body = bytes(self.rx[head_end + 4:head_end + 4 + length])
                    if not head.startswith("HTTP/1.1 200"):
                        return None
                    return body
            s = self.recv(min(end, time.monotonic() + 0.5))
            if s is not None:
                self.on_segment(s)
            elif seq_lt(self.snd_una, self.snd_nxt) and time.monotonic() - sent_at > 1.0:
                # Not acknowledged: send it again (bounded by the timeout).
                self.send(PSH | ACK, req, seq=(self.snd_nxt - len(req)) & 0xFFFFFFFF)
                sent_at = time.monotonic()
        return body

    def quiet(self, seconds):
        """Segments usnet sends within `seconds` (handled as usual)."""
        got = []
        end = time.monotonic() + seconds
        while True:
            s = self.recv(end)
            if s is None:
                return got
            got.append(s)
            self.on_segment(s)


def file_bytes(args, name):
    with open(os.path.join(args.www, name), "rb") as f:
        return f.read()


def is_pure_ack(s):
    return s.flags & ACK and not s.flags & (SYN | RST | FIN) and not s.payload


def accepted(c, got):
    """Whether usnet took in data we did not count as sent: it answered, or
    acknowledged beyond our SND.NXT."""
    return any(s.payload for s in got) or any(s.flags & ACK and seq_lt(c.snd_nxt, s.ack) for s in got)


def get_ok(c, args, path="/small", name="small"):
    body = c.http_get(path)
    return 1 if body is not None and body == file_bytes(args, name) else 0


def request_bytes(c, path="/small"):
    return f"GET {path} HTTP/1.1\r\nHost: {c.link.usnet_ip}\r\n\r\n".encode()


# --- Scenarios -------------------------------------------------------------

def rst_in_window(link, args):
    """RFC 5961 3.2: an RST inside the window but not at RCV.NXT gets a
    challenge ACK and is dropped; the connection lives."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    for off in (1, 1000, max(2, c.peer_window - 1)):  # inside [RCV.NXT+1, RCV.NXT+RCV.WND)
        c.send(RST | ACK, seq=c.snd_nxt + off)
    got = c.quiet(0.5)
    out("challenge_acks_seen", sum(1 for s in got if is_pure_ack(s) and s.ack == c.snd_nxt))
    out("rst_seen", int(c.rst))
    out("alive", get_ok(c, args))


def rst_out_of_window(link, args):
    """ROBUSTNESS 1, RFC 5961 3.2: an RST just below RCV.NXT or at
    RCV.NXT+RCV.WND (one past each edge) is dropped silently: no challenge
    ACK, the connection lives."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    out("window", c.peer_window)
    c.send(RST | ACK, seq=c.snd_nxt - 1)
    c.send(RST | ACK, seq=c.snd_nxt + c.peer_window)
    c.send(RST, seq=c.snd_nxt - 100000, ack=0)
    got = c.quiet(0.5)
    out("replies_seen", len(got))
    out("alive", get_ok(c, args))


def challenge_ack_limit(link, args):
    """ROBUSTNESS 6, RFC 5961 7 (CVE-2016-5696): a burst of in-window RSTs
    gets only a few challenge ACKs (a per-connection limit a second); the
    connection lives."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    t0 = time.monotonic()
    for i in range(args.burst):
        c.send(RST | ACK, seq=c.snd_nxt + 1 + i)
    out("burst_seconds", f"{time.monotonic() - t0:.3f}")
    got = c.quiet(0.5)
    out("challenge_acks_seen", sum(1 for s in got if is_pure_ack(s) and s.ack == c.snd_nxt))
    out("rst_seen", int(c.rst))
    out("alive", get_ok(c, args))


def rst_exact(link, args):
    """RFC 5961 3.2 / RFC 9293 3.10.7.4: an RST at exactly RCV.NXT resets
    the connection."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    c.send(RST, seq=c.snd_nxt, ack=0)
    c.quiet(0.3)
    # The connection must be gone: a request on it gets a reset (nobody owns
    # the 4-tuple) or nothing, never an answer.
    req = request_bytes(c)
    c.send(PSH | ACK, req)
    got = c.quiet(1.0)
    if any(s.payload for s in got):
        probe = "data"
    elif any(s.flags & RST for s in got):
        probe = "rst"
    elif got:
        probe = "ack"
    else:
        probe = "none"
    out("probe_reply", probe)
    c2 = Conn(link, args.port)
    c2.handshake()
    out("new_connection_get", get_ok(c2, args))


def syn_established(link, args):
    """RFC 5961 4.2: a SYN on an established connection, at any sequence
    number, gets a challenge ACK, never a reset; the connection lives."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    syn_opts = opt_mss(1460) + opt_sack_perm()
    c.send(SYN, seq=c.snd_nxt + 100, ack=0, options=syn_opts)  # inside the window
    c.send(SYN, seq=c.iss, ack=0, options=syn_opts)  # the original SYN again
    got = c.quiet(0.5)
    out("challenge_acks_seen", sum(1 for s in got if is_pure_ack(s) and s.ack == c.snd_nxt))
    out("rst_seen", int(any(s.flags & RST for s in got)))
    out("synack_seen", int(any(s.flags & SYN for s in got)))
    out("alive", get_ok(c, args))


def ack_unsent(link, args):
    """RFC 5961 5.2 / RFC 9293 3.10.7.4 fifth: an ACK for data never sent (or
    older than SND.UNA - MAX.SND.WND) is dropped, data and all, and ACKed."""
    c = Conn(link, args.port)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    req = request_bytes(c)
    una_before = c.snd_una
    c.send(PSH | ACK, req, ack=c.rcv_nxt + 100000)  # acks 100,000 bytes never sent
    c.send(ACK, ack=c.rcv_nxt + 5000000)  # a pure ACK far beyond SND.NXT
    c.send(PSH | ACK, req, ack=c.rcv_nxt - 3000000)  # far below SND.UNA - MAX.SND.WND
    got = c.quiet(0.6)
    out("acks_seen", sum(1 for s in got if is_pure_ack(s) and s.ack == c.snd_nxt))
    out("data_accepted", int(accepted(c, got) or c.snd_una != una_before))
    out("rst_seen", int(any(s.flags & RST for s in got)))
    out("alive", get_ok(c, args))


def paws(link, args):
    """RFC 7323 5.3: a data segment whose timestamp is older than TS.Recent
    is dropped and ACKed; the connection lives."""
    c = Conn(link, args.port, ts=True)
    c.handshake()
    out("timestamps", int(c.peer_ts))
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    req = request_bytes(c)
    stale = (c.tsval() - 100000) & 0xFFFFFFFF
    c.send(PSH | ACK, req, options=opt_ts(stale, c.ts_recent))
    got = c.quiet(0.6)
    out("acks_seen", sum(1 for s in got if is_pure_ack(s) and s.ack == c.snd_nxt))
    out("data_accepted", int(accepted(c, got)))
    out("alive", get_ok(c, args))


def bad_options(link, args):
    """ROBUSTNESS 8: option length 0 or 1, an option running past the header,
    data offset below 5 or past the segment: each dropped (the layer counts
    why), none delivered; unknown and unaligned options are ignored; the
    connection lives."""
    c = Conn(link, args.port, ts=False)
    c.handshake()
    out("first_get", get_ok(c, args))
    c.quiet(0.3)
    req = request_bytes(c)
    bad = [
        ("len0", bytes([8, 0, 1, 1]), None, req),  # timestamps, length 0
        ("len1", bytes([2, 1, 1, 1]), None, req),  # MSS, length 1
        ("past_header", bytes([2, 20, 5, 180]), None, req),  # length 20 in a 4-byte area
        ("sack_past_header", bytes([1, 1, 5, 18]) + struct.pack("!II", 1, 2), None, req),
    ]
    for _name, opts, doff, payload in bad:
        c.send(PSH | ACK, payload, options=opts, raw_options=True, doff=doff)
    # Data offset 4 (below the 20-byte header) and 15 (60 bytes) on segments
    # of 20 and 28 bytes.
    c.send(PSH | ACK, req, options=b"", raw_options=True, doff=4)
    c.send(PSH | ACK, b"", options=b"", raw_options=True, doff=15)
    c.send(PSH | ACK, req[:8], options=b"", raw_options=True, doff=15)
    got = c.quiet(0.6)
    out("data_accepted", int(accepted(c, got)))
    out("rst_seen", int(any(s.flags & RST for s in got)))
    # RFC 9293 3.1: unknown options (with a length) are ignored, and options
    # need no alignment: this request must be served.
    unknown = bytes([1, 99, 3, 7, 1, 1, 1, 0])
    c.send_data(req, options=unknown, raw_options=True)
    body = c.http_get("/small", send=False)
    out("unknown_option_get", int(body == file_bytes(args, "small")))
    out("alive", get_ok(c, args))


def urgent(link, args):
    """ROBUSTNESS 9: an urgent pointer past the payload is harmless; the data
    is delivered in line."""
    c = Conn(link, args.port)
    c.handshake()
    req = request_bytes(c)
    c.send_data(req, flags=URG | PSH | ACK, urg=0xFFFF)
    body = c.http_get("/small", send=False)
    out("urgent_get", int(body == file_bytes(args, "small")))
    c.send_data(req, flags=URG | PSH | ACK, urg=len(req) + 1)
    body = c.http_get("/small", send=False)
    out("urgent_get2", int(body == file_bytes(args, "small")))
    out("alive", get_ok(c, args))


def syn_flood(link, args):
    """ROBUSTNESS 14: 10,000 SYNs from spoofed addresses in 198.18.128.0/17
    (random ports); while they arrive, a kernel-socket client in the
    namespace connects to usnet and fetches a file."""
    count = args.flood_count
    rate = args.flood_rate
    sent = [0]
    done = threading.Event()
    fsock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    fsock.bind((link.iface, 0))
    # The first SYN from scapy; the rest are written the same way with other
    # addresses, ports and sequence numbers.
    t = Ether(dst=link.usnet_mac.hex(":"), src=link.my_mac_s) / IP(src="198.18.128.1", dst=link.usnet_ip) / \
        TCP(sport=40000, dport=args.port, flags="S", seq=1, window=64240, options=[("MSS", 1460)])
    fsock.send(bytes(t))
    sent[0] = 1
    rnd = random.Random(args.seed)

    def flood():
        start = time.monotonic()
        end = start + 30.0
        while sent[0] < count and time.monotonic() < end:
            for _ in range(min(50, count - sent[0])):
                src = f"198.18.{rnd.randrange(128, 256)}.{rnd.randrange(1, 255)}"
                seg = tcp_segment(src, link.usnet_ip, rnd.randrange(1024, 65536), args.port,
                                  rnd.randrange(1 << 32), 0, SYN, 64240, opt_mss(1460))
                fsock.send(ipv4_frame(link.usnet_mac, link.my_mac, src, link.usnet_ip, seg,
                                      rnd.randrange(1 << 16)))
                sent[0] += 1
            # Paced: `rate` SYNs a second.
            ahead = start + sent[0] / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        out("flood_seconds", f"{time.monotonic() - start:.2f}")
        done.set()

    pid = args.pid
    rss0, cpu0 = (proc_status(pid, "VmRSS"), proc_cpu(pid)) if pid else (0, 0.0)
    th = threading.Thread(target=flood)
    th.start()
    # Wait until a good part of the flood is in (the listener's backlog is
    # long full), then connect as a legitimate client would.
    wait_end = time.monotonic() + 20
    while sent[0] < args.legit_after and not done.is_set() and time.monotonic() < wait_end:
        time.sleep(0.01)
    out("flood_sent_at_connect", sent[0])
    t0 = time.monotonic()
    ok = kernel_client_get(link, args, "legit_error")
    out("legit_seconds", f"{time.monotonic() - t0:.2f}")
    out("flood_sent_at_done", sent[0])
    out("legit_ok", ok)
    th.join(40)
    out("flood_sent", sent[0])
    if pid:
        # What the flood cost usnet: memory (peak) and CPU time.
        out("rss_before_kib", rss0)
        out("hwm_after_kib", proc_status(pid, "VmHWM"))
        out("rss_growth_kib", proc_status(pid, "VmHWM") - rss0)
        out("cpu_seconds", f"{proc_cpu(pid) - cpu0:.2f}")
    out("after_flood_ok", kernel_client_get(link, args, "after_flood_error"))


def kernel_client_get(link, args, error_key):
    """GET /small through a kernel socket in the namespace (198.18.0.2): 1 if
    the body is right."""
    try:
        s = socket.create_connection((link.usnet_ip, args.port), timeout=args.legit_timeout)
        s.settimeout(args.legit_timeout)
        s.sendall(f"GET /small HTTP/1.1\r\nHost: {link.usnet_ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 1 << 20:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.startswith(b"HTTP/1.1 200") and body == file_bytes(args, "small"))
    except OSError as e:
        out(error_key, repr(e).replace(" ", "_"))
        return 0


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sack_abuse(link, args):
    """ROBUSTNESS 10 (CVE-2019-11477/11478/11479): a tiny MSS in the SYN, then
    thousands of duplicate ACKs each carrying 4 SACK blocks that cut what
    usnet has in flight into pieces (plus some bogus blocks). usnet's memory
    and CPU time stay bounded and the transfer still completes."""
    pid = args.pid
    c = Conn(link, args.port, ts=False, sack=True, mss=48, window=65535)
    c.handshake()
    out("synack_mss", c.synack.mss)
    rss0, cpu0, t0 = proc_status(pid, "VmRSS"), proc_cpu(pid), time.monotonic()
    out("rss_before_kib", rss0)
    big = file_bytes(args, "big")
    req = request_bytes(c, "/big")
    c.send_data(req)
    # Phase 1: receive and ACK normally for a while, so the congestion window
    # opens and usnet has many small segments in flight.
    c.pump(10.0, until=lambda: len(c.rx) >= args.sack_after or c.rst)
    hold = c.rcv_nxt  # from here on the cumulative ACK stays put
    store = {}  # seq -> payload, everything received beyond `hold`
    segs = []  # (start, end) of each distinct segment beyond `hold`, in arrival order
    acks = 0
    bogus = 0
    rnd = random.Random(args.seed)
    end = time.monotonic() + args.sack_seconds
    max_seen = hold

    def send_sack_ack():
        nonlocal acks, bogus
        blocks = []
        if segs:
            # Every other segment only (they arrive in order), so no two
            # blocks touch: as many separate pieces as there can be.
            for _ in range(4):
                a, b = segs[2 * rnd.randrange((len(segs) + 1) // 2)]
                blocks.append((a, b))
        if acks % 16 == 0:
            # Bogus blocks: beyond SND.NXT, below SND.UNA, inverted.
            blocks = [(max_seen + 100000, max_seen + 100088), (hold - 500000, hold - 499000),
                      (hold + 500, hold + 100)] + blocks[:1]
            bogus += 1
        c.send(ACK, ack=hold, options=opt_sack(blocks[:4]) if blocks else b"")
        acks += 1

    while acks < args.sack_acks and time.monotonic() < end and not c.rst:
        s = c.recv(min(end, time.monotonic() + 0.05))
        if s is None:
            for _ in range(min(50, args.sack_acks - acks)):
                send_sack_ack()
            continue
        if s.payload and not seq_lt(s.seq, hold):
            if s.seq not in store:
                store[s.seq] = s.payload
                segs.append((s.seq, (s.seq + len(s.payload)) & 0xFFFFFFFF))
                e = (s.seq + len(s.payload)) & 0xFFFFFFFF
                if seq_lt(max_seen, e):
                    max_seen = e
            for _ in range(4):
                send_sack_ack()
    out("sack_acks_sent", acks)
    out("sack_bogus_acks", bogus)
    out("segments_held", len(store))
    out("attack_seconds", f"{time.monotonic() - t0:.2f}")
    rss1, hwm1, cpu1 = proc_status(pid, "VmRSS"), proc_status(pid, "VmHWM"), proc_cpu(pid)
    out("rss_after_attack_kib", rss1)
    out("cpu_attack_seconds", f"{cpu1 - cpu0:.2f}")
    # Phase 2: take in what was held, in order, and receive the rest as a
    # normal receiver; the body must be exactly the file.
    c.keep_ooo = True
    for seq, p in store.items():
        c.take(seq, p)
    store.clear()
    c.send(ACK)
    body = c.http_get("/big", timeout=args.finish_seconds, send=False, start=0)
    out("max_segment_payload", c.max_payload)
    out("body_ok", int(body == big))
    out("body_bytes", -1 if body is None else len(body))
    rss2, hwm2, cpu2 = proc_status(pid, "VmRSS"), proc_status(pid, "VmHWM"), proc_cpu(pid)
    out("rss_after_kib", rss2)
    out("hwm_after_kib", max(hwm1, hwm2))
    out("rss_growth_kib", max(rss1, rss2) - rss0)
    out("cpu_seconds", f"{cpu2 - cpu0:.2f}")
    out("total_seconds", f"{time.monotonic() - t0:.2f}")
    out("alive", get_ok(c, args))


SCENARIOS = {
    "rst_in_window": rst_in_window,
    "rst_exact": rst_exact,
    "rst_out_of_window": rst_out_of_window,
    "challenge_ack_limit": challenge_ack_limit,
    "syn_established": syn_established,
    "ack_unsent": ack_unsent,
    "paws": paws,
    "bad_options": bad_options,
    "urgent": urgent,
    "syn_flood": syn_flood,
    "sack_abuse": sack_abuse,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--www", required=True, help="the directory usnet serves (to check bodies)")
    p.add_argument("--usnet-ip", default="198.18.0.1")
    p.add_argument("--my-ip", default="198.18.0.3")
    p.add_argument("--my-mac", default="02:00:00:00:00:03")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--pid", type=int, default=0, help="usnet's pid (sack_abuse reads its RSS and CPU time)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--burst", type=int, default=100, help="RSTs in challenge_ack_limit")
    p.add_argument("--flood-count", type=int, default=10000)
    p.add_argument("--flood-rate", type=float, default=4000.0)
    p.add_argument("--legit-after", type=int, default=3000)
    p.add_argument("--legit-timeout", type=float, default=3.0)
    p.add_argument("--sack-acks", type=int, default=4000)
    p.add_argument("--sack-after", type=int, default=49152, help="bytes received before the barrage")
    p.add_argument("--sack-seconds", type=float, default=20.0)
    p.add_argument("--finish-seconds", type=float, default=30.0)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    random.seed(args.seed)
    link = Link(args)
    link.resolve()
    self_check(link)
    out("usnet_mac", link.usnet_mac.hex(":"))
    SCENARIOS[args.scenario](link, args)
    out("arp_answers", link.arp_answers)
    out("done", 1)


if __name__ == "__main__":
    main()
