"""Circuit breaking: a passive-only setup comes back by itself through half-open,
and a failed trial ejects the target again for twice as long."""
from __future__ import annotations

import asyncio
import time

from hc_helpers import configure, health, passive, send
from support import wait_for


async def _circuit(gateway, address):
    return (await health(gateway))[address]


async def test_passive_only_target_recovers_through_half_open(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a, b], passive(http_failures=1, base_ejection_time=30, max_ejection_time=300))
    await a.set("error")
    served = [t for _, t in await send(gateway, 2)]
    assert a.address in served
    entry = await _circuit(gateway, a.address)
    assert (entry["health"], entry["circuit"], entry["ejections"]) == ("UNHEALTHY", "open", 1)
    # ejected for 30 s plus up to 10 % jitter
    assert 30 - 1 <= entry["ejected_until"] - time.time() <= 33 + 1
    assert {t for _, t in await send(gateway, 6)} == {b.address}

    clock.advance(29)
    await asyncio.sleep(0.1)
    assert (await _circuit(gateway, a.address))["circuit"] == "open"
    clock.advance(4.5)  # past 33 s: half-open
    await wait_for(lambda: runtime.targets[entry["id"]].healthy, 2)
    entry = await _circuit(gateway, a.address)
    assert (entry["health"], entry["circuit"]) == ("UNHEALTHY", "half_open")

    # the trial fails: ejected again, for twice as long
    hits = a.hits
    await send(gateway, 4)
    assert a.hits == hits + 1
    entry = await _circuit(gateway, a.address)
    assert (entry["circuit"], entry["ejections"]) == ("open", 2)
    assert 60 - 1 <= entry["ejected_until"] - time.time() <= 66 + 1

    clock.advance(67)
    await wait_for(lambda: runtime.targets[entry["id"]].healthy, 2)
    await a.set("ok")
    served = [t for _, t in await send(gateway, 6)]
    assert a.address in served  # the trial succeeded, and a is back in rotation
    entry = await _circuit(gateway, a.address)
    assert (entry["health"], entry["circuit"], entry["changed_by"]) == ("HEALTHY", "closed", "passive")
    assert served.count(a.address) == 3


async def test_half_open_lets_only_the_trial_requests_through(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=1, base_ejection_time=10, half_open_requests=1))
    await a.set("error")
    await send(gateway, 1)
    clock.advance(12)
    entry = await _circuit(gateway, a.address)
    await wait_for(lambda: runtime.targets[entry["id"]].healthy, 2)
    await a.set("hang")
    trial = asyncio.ensure_future(gateway.proxy("GET", "/pool/x"))
    await wait_for(lambda: a.hits == 2, 2)
    started = time.monotonic()
    status, _, body = await gateway.proxy("GET", "/pool/x")
    assert status == 503 and b"connection limit" in body and time.monotonic() - started < 0.5
    trial.cancel()


async def test_ejection_time_zero_keeps_kongs_behaviour(start_gateway, switchable, runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=1, base_ejection_time=0))
    await a.set("error")
    await send(gateway, 1)
    clock.advance(10_000)
    await asyncio.sleep(0.1)
    entry = await _circuit(gateway, a.address)
    assert (entry["health"], entry["circuit"], entry["ejected_until"]) == ("UNHEALTHY", "open", None)
    assert (await gateway.admin("PUT", f"/upstreams/pool/targets/{a.address}/healthy"))[0] == 204
    assert (await _circuit(gateway, a.address))["health"] == "HEALTHY"
