"""Priority tiers, backup targets, target states and retries, through the real proxy."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from aiohttp import web

from support import free_port, wait_for
from kong_py.balancer.runtime import Runtime


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def setup(gateway, targets: list[dict], retries: int = 5, **upstream) -> None:
    status, body = await gateway.admin("POST", "/upstreams", {"name": "pool", **upstream})
    assert status == 201, body
    for target in targets:
        status, body = await gateway.admin("POST", "/upstreams/pool/targets", target)
        assert status == 201, body
    await gateway.admin("POST", "/services", {"name": "svc", "host": "pool", "retries": retries})
    await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"]})


async def served_by(gateway, n: int) -> Counter:
    seen: Counter = Counter()
    for _ in range(n):
        status, headers, body = await gateway.proxy("GET", "/api/x")
        assert status == 200, body
        seen[headers["X-Kong-Upstream-Target"]] += 1
    return seen


async def test_priority_failover_and_return(gateway, upstreams):
    a, b, c = await upstreams("a"), await upstreams("b"), await upstreams("c")
    await setup(gateway, [{"target": a.address, "priority": 1}, {"target": b.address, "priority": 1},
                          {"target": c.address, "priority": 2}])
    assert await served_by(gateway, 10) == {a.address: 5, b.address: 5}
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy")
    assert await served_by(gateway, 4) == {b.address: 4}  # the tier still has a healthy target
    await gateway.admin("PUT", f"/upstreams/pool/targets/{b.address}/unhealthy")
    assert await served_by(gateway, 4) == {c.address: 4}  # whole tier down: next priority
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy")
    assert await served_by(gateway, 4) == {a.address: 4}  # preferred tier is back


async def test_backup_only_when_no_primary_is_eligible(gateway, upstreams):
    a, backup = await upstreams("a"), await upstreams("backup")
    await setup(gateway, [{"target": a.address}, {"target": backup.address, "backup": True, "priority": 0}])
    assert await served_by(gateway, 5) == {a.address: 5}
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy")
    assert await served_by(gateway, 3) == {backup.address: 3}
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy")
    assert await served_by(gateway, 3) == {a.address: 3}


async def test_draining_finishes_in_flight_and_takes_no_new_requests(gateway, upstreams):
    release = asyncio.Event()

    async def held(request, upstream):
        if request.path == "/long":
            await release.wait()
        return web.Response(text=upstream.name)
    a, b = await upstreams("a", held), await upstreams("b", held)
    await setup(gateway, [{"target": a.address}, {"target": b.address}])
    long_request = asyncio.ensure_future(gateway.proxy("GET", "/api/long"))
    await wait_for(lambda: a.hits == 1)
    status, body = await gateway.admin("PATCH", f"/upstreams/pool/targets/{a.address}", {"state": "DRAINING"})
    assert status == 200 and body["state"] == "DRAINING"
    assert await served_by(gateway, 4) == {b.address: 4}
    status, health = await gateway.admin("GET", "/upstreams/pool/health")
    states = {t["target"]: t["health"] for t in health["data"]}
    assert states[a.address] == "DRAINING"
    release.set()
    status, _, body = await long_request
    assert status == 200 and body == b"a"
    await gateway.admin("PATCH", f"/upstreams/pool/targets/{a.address}", {"state": "ENABLED"})
    assert (await served_by(gateway, 4))[a.address] == 2


async def test_state_endpoints(gateway, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    await setup(gateway, [{"target": a.address}, {"target": b.address}])
    for action, state in (("drain", "DRAINING"), ("disable", "DISABLED")):
        status, body = await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/{action}")
        assert status == 200 and body["state"] == state
        assert await served_by(gateway, 3) == {b.address: 3}
    status, body = await gateway.admin("POST", f"/upstreams/pool/targets/{a.address}/enable")
    assert status == 200 and body["state"] == "ENABLED"
    assert (await served_by(gateway, 4))[a.address] == 2
    status, body = await gateway.admin("PUT", "/upstreams/pool/targets/127.0.0.1:1/drain")
    assert status == 404


async def test_disabled_target_gets_nothing(gateway, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    await setup(gateway, [{"target": a.address, "state": "DISABLED"}, {"target": b.address}])
    assert await served_by(gateway, 4) == {b.address: 4}
    _, health = await gateway.admin("GET", "/upstreams/pool/health")
    assert {t["target"]: t["health"] for t in health["data"]}[a.address] == "DISABLED"


async def test_connect_failure_retries_on_another_target(gateway, upstreams):
    alive = await upstreams("alive")
    dead = f"127.0.0.1:{free_port()}"
    await setup(gateway, [{"target": dead}, {"target": alive.address}])
    for _ in range(6):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
        assert headers["X-Kong-Upstream-Target"] == alive.address
    _, metrics = await gateway.admin("GET", "/metrics")
    assert f'kong_py_upstream_retries_total{{target="{alive.address}",upstream="pool"}} 6.0' in metrics


async def test_retryable_status_goes_to_another_target_and_last_answer_is_relayed(gateway, upstreams):
    async def unavailable(request, upstream):
        return web.json_response({"error": "overloaded"}, status=503)
    bad, good = await upstreams("bad", unavailable), await upstreams("good")
    await setup(gateway, [{"target": bad.address}, {"target": good.address}])
    for _ in range(4):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200 and headers["X-Kong-Upstream-Target"] == good.address
    await gateway.admin("DELETE", f"/upstreams/pool/targets/{good.address}")
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 503 and b"overloaded" in body  # nothing else to try: the real answer


async def test_retries_are_bounded_by_service_retries(gateway):
    dead = [f"127.0.0.1:{free_port()}" for _ in range(4)]
    await setup(gateway, [{"target": d} for d in dead], retries=2)
    started = time.monotonic()
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 502
    assert time.monotonic() - started < 1
    _, metrics = await gateway.admin("GET", "/metrics")
    assert metrics.count('kind="connect"') == 3  # 1 try + 2 retries, each on a different target


async def test_429_retry_after_keeps_target_out_for_that_long(start_gateway, upstreams):
    clock = FakeClock()
    gateway = await start_gateway(runtime=Runtime(clock=clock))

    async def limited(request, upstream):
        return web.json_response({"error": "rate limited"}, status=429, headers={"Retry-After": "30"})
    limited_up, other = await upstreams("limited", limited), await upstreams("other")
    await setup(gateway, [{"target": limited_up.address}, {"target": other.address}])
    assert await served_by(gateway, 6) == {other.address: 6}
    assert limited_up.hits == 1  # tried once, then cooled down
    clock.now += 29
    await served_by(gateway, 4)
    assert limited_up.hits == 1
    clock.now += 2
    await served_by(gateway, 2)
    assert limited_up.hits == 2  # back in rotation (and limited again)


async def test_all_targets_down_is_503_quickly(gateway, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    await setup(gateway, [{"target": a.address}, {"target": b.address}])
    for up in (a, b):
        await gateway.admin("PUT", f"/upstreams/pool/targets/{up.address}/unhealthy")
    started = time.monotonic()
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 503 and body == b'{"message":"failure to get a peer from the ring-balancer"}'
    assert time.monotonic() - started < 1  # no target is tried, nothing waits on a timeout
    assert "X-Kong-Upstream-Target" not in headers
    assert a.hits == b.hits == 0


async def test_health_set_by_hand_reaches_every_worker_and_survives_restart(start_gateway, upstreams, tmp_path):
    """Two gateways on one store stand for two workers (or two nodes)."""
    first = await start_gateway(prefix=tmp_path / "shared")
    a, b = await upstreams("a"), await upstreams("b")
    await setup(first, [{"target": a.address}, {"target": b.address}])
    second = await start_gateway(prefix=tmp_path / "shared")
    await first.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy")
    assert await served_by(first, 2) == {b.address: 2}
    await wait_for(lambda: not next(t for t in second.worker.snapshot.targets.values()
                                    if t.target == a.address).runtime.healthy)
    assert await served_by(second, 2) == {b.address: 2}
    _, health = await second.admin("GET", "/upstreams/pool/health")
    assert {t["target"]: t["health"] for t in health["data"]}[a.address] == "UNHEALTHY"
    await second.running.stop()
    third = await start_gateway(prefix=tmp_path / "shared")
    assert await served_by(third, 2) == {b.address: 2}


async def test_a_real_answer_beats_a_gateway_error_when_tries_run_out(gateway, upstreams):
    async def unavailable(request, upstream):
        return web.json_response({"error": "overloaded"}, status=503)
    busy = await upstreams("busy", unavailable)
    dead = f"127.0.0.1:{free_port()}"
    await setup(gateway, [{"target": busy.address}, {"target": dead}], retries=1)
    for _ in range(4):  # whichever target comes first, the client gets the 503 a target sent
        status, headers, body = await gateway.proxy("GET", "/api/x")
        assert status == 503 and json.loads(body) == {"error": "overloaded"}
        assert headers["X-Kong-Upstream-Target"] == busy.address
        assert headers["X-Kong-Upstream-Tries"] == "2"
