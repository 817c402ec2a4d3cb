"""The mock's OpenAI and Azure OpenAI endpoints, driven by the official ``openai`` SDK."""
from __future__ import annotations

import json
import time

import aiohttp
import openai
import pytest

from kong_py.mock_llm import MockLLM
from mock_tools import StartMock, WEATHER_ARGS, WEATHER_TOOL

USER = [{"role": "user", "content": "hello there, gateway"}]


async def test_chat_completion_echoes_the_last_user_message(oai: openai.AsyncOpenAI, mock_llm: MockLLM) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"}, *USER]
    r = await oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.created > 0
    assert r.model == "gpt-4o-mini"
    choice = r.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant" and choice.message.content == "hello there, gateway"
    assert choice.message.tool_calls is None
    assert r.usage is not None
    # tokens are words: 2 + 2 + 2 + 3 in, 3 out
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (9, 3, 12)
    [seen] = mock_llm.requests
    assert (seen.method, seen.path, seen.provider, seen.model, seen.stream) == (
        "POST", "/v1/chat/completions", "openai", "gpt-4o-mini", False)
    assert seen.body["messages"] == messages
    assert seen.header("Authorization") == "Bearer sk-test-key"


async def test_chat_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there, gateway"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 3  # one a word by default
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 3, 6)
    assert all(c.usage is None for c in chunks[:-1])


async def test_chat_stream_wire_format(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    """Without include_usage: no usage chunk; every event a ``data:`` line; ``[DONE]`` last."""
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    async with http.post(mock_llm.url + "/v1/chat/completions", json=body,
                         headers={"x-mock-chunks": "2"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    assert events[-1] == "data: [DONE]"
    parsed = [json.loads(e[6:]) for e in events[:-1]]
    assert all("usage" not in p for p in parsed)
    assert [p["choices"][0]["delta"].get("content") for p in parsed] == ["", "hello there,", " gateway", None]
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chunks_and_chunk_delay(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True,
        extra_headers={"x-mock-chunks": "6", "x-mock-chunk-delay-ms": "40"})
    arrivals = []
    pieces = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            pieces.append(chunk.choices[0].delta.content)
    # fewer words than chunks: the answer grows with lorem words to one word a chunk
    assert len(pieces) == 6
    assert "".join(pieces) == "hello there, gateway lorem ipsum dolor"
    assert arrivals[-1] - started >= 5 * 0.04  # (gaps seen by a busy client may merge; the total cannot shrink)


async def test_words_and_reply_headers(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-words": "5"})
    assert r.choices[0].message.content == "lorem ipsum dolor sit amet"
    assert r.usage is not None and r.usage.completion_tokens == 5
    r = await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-reply": "exactly this"})
    assert r.choices[0].message.content == "exactly this"


async def test_max_tokens_and_stop(oai: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "one two three four five"}]
    r = await oai.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=2)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("one two", "length")
    assert r.usage is not None and r.usage.completion_tokens == 2
    r = await oai.chat.completions.create(model="gpt-4o", messages=messages, stop=[" four"])
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("one two three", "stop")


async def test_tool_call(oai: openai.AsyncOpenAI, mock_llm: MockLLM) -> None:
    messages = [{"role": "user", "content": "What is the weather? Please call tool get_weather."}]
    r = await oai.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS

    # the tool's result comes back: the answer names it
    followup = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}]
    r = await oai.chat.completions.create(model="gpt-4o", messages=followup, tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "Tool result: sunny, 21 degrees"
    assert mock_llm.requests[-1].body["messages"][-1]["tool_call_id"] == call.id


async def test_tool_call_by_header_and_tool_choice(oai: openai.AsyncOpenAI) -> None:
    other = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}
    tools = [WEATHER_TOOL, other]
    r = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=tools,
                                          extra_headers={"x-mock-tool": "lookup",
                                                         "x-mock-tool-args": '{"q": "kong"}'})
    [call] = r.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"q": "kong"})

    r = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=tools,
                                          tool_choice={"type": "function", "function": {"name": "lookup"}})
    assert (r.choices[0].message.tool_calls or [])[0].function.name == "lookup"
    r = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=tools,
                                          tool_choice="required")
    assert (r.choices[0].message.tool_calls or [])[0].function.name == "get_weather"
    r = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "call tool"}],
                                          tools=tools, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content == "call tool"
    # no tools offered: "call tool" is only text
    r = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "call tool"}])
    assert r.choices[0].message.content == "call tool"


async def test_tool_call_streamed(oai: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "call tool"}]
    stream = await oai.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL],
                                               stream=True, extra_headers={"x-mock-chunks": "4"})
    chunks = [c async for c in stream]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].id.startswith("call_") and deltas[0].function
    assert deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    assert len(deltas) == 1 + 4
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == WEATHER_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # the SDK's own stream helper assembles the same call
    async with oai.chat.completions.stream(model="gpt-4o", messages=messages,
                                           tools=[WEATHER_TOOL]) as helper:
        final = await helper.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS


async def test_embeddings(oai: openai.AsyncOpenAI, mock_llm: MockLLM) -> None:
    # the SDK asks for base64 unless told otherwise and decodes it itself
    r = await oai.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert mock_llm.requests[-1].body["encoding_format"] == "base64"
    assert r.object == "list" and r.model == "text-embedding-3-small"
    assert [d.index for d in r.data] == [0, 1] and all(len(d.embedding) == 16 for d in r.data)
    assert abs(sum(v * v for v in r.data[0].embedding) - 1) < 1e-3
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (3, 3)
    floats = await oai.embeddings.create(model="text-embedding-3-small", input="one two",
                                         encoding_format="float", dimensions=4)
    assert len(floats.data[0].embedding) == 4
    again = await oai.embeddings.create(model="text-embedding-3-small", input="one two", encoding_format="float")
    assert [round(v, 5) for v in again.data[0].embedding] == [round(v, 5) for v in r.data[0].embedding]


async def test_models(oai: openai.AsyncOpenAI) -> None:
    page = await oai.models.list()
    ids = [m.id for m in page.data]
    assert "gpt-4o" in ids and all(m.object == "model" for m in page.data)
    assert (await oai.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as info:
        await oai.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


async def test_models_setting(start_mock_llm: StartMock) -> None:
    mock = await start_mock_llm(models=("only-one",))
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0) as client:
        assert [m.id for m in (await client.models.list()).data] == ["only-one"]


@pytest.mark.parametrize("status, error", [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError), (500, openai.InternalServerError), (503, openai.InternalServerError),
])
async def test_error_status(oai: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError]) -> None:
    with pytest.raises(error) as info:
        await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-status": str(status),
                                                         "x-mock-error-message": "planned failure"})
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["message"] == "planned failure"
    assert info.value.message.endswith("planned failure")


async def test_rate_limit_with_retry_after(oai: openai.AsyncOpenAI, mock_llm: MockLLM) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await oai.chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-status": "429"})
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.code == "rate_limit_exceeded"

    # the SDK honours Retry-After between its retries
    mock_llm.clear()
    client = oai.with_options(max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="gpt-4o", messages=USER,
                                             extra_headers={"x-mock-status": "429", "x-mock-retry-after": "0.3"})
    assert time.monotonic() - started >= 0.5
    assert len(mock_llm.requests) == 3


async def test_request_validation(oai: openai.AsyncOpenAI, mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(model="gpt-4o", messages=[])
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(model="", messages=USER)
    assert info.value.param == "model"
    async with http.post(mock_llm.url + "/v1/chat/completions", data=b"{not json",
                         headers={"content-type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert mock_llm.requests[-1].body is None and mock_llm.requests[-1].raw_body == b"{not json"


async def test_api_key_setting(start_mock_llm: StartMock) -> None:
    mock = await start_mock_llm(api_key="sk-right")
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="gpt-4o", messages=USER)
        assert info.value.code == "invalid_api_key" and "sk-wrong" not in str(info.value)
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="sk-right", max_retries=0) as client:
        r = await client.chat.completions.create(model="gpt-4o", messages=USER)
        assert r.choices[0].message.content


async def test_azure_openai(mock_llm: MockLLM) -> None:
    client = openai.AsyncAzureOpenAI(azure_endpoint=mock_llm.url, api_key="azure-key",
                                     api_version="2024-10-21", max_retries=0)
    async with client:
        r = await client.chat.completions.create(model="my-gpt4o-deployment", messages=USER)
        assert r.model == "my-gpt4o-deployment" and r.choices[0].message.content == "hello there, gateway"
        stream = await client.chat.completions.create(model="my-gpt4o-deployment", messages=USER,
                                                      stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == \
            "hello there, gateway"
        e = await client.embeddings.create(model="my-embedding", input="x y")
        assert e.model == "my-embedding" and e.usage.prompt_tokens == 2
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="d", messages=USER,
                                                 extra_headers={"x-mock-status": "429"})
        assert info.value.body["code"] == "429"
    seen = mock_llm.requests[0]
    assert (seen.path, seen.query, seen.provider, seen.model) == (
        "/openai/deployments/my-gpt4o-deployment/chat/completions", {"api-version": "2024-10-21"},
        "azure", "my-gpt4o-deployment")
    assert seen.header("api-key") == "azure-key"


async def test_azure_requires_api_version(mock_llm: MockLLM, http: aiohttp.ClientSession) -> None:
    url = mock_llm.url + "/openai/deployments/d/chat/completions"
    async with http.post(url, json={"messages": USER}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "MissingApiVersionParameter" and "api-version" in error["message"]
    async with http.post(url + "?api-version=2024-10-21", json={"messages": USER}) as resp:
        assert resp.status == 200 and (await resp.json())["model"] == "d"
