"""Upstreams: defaults, Kong's validation messages, PUT/PATCH semantics,
uniqueness, cascading deletes and the health endpoint."""
from __future__ import annotations

import copy

from admin_helpers import NOT_FOUND, create, schema_violation, violation

DEFAULT_HEALTHCHECKS = {
    "active": {
        "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
        "https_verify_certificate": True, "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                      "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                      300, 301, 302, 303, 304, 305, 306, 307, 308], "successes": 0},
        "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
        "recovery": {"base_ejection_time": 30, "max_ejection_time": 300, "half_open_requests": 1},
    },
    "threshold": 0,
}


async def test_create_with_defaults_and_read_back(gateway, encoding):
    status, up = await gateway.admin("POST", "/upstreams", {"name": "backend.internal", "tags": ["a", "b"]}, encoding)
    assert status == 201, up
    assert {k: up[k] for k in ("name", "algorithm", "hash_on", "hash_fallback", "hash_on_cookie_path", "slots",
                                "tags", "targets")} == {
        "name": "backend.internal", "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
        "hash_on_cookie_path": "/", "slots": 10000, "tags": ["a", "b"], "targets": []}
    assert up["healthchecks"] == DEFAULT_HEALTHCHECKS
    assert await gateway.admin("GET", "/upstreams/backend.internal") == (200, up)
    assert await gateway.admin("GET", f"/upstreams/{up['id']}") == (200, up)
    status, listing = await gateway.admin("GET", "/upstreams")
    assert status == 200 and [u["id"] for u in listing["data"]] == [up["id"]] and listing["next"] is None


async def test_algorithm_aliases_are_stored_canonical(gateway, encoding):
    for alias, canonical in [("round_robin", "round-robin"), ("weighted", "weighted-round-robin")]:
        up = await create(gateway, "/upstreams", {"name": f"u-{alias.replace('_', '-')}", "algorithm": alias}, encoding)
        assert up["algorithm"] == canonical


async def test_validation_messages(gateway, encoding):
    algorithms = ", ".join(gateway.worker.plugins.algorithms)
    cases = [
        ({}, violation("name", "required field missing")),
        ({"name": "u", "flavour": "x"}, violation("flavour", "unknown field")),
        ({"name": "u", "slots": "many"}, violation("slots", "expected an integer")),
        ({"name": "u", "slots": 5}, violation("slots", "value should be between 10 and 65536")),
        ({"name": "u", "algorithm": "random"}, violation("algorithm", f"expected one of: {algorithms}")),
        ({"name": "u", "hash_on": "header"}, violation("hash_on_header", "required field missing")),
        ({"name": "u", "hash_on": "cookie"}, violation("hash_on_cookie", "required field missing")),
        ({"name": "u", "hash_on": "moon"}, violation(
            "hash_on", "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture")),
        ({"name": "u", "hash_fallback": "ip"}, violation("hash_fallback", "expected one of: none")),
        ({"name": "192.168.0.1"}, violation("name", "Invalid name ('192.168.0.1'); no ip addresses allowed")),
        ({"name": "[::1]"}, violation("name", "Invalid name ('[::1]'); no ip addresses allowed")),
        ({"name": "backend:8080"}, violation("name", "Invalid name ('backend:8080'); no port allowed")),
        ({"name": "bad name"}, violation("name", "Invalid name ('bad name'); must be a valid hostname")),
        ({"name": "a..b"}, violation("name", "Invalid name ('a..b'); must be a valid hostname")),
        ({"name": "u", "healthchecks": {"active": {"timeout": -1}}}, schema_violation(
            {"healthchecks": {"active": {"timeout": "value should be between 0 and 65535"}}},
            "schema violation (healthchecks.active.timeout: value should be between 0 and 65535)")),
        ({"name": "u", "healthchecks": {"active": {"http_path": "health"}}}, schema_violation(
            {"healthchecks": {"active": {"http_path": "should start with: /"}}},
            "schema violation (healthchecks.active.http_path: should start with: /)")),
        ({"name": "u", "healthchecks": {"active": {"healthy": {"interval": "often"}}}}, schema_violation(
            {"healthchecks": {"active": {"healthy": {"interval": "expected a number"}}}},
            "schema violation (healthchecks.active.healthy.interval: expected a number)")),
        ({"name": "u", "healthchecks": {"passive": {"unhealthy": {"http_statuses": [99]}}}}, schema_violation(
            {"healthchecks": {"passive": {"unhealthy": {"http_statuses": "value should be between 100 and 999"}}}},
            "schema violation (healthchecks.passive.unhealthy.http_statuses: value should be between 100 and 999)")),
        ({"name": "u", "healthchecks": {"active": {"nope": 1}}}, schema_violation(
            {"healthchecks": {"active": {"nope": "unknown field"}}},
            "schema violation (healthchecks.active.nope: unknown field)")),
        ({"slots": "x", "zzz": 1}, schema_violation(
            {"name": "required field missing", "slots": "expected an integer", "zzz": "unknown field"},
            "3 schema violations (name: required field missing; slots: expected an integer; zzz: unknown field)")),
    ]
    for data, expected in cases:
        assert await gateway.admin("POST", "/upstreams", data, encoding) == (400, expected), data
    assert (await gateway.admin("GET", "/upstreams"))[1]["data"] == []


async def test_hash_on_header(gateway, encoding):
    up = await create(gateway, "/upstreams", {"name": "h", "hash_on": "header", "hash_on_header": "x-user"}, encoding)
    assert (up["hash_on"], up["hash_on_header"]) == ("header", "x-user")
    # removing the header name while still hashing on a header is refused
    assert await gateway.admin("PATCH", "/upstreams/h", {"hash_on_header": None}, encoding) == (
        400, violation("hash_on_header", "required field missing"))


async def test_unique_name(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "dup"}, encoding)
    expected = {"code": 5, "name": "unique constraint violation",
                "message": "UNIQUE violation detected on '{name=\"dup\"}'", "fields": {"name": "dup"}}
    assert await gateway.admin("POST", "/upstreams", {"name": "dup"}, encoding) == (409, expected)
    await create(gateway, "/upstreams", {"name": "other"}, encoding)
    assert await gateway.admin("PATCH", "/upstreams/other", {"name": "dup"}, encoding) == (409, expected)
    assert [u["name"] for u in (await gateway.admin("GET", "/upstreams"))[1]["data"]].count("dup") == 1


async def test_patch_merges_nested_healthchecks(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "u", "slots": 100, "healthchecks": {
        "active": {"timeout": 3, "healthy": {"interval": 7, "successes": 2}},
        "passive": {"unhealthy": {"http_failures": 4}}}}, encoding)
    status, up = await gateway.admin("PATCH", "/upstreams/u", {"healthchecks": {"active": {"http_path": "/health"}}},
                                     encoding)
    assert status == 200, up
    expected = copy.deepcopy(DEFAULT_HEALTHCHECKS)
    expected["active"].update(timeout=3, http_path="/health")
    expected["active"]["healthy"].update(interval=7, successes=2)
    expected["passive"]["unhealthy"]["http_failures"] = 4
    assert up["healthchecks"] == expected
    assert up["slots"] == 100  # untouched fields stay
    status, up = await gateway.admin("PATCH", "/upstreams/u", {"healthchecks": {"active": {"healthy": {
        "http_statuses": [200, 204]}}}}, encoding)
    assert status == 200 and up["healthchecks"]["active"]["healthy"] == {
        "interval": 7, "successes": 2, "http_statuses": [200, 204]}  # arrays are replaced, records merged
    assert (await gateway.admin("GET", "/upstreams/u"))[1]["healthchecks"] == up["healthchecks"]


async def test_patch_with_invalid_value_changes_nothing(gateway, encoding):
    before = await create(gateway, "/upstreams", {"name": "u"}, encoding)
    assert await gateway.admin("PATCH", "/upstreams/u", {"healthchecks": {"active": {"concurrency": 0}}}, encoding) == (
        400, schema_violation({"healthchecks": {"active": {"concurrency": "value should be between 1 and 2147483648"}}},
                              "schema violation (healthchecks.active.concurrency: value should be between 1 and "
                              "2147483648)"))
    assert await gateway.admin("GET", "/upstreams/u") == (200, before)


async def test_put_is_an_upsert_and_resets_unspecified_fields(gateway, encoding):
    status, up = await gateway.admin("PUT", "/upstreams/put-me", {"slots": 20, "healthchecks": {
        "active": {"http_path": "/h"}}}, encoding)
    assert status == 201, up
    assert (up["name"], up["slots"], up["healthchecks"]["active"]["http_path"]) == ("put-me", 20, "/h")
    await create(gateway, "/upstreams/put-me/targets", {"target": "a.example.com:80"}, encoding)
    status, again = await gateway.admin("PUT", "/upstreams/put-me", {"algorithm": "weighted"}, encoding)
    assert status == 200, again
    assert again["id"] == up["id"] and again["name"] == "put-me" and again["created_at"] == up["created_at"]
    assert (again["slots"], again["healthchecks"], again["algorithm"]) == (
        10000, DEFAULT_HEALTHCHECKS, "weighted-round-robin")
    assert [t["target"] for t in again["targets"]] == ["a.example.com:80"]  # targets are separate entities
    assert await gateway.admin("PUT", "/upstreams/put-me", {"name": "other"}, encoding) == (
        400, violation("name", "value 'other' does not match the one in the URL 'put-me'"))


async def test_delete_cascades_to_targets(gateway, encoding):
    up = await create(gateway, "/upstreams", {"name": "gone"}, encoding)
    targets = [await create(gateway, "/upstreams/gone/targets", {"target": f"t{i}.example.com:80"}, encoding)
               for i in range(3)]
    keep = await create(gateway, "/upstreams", {"name": "kept"}, encoding)
    kept_target = await create(gateway, "/upstreams/kept/targets", {"target": "t0.example.com:80"}, encoding)
    assert await gateway.admin("DELETE", "/upstreams/gone") == (204, None)
    store = gateway.worker.store
    assert store.get("upstreams", up["id"]) is None
    assert all(store.get("targets", t["id"]) is None for t in targets)
    assert store.list("targets", upstream_id=up["id"]) == []
    assert await gateway.admin("GET", "/upstreams/gone") == (404, NOT_FOUND)
    assert await gateway.admin("GET", "/upstreams/gone/targets") == (404, NOT_FOUND)
    assert await gateway.admin("GET", f"/upstreams/{up['id']}/targets/{targets[0]['id']}") == (404, NOT_FOUND)
    assert up["id"] not in gateway.worker.snapshot.balancers
    # the other upstream and its target are untouched
    assert store.get("targets", kept_target["id"]) is not None
    assert (await gateway.admin("GET", "/upstreams/kept/targets"))[1]["data"][0]["id"] == kept_target["id"]
    assert keep["id"] in gateway.worker.snapshot.balancers


async def test_health_endpoint(gateway, encoding):
    up = await create(gateway, "/upstreams", {"name": "u"}, encoding)
    await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:80", "weight": 10}, encoding)
    await create(gateway, "/upstreams/u/targets", {"target": "b.example.com:81"}, encoding)
    status, health = await gateway.admin("GET", "/upstreams/u/health")
    assert status == 200, health
    assert health["node_id"] == gateway.worker.node_id and health["total"] == 2
    assert {t["target"]: t["health"] for t in health["data"]} == {
        "a.example.com:80": "HEALTHCHECKS_OFF", "b.example.com:81": "HEALTHCHECKS_OFF"}
    assert all(t["upstream"] == {"id": up["id"]} for t in health["data"])
    status, _ = await gateway.admin("PATCH", "/upstreams/u", {"healthchecks": {"passive": {"unhealthy": {
        "http_failures": 3}}}}, encoding)
    assert status == 200
    status, health = await gateway.admin("GET", "/upstreams/u/health")
    assert {t["health"] for t in health["data"]} == {"HEALTHY"}
    assert await gateway.admin("PUT", "/upstreams/u/targets/a.example.com:80/unhealthy") == (204, None)
    status, health = await gateway.admin("GET", "/upstreams/u/health")
    assert {t["target"]: t["health"] for t in health["data"]} == {
        "a.example.com:80": "UNHEALTHY", "b.example.com:81": "HEALTHY"}
    status, summary = await gateway.admin("GET", "/upstreams/u/health?balancer_health=1")
    assert status == 200 and summary["data"]["health"] == "HEALTHY"
    assert await gateway.admin("PUT", "/upstreams/u/targets/a.example.com:80/healthy") == (204, None)
    assert await gateway.admin("PUT", "/upstreams/u/targets/zzz.example.com:80/healthy") == (404, NOT_FOUND)


async def test_seed_short_health_checks(gateway, encoding):
    short = {"passive": True, "threshold": 2, "interval": 30, "path": "/ready", "headers": {"x-probe": "1"}}
    status, up = await gateway.admin("POST", "/upstreams", {"name": "u", "health_checks": short}, encoding)
    assert status == 201, up
    assert up["health_checks"] == short
    active, passive = up["healthchecks"]["active"], up["healthchecks"]["passive"]
    assert (active["http_path"], active["headers"], active["healthy"]["interval"], active["unhealthy"]["interval"],
            active["healthy"]["successes"], active["unhealthy"]["http_failures"]) == (
        "/ready", {"x-probe": ["1"]}, 30, 30, 2, 2)
    assert (passive["healthy"]["successes"], passive["unhealthy"]["http_failures"]) == (2, 2)
    # PATCH of one short field keeps the others
    status, up = await gateway.admin("PATCH", "/upstreams/u", {"health_checks": {"threshold": 4}}, encoding)
    assert status == 200 and up["health_checks"] == {**short, "threshold": 4}, up
    assert up["healthchecks"]["passive"]["unhealthy"]["http_failures"] == 4
    assert up["healthchecks"]["active"]["healthy"]["interval"] == 30
    # interval 0 and passive false turn the checks off again
    status, up = await gateway.admin("PATCH", "/upstreams/u", {"health_checks": {"interval": 0, "passive": False}},
                                     encoding)
    assert status == 200, up
    assert up["healthchecks"]["active"]["healthy"]["interval"] == 0
    assert up["healthchecks"]["active"]["unhealthy"]["interval"] == 0
    assert up["healthchecks"]["passive"]["unhealthy"]["http_failures"] == 0
    assert {t["health"] for t in (await gateway.admin("GET", "/upstreams/u/health"))[1]["data"]} <= {"HEALTHCHECKS_OFF"}
    assert await gateway.admin("POST", "/upstreams", {"name": "v", "health_checks": {"threshold": "x"}}, encoding) == (
        400, schema_violation({"health_checks": {"threshold": "expected an integer"}},
                              "schema violation (health_checks.threshold: expected an integer)"))
