"""The interface a load-balancing algorithm implements.

Algorithms are registered by plugins (``register_algorithms`` hook). The
gateway builds one instance per priority tier of an upstream each time the
configuration changes, and asks it for a target per try.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from ..proxy.context import Context
    from .target import TargetInfo

#: ``factory(upstream, targets) -> Algorithm``; ``upstream`` is the entity dict,
#: ``targets`` the tier's targets with weight > 0, in creation order.
AlgorithmFactory = Callable[[dict[str, Any], Sequence["TargetInfo"]], "Algorithm"]


class Algorithm(Protocol):
    def pick(self, ctx: "Context | None", skip: Callable[["TargetInfo"], bool]) -> "TargetInfo | None":
        """Choose a target for this try.

        ``skip(target)`` is True for targets that must not be chosen now
        (unhealthy, draining, cooling down, or already tried by this request);
        return None when every target is skipped. Must cost O(1) or O(log n)
        per call in the usual case.
        """
        ...

    # Optional:
    #
    # def update(self, target: TargetInfo) -> None:
    #     """``target.runtime.in_flight`` or ``target.runtime.ewma`` just changed.
    #
    #     Called on the algorithm of the *current* snapshot (after a config
    #     change, requests that started earlier still report here), so an
    #     algorithm that keeps targets in a heap by load can re-rank one target
    #     in O(log n) instead of scanning all of them on every pick.
    #     """
    #
    # def set_weights(self, weights: dict[str, float]) -> None:
    #     """Effective weights by target id while targets ramp up (slow start).
    #
    #     Called on the current snapshot's algorithm when they change (at most
    #     every window/64 seconds); without it the configured weights stay.
    #     """


class InOrder:
    """The first target that is not skipped, in creation order.

    The core's own algorithm: services that name a plain host (one target),
    and upstreams whose algorithm's plugin is no longer loaded, still work
    when no balancing plugin is.
    """

    def __init__(self, upstream: dict[str, Any], targets: Sequence["TargetInfo"]) -> None:
        self.targets = list(targets)

    def pick(self, ctx: "Context | None", skip: Callable[["TargetInfo"], bool]) -> "TargetInfo | None":
        for target in self.targets:
            if not skip(target):
                return target
        return None
