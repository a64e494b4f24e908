"""The official Python SDKs through gemcache in front of the mock upstream (started by scripts/sdk-tests.sh).

Each surface: the first call is a MISS, the second a HIT with identical parsed results, and the
upstream sees exactly one call.
"""
import asyncio
import json
import os
import urllib.request

import pytest
from google import genai
from google.ai import generativelanguage_v1beta as glm
from google.genai import types
from openai import OpenAI

PROXY = os.environ["GEMCACHE_PROXY_URL"]
MOCK = os.environ["GEMCACHE_MOCK_URL"]
KEY = "sdk-test-key"


def upstream_calls():
    with urllib.request.urlopen(MOCK + "/_mock/stats") as response:
        return json.load(response)["requests"]


def twice(call):
    """Runs `call` twice; returns both results after checking the upstream saw one call."""
    before = upstream_calls()
    first, second = call(), call()
    assert upstream_calls() - before == 1
    return first, second


def genai_client(version):
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=PROXY, api_version=version))


def cache_status(response):
    return response.sdk_http_response.headers.get("x-gemcache")


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_genai_generate(version):
    client = genai_client(version)
    first, second = twice(lambda: client.models.generate_content(model="gemini-2.5-flash", contents=f"Why is the sky blue? ({version})"))
    assert first.text and first.text == second.text
    assert (cache_status(first), cache_status(second)) == ("MISS", "HIT")


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_genai_stream(version):
    client = genai_client(version)

    def stream():
        return [chunk.text for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents=f"Count to three ({version})")]

    first, second = twice(stream)
    assert len(first) == 3 and first == second


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_genai_embed(version):
    client = genai_client(version)
    first, second = twice(lambda: client.models.embed_content(model="gemini-embedding-001", contents=f"embed this ({version})"))
    assert first.embeddings[0].values and first.embeddings[0].values == second.embeddings[0].values


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_genai_count_tokens(version):
    client = genai_client(version)
    first, second = twice(lambda: client.models.count_tokens(model="gemini-2.5-flash", contents=f"how many tokens is this ({version})"))
    assert first.total_tokens > 0 and first.total_tokens == second.total_tokens


def gapic_client():
    """The generated client's REST transport: `$alt=json;enum-encoding=int` on every call, enums as numbers."""
    return glm.GenerativeServiceClient(transport="rest", client_options={"api_endpoint": PROXY, "api_key": KEY})


def gapic_request(text):
    return glm.GenerateContentRequest(model="models/gemini-2.5-flash", contents=[glm.Content(role="user", parts=[glm.Part(text=text)])])


def test_gapic_rest_generate():
    client = gapic_client()
    request = gapic_request("Why is the sky blue? (generated REST client)")
    first, second = twice(lambda: client.generate_content(request=request))
    assert first.candidates[0].finish_reason == glm.Candidate.FinishReason.STOP
    assert first.candidates[0].content.parts[0].text and first == second


def test_gapic_rest_stream():
    client = gapic_client()
    request = gapic_request("Count to three (generated REST client)")
    first, second = twice(lambda: list(client.stream_generate_content(request=request)))
    assert len(first) == 3 and first == second
    assert first[-1].candidates[0].finish_reason == glm.Candidate.FinishReason.STOP


def openai_client():
    return OpenAI(api_key=KEY, base_url=PROXY + "/v1beta/openai/", max_retries=0)


def test_openai_chat():
    client = openai_client()
    messages = [{"role": "user", "content": "Say hello to the cache"}]
    first, second = twice(lambda: client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=messages))
    assert (first.headers["x-gemcache"], second.headers["x-gemcache"]) == ("MISS", "HIT")
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content


def test_openai_chat_stream():
    client = openai_client()
    messages = [{"role": "user", "content": "Stream hello to the cache"}]

    def stream():
        chunks = client.chat.completions.create(model="gemini-2.5-flash", messages=messages, stream=True)
        return [chunk.choices[0].delta.content for chunk in chunks if chunk.choices]

    first, second = twice(stream)
    assert "".join(c or "" for c in first) and first == second


def test_openai_embeddings():
    client = openai_client()
    first, second = twice(lambda: client.embeddings.create(model="gemini-embedding-001", input="embed me, openai"))
    assert first.data[0].embedding and first.data[0].embedding == second.data[0].embedding


TLS_PROXY = os.environ["GEMCACHE_TLS_PROXY_URL"]


@pytest.mark.parametrize("version", ["v1alpha", "v1beta"])
def test_genai_live_over_tls(version):
    """client.aio.live.connect opens wss:// on the proxy's TLS listener (trusted through SSL_CERT_FILE),
    the relay carries the setup, a turn and the answer, and nothing is cached."""
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=TLS_PROXY, api_version=version))

    async def converse():
        texts = []
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config={"response_modalities": ["TEXT"]}) as session:
            await session.send_client_content(turns={"role": "user", "parts": [{"text": f"Hello over wss ({version})"}]})
            async for message in session.receive():
                if message.text:
                    texts.append(message.text)
                if message.server_content and message.server_content.turn_complete:
                    break
        return texts

    before = upstream_calls()
    first, second = asyncio.run(converse()), asyncio.run(converse())
    assert first == second == [f"Echo: Hello over wss ({version})"]
    assert upstream_calls() - before == 2, "Live sessions are relayed, never answered from the cache"

    # REST calls on the same TLS listener are cached as over plain HTTP.
    rest = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=TLS_PROXY, api_version="v1beta"))
    answers = twice(lambda: rest.models.generate_content(model="gemini-2.5-flash", contents=f"Over TLS ({version})"))
    assert [cache_status(answer) for answer in answers] == ["MISS", "HIT"]
