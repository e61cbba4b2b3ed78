#!/bin/bash
# Runs each example end to end over memif (no privileges): the TCP echo
# server with the request/response client, and the UDP pinger in both
# roles; checks what they print; and `usnet stat` against one of them.
# Usage: run_examples.sh BIN_DIR [USNET]
set -u
bin=$1
usnet=${2:-}
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
# under 0.45 s of CPU time (user + system, from /proc) in their first 9 s.
# Meanwhile `usnet stat` attaches to one of them.
"$bin/tcp_echo_server" "memif:$dir/idle.sock?role=server" 198.18.0.1/24 7000 10 >"$dir/idle1.out" 2>&1 &
idle1=$!
"$bin/tcp_echo_server" "memif:$dir/idle.sock" 198.18.0.2/24 7000 10 >"$dir/idle2.out" 2>&1 &
idle2=$!
pids+=("$idle1" "$idle2")
started=$(date +%s.%N)
sleep 2
if [ -n "$usnet" ]; then
  "$usnet" stat "$idle1" >"$dir/stat.out" 2>&1 || fail "usnet stat $idle1 failed"
  grep -q "^usnet stack 'usnet', process $idle1, updated " "$dir/stat.out" || fail "stat: header line"
  grep -Eq "^pool.in_use +[0-9]+$" "$dir/stat.out" || fail "stat: pool use"
  grep -Eq "^link +memif:$dir/idle.sock" "$dir/stat.out" || fail "stat: link"
  grep -Eq "^tcp.connections +0$" "$dir/stat.out" || fail "stat: connections"
  grep -Eq "^ +[1-9][0-9]* arp announcements sent$" "$dir/stat.out" || fail "stat: counters"
  "$usnet" stat --list >"$dir/list.out" 2>&1 || fail "usnet stat --list failed"
  grep -Eq "^$idle2 +usnet +running " "$dir/list.out" || fail "stat --list: the second stack"
  "$usnet" stat 999999999 >"$dir/nostack.out" 2>&1 && fail "stat of a pid with no stack should fail"
  grep -q "no usnet stack in process 999999999" "$dir/nostack.out" || fail "stat: no-stack message"
fi
sleep $(awk -v s="$started" -v n="$(date +%s.%N)" 'BEGIN { d = 9 - (n - s); print (d > 0 ? d : 0) }')
tck=$(getconf CLK_TCK)
cpu=0
for p in $idle1 $idle2; do
  c=$(awk -v t="$tck" '{ print ($14 + $15) / t }' "/proc/$p/stat") || fail "process $p ended early"
  echo "idle adaptive stack $p: $c s of CPU in 9 s"
  awk -v c="$c" 'BEGIN { exit !(c < 0.45) }' || fail "idle stack $p used $c s of CPU in 9 s (5% is 0.45 s)"
done
wait "$idle1" || fail "idle server 1 exited $?"
wait "$idle2" || fail "idle server 2 exited $?"
grep -q "^echoed 0 bytes on 0 connections" "$dir/idle1.out" || fail "idle server 1"
grep -q "^echoed 0 bytes on 0 connections" "$dir/idle2.out" || fail "idle server 2"
# Ctrl-C: `usnet up` and `usnet stat -i` stop cleanly on SIGINT (exit 0),
# and the stack's statistics region goes with it.
if [ -n "$usnet" ]; then
  "$usnet" up --link "memif:$dir/up.sock?role=server" --addr 198.18.0.1/24 --duration 30 >"$dir/up.out" 2>&1 &
  up=$!
  pids+=("$up")
  # "usnet up: ..." is printed once its SIGINT handler is in place.
  for _ in $(seq 100); do grep -q "^usnet up: " "$dir/up.out" && [ -e /dev/shm/usnet-stats.$up.0 ] && break; sleep 0.05; done
  [ -e /dev/shm/usnet-stats.$up.0 ] || fail "usnet up published no statistics region"
  # Its first print shows its SIGINT handler is in place (a background job
  # of a script starts with SIGINT ignored until it installs one).
  timeout 20 "$usnet" stat "$up" -i 0.1 >"$dir/stat-loop.out" 2>&1 &
  watcher=$!
  pids+=("$watcher")
  for _ in $(seq 100); do [ "$(grep -c "^usnet stack" "$dir/stat-loop.out")" -ge 2 ] && break; sleep 0.05; done
  kill -INT "$watcher"
  wait "$watcher"; rc=$?
  [ $rc -eq 0 ] || fail "usnet stat -i exited $rc on SIGINT"
  [ "$(grep -c "^usnet stack 'usnet-tool', process $up" "$dir/stat-loop.out")" -ge 2 ] || fail "stat -i printed once"
  kill -INT "$up"
  wait "$up"; rc=$?
  [ $rc -eq 0 ] || fail "usnet up exited $rc on SIGINT"
  grep -q "arp announcements sent" "$dir/up.out" || fail "usnet up printed no counters"
  [ ! -e /dev/shm/usnet-stats.$up.0 ] || fail "usnet up left its statistics region behind"
fi
cat "$dir/client.out" "$dir/ping.out"
echo "examples: all passed"
