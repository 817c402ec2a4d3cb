"""Active checks: probes mark targets UNHEALTHY and HEALTHY again, once per node."""
from __future__ import annotations

import asyncio

from hc_helpers import active, configure, health, send, states
from support import wait_for


async def _tick(clock, seconds, server, probes):
    """Move the clock on and wait for the probe that is due."""
    clock.advance(seconds)
    await wait_for(lambda: server.probes >= probes, 3)
    await asyncio.sleep(0.05)  # its result is counted


async def test_probes_turn_a_target_unhealthy_then_healthy(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a, b], active(interval=5, successes=2, failures=2, unhealthy_interval=1))
    await _tick(clock, 5, a, 1)  # the first probe comes within one interval
    a.probe_mode = "error"
    await _tick(clock, 5, a, 2)
    assert (await states(gateway))[a.address] == "HEALTHY"
    await _tick(clock, 5, a, 3)
    entry = (await health(gateway))[a.address]
    assert (entry["health"], entry["changed_by"]) == ("UNHEALTHY", "active")
    assert entry["last_failure"]["reason"] == "probe status 500"
    assert {t for _, t in await send(gateway, 4)} == {b.address}
    # while unhealthy it is probed every unhealthy.interval (1 s) and comes back after 2 successes
    a.probe_mode = None
    await _tick(clock, 1, a, 4)
    assert (await states(gateway))[a.address] == "UNHEALTHY"
    await _tick(clock, 1, a, 5)
    assert (await states(gateway))[a.address] == "HEALTHY"
    assert a.address in {t for _, t in await send(gateway, 4)}
    assert a.probe_headers[0]["User-Agent"].startswith("kong_py/")


async def test_tcp_probes(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], active(interval=2, successes=1, failures=1, type="tcp"))
    await asyncio.sleep(0.2)
    await a.set("refuse")
    clock.advance(2)
    await wait_for(lambda: runtime.targets and not next(iter(runtime.targets.values())).healthy, 3)
    entry = (await health(gateway))[a.address]
    assert entry["health"] == "UNHEALTHY" and entry["counters"]["tcp_failures"] == 0
    assert entry["changed_reason"].startswith("1 tcp failures (active)")
    await a.set("ok")
    clock.advance(2)
    await wait_for(lambda: next(iter(runtime.targets.values())).healthy, 3)
    assert a.probes == 0  # tcp probes send no HTTP request


async def test_no_probes_for_disabled_targets_or_weight_zero(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b, c = await switchable("a"), await switchable("b"), await switchable("c")
    await configure(gateway, [a], active(interval=1))
    assert (await gateway.admin("POST", "/upstreams/pool/targets", {"target": b.address, "state": "DISABLED"}))[0] == 201
    assert (await gateway.admin("POST", "/upstreams/pool/targets", {"target": c.address, "weight": 0}))[0] == 201
    for n in range(1, 4):
        await _tick(clock, 1, a, n)
    assert b.probes == c.probes == 0
    # enabling the target starts its probes: the first within one interval
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{b.address}/enable"))[0] == 200
    await health(gateway)
    await _tick(clock, 1, b, 1)
    # turning active checks off stops them
    status, _ = await gateway.admin("PATCH", "/upstreams/pool", {"healthchecks": {"active": {
        "healthy": {"interval": 0}, "unhealthy": {"interval": 0}}}})
    assert status == 200
    assert (await health(gateway))[a.address]["healthchecks"]["active"]["healthy"]["interval"] == 0
    await asyncio.sleep(0.2)  # a probe sent before the change may still arrive
    probes = a.probes
    clock.advance(10)
    await asyncio.sleep(0.3)
    assert a.probes == probes


async def test_probe_period_changes_with_the_configuration(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], active(interval=60))
    await _tick(clock, 60, a, 1)
    status, _ = await gateway.admin("PATCH", "/upstreams/pool", {"healthchecks": {"active": {"healthy": {"interval": 2}}}})
    assert status == 200
    await _tick(clock, 2, a, 2)  # not 60 s: the new period applies at once
    await _tick(clock, 2, a, 3)


async def test_draining_target_finishes_its_stream_while_probes_go_on(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a", stream_chunks=5, stream_delay=0.15), await switchable("b")
    await configure(gateway, [a, b], active(interval=1))
    await a.set("stream")
    streaming = asyncio.ensure_future(gateway.proxy("GET", "/pool/x"))
    await wait_for(lambda: a.hits == 1, 2)
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/drain"))[0] == 200
    probes = a.probes
    await _tick(clock, 1, a, probes + 1)  # a DRAINING target is still probed
    assert {t for _, t in await send(gateway, 3)} == {b.address}
    status, _, body = await streaming
    assert status == 200 and body.count(b"chunk") == 5
    assert (await states(gateway))[a.address] == "DRAINING"


async def test_probes_use_the_targets_headers_and_its_own_settings(start_gateway, switchable, runtime, clock):
    """One upstream probes two targets on different paths with different headers."""
    gateway = await start_gateway(runtime=runtime)
    openai_like = await switchable("openai", probe_path="/v1/models")
    anthropic_like = await switchable("anthropic", probe_path="/health")
    await configure(gateway, [], active(interval=1), name="ai")
    status, _ = await gateway.admin("POST", "/upstreams/ai/targets", {
        "target": openai_like.address, "headers": {"X-Team": "ai"},
        "healthchecks": {"active": {"http_path": "/v1/models", "headers": {"X-Probe": ["yes"]}}}})
    assert status == 201
    status, _ = await gateway.admin("POST", "/upstreams/ai/targets", {
        "target": anthropic_like.address, "headers": {"anthropic-version": "2023-06-01"},
        "health_checks": {"path": "/health", "interval": 1, "threshold": 2}})
    assert status == 201
    await health(gateway, "ai")
    clock.advance(1)
    await wait_for(lambda: openai_like.probes >= 1 and anthropic_like.probes >= 1, 3)
    assert openai_like.probe_headers[0]["X-Team"] == "ai" and openai_like.probe_headers[0]["X-Probe"] == "yes"
    assert anthropic_like.probe_headers[0]["anthropic-version"] == "2023-06-01"
    entries = await health(gateway, "ai")
    assert entries[openai_like.address]["healthchecks"]["active"]["http_path"] == "/v1/models"
    settings = entries[anthropic_like.address]["healthchecks"]["active"]
    assert settings["http_path"] == "/health" and settings["healthy"]["successes"] == 2
    assert settings["unhealthy"]["http_failures"] == 2


async def test_probes_go_through_the_upstreams_forward_proxy(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    seen: list[bytes] = []

    async def forward_proxy(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(forward_proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    a = await switchable("a")
    await configure(gateway, [a], active(interval=1), proxy={"host": "127.0.0.1", "port": port})
    clock.advance(1)
    await wait_for(lambda: seen, 3)
    assert seen[0] == f"GET http://{a.address}/health HTTP/1.1".encode() and a.probes == 0
    server.close()


async def test_https_probes_verify_certificates_and_send_sni(start_gateway, runtime, clock, tmp_path):
    import ssl

    from aiohttp import web

    from support import free_port, make_certs

    certs = make_certs(tmp_path)
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    probes: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        probes.append(request.path)
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_get("/health", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        gateway = await start_gateway(runtime=runtime)
        checks = active(interval=1, successes=1, failures=1, type="https", https_sni="probe.test",
                        https_verify_certificate=False)
        await configure(gateway, [], checks)
        status, target = await gateway.admin("POST", "/upstreams/pool/targets", {"target": f"127.0.0.1:{port}"})
        assert status == 201
        await health(gateway)
        clock.advance(1)
        await wait_for(lambda: probes, 3)
        assert names[0] == "probe.test"
        # the test CA is not one the system trusts: with verification on, the handshake fails
        status, _ = await gateway.admin("PATCH", "/upstreams/pool", {"healthchecks": {"active": {
            "https_verify_certificate": True}}})
        assert status == 200
        clock.advance(1)
        await wait_for(lambda: not runtime.targets[target["id"]].healthy, 3)
        assert (await health(gateway))[f"127.0.0.1:{port}"]["last_failure"]["reason"].startswith("probe failed")
        assert len(probes) == 1
    finally:
        await runner.cleanup()


async def test_provider_targets_are_probed_on_a_free_endpoint(start_gateway, switchable, runtime, clock):
    """A provider target on the default path is probed on its models list, never a completion."""
    gateway = await start_gateway(runtime=runtime)
    mock = await switchable("openai", probe_path="/v1/models")
    await configure(gateway, [], {"active": {"healthy": {"interval": 1}}}, name="ai")  # http_path stays "/"
    status, _ = await gateway.admin("POST", "/upstreams/ai/targets", {
        "provider": "openai", "host": "127.0.0.1", "port": mock.port, "protocol": "http"})
    assert status == 201
    entry = next(iter((await health(gateway, "ai")).values()))
    assert entry["healthchecks"]["active"]["http_path"] == "/v1/models"
    clock.advance(1)
    await wait_for(lambda: mock.probes == 1, 3)
    assert mock.hits == 0
