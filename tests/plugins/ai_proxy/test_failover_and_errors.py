"""Failover across providers, provider errors in the client's shape, and requests no target serves."""
from __future__ import annotations

import anthropic
import openai
import pytest
from aiohttp import web

from fake_providers import anthropic_handler, openai_handler


async def _upstream(gateway, *targets, retries=1):
    status, _ = await gateway.admin("POST", "/upstreams", {"name": "llm", "targets": list(targets)})
    assert status == 201
    await gateway.admin("POST", "/services", {"name": "llm", "host": "llm", "retries": retries})
    await gateway.admin("POST", "/services/llm/routes", {"paths": ["/llm"]})


def _target(server, provider, models, **extra):
    return {"provider": provider, "host": "127.0.0.1", "port": server.port, "protocol": "http",
            "models": models, **extra}


async def test_a_failing_provider_fails_over_to_another_translated_for_it(gateway, upstreams):
    async def overloaded(request, upstream):
        return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
    down = await upstreams("openai", overloaded)
    backup = await upstreams("anthropic", anthropic_handler)
    await _upstream(gateway, _target(down, "openai", ["smart"], priority=1),
                    _target(backup, "anthropic", ["smart"], priority=2))
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/llm/v1", api_key="k", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hi"}])
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello from claude"
    assert raw.headers["x-kong-llm-model"] == "anthropic/smart" and raw.headers["x-kong-upstream-tries"] == "2"
    assert down.hits == 1 and backup.hits == 1


async def test_provider_errors_reach_the_client_in_its_own_shape(gateway, upstreams):
    async def limited(request, upstream):
        return web.json_response({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                                 status=429, headers={"Retry-After": "0"})
    an = await upstreams("anthropic", limited)
    await _upstream(gateway, _target(an, "anthropic", ["claude"]), retries=0)
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/llm/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 429 and caught.value.body["message"] == "slow down"


async def test_a_model_no_target_serves_is_a_400_in_the_clients_format(gateway, upstreams):
    oa = await upstreams("openai", openai_handler)
    await _upstream(gateway, _target(oa, "openai", ["gpt-4"]))
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/llm/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "nope" in caught.value.body["message"]
    claude = anthropic.AsyncAnthropic(base_url=f"{gateway.proxy_url}/llm", api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["type"] == "error" and "nope" in refused.value.body["error"]["message"]
    assert oa.hits == 0


async def test_tokens_and_requests_are_counted(gateway, upstreams):
    an = await upstreams("anthropic", anthropic_handler)
    await _upstream(gateway, _target(an, "anthropic", ["claude"]))
    client = openai.AsyncOpenAI(base_url=f"{gateway.proxy_url}/llm/v1", api_key="k", max_retries=0)
    await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    stream = await client.chat.completions.create(model="claude", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
    async for _ in stream:
        pass
    status, text = await gateway.admin("GET", "/metrics")
    labels = f'model="claude",provider="anthropic",target="127.0.0.1:{an.port}",upstream="llm"'
    assert f"kong_py_ai_requests_total{{{labels}}} 2.0" in text
    assert f'kong_py_ai_tokens_total{{kind="prompt",{labels}}} 10.0' in text
    assert f'kong_py_ai_tokens_total{{kind="completion",{labels}}} 6.0' in text
