"""A balancing algorithm registered by a third-party plugin, used through the Admin API and proxy."""
from __future__ import annotations

from collections import Counter

ALGORITHM_PLUGIN = '''
from kong_py.hookspecs import hookimpl


class LastFirst:
    """Always the last target that is not skipped (easy to recognise)."""

    def __init__(self, upstream, targets):
        self.targets = list(targets)

    def pick(self, ctx, skip):
        for target in reversed(self.targets):
            if not skip(target):
                return target
        return None


class Handler:
    name = "{name}"
    PRIORITY = 0
    VERSION = "1.0.0"

    @hookimpl
    def register_algorithms(self, register):
        register("last-first", LastFirst, aliases=("last_first",))
'''


async def _configure(gateway, algorithm: str, *addresses: str) -> int:
    status, body = await gateway.admin("POST", "/upstreams", {"name": "pool", "algorithm": algorithm})
    if status != 201:
        return status
    for address in addresses:
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": address})
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    return status


async def test_registered_algorithm_is_accepted_and_used(install_plugin, start_gateway, upstreams):
    install_plugin("last-first-balancing", ALGORITHM_PLUGIN)
    gateway = await start_gateway(plugins="bundled,last-first-balancing")
    a, b = await upstreams("a"), await upstreams("b")
    assert await _configure(gateway, "last_first", a.address, b.address) == 201
    _, upstream = await gateway.admin("GET", "/upstreams/pool")
    assert upstream["algorithm"] == "last-first"
    seen = Counter()
    for _ in range(4):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
        seen[headers["X-Kong-Upstream-Target"]] += 1
    assert seen == {b.address: 4}
    _, info = await gateway.admin("GET", "/")
    assert "last-first" in info["algorithms"]


async def test_algorithm_of_a_plugin_not_allowed_is_refused(install_plugin, start_gateway):
    install_plugin("last-first-balancing", ALGORITHM_PLUGIN)
    gateway = await start_gateway()
    status, body = await gateway.admin("POST", "/upstreams", {"name": "pool", "algorithm": "last-first"})
    assert status == 400
    assert body["fields"]["algorithm"].startswith("expected one of: round-robin")
