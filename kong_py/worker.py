"""One worker's state: the current snapshot, runtime state, the upstream client,
background tasks, and how a new snapshot replaces the old one."""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Coroutine, TextIO

from .balancer.runtime import Runtime
from .config import Config
from .db.store import Store
from .plugin_manager import PluginManager
from .proxy.client import UpstreamClient
from .snapshot import Snapshot, build_snapshot

log = logging.getLogger("kong_py.worker")

class Stats:
    """Counters the proxy bumps (plain integers: nothing on the hot path formats)."""

    __slots__ = ("total_requests", "in_flight")

    def __init__(self) -> None:
        self.total_requests = 0
        self.in_flight = 0


class Worker:
    def __init__(self, config: Config, store: Store, plugins: PluginManager,
                 runtime: Runtime | None = None) -> None:
        self.config = config
        self.store = store
        self.plugins = plugins
        self.runtime = runtime or Runtime()
        self.snapshot: Snapshot = build_snapshot(
            {"version": 0, "services": [], "routes": [], "upstreams": [], "targets": [], "plugins": []},
            plugins, self.runtime)
        #: keep-alive connections to targets (and forward proxies), shared by all requests
        self.client = UpstreamClient(keepalive_idle_timeout=config.upstream_keepalive_idle_timeout)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rebuild_lock = asyncio.Lock()
        self.stats = Stats()
        self.node_id = _node_id(config)
        self.access_log: TextIO | None = None
        self._health_seq = 0

    async def start(self) -> None:
        if self.config.access_log is not None:
            self.config.access_log.parent.mkdir(parents=True, exist_ok=True)
            # block-buffered; flushed every second so the proxy never waits on the disk
            self.access_log = open(self.config.access_log, "a", buffering=1 << 16, encoding="utf-8")
            self.spawn(self._flush_access_log())
        await self.rebuild()
        await self.sync_health()
        self.spawn(self._poll())
        for impl in self.plugins.pm.hook.init_worker.get_hookimpls():
            try:
                impl.function(**({"worker": self} if "worker" in impl.argnames else {}))
            except Exception:
                log.exception("init_worker of plugin %s failed", impl.plugin_name)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        if self.access_log is not None:
            self.access_log.close()
            self.access_log = None

    def notify(self, target: Any) -> None:
        """Tell the current balancer of the target's upstream that its load changed.

        The current snapshot's balancer, not the one the request started with:
        after a config change, the new balancer is the one that picks.
        """
        balancer = self.snapshot.balancers.get(target.upstream_id)
        if balancer is not None:
            balancer.notify(target)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task for the worker's lifetime (cancelled at stop)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def rebuild(self) -> None:
        """Read the store and swap in a new snapshot (never an older one)."""
        async with self._rebuild_lock:
            # built in a thread: hashing rings of large upstreams take a while,
            # and the proxy on this loop must not wait for them
            snapshot = await asyncio.to_thread(self._build, self.snapshot.version)
            if snapshot is not None:
                self.snapshot = snapshot
                log.debug("configuration version %s loaded", snapshot.version)

    def _build(self, current: int) -> Snapshot | None:
        data = self.store.dump()
        if data["version"] == current and current:
            return None
        return build_snapshot(data, self.plugins, self.runtime)

    async def _flush_access_log(self) -> None:
        while self.access_log is not None:
            await asyncio.sleep(1)
            self.access_log.flush()

    async def _poll(self) -> None:
        """Notice changes written by other workers or nodes sharing the store."""
        while True:
            await asyncio.sleep(self.config.db_update_frequency)
            try:
                version = await asyncio.to_thread(self.store.version)
                if version != self.snapshot.version:
                    await self.rebuild()
                await self.sync_health()
            except Exception:
                log.exception("could not refresh the configuration; keeping the current one")

    async def set_health(self, target_id: str, healthy: bool) -> None:
        """Set a target's health here at once, and for every other worker through the store."""
        self.runtime.set_healthy(target_id, healthy)
        await asyncio.to_thread(self.store.set_health, target_id, healthy)

    async def sync_health(self) -> None:
        """Apply health changes that other workers or nodes recorded."""
        for target_id, healthy, seq in await asyncio.to_thread(self.store.health_since, self._health_seq):
            self.runtime.set_healthy(target_id, healthy)
            self._health_seq = max(self._health_seq, seq)


def _node_id(config: Config) -> str:
    """A node id that survives restarts (kept in the prefix, as Kong does)."""
    path = config.prefix / "node.id"
    try:
        text = path.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    node = str(uuid.uuid4())
    try:
        config.prefix.mkdir(parents=True, exist_ok=True)
        path.write_text(node)
    except OSError:
        pass
    return node
