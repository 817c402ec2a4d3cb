"""Registers the bundled load-balancing algorithms."""
from __future__ import annotations

from typing import Callable

from kong_py.hookspecs import hookimpl

from .consistent_hashing import ConsistentHashing
from .latency import Latency
from .least_connections import LeastConnections
from .round_robin import RoundRobin


class LoadBalancing:
    name = "load-balancing"
    PRIORITY = 0
    VERSION = "0.1.0"

    @hookimpl
    def register_algorithms(self, register: Callable[..., None]) -> None:
        register("round-robin", RoundRobin, aliases=("round_robin",))
        register("weighted-round-robin", RoundRobin, aliases=("weighted", "weighted_round_robin"))
        register("least-connections", LeastConnections, aliases=("least_conn", "least_connections", "least-conn"))
        register("consistent-hashing", ConsistentHashing, aliases=("consistent_hashing", "hash"))
        register("latency", Latency)
