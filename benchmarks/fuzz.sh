#!/usr/bin/env bash
# Fuzzes the request normalizer, the key builder and the fast path's head parser with libFuzzer
# (benchmarks/fuzz/, not in CI) for a bounded time, then prints the executions and any findings.
#
#   benchmarks/fuzz.sh [SECONDS]     # default 300
#
# Builds (release, -sanitize=fuzzer,address) into .build-fuzz (git-ignored). A crashing input is written to
# .build-fuzz/findings/ and the script exits non-zero.
set -euo pipefail
seconds=${1:-300}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch="$root/.build-fuzz"
# SwiftPM 6.3 passes -sanitize=fuzzer to the driver but not the coverage instrumentation to the
# frontend: without the explicit -sanitize-coverage libFuzzer runs blind ("no interesting inputs").
(cd "$root/benchmarks/fuzz" && nice -n 19 swift build -c release -Xswiftc -enable-testing --sanitize=fuzzer --sanitize=address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
    --scratch-path "$scratch" 2>&1 | grep -v "Cannot export local symbol" | tail -2)

corpus="$scratch/corpus"; findings="$scratch/findings"
mkdir -p "$corpus" "$findings"
# Seeds: the first byte picks the target (even: body normalizer and key, odd: request head parser).
seed() { printf '%s' "$2" | { printf "\\x$1"; cat; } > "$corpus/seed-$3"; }
seed 00 '{"contents":[{"role":"user","parts":[{"text":" Why is the sky blue?\r\n"}]}],"generation_config":{"temperature":1.0,"max_output_tokens":1e2}}' body1
seed 00 '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],"tools":[{"function":{"parameters":{"a":null,"b":[1,-0,0.5]}}}],"stream":true}' body2
seed 00 '{"contents":[{"parts":[{"text":"caf\u00e9 \ud83d\ude00","functionCall":{"args":{"x_y":null}}}]}],"systemInstruction":{"parts":[]}}' body3
seed 01 $'POST /v1beta/models/gemini-2.5-flash:generateContent?alt=json HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\nX-Gemcache-Namespace: n\r\nContent-Length: 2\r\n\r\n{}' head1
seed 01 $'GET /v1/models HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n' head2

log="$scratch/fuzz.log"
status=0
nice -n 19 "$scratch/release/GemcacheFuzz" "$corpus" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" >"$log" 2>&1 || status=$?
grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|stat::new_units_added)|^#[0-9]+ +DONE|ERROR|SUMMARY|precondition|Fatal error" "$log" || true
echo "corpus: $(ls "$corpus" | wc -l) inputs; findings: $(ls "$findings" | wc -l) (in $findings); log: $log"
exit "$status"
