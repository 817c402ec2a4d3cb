"""The upstream HTTP/1.1 client against real servers on 127.0.0.1.

Raw asyncio servers check the bytes on the wire and misbehave on purpose;
aiohttp.web servers check bodies and TLS. Every test runs on the default loop;
the ones listed in UVLOOP_TESTS run again on uvloop. Every wait is bounded.
"""
from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import pytest
from aiohttp import web

from kong_py.proxy.client import (
    HIGH_WATER, ConnectError, ConnectTimeout, IncompleteBody, ProtocolError, ReadTimeout, RemoteClosed,
    UpstreamClient, UpstreamError, UpstreamResponse, WriteTimeout,
)
from support import make_certs

T = {"connect_timeout": 2.0, "read_timeout": 2.0, "write_timeout": 2.0}
HOST = "127.0.0.1"


# -- servers -------------------------------------------------------------------------
Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """asyncio.start_server with a given handler; counts connections, cleans up every task."""

    def __init__(self, handler: Handler, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.closed = 0  # connections whose client went away (EOF seen by a handler)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.state: dict[str, Any] = {}
        self.port = 0

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # a cancelled handler ends quietly (asyncio 3.11 logs cancelled handler tasks)
        finally:
            writer.close()
            self.tasks.discard(task)

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)
        await asyncio.wait_for(self.server.wait_closed(), 2)


async def read_request(reader: asyncio.StreamReader) -> Optional[tuple[bytes, bytes, bytes]]:
    """(head, body as sent, decoded body), or None at a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    low = head.lower()
    if b"\r\ncontent-length:" in low:
        start = low.index(b"\r\ncontent-length:") + 17
        body = await reader.readexactly(int(low[start:low.index(b"\r\n", start)]))
        return head, body, body
    if b"\r\ntransfer-encoding:" in low:
        raw, decoded = [], []
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            raw.append(line + data)
            decoded.append(data[:-2])
            if size == 0:
                return head, b"".join(raw), b"".join(decoded)
    return head, b"", b""


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def serve_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive: answer every request with 200 "ok", remembering what came in."""
    while (request := await read_request(reader)) is not None:
        server.heads.append(request[0])
        server.bodies.append(request[2])
        writer.write(ok())
    server.closed += 1


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class WebServer:
    """An aiohttp.web application on 127.0.0.1, optionally over TLS."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", handler)
        self.ssl_context = ssl_context

    async def __aenter__(self) -> "WebServer":
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.runner.cleanup(), 5)


async def echo_hash(request: web.Request) -> web.Response:
    data = await request.read()
    return web.json_response({"sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
                              "te": request.headers.get("Transfer-Encoding"),
                              "cl": request.headers.get("Content-Length"),
                              "path": request.path_qs})


async def get(client: UpstreamClient, port: int, target: str = "/", method: str = "GET",
              headers: Optional[list[tuple[str, str]]] = None, body: Any = None,
              **options: Any) -> UpstreamResponse:
    kwargs = {**T, **options}
    return await client.request(method, "http", HOST, port, target,
                                headers if headers is not None else [("Host", "upstream.test")], body, **kwargs)


async def chunks_of(*parts: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        if pause:
            await asyncio.sleep(pause)
        yield part


def open_conns(client: UpstreamClient) -> int:
    return len(client._conns)


# -- keep-alive and the pool -----------------------------------------------------------
async def test_keepalive_reuses_one_connection() -> None:
    async with RawServer(serve_ok) as server, UpstreamClient() as client:
        for _ in range(20):
            response = await get(client, server.port)
            assert response.status == 200
            assert await response.read() == b"ok"
        assert server.connections == 1
        assert len(server.heads) == 20
        assert client.idle_count() == 1
        assert_nodelay(client)


def assert_nodelay(client: UpstreamClient) -> None:
    conns = [conn for stack in client._idle.values() for conn in stack]
    assert conns
    for conn in conns:
        assert conn.transport is not None
        assert conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_pool_is_per_origin() -> None:
    async with RawServer(serve_ok) as one, RawServer(serve_ok) as two, UpstreamClient() as client:
        for _ in range(5):
            for server in (one, two):
                assert await (await get(client, server.port)).read() == b"ok"
        assert (one.connections, two.connections) == (1, 1)
        assert client.idle_count(("http", HOST, one.port, None)) == 1
        assert client.idle_count(("http", HOST, two.port, None)) == 1


async def test_concurrent_requests_use_parallel_connections_then_reuse_them() -> None:
    async def slow_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            await asyncio.sleep(0.05)  # keeps the five requests of a round overlapping
            writer.write(ok())

    async with RawServer(slow_ok) as server, UpstreamClient() as client:
        for _ in range(3):
            responses = await asyncio.gather(*(get(client, server.port) for _ in range(5)))
            assert [await r.read() for r in responses] == [b"ok"] * 5
        assert server.connections == 5
        assert client.idle_count() == 5


async def test_idle_timeout_closes_connections() -> None:
    async with RawServer(serve_ok) as server, UpstreamClient(keepalive_idle_timeout=0.2) as client:
        await (await get(client, server.port)).read()
        assert client.idle_count() == 1
        await until(lambda: server.closed == 1)  # the sweep closed it without any new request
        assert client.idle_count() == 0 and open_conns(client) == 0
        await (await get(client, server.port)).read()
        assert server.connections == 2


async def test_expired_connection_is_not_reused() -> None:
    async with RawServer(serve_ok) as server, UpstreamClient(keepalive_idle_timeout=60) as client:
        await (await get(client, server.port)).read()
        client.keepalive_idle_timeout = 0.0  # expired by the time of the next take (the check on reuse)
        await (await get(client, server.port)).read()
        assert server.connections == 2


async def test_max_idle_per_origin() -> None:
    async def slow_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(ok())
        server.closed += 1

    async with RawServer(slow_ok) as server, UpstreamClient(max_idle_per_origin=2) as client:
        responses = await asyncio.gather(*(get(client, server.port) for _ in range(4)))
        for response in responses:
            await response.read()
        assert server.connections == 4
        assert client.idle_count() == 2
        await until(lambda: server.closed == 2)


async def test_upstream_closing_an_idle_connection_drops_it_from_the_pool() -> None:
    async def one_per_connection(server: RawServer, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.05)  # then closes while the connection sits idle in the pool

    async with RawServer(one_per_connection) as server, UpstreamClient() as client:
        await (await get(client, server.port)).read()
        await until(lambda: client.idle_count() == 0)
        assert await (await get(client, server.port)).read() == b"ok"
        assert server.connections == 2


# -- requests on the wire ---------------------------------------------------------------
async def test_request_bodies_arrive_intact() -> None:
    blob = os.urandom(3 * 1024 * 1024 + 7)
    digest = hashlib.sha256(blob).hexdigest()
    pieces = [blob[i:i + 100_000] for i in range(0, len(blob), 100_000)]
    async with WebServer(echo_hash) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/bytes", "POST", body=blob)
        seen = await _json(response)
        assert (seen["sha256"], seen["cl"], seen["te"]) == (digest, str(len(blob)), None)

        response = await get(client, server.port, "/stream", "PUT", body=chunks_of(*pieces))
        seen = await _json(response)
        assert (seen["sha256"], seen["cl"], seen["te"]) == (digest, None, "chunked")

        headers = [("Host", "upstream.test"), ("Content-Length", str(len(blob)))]
        response = await get(client, server.port, "/sized", "POST", headers=headers, body=chunks_of(*pieces))
        seen = await _json(response)
        assert (seen["sha256"], seen["cl"], seen["te"]) == (digest, str(len(blob)), None)

        small = b"x" * 100
        response = await get(client, server.port, "/small?x=%20y", "PATCH", body=small)
        seen = await _json(response)
        assert (seen["length"], seen["path"]) == (100, "/small?x=%20y")


async def _json(response: UpstreamResponse) -> Any:
    import json
    assert response.status == 200, response.status
    return json.loads(await response.read())


async def test_headers_are_written_exactly_as_given() -> None:
    headers = [("Host", "example.test:8080"), ("X-MiXeD-Case", "Va lue"), ("x-dup", "1"), ("X-Dup", "2"),
               ("Accept-Encoding", "br")]
    wire = b"Host: example.test:8080\r\nX-MiXeD-Case: Va lue\r\nx-dup: 1\r\nX-Dup: 2\r\nAccept-Encoding: br\r\n"
    async with RawServer(serve_ok) as server, UpstreamClient() as client:
        raw: list[bytes] = []

        async def capture(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await read_request(reader)) is not None:
                raw.append(request[0] + request[1])
                writer.write(ok())

        server.handler = capture
        await (await get(client, server.port, "/p/%C3%A9?q=1&r=%2F", headers=headers)).read()
        await (await get(client, server.port, "/b", "POST", headers=headers, body=b"hello")).read()
        await (await get(client, server.port, "/s", "POST", headers=headers,
                         body=chunks_of(b"hel", b"", b"lo"))).read()
        await (await get(client, server.port, "/c", "POST", headers=headers + [("Content-Length", "5")],
                         body=chunks_of(b"hel", b"lo"))).read()
        await (await get(client, server.port, "/e", "DELETE", headers=headers, body=b"")).read()
        # bytes the proxy decoded as latin-1 go back unchanged; a plugin's other text as UTF-8
        await (await get(client, server.port, "/u", headers=[("Host", "a"), ("X-L", "caf\xe9"),
                                                              ("X-U", "\u2713")])).read()
        assert raw == [
            b"GET /p/%C3%A9?q=1&r=%2F HTTP/1.1\r\n" + wire + b"\r\n",
            b"POST /b HTTP/1.1\r\n" + wire + b"Content-Length: 5\r\n\r\nhello",
            b"POST /s HTTP/1.1\r\n" + wire + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            b"POST /c HTTP/1.1\r\n" + wire + b"Content-Length: 5\r\n\r\nhello",
            b"DELETE /e HTTP/1.1\r\n" + wire + b"Content-Length: 0\r\n\r\n",
            b"GET /u HTTP/1.1\r\nHost: a\r\nX-L: caf\xe9\r\nX-U: \xe2\x9c\x93\r\n\r\n",
        ]
        assert server.connections == 1


async def test_invalid_requests_are_refused_before_sending() -> None:
    async with RawServer(serve_ok) as server, UpstreamClient() as client:
        for headers, body in [
            ([("Host", "a"), ("X-Evil", "1\r\nX-Injected: 1")], None),
            ([("Host", "a\nb")], None),
            ([("Host", "a"), ("Content-Length", "3")], b"four"),
            ([("Host", "a"), ("Content-Length", "3"), ("Transfer-Encoding", "chunked")], None),
        ]:
            with pytest.raises(ValueError):
                await get(client, server.port, "/", "POST", headers=headers, body=body)
        with pytest.raises(ValueError):
            await get(client, server.port, "/x HTTP/1.1\r\nHost: b\r\n\r\nGET /y")
        # a streamed body longer than its Content-Length never reaches the wire in full
        with pytest.raises(ValueError):
            await get(client, server.port, "/", "POST", headers=[("Host", "a"), ("Content-Length", "3")],
                      body=chunks_of(b"ab", b"cd"))
        assert server.heads == []
        await until(lambda: open_conns(client) == 0)


# -- responses ---------------------------------------------------------------------------
CANNED = {
    b"/cl": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Case: Kept\r\n\r\nhello", False),
    b"/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", False),
    b"/eof": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", True),
    b"/http10": (b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!", False),
    b"/close": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nby", False),
    b"/head": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", False),
    b"/204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", False),
    b"/304": (b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", False),
    b"/100": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
              b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone", False),
    b"/101": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n\x00\x01", False),
}


async def serve_canned(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer with CANNED[path]; close afterwards when it says so (close-delimited bodies)."""
    while (request := await read_request(reader)) is not None:
        server.heads.append(request[0])
        path = request[0].split(b" ")[1]
        data, close = CANNED[path]
        writer.write(data)
        if close:
            await writer.drain()
            return
    server.closed += 1


async def test_response_framings() -> None:
    async with RawServer(serve_canned) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/cl")
        assert (response.status, response.reason, response.version, response.content_length) == (200, "OK", "1.1", 5)
        assert response.raw_headers == [(b"Content-Length", b"5"), (b"X-Case", b"Kept")]
        assert response.headers["x-case"] == "Kept" and response.headers["CONTENT-LENGTH"] == "5"
        assert await response.read() == b"hello"

        response = await get(client, server.port, "/chunked")
        assert response.content_length is None
        assert b"".join([c async for c in response.iter_chunks()]) == b"hello world"
        assert ("X-Trailer", "t") not in response.headers.items()
        assert server.connections == 1 and client.idle_count() == 1

        response = await get(client, server.port, "/eof")  # still on the first connection
        assert response.content_length is None
        assert await response.read() == b"until the end"
        assert server.connections == 1 and client.idle_count() == 0  # ended by EOF: not reusable

        response = await get(client, server.port, "/http10")
        assert (response.version, await response.read()) == ("1.0", b"old!")
        assert server.connections == 2 and client.idle_count() == 0  # HTTP/1.0: never reused
        await until(lambda: server.closed == 1)

        response = await get(client, server.port, "/close")
        assert await response.read() == b"by"
        assert server.connections == 3 and client.idle_count() == 0

        assert await (await get(client, server.port, "/cl")).read() == b"hello"
        assert await (await get(client, server.port, "/cl")).read() == b"hello"
        assert server.connections == 4


async def test_bodyless_responses_keep_the_connection() -> None:
    async with RawServer(serve_canned) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/head", "HEAD")
        assert (response.status, response.content_length) == (200, 10)
        assert client.idle_count() == 1  # released at once: nothing to read
        assert await response.read() == b""
        for path, status in (("/204", 204), ("/304", 304)):
            response = await get(client, server.port, path)
            assert response.status == status
            assert [c async for c in response.iter_chunks()] == []
        response = await get(client, server.port, "/cl")
        assert await response.read() == b"hello"
        assert server.connections == 1 and len(server.heads) == 4


async def test_interim_responses_are_skipped() -> None:
    async with RawServer(serve_canned) as server, UpstreamClient() as client:
        headers = [("Host", "a"), ("Expect", "100-continue")]
        response = await get(client, server.port, "/100", "POST", headers=headers, body=b"payload")
        assert (response.status, response.reason) == (201, "Created")
        assert response.raw_headers == [(b"Content-Length", b"4")]
        assert await response.read() == b"done"
        assert b"Expect: 100-continue\r\n" in server.heads[0]
        assert await (await get(client, server.port, "/cl")).read() == b"hello"
        assert server.connections == 1


async def test_switching_protocols_is_not_pooled() -> None:
    async with RawServer(serve_canned) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/101")
        assert response.status == 101
        assert await response.read() == b""
        assert client.idle_count() == 0
        await until(lambda: open_conns(client) == 0)


async def test_response_larger_than_the_buffers_streams_intact() -> None:
    blob = os.urandom(5 * 1024 * 1024)

    async def big(request: web.Request) -> web.StreamResponse:
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(0, len(blob), 300_000):
                await response.write(blob[i:i + 300_000])
            await response.write_eof()
            return response
        return web.Response(body=blob)

    async with WebServer(big) as server, UpstreamClient() as client:
        for path in ("/cl", "/chunked", "/cl"):
            response = await get(client, server.port, path)
            digest = hashlib.sha256()
            async for chunk in response.iter_chunks():
                digest.update(chunk)
            assert digest.digest() == hashlib.sha256(blob).digest()
        assert client.idle_count() == 1


# -- errors -----------------------------------------------------------------------------------
async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    async with UpstreamClient() as client:
        with pytest.raises(ConnectError) as caught:
            await get(client, port)
        assert caught.value.kind == "connect"
        assert isinstance(caught.value, UpstreamError)
        assert open_conns(client) == 0


async def test_full_backlog_is_a_connect_timeout() -> None:
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue: later SYNs are dropped, connect() hangs
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect((HOST, port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        await asyncio.sleep(0.05)
        async with UpstreamClient() as client:
            try:
                response = await get(client, port, connect_timeout=0.3)
            except ConnectTimeout as exc:
                assert exc.kind == "connect"
            else:  # pragma: no cover - a kernel that accepts anyway
                response.close()
                pytest.skip("this kernel accepted a connection on a full backlog")
            assert open_conns(client) == 0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def silent(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, never answers; notes when the client goes away."""
    request = await read_request(reader)
    server.heads.append(request[0] if request else b"")
    await reader.read()  # EOF once the client closes
    server.closed += 1


async def test_no_answer_is_a_read_timeout() -> None:
    async with RawServer(silent) as server, UpstreamClient() as client:
        with pytest.raises(ReadTimeout) as caught:
            await get(client, server.port, read_timeout=0.2)
        assert caught.value.kind == "timeout"
        await until(lambda: server.closed == 1)
        assert open_conns(client) == 0


async def test_stalled_body_is_a_read_timeout() -> None:
    async def stall(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst")
        await reader.read()
        server.closed += 1

    async with RawServer(stall) as server, UpstreamClient() as client:
        response = await get(client, server.port, read_timeout=0.2)
        chunks = response.iter_chunks()
        assert await chunks.__anext__() == b"first"
        with pytest.raises(ReadTimeout):
            await chunks.__anext__()
        await until(lambda: server.closed == 1)


async def test_upstream_that_stops_reading_is_a_write_timeout() -> None:
    async def no_reading(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.heads.append(await reader.readuntil(b"\r\n\r\n"))
        await asyncio.sleep(30)  # cancelled at teardown

    blob = b"\0" * (16 * 1024 * 1024)
    async with RawServer(no_reading) as server, UpstreamClient() as client:
        with pytest.raises(WriteTimeout) as caught:
            await get(client, server.port, "/up", "POST", body=blob, write_timeout=0.3)
        assert caught.value.kind == "timeout"

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"\0" * 65536

        with pytest.raises(WriteTimeout):
            await get(client, server.port, "/up", "POST", body=endless(), write_timeout=0.3)
        await until(lambda: open_conns(client) == 0)


async def test_early_answer_stops_the_upload() -> None:
    async def reject(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
        await asyncio.sleep(30)  # keeps the connection, never reads the body

    async with RawServer(reject) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/up", "POST", body=b"\0" * (16 * 1024 * 1024),
                             write_timeout=5)
        assert response.status == 413
        assert await response.read() == b"big"
        assert client.idle_count() == 0  # the body was cut short: the connection is spent


async def test_close_after_the_head_is_an_incomplete_body() -> None:
    async def cut(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        if request[0].startswith(b"GET /chunked"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
        await writer.drain()

    async with RawServer(cut) as server, UpstreamClient() as client:
        for path in ("/length", "/chunked"):
            response = await get(client, server.port, path)
            got = []
            with pytest.raises(IncompleteBody) as caught:
                async for chunk in response.iter_chunks():
                    got.append(chunk)
            assert got == [b"part"]
            assert caught.value.kind == "read"
        response = await get(client, server.port, "/length")
        with pytest.raises(IncompleteBody):
            await response.read()
        assert client.idle_count() == 0


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        if b"/chunk" in request[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        elif b"/half" in request[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            await writer.drain()
            return  # closes inside the head
        else:
            writer.write(b"HTTX/1.1 200 OK\r\n\r\n")
        await reader.read()

    async with RawServer(garbage) as server, UpstreamClient() as client:
        with pytest.raises(ProtocolError) as caught:
            await get(client, server.port, "/status")
        assert caught.value.kind == "read"
        response = await get(client, server.port, "/chunk")
        with pytest.raises(ProtocolError):
            await response.read()
        with pytest.raises(ProtocolError) as caught:
            await get(client, server.port, "/half")
        assert caught.value.kind == "read"
        await until(lambda: open_conns(client) == 0)


async def test_remote_closed_kinds() -> None:
    async def hang_up(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # only the head: a large body is still on its way
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    async with RawServer(hang_up) as server, UpstreamClient() as client:
        with pytest.raises(RemoteClosed) as caught:  # the request went out: maybe processed
            await get(client, server.port)
        assert caught.value.kind == "read"
        with pytest.raises(ConnectError) as caught:  # reset in the middle of the body
            await get(client, server.port, "/", "POST", body=b"\0" * (16 * 1024 * 1024), write_timeout=5)
        assert caught.value.kind == "connect"
        assert server.connections == 2  # fresh connections are never retried


async def test_upstream_hanging_up_during_the_upload_is_remote_closed_before_sending() -> None:
    async def half_close(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write_eof()  # FIN: no answer will come; the body is never read
        await asyncio.sleep(30)

    async with RawServer(half_close) as server, UpstreamClient() as client:
        with pytest.raises(RemoteClosed) as caught:
            await get(client, server.port, "/", "POST", body=b"\0" * (16 * 1024 * 1024), write_timeout=5)
        assert caught.value.kind == "connect"  # the request never fully went out
        await until(lambda: open_conns(client) == 0)


# -- stale pooled connections ---------------------------------------------------------------
async def close_reused(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the first request of a connection; closes it when the next one arrives (as an
    upstream closing an idle connection just when the client reuses it). With state["all"],
    closes without answering at all."""
    served = 0
    while (request := await read_request(reader)) is not None:
        server.heads.append(request[0])
        server.bodies.append(request[2])
        if served or server.state.get("all"):
            return
        served += 1
        writer.write(ok())


async def test_stale_pooled_connection_is_retried_once() -> None:
    async with RawServer(close_reused) as server, UpstreamClient() as client:
        assert await (await get(client, server.port)).read() == b"ok"
        assert await (await get(client, server.port, "/again")).read() == b"ok"
        assert server.connections == 2
        assert await (await get(client, server.port, "/post", "POST", body=b"replayed")).read() == b"ok"
        assert server.connections == 3
        assert server.bodies[-2:] == [b"replayed", b"replayed"]

        server.state["all"] = True  # the fresh connection fails too: one retry only
        with pytest.raises(RemoteClosed) as caught:
            await get(client, server.port, "/last")
        assert caught.value.kind == "read"
        assert server.connections == 4


async def test_streamed_body_is_never_retried() -> None:
    async with RawServer(close_reused) as server, UpstreamClient() as client:
        await (await get(client, server.port)).read()
        with pytest.raises(RemoteClosed):
            await get(client, server.port, "/s", "POST", body=chunks_of(b"a", b"b"))
        assert server.connections == 1


# -- cancellation ------------------------------------------------------------------------------
def _other_tasks(*servers: RawServer) -> set[asyncio.Task[Any]]:
    ours = set().union(*(s.tasks for s in servers))
    return asyncio.all_tasks() - {asyncio.current_task()} - ours  # type: ignore[operator]


async def test_cancellation_closes_the_connection() -> None:
    async def part(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        if b"/body" in request[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
        await reader.read()
        server.closed += 1

    async def uploading(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server.heads.append(b"")
        await reader.read()
        server.closed += 1

    async with RawServer(part) as server, RawServer(uploading) as upload, UpstreamClient() as client:
        # waiting for the head
        task = asyncio.ensure_future(get(client, server.port, "/head", read_timeout=30))
        await until(lambda: server.connections == 1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.closed == 1)

        # reading the body
        response = await get(client, server.port, "/body", read_timeout=30)

        async def consume() -> bytes:
            return await response.read()

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.closed == 2)

        # sending a streamed body that waits for more
        forever = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await forever.wait()
            yield b"never"

        task = asyncio.ensure_future(get(client, upload.port, "/up", "POST", body=body()))
        await until(lambda: len(upload.heads) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: upload.closed == 1)

        await until(lambda: open_conns(client) == 0)
        assert client.idle_count() == 0
        assert _other_tasks(server, upload) == set()  # the client runs no tasks of its own


async def test_unreleased_response_closes_its_connection_when_dropped() -> None:
    async with RawServer(serve_canned) as server, UpstreamClient() as client:
        response = await get(client, server.port, "/eof")  # body never read, never released
        assert open_conns(client) == 1
        del response
        gc.collect()
        await until(lambda: open_conns(client) == 0)
        assert client.idle_count() == 0


# -- backpressure ---------------------------------------------------------------------------------
async def test_slow_consumer_pauses_the_upstream() -> None:
    total = 64 * 1024 * 1024
    piece = 64 * 1024

    async def firehose(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        server.state["sent"] = 0
        for i in range(total // piece):
            writer.write(bytes([i % 256]) * piece)
            await writer.drain()
            server.state["sent"] += piece
        await reader.read()

    async with RawServer(firehose) as server, UpstreamClient() as client:
        response = await get(client, server.port)
        chunks = response.iter_chunks()
        first = await chunks.__anext__()
        await asyncio.sleep(0.3)  # a consumer that stops taking data
        sent = server.state["sent"]
        await asyncio.sleep(0.2)
        assert server.state["sent"] == sent  # the upstream's writes are blocked
        assert sent < total // 2  # kernel buffers plus ours, nowhere near the whole body
        conn = response._conn
        assert conn is not None and conn.read_paused and conn.buffered <= HIGH_WATER + 512 * 1024
        digest = hashlib.sha256(first)
        received, most = len(first), 0
        async for chunk in chunks:
            most = max(most, conn.buffered + len(chunk))
            digest.update(chunk)
            received += len(chunk)
        assert received == total
        assert most <= HIGH_WATER + 512 * 1024  # never the whole body in memory
        expected = hashlib.sha256()
        for i in range(total // piece):
            expected.update(bytes([i % 256]) * piece)
        assert digest.digest() == expected.digest()
        assert client.idle_count() == 1


# -- TLS ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for localhost / 127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def _server_context(certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    return context


async def tls_echo(request: web.Request) -> web.Response:
    data = await request.read()
    return web.Response(body=b"%s %s %d" % (request.method.encode(), request.host.encode(), len(data)))


async def test_tls(certs: Path) -> None:
    trusted = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    async with WebServer(tls_echo, _server_context(certs)) as server, UpstreamClient() as client:
        async def call(verify: Any, sni: Optional[str] = None, body: Optional[bytes] = None) -> UpstreamResponse:
            return await client.request("POST" if body else "GET", "https", HOST, server.port, "/tls",
                                        [("Host", "tls.test")], body, verify=verify, server_hostname=sni, **T)

        for _ in range(3):
            assert await (await call(False)).read() == b"GET tls.test 0"
        assert await (await call(trusted, body=b"x" * 100_000)).read() == b"POST tls.test 100000"
        assert await (await call(trusted, "localhost")).read() == b"GET tls.test 0"
        # one pooled connection per TLS setting
        assert client.idle_count() == 3
        assert_nodelay(client)
        with pytest.raises(ConnectError) as caught:  # the system's CAs do not know ours
            await call(True)
        assert caught.value.kind == "connect"
        with pytest.raises(ConnectError):  # a name the certificate does not have
            await call(trusted, "elsewhere.test")
        assert client.idle_count() == 3

    async with RawServer(serve_canned, _server_context(certs)) as raw, UpstreamClient() as client:
        for path, expected in (("/chunked", b"hello world"), ("/eof", b"until the end"), ("/cl", b"hello")):
            response = await client.request("GET", "https", HOST, raw.port, path, [("Host", "a")], verify=trusted,
                                            **T)
            assert await response.read() == expected
        assert raw.connections == 2  # the close-delimited body ended the first connection


# -- forward proxy ------------------------------------------------------------------------------
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def forward_proxy(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny forward proxy: CONNECT tunnels; absolute-form requests are piped to their origin."""
    head = await reader.readuntil(b"\r\n\r\n")
    server.heads.append(head)
    method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
    if method == b"CONNECT":
        if server.state.get("refuse"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.decode().rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        host, port = target.decode().split("/")[2].rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        upstream_writer.write(head)  # as received: the origin must accept absolute-form
    try:
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
    finally:
        upstream_writer.transport.abort()


async def test_forward_proxy_http_uses_absolute_form() -> None:
    async with RawServer(serve_ok) as origin, RawServer(forward_proxy) as proxy, UpstreamClient() as client:
        via = ("http", HOST, proxy.port)
        for target in ("/a?x=1", "/b"):
            response = await get(client, origin.port, target, proxy=via)
            assert await response.read() == b"ok"
        assert [h.split(b"\r\n", 1)[0] for h in origin.heads] == [
            b"GET http://127.0.0.1:%d/a?x=1 HTTP/1.1" % origin.port,
            b"GET http://127.0.0.1:%d/b HTTP/1.1" % origin.port,
        ]
        assert proxy.connections == 1  # the proxy connection was kept alive
        assert client.idle_count(("http", HOST, origin.port, via)) == 1


async def test_forward_proxy_https_uses_connect(certs: Path) -> None:
    async with WebServer(tls_echo, _server_context(certs)) as origin, RawServer(forward_proxy) as proxy, \
            UpstreamClient() as client:
        via = ("http", HOST, proxy.port)
        for _ in range(2):
            response = await client.request("GET", "https", HOST, origin.port, "/t", [("Host", "tls.test")],
                                            proxy=via, verify=False, **T)
            assert await response.read() == b"GET tls.test 0"
        assert proxy.connections == 1
        assert_nodelay(client)
        assert proxy.heads[0] == b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (
            origin.port, origin.port)

        proxy.state["refuse"] = True
        with pytest.raises(ConnectError) as caught:
            await client.request("GET", "https", HOST, origin.port, "/t", [("Host", "tls.test")],
                                 proxy=via, verify=True, **T)
        assert caught.value.kind == "connect" and "403" in str(caught.value)


# -- the client's lifetime ------------------------------------------------------------------------
async def test_close_closes_idle_and_busy_connections() -> None:
    async with RawServer(serve_ok) as server, RawServer(silent) as hanging:
        client = UpstreamClient()
        await (await get(client, server.port)).read()
        task = asyncio.ensure_future(get(client, hanging.port, read_timeout=30))
        await until(lambda: len(hanging.heads) == 1)
        await client.close()
        assert open_conns(client) == 0 and client.idle_count() == 0
        await until(lambda: server.closed == 1 and hanging.closed == 1)
        with pytest.raises(RemoteClosed):
            await task
        with pytest.raises(RuntimeError):
            await get(client, server.port)


# -- the same on uvloop ---------------------------------------------------------------------------------
UVLOOP_TESTS = [
    test_keepalive_reuses_one_connection, test_idle_timeout_closes_connections,
    test_request_bodies_arrive_intact, test_headers_are_written_exactly_as_given, test_response_framings,
    test_bodyless_responses_keep_the_connection, test_interim_responses_are_skipped,
    test_response_larger_than_the_buffers_streams_intact, test_connection_refused_is_a_connect_error,
    test_no_answer_is_a_read_timeout, test_upstream_that_stops_reading_is_a_write_timeout,
    test_early_answer_stops_the_upload, test_close_after_the_head_is_an_incomplete_body,
    test_garbage_is_a_protocol_error, test_remote_closed_kinds,
    test_upstream_hanging_up_during_the_upload_is_remote_closed_before_sending, test_stale_pooled_connection_is_retried_once,
    test_cancellation_closes_the_connection, test_slow_consumer_pauses_the_upstream, test_tls,
    test_forward_proxy_http_uses_absolute_form, test_forward_proxy_https_uses_connect,
    test_close_closes_idle_and_busy_connections,
]


@pytest.mark.parametrize("scenario", UVLOOP_TESTS, ids=[t.__name__[5:] for t in UVLOOP_TESTS])
def test_on_uvloop(scenario: Callable[..., Awaitable[None]], request: pytest.FixtureRequest) -> None:
    uvloop = pytest.importorskip("uvloop")
    kwargs = {name: request.getfixturevalue(name) for name in inspect.signature(scenario).parameters}

    async def bounded() -> None:
        async with asyncio.timeout(60):
            await scenario(**kwargs)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bounded())
