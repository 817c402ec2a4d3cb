"""State shared by the workers of one node.

A node is one prefix: its workers (processes forked by ``gateway start``, or
gateways started in one process by tests) share an LMDB environment in
``<prefix>/node_state``. LMDB gives what nginx's shared dictionaries give
Kong: memory-mapped records that every process of the node reads without
locks and changes in short transactions serialised across processes (about
1 µs to read, 1.5 µs to write here), and it stays consistent when a worker
dies in the middle of one. The environment is created afresh when the node
starts; nothing in it outlives the node.

Core uses:

* configuration versions: a worker that wrote a change through the Admin API
  publishes the store's new version and waits (bounded) until every live
  worker of the node has built a snapshot of it;
* node-wide in-flight counts of targets with a connection limit
  (``max_conns``, half-open trials), one cell per worker so counts of a worker
  that died can be dropped.

Plugins open their own named databases with :meth:`NodeEnv.db` and use
:meth:`Node.read`/:meth:`Node.update`; the health checker keeps its per-target
state there.
"""
from __future__ import annotations

import os
import shutil
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import lmdb
import orjson

T = TypeVar("T")

#: upper bound of the environment (a sparse file: only what is used takes space)
MAP_SIZE = 256 * 1024 * 1024
#: a worker whose heartbeat is older than this is not waited for
PEER_STALE = 3.0
#: how often a worker checks for configuration published by another
FOLLOW_INTERVAL = 0.01

_U64 = struct.Struct("<Q")
_WORKER = struct.Struct("<qQd")  # pid, applied configuration version, heartbeat (wall clock)


class NodeEnv:
    """The node's LMDB environment, opened once per process (LMDB's rule).

    ``fresh=True`` wipes what a previous run of the node left; the process that
    starts the node does that once, before any worker opens it.
    """

    def __init__(self, path: Path, fresh: bool = False) -> None:
        self.path = Path(path)
        if fresh:
            wipe(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        self.env = lmdb.open(str(self.path), map_size=MAP_SIZE, max_dbs=64, subdir=True,
                             sync=False, metasync=False, writemap=True, readahead=False,
                             meminit=False, max_readers=512, mode=0o600)
        self.env.reader_check()  # reader slots left by processes that died
        self._dbs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.meta = self.db("node")
        self.inflight = self.db("inflight")

    def db(self, name: str) -> Any:
        """A named database of the environment (created on first use)."""
        handle = self._dbs.get(name)
        if handle is None:
            with self._lock:
                handle = self._dbs.get(name)
                if handle is None:
                    handle = self._dbs[name] = self.env.open_db(name.encode())
        return handle

    def close(self) -> None:
        self.env.close()


def node_id(prefix: Path) -> str:
    """The node's id: kept in the prefix, so it survives restarts (as Kong does).

    The process that starts the node calls this before forking its workers, so
    they all read the same id.
    """
    path = Path(prefix) / "node.id"
    try:
        text = path.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    new = str(uuid.uuid4())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new)
    except OSError:
        pass
    return new


def wipe(path: Path) -> None:
    """Remove a node's state directory (before the node's workers start)."""
    shutil.rmtree(path, ignore_errors=True)


class Node:
    """What one worker sees of its node: the shared environment and its own index.

    ``index`` numbers the node's workers from 0; it chooses the worker's cells
    in shared counters. ``workers`` is how many the node runs.
    """

    def __init__(self, env: NodeEnv, index: int = 0, workers: int = 1) -> None:
        self.env = env
        self.index = index
        self.workers = workers

    # -- generic access --------------------------------------------------------
    def write(self) -> Any:
        """A write transaction (``with node.write() as txn: txn.get(key, db=...)``).

        Serialised across the node's workers; keep it to a few reads and writes.
        """
        return self.env.env.begin(write=True)

    def view(self) -> Any:
        """A read-only transaction: one consistent view, no locks."""
        return self.env.env.begin()

    def read(self, db: Any, key: bytes) -> bytes | None:
        with self.env.env.begin(db=db) as txn:
            return txn.get(key)

    def update(self, db: Any, key: bytes, change: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        """Read-modify-write one record atomically for the whole node.

        ``change(old)`` returns ``(new, result)``: ``new`` is stored (``None``
        deletes the record; return ``old`` unchanged to leave it) and ``result``
        is returned. Keep ``change`` short: every worker's writes wait for it.
        """
        with self.env.env.begin(write=True, db=db) as txn:
            old = txn.get(key)
            new, result = change(old)
            if new is None:
                if old is not None:
                    txn.delete(key)
            elif new is not old:
                txn.put(key, new)
        return result

    def items(self, db: Any, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """The records of ``db`` whose key starts with ``prefix`` (from one consistent
        view), in key order."""
        out: list[tuple[bytes, bytes]] = []
        with self.env.env.begin(db=db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                out.append((bytes(key), bytes(value)))
        return out

    # -- configuration versions --------------------------------------------
    def applied(self, version: int) -> None:
        """Record that this worker serves ``version`` (also its heartbeat)."""
        record = _WORKER.pack(os.getpid(), version, time.time())
        with self.env.env.begin(write=True, db=self.env.meta) as txn:
            txn.put(b"worker:%d" % self.index, record)

    def publish(self, version: int) -> None:
        """Tell the node's other workers that the store holds ``version``."""
        def change(old: bytes | None) -> tuple[bytes | None, None]:
            if old is not None and _U64.unpack(old)[0] >= version:
                return old, None
            return _U64.pack(version), None
        self.update(self.env.meta, b"config", change)

    def published(self) -> int:
        value = self.read(self.env.meta, b"config")
        return _U64.unpack(value)[0] if value is not None else 0

    def lagging(self, version: int) -> list[int]:
        """Indexes of live workers that do not serve ``version`` yet."""
        now = time.time()
        out = []
        for key, value in self.items(self.env.meta, b"worker:"):
            pid, applied, beat = _WORKER.unpack(value)
            if applied < version and now - beat < PEER_STALE and pid_alive(pid):
                out.append(int(key[7:]))
        return out

    def forget_worker(self, index: int) -> None:
        """A worker is gone: drop its heartbeat and its in-flight counts."""
        with self.env.env.begin(write=True) as txn:
            txn.delete(b"worker:%d" % index, db=self.env.meta)
            txn.delete(b"load:%d" % index, db=self.env.meta)
            cursor = txn.cursor(db=self.env.inflight)
            for key, value in list(cursor):
                cells = _cells(value)
                if index < len(cells) and cells[index]:
                    cells[index] = 0
                    txn.put(key, _pack_cells(cells), db=self.env.inflight)

    # -- load of the other workers -----------------------------------------------
    def publish_load(self, in_flight: dict[str, int]) -> None:
        """This worker's requests in flight per target (for node-wide views)."""
        with self.env.env.begin(write=True, db=self.env.meta) as txn:
            txn.put(b"load:%d" % self.index, orjson.dumps(in_flight))

    def others_load(self) -> dict[str, int]:
        """Requests in flight per target on the node's other live workers (as last published)."""
        total: dict[str, int] = {}
        mine = b"load:%d" % self.index
        for key, value in self.items(self.env.meta, b"load:"):
            if key == mine:
                continue
            for target_id, count in orjson.loads(value).items():
                total[target_id] = total.get(target_id, 0) + count
        return total

    # -- connection limits -----------------------------------------------------
    def acquire(self, target_id: str, limit: int) -> bool:
        """Count one more request in flight to the target, unless the node
        already has ``limit`` in flight to it."""
        index = self.index

        def change(old: bytes | None) -> tuple[bytes | None, bool]:
            cells = _cells(old)
            if sum(cells) >= limit:
                return old, False
            if len(cells) <= index:
                cells.extend([0] * (index + 1 - len(cells)))
            cells[index] += 1
            return _pack_cells(cells), True
        return self.update(self.env.inflight, target_id.encode(), change)

    def release(self, target_id: str) -> None:
        index = self.index

        def change(old: bytes | None) -> tuple[bytes | None, None]:
            cells = _cells(old)
            if len(cells) <= index or cells[index] <= 0:
                return old, None
            cells[index] -= 1
            return (_pack_cells(cells) if any(cells) else None), None
        self.update(self.env.inflight, target_id.encode(), change)

    def in_flight(self, target_id: str) -> int:
        """Requests in flight to the target across the node (counted targets only)."""
        return sum(_cells(self.read(self.env.inflight, target_id.encode())))


def _cells(value: bytes | None) -> list[int]:
    if not value:
        return []
    return list(struct.unpack(f"<{len(value) // 4}i", value))


def _pack_cells(cells: list[int]) -> bytes:
    return struct.pack(f"<{len(cells)}i", *cells)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a detached daemon may linger as a zombie if nobody reaps it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
