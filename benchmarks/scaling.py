#!/usr/bin/env python3
"""Scaling: hit latency, store size and proxy RSS at 10 thousand, 100 thousand and 1 million entries
(issue 7 §3; SPEC §10: lookup cost flat, proxy memory independent of the store size).

One store grows through the levels:
  1. P probe requests (distinct prompts) go through gemcache as real misses to the mock upstream
     (latency 0): real entries, each with the raw-body alias the fast path looks up.
  2. The store is filled up to each level, either
       --fill import (default when `gemcache import` exists): a JSON Lines export file of filler
         entries (random keys, the headers and body of a real entry, the store's own export header)
         written by this script and read with `gemcache import --data DIR FILE`, or
       --fill misses: wrk storm.lua at 64 connections (real misses, with aliases) until the store
         holds the level's count.
     Filler entries from import have no raw-body alias (the alias database keeps only the probes'
     and the misses'), so at import-filled levels the entries tree grows and the aliases tree does not.
  3. gemcache is restarted on the store (so that RSS is the serving process's, not the filler's),
     every probe is requested once (all must be HITs), and wrk measures hits: one hot key (c=8),
     all P probe keys in a shuffled cycle (c=8 and c=64).
  4. Proxy RSS (VmRSS, and its anonymous and file-backed parts: LMDB pages read through the memory
     map count as file-backed), store size on disk and entry count.

Usage: benchmarks/scaling.py [--bin .build-release/release/gemcache] [--levels 10000,100000,1000000]
       [--probes 2000] [--duration 5] [--fill import|misses] [--fill-timeout 900]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitpath import HERE, PATH, ROOT, parse_wrk, wait_for  # noqa: E402


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def get_json(url):
    return json.load(urllib.request.urlopen(url, timeout=30))


def memory(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def disk_mib(path):
    allocated = int(subprocess.run(["du", "-s", "--block-size=1", path], capture_output=True, text=True).stdout.split()[0])
    return allocated / 2**20


def probe_body(i):
    return f'{{"contents":[{{"role":"user","parts":[{{"text":"Scale probe {i}: explain topic {i} in one line."}}]}}]}}'


def post(port, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json", "x-goog-api-key": "benchmark-key"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.headers.get("X-Gemcache")


def post_all(port, bodies, workers=8):
    """X-Gemcache of every body, sent from `workers` threads."""
    states = {}
    todo = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            states[i] = post(port, bodies[i])

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return states


def wrk(port, connections, duration, script, *script_args):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, f"http://127.0.0.1:{port}{PATH}", "--", *script_args],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    return parse_wrk(out)


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_scripts(work, probes):
    hot = os.path.join(work, "hot.lua")
    with open(hot, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                'wrk.headers["x-goog-api-key"] = "benchmark-key"\n'
                f"wrk.body = {lua_string(probe_body(0))}\n")
    spread = os.path.join(work, "spread.lua")
    order = list(range(probes))
    random.Random(1).shuffle(order)
    with open(spread, "w") as f:
        f.write("local bodies = {\n")
        for i in order:
            f.write(f"  {lua_string(probe_body(i))},\n")
        f.write("}\nlocal threads = 0\n"
                "setup = function(thread) thread:set(\"id\", threads); threads = threads + 1 end\n"
                "init = function(args) index = id * 7919 end\n"
                "request = function()\n  index = index + 1\n"
                "  return wrk.format(\"POST\", nil, {[\"Content-Type\"] = \"application/json\", [\"x-goog-api-key\"] = \"benchmark-key\"}, "
                "bodies[(index % #bodies) + 1])\nend\n")
    return hot, spread


class Proxy:
    def __init__(self, args, work, log, mock_port, port):
        self.process = subprocess.Popen(
            [args.bin, "serve", "--port", str(port), "--upstream", f"http://127.0.0.1:{mock_port}", "--data", os.path.join(work, "data")],
            cwd=work, stdout=log, stderr=log, env={**os.environ, "LOG_LEVEL": "warning"})
        self.port = port
        wait_for(port)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fill_by_import(args, work, count, template, header_line):
    """Writes `count` filler entries as an export file and imports them; returns seconds taken."""
    path = os.path.join(work, "filler.jsonl")
    started = time.time()
    with open(path, "w") as f:
        f.write(header_line)
        prefix = json.dumps({k: v for k, v in template.items() if k != "key"})[1:]  # every field but the key
        for _ in range(count):
            f.write('{"key":"' + os.urandom(32).hex() + '",' + prefix + "\n")
    written = time.time()
    result = subprocess.run([args.bin, "import", "--data", os.path.join(work, "data"), path],
                            cwd=work, capture_output=True, text=True, timeout=args.fill_timeout)
    if result.returncode != 0:
        sys.exit(f"import failed: {result.stderr}")
    print(f"import of {count:,}: file written in {written - started:.1f} s, imported in {time.time() - written:.1f} s: "
          f"{result.stdout.strip()}", file=sys.stderr)
    os.remove(path)
    return time.time() - started


def fill_by_misses(args, proxy, target):
    started = time.time()
    chunk = 0
    while time.time() - started < args.fill_timeout:
        entries = get_json(f"http://127.0.0.1:{proxy.port}/_gemcache/stats")["entries"]
        if entries >= target:
            break
        chunk += 1
        wrk(proxy.port, 64, 20, os.path.join(HERE, "storm.lua"), f"fill {time.time()} {chunk}")
    return time.time() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build-release/release/gemcache"))
    parser.add_argument("--levels", default="10000,100000,1000000")
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--fill", choices=["import", "misses"])
    parser.add_argument("--fill-timeout", type=int, default=900, help="seconds allowed to fill one level")
    parser.add_argument("--base-port", type=int, default=18700)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    if args.fill is None:
        has_import = "import" in subprocess.run([args.bin, "--help"], capture_output=True, text=True).stdout
        args.fill = "import" if has_import else "misses"
    mock_port, port = args.base_port, args.base_port + 1
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    mock = None
    proxy = None
    rows = []
    try:
        log = open(os.path.join(work, "servers.log"), "w")
        mock = subprocess.Popen([args.bin, "mock-upstream", "--port", str(mock_port), "--latency-ms", "0"], cwd=work, stdout=log, stderr=log)
        wait_for(mock_port)
        proxy = Proxy(args, work, log, mock_port, port)
        probes = [probe_body(i) for i in range(args.probes)]
        states = post_all(port, probes)
        print(f"probes stored: {sum(1 for s in states.values() if s == 'MISS')} misses of {len(probes)}", file=sys.stderr)
        hot, spread = write_scripts(work, args.probes)

        template = header_line = None
        if args.fill == "import":
            time.sleep(0.5)
            export = os.path.join(work, "probe-export.jsonl")
            subprocess.run([args.bin, "export", "--data", os.path.join(work, "data"), export], cwd=work, check=True,
                           capture_output=True, timeout=120)
            with open(export) as f:
                header_line = f.readline()
                template = json.loads(f.readline())
            os.remove(export)

        for level in (int(x) for x in args.levels.split(",")):
            entries = get_json(f"http://127.0.0.1:{port}/_gemcache/stats")["entries"]
            load_fill = loadavg()
            fill_seconds = 0.0
            if entries < level:
                if args.fill == "import":
                    fill_seconds = fill_by_import(args, work, level - entries, template, header_line)
                else:
                    fill_seconds = fill_by_misses(args, proxy, level)
            proxy.stop()
            proxy = Proxy(args, work, log, mock_port, port)
            entries = get_json(f"http://127.0.0.1:{port}/_gemcache/stats")["entries"]
            if entries < level:
                print(f"level {level:,}: the store holds only {entries:,} entries after {fill_seconds:.0f} s of filling; stopping here",
                      file=sys.stderr)
                rows.append({"level": level, "entries": entries, "stopped": True, "fill": fill_seconds})
                break
            warm = post_all(port, probes)
            not_hits = sum(1 for s in warm.values() if s != "HIT")
            load_before = loadavg()
            hot8 = wrk(port, 8, args.duration, hot)
            spread8 = wrk(port, 8, args.duration, spread)
            spread64 = wrk(port, 64, args.duration, spread)
            mem = memory(proxy.process.pid)
            time.sleep(0.3)
            stats = get_json(f"http://127.0.0.1:{port}/_gemcache/stats")
            row = {"level": level, "entries": stats["entries"], "fill": fill_seconds, "load_fill": load_fill, "load": f"{load_before} → {loadavg()}",
                   "hot8": hot8, "spread8": spread8, "spread64": spread64, "mem": mem, "disk": disk_mib(os.path.join(work, "data")),
                   "store_bytes": stats.get("store_bytes", 0), "not_hits": not_hits}
            rows.append(row)
            print(f"level {level:,}: {json.dumps(row)}", file=sys.stderr)

        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; fill: {args.fill}; {args.probes:,} probe keys (real misses, with aliases); "
              f"wrk -t2 -d{args.duration}s per cell; mock upstream latency 0.")
        print()
        print("| entries | filled in s | hot key c=8: req/s, p50 / p99 ms | spread over probes c=8: req/s, p50 / p99 ms | "
              "spread c=64: req/s, p50 / p99 ms | proxy VmRSS MiB (anon + file) | store on disk MiB (stats store_bytes) | warm-up not HIT | load average before → after |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in rows:
            if row.get("stopped"):
                print(f"| {row['entries']:,} (target {row['level']:,}) | {row['fill']:.0f} (stopped) | | | | | | | |")
                continue

            def cell(r):
                return f"{r['rps']:,.0f}, {r['p50']:.2f} / {r['p99']:.2f}" + (f" ({r['non2xx']} non-2xx)" if r["non2xx"] else "")

            mem = row["mem"]
            print(f"| {row['entries']:,} | {row['fill']:.0f} | {cell(row['hot8'])} | {cell(row['spread8'])} | {cell(row['spread64'])} | "
                  f"{mem.get('VmRSS', 0):.0f} ({mem.get('RssAnon', 0):.0f} + {mem.get('RssFile', 0):.0f}) | "
                  f"{row['disk']:,.0f} ({row['store_bytes'] / 2**20:,.0f}) | {row['not_hits']} | {row['load']} |")
    finally:
        if proxy:
            proxy.stop()
        if mock:
            mock.terminate()
            mock.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
