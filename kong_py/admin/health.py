"""``GET /upstreams/{u}/health`` and the manual healthy/unhealthy switches."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..balancer.runtime import DISABLED, DRAINING, HEALTHCHECKS_OFF, HEALTHY, UNHEALTHY

if TYPE_CHECKING:
    from ..worker import Worker


def checks_enabled(upstream: dict[str, Any]) -> bool:
    """True when active probing or passive counting is configured."""
    hc = upstream.get("healthchecks") or {}
    active, passive = hc.get("active") or {}, hc.get("passive") or {}
    if (active.get("healthy") or {}).get("interval") or (active.get("unhealthy") or {}).get("interval"):
        return True
    unhealthy = passive.get("unhealthy") or {}
    return bool((passive.get("healthy") or {}).get("successes") or unhealthy.get("http_failures")
                or unhealthy.get("tcp_failures") or unhealthy.get("timeouts"))


def target_health(worker: "Worker", upstream: dict[str, Any], target: dict[str, Any]) -> str:
    state = target.get("state")
    if state in (DRAINING, DISABLED):
        return state
    runtime = worker.runtime.targets.get(target["id"])
    if runtime is not None and not runtime.healthy:
        return UNHEALTHY
    return HEALTHY if checks_enabled(upstream) else HEALTHCHECKS_OFF


def health_view(worker: "Worker", upstream: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    """Every target of the upstream with its health (reads the store: call it in a thread)."""
    entities = worker.store.list("targets", upstream_id=upstream["id"])
    data = []
    for target in entities:
        health = target_health(worker, upstream, target)
        runtime = worker.runtime.targets.get(target["id"])
        data.append({
            "id": target["id"], "target": target["target"], "weight": target["weight"],
            "priority": target.get("priority", 1), "backup": target.get("backup", False),
            "upstream": {"id": upstream["id"]}, "created_at": target["created_at"],
            "health": health,
            "data": {"addresses": [{"ip": target["host"], "port": target["port"], "health": health,
                                    "weight": target["weight"]}],
                     "in_flight": runtime.in_flight if runtime else 0},
        })
    usable = [d for d in data if d["health"] in (HEALTHY, HEALTHCHECKS_OFF) and d["weight"] > 0]
    if query.get("balancer_health"):
        return {"data": {"id": upstream["id"], "health": HEALTHY if usable else UNHEALTHY,
                         "details": {"targets": len(data), "usable": len(usable)}},
                "node_id": worker.node_id}
    return {"data": data, "next": None, "total": len(data), "node_id": worker.node_id}


async def set_health(worker: "Worker", target: dict[str, Any], healthy: bool) -> None:
    await worker.set_health(target["id"], healthy)
