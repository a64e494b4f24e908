"""Record and replay (SPEC section 11) with the real SDKs: record against a mock upstream with
`cache.mode: record`, export the fixtures (twice: byte-identical), stop the upstream, then replay them
with `gemcache serve --replay FILE` and no key in the proxy's environment.

The test starts its own mock upstream and proxies (GEMCACHE_BIN, set by scripts/sdk-tests.sh), so that
it can stop the upstream without disturbing the other tests.
"""
import os
import re
import subprocess
import time

import pytest
from google import genai
from google.genai import errors, types
from openai import NotFoundError, OpenAI

BIN = os.environ["GEMCACHE_BIN"]
# A throwaway key: in replay nothing checks it (CI keys are throwaway, SPEC section 11).
KEY = "replay-test-key"
# gemcache reads every GEMCACHE_* variable as a setting: the processes get none of the test's.
ENVIRONMENT = {"PATH": "/usr/bin:/bin"}


class Server:
    """A gemcache process on a free loopback port, its log in a file."""

    def __init__(self, tmp_path, name, arguments, pattern, environment=None):
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "wb") as log:
            env = {**ENVIRONMENT, "LOG_LEVEL": "info", **(environment or {})}
            self.process = subprocess.Popen([BIN, *arguments], cwd=tmp_path, stdout=log, stderr=log, env=env)
        for _ in range(200):
            match = re.search(pattern, self.log.read_text())
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not start:\n{self.log.read_text()}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def genai_client(url):
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))


def openai_client(url):
    return OpenAI(api_key=KEY, base_url=url + "/v1beta/openai/", max_retries=0)


def status(response):
    return response.sdk_http_response.headers.get("x-gemcache")


def run_workload(url):
    """One call of each surface; returns the parsed results and each whole answer's X-Gemcache."""
    client, chat = genai_client(url), openai_client(url)
    generated = client.models.generate_content(
        model="gemini-2.5-flash", contents="Why is the sky blue?", config=types.GenerateContentConfig(temperature=0.7)
    )
    streamed = [chunk.text for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Count to three")]
    embedded = client.models.embed_content(model="gemini-embedding-001", contents="embed me")
    counted = client.models.count_tokens(model="gemini-2.5-flash", contents="how long is this")
    completion = chat.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hi"}])
    results = {
        "generate": generated.text,
        "stream": streamed,
        "embed": embedded.embeddings[0].values,
        "count": counted.total_tokens,
        "chat": completion.parse().choices[0].message.content,
    }
    statuses = [status(generated), status(embedded), status(counted), completion.headers.get("x-gemcache")]
    return results, statuses


def export_fixtures(tmp_path, name):
    done = subprocess.run([BIN, "export", "--fixtures", "--data", str(tmp_path / "store"), name], cwd=tmp_path, capture_output=True, text=True, env=ENVIRONMENT)
    assert done.returncode == 0, done.stderr
    return (tmp_path / name).read_bytes()


def test_record_export_replay_without_upstream_or_key(tmp_path):
    mock = Server(tmp_path, "mock", ["mock-upstream", "--port", "0"], r"listening on 127\.0\.0\.1:(\d+)")
    try:
        recorder = Server(
            tmp_path,
            "record",
            ["serve", "--port", "0", "--upstream", mock.url, "--data", str(tmp_path / "store")],
            r"listen\.port=(\d+)",
            {"GEMCACHE_CACHE_MODE": "record"},
        )
        try:
            recorded, statuses = run_workload(recorder.url)
            assert statuses == ["MISS"] * 4
        finally:
            recorder.stop()
    finally:
        mock.stop()  # the upstream is gone from here on

    fixtures = export_fixtures(tmp_path, "fixtures.jsonl")
    assert export_fixtures(tmp_path, "again.jsonl") == fixtures
    assert fixtures.startswith(b'{"gemcache_fixtures":1}\n') and fixtures.count(b"\n") == 6

    replay = Server(tmp_path, "replay", ["serve", "--port", "0", "--replay", "fixtures.jsonl"], r"listen\.port=(\d+)")
    try:
        replayed, statuses = run_workload(replay.url)
        assert replayed == recorded
        assert statuses == ["HIT"] * 4

        client = genai_client(replay.url)  # kept: a client that is collected closes its connections
        with pytest.raises(errors.ClientError) as changed:
            client.models.generate_content(
                model="gemini-2.5-flash", contents="Why is the sky blue?", config=types.GenerateContentConfig(temperature=0.2)
            )
        assert changed.value.code == 404
        assert changed.value.message.startswith("gemcache replay:")
        assert "generationConfig.temperature: 0.7 recorded, 0.2 asked" in changed.value.message

        chat_client = openai_client(replay.url)
        with pytest.raises(NotFoundError) as chat:
            chat_client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hello"}])
        assert chat.value.response.text.startswith("[{")  # wrapped, as Google wraps errors there
        assert 'messages[0].content: \\"Hi\\" recorded, \\"Hello\\" asked' in chat.value.response.text
    finally:
        replay.stop()
