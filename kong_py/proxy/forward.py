"""Forwarding a request to its upstream: one try per target until one answers.

Per try: the balancer picks a target, ``balancer`` hooks prepare the request
for it, the upstream client sends it, and ``try_outcome`` hooks hear how it
went as soon as that is known (health checking listens there). Connection
failures, timeouts and retryable statuses move on to another target while
nothing has reached the client.
"""
from __future__ import annotations

import asyncio
import logging
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from ..balancer.upstream import NO_PEER
from .client import ConnectTimeout, UpstreamError, UpstreamResponse
from .context import Context, Exit, TryOutcome
from .request_body import IncompleteRequest, has_body, read_limited, replay
from .respond import MESSAGES, error, relay, respond
from .upstream_address import host_header

if TYPE_CHECKING:
    from ..balancer.target import TargetInfo
    from ..snapshot import RoutePlan
    from ..worker import Worker

log = logging.getLogger("kong_py.proxy")

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: methods a retry may send again after the target received them (RFC 9110 §9.2.2)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: statuses that say the request was not processed: any method may go to another target
NOT_PROCESSED = frozenset({429, 503})
Send = Callable[[dict[str, Any]], Awaitable[None]]


class UpstreamFailure(Exception):
    """A try that got no usable response: ``kind`` is connect, timeout or read."""

    def __init__(self, kind: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status


async def forward(worker: "Worker", ctx: Context, plan: "RoutePlan", receive: Receive, send: Send,
                  body_limit: int, target_header: str | None) -> None:
    """Send the request to the upstream's targets (retrying) and relay the answer."""
    balancer = plan.balancer
    assert balancer is not None
    try:
        await _tries(worker, ctx, plan, receive, send, body_limit, target_header)
    finally:
        balancer.release_all(ctx)  # whatever an error or a cancellation left counted


async def _tries(worker: "Worker", ctx: Context, plan: "RoutePlan", receive: Receive, send: Send,
                 body_limit: int, target_header: str | None) -> None:
    upstream_request = ctx.upstream_request
    max_tries = plan.retries + 1
    data: bytes | AsyncIterator[bytes] | None = None
    if upstream_request.body is not None:
        data = upstream_request.body
    elif ctx.body is not None:
        data = ctx.body
    elif has_body(ctx.request.raw_headers):
        buffered, complete = await read_limited(receive, body_limit)
        if complete:
            data = ctx.body = buffered
        else:
            data = replay(buffered, receive)
            ctx.body_streamed = True
            max_tries = 1  # a streamed body cannot be sent twice
    base_headers = upstream_request.headers
    base_path = upstream_request.path
    base_body, base_query = upstream_request.body, upstream_request.query_string
    tried: list[TargetInfo] = []
    failure: UpstreamFailure | None = None
    chain = plan.chain
    balancer = plan.balancer
    assert balancer is not None
    client = worker.client
    notify = worker.notify
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
            # what a balancer hook changed for one target never reaches the next
            upstream_request.body, upstream_request.query_string = base_body, base_query
        upstream_request.path = target.path or base_path
        try:
            await _run(chain.balancer, ctx)
        except Exit:
            if held is not None:
                held[0].release()
            await respond(ctx, plan, send, target_header)
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
            balancer.release(ctx, target)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit, IncompleteRequest)):
                if held is not None:  # the client left, or its body broke off: the request ends here
                    held[0].close()
                raise
            failure = _classify(exc)
            latency = time.monotonic() - started
            stats.failures[failure.kind] = stats.failures.get(failure.kind, 0) + 1
            ctx.tries.append({"target": target.target, "error": failure.kind, "latency": latency})
            if chain.try_outcome:  # a connect timeout is a timeout for health checking too
                kind = "timeout" if failure.status == 504 else failure.kind
                _report(ctx, chain, TryOutcome(target, None, kind, latency))
            if len(tried) >= max_tries or not (failure.kind == "connect" or replayable(ctx, plan, target)):
                break  # a request the target may have processed is replayed only when that is safe
            target = balancer.pick(ctx, tried)
            continue
        ttfb = ctx.upstream_ttfb = time.monotonic() - started
        runtime.observe_latency(ttfb)
        notify(target)
        status = response.status
        stats.observe(status, ttfb)
        ctx.tries.append({"target": target.target, "status": status, "latency": ttfb})
        if chain.try_outcome:
            _report(ctx, chain, TryOutcome(target, status, None, ttfb))
        if status == 429:
            _cool_down(worker, target, response.headers.get("Retry-After"))
        if status in plan.retry_statuses and len(tried) < max_tries and (
                status in NOT_PROCESSED or replayable(ctx, plan, target)):
            following = balancer.pick(ctx, tried)
            if following is not None and following not in tried:
                # try another target, keeping this answer in case every other try fails
                runtime.in_flight -= 1
                notify(target)
                balancer.release(ctx, target)
                if held is not None:
                    held[0].release()
                held = (response, target)
                target = following
                continue
            if following is not None:
                balancer.release(ctx, following)  # not used: this answer goes to the client
        if held is not None:
            held[0].release()
            held = None
        try:
            await _deliver(ctx, plan, response, target, receive, send, target_header)
        finally:
            runtime.in_flight -= 1
            notify(target)
            balancer.release(ctx, target)
        return
    if held is not None:  # the last real answer beats a gateway error
        response, ctx.target = held
        await _deliver(ctx, plan, response, ctx.target, receive, send, target_header)
        return
    if failure is not None:
        ctx.exit_response = error(failure.status, MESSAGES[failure.status])
    else:
        ctx.target = None
        ctx.exit_response = error(503, ctx.get(NO_PEER) or MESSAGES[503])
    await respond(ctx, plan, send, target_header)


def replayable(ctx: Context, plan: "RoutePlan", target: "TargetInfo") -> bool:
    """Whether a request the target may have processed can be sent again (nginx's
    ``proxy_next_upstream`` rule): idempotent methods, AI provider requests
    (completions and embeddings change nothing; they only cost), or any method
    when the service says ``retry_non_idempotent``."""
    return ctx.request.method in IDEMPOTENT or plan.retry_non_idempotent or target.provider is not None


async def _deliver(ctx: Context, plan: "RoutePlan", response: UpstreamResponse, target: "TargetInfo",
                   receive: Receive, send: Send, target_header: str | None) -> None:
    """Relay a target's answer; one that breaks off mid-body closes the client's connection."""
    try:
        await relay(ctx, plan, response, receive, send, target_header)
    except UpstreamError as exc:
        # nothing to retry once the answer started, and the client's connection
        # is closed so it cannot mistake a truncated body for a complete one
        stats = target.runtime.stats
        stats.failures["body"] = stats.failures.get("body", 0) + 1
        ctx.vars["upstream_error"] = type(exc).__name__
        log.warning("target %s broke off its response: %s", target.target, exc or type(exc).__name__)
        if plan.chain.try_outcome:
            latency = time.monotonic() - (ctx.upstream_started_at or ctx.started_at)
            _report(ctx, plan.chain, TryOutcome(target, response.status, "body", latency))
    finally:
        response.release()


def _report(ctx: Context, chain: Any, outcome: TryOutcome) -> None:
    """Tell ``try_outcome`` hooks; they are synchronous and must not fail the request."""
    for call in chain.try_outcome:
        try:
            call.call(ctx, call.conf, outcome)
        except Exception:
            log.exception("try_outcome hook of plugin %s failed", call.name)


async def _run(calls: tuple[Any, ...], ctx: Context) -> None:
    """Run one phase's hooks in PRIORITY order (sync or async)."""
    for call in calls:
        result = call.call(ctx, call.conf)
        if call.is_async:
            await result


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
