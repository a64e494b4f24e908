#!/usr/bin/env python3
"""Hit path side by side, in one run: gemcache vs nginx proxy_cache vs nginx `return 200`.

Starts the mock upstream, gemcache and nginx on 127.0.0.1, warms both caches with the request in
post.lua, then runs wrk against each target in alternating rounds (so that drift and other load hit
every target alike) and prints a Markdown table of the medians with ratios to nginx proxy_cache.

Usage: benchmarks/hitpath.py [--bin .build/release/gemcache] [--rounds 3] [--duration 8] [--connections 64,8]
Needs: nginx, wrk (apt-get install -y nginx wrk), a release build of gemcache.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PATH = "/v1beta/models/gemini-2.5-flash:generateContent"


def lua_body():
    text = open(os.path.join(HERE, "post.lua")).read()
    return re.search(r"wrk.body = '(.*)'", text).group(1)


def post(port, body, key="benchmark-key"):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json", "x-goog-api-key": key},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def wait_for(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


def wrk(port, connections, duration):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", os.path.join(HERE, "post.lua"),
         f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out):
    """Requests/s, p50 and p99 in ms, and non-2xx answers from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(percentile):
        value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": latency(50), "p99": latency(99), "non2xx": int(errors.group(1)) if errors else 0}


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


def start_stack(binary, work, mock_port, gemcache_port, processes, log):
    """Starts the mock upstream and gemcache in front of it (from `work`, so that the repository's
    proxy.conf is not picked up), appends both to `processes`, waits until they listen.
    Returns the gemcache process."""
    processes.append(subprocess.Popen([binary, "mock-upstream", "--port", str(mock_port)], cwd=work, stdout=log, stderr=log))
    wait_for(mock_port)
    gemcache = subprocess.Popen(
        [binary, "serve", "--port", str(gemcache_port), "--upstream", f"http://127.0.0.1:{mock_port}", "--data", os.path.join(work, "data")],
        cwd=work, stdout=log, stderr=log, env={**os.environ, "LOG_LEVEL": "warning"},
    )
    processes.append(gemcache)
    wait_for(gemcache_port)
    return gemcache


def stop_all(processes, work):
    """Stops the servers a benchmark started (newest first) and removes its work folder."""
    for process in reversed(list(processes)):
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/gemcache"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", default="64,8")
    parser.add_argument("--base-port", type=int, default=18100)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    mock_port, gemcache_port, cache_port, return_port = (args.base_port + i for i in range(4))
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user when started by root
    processes = []
    try:
        log = open(os.path.join(work, "servers.log"), "w")
        gemcache = start_stack(args.bin, work, mock_port, gemcache_port, processes, log)

        body = lua_body()
        headers, answer = post(mock_port, body)
        conf = open(os.path.join(HERE, "nginx.conf.template")).read()
        for name, value in {"@DIR@": work, "@MOCK_PORT@": mock_port, "@CACHE_PORT@": cache_port, "@RETURN_PORT@": return_port,
                            "@ANSWER@": answer.decode().replace("\\", "\\\\").replace("'", "\\'")}.items():
            conf = conf.replace(name, str(value))
        open(os.path.join(work, "nginx.conf"), "w").write(conf)
        processes.append(subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf"), "-p", work, "-g", "daemon off;"], stdout=log, stderr=log))
        wait_for(cache_port)

        # Warm: gemcache stores the answer (and the raw-key alias), nginx caches it.
        checks = []
        for _ in range(3):
            checks.append(post(gemcache_port, body)[0].get("X-Gemcache"))
            checks.append(post(cache_port, body)[0].get("X-Cache-Status"))
        if checks[-2:] != ["HIT", "HIT"]:
            sys.exit(f"caches not warm: {checks}")
        g_answer, n_answer = post(gemcache_port, body)[1], post(cache_port, body)[1]
        if g_answer != answer or n_answer != answer:
            sys.exit("the caches do not serve the upstream's answer")

        targets = [("gemcache", gemcache_port), ("nginx proxy_cache", cache_port), ("nginx return 200", return_port)]
        connection_counts = [int(c) for c in args.connections.split(",")]
        load_before = open("/proc/loadavg").read().split()[:3]
        results = {(name, c): [] for name, _ in targets for c in connection_counts}
        for round_index in range(args.rounds):
            for c in connection_counts:
                for name, port in targets:
                    result = wrk(port, c, args.duration)
                    results[(name, c)].append(result)
                    print(f"round {round_index + 1} c={c} {name}: {result}", file=sys.stderr)
        load_after = open("/proc/loadavg").read().split()[:3]
        gemcache_rss = rss_mib(gemcache.pid)

        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
              f"{args.rounds} alternating rounds x {args.duration} s per target, wrk -t2; gemcache RSS after the run {gemcache_rss:.0f} MiB.")
        print()
        print("| connections | target | req/s (median) | ratio to nginx proxy_cache | p50 ms | p99 ms | p99 per round ms | non-2xx |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for c in connection_counts:
            bar = statistics.median(r["rps"] for r in results[("nginx proxy_cache", c)])
            for name, _ in targets:
                rounds = results[(name, c)]
                rps = statistics.median(r["rps"] for r in rounds)
                per_round = " / ".join(f"{r['p99']:.2f}" for r in rounds)
                print(f"| {c} | {name} | {rps:,.0f} | {rps / bar:.2f} | {statistics.median(r['p50'] for r in rounds):.2f} | "
                      f"{statistics.median(r['p99'] for r in rounds):.2f} | {per_round} | "
                      f"{sum(r['non2xx'] for r in rounds)} |")
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats"))
        print()
        print(f"gemcache stats after the run: requests {stats.get('requests')}, hits {stats.get('hits')}, misses {stats.get('misses')}, "
              f"upstream_requests {stats.get('upstream_requests')}.")
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
