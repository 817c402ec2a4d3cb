"""The proxy: a plain ASGI callable, no framework on the hot path.

Per request: route, run access hooks, forward to the upstream (``forward``:
one try per target) or answer directly (``respond``), then run log hooks.
Everything that can be prepared is in the snapshot's RoutePlan.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from multidict import CIMultiDict

from .access_log import access_line, log_line
from .context import Context, Exit, Request, UpstreamRequest
from .forward import forward
from .headers import hop_by_hop
from .respond import MESSAGES, VIA, error, respond, send_message
from .upstream_address import strip_port, upstream_path

if TYPE_CHECKING:
    from ..snapshot import RoutePlan
    from ..worker import Worker

log = logging.getLogger("kong_py.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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
            await send_message(send, 404, MESSAGES[404])
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
                for call in chain.access:
                    result = call.call(ctx, call.conf)
                    if call.is_async:
                        await result
            except Exit:
                pass
            if ctx.exit_response is None:
                if plan.balancer is None:
                    ctx.exit_response = error(503, "no Service found with those values")
                    await respond(ctx, plan, send, self.target_header)
                else:
                    await forward(self.worker, ctx, plan, receive, send, self.body_limit, self.target_header)
            else:
                await respond(ctx, plan, send, self.target_header)
        except Exception:
            # a failing plugin hook: Kong's 500, and the log phase still runs
            log.exception("error while handling %s %s", scope["method"], scope["path"])
            if ctx.response is None:
                ctx.exit_response = error(500, MESSAGES[500])
                await respond(ctx, plan, send, self.target_header, run_filters=False)
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
