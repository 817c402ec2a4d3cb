"""One upstream connection: an asyncio Protocol that feeds httptools and holds
the current exchange (used by ``kong_py.proxy.client``)."""
from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterable, Optional, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from .client_errors import (ConnectError, IncompleteBody, ProtocolError, ReadTimeout, RemoteClosed, UpstreamError,
                            WriteTimeout)

if TYPE_CHECKING:
    from .client import UpstreamClient

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
        "length", "until_eof", "keep_alive", "chunks", "buffered", "read_paused", "error", "head_size",
        "raw_head",
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
        #: bytes of the response head so far: counted by header, and raw while it is unfinished
        self.head_size = 0
        self.raw_head = 0

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
            return
        if not self.head_done and self.error is None:  # all of it was head
            self.raw_head += len(data)
            if self.raw_head > self.client.max_head_size:
                self._fail(ProtocolError(f"upstream sent a response head over {self.client.max_head_size} bytes"))

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
        if self.head_done or self.error is not None:  # trailers of a chunked body are not response headers
            return
        size = len(name) + len(value) + 4
        self.head_size += size
        client = self.client
        if size > client.max_header_size or self.head_size > client.max_head_size:
            self._fail(ProtocolError("upstream sent a response header line over "
                                     f"{client.max_header_size} bytes or a head over {client.max_head_size}"))
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_done or self.error is not None:
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
        if self.error is not None:
            return
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
