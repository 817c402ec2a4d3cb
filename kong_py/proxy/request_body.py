"""Reading the client's request body: buffered for retries up to a limit,
streamed beyond it, and never taken for whole when it did not arrive whole."""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: what the client is told when its body did not arrive whole, by the server's reason
_ANSWERS = {
    "malformed": (400, "Bad request: the request body is malformed"),
    "timeout": (408, "Request timeout: the request body stopped arriving"),
    "closed": (400, "Bad request: the request body is incomplete"),
}


class IncompleteRequest(Exception):
    """The client's body ended before its end: it closed the connection ("closed"),
    sent malformed chunked framing ("malformed") or stopped sending ("timeout").

    Raised while the body is read, so nothing is ever sent upstream as if the
    body were complete; a body being streamed upstream aborts that request.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def answer(self) -> tuple[int, str]:
        """The status and message for the client (who may be gone already)."""
        return _ANSWERS.get(self.reason, _ANSWERS["closed"])


def has_body(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in raw_headers:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return True
    return False


def _incomplete(message: dict[str, Any]) -> IncompleteRequest:
    return IncompleteRequest(message.get("reason") or "closed")


async def read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _incomplete(message)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def read_limited(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the body up to ``limit`` bytes; (data, True) when that was all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _incomplete(message)
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
            raise _incomplete(message)
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return
