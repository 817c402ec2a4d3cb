"""Passive checks: real traffic trips a target after exactly N failures."""
from __future__ import annotations

import time

from hc_helpers import configure, health, passive, send, states


async def test_trips_after_exactly_n_failures_and_a_success_resets(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=3, successes=1))
    await a.set("error")
    assert [s for s, _ in await send(gateway, 2)] == [500, 500]
    await a.set("ok")
    assert [s for s, _ in await send(gateway, 1)] == [200]  # a success zeroes the failure counter
    await a.set("error")
    assert [s for s, _ in await send(gateway, 2)] == [500, 500]
    assert (await states(gateway))[a.address] == "HEALTHY"
    entry = (await health(gateway))[a.address]
    assert entry["counters"]["http_failures"] == 2
    assert [s for s, _ in await send(gateway, 1)] == [500]  # the third in a row trips it
    entry = (await health(gateway))[a.address]
    assert entry["health"] == "UNHEALTHY" and entry["circuit"] == "open"
    assert entry["last_failure"]["reason"] == "status 500"
    assert entry["changed_reason"] == "3 http failures (passive): status 500" and entry["changed_by"] == "passive"
    hits = a.hits
    assert [s for s, _ in await send(gateway, 3)] == [503, 503, 503]
    assert a.hits == hits  # ejected: no traffic at all


async def test_a_status_in_neither_list_changes_nothing(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(http_failures=2))
    await a.set("error")
    await send(gateway, 1)
    assert (await health(gateway))[a.address]["counters"]["http_failures"] == 1
    # 429 is not in this upstream's unhealthy statuses, and not a success either
    status, _ = await gateway.admin("PATCH", "/upstreams/pool", {"healthchecks": {"passive": {"unhealthy": {
        "http_statuses": [500]}}}})
    assert status == 200
    await a.set("busy")
    a.retry_after = "0"
    await send(gateway, 3)
    entry = (await health(gateway))[a.address]
    assert entry["counters"]["http_failures"] == 1 and entry["health"] == "HEALTHY"


async def test_all_targets_down_answers_503_at_once_without_connecting(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a"), await switchable("b")
    await configure(gateway, [a, b], passive(tcp_failures=1), retries=1)
    await a.set("refuse")
    await b.set("refuse")
    statuses = [s for s, _ in await send(gateway, 2)]
    assert statuses[0] == 502
    assert set((await states(gateway)).values()) == {"UNHEALTHY"}
    await a.set("ok")
    await b.set("ok")
    started = time.monotonic()
    status, _, body = await gateway.proxy("GET", "/pool/x")
    assert status == 503 and b"failure to get a peer from the ring-balancer" in body
    assert time.monotonic() - started < 0.5
    assert a.hits == b.hits == 0  # nothing reached a target


async def test_timeouts_and_streams_broken_mid_body_count(start_gateway, switchable, runtime):
    gateway = await start_gateway(runtime=runtime)
    a = await switchable("a")
    await configure(gateway, [a], passive(timeouts=2, tcp_failures=2))
    status, _ = await gateway.admin("PATCH", "/services/pool", {"read_timeout": 300})
    assert status == 200
    await a.set("hang")
    assert [s for s, _ in await send(gateway, 1)] == [504]
    entry = (await health(gateway))[a.address]
    assert entry["counters"]["timeouts"] == 1 and entry["last_failure"]["reason"] == "timed out"
    await a.set("reset")  # a 200 whose body breaks off: a success at the head, then a tcp failure
    for _ in range(2):
        try:
            await gateway.proxy("GET", "/pool/x")
        except Exception:
            pass  # the client sees its connection closed: the body is incomplete
    entry = (await health(gateway))[a.address]
    assert entry["health"] == "UNHEALTHY"
    assert entry["changed_reason"] == "2 tcp failures (passive): response broke off mid-body"


async def test_429_counts_as_a_failure_and_keeps_the_target_out_for_retry_after(start_gateway, switchable,
                                                                                runtime, clock):
    gateway = await start_gateway(runtime=runtime)
    a, b = await switchable("a", retry_after="5"), await switchable("b")
    await configure(gateway, [a, b], passive(http_failures=2))
    await a.set("busy")
    served = [t for _, t in await send(gateway, 2)]
    assert served.count(a.address) == 1
    assert {t for _, t in await send(gateway, 3)} == {b.address}  # cooling down for Retry-After
    assert (await health(gateway))[a.address]["counters"]["http_failures"] == 1
    clock.advance(6)
    await send(gateway, 2)
    assert (await health(gateway))[a.address]["health"] == "UNHEALTHY"
