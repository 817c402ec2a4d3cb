"""One balancer per upstream: priority tiers over the registered algorithm.

Selection rules shared by every algorithm: only enabled and available
targets are eligible; targets are grouped in tiers by ``(backup, priority)``
and only the first tier with an eligible target receives traffic, so a
preferred tier gets traffic back as soon as one of its targets recovers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from .algorithm import Algorithm, AlgorithmFactory
from .runtime import Runtime
from .target import TargetInfo

if TYPE_CHECKING:
    from ..proxy.context import Context


class Tier:
    __slots__ = ("key", "targets", "algorithm", "_version", "_eligible", "_next_expiry")

    def __init__(self, key: tuple[bool, int], targets: list[TargetInfo], algorithm: Algorithm) -> None:
        self.key = key
        self.targets = targets
        self.algorithm = algorithm
        self._version = -1
        self._eligible = 0
        self._next_expiry = 0.0

    def has_eligible(self, runtime: Runtime, now: float) -> bool:
        """Cached count of available targets, recomputed only when health changed."""
        if self._version != runtime.version or (self._next_expiry and now >= self._next_expiry):
            eligible = 0
            expiry = 0.0
            for target in self.targets:
                if target.available(now):
                    eligible += 1
                elif target.runtime.cooldown_until > now:
                    until = target.runtime.cooldown_until
                    expiry = until if not expiry else min(expiry, until)
            self._version, self._eligible, self._next_expiry = runtime.version, eligible, expiry
        return self._eligible > 0


class UpstreamBalancer:
    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo],
                 factory: AlgorithmFactory, runtime: Runtime) -> None:
        self.upstream = upstream
        self.targets = list(targets)
        self.runtime = runtime
        groups: dict[tuple[bool, int], list[TargetInfo]] = {}
        for target in targets:
            if target.enabled:
                groups.setdefault((target.backup, target.priority), []).append(target)
        self.tiers = [Tier(key, groups[key], factory(upstream, groups[key])) for key in sorted(groups)]
        #: target id -> algorithm of its tier, for algorithms that track load
        self._updates: dict[str, Any] = {}
        for tier in self.tiers:
            update = getattr(tier.algorithm, "update", None)
            if update is not None:
                for target in tier.targets:
                    self._updates[target.id] = update

    def notify(self, target: TargetInfo) -> None:
        """The target's in-flight count or latency changed: let its algorithm re-rank it."""
        update = self._updates.get(target.id)
        if update is not None:
            update(target)

    def pick(self, ctx: "Context | None", tried: Sequence[TargetInfo] = ()) -> TargetInfo | None:
        """The target for the next try, or None when no target is eligible."""
        runtime = self.runtime
        now = runtime.clock()
        fallback: Tier | None = None
        for tier in self.tiers:
            if not tier.has_eligible(runtime, now):
                continue
            if tried and all(t in tried for t in tier.targets if t.available(now)):
                # every eligible target here was tried: prefer another tier,
                # but come back to this one rather than fail
                fallback = fallback or tier
                continue
            return tier.algorithm.pick(ctx, _skipper(now, tried))
        if fallback is not None:
            return fallback.algorithm.pick(ctx, _skipper(now, ()))
        return None


def _skipper(now: float, tried: Sequence[TargetInfo]) -> Callable[[TargetInfo], bool]:
    if tried:
        return lambda t: t in tried or not t.available(now)
    return lambda t: not t.available(now)
