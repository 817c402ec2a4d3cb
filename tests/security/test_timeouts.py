"""Slow and idle clients: header, body and keep-alive timeouts, and the connection cap."""
from __future__ import annotations

import asyncio
import time

from raw import body_of, exchange, settle, status_of

FAST = {"client_header_timeout": 0.4, "client_body_timeout": 0.4, "client_keepalive_timeout": 0.6}


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, float]:
    started = time.monotonic()
    data = bytearray()
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(65536):
            data += chunk
    return bytes(data), time.monotonic() - started


async def test_a_connection_that_sends_nothing_is_closed(edge):
    gateway, upstream, port = await edge(**FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data, elapsed = await _closed_within(reader, 3)
    writer.close()
    assert data == b"" and elapsed < 2


async def test_half_a_head_gets_408(edge):
    gateway, upstream, port = await edge(**FAST)
    response = await exchange(port, b"GET /api/x HTTP/1.1\r\nHost: gw\r\nX-Slow", wait=3)
    assert status_of(response) == 408 and body_of(response) == {"message": "Request timeout"}
    assert upstream.connections == []


async def test_half_a_body_gets_408_and_the_upstream_request_is_aborted(edge):
    gateway, upstream, port = await edge(retry_body_limit=10, **FAST)
    started = time.monotonic()
    response = await exchange(port, b"POST /api/pay HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n"
                                    + b"x" * 50, wait=5)
    assert status_of(response) == 408 and time.monotonic() - started < 3
    await settle()
    assert upstream.requests == []
    assert all(c.closed for c in upstream.connections)


async def test_an_idle_keep_alive_connection_is_closed(edge):
    gateway, upstream, port = await edge(**FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    await writer.drain()
    data, elapsed = await _closed_within(reader, 3)
    writer.close()
    assert status_of(data) == 200 and 0.4 < elapsed < 2.5


async def test_a_slow_upstream_does_not_time_the_client_out(edge):
    """The body timeout counts the client's silence, not time the upstream takes to read."""
    gateway, upstream, port = await edge(upstream_options={"mode": "ok"}, **FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/pay HTTP/1.1\r\nHost: gw\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
    for piece in (b"ab", b"cd", b"ef"):  # each piece within the body timeout
        await asyncio.sleep(0.25)
        writer.write(piece)
        await writer.drain()
    data, _ = await _closed_within(reader, 3)
    writer.close()
    assert status_of(data) == 200
    assert upstream.requests[0][3] == b"abcdef"


async def test_the_connection_cap_refuses_new_clients_and_says_so(edge, caplog):
    gateway, upstream, port = await edge(max_client_connections=3)
    caplog.set_level("WARNING", logger="kong_py.httpd")
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data, elapsed = await _closed_within(reader, 2)  # closed at once, nothing served
    assert data == b"" and elapsed < 1
    assert any("client connection limit reached" in r.getMessage() for r in caplog.records)
    assert (await gateway.admin("GET", "/status"))[1]["server"]["connections_refused"] == 1
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    response = await exchange(port, b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200  # room again
