"""Small fakes for the load-balancing unit tests (imported as ``lb_fakes``)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence
from urllib.parse import urlencode

from multidict import CIMultiDict

from kong_py.balancer.runtime import TargetRuntime
from kong_py.balancer.target import TargetInfo
from kong_py.proxy.context import Context, Request, UpstreamRequest


def target(name: str, weight: int = 100, *, id: str | None = None, upstream_id: str = "u1") -> TargetInfo:
    """A TargetInfo for ``name`` ("host:port"), with its own runtime state."""
    host, _, port = name.rpartition(":")
    target_id = id or f"id-{name}"
    entity = {"id": target_id, "upstream": {"id": upstream_id}, "target": name,
              "host": host, "port": int(port), "weight": weight}
    return TargetInfo.from_entity(entity, TargetRuntime(target_id))


def targets(spec: Iterable[tuple[str, int]] | Sequence[int]) -> list[TargetInfo]:
    """``targets([10, 10, 5])`` or ``targets([("a:80", 10), ...])``."""
    out = []
    for n, item in enumerate(spec):
        if isinstance(item, tuple):
            out.append(target(item[0], item[1]))
        else:
            out.append(target(f"10.0.0.{n + 1}:80", item))
    return out


def same_target(t: TargetInfo) -> TargetInfo:
    """A copy of ``t`` as a newer config snapshot builds it: another object,
    same id and the same (shared) runtime state."""
    return TargetInfo.from_entity(
        {"id": t.id, "upstream": {"id": t.upstream_id}, "target": t.target, "host": t.host,
         "port": t.port, "weight": t.weight}, t.runtime)


def ctx(*, path: str = "/", query: Sequence[tuple[str, str]] | str = (), headers: Sequence[tuple[str, str]] = (),
        client_ip: str = "192.0.2.1", captures: dict[str, str] | None = None,
        consumer: dict[str, Any] | None = None) -> Context:
    """A request context as the proxy builds it (no worker, no upstream)."""
    query_string = query if isinstance(query, str) else urlencode(list(query))
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in CIMultiDict(headers).items()]
    request = Request("GET", "http", path, path, query_string, raw, client_ip, 50000, "gateway.test", 8000)
    context = Context(request, UpstreamRequest("GET", path, query_string, CIMultiDict(headers)),
                      {"id": "route"}, None, None, None)
    if captures:
        context.uri_captures = captures
    context.consumer = consumer
    return context


def never(_: TargetInfo) -> bool:
    return False


def skipping(*names: str):
    """A skip callable refusing the targets called ``names``."""
    refused = set(names)
    return lambda t: t.target in refused


def start(algorithm: Any, t: TargetInfo) -> None:
    """What the core does when a try starts on ``t``."""
    t.runtime.in_flight += 1
    algorithm.update(t)


def finish(algorithm: Any, t: TargetInfo) -> None:
    """What the core does when that try ends."""
    t.runtime.in_flight -= 1
    algorithm.update(t)
