"""Steps shared by the health-check tests (imported as ``hc_helpers``)."""
from __future__ import annotations

from typing import Any


async def configure(gateway: Any, servers: list[Any], healthchecks: dict[str, Any] | None = None,
                    name: str = "pool", retries: int = 0, **upstream: Any) -> dict[str, Any]:
    """An upstream over ``servers`` with a service and route ``/<name>``; returns the upstream."""
    body: dict[str, Any] = {"name": name, **upstream}
    if healthchecks is not None:
        body["healthchecks"] = healthchecks
    status, created = await gateway.admin("POST", "/upstreams", body)
    assert status == 201, created
    for server in servers:
        status, target = await gateway.admin("POST", f"/upstreams/{name}/targets", {"target": server.address})
        assert status == 201, target
    status, service = await gateway.admin("POST", "/services", {"name": name, "host": name, "retries": retries,
                                                                "connect_timeout": 2000, "read_timeout": 2000})
    assert status == 201, service
    status, route = await gateway.admin("POST", f"/services/{name}/routes", {"paths": [f"/{name}"]})
    assert status == 201, route
    await health(gateway, name)  # the checker has seen the configuration: probes are scheduled
    return created


async def health(gateway: Any, name: str = "pool") -> dict[str, dict[str, Any]]:
    """``GET /upstreams/{name}/health`` by target address."""
    status, body = await gateway.admin("GET", f"/upstreams/{name}/health")
    assert status == 200, body
    return {entry["target"]: entry for entry in body["data"]}


async def states(gateway: Any, name: str = "pool") -> dict[str, str]:
    return {target: entry["health"] for target, entry in (await health(gateway, name)).items()}


async def send(gateway: Any, count: int, name: str = "pool") -> list[tuple[int, str | None]]:
    """``count`` requests through the proxy: (status, target that served or None)."""
    out = []
    for _ in range(count):
        status, headers, _ = await gateway.proxy("GET", f"/{name}/x")
        out.append((status, headers.get("X-Kong-Upstream-Target")))
    return out


def passive(successes: int = 0, http_failures: int = 0, tcp_failures: int = 0, timeouts: int = 0,
            **recovery: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"healthy": {"successes": successes},
                              "unhealthy": {"http_failures": http_failures, "tcp_failures": tcp_failures,
                                            "timeouts": timeouts}}
    if recovery:
        record["recovery"] = recovery
    return {"passive": record}


def active(interval: float = 1, successes: int = 2, failures: int = 2, unhealthy_interval: float | None = None,
           **extra: Any) -> dict[str, Any]:
    return {"active": {"http_path": "/health", **extra,
                       "healthy": {"interval": interval, "successes": successes},
                       "unhealthy": {"interval": interval if unhealthy_interval is None else unhealthy_interval,
                                     "http_failures": failures, "tcp_failures": failures,
                                     "timeouts": failures}}}
