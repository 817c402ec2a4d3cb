"""Sending answers to the client: a target's response (streamed through the
header_filter and body_filter hooks) or one made by the gateway or a plugin."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson

from .. import __version__
from .client import UpstreamResponse
from .context import Context, Exit, Response
from .headers import hop_by_hop

if TYPE_CHECKING:
    from ..snapshot import RoutePlan

log = logging.getLogger("kong_py.proxy")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

VIA = f"1.1 kong_py/{__version__}"
VIA_BYTES = VIA.encode()
SERVER = f"kong_py/{__version__}".encode()
JSON = b"application/json; charset=utf-8"

#: responses up to this size are relayed without watching for the client leaving
SMALL_RESPONSE = 1024 * 1024

MESSAGES = {
    404: "no Route matched with those values",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "failure to get a peer from the ring-balancer",
    504: "The upstream server is timing out",
}


async def relay(ctx: Context, plan: "RoutePlan", response: UpstreamResponse, receive: Receive,
                send: Send, target_header: str | None) -> None:
    """Send the upstream's response: headers through header_filter, body streamed."""
    chain = plan.chain
    raw = response.raw_headers
    drop = hop_by_hop(raw)
    headers = [(n, v) for n, v in raw if n.lower() not in drop]
    headers.extend(gateway_headers(ctx, target_header))
    ctx.response = Response(response.status, headers, "upstream")
    if chain.header_filter:
        await run_header_filter(ctx, chain)
    headers = ctx.response.raw_headers()
    length = response.content_length
    filters = active_filters(ctx, chain)
    if filters:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    await send({"type": "http.response.start", "status": ctx.response.status, "headers": headers})
    if length is not None and length <= SMALL_RESPONSE and not filters:
        await _stream(ctx, filters, response, send)
        return
    # long or open-ended (chunked, SSE): stop as soon as the client goes away
    streaming = asyncio.ensure_future(_stream(ctx, filters, response, send))
    watcher = asyncio.ensure_future(_client_gone(receive))
    try:
        await asyncio.wait((streaming, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not streaming.done():
            streaming.cancel()
            ctx.vars["client_aborted"] = True
            response.close()
            try:
                await streaming
            except (asyncio.CancelledError, Exception):
                pass
        watcher.cancel()
    if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
        raise streaming.exception()  # type: ignore[misc]


def gateway_headers(ctx: Context, target_header: str | None) -> list[tuple[bytes, bytes]]:
    """Via, latencies, which target served and after how many tries, plugins' extra headers."""
    out = [(b"via", VIA_BYTES)]
    if ctx.upstream_ttfb is not None:
        out.append((b"x-kong-upstream-latency", str(int(ctx.upstream_ttfb * 1000)).encode()))
        proxy_ms = int(((ctx.upstream_started_at or ctx.started_at) - ctx.started_at) * 1000)
        out.append((b"x-kong-proxy-latency", str(proxy_ms).encode()))
    if target_header and ctx.target is not None:
        out.append((target_header.encode(), ctx.target.target.encode()))
        out.append((b"x-kong-upstream-tries", str(len(ctx.tries)).encode()))
    if ctx.extra_response_headers:
        out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in ctx.extra_response_headers)
    return out


async def respond(ctx: Context, plan: "RoutePlan", send: Send, target_header: str | None,
                  run_filters: bool = True) -> None:
    """Send a response produced by the gateway or a plugin's ``ctx.exit``."""
    assert ctx.exit_response is not None
    status, body, extra = ctx.exit_response
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
    headers.append((b"server", SERVER))
    headers.extend(gateway_headers(ctx, target_header))
    ctx.response = Response(status, headers, "exit")
    chain = plan.chain
    if run_filters and chain.header_filter:
        await run_header_filter(ctx, chain)
    filters = active_filters(ctx, chain) if run_filters else ()
    if filters:
        body = await run_body_filter(ctx, filters, body) + await run_body_filter(ctx, filters, b"")
    headers = [(n, v) for n, v in ctx.response.raw_headers() if n.lower() != b"content-length"]
    if ctx.response.status < 200 or ctx.response.status in (204, 304):
        body = b""  # these statuses never carry a body (RFC 9110 §6.4.1)
    else:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": ctx.response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def run_header_filter(ctx: Context, chain: Any) -> None:
    for call in chain.header_filter:
        try:
            result = call.call(ctx, call.conf)
            if call.is_async:
                await result
        except Exit:
            log.warning("plugin %s called ctx.exit() in header_filter; ignored", call.name)


def active_filters(ctx: Context, chain: Any) -> tuple[Any, ...]:
    """The route's body_filter hooks, less those a plugin skipped for this response."""
    skipped = ctx.skipped_filters
    if not skipped:
        return chain.body_filter
    return tuple(call for call in chain.body_filter if call.name not in skipped)


async def run_body_filter(ctx: Context, filters: tuple[Any, ...], chunk: bytes) -> bytes:
    for call in filters:
        result = call.call(ctx, call.conf, chunk)
        chunk = (await result) if call.is_async else result
        if chunk is None:
            chunk = b""
    return chunk


async def _stream(ctx: Context, filters: tuple[Any, ...], response: UpstreamResponse, send: Send) -> None:
    remaining = response.content_length if not filters and _has_payload(ctx, response.status) else None
    async for chunk in response.iter_chunks():
        if filters:
            chunk = await run_body_filter(ctx, filters, chunk)
            if not chunk:
                continue
        if remaining is not None:
            remaining -= len(chunk)
            if remaining <= 0:  # the last chunk closes the response: no extra empty message
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    tail = await run_body_filter(ctx, filters, b"") if filters else b""
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def _has_payload(ctx: Context, status: int) -> bool:
    """Whether a response carries the body its Content-Length announces (not HEAD, 1xx, 204, 304)."""
    return ctx.request.method != "HEAD" and status >= 200 and status not in (204, 304)


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def error(status: int, message: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    return status, orjson.dumps({"message": message}), [("Content-Type", JSON.decode())]


async def send_message(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"message": message})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", JSON), (b"content-length", str(len(body)).encode()), (b"server", SERVER)]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
