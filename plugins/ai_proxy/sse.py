"""Server-sent events: parsing a stream as it arrives, and writing events."""
from __future__ import annotations

from typing import Any

import orjson


class SseParser:
    """Splits an SSE byte stream into ``(event, data)`` pairs, whatever the chunking.

    Lines may arrive cut anywhere; an event ends at a blank line. Comment lines
    (``:``) are skipped; ``data`` lines of one event are joined with ``\\n``.
    """

    __slots__ = ("_buffer", "_event", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        out: list[tuple[str | None, bytes]] = []
        buffer = self._buffer + chunk if self._buffer else chunk
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data or self._event is not None:
                    out.append((self._event, b"\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("latin-1")
            # id:, retry: and comments are not needed here
        self._buffer = buffer[start:]
        return out

    def close(self) -> list[tuple[str | None, bytes]]:
        """The last event when the stream ended without its blank line."""
        out = self.feed(b"\n\n") if self._buffer else []
        if self._data:
            out.append((self._event, b"\n".join(self._data)))
            self._event, self._data = None, []
        return out


def data_event(payload: Any) -> bytes:
    """``data: <json>`` and the blank line (OpenAI's chunks)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: Any) -> bytes:
    """``event: <name>`` with ``data: <json>`` (Anthropic's events)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"
