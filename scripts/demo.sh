#!/usr/bin/env bash
# make demo: the mock Gemini API and the proxy on free loopback ports, a short realistic workload
# (scripts/demo-load.py), then a before/after table of upstream calls, hit ratio and daily quota.
# Offline; stops everything it started. DEMO_BIN picks the binary (default: the release build), e.g.
# DEMO_BIN=.build/debug/gemcache scripts/demo.sh while developing (GEMCACHE_* variables are settings).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${DEMO_BIN:-.build/release/gemcache}")
[ -x "$bin" ] || { echo "demo: no gemcache binary at $bin (make build, or set DEMO_BIN)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

. scripts/wait-port.sh  # the working directory is the repository root (see the cd above)

"$bin" mock-upstream --port 0 --latency-ms 300 >"$work/mock.log" 2>&1 & pids+=($!)
mock_port=$(wait_port "$work/mock.log" 'listening on 127\.0\.0\.1:[0-9]+')
# proxy.conf for the free-tier limits; the store in a temporary folder.
"$bin" serve --config proxy.conf --port 0 --upstream "http://127.0.0.1:$mock_port" --data "$work/store" >"$work/proxy.log" 2>&1 & pids+=($!)
port=$(wait_port "$work/proxy.log" 'listen\.port=[0-9]+')
echo "mock Gemini API on 127.0.0.1:$mock_port (300 ms per answer), gemcache on 127.0.0.1:$port"

python3 scripts/demo-load.py "http://127.0.0.1:$port"
upstream_seen=$(python3 -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["requests"])' \
    "http://127.0.0.1:$mock_port/_mock/stats")
echo "  (the mock upstream counted $upstream_seen calls)"
