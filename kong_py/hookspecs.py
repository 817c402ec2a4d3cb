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
    from .proxy.context import Context

hookspec = pluggy.HookspecMarker("kong_py")
hookimpl = pluggy.HookimplMarker("kong_py")

PHASES = ("access", "balancer", "header_filter", "body_filter", "log")


# -- phases -------------------------------------------------------------

@hookspec
def access(ctx: "Context", conf: Any) -> None:
    """Check or rewrite the request before a target is chosen.

    Runs once per request, after routing. ``ctx.request`` is the client's
    request; ``ctx.upstream_request`` is what will be sent and may be edited
    (method, path, query, headers, body). Call ``ctx.exit(status, body)`` to
    answer the client directly: the remaining access hooks and the upstream
    call are skipped, ``header_filter``, ``body_filter`` and ``log`` still run.
    """


@hookspec
def balancer(ctx: "Context", conf: Any) -> None:
    """Prepare the upstream request for the target just chosen.

    Runs after the load balancer picked ``ctx.target`` and again on every
    retry (with another target when one is eligible). Use it for what depends
    on the target: credentials, provider-specific paths and headers.
    """


@hookspec
def header_filter(ctx: "Context", conf: Any) -> None:
    """Edit ``ctx.response.status`` and ``ctx.response.headers`` before they are sent."""


@hookspec
def body_filter(ctx: "Context", conf: Any, chunk: bytes) -> bytes:
    """Transform one chunk of the response body and return the chunk to send.

    Called for every chunk as it streams (``chunk`` is ``b""`` once at the end,
    so a plugin may append a trailer). Return ``b""`` to hold data back.
    """


@hookspec
def log(ctx: "Context", conf: Any) -> None:
    """Observe the finished exchange (status, target, timings, tries).

    Runs after the last body byte was sent or the client went away. Must be
    quick: spawn a task for slow work.
    """


# -- registration and lifecycle --------------------------------------------

@hookspec
def register_algorithms(register: Callable[..., None]) -> None:
    """Add load-balancing algorithms.

    Call ``register(name, factory, aliases=())``. ``factory(upstream, targets)``
    returns an object with ``pick(ctx, skip) -> target | None`` (see
    ``kong_py.balancer.algorithm.Algorithm``). The name becomes a valid value of
    ``upstream.algorithm`` in the Admin API.
    """


@hookspec
def register_admin_routes(register: Callable[..., None]) -> None:
    """Add Admin API endpoints.

    Call ``register(path, endpoint, methods=("GET",))`` where ``endpoint`` is a
    Starlette endpoint (``async def endpoint(request) -> Response``).
    """


@hookspec
def init_worker(worker: Any) -> None:
    """Start background work when a worker starts (health probes, flushers).

    ``worker`` gives ``worker.spawn(coro)`` (tasks cancelled at shutdown),
    ``worker.runtime`` (per-target runtime state) and ``worker.snapshot()``
    (the current configuration snapshot).
    """
