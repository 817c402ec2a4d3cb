"""The health-checks plugin: active probes, passive checks with circuit
breaking, and one health state per node.

Bundled and always on. It reads each upstream's ``healthchecks`` (and each
target's own settings), hears every try's outcome through ``try_outcome``,
sends probes from ``init_worker``, and decides through the runtime which
targets the balancer may pick (``runtime.set_healthy``, half-open trial
limits). The proxy core knows nothing of health.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from kong_py.hookspecs import hookimpl
from kong_py.proxy.context import Context, TryOutcome

from .api import display_health, routes
from .checker import Checker
from .state import Health

STATES = ("HEALTHY", "UNHEALTHY", "DRAINING", "DISABLED", "HEALTHCHECKS_OFF")


class HealthChecks:
    name = "health-checks"
    PRIORITY = 0
    VERSION = "1.0.0"
    ALWAYS_ON = True

    def __init__(self) -> None:
        #: this worker's checker (the plugin is instantiated once per worker)
        self.checker: Checker | None = None

    @hookimpl
    def init_worker(self, worker: Any) -> None:
        self.checker = Checker(worker)
        self.checker.start()

    @hookimpl
    def try_outcome(self, ctx: Context, outcome: TryOutcome) -> None:
        checker = self.checker
        if checker is not None:
            checker.passive(ctx, outcome)

    @hookimpl
    def log(self, ctx: Context) -> None:
        checker = self.checker
        if checker is not None and ctx.vars:
            checker.finished(ctx)

    @hookimpl
    def register_admin_routes(self, register: Callable[..., None]) -> None:
        for path, endpoint, methods in routes(self._checker):
            register(path, endpoint, methods=methods)

    @hookimpl
    def register_metrics(self, register: Callable[..., None]) -> None:
        register("kong_py_upstream_target_health", "gauge",
                 "1 for the target's current state, 0 for the others", self._health_samples)
        register("kong_py_upstream_health_transitions_total", "counter",
                 "Changes of the target's health on this node, by the state entered", self._transition_samples)

    def _checker(self) -> Checker:
        if self.checker is None:
            raise RuntimeError("health checks have not started on this worker")
        return self.checker

    def _health_samples(self, worker: Any) -> Iterable[tuple[dict[str, str], float]]:
        checker = self.checker
        if checker is None:
            return
        for target_id, target in list(checker.targets.items()):
            labels = _labels(checker, target_id, target)
            state = display_health(target, checker.settings.get(target_id), checker.mirror.get(target_id) or Health())
            for name in STATES:
                yield {**labels, "state": name}, 1.0 if name == state else 0.0

    def _transition_samples(self, worker: Any) -> Iterable[tuple[dict[str, str], float]]:
        checker = self.checker
        if checker is None:
            return
        for target_id, target in list(checker.targets.items()):
            h = checker.mirror.get(target_id)
            if h is None:
                continue
            labels = _labels(checker, target_id, target)
            for state, count in list(h.transitions.items()):
                yield {**labels, "state": state}, float(count)


def _labels(checker: Checker, target_id: str, target: Any) -> dict[str, str]:
    return {"upstream": checker.upstreams.get(target_id, {}).get("name", ""), "target": target.target}
