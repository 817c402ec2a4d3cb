"""The per-request context: the public surface plugins use.

Plugins read the client's request, edit the request that goes upstream, edit
the response, keep per-request values in ``ctx.vars`` and may answer early
with ``ctx.exit()``. They never reach into gateway internals.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generic, Iterable, TypeVar
from urllib.parse import parse_qsl

import orjson
from multidict import CIMultiDict

from .request_body import read_all

if TYPE_CHECKING:
    from ..balancer.target import TargetInfo

T = TypeVar("T")


def decode_headers(raw: list[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """Wire headers as a case-insensitive multidict (latin-1 keeps every byte)."""
    return CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


class Request:
    """The client's request as received (read-only by convention).

    ``headers`` is built on first use; ``raw_headers`` are the ASGI pairs.
    """

    __slots__ = ("method", "scheme", "path", "raw_path", "query_string", "raw_headers", "client_ip",
                 "client_port", "host", "port", "_query", "_headers")

    def __init__(self, method: str, scheme: str, path: str, raw_path: str, query_string: str,
                 raw_headers: list[tuple[bytes, bytes]], client_ip: str, client_port: int, host: str,
                 port: int) -> None:
        self.method = method
        self.scheme = scheme
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.raw_headers = raw_headers
        self.client_ip = client_ip
        self.client_port = client_port
        self.host = host
        self.port = port
        self._query: list[tuple[str, str]] | None = None
        self._headers: CIMultiDict[str] | None = None

    @property
    def headers(self) -> CIMultiDict[str]:
        """Case-insensitive headers, in order, repeated names kept."""
        if self._headers is None:
            self._headers = decode_headers(self.raw_headers)
        return self._headers

    @property
    def query(self) -> list[tuple[str, str]]:
        """Decoded query arguments in order (parsed on first use)."""
        if self._query is None:
            self._query = parse_qsl(self.query_string, keep_blank_values=True)
        return self._query

    def get_query_arg(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


class UpstreamRequest:
    """What will be sent to the target; access and balancer hooks edit it.

    ``path`` is the path sent upstream (already percent-encoded);
    ``body`` is None to forward the client's body, or bytes to replace it.
    """

    __slots__ = ("method", "path", "query_string", "headers", "body")

    def __init__(self, method: str, path: str, query_string: str, headers: CIMultiDict[str]) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body: bytes | None = None


class Response:
    """The response on its way to the client (``header_filter`` edits it).

    ``headers`` is built on first use, so routes whose plugins never look at
    response headers pass the upstream's raw headers through untouched.
    """

    __slots__ = ("status", "source", "_raw", "_headers")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], source: str) -> None:
        self.status = status
        #: "upstream" when it came from a target, "exit" from a plugin or the gateway
        self.source = source
        self._raw = raw_headers
        self._headers: CIMultiDict[str] | None = None

    @property
    def headers(self) -> CIMultiDict[str]:
        if self._headers is None:
            self._headers = decode_headers(self._raw)
        return self._headers

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as sent on the wire."""
        if self._headers is None:
            return self._raw
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()]


class TryOutcome:
    """How one try of a request went, as soon as that is known (``try_outcome`` hooks).

    ``status`` is the target's status once its response head arrived (None
    when it never did); ``error`` is None, or why the try failed: "connect"
    (no connection), "timeout" (connecting or waiting for the answer took too
    long), "read" (the connection broke before a complete head) or "body"
    (the answer broke off after its head; ``status`` is then set too).
    ``latency`` is seconds from sending to the outcome.
    """

    __slots__ = ("target", "status", "error", "latency")

    def __init__(self, target: "TargetInfo", status: int | None, error: str | None, latency: float) -> None:
        self.target = target
        self.status = status
        self.error = error
        self.latency = latency

    def __repr__(self) -> str:
        what = f"status={self.status}" if self.error is None else f"error={self.error}"
        return f"TryOutcome({self.target.target}, {what})"


class ContextKey(Generic[T]):
    """A typed key for ``ctx.vars``: plugins that share a value agree on the
    key object (and its type) instead of on a string.

        RETRY_BUDGET = ContextKey[int]("my-plugin.retry-budget", default=3)
        ctx.set(RETRY_BUDGET, 2)
        ctx.get(RETRY_BUDGET)  # -> 2, typed as int
    """

    __slots__ = ("name", "default")

    def __init__(self, name: str, default: T | None = None) -> None:
        self.name = name
        self.default = default

    def __repr__(self) -> str:
        return f"ContextKey({self.name!r})"


class BodyStreamed(Exception):
    """The request body streams to the target and cannot be read whole (see read_body)."""


class Exit(Exception):
    """Raised by ``ctx.exit`` to stop the current phase at once."""


class Context:
    """Everything about one request that plugins may use."""

    __slots__ = ("request", "upstream_request", "response", "route", "service", "upstream",
                 "target", "tries", "vars", "started_at", "upstream_started_at", "upstream_ttfb",
                 "exit_response", "body", "worker", "receive", "uri_captures", "consumer",
                 "extra_response_headers", "allowed_targets", "skipped_filters", "body_streamed")

    def __init__(self, request: Request, upstream_request: UpstreamRequest, route: dict[str, Any],
                 service: dict[str, Any] | None, upstream: dict[str, Any] | None, worker: Any) -> None:
        self.request = request
        self.upstream_request = upstream_request
        self.response: Response | None = None
        self.route = route
        self.service = service
        self.upstream = upstream
        self.target: TargetInfo | None = None
        self.tries: list[dict[str, Any]] = []
        #: per-request values shared by plugins: string keys, or ContextKey objects
        self.vars: dict[Any, Any] = {}
        self.started_at = time.monotonic()
        self.upstream_started_at: float | None = None
        self.upstream_ttfb: float | None = None
        self.exit_response: tuple[int, bytes, list[tuple[str, str]]] | None = None
        #: the client's body when it was read (buffered for retries), else None
        self.body: bytes | None = None
        self.worker = worker
        #: the ASGI receive channel of the client's request (set by the proxy)
        self.receive: Callable[[], Awaitable[dict[str, Any]]] | None = None
        #: named and numbered groups of the route's regex path that matched
        self.uri_captures: dict[str, str] = {}
        #: the authenticated consumer (set by an authentication plugin), or None
        self.consumer: dict[str, Any] | None = None
        self.extra_response_headers: list[tuple[str, str]] | None = None
        #: ids of the only targets this request may go to (None: any); see restrict_targets
        self.allowed_targets: frozenset[str] | None = None
        #: plugins whose body_filter does not run for this response (skip_body_filter)
        self.skipped_filters: set[str] | None = None
        #: the body is larger than retry_body_limit and streams to the target (from the
        #: balancer phase on): it cannot be read whole
        self.body_streamed = False

    def exit(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the client now with ``status`` and ``body`` (dict/list → JSON, str → text).

        Stops the current phase; later access hooks and the upstream call are skipped.
        """
        out_headers = list((headers or {}).items())
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            if not any(k.lower() == "content-type" for k, _ in out_headers):
                out_headers.append(("Content-Type", "text/plain; charset=utf-8"))
        else:
            data = orjson.dumps(body)
            if not any(k.lower() == "content-type" for k, _ in out_headers):
                out_headers.append(("Content-Type", "application/json; charset=utf-8"))
        self.exit_response = (status, data, out_headers)
        raise Exit()

    def restrict_targets(self, target_ids: Iterable[str]) -> None:
        """Let the balancer pick only among these targets for this request (and its retries).

        The upstream's algorithm, priority tiers, health and connection limits
        still decide among them; called again, it narrows further. Model
        routing uses it: only the targets serving the requested model. An
        empty set means no target can serve the request: answer it yourself
        (``ctx.exit``) rather than leave the client a 503.
        """
        ids = frozenset(target_ids)
        self.allowed_targets = ids if self.allowed_targets is None else self.allowed_targets & ids

    def skip_body_filter(self, plugin: str) -> None:
        """From ``header_filter``: this plugin's ``body_filter`` leaves this response alone.

        When no body_filter hook is left for a response, the gateway relays it
        as it came (``Content-Length`` kept, no per-chunk calls).
        """
        if self.skipped_filters is None:
            self.skipped_filters = set()
        self.skipped_filters.add(plugin)

    def get(self, key: ContextKey[T]) -> T | None:
        """The value stored under a typed key, or the key's default."""
        return self.vars.get(key, key.default)

    def set(self, key: ContextKey[T], value: T) -> None:
        self.vars[key] = value

    def add_response_header(self, name: str, value: str) -> None:
        """Add a header to whatever response the client gets (upstream's, exit or error)."""
        if self.extra_response_headers is None:
            self.extra_response_headers = []
        self.extra_response_headers.append((name, value))

    async def read_body(self) -> bytes:
        """The client's whole request body (read once, kept for retries).

        Raises ``BodyStreamed`` from the balancer phase on when the body is
        larger than ``retry_body_limit``: it is being streamed to the target.
        """
        if self.body_streamed:
            raise BodyStreamed("the request body is larger than retry_body_limit and streams to the target")
        if self.body is None:
            self.body = await read_all(self.receive) if self.receive is not None else b""
        return self.body
