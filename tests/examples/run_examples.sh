#!/bin/bash
# Runs each example end to end over memif (no privileges): the TCP echo
# server with the request/response client, and the UDP pinger in both
# roles; checks what they print. Usage: run_examples.sh BIN_DIR
set -u
bin=$1
dir=$(mktemp -d /tmp/usnet-examples-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$dir"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }

# Bad arguments: a usage line and exit status 2; a bad setting: a clear error and 1.
"$bin/tcp_echo_server" >"$dir/usage.out" 2>&1; [ $? -eq 2 ] || fail "no arguments should exit 2"
grep -q "^usage: " "$dir/usage.out" || fail "no usage line"
"$bin/rr_client" "memif:$dir/x.sock" 198.18.0.2/33 198.18.0.1:7000 >"$dir/bad.out" 2>&1
[ $? -eq 1 ] || fail "a bad address should exit 1"
grep -q 'addresses\[0\] "198.18.0.2/33": expected an IPv4 address' "$dir/bad.out" || fail "bad address message"

# TCP: echo server (runs at most 20 s) and 2,000 round trips.
timeout 30 "$bin/tcp_echo_server" "memif:$dir/tcp.sock?role=server" 198.18.0.1/24 7000 20 >"$dir/server.out" 2>&1 &
server=$!
pids+=("$server")
timeout 20 "$bin/rr_client" "memif:$dir/tcp.sock" 198.18.0.2/24 198.18.0.1:7000 2000 >"$dir/client.out" 2>&1 ||
  fail "rr_client failed"
line=$(grep "^2000 round trips of 64 bytes" "$dir/client.out") || fail "no summary line"
read -r p50 p99 p999 < <(echo "$line" | sed -E 's/.*p50 ([0-9.]+) us, p99 ([0-9.]+) us, p99.9 ([0-9.]+) us.*/\1 \2 \3/')
awk -v a="$p50" -v b="$p99" -v c="$p999" 'BEGIN { exit !(a > 0 && a <= b && b <= c) }' ||
  fail "percentiles not ordered: $p50 $p99 $p999"
kill -TERM "$server"
wait "$server"; rc=$?
[ $rc -eq 0 ] || fail "echo server exited $rc"
grep -q "^echoed 128000 bytes on 1 connections" "$dir/server.out" || fail "echo server's count"

# UDP: echo and 500 pings.
timeout 30 "$bin/udp_pinger" "memif:$dir/udp.sock?role=server" 198.18.0.1/24 echo 5000 20 >"$dir/echo.out" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
timeout 20 "$bin/udp_pinger" "memif:$dir/udp.sock" 198.18.0.2/24 ping 198.18.0.1:5000 500 >"$dir/ping.out" 2>&1 ||
  fail "udp_pinger ping failed"
grep -Eq "^500 sent, 500 answered, 0 lost: p50 [0-9.]+ us" "$dir/ping.out" || fail "ping summary"
kill -TERM "$echo_pid"
wait "$echo_pid"; rc=$?
[ $rc -eq 0 ] || fail "udp echo exited $rc"
grep -q "^answered 500 datagrams" "$dir/echo.out" || fail "udp echo's count"
# Idle: two echo servers joined by memif (one in each role), both in the
# adaptive loop, nothing to do for 10 s. Each must use under 5% of a core:
# together under 1 s of CPU time (the children's user + system time).
cpu=$( (
  "$bin/tcp_echo_server" "memif:$dir/idle.sock?role=server" 198.18.0.1/24 7000 10 >"$dir/idle1.out" 2>&1 &
  "$bin/tcp_echo_server" "memif:$dir/idle.sock" 198.18.0.2/24 7000 10 >"$dir/idle2.out" 2>&1 &
  wait
  times >"$dir/times.out"  # not in a pipe: a pipe's subshell has no children
  tail -1 "$dir/times.out"
))
secs=$(echo "$cpu" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); n += t[1] * 60 + t[2] } print n }')
echo "idle adaptive stacks, 2 x 10 s: $secs s of CPU ($cpu)"
awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }' || fail "idle stacks used $secs s of CPU in 2 x 10 s (5% would be 1 s)"
grep -q "^echoed 0 bytes on 0 connections" "$dir/idle1.out" || fail "idle server 1"
grep -q "^echoed 0 bytes on 0 connections" "$dir/idle2.out" || fail "idle server 2"
cat "$dir/client.out" "$dir/ping.out"
echo "examples: all passed"
