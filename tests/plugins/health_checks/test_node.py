"""One state per node: two workers share health counters, probe once, and see
each other's configuration changes at once."""
from __future__ import annotations

import asyncio

from hc_helpers import active, configure, health, passive, send
from support import wait_for


async def test_passive_failures_on_two_workers_add_up(node_pair, switchable):
    first, second = await node_pair()
    a, b = await switchable("a"), await switchable("b")
    await configure(first, [a, b], passive(http_failures=3))
    await a.set("error")
    served: list[tuple[int, bool]] = []  # (worker, reached a)
    for n in range(12):  # alternate workers until three failures reached a
        status, headers, _ = await (first, second)[n % 2].proxy("GET", "/pool/x")
        served.append((n % 2, headers.get("X-Kong-Upstream-Target") == a.address))
        if sum(hit for _, hit in served) == 3:
            break
    assert sum(hit for _, hit in served) == 3 and {w for w, hit in served if hit} == {0, 1}
    for gateway in (first, second):
        await wait_for(lambda: all(t.runtime.healthy is (t.target != a.address)
                                   for t in gateway.worker.snapshot.targets.values()), 1)
        assert {t for _, t in await send(gateway, 4)} == {b.address}
    views: list[dict] = []

    async def same() -> bool:  # in-flight counts other workers publish may lag by up to 100 ms
        views[:] = [await health(first), await health(second)]
        return views[0] == views[1]
    for _ in range(20):
        if await same():
            break
        await asyncio.sleep(0.05)
    assert views[0] == views[1]


async def test_a_node_probes_each_target_once_per_interval(node_pair, switchable, clock):
    first, second = await node_pair()
    a = await switchable("a")
    await configure(second, [a], active(interval=2, successes=1, failures=1))
    clock.advance(2)  # the first probe comes within one interval
    await wait_for(lambda: a.probes == 1, 3)
    for n in range(2, 6):
        clock.advance(2)
        await wait_for(lambda: a.probes >= n, 3)
        await asyncio.sleep(0.15)  # both workers had several ticks to claim it
        assert a.probes == n
    sent = [g.worker.plugins.handlers["health-checks"].checker.prober.sent for g in (first, second)]
    assert sum(sent) == 5
    a.probe_mode = "error"
    clock.advance(2)
    for gateway in (first, second):  # one probe, seen by both
        await wait_for(lambda: not next(iter(gateway.worker.snapshot.targets.values())).runtime.healthy, 2)


async def test_configuration_applies_on_every_worker_before_the_answer(node_pair, switchable):
    first, second = await node_pair()
    a = await switchable("a")
    status, _ = await first.admin("POST", "/services", {"name": "svc", "url": f"http://{a.address}"})
    assert status == 201
    status, _ = await first.admin("POST", "/services/svc/routes", {"paths": ["/new"]})
    assert status == 201
    status, _, _ = await second.proxy("GET", "/new/x")  # no waiting for db_update_frequency
    assert status == 200
    status, _ = await second.admin("DELETE", "/services/svc/routes/" + (await second.admin("GET", "/routes"))[1]["data"][0]["id"])
    assert status == 204
    assert (await first.proxy("GET", "/new/x"))[0] == 404


async def test_connection_limits_hold_across_workers(node_pair, switchable):
    first, second = await node_pair()
    a = await switchable("a", mode="hang")
    await configure(first, [], name="pool")
    status, _ = await first.admin("POST", "/upstreams/pool/targets", {"target": a.address, "max_conns": 1})
    assert status == 201
    hanging = asyncio.ensure_future(first.proxy("GET", "/pool/x"))
    await wait_for(lambda: a.hits == 1, 2)
    status, _, body = await second.proxy("GET", "/pool/x")
    assert status == 503 and b"connection limit" in body and a.hits == 1
    hanging.cancel()
