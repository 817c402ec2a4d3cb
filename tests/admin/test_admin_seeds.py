"""The seed documents' Admin API examples, replayed as written.

load-balancing-admin-api.md: every curl command as the same form body. Its
upstream names are made consistent: ``ai-upstream`` is created once and every
later command goes to it (its other "create" commands become a PUT of the same
body to /upstreams/ai-upstream); the ``openai-upstream`` block is its own upstream.
configure-an-upstream.md: the JSON body POSTed to /upstreams.
"""
from __future__ import annotations

import json

from admin_helpers import create


async def _form(gateway, method: str, path: str, *pairs: tuple[str, str]) -> tuple[int, object]:
    """A ``curl -X METHOD --data k=v ...`` call, pairs sent exactly as written."""
    async with gateway.session.request(method, gateway.admin_url + path, data=list(pairs) or None) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def test_seed_configure_upstream_targets(gateway):
    assert (await _form(gateway, "POST", "/upstreams", ("name", "openai-upstream"), ("algorithm", "round-robin")))[0] == 201
    for host in ("api.openai.com", "api2.openai.com"):
        status, target = await _form(gateway, "POST", "/upstreams/openai-upstream/targets",
                                     ("target", f"{host}:443"), ("weight", "100"))
        assert status == 201, target
        assert (target["target"], target["weight"]) == (f"{host}:443", 100)
    status, listing = await gateway.admin("GET", "/upstreams/openai-upstream/targets")
    assert sorted(t["target"] for t in listing["data"]) == ["api.openai.com:443", "api2.openai.com:443"]


async def test_seed_load_balancing_commands(gateway):
    status, up = await _form(gateway, "POST", "/upstreams", ("name", "ai-upstream"), ("algorithm", "round-robin"))
    assert status == 201 and up["algorithm"] == "round-robin", up

    # "Least Connections" and "Hash-based balancing", against the same upstream
    for pairs in [
        [("name", "ai-upstream"), ("algorithm", "least-connections")],
        [("name", "ai-upstream"), ("algorithm", "consistent-hashing"), ("hash_on", "header"),
         ("hash_on_header", "user-id")],
    ]:
        status, body = await _form(gateway, "PUT", "/upstreams/ai-upstream", *pairs)
        assert status == 200, body
        assert body["id"] == up["id"] and {k: body[k] for k, _ in pairs} == dict(pairs)

    # Health checks
    status, body = await _form(gateway, "PATCH", "/upstreams/ai-upstream",
                               ("healthchecks.active.http_path", "/health"),
                               ("healthchecks.active.healthy.interval", "5"),
                               ("healthchecks.active.unhealthy.interval", "5"))
    assert status == 200, body
    active = body["healthchecks"]["active"]
    assert (active["http_path"], active["healthy"]["interval"], active["unhealthy"]["interval"]) == ("/health", 5, 5)
    status, body = await _form(gateway, "PATCH", "/upstreams/ai-upstream",
                               ("healthchecks.passive.healthy.successes", "3"),
                               ("healthchecks.passive.unhealthy.http_failures", "3"))
    assert status == 200, body
    checks = body["healthchecks"]
    assert (checks["passive"]["healthy"]["successes"], checks["passive"]["unhealthy"]["http_failures"]) == (3, 3)
    assert checks["active"]["http_path"] == "/health" and checks["active"]["healthy"]["interval"] == 5  # kept
    assert (body["hash_on"], body["hash_on_header"]) == ("header", "user-id")

    # Target weight and priority: the weight update is a POST of an existing target
    first = await create(gateway, "/upstreams/ai-upstream/targets", {"target": "api1.example.com:443", "weight": 100},
                         "form")
    status, body = await _form(gateway, "POST", "/upstreams/ai-upstream/targets",
                               ("target", "api1.example.com:443"), ("weight", "200"))
    assert status == 200 and (body["id"], body["weight"]) == (first["id"], 200), body
    status, body = await _form(gateway, "POST", "/upstreams/ai-upstream/targets",
                               ("target", "backup-api.example.com:443"), ("weight", "100"), ("backup", "true"))
    assert status == 201 and (body["weight"], body["backup"]) == (100, True), body

    # Monitoring
    status, health = await _form(gateway, "GET", "/upstreams/ai-upstream/health")
    assert status == 200 and {t["target"] for t in health["data"]} == {"api1.example.com:443",
                                                                        "backup-api.example.com:443"}
    assert {t["health"] for t in health["data"]} <= {"HEALTHY", "UNHEALTHY"}  # checks are on now
    status, targets = await _form(gateway, "GET", "/upstreams/ai-upstream/targets")
    assert status == 200 and {t["target"]: t["weight"] for t in targets["data"]} == {
        "api1.example.com:443": 200, "backup-api.example.com:443": 100}
    async with gateway.session.get(gateway.admin_url + "/metrics") as resp:
        assert resp.status == 200
        assert "ai-upstream" in await resp.text()


SEED_UPSTREAM = {
    "name": "ai-providers-upstream",
    "algorithm": "round-robin",
    "targets": [
        {
            "path": "/v1/chat/completions",
            "provider": "openai",
            "weight": 50,
            "priority": 1,
            "default_model": "gpt-4o-mini",
            "models": ["gpt-3.5-turbo", "gpt-4", "gpt-4o-mini"],
            "credentials": {"header_name": "Authorization", "header_value": "Bearer your-openai-key"},
        },
        {
            "path": "/v1/messages",
            "provider": "anthropic",
            "weight": 50,
            "priority": 1,
            "default_model": "claude-3-5-sonnet-20241022",
            "models": ["claude-3-5-sonnet-20241022"],
            "headers": {"anthropic-version": "2023-06-01"},
            "credentials": {"header_name": "x-api-key", "header_value": "your-anthropic-key"},
        },
    ],
    "health_checks": {"passive": True, "threshold": 3, "interval": 60},
}


async def test_seed_configure_an_upstream_json(gateway):
    status, created = await gateway.admin("POST", "/upstreams", SEED_UPSTREAM)
    assert status == 201, created
    status, up = await gateway.admin("GET", "/upstreams/ai-providers-upstream")
    assert status == 200
    assert (up["id"], up["name"], up["algorithm"]) == (created["id"], "ai-providers-upstream", "round-robin")
    assert up["health_checks"] == SEED_UPSTREAM["health_checks"]
    # the short form drives Kong's record: passive counting and active probing at that threshold
    checks = up["healthchecks"]
    assert checks["passive"]["unhealthy"]["http_failures"] == 3 and checks["passive"]["healthy"]["successes"] == 3
    assert checks["active"]["healthy"]["interval"] == 60 and checks["active"]["unhealthy"]["interval"] == 60

    by_provider = {t["provider"]: t for t in up["targets"]}
    assert set(by_provider) == {"openai", "anthropic"}
    for sent in SEED_UPSTREAM["targets"]:
        got = by_provider[sent["provider"]]
        for field in ("path", "provider", "weight", "priority", "default_model", "models"):
            assert got[field] == sent[field], field
        assert got["headers"] == sent.get("headers")
        assert got["upstream"] == {"id": created["id"]}
        assert got["credentials"]["header_name"] == sent["credentials"]["header_name"]
        assert got["credentials"]["header_value"].startswith("****")
        stored = gateway.worker.store.get("targets", got["id"])
        assert stored["credentials"]["header_value"] == sent["credentials"]["header_value"]
    assert (by_provider["openai"]["target"], by_provider["anthropic"]["target"]) == (
        "api.openai.com:443", "api.anthropic.com:443")
    text = json.dumps([created, up, (await gateway.admin("GET", "/upstreams/ai-providers-upstream/targets"))[1]])
    assert "your-openai-key" not in text and "your-anthropic-key" not in text
    status, health = await gateway.admin("GET", "/upstreams/ai-providers-upstream/health")
    assert status == 200 and len(health["data"]) == 2
    async with gateway.session.get(gateway.admin_url + "/metrics") as resp:
        assert resp.status == 200
