"""One client connection: httptools request parsing, limits and timeouts, and
the ASGI ``receive``/``send`` of each request on it.

What it guarantees the application (the proxy):

* a request head over the limits never reaches it (431 / 414), nor one
  httptools rejects (400), a ``TRACE`` or ``CONNECT`` (405), an HTTP/1.1
  request without exactly one ``Host`` (400) or a WebSocket upgrade (501);
* chunked trailers are dropped, never added to the request's headers;
* a body that does not arrive whole (the client closed the connection, sent a
  malformed chunk, or stopped sending for ``body_timeout``) ends in an
  ``http.disconnect`` message with a ``reason`` ("closed", "malformed",
  "timeout") *before* the body's last message, so the application can tell a
  truncated body from a complete one;
* when the client goes away while a request is being handled, the
  application's task is cancelled, which cancels its upstream call.

Timeouts are checked by the server's sweep (no timer per request): each
connection keeps a deadline for the phase it is in.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools
import orjson

from .cycle import SERVER, STATUS_LINES, App, Cycle

if TYPE_CHECKING:
    from .server import HttpServer

log = logging.getLogger("kong_py.httpd")

#: request body buffered per connection before reading from the socket pauses
READ_HIGH_WATER = 64 * 1024
#: seconds a connection stays open after an error answer, reading what the client still sends
LINGER = 2.0

# phases of a connection, each with its own timeout
IDLE, HEAD, BODY, BUSY = range(4)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client may send, and how slowly (nginx's names and defaults)."""

    #: seconds to send a whole request head (also: a new connection's first byte)
    header_timeout: float = 60.0
    #: seconds between two reads of a request body
    body_timeout: float = 60.0
    #: seconds an idle keep-alive connection stays open
    keepalive_timeout: float = 75.0
    #: bytes of a whole request head, of one header line (and of the request line), headers
    max_head_size: int = 32768
    max_header_size: int = 8192
    max_headers: int = 100
    #: open client connections per worker
    max_connections: int = 10000


class HttpProtocol(asyncio.Protocol):
    """One client connection (HTTP/1.1 with keep-alive and pipelining)."""

    def __init__(self, server: "HttpServer", app: App) -> None:
        self.server = server
        self.app = app
        self.limits: Limits = server.limits
        self.loop = server.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.closing = False
        #: an error answer was sent: what the client still sends is dropped until it closes
        self.lingering = False
        self.read_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.phase = IDLE
        self.deadline = 0.0
        #: a byte of a request head has arrived on this connection since the last response
        self.started_head = False
        self.cycle: Cycle | None = None  # the request being handled
        self.pending: deque[Cycle] = deque()  # pipelined requests waiting for their turn
        self.parsing: Cycle | None = None  # the request whose bytes the parser is reading
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        # the head being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.raw_head = 0
        self.in_head = False
        self.expect = False
        self.hosts = 0

    # -- connection events -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.server.admit(self):
            transport.abort()
            self.closing = True
            return
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.local = (sock[0], sock[1]) if isinstance(sock, tuple) else None
        self._phase(IDLE, self.limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closing = True
        self.server.forget(self)
        for cycle in (self.cycle, *self.pending):
            if cycle is not None and not cycle.finished:
                cycle.disconnected = True
                if cycle.waiter is not None and not cycle.complete:
                    cycle.wake()  # it reads the body: it learns the body is incomplete
                elif cycle.task is not None and not cycle.task.done():
                    cycle.task.cancel()  # the client left: stop its upstream call
        self.pending.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # the client closed its side: close the connection

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closing:
            if self._drain is None or self._drain.done():
                self._drain = self.loop.create_future()
            await self._drain

    def data_received(self, data: bytes) -> None:
        if self.closing or self.lingering:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._after_upgrade(data, upgrade.args[0] if upgrade.args else len(data))
            return
        except httptools.HttpParserError as exc:
            self._malformed(exc)
            return
        if self.in_head:  # all of this was head: httptools holds a header it has not finished
            self.raw_head += len(data)
            if self.raw_head > self.limits.max_head_size:
                self.error(431, "Request header or cookie too large")

    # -- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.raw_head = 0
        self.in_head = True
        self.expect = False
        self.hosts = 0
        self.started_head = True
        self._phase(HEAD, self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_header_size:
            raise _Refused(414, "Request-URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a chunked trailer: dropped, never a request header
        limits = self.limits
        size = len(name) + len(value) + 4
        self.head_size += size
        if size > limits.max_header_size or self.head_size > limits.max_head_size:
            raise _Refused(431, "Request header or cookie too large")
        if len(self.headers) >= limits.max_headers:
            raise _Refused(431, "Too many request headers")
        name = name.lower()
        if name == b"host":
            self.hosts += 1
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise _Refused(417, "Expectation Failed")
            self.expect = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if method in ("TRACE", "CONNECT"):
            raise _Refused(405, "Method not allowed")
        if (version == "1.1" and self.hosts != 1) or self.hosts > 1:
            raise _Refused(400, "Bad request: a request needs exactly one Host header")
        if parser.should_upgrade() and _upgrade_token(self.headers) == b"websocket":
            raise _Refused(501, "WebSocket proxying is not supported")
        url = self.url
        if url == b"*":
            raw_path, query = b"*", b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise _Refused(400, "Bad request: invalid request target") from None
            raw_path, query = parsed.path or b"/", parsed.query or b""
        text = raw_path.decode("latin-1")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": version,
            "server": self.local, "client": self.client, "scheme": "http", "method": method,
            "root_path": "", "path": unquote(text) if "%" in text else text, "raw_path": raw_path,
            "query_string": query, "headers": self.headers,
        }
        cycle = Cycle(self, scope, parser.should_keep_alive(), self.expect)
        self.parsing = cycle
        if self.cycle is None:
            self._begin(cycle)
        else:  # pipelined: its turn comes when the current response is done
            self.pending.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.finished or cycle.failure is not None:
            return  # a body nobody will read (the response was already sent): dropped
        cycle.chunks.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > READ_HIGH_WATER:
            self.pause_reading()
        if self.phase == BODY and cycle is self.cycle:
            self.deadline = self.server.now + self.limits.body_timeout
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        cycle.complete = True
        self.parsing = None
        if cycle is self.cycle and self.phase == BODY:
            self._phase(BUSY, 0)
        cycle.wake()
        if cycle.finished:  # answered before the body ended: the connection may go on
            self._next()

    # -- the requests' turns ---------------------------------------------------------
    def _begin(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self._phase(BUSY if cycle.complete else BODY, self.limits.body_timeout)
        cycle.task = self.server.run(cycle, self.app)

    def wanting_body(self, cycle: Cycle) -> None:
        """The application waits for body bytes: read, and time the client."""
        if cycle is self.cycle:
            self.resume_reading()
            if self.phase != BODY:
                self._phase(BODY, self.limits.body_timeout)

    def response_done(self, cycle: Cycle) -> None:
        if not cycle.keep_alive or self.closing:
            self.close()
        elif cycle.complete:
            self._next()
        else:
            # the body is still coming: read it to its end, dropped, then go on
            self.resume_reading()
            self._phase(BODY, self.limits.body_timeout)

    def _next(self) -> None:
        self.cycle = None
        if self.closing:
            return
        if self.pending:
            self._begin(self.pending.popleft())
            self.resume_reading()
            return
        self.started_head = False
        self._phase(IDLE, self.limits.keepalive_timeout)
        self.resume_reading()

    # -- timeouts (called by the server's sweep) ------------------------------------------
    def check(self, now: float) -> None:
        if self.closing or now < self.deadline:
            return
        if self.lingering:
            return self.close()
        phase = self.phase
        if phase == IDLE:
            if self.started_head:
                self.error(408, "Request timeout")
            else:
                self.close()
        elif phase == HEAD:
            self.error(408, "Request timeout")
        elif phase == BODY and not self.read_paused:
            cycle = self.cycle
            if cycle is None or cycle.finished:
                self.close()
            elif cycle.failure is None and not cycle.complete:
                self.server.timed_out += 1
                cycle.failure = "timeout"
                cycle.keep_alive = False
                cycle.wake()
                self._phase(BUSY, 0)

    def _phase(self, phase: int, timeout: float) -> None:
        self.phase = phase
        self.deadline = self.server.now + timeout

    # -- failures ------------------------------------------------------------------------
    def _malformed(self, exc: Exception) -> None:
        if isinstance(exc.__context__, _Refused):  # raised by one of our callbacks
            exc = exc.__context__
        if isinstance(exc, _Refused):
            status, message = exc.status, exc.message
        else:
            status, message = 400, "Bad request"
        cycle = self.parsing
        if cycle is None or cycle is not self.cycle:
            if cycle is not None:  # pipelined and not started: never will
                self.pending.clear()
            return self.error(status, message)
        # the body of a request being handled is malformed: the application says so
        log.info("malformed request body from %s: %s", self.client[0] if self.client else "?", exc)
        cycle.failure = "malformed"
        cycle.keep_alive = False
        self.parsing = None
        self.pause_reading()
        cycle.wake()

    def _after_upgrade(self, data: bytes, offset: int) -> None:
        """An upgrade the proxy does not speak (h2c, ...): answer in HTTP/1.1, parse on."""
        self.parser = httptools.HttpRequestParser(self)
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def error(self, status: int, message: str) -> None:
        """Answer with Kong's JSON error body and close the connection.

        The close lingers (as nginx's): the write side is shut, and what the
        client still sends is read and dropped for up to ``LINGER`` seconds, so
        a client in the middle of sending gets the answer instead of a reset.
        """
        if self.closing or self.lingering:
            return
        self.server.refused_requests += 1
        body = orjson.dumps({"message": message})
        self.transport.write(b"".join((
            STATUS_LINES.get(status, b"HTTP/1.1 400 Bad Request\r\n"), b"server: ", SERVER,
            b"\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ",
            str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body)))
        self.lingering = True
        self.in_head = False
        self.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.phase = BUSY
        self.deadline = self.server.now + LINGER

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closing:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closing:
            self.read_paused = False
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """The server stops: close when idle, else after the current response."""
        if self.cycle is None:
            self.close()
        else:
            self.cycle.keep_alive = False


class _Refused(Exception):
    """A head the server refuses itself (raised from a parser callback)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _upgrade_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"upgrade":
            return value.strip().lower()
    return None
