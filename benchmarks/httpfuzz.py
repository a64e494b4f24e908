#!/usr/bin/env python3
"""A black-box mutation fuzzer over gemcache's HTTP front (issue 15, "How to make it stay fixed").

Starts the built mock upstream, a canary TCP listener that must never receive a connection, and
`gemcache serve` in front of the mock, once in passthrough and once in managed mode, all on
127.0.0.1. Sends raw HTTP/1.x bytes over sockets: the requests of benchmarks/fuzz/http-seeds/
mutated toward the threats of issue 15 (request targets, Host and Forwarded headers naming the
canary; absolute-form, authority-form, CONNECT; numeric extremes in X-Gemcache-TTL, Cache-Control,
Content-Length, chunk sizes and JSON; two credentials; chunked framing; truncated bodies; long and
malformed heads; pipelining; byte flips). Asserts after every exchange and every --check-every seconds:
- the proxy runs: it never exits (a Swift trap), its log never says "Fatal error", /healthz answers;
- the canary got no connection: nothing goes anywhere but the configured upstream;
- every path the mock upstream received is in origin form (one leading "/", no "//", "@", "\\");
- at the end, no client key, proxy token or upstream key is in the proxy's log.
A failed assertion is a finding: it is saved as JSON (kind, detail, the inputs that may have caused
it, most likely first, each as text and base64, and the proxy's log after a trap) in --findings; a
dead proxy is restarted and the run goes on until its time is up; the exit status is then 1. Prints
executions, the answers seen (status and X-Gemcache) and the findings, with the seconds each kind
took to appear first.

Input n of a mode is a function of --rng-seed, the mode, n, the seed corpus and the ports alone, so a
run is reproducible input by input (--jobs connections run at once, so their interleaving is not).
--replay sends a finding's inputs again, one at a time, oldest first, to fresh processes with Swift's
backtraces on (off while fuzzing: a crashed debug build takes 10-20 s to write one); if the finding
recurs, it then tries each input alone on fresh processes, to name the one that causes it.

    benchmarks/httpfuzz.py [--bin .build/debug/gemcache] [--seconds 20] [--jobs 4] [--rng-seed 15]
    benchmarks/httpfuzz.py --replay .build-fuzz/http-findings/FILE.json

`make test` runs the default bounded run (20 s of fuzzing, split between the two modes; about 30 s in
all). A long run, on a release build so that more inputs go through (the same --rng-seed starts with
the same inputs and goes on to new ones; another seed explores others):

    swift build -c release --product gemcache
    benchmarks/httpfuzz.py --bin .build/release/gemcache --seconds 3600 --jobs 8
"""
import argparse
import base64
import collections
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "fuzz", "http-seeds")

CLIENT_KEY = "fuzz-client-key"      # passthrough: the Gemini key clients send (the mock accepts it)
UPSTREAM_KEY = "fuzz-upstream-key"  # managed: the team's key, which only the proxy holds
PROXY_TOKEN = "fuzz-proxy-token"    # managed: what clients present instead
SECRETS = {CLIENT_KEY: "<client key>", UPSTREAM_KEY: "<upstream key>", PROXY_TOKEN: "<proxy token>"}
MODES = {
    "passthrough": {"credential": CLIENT_KEY, "env": {}},
    "managed": {"credential": PROXY_TOKEN, "env": {
        "GEMCACHE_AUTH_MODE": "managed", "GEMINI_API_KEY": UPSTREAM_KEY, "GEMCACHE_CLIENT_TOKENS": PROXY_TOKEN}},
}
SAVED_PER_KIND = 3  # finding files per mode and kind (traps: and cause); later ones are counted only


def redact(text):
    for secret, name in SECRETS.items():
        text = text.replace(secret, name)
    return text


# MARK: Requests and their mutations

class Request:
    """One HTTP/1.x request, kept in parts so that mutations can aim at each; `bytes()` frames it."""

    def __init__(self, method, target, version, headers, body, chunked):
        self.method, self.target, self.version = method, target, version
        self.headers = headers          # raw "Name: value" lines (latin-1 text: any byte is one char)
        self.body = body                # the payload, unframed
        self.chunked = chunked
        self.chunks = None              # chunk sizes (their sum is len(body)); None: one chunk
        self.size_lines = {}            # chunk index -> the size line to send instead of its hex size
        self.trailer = ""
        self.auto_length = True         # Content-Length follows the body unless a mutation set it
        self.eol = "\r\n"
        self.cut = 0                    # bytes dropped from the end of the framed body
        self.extra = b""                # bytes sent after the framed body

    def header_index(self, name):
        return next((i for i, line in enumerate(self.headers) if line.split(":", 1)[0].strip().lower() == name.lower()), None)

    def set_header(self, name, value):
        index = self.header_index(name)
        if index is None:
            self.headers.append(f"{name}: {value}")
        else:
            self.headers[index] = f"{name}: {value}"

    def remove_header(self, name):
        self.headers = [line for line in self.headers if line.split(":", 1)[0].strip().lower() != name.lower()]

    def framed_body(self):
        if not self.chunked:
            return self.body
        sizes = self.chunks or ([len(self.body)] if self.body else [])
        out, offset = [], 0
        for index, size in enumerate(sizes):
            line = self.size_lines.get(index, format(size, "x"))
            out.append(line.encode("latin-1") + b"\r\n" + self.body[offset:offset + size] + b"\r\n")
            offset += size
        out.append(self.size_lines.get(len(sizes), "0").encode("latin-1") + b"\r\n" + self.trailer.encode("latin-1") + b"\r\n")
        return b"".join(out)

    def __bytes__(self):
        if self.auto_length and not self.chunked and (self.body or self.header_index("Content-Length") is not None):
            self.set_header("Content-Length", str(len(self.body)))
        head = f"{self.method} {self.target} {self.version}{self.eol}" + "".join(line + self.eol for line in self.headers) + self.eol
        body = self.framed_body()
        return head.encode("latin-1") + body[:len(body) - self.cut] + self.extra


def load_seeds(directory):
    seeds = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".http"):
            with open(os.path.join(directory, name), encoding="utf-8") as file:
                seeds.append((name, file.read()))
    if not seeds:
        sys.exit(f"httpfuzz: no .http seeds in {directory}")
    return seeds


def instantiate(text, context, nonce):
    head, _, body = text.partition("\n\n")
    body = body[:-1] if body.endswith("\n") else body
    fill = {"{HOST}": f"127.0.0.1:{context.proxy_port}", "{KEY}": context.credential, "{NONCE}": nonce}
    for placeholder, value in fill.items():
        head, body = head.replace(placeholder, value), body.replace(placeholder, value)
    body = body.encode()
    lines = head.replace("{LEN}", str(len(body))).split("\n")
    method, target, version = lines[0].split(" ")
    chunked = any(re.match(r"(?i)transfer-encoding:.*chunked", line) for line in lines[1:])
    return Request(method, target, version, lines[1:], body, chunked)


# Numbers: the edges of the integer types (and of their products with 1000, since times are kept in
# milliseconds) first, then other malformed or boundary forms.
EDGE_NUMBERS = ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
                "9223372036854776", "9223372036854775", "4611686018427387904", "1000000000000000000",
                "18446744073709551615", "18446744073709551616", "99999999999999999999999999999",
                "2147483647", "2147483648", "2147483649", "4294967296", "315360000", "315360001"]
OTHER_NUMBERS = ["0", "-0", "-1", "1", "00000000000000000000000000001", "+1", " 7 ", "1e300", "1e309", "-1e300",
                 "1.5", "0x10", "inf", "Infinity", "NaN", "", "\uff11\uff12".encode().decode("latin-1"), "1,2", "1 2"]
CHUNK_SIZES = ["ffffffffffffffff", "7fffffffffffffff", "8000000000000000", "10000000000000000", "-1", "0x10",
               "+10", " 10", "10 ", "000000000000000000000000000010", "1;x=y", "1 ;x", "fffffff", "g", "", "0"]
CACHE_DIRECTIVES = ["max-age", "max-stale", "min-fresh", "s-maxage", "stale-if-error", "stale-while-revalidate"]


def number(rng):
    return rng.choice(EDGE_NUMBERS if rng.random() < 0.6 else OTHER_NUMBERS)


def canary_target(rng, c, p, tag):
    """A request target that names the canary (c) in one of the ways a URL can; p is the mock's port.
    Half are `userinfo@authority` forms: appended to the base URL, they make the base's host userinfo."""
    a = f"127.0.0.1:{c}"
    if rng.random() < 0.5:
        userinfo = rng.choice(["*", "x", "", ":", "a:b", "*:*", "%2A", "-", ".", "127.0.0.1", "~", "!", "$", "'"])
        return f"{userinfo}@{a}" + rng.choice([f"/{tag}", f"/{tag}", "", f"/{tag}?alt=sse", f"?{tag}", f"#{tag}"])
    return rng.choice([
        f"{a}@{a}/{tag}", f"//{a}/{tag}", f"///{a}/{tag}", f"/\\{a}/{tag}", f"\\\\{a}/{tag}", f"http://{a}/{tag}",
        f"HTTP://{a}/{tag}", f"http:{a}/{tag}", f"https://{a}/{tag}", f"http://127.0.0.1:{p}@{a}/{tag}", f"ws://{a}/{tag}", a,
        f"localhost:{c}", f"%2F%2F{a}/{tag}", f"/%2F{a}/{tag}", f"%40{a}/{tag}", f"/v1beta/models/x@{a}/{tag}",
        f"?@{a}/{tag}", f"#@{a}/{tag}", f"\t*@{a}/{tag}", f"*@{a}/{tag}?key=", f"@{a}:{c}/{tag}", "*"])


def target_fragments(context, tag):
    a = f"127.0.0.1:{context.canary_port}"
    return ["@", "\\", "//", "%2F", "%2f", "%40", "%5C", "..", "/../", "%2e%2e/", f"@{a}", f"@{a}/{tag}",
            f"//{a}/{tag}", "#", "?", f"&key={context.credential}", "%00", "%", " ", "\t", "\x00", ";", ":", "*", "\u00e9"]


def mutate_target(rng, request, context, tag):
    a = f"127.0.0.1:{context.canary_port}"
    path = request.target
    choice = rng.randrange(8)
    if choice <= 3:
        request.target = canary_target(rng, context.canary_port, context.mock_port, tag)
    elif choice == 4:
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(request.target))
            request.target = request.target[:at] + rng.choice(target_fragments(context, tag)) + request.target[at:]
    elif choice == 5:  # absolute-form, naming the canary, the upstream or the proxy itself
        port = rng.choice([context.canary_port, context.mock_port, context.proxy_port])
        request.target = f"{rng.choice(['http', 'https', 'HTTP', 'ws'])}://127.0.0.1:{port}{path}"
    elif choice == 6:  # authority-form
        request.method = rng.choice(["CONNECT", "CONNECT", request.method])
        request.target = rng.choice([a, f"{a}{path}", f"127.0.0.1:{context.mock_port}", f"localhost:{context.canary_port}"])
        if request.method == "CONNECT" and rng.random() < 0.5:
            request.body, request.chunked = b"", False
    else:  # the canary in the query, or a path that starts elsewhere than "/"
        request.target = rng.choice([f"{path}{'&' if '?' in path else '?'}url=http://{a}/{tag}", path.lstrip("/"),
                                     "/" + path, path.replace("/", "\\"), path.replace("/", "%2F")])


def mutate_host(rng, request, context, tag):
    a = f"127.0.0.1:{context.canary_port}"
    values = [a, f"{a}/{tag}", f"x@{a}", f"http://{a}", f"localhost:{context.canary_port}", "", f"{a}, 127.0.0.1"]
    for _ in range(rng.randint(1, 3)):
        name, value = rng.choice([
            ("Host", rng.choice(values)), ("X-Forwarded-Host", rng.choice(values)), ("X-Forwarded-Server", rng.choice(values)),
            ("Forwarded", f"host={a};proto=http"), ("Forwarded", f'for=192.0.2.1;host="{a}";proto=https'),
            ("X-Forwarded-Proto", rng.choice(["http", "https", "gopher"])), ("X-Forwarded-Port", str(context.canary_port)),
            ("X-Forwarded-Prefix", f"//{a}"), ("X-Original-URL", f"//{a}/{tag}"), ("X-Rewrite-URL", f"http://{a}/{tag}"),
            ("X-Original-Host", a), ("X-Host", a)])
        if name == "Host" and rng.random() < 0.5:
            request.headers.append(f"Host: {value}")  # a second Host
        else:
            request.set_header(name, value)


def mutate_number(rng, request, context, tag):
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(["ttl", "ttl", "ttl", "cache", "cache", "cache", "length", "chunk", "json", "keepalive"])
        value = number(rng)
        if field == "ttl":
            request.set_header("X-Gemcache-TTL", value)
        elif field == "cache":
            directive = f"{rng.choice(CACHE_DIRECTIVES)}={rng.choice([value, value, f'{chr(34)}{value}{chr(34)}'])}"
            request.set_header("Cache-Control", rng.choice([directive, f"no-cache, {directive}", f"{directive}, only-if-cached"]))
        elif field == "length":
            request.auto_length = False
            request.set_header("Content-Length", value)
        elif field == "chunk":
            request.chunked = True
            request.remove_header("Content-Length")
            request.set_header("Transfer-Encoding", "chunked")
            request.size_lines[rng.randint(0, 1)] = rng.choice(CHUNK_SIZES)
        elif field == "json" and request.body.startswith(b"{"):
            name = rng.choice(["maxOutputTokens", "temperature", "candidateCount", "topK", "seed", "thinkingBudget"])
            config = f'"generationConfig":{{"{name}":{value or 0}}},'.encode("latin-1")
            request.body = b"{" + config + request.body[1:]
        else:
            request.set_header("Keep-Alive", f"timeout={value}, max={value}")


def mutate_credentials(rng, request, context, tag):
    key = context.credential
    value = rng.choice([key, key, "fuzz-other-key", key + "x", "", f"{key} ", f"{key},{key}", "k" * 9000,
                        "\u00e9t\u00e9", f"{key}\r\nX-Gemcache-TTL: 9223372036854775807"])
    separator = "&" if "?" in request.target else "?"
    choice = rng.randrange(9)
    if choice == 0:
        request.headers.append(f"x-goog-api-key: {value}")
    elif choice == 1:
        request.target += f"{separator}key={value}"
    elif choice == 2:
        request.target += f"{separator}key={key}&key={value}"
    elif choice == 3:
        request.headers.append(f"Authorization: Bearer {value}")
    elif choice == 4:
        request.target += f"{separator}{rng.choice(['access_token', 'KEY', 'k%65y', 'key%3D', 'key[]'])}={value}"
    elif choice == 5:
        request.headers.append(rng.choice([f"Authorization: {value}", f"authorization: bearer {value}",
                                           "Authorization: Basic Zm9vOmJhcg==", f"X-Goog-Api-Key: {value}"]))
    elif choice == 6:
        for name in ("x-goog-api-key", "Authorization"):
            request.remove_header(name)
        request.target = re.sub(r"[?&]key=[^&]*", "", request.target)
    elif choice == 7:
        request.set_header("x-goog-api-key", value)
    else:
        request.set_header("x-goog-api-key", key)
        request.target += f"{separator}key={value}"
        request.headers.append(f"Authorization: Bearer {value}")


def mutate_framing(rng, request, context, tag):
    choice = rng.randrange(9)
    if choice <= 1 or (choice <= 3 and not request.chunked):
        request.chunked = True
        request.remove_header("Content-Length")
        request.set_header("Transfer-Encoding", "chunked")
        sizes, left = [], len(request.body)
        while left > 0:
            sizes.append(min(left, rng.choice([1, 2, 7, 16, 100, 4096])))
            left -= sizes[-1]
        request.chunks = sizes
        if rng.random() < 0.3:
            request.size_lines[rng.randrange(len(sizes) + 1)] = rng.choice(["1;ext=x", "0;a=b", "5 ", "A", "a\t"]) if sizes else "0;x"
        if rng.random() < 0.3:
            request.trailer = rng.choice([f"x-goog-api-key: {context.credential}\r\n", "X-Gemcache-TTL: 9223372036854775807\r\n",
                                          f"Host: 127.0.0.1:{context.canary_port}\r\n", "Bad Trailer\r\n"])
    elif choice == 2:
        request.cut = rng.randint(1, max(1, len(request.framed_body())))
    elif choice == 3:
        request.headers.append(f"Content-Length: {len(request.body) + rng.choice([1, -1, 100])}")  # two lengths
    elif choice == 4:
        request.set_header("Transfer-Encoding", rng.choice(["chunked, chunked", "gzip, chunked", "identity", "Chunked",
                                                            " chunked", "chunked\x0b", "chunked, identity", "xchunked"]))
        if rng.random() < 0.5:
            request.chunked = not request.chunked
    elif choice == 5:
        request.extra = rng.choice([b"\r\n", b"0\r\n\r\n", b"GET /healthz HTTP/1.1\r\n\r\n", b"x" * rng.randint(1, 300),
                                    f"GET //127.0.0.1:{context.canary_port}/{tag} HTTP/1.1\r\n\r\n".encode()])
    elif choice == 6:
        request.set_header("Expect", rng.choice(["100-continue", "100-Continue", "x"]))
    elif choice == 7:
        request.version = "HTTP/1.0"
        request.set_header("Connection", "keep-alive")
    else:
        request.body = request.body[:rng.randint(0, len(request.body))]


def mutate_head(rng, request, context, tag):
    choice = rng.randrange(9)
    if choice == 0:
        request.version = rng.choice(["HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 ", "", "HTTP/1.10"])
    elif choice == 1:
        request.method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PRI",
                                     "post", "G ET", "X" * 40])
    elif choice == 2:
        request.eol = "\n"
    elif choice == 3:
        index = rng.randrange(len(request.headers)) if request.headers else None
        if index is not None:
            name, _, value = request.headers[index].partition(":")
            request.headers[index] = rng.choice([f"{name} :{value}", f"{name}:{value.strip()}", f" {name}:{value}",
                                                 f"{name}:{value}\r\n continued", f"{name}:{value}\x00x", f"{name}:{value}\rX: y",
                                                 f"{name.upper()}:{value}", f"{name}\u00e9:{value}", f":{value}"])
    elif choice == 4:  # around the fast path's 16 KiB head limit
        size = rng.choice([16 << 10, 64 << 10, 8 << 10]) + rng.randint(-64, 64)
        head = len(bytes(request)) - len(request.framed_body())
        request.headers.append("X-Pad: " + "p" * max(0, size - head - 9))
    elif choice == 5:
        request.headers += [f"X-Many-{n}: {n}" for n in range(rng.choice([100, 1000]))]
    elif choice == 6:
        request.set_header("Connection", rng.choice(["close", "keep-alive", "Upgrade", "close, Upgrade", "TE"]))
        if rng.random() < 0.5:
            request.set_header("Upgrade", rng.choice(["websocket", "h2c", "HTTP/2.0"]))
    elif choice == 7:
        request.set_header("X-Gemcache-Namespace", rng.choice(["", "a" * 129, "../x", "ns\u00e9", "ns,other", "a:b/c.d-e_f"]))
    else:
        request.set_header("Accept-Encoding", rng.choice(["gzip", "gzip;q=0, identity", "*", "x" * 200]))


def mutate_body(rng, request, context, tag):
    body = request.body
    choice = rng.randrange(7)
    if choice == 0 and body:
        request.body = body[:rng.randrange(len(body))]
    elif choice == 1:
        request.body = body.replace(b'"text":"', b'"text":"a' + "\u0301\u0316".encode() * rng.choice([10, 500, 2000]), 1)
    elif choice == 2:
        request.body = body.replace(b'"text":"', b'"text":"' + bytes([rng.choice([0x80, 0xc3, 0xed, 0xff])]), 1)
    elif choice == 3:
        depth = rng.choice([64, 500, 3000])
        request.body = b'{"contents":' + b"[" * depth + b"]" * depth + b"}"
    elif choice == 4 and b'"requests":[' in body:
        start = body.index(b'"requests":[') + len(b'"requests":[')
        item = body[start:body.index(b"}},", start) + 2]
        request.body = body[:start] + b",".join([item] * rng.choice([101, 150, 2000])) + b"]}"
    elif choice == 5:
        request.body = rng.choice([b"", b"{}", b"null", b"[]", b'{"contents":[]}', body + body, b'{"contents":1e999}'])
    else:
        request.body = body.replace(b"{", b'{"contents":null,', 1)


FAMILIES = [(mutate_target, 4), (mutate_number, 4), (mutate_credentials, 2), (mutate_framing, 2),
            (mutate_host, 1), (mutate_head, 1), (mutate_body, 1)]


def mutate_bytes(rng, data, context):
    data = bytearray(data)
    tokens = [b"\r\n", b"\r\n\r\n", b"\n", b"@", b"\\", b"//", b"0\r\n\r\n", b":", b" ", b"\x00", b"chunked",
              f"127.0.0.1:{context.canary_port}".encode(), b"9223372036854775807", b"ffffffffffffffff"]
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        at = rng.randrange(len(data))
        choice = rng.randrange(5)
        if choice == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1:
            data[at] = rng.randrange(256)
        elif choice == 2:
            data[at:at] = rng.choice(tokens)
        elif choice == 3:
            del data[at:at + rng.randint(1, 16)]
        else:
            data[at:at] = data[at:at + rng.randint(1, 64)]
    return bytes(data)


class Case:
    """One connection's worth of input: bytes sent in one or a few writes, and what answers to expect."""

    def __init__(self, index, data, splits, methods):
        self.index, self.data, self.splits, self.methods = index, data, splits, methods

    def record(self, outcome=None):
        return {"index": self.index, "outcome": outcome, "text": self.data.decode("latin-1"),
                "base64": base64.b64encode(self.data).decode(), "splits": self.splits, "methods": self.methods}


def generate(seed, mode, index, seeds, context):
    rng = random.Random(f"{seed}:{mode}:{index}")
    tag = f"fz{index}"
    requests = []
    for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):  # pipelining: several requests in one write
        _, text = rng.choice(seeds)
        request = instantiate(text, context, "0" if rng.random() < 0.5 else f"n{rng.getrandbits(40):x}")
        if rng.random() < 0.9:
            family = rng.choices([f for f, _ in FAMILIES], weights=[w for _, w in FAMILIES])[0]
            for _ in range(rng.randint(1, 2)):
                family(rng, request, context, tag)
            if rng.random() < 0.25:
                rng.choice(FAMILIES)[0](rng, request, context, tag)
            if family is mutate_number and rng.random() < 0.5:
                requests.append(request)  # numbers are read when storing and when looking up: the second finds the first
        requests.append(request)
    data = b"".join(bytes(request) for request in requests)
    if rng.random() < 0.1:
        data = mutate_bytes(rng, data, context)
    splits = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 3)))) if rng.random() < 0.1 and len(data) > 1 else []
    return Case(index, data, splits, [request.method for request in requests])


# MARK: Talking to the proxy

def parse_answer(buffer, method, closed):
    """(status, headers, rest) when `buffer` starts with a whole answer, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    if not match:
        return (0, {}, b"") if closed or len(buffer) > end else None
    status = int(match.group(1))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    rest = buffer[end + 4:]
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return status, headers, rest
    if "chunked" in headers.get("transfer-encoding", "").lower():
        at = 0
        while True:
            line_end = rest.find(b"\r\n", at)
            if line_end < 0:
                return None
            try:
                size = int(rest[at:line_end].split(b";")[0], 16)
            except ValueError:
                return status, headers, b""
            if size == 0:
                trailer_end = rest.find(b"\r\n\r\n", line_end)
                return (status, headers, rest[trailer_end + 4:]) if trailer_end >= 0 else None
            at = line_end + 2 + size + 2
            if at > len(rest):
                return None
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            return status, headers, b""
        return (status, headers, rest[length:]) if len(rest) >= length else None
    return (status, headers, b"") if closed else None


def exchange(port, case, timeout):
    """Sends the case on a new connection; returns (answers as labels, outcome)."""
    deadline = time.monotonic() + timeout
    answers, buffer = [], b""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as error:
        return answers, f"connect failed: {error.__class__.__name__}"
    with sock:
        try:
            start = 0
            for split in case.splits + [len(case.data)]:
                sock.sendall(case.data[start:split])
                start = split
                if split < len(case.data):
                    time.sleep(0.01)
        except OSError:
            pass  # the proxy may answer and close before reading everything
        methods = list(case.methods)
        while methods:
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
            except socket.timeout:
                return answers, "timeout"
            except OSError:
                return answers, "reset"
            buffer += chunk
            while methods and (parsed := parse_answer(buffer, methods[0], not chunk)):
                status, headers, buffer = parsed
                if status != 100:
                    answers.append(f"{status} {headers.get('x-gemcache', '-')}" if status else "not HTTP")
                    methods = [] if status == 101 else methods[1:]
            if not chunk and methods:
                return answers, "closed"
    return answers, "answered"


class Canary:
    """A listener on loopback that no request may ever reach; it records what reaches it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(1)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 8192:
                        chunk = connection.recv(8192)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                with self.lock:  # before answering, so that the exchange that caused it sees it
                    self.received.append(data.decode("latin-1"))
                try:
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\ncanary\n")
                except OSError:
                    pass

    def count(self):
        with self.lock:
            return len(self.received)


class Processes:
    """The mock upstream and `gemcache serve` in front of it, in one mode, in `work`."""

    def __init__(self, binary, work, mode, backtraces):
        self.binary, self.work, self.mode = binary, work, mode
        # A clean environment (no GEMCACHE_* or proxy variables of the caller's). Swift's backtracer
        # keeps a crashed debug build alive for 10-20 s: on only when replaying.
        backtrace = "enable=yes,interactive=no,threads=crashed,registers=none,images=none" if backtraces else "enable=no"
        self.environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_LEVEL": "info", **MODES[mode]["env"],
                            "SWIFT_BACKTRACE": backtrace}
        self.mock = self.serve = None
        self.serve_logs = []

    def start(self):
        mock_log = os.path.join(self.work, f"mock-{self.mode}.log")
        self.mock = subprocess.Popen([self.binary, "mock-upstream", "--port", "0", "--valid-keys", f"{CLIENT_KEY},{UPSTREAM_KEY}"],
                                     cwd=self.work, env=self.environment, stdout=open(mock_log, "w"), stderr=subprocess.STDOUT)
        self.mock_port = int(self.wait_for_log(self.mock, mock_log, r"mock upstream listening on [\d.]+:(\d+)"))
        self.start_serve()

    def start_serve(self):
        log = os.path.join(self.work, f"serve-{self.mode}-{len(self.serve_logs)}.log")
        self.serve_logs.append(log)
        self.serve = subprocess.Popen(
            [self.binary, "serve", "--port", "0", "--upstream", f"http://127.0.0.1:{self.mock_port}",
             "--data", os.path.join(self.work, f"store-{self.mode}")],
            cwd=self.work, env=self.environment, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.port = int(self.wait_for_log(self.serve, log, r"listen\.port=(\d+)"))

    @staticmethod
    def wait_for_log(process, log, pattern, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, open(log, errors="replace").read())
            if match:
                return match.group(1)
            if process.poll() is not None:
                break
            time.sleep(0.05)
        process.kill()
        raise SystemExit(f"httpfuzz: {' '.join(process.args[:2])} did not start:\n{redact(open(log, errors='replace').read())}")

    def serve_log(self):
        with open(self.serve_logs[-1], errors="replace") as file:
            return file.read()

    def stop_serve(self):
        self.terminate(self.serve)
        self.serve = None

    def stop(self):
        for process in (self.serve, self.mock):
            self.terminate(process)

    @staticmethod
    def terminate(process):
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def crash_summary(log, status):
    """How the proxy ended, and the lines of its log that say why and where: the fatal error, and
    the first frames of gemcache's own code when there is a backtrace."""
    how = (f"gemcache serve logged a fatal error" if status is None
           else f"gemcache serve exited on {signal.Signals(-status).name}" if status < 0 else f"gemcache serve exited with status {status}")
    lines = log.splitlines()
    why = [line.strip() for line in lines if "Fatal error" in line or line.startswith("*** Program crashed")]
    why += [line.strip() for line in lines if re.search(r" in gemcache at \S*/Sources/", line)][:3]
    return redact(f"{how}: " + (" | ".join(why) or "no message (an overflow prints none): --replay the finding for a backtrace"))[:3000]


class Context:
    """What the mutations need to know about the run: ports and the mode's credential."""

    def __init__(self, processes, canary, mode):
        self.proxy_port, self.mock_port = processes.port, processes.mock_port
        self.canary_port, self.credential = canary.port, MODES[mode]["credential"]


# MARK: The run

class ModeRun:
    """Fuzzes one mode: workers send cases and check after each exchange; the main thread checks
    every --check-every seconds and restarts the proxy when it died."""

    def __init__(self, args, mode, canary, make_cases, backtraces=False):
        """`make_cases(context)` gives the cases to send, once the processes run and their ports are known."""
        self.args, self.mode, self.canary, self.make_cases, self.backtraces = args, mode, canary, make_cases, backtraces
        self.lock = threading.Lock()
        self.ready = threading.Event()   # clear while the proxy is down
        self.wake = threading.Event()    # a worker saw the proxy die
        self.answers = collections.Counter()
        self.findings = collections.Counter()
        self.causes = collections.Counter()  # findings by kind, and traps also by how the proxy ended
        self.first_seen = {}
        self.saved = []
        self.in_flight = {}
        self.recent = collections.deque(maxlen=8)
        self.executions = self.restarts = 0
        self.canary_seen = canary.count()
        self.mock_paths = set()

    def run(self, seconds):
        self.work = tempfile.mkdtemp(prefix=f"gemcache-httpfuzz-{self.mode}-")
        self.processes = Processes(self.args.bin, self.work, self.mode, self.backtraces)
        try:
            self.processes.start()
            self.context = Context(self.processes, self.canary, self.mode)
            self.cases = self.make_cases(self.context)
            self.started = time.monotonic()
            self.deadline = self.started + seconds
            self.ready.set()
            workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.args.jobs)]
            for worker in workers:
                worker.start()
            while any(worker.is_alive() for worker in workers):
                self.wake.wait(self.args.check_every)
                self.wake.clear()
                self.check()
            self.elapsed = time.monotonic() - self.started
            time.sleep(1)  # a trap may follow the last exchange
            self.check()
        finally:
            self.processes.stop()
        for log in self.processes.serve_logs:
            text = open(log, errors="replace").read()
            for secret, name in SECRETS.items():
                line = next((line for line in text.splitlines() if secret in line), None)
                if line is not None:
                    self.finding("secret-in-log", f"{name} in the proxy's log: {redact(line)[:500]}", [])
        shutil.rmtree(self.work, ignore_errors=True)

    def worker(self):
        while True:
            self.ready.wait()
            with self.lock:
                case = None if time.monotonic() >= self.deadline else next(self.cases, None)
                if case is None:
                    return
                port = self.processes.port
                self.in_flight[case.index] = case
            answers, outcome = exchange(port, case, self.args.timeout)
            if outcome != "answered":
                time.sleep(0.1)  # a trap closes the connection: give the process the time to exit
            with self.lock:
                del self.in_flight[case.index]
                self.recent.append((case, outcome))
                self.executions += 1
                self.answers.update(answers or [f"no answer ({outcome})"])
                if self.processes.serve is None or self.processes.serve.poll() is not None:
                    self.ready.clear()
                    self.wake.set()
                self.check_canary(case)

    def suspects(self, likely=None):
        """The inputs that may have caused a finding, most likely first: `likely`, those the proxy
        dropped without an answer, those in flight, then the last few answered, newest first."""
        records = ([likely] if likely else []) + [case.record("in flight") for case in self.in_flight.values()]
        records += [case.record(outcome) for case, outcome in reversed(self.recent)]
        records.sort(key=lambda record: 0 if record is likely else 1 if record["outcome"] in ("closed", "reset") else 2)
        unique = {}
        for record in records:
            unique.setdefault(record["index"], record)
        return list(unique.values())

    def check_canary(self, case):
        """Called with the lock held, after every exchange."""
        count = self.canary.count()
        if count == self.canary_seen:
            return
        fresh = self.canary.received[self.canary_seen:count]
        self.canary_seen = count
        tags = {int(tag) for text in fresh for tag in re.findall(r"fz(\d+)", text)}
        named = [record for record in self.suspects() if record["index"] in tags]
        carried = " (carrying the upstream key)" if any(UPSTREAM_KEY in text for text in fresh) else ""
        heads = " || ".join(text.split("\r\n\r\n")[0] for text in fresh)
        detail = f"the canary on 127.0.0.1:{self.canary.port} received{carried}: {redact(heads)[:2000]}"
        self.finding("canary", detail, named or self.suspects(case.record("the exchange that saw it")))

    def check(self):
        """The proxy runs and answers, and the upstream got origin-form paths only; restarts a dead proxy."""
        if self.processes.mock.poll() is not None:
            raise SystemExit(f"httpfuzz: the mock upstream exited with status {self.processes.mock.returncode}")
        try:
            stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.processes.mock_port}/_mock/stats", timeout=15))
        except OSError as error:
            raise SystemExit(f"httpfuzz: the mock upstream's stats did not answer: {error}")
        with self.lock:
            for path in sorted(set(stats.get("paths", {})) - self.mock_paths):
                self.mock_paths.add(path)
                if not path.startswith("/") or path.startswith("//") or any(bad in path for bad in ("@", "\\", "://")):
                    self.finding("upstream-path", f"the upstream received the path {redact(path)!r}", self.suspects())
        if self.processes.serve is None:
            return  # died after the time was up: reported already
        log = self.processes.serve_log()
        if self.processes.serve.poll() is None and "Fatal error" not in log:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.processes.port}/healthz", timeout=15).read()
            except urllib.error.HTTPError:
                pass  # an answer: the proxy runs
            except OSError as error:
                time.sleep(0.5)  # a dying process resets connections before it is reaped
                if self.processes.serve.poll() is None:
                    with self.lock:
                        self.finding("unresponsive", f"/healthz did not answer (15 s at most): {error}", self.suspects())
                    return
            if self.processes.serve.poll() is None:
                return
        self.ready.clear()
        try:
            self.processes.serve.wait(timeout=120 if self.backtraces else 5)  # it writes its backtrace first
        except subprocess.TimeoutExpired:
            pass
        status = self.processes.serve.poll()
        self.processes.stop_serve()
        log = self.processes.serve_log()
        with self.lock:
            self.finding("trap", crash_summary(log, status), self.suspects(), log=log)
        if time.monotonic() < self.deadline:
            self.processes.start_serve()
            self.context.proxy_port = self.processes.port
            self.restarts += 1
        self.ready.set()  # after the time is up, the workers see it and end

    def finding(self, kind, detail, inputs, log=None):
        """Counts a finding and saves the first few of each kind (with the proxy's log, if given);
        the caller holds the lock."""
        self.findings[kind] += 1
        after = time.monotonic() - self.started
        self.first_seen.setdefault(kind, after)
        cause = (kind, detail if kind == "trap" else None)
        self.causes[cause] += 1
        if self.causes[cause] > SAVED_PER_KIND:
            return
        os.makedirs(self.args.findings, exist_ok=True)
        path = os.path.join(self.args.findings, f"{self.mode}-{kind}-{self.findings[kind]}-{os.getpid()}.json")
        with open(path, "w") as file:
            json.dump({"kind": kind, "mode": self.mode, "detail": detail, "rng_seed": self.args.rng_seed,
                       "after_seconds": round(after, 1), "canary_port": self.canary.port,
                       "proxy_port": self.context.proxy_port, "inputs": inputs,
                       "log": redact(log).splitlines()[-200:] if log else None}, file, indent=1)
        self.saved.append(path)
        print(f"  FINDING {kind} ({self.mode}, after {after:.1f} s): {detail[:300]}", flush=True)

    def report(self):
        rate = self.executions / self.elapsed if self.elapsed else 0
        print(f"{self.mode}: {self.executions} executions in {self.elapsed:.1f} s ({rate:.0f}/s), {self.restarts} restarts of the proxy")
        print("  answers: " + " · ".join(f"{label} {count}" for label, count in sorted(self.answers.items())))
        if self.findings:
            print("  findings: " + ", ".join(f"{kind} {count} (first after {self.first_seen[kind]:.1f} s)"
                                           for kind, count in sorted(self.findings.items())))
        for (kind, detail), count in self.causes.most_common():
            if kind == "trap":
                print(f"  trap x{count}: {detail[:300]}")


def fuzz_cases(rng_seed, mode, seeds):
    return lambda context: (generate(rng_seed, mode, index, seeds, context) for index in itertools.count())


def replay_cases(finding, context):
    """The inputs of a finding, oldest first, with its ports replaced by this run's."""
    for record in sorted(finding["inputs"], key=lambda record: record["index"]):
        data = base64.b64decode(record["base64"])
        for old, new in ((finding["canary_port"], context.canary_port), (finding["proxy_port"], context.proxy_port)):
            data = data.replace(f"127.0.0.1:{old}".encode(), f"127.0.0.1:{new}".encode())
        yield Case(record["index"], data, [split for split in record["splits"] if split < len(data)], record["methods"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/debug/gemcache"))
    parser.add_argument("--seconds", type=float, default=20, help="fuzzing time, split between the two modes")
    parser.add_argument("--modes", default="passthrough,managed")
    parser.add_argument("--jobs", type=int, default=4, help="connections at once")
    parser.add_argument("--timeout", type=float, default=2, help="seconds a connection may take")
    parser.add_argument("--check-every", type=float, default=1, help="seconds between the periodic checks")
    parser.add_argument("--rng-seed", default="15")
    parser.add_argument("--seeds", default=SEEDS)
    parser.add_argument("--findings", default=os.path.join(ROOT, ".build-fuzz/http-findings"))
    parser.add_argument("--replay", help="a findings file: send its inputs again, oldest first, one at a time")
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"httpfuzz: no executable at {args.bin} (swift build --product gemcache)")
    canary = Canary()
    seeds = load_seeds(args.seeds)
    runs = []
    if args.replay:
        finding = json.load(open(args.replay))
        args.jobs = 1
        run = ModeRun(args, finding["mode"], canary, lambda context: replay_cases(finding, context), backtraces=True)
        runs.append(run)
        run.run((args.timeout + 1) * len(finding["inputs"]) + 10)
        if run.findings and len(finding["inputs"]) > 1:
            print("httpfuzz: each input alone, on fresh processes:", flush=True)
            for record in sorted(finding["inputs"], key=lambda record: record["index"]):
                alone = ModeRun(args, finding["mode"], canary, lambda context, record=record: replay_cases(dict(finding, inputs=[record]), context), backtraces=True)
                alone.run(args.timeout + 10)
                saved = f" (saved: {', '.join(alone.saved)})" if alone.saved else ""
                print(f"  input {record['index']}: {', '.join(sorted(alone.findings)) or 'no finding'}{saved}", flush=True)
    else:
        modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
        print(f"httpfuzz: {len(seeds)} seeds, rng seed {args.rng_seed}, {args.seconds:g} s over {', '.join(modes)}, "
              f"{args.jobs} connections at once, canary on 127.0.0.1:{canary.port}", flush=True)
        for mode in modes:
            run = ModeRun(args, mode, canary, fuzz_cases(args.rng_seed, mode, seeds))
            runs.append(run)
            run.run(args.seconds / len(modes))
    for run in runs:
        run.report()
    saved = [path for run in runs for path in run.saved]
    if any(run.findings for run in runs):
        print(f"httpfuzz FAILED: {sum(sum(run.findings.values()) for run in runs)} findings; inputs saved in:\n  " + "\n  ".join(saved))
        sys.exit(1)
    print("httpfuzz OK: no trap, no connection to the canary, no odd upstream path, no secret in the log")


if __name__ == "__main__":
    main()
