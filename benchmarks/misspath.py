#!/usr/bin/env python3
"""Miss path overhead: latency of a miss through gemcache vs the same call straight to the mock upstream.

Every request carries a new prompt (miss.lua), so every gemcache request is a miss that calls the
upstream and commits the answer to LMDB before answering. One connection (the overhead per call) and
16 connections (misses in parallel, group commit). Alternating rounds, medians, Markdown table.

With --compare BIN (repeatable), other builds run beside the first, each with its own store,
against the same mock and in the same alternating rounds: the way to measure a change to the miss
path on a machine whose speed drifts between runs. A comparison may set settings through the
environment, shell-style: --compare "GEMCACHE_STORE_DURABILITY=deferred .build/release/gemcache".

Usage: benchmarks/misspath.py [--bin .build/release/gemcache] [--compare "[VAR=VALUE ...] OTHER_BIN"] [--rounds 3] [--duration 5]
"""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitpath import HERE, PATH, ROOT, rss_mib, start_gemcache, start_stack, stop_all  # noqa: E402
import hitpath  # noqa: E402


def cpu_seconds(pid):
    """User plus system CPU time a process has used, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, connections, duration):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", os.path.join(HERE, "miss.lua"),
         f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout
    result = hitpath.parse_wrk(out)
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/gemcache"))
    parser.add_argument("--compare", action="append", default=[], help="another gemcache binary to measure in the same rounds, optionally after VAR=VALUE settings")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--base-port", type=int, default=18200)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    mock_port, gemcache_port = args.base_port, args.base_port + 1
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    processes = []
    try:
        log = open(os.path.join(work, "servers.log"), "w")
        gemcache = start_stack(args.bin, work, mock_port, gemcache_port, processes, log)
        mock = processes[0]
        targets = [("mock upstream, direct", mock_port, mock.pid), ("through gemcache (miss + store)", gemcache_port, gemcache.pid)]
        for index, other in enumerate(args.compare, start=1):
            *assignments, binary = shlex.split(other)
            settings = dict(assignment.split("=", 1) for assignment in assignments)
            port = gemcache_port + index
            process = start_gemcache(os.path.abspath(binary), work, f"data-{index}", mock_port, port, processes, log, settings)
            label = " ".join(assignments + [os.path.basename(binary)])
            targets.append((f"through {label} (miss + store)", port, process.pid))
        load_before = open("/proc/loadavg").read().split()[:3]
        results = {(name, c): [] for name, _, _ in targets for c in (1, 16)}
        for round_index in range(args.rounds):
            for c in (1, 16):
                for name, port, pid in targets:
                    cpu_before = cpu_seconds(pid)
                    result = wrk(port, c, args.duration)
                    result["cpu_ms"] = (cpu_seconds(pid) - cpu_before) * 1000 / result["requests"]
                    results[(name, c)].append(result)
                    print(f"round {round_index + 1} c={c} {name}: {result}", file=sys.stderr)
        load_after = open("/proc/loadavg").read().split()[:3]
        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
              f"{args.rounds} alternating rounds x {args.duration} s per target, wrk -t1; gemcache RSS after the run {rss_mib(gemcache.pid):.0f} MiB.")
        print()
        print("| connections | target | req/s (median) | p50 ms | p99 ms | p50 added by gemcache ms | CPU ms per request (that server) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for c in (1, 16):
            direct = statistics.median(r["p50"] for r in results[(targets[0][0], c)])
            for name, _, _ in targets:
                rounds = results[(name, c)]
                p50 = statistics.median(r["p50"] for r in rounds)
                added = "" if name == targets[0][0] else f"{p50 - direct:.2f}"
                print(f"| {c} | {name} | {statistics.median(r['rps'] for r in rounds):,.0f} | {p50:.2f} | "
                      f"{statistics.median(r['p99'] for r in rounds):.2f} | {added} | "
                      f"{statistics.median(r['cpu_ms'] for r in rounds):.2f} |")
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
