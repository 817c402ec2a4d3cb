"""An indexed binary min-heap of target indexes, for algorithms that rank by load.

Every item is a small integer (the target's index in its tier) with a
comparable key. ``set(item, key)`` inserts or re-ranks one item in O(log n);
``first(accept)`` finds the smallest item that ``accept`` allows without
changing the heap, by a best-first walk down the tree: it looks only at items
smaller than the answer (and their children), so skipping k targets costs
O(k log k), not a full scan.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable

#: ``first`` gave up: more than ``limit`` items were refused
GAVE_UP = -2


class IndexedHeap:
    __slots__ = ("heap", "pos", "keys")

    def __init__(self, size: int) -> None:
        self.heap: list[int] = []
        #: item -> its position in ``heap``, -1 when not in the heap
        self.pos: list[int] = [-1] * size
        self.keys: list[Any] = [None] * size

    def __len__(self) -> int:
        return len(self.heap)

    def __contains__(self, item: int) -> bool:
        return self.pos[item] >= 0

    def top(self) -> int:
        """The smallest item (the heap must not be empty)."""
        return self.heap[0]

    def set(self, item: int, key: Any) -> None:
        """Insert ``item`` with ``key``, or move it to match its new key."""
        keys = self.keys
        p = self.pos[item]
        if p < 0:
            keys[item] = key
            self.heap.append(item)
            self.pos[item] = len(self.heap) - 1
            self._up(len(self.heap) - 1)
            return
        old = keys[item]
        keys[item] = key
        if key < old:
            self._up(p)
        elif old < key:
            self._down(p)

    def remove(self, item: int) -> None:
        p = self.pos[item]
        if p < 0:
            return
        heap, pos = self.heap, self.pos
        last = heap.pop()
        pos[item] = -1
        if p < len(heap):
            heap[p] = last
            pos[last] = p
            self._up(p)
            self._down(pos[last])

    def first(self, accept: Callable[[int], bool], limit: int) -> int:
        """The smallest item ``accept`` allows; -1 when none does, ``GAVE_UP``
        after refusing more than ``limit`` items (the caller then scans)."""
        heap, keys = self.heap, self.keys
        if not heap:
            return -1
        item = heap[0]
        if accept(item):
            return item
        size = len(heap)
        frontier: list[tuple[Any, int]] = []
        refused = 1
        p = 0
        while True:
            for child in (2 * p + 1, 2 * p + 2):
                if child < size:
                    heapq.heappush(frontier, (keys[heap[child]], child))
            if not frontier:
                return -1
            _, p = heapq.heappop(frontier)
            item = heap[p]
            if accept(item):
                return item
            refused += 1
            if refused > limit:
                return GAVE_UP

    # -- sifting --------------------------------------------------------
    def _up(self, p: int) -> None:
        heap, pos, keys = self.heap, self.pos, self.keys
        item = heap[p]
        key = keys[item]
        while p > 0:
            parent = (p - 1) >> 1
            other = heap[parent]
            if not key < keys[other]:
                break
            heap[p] = other
            pos[other] = p
            p = parent
        heap[p] = item
        pos[item] = p

    def _down(self, p: int) -> None:
        heap, pos, keys = self.heap, self.pos, self.keys
        size = len(heap)
        item = heap[p]
        key = keys[item]
        while True:
            child = 2 * p + 1
            if child >= size:
                break
            right = child + 1
            if right < size and keys[heap[right]] < keys[heap[child]]:
                child = right
            other = heap[child]
            if not keys[other] < key:
                break
            heap[p] = other
            pos[other] = p
            p = child
        heap[p] = item
        pos[item] = p


def first_of(parts: list[tuple[IndexedHeap, float]], accept: Callable[[int], bool], limit: int) -> int:
    """``IndexedHeap.first`` over several heaps at once.

    Each part is ``(heap, offset)``: its keys are ``(score, tiebreak)`` tuples
    and ``score + offset`` is what ranks its items against the other parts'.
    """
    frontier: list[tuple[float, Any, int, int]] = []
    for n, (heap, offset) in enumerate(parts):
        if heap.heap:
            score, tie = heap.keys[heap.heap[0]]
            frontier.append((score + offset, tie, n, 0))
    heapq.heapify(frontier)
    refused = 0
    while frontier:
        _, _, n, p = heapq.heappop(frontier)
        heap, offset = parts[n]
        item = heap.heap[p]
        if accept(item):
            return item
        refused += 1
        if refused > limit:
            return GAVE_UP
        size = len(heap.heap)
        for child in (2 * p + 1, 2 * p + 2):
            if child < size:
                score, tie = heap.keys[heap.heap[child]]
                heapq.heappush(frontier, (score + offset, tie, n, child))
    return -1
