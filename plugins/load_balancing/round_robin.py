"""Smooth weighted round-robin in O(log n) per pick.

Each target's k-th pick is due at ``k / weight`` of a cycle; a heap always
yields the earliest due target (earliest-deadline-first). Over every cycle of
``sum(weights)`` picks each target is chosen exactly ``weight`` times, and its
picks are spread evenly through the cycle instead of coming in bursts.
Skipped targets are advanced as if picked, so the others keep their exact
shares and a recovered target does not get a burst of catch-up picks.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Sequence

from kong_py.balancer.target import TargetInfo


class RoundRobin:
    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo]) -> None:
        self.targets = list(targets)
        self.weights = [t.weight for t in self.targets]
        self.counts = [0] * len(self.targets)
        self.heap = [(1 / w, i) for i, w in enumerate(self.weights)]
        heapq.heapify(self.heap)

    def _advance(self, index: int) -> None:
        """Count one pick of ``index`` and requeue it at its next due time."""
        self.counts[index] += 1
        due = (self.counts[index] + 1) / self.weights[index]
        heapq.heapreplace(self.heap, (due, index))
        if self.heap[0][0] > 1.0:
            self._rebase()

    def _rebase(self) -> None:
        """A cycle is over: subtract it, so due times stay small and exact."""
        self.counts = [max(0, c - w) for c, w in zip(self.counts, self.weights)]
        self.heap = [((c + 1) / w, i) for i, (c, w) in enumerate(zip(self.counts, self.weights))]
        heapq.heapify(self.heap)

    def pick(self, ctx: Any, skip: Callable[[TargetInfo], bool]) -> TargetInfo | None:
        skipped: set[int] = set()
        while len(skipped) < len(self.targets):
            index = self.heap[0][1]
            self._advance(index)
            target = self.targets[index]
            if not skip(target):
                return target
            skipped.add(index)
        return None
