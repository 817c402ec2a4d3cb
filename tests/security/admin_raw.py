"""Raw HTTP/1.1 over a socket, for tests that must control every byte (Host, framing)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0) -> RawResponse:
    """One response (Content-Length framed, as the Admin API answers)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    return RawResponse(status, headers, body)


async def request(port: int, head: str, body: bytes = b"", host: str = "127.0.0.1") -> RawResponse:
    """Send ``head`` (CRLF line ends added; ends with a blank line) and ``body``; read one response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        text = "\r\n".join(head.strip("\n").split("\n")) + "\r\n\r\n"
        writer.write(text.encode("latin-1") + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()
