"""The seeds' mixed upstream behind OpenAI and Anthropic clients (fake providers on loopback)."""
from __future__ import annotations

import anthropic
import openai

from fake_providers import anthropic_handler, openai_handler


async def _seeds_upstream(gateway, upstreams):
    """The seeds' "Configure an Upstream" body, with the providers on loopback."""
    oa = await upstreams("openai", openai_handler)
    an = await upstreams("anthropic", anthropic_handler)
    body = {
        "name": "ai-providers-upstream", "algorithm": "round-robin",
        "targets": [
            {"path": "/v1/chat/completions", "provider": "openai", "weight": 50, "priority": 1,
             "host": "127.0.0.1", "port": oa.port, "protocol": "http", "default_model": "gpt-4o-mini",
             "models": ["gpt-3.5-turbo", "gpt-4", "gpt-4o-mini"],
             "credentials": {"header_name": "Authorization", "header_value": "Bearer your-openai-key"}},
            {"path": "/v1/messages", "provider": "anthropic", "weight": 50, "priority": 1,
             "host": "127.0.0.1", "port": an.port, "protocol": "http",
             "default_model": "claude-3-5-sonnet-20241022", "models": ["claude-3-5-sonnet-20241022"],
             "headers": {"anthropic-version": "2023-06-01"},
             "credentials": {"header_name": "x-api-key", "header_value": "your-anthropic-key"}}],
        "health_checks": {"passive": True, "threshold": 3, "interval": 60}}
    status, created = await gateway.admin("POST", "/upstreams", body)
    assert status == 201, created
    assert (await gateway.admin("POST", "/services", {"name": "ai", "host": "ai-providers-upstream"}))[0] == 201
    assert (await gateway.admin("POST", "/services/ai/routes", {"paths": ["/ai"]}))[0] == 201
    return oa, an


async def test_an_openai_client_gets_openai_answers_from_either_provider(gateway, upstreams):
    oa, an = await _seeds_upstream(gateway, upstreams)
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/ai/v1", api_key="client-key", max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello from gpt" and oa.hits == 1
    answer = await client.chat.completions.create(model="claude-3-5-sonnet-20241022",
                                                  messages=[{"role": "system", "content": "be brief"},
                                                            {"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello from claude" and answer.usage.completion_tokens == 3
    sent = an.requests[-1]
    assert sent["path"] == "/v1/messages"
    body = __import__("json").loads(sent["body"])
    assert body["system"] == "be brief" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 4096
    raw = await client.chat.completions.with_raw_response.create(
        model="claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-kong-llm-model"] == "anthropic/claude-3-5-sonnet-20241022"


async def test_streams_are_translated_event_by_event(gateway, upstreams):
    await _seeds_upstream(gateway, upstreams)
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/ai/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(model="claude-3-5-sonnet-20241022", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from claude"


async def test_an_anthropic_client_in_front_of_an_openai_target(gateway, upstreams):
    await _seeds_upstream(gateway, upstreams)
    client = anthropic.AsyncAnthropic(base_url=f"{gateway.proxy_url}/ai", api_key="k", max_retries=0)
    message = await client.messages.create(model="gpt-4", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "Hello from gpt" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 7
    async with client.messages.stream(model="gpt-4", max_tokens=50,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "Hello from gpt"


async def test_model_routing_falls_back_to_default_models_and_refuses_unknown_ones(gateway, upstreams):
    oa, an = await _seeds_upstream(gateway, upstreams)
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/ai/v1", api_key="k", max_retries=0)
    models = sorted(m.id for m in (await client.models.list()).data)
    assert models == ["claude-3-5-sonnet-20241022", "gpt-3.5-turbo", "gpt-4", "gpt-4o-mini"]
    for _ in range(4):  # a model nobody lists: each provider's default model
        raw = await client.chat.completions.with_raw_response.create(
            model="llama-3", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-kong-llm-model"] in ("openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-20241022")
