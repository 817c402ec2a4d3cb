"""``GET /metrics``: Prometheus text built at scrape time from counters the proxy
keeps on each target's runtime state, so the proxy itself only increments
integers and a scrape costs it nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from ..balancer.runtime import DISABLED, DRAINING, HEALTHCHECKS_OFF, HEALTHY, LATENCY_BUCKETS, UNHEALTHY
from .health import target_health

if TYPE_CHECKING:
    from ..worker import Worker

STATES = (HEALTHY, UNHEALTHY, DRAINING, DISABLED, HEALTHCHECKS_OFF)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class _Collector:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    def collect(self) -> Iterable[Metric]:
        worker = self.worker
        labels = ["upstream", "target"]
        requests = CounterMetricFamily("kong_py_upstream_requests", "Responses from targets by status class",
                                       labels=labels + ["status_class"])
        failures = CounterMetricFamily("kong_py_upstream_failures", "Tries that got no response, by kind",
                                       labels=labels + ["kind"])
        retries = CounterMetricFamily("kong_py_upstream_retries", "Tries sent to the target as a retry", labels=labels)
        selected = CounterMetricFamily("kong_py_upstream_selected", "Times the balancer picked the target",
                                       labels=labels)
        in_flight = GaugeMetricFamily("kong_py_upstream_in_flight", "Requests in flight to the target", labels=labels)
        latency = HistogramMetricFamily("kong_py_upstream_latency_seconds",
                                        "Time to the first byte of the target's response", labels=labels)
        health = GaugeMetricFamily("kong_py_upstream_target_health",
                                   "1 for the target's current state, 0 for the others", labels=labels + ["state"])
        for balancer in worker.snapshot.balancers.values():
            upstream = balancer.upstream
            for target in balancer.targets:
                key = [upstream["name"], target.target]
                stats = target.runtime.stats
                for index, name in enumerate(CLASSES, start=1):
                    requests.add_metric(key + [name], stats.statuses[index])
                for kind, count in stats.failures.items():
                    failures.add_metric(key + [kind], count)
                retries.add_metric(key, stats.retries)
                selected.add_metric(key, stats.selected)
                in_flight.add_metric(key, target.runtime.in_flight)
                cumulative, buckets = 0, []
                for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), stats.buckets):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                latency.add_metric(key, buckets, stats.latency_sum)
                state = target_health(worker, upstream, {"id": target.id, "state": target.state})
                for name in STATES:
                    health.add_metric(key + [name], 1 if name == state else 0)
        totals = CounterMetricFamily("kong_py_proxy_requests", "Requests received by the proxy of this worker")
        totals.add_metric([], worker.stats.total_requests)
        active = GaugeMetricFamily("kong_py_proxy_in_flight", "Requests being served by this worker")
        active.add_metric([], worker.stats.in_flight)
        yield from (requests, failures, retries, selected, in_flight, latency, health, totals, active)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def metrics_endpoint(worker: "Worker") -> Callable[[Request], Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(worker))  # type: ignore[arg-type]

    async def endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return endpoint
