#!/usr/bin/env python3
"""Durable miss throughput under a miss storm (issue 7 §3: group commit).

wrk sends a new prompt on every request (storm.lua), so every request is a miss that calls the mock
upstream (latency 0) and commits the answer to LMDB before it is answered (durable through kill -9;
through a machine crash too with store.durability commit, the default). Run at 1, 16 and
64 connections, alternating rounds, one store. Reports misses/s and latency, and checks the counts
(upstream calls from `GET /_mock/stats`, misses from `/_gemcache/stats`).

Commits: gemcache runs under `strace -f --seccomp-bpf -e trace=fsync,fdatasync,msync,sync_file_range`
(only those syscalls stop the process, so the cost is one ptrace stop per sync), and the sync calls
inside each wrk window are counted. That run sets store.durability to commit, where every LMDB commit
is one fdatasync (MDB_NOMETASYNC), so misses per sync = misses per commit, the group-commit factor. The count includes the few commits of
other writers (ledger flushes, maintenance), which is why it is printed per window and not derived.
Pass --no-strace to measure without it.

Usage: benchmarks/missstorm.py [--bin .build-release/release/gemcache] [--rounds 2] [--duration 8] [--connections 1,16,64]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitpath import HERE, PATH, ROOT, parse_wrk, rss_mib, stop_all, wait_for  # noqa: E402


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def get_json(url):
    return json.load(urllib.request.urlopen(url, timeout=10))


def child_pid(parent, timeout=10):
    """The process strace started (strace -f execs gemcache as its child)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for task in os.listdir(f"/proc/{parent}/task"):
            children = open(f"/proc/{parent}/task/{task}/children").read().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    sys.exit("strace did not start gemcache")


def storm(port, connections, duration, prefix):
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", os.path.join(HERE, "storm.lua"),
         f"http://127.0.0.1:{port}{PATH}", "--", prefix],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    return parse_wrk(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build-release/release/gemcache"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--base-port", type=int, default=18600)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    use_strace = not args.no_strace and shutil.which("strace") is not None
    mock_port, gemcache_port = args.base_port, args.base_port + 1
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    processes = []
    gemcache_pid = None
    try:
        log = open(os.path.join(work, "servers.log"), "w")
        processes.append(subprocess.Popen([args.bin, "mock-upstream", "--port", str(mock_port), "--latency-ms", "0"],
                                          cwd=work, stdout=log, stderr=log))
        wait_for(mock_port)
        serve = [args.bin, "serve", "--port", str(gemcache_port), "--upstream", f"http://127.0.0.1:{mock_port}",
                 "--data", os.path.join(work, "data")]
        trace_file = os.path.join(work, "syncs.trace")
        if use_strace:
            serve = ["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=fsync,fdatasync,msync,sync_file_range",
                     "-o", trace_file] + serve
        environment = {**os.environ, "LOG_LEVEL": "warning"}
        if use_strace:
            environment["GEMCACHE_STORE_DURABILITY"] = "commit"  # one fdatasync per commit: syncs count commits
        launcher = subprocess.Popen(serve, cwd=work, stdout=log, stderr=log, env=environment)
        processes.append(launcher)
        gemcache_pid = child_pid(launcher.pid) if use_strace else launcher.pid
        wait_for(gemcache_port)
        time.sleep(1)

        connection_counts = [int(c) for c in args.connections.split(",")]
        results = {c: [] for c in connection_counts}
        load_before = loadavg()
        for round_index in range(args.rounds):
            for c in connection_counts:
                mock_before = get_json(f"http://127.0.0.1:{mock_port}/_mock/stats")["requests"]
                stats_before = get_json(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats")
                started = time.time()
                result = storm(gemcache_port, c, args.duration, f"storm {time.time()} r{round_index} c{c}")
                ended = time.time()
                time.sleep(0.5)
                stats_after = get_json(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats")
                result.update(
                    window=(started, ended),
                    upstream=get_json(f"http://127.0.0.1:{mock_port}/_mock/stats")["requests"] - mock_before,
                    misses=stats_after["misses"] - stats_before["misses"],
                    others=sum(stats_after.get(k, 0) - stats_before.get(k, 0) for k in ("hits", "coalesced", "errors")),
                )
                results[c].append(result)
                print(f"round {round_index + 1} c={c}: {result}", file=sys.stderr)
                time.sleep(1)
        load_after = loadavg()
        stats = get_json(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats")
        rss = rss_mib(gemcache_pid)

        syncs = []
        if use_strace:
            os.kill(gemcache_pid, 15)
            launcher.wait(timeout=20)
            for line in open(trace_file):
                match = re.match(r"\d+\s+([\d.]+)\s+(fsync|fdatasync|msync|sync_file_range)\(", line)
                if match:
                    syncs.append(float(match.group(1)))

        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before {load_before}, after {load_after}; "
              f"{args.rounds} alternating rounds x {args.duration} s per connection count; mock upstream latency 0; "
              f"{'gemcache under strace (sync syscalls only), store.durability commit' if use_strace else 'no strace, store.durability ' + os.environ.get('GEMCACHE_STORE_DURABILITY', 'default (commit)')}; "
              f"store after the run: {stats.get('entries'):,} entries, {stats.get('store_bytes', 0) / 2**20:.0f} MiB; gemcache RSS {rss:.0f} MiB.")
        print()
        print("| connections | misses/s (median) | per round | p50 ms | p99 ms | upstream calls = misses | sync calls (commits) | misses per commit |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for c in connection_counts:
            rounds = results[c]
            checks = " / ".join(f"{r['upstream']:,}={r['misses']:,}" + (f" (+{r['others']} other)" if r["others"] else "") for r in rounds)
            if use_strace:
                counts = [sum(1 for t in syncs if r["window"][0] <= t <= r["window"][1] + 0.2) for r in rounds]
                commits = " / ".join(f"{n:,}" for n in counts)
                per_commit = " / ".join(f"{r['misses'] / n:.1f}" if n else "n/a" for r, n in zip(rounds, counts))
            else:
                commits = per_commit = "not traced"
            print(f"| {c} | {statistics.median(r['rps'] for r in rounds):,.0f} | {' / '.join(format(r['rps'], ',.0f') for r in rounds)} | "
                  f"{statistics.median(r['p50'] for r in rounds):.2f} | {statistics.median(r['p99'] for r in rounds):.2f} | "
                  f"{checks} | {commits} | {per_commit} |")
    finally:
        if use_strace and gemcache_pid and os.path.exists(f"/proc/{gemcache_pid}"):
            os.kill(gemcache_pid, 15)  # strace, terminated, would detach and leave it running
        stop_all(processes, work)


if __name__ == "__main__":
    main()
