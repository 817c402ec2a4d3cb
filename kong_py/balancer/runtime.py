"""Per-target runtime state, kept outside the snapshot.

A config change builds new balancers but keeps this state (keyed by target
id), so editing an upstream or adding a target never resets the health or
in-flight counts of the targets that did not change.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
DRAINING = "DRAINING"
DISABLED = "DISABLED"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"


@dataclass(slots=True, eq=False)
class TargetRuntime:
    """What the balancer knows about one target right now."""

    target_id: str
    healthy: bool = True
    in_flight: int = 0
    #: monotonic time until which the target is kept out (429 Retry-After)
    cooldown_until: float = 0.0
    #: moving average of time to first byte, seconds (None until measured)
    ewma: float | None = None
    successes: int = 0
    failures: int = 0

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

    def get(self, target_id: str) -> TargetRuntime:
        state = self.targets.get(target_id)
        if state is None:
            state = self.targets[target_id] = TargetRuntime(target_id)
        return state

    def set_healthy(self, target_id: str, healthy: bool) -> bool:
        """Change a target's health; True when it changed."""
        state = self.get(target_id)
        if state.healthy == healthy:
            return False
        state.healthy = healthy
        state.successes = state.failures = 0
        self.version += 1
        return True

    def cool_down(self, target_id: str, seconds: float) -> None:
        self.get(target_id).cooldown_until = self.clock() + seconds
        self.version += 1

    def forget(self, keep: set[str]) -> None:
        """Drop state of targets that no longer exist (in-flight ones stay until done)."""
        for target_id in [t for t in self.targets if t not in keep]:
            if self.targets[target_id].in_flight == 0:
                del self.targets[target_id]
