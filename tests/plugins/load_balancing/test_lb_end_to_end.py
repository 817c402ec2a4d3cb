"""The algorithms through the Admin API and the proxy."""
from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from support import wait_for


async def _pool(gateway, upstreams, algorithm, weights, **fields):
    servers = [await upstreams(chr(ord("a") + i)) for i in range(len(weights))]
    status, body = await gateway.admin("POST", "/upstreams", {"name": "pool", "algorithm": algorithm, **fields})
    assert status == 201, body
    for server, weight in zip(servers, weights):
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address, "weight": weight})
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    return servers, body


async def test_aliases_are_stored_under_kong_names(gateway):
    for alias, name in (("least_conn", "least-connections"), ("consistent_hashing", "consistent-hashing"),
                        ("latency", "latency")):
        status, body = await gateway.admin("POST", "/upstreams", {"name": f"u-{alias.replace('_', '-')}",
                                                                  "algorithm": alias})
        assert status == 201 and body["algorithm"] == name


async def test_consistent_hashing_on_a_header(gateway, upstreams):
    servers, _ = await _pool(gateway, upstreams, "consistent-hashing", [100, 100, 100],
                             hash_on="header", hash_on_header="X-User")
    seen: dict[str, set[str]] = {}
    for i in range(60):
        user = f"user-{i % 12}"
        status, headers, _ = await gateway.proxy("GET", "/api/x", headers={"X-User": user})
        assert status == 200
        seen.setdefault(user, set()).add(headers["X-Kong-Upstream-Target"])
    assert all(len(targets) == 1 for targets in seen.values())
    assert len({next(iter(t)) for t in seen.values()}) > 1


async def test_consistent_hashing_cookie_is_set_once(gateway, upstreams):
    await _pool(gateway, upstreams, "consistent-hashing", [100, 100],
                hash_on="cookie", hash_on_cookie="sticky", hash_on_cookie_path="/api")
    status, headers, _ = await gateway.proxy("GET", "/api/x")
    assert status == 200
    cookies = headers.getall("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith("sticky=") and "Path=/api" in cookies[0]
    value = cookies[0].split(";")[0].split("=", 1)[1]
    first = headers["X-Kong-Upstream-Target"]
    for _ in range(5):
        status, headers, _ = await gateway.proxy("GET", "/api/x", headers={"Cookie": f"sticky={value}"})
        assert headers["X-Kong-Upstream-Target"] == first and "Set-Cookie" not in headers


async def test_least_connections_avoids_the_busy_target(gateway, upstreams):
    release = asyncio.Event()

    async def held(request, upstream):
        await release.wait()
        return web.Response(text=upstream.name)

    slow_server = await upstreams("slow", handler=held)
    fast_server = await upstreams("fast")
    await gateway.admin("POST", "/upstreams", {"name": "pool", "algorithm": "least-connections"})
    for server in (slow_server, fast_server):
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address})
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    # equal targets take turns: within two requests one lands on the slow
    # target and stays in flight there
    pending = []
    for _ in range(2):
        pending.append(asyncio.ensure_future(gateway.proxy("GET", "/api/x")))
        # the request has reached a server (and, on the slow one, stays there)
        await wait_for(lambda: slow_server.hits + fast_server.hits == len(pending))
    assert slow_server.hits == 1
    served = Counter()
    for _ in range(10):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
        served[headers["X-Kong-Upstream-Target"]] += 1
    assert served == {fast_server.address: 10}
    release.set()
    await asyncio.gather(*pending)
    assert slow_server.hits == 1


async def test_latency_prefers_the_faster_target(gateway, upstreams):
    async def sluggish(request, upstream):
        await asyncio.sleep(0.05)
        return web.Response(text=upstream.name)

    slow_server = await upstreams("slow", handler=sluggish)
    fast_server = await upstreams("fast")
    await gateway.admin("POST", "/upstreams", {"name": "pool", "algorithm": "latency"})
    for server in (slow_server, fast_server):
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address})
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    for _ in range(30):
        status, _, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
    assert fast_server.hits >= 25 and slow_server.hits <= 3
