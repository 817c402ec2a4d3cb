"""request-termination through the real proxy: scopes, precedence, responses, echo, trigger."""
from __future__ import annotations

import orjson
import pytest

ENCODINGS = ["form", "json"]


async def setup_service(gateway, upstreams, name="s", paths=("/api",), route="r"):
    """A service on a real echo server with one route; returns the upstream server."""
    backend = await upstreams(name)
    status, _ = await gateway.admin("POST", "/services", {"name": name, "url": f"http://{backend.address}"})
    assert status == 201
    status, _ = await gateway.admin("POST", f"/services/{name}/routes", {"name": route, "paths": list(paths)})
    assert status == 201
    return backend


async def add_plugin(gateway, path="/plugins", config=None, encoding="json", **fields):
    data = {"name": "request-termination", **fields}
    if config is not None:
        data["config"] = config
    status, body = await gateway.admin("POST", path, data, encoding=encoding)
    assert status == 201, body
    return body


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_global_defaults_to_503_service_unavailable(gateway, upstreams, encoding):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, encoding=encoding)
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 503
    assert orjson.loads(body) == {"message": "Service unavailable"}
    assert headers["Content-Type"].startswith("application/json")
    assert backend.hits == 0


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_status_and_message(gateway, upstreams, encoding):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 403, "message": "So long and thanks for all the fish!"},
                     encoding=encoding)
    status, _, body = await gateway.proxy("GET", "/api/x")
    assert status == 403
    assert orjson.loads(body) == {"message": "So long and thanks for all the fish!"}
    assert backend.hits == 0


@pytest.mark.parametrize(("code", "expected"), [
    (401, {"message": "Unauthorized"}),
    (404, {"message": "Not found"}),
    (405, {"message": "Method not allowed"}),
    (500, {"message": "An unexpected error occurred"}),
    (502, {"message": "Bad Gateway"}),
    (503, {"message": "Service unavailable"}),
])
async def test_default_message_per_status(gateway, upstreams, code, expected):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": code})
    status, _, body = await gateway.proxy("GET", "/api/x")
    assert (status, orjson.loads(body)) == (code, expected)


async def test_status_without_default_message_has_empty_body(gateway, upstreams):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 418})
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 418
    assert body == b""
    assert headers["Content-Length"] == "0"


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_raw_body_and_content_type(gateway, upstreams, encoding):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 200, "body": "<html><h1>Maintenance</h1></html>",
                                      "content_type": "text/html; charset=utf-8"}, encoding=encoding)
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 200
    assert body == b"<html><h1>Maintenance</h1></html>"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert backend.hits == 0


async def test_raw_body_without_content_type_is_text(gateway, upstreams):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 410, "body": "gone"})
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert (status, body) == (410, b"gone")
    assert headers["Content-Type"].startswith("text/plain")


async def test_per_service_only_affects_that_service(gateway, upstreams):
    a = await setup_service(gateway, upstreams, "a", ("/a",), "ra")
    b = await setup_service(gateway, upstreams, "b", ("/b",), "rb")
    await add_plugin(gateway, "/services/a/plugins", {"status_code": 451})
    assert (await gateway.proxy("GET", "/a/x"))[0] == 451
    status, _, body = await gateway.proxy("GET", "/b/x")
    assert status == 200 and orjson.loads(body)["upstream"] == "b"
    assert (a.hits, b.hits) == (0, 1)


async def test_per_route_only_affects_that_route(gateway, upstreams):
    backend = await setup_service(gateway, upstreams, "s", ("/one",), "one")
    await gateway.admin("POST", "/services/s/routes", {"name": "two", "paths": ["/two"]})
    await add_plugin(gateway, "/routes/one/plugins", {"status_code": 403})
    assert (await gateway.proxy("GET", "/one"))[0] == 403
    assert (await gateway.proxy("GET", "/two"))[0] == 200
    assert backend.hits == 1


async def test_route_without_service_is_answered(gateway):
    """A route with no service at all can still be answered by the plugin."""
    status, _ = await gateway.admin("POST", "/routes", {"name": "lonely", "paths": ["/lonely"]})
    assert status == 201
    await add_plugin(gateway, "/routes/lonely/plugins", {"status_code": 200, "message": "hello"})
    status, _, body = await gateway.proxy("GET", "/lonely")
    assert (status, orjson.loads(body)) == (200, {"message": "hello"})


async def test_precedence_route_over_service_over_global(gateway, upstreams):
    await setup_service(gateway, upstreams, "s", ("/route-level",), "route-level")
    await gateway.admin("POST", "/services/s/routes", {"name": "service-level", "paths": ["/service-level"]})
    await setup_service(gateway, upstreams, "other", ("/global-level",), "global-level")
    await add_plugin(gateway, "/plugins", {"status_code": 500, "message": "global"})
    await add_plugin(gateway, "/services/s/plugins", {"status_code": 501, "message": "service"})
    await add_plugin(gateway, "/routes/route-level/plugins", {"status_code": 502, "message": "route"})
    results = {}
    for path in ("/route-level", "/service-level", "/global-level"):
        status, _, body = await gateway.proxy("GET", path)
        results[path] = (status, orjson.loads(body)["message"])
    assert results == {"/route-level": (502, "route"), "/service-level": (501, "service"),
                       "/global-level": (500, "global")}


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_disabled_plugin_does_not_run(gateway, upstreams, encoding):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 403}, enabled=False, encoding=encoding)
    assert (await gateway.proxy("GET", "/api"))[0] == 200
    assert backend.hits == 1


async def test_disabling_and_enabling_takes_effect_at_once(gateway, upstreams):
    await setup_service(gateway, upstreams)
    plugin = await add_plugin(gateway, config={"status_code": 403})
    assert (await gateway.proxy("GET", "/api"))[0] == 403
    assert (await gateway.admin("PATCH", f"/plugins/{plugin['id']}", {"enabled": "false"}, encoding="form"))[0] == 200
    assert (await gateway.proxy("GET", "/api"))[0] == 200
    assert (await gateway.admin("PATCH", f"/plugins/{plugin['id']}", {"enabled": True}))[0] == 200
    assert (await gateway.proxy("GET", "/api"))[0] == 403
    assert (await gateway.admin("DELETE", f"/plugins/{plugin['id']}"))[0] == 204
    assert (await gateway.proxy("GET", "/api"))[0] == 200


async def test_disabled_route_plugin_falls_back_to_global(gateway, upstreams):
    """A disabled entity is as if it did not exist: the next scope's plugin applies."""
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, "/plugins", {"status_code": 500})
    await add_plugin(gateway, "/routes/r/plugins", {"status_code": 403}, enabled=False)
    assert (await gateway.proxy("GET", "/api"))[0] == 500


# -- trigger ----------------------------------------------------------------

async def test_trigger_header_or_query_argument(gateway, upstreams):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 403, "trigger": "X-Stop"})
    assert (await gateway.proxy("GET", "/api"))[0] == 200
    assert (await gateway.proxy("GET", "/api", headers={"X-Stop": "1"}))[0] == 403
    assert (await gateway.proxy("GET", "/api", headers={"x-stop": ""}))[0] == 403  # present, any case
    assert (await gateway.proxy("GET", "/api?X-Stop=yes"))[0] == 403
    assert (await gateway.proxy("GET", "/api?X-Stop"))[0] == 403  # a bare query argument counts
    assert (await gateway.proxy("GET", "/api?other=X-Stop"))[0] == 200  # a value is not a name
    assert (await gateway.proxy("GET", "/api", headers={"X-Stopper": "1"}))[0] == 200
    assert backend.hits == 3


# -- echo -------------------------------------------------------------------

async def test_echo_returns_the_request(gateway, upstreams):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 200, "echo": True}, encoding="form")
    status, headers, body = await gateway.proxy(
        "POST", "/api/things?a=1&a=2&flag", json={"hello": "world"}, headers={"X-Custom": "v"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    echo = orjson.loads(body)
    request = echo["request"]
    assert request["method"] == "POST"
    assert request["path"] == "/api/things"
    assert request["scheme"] == "http"
    assert request["host"] == "127.0.0.1"
    assert request["port"] == int(gateway.proxy_url.rsplit(":", 1)[1])
    assert request["headers"]["x-custom"] == "v"
    assert request["query"] == {"a": ["1", "2"], "flag": True}
    assert request["body"] == {"hello": "world"}
    assert orjson.loads(request["raw_body"]) == {"hello": "world"}
    assert echo["matched_route"]["name"] == "r"
    assert echo["matched_service"]["name"] == "s"
    assert echo["message"] is None  # 200 has no default message
    assert echo["kong"]["node_id"] == gateway.worker.node_id
    assert backend.hits == 0


async def test_echo_with_form_body_and_message(gateway, upstreams):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"echo": True, "message": "debug"})
    status, _, body = await gateway.proxy("PUT", "/api", data={"k": "v"})
    echo = orjson.loads(body)
    assert status == 503
    assert echo["message"] == "debug"
    assert echo["request"]["body"] == {"k": "v"}


async def test_echo_with_trigger_leaves_other_traffic_alone(gateway, upstreams):
    backend = await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 200, "echo": True, "trigger": "x-debug"})
    status, _, body = await gateway.proxy("GET", "/api/live")
    assert status == 200 and orjson.loads(body)["upstream"] == "s"
    status, _, body = await gateway.proxy("GET", "/api/live", headers={"X-Debug": "1"})
    assert status == 200 and orjson.loads(body)["request"]["path"] == "/api/live"
    assert backend.hits == 1


async def test_other_phases_still_run_after_exit(gateway, upstreams):
    """header_filter runs on a terminated request: response-headers sees the exit response."""
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": 403})
    status, _ = await gateway.admin("POST", "/plugins", {"name": "response-headers",
                                                          "config": {"add": {"X-Terminated": "yes"}}})
    assert status == 201
    status, headers, _ = await gateway.proxy("GET", "/api")
    assert status == 403
    assert headers["X-Terminated"] == "yes"


@pytest.mark.parametrize("code", [204, 304])
async def test_statuses_without_body_send_none(gateway, upstreams, code):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway, config={"status_code": code, "message": "ignored"})
    for _ in range(2):  # the keep-alive connection stays usable
        status, headers, body = await gateway.proxy("GET", "/api")
        assert (status, body) == (code, b"")


async def test_head_request_gets_headers_only(gateway, upstreams):
    await setup_service(gateway, upstreams)
    await add_plugin(gateway)
    for _ in range(2):
        status, headers, body = await gateway.proxy("HEAD", "/api")
        assert (status, body) == (503, b"")
        assert headers["Content-Type"].startswith("application/json")
    assert (await gateway.proxy("GET", "/api"))[2] == b'{"message":"Service unavailable"}'
