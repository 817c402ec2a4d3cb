"""Header names and values an entity adds to upstream requests are checked on write:
a name with a space or CR/LF, or a value with CR/LF/NUL, could split the request."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from support import form_pairs

BAD_NAMES = ["x y", "x\r\nInjected: 1", "x:y", "", "é"]
BAD_VALUES = ["v\r\nInjected: 1", "v\nx", "v\rx", "v\x00x", "v\x07"]


async def write(gateway: Any, path: str, data: dict[str, Any], encoding: str = "json") -> tuple[int, Any]:
    """POST as JSON or as a urlencoded form (encoded here: aiohttp refuses CR/LF in form keys)."""
    if encoding == "json":
        return await gateway.admin("POST", path, data)
    body = urlencode(form_pairs(data))
    async with gateway.session.post(gateway.admin_url + path, data=body,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.fixture(params=["form", "json"])
def encoding(request: pytest.FixtureRequest) -> str:
    """Every case as a `curl --data` form and as JSON."""
    return request.param


@pytest.fixture
async def pool(gateway: Any) -> Any:
    assert (await write(gateway, "/upstreams", {"name": "pool"}))[0] == 201
    return gateway


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_target_header_names(pool: Any, encoding: str, name: str) -> None:
    if encoding == "form" and name == "":
        pytest.skip("headers[]= is an array in a form, not a map key")
    status, body = await write(pool, "/upstreams/pool/targets",
                                    {"target": "127.0.0.1:9", "headers": {name: "v"}}, encoding)
    assert status == 400, body
    assert body["name"] == "schema violation"
    assert "invalid header name" in body["fields"]["headers"]


@pytest.mark.parametrize("value", BAD_VALUES)
async def test_target_header_values(pool: Any, encoding: str, value: str) -> None:
    status, body = await write(pool, "/upstreams/pool/targets",
                                    {"target": "127.0.0.1:9", "headers": {"x-team": value}}, encoding)
    assert status == 400, body
    assert body["fields"]["headers"] == ("invalid value for header 'x-team': "
                                         "must not contain CR, LF, NUL or other control characters")


async def test_good_headers_pass(pool: Any, encoding: str) -> None:
    headers = {"x-team": "ai platform", "anthropic-version": "2023-06-01", "X_Odd!#$%&'*+^`|~": "a\tb"}
    status, body = await write(pool, "/upstreams/pool/targets",
                                    {"target": "127.0.0.1:9", "headers": headers,
                                     "credentials": {"header_name": "x-api-key", "header_value": "k" * 20}}, encoding)
    assert status == 201, body
    assert body["headers"] == headers


async def test_credential_header_name_and_value(pool: Any, encoding: str) -> None:
    for creds, field in (({"header_name": "Authorization\r\nX-Evil", "header_value": "Bearer k"}, "header_name"),
                         ({"header_name": "Auth orization", "header_value": "Bearer k"}, "header_name"),
                         ({"header_name": "Authorization", "header_value": "Bearer sk-secret\r\nX: y"}, "header_value")):
        status, body = await write(pool, "/upstreams/pool/targets",
                                        {"target": "127.0.0.1:9", "credentials": creds}, encoding)
        assert status == 400, body
        assert field in body["fields"]["credentials"]
        assert "sk-secret" not in body["message"]  # a credential is never echoed


async def test_health_check_headers(gateway: Any, encoding: str) -> None:
    cases = [
        ({"name": "a", "healthchecks": {"active": {"headers": {"x y": ["v"]}}}}, ("healthchecks", "active", "headers")),
        ({"name": "b", "healthchecks": {"active": {"headers": {"x": ["ok", "v\r\nX: 1"]}}}},
         ("healthchecks", "active", "headers")),
        ({"name": "c", "health_checks": {"headers": {"x\ny": "v"}}}, ("health_checks", "headers")),
        ({"name": "d", "host_header": "example.com\r\nX: 1"}, ("host_header",)),
        ({"name": "e", "hash_on": "header", "hash_on_header": "user id"}, ("hash_on_header",)),
    ]
    for upstream, path in cases:
        status, body = await write(gateway, "/upstreams", upstream, encoding)
        assert status == 400, (upstream, body)
        node = body["fields"]
        for key in path:
            node = node[key]
        assert "invalid header" in node or "invalid value for header" in node, node
    status, body = await write(gateway, "/upstreams", {"name": "ok", "healthchecks": {"active": {
        "headers": {"x-probe": ["1", "2"]}}}}, encoding)
    assert status == 201, body
    # a target's own health-check settings too
    status, body = await write(gateway, "/upstreams/ok/targets", {"target": "127.0.0.1:9", "healthchecks": {
        "active": {"headers": {"bad name": ["v"]}}}}, encoding)
    assert status == 400
