"""Balancer cost per request, by algorithm and number of targets.

Drives each upstream's real balancer (priority tiers + the registered
algorithm) the way the proxy does for one request: pick, count the request in
flight, tell the balancer, record a latency sample, release. Prints
microseconds per request for 2, 100 and 1,000 targets, so the O(log n) claim
can be checked: the 1,000-target column should be close to the 2-target one.

    .venv/bin/python bench/picks.py
"""
from __future__ import annotations

import argparse
import itertools
import timeit
from typing import Any, Callable

from kong_py.balancer.runtime import Runtime
from kong_py.balancer.target import TargetInfo
from kong_py.balancer.upstream import UpstreamBalancer
from kong_py.plugin_manager import PluginManager
from kong_py.proxy.context import Context, Request, UpstreamRequest
from multidict import CIMultiDict

ALGORITHMS = ("round-robin", "least-connections", "consistent-hashing", "latency")


def balancer(algorithm: str, count: int, plugins: PluginManager) -> UpstreamBalancer:
    runtime = Runtime()
    upstream = {"id": "u", "name": "bench", "algorithm": algorithm, "slots": 10000,
                "hash_on": "header", "hash_on_header": "x-user", "hash_fallback": "none"}
    targets = []
    for i in range(count):
        entity = {"id": f"t{i}", "upstream": {"id": "u"}, "target": f"10.{i // 250}.0.{i % 250 + 1}:80",
                  "host": f"10.{i // 250}.0.{i % 250 + 1}", "port": 80, "weight": 100 + i % 7}
        targets.append(TargetInfo.from_entity(entity, runtime.get(entity["id"])))
    return UpstreamBalancer(upstream, targets, plugins.algorithms[algorithm].factory, runtime)


def one_request(upstream: UpstreamBalancer) -> Callable[[], Any]:
    users = itertools.cycle([f"user-{i}".encode() for i in range(4096)])

    def run() -> None:
        request = Request("GET", "http", "/", "/", "", [(b"x-user", next(users))], "127.0.0.1", 1, "gw", 8000)
        ctx = Context(request, UpstreamRequest("GET", "/", "", CIMultiDict()), {}, None, None, None)
        target = upstream.pick(ctx)
        target.runtime.in_flight += 1
        upstream.notify(target)
        target.runtime.observe_latency(0.01)
        upstream.notify(target)
        target.runtime.in_flight -= 1
        upstream.notify(target)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="2,100,1000")
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    counts = [int(n) for n in args.targets.split(",")]
    plugins = PluginManager(["bundled"])
    print(f"{'algorithm':<20}" + "".join(f"{f'{n} targets':>14}" for n in counts) + "   (µs per request)")
    for algorithm in ALGORITHMS:
        cells = []
        for count in counts:
            run = one_request(balancer(algorithm, count, plugins))
            best = min(timeit.repeat(run, number=args.number, repeat=5)) / args.number
            cells.append(f"{best * 1e6:14.2f}")
        print(f"{algorithm:<20}" + "".join(cells))


if __name__ == "__main__":
    main()
