"""Latency: lowest ewma * (in_flight + 1) / weight, fading while idle."""
from __future__ import annotations

import math
import random

import pytest
from lb_fakes import finish, never, same_target, skipping, start, target, targets

from kong_py_plugins.load_balancing.latency import DECAY, Latency


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(algo, t, seconds):
    """What the core does when a response arrives from ``t``."""
    t.runtime.observe_latency(seconds)
    algo.update(t)


def test_lowest_ewma_per_weight():
    clock = Clock()
    a, b, c = ts = targets([100, 100, 100])
    algo = Latency({}, ts, clock)
    sample(algo, a, 0.3)
    sample(algo, b, 0.1)
    sample(algo, c, 0.2)
    assert algo.pick(None, never) is b
    sample(algo, b, 0.9)  # b got slow: 0.3 * 0.9 + 0.7 * 0.1 = 0.34
    assert algo.pick(None, never) is c


def test_weight_divides_the_ewma():
    clock = Clock()
    a, b = ts = targets([100, 300])
    algo = Latency({}, ts, clock)
    sample(algo, a, 0.1)
    sample(algo, b, 0.25)  # 0.25 / 300 < 0.1 / 100
    assert algo.pick(None, never) is b


def test_targets_without_a_sample_count_as_the_average():
    clock = Clock()
    a, b, new = ts = targets([1, 1, 1])
    algo = Latency({}, ts, clock)
    sample(algo, a, 0.1)
    sample(algo, b, 0.4)
    # the new target counts as 0.25: better than b, worse than a
    assert algo.score(new) == pytest.approx(0.25)
    assert algo.pick(None, skipping(a.target)) is new
    assert algo.pick(None, never) is a


def test_new_target_next_to_a_single_measured_one_gets_the_next_request():
    clock = Clock()
    old, new = ts = targets([1, 1])
    algo = Latency({}, ts, clock)
    for _ in range(3):  # one request at a time, all to the measured target
        clock.now += 1
        start(algo, old)
        sample(algo, old, 0.05)
        finish(algo, old)
    clock.now += 0.5
    assert algo.score(new) == pytest.approx(algo.score(old))
    t = algo.pick(None, never)
    assert t is new
    start(algo, t)
    sample(algo, t, 0.01)
    finish(algo, t)
    assert algo.pick(None, never) is new  # and now it is measured, and faster


def test_new_target_gets_traffic_when_the_others_are_slower():
    clock = Clock()
    a, b = targets([1, 1])
    algo = Latency({}, [a, b], clock)
    sample(algo, a, 0.5)
    sample(algo, b, 0.5)
    fresh = target("10.9.9.9:80", 1)
    algo = Latency({}, [a, b, fresh], clock)  # the target was just added
    start(algo, algo.pick(None, never))
    start(algo, algo.pick(None, never))
    start(algo, algo.pick(None, never))
    assert fresh.runtime.in_flight == 1  # one of the three, as one of three equals


def test_no_samples_at_all_take_turns():
    ts = targets([1, 1, 1])
    algo = Latency({}, ts, Clock())
    assert [algo.pick(None, never).target for _ in range(6)] == [t.target for t in ts] * 2


def test_concurrent_requests_are_spread_by_in_flight():
    clock = Clock()
    fast, slow = ts = targets([1, 1])
    algo = Latency({}, ts, clock)
    sample(algo, fast, 0.1)
    sample(algo, slow, 0.2)
    for _ in range(30):
        start(algo, algo.pick(None, never))
    # 0.1 * (n + 1) against 0.2 * (m + 1): about two to one
    assert (fast.runtime.in_flight, slow.runtime.in_flight) in ((20, 10), (19, 11), (21, 9))


def test_idle_target_fades_and_is_tried_again():
    clock = Clock()
    fast, slow = ts = targets([1, 1])
    algo = Latency({}, ts, clock)
    sample(algo, slow, 1.0)
    sample(algo, fast, 0.1)
    for _ in range(40):  # fast keeps answering in 0.1 s, slow stays idle (20 s)
        clock.now += 0.5
        t = algo.pick(None, never)
        assert t is fast
        start(algo, t)
        sample(algo, t, 0.1)
        finish(algo, t)
    # 1.0 * exp(-idle / 10) < 0.1 once idle > 23 s
    while (t := algo.pick(None, never)) is fast:
        clock.now += 0.5
        start(algo, t)
        sample(algo, t, 0.1)
        finish(algo, t)
        assert clock.now < 1100
    assert clock.now - 1000.0 >= DECAY * math.log(10) - 0.5
    t = algo.pick(None, never)
    assert t is slow
    start(algo, t)
    sample(algo, t, 1.0)
    finish(algo, t)  # heard from: its average counts in full again
    assert algo.pick(None, never) is fast


def test_ewma_change_is_seen_without_update():
    a, b = ts = targets([1, 1])
    algo = Latency({}, ts, Clock())
    sample(algo, a, 0.1)
    sample(algo, b, 0.2)
    a.runtime.observe_latency(5.0)  # the core did not call update (yet)
    assert algo.pick(None, never) is b


def test_update_from_an_older_snapshot_counts_by_id():
    a, b = ts = targets([1, 1])
    algo = Latency({}, ts, Clock())
    sample(algo, a, 0.1)
    sample(algo, b, 0.2)
    sample(algo, same_target(a), 3.0)
    assert algo.pick(None, never) is b


def test_skipping():
    a, b, c = ts = targets([1, 1, 1])
    algo = Latency({}, ts, Clock())
    for t, s in zip(ts, (0.1, 0.2, 0.3)):
        sample(algo, t, s)
    assert algo.pick(None, skipping(a.target)) is b
    assert algo.pick(None, skipping(a.target, b.target)) is c
    assert algo.pick(None, lambda t: True) is None
    assert all(t.runtime.in_flight == 0 for t in ts)


def test_random_operations_match_a_brute_force_minimum():
    rng = random.Random(9)
    clock = Clock()
    ts = targets([rng.randint(1, 20) for _ in range(60)])
    algo = Latency({}, ts, clock)
    heard = {t.id: 0.0 for t in ts}

    def faded(t):
        return max(t.runtime.ewma, 1e-6) * math.exp(-(clock.now - 1000.0 - heard[t.id]) / DECAY)

    def brute(t):
        sampled = [x for x in ts if x.runtime.ewma is not None]
        if t.runtime.ewma is None:
            ewma = sum(faded(x) for x in sampled) / len(sampled) if sampled else 1e-6
        else:
            ewma = faded(t)
        return ewma * (t.runtime.in_flight + 1) / t.weight

    for step in range(2000):
        clock.now += rng.random()
        t = rng.choice(ts)
        op = rng.random()
        if op < 0.3:
            start(algo, t)
        elif op < 0.6 and t.runtime.in_flight:
            sample(algo, t, rng.uniform(0.01, 2.0))
            heard[t.id] = clock.now - 1000.0
            finish(algo, t)
        down = {x.target for x in rng.sample(ts, rng.randint(0, 59))}
        picked = algo.pick(None, lambda x: x.target in down)
        best = min(brute(x) for x in ts if x.target not in down)
        assert brute(picked) == pytest.approx(best, rel=1e-8)
