"""The HTTP side shared by every provider: one call's context, JSON answers, streams.

A provider module only says *what* to send; ``Stream`` decides *when*: the pause between
content chunks, and where a stream stalls (``hang_after_chunks``) or the connection is
reset (``reset_after_chunks``). Keeping those rules here makes every provider misbehave
the same way for the same header.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from kong_py.mock_llm.behaviour import Behaviour
from kong_py.mock_llm.recording import RecordedRequest


class Aborted(Exception):
    """The connection was reset on purpose; nothing more can be sent."""


class Ended(Exception):
    """A stream ended early on purpose (after an in-stream error); its response is complete."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("stream ended")
        self.response = response


@dataclass
class Call:
    """One request as a provider handler sees it."""

    request: web.Request
    controls: Behaviour
    body: Any                  # the parsed JSON body (None when there was none)
    record: RecordedRequest
    closing: asyncio.Event     # set when the mock stops: ends hanging answers

    @property
    def query(self) -> Any:
        return self.request.query

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer serialised with orjson (compact, as the providers send them)."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a crashed upstream would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def hang(call: Call) -> None:
    """Wait until the client goes away (the handler is cancelled) or the mock stops."""
    await call.closing.wait()
    reset(call.request)
    raise Aborted


async def send_partial(call: Call, response: web.Response) -> web.StreamResponse:
    """``reset_after_chunks`` on a non-streamed answer: the head and half the body, then RST."""
    body = response.body if isinstance(response.body, bytes) else b""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(call.request)
    await stream.write(body[: len(body) // 2])
    reset(call.request)
    return stream


class Stream:
    """A streamed answer: frames (opening and closing events) and content chunks."""

    def __init__(self, call: Call, content_type: str, headers: dict[str, str] | None = None,
                 error_frame: Callable[[str], bytes] | None = None) -> None:
        self.call = call
        self.error_frame = error_frame  # the provider's in-stream error event, given its message
        self.response = web.StreamResponse(headers=headers)
        self.response.content_type = content_type
        if content_type == "text/event-stream":
            self.response.headers["Cache-Control"] = "no-cache"
        self.sent = 0  # content chunks written

    async def open(self) -> None:
        await self.response.prepare(self.call.request)

    async def frame(self, data: bytes) -> None:
        """An event that is not content (message_start, usage, [DONE]...)."""
        await self.response.write(data)

    async def chunk(self, data: bytes) -> None:
        """One content chunk, preceded by the chunk delay and the stall/reset checks."""
        await self._checkpoint()
        controls = self.call.controls
        if self.sent and controls.chunk_delay_ms:
            await asyncio.sleep(controls.chunk_delay_ms / 1000)
        await self.response.write(data)
        self.sent += 1

    async def end(self) -> None:
        """Before the closing events: a stall or reset asked for after N chunks, when the
        answer had N chunks or fewer (a stream asked to break never ends cleanly)."""
        await self._checkpoint(final=True)

    async def finish(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response

    async def _checkpoint(self, final: bool = False) -> None:
        controls = self.call.controls
        if controls.reset_after_chunks is not None and (final or self.sent >= controls.reset_after_chunks):
            reset(self.call.request)
            raise Aborted
        if controls.hang_after_chunks is not None and (final or self.sent >= controls.hang_after_chunks):
            await hang(self.call)
        after = controls.stream_error_after_chunks
        if after is not None and self.error_frame is not None and (final or self.sent >= after):
            await self.response.write(self.error_frame(controls.error_message or default_message(529)))
            await self.response.write_eof()
            raise Ended(self.response)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already bytes."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


class ApiError(Exception):
    """A request the provider would refuse: rendered in that provider's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


#: what an error says when neither the handler nor ``x-mock-error-message`` chose a text
DEFAULT_MESSAGES = {
    400: "Invalid request (mock)",
    401: "Invalid API key (mock)",
    403: "Permission denied (mock)",
    404: "Not found (mock)",
    408: "Request timed out (mock)",
    413: "Request too large (mock)",
    422: "Unprocessable request (mock)",
    429: "Rate limit reached (mock)",
    500: "The server had an error while processing your request (mock)",
    502: "Bad gateway (mock)",
    503: "Service unavailable (mock)",
    504: "Gateway timeout (mock)",
    529: "Overloaded (mock)",
}


def default_message(status: int) -> str:
    return DEFAULT_MESSAGES.get(status, f"Error {status} (mock)")


ErrorRenderer = Callable[[ApiError], web.Response]
Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Provider:
    """One imitated API: how it words errors, where it finds keys, which paths it serves."""

    name: str
    error: ErrorRenderer
    keys: Callable[[web.Request], list[str]]
    routes: tuple[tuple[str, str, Handler], ...]
    auth: tuple[int, str, str | None] = (401, "Invalid API key (mock)", None)  # status, message, code

    def auth_error(self) -> ApiError:
        """What a request without the expected key gets (never naming the key it sent)."""
        status, message, code = self.auth
        return ApiError(status, message, code=code)


def bearer(request: web.Request) -> list[str]:
    """The token of an ``Authorization: Bearer`` header, if any."""
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return [token.strip()] if scheme.lower() == "bearer" and token.strip() else []


def integer(value: Any, name: str, minimum: int = 0) -> int | None:
    """An optional integer field of a body, checked as the providers check it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError(400, f"{name}: expected an integer >= {minimum}, got {value!r}", param=name)
    return value


def stop_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ApiError(400, f"{name}: expected a string or a list of strings", param=name)
