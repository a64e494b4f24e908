#!/usr/bin/env python3
"""A collector that keeps nothing: answers every POST /v1/traces with an empty OTLP response (200,
application/x-protobuf) and counts the exports and their bytes, for measuring what tracing costs
gemcache (benchmarks/RESULTS.md §16) without a real OpenTelemetry Collector.

Usage: benchmarks/otlp_sink.py [--port 4318]   (Ctrl-C or SIGTERM prints the counts)
"""
import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

exports = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global exports, received
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        exports += 1
        received += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)

    def stop(*_):
        print(f"otlp_sink: {exports} exports, {received} bytes", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
