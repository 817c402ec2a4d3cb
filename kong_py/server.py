"""Runs the gateway: the proxy and Admin API servers of each worker process,
graceful shutdown, and the worker processes themselves."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from typing import Any, Iterator

import uvicorn

from .admin.protect import check_admin_tls
from .config import Config, ConfigError, Listen
from .db.store import open_store
from .httpd import HttpServer, Limits
from .node import Node, NodeEnv, node_id, wipe
from .plugin_manager import PluginManager, PluginLoadError
from .worker import Worker

log = logging.getLogger("kong_py")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the gateway (two servers share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(config: Config) -> None:
    """Run the gateway in the foreground until SIGINT or SIGTERM."""
    _setup_logging(config)
    store = open_store(config)
    store.migrate()
    store.close()
    try:
        PluginManager(config.plugins)  # fail before binding when a plugin is missing
        check_admin_tls(config)
    except (PluginLoadError, ConfigError) as exc:
        raise SystemExit(f"Error: {exc}") from None
    proxy_sock = _bind(config.proxy_listen)
    admin_sock = _bind(config.admin_listen)
    log.info("proxy listening on %s, Admin API on %s, %d worker(s)", config.proxy_listen,
             config.admin_listen, config.workers)
    wipe(config.node_state_path)  # a new node: nothing of an earlier run is shared
    node_id(config.prefix)  # created once, before the workers read it
    if config.workers == 1:
        _run_worker(config, proxy_sock, admin_sock, 0)
        return
    children: dict[int, int] = {}  # pid -> worker index
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _run_worker(config, proxy_sock, admin_sock, index)
            finally:
                os._exit(0)
        children[pid] = index
    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is not None and children:
            log.warning("worker %d (pid %d) exited; %d worker(s) left", index, pid, len(children))
            _forget_worker(config, index)


def _forget_worker(config: Config, index: int) -> None:
    """Drop what a dead worker held in the node's shared state (its in-flight counts)."""
    try:
        env = NodeEnv(config.node_state_path)
        try:
            Node(env, index, config.workers).forget_worker(index)
        finally:
            env.close()
    except Exception:
        log.exception("could not clear the shared state of worker %d", index)


def _run_worker(config: Config, proxy_sock: socket.socket, admin_sock: socket.socket, index: int) -> None:
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        runner = asyncio.run
    runner(_worker_main(config, proxy_sock, admin_sock, index))


class RunningGateway:
    """One worker's proxy and Admin API servers on the running event loop.

    Used by each worker process and, in-process, by the test suite.
    """

    def __init__(self, config: Config, proxy_sock: socket.socket | None = None,
                 admin_sock: socket.socket | None = None, runtime: Any = None,
                 node: Node | None = None) -> None:
        self.config = config
        self.proxy_sock = proxy_sock or _bind(config.proxy_listen)
        self.admin_sock = admin_sock or _bind(config.admin_listen)
        self.runtime = runtime
        #: the node this worker belongs to; None: a node of its own (started fresh)
        self.node = node
        self._own_env: NodeEnv | None = None
        self.worker: Worker | None = None
        self._servers: list[Any] = []  # the proxy (HttpServer) and the Admin API (uvicorn)
        self._task: asyncio.Future[Any] | None = None

    async def start(self) -> Worker:
        from .admin.app import create_admin_app
        from .proxy.app import Proxy

        store = open_store(self.config)
        try:
            if self.node is None:
                self._own_env = NodeEnv(self.config.node_state_path, fresh=True)
                self.node = Node(self._own_env)
            store.migrate()
            worker = Worker(self.config, store, PluginManager(self.config.plugins), self.node, self.runtime)
            await worker.start()
        except BaseException:
            store.close()
            self._close_env()
            self.proxy_sock.close()
            self.admin_sock.close()
            raise
        self.worker = worker
        # Everything loaded so far (modules, schemas, the snapshot) lives as long as
        # the process: keep it out of the collector's way, so full collections stay
        # short and p99 latency with them.
        gc.collect()
        gc.freeze()
        # uvicorn's own start/stop lines (one per server) only at debug level
        quiet = self.config.logging_level if self.config.logging_level <= logging.DEBUG else \
            max(self.config.logging_level, logging.WARNING)
        common: dict[str, Any] = dict(lifespan="off", log_level=quiet, access_log=False,
                                      timeout_graceful_shutdown=self.config.graceful_timeout, loop="none",
                                      http="httptools", ws="none", proxy_headers=False, log_config=None)
        admin_tls: dict[str, Any] = {}
        if self.config.admin_tls:  # uvicorn builds the TLS context from the files
            admin_tls = dict(ssl_certfile=str(self.config.admin_ssl_cert),
                             ssl_keyfile=str(self.config.admin_ssl_cert_key))
        worker.edge = HttpServer(Proxy(worker), client_limits(self.config), self.config.graceful_timeout)
        self._servers = [worker.edge, _Server(uvicorn.Config(create_admin_app(worker), **common, **admin_tls))]
        self._task = asyncio.gather(self._servers[0].serve(sockets=[self.proxy_sock]),
                                    self._servers[1].serve(sockets=[self.admin_sock]))
        while not all(s.started for s in self._servers):
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return worker

    def request_stop(self) -> None:
        """Stop accepting; in-flight requests finish (up to graceful_timeout)."""
        for server in self._servers:
            server.should_exit = True

    async def wait(self) -> None:
        assert self._task is not None
        try:
            await self._task
        finally:
            if self.worker is not None:
                await self.worker.stop()
                self.worker.store.close()
            self._close_env()

    def _close_env(self) -> None:
        if self._own_env is not None:
            self._own_env.close()
            self._own_env = None

    async def stop(self) -> None:
        self.request_stop()
        await self.wait()


async def _worker_main(config: Config, proxy_sock: socket.socket, admin_sock: socket.socket,
                       index: int) -> None:
    env = NodeEnv(config.node_state_path)  # opened after the fork: LMDB's rule
    gateway = RunningGateway(config, proxy_sock, admin_sock, node=Node(env, index, config.workers))
    try:
        await gateway.start()
    except BaseException:
        env.close()
        raise
    log.info("worker %d ready", os.getpid())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, gateway.request_stop)
    try:
        await gateway.wait()
    finally:
        env.close()
    log.info("worker %d stopped", os.getpid())


def client_limits(config: Config) -> Limits:
    """The proxy port's intake limits and timeouts from the configuration."""
    return Limits(header_timeout=config.client_header_timeout, body_timeout=config.client_body_timeout,
                  keepalive_timeout=config.client_keepalive_timeout, max_head_size=config.client_max_head_size,
                  max_header_size=config.client_max_header_size, max_headers=config.client_max_headers,
                  max_connections=config.max_client_connections)


def _bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: headers and body go out as separate
    # writes, and Nagle + delayed ACK would hold the body back ~40 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"Error: cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _setup_logging(config: Config) -> None:
    """One format for the gateway's and uvicorn's messages."""
    logging.basicConfig(level=config.logging_level, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")

