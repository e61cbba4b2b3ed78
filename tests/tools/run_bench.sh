#!/usr/bin/env bash
# usnet demo and usnet bench end to end, in their short modes:
#   - `usnet demo --quick`: every run succeeds, the table names every system,
#     results.json parses and is sane (non-zero counts, p50 <= p99 <= p99.9,
#     every peer present, ratios computed), the plot is a PNG;
#   - `usnet bench` with options (JSON and CSV output, 4 TCP connections,
#     the busy-polling kernel);
#   - bad arguments: a clear error and a non-zero exit;
#   - Ctrl-C in the middle of a run: a clean stop (exit 130), no process and
#     no file left behind;
#   - with `netns` as the second argument (root; the interop label): the
#     af_xdp, af_packet and tap links across namespaces it creates and
#     removes, compared with the kernel over the same veth pair.
# Usage: run_bench.sh USNET [netns]
set -euo pipefail

usnet=$1
mode=${2:-memif}
py=/usr/bin/python3  # Debian's, with its json module (any python3 would do)
work=$(mktemp -d /tmp/usnet-bench-test.XXXXXX)
cleanup() {
  pkill -KILL -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Checks results.json ($1): every run ok with sane numbers, the systems and
# workloads expected ($2: "system/proto/workload ..."), ratios present.
check_json() {
  "$py" - "$1" "$2" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
want = sys.argv[2].split()
runs = doc["runs"]
seen = {f'{r["system"]}/{r["proto"]}/{r["workload"]}' for r in runs}
missing = [w for w in want if w not in seen]
assert not missing, f"runs missing: {missing}"
setup = doc["setup"]
pinned = setup["server_cpu"] >= 0 and setup["client_cpu"] >= 0 and setup["server_cpu"] != setup["client_cpu"]
for r in runs:
    name = f'{r["system"]}/{r["proto"]}/{r["workload"]}'
    assert r["ok"], f'{name} failed: {r["error"]}'
    c2c = r["core_to_core_ns"]
    assert len(c2c) == 2, f"{name}: core_to_core_ns {c2c}"
    if pinned:
        assert all(0 < x < 1e6 for x in c2c), f"{name}: cache-line round trip between the cores {c2c} ns"
    assert r["seconds"] > 0, f"{name}: no measured interval"
    assert r["msgs_per_s"] > 0, f"{name}: no messages per second"
    if r["workload"] == "rr":
        assert r["round_trips"] > 10, f'{name}: only {r["round_trips"]} round trips'
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"], \
            f'{name}: percentiles out of order: {r["p50_us"]} {r["p99_us"]} {r["p999_us"]} {r["max_us"]}'
        assert len(r["cdf"]) > 100, f"{name}: no distribution"
        qs = [q for q, _ in r["cdf"][:201]]
        assert qs == sorted(qs), f"{name}: distribution not ordered"
    else:
        assert r["messages"] > 0 and r["bytes"] >= r["messages"] * 8, f"{name}: no messages counted"
        assert r["gbit_per_s"] > 0, f"{name}: no throughput"
print(f"{len(runs)} runs sane; {len(doc['ratios'])} ratio rows")
for q in doc["ratios"]:
    assert q["rtt_p50"] is None or q["rtt_p50"] > 0, q
EOF
}

if [[ $mode == memif ]]; then
  echo "== usnet demo --quick"
  (cd "$work" && "$usnet" demo --quick -o "$work/demo" >"$work/demo.out" 2>"$work/demo.err") ||
    { rc=$?; cat "$work/demo.out" "$work/demo.err"; fail "usnet demo exited with $rc"; }
  cat "$work/demo.out"
  for label in "usnet TCP" "kernel TCP" "ZeroMQ" "usnet UDP" "kernel UDP" "usnet TCP vs kernel TCP" \
    "usnet TCP vs ZeroMQ" "usnet UDP vs kernel UDP" "usnet UDP vs ZeroMQ"; do
    grep -q "^$label" "$work/demo.out" || fail "the demo's table has no row '$label'"
  done
  grep -q "FAILED" "$work/demo.out" && fail "a demo run failed"
  grep -q "^CPU [0-9]* <-> CPU [0-9]*: a cache line's round trip" "$work/demo.out" ||
    fail "the demo does not say how far apart its two cores are"
  grep -q '\[15/15\]' "$work/demo.err" || fail "the demo showed no progress"
  check_json "$work/demo/results.json" \
    "usnet/tcp/rr usnet/tcp/stream usnet/tcp/bulk kernel/tcp/rr kernel/tcp/stream kernel/tcp/bulk
     zeromq/tcp/rr zeromq/tcp/stream zeromq/tcp/bulk usnet/udp/rr usnet/udp/stream usnet/udp/bulk
     kernel/udp/rr kernel/udp/stream kernel/udp/bulk"
  head -c 8 "$work/demo/rtt-cdf.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' ||
    fail "rtt-cdf.png is not a PNG"
  grep -q "Plot:" "$work/demo.err" || fail "the demo did not say where the plot is"

  echo "== usnet bench: JSON, 4 connections, busy-polling kernel"
  "$usnet" bench --quick -p tcp -w rr -c 4 --peers usnet,kernel --kernel-wait busy -f json >"$work/b.json" \
    2>"$work/b.err" || { cat "$work/b.err"; fail "usnet bench -c 4 failed"; }
  check_json "$work/b.json" "usnet/tcp/rr kernel/tcp/rr"
  "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); assert all(r['connections']==4 for r in d['runs']), d" \
    "$work/b.json" || fail "the runs did not use 4 connections"

  echo "== usnet bench: CSV, UDP stream with 256-byte messages"
  "$usnet" bench --quick -p udp -w stream -s 256 --peers usnet,kernel -f csv >"$work/b.csv" 2>"$work/b.err" ||
    { cat "$work/b.err"; fail "usnet bench -f csv failed"; }
  [[ $(head -1 "$work/b.csv") == system,proto,workload,* ]] || fail "CSV has no header"
  [[ $(grep -c '^usnet,udp,stream,256,1,\|^kernel,udp,stream,256,1,' "$work/b.csv") == 2 ]] ||
    { cat "$work/b.csv"; fail "CSV rows missing or failed"; }

  echo "== bad arguments"
  expect_error() {  # expect_error "what the message says" args...
    local want=$1
    shift
    if "$usnet" "$@" >"$work/bad.out" 2>&1; then fail "usnet $* succeeded"; fi
    grep -qi -- "$want" "$work/bad.out" || { cat "$work/bad.out"; fail "usnet $*: no message about '$want'"; }
  }
  expect_error "link" bench --link carrier-pigeon
  expect_error "--netns" bench --link af_xdp
  expect_error "--size" bench --size 4
  expect_error "connections" bench -c 4
  expect_error "cores" bench --cores 0,4096
  expect_error "proto" bench -p sctp
  expect_error "duration" bench -d 0

  echo "== Ctrl-C stops cleanly"
  before=$( (ls -d /tmp/usnet-bench.* 2>/dev/null || true) | wc -l)
  "$usnet" bench -p tcp -w rr --peers usnet -d 20 >"$work/int.out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do  # until the run is under way (its children exist)
    [[ -n $(pgrep -P $pid || true) ]] && break
    sleep 0.05
  done
  sleep 0.5
  kids=$( (pgrep -P $pid || true) | tr '\n' ' ')
  [[ -n $kids ]] || fail "no run under way to interrupt"
  kill -INT $pid
  status=0
  timeout 10 tail --pid=$pid -f /dev/null || fail "usnet bench did not stop within 10 s of SIGINT"
  wait $pid || status=$?
  [[ $status == 130 ]] || { cat "$work/int.out"; fail "exit status $status after SIGINT, expected 130"; }
  grep -q interrupted "$work/int.out" || fail "no word about the interruption"
  for k in $kids; do
    kill -0 "$k" 2>/dev/null && fail "process $k of the run is still alive"
  done
  after=$( (ls -d /tmp/usnet-bench.* 2>/dev/null || true) | wc -l)
  [[ $after -le $before ]] || fail "the run's directory in /tmp was left behind"
  for k in $kids; do
    compgen -G "/dev/shm/usnet-stats.$k.*" >/dev/null && fail "a statistics region of process $k was left behind"
  done
else
  [[ $(id -u) == 0 ]] || fail "needs root (network namespaces, veth, AF_XDP)"
  for link in af_xdp af_packet tap; do
    echo "== usnet bench --link $link --netns"
    "$usnet" bench --link $link --netns --quick -w rr,bulk --peers usnet,kernel -o "$work/$link" \
      >"$work/$link.out" 2>"$work/$link.err" || { cat "$work/$link.out" "$work/$link.err"; fail "$link failed"; }
    cat "$work/$link.out"
    grep -q "kernel TCP (veth)" "$work/$link.out" || fail "$link: no kernel row over the veth"
    check_json "$work/$link/results.json" \
      "usnet/tcp/rr usnet/tcp/bulk kernel/tcp/rr kernel/tcp/bulk usnet/udp/rr usnet/udp/bulk kernel/udp/rr kernel/udp/bulk"
    leftover=$(ip netns list | grep -c "^uxd-" || true)
    [[ $leftover == 0 ]] || fail "$link: namespaces left behind: $(ip netns list | grep '^uxd-')"
  done
fi
echo "PASS"
