"""The configuration store: entities in SQLite (default) or PostgreSQL.

Only the Admin API and snapshot building touch it; the proxy's hot path never
does. Calls are synchronous (SQLAlchemy); async callers run them in a thread.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, Session, create_engine

from .models import TABLES, MetaRow, TargetHealthRow, row_columns

if TYPE_CHECKING:
    from ..config import Config


class UniqueViolation(Exception):
    """A write collided with a unique column (name, target, plugin scope)."""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # hide_parameters: entities (and their credentials) never appear in error messages or logs
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                                hide_parameters=True)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                                        hide_parameters=True)
        self._write_lock = threading.Lock()

    # -- schema ---------------------------------------------------------
    def migrate(self) -> None:
        """Create missing tables (idempotent)."""
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            if session.get(MetaRow, "config_version") is None:
                session.add(MetaRow(key="config_version", value=1))
                session.commit()

    def close(self) -> None:
        self.engine.dispose()

    # -- reads ------------------------------------------------------------
    def version(self) -> int:
        with Session(self.engine) as session:
            row = session.get(MetaRow, "config_version")
            return row.value if row else 0

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(TABLES[kind], id)
            return dict(row.data) if row else None

    def find(self, kind: str, **columns: Any) -> dict[str, Any] | None:
        rows = self.list(kind, limit=1, **columns)
        return rows[0] if rows else None

    def list(self, kind: str, limit: int | None = None, **columns: Any) -> list[dict[str, Any]]:
        """Entities in creation order, filtered by equality on indexed columns."""
        table = TABLES[kind]
        query = select(table.data)
        for name, value in columns.items():
            query = query.where(getattr(table, name) == value)
        query = query.order_by(table.created_at, table.id)
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            return [dict(row[0]) for row in session.execute(query)]

    def count(self, kind: str, **columns: Any) -> int:
        table = TABLES[kind]
        query = select(func.count()).select_from(table)
        for name, value in columns.items():
            query = query.where(getattr(table, name) == value)
        with Session(self.engine) as session:
            return int(session.execute(query).scalar_one())

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every entity and the version they belong to, read in one transaction."""
        with Session(self.engine) as session:
            out: dict[str, Any] = {}
            version_row = session.get(MetaRow, "config_version")
            out["version"] = version_row.value if version_row else 0
            for kind, table in TABLES.items():
                query = select(table.data).order_by(table.created_at, table.id)
                out[kind] = [dict(row[0]) for row in session.execute(query)]
            return out

    # -- health set by hand ---------------------------------------------
    def set_health(self, target_id: str, healthy: bool) -> int:
        """Record a target's health for every worker; returns the change's sequence number."""
        with self._write_lock, Session(self.engine) as session:
            meta = session.get(MetaRow, "health_version") or MetaRow(key="health_version", value=0)
            meta.value += 1
            row = session.get(TargetHealthRow, target_id) or TargetHealthRow(target_id=target_id, healthy=healthy, seq=0)
            row.healthy, row.seq = healthy, meta.value
            session.add(meta)
            session.add(row)
            session.commit()
            return meta.value

    def health_since(self, seq: int) -> list[tuple[str, bool, int]]:
        """Health changes after ``seq``, oldest first."""
        query = select(TargetHealthRow.target_id, TargetHealthRow.healthy, TargetHealthRow.seq).where(
            TargetHealthRow.seq > seq).order_by(TargetHealthRow.seq)
        with Session(self.engine) as session:
            return [(row[0], bool(row[1]), int(row[2])) for row in session.execute(query)]

    # -- writes ---------------------------------------------------------
    def write(self, inserts: list[tuple[str, dict[str, Any]]] = (),
              updates: list[tuple[str, dict[str, Any]]] = (),
              deletes: list[tuple[str, str]] = ()) -> int:
        """Apply changes in one transaction and bump the config version; return it."""
        with self._write_lock, Session(self.engine) as session:
            try:
                for kind, entity in inserts:
                    row = TABLES[kind](**row_columns(kind, entity), data=entity)
                    session.add(row)
                    session.flush()
                for kind, entity in updates:
                    row = session.get(TABLES[kind], entity["id"])
                    if row is None:
                        raise KeyError(entity["id"])
                    for name, value in row_columns(kind, entity).items():
                        setattr(row, name, value)
                    row.data = entity
                    session.add(row)
                    session.flush()
                for kind, id in deletes:
                    row = session.get(TABLES[kind], id)
                    if row is not None:
                        session.delete(row)
                        session.flush()
                meta = session.get(MetaRow, "config_version")
                meta.value += 1
                session.add(meta)
                session.commit()
                return meta.value
            except IntegrityError as exc:
                session.rollback()
                raise UniqueViolation(str(exc.orig)) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers (snapshot builds) run beside the writer; FKs cascade deletes."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def store_url(config: "Config") -> str:
    if config.database == "postgres":
        dsn = config.pg_dsn
        for prefix in ("postgresql://", "postgres://"):
            if dsn.startswith(prefix):
                return "postgresql+psycopg://" + dsn[len(prefix):]
        return dsn
    return f"sqlite:///{config.db_path}"


def open_store(config: "Config") -> Store:
    """The store the configuration names (the prefix is created for SQLite)."""
    if config.database != "postgres":
        config.create_prefix()
        _private_files(config.db_path)
    return Store(store_url(config))


def _private_files(db_path: Path) -> None:
    """The database holds credentials: owner-only (0600). SQLite creates its -wal and
    -shm files with the database file's mode, so creating that one first is enough;
    files made by an older version are tightened."""
    if not db_path.exists():
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except FileNotFoundError:
            pass
        except PermissionError:  # not ours (a shared prefix): leave it to its owner
            pass
