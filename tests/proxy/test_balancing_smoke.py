"""Round-robin with weights, end to end through the proxy."""
from collections import Counter


async def test_weighted_round_robin_through_proxy(gateway, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    assert (await gateway.admin("POST", "/upstreams", {"name": "pool"}))[0] == 201
    await gateway.admin("POST", "/upstreams/pool/targets", {"target": a.address, "weight": 70}, encoding="form")
    await gateway.admin("POST", "/upstreams/pool/targets", {"target": b.address, "weight": 30}, encoding="form")
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    served = Counter()
    for _ in range(100):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
        served[headers["X-Kong-Upstream-Target"]] += 1
    assert served == {a.address: 70, b.address: 30}
    assert a.hits == 70 and b.hits == 30
