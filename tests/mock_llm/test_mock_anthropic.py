"""The mock's Anthropic Messages API, driven by the official ``anthropic`` SDK."""
from __future__ import annotations

import json

import aiohttp
import anthropic
import pytest

from kong_py.mock_llm import MockLLM
from mock_tools import CLAUDE_WEATHER_TOOL, StartMock, WEATHER_ARGS

MODEL = "claude-3-5-sonnet-20241022"
USER = [{"role": "user", "content": "hello there, gateway"}]


async def test_message(claude: anthropic.AsyncAnthropic, mock_llm: MockLLM) -> None:
    m = await claude.messages.create(model=MODEL, max_tokens=100, system="be brief two",
                                     messages=[{"role": "user", "content": [{"type": "text", "text": "hi you"}]}])
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == MODEL
    assert [(b.type, getattr(b, "text", None)) for b in m.content] == [("text", "hi you")]
    assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 2)
    [seen] = mock_llm.requests
    assert (seen.path, seen.provider, seen.model) == ("/v1/messages", "anthropic", MODEL)
    # older SDKs send x-api-key, newer ones a bearer token: the mock takes both
    assert "sk-ant-test-key" in (seen.header("x-api-key"), seen.header("authorization", "")[7:])
    assert seen.header("anthropic-version")
    assert seen.body["system"] == "be brief two"


async def test_stream(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == ["hello", " there,", " gateway"]
    assert final.content[0].type == "text" and final.content[0].text == "hello there, gateway"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3 and final.usage.input_tokens == 3


async def test_stream_wire_format(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    body = {"model": MODEL, "max_tokens": 50, "messages": USER, "stream": True}
    async with http.post(mock_llm.url + "/v1/messages", json=body,
                         headers={"anthropic-version": "2023-06-01", "x-mock-chunks": "2"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    events = []
    for block in filter(None, raw.split("\n\n")):
        event_line, data_line = block.split("\n")
        name, data = event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert events[0]["message"]["usage"]["input_tokens"] == 3
    assert [e["delta"] for e in events if e["type"] == "content_block_delta"] == [
        {"type": "text_delta", "text": "hello there,"}, {"type": "text_delta", "text": " gateway"}]
    assert events[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[6]["usage"] == {"output_tokens": 3}


async def test_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    messages = [{"role": "user", "content": "Weather in Paris? call tool get_weather"}]
    m = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages,
                                     tools=[CLAUDE_WEATHER_TOOL])
    assert m.stop_reason == "tool_use"
    [block] = m.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather" and block.input == WEATHER_ARGS

    followup = messages + [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "rainy"}]}]
    m = await claude.messages.create(model=MODEL, max_tokens=100, messages=followup,
                                     tools=[CLAUDE_WEATHER_TOOL])
    assert m.stop_reason == "end_turn" and m.content[0].text == "Tool result: rainy"


async def test_tool_use_streamed(claude: anthropic.AsyncAnthropic, mock_llm: MockLLM,
                                 http: aiohttp.ClientSession) -> None:
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=USER,
                                      tools=[CLAUDE_WEATHER_TOOL],
                                      tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        final = await stream.get_final_message()
    [block] = final.content
    assert block.type == "tool_use" and block.input == WEATHER_ARGS and final.stop_reason == "tool_use"

    body = {"model": MODEL, "max_tokens": 50, "messages": USER, "stream": True, "tools": [CLAUDE_WEATHER_TOOL]}
    async with http.post(mock_llm.url + "/v1/messages", json=body,
                         headers={"anthropic-version": "2023-06-01", "x-mock-tool": "get_weather"}) as resp:
        raw = (await resp.read()).decode()
    datas = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    start = next(d for d in datas if d["type"] == "content_block_start")["content_block"]
    assert start["type"] == "tool_use" and start["name"] == "get_weather" and start["input"] == {}
    deltas = [d["delta"] for d in datas if d["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"} and len(deltas) == 3
    assert json.loads("".join(d["partial_json"] for d in deltas)) == WEATHER_ARGS


async def test_stop_sequences_and_max_tokens(claude: anthropic.AsyncAnthropic) -> None:
    messages = [{"role": "user", "content": "alpha beta gamma delta"}]
    m = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages,
                                     stop_sequences=["gamma"])
    assert (m.content[0].text, m.stop_reason, m.stop_sequence) == ("alpha beta ", "stop_sequence", "gamma")
    m = await claude.messages.create(model=MODEL, max_tokens=3, messages=messages)
    assert (m.content[0].text, m.stop_reason) == ("alpha beta gamma", "max_tokens")


async def test_validation_like_anthropic(claude: anthropic.AsyncAnthropic, mock_llm: MockLLM,
                                         http: aiohttp.ClientSession) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude.messages.create(model=MODEL, max_tokens=10,
                                     messages=[{"role": "system", "content": "no"}, *USER])
    assert 'Unexpected role "system"' in info.value.message
    assert info.value.body["error"]["type"] == "invalid_request_error"
    async with http.post(mock_llm.url + "/v1/messages", json={"model": MODEL, "messages": USER},
                         headers={"anthropic-version": "2023-06-01"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"] == "max_tokens: Field required"
    no_version = {"model": MODEL, "max_tokens": 5, "messages": USER}
    async with http.post(mock_llm.url + "/v1/messages", json=no_version) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["type"] == "error"
        assert body["error"] == {"type": "invalid_request_error", "message": "anthropic-version: header is required"}


@pytest.mark.parametrize("status, error, kind", [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (529, anthropic.InternalServerError, "overloaded_error"),
])
async def test_error_status(claude: anthropic.AsyncAnthropic, status: int, error: type[anthropic.APIStatusError],
                            kind: str) -> None:
    with pytest.raises(error) as info:
        await claude.messages.create(model=MODEL, max_tokens=10, messages=USER,
                                     extra_headers={"x-mock-status": str(status)})
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"


async def test_rate_limit_streamed_request(claude: anthropic.AsyncAnthropic) -> None:
    """A forced status answers before any stream starts, as the API does."""
    with pytest.raises(anthropic.RateLimitError):
        async with claude.messages.stream(model=MODEL, max_tokens=10, messages=USER,
                                          extra_headers={"x-mock-status": "429", "x-mock-retry-after": "7"}) as s:
            await s.get_final_message()


async def test_api_key_setting(start_mock_llm: StartMock) -> None:
    mock = await start_mock_llm(api_key="sk-ant-right")
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-ant-wrong", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(model=MODEL, max_tokens=5, messages=USER)
        assert info.value.body["error"]["type"] == "authentication_error"
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-ant-right", max_retries=0) as client:
        assert (await client.messages.create(model=MODEL, max_tokens=5, messages=USER)).content


async def test_models_in_anthropic_shape(claude: anthropic.AsyncAnthropic, mock_llm: MockLLM) -> None:
    page = await claude.models.list()
    assert MODEL in [m.id for m in page.data] and all(m.type == "model" for m in page.data)
    assert (await claude.models.retrieve(MODEL)).id == MODEL
    with pytest.raises(anthropic.NotFoundError):
        await claude.models.retrieve("claude-none")
    assert mock_llm.requests[0].provider == "anthropic"


async def test_count_tokens(claude: anthropic.AsyncAnthropic, mock_llm: MockLLM) -> None:
    counted = await claude.messages.count_tokens(model=MODEL, messages=USER)
    assert counted.input_tokens == 3
    assert "max_tokens" not in mock_llm.requests[-1].body  # the record keeps what was sent
