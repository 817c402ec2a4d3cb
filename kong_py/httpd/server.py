"""Listening sockets, the set of open connections, the timeout sweep and a
graceful stop, for the proxy's HTTP server."""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from .cycle import App, Cycle
from .protocol import HttpProtocol, Limits

log = logging.getLogger("kong_py.httpd")

#: at most one "connection limit reached" line per this many seconds
LIMIT_LOG_INTERVAL = 10.0


class HttpServer:
    """Serves an ASGI application on sockets that are already bound.

    The interface follows uvicorn's ``Server`` where the gateway uses it:
    ``await serve(sockets)`` runs until ``should_exit`` is set, then stops
    accepting, lets requests in flight finish for up to ``graceful_timeout``
    seconds and closes everything; ``started`` tells when it listens.
    """

    def __init__(self, app: App, limits: Limits | None = None, graceful_timeout: float = 10.0) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.graceful_timeout = graceful_timeout
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = False
        self.should_exit = False
        #: a cached clock (loop time) for deadlines, moved on by the sweep
        self.now = 0.0
        # counters for /status and /metrics
        self.accepted_connections = 0
        self.refused_connections = 0
        #: requests answered by the server itself (400, 408, 414, 417, 431, 501...)
        self.refused_requests = 0
        #: request bodies that stopped arriving (client_body_timeout)
        self.timed_out = 0
        self._limit_logged = 0.0

    async def serve(self, sockets: list[socket.socket]) -> None:
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        servers = [await self.loop.create_server(lambda: HttpProtocol(self, self.app), sock=sock, backlog=2048)
                   for sock in sockets]
        self.started = True
        sweep = self._sweep_interval()
        swept = self.now
        try:
            while not self.should_exit:
                await asyncio.sleep(min(sweep, 0.1))
                self.now = now = self.loop.time()
                if now - swept >= sweep:
                    swept = now
                    for conn in list(self.connections):
                        conn.check(now)
        finally:
            for server in servers:
                server.close()
            await self._stop()

    def _sweep_interval(self) -> float:
        limits = self.limits
        shortest = min(limits.header_timeout, limits.body_timeout, limits.keepalive_timeout)
        return max(0.05, min(1.0, shortest / 4))

    async def _stop(self) -> None:
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.graceful_timeout
        while self.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in list(self.connections):
            conn.close()

    # -- called by connections -----------------------------------------------------
    def admit(self, conn: HttpProtocol) -> bool:
        """Take a new connection, unless the worker has ``max_connections`` open."""
        if len(self.connections) >= self.limits.max_connections:
            self.refused_connections += 1
            now = time.monotonic()
            if now - self._limit_logged >= LIMIT_LOG_INTERVAL:
                self._limit_logged = now
                log.warning("client connection limit reached (%d open on this worker): refusing new "
                            "connections (%d refused so far); raise max_client_connections if this is "
                            "expected load", len(self.connections), self.refused_connections)
            return False
        self.connections.add(conn)
        self.accepted_connections += 1
        return True

    def forget(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)

    def run(self, cycle: Cycle, app: App) -> asyncio.Task[None]:
        task = self.loop.create_task(cycle.run(app))
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
