"""Where a request goes: the upstream path (Kong's path joining) and Host header."""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from ..balancer.target import TargetInfo
    from ..snapshot import RoutePlan
    from .context import Context


def strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def host_port(target: "TargetInfo") -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def host_header(ctx: Context, plan: "RoutePlan", target: "TargetInfo") -> str:
    if plan.preserve_host and ctx.request.host:
        return ctx.request.host
    if plan.host_header:
        return plan.host_header
    if target.protocol:
        return target.host_header
    default = 443 if plan.protocol == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


def upstream_path(plan: "RoutePlan", raw_path: str, path: str, matched: str | None) -> str:
    """Kong's path joining: service path + the request path, stripped of the matched prefix."""
    rest = raw_path
    if plan.strip_path and matched:
        if raw_path.startswith(matched):
            rest = raw_path[len(matched):]
        elif path.startswith(matched):
            rest = quote(path[len(matched):], safe="/%:@!$&'()*+,;=-._~")
    base = plan.service_path
    if not base or base == "/":
        return rest if rest.startswith("/") else "/" + rest
    if not rest or rest == "/":
        return base + ("/" if rest == "/" and not base.endswith("/") else "")
    return base.rstrip("/") + (rest if rest.startswith("/") else "/" + rest)
