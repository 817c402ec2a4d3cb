"""One worker's health checker: counts outcomes, follows the node's shared
health records, and tells the balancer which targets may take traffic."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from kong_py.proxy.context import Context, ContextKey, TryOutcome

from .probes import Prober
from .schema import Settings, settings_for
from .shared import SharedHealth
from .state import (HALF_OPEN, HEALTHY, OPEN, UNHEALTHY, Change, Health, half_open, observe, restore,
                    set_manually)

if TYPE_CHECKING:
    from kong_py.balancer.target import TargetInfo
    from kong_py.worker import Worker

log = logging.getLogger("kong_py.health")

#: seconds between looks at what the node's other workers changed
FOLLOW_INTERVAL = 0.02

#: a success waiting for its body to arrive whole (the target it is about)
PENDING = ContextKey["TargetInfo"]("health-checks.pending-success")

#: why a try failed, as the health API shows it (no addresses, no secrets)
_ERRORS = {
    "connect": ("tcp_failures", "connection failed"),
    "timeout": ("timeouts", "timed out"),
    "read": ("tcp_failures", "connection broke before the response"),
    "body": ("tcp_failures", "response broke off mid-body"),
}


class Checker:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.runtime = worker.runtime
        self.clock = worker.runtime.clock
        self.shared = SharedHealth(worker.node)
        #: the node's records as this worker last saw them (absent: healthy, nothing counted)
        self.mirror: dict[str, Health] = {}
        self.settings: dict[str, Settings] = {}
        self.targets: dict[str, "TargetInfo"] = {}
        #: upstream entity of each target's upstream, by target id
        self.upstreams: dict[str, dict[str, Any]] = {}
        self.prober = Prober(self)
        self._snapshot: Any = None
        self._seq = 0
        self._store_seq = 0
        #: open circuits with an ejection timer: target id -> clock time it ends
        self._timers: dict[str, float] = {}
        self._random = random.Random()

    # -- start -----------------------------------------------------------------
    def start(self) -> None:
        self._seq, _ = self.shared.changes(0)
        self.refresh()  # also applies what the node's other workers already know
        self.worker.spawn(self._follow())
        self.worker.spawn(self._manual_from_store())
        self.worker.spawn(self.prober.run())

    # -- configuration ---------------------------------------------------------
    def refresh(self) -> None:
        """Compile the settings of the current snapshot's targets (on every change)."""
        snapshot = self.worker.snapshot
        self._snapshot = snapshot
        shared: dict[str, Settings] = {}
        settings: dict[str, Settings] = {}
        targets: dict[str, "TargetInfo"] = {}
        upstreams: dict[str, dict[str, Any]] = {}
        for upstream in snapshot.upstreams_by_name.values():
            balancer = snapshot.balancers.get(upstream["id"])
            if balancer is None:
                continue
            for target in balancer.targets:
                settings[target.id] = settings_for(upstream, target.entity, shared)
                targets[target.id] = target
                upstreams[target.id] = upstream
        before = self.targets
        gone = [t for t in before if t not in targets]
        self.settings, self.targets, self.upstreams = settings, targets, upstreams
        if gone:
            self.shared.delete(gone)
            for target_id in gone:
                self.mirror.pop(target_id, None)
                self._timers.pop(target_id, None)
        for target_id, target in targets.items():
            if target_id not in before and (h := self.shared.get(target_id)) is not None:
                self._apply(target_id, h)
            self._tidy(target, settings[target_id])
        self.prober.reschedule()

    def _tidy(self, target: "TargetInfo", settings: Settings) -> None:
        """Moved targets start afresh; with checks turned off, automatic ejections end."""
        h = self.mirror.get(target.id)
        if h is None:
            return
        moved = bool(h.address) and h.address != target.target
        stale = not settings.enabled and h.health == UNHEALTHY and h.changed_by != "manual"
        if moved or stale:  # change() starts a moved target's record afresh
            clock, wall = self.clock(), time.time()
            h, change = self.shared.change(target.id, target.target,
                                           lambda r: restore(r, "health checks are off", clock, wall))
            self._apply(target.id, h, change)

    def current(self) -> None:
        if self._snapshot is not self.worker.snapshot:
            self.refresh()

    # -- outcomes --------------------------------------------------------------
    def passive(self, ctx: Context, outcome: TryOutcome) -> None:
        """One try of real traffic: count it (most successes cost a dict lookup).

        Failures count at once. A success counts once its body has arrived
        whole (``finished``), so a stream that breaks off is not both.
        """
        if self._snapshot is not self.worker.snapshot:
            self.refresh()
        target = outcome.target
        settings = self.settings.get(target.id)
        if settings is None or not settings.passive.counting:
            return
        if outcome.error is not None:
            kind, reason = _ERRORS.get(outcome.error, ("tcp_failures", outcome.error))
            if ctx.vars.get(PENDING) is target:
                del ctx.vars[PENDING]
        else:
            status = outcome.status or 0
            found = settings.passive.classify_status(status)
            if found is None:
                return
            kind, reason = found, f"status {status}"
            if kind == "success":
                h = self.mirror.get(target.id)
                if h is not None and not h.clean:
                    ctx.vars[PENDING] = target
                return
        self.count(target, settings, "passive", kind, reason)

    def finished(self, ctx: Context) -> None:
        """The exchange is over: count the success it was waiting for (not when the
        client left before the end: that says nothing about the target)."""
        target = ctx.vars.pop(PENDING, None)
        if target is None or ctx.vars.get("client_aborted"):
            return
        settings = self.settings.get(target.id)
        if settings is not None:
            self.count(target, settings, "passive", "success", "")

    def count(self, target: "TargetInfo", settings: Settings, source: str, kind: str, reason: str) -> None:
        """Record one outcome for the whole node and act on a change of state."""
        clock, wall, jitter = self.clock(), time.time(), self._random.random()

        def fn(h: Health) -> Change | None:
            change = observe(h, settings, source, kind, reason, clock, wall, jitter)
            if change is not None:
                period = settings.interval(h.health == HEALTHY)
                h.next_probe = clock + period if period else 0.0
            return change
        h, change = self.shared.change(target.id, target.target, fn)
        self._apply(target.id, h, change)

    def set_manually(self, target_id: str, healthy: bool, seq: int) -> None:
        """Health set through the Admin API (``seq``: its number in the store)."""
        clock, wall = self.clock(), time.time()
        settings = self.settings.get(target_id)
        target = self.targets.get(target_id)

        def fn(h: Health) -> Change | None:
            change = set_manually(h, healthy, seq, clock, wall)
            period = settings.interval(healthy) if settings is not None else 0.0
            h.next_probe = clock + period if period else 0.0
            return change
        h, change = self.shared.change(target_id, target.target if target else "", fn)
        self._apply(target_id, h, change)

    # -- applying the node's records here ----------------------------------------
    def _apply(self, target_id: str, h: Health, change: Change | None = None) -> None:
        old = self.mirror.get(target_id)
        self.mirror[target_id] = h
        runtime = self.runtime
        settings = self.settings.get(target_id)
        state = runtime.get(target_id)
        state.trial_limit = (settings.recovery.half_open_requests if settings else 1) if h.circuit == HALF_OPEN else 0
        # a half-open target takes its trial at full weight (its cap limits it); the ramp
        # of slow start begins when the circuit closes
        since = 0.0 if h.circuit == HALF_OPEN else (h.changed_clock or None)
        changed = runtime.set_healthy(target_id, h.available, since=since)
        if not changed and h.health == HEALTHY and old is not None and old.health != HEALTHY:
            runtime.ramp_from(target_id, h.changed_clock)  # half-open -> closed: now fully back
        if h.circuit == OPEN and h.open_until:
            self._timers[target_id] = h.open_until
        else:
            self._timers.pop(target_id, None)
        if old is None or old.health != h.health or old.circuit != h.circuit or old.next_probe != h.next_probe:
            self.prober.health_changed(target_id, h)
        if change is not None:
            target = self.targets.get(target_id)
            upstream = self.upstreams.get(target_id, {})
            log.info("upstream %s target %s: %s -> %s (%s)", upstream.get("name", "?"),
                     target.target if target else target_id, change.old, change.new, change.reason)

    async def _follow(self) -> None:
        """Apply what other workers of the node changed; end ejection times."""
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            try:
                self.current()
                latest, ids = self.shared.changes(self._seq)
                if ids is None:
                    records = self.shared.everything()
                    for target_id in self.targets:
                        self._apply(target_id, records.get(target_id) or Health(address=""))
                else:
                    for target_id in ids:
                        if target_id in self.targets:
                            self._apply(target_id, self.shared.get(target_id) or Health())
                self._seq = latest
                self._end_ejections()
            except Exception:
                log.exception("could not follow the node's health records")
                await asyncio.sleep(1)

    def _end_ejections(self) -> None:
        if not self._timers:
            return
        clock = self.clock()
        for target_id, until in list(self._timers.items()):
            target = self.targets.get(target_id)
            if until > clock or target is None:
                continue
            wall = time.time()
            h, change = self.shared.change(target_id, target.target, lambda h: half_open(h, clock, wall))
            self._apply(target_id, h, change)

    async def _manual_from_store(self) -> None:
        """Health set by hand on any node (kept in the store): apply it here too."""
        store = self.worker.store
        while True:
            try:
                for target_id, healthy, seq in await asyncio.to_thread(store.health_since, self._store_seq):
                    self._store_seq = max(self._store_seq, seq)
                    h = self.mirror.get(target_id) or self.shared.get(target_id)
                    if h is not None and h.manual >= seq:
                        continue  # applied already (by this node's Admin API)
                    self.set_manually(target_id, healthy, seq)  # also for a target not seen here yet
            except Exception:
                log.exception("could not read health set by hand from the store")
            await asyncio.sleep(self.worker.config.db_update_frequency)
