"""Raw bytes over sockets, both sides of the gateway (imported as ``raw``).

``RawUpstream`` logs every byte each connection brings and which requests
arrived whole (parsed with httptools, as a strict server would), and answers
each whole request ``200 ok``; a test can then tell "nothing reached the
upstream", "a complete request reached it" and "an incomplete request was cut
off" apart.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson


@dataclass
class Received:
    """One upstream connection as the upstream saw it."""

    data: bytearray = field(default_factory=bytearray)
    #: (method, path, headers, body) of each request that arrived whole
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    closed: bool = False


class _Parser:
    def __init__(self, conn: Received) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.conn.requests.append((method, self.url.decode("latin-1"), dict(self.headers), bytes(self.body)))
        self.url, self.headers, self.body = b"", {}, bytearray()
        self.done = True


class RawUpstream:
    def __init__(self, mode: str = "ok", big_header: int = 0) -> None:
        #: ok: answer each whole request at once; hang: never answer
        self.mode = mode
        self.big_header = big_header
        self.connections: list[Received] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for c in self.connections for r in c.requests]

    async def start(self) -> "RawUpstream":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Received()
        self.connections.append(conn)
        parser = _Parser(conn)
        try:
            while data := await reader.read(65536):
                conn.data += data
                parser.parser.feed_data(data)
                if parser.done and self.mode == "ok":
                    parser.done = False
                    extra = b"x-big: " + b"a" * self.big_header + b"\r\n" if self.big_header else b""
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + extra + b"\r\nok")
                    await writer.drain()
        except (ConnectionError, httptools.HttpParserError):
            pass
        finally:
            conn.closed = True
            writer.close()


async def exchange(port: int, data: bytes, *, close_after: bool = False, wait: float = 3.0,
                   pause: float = 0.0) -> bytes:
    """Send raw bytes to the gateway and read what comes back until it closes (or ``wait``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionResetError:
            pass
        if pause:
            await asyncio.sleep(pause)
        if close_after:
            writer.close()
            return b""
        out = bytearray()
        try:
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return bytes(out)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


def body_of(response: bytes) -> Any:
    head, _, body = response.partition(b"\r\n\r\n")
    return orjson.loads(body) if b"application/json" in head.lower() else body


async def settle() -> None:
    """Let the gateway finish whatever it would still send upstream."""
    await asyncio.sleep(0.3)
