#!/usr/bin/env bash
# make demo: the mock Gemini API and the proxy on free loopback ports, a short replayed workload
# with repeats and equivalent variants, then the stats. Offline; stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/gemcache
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { # file pattern
    for _ in $(seq 1 100); do
        port=$(grep -oE "$2" "$1" | grep -oE '[0-9]+$' | head -1 || true)
        [ -n "$port" ] && { echo "$port"; return; }
        sleep 0.1
    done
    echo "did not start:" >&2; cat "$1" >&2; exit 1
}

"$bin" mock-upstream --port 0 --latency-ms 300 >"$work/mock.log" 2>&1 & pids+=($!)
mock_port=$(wait_port "$work/mock.log" 'listening on 127\.0\.0\.1:[0-9]+')
(cd "$work" && GEMCACHE_LISTEN_PORT=0 exec "$OLDPWD/$bin" serve --upstream "http://127.0.0.1:$mock_port" --data "$work/store") >"$work/proxy.log" 2>&1 & pids+=($!)
port=$(wait_port "$work/proxy.log" 'listen\.port=[0-9]+')
echo "mock upstream on 127.0.0.1:$mock_port (300 ms per answer), gemcache on 127.0.0.1:$port"

ask() { # body
    curl -s -o /dev/null -w '%{http_code} %header{x-gemcache}\n' "http://127.0.0.1:$port/v1beta/models/gemini-2.5-flash:generateContent" \
        -H 'x-goog-api-key: demo-key' -H 'content-type: application/json' -d "$1"
}
prompts=("Why is the sky blue?" "Write a haiku about caches." "What is LMDB?" "Explain HTTP caching." "Name three rivers.")
echo "replaying 40 requests: 5 distinct prompts, repeated, some as equivalent variants, 8 at a time..."
for round in 1 2 3 4 5; do
    for p in "${prompts[@]}"; do
        case $((round % 3)) in
            0) ask "{\"generation_config\": {\"temperature\": 1.0}, \"contents\": [{\"parts\": [{\"text\": \"  $p\\r\\n\"}], \"role\": \"user\"}]}" & ;;
            *) ask "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"$p\"}]}],\"generationConfig\":{\"temperature\":1}}" & ;;
        esac
        ask "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"$p\"}]}],\"generationConfig\":{\"temperature\":1}}" &
    done
    wait_for=$(jobs -p | grep -v -E "^($(IFS='|'; echo "${pids[*]}"))$" || true)
    [ -n "$wait_for" ] && wait $wait_for
done | sort | uniq -c | sed 's/^/  /'

echo
curl -s "http://127.0.0.1:$port/_gemcache/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(f"  requests {s[\"requests\"]}: hits {s[\"hits\"]}, coalesced {s[\"coalesced\"]}, misses {s[\"misses\"]}")
print(f"  upstream calls {s[\"upstream_requests\"]} instead of {s[\"requests\"]}; hit ratio {s[\"hit_ratio\"]:.1%}; saved requests {s[\"saved_requests\"]}, saved tokens {s[\"saved_tokens\"]}")
print(f"  entries {s[\"entries\"]}, store {s[\"store_bytes\"]} bytes")
'
