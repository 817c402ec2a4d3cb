"""Least-connections: the target with the lowest ``(in_flight + 1) / weight``.

Targets sit in an indexed heap keyed by ``(load, last pick)``. The core
counts in-flight requests and calls ``update(target)`` whenever the count
changes, which re-ranks that one target in O(log n); ``pick`` reads the top.
Ties go to the target picked longest ago, so equally loaded targets take
turns instead of the first one getting every request.

Skipped targets (unhealthy, cooling down, already tried) are passed over by
a best-first walk down the heap, which looks only at targets ranked above the
answer; past ``SEARCH_LIMIT`` refusals it falls back to one linear scan.
This algorithm never changes ``in_flight`` itself.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from kong_py.balancer.target import TargetInfo

from .heap import GAVE_UP, IndexedHeap


class LeastConnections:
    #: refusals before ``pick`` gives up the heap walk for a linear scan
    SEARCH_LIMIT = 32

    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo]) -> None:
        self.targets = [t for t in targets if t.weight > 0]
        n = len(self.targets)
        self.index = {t.id: i for i, t in enumerate(self.targets)}
        self.weights = [t.weight for t in self.targets]
        #: in_flight as last ranked (the heap's view of each target)
        self.in_flight = [t.runtime.in_flight for t in self.targets]
        #: pick sequence of each target's last pick; creation order first
        self.seq = list(range(-n, 0))
        self.counter = 0
        self.heap = IndexedHeap(n)
        for i in range(n):
            self.heap.set(i, self._key(i))

    def _key(self, i: int) -> tuple[float, int]:
        return ((self.in_flight[i] + 1) / self.weights[i], self.seq[i])

    def _rank(self, i: int) -> None:
        self.in_flight[i] = self.targets[i].runtime.in_flight
        self.heap.set(i, self._key(i))

    def set_weights(self, weights: dict[str, float]) -> None:
        """New effective weights (slow start): re-rank every target."""
        self.weights = [weights.get(t.id, t.weight) or 1e-9 for t in self.targets]
        for i in range(len(self.targets)):
            self.heap.set(i, self._key(i))

    def update(self, target: TargetInfo) -> None:
        """The target's in-flight count changed: re-rank it (O(log n)).

        ``target`` may come from an older snapshot; the id and the shared
        runtime state are what count.
        """
        i = self.index.get(target.id)
        if i is not None and self.targets[i].runtime.in_flight != self.in_flight[i]:
            self._rank(i)

    def pick(self, ctx: Any, skip: Callable[[TargetInfo], bool]) -> TargetInfo | None:
        targets, in_flight = self.targets, self.in_flight
        stale: list[int] = []
        check = [True]

        def accept(i: int) -> bool:
            target = targets[i]
            if check[0] and target.runtime.in_flight != in_flight[i]:
                # a change nobody told us about (e.g. a retry on an older snapshot)
                stale.append(i)
                return False
            return not skip(target)

        for attempt in range(3):
            check[0] = attempt < 2
            i = self.heap.first(accept, self.SEARCH_LIMIT)
            if not stale:
                break
            for s in stale:
                self._rank(s)
            stale.clear()
        if i == GAVE_UP:
            i = self._scan(skip)
        if i < 0:
            return None
        self.counter += 1
        self.seq[i] = self.counter
        self.heap.set(i, self._key(i))
        return targets[i]

    def _scan(self, skip: Callable[[TargetInfo], bool]) -> int:
        """The lowest-ranked target that is not skipped, by a full scan."""
        best, best_key = -1, None
        for i, target in enumerate(self.targets):
            if target.runtime.in_flight != self.in_flight[i]:
                self._rank(i)
            key = self.heap.keys[i]
            if (best_key is None or key < best_key) and not skip(target):
                best, best_key = i, key
        return best
