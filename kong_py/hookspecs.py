"""Hook specifications: what a plugin can implement.

A plugin is an object (usually a class instance exported by a module) with a
``name`` (kebab-case, as used in the Admin API), an integer ``PRIORITY``
(higher runs first, as in Kong), a ``VERSION`` string and, optionally, a
``Config`` pydantic model for its ``config`` and ``ALWAYS_ON = True`` when it
runs for every request without a ``/plugins`` entity (with ``Config()``'s
defaults). It implements any of the hooks below, marked with :data:`hookimpl`.

Phase hooks may be ``async def`` or plain functions. pluggy would only return
the coroutine of an async hook, so the gateway never calls phase hooks
through ``pm.hook``: it takes each plugin's implementation, keeps those
enabled for a route, sorts them by ``PRIORITY`` and awaits them in order.
A hook may accept any subset of its documented arguments, as pluggy allows.

Registration hooks are ordinary pluggy hooks, called once when a worker
starts, each with a ``register`` callback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .proxy.context import Context, TryOutcome

hookspec = pluggy.HookspecMarker("kong_py")
hookimpl = pluggy.HookimplMarker("kong_py")

PHASES = ("access", "balancer", "try_outcome", "header_filter", "body_filter", "log")


# -- phases -------------------------------------------------------------

@hookspec
def access(ctx: "Context", conf: Any) -> None:
    """Check or rewrite the request before a target is chosen.

    Runs once per request, after routing, in ``PRIORITY`` order (higher
    first). ``ctx.request`` is the client's request; ``ctx.upstream_request``
    is what will be sent and may be edited (method, path, query, headers,
    body). ``await ctx.read_body()`` gives the client's body (read once, kept).
    Call ``ctx.exit(status, body)`` to answer the client directly: the
    remaining access hooks and the upstream call are skipped,
    ``header_filter``, ``body_filter`` and ``log`` still run.

    :param ctx: the request's :class:`~kong_py.proxy.context.Context`.
    :param conf: this plugin's validated config for the matched route (an
        instance of the plugin's ``Config``; ``{}`` without one).
    """


@hookspec
def balancer(ctx: "Context", conf: Any) -> None:
    """Prepare the upstream request for the target just chosen.

    Runs after the load balancer picked ``ctx.target`` and again on every
    retry (with another target when one is eligible). Use it for what depends
    on the target: credentials, provider-specific paths and headers. Before
    each try ``ctx.upstream_request.headers`` is a fresh copy of the headers
    the access phase left (plus the target's own headers) and
    ``ctx.upstream_request.path`` is reset, so edits never leak from one
    target to the next. ``ctx.exit()`` answers the client without calling the
    target. Not called when no target is available or the route has no service.

    :param ctx: the request's context; ``ctx.target`` is the chosen target and
        ``ctx.tries`` lists the tries made so far.
    :param conf: this plugin's validated config for the matched route.
    """


@hookspec
def try_outcome(ctx: "Context", conf: Any, outcome: "TryOutcome") -> None:
    """Hear how one try went, as soon as that is known.

    Called for every try the proxy makes: once when the target's response
    head arrived (``outcome.status``) or the try failed (``outcome.error``:
    connect, timeout, read), before the body is relayed, so a long stream
    does not delay what it tells; and once more with ``error="body"`` if
    the answer then breaks off. Answers the gateway or a plugin makes itself
    (a ``ctx.exit()``, a 503 when no target is available) are not tries and
    are never reported. Health checking counts passive outcomes here.

    Must be a plain (not async) function and quick: it runs on the request
    path. An exception is logged and the request goes on.

    :param ctx: the request's context; ``ctx.tries`` already has this try.
    :param conf: this plugin's validated config for the matched route.
    :param outcome: a :class:`~kong_py.proxy.context.TryOutcome`: ``target``,
        ``status``, ``error``, ``latency``.
    """


@hookspec
def header_filter(ctx: "Context", conf: Any) -> None:
    """Edit ``ctx.response.status`` and ``ctx.response.headers`` before they are sent.

    Runs once per request for every response the client gets: the target's
    (``ctx.response.source == "upstream"``) and the ones produced by
    ``ctx.exit()`` or by the gateway itself, such as a 502 or 503
    (``"exit"``). ``ctx.exit()`` cannot be used here (it is ignored, with a
    warning). When the route has ``body_filter`` hooks the gateway drops
    ``Content-Length`` and streams the body chunked.

    :param ctx: the request's context; ``ctx.response`` is set.
    :param conf: this plugin's validated config for the matched route.
    """


@hookspec
def body_filter(ctx: "Context", conf: Any, chunk: bytes) -> bytes:
    """Transform one chunk of the response body and return the chunk to send.

    Called for every chunk as it streams (``chunk`` is ``b""`` once at the end,
    so a plugin may append a trailer). Return ``b""`` to hold data back
    (returning ``None`` counts as ``b""``). Hooks are chained in ``PRIORITY``
    order: each receives what the previous one returned. For a response made
    by ``ctx.exit()`` or the gateway, the whole body comes as one chunk,
    followed by the final ``b""``.

    :param ctx: the request's context; ``ctx.vars`` keeps state between chunks.
    :param conf: this plugin's validated config for the matched route.
    :param chunk: the bytes received from the target (or from the previous
        body_filter hook).
    """


@hookspec
def log(ctx: "Context", conf: Any) -> None:
    """Observe the finished exchange (status, target, timings, tries).

    Runs after the last body byte was sent or the client went away
    (``ctx.vars.get("client_aborted")``), also for requests answered by
    ``ctx.exit()``. Must be quick: spawn a task for slow work. An exception is
    logged and the next log hook still runs.

    :param ctx: the request's context: ``ctx.response``, ``ctx.target``,
        ``ctx.tries`` (one record per try: target, status or error, latency),
        ``ctx.started_at`` and ``ctx.upstream_ttfb``.
    :param conf: this plugin's validated config for the matched route.
    """


# -- registration and lifecycle --------------------------------------------

@hookspec
def register_algorithms(register: Callable[..., None]) -> None:
    """Add load-balancing algorithms.

    Called once, when the plugin is loaded. Call
    ``register(name, factory, aliases=())``. ``factory(upstream, targets)``
    returns an object with ``pick(ctx, skip) -> target | None`` (see
    ``kong_py.balancer.algorithm.Algorithm``); ``skip(target)`` is true for
    targets that must not be picked (unhealthy, draining, already tried).
    The gateway calls the factory for each priority tier of each upstream
    (``targets`` are that tier's, in creation order) whenever the
    configuration changes, so keep state that must survive edits in
    ``target.runtime``, not in the algorithm object. The name (and each alias) becomes a valid
    value of ``upstream.algorithm`` in the Admin API.

    :param register: the callback described above.
    """


@hookspec
def register_admin_routes(register: Callable[..., None]) -> None:
    """Add Admin API endpoints.

    Called once, when the plugin is loaded. Call
    ``register(path, endpoint, methods=("GET",))`` where ``endpoint`` is a
    Starlette endpoint (``async def endpoint(request) -> Response``). Errors
    the endpoint raises are turned into Kong's JSON error bodies.

    :param register: the callback described above.
    """


@hookspec
def register_metrics(register: Callable[..., None]) -> None:
    """Add series to ``GET /metrics``.

    Called once, when the plugin is loaded. Call
    ``register(name, kind, help, collect)``: ``kind`` is "counter" or
    "gauge"; ``collect(worker)`` returns the current samples as an iterable of
    ``(labels, value)`` pairs (``labels`` a dict of strings). It runs at each
    scrape, in a thread, so it must only read.

    :param register: the callback described above.
    """


@hookspec
def init_worker(worker: Any) -> None:
    """Start background work when a worker starts (health probes, flushers).

    Called once per worker process, after its first configuration snapshot
    was built and before it serves requests; a plain (not async) function.
    ``worker`` gives ``worker.spawn(coro)`` (tasks cancelled at shutdown),
    ``worker.runtime`` (per-target runtime state) and ``worker.snapshot``
    (the current configuration snapshot; read it again each time, it is
    replaced on every change), ``worker.node`` (state shared by the node's
    workers: ``node.env.db(name)``, ``node.read``, ``node.update``,
    ``node.items``), ``worker.client`` (the upstream HTTP client),
    ``worker.store`` and ``worker.config``. An exception is logged; the
    worker starts anyway.

    :param worker: the worker starting.
    """
