"""The mock's Gemini and Bedrock Converse endpoints: plain HTTP, botocore's event-stream
decoder, and botocore's own bedrock-runtime client (which parses the framing and the errors)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from kong_py.mock_llm import MockLLM
from mock_tools import StartMock, WEATHER_ARGS, WEATHER_TOOL

GEMINI = "gemini-1.5-flash"
BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SCHEMA = WEATHER_TOOL["function"]["parameters"]


def gemini_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def converse_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"text": text}]}], **extra}


def decode_events(raw: bytes) -> list[tuple[dict[str, Any], Any]]:
    """(headers, JSON payload) of each event-stream message; botocore checks both CRCs."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(dict(m.headers), json.loads(m.payload)) for m in buffer]


# -- Gemini -------------------------------------------------------------------------------


async def test_gemini_generate_content(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/v1beta/models/{GEMINI}:generateContent"
    body = gemini_body("hello there gemini", systemInstruction={"parts": [{"text": "be kind"}]},
                       generationConfig={"maxOutputTokens": 100})
    async with http.post(url, json=body, headers={"x-goog-api-key": "g-key"}) as resp:
        assert resp.status == 200
        data = await resp.json()
    [candidate] = data["candidates"]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "hello there gemini"}]}
    assert candidate["finishReason"] == "STOP"
    assert data["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
    assert data["modelVersion"] == GEMINI
    seen = mock_llm.requests[-1]
    assert (seen.provider, seen.model, seen.stream, seen.header("x-goog-api-key")) == ("gemini", GEMINI, False, "g-key")


async def test_gemini_function_call(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/v1beta/models/{GEMINI}:generateContent"
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": SCHEMA}]}]
    async with http.post(url, json=gemini_body("please call tool", tools=tools)) as resp:
        data = await resp.json()
    parts = data["candidates"][0]["content"]["parts"]
    assert parts == [{"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}]

    # the function's response comes back
    body = {"contents": [
        {"role": "user", "parts": [{"text": "please call tool"}]},
        {"role": "model", "parts": parts},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]}],
        "tools": tools}
    async with http.post(url, json=body) as resp:
        data = await resp.json()
    assert data["candidates"][0]["content"]["parts"] == [{"text": 'Tool result: {"sky":"clear"}'}]
    # snake_case and forced calling (mode ANY)
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"function_declarations": [{"name": "lookup", "parameters": {"type": "OBJECT"}}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY"}}}
    async with http.post(url, json=body) as resp:
        data = await resp.json()
    assert data["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "lookup", "args": {}}}]


async def test_gemini_stream_sse(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"
    async with http.post(url, json=gemini_body("one two three four")) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    events = [json.loads(e.removeprefix("data: ")) for e in raw.split("\r\n\r\n") if e]
    texts = [p["text"] for e in events for p in e["candidates"][0]["content"]["parts"]]
    assert "".join(texts) == "one two three four" and len(events) == 5
    assert all(e["candidates"][0]["content"]["role"] == "model" for e in events)
    assert [e["candidates"][0].get("finishReason") for e in events] == [None] * 4 + ["STOP"]
    assert [e["usageMetadata"]["candidatesTokenCount"] for e in events] == [1, 2, 3, 4, 4]
    assert events[-1]["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 4, "totalTokenCount": 8}
    assert mock_llm.requests[-1].stream and mock_llm.requests[-1].query == {"alt": "sse"}


async def test_gemini_stream_json_array(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/v1beta/models/{GEMINI}:streamGenerateContent"
    async with http.post(url, json=gemini_body("one two three"), headers={"x-mock-chunks": "2"}) as resp:
        assert resp.content_type == "application/json"
        items = json.loads(await resp.read())
    assert isinstance(items, list) and len(items) == 3
    assert [p["text"] for i in items for p in i["candidates"][0]["content"]["parts"]] == ["one two", " three", ""]
    assert items[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_gemini_errors(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/v1beta/models/{GEMINI}:generateContent"
    async with http.post(url, json=gemini_body("x"), headers={"x-mock-status": "429"}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"] == {"code": 429, "message": "Rate limit reached (mock)",
                                                "status": "RESOURCE_EXHAUSTED"}
    async with http.post(url, json={"contents": []}) as resp:
        error = (await resp.json())["error"]
        assert resp.status == 400 and error["status"] == "INVALID_ARGUMENT" and "contents" in error["message"]
    async with http.post(f"{mock_llm.url}/v1beta/models/{GEMINI}:explode", json=gemini_body("x")) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["status"] == "NOT_FOUND"


async def test_gemini_key_in_query(start_mock_llm: StartMock, http: aiohttp.ClientSession) -> None:
    mock = await start_mock_llm(api_key="g-right")
    url = f"{mock.url}/v1beta/models/{GEMINI}:generateContent"
    async with http.post(url + "?key=g-wrong", json=gemini_body("x")) as resp:
        # as Google does: a 400, not a 401
        assert resp.status == 400 and (await resp.json())["error"] == {
            "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}
    async with http.post(url + "?key=g-right", json=gemini_body("x")) as resp:
        assert resp.status == 200


# -- Bedrock Converse ------------------------------------------------------------------------


async def test_converse(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    body = converse_body("hello bedrock", system=[{"text": "be kind"}], inferenceConfig={"maxTokens": 50})
    async with http.post(f"{mock_llm.url}/model/{BEDROCK}/converse", json=body) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert data["output"] == {"message": {"role": "assistant", "content": [{"text": "hello bedrock"}]}}
    assert data["stopReason"] == "end_turn"
    assert data["usage"] == {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}
    assert isinstance(data["metrics"]["latencyMs"], int)
    assert (mock_llm.requests[-1].provider, mock_llm.requests[-1].model) == ("bedrock", BEDROCK)


async def test_converse_stream_framing(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{mock_llm.url}/model/{BEDROCK}/converse-stream",
                         json=converse_body("one two three")) as resp:
        assert resp.status == 200 and resp.content_type == "application/vnd.amazon.eventstream"
        raw = await resp.read()
    events = decode_events(raw)
    assert all(h[":message-type"] == "event" and h[":content-type"] == "application/json" for h, _ in events)
    assert [h[":event-type"] for h, _ in events] == [
        "messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockDelta",
        "contentBlockStop", "messageStop", "metadata"]
    payloads = [p for _, p in events]
    assert payloads[0] == {"role": "assistant"}
    assert "".join(p["delta"]["text"] for p in payloads[1:4]) == "one two three"
    assert all(p["contentBlockIndex"] == 0 for p in payloads[1:5])
    assert payloads[5] == {"stopReason": "end_turn"}
    assert payloads[6]["usage"] == {"inputTokens": 3, "outputTokens": 3, "totalTokens": 6}
    assert mock_llm.requests[-1].stream


async def test_converse_tool_use(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    tool_config = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": SCHEMA}}}]}
    async with http.post(f"{mock_llm.url}/model/{BEDROCK}/converse",
                         json=converse_body("call tool", toolConfig=tool_config)) as resp:
        data = await resp.json()
    [block] = data["output"]["message"]["content"]
    assert data["stopReason"] == "tool_use"
    assert block["toolUse"]["name"] == "get_weather" and block["toolUse"]["input"] == WEATHER_ARGS
    assert block["toolUse"]["toolUseId"].startswith("tooluse_")

    async with http.post(f"{mock_llm.url}/model/{BEDROCK}/converse-stream",
                         json=converse_body("call tool", toolConfig=tool_config)) as resp:
        events = decode_events(await resp.read())
    kinds = [h[":event-type"] for h, _ in events]
    assert kinds[:2] == ["messageStart", "contentBlockStart"]
    start = events[1][1]["start"]["toolUse"]
    assert start["name"] == "get_weather" and start["toolUseId"].startswith("tooluse_")
    arguments = "".join(p["delta"]["toolUse"]["input"] for h, p in events if h[":event-type"] == "contentBlockDelta")
    assert json.loads(arguments) == WEATHER_ARGS
    assert events[-2][1] == {"stopReason": "tool_use"}

    followup = {"messages": [
        {"role": "user", "content": [{"text": "call tool"}]},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": block["toolUse"]["toolUseId"],
                                                     "content": [{"text": "warm"}]}}]}], "toolConfig": tool_config}
    async with http.post(f"{mock_llm.url}/model/{BEDROCK}/converse", json=followup) as resp:
        data = await resp.json()
    assert data["output"]["message"]["content"] == [{"text": "Tool result: warm"}]


async def test_converse_errors(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = f"{mock_llm.url}/model/{BEDROCK}/converse"
    async with http.post(url, json=converse_body("x"), headers={"x-mock-status": "429"}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert resp.headers["x-amzn-ErrorType"].startswith("ThrottlingException:")
        assert await resp.json() == {"message": "Rate limit reached (mock)"}
    async with http.post(url, json={"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}) as resp:
        assert resp.status == 400 and resp.headers["x-amzn-ErrorType"].startswith("ValidationException:")
        assert "must start with a user message" in (await resp.json())["message"]


def _bedrock_client(url: str, key_id: str) -> Any:
    session = botocore.session.Session()
    return session.create_client("bedrock-runtime", region_name="us-east-1", endpoint_url=url,
                                 aws_access_key_id=key_id, aws_secret_access_key="mock-secret")


async def test_botocore_client(start_mock_llm: StartMock) -> None:
    """botocore's bedrock-runtime client (SigV4-signed, model id URL-encoded) accepts every answer."""
    mock = await start_mock_llm(api_key="AKIDMOCK")
    client = _bedrock_client(mock.url, "AKIDMOCK")
    messages = [{"role": "user", "content": [{"text": "hello from botocore"}]}]

    answer = await asyncio.to_thread(client.converse, modelId=BEDROCK, messages=messages)
    assert answer["output"]["message"]["content"] == [{"text": "hello from botocore"}]
    assert answer["usage"] == {"inputTokens": 3, "outputTokens": 3, "totalTokens": 6}
    seen = mock.requests[-1]
    assert seen.model == BEDROCK and seen.path == f"/model/{BEDROCK}/converse"
    assert seen.header("authorization", "").startswith("AWS4-HMAC-SHA256 Credential=AKIDMOCK/")

    def stream() -> list[dict[str, Any]]:
        return list(client.converse_stream(modelId=BEDROCK, messages=messages)["stream"])

    events = await asyncio.to_thread(stream)
    assert [next(iter(e)) for e in events] == ["messageStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:4]) == "hello from botocore"

    def throttled() -> None:
        client.meta.events.register("before-sign.bedrock-runtime.Converse",
                                    lambda request, **_: request.headers.__setitem__("x-mock-status", "429"))
        client.converse(modelId=BEDROCK, messages=messages)

    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(throttled)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    wrong = _bedrock_client(mock.url, "AKIDOTHER")
    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(wrong.converse, modelId=BEDROCK, messages=messages)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_sigv4_signed_by_hand(start_mock_llm: StartMock, http: aiohttp.ClientSession) -> None:
    """What the credentials plugin will do: sign with botocore, send with another client."""
    mock = await start_mock_llm(api_key="AKIDHAND")
    url = f"{mock.url}/model/{BEDROCK}/converse"
    body = json.dumps(converse_body("signed")).encode()
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIDHAND", "secret", "session-token"), "bedrock", "us-east-1").add_auth(request)
    async with http.post(url, data=body, headers=dict(request.headers)) as resp:
        assert resp.status == 200
    seen = mock.requests[-1]
    assert seen.header("x-amz-security-token") == "session-token" and seen.header("x-amz-date")


async def test_gemini_on_vertex_paths(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    base = f"{mock_llm.url}/v1/projects/my-project/locations/us-central1/publishers/google/models/{GEMINI}"
    async with http.post(base + ":generateContent", json=gemini_body("vertex hello"),
                         headers={"Authorization": "Bearer ya29.token"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["candidates"][0]["content"]["parts"] == [{"text": "vertex hello"}]
    async with http.post(base + ":streamGenerateContent?alt=sse", json=gemini_body("a b")) as resp:
        assert resp.status == 200 and b"finishReason" in await resp.read()
    assert [(r.provider, r.model, r.stream) for r in mock_llm.requests] == [
        ("gemini", GEMINI, False), ("gemini", GEMINI, True)]
