"""Misbehaviour on demand (latency, hang, reset, forced statuses), per request and per process,
the same for every provider; and the recording, in process and over HTTP."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest

from kong_py.mock_llm import Behaviour, ControlError, MockLLM
from mock_tools import StartMock

USER = [{"role": "user", "content": "one two three four five"}]

#: one minimal request per provider: (path, body, headers)
REQUESTS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "openai": ("/v1/chat/completions", {"model": "gpt-4o", "messages": USER}, {}),
    "azure": ("/openai/deployments/dep/chat/completions?api-version=2024-10-21", {"messages": USER}, {}),
    "anthropic": ("/v1/messages", {"model": "claude-3-5-haiku-20241022", "max_tokens": 50, "messages": USER},
                  {"anthropic-version": "2023-06-01"}),
    "gemini": ("/v1beta/models/gemini-1.5-flash:generateContent",
               {"contents": [{"role": "user", "parts": [{"text": "one two three four five"}]}]}, {}),
    "bedrock": ("/model/amazon.nova-lite-v1:0/converse",
                {"messages": [{"role": "user", "content": [{"text": "one two three four five"}]}]}, {}),
}

#: (path, body) of a streamed request per provider
STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", REQUESTS["openai"][1] | {"stream": True}),
    "azure": (REQUESTS["azure"][0], {"messages": USER, "stream": True}),
    "anthropic": ("/v1/messages", REQUESTS["anthropic"][1] | {"stream": True}),
    "gemini": ("/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse", REQUESTS["gemini"][1]),
    "bedrock": ("/model/amazon.nova-lite-v1:0/converse-stream", REQUESTS["bedrock"][1]),
}


def error_message(provider: str, body: Any) -> str:
    """The message of an error body, wherever the provider puts it."""
    if provider == "bedrock":
        return body["message"]
    return body["error"]["message"]


async def post(http: aiohttp.ClientSession, mock: MockLLM, provider: str, headers: dict[str, str] | None = None,
               **kwargs: Any) -> tuple[int, Any, Any]:
    path, body, base = REQUESTS[provider]
    async with http.post(mock.url + path, json=body, headers=base | (headers or {}), **kwargs) as resp:
        return resp.status, resp.headers.copy(), await resp.json(content_type=None)


# -- forced statuses and latency, every provider -----------------------------------------------


@pytest.mark.parametrize("provider", sorted(REQUESTS))
async def test_every_provider_answers_normally(mock_llm: MockLLM, http: aiohttp.ClientSession,
                                               provider: str) -> None:
    status, _, body = await post(http, mock_llm, provider)
    assert status == 200, body
    assert "one two three four five" in str(body)
    assert mock_llm.requests[-1].provider == provider


@pytest.mark.parametrize("provider", sorted(REQUESTS))
@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_forced_status_in_each_shape(mock_llm: MockLLM, http: aiohttp.ClientSession, provider: str,
                                           status: int) -> None:
    answer, headers, body = await post(http, mock_llm, provider, {"x-mock-status": str(status),
                                                                 "x-mock-error-message": "told to fail"})
    assert answer == status
    assert error_message(provider, body) == "told to fail"
    assert ("Retry-After" in headers) == (status == 429)
    shape = {"openai": lambda b: set(b["error"]) == {"message", "type", "param", "code"},
             "azure": lambda b: b["error"]["code"] == str(status),
             "anthropic": lambda b: b["type"] == "error" and set(b["error"]) == {"type", "message"},
             "gemini": lambda b: b["error"]["code"] == status and b["error"]["status"],
             "bedrock": lambda b: set(b) == {"message"} and "x-amzn-ErrorType" in headers}
    assert shape[provider](body), body


async def test_retry_after_on_any_status(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    _, headers, _ = await post(http, mock_llm, "openai", {"x-mock-status": "503", "x-mock-retry-after": "30"})
    assert headers["Retry-After"] == "30"


async def test_latency_before_the_first_byte(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    await post(http, mock_llm, "anthropic", {"x-mock-latency-ms": "250"})
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    status, _, _ = await post(http, mock_llm, "gemini", {"x-mock-latency-ms": "150", "x-mock-status": "500"})
    assert status == 500 and time.monotonic() - started >= 0.15


async def test_process_settings_and_runtime_changes(start_mock_llm: StartMock, http: aiohttp.ClientSession) -> None:
    mock = await start_mock_llm(latency_ms=120, status=503)
    started = time.monotonic()
    status, _, _ = await post(http, mock, "openai")
    assert status == 503 and time.monotonic() - started >= 0.12
    # a header wins over the process setting ...
    mock.behaviour.update(latency_ms=0)
    status, _, _ = await post(http, mock, "bedrock", {"x-mock-status": "429"})
    assert status == 429
    # ... and the process can heal, in process or over HTTP
    mock.behaviour.update(status=None)
    assert (await post(http, mock, "openai"))[0] == 200
    async with http.patch(mock.url + "/__mock/behaviour", json={"status": 500, "words": 2}) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == 500
    assert (await post(http, mock, "openai"))[0] == 500 and mock.behaviour.words == 2
    async with http.patch(mock.url + "/__mock/behaviour", json={"status": None}) as resp:
        assert resp.status == 200
    assert (await post(http, mock, "openai"))[2]["choices"][0]["message"]["content"] == "lorem ipsum"
    async with http.patch(mock.url + "/__mock/behaviour", json={"chunks": 0}) as resp:
        assert resp.status == 400 and "chunks" in (await resp.json())["message"]
    async with http.patch(mock.url + "/__mock/behaviour", json={"no_such": 1}) as resp:
        assert resp.status == 400
    async with http.get(mock.url + "/__mock/behaviour") as resp:
        assert (await resp.json())["words"] == 2


@pytest.mark.parametrize("provider", sorted(REQUESTS))
async def test_bad_control_header(mock_llm: MockLLM, http: aiohttp.ClientSession, provider: str) -> None:
    status, _, body = await post(http, mock_llm, provider, {"x-mock-chunks": "many"})
    assert status == 400 and "x-mock-chunks" in error_message(provider, body)


def test_behaviour_validation() -> None:
    with pytest.raises(ControlError):
        Behaviour(status=200)
    with pytest.raises(ControlError):
        Behaviour(latency_ms=-1)
    behaviour = Behaviour(words=3)
    with pytest.raises(ControlError):
        behaviour.update(words=-2)
    assert behaviour.words == 3
    request = behaviour.for_request({"x-mock-words": "7", "x-mock-tool-args": '{"a": 1}', "x-mock-hang": "0"})
    assert (request.words, request.tool_args, request.hang, behaviour.words) == (7, {"a": 1}, False, 3)
    with pytest.raises(ControlError):
        behaviour.for_request({"x-mock-tool-args": "[1]"})


# -- hanging and resets ------------------------------------------------------------------------


async def test_hang_until_the_client_times_out(oai: openai.AsyncOpenAI, mock_llm: MockLLM) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await oai.with_options(timeout=0.5).chat.completions.create(
            model="gpt-4o", messages=USER, extra_headers={"x-mock-hang": "1"})
    assert 0.5 <= time.monotonic() - started < 5
    assert len(mock_llm.requests) == 1  # recorded all the same


async def test_hang_after_chunks(oai: openai.AsyncOpenAI) -> None:
    pieces: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        stream = await oai.with_options(timeout=0.5).chat.completions.create(
            model="gpt-4o", messages=USER, stream=True,
            extra_headers={"x-mock-hang-after-chunks": "2"})
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
    assert pieces == ["", "one", " two"]  # the role chunk, then two content chunks


async def test_stopping_the_mock_ends_a_hang(start_mock_llm: StartMock, http: aiohttp.ClientSession) -> None:
    mock = await start_mock_llm(hang=True)
    request = asyncio.ensure_future(post(http, mock, "openai"))
    await asyncio.sleep(0.2)
    assert not request.done()
    started = time.monotonic()
    await mock.stop()
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(request, 5)
    assert time.monotonic() - started < 3


async def test_reset_before_answering(oai: openai.AsyncOpenAI, http: aiohttp.ClientSession,
                                      mock_llm: MockLLM) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-reset": "1"})
    with pytest.raises(aiohttp.ClientError):
        await post(http, mock_llm, "bedrock", {"x-mock-reset": "1"})


async def test_reset_mid_stream(oai: openai.AsyncOpenAI) -> None:
    pieces: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await oai.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                   extra_headers={"x-mock-reset-after-chunks": "3"})
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
    assert pieces == ["", "one", " two", " three"]


async def test_reset_mid_stream_anthropic(claude: anthropic.AsyncAnthropic) -> None:
    texts: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50,
                                          messages=USER,
                                          extra_headers={"x-mock-reset-after-chunks": "1"}) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert texts == ["one"]


@pytest.mark.parametrize("provider", sorted(STREAMS))
async def test_reset_after_chunks_every_stream(mock_llm: MockLLM, http: aiohttp.ClientSession,
                                               provider: str) -> None:
    """The head and N content chunks arrive, then the connection breaks (no clean end)."""
    path, body = STREAMS[provider]
    headers = REQUESTS[provider][2] | {"x-mock-reset-after-chunks": "2", "x-mock-chunks": "5"}
    received = b""
    with pytest.raises(aiohttp.ClientError):
        async with http.post(mock_llm.url + path, json=body, headers=headers) as resp:
            assert resp.status == 200
            async for data in resp.content.iter_any():
                received += data
    marker = {"openai": b'"content":" two"', "azure": b'"content":" two"', "anthropic": b'"text":" two"',
              "gemini": b'"text":" two"', "bedrock": b'"text":" two"'}[provider]
    assert marker in received and b"three" not in received


async def test_reset_after_chunks_larger_than_the_answer(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    """Every content chunk, but never the end of the stream."""
    path, body = STREAMS["openai"]
    received = b""
    with pytest.raises(aiohttp.ClientError):
        async with http.post(mock_llm.url + path, json=body, headers={"x-mock-reset-after-chunks": "99"}) as resp:
            async for data in resp.content.iter_any():
                received += data
    assert b" five" in received and b"[DONE]" not in received and b"finish_reason\":\"stop" not in received


async def test_reset_in_a_non_streamed_body(oai: openai.AsyncOpenAI, mock_llm: MockLLM,
                                            http: aiohttp.ClientSession) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-reset-after-chunks": "1"})
    path, body, headers = REQUESTS["anthropic"]
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(mock_llm.url + path, json=body,
                             headers=headers | {"x-mock-reset-after-chunks": "1"}) as resp:
            assert resp.status == 200 and resp.content_length
            await resp.read()


# -- keys ---------------------------------------------------------------------------------------

KEY_PLACES = {
    "openai": [{"Authorization": "Bearer K"}],
    "azure": [{"api-key": "K"}, {"Authorization": "Bearer K"}],
    "anthropic": [{"x-api-key": "K"}, {"Authorization": "Bearer K"}],
    "gemini": [{"x-goog-api-key": "K"}, {"Authorization": "Bearer K"}],
    "bedrock": [{"Authorization": "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/bedrock/aws4_request, "
                                  "SignedHeaders=host, Signature=0"}, {"Authorization": "Bearer K"}],
}


@pytest.mark.parametrize("provider", sorted(KEY_PLACES))
async def test_api_key_where_each_provider_takes_it(start_mock_llm: StartMock, http: aiohttp.ClientSession,
                                                    provider: str) -> None:
    mock = await start_mock_llm(api_key="K")
    refused, _, body = await post(http, mock, provider)
    assert refused in (400, 401, 403) and "K" not in error_message(provider, body).split()
    for headers in KEY_PLACES[provider]:
        assert (await post(http, mock, provider, headers))[0] == 200, headers
    assert (await post(http, mock, provider, {"x-api-key": "K", "Authorization": "Bearer wrong"}
                       if provider == "openai" else {"Authorization": "Bearer wrong"}))[0] == refused


# -- recording -----------------------------------------------------------------------------------


async def test_recording_in_process(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    await post(http, mock_llm, "azure", {"X-Team": "ai"})
    [seen] = mock_llm.requests
    assert seen.method == "POST" and seen.path == "/openai/deployments/dep/chat/completions"
    assert seen.query == {"api-version": "2024-10-21"}
    assert seen.header("x-team") == seen.header("X-TEAM") == seen.headers["x-team"] == "ai"
    assert seen.body == {"messages": USER} and seen.raw_body.startswith(b"{")
    assert (seen.provider, seen.model, seen.stream) == ("azure", "dep", False)
    mock_llm.clear()
    assert mock_llm.requests == []


async def test_recording_over_http(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    for provider in ("openai", "anthropic", "gemini"):
        await post(http, mock_llm, provider, {"x-mock-status": "500"} if provider == "gemini" else None)
    async with http.post(mock_llm.url + "/no/such/path", data=b"plain") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["message"] == "Invalid URL (POST /no/such/path)"
    async with http.get(mock_llm.url + "/__mock/requests") as resp:
        listing = await resp.json()
    assert listing["count"] == 4
    assert [r["provider"] for r in listing["data"]] == ["openai", "anthropic", "gemini", None]
    first = listing["data"][0]
    assert set(first) >= {"method", "path", "query", "headers", "body", "body_text", "model", "stream", "time"}
    assert first["body"]["model"] == "gpt-4o" and first["headers"]["content-type"] == "application/json"
    assert listing["data"][2]["model"] == "gemini-1.5-flash"  # known even when the answer was an error
    assert listing["data"][3]["body"] is None and listing["data"][3]["body_text"] == "plain"
    async with http.get(mock_llm.url + "/__mock/requests?provider=anthropic") as resp:
        assert [r["path"] for r in (await resp.json())["data"]] == ["/v1/messages"]
    async with http.delete(mock_llm.url + "/__mock/requests") as resp:
        assert resp.status == 204
    async with http.get(mock_llm.url + "/__mock/requests") as resp:
        assert (await resp.json()) == {"data": [], "count": 0}
    async with http.get(mock_llm.url + "/__mock/health") as resp:
        assert (await resp.json())["status"] == "ok"
    assert mock_llm.requests == []  # /__mock/ calls are not recorded


async def test_start_stop_and_addresses() -> None:
    mock = await MockLLM.start(words=1)
    try:
        assert mock.host == "127.0.0.1" and mock.port > 0
        assert mock.address == f"127.0.0.1:{mock.port}" and mock.url == f"http://127.0.0.1:{mock.port}"
        with pytest.raises(RuntimeError):
            await mock.serve()
    finally:
        await mock.stop()
    await mock.stop()  # twice is harmless
    with pytest.raises(ControlError):
        MockLLM(nonsense=1)
    async with MockLLM("localhost", 0, Behaviour(words=2)) as named:
        async with aiohttp.ClientSession() as http:
            status, _, body = await post(http, named, "openai")
        assert status == 200 and body["choices"][0]["message"]["content"] == "lorem ipsum"


# -- errors inside a stream ----------------------------------------------------------------------


async def test_stream_error_openai(oai: openai.AsyncOpenAI) -> None:
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as info:
        stream = await oai.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                   extra_headers={"x-mock-stream-error-after-chunks": "2"})
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
    assert pieces == ["", "one", " two"] and info.value.message == "Overloaded (mock)"


async def test_stream_error_anthropic(claude: anthropic.AsyncAnthropic) -> None:
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50,
                                          messages=USER,
                                          extra_headers={"x-mock-stream-error-after-chunks": "1",
                                                         "x-mock-error-message": "busy"}) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert texts == ["one"]
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


@pytest.mark.parametrize("alt", ["?alt=sse", ""])
async def test_stream_error_gemini(mock_llm: MockLLM, http: aiohttp.ClientSession, alt: str) -> None:
    url = f"{mock_llm.url}/v1beta/models/gemini-1.5-flash:streamGenerateContent{alt}"
    async with http.post(url, json=REQUESTS["gemini"][1], headers={"x-mock-stream-error-after-chunks": "1"}) as resp:
        raw = await resp.read()
    if alt:
        items = [json.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    else:
        items = json.loads(raw)  # still a well-formed array
    assert len(items) == 2 and items[-1]["error"]["status"] == "INTERNAL"


async def test_stream_error_bedrock(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    from botocore.eventstream import EventStreamBuffer

    path, body = STREAMS["bedrock"]
    async with http.post(mock_llm.url + path, json=body, headers={"x-mock-stream-error-after-chunks": "0"}) as resp:
        buffer = EventStreamBuffer()
        buffer.add_data(await resp.read())
    messages = list(buffer)
    assert [m.headers.get(":event-type") for m in messages] == ["messageStart", None]
    assert messages[-1].headers[":message-type"] == "exception"
    assert messages[-1].headers[":exception-type"] == "internalServerException"


async def test_record_limit(http: aiohttp.ClientSession) -> None:
    async with MockLLM(record_limit=2) as mock:
        for words in ("1", "2", "3"):
            await post(http, mock, "openai", {"x-mock-words": words})
        assert [r.header("x-mock-words") for r in mock.requests] == ["2", "3"]
    async with MockLLM(record_limit=0) as mock:
        assert (await post(http, mock, "openai"))[0] == 200 and mock.requests == []
