"""Health records in the node's shared state (LMDB), with a log of changes.

Every worker of the node reads and writes the same records, so passive
outcomes from all workers add to the same counters and a probe claimed by one
worker is not sent by another. Each change appends the target's id to a log
under a growing sequence number; workers follow the log to learn, within
milliseconds, what the others changed, without rereading every record.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable, TypeVar

from .state import Health, reset

if TYPE_CHECKING:
    from kong_py.node import Node

T = TypeVar("T")

_SEQ = struct.Struct(">Q")  # big-endian: keys sort in sequence order
#: log entries kept; a worker that falls further behind rereads every record
LOG_KEEP = 4096


class SharedHealth:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.records = node.env.db("health")
        self.log = node.env.db("health_log")
        self.meta = node.env.db("health_meta")

    def get(self, target_id: str) -> Health | None:
        data = self.node.read(self.records, target_id.encode())
        return Health.decode(data) if data is not None else None

    def change(self, target_id: str, address: str, fn: Callable[[Health], T]) -> tuple[Health, T]:
        """Apply ``fn`` to the target's record in one node-wide transaction and log it.

        A record about another address (the target was moved) starts afresh;
        ``address`` may be "" when it is not known (the record keeps its own).
        """
        key = target_id.encode()
        with self.node.write() as txn:
            h = Health.decode(txn.get(key, db=self.records))
            if not h.address:
                h.address = address
            elif address and h.address != address:
                reset(h, address)
            result = fn(h)
            txn.put(key, h.encode(), db=self.records)
            self._append(txn, key)
        return h, result

    def claim_probe(self, target_id: str, now: float, interval: Callable[[Health], float]) -> tuple[bool, float]:
        """Take the next probe of a target if it is due; (claimed, next due time).

        ``interval(record)`` is the probe period for the record's health (0: no
        probes). Not logged: only the due time changes.
        """
        key = target_id.encode()
        with self.node.write() as txn:
            data = txn.get(key, db=self.records)
            h = Health.decode(data)
            period = interval(h)
            if not period:
                return False, 0.0
            due = min(h.next_probe, h.probed_at + period) if h.probed_at else h.next_probe
            if due > now:  # another worker probed it, or the period grew shorter
                return False, due
            h.next_probe, h.probed_at = now + period, now
            txn.put(key, h.encode(), db=self.records)
        return True, h.next_probe

    def delete(self, target_ids: list[str]) -> None:
        """The targets are gone from the configuration."""
        with self.node.write() as txn:
            for target_id in target_ids:
                key = target_id.encode()
                if txn.delete(key, db=self.records):
                    self._append(txn, key)

    def changes(self, after: int) -> tuple[int, set[str] | None]:
        """(latest sequence, ids changed since ``after``); None: the log no longer
        reaches back that far, reread everything."""
        with self.node.view() as txn:
            raw = txn.get(b"seq", db=self.meta)
            latest = _SEQ.unpack(raw)[0] if raw else 0
            if latest <= after:
                return latest, set()
            cursor = txn.cursor(db=self.log)
            if not cursor.set_range(_SEQ.pack(after + 1)) or _SEQ.unpack(cursor.key())[0] != after + 1:
                return latest, None
            return latest, {bytes(value).decode() for _, value in cursor}

    def everything(self) -> dict[str, Health]:
        return {key.decode(): Health.decode(value) for key, value in self.node.items(self.records)}

    def _append(self, txn: object, key: bytes) -> None:
        raw = txn.get(b"seq", db=self.meta)  # type: ignore[attr-defined]
        seq = (_SEQ.unpack(raw)[0] if raw else 0) + 1
        txn.put(b"seq", _SEQ.pack(seq), db=self.meta)  # type: ignore[attr-defined]
        txn.put(_SEQ.pack(seq), key, db=self.log)  # type: ignore[attr-defined]
        if seq > LOG_KEEP:
            txn.delete(_SEQ.pack(seq - LOG_KEEP), db=self.log)  # type: ignore[attr-defined]
