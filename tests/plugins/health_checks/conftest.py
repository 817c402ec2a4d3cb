"""Fixtures for health-check tests: upstream servers that can be switched at run
time between behaviours, an injectable clock, and two workers of one node."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from kong_py.balancer.runtime import Runtime
from kong_py.node import Node, NodeEnv
from support import free_port

MODES = ("ok", "error", "busy", "refuse", "hang", "reset", "stream")


@dataclass
class Switchable:
    """A real HTTP server on loopback whose behaviour changes with ``await server.set(mode)``.

    ok: 200 JSON; error: 500; busy: 429 with Retry-After; refuse: nothing
    listens (connections are refused); hang: never answers; reset: sends the
    head and part of the body, then resets the connection; stream: 200, a
    chunked body of ``stream_chunks`` pieces ``stream_delay`` seconds apart.
    Requests to ``probe_path`` count as probes, the others as traffic.
    """

    name: str
    port: int
    probe_path: str = "/health"
    mode: str = "ok"
    probe_mode: str | None = None  # another behaviour for probes only
    retry_after: str = "1"
    stream_chunks: int = 5
    stream_delay: float = 0.2
    hits: int = 0
    probes: int = 0
    probe_headers: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def set(self, mode: str, probe_mode: str | None = None) -> None:
        assert mode in MODES, mode
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "refuse" and self._site is None:
            await self._listen()
        self.mode, self.probe_mode = mode, probe_mode

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        probe = request.path == self.probe_path
        mode = (self.probe_mode or self.mode) if probe else self.mode
        if probe:
            self.probes += 1
            self.probe_headers.append(dict(request.headers))
        else:
            self.hits += 1
        await request.read()
        if mode == "ok":
            return web.json_response({"upstream": self.name})
        if mode == "error":
            return web.json_response({"error": "boom"}, status=500)
        if mode == "busy":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": self.retry_after})
        if mode == "hang":
            await asyncio.sleep(3600)
        response = web.StreamResponse(status=200)
        response.content_type = "text/plain"
        await response.prepare(request)
        chunks = 2 if mode == "reset" else self.stream_chunks
        for n in range(chunks):
            await response.write(f"chunk {n}\n".encode())
            await asyncio.sleep(0.05 if mode == "reset" else self.stream_delay)
        if mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response


@pytest.fixture
async def switchable() -> AsyncIterator[Callable[..., Awaitable[Switchable]]]:
    """Factory: ``await switchable("a", mode="ok")``."""
    servers: list[Switchable] = []

    async def start(name: str, mode: str = "ok", **options: Any) -> Switchable:
        server = Switchable(name, free_port(), **options)
        await server.start()
        if mode != "ok":
            await server.set(mode)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class Clock:
    """An injectable monotonic clock: tests move it with ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime(clock: Clock) -> Runtime:
    return Runtime(clock=clock)


@pytest.fixture
async def node_pair(start_gateway: Callable[..., Awaitable[Any]], tmp_path: Any, clock: Clock
                    ) -> AsyncIterator[Callable[..., Awaitable[tuple[Any, Any]]]]:
    """Factory: two workers of one node in this process (one prefix, one store, one
    shared state, each with its own proxy and Admin API port)."""
    envs: list[NodeEnv] = []
    gateways: list[Any] = []

    async def start(**settings: Any) -> tuple[Any, Any]:
        prefix = tmp_path / "node"
        env = NodeEnv(prefix / "node_state", fresh=True)
        envs.append(env)
        first = await start_gateway(prefix=prefix, runtime=Runtime(clock=clock), workers=2,
                                    node=Node(env, 0, 2), **settings)
        second = await start_gateway(prefix=prefix, runtime=Runtime(clock=clock), workers=2,
                                     node=Node(env, 1, 2), **settings)
        gateways.extend((first, second))
        return first, second

    yield start
    for gateway in gateways:  # before the shared environment closes
        await gateway.session.close()
        await gateway.running.stop()
    for env in envs:
        env.close()
