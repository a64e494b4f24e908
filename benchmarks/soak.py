#!/usr/bin/env python3
"""Soak: 200,000 mixed requests at 64 connections through the proxy to the mock upstream (issue 6 §7).

wrk drives soak.lua's mix (hits, misses, SSE and JSON-array streams, malformed bodies, path tricks,
requests without a key) against the release binary with a 32 MiB store, so that the store fills and
evicts during the run. Checks: no unexpected answer (only 200 HIT/MISS/COALESCED, and 400/401/403 for
the bad requests) and no socket error; the proxy's counters moved exactly as the client saw (hits,
misses, errors, requests) and the mock upstream got exactly one call per miss; the proxy's RSS,
sampled every 0.5 s, is reported at start, peak and end.

Usage: benchmarks/soak.py [--bin .build-release/release/gemcache] [--requests 200000] [--connections 64]
Exits non-zero when a check fails.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitpath import HERE, PATH, ROOT, rss_mib, wait_for  # noqa: E402

KEY = "soak-key"


def get_json(url):
    return json.load(urllib.request.urlopen(url, timeout=10))


def post(port, path, text):
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": text}]}]}, separators=(",", ":")).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": "application/json", "x-goog-api-key": KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.status


def sample_rss(pid, samples, stop):
    while not stop.is_set():
        samples.append(rss_mib(pid))
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build-release/release/gemcache"))
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="gemcache-soak-")
    mock_port, proxy_port = 18391, 18390
    environment = dict(os.environ, GEMCACHE_STORE_MAX_SIZE="32MiB", LOG_LEVEL="warning")
    mock = subprocess.Popen([args.bin, "mock-upstream", "--port", str(mock_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(os.path.join(work, "proxy.log"), "w")
    proxy = subprocess.Popen([args.bin, "serve", "--port", str(proxy_port), "--upstream", f"http://127.0.0.1:{mock_port}",
                              "--data", os.path.join(work, "store")], stdout=log, stderr=log, env=environment, cwd=work)
    failures = []
    try:
        wait_for(mock_port)
        wait_for(proxy_port)
        # Warm the prompts the mix repeats, so that they are hits.
        for n in range(64):
            post(proxy_port, PATH, f"soak warm prompt {n}")
        for n in range(16):
            post(proxy_port, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", f"soak warm stream {n}")
        time.sleep(1.5)  # the counters reach the store every second
        before = get_json(f"http://127.0.0.1:{proxy_port}/_gemcache/stats")
        upstream_before = get_json(f"http://127.0.0.1:{mock_port}/_mock/stats")["requests"]
        samples, stop = [rss_mib(proxy.pid)], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(proxy.pid, samples, stop), daemon=True)
        sampler.start()
        started = time.time()
        threads = 2
        marks = os.path.join(work, "marks")
        os.makedirs(marks)
        driver = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{args.connections}", "-d3600s", "--timeout", "10s", "--latency",
             "-s", os.path.join(HERE, "soak.lua"), f"http://127.0.0.1:{proxy_port}"],
            stdout=subprocess.PIPE, text=True, env=dict(os.environ, SOAK_PER_THREAD=str(args.requests // threads), SOAK_MARKS=marks),
        )
        while len(os.listdir(marks)) < threads and driver.poll() is None:
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)  # wrk stops early on SIGINT and still reports
        out = driver.communicate(timeout=60)[0]
        elapsed = time.time() - started
        time.sleep(2.5)  # counters flushed, fast-path hit batches reported
        stop.set()
        sampler.join()
        end_rss = rss_mib(proxy.pid)
        after = get_json(f"http://127.0.0.1:{proxy_port}/_gemcache/stats")
        upstream = get_json(f"http://127.0.0.1:{mock_port}/_mock/stats")["requests"] - upstream_before
        health = urllib.request.urlopen(f"http://127.0.0.1:{proxy_port}/healthz", timeout=5).status
    finally:
        for process in (proxy, mock):
            process.terminate()
            process.wait(timeout=30)
        log.close()

    summary = dict(pair for line in out.splitlines() if line.startswith("SOAK ") and not line.startswith("SOAK seen")
                   for pair in re.findall(r"(\w+)=(\S+)", line))
    seen = {label: int(count) for label, count in re.findall(r"SOAK seen (.+) (\d+)\n", out)}
    answered = int(summary.get("answered", 0))
    client = {
        "hits": sum(v for k, v in seen.items() if k.endswith(" HIT")),
        "misses": sum(v for k, v in seen.items() if k.endswith(" MISS")),
        "coalesced": sum(v for k, v in seen.items() if k.endswith(" COALESCED")),
        "errors": seen.get("400 -", 0),
        # Refused at admission (no credential): counted as rejected only, not as requests (SPEC §7).
        "rejected": sum(v for k, v in seen.items() if k.startswith(("401", "403"))),
    }
    path_tricks = seen.get("400 path", 0)
    delta = {name: after[name] - before[name] for name in ("requests", "hits", "misses", "coalesced", "errors", "rejected")}
    print(f"requests answered: {answered} in {elapsed:.1f} s ({answered / elapsed:.0f}/s), load average {open('/proc/loadavg').read().split()[:3]}")
    print("client saw:", json.dumps(dict(sorted(seen.items()))))
    print("latency:", {k: summary[k] for k in ("latency_p50_ms", "p99_ms", "max_ms") if k in summary})
    print(f"proxy counters moved: {delta}; client: {client} (+{path_tricks} path tricks refused before the cache, not counted)")
    print(f"upstream calls: {upstream} (client misses {client['misses']}); evictions: {after.get('evictions')}; entries: {after.get('entries')}")
    print(f"RSS MiB: start {samples[0]:.1f}, peak {max(samples):.1f}, end {end_rss:.1f}; /healthz {health}")

    def check(ok, what):
        if not ok:
            failures.append(what)
    check(answered == args.requests, f"answered {answered} of {args.requests}")
    check(summary.get("unexpected") == "0", f"unexpected answers: {summary.get('unexpected')}")
    check(summary.get("socket_errors") == "0", f"socket errors: {summary.get('socket_errors')}")
    for name in ("hits", "misses", "coalesced", "errors", "rejected"):
        check(delta[name] == client[name], f"{name}: proxy {delta[name]}, client {client[name]}")
    counted = answered - path_tricks - client["rejected"]
    check(delta["requests"] == counted, f"requests: proxy {delta['requests']}, client {counted}")
    check(upstream == client["misses"], f"upstream calls {upstream} != misses {client['misses']}")
    check(health == 200, "healthz")
    if failures:
        print("FAILED:", "; ".join(failures), f"(work dir kept: {work})")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("soak OK")


if __name__ == "__main__":
    main()
