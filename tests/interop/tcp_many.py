#!/usr/bin/python3
"""The kernel's side of the many-connections test: opens COUNT TCP
connections to an HTTP server at once, and only when every one is
established sends one GET on each, checks every body against a local copy
of the file, and closes them all (the client closes first). Every wait is
bounded by --timeout. Prints what it saw; exits 0 only if every connection
connected, got the exact body and closed."""
import argparse
import resource
import selectors
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--path", required=True, help="the URL path to GET")
    ap.add_argument("--expect", required=True, help="local file whose bytes the body must equal")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    expect = open(a.expect, "rb").read()
    deadline = time.monotonic() + a.timeout
    sel = selectors.DefaultSelector()

    # 1. Connect all, without sending anything yet.
    pending = {}
    for i in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((a.addr, a.port))
        pending[s] = i
        sel.register(s, selectors.EVENT_WRITE)
    connected = []
    failed = 0
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            sel.unregister(s)
            del pending[s]
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(s)
            else:
                failed += 1
                s.close()
    print(f"connected {len(connected)} of {a.count} ({failed} refused, {len(pending)} timed out)")
    for s in pending:
        s.close()
    if len(connected) != a.count:
        return 1

    # 2. One request on each, then read every response whole.
    request = f"GET {a.path} HTTP/1.1\r\nHost: {a.addr}\r\n\r\n".encode()
    for s in connected:
        s.send(request)  # small: fits an empty send buffer at once
        sel.register(s, selectors.EVENT_READ)
    got = {s: b"" for s in connected}
    done = set()
    bad = 0
    while len(done) + bad < len(connected) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            chunk = s.recv(65536)
            buf = got[s] + chunk
            got[s] = buf
            head_end = buf.find(b"\r\n\r\n")
            if not chunk or head_end >= 0:
                length = None
                for line in buf[:max(head_end, 0)].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                complete = head_end >= 0 and length is not None and len(buf) >= head_end + 4 + length
                if complete or not chunk:
                    sel.unregister(s)
                    ok = (complete and buf.startswith(b"HTTP/1.1 200") and
                          buf[head_end + 4:head_end + 4 + length] == expect)
                    if ok:
                        done.add(s)
                    else:
                        bad += 1
    print(f"responses exact {len(done)} of {len(connected)} ({bad} wrong)")

    # 3. The clients close first.
    for s in connected:
        s.close()
    print("closed all")
    return 0 if len(done) == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
