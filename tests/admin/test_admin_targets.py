"""Targets: addresses (Kong's ``target`` and the seeds' host/port/protocol and
provider forms), POST-as-update, PUT/PATCH by id and by host:port, validation."""
from __future__ import annotations

from admin_helpers import NOT_FOUND, create, schema_violation, violation


async def _upstream(gateway, encoding: str, name: str = "u") -> dict:
    return await create(gateway, "/upstreams", {"name": name}, encoding)


async def test_target_addresses(gateway, encoding):
    up = await _upstream(gateway, encoding)
    cases = [
        ({"target": "a.example.com"}, ("a.example.com:8000", "a.example.com", 8000)),
        ({"target": "b.example.com:9000"}, ("b.example.com:9000", "b.example.com", 9000)),
        ({"target": "10.0.0.1"}, ("10.0.0.1:8000", "10.0.0.1", 8000)),
        ({"target": "[::1]"}, ("[::1]:8000", "::1", 8000)),
        ({"target": "[2001:db8::1]:8443"}, ("[2001:db8::1]:8443", "2001:db8::1", 8443)),
        ({"host": "c.example.com", "port": 8080, "protocol": "http"}, ("c.example.com:8080", "c.example.com", 8080)),
        ({"host": "d.example.com", "protocol": "https"}, ("d.example.com:443", "d.example.com", 443)),
        ({"host": "e.example.com", "protocol": "http"}, ("e.example.com:80", "e.example.com", 80)),
    ]
    for data, (target, host, port) in cases:
        status, body = await gateway.admin("POST", "/upstreams/u/targets", data, encoding)
        assert status == 201, (data, body)
        assert (body["target"], body["host"], body["port"]) == (target, host, port), data
        assert (body["weight"], body["upstream"]) == (100, {"id": up["id"]})
        assert await gateway.admin("GET", f"/upstreams/u/targets/{target}") == (200, body)
        assert await gateway.admin("GET", f"/upstreams/{up['id']}/targets/{body['id']}") == (200, body)
    status, listing = await gateway.admin("GET", "/upstreams/u/targets")
    assert status == 200 and {t["target"] for t in listing["data"]} == {c[1][0] for c in cases}
    assert (await gateway.admin("GET", "/upstreams/u/targets/all"))[1]["data"] == listing["data"]
    assert (await gateway.admin("GET", "/upstreams/u/targets/b.example.com"))[0] == 404  # port 8000 is not 9000


async def test_seed_target_fields(gateway, encoding):
    await _upstream(gateway, encoding)
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "host": "llm.example.com", "port": 8443, "protocol": "https", "path": "/v1/chat/completions",
        "provider": "custom", "priority": 2, "weight": 30, "headers": {"x-team": "ml"}, "tags": ["gpu"],
        "default_model": "m-small", "models": ["m-small", "m-large"], "backup": True}, encoding)
    assert status == 201, body
    assert {k: body[k] for k in ("target", "protocol", "path", "provider", "priority", "weight", "headers", "tags",
                                  "default_model", "models", "backup")} == {
        "target": "llm.example.com:8443", "protocol": "https", "path": "/v1/chat/completions", "provider": "custom",
        "priority": 2, "weight": 30, "headers": {"x-team": "ml"}, "tags": ["gpu"], "default_model": "m-small",
        "models": ["m-small", "m-large"], "backup": True}


async def test_known_provider_alone_gets_its_host(gateway, encoding):
    await _upstream(gateway, encoding)
    for provider, host in [("openai", "api.openai.com"), ("anthropic", "api.anthropic.com")]:
        status, body = await gateway.admin("POST", "/upstreams/u/targets", {"provider": provider}, encoding)
        assert status == 201, body
        assert (body["target"], body["host"], body["port"], body["protocol"]) == (f"{host}:443", host, 443, "https")
    assert await gateway.admin("POST", "/upstreams/u/targets", {"provider": "unheard-of"}, encoding) == (
        400, violation("target", "required field missing"))


async def test_target_validation(gateway, encoding):
    await _upstream(gateway, encoding)
    cases = [
        ({}, violation("target", "required field missing")),
        ({"weight": 5}, violation("target", "required field missing")),
        ({"target": "a.example.com", "weight": 65536}, violation("weight", "value should be between 0 and 65535")),
        ({"target": "a.example.com", "weight": -1}, violation("weight", "value should be between 0 and 65535")),
        ({"target": "a.example.com", "weight": "heavy"}, violation("weight", "expected an integer")),
        ({"target": "a.example.com", "priority": -1}, violation("priority", "value should be between 0 and 65535")),
        ({"target": "a.example.com", "priority": "first"}, violation("priority", "expected an integer")),
        ({"target": "a.example.com", "colour": "red"}, violation("colour", "unknown field")),
        ({"target": "a..example.com"},
         violation("target", "Invalid target ('a..example.com'); not a valid hostname or ip address")),
        ({"target": "a.example.com:99999"},
         violation("target", "Invalid target ('a.example.com:99999'); not a valid hostname or ip address")),
        ({"target": "[::zz]:80"}, violation("target", "Invalid target ('[::zz]:80'); not a valid hostname or ip address")),
        ({"target": "a.example.com", "path": "v1"}, violation("path", "should start with: /")),
        ({"target": "a.example.com", "protocol": "gopher"}, violation("protocol", "expected one of: http, https")),
        ({"target": "a.example.com", "credentials": {"header_name": "Authorization"}}, schema_violation(
            {"credentials": {"header_value": "required field missing"}},
            "schema violation (credentials.header_value: required field missing)")),
        ({"target": "a.example.com", "weight": 70000, "bogus": 1}, schema_violation(
            {"bogus": "unknown field", "weight": "value should be between 0 and 65535"},
            "2 schema violations (bogus: unknown field; weight: value should be between 0 and 65535)")),
    ]
    for data, expected in cases:
        assert await gateway.admin("POST", "/upstreams/u/targets", data, encoding) == (400, expected), data
    assert (await gateway.admin("GET", "/upstreams/u/targets"))[1]["data"] == []


async def test_posting_an_existing_target_updates_it(gateway, encoding):
    await _upstream(gateway, encoding)
    first = await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:443", "weight": 100,
                                                           "tags": ["x"]}, encoding)
    status, again = await gateway.admin("POST", "/upstreams/u/targets", {"target": "a.example.com:443",
                                                                         "weight": 200}, encoding)
    assert status == 200, again
    assert (again["id"], again["weight"], again["tags"]) == (first["id"], 200, ["x"])
    # the seeds' host/port form names the same target
    status, again = await gateway.admin("POST", "/upstreams/u/targets", {"host": "a.example.com", "port": 443,
                                                                         "backup": True}, encoding)
    assert status == 200 and again["id"] == first["id"] and again["backup"] is True and again["weight"] == 200
    status, listing = await gateway.admin("GET", "/upstreams/u/targets")
    assert [t["id"] for t in listing["data"]] == [first["id"]]
    # the same address in another upstream is another target
    await _upstream(gateway, encoding, "v")
    other = await create(gateway, "/upstreams/v/targets", {"target": "a.example.com:443"}, encoding)
    assert other["id"] != first["id"]


async def test_patch_and_put_by_id_and_by_address(gateway, encoding):
    await _upstream(gateway, encoding)
    target = await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:80", "weight": 10,
                                                            "tags": ["t"], "models": ["m1"],
                                                            "headers": {"x-a": "1", "x-b": "2"}}, encoding)
    status, body = await gateway.admin("PATCH", f"/upstreams/u/targets/{target['id']}", {"weight": 20}, encoding)
    assert status == 200 and (body["weight"], body["tags"], body["models"]) == (20, ["t"], ["m1"])
    # a map is a value, not a record: PATCH replaces it whole
    status, body = await gateway.admin("PATCH", f"/upstreams/u/targets/{target['id']}", {"headers": {"x-c": "3"}},
                                       encoding)
    assert status == 200 and body["headers"] == {"x-c": "3"} and body["weight"] == 20
    status, body = await gateway.admin("PATCH", "/upstreams/u/targets/a.example.com:80", {"priority": 3}, encoding)
    assert status == 200 and (body["weight"], body["priority"]) == (20, 3)
    # PUT replaces: what is not given falls back to defaults; the URL names the target
    status, body = await gateway.admin("PUT", "/upstreams/u/targets/a.example.com:80", {"weight": 30}, encoding)
    assert status == 200, body
    assert (body["id"], body["target"], body["weight"], body["priority"], body["tags"], body["models"]) == (
        target["id"], "a.example.com:80", 30, 1, None, None)
    status, body = await gateway.admin("PUT", f"/upstreams/u/targets/{target['id']}", {"weight": 40}, encoding)
    assert status == 200 and (body["id"], body["target"], body["weight"]) == (target["id"], "a.example.com:80", 40)
    # PUT of an unknown address creates it
    status, body = await gateway.admin("PUT", "/upstreams/u/targets/b.example.com", {"weight": 5}, encoding)
    assert status == 201 and (body["target"], body["weight"]) == ("b.example.com:8000", 5)
    assert await gateway.admin("PUT", "/upstreams/u/targets/a.example.com:80", {"target": "c.example.com:80"},
                               encoding) == (
        400, violation("target", "value 'c.example.com:80' does not match the one in the URL 'a.example.com:80'"))
    # PATCH may move a target to another address
    status, body = await gateway.admin("PATCH", "/upstreams/u/targets/a.example.com:80",
                                       {"target": "c.example.com:81"}, encoding)
    assert status == 200 and (body["id"], body["host"], body["port"]) == (target["id"], "c.example.com", 81)
    assert (await gateway.admin("GET", "/upstreams/u/targets/a.example.com:80"))[0] == 404
    # ...but not onto another target's address
    status, body = await gateway.admin("PATCH", "/upstreams/u/targets/c.example.com:81",
                                       {"target": "b.example.com:8000"}, encoding)
    assert status == 409 and body["code"] == 5 and body["name"] == "unique constraint violation", body
    assert await gateway.admin("PATCH", "/upstreams/u/targets/c.example.com:81", {"weight": 99999}, encoding) == (
        400, violation("weight", "value should be between 0 and 65535"))


async def test_delete_target(gateway, encoding):
    up = await _upstream(gateway, encoding)
    a = await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:80"}, encoding)
    b = await create(gateway, "/upstreams/u/targets", {"target": "b.example.com:80"}, encoding)
    assert await gateway.admin("DELETE", "/upstreams/u/targets/a.example.com:80") == (204, None)
    assert await gateway.admin("DELETE", f"/upstreams/{up['id']}/targets/{b['id']}") == (204, None)
    assert gateway.worker.store.get("targets", a["id"]) is None and gateway.worker.store.get("targets", b["id"]) is None
    assert (await gateway.admin("GET", "/upstreams/u/targets"))[1] == {"data": [], "next": None}
    assert await gateway.admin("GET", f"/upstreams/u/targets/{a['id']}") == (404, NOT_FOUND)
    assert gateway.worker.snapshot.balancers[up["id"]].targets == []


async def test_embedded_targets_on_create(gateway, encoding):
    data = {"name": "emb", "targets": [{"target": "a.example.com:80", "weight": 5},
                                       {"host": "b.example.com", "port": 81}]}
    if encoding == "form":  # a list of records in a form: targets[1].target=...
        pairs = [("name", "emb"), ("targets[1].target", "a.example.com:80"), ("targets[1].weight", "5"),
                 ("targets[2].host", "b.example.com"), ("targets[2].port", "81")]
        async with gateway.session.post(gateway.admin_url + "/upstreams", data=pairs) as resp:
            status, body = resp.status, await resp.json()
    else:
        status, body = await gateway.admin("POST", "/upstreams", data)
    assert status == 201, body
    assert sorted((t["target"], t["weight"]) for t in body["targets"]) == [("a.example.com:80", 5),
                                                                           ("b.example.com:81", 100)]
    assert len((await gateway.admin("GET", "/upstreams/emb/targets"))[1]["data"]) == 2
    status, body = await gateway.admin("POST", "/upstreams", {"name": "bad", "targets": [{"target": "ok.example.com"},
                                                                                          {"weight": 1}]})
    assert status == 400 and body["fields"] == {"targets": [None, {"target": "required field missing"}]}, body
    assert (await gateway.admin("GET", "/upstreams/bad"))[0] == 404  # nothing half-created
