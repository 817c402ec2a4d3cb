"""``GET /metrics``: Prometheus text built at scrape time from the worker's counters,
so the proxy only ever increments integers."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from .health import target_health

if TYPE_CHECKING:
    from ..worker import Worker


class _Collector:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    def collect(self) -> Iterable[Metric]:
        worker = self.worker
        snapshot = worker.snapshot
        health = GaugeMetricFamily("kong_py_upstream_target_health",
                                   "1 for the target's current health state", labels=["upstream", "target", "state"])
        in_flight = GaugeMetricFamily("kong_py_upstream_target_in_flight",
                                      "requests in flight to the target", labels=["upstream", "target"])
        for balancer in snapshot.balancers.values():
            upstream = balancer.upstream
            for target in balancer.targets:
                entity = {"id": target.id, "state": target.state}
                state = target_health(worker, upstream, entity)
                health.add_metric([upstream["name"], target.target, state], 1)
                in_flight.add_metric([upstream["name"], target.target], target.runtime.in_flight)
        yield health
        yield in_flight


def metrics_endpoint(worker: "Worker") -> Callable[[Request], Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(worker))  # type: ignore[arg-type]

    async def endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return endpoint
