"""response-headers: header_filter edits upstream and gateway responses."""
from __future__ import annotations

import pytest
from aiohttp import web


async def custom(request, upstream):
    response = web.json_response({"ok": True})
    response.headers["X-Upstream"] = "original"
    response.headers["X-Secret"] = "leak"
    return response


async def setup(gateway, upstreams):
    backend = await upstreams("b", handler=custom)
    await gateway.admin("POST", "/services", {"name": "s", "url": f"http://{backend.address}"})
    await gateway.admin("POST", "/services/s/routes", {"name": "r", "paths": ["/api"]})
    return backend


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_remove_replace_add_append(gateway, upstreams, encoding):
    await setup(gateway, upstreams)
    config = {"remove": ["X-Secret"], "replace": {"X-Upstream": "replaced", "X-Absent": "never"},
              "add": {"X-Upstream": "not-added", "X-New": "new"}, "append": {"X-Multi": "two"}}
    status, body = await gateway.admin("POST", "/routes/r/plugins", {"name": "response-headers", "config": config},
                                       encoding=encoding)
    assert status == 201, body
    status, headers, body = await gateway.proxy("GET", "/api")
    assert status == 200
    assert "X-Secret" not in headers
    assert headers.getall("X-Upstream") == ["replaced"]
    assert "X-Absent" not in headers
    assert headers["X-New"] == "new"
    assert headers.getall("X-Multi") == ["two"]


async def test_kong_name_value_list_spelling(gateway, upstreams):
    await setup(gateway, upstreams)
    status, body = await gateway.admin("POST", "/plugins", {"name": "response-headers",
                                                            "config": {"append": ["X-Upstream:second"]}},
                                       encoding="form")
    assert status == 201, body
    assert body["config"]["append"] == {"X-Upstream": "second"}
    _, headers, _ = await gateway.proxy("GET", "/api")
    assert headers.getall("X-Upstream") == ["original", "second"]


@pytest.mark.parametrize(("config", "fields"), [
    ({"add": {"Content-Length": "1"}}, {"add": "header 'Content-Length' cannot be changed by this plugin"}),
    ({"remove": ["bad header"]}, {"remove": "invalid header name 'bad header'"}),
    ({"append": ["no-colon"]}, {"append": "invalid value 'no-colon': expected 'name:value'"}),
    ({"rename": {}}, {"rename": "unknown field"}),
])
async def test_bad_config(gateway, config, fields):
    status, body = await gateway.admin("POST", "/plugins", {"name": "response-headers", "config": config})
    assert status == 400
    assert body["fields"] == {"config": fields}
