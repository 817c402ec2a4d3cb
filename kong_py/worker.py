"""One worker's state: the current snapshot, runtime state, the upstream client,
background tasks, and how a new snapshot replaces the old one."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, TextIO

from .balancer.runtime import Runtime
from .config import Config
from .db.store import Store
from .node import FOLLOW_INTERVAL, Node, node_id
from .plugin_manager import PluginManager
from .proxy.address_policy import AddressPolicy
from .proxy.client import UpstreamClient
from .snapshot import Snapshot, build_snapshot

log = logging.getLogger("kong_py.worker")

#: seconds between publications of this worker's in-flight counts to the node
LOAD_INTERVAL = 0.1

class Stats:
    """Counters the proxy bumps (plain integers: nothing on the hot path formats)."""

    __slots__ = ("total_requests", "in_flight", "incomplete_requests")

    def __init__(self) -> None:
        self.total_requests = 0
        self.in_flight = 0
        #: requests whose body did not arrive whole (never completed upstream)
        self.incomplete_requests = 0


class Worker:
    def __init__(self, config: Config, store: Store, plugins: PluginManager, node: Node,
                 runtime: Runtime | None = None) -> None:
        self.config = config
        self.store = store
        self.plugins = plugins
        #: what the node's workers share (configuration versions, connection limits, plugin state)
        self.node = node
        self.runtime = runtime or Runtime()
        self.runtime.node = node
        self.snapshot: Snapshot = build_snapshot(
            {"version": 0, "services": [], "routes": [], "upstreams": [], "targets": [], "plugins": []},
            plugins, self.runtime)
        #: what services and targets may not point at (upstream_deny_addresses); None: anything
        self.address_policy = AddressPolicy.from_config(config)
        #: keep-alive connections to targets (and forward proxies), shared by all requests
        self.client = UpstreamClient(keepalive_idle_timeout=config.upstream_keepalive_idle_timeout,
                                     max_head_size=config.client_max_head_size,
                                     max_header_size=config.client_max_header_size,
                                     address_policy=self.address_policy)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rebuild_lock = asyncio.Lock()
        self.stats = Stats()
        #: the proxy's HTTP server (its connection counters), once it runs
        self.edge: Any = None
        self.node_id = node_id(config.prefix)
        self.access_log: TextIO | None = None

    async def start(self) -> None:
        if self.config.access_log is not None:
            self.config.access_log.parent.mkdir(parents=True, exist_ok=True)
            # block-buffered; flushed every second so the proxy never waits on the disk
            self.access_log = open(self.config.access_log, "a", buffering=1 << 16, encoding="utf-8")
            self.spawn(self._flush_access_log())
        await self.rebuild()
        self.spawn(self._poll())
        self.spawn(self._follow())
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

    def in_flight(self, target_id: str) -> int:
        """Requests in flight to the target on the whole node (other workers' as of
        ``LOAD_INTERVAL`` ago)."""
        state = self.runtime.targets.get(target_id)
        mine = state.in_flight if state is not None else 0
        if self.node.workers < 2:
            return mine
        return mine + self.node.others_load().get(target_id, 0)

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
            snapshot = await asyncio.to_thread(self._build, self.snapshot)
            if snapshot is not None:
                self.snapshot = snapshot
                log.debug("configuration version %s loaded", snapshot.version)
            self.node.applied(self.snapshot.version)

    async def publish(self, timeout: float = 2.0) -> None:
        """Make the current configuration apply on every worker of the node.

        Called by the Admin API after a write, before it answers: the other
        workers notice the new version within ``FOLLOW_INTERVAL`` and rebuild;
        this waits (at most ``timeout``) until all live ones have.
        """
        version = self.snapshot.version
        self.node.publish(version)
        if self.node.workers < 2:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while lagging := self.node.lagging(version):
            if loop.time() > deadline:
                log.warning("configuration version %s not yet applied by worker(s) %s", version,
                            ", ".join(map(str, lagging)))
                return
            await asyncio.sleep(FOLLOW_INTERVAL / 2)

    def _build(self, current: Snapshot) -> Snapshot | None:
        data = self.store.dump()
        if data["version"] == current.version and current.version:
            return None
        return build_snapshot(data, self.plugins, self.runtime, current)

    async def _follow(self) -> None:
        """Apply, within milliseconds, configuration another worker of the node published."""
        loop = asyncio.get_running_loop()
        beat = loaded = loop.time()
        load: dict[str, int] = {}
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            try:
                if self.node.published() > self.snapshot.version:
                    await self.rebuild()
                    beat = loop.time()
                elif loop.time() - beat >= 1.0:
                    self.node.applied(self.snapshot.version)  # heartbeat
                    beat = loop.time()
                if self.node.workers > 1 and loop.time() - loaded >= LOAD_INTERVAL:
                    loaded = loop.time()
                    current = {k: v.in_flight for k, v in list(self.runtime.targets.items()) if v.in_flight}
                    if current != load:
                        self.node.publish_load(current)
                        load = current
            except Exception:
                log.exception("could not follow the node's configuration; keeping the current one")
                await asyncio.sleep(1)

    async def _flush_access_log(self) -> None:
        while self.access_log is not None:
            await asyncio.sleep(1)
            self.access_log.flush()

    async def _poll(self) -> None:
        """Notice changes written by other nodes sharing the store (and by workers
        of this node that could not publish them)."""
        while True:
            await asyncio.sleep(self.config.db_update_frequency)
            try:
                version = await asyncio.to_thread(self.store.version)
                if version != self.snapshot.version:
                    await self.rebuild()
            except Exception:
                log.exception("could not refresh the configuration; keeping the current one")
