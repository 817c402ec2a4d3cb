"""The ``request-termination`` plugin: answer requests at the gateway.

The worked example of a plugin (see docs/plugins.md): one ``access`` hook
that ends the request with ``ctx.exit()`` so no target is ever called.
Typical uses: take a route out of service (503), block a path (403), return
a fixed body, or echo the request back for debugging, optionally only when a
trigger header or query argument is present.
"""
from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

from kong_py.hookspecs import hookimpl

from .schema import Config

if TYPE_CHECKING:
    from kong_py.proxy.context import Context

#: the message sent for these statuses when ``config.message`` is not set (as Kong)
DEFAULT_MESSAGES = {
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    500: "An unexpected error occurred",
    502: "Bad Gateway",
    503: "Service unavailable",
}


class RequestTermination:
    name = "request-termination"
    PRIORITY = 2  # late in access: authentication plugins (higher priority) run first
    VERSION = "1.0.0"
    Config = Config

    @hookimpl
    async def access(self, ctx: Context, conf: Config) -> None:
        if conf.trigger and not _triggered(ctx, conf.trigger):
            return  # no trigger in this request: let it through
        status = conf.status_code
        if status < 200 or status in (204, 304):
            ctx.exit(status)  # these statuses have no body in HTTP, whatever the config says
        if conf.echo:
            ctx.exit(status, await _echo(ctx, conf.message or DEFAULT_MESSAGES.get(status)))
        if conf.body is not None:
            headers = {"Content-Type": conf.content_type} if conf.content_type else None
            ctx.exit(status, conf.body, headers)
        message = conf.message or DEFAULT_MESSAGES.get(status)
        ctx.exit(status, {"message": message} if message is not None else None)


def _triggered(ctx: Context, name: str) -> bool:
    """The trigger is a header (any case) or a query argument (exact name) of the request."""
    return name in ctx.request.headers or any(key == name for key, _ in _query_pairs(ctx.request.query_string))


async def _echo(ctx: Context, message: str | None) -> dict[str, Any]:
    """The request as the gateway received it, plus the matched route and service."""
    request = ctx.request
    raw = await ctx.read_body()
    headers: dict[str, Any] = {}
    for key, value in request.headers.items():
        _add(headers, key.lower(), value)
    query: dict[str, Any] = {}
    for key, value in _query_pairs(request.query_string):
        _add(query, key, value)
    return {
        "message": message,
        "kong": {"node_id": getattr(ctx.worker, "node_id", None), "worker_pid": os.getpid(),
                 "hostname": socket.gethostname()},
        "request": {
            "scheme": request.scheme,
            "host": _host(request.host),
            "port": request.port,
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "query": query,
            "body": _parsed_body(raw, request.headers.get("content-type", "")),
            "raw_body": raw.decode("utf-8", "replace"),
            "uri_captures": _captures(ctx.uri_captures),
        },
        "matched_route": ctx.route,
        "matched_service": ctx.service,
    }


def _add(out: dict[str, Any], key: str, value: Any) -> None:
    """Repeated names become arrays, as Kong's get_headers() and get_query()."""
    if key not in out:
        out[key] = value
    elif isinstance(out[key], list):
        out[key].append(value)
    else:
        out[key] = [out[key], value]


def _query_pairs(query_string: str) -> list[tuple[str, Any]]:
    """Query arguments; a name without ``=`` has the value ``True`` (Kong's convention)."""
    pairs: list[tuple[str, Any]] = []
    for part in query_string.split("&"):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            pairs.append((unquote_plus(key), unquote_plus(value)))
        else:
            pairs.append((unquote_plus(part), True))
    return pairs


def _parsed_body(raw: bytes, content_type: str) -> Any:
    """The body decoded by its content type (JSON or form), else None."""
    if not raw:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json" or kind.endswith("+json"):
            return json.loads(raw)
        if kind == "application/x-www-form-urlencoded":
            out: dict[str, Any] = {}
            for key, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
                _add(out, key, value)
            return out
    except ValueError:
        return None
    return None


def _host(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _captures(captures: dict[str, str]) -> dict[str, Any]:
    named = {k: v for k, v in captures.items() if not k.isdigit()}
    unnamed = [captures[k] for k in sorted((k for k in captures if k.isdigit()), key=int)]
    return {"named": named, "unnamed": unnamed}
