#!/usr/bin/env bash
# Short libFuzzer run for CI: fuzz_target work_corpus seed_corpus seconds.
# Fails if the fuzzer finds a crash, a sanitizer report or a timeout.
set -euo pipefail
target=$1 work=$2 seed=$3 seconds=$4
mkdir -p "$work"
dirs=("$work")
[ -d "$seed" ] && dirs+=("$seed")
exec "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "${dirs[@]}"
