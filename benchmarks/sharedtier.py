#!/usr/bin/env python3
"""The shared PostgreSQL tier: latency of an L2 hit next to an L1 hit, and what the tier adds to a miss.

Starts a private PostgreSQL server (initdb in a temporary folder, as the `postgres` user when run as
root), the mock upstream, and three gemcache instances on 127.0.0.1: A and B share the tier (separate
stores), C has none. Then, one request at a time on one keep-alive connection per instance:
  - misses: N distinct prompts on A (with the tier: claim, upstream, write to both tiers) and on C
    (without it);
  - L2 hits: the same prompts on B, whose store is empty (answered from PostgreSQL, copied locally);
  - L1 hits: the same prompts on B again (now from its own store).
Prints a Markdown table of p50/p90/p99 in milliseconds.

Usage: benchmarks/sharedtier.py [--bin .build/release/gemcache] [--requests 500]
Needs: Debian's postgresql package, a release build of gemcache.
"""
import argparse
import glob
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from hitpath import ROOT, PATH, stop_all, wait_for

SALT = "benchmark-salt-shared-by-every-instance"


def postgres_binaries():
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        sys.exit("no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install -y postgresql")
    return os.path.dirname(versions[-1])


def as_postgres(command):
    return ["runuser", "-u", "postgres", "--"] + command if os.getuid() == 0 else command


def start_postgres(work, port, log):
    """A throwaway cluster on 127.0.0.1:port with trust authentication for the role gemcache."""
    binaries = postgres_binaries()
    folder = os.path.join(work, "postgres")
    os.mkdir(folder, 0o700)
    if os.getuid() == 0:
        shutil.chown(folder, "postgres")
    data = os.path.join(folder, "data")
    subprocess.run(as_postgres([f"{binaries}/initdb", "-D", data, "-U", "gemcache", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
                   check=True, stdout=log, stderr=log)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder}"
    subprocess.run(as_postgres([f"{binaries}/pg_ctl", "-D", data, "-l", os.path.join(folder, "server.log"), "-o", options, "-w", "start"]),
                   check=True, stdout=log, stderr=log)
    return lambda: subprocess.run(as_postgres([f"{binaries}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]), stdout=log, stderr=log)


def start_gemcache(binary, work, name, port, mock_port, shared_url, processes, log):
    environment = {**os.environ, "LOG_LEVEL": "warning", "GEMCACHE_SCOPE_SALT": SALT}
    if shared_url:
        environment["GEMCACHE_STORE_SHARED"] = shared_url
    processes.append(subprocess.Popen(
        [binary, "serve", "--port", str(port), "--upstream", f"http://127.0.0.1:{mock_port}", "--data", os.path.join(work, name)],
        cwd=work, stdout=log, stderr=log, env=environment,
    ))
    wait_for(port)


def wait_until_shared(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/healthz")
        if json.loads(connection.getresponse().read()).get("shared") == "ok":
            return
        time.sleep(0.1)
    sys.exit(f"the shared tier of the instance on {port} never became healthy")


def timed(port, prompts, expected):
    """Milliseconds per request, one at a time on one keep-alive connection; checks X-Gemcache."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for prompt in prompts:
        body = json.dumps({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
        started = time.perf_counter()
        connection.request("POST", PATH, body=body, headers={"Content-Type": "application/json", "x-goog-api-key": "benchmark-key"})
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1000)
        if response.getheader("X-Gemcache") != expected:
            sys.exit(f"expected {expected} on {port}, got {response.status} {response.getheader('X-Gemcache')}")
    return times


def percentiles(times):
    ordered = sorted(times)
    return {name: ordered[min(len(ordered) - 1, int(len(ordered) * q))] for name, q in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/gemcache"))
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--base-port", type=int, default=18300)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="gemcache-sharedtier-")
    os.chmod(work, 0o755)
    log = open(os.path.join(work, "servers.log"), "w")
    pg_port, mock_port, a, b, c = (args.base_port + i for i in range(5))
    processes = []
    stop_postgres = None
    try:
        stop_postgres = start_postgres(work, pg_port, log)
        shared_url = f"postgres://gemcache@127.0.0.1:{pg_port}/postgres?sslmode=disable"
        processes.append(subprocess.Popen([binary, "mock-upstream", "--port", str(mock_port)], cwd=work, stdout=log, stderr=log))
        wait_for(mock_port)
        start_gemcache(binary, work, "a", a, mock_port, shared_url, processes, log)
        start_gemcache(binary, work, "b", b, mock_port, shared_url, processes, log)
        start_gemcache(binary, work, "c", c, mock_port, None, processes, log)
        for port in (a, b):
            wait_until_shared(port)
        prompts = [f"shared tier benchmark prompt {i}" for i in range(args.requests)]
        rows = [
            ("miss, no shared tier (C)", timed(c, prompts, "MISS")),
            ("miss with the shared tier (A)", timed(a, prompts, "MISS")),
            ("L2 hit: from PostgreSQL (B, empty store)", timed(b, prompts, "HIT")),
            ("L1 hit: from the local store (B again)", timed(b, prompts, "HIT")),
        ]
        print(f"{args.requests} distinct prompts, one request at a time, one keep-alive connection; milliseconds\n")
        print("| request | p50 | p90 | p99 | mean |")
        print("|---|---:|---:|---:|---:|")
        for name, times in rows:
            p = percentiles(times)
            print(f"| {name} | {p['p50']:.3f} | {p['p90']:.3f} | {p['p99']:.3f} | {statistics.mean(times):.3f} |")
    finally:
        if stop_postgres:
            stop_postgres()
        stop_all(processes, work)


if __name__ == "__main__":
    main()
