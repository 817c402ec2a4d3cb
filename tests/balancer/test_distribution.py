"""Distribution and stickiness through the real proxy and real upstream servers."""
from __future__ import annotations

from collections import Counter

import pytest


async def _pool(gateway, upstreams, weights: list[int], route: dict | None = None, **upstream):
    servers = [await upstreams(f"t{i}") for i in range(len(weights))]
    status, body = await gateway.admin("POST", "/upstreams", {"name": "pool", **upstream})
    assert status == 201, body
    for server, weight in zip(servers, weights):
        status, body = await gateway.admin("POST", "/upstreams/pool/targets",
                                           {"target": server.address, "weight": weight})
        assert status == 201, body
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    status, body = await gateway.admin("POST", "/services/s/routes", route or {"paths": ["/api"]})
    assert status == 201, body
    return servers


async def _target(gateway, path: str = "/api/x", **kwargs) -> str:
    status, headers, body = await gateway.proxy("GET", path, **kwargs)
    assert status == 200, body
    return headers["X-Kong-Upstream-Target"]


async def test_round_robin_every_cycle_is_exact_to_the_weights(gateway, upstreams):
    servers = await _pool(gateway, upstreams, [10, 10, 5], algorithm="weighted-round-robin")
    for _ in range(2):  # two whole cycles of 25
        cycle = Counter([await _target(gateway) for _ in range(25)])
        assert sorted(cycle.values()) == [5, 10, 10]
        assert cycle[servers[2].address] == 5
    assert [s.hits for s in servers] == [20, 20, 10]


async def test_round_robin_spreads_picks_instead_of_bursts(gateway, upstreams):
    heavy, light = await _pool(gateway, upstreams, [70, 30])
    order = [await _target(gateway) for _ in range(100)]
    assert Counter(order) == {heavy.address: 70, light.address: 30}
    longest = run = 0
    for previous, current in zip(order, order[1:]):
        run = run + 1 if current == previous == heavy.address else 0
        longest = max(longest, run)
    assert longest <= 2  # never more than 3 heavy picks in a row


async def test_consistent_hashing_splits_keys_by_weight_chi_square(gateway, upstreams):
    weights = [100, 200, 300]
    servers = await _pool(gateway, upstreams, weights, algorithm="consistent-hashing",
                          hash_on="header", hash_on_header="x-user")
    keys = 1200
    counts = Counter([await _target(gateway, headers={"x-user": f"user-{i}"}) for i in range(keys)])
    expected = [keys * w / sum(weights) for w in weights]
    chi_square = sum((counts[s.address] - e) ** 2 / e for s, e in zip(servers, expected))
    assert chi_square < 18.4  # 2 degrees of freedom, p = 0.0001


HASH_SOURCES = [
    ("header", {"hash_on": "header", "hash_on_header": "x-user"}, None),
    ("query_arg", {"hash_on": "query_arg", "hash_on_query_arg": "user"}, None),
    ("path", {"hash_on": "path"}, None),
    ("uri_capture", {"hash_on": "uri_capture", "hash_on_uri_capture": "user"},
     {"paths": ["~/users/(?P<user>[^/]+)"]}),
    ("consumer falls back to header", {"hash_on": "consumer", "hash_fallback": "header",
                                       "hash_fallback_header": "x-user"}, None),
]


def _request(source: str, key: str) -> dict:
    if source == "query_arg":
        return {"path": f"/api/x?user={key}"}
    if source == "path":
        return {"path": f"/api/{key}"}
    if source == "uri_capture":
        return {"path": f"/users/{key}/chat"}
    return {"headers": {"x-user": key}}


@pytest.mark.parametrize("source,settings,route", HASH_SOURCES, ids=[s[0] for s in HASH_SOURCES])
async def test_same_key_same_target_for_each_hash_source(gateway, upstreams, source, settings, route):
    await _pool(gateway, upstreams, [100, 100, 100], route=route, algorithm="consistent-hashing", **settings)
    chosen = {}
    for i in range(12):
        key = f"key-{i}"
        targets = {await _target(gateway, **_request(source, key)) for _ in range(3)}
        assert len(targets) == 1, f"{source}: key {key} moved between {targets}"
        chosen[key] = targets.pop()
    assert len(set(chosen.values())) >= 2  # the key really decides


async def test_same_client_ip_same_target(gateway, upstreams):
    await _pool(gateway, upstreams, [100, 100, 100], algorithm="consistent-hashing", hash_on="ip")
    assert len({await _target(gateway) for _ in range(10)}) == 1


async def test_cookie_is_generated_once_then_sticks(gateway, upstreams):
    await _pool(gateway, upstreams, [100, 100, 100], algorithm="consistent-hashing",
                hash_on="cookie", hash_on_cookie="lb", hash_on_cookie_path="/api")
    status, headers, _ = await gateway.proxy("GET", "/api/x")
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("lb=") and "Path=/api" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    first = headers["X-Kong-Upstream-Target"]
    for _ in range(5):
        status, headers, _ = await gateway.proxy("GET", "/api/x", headers={"Cookie": f"lb={value}"})
        assert headers["X-Kong-Upstream-Target"] == first
        assert "Set-Cookie" not in headers


async def test_unavailable_target_keys_move_and_come_back(gateway, upstreams):
    await _pool(gateway, upstreams, [100, 100, 100], algorithm="consistent-hashing",
                hash_on="header", hash_on_header="x-user")
    keys = [f"user-{i}" for i in range(60)]
    before = {k: await _target(gateway, headers={"x-user": k}) for k in keys}
    down = Counter(before.values()).most_common(1)[0][0]
    await gateway.admin("PUT", f"/upstreams/pool/targets/{down}/unhealthy")
    during = {k: await _target(gateway, headers={"x-user": k}) for k in keys}
    assert all(during[k] != down for k in keys)
    assert all(during[k] == before[k] for k in keys if before[k] != down)  # the others stay put
    await gateway.admin("PUT", f"/upstreams/pool/targets/{down}/healthy")
    after = {k: await _target(gateway, headers={"x-user": k}) for k in keys}
    assert after == before
