"""The Admin API (Starlette): Kong's entity endpoints, health, status and node info.

Every write is validated and stored in a thread, then the worker builds and
swaps in a new snapshot before the response is sent, so the change applies to
the very next proxied request.
"""
from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlencode
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from .body import BodyError, read_body
from .dao import KINDS, Dao, Parent
from .errors import ApiError, json_response, not_found
from .metrics import metrics_endpoint
from .openapi import openapi_document
from .protect import AdminGuard

if TYPE_CHECKING:
    from ..worker import Worker

log = logging.getLogger("kong_py.admin")

Endpoint = Callable[[Request], Awaitable[Response]]


def kong_errors(fn: Endpoint) -> Endpoint:
    """Turn every failure into Kong's JSON error body; never a traceback."""
    async def wrapper(*args: Any) -> Response:
        request: Request = args[-1]  # also used on methods: (self, request)
        try:
            return await fn(*args)
        except ApiError as exc:
            return json_response(exc.status, exc.body)
        except BodyError as exc:
            return json_response(exc.status, {"message": exc.message})
        except Exception:
            log.exception("Admin API error on %s %s", request.method, request.url.path)
            return json_response(500, {"message": "An unexpected error occurred"})
    return wrapper


class AdminApi:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.dao = Dao(worker.store, worker.plugins, worker.address_policy)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(fn, *args)

    async def changed(self) -> None:
        """A write is stored: apply it here, then on every worker of the node, before answering."""
        await self.worker.rebuild()
        await self.worker.publish()

    async def parent(self, request: Request, spec: tuple[str, str, str] | None) -> Parent | None:
        """Resolve the parent of a nested endpoint: (path param, table, field)."""
        if spec is None:
            return None
        param, table, field = spec
        entity = await self.call(self.dao.find, table, request.path_params[param])
        if entity is None:
            raise not_found()
        return Parent(field, entity)

    # -- generic entity endpoints --------------------------------------------
    def collection(self, table: str, parent: tuple[str, str, str] | None = None) -> Endpoint:
        @kong_errors
        async def endpoint(request: Request) -> Response:
            owner = await self.parent(request, parent)
            if request.method == "GET":
                columns = {f"{owner.field}_id": owner.id} if owner else {}
                data, token = await self.call(lambda: self.dao.page(table, dict(request.query_params), **columns))
                body: dict[str, Any] = {"data": [self.dao.present(table, e) for e in data], "next": None}
                if token:  # Kong: "offset" only while there is a next page
                    body["next"] = f"{request.url.path}?{urlencode(_next_query(request, token))}"
                    body["offset"] = token
                return json_response(200, body)
            payload = await read_body(request)
            status, entity = await self.call(self.dao.create, table, payload, owner)
            await self.changed()
            return json_response(status, await self.call(self.dao.present, table, entity, True))
        return endpoint

    def item(self, table: str, param: str, parent: tuple[str, str, str] | None = None) -> Endpoint:
        @kong_errors
        async def endpoint(request: Request) -> Response:
            owner = await self.parent(request, parent)
            ident = request.path_params[param]
            method = request.method
            if method == "GET":
                entity = await self.call(self.dao.get, table, ident, owner)
                return json_response(200, await self.call(self.dao.present, table, entity, True))
            if method == "DELETE":
                await self.call(self.dao.delete, table, ident, owner)
                await self.changed()
                return json_response(204, None)
            payload = await read_body(request)
            if method == "PUT":
                status, entity = await self.call(self.dao.upsert, table, ident, payload, owner)
            else:
                status, entity = 200, await self.call(self.dao.patch, table, ident, payload, owner)
            await self.changed()
            return json_response(status, await self.call(self.dao.present, table, entity, True))
        return endpoint

    # -- special endpoints ---------------------------------------------------
    @kong_errors
    async def root(self, request: Request) -> Response:
        plugins = self.worker.plugins
        available = {name: {"version": getattr(h, "VERSION", "0.0.0"), "priority": h.PRIORITY}
                     for name, h in sorted(plugins.handlers.items())}
        in_use = sorted({p["name"] for p in await self.call(self.worker.store.list, "plugins")})
        config = self.worker.config
        return json_response(200, {
            "tagline": "Welcome to kong_py",
            "version": __version__,
            "hostname": socket.gethostname(),
            "node_id": self.worker.node_id,
            "pid": os.getpid(),
            "plugins": {"available_on_server": available, "enabled_in_cluster": in_use},
            "configuration": {
                "proxy_listen": [str(config.proxy_listen)], "admin_listen": [str(config.admin_listen)],
                "database": config.database, "prefix": str(config.prefix),
                "plugins": list(config.plugins), "log_level": config.log_level,
                "db_update_frequency": config.db_update_frequency, "workers": config.workers,
            },
            "algorithms": sorted(plugins.algorithms),
        })

    @kong_errors
    async def status(self, request: Request) -> Response:
        try:
            version = await self.call(self.worker.store.version)
            reachable = True
        except Exception:
            version, reachable = None, False
        stats = self.worker.stats
        return json_response(200 if reachable else 503, {
            "database": {"reachable": reachable},
            "server": {"total_requests": stats.total_requests, "in_flight": stats.in_flight,
                       "incomplete_requests": stats.incomplete_requests, **_edge_counters(self.worker)},
            "configuration_version": self.worker.snapshot.version,
            "store_version": version,
        })

    @kong_errors
    async def enabled_plugins(self, request: Request) -> Response:
        return json_response(200, {"enabled_plugins": sorted(self.worker.plugins.handlers)})

    @kong_errors
    async def plugin_schema(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.worker.plugins.handlers:
            raise ApiError(404, {"message": f"No plugin named '{name}'"})
        return json_response(200, self.worker.plugins.schema_json(name))

    @kong_errors
    async def route_service(self, request: Request) -> Response:
        route = await self.call(self.dao.get, "routes", request.path_params["route"])
        if not route.get("service"):
            raise not_found()
        return json_response(200, await self.call(self.dao.get, "services", route["service"]["id"]))

    def target_state(self, state: str) -> Endpoint:
        """``/drain``, ``/disable``, ``/enable``: store the target's state (every worker follows)."""
        @kong_errors
        async def endpoint(request: Request) -> Response:
            upstream = await self.call(self.dao.get, "upstreams", request.path_params["upstream"])
            target = await self.call(self.dao.patch, "targets", request.path_params["target"], {"state": state},
                                     Parent("upstream", upstream))
            await self.changed()
            return json_response(200, self.dao.present("targets", target))
        return endpoint


def _edge_counters(worker: "Worker") -> dict[str, int]:
    """Connections of the proxy's server (Kong's names where it has them)."""
    edge = worker.edge
    if edge is None:
        return {}
    return {"connections_active": len(edge.connections), "connections_accepted": edge.accepted_connections,
            "connections_refused": edge.refused_connections, "requests_refused": edge.refused_requests,
            "request_bodies_timed_out": edge.timed_out}


def _next_query(request: Request, token: str) -> dict[str, str]:
    """The query of a list's ``next`` link: the offset, keeping ``size`` and ``tags``."""
    query = {"offset": token}
    query.update({k: request.query_params[k] for k in ("size", "tags") if k in request.query_params})
    return query


def create_admin_app(worker: "Worker") -> Starlette:
    api = AdminApi(worker)
    entity = ("GET", "PUT", "PATCH", "DELETE")
    listing = ("GET", "POST")
    service_parent = ("service", "services", "service")
    route_parent = ("route", "routes", "route")
    upstream_parent = ("upstream", "upstreams", "upstream")
    #: (path, method) -> the schema of its JSON body, and the paged lists: for /openapi.json
    bodies: dict[tuple[str, str], type[BaseModel]] = {}
    lists: set[str] = set()

    def collection(path: str, table: str, parent: tuple[str, str, str] | None = None,
                   methods: tuple[str, ...] = listing) -> Route:
        lists.add(path)
        if "POST" in methods:
            bodies[(path, "POST")] = KINDS[table].schema
        return Route(path, api.collection(table, parent), methods=list(methods))

    def item(path: str, table: str, param: str, parent: tuple[str, str, str] | None = None) -> Route:
        bodies[(path, "PUT")] = bodies[(path, "PATCH")] = KINDS[table].schema
        return Route(path, api.item(table, param, parent), methods=list(entity))

    routes = [
        Route("/", api.root, methods=["GET"]),
        Route("/status", api.status, methods=["GET"]),
        Route("/metrics", kong_errors(metrics_endpoint(worker)), methods=["GET"]),
        collection("/services", "services"),
        item("/services/{service}", "services", "service"),
        collection("/services/{service}/routes", "routes", service_parent),
        item("/services/{service}/routes/{route}", "routes", "route", service_parent),
        collection("/services/{service}/plugins", "plugins", service_parent),
        item("/services/{service}/plugins/{plugin}", "plugins", "plugin", service_parent),
        collection("/routes", "routes"),
        item("/routes/{route}", "routes", "route"),
        Route("/routes/{route}/service", api.route_service, methods=["GET"]),
        collection("/routes/{route}/plugins", "plugins", route_parent),
        item("/routes/{route}/plugins/{plugin}", "plugins", "plugin", route_parent),
        collection("/upstreams", "upstreams"),
        item("/upstreams/{upstream}", "upstreams", "upstream"),
        collection("/upstreams/{upstream}/targets", "targets", upstream_parent),
        collection("/upstreams/{upstream}/targets/all", "targets", upstream_parent, methods=("GET",)),
        Route("/upstreams/{upstream}/targets/{target}/drain", api.target_state("DRAINING"), methods=["PUT", "POST"]),
        Route("/upstreams/{upstream}/targets/{target}/disable", api.target_state("DISABLED"), methods=["PUT", "POST"]),
        Route("/upstreams/{upstream}/targets/{target}/enable", api.target_state("ENABLED"), methods=["PUT", "POST"]),
        item("/upstreams/{upstream}/targets/{target}", "targets", "target", upstream_parent),
        collection("/plugins", "plugins"),
        Route("/plugins/enabled", api.enabled_plugins, methods=["GET"]),
        Route("/plugins/schema/{name}", api.plugin_schema, methods=["GET"]),
        Route("/schemas/plugins/{name}", api.plugin_schema, methods=["GET"]),
        item("/plugins/{plugin}", "plugins", "plugin"),
    ]
    for extra in worker.plugins.admin_routes:
        routes.append(Route(extra.path, kong_errors(extra.endpoint), methods=list(extra.methods)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return json_response(404, {"message": "Not found"})
        if exc.status_code == 405:
            return json_response(405, {"message": "Method not allowed"})
        return json_response(exc.status_code, {"message": exc.detail})

    document = orjson.dumps(openapi_document(routes, bodies, lists))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                     middleware=[Middleware(AdminGuard, config=worker.config)])
