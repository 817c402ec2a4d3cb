"""One target's health and the rules that change it (pure: no I/O, clock passed in).

Counters follow Kong's lua-resty-healthcheck: a success zeroes the failure
counters, a counted failure zeroes the success counter, a limit of 0 turns
that counter off, and a target turns UNHEALTHY when a failure counter reaches
its limit and HEALTHY when successes reach theirs. Failures are not counted
while a target is already UNHEALTHY, nor successes while it is HEALTHY.

On top of that, a circuit breaker (Envoy's outlier detection): a target
ejected by passive checks gets an ejection timer, after which it goes
half-open (a few real requests at a time); a success closes the circuit, a
failure ejects it again for twice as long, up to the maximum, with up to 10 %
jitter. A target ejected by active probes comes back through probes; when
probes cannot bring it back (no unhealthy interval or no success limit) it
gets the timer too. Manual health stays until it is changed or a probe or
success limit changes it, as in Kong.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from .schema import Limits, Settings

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: failure kinds, each with its own counter and limit
FAILURES = ("http_failures", "tcp_failures", "timeouts")
#: an ejection lasts up to this much longer (a random share), so ejected targets
#: do not all come back at the same instant
JITTER = 0.1


@dataclass
class Health:
    """What the node knows about one target's health (one LMDB record)."""

    address: str = ""
    health: str = HEALTHY
    circuit: str = CLOSED
    successes: int = 0
    http_failures: int = 0
    tcp_failures: int = 0
    timeouts: int = 0
    #: ejections in a row (the next one lasts twice as long)
    ejections: int = 0
    #: clock time the open circuit turns half-open (0: only a probe or a call brings it
    #: back), and the same as a Unix time for the health API
    open_until: float = 0.0
    open_until_wall: float = 0.0
    #: clock time the circuit last closed (a long healthy spell forgets past ejections)
    closed_at: float = 0.0
    #: when and why the state last changed: wall time, clock time, source
    changed_at: float = 0.0
    changed_clock: float = 0.0
    changed_by: str = ""
    changed_reason: str = ""
    #: the last failure counted: a reason without secrets, and its wall time
    reason: str = ""
    failed_at: float = 0.0
    #: clock time the next probe is due, and of the last one (shared: the node probes
    #: once per interval)
    next_probe: float = 0.0
    probed_at: float = 0.0
    #: sequence number of the last manual change applied (from the store)
    manual: int = 0
    #: transitions into each state (for /metrics)
    transitions: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Healthy with nothing counted: a success changes nothing (the fast path)."""
        return (self.health == HEALTHY and not self.http_failures and not self.tcp_failures
                and not self.timeouts)

    @property
    def available(self) -> bool:
        """May take traffic: healthy, or half-open (a few trial requests at a time)."""
        return self.health == HEALTHY or self.circuit == HALF_OPEN

    @property
    def state_name(self) -> str:
        """HEALTHY, UNHEALTHY or HALF_OPEN."""
        return "HALF_OPEN" if self.circuit == HALF_OPEN else self.health

    def counters(self) -> dict[str, int]:
        return {"successes": self.successes, "http_failures": self.http_failures,
                "tcp_failures": self.tcp_failures, "timeouts": self.timeouts}

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, data: bytes | None) -> "Health":
        if not data:
            return cls()
        values: dict[str, Any] = orjson.loads(data)
        return cls(**{k: v for k, v in values.items() if k in _FIELDS})


_FIELDS = set(Health.__dataclass_fields__)


@dataclass(frozen=True)
class Change:
    """A state change, for the log line and the balancer."""

    old: str
    new: str
    reason: str


def observe(h: Health, settings: Settings, source: str, kind: str, reason: str, clock: float,
            wall: float, jitter: float = 0.0) -> Change | None:
    """Count one outcome. ``source`` is "active" or "passive"; ``kind`` is
    "success" or a failure counter name. ``jitter`` in [0, 1) stretches an
    ejection by up to ``JITTER``. Returns the change of state, if any."""
    limits: Limits = settings.active if source == "active" else settings.passive
    if kind == "success":
        for name in FAILURES:
            setattr(h, name, 0)
        if h.circuit == HALF_OPEN and source == "passive":
            return _close(h, "a trial request succeeded", clock, wall, "passive")
        if h.health == HEALTHY or not limits.successes:
            return None
        h.successes += 1
        if h.successes >= limits.successes:
            return _close(h, f"{h.successes} successes in a row ({source})", clock, wall, source)
        return None
    limit = getattr(limits, kind)
    if not limit:
        return None  # that counter is off: the outcome counts for nothing
    h.successes = 0
    h.reason, h.failed_at = reason, wall
    if h.circuit == HALF_OPEN:
        return _eject(h, settings, source, f"failed while half-open: {reason}", clock, wall, jitter)
    if h.health == UNHEALTHY:
        return None
    count = getattr(h, kind) + 1
    setattr(h, kind, count)
    if count >= limit:
        return _eject(h, settings, source, f"{count} {kind.replace('_', ' ')} ({source}): {reason}",
                      clock, wall, jitter)
    return None


def half_open(h: Health, clock: float, wall: float) -> Change | None:
    """The ejection time is over: let trial requests through."""
    if h.circuit != OPEN or not h.open_until or clock < h.open_until:
        return None
    old = h.state_name
    h.circuit, h.open_until, h.open_until_wall = HALF_OPEN, 0.0, 0.0
    reason = "ejection time over: half-open"
    _stamp(h, clock, wall, "recovery", reason)
    return Change(old, h.state_name, reason)


def set_manually(h: Health, healthy: bool, seq: int, clock: float, wall: float) -> Change | None:
    """``PUT .../healthy`` or ``.../unhealthy``: counters start again from zero."""
    old = h.state_name
    h.manual = max(h.manual, seq)
    h.successes = h.http_failures = h.tcp_failures = h.timeouts = 0
    h.open_until = h.open_until_wall = 0.0
    if healthy:
        h.health, h.circuit, h.ejections, h.closed_at = HEALTHY, CLOSED, 0, clock
    else:
        h.health, h.circuit = UNHEALTHY, OPEN
    if old == h.state_name:
        return None
    reason = "set by hand through the Admin API"
    _stamp(h, clock, wall, "manual", reason)
    return Change(old, h.state_name, reason)


def restore(h: Health, reason: str, clock: float, wall: float) -> Change | None:
    """The configuration stopped checking this target: an automatic ejection ends."""
    if h.health == HEALTHY:
        return None
    h.successes = h.http_failures = h.tcp_failures = h.timeouts = 0
    return _close(h, reason, clock, wall, "configuration")


def reset(h: Health, address: str) -> None:
    """A fresh start (the target's address changed): healthy, nothing counted."""
    fresh = Health(address=address, transitions=h.transitions, next_probe=h.next_probe, probed_at=h.probed_at)
    h.__dict__.update(fresh.__dict__)


def _close(h: Health, reason: str, clock: float, wall: float, source: str) -> Change:
    old = h.state_name
    h.health, h.circuit, h.successes, h.closed_at = HEALTHY, CLOSED, 0, clock
    h.open_until = h.open_until_wall = 0.0
    _stamp(h, clock, wall, source, reason)
    return Change(old, HEALTHY, reason)


def _eject(h: Health, settings: Settings, source: str, reason: str, clock: float, wall: float,
           jitter: float) -> Change:
    old = h.state_name
    recovery = settings.recovery
    if h.closed_at and clock - h.closed_at > recovery.max_ejection_time:
        h.ejections = 0  # healthy long enough: past ejections are forgiven
    h.ejections += 1
    h.health, h.circuit = UNHEALTHY, OPEN
    h.successes = h.http_failures = h.tcp_failures = h.timeouts = 0
    probes_recover = source == "active" and settings.probes_recover
    if recovery.base_ejection_time and not probes_recover:
        seconds = min(recovery.base_ejection_time * 2 ** (h.ejections - 1),
                      max(recovery.max_ejection_time, recovery.base_ejection_time))
        seconds *= 1 + JITTER * jitter
        h.open_until, h.open_until_wall = clock + seconds, wall + seconds
    else:
        h.open_until = h.open_until_wall = 0.0
    _stamp(h, clock, wall, source, reason)
    return Change(old, UNHEALTHY, reason)


def _stamp(h: Health, clock: float, wall: float, source: str, reason: str) -> None:
    h.changed_clock, h.changed_at, h.changed_by, h.changed_reason = clock, wall, source, reason
    h.transitions[h.state_name] = h.transitions.get(h.state_name, 0) + 1
