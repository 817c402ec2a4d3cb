"""One request and its response on a client connection, as ASGI sees them:
``receive`` hands the application the body (or why it will not arrive whole),
``send`` writes the response with its framing and flow control."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .. import __version__

if TYPE_CHECKING:
    from .protocol import HttpProtocol

log = logging.getLogger("kong_py.httpd")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

SERVER = f"kong_py/{__version__}".encode()
STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


class Cycle:
    """One request and its response, as ASGI sees them."""

    __slots__ = ("proto", "scope", "chunks", "buffered", "complete", "final_sent", "failure",
                 "disconnected", "waiter", "started", "finished", "chunked", "remaining", "head_only",
                 "keep_alive", "expect", "task")

    def __init__(self, proto: "HttpProtocol", scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        #: the whole body has arrived; ``final_sent``: the application was told
        self.complete = False
        self.final_sent = False
        #: why the body will not arrive whole: "malformed" or "timeout" (None: fine so far)
        self.failure: str | None = None
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.finished = False
        self.chunked = False
        self.remaining: int | None = None
        self.head_only = scope["method"] == "HEAD"
        self.keep_alive = keep_alive
        self.expect = expect
        self.task: asyncio.Task[None] | None = None

    # -- ASGI receive -------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        proto = self.proto
        if self.expect:  # the client waits for this before it sends the body
            self.expect = False
            if not self.disconnected and self.failure is None:
                proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.buffered = 0
                proto.resume_reading()
                more = not self.complete
                self.final_sent = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.complete and not self.final_sent:
                self.final_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.failure is not None or self.finished:
                reason = self.failure or "closed"
                return {"type": "http.disconnect", "reason": reason}
            waiter = self.waiter = proto.loop.create_future()
            if not self.complete:
                proto.wanting_body(self)
            try:
                await waiter
            finally:
                self.waiter = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI send -------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        proto = self.proto
        if proto.write_paused and not self.disconnected:
            await proto.drain()
        if self.disconnected or self.finished:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {message['type']}")
            self._start(message["status"], message.get("headers") or ())
            return
        if message["type"] != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {message['type']}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        transport = proto.transport
        if self.head_only:
            pass
        elif self.chunked:
            if body:
                transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            if not more:
                transport.write(b"0\r\n\r\n")
        elif body:
            if self.remaining is not None:
                if len(body) > self.remaining:
                    raise RuntimeError("response body longer than its Content-Length")
                self.remaining -= len(body)
            transport.write(body)
        if not more:
            if self.remaining and not self.head_only:
                raise RuntimeError("response body shorter than its Content-Length")
            self.finished = True
            self.wake()
            proto.response_done(self)

    def _start(self, status: int, headers: Any) -> None:
        self.started = True
        self.expect = False
        keep_alive = self.keep_alive
        parts = [STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode()]
        length = None
        chunked = False
        for name, value in headers:
            low = name.lower()
            if low == b"content-length":
                length = int(value)
            elif low == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif low == b"connection" and b"close" in value.lower():
                keep_alive = False
            parts += (name, b": ", value, b"\r\n")
        bodyless = self.head_only or status < 200 or status in (204, 304)
        if not bodyless and length is None and not chunked:
            if self.scope["http_version"] == "1.1":
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False  # HTTP/1.0: the body ends with the connection
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if head.count(b"\n") != head.count(b"\r\n"):
            raise RuntimeError("CR or LF inside a response header (response splitting)")
        self.keep_alive = keep_alive
        self.chunked = chunked and not bodyless
        self.remaining = None if bodyless or chunked else length
        self.proto.transport.write(head)

    # -- running the application --------------------------------------------------
    async def run(self, app: App) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.disconnected:
                raise  # the server is stopping
        except Exception:
            log.exception("error while handling %s %s", self.scope["method"], self.scope["path"])
            if not self.started and not self.disconnected:
                self.proto.error(500, "An unexpected error occurred")
            else:
                self.proto.close()
        else:
            if not self.finished and not self.disconnected:
                if not self.started:
                    log.error("%s %s: no response was sent", self.scope["method"], self.scope["path"])
                    self.proto.error(500, "An unexpected error occurred")
                else:  # left unfinished on purpose (the upstream broke off): the client must see it cut
                    self.proto.close()
