"""Header and parameter credentials, put in per target in the balancer phase,
against real upstream servers through a real gateway."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from cred_fakes import lower, route_to

KEY_A = "sk-target-a-0001"
KEY_B = "sk-target-b-0002"


async def test_a_header_credential_replaces_what_the_client_sent(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("openai")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "Authorization", "header_value": f"Bearer {KEY_A}"}}])
    status, _, _ = await gateway.proxy("POST", "/r/v1/chat/completions", json={"model": "m"}, headers={
        "Authorization": "Bearer client-own-key", "x-api-key": "client-x", "api-key": "client-azure",
        "x-goog-api-key": "client-goog", "X-Other": "kept"})
    assert status == 200
    got = lower(server.requests[-1]["headers"])
    assert got["authorization"] == f"Bearer {KEY_A}"
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        assert name not in got  # a client's own provider keys never reach the target
    assert got["x-other"] == "kept"


async def test_azure_api_key_header(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("azure")
    await route_to(gateway, [{"target": server.address, "provider": "azure",
                              "path": "/openai/deployments/gpt-4o/chat/completions",
                              "credentials": {"header_name": "api-key", "header_value": KEY_A}}])
    await gateway.proxy("POST", "/r/v1/chat/completions?api-version=2024-10-21", json={},
                        headers={"api-key": "client", "Authorization": "Bearer client"})
    sent = server.requests[-1]
    got = lower(sent["headers"])
    assert got["api-key"] == KEY_A and "authorization" not in got
    assert sent["path"] == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


async def test_targets_without_credentials_are_left_alone(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("plain")
    await route_to(gateway, [{"target": server.address}])
    await gateway.proxy("GET", "/r/x?key=client", headers={"Authorization": "Basic dXNlcjpwdw==",
                                                           "x-api-key": "client"})
    got = lower(server.requests[-1]["headers"])
    assert got["authorization"] == "Basic dXNlcjpwdw==" and got["x-api-key"] == "client"
    assert server.requests[-1]["path"] == "/x?key=client"


async def test_a_retry_to_another_target_carries_that_targets_key(start_gateway, upstreams):
    async def unavailable(request, upstream):
        return web.json_response({"error": "overloaded"}, status=503)

    gateway = await start_gateway()
    first = await upstreams("first", handler=unavailable)
    second = await upstreams("second")
    # "first" is in the preferred tier (lower priority number): tried first, then "second"
    await route_to(gateway, [
        {"target": first.address, "priority": 1, "credentials": {"header_name": "x-api-key", "header_value": KEY_A}},
        {"target": second.address, "priority": 2, "credentials": {"header_name": "Authorization",
                                                                  "header_value": f"Bearer {KEY_B}"}},
    ], retries=1)
    status, headers, body = await gateway.proxy("POST", "/r/v1/messages", json={"model": "m"})
    assert status == 200, body
    assert headers["X-Kong-Upstream-Target"] == second.address
    sent_first, sent_second = lower(first.requests[-1]["headers"]), lower(second.requests[-1]["headers"])
    assert sent_first["x-api-key"] == KEY_A and "authorization" not in sent_first
    assert sent_second["authorization"] == f"Bearer {KEY_B}"
    assert "x-api-key" not in sent_second  # the first target's key did not follow the retry


async def test_allow_override_keeps_the_clients_value(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "x-api-key", "header_value": KEY_A, "allow_override": True}}])
    await gateway.proxy("GET", "/r/a", headers={"x-api-key": "client-key", "Authorization": "Bearer client"})
    got = lower(server.requests[-1]["headers"])
    assert got["x-api-key"] == "client-key" and got["authorization"] == "Bearer client"
    await gateway.proxy("GET", "/r/b")  # nothing sent by the client: the target's key
    assert lower(server.requests[-1]["headers"])["x-api-key"] == KEY_A


async def test_callow_override_is_the_seeds_spelling(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "key", "param_value": KEY_A, "callow_override": "true"}}])
    await gateway.proxy("GET", "/r/a?key=client-key")
    assert dict(parse_qsl(urlsplit(server.requests[-1]["path"]).query)) == {"key": "client-key"}


async def test_query_parameter_added_or_replaced(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("gemini")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "key", "param_value": "AIza secret/+&=", "param_location": "query"}}])
    await gateway.proxy("GET", "/r/models?alt=sse&key=client-key&x=a%20b")
    path = server.requests[-1]["path"]
    assert parse_qsl(urlsplit(path).query) == [("alt", "sse"), ("x", "a b"), ("key", "AIza secret/+&=")]
    assert "x=a%20b" in path  # the client's other arguments keep their encoding
    await gateway.proxy("GET", "/r/models")
    assert parse_qsl(urlsplit(server.requests[-1]["path"]).query) == [("key", "AIza secret/+&=")]


async def test_query_override_respects_allow_override(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("gemini")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "key", "param_value": KEY_A, "allow_override": True}}])
    await gateway.proxy("GET", "/r/m?key=client-key")
    assert parse_qsl(urlsplit(server.requests[-1]["path"]).query) == [("key", "client-key")]
    await gateway.proxy("GET", "/r/m?other=1")
    assert parse_qsl(urlsplit(server.requests[-1]["path"]).query) == [("other", "1"), ("key", KEY_A)]


async def test_body_parameter_in_json(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "api_key", "param_value": KEY_A, "param_location": "body"}}])
    status, _, _ = await gateway.proxy("POST", "/r/v1/complete", json={"model": "m", "api_key": "client", "n": 2},
                                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200
    sent = server.requests[-1]
    assert json.loads(sent["body"]) == {"model": "m", "api_key": KEY_A, "n": 2}
    got = lower(sent["headers"])
    assert got["content-type"] == "application/json; charset=utf-8"  # kept as the client sent it
    assert int(got["content-length"]) == len(sent["body"].encode())
    # no body at all: a JSON object with the credential
    await gateway.proxy("POST", "/r/v1/complete")
    sent = server.requests[-1]
    assert json.loads(sent["body"]) == {"api_key": KEY_A}
    assert lower(sent["headers"])["content-type"] == "application/json"


async def test_body_parameter_in_a_form_and_allow_override(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "token", "param_value": "a b&c", "param_location": "body"}}])
    await gateway.proxy("POST", "/r/f", data="x=1&token=client&y=%C3%A9",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    sent = server.requests[-1]
    assert parse_qsl(sent["body"]) == [("x", "1"), ("y", "é"), ("token", "a b&c")]
    assert lower(sent["headers"])["content-type"] == "application/x-www-form-urlencoded"

    gateway2 = await start_gateway()
    server2 = await upstreams("s2")
    await route_to(gateway2, [{"target": server2.address, "credentials": {
        "param_name": "api_key", "param_value": KEY_A, "param_location": "body", "allow_override": True}}])
    await gateway2.proxy("POST", "/r/c", json={"api_key": "client"})
    assert json.loads(server2.requests[-1]["body"]) == {"api_key": "client"}
    await gateway2.proxy("POST", "/r/c", json={"model": "m"})
    assert json.loads(server2.requests[-1]["body"]) == {"model": "m", "api_key": KEY_A}


async def test_a_body_that_cannot_carry_the_parameter_is_refused(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "api_key", "param_value": KEY_A, "param_location": "body"}}])
    for data, content_type in ((b"[1, 2]", "application/json"), (b"not json", "application/json"),
                               (b"\x00\x01", "application/octet-stream")):
        status, _, body = await gateway.proxy("POST", "/r/c", data=data, headers={"Content-Type": content_type})
        assert status == 400, body
        assert KEY_A.encode() not in body and b"credentials" in body
    assert server.hits == 0


async def test_a_body_set_by_an_earlier_plugin_gets_the_parameter(start_gateway, upstreams, install_plugin):
    """The body another plugin put in place (as ai-proxy's translation will) is the one edited."""
    install_plugin("translate", '''
from kong_py.hookspecs import hookimpl


class Handler:
    name = "{name}"
    PRIORITY = 770
    VERSION = "1.0.0"
    ALWAYS_ON = True

    @hookimpl
    async def balancer(self, ctx):
        ctx.upstream_request.body = b'{{"translated": true}}'
        ctx.upstream_request.path = ctx.upstream_request.path + "/translated"
''')
    gateway = await start_gateway(plugins="bundled,translate")
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "param_name": "api_key", "param_value": KEY_A, "param_location": "body"}}])
    await gateway.proxy("POST", "/r/c", json={"original": True})
    sent = server.requests[-1]
    assert json.loads(sent["body"]) == {"translated": True, "api_key": KEY_A}
    assert sent["path"] == "/c/translated"


async def test_path_parameter_fills_the_targets_placeholder(start_gateway, upstreams):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "path": "/keys/{api_key}/v1/chat", "credentials": {
        "param_name": "api_key", "param_value": "k/1 2", "param_location": "path"}}])
    status, _, _ = await gateway.proxy("POST", "/r/anything?x=1", json={})
    assert status == 200
    assert server.requests[-1]["path"] == "/keys/k%2F1%202/v1/chat?x=1"


async def test_path_parameter_without_a_placeholder_fails_clearly(start_gateway, upstreams, caplog):
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "path": "/v1/chat", "credentials": {
        "param_name": "api_key", "param_value": KEY_A, "param_location": "path"}}])
    for _ in range(3):
        status, _, body = await gateway.proxy("POST", "/r/c", json={})
        assert status == 500
        assert b"{api_key}" in body and KEY_A.encode() not in body
    assert server.hits == 0
    assert sum("{api_key}" in r.getMessage() for r in caplog.records) == 1  # logged once


async def test_param_location_path_is_accepted_and_others_refused(gateway):
    status, body = await gateway.admin("POST", "/upstreams", {"name": "u"})
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:9", "path": "/k/{key}", "credentials": {
            "param_name": "key", "param_value": KEY_A, "param_location": "path"}})
    assert status == 201, body
    assert body["credentials"]["param_location"] == "path"
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:10", "credentials": {"param_name": "key", "param_value": KEY_A,
                                                  "param_location": "header"}})
    assert status == 400
    assert body["fields"]["credentials"]["param_location"] == "expected one of: query, body, path"
