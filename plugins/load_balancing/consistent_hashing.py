"""Consistent hashing: the same request key goes to the same target.

The key is Kong's ``get_value_to_hash`` (see ``hash_value``). It is hashed
(64-bit BLAKE2b, stable across restarts and workers) to one of the
upstream's ``slots`` points of a ring, like Kong's continuum, and the point's
owner gets the request. Every point of the ring has an owner:

* **Who owns a point** is decided per point by weighted rendezvous hashing:
  each target draws, from a random stream seeded by its own target string, a
  time for every point (exponential with rate = its weight), and the point
  goes to the earliest. So each point goes to a target with probability
  ``weight / total weight`` (the split follows the weights), and because a
  target's draws never depend on the other targets, adding a target only
  moves points *to* it (about 1/(N+1) of them when all weigh the same),
  removing it gives exactly those points back, and changing a weight only
  moves points to or from that target: keys never move between two
  targets that did not change. A target whose share rounds to no point at all
  still gets one (its first draw).

  Each target's stream yields its points in increasing time, and all are
  read up to a common horizon that reaches every point: building a ring
  costs about ``slots`` steps per target for a few targets and at most about
  ``slots * (ln(slots) + 1)`` for many (roughly 25 ms for 2-3 targets and
  60-100 ms for 10-1,000 targets at 10,000 slots, in CPython). Rings are
  cached by ``(slots, targets, weights)``, so a config change that does not
  touch an upstream does not rebuild its ring.

* **Skipped targets** (unhealthy, or already tried by this request): the
  pick walks clockwise from the key's point to the next point whose owner is
  not skipped, jumping over runs of the same owner; a skipped target's keys
  land on the following points' owners and come back when it recovers.

* **No key**: ``hash_on: none`` (Kong: "none results in a
  weighted-round-robin scheme"), and a request for which neither ``hash_on``
  nor ``hash_fallback`` gives a value, are balanced by weighted round-robin.

The key is computed once per request and kept in ``ctx.vars`` under
``HASH_VAR``; a plugin that sets that var first chooses the key itself (as a
Kong plugin can set ``balancer_data.hash_value``).
"""
from __future__ import annotations

import hashlib
from array import array
import math
import random
import uuid
from bisect import bisect_left
from collections import OrderedDict
from typing import Any, Callable, Sequence
from urllib.parse import unquote_plus

from kong_py.balancer.target import TargetInfo

from .round_robin import RoundRobin

#: ``ctx.vars`` key of the request's hash value (None: no value, balance by weight)
HASH_VAR = "balancer_hash_value"
#: how many rings are kept for reuse across config snapshots (10,000 slots: ~120 kB each)
RING_CACHE_SIZE = 64


def stable_hash(value: str) -> int:
    """A 64-bit hash that is the same on every worker, restart and platform."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


# -- the key ---------------------------------------------------------------

def hash_value(upstream: dict[str, Any], ctx: Any, rng: random.Random | None = None) -> str | None:
    """Kong's ``get_value_to_hash``: the request's value for ``hash_on``, else
    for ``hash_fallback``; None when there is none (or ``hash_on`` is none).

    ``hash_on: cookie`` with no such cookie makes up a value and sets the
    cookie on the response, so the client's next requests stick.
    """
    hash_on = upstream.get("hash_on") or "none"
    if hash_on == "none" or ctx is None:
        return None
    value = _value(upstream, ctx, hash_on, "hash_on", rng)
    if value is not None:
        return value
    fallback = upstream.get("hash_fallback") or "none"
    if fallback == "none":
        return None
    return _value(upstream, ctx, fallback, "hash_fallback", rng)


def _value(upstream: dict[str, Any], ctx: Any, hash_on: str, field: str, rng: random.Random | None) -> str | None:
    request = ctx.request
    if hash_on == "consumer":
        # the consumer, else the credential (Kong: authenticated_credential)
        for entity in (ctx.consumer, getattr(ctx, "credential", None), ctx.vars.get("authenticated_credential")):
            if isinstance(entity, dict) and entity.get("id") is not None:
                return str(entity["id"])
        return None
    if hash_on == "ip":
        return request.client_ip
    if hash_on == "header":
        name = upstream.get(f"{field}_header")
        values = request.headers.getall(name, None) if name else None
        # repeated headers count as one, values joined (as nginx's $http_ does)
        return ",".join(values) if values else None
    if hash_on == "cookie":
        name = upstream.get("hash_on_cookie")
        if not name:
            return None
        value = _cookie(request.headers.getall("Cookie", ()), name)
        if value is None:
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng else str(uuid.uuid4())
            path = upstream.get("hash_on_cookie_path") or "/"
            # Kong's exact attributes (its "Same-Site" spelling included)
            ctx.add_response_header("Set-Cookie", f"{name}={value}; Path={path}; Same-Site=Lax; HttpOnly")
        return value
    if hash_on == "path":
        return request.path
    if hash_on == "query_arg":
        name = upstream.get(f"{field}_query_arg")
        return _query_arg(request.query_string, name) if name else None
    if hash_on == "uri_capture":
        group = upstream.get(f"{field}_uri_capture")
        return (ctx.uri_captures or {}).get(group) if group else None
    return None


def _cookie(headers: Sequence[str], name: str) -> str | None:
    """The first cookie called ``name`` (nginx's ``$cookie_<name>``)."""
    for header in headers:
        for part in header.split(";"):
            key, eq, value = part.strip().partition("=")
            if eq and key.strip() == name:
                return value.strip()
    return None


def _query_arg(query_string: str, name: str) -> str | None:
    """The argument's value; repeated values sorted and joined with ``,``;
    an argument without ``=`` counts as ``true`` (as Kong's ``get_uri_args``)."""
    values: list[str] = []
    for part in query_string.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if unquote_plus(key) == name:
            values.append(unquote_plus(value) if eq else "true")
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return ",".join(sorted(values))


# -- the ring ----------------------------------------------------------------

class Ring:
    """``slots`` points, each owned by one of ``names`` (indexes into it)."""

    __slots__ = ("slots", "owner", "next_other", "points")

    def __init__(self, names: Sequence[str], weights: Sequence[int], slots: int) -> None:
        self.slots = slots
        owner = _assign(names, weights, slots)
        points: list[list[int]] = [[] for _ in names]
        for point, o in enumerate(owner):
            points[o].append(point)
        # arrays: 4 bytes a point instead of a list's pointer and int object
        self.owner = array("i", owner)
        #: per point, the next point clockwise with another owner (itself if none)
        self.next_other = array("i", _next_other(owner))
        #: per owner, its points in ring order
        self.points = [array("i", p) for p in points]


class _Stream:
    """One target's points in the order of their (unscaled) draw times.

    The times of a target at the ``slots`` points are i.i.d. Exp(1); this
    yields them sorted (Renyi's representation: the gap before the k-th
    smallest is Exp(1) / (slots - k)) together with their points (a random
    permutation, built by a lazy Fisher-Yates shuffle). Each point comes
    once, so reading every point with a time below ``x`` costs one step per
    such point. Seeded by the target string: ``random.Random(int).random()``
    is guaranteed to give the same sequence on every Python version, so the
    ring does not change with an upgrade, a restart or another worker.
    """

    __slots__ = ("rand", "slots", "rank", "time", "point", "swaps")

    def __init__(self, name: str, slots: int) -> None:
        self.rand = random.Random(stable_hash(name) ^ (slots << 64)).random
        self.slots = slots
        self.rank = -1
        self.time = 0.0
        self.point = -1
        self.swaps: dict[int, int] = {}
        self.next()

    def next(self) -> None:
        """Move to the next point (time becomes inf after the last one)."""
        rank = self.rank = self.rank + 1
        left = self.slots - rank
        if left <= 0:
            self.time = math.inf
            return
        rand, swaps = self.rand, self.swaps
        self.time -= math.log(1.0 - rand()) / left
        r = rank + int(rand() * left)
        self.point = swaps.get(r, r)
        swaps[r] = swaps.get(rank, rank)


def _assign(names: Sequence[str], weights: Sequence[int], slots: int) -> list[int]:
    """Owner of each point: the target with the smallest ``time / weight`` there.

    All streams are read up to a common horizon (in units of time / weight),
    raised until every point was reached by some target. A point's owner is
    then exact: any unread time is beyond the horizon.
    """
    if len(names) <= 1:
        return [0] * slots if names else []
    total = sum(weights)
    best = [math.inf] * slots
    owner = [-1] * slots
    streams = [_Stream(name, slots) for name in names]
    log = math.log
    # expected points nobody reached: slots * exp(-total * horizon) = 1 / e
    horizon = (math.log(slots) + 1.0) / total
    while True:
        for i, stream in enumerate(streams):
            # ``_Stream.next`` inlined: this loop is the whole cost of a ring
            scale = 1.0 / weights[i]
            limit = horizon * weights[i]
            rand, swaps = stream.rand, stream.swaps
            t, point, rank = stream.time, stream.point, stream.rank
            while t < limit:
                scaled = t * scale
                if scaled < best[point]:
                    best[point] = scaled
                    owner[point] = i
                rank += 1
                left = slots - rank
                if left <= 0:
                    t = math.inf
                    break
                t -= log(1.0 - rand()) / left
                r = rank + int(rand() * left)
                point = swaps.get(r, r)
                swaps[r] = swaps.get(rank, rank)
            stream.time, stream.point, stream.rank = t, point, rank
        if -1 not in owner:
            break
        horizon += 1.0 / total
    _at_least_one(names, slots, owner)
    return owner


def _at_least_one(names: Sequence[str], slots: int, owner: list[int]) -> None:
    """Give each target that won no point its earliest point (or its next
    ones, if that is the only point of another target)."""
    counts = [0] * len(names)
    for o in owner:
        counts[o] += 1
    for i in [i for i, c in enumerate(counts) if c == 0]:
        stream = _Stream(names[i], slots)
        while stream.time < math.inf:
            point = stream.point
            if counts[owner[point]] > 1:
                counts[owner[point]] -= 1
                counts[i] += 1
                owner[point] = i
                break
            stream.next()


def _next_other(owner: list[int]) -> list[int]:
    size = len(owner)
    result = list(range(size))
    # a point whose owner differs from the previous point's, to walk back from
    start = next((p for p in range(size) if owner[p] != owner[p - 1]), None)
    if start is None:
        return result  # a single owner: nowhere else to go
    for step in range(size):
        p = (start - 1 - step) % size
        q = (p + 1) % size
        result[p] = q if owner[q] != owner[p] else result[q]
    return result


_rings: "OrderedDict[tuple[Any, ...], Ring]" = OrderedDict()


def ring_for(names: Sequence[str], weights: Sequence[int], slots: int) -> Ring:
    key = (slots, tuple(names), tuple(weights))
    ring = _rings.get(key)
    if ring is None:
        ring = _rings[key] = Ring(names, weights, slots)
        if len(_rings) > RING_CACHE_SIZE:
            _rings.popitem(last=False)
    else:
        _rings.move_to_end(key)
    return ring


# -- the algorithm -------------------------------------------------------------

class ConsistentHashing:
    #: distinct owners looked at while walking past skipped targets before
    #: falling back to one exact pass over all targets
    WALK_LIMIT = 64

    def __init__(self, upstream: dict[str, Any], targets: Sequence[TargetInfo],
                 rng: random.Random | None = None) -> None:
        self.upstream = upstream
        self.rng = rng
        targets = [t for t in targets if t.weight > 0]
        # sorted by target string, so the ring does not depend on creation order
        seen: dict[str, int] = {}
        named: list[tuple[str, TargetInfo]] = []
        for t in targets:
            count = seen[t.target] = seen.get(t.target, 0) + 1
            named.append((t.target if count == 1 else f"{t.target}#{count}", t))
        named.sort(key=lambda pair: pair[0])
        self.targets = [t for _, t in named]
        self._ring_args = ([name for name, _ in named], [t.weight for t in self.targets],
                           int(upstream.get("slots") or 10000))
        self.ring: Ring | None = None
        # with hash_on none, only a key set by a plugin needs the ring: built then
        if named and (upstream.get("hash_on") or "none") != "none":
            self.ring = ring_for(*self._ring_args)
        self.round_robin = RoundRobin(upstream, targets)

    def key(self, ctx: Any) -> str | None:
        """The request's hash value, computed on its first try only."""
        if ctx is None:
            return None
        vars = ctx.vars
        if HASH_VAR not in vars:
            vars[HASH_VAR] = hash_value(self.upstream, ctx, self.rng)
        value = vars[HASH_VAR]
        return None if value is None else str(value)

    def pick(self, ctx: Any, skip: Callable[[TargetInfo], bool]) -> TargetInfo | None:
        value = self.key(ctx)
        if value is None or not self.targets:
            return self.round_robin.pick(ctx, skip)
        return self.lookup(value, skip)

    def lookup(self, value: str, skip: Callable[[TargetInfo], bool] = lambda t: False) -> TargetInfo | None:
        ring, targets = self.ring, self.targets
        if ring is None:
            if not targets:
                return None
            ring = self.ring = ring_for(*self._ring_args)
        start = stable_hash(value) % ring.slots
        owner, next_other = ring.owner, ring.next_other
        point = start
        refused: set[int] = set()
        for _ in range(self.WALK_LIMIT):
            i = owner[point]
            if i not in refused:
                if not skip(targets[i]):
                    return targets[i]
                refused.add(i)
                if len(refused) == len(targets):
                    return None
            point = next_other[point]
        return self._nearest(start, skip, refused)

    def _nearest(self, start: int, skip: Callable[[TargetInfo], bool], refused: set[int]) -> TargetInfo | None:
        """The first owner clockwise from ``start`` that is not skipped, by
        asking each target for its first point at or after ``start``."""
        ring = self.ring
        assert ring is not None
        best, best_distance = None, ring.slots
        for i, points in enumerate(ring.points):
            if i in refused or not points:
                continue
            k = bisect_left(points, start)
            point = points[k] if k < len(points) else points[0]
            distance = (point - start) % ring.slots
            if distance < best_distance and not skip(self.targets[i]):
                best, best_distance = self.targets[i], distance
        return best
