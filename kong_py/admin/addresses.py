"""Write-time check of where services, targets and forward proxies point
(``upstream_deny_addresses``); the proxy checks again after DNS resolution."""
from __future__ import annotations

from typing import Any, Callable

from ..proxy.address_policy import AddressPolicy
from ..schemas import Service, Target, Upstream
from ..schemas.base import Schema
from ..schemas.target import join_target

__all__ = ["address_errors"]


def _denied(address: str | None, reason: str) -> str:
    return f"'{address}' is not allowed: {reason}"


def address_errors(policy: AddressPolicy, model: Schema, data: dict[str, Any],
                   is_upstream: Callable[[str], bool]) -> dict[str, Any]:
    """Kong-shaped field errors for a validated entity that points at a denied address.

    ``data`` is what the client sent (it tells whether a target was given as
    ``target`` or ``host``); ``is_upstream(name)`` whether a service's host names
    an upstream, whose targets are then what is checked.
    """
    if isinstance(model, Target):
        assert model.host is not None and model.port is not None  # normalize() filled them
        field = "target" if data.get("target") is not None else "host"
        reason = policy.check_host(model.host, model.port)
        return {field: _denied(model.target, reason)} if reason else {}
    if isinstance(model, Service):
        if is_upstream(model.host):
            return {}
        reason = policy.check_host(model.host, model.port)
        return {"host": _denied(join_target(model.host, model.port), reason)} if reason else {}
    if isinstance(model, Upstream) and model.proxy is not None:
        reason = policy.check_host(model.proxy.host, model.proxy.port)
        if reason:
            return {"proxy": {"host": _denied(join_target(model.proxy.host, model.proxy.port), reason)}}
    return {}
