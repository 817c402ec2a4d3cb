"""Pick cost for 2 vs 1,000 targets (prints only: no timing asserts).

Run with ``-s`` to see the numbers.
"""
from __future__ import annotations

import itertools
import timeit

from lb_fakes import ctx, never, target

from kong_py_plugins.load_balancing.consistent_hashing import HASH_VAR, ConsistentHashing
from kong_py_plugins.load_balancing.latency import Latency
from kong_py_plugins.load_balancing.least_connections import LeastConnections
from kong_py_plugins.load_balancing.round_robin import RoundRobin


def pool(n):
    return [target(f"10.2.{i // 250}.{i % 250 + 1}:80", 1 + i % 7) for i in range(n)]


def per_call_us(fn, number=20_000):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def cases(ts):
    rr = RoundRobin({}, ts)
    lc = LeastConnections({}, ts)
    lat = Latency({}, ts)
    for i, t in enumerate(ts):
        t.runtime.observe_latency(0.05 + (i % 13) / 100)
        lat.update(t)
    ch = ConsistentHashing({"hash_on": "header", "hash_on_header": "X-User", "slots": 10000}, ts)
    keys = itertools.cycle([f"user-{i}" for i in range(4096)])
    c = ctx()

    def hashed():
        c.vars[HASH_VAR] = next(keys)
        return ch.pick(c, never)

    def request(algorithm):
        # a whole request as the core drives it: pick, in_flight + 1, update, in_flight - 1, update
        def run():
            t = algorithm.pick(None, never)
            t.runtime.in_flight += 1
            algorithm.update(t)
            t.runtime.in_flight -= 1
            algorithm.update(t)
        return run

    half = {t.target for t in ts[: len(ts) // 2]}
    return {
        "round-robin pick": lambda: rr.pick(None, never),
        "least-connections pick": lambda: lc.pick(None, never),
        "least-connections request": request(lc),
        "latency pick": lambda: lat.pick(None, never),
        "latency request": request(lat),
        "consistent-hashing pick (key)": hashed,
        "consistent-hashing pick, half the targets down": lambda: (
            c.vars.__setitem__(HASH_VAR, next(keys)), ch.pick(c, lambda t: t.target in half)),
    }


def test_pick_cost_2_vs_1000_targets():
    small, large = cases(pool(2)), cases(pool(1000))
    lines = [f"{'':50} {'2 targets':>12} {'1000 targets':>14}"]
    for name in small:
        lines.append(f"{name:50} {per_call_us(small[name]):10.2f}us {per_call_us(large[name]):12.2f}us")
    print("\n" + "\n".join(lines))
