"""The health API, manual health, metrics, and health that survives edits."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from hc_helpers import configure, health, passive, send, states


async def test_health_survives_edits_of_the_upstream_and_other_targets(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a, b, c = await switchable("a"), await switchable("b"), await switchable("c")
    await configure(gateway, [a, b], passive(http_failures=3, tcp_failures=1))
    await b.set("refuse")
    await send(gateway, 2)  # one of them reached b
    await a.set("error")
    await send(gateway, 2)  # both reach a: b is out
    before = await health(gateway)
    assert before[b.address]["health"] == "UNHEALTHY" and before[a.address]["counters"]["http_failures"] == 2
    edits = [("PATCH", "/upstreams/pool", {"tags": ["edited"]}),
             ("PATCH", "/upstreams/pool", {"algorithm": "least-connections"}),
             ("PATCH", "/upstreams/pool", {"healthchecks": {"passive": {"unhealthy": {"http_failures": 5}}}}),
             ("POST", "/upstreams/pool/targets", {"target": c.address}),
             ("PATCH", f"/upstreams/pool/targets/{a.address}", {"weight": 50})]
    for method, path, body in edits:
        status, answer = await gateway.admin(method, path, body)
        assert status in (200, 201), answer
        after = await health(gateway)
        for target in (a.address, b.address):
            for key in ("health", "circuit", "counters", "ejections", "ejected_until", "changed_at"):
                assert after[target][key] == before[target][key], (method, path, target, key)
    assert after[c.address]["health"] == "HEALTHY"
    await gateway.admin("PUT", f"/upstreams/pool/targets/{c.address}/disable")
    served = [t for _, t in await send(gateway, 3)]
    assert served == [a.address] * 3  # a kept its two failures: three more reach the new limit of five
    assert (await states(gateway))[a.address] == "UNHEALTHY"


async def test_manual_health_resets_the_counters(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=3))
    await a.set("error")
    await send(gateway, 2)
    assert (await health(gateway))[a.address]["counters"]["http_failures"] == 2
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy"))[0] == 204
    entry = (await health(gateway))[a.address]
    assert (entry["health"], entry["changed_by"], entry["counters"]["http_failures"]) == ("UNHEALTHY", "manual", 0)
    assert (await gateway.admin("POST", f"/upstreams/pool/targets/{a.address}/healthy"))[0] == 204
    await send(gateway, 2)
    entry = (await health(gateway))[a.address]
    assert entry["health"] == "HEALTHY" and entry["counters"]["http_failures"] == 2


async def test_one_target_endpoint_and_not_found(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    up = await configure(gateway, [a], passive(http_failures=3))
    status, entry = await gateway.admin("GET", f"/upstreams/pool/targets/{a.address}/health")
    assert status == 200 and entry["target"] == a.address and entry["health"] == "HEALTHY"
    assert entry["circuit"] == "closed" and entry["effective_weight"] == 100 and entry["in_flight"] == 0
    assert entry["healthchecks"]["passive"]["unhealthy"]["http_failures"] == 3
    assert (await gateway.admin("GET", f"/upstreams/{up['id']}/targets/{entry['id']}/health"))[1] == entry
    for path in ("/upstreams/nope/health", "/upstreams/pool/targets/10.9.9.9:1/health",
                 "/upstreams/pool/targets/not-a-target!/health"):
        assert await gateway.admin("GET", path) == (404, {"message": "Not found"})
    assert (await gateway.admin("PUT", "/upstreams/pool/targets/10.9.9.9:1/unhealthy"))[0] == 404


async def test_health_checks_off_and_kongs_fields(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    up = await configure(gateway, [a])
    status, body = await gateway.admin("GET", "/upstreams/pool/health")
    assert status == 200 and body["total"] == 1 and body["node_id"] and body["next"] is None
    entry = body["data"][0]
    assert entry["health"] == "HEALTHCHECKS_OFF" and entry["upstream"] == {"id": up["id"]}
    assert entry["data"]["addresses"] == [{"ip": "127.0.0.1", "port": a.port, "health": "HEALTHCHECKS_OFF",
                                           "weight": 100}]
    status, body = await gateway.admin("GET", "/upstreams/pool/health?balancer_health=1")
    assert body["data"]["health"] == "HEALTHCHECKS_OFF"


async def test_state_changes_are_logged_once_and_counted(start_gateway, switchable, runtime, caplog):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=1, successes=1))
    caplog.set_level("INFO", logger="kong_py.health")
    await a.set("error")
    await send(gateway, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "kong_py.health"]
    assert lines == [f"upstream pool target {a.address}: HEALTHY -> UNHEALTHY (1 http failures (passive): status 500)"]
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy")
    status, text = await gateway.admin("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    gauge = {s.labels["state"]: s.value for s in families["kong_py_upstream_target_health"].samples
             if s.labels["target"] == a.address}
    assert gauge == {"HEALTHY": 1, "UNHEALTHY": 0, "DRAINING": 0, "DISABLED": 0, "HEALTHCHECKS_OFF": 0}
    transitions = {s.labels["state"]: s.value for s in families["kong_py_upstream_health_transitions"].samples
                   if s.labels["upstream"] == "pool"}
    assert transitions == {"UNHEALTHY": 1, "HEALTHY": 1}


async def test_seeds_short_form_on_an_upstream_counts_consecutive_failures(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    status, _ = await gateway.admin("POST", "/upstreams", {"name": "pool", "health_checks": {
        "passive": True, "threshold": 3}})
    assert status == 201
    for server in (a, b):
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address})
    await gateway.admin("POST", "/services", {"name": "pool", "host": "pool", "retries": 0})
    await gateway.admin("POST", "/services/pool/routes", {"paths": ["/pool"]})
    await a.set("refuse")
    await send(gateway, 6)  # three tries reach a: three connection failures
    assert (await states(gateway)) == {a.address: "UNHEALTHY", b.address: "HEALTHY"}
    assert {t for _, t in await send(gateway, 4)} == {b.address}
