#!/usr/bin/env bash
# The official Python SDKs (google-genai, openai, and google-ai-generativelanguage's REST transport)
# against gemcache in front of the mock upstream.
# Creates .venv (from PyPI) on first use, starts both servers on free loopback ports, runs pytest,
# stops what it started. Called by `make test` after the Swift tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug/gemcache
venv=.venv
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s tests/sdk/requirements.txt "$venv/requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
    cp tests/sdk/requirements.txt "$venv/requirements.txt"
fi
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. scripts/wait-port.sh  # the working directory is the repository root (see the cd above)
"$bin" mock-upstream --port 0 >"$work/mock.log" 2>&1 & pids+=($!)
mock_port=$(wait_port "$work/mock.log" 'listening on 127\.0\.0\.1:[0-9]+')
(cd "$work" && exec "$OLDPWD/$bin" serve --port 0 --upstream "http://127.0.0.1:$mock_port" --data "$work/store") >"$work/proxy.log" 2>&1 & pids+=($!)
proxy_port=$(wait_port "$work/proxy.log" 'listen\.port=[0-9]+')
# A second proxy on TLS (listen.tls), with a self-signed certificate the SDK trusts through SSL_CERT_FILE.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
(cd "$work" && GEMCACHE_LISTEN_TLS_CERT_FILE="$work/cert.pem" GEMCACHE_LISTEN_TLS_KEY_FILE="$work/key.pem" \
    exec "$OLDPWD/$bin" serve --port 0 --upstream "http://127.0.0.1:$mock_port" --data "$work/tls-store") >"$work/tls-proxy.log" 2>&1 & pids+=($!)
tls_port=$(wait_port "$work/tls-proxy.log" 'listen\.port=[0-9]+')
GEMCACHE_BIN="$PWD/$bin" GEMCACHE_PROXY_URL="http://127.0.0.1:$proxy_port" GEMCACHE_TLS_PROXY_URL="https://127.0.0.1:$tls_port" \
    GEMCACHE_MOCK_URL="http://127.0.0.1:$mock_port" SSL_CERT_FILE="$work/cert.pem" \
    "$venv/bin/pytest" -q -p no:cacheprovider tests/sdk
