"""Protocol-level behaviour shared by every entity: content types, bad bodies,
wrong methods, unknown paths and unknown entities, with Kong's status codes
and bodies."""
from __future__ import annotations

import aiohttp

from admin_helpers import NOT_FOUND, create

COLLECTIONS = ["/services", "/routes", "/upstreams", "/upstreams/u/targets", "/services/s/routes"]
ITEMS = ["/services/s", "/routes/r", "/upstreams/u", "/upstreams/u/targets/a.example.com:80", "/services/s/routes/r"]


async def _fixtures(gateway) -> None:
    await create(gateway, "/services", {"name": "s", "host": "example.com"})
    await create(gateway, "/services/s/routes", {"name": "r", "paths": ["/r"]})
    await create(gateway, "/upstreams", {"name": "u"})
    await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:80"})


async def _raw(gateway, method: str, path: str, body: bytes, content_type: str | None) -> tuple[int, object]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with gateway.session.request(method, gateway.admin_url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_other_content_types_are_415(gateway):
    await _fixtures(gateway)
    for path in COLLECTIONS:
        assert await _raw(gateway, "POST", path, b"name=x", "text/plain") == (415, {"message": "Unsupported Media Type"})
    for path in ITEMS:
        for method in ("PATCH", "PUT"):
            status, body = await _raw(gateway, method, path, b"<x/>", "application/xml")
            assert (status, body) == (415, {"message": "Unsupported Media Type"}), (method, path)
    assert (await gateway.admin("GET", "/upstreams"))[1]["data"][0]["name"] == "u"  # nothing was written


async def test_unparsable_json_is_400(gateway):
    await _fixtures(gateway)
    for body in [b"{bad", b'{"name": "x"', b"[1, 2]", b'"text"', b"null", b"\xff\xfe"]:
        for method, path in [("POST", "/upstreams"), ("PATCH", "/upstreams/u"), ("PUT", "/upstreams/u"),
                             ("POST", "/upstreams/u/targets"), ("PATCH", "/services/s")]:
            status, answer = await _raw(gateway, method, path, body, "application/json")
            assert (status, answer) == (400, {"message": "Cannot parse JSON body"}), (method, path, body)


async def test_json_with_charset_and_multipart_are_accepted(gateway):
    status, body = await _raw(gateway, "POST", "/upstreams", b'{"name": "cs"}', "application/json; charset=utf-8")
    assert status == 201 and body["name"] == "cs"
    form = aiohttp.FormData()
    form.add_field("name", "mp")
    form.add_field("healthchecks.active.http_path", "/health")
    form.add_field("tags[]", "a")
    form.add_field("tags[]", "b")
    async with gateway.session.post(gateway.admin_url + "/upstreams", data=form) as resp:
        assert resp.content_type == "application/json"
        created = await resp.json()
        assert resp.status == 201, created
    assert created["healthchecks"]["active"]["http_path"] == "/health"
    assert created["tags"] == ["a", "b"]


WRONG_METHODS = [
    ("DELETE", "/services"), ("PUT", "/services"), ("PATCH", "/services"),
    ("POST", "/services/s"), ("POST", "/routes/r"), ("DELETE", "/upstreams"),
    ("POST", "/upstreams/u"), ("PATCH", "/upstreams/u/targets"),
    ("POST", "/upstreams/u/targets/a.example.com:80"), ("POST", "/upstreams/u/health"),
    ("POST", "/upstreams/u/targets/all"), ("POST", "/status"), ("DELETE", "/"),
]


async def test_wrong_method_is_405(gateway):
    await _fixtures(gateway)
    for method, path in WRONG_METHODS:
        assert await gateway.admin(method, path) == (405, {"message": "Method not allowed"}), (method, path)


async def test_unknown_paths_and_entities_are_404(gateway, encoding):
    await _fixtures(gateway)
    for path in ["/nothing", "/services/s/nothing", "/targets/all", "/upstreams/u/targets/a.example.com:80/x/y"]:
        assert await gateway.admin("GET", path) == (404, NOT_FOUND), path
    missing = ["/services/nope", "/routes/nope", "/upstreams/nope", "/upstreams/u/targets/nope.example.com:80",
               "/upstreams/nope/targets/a.example.com:80", "/services/nope/routes/r", "/services/s/routes/nope",
               "/services/00000000-0000-4000-8000-000000000000", "/upstreams/nope/targets",
               "/upstreams/nope/health", "/routes/nope/service"]
    for path in missing:
        assert await gateway.admin("GET", path) == (404, NOT_FOUND), path
    for path in missing[:7]:
        assert await gateway.admin("PATCH", path, {"tags": ["x"]}, encoding) == (404, NOT_FOUND), path
    assert await gateway.admin("POST", "/upstreams/nope/targets", {"target": "x.example.com"}, encoding) == (404, NOT_FOUND)
    assert await gateway.admin("POST", "/services/nope/routes", {"paths": ["/x"]}, encoding) == (404, NOT_FOUND)


async def test_delete_is_idempotent_at_the_top_level_and_404_when_nested(gateway):
    await _fixtures(gateway)
    for path in ["/services/nope", "/routes/nope", "/upstreams/nope",
                 "/upstreams/00000000-0000-4000-8000-000000000000"]:
        assert await gateway.admin("DELETE", path) == (204, None), path
    for path in ["/upstreams/u/targets/nope.example.com:80", "/services/s/routes/nope",
                 "/upstreams/nope/targets/a.example.com:80", "/services/nope/routes/r"]:
        assert await gateway.admin("DELETE", path) == (404, NOT_FOUND), path


async def test_nested_entity_of_another_parent_is_not_found(gateway, encoding):
    """GET/PATCH/DELETE /services/{s}/routes/{r} only reach s's routes (Kong)."""
    await _fixtures(gateway)
    await create(gateway, "/services", {"name": "other", "host": "other.example.com"})
    await create(gateway, "/upstreams", {"name": "u2"})
    for method in ("GET", "PATCH", "DELETE"):
        data = {"paths": ["/moved"]} if method == "PATCH" else None
        assert await gateway.admin(method, "/services/other/routes/r", data, encoding) == (404, NOT_FOUND)
        data = {"weight": 1} if method == "PATCH" else None
        assert await gateway.admin(method, "/upstreams/u2/targets/a.example.com:80", data, encoding) == (404, NOT_FOUND)
    status, route = await gateway.admin("GET", "/routes/r")
    assert status == 200 and route["paths"] == ["/r"]
    assert route["service"]["id"] == (await gateway.admin("GET", "/services/s"))[1]["id"]
    assert (await gateway.admin("GET", "/upstreams/u/targets/a.example.com:80"))[1]["weight"] == 100


async def test_error_bodies_are_json(gateway):
    async with gateway.session.get(gateway.admin_url + "/nothing") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
    async with gateway.session.post(gateway.admin_url + "/upstreams", json={"name": 5}) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/json"
