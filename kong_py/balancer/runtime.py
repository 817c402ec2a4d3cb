"""Per-target runtime state, kept outside the snapshot.

A config change builds new balancers but keeps this state (keyed by target
id), so editing an upstream or adding a target never resets the health or
in-flight counts of the targets that did not change.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..node import Node

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
DRAINING = "DRAINING"
DISABLED = "DISABLED"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"


#: upper bounds (seconds) of the latency histogram buckets
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TargetStats:
    """Counters for /metrics. The proxy only increments; formatting happens at scrape."""

    __slots__ = ("selected", "retries", "limited", "statuses", "failures", "buckets", "latency_sum",
                 "latency_count")

    def __init__(self) -> None:
        self.selected = 0
        self.retries = 0
        #: picks refused because the target was at its connection limit
        self.limited = 0
        #: responses by status class: index 1..5 for 1xx..5xx
        self.statuses = [0] * 6
        #: tries that got no response, by kind (connect, timeout, read)
        self.failures: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, status: int, seconds: float) -> None:
        self.statuses[min(status // 100, 5)] += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1


@dataclass(slots=True, eq=False)
class TargetRuntime:
    """What the balancer knows about one target right now."""

    target_id: str
    healthy: bool = True
    #: requests this worker has in flight to the target
    in_flight: int = 0
    #: clock time the target last became eligible (slow start ramps from it); 0: long ago
    since: float = 0.0
    #: node-wide cap on requests in flight set by health checking (half-open trials); 0: none
    trial_limit: int = 0
    #: monotonic time until which the target is kept out (429 Retry-After)
    cooldown_until: float = 0.0
    #: moving average of time to first byte, seconds (None until measured)
    ewma: float | None = None
    stats: TargetStats = field(default_factory=TargetStats)

    def observe_latency(self, seconds: float, alpha: float = 0.3) -> None:
        """Fold one time-to-first-byte sample into the moving average."""
        self.ewma = seconds if self.ewma is None else alpha * seconds + (1 - alpha) * self.ewma


@dataclass
class Runtime:
    """All targets' runtime state of one worker; ``version`` grows on every
    eligibility change so balancers can cache what depends on it."""

    clock: Callable[[], float] = time.monotonic
    targets: dict[str, TargetRuntime] = field(default_factory=dict)
    version: int = 0
    #: the node this worker belongs to (node-wide connection limits); None in unit tests
    node: "Node | None" = None

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, target_id: str) -> TargetRuntime:
        """The target's state, created on first use (snapshots are built in a thread)."""
        state = self.targets.get(target_id)
        if state is None:
            with self._lock:
                state = self.targets.get(target_id)
                if state is None:
                    state = self.targets[target_id] = TargetRuntime(target_id)
        return state

    def set_healthy(self, target_id: str, healthy: bool, since: float | None = None) -> bool:
        """Change whether a target may be picked; True when it changed.

        Health checking calls this. ``since`` is the clock time of the change
        (default now): a target that comes back ramps up from then when its
        upstream has ``slow_start``.
        """
        state = self.get(target_id)
        if state.healthy == healthy:
            return False
        state.healthy = healthy
        if healthy:
            state.since = self.clock() if since is None else since
        self.version += 1
        return True

    def ramp_from(self, target_id: str, since: float) -> None:
        """Start the target's slow-start ramp at ``since`` (it is fully back then)."""
        self.get(target_id).since = since
        self.version += 1

    def cool_down(self, target_id: str, seconds: float) -> None:
        self.get(target_id).cooldown_until = self.clock() + seconds
        self.version += 1

    def forget(self, keep: set[str]) -> None:
        """Drop state of targets that no longer exist (in-flight ones stay until done)."""
        for target_id in [t for t in list(self.targets) if t not in keep]:  # list(): called off the loop
            if self.targets[target_id].in_flight == 0:
                del self.targets[target_id]
