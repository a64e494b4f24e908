#!/usr/bin/env python3
"""A short, realistic workload against a gemcache proxy, then what the cache saved.

    scripts/demo-load.py http://127.0.0.1:8080 [--key KEY]

Three "services" share the proxy: a support bot asking the same questions in slightly different
forms (key order, snake_case fields, whitespace: one entry each), a summarizer streaming answers,
and a search indexer embedding documents and counting tokens, each under its own namespace; 8
requests at a time, so identical requests also arrive together (coalesced). The numbers are read from
the stats of the run's window (`/_gemcache/stats?since=<the run's start>`), as a load test reads
its own: other traffic before the run's first minute is not in them. Run by `make demo`
(scripts/demo.sh) and by the `demo-load` service of docker-compose.yml. Standard library only.
"""
import argparse
import concurrent.futures
import datetime
import json
import sys
import urllib.parse
import urllib.request
from collections import Counter

QUESTIONS = [
    "How do I reset my password?",
    "What are your opening hours?",
    "Can I change my delivery address after ordering?",
    "How do I cancel my subscription?",
    "Do you ship to Canada?",
    "Where is my order?",
]
ARTICLES = [
    "LMDB is a memory-mapped key-value store with ACID transactions and readers that never block writers.",
    "HTTP caching lets a proxy answer repeated requests without asking the origin server again.",
    "The Gemini API free tier limits requests per minute, tokens per minute and requests per day per project.",
]
DOCUMENTS = ["refund policy", "shipping rates", "password reset guide", "opening hours", "privacy notice"]


def workload():
    """The requests, as (namespace, path, body), in the order a day of traffic might send them."""
    flash, lite, embed = "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-embedding-001"
    requests = []
    for round_ in range(4):
        for question in QUESTIONS:
            # The same question as three clients write it: all three share one cache entry.
            variants = [
                {"contents": [{"role": "user", "parts": [{"text": question}]}], "generationConfig": {"temperature": 0.2}},
                {"generation_config": {"temperature": 0.20}, "contents": [{"parts": [{"text": f"  {question}\r\n"}], "role": "user"}]},
                {"contents": [{"parts": [{"text": question}], "role": "user"}], "generationConfig": {"temperature": 2e-1}},
            ]
            requests.append(("support-bot", f"/v1beta/models/{flash}:generateContent", variants[round_ % 3]))
    for _ in range(3):
        for article in ARTICLES:
            body = {"contents": [{"role": "user", "parts": [{"text": f"Summarize in one sentence: {article}"}]}]}
            requests.append(("summarizer", f"/v1beta/models/{lite}:streamGenerateContent?alt=sse", body))
            requests.append(("summarizer", f"/v1beta/models/{lite}:countTokens", body))
    for _ in range(3):
        for document in DOCUMENTS:
            requests.append(("indexer", f"/v1beta/models/{embed}:embedContent", {"content": {"parts": [{"text": document}]}}))
    return requests


def call(base, key, namespace, path, body=None):
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode())
    request.add_header("x-goog-api-key", key)
    request.add_header("x-gemcache-namespace", namespace)
    if body is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = response.read()
        return response.headers.get("x-gemcache", "-"), payload


def stats(base, since):
    """The stats document of the window from `since` (an RFC 3339 time) to now."""
    with urllib.request.urlopen(base + "/_gemcache/stats?" + urllib.parse.urlencode({"since": since}), timeout=10) as response:
        return json.load(response)


def percent(value):
    return "-" if value is None else f"{value:.1f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the proxy, e.g. http://127.0.0.1:8080")
    parser.add_argument("--key", default="demo-key", help="API key to send (the mock upstream accepts any)")
    args = parser.parse_args()
    base = args.url.rstrip("/")

    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests = workload()
    print(f"replaying {len(requests)} requests (support bot, summarizer, indexer), 8 at a time...")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = Counter(status for status, _ in pool.map(lambda r: call(base, args.key, *r), requests))
    print("  " + ", ".join(f"{name} {count}" for name, count in outcomes.most_common()))
    after = stats(base, started)

    def delta(name, model=None):
        return (after.get("models", {}).get(model, {}) if model else after).get(name) or 0

    sent, upstream = delta("requests"), delta("upstream_requests")
    saved = delta("hits") + delta("coalesced")
    answered = saved + delta("misses")
    rows = [
        ("", "without gemcache", "with gemcache"),
        ("calls to the Gemini API", str(sent), str(upstream)),
        ("hit ratio", "-", percent(100 * saved / answered if answered else None)),
    ]
    for model in sorted(after.get("models", {})):
        current = after["models"][model]
        calls = delta("upstream_requests", model)
        rows.append((f"{model}: calls", str(calls + delta("saved_requests", model)), str(calls)))
        rpd = (current.get("free_tier") or {}).get("rpd")
        label = f"{model}: daily quota used" + (f" (RPD {rpd})" if rpd else " (no limit known)")
        rows.append((label, percent(current.get("rpd_without_cache_pct")), percent(current.get("rpd_used_pct"))))
    for namespace, counts in sorted(after.get("namespaces", {}).items()):
        rows.append((f"namespace {namespace or '(none)'}: calls", str(counts["requests"]), str(counts["upstream_requests"])))
    width = max(len(row[0]) for row in rows)
    print()
    for name, without, with_cache in rows:
        print(f"  {name:<{width}}  {without:>16}  {with_cache:>13}")
    print(f"\n  window {after.get('since')} to {after.get('until')} (GET /_gemcache/stats?since={started})")
    print(f"  saved {delta('saved_tokens')} tokens; quota day {after.get('quota_day')} (resets {after.get('quota_day_resets_at')})")


if __name__ == "__main__":
    try:
        main()
    except OSError as error:
        sys.exit(f"demo-load: {error}")
