"""Reading the client's request body: buffered for retries up to a limit,
streamed beyond it."""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]

def has_body(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in raw_headers:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return True
    return False


async def read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def read_limited(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the body up to ``limit`` bytes; (data, True) when that was all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


async def replay(prefix: bytes, receive: Receive) -> AsyncIterator[bytes]:
    """A body too large to buffer: what was read, then the rest as it arrives."""
    yield prefix
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return
