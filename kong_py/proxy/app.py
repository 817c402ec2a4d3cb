"""The proxy: a plain ASGI callable, no framework on the hot path.

Per request: route, run access hooks, forward to the upstream (``forward``:
one try per target) or answer directly (``respond``), then run log hooks.
Everything that can be prepared is in the snapshot's RoutePlan.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from multidict import CIMultiDict

from .access_log import access_line, log_line
from .context import Context, Exit, Request, UpstreamRequest
from .forward import forward
from .headers import hop_by_hop
from .paths import InvalidPath, normalize
from .request_body import IncompleteRequest
from .respond import MESSAGES, VIA, error, respond, send_message
from .upstream_address import strip_port, upstream_path

if TYPE_CHECKING:
    from ..snapshot import RoutePlan
    from ..worker import Worker

log = logging.getLogger("kong_py.proxy")

#: ``ctx.vars`` flag: the request carries this node's own Via mark
LOOP = "proxy.loop"

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
        #: this node's mark in the Via header it sends upstream: seen coming back, it is a loop
        tag = f"node {worker.node_id[:8]}"
        self.via = f"{VIA} ({tag})"
        self.loop_token = tag.encode()

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
        path, raw_path = scope["path"], scope["raw_path"]
        if b"%" in raw_path or b"/." in raw_path or b"//" in raw_path:
            try:
                path, raw_path = normalize(raw_path)
            except InvalidPath as exc:
                return await self._early(scope, send, 400, f"Bad request: {exc}")
        header_map = _header_map(raw_headers) if snapshot.router_uses_headers else None
        match = snapshot.router.match(scope["method"], host, path, header_map)
        if match is None:
            return await self._early(scope, send, 404, MESSAGES[404])
        plan = match.value
        ctx = self._context(scope, receive, plan, host, path, raw_path, match.matched_path, match.captures)
        chain = plan.chain
        try:
            try:
                if ctx.vars.get(LOOP):
                    ctx.exit(508, {"message": "Loop detected: the request came back to this gateway "
                                              "(a service points at its own proxy)"})
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
        except IncompleteRequest as exc:
            # the body did not arrive whole: nothing was completed upstream
            self.worker.stats.incomplete_requests += 1
            log.warning("%s %s from %s: the request body ended early (%s); not completed upstream",
                        scope["method"], ctx.request.raw_path, ctx.request.client_ip, exc.reason)
            if ctx.response is None:
                ctx.exit_response = error(*exc.answer())
                await respond(ctx, plan, send, self.target_header)
        except asyncio.CancelledError:
            # the client went away (the server cancels its request): the upstream call
            # was cancelled with it; the log phase still runs
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            ctx.vars["client_aborted"] = True
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

    async def _early(self, scope: Scope, send: Send, status: int, message: str) -> None:
        """An answer before any route matched (no plugin runs): 404, a path refused."""
        await send_message(send, status, message)
        if self.access_log is not None:
            agent = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"user-agent"), "-")
            self.access_log.write(log_line(
                (scope.get("client") or ("-",))[0], scope["method"], scope["path"],
                scope["query_string"].decode("latin-1"), status, agent, "-", 0, time.monotonic()))

    # -- request preparation ----------------------------------------------
    def _context(self, scope: Scope, receive: Receive, plan: "RoutePlan", host: str, path: str,
                 raw: bytes, matched_path: str | None, captures: dict[str, str] | None) -> Context:
        client = scope.get("client") or ("", 0)
        server = scope.get("server") or ("", 0)
        query = scope["query_string"].decode("latin-1")
        raw_path = raw.decode("latin-1")
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        drop = hop_by_hop(raw_headers)
        loop = False
        forwarded_for = None
        kept = []
        for name, value in raw_headers:
            if name in drop or name == b"host" or name == b"expect":  # the server answered Expect
                continue
            if name == b"via" and self.loop_token in value:
                loop = True
            if name == b"x-forwarded-for":
                text = value.decode("latin-1")
                forwarded_for = text if forwarded_for is None else f"{forwarded_for}, {text}"
                continue
            if name.startswith(b"x-forwarded-") or name == b"x-real-ip":
                continue  # the gateway sets these; clients are not trusted
            kept.append((name.decode("latin-1"), value.decode("latin-1")))
        upstream_headers: CIMultiDict[str] = CIMultiDict(kept)
        scheme = scope.get("scheme", "http")
        request = Request(scope["method"], scheme, path, raw_path, query, raw_headers,
                          client[0], client[1], host, server[1])
        client_ip = client[0]
        upstream_headers.extend((
            ("X-Forwarded-For", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip),
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Host", strip_port(host) if host else ""),
            ("X-Forwarded-Port", str(server[1])),
            ("X-Real-IP", client_ip),
            ("Via", self.via),
        ))
        if matched_path and plan.strip_path and not matched_path.startswith("~"):
            upstream_headers["X-Forwarded-Prefix"] = matched_path
        target_path = upstream_path(plan, raw_path, path, matched_path)
        ctx = Context(request, UpstreamRequest(scope["method"], target_path, query, upstream_headers),
                      plan.route, plan.service, plan.upstream, self.worker)
        ctx.receive = receive
        if captures:
            ctx.uri_captures = captures
        if loop:
            ctx.vars[LOOP] = True
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
