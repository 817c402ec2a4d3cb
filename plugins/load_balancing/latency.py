"""Latency: the target with the lowest ``ewma * (in_flight + 1) / weight``.

``ewma`` is the target's moving average of time to first byte, kept by the
core (``TargetRuntime.ewma``). Like Kong's latency algorithm (an EWMA
balancer after Finagle's Peak-EWMA):

* a target's average fades towards 0 while nothing new is heard from it
  (``exp(-idle / DECAY)``, Kong's 10 s), so a target that was slow once gets
  tried again now and then instead of being shunned forever;
* a target with no sample yet counts as the average of the (faded) averages
  of the targets that have one (0 if none has), and wins ties against them,
  so a new target gets traffic even next to a single measured one;
* the ``in_flight + 1`` factor spreads concurrent requests: without it every
  request would go to the fastest target until its first response comes
  back, since a target's average changes only when a response does.

Targets sit in two indexed heaps (with and without a sample). The fading is
the same factor for every target, so it is folded into the keys as
``log(ewma) + (last_heard - ref) / DECAY``, which does not change with time:
the order only changes when a target's numbers do, ``update(target)``
re-ranks that one target in O(log n), and ``pick`` reads the tops of both
heaps. (``ref`` moves forward every ``REBASE`` seconds, an O(n) rebuild, so
the numbers stay small.) The core calls ``update`` when ``in_flight``
changes; a changed ``ewma`` is also picked up whenever ``pick`` looks at a
target. Among equal scores, the target picked longest ago goes first.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from kong_py.balancer.target import TargetInfo

from .heap import GAVE_UP, IndexedHeap, first_of

#: seconds for an idle target's average to fade by a factor e (Kong's DECAY_TIME)
DECAY = 10.0
#: averages below this (seconds) count as this, to keep logarithms finite
FLOOR = 1e-6
#: how far (seconds) the time reference of the keys may fall behind the clock
REBASE = 10 * DECAY
#: a target without a sample beats a sampled one of the same score
UNSAMPLED_EDGE = math.log1p(-1e-9)


class Latency:
    #: refusals before ``pick`` gives up the heap walk for a linear scan
    SEARCH_LIMIT = 32

    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.targets = [t for t in targets if t.weight > 0]
        n = len(self.targets)
        self.clock = clock
        #: time reference of the keys (a clock value)
        self.ref = clock()
        self.index = {t.id: i for i, t in enumerate(self.targets)}
        self.log_weight = [math.log(t.weight) for t in self.targets]
        #: ewma and in_flight as last ranked
        self.ewma: list[float | None] = [None] * n
        self.in_flight = [0] * n
        #: clock value when each target was last heard from
        self.heard = [self.ref] * n
        self.seq = list(range(-n, 0))
        self.counter = 0
        #: targets with a sample: key (log(ewma) + (heard - ref) / DECAY + log(load), seq)
        self.sampled = IndexedHeap(n)
        #: targets without one: key (log(load), seq), plus the average's log at pick time
        self.unsampled = IndexedHeap(n)
        #: sum over sampled targets of ewma * exp((heard - ref) / DECAY), and their count
        self.total = 0.0
        self.count = 0
        self._changes = 0
        for i in range(n):
            self._rank(i)

    # -- ranking ------------------------------------------------------------
    def _term(self, i: int) -> float:
        ewma = self.ewma[i]
        return 0.0 if ewma is None else max(ewma, FLOOR) * math.exp((self.heard[i] - self.ref) / DECAY)

    def _rank(self, i: int, heard: float | None = None) -> None:
        """Take the target's current numbers (and ``heard`` time) and re-rank it."""
        runtime = self.targets[i].runtime
        if self.ewma[i] is not None:
            self.total -= self._term(i)
            self.count -= 1
        if heard is not None:
            self.heard[i] = heard
        self.ewma[i] = runtime.ewma
        self.in_flight[i] = runtime.in_flight
        if self.ewma[i] is not None:
            self.total += self._term(i)
            self.count += 1
        self._changes += 1
        if self._changes > 1024 + len(self.targets):  # float drift of the running sum
            self._sum()
        self._key(i)

    def _sum(self) -> None:
        self._changes = 0
        self.total = sum(self._term(i) for i in range(len(self.targets)))
        self.count = sum(1 for e in self.ewma if e is not None)

    def _key(self, i: int) -> None:
        load = math.log(max(self.in_flight[i], 0) + 1) - self.log_weight[i]
        ewma = self.ewma[i]
        if ewma is None:
            self.sampled.remove(i)
            self.unsampled.set(i, (load, self.seq[i]))
        else:
            self.unsampled.remove(i)
            score = math.log(max(ewma, FLOOR)) + (self.heard[i] - self.ref) / DECAY + load
            self.sampled.set(i, (score, self.seq[i]))

    def _rebase(self, now: float) -> None:
        """Move the time reference to ``now`` and rebuild (O(n), every REBASE seconds)."""
        self.ref = now
        n = len(self.targets)
        self.sampled, self.unsampled = IndexedHeap(n), IndexedHeap(n)
        for i in range(n):
            self._key(i)
        self._sum()

    def _refresh(self, i: int, now: float) -> bool:
        """Re-rank ``i`` if its runtime numbers changed; True if they did."""
        runtime = self.targets[i].runtime
        ewma, in_flight = runtime.ewma, runtime.in_flight
        if ewma == self.ewma[i] and in_flight == self.in_flight[i]:
            return False
        # a new sample, or a request finished: its average is current again
        fresh = ewma != self.ewma[i] or in_flight < self.in_flight[i]
        self._rank(i, now if fresh else None)
        return True

    def _now(self) -> float:
        now = self.clock()
        if now - self.ref > REBASE:
            self._rebase(now)
        return now

    def set_weights(self, weights: dict[str, float]) -> None:
        """New effective weights (slow start): re-rank every target."""
        self.log_weight = [math.log(max(weights.get(t.id, t.weight), 1e-9)) for t in self.targets]
        for i in range(len(self.targets)):
            self._key(i)

    def update(self, target: TargetInfo) -> None:
        """The target's in-flight count or latency changed: re-rank it (O(log n))."""
        i = self.index.get(target.id)
        if i is not None:
            self._refresh(i, self._now())

    # -- picking ------------------------------------------------------------
    def _offset(self, now: float) -> float:
        """What turns an unsampled key into a sampled one: the log of the
        (faded) average, in the keys' time frame, minus the edge."""
        if self.count and self.total > 0:
            return math.log(self.total / self.count) + UNSAMPLED_EDGE
        return math.log(FLOOR) + (now - self.ref) / DECAY + UNSAMPLED_EDGE

    def pick(self, ctx: Any, skip: Callable[[TargetInfo], bool]) -> TargetInfo | None:
        targets = self.targets
        now = self._now()
        stale: list[int] = []
        check = [True]

        def accept(i: int) -> bool:
            target = targets[i]
            runtime = target.runtime
            if check[0] and (runtime.ewma != self.ewma[i] or runtime.in_flight != self.in_flight[i]):
                stale.append(i)  # changed since last ranked: re-rank, then look again
                return False
            return not skip(target)

        i = -1
        for attempt in range(3):
            check[0] = attempt < 2
            i = first_of([(self.sampled, 0.0), (self.unsampled, self._offset(now))], accept, self.SEARCH_LIMIT)
            if not stale:
                break
            for s in stale:
                self._refresh(s, now)
            stale.clear()
        if i == GAVE_UP:
            i = self._scan(skip, now)
        if i < 0:
            return None
        self.counter += 1
        self.seq[i] = self.counter
        self._key(i)
        return targets[i]

    def _full_key(self, i: int, offset: float) -> tuple[float, int]:
        if i in self.sampled:
            return self.sampled.keys[i]
        score, tie = self.unsampled.keys[i]
        return (score + offset, tie)

    def _scan(self, skip: Callable[[TargetInfo], bool], now: float) -> int:
        for i in range(len(self.targets)):
            self._refresh(i, now)
        offset = self._offset(now)
        best, best_key = -1, None
        for i, target in enumerate(self.targets):
            key = self._full_key(i, offset)
            if (best_key is None or key < best_key) and not skip(target):
                best, best_key = i, key
        return best

    def score(self, target: TargetInfo) -> float:
        """The target's score now, ``ewma * fading * (in_flight + 1) / weight``
        (for tests and debugging)."""
        i = self.index[target.id]
        now = self._now()
        self._refresh(i, now)
        return math.exp(self._full_key(i, self._offset(now))[0] - (now - self.ref) / DECAY)
