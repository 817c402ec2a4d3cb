"""Smooth weighted round-robin in O(log n) per pick.

Each target's k-th pick is due at ``k / weight`` of a cycle; a heap always
yields the earliest due target (earliest-deadline-first). Over every cycle of
``sum(weights)`` picks each target is chosen exactly ``weight`` times, and its
picks are spread evenly through the cycle instead of coming in bursts.

Skipped targets are set aside while the heap yields the first target that is
not skipped, then put back with their turns up to that point counted as
used: the others keep their exact shares, a recovered target does not get a
burst of catch-up picks, and a skipped target costs work only about as often
as it would have been picked (not once per unit of its weight).
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Sequence

from kong_py.balancer.target import TargetInfo


class RoundRobin:
    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo]) -> None:
        # weight 0 never takes traffic (the core drops such targets already)
        self.targets = [t for t in targets if t.weight > 0]
        self.weights = [t.weight for t in self.targets]
        #: picks (or skipped turns) of each target in the current cycle
        self.counts = [0] * len(self.targets)
        self.heap = [(1 / w, i) for i, w in enumerate(self.weights)]
        heapq.heapify(self.heap)

    def set_weights(self, weights: dict[str, float]) -> None:
        """New effective weights (slow start): a fresh cycle with the new shares."""
        self.weights = [weights.get(t.id, t.weight) or 1e-9 for t in self.targets]
        self.counts = [0] * len(self.targets)
        self.heap = [(1 / w, i) for i, w in enumerate(self.weights)]
        heapq.heapify(self.heap)

    def _requeue(self, index: int) -> None:
        due = (self.counts[index] + 1) / self.weights[index]
        heapq.heappush(self.heap, (due, index))

    def _rebase(self) -> None:
        """Cycles are over: subtract them, so due times stay small and exact."""
        cycles = int(min(c // w for c, w in zip(self.counts, self.weights)))
        self.counts = [c - cycles * w for c, w in zip(self.counts, self.weights)]
        self.heap = [((c + 1) / w, i) for i, (c, w) in enumerate(zip(self.counts, self.weights))]
        heapq.heapify(self.heap)

    def pick(self, ctx: Any, skip: Callable[[TargetInfo], bool]) -> TargetInfo | None:
        heap, targets = self.heap, self.targets
        skipped: list[int] = []
        chosen = -1
        now = 0.0
        while heap:
            now, index = heapq.heappop(heap)
            if not skip(targets[index]):
                chosen = index
                break
            skipped.append(index)
        if chosen < 0:  # all skipped: no turn was taken, put everything back
            for index in skipped:
                self._requeue(index)
            return None
        counts, weights = self.counts, self.weights
        counts[chosen] += 1
        self._requeue(chosen)
        for index in skipped:
            # its turns due up to ``now`` are used up, as if it had been picked
            counts[index] = max(counts[index], int(now * weights[index]))
            self._requeue(index)
        if heap and heap[0][0] > 1.0:
            self._rebase()
        return targets[chosen]
