"""Least-connections: lowest (in_flight + 1) / weight, O(log n) re-ranking."""
from __future__ import annotations

import random
from collections import Counter

from lb_fakes import finish, never, same_target, skipping, start, target, targets

from kong_py_plugins.load_balancing.least_connections import LeastConnections


def load(t):
    return (t.runtime.in_flight + 1) / t.weight


def test_picks_the_lowest_load_per_weight():
    a, b, c = ts = targets([10, 20, 10])
    lc = LeastConnections({}, ts)
    a.runtime.in_flight, b.runtime.in_flight, c.runtime.in_flight = 1, 4, 0
    for t in ts:
        lc.update(t)
    assert lc.pick(None, never) is c  # 1/10 < 2/10 < 5/20
    c.runtime.in_flight = 3
    lc.update(c)
    assert lc.pick(None, never) is a  # 2/10 < 5/20 < 4/10


def test_equal_targets_take_turns():
    ts = targets([1, 1, 1])
    lc = LeastConnections({}, ts)
    names = [lc.pick(None, never).target for _ in range(9)]
    assert names == [t.target for t in ts] * 3


def test_ties_rotate_with_the_core_counting():
    ts = targets([5, 5])
    lc = LeastConnections({}, ts)
    served = []
    for _ in range(10):  # one request at a time: both always idle at pick time
        t = lc.pick(None, never)
        start(lc, t)
        finish(lc, t)
        served.append(t.target)
    assert Counter(served) == {ts[0].target: 5, ts[1].target: 5}
    assert served[:2] != [served[0]] * 2


def test_concurrent_load_follows_the_weights():
    ts = targets([30, 10, 20])
    lc = LeastConnections({}, ts)
    for _ in range(60):
        start(lc, lc.pick(None, never))
    assert [t.runtime.in_flight for t in ts] == [30, 10, 20]
    # requests finish at random; new ones keep the in-flight split by weight
    rng = random.Random(7)
    for _ in range(2000):
        busy = [t for t in ts if t.runtime.in_flight]
        finish(lc, rng.choice(busy))
        start(lc, lc.pick(None, never))
        assert max(load(t) for t in ts) - min(load(t) for t in ts) <= max(1 / t.weight for t in ts) + 1e-12


def test_never_changes_in_flight_itself():
    ts = targets([1, 2, 3])
    lc = LeastConnections({}, ts)
    for _ in range(50):
        lc.pick(None, never)
        lc.pick(None, skipping(ts[0].target))
    assert all(t.runtime.in_flight == 0 for t in ts)


def test_skipped_targets_are_passed_over():
    a, b, c = ts = targets([1, 1, 1])
    lc = LeastConnections({}, ts)
    b.runtime.in_flight = 5
    lc.update(b)
    assert lc.pick(None, skipping(a.target, c.target)) is b
    assert lc.pick(None, lambda t: True) is None
    seen = {lc.pick(None, skipping(a.target)).target for _ in range(4)}
    assert seen == {c.target}  # b is much busier: c, every time


def test_update_from_an_older_snapshot_counts_by_id():
    a, b = ts = targets([1, 1])
    lc = LeastConnections({}, ts)
    old_a = same_target(a)  # a request that started before the config change
    old_a.runtime.in_flight += 3
    lc.update(old_a)
    assert lc.pick(None, never) is b
    lc.update(target("unknown:80"))  # a target of another tier: ignored


def test_unreported_changes_are_noticed_at_pick_time():
    a, b = ts = targets([1, 1])
    lc = LeastConnections({}, ts)
    a.runtime.in_flight = 10  # nobody called update (e.g. counted on another snapshot)
    assert lc.pick(None, never) is b
    assert lc.pick(None, never) is b


def test_many_skipped_targets_fall_back_to_a_scan():
    ts = targets([1] * 100)
    lc = LeastConnections({}, ts)
    busy = ts[-1]
    down = {t.target for t in ts[:-2]}
    busy.runtime.in_flight = 3
    lc.update(busy)
    # 98 idle targets are skipped, more than SEARCH_LIMIT: the scan finds ts[-2]
    assert lc.pick(None, lambda t: t.target in down) is ts[-2]
    assert lc.pick(None, lambda t: t.target in down) is ts[-2]
    assert lc.pick(None, lambda t: t.target in down | {ts[-2].target}) is busy


def test_random_operations_match_a_brute_force_minimum():
    rng = random.Random(42)
    ts = targets([rng.randint(1, 50) for _ in range(40)])
    lc = LeastConnections({}, ts)
    for _ in range(3000):
        op = rng.random()
        t = rng.choice(ts)
        if op < 0.4:
            start(lc, t)
        elif op < 0.8 and t.runtime.in_flight:
            finish(lc, t)
        down = {x.target for x in rng.sample(ts, rng.randint(0, 39))}
        picked = lc.pick(None, lambda x: x.target in down)
        allowed = [x for x in ts if x.target not in down]
        assert picked is not None and picked.target not in down
        assert load(picked) == min(load(x) for x in allowed)
