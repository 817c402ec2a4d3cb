"""Weighted round-robin: exact shares per cycle, smooth spread, skipping."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from lb_fakes import never, skipping, target, targets

from kong_py_plugins.load_balancing.round_robin import RoundRobin


def picks(algorithm, count, skip=never):
    return [algorithm.pick(None, skip).target for _ in range(count)]


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Upper critical value of chi-square (Wilson-Hilferty; z=3.09 is p=0.001)."""
    return df * (1 - 2 / (9 * df) + z * (2 / (9 * df)) ** 0.5) ** 3


@pytest.mark.parametrize("weights", [[10, 10, 5], [70, 30], [1, 1], [3, 7, 11, 13], [1000, 1]])
def test_every_full_cycle_is_exact(weights):
    ts = targets(weights)
    rr = RoundRobin({}, ts)
    cycle = sum(weights)
    for _ in range(20):
        counts = Counter(picks(rr, cycle))
        assert counts == {t.target: t.weight for t in ts}


def test_split_40_40_20_and_70_30():
    for weights, share in (([10, 10, 5], [40, 40, 20]), ([70, 30], [70, 30])):
        ts = targets(weights)
        counts = Counter(picks(RoundRobin({}, ts), 1000))
        assert [counts[t.target] * 100 // 1000 for t in ts] == share


def test_picks_are_spread_not_bursts():
    heavy, light = ts = targets([70, 30])
    sequence = picks(RoundRobin({}, ts), 10 * 100)
    run = longest = 0
    for name in sequence:
        run = run + 1 if name == heavy.target else 0
        longest = max(longest, run)
    assert longest <= 3
    # and the light target never waits more than ceil(100 / 30) + 1 picks
    gaps = [i for i, name in enumerate(sequence) if name == light.target]
    assert max(b - a for a, b in zip(gaps, gaps[1:])) <= 4
    # 10/10/5: within any window of 5 picks each of a, b gets 2 (±1), c gets 1 (±1)
    ts = targets([10, 10, 5])
    sequence = picks(RoundRobin({}, ts), 500)
    for start in range(0, 495):
        window = Counter(sequence[start:start + 5])
        assert all(abs(window[t.target] - t.weight / 5) <= 1 for t in ts)


def test_weight_zero_is_never_picked():
    ts = [target("a:80", 5), target("zero:80", 0), target("b:80", 1)]
    assert "zero:80" not in picks(RoundRobin({}, ts), 600)
    assert RoundRobin({}, [target("zero:80", 0)]).pick(None, never) is None
    assert RoundRobin({}, []).pick(None, never) is None


def test_chi_square_goodness_of_fit_for_a_random_weighted_set():
    rng = random.Random(20240601)
    for _ in range(5):
        weights = [rng.randint(1, 100) for _ in range(rng.randint(3, 30))]
        ts = targets(weights)
        total = sum(weights)
        n = rng.randint(5_000, 20_000)  # deliberately not a whole number of cycles
        counts = Counter(picks(RoundRobin({}, ts), n))
        chi2 = sum((counts[t.target] - n * t.weight / total) ** 2 / (n * t.weight / total) for t in ts)
        assert chi2 < chi_square_critical(len(ts) - 1)
        # a smooth schedule is much closer than random draws would be: at most
        # one pick off per target at any point
        assert all(abs(counts[t.target] - n * t.weight / total) <= 1 for t in ts)


def test_weight_change_gives_a_new_exact_split():
    a, b = targets([70, 30])
    rr = RoundRobin({}, [a, b])
    picks(rr, 37)  # part way through a cycle
    # the admin changes weights: the core builds a new instance for the new snapshot
    a2, b2 = target(a.target, 20), target(b.target, 80)
    rr = RoundRobin({}, [a2, b2])
    for _ in range(5):
        assert Counter(picks(rr, 100)) == {a.target: 20, b.target: 80}


def test_skipped_target_is_passed_over_and_others_keep_their_shares():
    ts = targets([10, 10, 5])
    a, b, c = ts
    rr = RoundRobin({}, ts)
    down = skipping(a.target)
    sequence = picks(rr, 150, down)
    assert a.target not in sequence
    assert Counter(sequence) == {b.target: 100, c.target: 50}


def test_recovered_target_gets_no_burst_of_catch_up_picks():
    ts = targets([10, 10, 5])
    a, b, c = ts
    rr = RoundRobin({}, ts)
    picks(rr, 7)
    picks(rr, 333, skipping(a.target))
    after = picks(rr, 25)
    assert after.count(a.target) <= 11
    run = longest = 0
    for name in after:
        run = run + 1 if name == a.target else 0
        longest = max(longest, run)
    assert longest <= 2
    # and the exact split is back from the next full cycle on
    for _ in range(5):
        assert Counter(picks(rr, 25)) == {a.target: 10, b.target: 10, c.target: 5}


def test_retry_skips_the_target_already_tried():
    ts = targets([1, 1, 1])
    rr = RoundRobin({}, ts)
    first = rr.pick(None, never)
    second = rr.pick(None, lambda t: t is first)
    third = rr.pick(None, lambda t: t in (first, second))
    assert len({first.target, second.target, third.target}) == 3
    assert rr.pick(None, lambda t: True) is None


def test_all_skipped_returns_none_and_changes_nothing():
    ts = targets([10, 10, 5])
    rr = RoundRobin({}, ts)
    before = picks(RoundRobin({}, ts), 50)
    for _ in range(10):
        assert rr.pick(None, lambda t: True) is None
    assert picks(rr, 50) == before


def test_skipping_a_heavy_target_costs_little():
    heavy, light = ts = targets([1000, 1])
    rr = RoundRobin({}, ts)
    calls = Counter()

    def down(t):
        calls[t.target] += 1
        return t is heavy

    assert picks(rr, 100, down) == [light.target] * 100
    # once per pick for the light one, and about once per pick for the heavy
    # one (it is set aside and put back past the light one's turn)
    assert calls[heavy.target] <= 2 * 100
