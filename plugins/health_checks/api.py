"""Admin API endpoints of health checking (Kong's, plus circuit and counters).

* ``GET /upstreams/{u}/health``: every target's health (``?balancer_health=1``:
  the upstream's, against ``healthchecks.threshold``);
* ``GET /upstreams/{u}/targets/{t}/health``: one target;
* ``PUT|POST /upstreams/{u}/targets/{t}/healthy|unhealthy``: set by hand (kept
  in the store: every worker and node applies it, and it survives restarts).

Answers come from this worker's view of the node's shared records, so every
worker of a node gives the same answer.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from starlette.requests import Request
from starlette.responses import Response

from kong_py.admin.errors import json_response, not_found
from kong_py.balancer.runtime import DISABLED, DRAINING, HEALTHCHECKS_OFF, HEALTHY, UNHEALTHY
from kong_py.balancer.upstream import connection_limit
from kong_py.schemas.base import is_uuid
from kong_py.schemas.target import join_target, split_target

from .state import HALF_OPEN, Health

if TYPE_CHECKING:
    from kong_py.balancer.target import TargetInfo
    from kong_py.balancer.upstream import UpstreamBalancer

    from .checker import Checker
    from .schema import Settings

Endpoint = Callable[[Request], Any]


def display_health(target: "TargetInfo", settings: "Settings | None", h: Health) -> str:
    """Kong's states: DRAINING and DISABLED first, then what the checks say."""
    if target.state in (DRAINING, DISABLED):
        return target.state
    if h.health == UNHEALTHY:
        return UNHEALTHY
    if settings is None or not settings.enabled:
        return HEALTHCHECKS_OFF
    return HEALTHY


def routes(checker: Callable[[], "Checker"]) -> list[tuple[str, Endpoint, tuple[str, ...]]]:
    """``(path, endpoint, methods)`` for ``register_admin_routes``; ``checker()``
    gives this worker's checker."""

    async def upstream_health(request: Request) -> Response:
        c = checker()
        balancer = _upstream(c, request.path_params["upstream"])
        if request.query_params.get("balancer_health") not in (None, "", "0", "false"):
            return json_response(200, {"data": balancer_view(c, balancer), "next": None,
                                       "node_id": c.worker.node_id})
        load = _load(c)
        now = c.clock()
        data = [target_view(c, balancer, t, load, now) for t in balancer.targets]
        return json_response(200, {"data": data, "next": None, "total": len(data), "node_id": c.worker.node_id})

    async def target_health(request: Request) -> Response:
        c = checker()
        balancer = _upstream(c, request.path_params["upstream"])
        target = _target(balancer, request.path_params["target"])
        return json_response(200, target_view(c, balancer, target, _load(c), c.clock()))

    def set_health(healthy: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            c = checker()
            balancer = _upstream(c, request.path_params["upstream"])
            target = _target(balancer, request.path_params["target"])
            seq = await asyncio.to_thread(c.worker.store.set_health, target.id, healthy)
            c.set_manually(target.id, healthy, seq)
            return json_response(204, None)
        return endpoint

    target = "/upstreams/{upstream}/targets/{target}"
    return [
        ("/upstreams/{upstream}/health", upstream_health, ("GET",)),
        (f"{target}/health", target_health, ("GET",)),
        (f"{target}/healthy", set_health(True), ("PUT", "POST")),
        (f"{target}/unhealthy", set_health(False), ("PUT", "POST")),
    ]


def target_view(c: "Checker", balancer: "UpstreamBalancer", target: "TargetInfo",
                load: dict[str, int], now: float) -> dict[str, Any]:
    """One target as the health API shows it: Kong's fields, then circuit, counters, settings."""
    h = c.mirror.get(target.id) or Health()
    settings = c.settings.get(target.id)
    health = display_health(target, settings, h)
    entity = target.entity
    in_flight = target.runtime.in_flight + load.get(target.id, 0)
    if connection_limit(target):
        in_flight = max(in_flight, c.worker.node.in_flight(target.id))
    ejected_until = round(h.open_until_wall, 3) if h.circuit != "closed" and h.open_until else None
    return {
        "id": target.id, "target": target.target, "weight": target.weight,
        "priority": target.priority, "backup": target.backup, "upstream": {"id": target.upstream_id},
        "created_at": entity.get("created_at"), "tags": entity.get("tags"),
        "health": health,
        "circuit": h.circuit if h.health == UNHEALTHY or h.circuit == HALF_OPEN else "closed",
        # what the balancer gives it now: 0 while it takes no traffic, less while it ramps up
        "effective_weight": (round(balancer.effective_weight(target, now), 3)
                             if target.enabled and target.runtime.healthy else 0),
        "max_conns": target.max_conns,
        "in_flight": in_flight,
        "counters": h.counters(),
        "ejections": h.ejections,
        "ejected_until": ejected_until,
        "last_failure": {"reason": h.reason, "at": h.failed_at} if h.reason else None,
        "changed_at": h.changed_at or None,
        "changed_by": h.changed_by or None,
        "changed_reason": h.changed_reason or None,
        "healthchecks": settings.record if settings is not None else None,
        "data": {"addresses": [{"ip": target.host, "port": target.port, "health": health,
                                "weight": target.weight}],
                 "in_flight": in_flight},
    }


def balancer_view(c: "Checker", balancer: "UpstreamBalancer") -> dict[str, Any]:
    """The upstream's health as Kong reports it, with what it was measured against."""
    upstream = balancer.upstream
    checked = any(s.enabled for t in balancer.targets if (s := c.settings.get(t.id)) is not None)
    percent = balancer.healthy_percent()
    usable = [t for t in balancer.targets if t.enabled and t.runtime.healthy]
    if not checked:
        health = HEALTHCHECKS_OFF
    elif percent < balancer.threshold or not usable:
        health = UNHEALTHY
    else:
        health = HEALTHY
    return {"id": upstream["id"], "health": health, "balancer_health": health,
            "details": {"threshold": balancer.threshold, "healthy_weight_percent": round(percent, 2),
                        "targets": len(balancer.targets), "usable": len(usable)}}


def _load(c: "Checker") -> dict[str, int]:
    node = c.worker.node
    return node.others_load() if node.workers > 1 else {}


def _upstream(c: "Checker", ident: str) -> "UpstreamBalancer":
    c.current()
    snapshot = c.worker.snapshot
    upstream = snapshot.upstreams_by_name.get(ident)
    if upstream is None and is_uuid(ident):
        balancer = snapshot.balancers.get(ident)
        if balancer is not None and ident in {u["id"] for u in snapshot.upstreams_by_name.values()}:
            return balancer
    if upstream is None:
        raise not_found()
    return snapshot.balancers[upstream["id"]]


def _target(balancer: "UpstreamBalancer", ident: str) -> "TargetInfo":
    if is_uuid(ident):
        for target in balancer.targets:
            if target.id == ident:
                return target
    try:
        host, port = split_target(ident)
    except ValueError:
        raise not_found() from None
    name = join_target(host, port or 8000)
    for target in balancer.targets:
        if target.target == name:
            return target
    raise not_found()
