"""Dot segments before routing, loops back to the gateway, clients that leave,
and which requests may be sent twice."""
from __future__ import annotations

import asyncio
import time

import pytest

from raw import body_of, exchange, settle, status_of
from support import free_port, wait_for


async def _guarded(edge):
    """/public goes to the upstream; /internal is closed by request-termination."""
    gateway, upstream, port = await edge()
    status, _ = await gateway.admin("POST", "/services/api/routes", {"name": "internal", "paths": ["/internal"],
                                                                    "strip_path": False})
    assert status == 201
    status, _ = await gateway.admin("POST", "/routes/internal/plugins", {
        "name": "request-termination", "config": {"status_code": 403, "message": "internal"}})
    assert status == 201
    status, _ = await gateway.admin("POST", "/services/api/routes", {"name": "public", "paths": ["/public"],
                                                                    "strip_path": False})
    assert status == 201
    return gateway, upstream, port


@pytest.mark.parametrize("path", ["/public/../internal/secret", "/public/%2e%2e/internal/secret",
                                  "/public/.%2E/internal/secret", "/public/./../internal/secret",
                                  "//internal/secret", "/%69nternal/secret"])
async def test_dot_segments_are_resolved_before_routing(edge, path):
    gateway, upstream, port = await _guarded(edge)
    response = await exchange(port, f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
    assert status_of(response) == 403 and body_of(response) == {"message": "internal"}
    assert upstream.requests == []


async def test_the_normalised_path_goes_upstream(edge):
    gateway, upstream, port = await _guarded(edge)
    response = await exchange(port, b"GET /public/a/./b/../c%7e%2fd HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200
    assert upstream.requests[0][1] == "/public/a/c~%2Fd"


@pytest.mark.parametrize("path", ["/../etc/passwd", "/public/../../x", "/public/..%2f..%2finternal"])
async def test_paths_that_climb_or_hide_dot_segments_are_refused(edge, path):
    gateway, upstream, port = await _guarded(edge)
    response = await exchange(port, f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    assert status_of(response) == 400 and body_of(response)["message"].startswith("Bad request")
    assert upstream.requests == []


async def test_a_client_that_leaves_cancels_the_upstream_call(start_gateway, raw_upstream):
    gateway = await start_gateway()
    hanging = await raw_upstream(mode="hang")
    await gateway.admin("POST", "/upstreams", {"name": "slow"})
    await gateway.admin("POST", "/upstreams/slow/targets", {"target": hanging.address})
    await gateway.admin("POST", "/services", {"name": "slow", "host": "slow", "read_timeout": 60000})
    await gateway.admin("POST", "/services/slow/routes", {"paths": ["/slow"]})
    port = int(gateway.proxy_url.rsplit(":", 1)[1])
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    for _, writer in clients:
        writer.write(b"GET /slow/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    await wait_for(lambda: len(hanging.requests) == 10, 3)
    target = next(iter(gateway.worker.snapshot.targets.values()))
    assert target.runtime.in_flight == 10
    for _, writer in clients:  # they give up
        writer.close()
    await wait_for(lambda: all(c.closed for c in hanging.connections), 2)  # not after read_timeout
    assert target.runtime.in_flight == 0


async def test_a_service_pointing_at_the_proxy_itself_is_a_508_not_a_loop(start_gateway):
    gateway = await start_gateway()
    port = int(gateway.proxy_url.rsplit(":", 1)[1])
    await gateway.admin("POST", "/services", {"name": "self", "url": f"http://127.0.0.1:{port}"})
    await gateway.admin("POST", "/services/self/routes", {"paths": ["/"]})
    started = time.monotonic()
    status, _, body = await gateway.proxy("GET", "/anything")
    assert status == 508 and b"Loop detected" in body and time.monotonic() - started < 3
    await settle()
    assert gateway.worker.stats.in_flight == 0  # the loop stopped


async def _two_hanging(gateway, raw_upstream, **service):
    a, b = await raw_upstream(mode="hang"), await raw_upstream(mode="hang")
    await gateway.admin("POST", "/upstreams", {"name": "pair"})
    for up in (a, b):
        await gateway.admin("POST", "/upstreams/pair/targets", {"target": up.address})
    await gateway.admin("POST", "/services", {"name": "pair", "host": "pair", "retries": 1, "read_timeout": 300,
                                              **service})
    await gateway.admin("POST", "/services/pair/routes", {"paths": ["/pair"]})
    return a, b


@pytest.mark.parametrize("method, reached", [("POST", 1), ("PATCH", 1), ("GET", 2), ("PUT", 2), ("DELETE", 2)])
async def test_only_idempotent_requests_are_replayed_after_a_timeout(start_gateway, raw_upstream, method, reached):
    gateway = await start_gateway()
    a, b = await _two_hanging(gateway, raw_upstream)
    status, _, _ = await gateway.proxy(method, "/pair/x", data=b"amount=10")
    assert status == 504
    assert len(a.requests) + len(b.requests) == reached


async def test_retry_non_idempotent_lets_a_post_go_to_the_next_target(start_gateway, raw_upstream):
    gateway = await start_gateway()
    a, b = await _two_hanging(gateway, raw_upstream, retry_non_idempotent=True)
    status, _, _ = await gateway.proxy("POST", "/pair/x", data=b"amount=10")
    assert status == 504 and len(a.requests) + len(b.requests) == 2


async def test_a_post_goes_elsewhere_after_a_connect_failure(start_gateway, raw_upstream):
    gateway = await start_gateway()
    live = await raw_upstream()
    await gateway.admin("POST", "/upstreams", {"name": "pair"})
    for address in (f"127.0.0.1:{free_port()}", live.address):
        await gateway.admin("POST", "/upstreams/pair/targets", {"target": address})
    await gateway.admin("POST", "/services", {"name": "pair", "host": "pair", "retries": 1})
    await gateway.admin("POST", "/services/pair/routes", {"paths": ["/pair"]})
    for _ in range(2):  # whichever target comes first, the POST is answered by the live one
        status, _, body = await gateway.proxy("POST", "/pair/x", data=b"amount=10")
        assert status == 200 and body == b"ok"
