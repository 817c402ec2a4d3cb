"""Slow start: a target that becomes eligible ramps up to its full weight.

Envoy's ramp: ``weight * max(min_weight_percent / 100, (elapsed / window) ** (1 / aggression))``
for ``elapsed < window``, the full weight after. ``aggression`` 1 is linear;
above 1 the ramp rises faster at first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlowStart:
    window: float
    min_weight_percent: float = 10.0
    aggression: float = 1.0

    @classmethod
    def of(cls, upstream: dict[str, Any]) -> "SlowStart | None":
        """The upstream's ``slow_start`` when it is on (window > 0)."""
        record = upstream.get("slow_start") or {}
        window = float(record.get("window") or 0)
        if window <= 0:
            return None
        return cls(window, float(record.get("min_weight_percent", 10)), float(record.get("aggression", 1.0)))

    def factor(self, since: float, now: float) -> float:
        """The share of its weight a target eligible since ``since`` gets at ``now`` (0 < f <= 1)."""
        if not since:
            return 1.0
        elapsed = now - since
        if elapsed >= self.window:
            return 1.0
        ramp = (max(elapsed, 0.0) / self.window) ** (1.0 / self.aggression)
        return max(self.min_weight_percent / 100.0, ramp)

    def ramping(self, since: float, now: float) -> bool:
        return bool(since) and now - since < self.window


def effective_weight(weight: int, since: float, now: float, slow_start: "SlowStart | None") -> float:
    """The weight the balancer uses for a target right now."""
    if slow_start is None:
        return float(weight)
    return weight * slow_start.factor(since, now)
