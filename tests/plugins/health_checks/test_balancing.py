"""What health means for balancing: slow start, connection limits, threshold."""
from __future__ import annotations

import asyncio
import time

from hc_helpers import configure, health, passive, send
from support import wait_for


async def test_slow_start_ramps_up_monotonically_to_full_weight(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a, b], passive(http_failures=1), slow_start={"window": 10, "min_weight_percent": 10})
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy"))[0] == 204
    clock.advance(5)
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy"))[0] == 204
    weights = []
    for _ in range(12):
        weights.append((await health(gateway))[a.address]["effective_weight"])
        clock.advance(1)
    assert weights[0] == 10  # min_weight_percent of 100
    assert weights == sorted(weights) and weights[-1] == 100 and weights[-2] == 100
    assert abs(weights[5] - 50) < 1e-6  # linear with aggression 1
    assert (await health(gateway))[b.address]["effective_weight"] == 100


async def test_slow_start_shares_traffic_by_effective_weight(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a, b], passive(http_failures=1), slow_start={"window": 100, "min_weight_percent": 10})
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy")
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy")
    clock.advance(25)  # a at 25 % of its weight
    served = [t for _, t in await send(gateway, 125)]
    assert served.count(a.address) == 25 and served.count(b.address) == 100
    clock.advance(100)
    served = [t for _, t in await send(gateway, 100)]
    assert served.count(a.address) == 50


async def test_a_target_added_to_a_busy_upstream_ramps_up(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a], slow_start={"window": 20})
    await send(gateway, 1)  # the upstream takes traffic: a new target must not get a full share at once
    status, _ = await gateway.admin("POST", "/upstreams/pool/targets", {"target": b.address})
    assert status == 201
    entries = await health(gateway)
    assert entries[a.address]["effective_weight"] == 100 and entries[b.address]["effective_weight"] == 10
    # back from DISABLED ramps up too
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/disable")
    clock.advance(30)
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/enable")
    entries = await health(gateway)
    assert entries[a.address]["effective_weight"] == 10 and entries[b.address]["effective_weight"] == 100


async def test_max_conns_skips_full_targets_and_answers_503_when_all_are(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [], name="pool")
    for server in (a, b):
        status, _ = await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address, "max_conns": 1})
        assert status == 201
    await a.set("hang")
    await b.set("hang")
    first = asyncio.ensure_future(gateway.proxy("GET", "/pool/x"))
    second = asyncio.ensure_future(gateway.proxy("GET", "/pool/x"))
    await wait_for(lambda: a.hits == 1 and b.hits == 1, 2)  # the second went to the other target
    started = time.monotonic()
    status, _, body = await gateway.proxy("GET", "/pool/x")
    assert status == 503 and time.monotonic() - started < 0.5
    assert b"every available target is at its connection limit" in body
    entries = await health(gateway)
    assert entries[a.address]["max_conns"] == 1 and entries[a.address]["in_flight"] == 1
    first.cancel()
    second.cancel()
    status, metrics = await gateway.admin("GET", "/metrics")
    assert "kong_py_upstream_limited_total" in metrics


async def test_below_threshold_the_whole_upstream_is_unhealthy(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    servers = [await switchable(n) for n in "abc"]
    hc = passive(http_failures=1)
    hc["threshold"] = 50
    await configure(gateway, servers, hc)
    await servers[0].set("error")
    await servers[1].set("error")
    await send(gateway, 3)
    status, body = await gateway.admin("GET", "/upstreams/pool/health?balancer_health=1")
    assert status == 200 and body["data"]["health"] == "UNHEALTHY"
    assert body["data"]["details"]["threshold"] == 50 and round(body["data"]["details"]["healthy_weight_percent"]) == 33
    hits = servers[2].hits
    assert [s for s, _ in await send(gateway, 2)] == [503, 503]  # c is healthy, but 33 % < 50 %
    assert servers[2].hits == hits
    await gateway.admin("PUT", f"/upstreams/pool/targets/{servers[0].address}/healthy")
    status, body = await gateway.admin("GET", "/upstreams/pool/health?balancer_health=1")
    assert body["data"]["health"] == "HEALTHY"
    assert {s for s, _ in await send(gateway, 2)} == {200, 500}
