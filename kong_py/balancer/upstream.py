"""One balancer per upstream: priority tiers over the registered algorithm.

Selection rules shared by every algorithm: only enabled and available
targets are eligible; targets are grouped in tiers by ``(backup, priority)``
and only the first tier with an eligible target receives traffic, so a
preferred tier gets traffic back as soon as one of its targets recovers.
Also here, because every algorithm shares them: connection limits counted
across the node's workers, Kong's health ``threshold`` and slow start.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..proxy.context import ContextKey
from .algorithm import Algorithm, AlgorithmFactory
from .runtime import Runtime
from .slow_start import SlowStart, effective_weight
from .target import TargetInfo

if TYPE_CHECKING:
    from ..proxy.context import Context

#: why no target was given to a request, when it was not the usual reason (set in ``ctx``)
NO_PEER = ContextKey[str]("balancer.no_peer")
AT_LIMIT = "failure to get a peer from the ring-balancer: every available target is at its connection limit"
#: ids of the targets this request holds a node-wide connection count for
HELD = ContextKey[list]("balancer.held")


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
        #: Kong's healthchecks.threshold: percent of the enabled weight that must be healthy
        self.threshold = float((upstream.get("healthchecks") or {}).get("threshold") or 0)
        self._total_weight = sum(t.weight for t in self.targets if t.enabled)
        self._threshold_version = -1
        self._above_threshold = True
        self.slow_start = SlowStart.of(upstream)
        self._ramp_version = -1
        self._ramp_next = 0.0
        self._applied: dict[int, dict[str, float]] = {}

    def notify(self, target: TargetInfo) -> None:
        """The target's in-flight count or latency changed: let its algorithm re-rank it."""
        update = self._updates.get(target.id)
        if update is not None:
            update(target)

    def pick(self, ctx: "Context | None", tried: Sequence[TargetInfo] = ()) -> TargetInfo | None:
        """The target for the next try, or None when no target is eligible.

        A target with a connection limit (``max_conns``, or a half-open trial
        limit) is counted against it here, node-wide; call :meth:`release`
        when the try is over.
        """
        runtime = self.runtime
        now = runtime.clock()
        if self.threshold and not self.healthy_enough():
            return None
        if self.slow_start is not None and (now >= self._ramp_next or runtime.version != self._ramp_version):
            self._ramp(now)
        #: targets passed over: not allowed for this request, or at their connection limit
        refused: set[TargetInfo] = set()
        limited: list[TargetInfo] = []
        allowed = ctx.allowed_targets if ctx is not None else None
        if allowed is not None:  # a plugin narrowed the request's targets (model routing)
            refused = {t for t in self.targets if t.id not in allowed}
        fallback: Tier | None = None
        for tier in self.tiers:
            if not tier.has_eligible(runtime, now):
                continue
            if tried and all(t in tried or t in refused for t in tier.targets if t.available(now)):
                # every eligible target here was tried: prefer another tier,
                # but come back to this one rather than fail
                fallback = fallback or tier
                continue
            target = self._choose(tier, ctx, now, tried, refused, limited)
            if target is not None:
                return target
        if fallback is not None:
            target = self._choose(fallback, ctx, now, (), refused, limited)
            if target is not None:
                return target
        if limited and ctx is not None:
            ctx.set(NO_PEER, AT_LIMIT)
        return None

    def _choose(self, tier: Tier, ctx: "Context | None", now: float, tried: Sequence[TargetInfo],
                refused: set[TargetInfo], limited: list[TargetInfo]) -> TargetInfo | None:
        """The tier algorithm's pick, passing over targets at their connection limit."""
        while True:
            target = tier.algorithm.pick(ctx, _skipper(now, tried, refused))
            if target is None:
                return None
            limit = connection_limit(target)
            if not limit or self._admit(ctx, target, limit):
                return target
            target.runtime.stats.limited += 1
            refused.add(target)
            limited.append(target)

    def _admit(self, ctx: "Context | None", target: TargetInfo, limit: int) -> bool:
        node = self.runtime.node
        if node is None or ctx is None:  # no node to share counts with: this worker's own
            return target.runtime.in_flight < limit
        if not node.acquire(target.id, limit):
            return False
        held = ctx.vars.get(HELD)
        if held is None:
            held = ctx.vars[HELD] = []
        held.append(target.id)
        return True

    def release(self, ctx: "Context", target: TargetInfo) -> None:
        """The try on ``target`` is over: give back its node-wide connection count, if it took one."""
        held = ctx.vars.get(HELD)
        if held and target.id in held:
            held.remove(target.id)
            node = self.runtime.node
            if node is not None:
                node.release(target.id)

    def release_all(self, ctx: "Context") -> None:
        """Give back every count the request still holds (it ended early)."""
        held = ctx.vars.get(HELD)
        node = self.runtime.node
        while held:
            target_id = held.pop()
            if node is not None:
                node.release(target_id)

    def healthy_enough(self) -> bool:
        """False when less than ``threshold`` percent of the weight is healthy (Kong's rule)."""
        version = self.runtime.version
        if self._threshold_version != version:
            self._threshold_version = version
            self._above_threshold = self.healthy_percent() >= self.threshold
        return self._above_threshold

    def healthy_percent(self) -> float:
        """Percent of the enabled targets' weight that is healthy (100 without targets)."""
        if not self._total_weight:
            return 100.0
        healthy = sum(t.weight for t in self.targets if t.enabled and t.runtime.healthy)
        return 100.0 * healthy / self._total_weight

    def effective_weight(self, target: TargetInfo, now: float | None = None) -> float:
        """The weight the balancer gives the target now (lower while it ramps up)."""
        if now is None:
            now = self.runtime.clock()
        return effective_weight(target.weight, target.runtime.since, now, self.slow_start)

    def _ramp(self, now: float) -> None:
        """Hand the algorithms the current weights of targets ramping up (slow start)."""
        slow_start = self.slow_start
        assert slow_start is not None
        self._ramp_version = self.runtime.version
        step = max(slow_start.window / 64, 0.05)
        following = float("inf")
        for n, tier in enumerate(self.tiers):
            set_weights = getattr(tier.algorithm, "set_weights", None)
            if set_weights is None:  # an algorithm that keeps weights fixed (consistent-hashing)
                continue
            weights = {}
            for target in tier.targets:
                since = target.runtime.since
                weights[target.id] = effective_weight(target.weight, since, now, slow_start)
                if slow_start.ramping(since, now):
                    following = min(following, now + step)
            if weights != self._applied.get(n, {t.id: float(t.weight) for t in tier.targets}):
                set_weights(weights)
                self._applied[n] = weights
        self._ramp_next = following


def connection_limit(target: TargetInfo) -> int:
    """Requests the node may have in flight to the target now (0: no limit)."""
    configured, trial = target.max_conns, target.runtime.trial_limit
    if configured and trial:
        return min(configured, trial)
    return configured or trial


def _skipper(now: float, tried: Sequence[TargetInfo], refused: set[TargetInfo]) -> Callable[[TargetInfo], bool]:
    if tried or refused:
        return lambda t: t in tried or t in refused or not t.available(now)
    return lambda t: not t.available(now)
