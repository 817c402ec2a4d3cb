"""The proxy: a plain ASGI callable, no framework on the hot path.

Per request: route, run access hooks, then for each try pick a target, run
balancer hooks and call it; stream the answer back through header_filter and
body_filter hooks; run log hooks. Everything that can be prepared is in the
snapshot's RoutePlan.
"""
from __future__ import annotations

import asyncio
import logging
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import orjson
from multidict import CIMultiDict

from .. import __version__
from .access_log import access_line, log_line
from .client import ConnectTimeout, UpstreamError, UpstreamResponse
from .context import Context, Exit, Request, Response, UpstreamRequest
from .headers import hop_by_hop
from .request_body import has_body, read_limited, replay
from .upstream_address import host_header, strip_port, upstream_path

if TYPE_CHECKING:
    from ..balancer.target import TargetInfo
    from ..snapshot import RoutePlan
    from ..worker import Worker

log = logging.getLogger("kong_py.proxy")

Scope = dict[str, Any]
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


class UpstreamFailure(Exception):
    """A try that got no usable response: ``kind`` is connect, timeout or read."""

    def __init__(self, kind: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status


class Proxy:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        config = worker.config
        self.body_limit = config.retry_body_limit
        self.target_header = config.upstream_target_header
        self.access_log = worker.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        stats = self.worker.stats
        stats.total_requests += 1
        stats.in_flight += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            stats.in_flight -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        snapshot = self.worker.snapshot
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        host = ""
        for name, value in raw_headers:
            if name == b"host":
                host = value.decode("latin-1")
                break
        header_map = _header_map(raw_headers) if snapshot.router_uses_headers else None
        match = snapshot.router.match(scope["method"], host, scope["path"], header_map)
        if match is None:
            await _send_message(send, 404, MESSAGES[404])
            if self.access_log is not None:
                agent = next((v.decode("latin-1") for n, v in raw_headers if n == b"user-agent"), "-")
                self.access_log.write(log_line(
                    (scope.get("client") or ("-",))[0], scope["method"], scope["path"],
                    scope["query_string"].decode("latin-1"), 404, agent, "-", 0, time.monotonic()))
            return
        plan = match.value
        ctx = self._context(scope, receive, plan, host, raw_headers, match.matched_path, match.captures)
        chain = plan.chain
        try:
            try:
                await _run(chain.access, ctx)
            except Exit:
                pass
            if ctx.exit_response is None:
                if plan.balancer is None:
                    ctx.exit_response = _error(503, "no Service found with those values")
                    await self._respond(ctx, plan, send)
                else:
                    await self._forward(ctx, plan, scope, receive, send)
            else:
                await self._respond(ctx, plan, send)
        except Exception:
            # a failing plugin hook: Kong's 500, and the log phase still runs
            log.exception("error while handling %s %s", scope["method"], scope["path"])
            if ctx.response is None:
                ctx.exit_response = _error(500, MESSAGES[500])
                await self._respond(ctx, plan, send, run_filters=False)
        for call in chain.log:
            try:
                result = call.call(ctx, call.conf)
                if call.is_async:
                    await result
            except Exception:
                log.exception("log hook of plugin %s failed", call.name)
        if self.access_log is not None:
            self.access_log.write(access_line(ctx))

    # -- request preparation ----------------------------------------------
    def _context(self, scope: Scope, receive: Receive, plan: "RoutePlan", host: str,
                 raw_headers: list[tuple[bytes, bytes]], matched_path: str | None,
                 captures: dict[str, str] | None) -> Context:
        client = scope.get("client") or ("", 0)
        server = scope.get("server") or ("", 0)
        query = scope["query_string"].decode("latin-1")
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        drop = hop_by_hop(raw_headers)
        forwarded_for = None
        kept = []
        for name, value in raw_headers:
            if name in drop or name == b"host":
                continue
            if name == b"x-forwarded-for":
                text = value.decode("latin-1")
                forwarded_for = text if forwarded_for is None else f"{forwarded_for}, {text}"
                continue
            if name.startswith(b"x-forwarded-") or name == b"x-real-ip":
                continue  # the gateway sets these; clients are not trusted
            kept.append((name.decode("latin-1"), value.decode("latin-1")))
        upstream_headers: CIMultiDict[str] = CIMultiDict(kept)
        scheme = scope.get("scheme", "http")
        request = Request(scope["method"], scheme, scope["path"], raw_path, query, raw_headers,
                          client[0], client[1], host, server[1])
        client_ip = client[0]
        upstream_headers.extend((
            ("X-Forwarded-For", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip),
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Host", strip_port(host) if host else ""),
            ("X-Forwarded-Port", str(server[1])),
            ("X-Real-IP", client_ip),
            ("Via", VIA),
        ))
        if matched_path and plan.strip_path and not matched_path.startswith("~"):
            upstream_headers["X-Forwarded-Prefix"] = matched_path
        path = upstream_path(plan, raw_path, scope["path"], matched_path)
        ctx = Context(request, UpstreamRequest(scope["method"], path, query, upstream_headers),
                      plan.route, plan.service, plan.upstream, self.worker)
        ctx.receive = receive
        if captures:
            ctx.uri_captures = captures
        return ctx

    # -- the upstream call -------------------------------------------------
    async def _forward(self, ctx: Context, plan: "RoutePlan", scope: Scope, receive: Receive, send: Send) -> None:
        upstream_request = ctx.upstream_request
        max_tries = plan.retries + 1
        data: bytes | AsyncIterator[bytes] | None = None
        if upstream_request.body is not None:
            data = upstream_request.body
        elif ctx.body is not None:
            data = ctx.body
        elif has_body(ctx.request.raw_headers):
            buffered, complete = await read_limited(receive, self.body_limit)
            if complete:
                data = ctx.body = buffered
            else:
                data = replay(buffered, receive)
                max_tries = 1  # a streamed body cannot be sent twice
        base_headers = upstream_request.headers
        base_path = upstream_request.path
        tried: list[TargetInfo] = []
        failure: UpstreamFailure | None = None
        chain = plan.chain
        balancer = plan.balancer
        client = self.worker.client
        notify = self.worker.notify
        #: a retryable answer kept while other targets are tried
        held: tuple[UpstreamResponse, TargetInfo] | None = None
        target = balancer.pick(ctx, tried)
        while target is not None:
            tried.append(target)
            ctx.target = target
            stats = target.runtime.stats
            stats.selected += 1
            if len(tried) > 1:
                stats.retries += 1
            if target.headers or chain.balancer:
                upstream_request.headers = headers = base_headers.copy()
                for name, value in target.headers:
                    headers[name] = value
            upstream_request.path = target.path or base_path
            try:
                await _run(chain.balancer, ctx)
            except Exit:
                if held is not None:
                    held[0].release()
                await self._respond(ctx, plan, send)
                return
            upstream_request.headers["Host"] = host_header(ctx, plan, target)
            body = upstream_request.body if upstream_request.body is not None else data
            if isinstance(body, bytes):
                if body or "Content-Length" in upstream_request.headers:
                    # the length of what is sent now, even if a plugin replaced the body
                    upstream_request.headers["Content-Length"] = str(len(body))
                else:
                    body = None
            request_target = upstream_request.path
            if upstream_request.query_string:
                request_target = f"{request_target}?{upstream_request.query_string}"
            runtime = target.runtime
            runtime.in_flight += 1
            notify(target)
            started = time.monotonic()
            ctx.upstream_started_at = started
            try:
                response = await client.request(
                    upstream_request.method, target.protocol or plan.protocol, target.host, target.port,
                    request_target, upstream_request.headers.items(), body,
                    connect_timeout=plan.connect_timeout, read_timeout=plan.read_timeout,
                    write_timeout=plan.write_timeout, proxy=plan.proxy, verify=plan.tls_verify)
            except BaseException as exc:  # every failure of a try is classified, none escapes
                runtime.in_flight -= 1
                notify(target)
                if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    if held is not None:
                        held[0].close()
                    raise
                failure = _classify(exc)
                stats.failures[failure.kind] = stats.failures.get(failure.kind, 0) + 1
                ctx.tries.append({"target": target.target, "error": failure.kind,
                                  "latency": time.monotonic() - started})
                if failure.kind == "read" or len(tried) >= max_tries:
                    break  # a request that may have been processed is never replayed
                target = balancer.pick(ctx, tried)
                continue
            ttfb = ctx.upstream_ttfb = time.monotonic() - started
            runtime.observe_latency(ttfb)
            notify(target)
            status = response.status
            stats.observe(status, ttfb)
            ctx.tries.append({"target": target.target, "status": status, "latency": ttfb})
            if status == 429:
                _cool_down(self.worker, target, response.headers.get("Retry-After"))
            if status in plan.retry_statuses and len(tried) < max_tries:
                following = balancer.pick(ctx, tried)
                if following is not None and following not in tried:
                    # try another target, keeping this answer in case every other try fails
                    runtime.in_flight -= 1
                    notify(target)
                    if held is not None:
                        held[0].release()
                    held = (response, target)
                    target = following
                    continue
            if held is not None:
                held[0].release()
                held = None
            try:
                await self._deliver(ctx, plan, response, target, receive, send)
            finally:
                runtime.in_flight -= 1
                notify(target)
            return
        if held is not None:  # the last real answer beats a gateway error
            response, ctx.target = held
            await self._deliver(ctx, plan, response, ctx.target, receive, send)
            return
        if failure is not None:
            ctx.exit_response = _error(failure.status, MESSAGES[failure.status])
        else:
            ctx.target = None
            ctx.exit_response = _error(503, MESSAGES[503])
        await self._respond(ctx, plan, send)

    async def _deliver(self, ctx: Context, plan: "RoutePlan", response: UpstreamResponse,
                       target: "TargetInfo", receive: Receive, send: Send) -> None:
        """Relay a target's answer; one that breaks off mid-body closes the client's connection."""
        try:
            await self._relay(ctx, plan, response, receive, send)
        except UpstreamError as exc:
            # nothing to retry once the answer started, and the client's connection
            # is closed so it cannot mistake a truncated body for a complete one
            stats = target.runtime.stats
            stats.failures["body"] = stats.failures.get("body", 0) + 1
            ctx.vars["upstream_error"] = type(exc).__name__
            log.warning("target %s broke off its response: %s", target.target, exc or type(exc).__name__)
        finally:
            response.release()

    # -- responses -------------------------------------------------------
    async def _relay(self, ctx: Context, plan: "RoutePlan", response: UpstreamResponse,
                     receive: Receive, send: Send) -> None:
        """Send the upstream's response: headers through header_filter, body streamed."""
        chain = plan.chain
        raw = response.raw_headers
        drop = hop_by_hop(raw)
        headers = [(n, v) for n, v in raw if n.lower() not in drop]
        headers.extend(self._gateway_headers(ctx))
        ctx.response = Response(response.status, headers, "upstream")
        if chain.header_filter:
            await _run_header_filter(ctx, chain)
        headers = ctx.response.raw_headers()
        length = response.content_length
        if chain.body_filter:
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": ctx.response.status, "headers": headers})
        if length is not None and length <= SMALL_RESPONSE and not chain.body_filter:
            await _stream(ctx, chain, response, send)
            return
        # long or open-ended (chunked, SSE): stop as soon as the client goes away
        streaming = asyncio.ensure_future(_stream(ctx, chain, response, send))
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

    def _gateway_headers(self, ctx: Context) -> list[tuple[bytes, bytes]]:
        out = [(b"via", VIA_BYTES)]
        if ctx.upstream_ttfb is not None:
            out.append((b"x-kong-upstream-latency", str(int(ctx.upstream_ttfb * 1000)).encode()))
            proxy_ms = int(((ctx.upstream_started_at or ctx.started_at) - ctx.started_at) * 1000)
            out.append((b"x-kong-proxy-latency", str(proxy_ms).encode()))
        if self.target_header and ctx.target is not None:
            out.append((self.target_header.encode(), ctx.target.target.encode()))
            out.append((b"x-kong-upstream-tries", str(len(ctx.tries)).encode()))
        if ctx.extra_response_headers:
            out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in ctx.extra_response_headers)
        return out

    async def _respond(self, ctx: Context, plan: "RoutePlan", send: Send, run_filters: bool = True) -> None:
        """Send a response produced by the gateway or a plugin's ``ctx.exit``."""
        assert ctx.exit_response is not None
        status, body, extra = ctx.exit_response
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        headers.append((b"server", SERVER))
        headers.extend(self._gateway_headers(ctx))
        ctx.response = Response(status, headers, "exit")
        chain = plan.chain
        if run_filters and chain.header_filter:
            await _run_header_filter(ctx, chain)
        if run_filters and chain.body_filter:
            body = await _filter(ctx, chain, body) + await _filter(ctx, chain, b"")
        headers = [(n, v) for n, v in ctx.response.raw_headers() if n.lower() != b"content-length"]
        if ctx.response.status < 200 or ctx.response.status in (204, 304):
            body = b""  # these statuses never carry a body (RFC 9110 §6.4.1)
        else:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": ctx.response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _run(calls: tuple[Any, ...], ctx: Context) -> None:
    """Run one phase's hooks in PRIORITY order (sync or async)."""
    for call in calls:
        result = call.call(ctx, call.conf)
        if call.is_async:
            await result


async def _run_header_filter(ctx: Context, chain: Any) -> None:
    for call in chain.header_filter:
        try:
            result = call.call(ctx, call.conf)
            if call.is_async:
                await result
        except Exit:
            log.warning("plugin %s called ctx.exit() in header_filter; ignored", call.name)


async def _filter(ctx: Context, chain: Any, chunk: bytes) -> bytes:
    for call in chain.body_filter:
        result = call.call(ctx, call.conf, chunk)
        chunk = (await result) if call.is_async else result
        if chunk is None:
            chunk = b""
    return chunk


async def _stream(ctx: Context, chain: Any, response: UpstreamResponse, send: Send) -> None:
    filters = chain.body_filter
    remaining = response.content_length if not filters and _has_payload(ctx, response.status) else None
    async for chunk in response.iter_chunks():
        if filters:
            chunk = await _filter(ctx, chain, chunk)
            if not chunk:
                continue
        if remaining is not None:
            remaining -= len(chunk)
            if remaining <= 0:  # the last chunk closes the response: no extra empty message
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    tail = await _filter(ctx, chain, b"") if filters else b""
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def _has_payload(ctx: Context, status: int) -> bool:
    """Whether a response carries the body its Content-Length announces (not HEAD, 1xx, 204, 304)."""
    return ctx.request.method != "HEAD" and status >= 200 and status not in (204, 304)


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _classify(exc: BaseException) -> UpstreamFailure:
    """Map a failed try to the status the client gets; ``kind`` decides whether it may be retried."""
    if isinstance(exc, UpstreamError):
        status = 504 if isinstance(exc, ConnectTimeout) or exc.kind == "timeout" else 502
        return UpstreamFailure(exc.kind, status, str(exc) or type(exc).__name__)
    if isinstance(exc, ValueError):  # a request the client refuses to send (e.g. CR/LF in a header)
        log.warning("request not sent upstream: %s", exc)
        return UpstreamFailure("read", 502, str(exc))
    log.error("unexpected error calling upstream: %r", exc)
    return UpstreamFailure("read", 502, "unexpected error")


def _cool_down(worker: "Worker", target: "TargetInfo", retry_after: str | None) -> None:
    """Keep a target that answered 429 out of selection for its Retry-After."""
    seconds = 1.0
    if retry_after:
        try:
            seconds = float(retry_after)
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = 1.0
    seconds = max(0.0, min(seconds, 3600.0))
    if seconds:
        worker.runtime.cool_down(target.id, seconds)


def _error(status: int, message: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    return status, orjson.dumps({"message": message}), [("Content-Type", JSON.decode())]


async def _send_message(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"message": message})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", JSON), (b"content-length", str(len(body)).encode()), (b"server", SERVER)]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in raw:
        out.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    return out


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
