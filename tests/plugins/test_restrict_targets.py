"""``ctx.restrict_targets``: a plugin narrows the targets one request may go to; the
balancer, tiers, health and retries work inside that set."""
from __future__ import annotations

PLUGIN = '''
from kong_py.hookspecs import hookimpl


class Handler:
    name = "{name}"
    PRIORITY = 100
    VERSION = "1.0.0"
    ALWAYS_ON = True

    @hookimpl
    def access(self, ctx):
        wanted = ctx.request.headers.get("x-only")
        if wanted is not None:
            ids = [t.id for t in ctx.worker.snapshot.targets.values() if t.target in wanted.split(",")]
            ctx.restrict_targets(ids)
            if not ids:
                ctx.exit(400, {{"message": "no target serves that"}})
'''


async def _setup(start_gateway, install_plugin, upstreams, **service):
    install_plugin("only-targets", PLUGIN)
    gateway = await start_gateway(plugins="bundled,only-targets")
    servers = [await upstreams(n) for n in "abc"]
    await gateway.admin("POST", "/upstreams", {"name": "pool"})
    for server in servers:
        await gateway.admin("POST", "/upstreams/pool/targets", {"target": server.address})
    await gateway.admin("POST", "/services", {"name": "s", "host": "pool", **service})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/r"]})
    return gateway, servers


async def test_only_the_allowed_targets_get_the_request(start_gateway, install_plugin, upstreams):
    gateway, (a, b, c) = await _setup(start_gateway, install_plugin, upstreams)
    served = set()
    for _ in range(6):
        status, headers, _ = await gateway.proxy("GET", "/r/x", headers={"x-only": f"{a.address},{c.address}"})
        assert status == 200
        served.add(headers["X-Kong-Upstream-Target"])
    assert served == {a.address, c.address}
    status, _, body = await gateway.proxy("GET", "/r/x", headers={"x-only": "10.9.9.9:1"})
    assert status == 400 and b"no target serves that" in body
    served = {(await gateway.proxy("GET", "/r/x"))[1]["X-Kong-Upstream-Target"] for _ in range(6)}
    assert served == {a.address, b.address, c.address}  # without a restriction: all of them


async def test_retries_stay_inside_the_allowed_set(start_gateway, install_plugin, upstreams):
    gateway, (a, b, c) = await _setup(start_gateway, install_plugin, upstreams, retries=3)
    await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/unhealthy")
    for _ in range(4):  # a is out: b is the only allowed one left, c is never tried
        status, headers, _ = await gateway.proxy("GET", "/r/x", headers={"x-only": f"{a.address},{b.address}"})
        assert status == 200 and headers["X-Kong-Upstream-Target"] == b.address
    await gateway.admin("PUT", f"/upstreams/pool/targets/{b.address}/unhealthy")
    status, _, body = await gateway.proxy("GET", "/r/x", headers={"x-only": f"{a.address},{b.address}"})
    assert status == 503 and c.hits == 0
