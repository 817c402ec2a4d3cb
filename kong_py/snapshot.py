"""The immutable configuration a worker serves from.

Built from the store after every change and swapped in at once: the router,
each route's plugin chain and target plan, and one balancer per upstream.
Requests in flight keep the snapshot they started with.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .balancer.algorithm import InOrder
from .balancer.runtime import Runtime
from .balancer.target import TargetInfo
from .balancer.upstream import UpstreamBalancer
from .plugin_manager import Chain, PluginManager
from .proxy.router import Router

log = logging.getLogger("kong_py.snapshot")


@dataclass(slots=True)
class RoutePlan:
    """Everything the proxy needs for requests matched by one route."""

    route: dict[str, Any]
    service: dict[str, Any] | None
    chain: Chain
    balancer: UpstreamBalancer | None
    upstream: dict[str, Any] | None
    protocol: str
    service_path: str | None
    strip_path: bool
    preserve_host: bool
    retries: int
    #: seconds (the service's timeouts are in milliseconds)
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    #: forward proxy of this upstream as (protocol, host, port), if any
    proxy: tuple[str, str, int] | None
    host_header: str | None
    #: upstream statuses that make the gateway try another target
    retry_statuses: frozenset[int] = frozenset()
    #: verify the certificates of https targets (service.tls_verify=false turns it off)
    tls_verify: bool = True
    #: retry POST/PATCH after a timeout or a retryable status too (service.retry_non_idempotent)
    retry_non_idempotent: bool = False


@dataclass
class Snapshot:
    version: int
    router: Router[RoutePlan]
    router_uses_headers: bool
    balancers: dict[str, UpstreamBalancer] = field(default_factory=dict)  # by upstream id
    upstreams_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, TargetInfo] = field(default_factory=dict)


def build_snapshot(data: dict[str, Any], plugins: PluginManager, runtime: Runtime,
                   previous: Snapshot | None = None) -> Snapshot:
    """Compile a store dump into a snapshot (pure apart from runtime lookups).

    Against ``previous``, targets that start taking traffic (enabled again, or
    new in an upstream that has served requests) are marked as eligible from
    now, so slow start ramps them up.
    """
    targets_by_upstream: dict[str, list[dict[str, Any]]] = {}
    for target in data["targets"]:
        targets_by_upstream.setdefault(target["upstream"]["id"], []).append(target)

    balancers: dict[str, UpstreamBalancer] = {}
    upstreams_by_name: dict[str, dict[str, Any]] = {}
    all_targets: dict[str, TargetInfo] = {}
    for upstream in data["upstreams"]:
        infos = [TargetInfo.from_entity(t, runtime.get(t["id"])) for t in targets_by_upstream.get(upstream["id"], [])]
        for info in infos:
            all_targets[info.id] = info
        if previous is not None:
            _mark_new_traffic(infos, previous, upstream["id"], runtime)
        balancers[upstream["id"]] = _balancer(upstream, infos, plugins, runtime)
        upstreams_by_name[upstream["name"]] = upstream
    runtime.forget(set(all_targets))

    services = {s["id"]: s for s in data["services"]}
    chains = _plugin_configs(data["plugins"], plugins)
    plans = []
    uses_headers = False
    for route in data["routes"]:
        service = services.get((route.get("service") or {}).get("id"))
        if service is not None and not service.get("enabled", True):
            continue
        uses_headers = uses_headers or bool(route.get("headers"))
        upstream = upstreams_by_name.get(service["host"]) if service is not None else None
        targets = balancers[upstream["id"]].targets if upstream is not None else ()
        chain = plugins.chain(_route_plugins(chains, route, service).items(), upstream, targets)
        plans.append((route, _plan(route, service, chain, balancers, upstreams_by_name, plugins, runtime)))
    return Snapshot(version=data["version"], router=Router(plans), router_uses_headers=uses_headers,
                    balancers=balancers, upstreams_by_name=upstreams_by_name, targets=all_targets)


def _mark_new_traffic(infos: list[TargetInfo], previous: Snapshot, upstream_id: str, runtime: Runtime) -> None:
    before = previous.balancers.get(upstream_id)
    if before is None or not any(t.runtime.stats.selected for t in before.targets):
        return  # an upstream that has taken no traffic yet starts at full weight
    now = runtime.clock()
    for info in infos:
        old = previous.targets.get(info.id)
        if info.enabled and (old is None or not old.enabled):
            info.runtime.since = now


def _balancer(upstream: dict[str, Any], targets: list[TargetInfo], plugins: PluginManager,
              runtime: Runtime) -> UpstreamBalancer:
    info = plugins.algorithms.get(upstream["algorithm"]) or plugins.algorithms.get(
        plugins.algorithm_aliases.get(upstream["algorithm"], ""))
    if info is None:  # the plugin that registered it was removed from the allow-list
        log.error("upstream %s uses algorithm '%s', which no loaded plugin provides; "
                  "using the targets in order", upstream["name"], upstream["algorithm"])
        return UpstreamBalancer(upstream, targets, InOrder, runtime)
    return UpstreamBalancer(upstream, targets, info.factory, runtime)


def _plan(route: dict[str, Any], service: dict[str, Any] | None, chain: Chain,
          balancers: dict[str, UpstreamBalancer], upstreams: dict[str, dict[str, Any]],
          plugins: PluginManager, runtime: Runtime) -> RoutePlan:
    if service is None:  # a route without a service can only be answered by plugins
        return RoutePlan(route, None, chain, None, None, "http", None, route.get("strip_path", True),
                         route.get("preserve_host", False), 0, 60.0, 60.0, 60.0, None, None)
    upstream = upstreams.get(service["host"])
    if upstream is not None:
        balancer = balancers[upstream["id"]]
    else:
        # a plain host: a one-target balancer, so both kinds share one code path
        synthetic = {"id": f"service:{service['id']}", "upstream": {"id": f"service:{service['id']}"},
                     "target": f"{service['host']}:{service['port']}", "host": service["host"],
                     "port": service["port"], "protocol": service["protocol"], "weight": 1}
        info = TargetInfo.from_entity(synthetic, runtime.get(synthetic["id"]))
        balancer = UpstreamBalancer({"name": service["host"], "id": synthetic["id"]}, [info], InOrder, runtime)
    proxy = (upstream or {}).get("proxy")
    return RoutePlan(
        route=route, service=service, chain=chain, balancer=balancer, upstream=upstream,
        protocol=service["protocol"], service_path=service.get("path"),
        strip_path=route.get("strip_path", True), preserve_host=route.get("preserve_host", False),
        retries=service.get("retries", 5),
        connect_timeout=service["connect_timeout"] / 1000,
        read_timeout=service["read_timeout"] / 1000,
        write_timeout=service["write_timeout"] / 1000,
        proxy=(proxy["protocol"], proxy["host"], proxy["port"]) if proxy else None,
        host_header=(upstream or {}).get("host_header"),
        retry_statuses=frozenset(service.get("retry_on_statuses") or ()),
        tls_verify=service.get("tls_verify") is not False,
        retry_non_idempotent=bool(service.get("retry_non_idempotent")),
    )


def _plugin_configs(entities: list[dict[str, Any]], plugins: PluginManager) -> dict[tuple[str | None, str | None], list[tuple[str, Any]]]:
    """Enabled plugin configs keyed by (service id, route id); None = any."""
    out: dict[tuple[str | None, str | None], list[tuple[str, Any]]] = {}
    for entity in entities:
        if not entity.get("enabled", True) or entity["name"] not in plugins.handlers:
            continue
        service = (entity.get("service") or {}).get("id")
        route = (entity.get("route") or {}).get("id")
        try:
            conf = plugins.parsed_config(entity["name"], entity.get("config"))
        except Exception:  # stored before a plugin upgrade changed its schema
            # no details: a config may hold secrets, and validation errors quote values
            log.error("plugin %s (%s) has a config its schema no longer accepts; skipped",
                      entity["name"], entity["id"])
            continue
        out.setdefault((service, route), []).append((entity["name"], conf))
    return out


def _route_plugins(configs: dict[tuple[str | None, str | None], list[tuple[str, Any]]],
                   route: dict[str, Any], service: dict[str, Any] | None) -> dict[str, Any]:
    """Kong's precedence: route+service, then route, then service, then global."""
    service_id = service["id"] if service else None
    chosen: dict[str, Any] = {}
    for key in ((service_id, route["id"]), (None, route["id"]), (service_id, None), (None, None)):
        for name, conf in configs.get(key, ()):
            chosen.setdefault(name, conf)
    return chosen
