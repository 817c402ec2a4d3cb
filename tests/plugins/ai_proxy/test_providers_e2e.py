"""Every provider behind the gateway, with the official SDKs as clients and the
mock LLM server as the providers (on loopback): translation both ways,
streams, tool calls, images, credentials, aliases, embeddings."""
from __future__ import annotations

import anthropic
import openai
import pytest

KEY = "sk-test-0123456789abcdef0123"


async def _upstream(gateway, *targets, name="llm"):
    status, body = await gateway.admin("POST", "/upstreams", {"name": name, "targets": list(targets)})
    assert status == 201, body
    assert (await gateway.admin("POST", "/services", {"name": name, "host": name, "retries": 1}))[0] == 201
    assert (await gateway.admin("POST", "/services/{}/routes".format(name), {"paths": [f"/{name}"]}))[0] == 201


def _target(mock, provider, models, **extra):
    return {"provider": provider, "host": "127.0.0.1", "port": mock.port, "protocol": "http", "models": models,
            **extra}


def _openai(gateway, name="llm"):
    return openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/{name}/v1", api_key="client-key", max_retries=0)


HI = [{"role": "user", "content": "hello there"}]


@pytest.mark.parametrize("provider, model, path", [
    ("gemini", "gemini-1.5-flash", "/v1beta/models/gemini-1.5-flash:generateContent"),
    ("anthropic", "claude-3-5-haiku", "/v1/messages"),
])
async def test_an_openai_client_in_front_of_other_providers(gateway, start_mock_llm, provider, model, path):
    mock = await start_mock_llm(api_key=KEY)
    header = {"gemini": "x-goog-api-key", "anthropic": "x-api-key"}[provider]
    await _upstream(gateway, _target(mock, provider, [model],
                                     credentials={"header_name": header, "header_value": KEY}))
    client = _openai(gateway)
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=HI, max_tokens=20)
    answer = raw.parse()
    assert answer.choices[0].message.content == "hello there" and answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == 2 and answer.usage.completion_tokens == 2
    assert raw.headers["x-kong-llm-model"] == f"{provider}/{model}"
    assert mock.requests[-1].path == path and mock.requests[-1].header(header) == KEY
    stream = await client.chat.completions.create(model=model, messages=HI, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


async def test_bedrock_is_signed_and_translated_both_ways(gateway, start_mock_llm):
    mock = await start_mock_llm()
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    await _upstream(gateway, _target(mock, "bedrock", [model], credentials={
        "aws_access_key_id": "AKIAKPTEST000000001", "aws_secret_access_key": "kp-test-secret-0123456789",
        "aws_region": "eu-west-1"}))
    client = _openai(gateway)
    answer = await client.chat.completions.create(model=model, messages=HI)
    assert answer.choices[0].message.content == "hello there"
    sent = mock.requests[-1]
    assert sent.path == "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
    assert sent.header("Authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIAKPTEST000000001/")
    assert "/eu-west-1/bedrock/aws4_request" in sent.header("Authorization")
    stream = await client.chat.completions.create(model=model, messages=HI, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "hello there"
    assert mock.requests[-1].path.endswith("/converse-stream")


async def test_azure_gets_the_deployment_and_api_version(gateway, start_mock_llm):
    mock = await start_mock_llm()
    await _upstream(gateway, _target(mock, "azure", ["gpt-4o"], model_aliases={"gpt-4o": "prod-gpt4o"},
                                     credentials={"header_name": "api-key", "header_value": KEY}))
    raw = await _openai(gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    assert raw.parse().choices[0].message.content == "hello there"
    sent = mock.requests[-1]
    assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent.query["api-version"] == "2024-10-21" and sent.header("api-key") == KEY
    assert raw.headers["x-kong-llm-model"] == "azure/prod-gpt4o"


async def test_tool_calls_keep_their_ids_through_anthropic(gateway, mock_llm):
    await _upstream(gateway, _target(mock_llm, "anthropic", ["claude"]))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    client = _openai(gateway)
    first = await client.chat.completions.create(model="claude", tools=tools,
                                                 messages=[{"role": "user", "content": "call tool get_weather"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert call.id.startswith("toolu_") and '"city"' in call.function.arguments
    second = await client.chat.completions.create(model="claude", tools=tools, messages=[
        {"role": "user", "content": "call tool get_weather"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == "Tool result: sunny"
    sent = mock_llm.requests[-1].body
    assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    stream = await client.chat.completions.create(model="claude", tools=tools, stream=True,
                                                  messages=[{"role": "user", "content": "call tool get_weather"}])
    deltas = [c.choices[0].delta for c in [c async for c in stream] if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].id.startswith("toolu_") and calls[0].function.name == "get_weather"
    assert '"city"' in "".join(tc.function.arguments or "" for tc in calls)


async def test_an_anthropic_client_with_tools_in_front_of_openai(gateway, mock_llm):
    await _upstream(gateway, _target(mock_llm, "openai", ["gpt-4o"]))
    client = anthropic.AsyncAnthropic(base_url=f"{gateway.proxy_url}/llm", api_key="k", max_retries=0)
    tools = [{"name": "lookup", "description": "Look up", "input_schema": {
        "type": "object", "properties": {"q": {"type": "string"}}}}]
    message = await client.messages.create(model="gpt-4o", max_tokens=50, tools=tools,
                                           messages=[{"role": "user", "content": "call tool lookup"}])
    block = message.content[0]
    assert message.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "lookup"
    assert block.id.startswith("call_") and block.input == {"q": "mock"}
    async with client.messages.stream(model="gpt-4o", max_tokens=50, tools=tools,
                                      messages=[{"role": "user", "content": "call tool lookup"}]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"q": "mock"}


async def test_images_reach_anthropic_as_image_blocks(gateway, mock_llm):
    await _upstream(gateway, _target(mock_llm, "anthropic", ["claude"]))
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    await _openai(gateway).chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}]}])
    blocks = mock_llm.requests[-1].body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.png"}}


async def test_embeddings_go_to_providers_that_have_them(gateway, start_mock_llm):
    oa, an = await start_mock_llm(), await start_mock_llm()
    await _upstream(gateway, _target(oa, "openai", ["text-embedding-3-small"]),
                    _target(an, "anthropic", ["text-embedding-3-small"]))
    client = _openai(gateway)
    for _ in range(3):
        result = await client.embeddings.create(model="text-embedding-3-small", input="hello")
        assert len(result.data[0].embedding) > 0
    assert [r.path for r in oa.requests] == ["/v1/embeddings"] * 3 and an.requests == []


async def test_same_format_requests_pass_through_byte_for_byte(gateway, mock_llm):
    await _upstream(gateway, _target(mock_llm, "openai", ["gpt-4o"]))
    body = b'{"model": "gpt-4o",   "messages": [{"role": "user", "content": "hello there"}], "n": 1}'
    status, headers, answer = await gateway.proxy("POST", "/llm/v1/chat/completions", data=body,
                                                  headers={"Content-Type": "application/json"})
    assert status == 200 and mock_llm.requests[-1].raw_body == body
    assert headers["X-Kong-LLM-Model"] == "openai/gpt-4o" and b'"hello there"' in answer
