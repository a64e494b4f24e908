#!/usr/bin/env python3
"""Call reduction: upstream calls of a replayed workload vs the oracle (SPEC §10, issue 7 §1).

The workload: R generateContent requests drawn from N distinct prompts by a Zipf law (seeded, so
every run replays the same list). A share of the requests is sent as an *equivalent variant* of its
prompt's body, each variant a random mix of: object keys reordered, extra whitespace between JSON
tokens, snake_case names of API fields (`generation_config`, `max_output_tokens`, `top_p`,
`system_instruction`), CRLF line ends and leading/trailing whitespace in the text part, numbers in
another form (`1` / `1.0` / `1e0`, `256` / `256.0` / `2.56e2`), and Unicode written as `\\u` escapes
or decomposed (NFD). None of these changes the answer under SPEC §3 `normalize: text`.

The oracle is the number of distinct normalized requests, computed twice and checked to agree:
by the proxy's own rule (`POST /_gemcache/explain` for every distinct body, distinct keys counted)
and independently in this script (SPEC §3 written out in Python: keys sorted, snake_case to
camelCase, numbers in one form, nulls dropped, text parts NFC + CRLF→LF + trimmed).

The same request list is replayed with W concurrent workers (keep-alive connections) through
  - gemcache (defaults: per-key scope, normalize: text) in front of the mock upstream,
  - nginx proxy_cache with the POST body in the key (as benchmarks/nginx.conf.template), and
  - the same with `proxy_cache_lock on` (nginx's own coalescing of concurrent misses),
all in front of one mock upstream with --latency-ms L; upstream calls are counted by the mock
(`GET /_mock/stats` → requests, before/after each replay). Each worker count W gets fresh caches.
Every answer of one normalized request must be the same bytes (checked: "mixed answers").

Free-tier days saved = requests saved / the RPD of gemini-2.5-flash in the repository's proxy.conf.

Usage: benchmarks/callreduction.py [--bin .build-release/release/gemcache] [--prompts 1000]
       [--requests 6000] [--zipf 1.0] [--variant-share 0.5] [--workers 8,64] [--latency-ms 50]
Needs: nginx, a release build of gemcache. Prints Markdown to stdout, progress to stderr.
"""
import argparse
import collections
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.request
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitpath import HERE, PATH, ROOT, stop_all, wait_for  # noqa: E402

MODEL = "gemini-2.5-flash"
API_KEY = "benchmark-key"
TOPICS = ["the café economy", "photosynthesis", "TCP congestion control", "the Roman census", "glacier retreat",
          "B-trees", "jazz harmony", "vaccines", "Zipf's law", "the naïve Bayes classifier", "tidal locking",
          "double-entry bookkeeping"]


# ---------------------------------------------------------------- the workload

class Num:
    """A JSON number with equivalent spellings; the first is the one the base body uses."""

    def __init__(self, *spellings):
        self.spellings = spellings


def base_value(i):
    """The request of prompt i, as ordered Python values (dict key order = the base body's)."""
    text = (f"Question {i}: what is {TOPICS[i % len(TOPICS)]} and why does it matter?\n"
            f"Answer in {2 + i % 3} sentences, for a reader who likes a café crème.")
    value = {"contents": [{"role": "user", "parts": [{"text": text}]}],
             "generationConfig": {"temperature": Num("1.0", "1", "1e0", "1.00"),
                                  "maxOutputTokens": Num("256", "256.0", "2.56e2"),
                                  "topP": Num("0.95", "0.950", "9.5e-1")}}
    if i % 4 == 0:  # some prompts carry a system instruction (another snake_case candidate)
        value["systemInstruction"] = {"parts": [{"text": "You are terse."}]}
    return value


SNAKE = {"generationConfig": "generation_config", "maxOutputTokens": "max_output_tokens", "topP": "top_p",
         "systemInstruction": "system_instruction"}
TRANSFORMS = ("keys", "whitespace", "snake", "text", "numbers", "unicode")


def serialize(value, rng, variant):
    """The body bytes of `value`; `variant` is the set of transforms applied (empty: the base body)."""

    def ws():
        return rng.choice([" ", "  ", "\n", "\n  ", "\t", " \r\n "]) if "whitespace" in variant else ""

    def string(s, is_text=False):
        if is_text and "text" in variant:
            s = s.replace("\n", "\r\n")
            s = rng.choice([" ", "\n", "\r\n", "  \t"]) * rng.randint(0, 1) + s + rng.choice(["  ", "\r\n", " \n", "\t"])
        if "unicode" in variant:
            form = rng.choice(["escape", "nfd", "both"])
            if form in ("nfd", "both"):
                s = unicodedata.normalize("NFD", s)
            return json.dumps(s, ensure_ascii=form in ("escape", "both"))
        return json.dumps(s, ensure_ascii=False)

    def walk(v, key=None):
        if isinstance(v, dict):
            items = list(v.items())
            if "keys" in variant:
                rng.shuffle(items)
            parts = []
            for k, item in items:
                name = SNAKE.get(k, k) if "snake" in variant and rng.random() < 0.8 else k
                parts.append(ws() + json.dumps(name) + ws() + ":" + ws() + walk(item, k))
            return "{" + ",".join(parts) + ws() + "}"
        if isinstance(v, list):
            return "[" + ",".join(ws() + walk(item) for item in v) + ws() + "]"
        if isinstance(v, Num):
            return rng.choice(v.spellings[1:]) if "numbers" in variant else v.spellings[0]
        if isinstance(v, str):
            return string(v, is_text=(key == "text"))
        return json.dumps(v)

    return ws() + walk(value) + ws()


def workload(prompts, requests, zipf, variant_share, seed):
    """The request list: (prompt index, body bytes). Deterministic for a seed."""
    rng = random.Random(seed)
    weights = [1 / (rank ** zipf) for rank in range(1, prompts + 1)]
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    order = list(range(prompts))
    rng.shuffle(order)  # popularity rank -> prompt index, so popular prompts are not the small numbers
    out = []
    for rank in rng.choices(range(prompts), cum_weights=cumulative, k=requests):
        i = order[rank]
        variant = set()
        if rng.random() < variant_share:
            variant = {t for t in TRANSFORMS if rng.random() < 0.5} or {rng.choice(TRANSFORMS)}
        out.append((i, serialize(base_value(i), rng, variant).encode()))
    return out


# ---------------------------------------------------------------- the oracle, in this script

def camel(name):
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def normalize(body):
    """SPEC §3 `normalize: text` for the fields this workload uses (no free-form JSON in it)."""

    def number(d):
        d = d.normalize()
        return int(d) if d == d.to_integral_value() else d

    def walk(v, key=None):
        if isinstance(v, dict):
            return {camel(k): walk(item, camel(k)) for k, item in v.items() if item is not None}
        if isinstance(v, list):
            return [walk(item) for item in v]
        if isinstance(v, Decimal):
            return number(v)
        if isinstance(v, str) and key == "text":
            return unicodedata.normalize("NFC", v).replace("\r\n", "\n").strip()
        return v

    value = walk(json.loads(body, parse_float=Decimal, parse_int=Decimal))
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=lambda d: format(d, "f"))


# ---------------------------------------------------------------- replay

def replay(port, bodies, workers, header, deadline_s):
    """Sends every body once, in list order, from `workers` keep-alive connections.
    Returns per-request (status, cache header, answer bytes, key header) and the wall time."""
    results = [None] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    deadline = time.time() + deadline_s
    errors = []

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.time() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            for attempt in range(3):
                try:
                    connection.request("POST", PATH, body=bodies[index],
                                       headers={"Content-Type": "application/json", "x-goog-api-key": API_KEY})
                    response = connection.getresponse()
                    answer = response.read()
                    results[index] = (response.status, response.getheader(header), answer,
                                      response.getheader("X-Gemcache-Key"))
                    break
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    if attempt == 2:
                        errors.append(repr(error))
        connection.close()

    started = time.time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, deadline - time.time() + 5))
    return results, time.time() - started, errors


def mock_requests(mock_port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{mock_port}/_mock/stats", timeout=10))["requests"]


def explain_keys(port, distinct_bodies, workers=8):
    """key of every distinct body, by the proxy's own rule (POST /_gemcache/explain)."""
    keys = {}
    todo = iter(list(distinct_bodies))
    lock = threading.Lock()

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                break
            payload = json.dumps({"path": PATH, "headers": {"x-goog-api-key": API_KEY}, "body": body.decode()})
            connection.request("POST", "/_gemcache/explain", body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            keys[body] = answer["key"]
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return keys


def free_tier_rpd():
    text = open(os.path.join(ROOT, "proxy.conf")).read()
    match = re.search(rf"^\s*{re.escape(MODEL)}:\s*\{{[^}}]*rpd:\s*(\d+)", text, re.M)
    return int(match.group(1)) if match else None


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build-release/release/gemcache"))
    parser.add_argument("--prompts", type=int, default=1000, help="N distinct prompts")
    parser.add_argument("--requests", type=int, default=6000, help="R requests in the workload")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s (weight of rank k: 1/k^s)")
    parser.add_argument("--variant-share", type=float, default=0.5, help="share of requests sent as an equivalent variant")
    parser.add_argument("--workers", default="8,64", help="concurrent workers W, comma-separated; fresh caches for each")
    parser.add_argument("--latency-ms", type=int, default=50, help="latency of the mock upstream")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deadline", type=int, default=600, help="seconds allowed per replay")
    parser.add_argument("--base-port", type=int, default=18400)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    mock_port = args.base_port
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user when started by root
    processes = []
    log = open(os.path.join(work, "servers.log"), "w")

    def stop(process):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        processes.remove(process)

    try:
        # ---- the workload and its oracle
        items = workload(args.prompts, args.requests, args.zipf, args.variant_share, args.seed)
        bodies = [body for _, body in items]
        normalized = [normalize(body) for body in bodies]
        for (i, _), canonical in zip(items, normalized):  # every variant of a prompt normalizes alike
            assert canonical == normalize(serialize(base_value(i), random.Random(0), set()).encode()), i
        distinct_prompts = len({i for i, _ in items})
        distinct_bytes = len(set(bodies))
        oracle_script = len(set(normalized))
        variants = sum(1 for (i, body) in items if body != serialize(base_value(i), random.Random(0), set()).encode())
        rpd = free_tier_rpd()
        print(f"workload: {args.requests} requests over {args.prompts} prompts (Zipf s={args.zipf}, seed {args.seed}), "
              f"{variants} sent as equivalent variants; distinct prompts drawn {distinct_prompts}, "
              f"distinct body bytes {distinct_bytes}, oracle (script) {oracle_script}", file=sys.stderr)

        processes.append(subprocess.Popen([args.bin, "mock-upstream", "--port", str(mock_port), "--latency-ms", str(args.latency_ms)],
                                          cwd=work, stdout=log, stderr=log))
        wait_for(mock_port)

        rows = []
        oracle_explain = None
        for w_index, workers in enumerate(int(w) for w in args.workers.split(",")):
            gemcache_port, plain_port, lock_port = (args.base_port + 1 + 3 * w_index + k for k in range(3))
            run_dir = os.path.join(work, f"w{workers}")
            os.makedirs(run_dir)
            os.chmod(run_dir, 0o755)
            gemcache = subprocess.Popen(
                [args.bin, "serve", "--port", str(gemcache_port), "--upstream", f"http://127.0.0.1:{mock_port}",
                 "--data", os.path.join(run_dir, "data")],
                cwd=run_dir, stdout=log, stderr=log, env={**os.environ, "LOG_LEVEL": "warning"})
            processes.append(gemcache)
            conf = open(os.path.join(HERE, "nginx-callreduction.conf.template")).read()
            for name, value in {"@DIR@": run_dir, "@MOCK_PORT@": mock_port, "@PLAIN_PORT@": plain_port, "@LOCK_PORT@": lock_port}.items():
                conf = conf.replace(name, str(value))
            open(os.path.join(run_dir, "nginx.conf"), "w").write(conf)
            nginx = subprocess.Popen(["nginx", "-c", os.path.join(run_dir, "nginx.conf"), "-p", run_dir, "-g", "daemon off;"],
                                     stdout=log, stderr=log)
            processes.append(nginx)
            wait_for(gemcache_port)
            wait_for(plain_port)
            wait_for(lock_port)

            if oracle_explain is None:
                keys = explain_keys(gemcache_port, set(bodies))
                oracle_explain = len(set(keys.values()))
                print(f"oracle (explain) {oracle_explain}", file=sys.stderr)

            for target, port, header in [("gemcache", gemcache_port, "X-Gemcache"),
                                         ("nginx proxy_cache, body in key", plain_port, "X-Cache-Status"),
                                         ("nginx proxy_cache + proxy_cache_lock", lock_port, "X-Cache-Status")]:
                load_before = loadavg()
                before = mock_requests(mock_port)
                results, wall, errors = replay(port, bodies, workers, header, args.deadline)
                time.sleep(1.0)  # the mock counts before it answers; the gemcache ledger batches ≤ 50 ms
                calls = mock_requests(mock_port) - before
                done = [r for r in results if r is not None]
                statuses = collections.Counter(r[0] for r in done)
                cache_states = collections.Counter(r[1] for r in done)
                answers = collections.defaultdict(set)
                for canonical, r in zip(normalized, results):
                    if r is not None and r[0] == 200:
                        answers[canonical].add(r[2])
                mixed = sum(1 for a in answers.values() if len(a) > 1)
                row = {"workers": workers, "target": target, "requests": len(done), "calls": calls, "wall": wall,
                       "statuses": dict(statuses), "states": dict(cache_states), "mixed": mixed, "errors": len(errors),
                       "load": f"{load_before} → {loadavg()}"}
                if target == "gemcache":
                    stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats", timeout=10))
                    row["hit_ratio"] = stats.get("hit_ratio")
                    row["stats"] = {k: stats.get(k) for k in ("requests", "hits", "coalesced", "misses", "upstream_requests", "entries")}
                    row["response_keys"] = len({r[3] for r in done if r[3]})
                else:
                    hits = cache_states.get("HIT", 0)
                    row["hit_ratio"] = hits / len(done) if done else 0
                rows.append(row)
                print(f"W={workers} {target}: {json.dumps({k: v for k, v in row.items()}, default=str)}", file=sys.stderr)
            stop(nginx)
            stop(gemcache)

        # ---- report
        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; mock upstream latency {args.latency_ms} ms; "
              f"workload: {args.requests} requests over {args.prompts} prompts, Zipf s={args.zipf}, seed {args.seed}, "
              f"{variants} requests ({variants / args.requests:.0%}) sent as equivalent variants.")
        print()
        print(f"Distinct prompts drawn: {distinct_prompts}. Distinct body bytes (the best a byte-keyed cache can do): "
              f"{distinct_bytes}. **Oracle** (distinct normalized requests): {oracle_script} by this script's SPEC §3 "
              f"normalizer, {oracle_explain} by `POST /_gemcache/explain` keys"
              f"{'' if oracle_script == oracle_explain else ' (THEY DISAGREE)'}. Free tier: gemini-2.5-flash RPD {rpd} (proxy.conf).")
        print()
        oracle = oracle_explain
        print("| W | target | requests | upstream calls | calls / oracle | hit ratio | requests saved | free-tier days saved | mixed answers | non-200 | wall s | load average before → after |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in rows:
            saved = row["requests"] - row["calls"]
            non200 = row["requests"] - row["statuses"].get(200, 0)
            days = f"{saved / rpd:.1f}" if rpd else "n/a"
            print(f"| {row['workers']} | {row['target']} | {row['requests']:,} | {row['calls']:,} | {row['calls'] / oracle:.3f} | "
                  f"{row['hit_ratio']:.3f} | {saved:,} | {days} | {row['mixed']} | {non200} | {row['wall']:.1f} | {row['load']} |")
        print()
        for row in rows:
            extra = f"; /_gemcache/stats {row['stats']}; distinct X-Gemcache-Key seen {row['response_keys']}" if "stats" in row else ""
            print(f"- W={row['workers']} {row['target']}: answers by cache state {row['states']}{extra}"
                  f"{'; client errors ' + str(row['errors']) if row['errors'] else ''}")
        print()
        print(f"Without a cache the workload costs {args.requests:,} upstream calls = {args.requests / rpd:.1f} days of "
              f"gemini-2.5-flash free tier (RPD {rpd}); the oracle bound is {oracle:,} calls = {oracle / rpd:.1f} days.")
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
