"""A lean HTTP/1.1 client for the proxy's upstream calls.

Why not aiohttp: a proxy already has every header as text, knows its timeouts
and never needs cookies, redirects, default headers or URL objects, yet paid
for all of them on each request. This client writes the head it is given, reads
the answer with httptools on an asyncio Protocol (uvloop or the default loop),
and keeps idle keep-alive connections per origin. A request costs a few futures
and timer handles, no tasks.

    client = UpstreamClient()
    response = await client.request("GET", "http", "10.0.0.7", 8080, "/path?q=1",
                                     [("Host", "example.com")], connect_timeout=60,
                                     read_timeout=60, write_timeout=60)
    async for chunk in response.iter_chunks():   # releases the connection at the end
        ...
    response.release()                           # idempotent; closes if unfinished

Every failure is an ``UpstreamError`` whose ``kind`` tells the proxy whether the
upstream may have seen the request: "connect" (it did not: safe to try another
target), "timeout" and "read" (it may have: never replayed).
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Optional, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "UpstreamClient", "UpstreamResponse", "UpstreamError", "ConnectError", "ConnectTimeout",
    "WriteTimeout", "ReadTimeout", "RemoteClosed", "ProtocolError", "IncompleteBody",
]

#: reading from the socket pauses when this much body waits for the consumer ...
HIGH_WATER = 256 * 1024
#: ... and resumes once the consumer has taken it below this
LOW_WATER = 64 * 1024
#: bytes bodies are written in pieces of this size, each drained within write_timeout
WRITE_PIECE = 256 * 1024
#: a bytes body up to this size goes out in the same write (and segment) as the head
COALESCE = 16 * 1024
#: largest answer to a CONNECT that a forward proxy may send
MAX_TUNNEL_HEAD = 64 * 1024

Body = Union[bytes, bytearray, AsyncIterable[bytes], None]
ProxyAddress = tuple[str, str, int]
Verify = Union[bool, ssl.SSLContext]


# -- errors -------------------------------------------------------------------
class UpstreamError(Exception):
    """A failed upstream call; ``kind`` is "connect", "timeout" or "read"."""

    kind = "read"


class ConnectError(UpstreamError):
    """The connection (TCP, TLS or proxy tunnel) could not be set up, or was reset
    before the request was written."""

    kind = "connect"


class ConnectTimeout(UpstreamError):
    """Setting up the connection took longer than connect_timeout."""

    kind = "connect"


class WriteTimeout(UpstreamError):
    """The upstream stopped taking the request (a write did not drain in time)."""

    kind = "timeout"


class ReadTimeout(UpstreamError):
    """No response head, or no next piece of the body, within read_timeout."""

    kind = "timeout"


class RemoteClosed(UpstreamError):
    """The connection closed before any byte of the response.

    ``kind`` is "connect" while the request had not fully gone out (the upstream
    cannot have processed it), "read" once it had.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class ProtocolError(UpstreamError):
    """The upstream's bytes are not a valid HTTP/1.x response."""

    kind = "read"


class IncompleteBody(UpstreamError):
    """The connection ended before the announced length or the last chunk."""

    kind = "read"


# -- one connection -------------------------------------------------------------
def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _wake(waiter: Optional[asyncio.Future[bool]]) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


class _Conn(asyncio.Protocol):
    """One upstream connection: feeds httptools and holds the current exchange.

    The protocol callbacks only record state and wake the one waiting coroutine
    (the request or the body reader); they never raise.
    """

    __slots__ = (
        "client", "key", "loop", "transport", "closed", "lost", "lost_exc", "pooled", "idle_since",
        "tunnel", "write_paused", "waiter", "drain_waiter", "active", "parser",
        "head_only", "got_bytes", "sent", "head_done", "done", "status", "reason", "headers",
        "length", "until_eof", "keep_alive", "chunks", "buffered", "read_paused", "error",
    )

    def __init__(self, client: "UpstreamClient", key: tuple[Any, ...], loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.key = key
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.lost = False
        self.lost_exc: Optional[BaseException] = None
        self.pooled = False
        self.idle_since = 0.0
        self.tunnel: Optional[bytearray] = None  # the answer to CONNECT, while it is read
        self.write_paused = False
        self.waiter: Optional[asyncio.Future[bool]] = None
        self.drain_waiter: Optional[asyncio.Future[bool]] = None
        self.active = False
        self.begin(False)
        self.active = False

    def begin(self, head_only: bool) -> None:
        """Reset the per-exchange state; a fresh parser (0.8 µs) is simpler than resetting one."""
        self.active = True
        self.parser = HttpResponseParser(self)
        self.head_only = head_only
        self.got_bytes = False
        self.sent = False
        self.head_done = False
        self.done = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: Optional[int] = None
        self.until_eof = False
        self.keep_alive = True
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.read_paused = False
        self.error: Optional[UpstreamError] = None

    # asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
        self.client._conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel += data
            _wake(self.waiter)
            return
        if not self.active:  # an idle connection must stay silent: it cannot be reused
            self.abort()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            pass  # 101: on_headers_complete ended the exchange; what follows is not HTTP
        except HttpParserError as exc:
            if self.done:
                self.keep_alive = False  # garbage after a complete response
            else:
                self._fail(ProtocolError(f"invalid response from upstream: {exc}"))

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost_exc = exc
        self.keep_alive = False
        if self.active and self.head_done and not self.done:
            if self.until_eof and exc is None:
                self.done = True  # a close-delimited body ends here
            elif self.error is None:
                self.error = IncompleteBody(
                    f"upstream closed the connection before the end of the body{_because(exc)}")
        self._gone()
        _wake(self.waiter)
        _wake(self.drain_waiter)

    def eof_received(self) -> None:
        """The upstream finished sending: nothing it says can follow, so end at once.

        (Letting the transport close gracefully would first wait, forever, to
        flush a request body that an upstream which stopped reading never takes.)
        """
        self.abort()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self.drain_waiter)

    # httptools callbacks ----------------------------------------------------
    def on_message_begin(self) -> None:
        if self.head_done:
            self.keep_alive = False  # a second message we did not ask for

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers of a chunked body are not response headers
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_done:
            return
        status = self.parser.get_status_code()
        if status < 200 and status != 101:  # interim (100 Continue, 103): wait for the final one
            self.headers = []
            self.reason = b""
            return
        self.status = status
        self.head_done = True
        keep = self.parser.get_http_version() == "1.1"
        length = None
        chunked = False
        for name, value in self.headers:
            size = len(name)
            if size == 14 and name.lower() == b"content-length":
                length = int(value)
            elif size == 17 and name.lower() == b"transfer-encoding":
                chunked = value.rstrip().lower().endswith(b"chunked")
                self.until_eof = not chunked
            elif size == 10 and name.lower() == b"connection" and b"close" in _tokens(value):
                keep = False
        self.length = None if chunked else length
        if self.head_only or status in (101, 204, 304):
            self.done = True  # no body, whatever the headers announce
            if status == 101:
                keep = False
        elif not chunked and length is None:
            self.until_eof = True
        if self.until_eof:
            keep = False
        self.keep_alive = self.keep_alive and keep
        _wake(self.waiter)
        _wake(self.drain_waiter)  # an early answer stops the upload

    def on_body(self, data: bytes) -> None:
        if self.done:
            self.keep_alive = False  # bytes after a body-less response
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        _wake(self.waiter)

    def on_message_complete(self) -> None:
        if self.head_done and not self.done:
            self.done = True
            _wake(self.waiter)

    # used by the client and the response ------------------------------------
    def abort(self) -> None:
        """Close at once: nothing buffered is flushed, the connection is never reused."""
        self.keep_alive = False
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def _gone(self) -> None:
        if not self.lost:
            self.lost = True
            self.closed.set_result(None)
            self.client._forget(self)

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        self.abort()
        _wake(self.waiter)
        _wake(self.drain_waiter)

    def closed_error(self) -> UpstreamError:
        """What a connection lost before the response head means."""
        if self.error is not None:
            return self.error
        if self.got_bytes:
            return ProtocolError(f"upstream closed the connection inside the response head{_because(self.lost_exc)}")
        if not self.sent and isinstance(self.lost_exc, OSError):
            return ConnectError(f"connection reset before the request was written ({self.lost_exc})")
        return RemoteClosed(f"upstream closed the connection before responding{_because(self.lost_exc)}",
                            "read" if self.sent else "connect")

    async def wait(self, timeout: Optional[float], drain: bool = False) -> bool:
        """Sleep until a callback wakes us (True) or ``timeout`` passes (False)."""
        waiter: asyncio.Future[bool] = self.loop.create_future()
        if drain:
            self.drain_waiter = waiter
        else:
            self.waiter = waiter
        handle = None if timeout is None else self.loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            if drain:
                self.drain_waiter = None
            else:
                self.waiter = None
            if handle is not None:
                handle.cancel()

    async def drain(self, timeout: Optional[float]) -> None:
        """Wait until the transport takes more; an early answer or loss also ends the wait."""
        while self.write_paused and not self.lost and not self.head_done:
            if not await self.wait(timeout, drain=True):
                raise WriteTimeout(f"upstream did not take the request body within {timeout}s")

    async def send(self, head: bytes, body: Body, chunked: bool, declared: Optional[int],
                   timeout: Optional[float]) -> None:
        """Write head and body; stop early (and give up keep-alive) if the answer comes first."""
        transport = self.transport
        assert transport is not None
        cut = False
        if body is None:
            transport.write(head + b"0\r\n\r\n" if chunked else head)
        elif isinstance(body, (bytes, bytearray)):
            if chunked:
                body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            if len(body) <= COALESCE:
                transport.write(head + body)
            else:
                transport.write(head)
                view = memoryview(body)
                for start in range(0, len(body), WRITE_PIECE):
                    await self.drain(timeout)
                    if self.head_done or self.lost:
                        cut = True
                        break
                    transport.write(view[start:start + WRITE_PIECE])
        else:
            transport.write(head)
            total = 0
            async for chunk in body:
                if not chunk:
                    continue
                await self.drain(timeout)
                if self.head_done or self.lost:
                    cut = True
                    break
                total += len(chunk)
                if chunked:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                elif declared is not None and total > declared:
                    raise ValueError(f"request body is longer than its Content-Length ({declared})")
                else:
                    transport.write(chunk)
            else:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                elif declared is not None and total != declared:
                    raise ValueError(f"request body was {total} bytes, its Content-Length {declared}")
        await self.drain(timeout)
        if self.head_done:
            if cut:
                self.keep_alive = False  # the upstream answered before taking all of the body
        elif self.lost:
            raise self.closed_error()
        self.sent = not cut

    async def wait_head(self, timeout: Optional[float]) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if self.lost:
                raise self.closed_error()
            if not await self.wait(timeout):
                raise ReadTimeout(f"upstream did not respond within {timeout}s")

    async def open_tunnel(self, authority: str) -> None:
        """CONNECT through a forward proxy; the caller bounds it with connect_timeout."""
        self.tunnel = bytearray()
        self.transport.write(  # type: ignore[union-attr]
            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("latin-1"))
        while (end := self.tunnel.find(b"\r\n\r\n")) < 0:
            if self.lost:
                raise ConnectError(f"proxy closed the connection during CONNECT {authority}")
            if len(self.tunnel) > MAX_TUNNEL_HEAD:
                raise ConnectError("proxy sent an oversized answer to CONNECT")
            await self.wait(None)
        head, rest = bytes(self.tunnel[:end]), self.tunnel[end + 4:]
        self.tunnel = None
        line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(line) < 2 or not line[0].startswith(b"HTTP/1.") or not line[1].startswith(b"2"):
            answer = b" ".join(line[1:]).decode("latin-1") if len(line) > 1 else "an invalid status line"
            raise ConnectError(f"proxy refused CONNECT {authority}: {answer}")
        if rest:
            raise ConnectError("proxy sent data before the TLS handshake")


def _because(exc: Optional[BaseException]) -> str:
    return f" ({exc})" if exc is not None else ""


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip() for token in value.lower().split(b",")]


# -- the response -----------------------------------------------------------------
class UpstreamResponse:
    """A response head plus its body, read on demand from the connection.

    The connection goes back to the pool as soon as the body has been read to
    its end (or at ``release()`` once it has fully arrived); anything else
    closes it.
    """

    __slots__ = ("status", "reason", "version", "raw_headers", "content_length",
                 "_headers", "_conn", "_read_timeout", "_consumed")

    def __init__(self, conn: _Conn, read_timeout: Optional[float]) -> None:
        self.status: int = conn.status
        self.reason: str = conn.reason.decode("latin-1")
        self.version: str = conn.parser.get_http_version()
        self.raw_headers: list[tuple[bytes, bytes]] = conn.headers
        #: the Content-Length header's value (also on HEAD/304), None when chunked or absent
        self.content_length: Optional[int] = conn.length
        self._headers: Optional[CIMultiDictProxy[str]] = None
        self._conn: Optional[_Conn] = conn
        self._read_timeout = read_timeout
        self._consumed = False

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Case-insensitive view of ``raw_headers``, decoded as latin-1; built on first use."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(
                [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers]))
        return self._headers

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The decoded body, piece by piece as it arrives (chunked framing removed)."""
        return _BodyIterator(self)

    async def read(self) -> bytes:
        """The whole body (for small answers; streaming callers use iter_chunks)."""
        conn = self._conn
        if conn is not None and conn.done:  # all of it is here already: one join
            data = b"".join(conn.chunks)
            conn.chunks.clear()
            self._consumed = True
            self.release()
            return data
        return b"".join([chunk async for chunk in _BodyIterator(self)])

    def release(self) -> None:
        """Give the connection back if the body fully arrived and keep-alive allows; else close it."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if conn.done and conn.error is None and conn.keep_alive and not conn.lost:
            conn.client._put(conn)
        else:
            conn.abort()

    def close(self) -> None:
        """Close the connection now (an answer that is not wanted, a client that left)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()

    def __del__(self) -> None:
        # a response dropped unreleased (a caller's bug) must not keep its socket open
        conn = self._conn
        if conn is not None:
            try:
                conn.abort()
            except Exception:  # e.g. the loop is already closed at interpreter exit
                pass

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.reason}>"


class _BodyIterator:
    """A plain async iterator (no async generator to finalize if the consumer stops early)."""

    __slots__ = ("_response",)

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def __aiter__(self) -> "_BodyIterator":
        return self

    async def __anext__(self) -> bytes:
        response = self._response
        conn = response._conn
        if conn is None:
            if response._consumed:
                raise StopAsyncIteration
            raise RuntimeError("the response was released or closed before its body was read")
        chunks = conn.chunks
        while not chunks:
            if conn.done:
                response._consumed = True
                response.release()
                raise StopAsyncIteration
            if conn.error is not None:
                response.close()
                raise conn.error
            try:
                woken = await conn.wait(response._read_timeout)
            except BaseException:  # cancelled: the rest of the body is never read
                response.close()
                raise
            if not woken:
                response.close()
                raise ReadTimeout(f"upstream sent no body data for {response._read_timeout}s")
        if len(chunks) == 1:
            data = chunks.popleft()
            conn.buffered -= len(data)
        else:
            data = b"".join(chunks)
            chunks.clear()
            conn.buffered = 0
        if conn.read_paused and conn.buffered < LOW_WATER and not conn.lost:
            conn.read_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        return data


# -- the client --------------------------------------------------------------------
_SSL_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def _ssl_context(verify: Verify) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = _SSL_CONTEXTS.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXTS[verify] = context
    return context


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _head(method: str, target: str, headers: Iterable[tuple[str, str]],
          body: Body) -> tuple[bytes, bool, Optional[int], bool]:
    """Serialize the request head: (bytes, chunked framing, caller's Content-Length, Connection: close).

    Headers go out exactly as given; only the body's framing header may be added.
    """
    lines = [f"{name}: {value}\r\n" for name, value in headers]
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(lines)
    count = len(lines) + 1
    if text.count("\n") != count or text.count("\r") != count:
        raise ValueError("CR or LF inside the request target or a header (request splitting)")
    low = text.lower()
    declared: Optional[int] = None
    if "\ncontent-length:" in low:
        if low.count("\ncontent-length:") > 1:
            raise ValueError("more than one Content-Length header")
        start = low.index("\ncontent-length:") + 16
        declared = int(low[start:low.index("\r", start)])
    caller_te = "\ntransfer-encoding:" in low
    if caller_te and declared is not None:
        raise ValueError("both Content-Length and Transfer-Encoding (request smuggling)")
    close = False
    if "\nconnection:" in low:
        start = low.index("\nconnection:") + 12
        close = "close" in [t.strip() for t in low[start:low.index("\r", start)].split(",")]
    chunked = caller_te  # the caller's Transfer-Encoding: we frame the body in chunks
    if body is None:
        pass
    elif isinstance(body, (bytes, bytearray)):
        if declared is None and not caller_te:
            text += f"Content-Length: {len(body)}\r\n"
        elif declared is not None and declared != len(body):
            raise ValueError(f"Content-Length {declared} but the body has {len(body)} bytes")
    elif declared is None:
        chunked = True
        if not caller_te:
            text += "Transfer-Encoding: chunked\r\n"
    text += "\r\n"
    try:
        data = text.encode("latin-1")  # the proxy's headers are latin-1 decoded bytes: exact round trip
    except UnicodeEncodeError:  # a plugin's non-latin-1 text: UTF-8 for that line only
        data = b"\n".join([_encode_line(line) for line in text.split("\n")])
    return data, chunked, declared, close


def _encode_line(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


class UpstreamClient:
    """Pooled HTTP/1.1 connections to upstreams; one per worker.

    Idle keep-alive connections are kept per origin (scheme, host, port, proxy
    and, for https, the TLS settings), newest reused first; they are closed
    after ``keepalive_idle_timeout`` seconds (checked on reuse and by a periodic
    sweep) or when the upstream closes them.
    """

    def __init__(self, keepalive_idle_timeout: float = 60, max_idle_per_origin: int = 256) -> None:
        self.keepalive_idle_timeout = float(keepalive_idle_timeout)
        self.max_idle_per_origin = max_idle_per_origin
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self._conns: set[_Conn] = set()
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self._closed = False

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: Iterable[tuple[str, str]], body: Body = None, *,
                      connect_timeout: Optional[float], read_timeout: Optional[float],
                      write_timeout: Optional[float], proxy: Optional[ProxyAddress] = None,
                      verify: Verify = True, server_hostname: Optional[str] = None) -> UpstreamResponse:
        """Send one request and return once the response head has arrived.

        ``target`` is the encoded path and query; ``headers`` go out as given
        (the caller sets Host). ``body`` is None, bytes (sent with
        Content-Length) or an async iterable of bytes (streamed, chunked unless
        the caller gave Content-Length). ``verify`` may be an SSLContext (a
        custom CA, a client certificate). Timeouts are seconds, None for none.
        """
        if self._closed:
            raise RuntimeError("the UpstreamClient is closed")
        if scheme == "https":
            key: tuple[Any, ...] = (scheme, host, port, proxy, verify, server_hostname)
        elif scheme == "http":
            key = (scheme, host, port, proxy)
            if proxy is not None:
                target = f"http://{_authority(host, port)}{target}"  # absolute-form for the proxy
        else:
            raise ValueError(f"unsupported scheme {scheme!r}")
        head, chunked, declared, close = _head(method, target, headers, body)
        head_only = method == "HEAD"
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(conn, head, body, chunked, declared, close, head_only,
                                            read_timeout, write_timeout)
            except (RemoteClosed, ConnectError):  # closed or reset before any byte of an answer
                if body is not None and not isinstance(body, (bytes, bytearray)):
                    raise  # a streamed body cannot be sent twice
                # the upstream closed this idle connection as we reused it, before any
                # answer: it did not process the request, so try once on a new one
        conn = await self._connect(key, scheme, host, port, proxy, verify, server_hostname, connect_timeout)
        return await self._exchange(conn, head, body, chunked, declared, close, head_only,
                                    read_timeout, write_timeout)

    async def close(self) -> None:
        """Close every connection, idle or busy; later requests raise RuntimeError."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.pooled = False
            conn.abort()
        pending = [conn.closed for conn in conns if not conn.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def __aenter__(self) -> "UpstreamClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def idle_count(self, key: Optional[tuple[Any, ...]] = None) -> int:
        """Idle connections kept (for one origin key, or all): for tests and metrics."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(stack) for stack in self._idle.values())

    # internals --------------------------------------------------------------
    async def _exchange(self, conn: _Conn, head: bytes, body: Body, chunked: bool, declared: Optional[int],
                        close: bool, head_only: bool, read_timeout: Optional[float],
                        write_timeout: Optional[float]) -> UpstreamResponse:
        conn.begin(head_only)
        try:
            if conn.lost:
                raise conn.closed_error()
            await conn.send(head, body, chunked, declared, write_timeout)
            await conn.wait_head(read_timeout)
        except BaseException:  # failure or cancellation: the connection's state is unknown
            conn.abort()
            raise
        if close:
            conn.keep_alive = False
        response = UpstreamResponse(conn, read_timeout)
        if conn.done and not conn.chunks:  # no body (HEAD, 204, 304): back to the pool now
            response._consumed = True
            response.release()
        return response

    async def _connect(self, key: tuple[Any, ...], scheme: str, host: str, port: int,
                       proxy: Optional[ProxyAddress], verify: Verify, server_hostname: Optional[str],
                       timeout: Optional[float]) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = _Conn(self, key, loop)
        context = _ssl_context(verify) if scheme == "https" else None
        sni = (server_hostname or host) if context is not None else None
        where = _authority(host, port)
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    await loop.create_connection(lambda: conn, host, port, ssl=context, server_hostname=sni)
                else:
                    proxy_scheme, proxy_host, proxy_port = proxy
                    if proxy_scheme != "http":
                        raise ValueError(f"unsupported proxy scheme {proxy_scheme!r}")
                    where = f"{where} via proxy {_authority(proxy_host, proxy_port)}"
                    await loop.create_connection(lambda: conn, proxy_host, proxy_port)
                    if context is not None:
                        await conn.open_tunnel(_authority(host, port))
                        transport = await loop.start_tls(conn.transport, conn, context,  # type: ignore[arg-type]
                                                         server_hostname=sni)
                        if transport is None:
                            raise ConnectError(f"TLS through the proxy failed for {where}")
                        conn.transport = transport  # type: ignore[assignment]
        except BaseException as exc:
            conn.abort()
            conn._gone()
            if isinstance(exc, TimeoutError):  # asyncio.timeout, or the kernel's own ETIMEDOUT
                raise ConnectTimeout(f"connecting to {where} took longer than {timeout}s") from exc
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS handshake/verification
                raise ConnectError(f"cannot connect to {where}: {exc}") from exc
            raise
        return conn

    def _take(self, key: tuple[Any, ...]) -> Optional[_Conn]:
        stack = self._idle.get(key)
        if not stack:
            return None
        oldest = time.monotonic() - self.keepalive_idle_timeout
        while stack:
            conn = stack.pop()
            conn.pooled = False
            if not conn.lost and conn.idle_since > oldest:
                return conn
            conn.abort()
        return None

    def _put(self, conn: _Conn) -> None:
        stack = self._idle.get(conn.key)
        if self._closed or (stack is not None and len(stack) >= self.max_idle_per_origin):
            conn.abort()
            return
        if stack is None:
            stack = self._idle[conn.key] = []
        conn.active = False
        conn.chunks.clear()
        if conn.read_paused:
            conn.read_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        conn.pooled = True
        conn.idle_since = time.monotonic()
        stack.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._sweep_interval(), self._sweep)

    def _forget(self, conn: _Conn) -> None:
        """A connection closed (by either side): drop it from the bookkeeping."""
        self._conns.discard(conn)
        if conn.pooled:
            conn.pooled = False
            stack = self._idle.get(conn.key)
            if stack is not None:
                try:
                    stack.remove(conn)
                except ValueError:
                    pass
                if not stack:
                    del self._idle[conn.key]

    def _sweep_interval(self) -> float:
        return min(max(self.keepalive_idle_timeout / 4, 0.05), 10.0)

    def _sweep(self) -> None:
        """Close connections idle for longer than the timeout (the oldest are at the bottom)."""
        self._sweeper = None
        oldest = time.monotonic() - self.keepalive_idle_timeout
        loop = None
        for key, stack in list(self._idle.items()):
            expired = 0
            while expired < len(stack) and stack[expired].idle_since <= oldest:
                expired += 1
            if expired:
                for conn in stack[:expired]:
                    conn.pooled = False
                    conn.abort()
                del stack[:expired]
            if stack:
                loop = stack[0].loop
            else:
                del self._idle[key]
        if loop is not None and not self._closed:
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)
