#!/usr/bin/env python3
"""Hit path side by side, in one run: gemcache vs nginx proxy_cache vs nginx `return 200` vs LiteLLM.

Starts the mock upstream, gemcache, nginx and the LiteLLM proxy (in-memory cache, Gemini provider
pointed at the mock) on 127.0.0.1, warms every cache, then runs wrk against each target in
alternating rounds (so that drift and other load hit every target alike) and prints a Markdown table
per connection count of the medians with ratios to nginx proxy_cache.

With --kinds, every kind of hit in KINDS runs in the same rounds (round, connections, kind, target),
each against nginx proxy_cache caching the same request's answer and nginx `return 200` serving its
bytes: generate (generateContent, key in x-goog-api-key; the default), stream (streamGenerateContent
?alt=sse replayed), embed (embedContent), openai (OpenAI chat/completions, key in Authorization: Bearer),
querykey (generateContent, key in ?key=), variant (generateContent whose body is, on every request,
a new byte sequence that normalizes to the stored request: gemcache answers it from its store after
normalizing it; nginx, which has no notion of equivalent requests, is measured on the plain generate
request for reference) and framework (generateContent with `Cache-Control: max-age=86400`, a hit
that goes through the HTTP framework: the slow path's own hit). hit.lua sends each kind's request. LiteLLM, which speaks the OpenAI API to
clients, runs in the generate kind only, with the chat completion of litellm.lua (the same prompt).

With --compare BIN (repeatable), other gemcache builds run beside the first in the same rounds, each
with its own store, optionally after VAR=VALUE settings: a before/after of a change in one run.

With --tls, the first gemcache runs a second time with `listen.tls` (a self-signed P-256 certificate
made for the run) and nginx proxy_cache also listens over HTTPS, on the same cache: the HTTPS rows'
ratio is to nginx proxy_cache over HTTPS (wrk keeps its connections, so this is TLS record cost,
not handshakes).

Usage: benchmarks/hitpath.py [--bin .build/release/gemcache] [--compare "[VAR=VALUE ...] OTHER_BIN"] [--kinds generate,stream,embed,openai,querykey,variant,framework|all] [--rounds 3] [--duration 8] [--connections 64,8] [--no-litellm] [--pace-ms 2] [--tls]
Needs: nginx, wrk (apt-get install -y nginx wrk), a release build of gemcache; LiteLLM is installed
from PyPI into --litellm-venv (default .venv-litellm) on first use.
"""
import argparse
import dataclasses
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PATH = "/v1beta/models/gemini-2.5-flash:generateContent"


LITELLM_VERSION = "1.108.7"
LITELLM_PATH = "/chat/completions"

KEY = "benchmark-key"
PROMPT = '{"contents":[{"role":"user","parts":[{"text":"Why is the sky blue?"}]}]}'


@dataclasses.dataclass(frozen=True)
class Kind:
    """A request every target answers from its cache: POST `body` to `path` with `headers` (and
    Content-Type: application/json). When `varies`, gemcache gets on every request a new byte sequence
    equivalent to `body` (hit.lua's SERIES) and nginx, for reference, `body` itself (`plain`)."""
    path: str
    body: str
    headers: dict
    varies: bool = False

    @property
    def plain(self):
        """The same request without variants: the one stored, and what nginx is measured on."""
        return dataclasses.replace(self, varies=False)


KINDS = {
    "generate": Kind(PATH, PROMPT, {"x-goog-api-key": KEY}),
    "stream": Kind("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", PROMPT, {"x-goog-api-key": KEY}),
    "embed": Kind("/v1beta/models/gemini-embedding-001:embedContent",
                  '{"content":{"parts":[{"text":"Why is the sky blue?"}]}}', {"x-goog-api-key": KEY}),
    "openai": Kind("/v1beta/openai/chat/completions",
                   '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Why is the sky blue?"}]}',
                   {"Authorization": f"Bearer {KEY}"}),
    "querykey": Kind(f"{PATH}?key={KEY}", PROMPT, {}),
    "variant": Kind(PATH, PROMPT, {"x-goog-api-key": KEY}, varies=True),
    # A cache control sends a hit through the HTTP framework (the fast path leaves it to the slow path).
    "framework": Kind(PATH, PROMPT, {"x-goog-api-key": KEY, "Cache-Control": "max-age=86400"}),
}


def lua_body(script):
    text = open(os.path.join(HERE, script)).read()
    return re.search(r"wrk.body = '(.*)'", text).group(1)


def lua_header(script, name):
    text = open(os.path.join(HERE, script)).read()
    return re.search(rf'wrk.headers\["{name}"\] = "(.*)"', text).group(1)


# Ports served over HTTPS (--tls), with a self-signed certificate the benchmark's clients do not check.
HTTPS_PORTS = set()
UNCHECKED_TLS = ssl.create_default_context()
UNCHECKED_TLS.check_hostname = False
UNCHECKED_TLS.verify_mode = ssl.CERT_NONE


def origin(port):
    return f"{'https' if port in HTTPS_PORTS else 'http'}://127.0.0.1:{port}"


def send(port, kind, body=None):
    """`kind`'s request (with `body` instead of its own, when given) to the server on `port`: its
    answer's headers and body."""
    request = urllib.request.Request(
        f"{origin(port)}{kind.path}", data=(body or kind.body).encode(), method="POST",
        headers={"Content-Type": "application/json", **kind.headers},
    )
    with urllib.request.urlopen(request, timeout=10, context=UNCHECKED_TLS) as response:
        return response.headers, response.read()


def wait_for(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{origin(port)}/healthz", timeout=1, context=UNCHECKED_TLS)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


def wrk(port, connections, duration, path, script, headers=None, script_args=()):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", os.path.join(HERE, script),
         *(option for name, value in (headers or {}).items() for option in ("-H", f"{name}: {value}")),
         f"{origin(port)}{path}"] + (["--", *script_args] if script_args else []),
        capture_output=True, text=True, check=True,
    ).stdout
    return parse_wrk(out)


def wrk_kind(port, connections, duration, kind, pace_ms, series):
    """wrk with hit.lua sending `kind`'s request, each connection pausing `pace_ms` before every
    request when given, the bodies of a kind that varies written with `series`."""
    script_args = [kind.body, str(pace_ms or 0)] + ([str(series)] if kind.varies else [])
    return wrk(port, connections, duration, kind.path, "hit.lua", {"Content-Type": "application/json", **kind.headers}, script_args)


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


def process_tree(pid):
    """A process and all of its descendants (LiteLLM's workers are child processes)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def tree_rss_mib(pid):
    total = 0
    for member in process_tree(pid):
        try:
            total += rss_mib(member)
        except OSError:
            pass
    return total


def pause(pids, paused):
    """Stops (or continues) processes: LiteLLM's Python processes wake up on their own now and then,
    which showed in the other targets' p99, so they are stopped while the others are measured."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)
        except ProcessLookupError:
            pass


def ratio(value, bar):
    """`value / bar` to two decimals, or as 1/N when that would round to nothing."""
    return f"{value / bar:.2f}" if value / bar >= 0.05 else f"1/{bar / value:,.0f}"


def nginx_return_locations(answers):
    """The locations of nginx `return 200` that serve the answer bytes of each kind in `answers` (name:
    content type and body), with its content type, at its path (a location has no query)."""
    def quoted(text):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    locations = {KINDS[name].path.split("?")[0]: answer for name, answer in answers.items()}
    return "\n".join(
        f'        location = {path} {{ default_type "{content_type}"; return 200 {quoted(body.decode())}; }}'
        for path, (content_type, body) in locations.items()
    )


def until_hit(port, kind, header):
    """Sends `kind`'s request to `port` until the answer's `header` says HIT (a stream is stored once
    it has been read to its end). Returns the body of the hit."""
    statuses = []
    for _ in range(10):
        headers, body = send(port, kind)
        statuses.append(headers.get(header))
        if statuses[-1] == "HIT":
            return body
        time.sleep(0.1)
    sys.exit(f"{kind.path} is not cached on port {port}: {statuses}")


def warm(name, kind, answer, gemcache_ports, cache_port, return_port):
    """Stores `kind`'s plain request in every gemcache (with the raw-key alias) and in nginx
    proxy_cache, then checks that each answers it as a HIT with `answer`, the upstream's bytes, that
    gemcache does so for two first-seen variants as well when the kind varies, and that nginx
    `return 200` serves the same bytes."""
    for port, header in [(port, "X-Gemcache") for port in gemcache_ports] + [(cache_port, "X-Cache-Status")]:
        if until_hit(port, kind.plain, header) != answer:
            sys.exit(f"{name}: the cache on port {port} does not serve the upstream's answer")
    if kind.varies:
        for indent in (1, 2):
            variant = json.dumps(json.loads(kind.body), indent=indent)
            for port in gemcache_ports:
                headers, body = send(port, kind, variant)
                if headers.get("X-Gemcache") != "HIT" or body != answer:
                    sys.exit(f"{name}: gemcache on port {port} does not answer a first-seen variant from its store: "
                             f"{headers.get('X-Gemcache')}")
    if send(return_port, kind.plain)[1] != answer:
        sys.exit(f"{name}: nginx return 200 does not serve the upstream's answer")


def start_stack(binary, work, mock_port, gemcache_port, processes, log):
    """Starts the mock upstream and gemcache in front of it, appends both to `processes`, waits until
    they listen. Returns the gemcache process."""
    processes.append(subprocess.Popen([binary, "mock-upstream", "--port", str(mock_port)], cwd=work, stdout=log, stderr=log))
    wait_for(mock_port)
    return start_gemcache(binary, work, "data", mock_port, gemcache_port, processes, log)


def start_gemcache(binary, work, data, mock_port, port, processes, log, settings=None, config=None):
    """Starts `gemcache serve` with its store in work/`data` (from `work`, so that the repository's
    proxy.conf is not picked up), `settings` (environment variables such as
    GEMCACHE_STORE_DURABILITY) and the settings file `config` if given, appends it to `processes`,
    waits until it listens. Returns it."""
    gemcache = subprocess.Popen(
        [binary, "serve", "--port", str(port), "--upstream", f"http://127.0.0.1:{mock_port}", "--data", os.path.join(work, data)]
        + (["--config", config] if config else []),
        cwd=work, stdout=log, stderr=log, env={**os.environ, "LOG_LEVEL": "warning", **(settings or {})},
    )
    processes.append(gemcache)
    wait_for(port)
    return gemcache


def start_litellm(venv, work, mock_port, port, processes, log):
    """Starts the LiteLLM proxy with its in-memory cache in front of the mock upstream (installing it
    from PyPI into `venv` first when it is not there) and checks that it answers repeats from its cache."""
    binary = os.path.join(venv, "bin", "litellm")
    if not os.path.exists(binary):
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    config = os.path.join(work, "litellm.yaml")
    open(config, "w").write(
        "model_list:\n"
        "  - model_name: gemini-2.5-flash\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-2.5-flash\n"
        f"      api_base: http://127.0.0.1:{mock_port}/v1beta\n"
        "      api_key: benchmark-key\n"
        "litellm_settings:\n"
        "  cache: true\n"
        "  cache_params:\n"
        "    type: local\n"
    )
    authorization = lua_header("litellm.lua", "Authorization")
    processes.append(subprocess.Popen(
        [binary, "--config", config, "--port", str(port), "--host", "127.0.0.1", "--num_workers", "2"], cwd=work, stdout=log, stderr=log,
        env={**os.environ, "LITELLM_MASTER_KEY": authorization.removeprefix("Bearer "), "LITELLM_LOG": "ERROR"},
    ))
    wait_for(port, timeout=180)
    # Each of the two workers keeps its own cache: warm both, then require a run of hits.
    body = lua_body("litellm.lua").encode()
    hits = []
    for _ in range(30):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{LITELLM_PATH}", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": authorization},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.read().decode()
            hits.append("x-litellm-cache-key" in {name.lower() for name in response.headers.keys()})
        if "Mock answer to: Why is the sky blue?" not in answer:
            sys.exit(f"LiteLLM does not pass on the upstream's answer: {answer[:200]}")
    if not all(hits[-10:]):
        sys.exit(f"LiteLLM's cache is not warm: {hits}")


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
    parser.add_argument("--compare", action="append", default=[], help="another gemcache binary to measure in the same rounds, optionally after VAR=VALUE settings")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", default="64,8")
    parser.add_argument("--base-port", type=int, default=18100)
    parser.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    parser.add_argument("--litellm-venv", default=os.path.join(ROOT, ".venv-litellm"))
    parser.add_argument("--pace-ms", type=int, help="each connection waits this long before every request (hit.lua): "
                        "the same offered load for every server, so that tails compare at equal throughput; leaves LiteLLM out")
    parser.add_argument("--tls", action="store_true", help="also measure gemcache and nginx proxy_cache over HTTPS "
                        "(a self-signed P-256 certificate, keep-alive), each HTTPS row against nginx's HTTPS row")
    parser.add_argument("--kinds", default="generate", help=f"the kinds of hit to measure, comma-separated, or all: {','.join(KINDS)}")
    args = parser.parse_args()
    kinds = list(KINDS) if args.kinds == "all" else args.kinds.split(",")
    if unknown := [name for name in kinds if name not in KINDS]:
        parser.error(f"unknown kinds {','.join(unknown)}; known: {','.join(KINDS)}")
    if args.pace_ms or "generate" not in kinds:
        args.no_litellm = True
    args.bin = os.path.abspath(args.bin)
    mock_port, gemcache_port, cache_port, return_port, litellm_port, gemcache_tls_port, cache_tls_port = (args.base_port + i for i in range(7))
    work = tempfile.mkdtemp(prefix="gemcache-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user when started by root
    processes = []
    litellm_pids = []
    try:
        log = open(os.path.join(work, "servers.log"), "w")
        gemcache = start_stack(args.bin, work, mock_port, gemcache_port, processes, log)

        answers = {}  # the upstream's, for each kind: content type and body
        for name in kinds:
            headers, body = send(mock_port, KINDS[name].plain)
            answers[name] = (headers.get("Content-Type"), body)
        cache_tls = ""
        if args.tls:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-keyout", os.path.join(work, "key.pem"), "-out", os.path.join(work, "cert.pem")],
                           check=True, capture_output=True)
            cache_tls = (f"listen 127.0.0.1:{cache_tls_port} ssl; ssl_certificate {work}/cert.pem; "
                         f"ssl_certificate_key {work}/key.pem; ssl_session_cache shared:tls:1m;")
            HTTPS_PORTS.update([gemcache_tls_port, cache_tls_port])
        conf = open(os.path.join(HERE, "nginx.conf.template")).read()
        for name, value in {"@DIR@": work, "@MOCK_PORT@": mock_port, "@CACHE_PORT@": cache_port, "@RETURN_PORT@": return_port,
                            "@CACHE_TLS@": cache_tls, "@RETURN_LOCATIONS@": nginx_return_locations(answers)}.items():
            conf = conf.replace(name, str(value))
        open(os.path.join(work, "nginx.conf"), "w").write(conf)
        processes.append(subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf"), "-p", work, "-g", "daemon off;"], stdout=log, stderr=log))
        wait_for(cache_port)

        # Each target with whether it is a gemcache (measured on the kind's request, variants and all).
        targets = [("gemcache", gemcache_port, True)]
        for index, other in enumerate(args.compare, start=1):
            *assignments, binary = shlex.split(other)
            settings = dict(assignment.split("=", 1) for assignment in assignments)
            port = args.base_port + 10 + index
            start_gemcache(os.path.abspath(binary), work, f"data-{index}", mock_port, port, processes, log, settings)
            targets.append((" ".join(assignments + [binary]), port, True))
        if args.tls:
            config = os.path.join(work, "tls.conf")
            open(config, "w").write(f"listen:\n  tls: {{cert_file: {work}/cert.pem, key_file: {work}/key.pem}}\n")
            start_gemcache(args.bin, work, "data-tls", mock_port, gemcache_tls_port, processes, log, config=config)
            targets.append(("gemcache, HTTPS", gemcache_tls_port, True))
        gemcache_ports = [port for _, port, _ in targets]
        targets += [("nginx proxy_cache", cache_port, False), ("nginx return 200", return_port, False)]
        if args.tls:
            targets.append(("nginx proxy_cache, HTTPS", cache_tls_port, False))

        for name in kinds:
            warm(name, KINDS[name], answers[name][1], gemcache_ports, cache_port, return_port)

        if not args.no_litellm:
            start_litellm(os.path.abspath(args.litellm_venv), work, mock_port, litellm_port, processes, log)
            litellm_pids = process_tree(processes[-1].pid)
            pause(litellm_pids, True)
        connection_counts = [int(c) for c in args.connections.split(",")]
        load_before = open("/proc/loadavg").read().split()[:3]
        results = {}  # (kind, connections) -> target -> the wrk result of each round, in the order they ran
        series = itertools.count(1)  # a new one for every wrk run, so that variants never repeat across runs
        for round_index in range(args.rounds):
            for c in connection_counts:
                for kind_name in kinds:
                    kind = KINDS[kind_name]
                    runs = results.setdefault((kind_name, c), {})
                    # Each round starts with another target: the first of a round measured up to 10 % low.
                    for name, port, is_gemcache in targets[round_index % len(targets):] + targets[:round_index % len(targets)]:
                        request = kind if is_gemcache else kind.plain
                        runs.setdefault(name, []).append(wrk_kind(port, c, args.duration, request, args.pace_ms, next(series)))
                    if kind_name == "generate" and not args.no_litellm:
                        pause(litellm_pids, False)
                        runs.setdefault("LiteLLM proxy, cache on", []).append(wrk(litellm_port, c, args.duration, LITELLM_PATH, "litellm.lua"))
                        pause(litellm_pids, True)
                    for name, rounds in runs.items():
                        print(f"round {round_index + 1} c={c} {kind_name} {name}: {rounds[-1]}", file=sys.stderr)
        load_after = open("/proc/loadavg").read().split()[:3]
        gemcache_rss = rss_mib(gemcache.pid)
        litellm_rss = "" if args.no_litellm else f"; LiteLLM RSS (2 workers and their parent) {tree_rss_mib(processes[-1].pid):.0f} MiB"

        print(f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
              f"{args.rounds} alternating rounds x {args.duration} s per kind and target, wrk -t2"
              f"{f', each connection pausing {args.pace_ms} ms before every request' if args.pace_ms else ''}; gemcache RSS after the run {gemcache_rss:.0f} MiB{litellm_rss}.")
        for c in connection_counts:
            print()
            print("| connections | kind | target | req/s (median) | ratio to nginx proxy_cache (HTTPS rows: over HTTPS) | p50 ms | p99 ms | p99 per round ms | non-2xx |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for kind_name in kinds:
                runs = results[(kind_name, c)]
                for name, rounds in runs.items():
                    bar = statistics.median(r["rps"] for r in runs["nginx proxy_cache, HTTPS" if name.endswith("HTTPS") else "nginx proxy_cache"])
                    rps = statistics.median(r["rps"] for r in rounds)
                    per_round = " / ".join(f"{r['p99']:.2f}" for r in rounds)
                    print(f"| {c} | {kind_name} | {name} | {rps:,.0f} | {ratio(rps, bar)} | {statistics.median(r['p50'] for r in rounds):.2f} | "
                          f"{statistics.median(r['p99'] for r in rounds):.2f} | {per_round} | "
                          f"{sum(r['non2xx'] for r in rounds)} |")
        if "variant" in kinds:
            print()
            print("variant: every gemcache request carries a body never sent before that normalizes to the stored request "
                  "(a first-seen equivalent variant); nginx, which has no notion of equivalent requests, answers the plain "
                  "generate request in its rows.")
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gemcache_port}/_gemcache/stats"))
        print()
        print(f"gemcache stats after the run: requests {stats.get('requests')}, hits {stats.get('hits')}, misses {stats.get('misses')}, "
              f"upstream_requests {stats.get('upstream_requests')}.")
    finally:
        pause(litellm_pids, False)  # so that it can stop when asked
        stop_all(processes, work)


if __name__ == "__main__":
    main()
